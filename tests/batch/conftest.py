"""Fixtures of the batch tests: small synthetic videos, a manifest and a seeded checkpoint.

The checkpoint holds seeded random weights, so every process (worker, Ray actor) runs the same
model without the golden reference data; results are compared between runs, not with truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from batch.helpers import SIZE, frames, run_cli
from samurai.io.video_writer import write_video


@pytest.fixture(scope="session")
def seeded_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from samurai.build import build_model

    path = tmp_path_factory.mktemp("weights") / "seeded_t.pt"
    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_t", None)
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a.mp4``, ``b.mp4`` and a JPEG folder ``c/`` in one folder, with a manifest of them."""
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", frames(0), fps=10)
    write_video(root / "b.mp4", frames(1), fps=10)
    (root / "c").mkdir()
    for i, frame in enumerate(frames(2)):
        cv2.imwrite(str(root / "c" / f"{i:05d}.jpg"), frame[:, :, ::-1])
    lines = [
        {"video": "a.mp4", "box": "20,25,36,30"},
        {"video": "b.mp4", "boxes": [[21, 25, 36, 30], [0, 0, 20, 20]], "save": "all"},
        {"video": "c", "id": "frames_c", "box": [22, 25, 36, 30], "max_frames": 1},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


@pytest.fixture(scope="session")
def pool_run(tmp_path_factory: pytest.TempPathFactory, videos: Path, seeded_checkpoint: Path):
    """The manifest tracked by two worker processes (the reference of the other batch tests)."""
    out = tmp_path_factory.mktemp("pool") / "out"
    args = ["batch", videos / "manifest.jsonl", "--out", out, "--workers", "2", "--threads", "1"]
    proc = run_cli(*args, "--checkpoint", seeded_checkpoint, *SIZE)
    assert proc.returncode == 0, proc.stderr
    return proc, out
