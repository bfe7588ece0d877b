"""The official SAM 2 video-predictor API over ``VideoPredictor``, so SAM 2 / SAMURAI user code
can switch imports: ``init_state``, ``add_new_points_or_box``, ``propagate_in_video``, ...

The official predictor *is* the model (an ``nn.Module`` subclass); here it has one. The
attributes official code reads on it (``.image_encoder``, ``.num_maskmem``,
``.fill_hole_area``, ``.samurai_mode``, ``.kf_score_weight``, ...) and the ``nn.Module``
methods it calls (``.eval()``, ``.to()``, ``.parameters()``, ``.state_dict()``, ...) are
forwarded to the model and the configs. See ``docs/compatibility.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import torch
from numpy.typing import ArrayLike

from samurai.config import SAMURAI_DEFAULTS, ModelConfig, SamuraiConfig, TrackerConfig
from samurai.io.frames import FrameSourceError, FrameSourceSpec
from samurai.tracking.dam4sam_step import make_stepper
from samurai.tracking.predictor import PredictorStateError, VideoPredictor, as_index
from samurai.tracking.results import FrameResult
from samurai.tracking.state import ObjectTrack, VideoState

Output = tuple[int, list[int], torch.Tensor]
"""``(frame_idx, obj_ids, video_res_masks)``: mask logits (N, 1, H, W) at video resolution."""

_TRACKER_FIELDS = {f.name for f in fields(TrackerConfig)}
_SAMURAI_FIELDS = {f.name for f in fields(SamuraiConfig)}
_MODEL_FIELDS = {f.name for f in fields(ModelConfig)} - {"name", "hiera"}
_OFF_SAMURAI = SamuraiConfig(kf_score_weight=0.15)
"""What the fork's SAM2Base reports for the SAMURAI knobs when SAMURAI is off."""
_DERIVED = {
    "backbone_stride": lambda c: 16,
    "num_feature_levels": lambda c: 3 if c.use_high_res_features_in_sam else 1,
    "sam_prompt_embed_dim": lambda c: c.hidden_dim,
    "sam_image_embedding_size": lambda c: c.image_embedding_size,
}
_OWN = {"model", "tracker", "samurai", "dam4sam", "runtime", "bounded_memory", "stepper"}
_MODULE_METHODS = (
    "parameters",
    "named_parameters",
    "buffers",
    "named_buffers",
    "children",
    "named_children",
    "modules",
    "named_modules",
    "state_dict",
    "load_state_dict",
    "requires_grad_",
)


class VideoSourceError(FrameSourceError, RuntimeError):
    """A video that cannot be opened: a ``ValueError`` here, and an instance of the
    ``RuntimeError`` the official loader raises (e.g. "no images found")."""


def apply_non_overlapping_constraints(masks: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) logits: where an object is not the highest-scoring one, clamp it to <= -10
    (official ``_apply_non_overlapping_constraints``)."""
    if masks.shape[0] <= 1:
        return masks
    winner = torch.argmax(masks, dim=0, keepdim=True)
    ids = torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(winner == ids, masks, torch.clamp(masks, max=-10.0))


class SAM2VideoPredictor(VideoPredictor):
    """``VideoPredictor`` with the method names, return values and attributes of the official
    ``SAM2VideoPredictor`` (SAM 2.1 and the SAMURAI fork)."""

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2VideoPredictor:
        """A predictor of a Hugging Face model id (``"facebook/sam2.1-hiera-tiny"``)."""
        from samurai.compat.builders import build_sam2_video_predictor_hf

        return build_sam2_video_predictor_hf(model_id, **kwargs)

    # ------------------------------------------------- model and config attributes
    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails; the model and configs answer official names
        model = self.__dict__.get("model")
        if model is None or name.startswith("__"):
            raise AttributeError(name)
        if name in model._modules or name in model._parameters or name in model._buffers:
            return getattr(model, name)
        if name in _MODEL_FIELDS:
            return getattr(model.config, name)
        if name in _DERIVED:
            return _DERIVED[name](model.config)
        if name == "mem_dim":
            return model.config.mem_dim
        if name == "samurai_mode":
            return self.samurai is not None
        if name in _TRACKER_FIELDS:
            return getattr(self.tracker, name)
        if name in _SAMURAI_FIELDS:
            return getattr(self.samurai or _OFF_SAMURAI, name)
        if name in _MODULE_METHODS:
            return getattr(model, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN or name.startswith("_") or "model" not in self.__dict__:
            object.__setattr__(self, name, value)
        elif name in _TRACKER_FIELDS:
            self._check_value(name, getattr(self.tracker, name), value)
            self._reconfigure(replace(self.tracker, **{name: value}), self.samurai)
        elif name == "samurai_mode":
            on = self.samurai or SAMURAI_DEFAULTS.get(self.model.config.name, SamuraiConfig())
            self._reconfigure(self.tracker, on if value else None)
        elif name in _SAMURAI_FIELDS:
            if self.samurai is None:
                raise ValueError(f"{name} is a SAMURAI option: set samurai_mode = True first")
            if name != "memory_selection":
                self._check_value(name, getattr(self.samurai, name), value)
            self._reconfigure(self.tracker, replace(self.samurai, **{name: value}))
        elif name in _MODEL_FIELDS or name in _DERIVED:
            raise ValueError(f"{name} is fixed by the model: build a new predictor to change it")
        else:
            object.__setattr__(self, name, value)

    @staticmethod
    def _check_value(name: str, current: Any, value: Any) -> None:
        """``value`` has the type of the option's ``current`` value (an int may be a float)."""
        if isinstance(current, bool):
            kind, ok = "bool", isinstance(value, bool)
        elif isinstance(current, int):
            kind, ok = "int", isinstance(value, int) and not isinstance(value, bool)
        else:
            kind = "a number"
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ValueError(f"{name}={value!r} must be {kind}, like {current!r}")

    def _reconfigure(self, tracker: TrackerConfig, samurai: SamuraiConfig | None) -> None:
        object.__setattr__(self, "tracker", tracker)
        object.__setattr__(self, "samurai", samurai)
        stepper = make_stepper(self.model, tracker, samurai, self.dam4sam)
        object.__setattr__(self, "stepper", stepper)

    # ------------------------------------------------------ nn.Module look-alike
    def eval(self) -> SAM2VideoPredictor:
        """Already in eval mode (inference only); returns self, as ``nn.Module.eval``."""
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> SAM2VideoPredictor:
        """``train(False)`` equals ``eval()``; training is not supported."""
        if mode:
            raise ValueError("samurai's predictor runs inference only: train(True) is refused")
        return self.eval()

    def to(self, *args: Any, **kwargs: Any) -> SAM2VideoPredictor:
        """Move the model (device only; the model keeps float32 weights)."""
        self.model.to(*args, **kwargs)
        return self

    def cpu(self) -> SAM2VideoPredictor:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> SAM2VideoPredictor:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def forward(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("use init_state / add_new_points_or_box / propagate_in_video")

    # ------------------------------------------------------------- object ids
    def _get_obj_num(self, inference_state: VideoState) -> int:
        return len(inference_state.tracks)

    def _obj_id_to_idx(self, inference_state: VideoState, obj_id: int) -> int:
        """Index of an object id; a new id adds an (unprompted) object, as upstream."""
        obj_id = as_index(obj_id, "obj_id")
        if obj_id not in inference_state.tracks:
            inference_state.tracks[obj_id] = ObjectTrack(obj_id=obj_id)
        return list(inference_state.tracks).index(obj_id)

    def _obj_idx_to_id(self, inference_state: VideoState, obj_idx: int) -> int:
        ids = inference_state.obj_ids
        idx = as_index(obj_idx, "obj_idx")
        if not 0 <= idx < len(ids):
            raise ValueError(f"obj_idx {obj_idx} out of range ({len(ids)} objects)")
        return ids[idx]

    # -------------------------------------------------------------- the API
    def _output(self, result: FrameResult) -> Output:
        masks = result.video_res_logits()
        if self.tracker.non_overlap_masks:
            masks = apply_non_overlapping_constraints(masks)
        return result.frame_idx, result.obj_ids, masks

    def init_state(
        self,
        video_path: FrameSourceSpec,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> VideoState:
        """Open a video (mp4/mov/... file, JPEG/PNG folder, ...). Frames are decoded lazily,
        so ``offload_video_to_cpu`` / ``async_loading_frames`` have nothing left to do."""
        del offload_video_to_cpu, async_loading_frames
        try:
            return self.init_video(video_path, offload_state_to_cpu=offload_state_to_cpu)
        except FrameSourceError as exc:
            raise VideoSourceError(str(exc)) from None

    def add_new_points_or_box(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        points: ArrayLike | torch.Tensor | None = None,
        labels: ArrayLike | torch.Tensor | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: ArrayLike | torch.Tensor | None = None,
    ) -> Output:
        """Add clicks and/or a box ``[x0, y0, x1, y1]`` (video pixels) for an object."""
        result = self.add_prompt(
            inference_state,
            frame_idx=frame_idx,
            obj_id=obj_id,
            box=box,
            points=points,
            labels=labels,
            clear_old_points=clear_old_points,
            normalize_coords=normalize_coords,
        )
        return self._output(result)

    add_new_points = add_new_points_or_box

    def add_new_mask(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        mask: ArrayLike | torch.Tensor,
    ) -> Output:
        """Add a 2-D mask for an object on a frame."""
        return self._output(
            self.add_prompt(inference_state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
        )

    def propagate_in_video_preflight(self, inference_state: VideoState) -> None:
        """Check that some object has a prompt (prompts are consolidated as they are added)."""
        if not any(t.cond_memory for t in inference_state.tracks.values()):
            raise PredictorStateError("no prompts: add a box, points or a mask on some frame first")

    def propagate_in_video(
        self,
        inference_state: VideoState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[Output]:
        """Yield ``(frame_idx, obj_ids, video_res_masks)`` for every tracked frame."""
        for result in self.propagate(
            inference_state,
            start=start_frame_idx,
            reverse=reverse,
            max_frames=max_frame_num_to_track,
        ):
            yield self._output(result)

    def clear_all_prompts_in_frame(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        need_output: bool = True,
    ) -> Output | None:
        """Remove an object's prompts on a frame."""
        self.clear_prompts(inference_state, frame_idx, obj_id)
        if not need_output:
            return None
        return self._output(self._frame_result(inference_state, frame_idx))

    def remove_object(  # type: ignore[override]
        self,
        inference_state: VideoState,
        obj_id: int,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list[int], list[tuple[int, torch.Tensor]]]:
        """Remove an object; returns the remaining ids and ``(frame_idx, video_res_masks)`` of
        the frames it was prompted on, re-rendered without it (the official shape)."""
        obj_id = as_index(obj_id, "obj_id")
        if obj_id not in inference_state.tracks:
            if strict:
                raise PredictorStateError(
                    f"cannot remove unknown object id {obj_id}; "
                    f"existing ids: {inference_state.obj_ids}"
                )
            return inference_state.obj_ids, []
        frames = sorted(inference_state.tracks[obj_id].prompted_outputs)
        super().remove_object(inference_state, obj_id)
        updated = []
        if need_output and inference_state.tracks:
            for f in frames:
                frame_idx, _, masks = self._output(self._frame_result(inference_state, f))
                updated.append((frame_idx, masks))
        return inference_state.obj_ids, updated

    def reset_state(self, inference_state: VideoState) -> None:
        """Remove all objects, prompts and tracking results."""
        self.reset(inference_state)
