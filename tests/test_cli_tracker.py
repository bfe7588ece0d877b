"""``--tracker`` on ``samurai track`` / ``batch`` / ``bench`` (``eval``: in tests/eval/
test_eval_tracker.py): parsing and help without torch, the ``--no-samurai`` alias and its
conflicts, and each policy reaching the predictor that tracks (synthetic weights, image size
256, 3 frames).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_probe import probe_run
from samurai.cli import build_parser, main
from samurai.commands import configure_logging, tracker_from_args
from samurai.config import TRACKERS
from samurai.demo import make_demo_clip

# Every policy is tracked end to end (dam4sam and samurai+dam too).
TRACKED = TRACKERS
BOX = "40,100,150,110"


@pytest.fixture
def in_process() -> Iterator[None]:
    """Run ``main`` in this process; put the samurai logger back afterwards."""
    package = logging.getLogger("samurai")
    handlers, level = list(package.handlers), package.level
    yield
    configure_logging(False)
    package.handlers[:] = handlers
    package.setLevel(level)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    video, _ = make_demo_clip(tmp_path_factory.mktemp("clip"), 3)
    return video


@pytest.fixture(scope="module")
def checkpoint(synth_checkpoint) -> Path:
    return synth_checkpoint("sam2.1_hiera_t")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser([argv[0]]).parse_args(list(argv))


# ------------------------------------------------------------------------- parsing and help
@pytest.mark.parametrize("tracker", TRACKERS)
def test_every_command_parses_every_tracker(tracker: str) -> None:
    assert parse("track", "clip.mp4", "--box", BOX, "--tracker", tracker).tracker == tracker
    assert parse("batch", "m.jsonl", "--out", "o", "--tracker", tracker).tracker == tracker
    assert parse("eval", "--dataset", "lasot", "--root", "r", "--tracker", tracker).tracker == (
        tracker
    )
    assert parse("bench", "--trackers", "sam2", tracker).trackers == ["sam2", tracker]
    assert parse("bench", "--tracker", tracker).trackers == [tracker]


def test_no_samurai_is_an_alias_of_tracker_sam2() -> None:
    def resolved(*extra: str) -> str:
        return tracker_from_args(parse("track", "clip.mp4", "--box", BOX, *extra))

    assert resolved() == "samurai"
    assert resolved("--no-samurai") == "sam2"
    assert resolved("--no-samurai", "--tracker", "sam2") == "sam2"
    assert resolved("--tracker", "dam4sam") == "dam4sam"
    with pytest.raises(ValueError, match="--no-samurai means --tracker sam2; it contradicts "):
        resolved("--no-samurai", "--tracker", "dam4sam")


def test_help_names_every_tracker_and_flags_samurai_dam_experimental() -> None:
    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    for command in ("track", "batch", "eval", "bench"):
        text = " ".join(subparsers.choices[command].format_help().split())
        assert "samurai+dam" in text and "dam4sam" in text, command
        assert "EXPERIMENTAL and unpublished" in text, command
        assert "--no-samurai" in text, command


def test_tracker_help_and_errors_do_not_import_torch(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": "a.mp4", "box": BOX}) + "\n")
    root = tmp_path / "lasot"
    root.mkdir()
    argvs = [
        ["track", "--help"],
        ["track", "clip.mp4", "--box", BOX, "--tracker", "dam5sam"],
        ["track", "clip.mp4", "--box", BOX, "--tracker", "dam4sam", "--no-samurai"],
        ["batch", str(manifest), "--out", str(tmp_path / "o"), "--tracker", "samurai+dam",
         "--no-samurai"],
        ["eval", "--dataset", "lasot", "--root", str(root), "--tracker", "samurai",
         "--no-samurai"],
        ["eval", "--dataset", "lasot", "--root", str(root), "--results", str(root),
         "--tracker", "dam4sam"],
        ["bench", "--trackers", "samurai", "sam2", "--no-samurai"],
        ["bench", "--trackers", "nope"],
    ]  # fmt: skip
    report, stderr = probe_run(*argvs, cwd=tmp_path)
    assert [code for _, code, _ in report] == [0, 2, 2, 2, 2, 2, 2, 2]
    assert [argv for argv, _, torch_loaded in report if torch_loaded] == []
    errors = [e for e in stderr.splitlines() if e.startswith("samurai: error:")]
    assert errors == [
        "samurai: error: --no-samurai means --tracker sam2; it contradicts --tracker dam4sam",
        "samurai: error: --no-samurai means --tracker sam2; it contradicts --tracker samurai+dam",
        "samurai: error: --no-samurai means --tracker sam2; it contradicts --tracker samurai",
        "samurai: error: --results evaluates existing folders; --tracker is for tracking",
        "samurai: error: --no-samurai means --trackers sam2; it contradicts --trackers samurai "
        "sam2",
    ]
    assert "invalid choice: 'dam5sam'" in stderr and "invalid choice: 'nope'" in stderr


# ------------------------------------------------------------------ the policy that tracks
@pytest.mark.parametrize("tracker", TRACKED)
def test_track_runs_the_chosen_tracker(
    tracker: str, clip: Path, checkpoint: Path, tmp_path: Path, in_process, capsys
) -> None:
    out = tmp_path / "out"
    args = ["track", str(clip), "--box", BOX, "--checkpoint", str(checkpoint)]
    args += ["--image-size", "256", "--save", "boxes", "--out", str(out), "--tracker", tracker]
    assert main(args) == 0
    # the log line names the policy as the predictor reports it from its own configs
    assert f"with sam2.1_hiera_t ({tracker})" in capsys.readouterr().err
    assert len((out / "boxes_1.txt").read_text().splitlines()) == 3


def test_track_no_samurai_runs_sam2(
    clip: Path, checkpoint: Path, tmp_path: Path, in_process, capsys
) -> None:
    args = ["track", str(clip), "--box", BOX, "--checkpoint", str(checkpoint), "--no-samurai"]
    assert main([*args, "--image-size", "256", "--save", "boxes", "--out", str(tmp_path)]) == 0
    assert "with sam2.1_hiera_t (sam2)" in capsys.readouterr().err


def _journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]


def _batch(clip: Path, checkpoint: Path, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    """``samurai batch`` arguments: one job (id ``a``) tracking ``clip`` into ``out``."""
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(json.dumps({"video": str(clip), "box": BOX, "id": "a"}) + "\n")
    args = ["batch", str(manifest), "--out", str(out), "--checkpoint", str(checkpoint)]
    return [*args, "--image-size", "256", "--save", "boxes", "-q", *extra]


def test_batch_records_the_tracker_and_refuses_another_into_the_same_folder(
    clip: Path, checkpoint: Path, tmp_path: Path, in_process, capsys
) -> None:
    out = tmp_path / "out"
    for tracker in TRACKED:
        folder = out / tracker
        assert main(_batch(clip, checkpoint, tmp_path, folder, "--tracker", tracker)) == 0
        first, job = _journal(folder)
        assert first["run"]["tracker"] == tracker and "samurai_mode" not in first["run"]
        assert job["status"] == "done" and job["tracker"] == tracker  # the worker's predictor
    capsys.readouterr()
    other = next(t for t in TRACKED if t != "samurai")
    assert main(_batch(clip, checkpoint, tmp_path, out / "samurai", "--tracker", other)) == 2
    err = capsys.readouterr().err
    assert "holds a batch of other settings" in err and err.count("\n") == 1
    # the same settings again: the job is skipped as finished
    assert main(_batch(clip, checkpoint, tmp_path, out / "samurai")) == 0
    assert "0 done, 0 failed, 1 skipped" in capsys.readouterr().out


def test_batch_journal_from_before_the_tracker_option_resumes(
    clip: Path, checkpoint: Path, tmp_path: Path, in_process, capsys
) -> None:
    """A journal naming samurai_mode (no tracker) is the same batch as its tracker."""
    out = tmp_path / "out"
    args = _batch(clip, checkpoint, tmp_path, out, "--no-samurai")
    assert main(args) == 0
    lines = _journal(out)
    run = dict(lines[0]["run"])
    assert run.pop("tracker") == "sam2"
    lines[0]["run"] = {**run, "samurai_mode": False}  # as written before --tracker
    (out / "batch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    capsys.readouterr()
    assert main(args) == 0
    assert "0 done, 0 failed, 1 skipped" in capsys.readouterr().out
    assert main([*args[:-1], "--tracker", "samurai"]) == 2  # samurai_mode False is not samurai


def test_bench_measures_several_trackers_in_one_run(tmp_path: Path, in_process, capsys) -> None:
    args = ["bench", "--image-size", "256", "--frames", "2", "--trackers", *TRACKED, "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("matmul peak:"))
    assert "float32 GEMM backend (" in header
    assert all(f"{kind} " in header for kind in ("narrow", "wide", "attention"))
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| sam2.1_hiera_t")]
    assert [row[1] for row in rows] == list(TRACKED)  # as each predictor names its policy
    assert all(float(row[5]) > 0 and int(row[6]) > 0 for row in rows)  # s/frame, GFLOP/frame


def test_bench_no_samurai_measures_sam2(in_process, capsys) -> None:
    assert main(["bench", "--image-size", "256", "--frames", "2", "--no-samurai", "-q"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| sam2.1")]
    assert len(rows) == 1 and rows[0].startswith("| sam2.1_hiera_t | sam2 |")
