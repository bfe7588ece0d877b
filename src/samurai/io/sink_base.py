"""What every result sink shares: the `ResultSink` protocol, `VideoInfo`, the absent-box policies
(see `samurai.io.sinks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from samurai.io.frames import Frame, FrameSource
from samurai.tracking.results import FrameResult

__all__ = ["AbsentBox", "ResultSink", "VideoInfo", "video_masks"]

AbsentBox = Literal["zero", "last", "predicted"]


@dataclass(frozen=True)
class VideoInfo:
    """What sinks learn about the video before its first frame.

    Attributes:
        name: path, URL or description of the video (written into ``masks.json``).
        height: frame height in pixels.
        width: frame width in pixels.
        fps: frames per second, None where unknown (the overlay then uses 30).
        num_frames: number of frames, None where unknown.
    """

    name: str
    height: int
    width: int
    fps: float | None = None
    num_frames: int | None = None

    @classmethod
    def from_source(cls, source: FrameSource) -> VideoInfo:
        return cls(source.name, source.height, source.width, source.fps, source.num_frames)


class ResultSink(Protocol):
    """Something that stores per-frame results; see the module docstring for file naming."""

    def open(self, video_info: VideoInfo) -> None: ...

    def write(self, frame: Frame | None, result: FrameResult) -> None: ...

    def close(self, complete: bool) -> None: ...


def video_masks(result: FrameResult) -> NDArray[np.bool_]:
    """``(N, H, W)`` bool masks at video resolution, on the CPU."""
    return result.masks().cpu().numpy()
