"""Lazy frame sources: the `FrameSource` interface, JPEG/PNG folders, in-memory frames, and the
`open_source` factory. Video files and live streams (PyAV) are in `samurai.io.video_reader`.

Every source yields ``(frame_idx, frame)`` pairs, ``frame`` being a fresh, writable, C-contiguous
``(H, W, 3)`` uint8 RGB array that the caller owns. Nothing is decoded up front and a source keeps
at most a few frames (a small LRU for random access, one chunk for reverse iteration), so memory
stays flat in video length. Sources are not thread-safe; give each thread its own.
"""

from __future__ import annotations

import logging
import operator
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeAlias, TypeVar, Union

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "Frame",
    "FrameSource",
    "FrameSourceError",
    "FrameSourceSpec",
    "ImageFolderSource",
    "IteratorSource",
    "open_source",
    "sort_frame_files",
]

logger = logging.getLogger(__name__)

Frame: TypeAlias = NDArray[np.uint8]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_S = TypeVar("_S", bound="FrameSource")


class FrameSourceError(ValueError):
    """A source that cannot be opened or read: missing, not a video, empty, or bad frames."""


class FrameSource:
    """Frames of one video, decoded lazily: the interface every source implements.

    Seekable sources implement ``_read(idx)``; live ones ``_position()`` and ``_iter_live(stop)``.

    Attributes:
        name: path, URL or description, used in messages.
        height: frame height in pixels.
        width: frame width in pixels.
        fps: frames per second, None where unknown.
        num_frames: number of frames, None for live streams and unsized iterators.
        seekable: whether ``get``, ``reverse`` and ``start`` offsets are available.
    """

    name: str
    height: int
    width: int
    fps: float | None = None
    num_frames: int | None = None
    seekable: bool = False

    def iter_frames(
        self, start: int = 0, stop: int | None = None, *, reverse: bool = False
    ) -> Iterator[tuple[int, Frame]]:
        """Yield ``(frame_idx, frame)`` for ``start <= frame_idx < stop``, lazily.

        Args:
            start: first frame index (>= 0). Live sources accept only 0 or their current position.
            stop: end index (exclusive), clamped to ``num_frames``; None = to the end.
            reverse: yield the same range last frame first (seekable sources only).

        Raises:
            ValueError: a negative ``start``, ``stop < start``, or reverse iteration / start
                offsets on a live source.
        """
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"{self.name}: invalid frame range start={start} stop={stop}")
        if self.seekable:
            assert self.num_frames is not None, "seekable sources know their length"
            end = self.num_frames if stop is None else min(stop, self.num_frames)
            return self._iter_range(range(start, max(start, end)), reverse)
        position = self._position()
        if reverse or start not in (0, position):
            raise ValueError(
                f"{self.name} is a live source: reverse iteration and start offsets are not "
                "available for live streams"
            )
        return self._iter_live(stop)

    def get(self, frame_idx: int) -> Frame:
        """Frame ``frame_idx`` as ``(H, W, 3)`` uint8 RGB (seekable sources).

        Raises:
            IndexError: ``frame_idx`` outside ``[0, num_frames)``.
            FrameSourceError: a live source, or a frame that cannot be decoded.
        """
        if not self.seekable:
            raise FrameSourceError(f"{self.name} is a live source: random access is not available")
        idx = operator.index(frame_idx)
        if self.num_frames is None or not 0 <= idx < self.num_frames:
            raise IndexError(f"frame {idx} out of range for {self.name} ({self.num_frames} frames)")
        return self._read(idx)

    def close(self) -> None:
        """Release files and decoders; idempotent."""

    def __iter__(self) -> Iterator[tuple[int, Frame]]:
        return self.iter_frames()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, size={self.width}x{self.height}, "
            f"num_frames={self.num_frames}, fps={self.fps})"
        )

    def _iter_range(self, frames: range, reverse: bool) -> Iterator[tuple[int, Frame]]:
        """Seekable sources: frames in ``frames``, forward or reversed."""
        for idx in reversed(frames) if reverse else frames:
            yield idx, self._read(idx)

    # Each source overrides the hooks of its kind; the base versions say which one is missing.
    def _read(self, idx: int) -> Frame:
        """Seekable sources: frame ``idx``."""
        raise FrameSourceError(f"{self.name}: {type(self).__name__} cannot read frames by index")

    def _position(self) -> int:
        """Live sources: index of the next frame."""
        raise FrameSourceError(f"{self.name}: {type(self).__name__} is not a live source")

    def _iter_live(self, stop: int | None) -> Iterator[tuple[int, Frame]]:
        """Live sources: frames from the current position up to ``stop``."""
        raise FrameSourceError(f"{self.name}: {type(self).__name__} is not a live source")


# ----------------------------------------------------------------------------- in-memory frames


class IteratorSource(FrameSource):
    """Frames from a ``(T, H, W, 3)`` array, a list, or any iterable (e.g. a generator).

    Arrays and sequences are seekable; other iterables are read once, like a live stream. Each
    frame is checked (``(H, W, 3)`` uint8, the first frame's size) and copied. An iterable that
    raises mid-way ends the iteration with a logged warning (``errors="warn"``, frames already
    yielded are kept) or raises `FrameSourceError` (``errors="raise"``).
    """

    def __init__(
        self,
        frames: Iterable[Frame] | NDArray[np.uint8],
        *,
        name: str | None = None,
        fps: float | None = None,
        errors: Literal["warn", "raise"] = "warn",
    ) -> None:
        self.fps, self._errors = fps, errors
        self._iterator: Iterator[Frame] | None = None
        self._sequence: Sequence[Frame] | NDArray[np.uint8] | None = None
        self._pending: Frame | None = None
        self._next_idx = 0
        if isinstance(frames, np.ndarray):
            self.name = name or f"array{tuple(frames.shape)}"
            if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
                raise FrameSourceError(
                    f"{self.name}: frame array must be (T, H, W, 3) uint8, "
                    f"got {frames.shape} {frames.dtype}"
                )
        else:
            self.name = name or f"{type(frames).__name__} of frames"
        if isinstance(frames, (np.ndarray, Sequence)):
            self._sequence, self.seekable, self.num_frames = frames, True, len(frames)
            first = frames[0] if len(frames) else None
        else:
            self._iterator = iter(frames)
            first = self._pending = self._pull()
        if first is None:
            raise FrameSourceError(f"{self.name}: contains no frames")
        self.height, self.width = _check_frame(first, 0, self.name, None)

    def _read(self, idx: int) -> Frame:
        assert self._sequence is not None
        return _check_copy(self._sequence[idx], idx, self.name, (self.height, self.width))

    def _position(self) -> int:
        return self._next_idx

    def _iter_live(self, stop: int | None) -> Iterator[tuple[int, Frame]]:
        while stop is None or self._next_idx < stop:
            frame, self._pending = self._pending, None
            if frame is None:
                frame = self._pull()
            if frame is None:
                return
            idx = self._next_idx
            self._next_idx += 1
            yield idx, _check_copy(frame, idx, self.name, (self.height, self.width))

    def _pull(self) -> Frame | None:
        """Next frame of the iterator, None once it is exhausted or has failed."""
        if self._iterator is None:
            return None
        try:
            return next(self._iterator)
        except StopIteration:
            pass
        except Exception as exc:
            message = f"{self.name}: frame iterator failed after {self._next_idx} frames: {exc!r}"
            if self._errors == "raise":
                raise FrameSourceError(message) from exc
            logger.warning("%s; ending the video there", message)
        self._iterator = None
        return None


def _check_frame(
    frame: object, idx: int, name: str, size: tuple[int, int] | None
) -> tuple[int, int]:
    """``(height, width)`` of a valid ``(H, W, 3)`` uint8 frame of the expected size."""
    if not (
        isinstance(frame, np.ndarray)
        and frame.ndim == 3
        and frame.shape[2] == 3
        and frame.dtype == np.uint8
    ):
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise FrameSourceError(
            f"{name}: frame {idx} must be an (H, W, 3) uint8 array, got {shape} {dtype}"
        )
    height, width = frame.shape[:2]
    if size is not None and (height, width) != size:
        raise FrameSourceError(
            f"{name}: frame {idx} is {width}x{height}, expected {size[1]}x{size[0]}"
        )
    return height, width


def _check_copy(frame: object, idx: int, name: str, size: tuple[int, int]) -> Frame:
    _check_frame(frame, idx, name, size)
    return np.array(frame, dtype=np.uint8, order="C", copy=True)


# ----------------------------------------------------------------------------- image folders


def sort_frame_files(paths: Iterable[Path]) -> list[Path]:
    """Frame order of an image folder.

    The official SAM 2 loader sorts by ``int(stem)`` (``00012.jpg``); names that are not plain
    integers sort by their last integer (``frame_12.png``), and anything else by name.
    """
    paths = list(paths)
    try:
        return sorted(paths, key=lambda p: (int(p.stem), p.name))
    except ValueError:
        pass
    numbers = [re.findall(r"\d+", p.stem) for p in paths]
    if all(numbers):
        last = {p: int(found[-1]) for p, found in zip(paths, numbers, strict=True)}
        return sorted(paths, key=lambda p: (last[p], p.name))
    return sorted(paths, key=lambda p: p.name)


class ImageFolderSource(FrameSource):
    """JPEG/PNG frames of a folder (or an explicit list of image files), decoded with PIL.

    Frames decode exactly as ``np.array(Image.open(path).convert("RGB"))``, like the official
    SAM 2 loader, in `sort_frame_files` order. All images must have the first one's size.
    """

    seekable = True

    def __init__(
        self, path: str | PathLike[str] | Sequence[str | PathLike[str]], *, fps: float | None = None
    ) -> None:
        if isinstance(path, (str, PathLike)):
            folder = Path(path)
            self.name = str(folder)
            if not folder.is_dir():
                raise FrameSourceError(f"image folder not found: {folder}")
            files = [
                p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            ]
            self.files = sort_frame_files(files)
            if not self.files:
                raise FrameSourceError(f"no JPEG or PNG frames in folder {folder}")
        else:
            self.files = [Path(p) for p in path]
            if not self.files:
                raise FrameSourceError("empty list of image files")
            self.name = str(self.files[0].parent)
            missing = [p for p in self.files if not p.is_file()]
            if missing:
                raise FrameSourceError(f"image file not found: {missing[0]}")
        self.fps, self.num_frames = fps, len(self.files)
        try:
            with Image.open(self.files[0]) as image:
                self.width, self.height = image.size
        except (OSError, ValueError) as exc:
            raise FrameSourceError(f"cannot read image {self.files[0]}: {exc}") from exc

    def _read(self, idx: int) -> Frame:
        path = self.files[idx]
        try:
            with Image.open(path) as image:
                frame = np.array(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise FrameSourceError(f"cannot read image {path}: {exc}") from exc
        if frame.shape[:2] != (self.height, self.width):
            raise FrameSourceError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]}, expected {self.width}x{self.height} "
                f"like {self.files[0].name}"
            )
        return frame


# ----------------------------------------------------------------------------- factory

FrameSourceSpec: TypeAlias = Union[
    str, "PathLike[str]", int, NDArray[np.uint8], Iterable[Frame], FrameSource
]


def open_source(spec: FrameSourceSpec) -> FrameSource:
    """Open frames from whatever the caller has.

    Args:
        spec: a video file path (mp4, mov, mkv, avi, webm, ...) -> `VideoFileSource`; a folder
            of JPEG/PNG frames or one image file -> `ImageFolderSource`; a URL (``rtsp://``,
            ``http://``, ...), ``/dev/videoN`` or an int camera index -> `StreamSource`; a
            ``(T, H, W, 3)`` uint8 array or an iterable of ``(H, W, 3)`` uint8 arrays ->
            `IteratorSource`; a `FrameSource` is returned unchanged.

    Raises:
        FrameSourceError: the source is missing, unreadable, empty, or of an unknown kind.
    """
    # video_reader subclasses FrameSource, so it can only be imported once this module exists.
    from samurai.io.video_reader import StreamSource, VideoFileSource

    if isinstance(spec, FrameSource):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        return StreamSource(spec)
    if isinstance(spec, (str, PathLike)):
        text = os.fspath(spec)
        if text.startswith("file://"):
            text = text[len("file://") :]
        elif _URL.match(text) or text.startswith("/dev/video"):
            return StreamSource(text)
        path = Path(text)
        if path.is_dir():
            return ImageFolderSource(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource([path])
        return VideoFileSource(path)
    if isinstance(spec, (np.ndarray, Iterable)):
        return IteratorSource(spec)
    raise FrameSourceError(
        f"cannot read frames from a {type(spec).__name__}: expected a path, URL, camera index, "
        "(T, H, W, 3) uint8 array or iterable of frames"
    )
