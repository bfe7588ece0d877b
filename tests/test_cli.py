"""The ``samurai`` CLI end to end: real subprocesses on a real mp4 with a synthetic checkpoint.

Plumbing runs at image size 256; one golden test runs at 1024 and compares the PNG masks with
the official run in ../shared/reference/golden.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from reference import golden, require_reference
from samurai.checkpoints import CHECKPOINTS
from samurai.cli import main
from samurai.io import rle
from samurai.io.video_writer import write_video

CLI = [sys.executable, "-m", "samurai.cli"]
NUM_FRAMES = 6
HEIGHT, WIDTH = 540, 960
BOXES = ["300,0,220,400", "620,180,200,160"]


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def bbox(mask: np.ndarray) -> str:
    """The official result box of a mask: x_min, y_min, x_max - x_min, y_max - y_min."""
    if not mask.any():
        return "0,0,0,0"
    ys, xs = np.nonzero(mask)
    return f"{xs.min()},{ys.min()},{xs.max() - xs.min()},{ys.max() - ys.min()}"


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def bedroom_mp4(tmp_path_factory: pytest.TempPathFactory, bedroom_frames: list[Path]) -> Path:
    path = tmp_path_factory.mktemp("video") / "bedroom.mp4"
    frames = (np.array(Image.open(f).convert("RGB")) for f in bedroom_frames[:NUM_FRAMES])
    write_video(path, frames, fps=10)
    return path


@pytest.fixture(scope="module")
def checkpoint(synth_checkpoint) -> Path:
    return synth_checkpoint("sam2.1_hiera_t")


@pytest.fixture(scope="module")
def tracked(
    tmp_path_factory: pytest.TempPathFactory, bedroom_mp4: Path, checkpoint: Path
) -> tuple[subprocess.CompletedProcess, Path]:
    """One two-object run with every output, shared by the output tests."""
    out = tmp_path_factory.mktemp("track") / "out"
    boxes = [a for box in BOXES for a in ("--box", box)]
    args = ["track", bedroom_mp4, *boxes, "--checkpoint", checkpoint, "--image-size", "256"]
    proc = run_cli(*args, "--save", "all", "--out", out, "--absent-box", "zero")
    assert proc.returncode == 0, proc.stderr
    return proc, out


@pytest.fixture
def in_process(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Run ``main`` in this process and put the samurai logger back afterwards."""
    package = logging.getLogger("samurai")
    handlers, level = list(package.handlers), package.level
    yield
    package.handlers[:] = handlers
    package.setLevel(level)


# --------------------------------------------------------------------------------- outputs
def test_every_output_exists(tracked) -> None:
    proc, out = tracked
    names = sorted(p.name for p in out.iterdir())
    expected = ["boxes_1.txt", "boxes_2.txt", "masks", "masks.json", "overlay.mp4", "scores.csv"]
    assert names == expected
    pngs = sorted(p.name for p in (out / "masks").iterdir())
    assert pngs == [f"{i:05d}.png" for i in range(NUM_FRAMES)]
    assert str(out / "overlay.mp4") in proc.stdout
    assert "--image-size 256" in proc.stderr  # the warning that results change


def test_overlay_decodes_with_every_frame(tracked) -> None:
    _, out = tracked
    with av.open(str(out / "overlay.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == NUM_FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)


def test_boxes_file_has_one_line_per_frame(tracked) -> None:
    _, out = tracked
    for obj_id in (1, 2):
        lines = (out / f"boxes_{obj_id}.txt").read_text().splitlines()
        assert len(lines) == NUM_FRAMES
        assert all(len(line.split(",")) == 4 for line in lines)


def rle_frames(out: Path) -> list[dict]:
    data = json.loads((out / "masks.json").read_text())
    assert data["complete"] is True and (data["height"], data["width"]) == (HEIGHT, WIDTH)
    return data["frames"]


def test_rle_decodes_to_exactly_the_png_masks(tracked) -> None:
    _, out = tracked
    frames = rle_frames(out)
    assert [f["frame"] for f in frames] == list(range(NUM_FRAMES))
    for entry in frames:
        labels = np.zeros((HEIGHT, WIDTH), np.uint8)
        for obj in entry["objects"]:  # later objects cover earlier ones, as in the PNGs
            labels[rle.decode(obj["rle"])] = obj["id"]
        np.testing.assert_array_equal(labels, read_png(out / "masks" / f"{entry['frame']:05d}.png"))


def test_boxes_equal_the_bounding_boxes_of_the_masks(tracked) -> None:
    _, out = tracked
    lines = {i: (out / f"boxes_{i}.txt").read_text().splitlines() for i in (1, 2)}
    for entry in rle_frames(out):
        for obj in entry["objects"]:
            mask = rle.decode(obj["rle"]) if obj["present"] else np.zeros((1, 1), bool)
            assert lines[obj["id"]][entry["frame"]] == bbox(mask), (entry["frame"], obj["id"])


def test_scores_csv_has_a_row_per_frame_and_object(tracked) -> None:
    _, out = tracked
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0] == "frame,object,iou,object_score,present"
    assert len(rows) == 1 + 2 * NUM_FRAMES


@pytest.mark.golden
@pytest.mark.slow
def test_masks_equal_the_golden_trace_at_1024(tmp_path: Path, checkpoint: Path) -> None:
    """The official SAMURAI run (samurai_t_bedroom, hole filling off) on frames 0..2."""
    frames_dir = require_reference() / "frames" / "bedroom"
    out = tmp_path / "golden"
    proc = run_cli(
        "track", frames_dir, "--box", "300,0,220,400", "--checkpoint", checkpoint,
        "--max-frames", "2", "--fill-hole-area", "0", "--save", "masks,boxes", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = golden("samurai_t_bedroom")["video_masks"][:3]
    boxes = (out / "boxes_1.txt").read_text().splitlines()
    assert len(boxes) == 3
    for idx, want in enumerate(expected):
        mask = read_png(out / "masks" / f"{idx:05d}.png") == 1
        assert np.count_nonzero(mask != want) <= 1e-4 * mask.size, f"frame {idx}"
        assert boxes[idx] == bbox(mask)


# ------------------------------------------------------------------------------ bad input
def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("samurai: error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def test_unreadable_video_is_one_line_and_exit_2(tmp_path: Path, checkpoint: Path) -> None:
    """Subprocess: the real process prints one line, no traceback, and leaves no outputs."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    out = tmp_path / "out"
    proc = run_cli("track", bad, "--box", "1,1,10,10", "--checkpoint", checkpoint, "--out", out)
    assert proc.returncode == 2
    assert "not a readable video" in one_error_line(proc.stderr)
    assert proc.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "300,0,220"], "malformed --box '300,0,220': expected x,y,w,h"),
        (["--box", "300,0,abc,400"], "malformed --box '300,0,abc,400'"),
        (["--box", "300,0,0,400"], "non-positive width or height"),
        (["--box", "2000,10,30,30"], "box 1 (2000,10,30,30) lies outside the 960x540 frame"),
        (["--box", "1,1,9,9", "--box", "10,-900,5,5"], "box 2 (10,-900,5,5) lies outside"),
        (["--points", "10,10;20", "--labels", "1,0"], "malformed point '20' in --points"),
        (["--points", "10,10", "--labels", "1,0"], "--points has 1 point(s) but --labels 2"),
        (["--box", "1,1,9,9", "--model", "sam3"], "unknown model variant 'sam3'; expected one"),
        (["--box", "1,1,9,9", "--save", "boxes,video"], "unknown --save video"),
        (["--box", "1,1,9,9", "--start-frame", "6"], "start frame 6 is past the end"),
        (["--box", "1,1,9,9", "--image-size", "100"], "--image-size must be a positive multiple"),
        (["--box", "1,1,9,9", "--dtype", "float16"], "float16 is not supported on the CPU"),
        ([], "nothing to track"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, bedroom_mp4: Path, checkpoint: Path, tmp_path: Path,
    in_process: None, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "out"
    code = main(
        ["track", str(bedroom_mp4), *args, "--checkpoint", str(checkpoint), "--out", str(out)]
    )
    assert code == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_missing_video(tmp_path: Path, in_process: None, capsys) -> None:
    assert main(["track", str(tmp_path / "nope.mp4"), "--box", "1,1,9,9"]) == 2
    assert "video file not found" in one_error_line(capsys.readouterr().err)


def test_corrupt_checkpoint(
    tmp_path: Path, bedroom_mp4: Path, checkpoint: Path, in_process, capsys
) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:4096])
    args = ["track", str(bedroom_mp4), "--box", "1,1,9,9", "--checkpoint", str(corrupt)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert f"cannot read checkpoint {corrupt}" in one_error_line(capsys.readouterr().err)


def test_checkpoint_of_another_variant(
    tmp_path: Path, bedroom_mp4: Path, checkpoint, in_process, capsys
) -> None:
    args = ["track", str(bedroom_mp4), "--box", "1,1,9,9", "--checkpoint", str(checkpoint)]
    assert main([*args, "--model", "sam2.1_hiera_s", "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint does not match sam2.1_hiera_s" in one_error_line(capsys.readouterr().err)


def test_unwritable_output_folder(
    tmp_path: Path, bedroom_mp4: Path, checkpoint, in_process, capsys
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    args = ["track", str(bedroom_mp4), "--box", "1,1,9,9", "--checkpoint", str(checkpoint)]
    assert main([*args, "--out", str(blocker / "out")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"cannot create output folder {blocker / 'out'}: Not a directory" in err


def test_malformed_box_file(tmp_path: Path, bedroom_mp4: Path, in_process, capsys) -> None:
    gt = tmp_path / "groundtruth.txt"
    gt.write_text("10,20\n")
    assert main(["track", str(bedroom_mp4), "--box-file", str(gt)]) == 2
    assert f"malformed first line of --box-file {gt}" in one_error_line(capsys.readouterr().err)


def test_box_file_in_got10k_form(tmp_path: Path, bedroom_mp4: Path, checkpoint: Path) -> None:
    """Tab-separated first line, later lines ignored; --max-frames 1 tracks frames 0..1."""
    gt = tmp_path / "groundtruth.txt"
    gt.write_text("300.0\t0.0\t220.0\t400.0\n1\t2\t3\t4\n")
    out = tmp_path / "out"
    proc = run_cli(
        "track", bedroom_mp4, "--box-file", gt, "--checkpoint", checkpoint, "--image-size", "256",
        "--max-frames", "1", "--save", "boxes", "--out", out, "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet: errors only (no --image-size warning)
    assert len((out / "boxes_1.txt").read_text().splitlines()) == 2


def test_ctrl_c_keeps_outputs_marked_incomplete(
    tmp_path: Path, bedroom_frames: list[Path], checkpoint: Path
) -> None:
    out = tmp_path / "out"
    args = ["track", bedroom_frames[0].parent, "--box", BOXES[0], "--checkpoint", checkpoint]
    args += ["--image-size", "256", "--save", "boxes,masks", "--out", out]
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child of a background job inherits SIGINT ignored; give it the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    masks = out / "masks.partial"  # PNGs appear frame by frame (text outputs are buffered)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if masks.is_dir() and len(list(masks.glob("*.png"))) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["boxes_1.incomplete.txt", "masks.incomplete"]
    lines = (out / "boxes_1.incomplete.txt").read_text().splitlines()
    assert 2 <= len(lines) < 40
    # The interrupt may land between two sinks' writes of the same frame.
    pngs = len(list((out / "masks.incomplete").glob("*.png")))
    assert len(lines) <= pngs <= len(lines) + 1


# ------------------------------------------------------------------------ models, download
def test_models_lists_variants_sizes_and_cache(
    tmp_path: Path, monkeypatch, in_process, capsys
) -> None:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    cached = tmp_path / "checkpoints" / "sam2.1_hiera_t.pt"
    cached.parent.mkdir()
    with open(cached, "wb") as handle:  # sparse file of the official size: counts as cached
        handle.truncate(CHECKPOINTS["sam2.1_hiera_t"].size)
    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert set(CHECKPOINTS) <= set(rows)
    assert rows["sam2.1_hiera_t"][1:4] == ["149", "MiB", "yes"]
    assert rows["sam2.1_hiera_l"][1:4] == ["856", "MiB", "no"]
    assert rows["sam2.1_hiera_t"][4] == str(cached)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving a fake ``sam2.1_hiera_tiny.pt``."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "sam2.1_hiera_tiny.pt").write_bytes(b"not the official checkpoint" * 100)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_rejects_a_file_that_fails_verification(tmp_path: Path, file_server: str) -> None:
    home = tmp_path / "home"
    env = {"SAMURAI_HOME": str(home), "SAMURAI_CHECKPOINT_BASE_URL": file_server}
    proc = run_cli("download", "sam2.1_hiera_t", env=env)
    assert proc.returncode == 2
    err = one_error_line(proc.stderr)
    assert f"cannot download sam2.1_hiera_t from {file_server}/sam2.1_hiera_tiny.pt" in err
    assert "size mismatch" in err or "checksum mismatch" in err
    assert not any((home / "checkpoints").glob("*"))  # nothing left that looks cached


def test_download_offline_says_how_to_fix(tmp_path: Path, monkeypatch, in_process, capsys) -> None:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    assert main(["download", "--model", "sam2.1_hiera_tiny", "--quiet"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "connection refused" in err and "--checkpoint PATH" in err


def test_download_skips_a_cached_model(tmp_path: Path, monkeypatch, in_process, capsys) -> None:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    cached = tmp_path / "checkpoints" / "sam2_hiera_s.pt"
    cached.parent.mkdir()
    with open(cached, "wb") as handle:
        handle.truncate(CHECKPOINTS["sam2_hiera_s"].size)
    assert main(["download", "sam2_hiera_small"]) == 0
    assert capsys.readouterr().out.split() == ["sam2_hiera_s", str(cached)]


def test_unknown_download_model(in_process, capsys) -> None:
    assert main(["download", "sam3"]) == 2
    assert "unknown model variant 'sam3'" in one_error_line(capsys.readouterr().err)


def test_help_lists_the_commands(in_process, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("track", "download", "models"))
