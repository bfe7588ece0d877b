"""Streamed video encoding with PyAV: RGB frames in, H.264 (or VP9 for .webm) yuv420p out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

# libx264 CRF 18 is visually lossless; "veryfast" encodes 720p at about 135 fps on 2 cores.
_DEFAULT_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", "preset": "veryfast"},
    "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"},
}


def default_codec(path: str | Path) -> str:
    """Codec for a file name: VP9 for ``.webm`` (the only codecs WebM allows), else H.264."""
    return "libvpx-vp9" if Path(path).suffix.lower() == ".webm" else "libx264"


class VideoWriter:
    """Encode RGB frames one at a time; the size is fixed by the first frame.

    yuv420p needs even sizes, so an odd height or width is padded by repeating the last row or
    column (the file is then one pixel larger than the frames). Not thread-safe.

    Example:
        >>> with VideoWriter("out.mp4", fps=30) as writer:  # doctest: +SKIP
        ...     for frame in frames:
        ...         writer.write(frame)
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction = 30,
        *,
        codec: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        """Open ``path`` for writing (the container format follows the suffix).

        Args:
            path: output file, e.g. ``out.mp4``, ``out.mkv``, ``out.webm``.
            fps: frame rate; ``29.97`` style values are kept as exact fractions.
            codec: PyAV encoder name; default ``libvpx-vp9`` for ``.webm``, else ``libx264``.
            options: encoder options, replacing the defaults (CRF 18 / veryfast for libx264).
        """
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.codec = codec or default_codec(self.path)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.options = dict(_DEFAULT_OPTIONS.get(self.codec, {}) if options is None else options)
        self.frames_written = 0
        try:
            self._container = av.open(str(self.path), mode="w")
        except av.FFmpegError as exc:
            raise ValueError(f"cannot create video file {self.path}: {exc}") from exc
        self._stream: av.VideoStream | None = None

    def write(self, frame: NDArray[np.uint8]) -> None:
        """Encode one ``(H, W, 3)`` uint8 RGB frame; every frame must have the first one's size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"{self.path}: frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}"
            )
        height, width = frame.shape[:2]
        if self._stream is None:
            self._stream = self._open_stream(height, width)
        elif (height + height % 2, width + width % 2) != (self._stream.height, self._stream.width):
            raise ValueError(
                f"{self.path}: frame {self.frames_written} is {width}x{height}, expected "
                f"{self._stream.width}x{self._stream.height}"
            )
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        # cv2's I420 conversion is the inverse of the one the frame sources decode with.
        yuv = np.asarray(
            cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420), np.uint8
        )
        video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.rate
        self._container.mux(self._stream.encode(video_frame))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; idempotent."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None  # type: ignore[assignment]

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open_stream(self, height: int, width: int) -> av.VideoStream:
        stream = self._container.add_stream(self.codec, rate=self.rate, options=self.options)
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"{self.codec} is not a video codec")
        stream.height, stream.width = height + height % 2, width + width % 2
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.rate
        return stream


def write_video(
    path: str | Path,
    frames: Iterable[NDArray[np.uint8]],
    fps: float | Fraction = 30,
    *,
    codec: str | None = None,
    options: dict[str, str] | None = None,
) -> int:
    """Encode ``(H, W, 3)`` uint8 RGB frames (any iterable, consumed lazily) into a video file.

    Args:
        path: output file; ``.mp4``/``.mov``/``.mkv``/``.avi`` get H.264, ``.webm`` gets VP9.
        frames: RGB frames of one size; odd sizes are padded to even (see `VideoWriter`).
        fps: frame rate.
        codec: PyAV encoder name overriding the default for the suffix.
        options: encoder options replacing the defaults.

    Returns:
        The number of frames written.
    """
    with VideoWriter(path, fps, codec=codec, options=options) as writer:
        for frame in frames:
            writer.write(frame)
    if writer.frames_written == 0:
        logger.warning("%s: no frames were written", writer.path)
    return writer.frames_written
