"""``samurai track`` under output faults and bad options: real subprocesses, a real full disk.

The disk-full tests mount a small tmpfs (root only; CI runs as root, elsewhere they skip). Every
failure must end with one line on stderr, keep the complete frames under ``.incomplete`` names,
never give an output its final name, and leave nothing behind when nothing was completed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samurai.cli import main
from samurai.io.video_writer import write_video

CLI = [sys.executable, "-m", "samurai.cli"]
BOX = "150,0,110,200"  # x,y,w,h on the half-size bedroom frames (480x270)
NUM_FRAMES = 20


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The only ``samurai: error:`` line; no traceback, no other error output."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("samurai: error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, bedroom_frames: list[Path]) -> Path:
    path = tmp_path_factory.mktemp("video") / "bedroom.mp4"
    frames = (np.array(Image.open(f).convert("RGB"))[::2, ::2] for f in bedroom_frames)
    write_video(path, itertools.islice(frames, NUM_FRAMES), fps=10)
    return path


@pytest.fixture(scope="module")
def checkpoint(synth_checkpoint) -> Path:
    return synth_checkpoint("sam2.1_hiera_t")


def track_args(clip: Path, checkpoint: Path, *more: str | Path) -> list[str | Path]:
    return ["track", clip, "--box", BOX, "--checkpoint", checkpoint, "--image-size", "256", *more]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Factory: size -> a freshly mounted tmpfs of that size (unmounted afterwards)."""
    if os.geteuid() != 0:
        message = "mounting a small tmpfs (disk-full tests) needs root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI runs as root")
        pytest.skip(message)
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
        )
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "--lazy", str(point)], check=False)  # even with files open


def incomplete_frames(out: Path) -> dict[str, int]:
    """Frames held by each text / PNG output of a failed run."""
    counts = {
        "boxes": len((out / "boxes_1.incomplete.txt").read_text().splitlines()),
        "masks": len(list((out / "masks.incomplete").glob("*.png"))),
        "scores": len((out / "scores.incomplete.csv").read_text().splitlines()) - 1,
    }
    rle = json.loads((out / "masks.incomplete.json").read_text())
    assert rle["complete"] is False
    counts["rle"] = len(rle["frames"])
    return counts


def test_disk_full_mid_run_keeps_complete_frames(small_disk, clip: Path, checkpoint: Path) -> None:
    """The PNG masks fill the disk after a few frames: every output keeps the same frames."""
    out = small_disk("40k") / "out"
    proc = run_cli(*track_args(clip, checkpoint, "--save", "boxes,masks,rle,scores", "--out", out))
    line = one_error_line(proc)
    assert "No space left on device" in line and "complete frame(s) kept as *.incomplete" in line
    assert not [p.name for p in out.iterdir() if ".incomplete" not in p.name]
    counts = incomplete_frames(out)
    assert len(set(counts.values())) == 1, counts
    assert 1 <= counts["boxes"] < NUM_FRAMES
    assert f"; {counts['boxes']} complete frame(s) kept" in line


def test_disk_full_when_closing_gives_no_final_name(
    small_disk, clip: Path, checkpoint: Path
) -> None:
    """Everything fits but the overlay's index: no output may take its final name."""
    out = small_disk("120k") / "out"
    proc = run_cli(*track_args(clip, checkpoint, "--save", "all", "--out", out))
    assert "overlay.partial.mp4: No space left on device" in one_error_line(proc)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "boxes_1.incomplete.txt",
        "masks.incomplete",
        "masks.incomplete.json",
        "overlay.incomplete.mp4",
        "scores.incomplete.csv",
    ]
    assert incomplete_frames(out) == dict.fromkeys(("boxes", "masks", "scores", "rle"), NUM_FRAMES)


def test_disk_full_at_once_leaves_nothing(small_disk, clip: Path, checkpoint: Path) -> None:
    disk = small_disk("16k")
    proc = run_cli(*track_args(clip, checkpoint, "--save", "all", "--out", disk / "a" / "b"))
    assert "nothing kept" in one_error_line(proc)
    assert list(disk.iterdir()) == []


def test_output_name_that_is_a_folder(
    tmp_path: Path, clip: Path, checkpoint: Path, in_process, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "boxes_1.txt").mkdir(parents=True)
    assert main(list(map(str, track_args(clip, checkpoint, "--out", out)))) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"samurai: error: output {out / 'boxes_1.txt'} is a folder; move it or choose --out\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["boxes_1.txt"]
    (out / "boxes_1.txt").rmdir()
    (out / "masks.partial").mkdir()
    (out / "masks.partial" / "notes.txt").write_text("mine")
    assert main(list(map(str, track_args(clip, checkpoint, "--save", "masks", "--out", out)))) == 2
    err = capsys.readouterr().err
    assert "masks.partial holds files other than frame PNGs" in err and err.count("\n") == 1
    assert (out / "masks.partial" / "notes.txt").read_text() == "mine"


def test_failed_run_leaves_no_folder_behind(tmp_path: Path, clip: Path, checkpoint: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:4096])
    proc = run_cli("track", clip, "--box", BOX, "--checkpoint", corrupt, cwd=tmp_path)
    assert "cannot read checkpoint" in one_error_line(proc)
    assert not (tmp_path / "samurai_out").exists()  # the default samurai_out/<video>
    args = ["track", clip, "--box", BOX, "--checkpoint", corrupt, "--out", tmp_path / "a" / "b"]
    one_error_line(run_cli(*args))
    assert not (tmp_path / "a").exists()


class _Payload:
    """Unpickling this would run a command: a checkpoint must never be unpickled like that."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_advice_to_unpickle(
    how: str, tmp_path: Path, clip: Path
) -> None:
    evil = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"model": _Payload()}, evil)
    else:
        evil.write_bytes(pickle.dumps({"model": _Payload()}, protocol=4))
    out = tmp_path / "o"
    proc = run_cli("track", clip, "--box", BOX, "--checkpoint", evil, "--out", out, cwd=tmp_path)
    line = one_error_line(proc)
    assert f"{evil} is not a plain checkpoint and is refused" in line
    if how == "torch.save":
        assert "pickled Python objects (posix.system) that could run code" in line
    assert "weights_only" not in proc.stderr and "will likely succeed" not in proc.stderr
    assert not (tmp_path / "PWNED").exists() and not out.exists()


@pytest.fixture
def in_process(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Run ``main`` in this process and put the samurai logger back afterwards."""
    package = logging.getLogger("samurai")
    handlers, level = list(package.handlers), package.level
    yield
    package.handlers[:] = handlers
    package.setLevel(level)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fill-hole-area", "-5"], "--fill-hole-area must be >= 0 (0 = off), got -5"),
        (["--max-frames", "-1"], "--max-frames must be >= 0, got -1"),
        (["--start-frame", "-2"], "--start-frame must be >= 0, got -2"),
        (["--image-size", "8192"], "--image-size must be a multiple of 32 from 32 to 4096"),
        (["--box", "nan,0,10,10"], "malformed --box 'nan,0,10,10'"),
        (["--box", "0,0,inf,10"], "malformed --box '0,0,inf,10'"),
        (["--points", "1,nan", "--labels", "1"], "malformed point '1,nan' in --points"),
    ],
)
def test_numeric_options_out_of_range(
    args: list[str], message: str, tmp_path: Path, clip: Path, in_process, capsys
) -> None:
    # a missing checkpoint: where a range check is lacking, the run fails fast on it instead
    missing = tmp_path / "missing.pt"
    base = ["track", str(clip), "--checkpoint", str(missing), "--out", str(tmp_path / "out")]
    if "--box" not in args and "--points" not in args:
        base += ["--box", BOX]
    assert main([*base, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
