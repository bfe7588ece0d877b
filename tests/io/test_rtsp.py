"""RTSP from a real server: GStreamer's RTSP server on 127.0.0.1 (tests/io/rtsp_server.py, run
with Debian's python3) streams a clip; ``samurai track rtsp://...`` tracks it, and the server is
stopped mid-stream. The run must end with one warning line and keep every complete frame.

Needs the Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-good
(scripts/test-packages.txt); without them the test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samurai.io.frames import open_source
from samurai.io.video_reader import StreamSource
from samurai.io.video_writer import write_video

SERVER = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
NUM_FRAMES = 40  # at 2 fps: a 20 s stream, still running when the server is stopped
BOX = "150,0,110,200"
_PROBE = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("filesrc", "qtdemux", "rtph264pay") if Gst.ElementFactory.find(e) is None]
assert not missing, "GStreamer elements missing: " + ", ".join(missing)
"""


def require_rtsp_server() -> None:
    """Skip (fail under CI=true) where GStreamer's RTSP server cannot run."""
    reason = None
    if not Path(SYSTEM_PYTHON).is_file():
        reason = f"{SYSTEM_PYTHON} not found"
    else:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=60
        )
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or ["probe failed"])[-1]
    if reason is None:
        return
    message = (
        f"GStreamer RTSP server unavailable ({reason}); install python3-gi "
        "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good (scripts/test-packages.txt)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; required under CI")
    pytest.skip(message)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, bedroom_frames: list[Path]) -> Path:
    path = tmp_path_factory.mktemp("rtsp") / "bedroom.mp4"
    frames = (np.array(Image.open(f).convert("RGB"))[::2, ::2] for f in bedroom_frames)
    write_video(path, frames, fps=2)
    return path


@pytest.fixture
def rtsp_server(clip: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``(url, server process)``; the process is stopped afterwards if the test did not."""
    require_rtsp_server()
    server = subprocess.Popen(
        [SYSTEM_PYTHON, str(SERVER), str(clip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    if not port.isdigit():
        server.kill()
        raise AssertionError(f"RTSP server did not start: {server.communicate()[1]}")
    yield f"rtsp://127.0.0.1:{port}/clip", server
    if server.poll() is None:
        server.kill()
    server.communicate(timeout=30)


def test_stream_end_is_one_warning_and_keeps_the_frames(
    rtsp_server: tuple[str, subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url, server = rtsp_server
    with caplog.at_level(logging.INFO, logger="samurai"), open_source(url) as source:
        assert (source.width, source.height, source.num_frames) == (480, 270, None)
        frames = source.iter_frames(0, None)
        received = [next(frames)[1] for _ in range(3)]
        server.send_signal(signal.SIGTERM)
        received += [frame for _, frame in frames]
    assert 3 <= len(received) < NUM_FRAMES and received[0].shape == (270, 480, 3)
    records = [r for r in caplog.records if "ended after" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert records[0].getMessage() == (
        f"stream {url} ended after {len(received)} frames (the source stopped sending)"
    )


def test_stalled_stream_times_out_with_one_warning(
    rtsp_server: tuple[str, subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """A server that stops sending without closing the connection (frozen)."""
    url, server = rtsp_server
    with caplog.at_level(logging.INFO, logger="samurai"), StreamSource(url, timeout=2.0) as source:
        frames = source.iter_frames(0, None)
        received = [next(frames)[1] for _ in range(3)]
        server.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            received += [frame for _, frame in frames]
            waited = time.monotonic() - started
        finally:
            server.send_signal(signal.SIGCONT)
    assert 3 <= len(received) < NUM_FRAMES and waited < 30
    records = [r for r in caplog.records if "ended after" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert records[0].getMessage() == (
        f"stream {url} ended after {len(received)} frames (read failed: timed out waiting for data)"
    )


def test_track_survives_the_server_stopping_mid_stream(
    rtsp_server: tuple[str, subprocess.Popen[str]], tmp_path: Path, synth_checkpoint
) -> None:
    url, server = rtsp_server
    out = tmp_path / "out"
    args = ["track", url, "--box", BOX, "--checkpoint", synth_checkpoint("sam2.1_hiera_t")]
    args += ["--image-size", "256", "--save", "boxes,masks,rle", "--out", out]
    proc = subprocess.Popen(
        [sys.executable, "-m", "samurai.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    masks = out / "masks.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if masks.is_dir() and len(list(masks.glob("*.png"))) >= 3:
            break
        time.sleep(0.05)
    server.send_signal(signal.SIGTERM)  # the server goes away mid-stream
    server.communicate(timeout=30)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    ended = [line for line in stderr.splitlines() if "ended after" in line]
    assert len(ended) == 1, stderr
    assert ended[0].startswith(f"samurai: stream {url} ended after ")
    assert ended[0].endswith(" frames (the source stopped sending)")
    tracked = int(ended[0].split("ended after ")[1].split()[0])
    assert 3 <= tracked < NUM_FRAMES  # stopped mid-stream, not at its end
    # Every frame received was tracked and kept.
    assert sorted(p.name for p in out.iterdir()) == ["boxes_1.txt", "masks", "masks.json"]
    assert len((out / "boxes_1.txt").read_text().splitlines()) == tracked
    assert len(list((out / "masks").glob("*.png"))) == tracked
    assert len(json.loads((out / "masks.json").read_text())["frames"]) == tracked
    assert f"tracked {tracked} frames" in stdout
