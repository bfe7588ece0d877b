"""Frame source interface, image folders, in-memory frames and the open_source factory."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samurai.io.frames import (
    FrameSource,
    FrameSourceError,
    ImageFolderSource,
    IteratorSource,
    open_source,
    sort_frame_files,
)
from samurai.io.video_reader import StreamSource, VideoFileSource
from samurai.io.video_writer import write_video


def random_frames(num: int, height: int = 6, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (num, height, width, 3), dtype=np.uint8)


def save_pngs(folder: Path, names: list[str], height: int = 6, width: int = 8) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    frames = random_frames(len(names), height, width)
    for name, frame in zip(names, frames, strict=True):
        Image.fromarray(frame).save(folder / name)
    return frames


# ----------------------------------------------------------------------------- image folders


def test_jpeg_folder_equals_pil(bedroom_frames: list[Path]) -> None:
    folder = bedroom_frames[0].parent
    with ImageFolderSource(folder) as source:
        assert (source.num_frames, source.height, source.width) == (40, 540, 960)
        assert source.seekable and source.fps is None and source.name == str(folder)
        for (_, frame), path in zip(source.iter_frames(stop=10), bedroom_frames[:10], strict=True):
            np.testing.assert_array_equal(frame, np.array(Image.open(path).convert("RGB")))
        np.testing.assert_array_equal(
            source.get(37), np.array(Image.open(bedroom_frames[37]).convert("RGB"))
        )
        assert [idx for idx, _ in source.iter_frames(35, reverse=True)] == [39, 38, 37, 36, 35]


def test_frame_file_order() -> None:
    def order(names: list[str]) -> list[str]:
        return [p.name for p in sort_frame_files(Path(name) for name in names)]

    # like the official loader: int(stem), so 10 comes after 9 and "00002" equals 2
    assert order(["10.jpg", "9.jpg", "00002.jpg"]) == ["00002.jpg", "9.jpg", "10.jpg"]
    assert order(["frame_10.png", "frame_9.png", "frame_100.png"]) == [
        "frame_9.png",
        "frame_10.png",
        "frame_100.png",
    ]
    assert order(["b.png", "a.png", "c7.png"]) == ["a.png", "b.png", "c7.png"]


def test_png_folder_in_numeric_order(tmp_path: Path) -> None:
    frames = save_pngs(tmp_path / "clip", ["img_1.png", "img_2.png", "img_10.png"])
    (tmp_path / "clip" / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path / "clip") as source:
        assert [p.name for p in source.files] == ["img_1.png", "img_2.png", "img_10.png"]
        for idx, frame in source:
            np.testing.assert_array_equal(frame, frames[idx])  # PNG is lossless


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match=r"image folder not found: .*nowhere"):
        ImageFolderSource(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameSourceError, match=r"no JPEG or PNG frames in folder .*empty"):
        ImageFolderSource(tmp_path / "empty")

    save_pngs(tmp_path / "mixed", ["0.png"])
    save_pngs(tmp_path / "mixed", ["1.png"], height=5)
    source = ImageFolderSource(tmp_path / "mixed")
    with pytest.raises(FrameSourceError, match=r"1\.png is 8x5, expected 8x6"):
        source.get(1)

    save_pngs(tmp_path / "broken", ["0.png"])
    (tmp_path / "broken" / "1.jpg").write_bytes(b"not a jpeg")
    source = ImageFolderSource(tmp_path / "broken")
    with pytest.raises(FrameSourceError, match=r"cannot read image .*1\.jpg"):
        list(source)


# ----------------------------------------------------------------------------- in-memory frames


def test_array_source_is_seekable() -> None:
    frames = random_frames(5)
    source = IteratorSource(frames, fps=10)
    assert (source.num_frames, source.height, source.width, source.fps) == (5, 6, 8, 10)
    assert source.seekable
    np.testing.assert_array_equal(source.get(3), frames[3])
    assert [idx for idx, _ in source.iter_frames(1, 4, reverse=True)] == [3, 2, 1]
    frame = source.get(0)
    frame[:] = 0  # callers own their frames
    np.testing.assert_array_equal(source.get(0), frames[0])


def test_list_source_checks_each_frame() -> None:
    frames = list(random_frames(3))
    frames[2] = frames[2].astype(np.float32)
    source = IteratorSource(frames)
    assert source.seekable and source.num_frames == 3
    with pytest.raises(FrameSourceError, match=r"frame 2 must be an \(H, W, 3\) uint8 array"):
        list(source)


def test_generator_source_is_read_once() -> None:
    frames = random_frames(4)
    source = IteratorSource(iter(frames))
    assert source.num_frames is None and not source.seekable
    assert [idx for idx, _ in source.iter_frames(stop=2)] == [0, 1]
    remaining = list(source)  # continues, with continuing indices
    assert [idx for idx, _ in remaining] == [2, 3]
    np.testing.assert_array_equal(remaining[-1][1], frames[3])
    assert list(source) == []
    with pytest.raises(ValueError, match="not available for live streams"):
        source.iter_frames(reverse=True)
    with pytest.raises(FrameSourceError, match="random access is not available"):
        source.get(0)


def failing_generator(frames: np.ndarray, fail_at: int) -> Iterator[np.ndarray]:
    for idx, frame in enumerate(frames):
        if idx == fail_at:
            raise ConnectionError("camera unplugged")
        yield frame


def test_generator_failing_midway_keeps_frames(caplog: pytest.LogCaptureFixture) -> None:
    frames = random_frames(5)
    with caplog.at_level(logging.WARNING):
        got = list(IteratorSource(failing_generator(frames, 3)))
    assert [idx for idx, _ in got] == [0, 1, 2]
    assert "failed after 3 frames" in caplog.text and "camera unplugged" in caplog.text

    source = IteratorSource(failing_generator(frames, 3), errors="raise")
    got = []
    with pytest.raises(FrameSourceError, match="failed after 3 frames"):
        for item in source:
            got.append(item)
    assert len(got) == 3


def test_bad_in_memory_frames() -> None:
    with pytest.raises(FrameSourceError, match=r"must be \(T, H, W, 3\) uint8"):
        IteratorSource(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(FrameSourceError, match=r"must be \(T, H, W, 3\) uint8"):
        IteratorSource(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(FrameSourceError, match="contains no frames"):
        IteratorSource(iter([]))
    with pytest.raises(FrameSourceError, match=r"frame 0 must be an \(H, W, 3\) uint8 array"):
        IteratorSource([np.zeros((4, 4, 4), np.uint8)])
    mixed = iter([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])
    with pytest.raises(FrameSourceError, match="frame 1 is 4x5, expected 4x4"):
        list(IteratorSource(mixed, name="mixed"))


# ----------------------------------------------------------------------------- factory


def test_open_source_dispatch(tmp_path: Path) -> None:
    frames = random_frames(4, 16, 16)
    video = tmp_path / "clip.mp4"
    write_video(video, frames, fps=5)
    save_pngs(tmp_path / "pngs", ["0.png", "1.png"])

    assert isinstance(open_source(video), VideoFileSource)
    assert isinstance(open_source(str(video)), VideoFileSource)
    assert isinstance(open_source(f"file://{video}"), VideoFileSource)
    assert isinstance(open_source(tmp_path / "pngs"), ImageFolderSource)
    single = open_source(tmp_path / "pngs" / "1.png")
    assert isinstance(single, ImageFolderSource) and single.num_frames == 1
    assert isinstance(open_source(frames), IteratorSource)
    assert isinstance(open_source(frame for frame in frames), IteratorSource)
    source = IteratorSource(frames)
    assert open_source(source) is source
    with pytest.raises(FrameSourceError, match=r"cannot open stream rtsp://127\.0\.0\.1:1/x"):
        open_source("rtsp://127.0.0.1:1/x")
    with pytest.raises(FrameSourceError, match="video file not found"):
        open_source(tmp_path / "missing.mov")
    with pytest.raises(FrameSourceError, match="cannot read frames from a float"):
        open_source(1.5)  # type: ignore[arg-type]
    with pytest.raises(FrameSourceError, match="cannot read frames from a bool"):
        open_source(True)


def test_copied_folder_matches_video_length(tmp_path: Path, bedroom_frames: list[Path]) -> None:
    """A folder and the same frames as a video agree on length, size and (roughly) content."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in bedroom_frames[:4]:
        shutil.copy(path, folder / path.name)
    images = open_source(folder)
    write_video(tmp_path / "clip.mkv", (frame for _, frame in images), fps=24)
    video = open_source(tmp_path / "clip.mkv")
    assert isinstance(images, FrameSource) and isinstance(video, VideoFileSource)
    assert (video.num_frames, video.height, video.width) == (4, images.height, images.width)
    for (_, a), (_, b) in zip(images, video, strict=True):
        assert np.abs(a.astype(np.int16) - b).mean() < 4.0


def test_camera_index_is_a_stream() -> None:
    with pytest.raises(FrameSourceError, match=r"cannot open camera 99"):
        open_source(99)
    assert not StreamSource.seekable
