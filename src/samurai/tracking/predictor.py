"""Video predictor: prompts, propagation and streaming over typed per-video state.

The native API (``init_video``, ``add_prompt``, ``propagate``) returns ``FrameResult``s; the
official SAM 2 names are in ``samurai.tracking.sam2_api``.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator

import numpy as np
import torch
from numpy.typing import ArrayLike

from samurai.allocator import reuse_freed_memory
from samurai.config import (
    Dam4samConfig,
    RuntimeOptions,
    SamuraiConfig,
    TrackerConfig,
    TrackerName,
    TrackingPolicy,
    policy_name,
)
from samurai.io.frames import FrameSourceSpec, open_source
from samurai.modeling.sam2 import NO_OBJ_SCORE, ImageFeatures, Sam2Model
from samurai.tracking.dam4sam_step import make_stepper
from samurai.tracking.prompts import make_mask_prompt, make_point_prompt
from samurai.tracking.results import FrameResult, ObjectResult
from samurai.tracking.state import MemoryEntry, ObjectTrack, Prompt, VideoState
from samurai.tracking.step import StepOutput

logger = logging.getLogger(__name__)


class PredictorStateError(ValueError, RuntimeError):
    """A call the state does not allow yet (e.g. propagating before any prompt): a
    ``ValueError`` here, an instance of ``RuntimeError`` as the official predictor raises."""


def as_index(value: object, name: str) -> int:
    """An integer argument (Python, NumPy or 0-d torch integer); floats, strings and bools are
    refused with a one-line ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def check_mask(mask: ArrayLike | torch.Tensor) -> torch.Tensor:
    """A user mask as a tensor of bool or real numbers without NaN / inf (one-line errors)."""
    if isinstance(mask, torch.Tensor):
        t = mask.detach().cpu()
    else:
        try:
            arr = np.asarray(mask)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"mask must be a 2-D array of numbers or bools: {exc}") from None
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"mask must hold numbers or bools, got dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex() or not (t.dtype == torch.bool or t.is_floating_point() or _is_int(t)):
        raise ValueError(f"mask must hold numbers or bools, got dtype {t.dtype}")
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError("mask contains NaN or infinite values")
    return t


def _is_int(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


class VideoPredictor:
    """Tracks any number of objects through a video with SAM 2, SAMURAI or DAM4SAM.

    Args:
        model: a loaded ``Sam2Model`` (shared, never modified).
        tracker: SAM 2 inference policy.
        samurai: SAMURAI motion-aware candidate choice (and its memory gate without
            ``dam4sam``); None = best predicted IoU.
        dam4sam: DAM4SAM's RAM/DRM memory and preprocessing; with ``samurai`` too, the
            experimental ``samurai+dam`` policy.
        runtime: device, dtype and offload options; ``dtype="bfloat16"`` switches the model
            to bfloat16 compute (``Sam2Model.set_compute_dtype``).
        bounded_memory: drop memories no future frame can select while tracking forward, so
            memory stays flat in video length (results are unchanged).
    """

    def __init__(
        self,
        model: Sam2Model,
        *,
        tracker: TrackerConfig | None = None,
        samurai: SamuraiConfig | None = None,
        dam4sam: Dam4samConfig | None = None,
        runtime: RuntimeOptions | None = None,
        bounded_memory: bool = True,
    ) -> None:
        self.model = model
        self.tracker = tracker or TrackerConfig()
        self.samurai = samurai
        self.dam4sam = dam4sam
        self.runtime = runtime or RuntimeOptions()
        if self.runtime.reuse_freed_memory and model.device.type == "cpu":
            reuse_freed_memory()
        if self.runtime.dtype == "bfloat16":
            # split-bfloat16 heavy layers; float16 stays an autocast option of the caller
            model.set_compute_dtype(torch.bfloat16)
        self.bounded_memory = bounded_memory
        self.stepper = make_stepper(model, self.tracker, samurai, dam4sam)

    @classmethod
    def from_policy(
        cls,
        model: Sam2Model,
        policy: TrackingPolicy,
        *,
        runtime: RuntimeOptions | None = None,
        bounded_memory: bool = True,
    ) -> VideoPredictor:
        """A predictor running ``policy`` (see `samurai.api.split_overrides`)."""
        return cls(
            model,
            tracker=policy.tracker,
            samurai=policy.samurai,
            dam4sam=policy.dam4sam,
            runtime=runtime,
            bounded_memory=bounded_memory,
        )

    @property
    def tracker_name(self) -> TrackerName:
        """The policy this predictor runs: ``samurai``, ``sam2``, ``dam4sam``, ``samurai+dam``."""
        return policy_name(self.samurai, self.dam4sam)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ video
    def init_video(
        self, source: FrameSourceSpec, *, offload_state_to_cpu: bool | None = None
    ) -> VideoState:
        """Open a video (file, frame folder, stream, array or iterator) for tracking."""
        src = open_source(source)
        if src.height <= 0 or src.width <= 0 or src.num_frames == 0:
            src.close()
            raise ValueError(
                f"video {src.name} has no pixels ({src.num_frames} frames of "
                f"{src.width}x{src.height})"
            )
        offload = (
            self.runtime.offload_state_to_cpu
            if offload_state_to_cpu is None
            else offload_state_to_cpu
        )
        return VideoState(
            source=src,
            video_height=src.height,
            video_width=src.width,
            num_frames=src.num_frames,
            storage_device=torch.device("cpu") if offload else None,
            image_size=self.image_size,
            compute_device=self.device,
        )

    def features(self, state: VideoState, frame_idx: int) -> ImageFeatures:
        """Encoded features of a frame (computed once, shared by all objects)."""
        feats = state.features.get(frame_idx)
        if feats is None:
            image = self.stepper.preprocess(state.source.get(frame_idx), self.image_size)
            feats = self.encode_frame(image)
            state.features.put(frame_idx, feats)
        return feats

    @torch.inference_mode()
    def encode_frame(self, image: torch.Tensor) -> ImageFeatures:
        """Encode one preprocessed frame (3, S, S)."""
        return self.model.encode_image(image[None].to(self.device))

    def _check_frame(self, state: VideoState, frame_idx: int) -> int:
        idx = as_index(frame_idx, "frame_idx")
        if idx < 0 or (state.num_frames is not None and idx >= state.num_frames):
            raise ValueError(
                f"frame index {frame_idx} out of range (video has {state.num_frames} frames)"
            )
        return idx

    # ---------------------------------------------------------------- prompts
    @torch.inference_mode()
    def add_prompt(
        self,
        state: VideoState,
        *,
        frame_idx: int,
        obj_id: int,
        box: ArrayLike | torch.Tensor | None = None,
        points: ArrayLike | torch.Tensor | None = None,
        labels: ArrayLike | torch.Tensor | None = None,
        mask: ArrayLike | torch.Tensor | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
    ) -> FrameResult:
        """Prompt an object on a frame (box ``[x0, y0, x1, y1]``, clicks, or a mask).

        Coordinates are pixels of the original video. A new ``obj_id`` adds an object, on any
        frame, before or after tracking started. Returns every object's mask on that frame.
        """
        idx = self._check_frame(state, frame_idx)
        obj_id = as_index(obj_id, "obj_id")
        track = state.tracks.get(obj_id) or ObjectTrack(obj_id=obj_id)
        if mask is not None:
            if box is not None or points is not None:
                raise ValueError("give either a mask or a box/points prompt, not both")
            prompt = make_mask_prompt(check_mask(mask), image_size=self.image_size)
        else:
            if box is not None and not clear_old_points:
                raise ValueError(
                    "a box prompt replaces the frame's clicks: use clear_old_points=True"
                )
            prompt = make_point_prompt(
                box=box,
                points=points,
                labels=labels,
                video_size=(state.video_height, state.video_width),
                image_size=self.image_size,
                normalize_coords=normalize_coords,
                previous=None if clear_old_points else track.prompts.get(idx),
            )
        prompt = Prompt(
            point_coords=None
            if prompt.point_coords is None
            else prompt.point_coords.to(self.device),
            point_labels=None
            if prompt.point_labels is None
            else prompt.point_labels.to(self.device),
            mask=None if prompt.mask is None else prompt.mask.to(self.device),
        )
        state.tracks[obj_id] = track
        result = self._apply_prompt(state, track, idx, prompt)
        return self._frame_result(state, idx, {obj_id: result})

    def _apply_prompt(
        self, state: VideoState, track: ObjectTrack, idx: int, prompt: Prompt
    ) -> None:
        is_init = idx not in state.frames_tracked or not track.cond_memory
        previous = track.entry(idx)
        prev_logits = previous.low_res_logits.to(self.device) if previous is not None else None
        self.stepper.storage_device = state.storage_device
        out = self.stepper.prompt(
            track,
            idx,
            self.features(state, idx),
            prompt,
            is_init_cond_frame=is_init,
            reverse=state.frames_tracked.get(idx, False),
            num_frames=state.num_frames,
            prev_logits=prev_logits,
            video_size=(state.video_height, state.video_width),
        )
        track.prompts[idx] = prompt
        track.prompted_outputs.add(idx)
        track.motion = out.motion
        if out.entry.is_cond:
            track.memory.pop(idx, None)
            track.cond_memory[idx] = out.entry
        else:
            track.cond_memory.pop(idx, None)
            track.memory[idx] = out.entry
        return out.result

    # ------------------------------------------------------------ propagation
    def propagate(
        self,
        state: VideoState,
        *,
        start: int | None = None,
        reverse: bool = False,
        max_frames: int | None = None,
    ) -> Iterator[FrameResult]:
        """Track all prompted objects frame by frame, yielding one ``FrameResult`` per frame.

        Args:
            start: first frame (default: the earliest prompted frame).
            reverse: track towards frame 0.
            max_frames: track at most this many frames after ``start`` (default: all).
        """
        cond = [f for t in state.tracks.values() for f in t.cond_memory]
        if not cond:
            raise PredictorStateError("no prompts: add a box, points or a mask on some frame first")
        if not state.source.seekable:
            raise ValueError(
                f"{state.source.name} is a live source: use Tracker.step for live streams "
                "(propagate, start frames and reverse tracking need a file or folder)"
            )
        num_frames = state.num_frames
        assert num_frames is not None
        start = min(cond) if start is None else self._check_frame(state, start)
        if max_frames is not None:
            max_frames = as_index(max_frames, "max_frame_num_to_track")
            if max_frames < 0:
                raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frames}")
        count = num_frames if max_frames is None else max_frames
        if reverse:
            end = max(start - count, 0)
            order = range(start, end - 1, -1) if start > 0 else range(0)
        else:
            end = min(start + count, num_frames - 1)
            order = range(start, end + 1)
        for frame_idx in order:
            yield self.track_frame(state, frame_idx, reverse=reverse)

    @torch.inference_mode()
    def track_frame(
        self, state: VideoState, frame_idx: int, *, reverse: bool = False
    ) -> FrameResult:
        """Track every object on one frame (prompted frames reuse their prompt output)."""
        fresh: dict[int, ObjectResult] = {}
        for track in state.tracks.values():
            if frame_idx in track.prompted_outputs or not track.cond_memory:
                continue
            if not self.stepper.tracks_frame(track, frame_idx, reverse=reverse):
                continue
            self.stepper.storage_device = state.storage_device
            out = self.stepper.track(
                track,
                frame_idx,
                self.features(state, frame_idx),
                reverse=reverse,
                num_frames=state.num_frames,
            )
            self._remember(state, track, frame_idx, out, reverse=reverse)
            fresh[track.obj_id] = out.result
        state.frames_tracked[frame_idx] = reverse
        return self._frame_result(state, frame_idx, fresh)

    def _remember(
        self,
        state: VideoState,
        track: ObjectTrack,
        frame_idx: int,
        out: StepOutput,
        *,
        reverse: bool,
    ) -> None:
        track.memory[frame_idx] = out.entry
        track.motion = out.motion
        if self.bounded_memory and not reverse:
            self.stepper.forget_unreachable(track, frame_idx, state.num_frames)

    def _frame_result(
        self, state: VideoState, frame_idx: int, fresh: dict[int, ObjectResult] | None = None
    ) -> FrameResult:
        fresh = fresh or {}
        objects = [
            fresh[t.obj_id] if t.obj_id in fresh else self._stored_result(t, t.entry(frame_idx))
            for t in state.tracks.values()
        ]
        return FrameResult(
            frame_idx=frame_idx, objects=objects, video_size=(state.video_height, state.video_width)
        )

    def _stored_result(self, track: ObjectTrack, entry: MemoryEntry | None) -> ObjectResult:
        h = self.image_size // 4
        if entry is None:  # not tracked on this frame (e.g. before its first prompt)
            return ObjectResult(
                obj_id=track.obj_id,
                low_res_logits=torch.full((1, 1, h, h), NO_OBJ_SCORE),
                object_score_logit=NO_OBJ_SCORE,
                iou=0.0,
                present=False,
            )
        return ObjectResult(
            obj_id=track.obj_id,
            low_res_logits=entry.low_res_logits.to(self.device),
            object_score_logit=entry.object_score_logit,
            iou=entry.iou,
            present=entry.object_score_logit > self.tracker.min_obj_score_logits,
        )

    # ----------------------------------------------------------------- editing
    def remove_object(self, state: VideoState, obj_id: int) -> None:
        """Forget an object and all its prompts and memories."""
        if obj_id not in state.tracks:
            raise ValueError(f"unknown object id {obj_id}; known: {state.obj_ids}")
        del state.tracks[obj_id]

    def clear_prompts(self, state: VideoState, frame_idx: int, obj_id: int) -> None:
        """Remove an object's prompts (and their output) on one frame."""
        if obj_id not in state.tracks:
            raise ValueError(f"unknown object id {obj_id}; known: {state.obj_ids}")
        track = state.tracks[obj_id]
        idx = self._check_frame(state, frame_idx)
        if track.dam is not None:
            # a DAM4SAM object has one prompt (its init frame); clearing it resets the object
            if idx == track.dam.init_frame:
                state.tracks[obj_id] = ObjectTrack(obj_id=obj_id)
            return
        track.prompts.pop(idx, None)
        track.prompted_outputs.discard(idx)
        track.cond_memory.pop(idx, None)
        track.memory.pop(idx, None)

    def reset(self, state: VideoState) -> None:
        """Remove every object, prompt and memory (the video stays open)."""
        state.tracks.clear()
        state.frames_tracked.clear()
