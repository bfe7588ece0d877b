"""Fixtures of the service tests: test videos and one shared server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from samurai.io.video_writer import write_video
from service.helpers import TOKEN, ServerProcess


@pytest.fixture(scope="session")
def bedroom_rgb(bedroom_frames: list[Path]) -> list[np.ndarray]:
    """The first 12 bedroom frames (960x540 RGB); skipped without the reference, failed under CI."""
    return [np.asarray(Image.open(p).convert("RGB")) for p in bedroom_frames[:12]]


@pytest.fixture(scope="session")
def clips(
    tmp_path_factory: pytest.TempPathFactory, bedroom_rgb: list[np.ndarray]
) -> dict[str, Path]:
    """Test videos: ``short`` (4 bedroom frames), ``long`` (12), ``double`` (24), ``many`` (40
    tiny frames)."""
    root = tmp_path_factory.mktemp("clips")
    paths = {"short": root / "bedroom4.mp4", "long": root / "bedroom12.mp4"}
    write_video(paths["short"], bedroom_rgb[:4], fps=10)
    write_video(paths["long"], bedroom_rgb, fps=10)
    paths["double"] = root / "bedroom24.mp4"  # 24 x 960 x 540: over the 10-megapixel budget
    write_video(paths["double"], bedroom_rgb + bedroom_rgb, fps=10)
    paths["many"] = root / "many.mp4"
    write_video(paths["many"], [np.full((48, 64, 3), i * 6, np.uint8) for i in range(40)], fps=10)
    return paths


@pytest.fixture(scope="session")
def tiny_checkpoint(synth_checkpoint: Any) -> Path:
    path: Path = synth_checkpoint("sam2.1_hiera_t")
    return path


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, clips: dict[str, Path]
) -> Iterator[ServerProcess]:
    """One server for the API and browser tests: 1 worker, 2 MiB uploads, 30 frames at most,
    10 megapixels per job, server-side paths allowed under the clips folder, a bearer token."""
    root = tmp_path_factory.mktemp("server")
    process = ServerProcess(
        root, tiny_checkpoint, "--max-upload-mb", "2", "--max-frames", "30",
        "--max-megapixels", "10", "--allowed-root", str(clips["short"].parent),
        token=TOKEN,
    )  # fmt: skip
    process.start()
    yield process
    process.stop()
