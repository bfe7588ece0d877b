"""User scripts written for the official SAMURAI repository run unchanged but for the import line
and give the official (golden) boxes on the bedroom frames at 1024."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reference import REFERENCE_DIR, golden, synth_state_dict

SCRIPTS = Path(__file__).parent / "scripts"
FRAMES = REFERENCE_DIR / "frames" / "bedroom"
MAX_FRAMES = 2
"""Frames 0..2 of the 40-frame video (the video length enters the pointer encoding)."""

pytestmark = [pytest.mark.golden, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # official file name: the demo script picks the config from it
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": synth_state_dict("sam2.1_hiera_t")}, path)
    return path


def _run(script: str, *args: str, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _golden_boxes_xywh() -> np.ndarray:
    box = golden("samurai_t_bedroom")["video_mask_box"][: MAX_FRAMES + 1].astype(np.int64)
    return np.stack([box[:, 0], box[:, 1], box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]], 1)


def _read_boxes(path: Path) -> np.ndarray:
    return np.array([[int(v) for v in line.split(",")] for line in path.read_text().split()])


def test_demo_style_script_gives_golden_boxes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "first_frame.txt").write_text("300,0,220,400\n")
    _run(
        "demo_style.py",
        f"--video_path={FRAMES}",
        "--txt_path=first_frame.txt",
        f"--model_path={tiny_checkpoint}",
        "--video_output_path=demo.mp4",
        "--boxes_out=boxes.txt",
        f"--max_frames={MAX_FRAMES}",
        cwd=tmp_path,
    )
    ours = _read_boxes(tmp_path / "boxes.txt")
    np.testing.assert_allclose(ours, _golden_boxes_xywh(), atol=1)
    assert (tmp_path / "demo.mp4").stat().st_size > 0


def test_main_inference_style_loop_gives_golden_boxes(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    data = tmp_path / "LaSOT"
    video = data / "bedroom" / "bedroom-1"
    video.mkdir(parents=True)
    (video / "img").symlink_to(FRAMES, target_is_directory=True)
    (video / "groundtruth.txt").write_text("300,0,220,400\n" * 40)
    (data / "testing_set.txt").write_text("bedroom-1\n")
    _run(
        "main_inference_style.py",
        f"--data_root={data}",
        f"--checkpoints={tiny_checkpoint.parent}",
        "--model_name=tiny",
        f"--results={tmp_path / 'results'}",
        f"--max_frames={MAX_FRAMES}",
        cwd=tmp_path,
    )
    out = tmp_path / "results" / "samurai" / "samurai_tiny" / "bedroom-1.txt"
    np.testing.assert_allclose(_read_boxes(out), _golden_boxes_xywh(), atol=1)
