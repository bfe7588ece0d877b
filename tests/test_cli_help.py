"""The CLI for a newcomer: instant help and argument errors (torch not imported), help text on
every option, ``--quiet`` = errors only, ``--random-weights`` for trying the tool offline, and
``samurai bench`` that checks its arguments first and runs from any folder.

Real subprocesses (a fresh interpreter shows what an import costs); image size 256.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_probe import probe
from samurai.cli import COMMANDS, build_parser, main
from samurai.commands import configure_logging
from samurai.demo import make_demo_clip


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "samurai.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def in_process() -> Iterator[None]:
    """Run ``main`` in this process; put logging and warnings back afterwards."""
    package = logging.getLogger("samurai")
    handlers, level = list(package.handlers), package.level
    with warnings.catch_warnings():
        yield
        configure_logging(False)  # undoes a --quiet
    package.handlers[:] = handlers
    package.setLevel(level)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    video, _ = make_demo_clip(tmp_path_factory.mktemp("clip"), 2)
    return video


def test_help_and_argument_errors_do_not_import_torch() -> None:
    report = probe(
        ["--help"],
        [],
        ["trak"],
        ["track", "--help"],
        ["track", "clip.mp4", "--box", "1,2,3"],
        ["download", "--help"],
        ["models", "--bogus"],
        ["eval", "--help"],
        ["serve", "--help"],
        ["bench", "--help"],
        ["bench", "--objects", "9"],
        ["bench", "--frames", "1"],
        ["bench", "--models", "sam3"],
    )
    codes = {tuple(argv): code for argv, code, _ in report}
    assert codes[("--help",)] == 0 and codes[()] == 2 and codes[("trak",)] == 2
    assert codes[("bench", "--objects", "9")] == 2
    assert codes[("track", "clip.mp4", "--box", "1,2,3")] == 2
    assert [argv for argv, _, torch_loaded in report if torch_loaded] == []


def test_import_samurai_is_lazy_but_complete() -> None:
    code = "import sys, samurai; print(len(samurai.VARIANTS), 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "False"]
    import samurai

    assert all(
        getattr(samurai, name).__module__.startswith("samurai")
        for name in samurai.__all__
        if name != "VARIANTS"
    )
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        samurai.nope  # noqa: B018


def test_top_level_help_lines_are_the_commands_own() -> None:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    registered = {action.dest: action.help for action in subparsers._choices_actions}
    assert registered == {name: help_line for name, (_, help_line) in COMMANDS.items()}


def test_every_option_of_every_command_has_help_text() -> None:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in subparsers.choices.items()
        for action in parser._actions
        if not action.help
    ]
    assert missing == []
    bench_help = subparsers.choices["bench"].format_help()
    assert "``" not in bench_help and "Measure tracking speed" in bench_help


def test_quiet_track_on_random_weights_prints_nothing_on_stderr(clip: Path, tmp_path: Path) -> None:
    """Both warnings of the issue (--image-size 256, no checkpoint) and the banner are gone."""
    out = tmp_path / "out"
    args = ["track", clip, "--box", "40,100,150,110", "--image-size", "256", "--random-weights"]
    proc = run_cli(*args, "--save", "boxes", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert len((out / "boxes_1.txt").read_text().splitlines()) == 2


def test_random_weights_are_labelled_loudly(clip: Path, tmp_path: Path, in_process, capsys) -> None:
    out = tmp_path / "out"
    args = ["track", str(clip), "--box", "40,100,150,110", "--image-size", "256"]
    assert main([*args, "--random-weights", "--save", "scores", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "RANDOM (untrained) weights" in err and "MEANINGLESS" in err
    assert (out / "scores.csv").is_file()


def test_offline_track_error_offers_random_weights(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process, capsys
) -> None:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    args = ["track", str(clip), "--box", "40,100,150,110", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "connection refused" in err and "--random-weights" in err
    assert main([*args, "--random-weights", "--checkpoint", str(clip)]) == 2
    assert "--random-weights and --checkpoint exclude each other" in capsys.readouterr().err


def test_quiet_silences_warnings_of_every_logger_but_not_errors(
    in_process, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    configure_logging(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("a python warning", UserWarning, stacklevel=1)
    logging.getLogger("samurai.build").warning("a samurai warning")
    logging.getLogger("somelibrary").warning("a library warning")
    logging.getLogger("samurai.cli").error("an error")
    assert caught == []
    assert [record.getMessage() for record in caplog.records] == ["an error"]
    assert capsys.readouterr().err == "samurai: an error\n"
    configure_logging(False)  # a later non-quiet run in the same process is loud again
    logging.getLogger("somelibrary").warning("loud again")
    assert caplog.records[-1].getMessage() == "loud again"


def test_bench_checks_arguments_before_any_work(tmp_path: Path) -> None:
    proc = run_cli("bench", tmp_path / "missing.mp4", "--frames", "3", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""  # no machine line, no table header
    assert proc.stderr == f"samurai: error: video file not found: {tmp_path / 'missing.mp4'}\n"


def test_bench_runs_from_any_folder_on_a_generated_clip(tmp_path: Path) -> None:
    proc = run_cli("bench", "--image-size", "256", "--frames", "2", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "generated 640x360 clip" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| sam2.1_hiera_t |")]
    assert len(rows) == 1 and "image encoder" in rows[0]
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
