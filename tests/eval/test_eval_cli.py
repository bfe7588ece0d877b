"""``samurai eval`` end to end through the real CLI: a synthetic-weight model on tiny LaSOT and
GOT-10k trees made from the bedroom frames (3 frames a sequence, 256 px model input)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batch.helpers import kill_a_worker_when
from eval_layouts import GT, NUM_FRAMES, make_lasot
from samurai.eval.results import load_boxes

TRACKER = "samurai_sam2.1_hiera_t_256"


def make_got10k_val(root: Path, frames: list[Path], names: tuple[str, ...]) -> Path:
    base = root / "val"
    base.mkdir(parents=True)
    (base / "list.txt").write_text("".join(f"{name}\n" for name in names))
    for offset, name in enumerate(names):
        folder = base / name
        folder.mkdir()
        for i, frame in enumerate(frames[offset : offset + NUM_FRAMES], start=1):
            (folder / f"{i:08d}.jpg").symlink_to(frame)
        (folder / "groundtruth.txt").write_text(f"{GT}\n" * NUM_FRAMES)
        (folder / "absence.label").write_text("0\n" * NUM_FRAMES)
        (folder / "cover.label").write_text("8\n" * NUM_FRAMES)
        (folder / "meta_info.ini").write_text("[METAINFO]\nresolution: (960, 540)\n")
    return root


def eval_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "samurai.cli", "eval", *map(str, args)]


EVAL_ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def samurai_eval(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = eval_command(*args)
    return subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env=EVAL_ENV, timeout=300
    )


def tracking_args(checkpoint: Path) -> list[object]:
    return ["--checkpoint", checkpoint, "--image-size", 256]


def test_lasot_tracks_resumes_and_reports(
    tmp_path: Path, bedroom_frames: list[Path], synth_checkpoint, cli_main
):
    root = make_lasot(tmp_path / "LaSOT", bedroom_frames, ("cat-1", "dog-1"))
    args = ["--dataset", "lasot", "--root", root, "--split", "all", "--out", "out"]
    args += tracking_args(synth_checkpoint("sam2.1_hiera_t"))
    # a run stopped after the first sequence, simulated with a sequence filter
    first = samurai_eval(*args, "--sequences", "cat-1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    results = tmp_path / "out" / TRACKER
    stamp = (results / "cat-1.txt").stat().st_mtime_ns
    second = samurai_eval(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "1 of 2 sequences already finished" in second.stderr
    assert (results / "cat-1.txt").stat().st_mtime_ns == stamp
    for name in ("cat-1", "dog-1"):
        lines = (results / f"{name}.txt").read_text().splitlines()
        assert len(lines) == NUM_FRAMES
        assert all(re.fullmatch(r"\d+,\d+,\d+,\d+", line) for line in lines), lines
    assert "| Tracker | AUC | OP50 | OP75 | Precision | Norm. precision |" in second.stdout
    assert TRACKER in second.stdout
    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text())["num_sequences"] == 2
    assert {p.name for p in out.glob("*.png")} == {
        "success.png", "precision.png", "norm_precision.png"
    }  # fmt: skip
    timing = json.loads((out / f"{TRACKER}.json").read_text())["sequences"]
    assert sorted(timing) == ["cat-1", "dog-1"]

    # evaluation only, two trackers (in this process: no model to load)
    other = tmp_path / "raw" / "Baseline"
    other.mkdir(parents=True)
    for name in ("cat-1", "dog-1"):
        (other / f"{name}.txt").write_text(f"{GT}\n" * NUM_FRAMES)
    compare = ["--dataset", "lasot", "--root", root, "--split", "all", "--out", tmp_path / "cmp"]
    code, stdout, _ = cli_main(*compare, "--results", results, other, "--no-plots")
    assert code == 0
    assert "| Baseline | 95.24 |" in stdout and TRACKER in stdout
    code, _, stderr = cli_main(*compare, "--results", other, "--workers", 2)
    assert code == 2
    assert stderr.strip().endswith("--workers is for tracking")


def test_bad_input_exits_2_with_one_line(tmp_path: Path, cli_main):
    code, _, stderr = cli_main("--dataset", "lasot", "--root", tmp_path / "nowhere")
    assert code == 2
    assert stderr.strip() == f"samurai: error: lasot: dataset folder not found: {tmp_path}/nowhere"


def test_ray_local_gives_the_results_of_two_workers(
    tmp_path: Path, bedroom_frames: list[Path], synth_checkpoint
):
    pytest.importorskip("ray")
    names = ("GOT-10k_Val_000001", "GOT-10k_Val_000002")
    root = make_got10k_val(tmp_path / "GOT10k", bedroom_frames, names)
    args = ["--dataset", "got10k", "--root", root, "--workers", 2]
    args += tracking_args(synth_checkpoint("sam2.1_hiera_t"))
    pool = samurai_eval(*args, "--out", "pool", cwd=tmp_path)
    assert pool.returncode == 0, pool.stderr
    ray = samurai_eval(*args, "--out", "ray", "--ray-address", "local", cwd=tmp_path)
    assert ray.returncode == 0, ray.stderr
    for name in names:
        pool_file = tmp_path / "pool" / TRACKER / name / f"{name}_001.txt"
        ray_file = tmp_path / "ray" / TRACKER / name / f"{name}_001.txt"
        assert len(load_boxes(pool_file)) == NUM_FRAMES
        assert ray_file.read_bytes() == pool_file.read_bytes()
        times = tmp_path / "ray" / TRACKER / name / f"{name}_time.txt"
        assert len(times.read_text().split()) == NUM_FRAMES
    assert "| Tracker | AO | SR0.50 | SR0.75 |" in ray.stdout
    pool_report = json.loads((tmp_path / "pool" / "report.json").read_text())
    ray_report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert ray_report["overall"] == pool_report["overall"]


def test_a_killed_worker_process_gets_its_sequence_redone(
    tmp_path: Path, bedroom_frames: list[Path], synth_checkpoint
):
    names = tuple(f"GOT-10k_Val_00000{i}" for i in range(1, 5))  # 2 running, 1 queued
    root = make_got10k_val(tmp_path / "GOT10k", bedroom_frames, names)
    args = ["--dataset", "got10k", "--root", root, "--workers", 2, "--threads", 1]
    args += tracking_args(synth_checkpoint("sam2.1_hiera_t"))
    reference = samurai_eval(*args, "--out", "reference", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    proc = subprocess.Popen(
        eval_command(*args, "--out", "killed"),
        cwd=tmp_path, env=EVAL_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    results = tmp_path / "killed" / TRACKER
    # one sequence done, so the workers are tracking: kill one under its sequence
    killed = kill_a_worker_when(proc, lambda: any(results.glob("*/*_001.txt")))
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, stderr[-3000:]
    assert "a worker process died" in stderr
    assert "| Tracker | AO | SR0.50 | SR0.75 |" in stdout
    for name in names:
        redone = results / name / f"{name}_001.txt"
        assert (
            redone.read_bytes()
            == (tmp_path / "reference" / TRACKER / name / f"{name}_001.txt").read_bytes()
        )
    assert (
        json.loads((tmp_path / "killed" / "report.json").read_text())["overall"]
        == (json.loads((tmp_path / "reference" / "report.json").read_text())["overall"])
    )
