"""What a video file holds, read from its container without decoding a picture.

`probe_header` gives frame size, frame count and rate from the container and the codec header,
so a service can refuse a video by its resolution or pixel count before decoding anything (a
few hundred KB of H.264 can describe 8192x8192 frames). Containers without a frame count (mkv,
webm) have their packets counted by demuxing, which reads the file but decodes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from samurai.io.frames import FrameSourceError

__all__ = ["VideoHeader", "probe_header", "read_frame"]


@dataclass(frozen=True)
class VideoHeader:
    """A video stream as its container describes it.

    Attributes:
        width: frame width in pixels (0 where the header does not say).
        height: frame height in pixels (0 where the header does not say).
        frames: number of frames (packets counted where the container has no count).
        fps: average frame rate, None where unknown.
        codec: codec name, e.g. ``h264``.
    """

    width: int
    height: int
    frames: int
    fps: float | None
    codec: str

    @property
    def pixels(self) -> int:
        """Decoded pixels of the whole video: frames x width x height."""
        return self.frames * self.width * self.height


def probe_header(path: str | PathLike[str], *, count_packets: bool = True) -> VideoHeader:
    """Read the first video stream's header of ``path`` without decoding.

    Args:
        path: a video file.
        count_packets: where the container has no frame count, count packets (no decoding);
            otherwise ``frames`` is 0 then.

    Raises:
        FrameSourceError: not a readable container, or no video stream in it.
    """
    name = str(Path(path))
    try:
        container = av.open(name)
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise FrameSourceError(f"not a readable video: {name} ({reason})") from exc
    with container:
        if not container.streams.video:
            raise FrameSourceError(f"no video stream in {name}")
        stream = container.streams.video[0]
        context = stream.codec_context
        width = int(context.width or 0) if context is not None else 0
        height = int(context.height or 0) if context is not None else 0
        rate = stream.average_rate or stream.guessed_rate
        frames = int(stream.frames or 0)
        if frames == 0 and count_packets:
            try:
                frames = sum(1 for p in container.demux(stream) if p.size and not p.is_discard)
            except (av.FFmpegError, OSError) as exc:
                raise FrameSourceError(f"cannot read the packets of {name}: {exc}") from exc
        codec = context.name if context is not None else "unknown"
        return VideoHeader(width, height, frames, float(rate) if rate else None, codec)


def read_frame(
    path: str | PathLike[str], frame_idx: int, *, max_side: int | None = None
) -> NDArray[np.uint8]:
    """Frame ``frame_idx`` of a video as ``(H, W, 3)`` uint8 RGB, scaled to fit ``max_side``.

    Frames are counted in decoding output order from the first, as `VideoFileSource` counts
    them. Decoding is single-threaded and the picture is scaled while it is converted to RGB,
    so memory stays at about one full-size frame (for previews in a long-lived server).

    Raises:
        FrameSourceError: unreadable file, or fewer than ``frame_idx + 1`` decodable frames.
    """
    name = str(Path(path))
    try:
        container = av.open(name)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise FrameSourceError(f"not a readable video: {name} ({exc})") from exc
    with container:
        if not container.streams.video:
            raise FrameSourceError(f"no video stream in {name}")
        stream = container.streams.video[0]
        count = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # skipped as VideoFileSource skips undecodable packets
                for frame in frames:
                    if count == frame_idx:
                        return _scaled_rgb(frame, max_side)
                    count += 1
        except (av.FFmpegError, OSError) as exc:
            raise FrameSourceError(f"{name}: reading stopped after {count} frames: {exc}") from exc
    raise FrameSourceError(f"frame {frame_idx} of {name} could not be decoded ({count} frames)")


def _scaled_rgb(frame: av.VideoFrame, max_side: int | None) -> NDArray[np.uint8]:
    width, height = frame.width, frame.height
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    size = {}
    if scale < 1.0:
        size = {"width": max(2, round(width * scale)), "height": max(2, round(height * scale))}
    rgb = frame.to_ndarray(format="rgb24", interpolation="AREA", **size)
    return np.ascontiguousarray(rgb, dtype=np.uint8)
