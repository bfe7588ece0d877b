"""Run ``samurai`` commands in one fresh interpreter and see whether each imported torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Calls main() once per argv in one fresh interpreter; after each, records the exit code, and
# whether torch has been imported so far.
_PROBE = """
import json, sys
from samurai.cli import main
report = []
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    report.append([argv, code, "torch" in sys.modules])
print("PROBE " + json.dumps(report))
"""


def probe_run(
    *argvs: list[str], cwd: Path | None = None
) -> tuple[list[tuple[list[str], int, bool]], str]:
    """``([(argv, exit code, torch imported so far), ...], stderr)``, in ``argvs`` order."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PROBE "))
    return [tuple(item) for item in json.loads(line[len("PROBE ") :])], proc.stderr


def probe(*argvs: list[str]) -> list[tuple[list[str], int, bool]]:
    """`probe_run` without the stderr."""
    return probe_run(*argvs)[0]
