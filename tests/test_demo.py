"""The demo: its synthetic clip, and a whole offline run that falls back to random weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from samurai.demo import HEIGHT, WIDTH, DemoClip, make_demo_clip
from samurai.io.frames import open_source


def test_clip_boxes_are_the_object_bounding_boxes() -> None:
    clip = DemoClip(5)
    frames = list(clip.frames())
    assert len(frames) == 5 and frames[0].shape == (HEIGHT, WIDTH, 3)
    assert frames[0].dtype == np.uint8
    for idx, box in enumerate(clip.boxes.tolist()):
        ys, xs = np.nonzero(clip._mask(idx))
        assert box == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        x, y, w, h = box
        assert x >= 0 and x + w < WIDTH and y >= 0 and y + h < HEIGHT
    assert clip.boxes[-1, 0] > clip.boxes[0, 0] + 200  # the object travels across the frame


def test_make_demo_clip_writes_a_readable_video(tmp_path: Path) -> None:
    video, box = make_demo_clip(tmp_path, 3)
    with open_source(video) as source:
        assert (source.num_frames, source.height, source.width) == (3, HEIGHT, WIDTH)
    truth = (tmp_path / "demo_groundtruth.txt").read_text().splitlines()
    assert len(truth) == 3
    x, y, w, h = (int(v) for v in truth[0].split(","))
    assert box == [x, y, w + 1, h + 1]  # the prompt covers the object's pixels


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_demo_falls_back_to_random_weights_loudly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "SAMURAI_HOME": str(home),
        "SAMURAI_CHECKPOINT_BASE_URL": f"http://127.0.0.1:{closed_port()}",
    }
    out = tmp_path / "demo"
    args = ["--frames", "3", "--image-size", "256", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "samurai.demo", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM (untrained) weights" in proc.stderr
    assert "MEANINGLESS" in proc.stderr and "--checkpoint PATH" in proc.stderr
    assert "connection refused" in proc.stderr
    assert "RANDOM weights" in proc.stdout and str(out) in proc.stdout
    names = {p.name for p in out.iterdir()}
    assert names == {
        "demo_input.mp4",
        "demo_groundtruth.txt",
        "overlay.mp4",
        "boxes_1.txt",
        "masks",
        "masks.json",
        "scores.csv",
    }
    assert len((out / "boxes_1.txt").read_text().splitlines()) == 3
    assert len(list((out / "masks").glob("*.png"))) == 3
    assert not any(home.rglob("*.pt"))  # nothing pretends to be a cached checkpoint
