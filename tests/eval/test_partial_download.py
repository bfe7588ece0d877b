"""``samurai eval`` on a partial benchmark download: only the sequences that run are checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from eval_layouts import NUM_FRAMES, make_lasot

TRACKER = "samurai_sam2.1_hiera_t_256"


def samurai_eval(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "samurai.cli", "eval", *map(str, args)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_lasot_test_split_runs_the_downloaded_sequences(
    tmp_path: Path, bedroom_frames: list[Path], synth_checkpoint
) -> None:
    """Two of the 280 test sequences on disk: --sequences with them runs; missing ones are all
    named in one line before any model work."""
    root = make_lasot(tmp_path / "LaSOT", bedroom_frames, ("cat-1", "dog-1"))
    checkpoint = synth_checkpoint("sam2.1_hiera_t")
    args = ["--dataset", "lasot", "--root", root, "--out", "out", "--no-plots"]
    args += ["--checkpoint", checkpoint, "--image-size", 256]

    missing = samurai_eval(*args, "--sequences", "cat-1", "cat-3", "airplane-9", cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.splitlines()[-1] == (
        f"samurai: error: LaSOT: missing 2 of 3 sequence(s) under {root}: "
        "airplane/airplane-9, cat/cat-3"
    )
    assert missing.stderr.count("error") == 1 and "Traceback" not in missing.stderr
    assert not (tmp_path / "out").exists()

    run = samurai_eval(*args, "--sequences", "cat-1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "out" / TRACKER / "cat-1.txt").read_text().splitlines()
    assert len(lines) == NUM_FRAMES
