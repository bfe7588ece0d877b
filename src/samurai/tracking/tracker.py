"""Streaming tracker: frames are pushed one at a time (files, cameras, any iterator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from samurai.io.frames import Frame, FrameSource, FrameSourceError
from samurai.modeling.sam2 import Sam2Model
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.results import FrameResult, ObjectResult
from samurai.tracking.state import VideoState


class _PushSource(FrameSource):
    """Holds only the frame being tracked; nothing older is kept."""

    seekable = True

    def __init__(self) -> None:
        self.name = "stream"
        self.height = self.width = 0
        self.num_frames = None
        self._idx = -1
        self._frame: Frame | None = None

    def push(self, frame_idx: int, frame: Frame) -> None:
        if self._frame is None:
            self.height, self.width = frame.shape[:2]
        elif frame.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"frame {frame_idx} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the stream started at {self.width}x{self.height}"
            )
        self._idx, self._frame = frame_idx, frame

    def get(self, frame_idx: int) -> Frame:
        if frame_idx != self._idx or self._frame is None:
            raise FrameSourceError(f"frame {frame_idx} is no longer available in a stream")
        return self._frame


@dataclass
class _PendingPrompt:
    obj_id: int
    kwargs: dict[str, Any]


def _as_frame(frame: ArrayLike | torch.Tensor) -> Frame:
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"a frame must be an (H, W, 3) uint8 RGB array, got {arr.dtype} {arr.shape}"
        )
    return np.ascontiguousarray(arr)


class Tracker:
    """Track objects in a stream of frames with bounded memory.

    ``add_object`` prompts apply to the next frame given to ``step``; call it again later to
    correct an object or add a new one. Built like ``build_sam2_video_predictor``: a variant
    name or an official config name; ``samurai_mode`` None follows the name (SAMURAI on for
    variant names and ``configs/samurai/...``, off for ``configs/sam2*/...``); ``tracker``
    (``"samurai"``, ``"sam2"``, ``"dam4sam"``, ``"samurai+dam"``) overrides both.
    """

    def __init__(
        self,
        variant_or_model: str | Sam2Model | VideoPredictor = "sam2.1_hiera_t",
        checkpoint: Any = None,
        device: str | torch.device = "cpu",
        samurai_mode: bool | None = None,
        tracker: str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(variant_or_model, VideoPredictor):
            if tracker is not None or samurai_mode is not None or overrides:
                raise ValueError("a ready VideoPredictor brings its own policy and options")
            self.predictor = variant_or_model
        elif isinstance(variant_or_model, Sam2Model):
            from samurai.api import split_overrides

            split = split_overrides(
                variant_or_model.config,
                samurai_mode=samurai_mode is not False,
                tracker=tracker,
                overrides=overrides,
            )
            self.predictor = VideoPredictor.from_policy(variant_or_model, split.policy)
        else:
            # official config names too (configs/samurai/..., configs/sam2.1/...)
            from samurai.compat.builders import build_sam2_video_predictor

            self.predictor = build_sam2_video_predictor(
                variant_or_model,
                checkpoint,
                device,
                samurai_mode=samurai_mode,
                tracker=tracker,
                **overrides,
            )
        self._source = _PushSource()
        self.state: VideoState | None = None
        self.frame_idx = 0
        self._pending: list[_PendingPrompt] = []

    def add_object(
        self,
        obj_id: int,
        *,
        box: ArrayLike | None = None,
        points: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        mask: ArrayLike | None = None,
    ) -> None:
        """Prompt an object (box ``[x0, y0, x1, y1]`` pixels, clicks or mask) on the next frame."""
        if box is None and points is None and mask is None:
            raise ValueError("add_object needs a box, points with labels, or a mask")
        kwargs = {"box": box, "points": points, "labels": labels, "mask": mask}
        self._pending.append(_PendingPrompt(obj_id, kwargs))

    def step(self, frame: ArrayLike | torch.Tensor) -> FrameResult:
        """Track all objects on the next frame (H, W, 3) uint8 RGB."""
        arr = _as_frame(frame)
        idx = self.frame_idx
        self._source.push(idx, arr)
        if self.state is None:
            self.state = VideoState(
                source=self._source,
                video_height=arr.shape[0],
                video_width=arr.shape[1],
                num_frames=None,
            )
        pending, self._pending = self._pending, []
        prompted: dict[int, ObjectResult] = {}
        for p in pending:
            out = self.predictor.add_prompt(self.state, frame_idx=idx, obj_id=p.obj_id, **p.kwargs)
            prompted[p.obj_id] = out.object(p.obj_id)
        if not self.state.tracks:
            raise ValueError("no objects to track: call add_object(obj_id, box=...) first")
        result = self.predictor.track_frame(self.state, idx)
        self.frame_idx += 1
        if not prompted:
            return result
        # Prompted objects report their prompt step (with its details), not the stored copy.
        objects = [prompted.get(o.obj_id, o) for o in result.objects]
        return FrameResult(frame_idx=idx, objects=objects, video_size=result.video_size)

    def reset(self) -> None:
        """Forget every object and start a new stream."""
        self._source = _PushSource()
        self.state = None
        self.frame_idx = 0
        self._pending = []
