"""Video writing: H.264 / VP9 yuv420p, even-size padding, frame checks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from samurai.io.video_reader import VideoFileSource
from samurai.io.video_writer import VideoWriter, default_codec, write_video


def gradient_frames(num: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth, mildly coloured content that survives 4:2:0 and CRF 18 closely."""
    y, x = np.mgrid[:height, :width]
    gray = (x * 160 // width + y * 60 // height)[..., None]
    return [(gray + np.array([40, 30 + 5 * i, 20])).astype(np.uint8) for i in range(num)]


@pytest.mark.parametrize(("suffix", "codec"), [("mp4", "h264"), ("webm", "vp9"), ("mov", "h264")])
def test_round_trip(tmp_path: Path, suffix: str, codec: str) -> None:
    frames = gradient_frames(6, 32, 48)
    path = tmp_path / f"clip.{suffix}"
    assert write_video(path, iter(frames), fps=12) == 6
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec
        assert stream.codec_context.pix_fmt == "yuv420p"
    with VideoFileSource(path) as source:
        assert (source.num_frames, source.fps, source.height, source.width) == (6, 12.0, 32, 48)
        for idx, frame in source:
            assert np.abs(frame.astype(np.int16) - frames[idx]).mean() < 3.0


def test_odd_size_is_padded(tmp_path: Path) -> None:
    frames = gradient_frames(3, 31, 45)
    path = tmp_path / "odd.mp4"
    write_video(path, frames, fps=Fraction(30000, 1001))
    with VideoFileSource(path) as source:
        assert (source.height, source.width) == (32, 46)
        assert source.fps == pytest.approx(29.97, abs=0.01)
        frame = source.get(1)
    assert np.abs(frame[:31, :45].astype(np.int16) - frames[1]).mean() < 3.0
    # the padding repeats the last row and column
    assert np.abs(frame[31].astype(np.int16) - frame[30]).mean() < 3.0


def test_bad_frames(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "bad.mp4", fps=10) as writer:
        with pytest.raises(ValueError, match=r"must be \(H, W, 3\) uint8 RGB"):
            writer.write(np.zeros((16, 16, 3), np.float32))
        writer.write(np.zeros((16, 16, 3), np.uint8))
        with pytest.raises(ValueError, match="frame 1 is 16x18, expected 16x16"):
            writer.write(np.zeros((18, 16, 3), np.uint8))
        assert writer.frames_written == 1
    with pytest.raises(ValueError, match="fps must be positive"):
        VideoWriter(tmp_path / "zero.mp4", fps=0)


def test_default_codec() -> None:
    assert default_codec("a.webm") == "libvpx-vp9"
    assert default_codec(Path("b.MP4")) == "libx264"
