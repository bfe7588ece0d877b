"""Read-only views of a ``VideoState`` under the official ``inference_state`` keys.

SAM 2 code reads ``inference_state["video_height"]``, ``["num_frames"]``, ``["obj_ids"]``,
``["output_dict_per_obj"]``, ... (tools/vos_inference.py, the demo backend, SAMURAI and
SAM 2 forks). ``VideoState[key]`` answers those keys from the typed state. Lists and dicts are
built on each read, so adding or removing entries changes nothing (assigning a key is refused);
tensors in them are the stored ones, not copies.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from samurai.io.transforms import preprocess_video_frame

if TYPE_CHECKING:
    from samurai.tracking.state import MemoryEntry, VideoState


class StateKeyError(KeyError):
    """An ``inference_state`` key samurai does not keep (one-line message, no quotes added)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FrameImages:
    """``inference_state["images"]``: frames preprocessed for the model on access,
    ``(3, S, S)`` float32 each (the official state holds them all in memory)."""

    def __init__(self, state: VideoState) -> None:
        self._state = state

    def __len__(self) -> int:
        return 0 if self._state.num_frames is None else self._state.num_frames

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        if self._state.image_size is None:
            raise StateKeyError("inference_state['images'] needs a state made by init_state")
        idx = operator.index(frame_idx)
        idx = idx + len(self) if idx < 0 else idx
        if not 0 <= idx < len(self):
            raise IndexError(f"frame {frame_idx} out of range ({len(self)} frames)")
        frame = self._state.source.get(idx)
        image = preprocess_video_frame(frame, self._state.image_size)
        device = self._state.compute_device
        return image if device is None else image.to(device)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))


def _out_dict(entry: MemoryEntry) -> dict[str, Any]:
    """One frame's output as the official ``output_dict`` entries hold it."""
    return {
        "maskmem_features": entry.maskmem_features,
        "maskmem_pos_enc": [entry.maskmem_pos_enc],
        "pred_masks": entry.low_res_logits,
        "obj_ptr": entry.obj_ptr,
        "object_score_logits": torch.tensor([[entry.object_score_logit]]),
        "best_iou_score": torch.tensor([entry.iou]),
        "kf_score": None if entry.kf_score is None else torch.tensor([entry.kf_score]),
    }


def _output_dict_per_obj(state: VideoState) -> dict[int, dict[str, dict[int, Any]]]:
    return {
        idx: {
            "cond_frame_outputs": {f: _out_dict(e) for f, e in sorted(t.cond_memory.items())},
            "non_cond_frame_outputs": {f: _out_dict(e) for f, e in sorted(t.memory.items())},
        }
        for idx, t in enumerate(state.tracks.values())
    }


def _point_inputs(state: VideoState) -> dict[int, dict[int, dict[str, torch.Tensor]]]:
    return {
        idx: {
            f: {"point_coords": p.point_coords, "point_labels": p.point_labels}
            for f, p in sorted(t.prompts.items())
            if p.point_coords is not None and p.point_labels is not None
        }
        for idx, t in enumerate(state.tracks.values())
    }


def _mask_inputs(state: VideoState) -> dict[int, dict[int, torch.Tensor]]:
    return {
        idx: {f: p.mask for f, p in sorted(t.prompts.items()) if p.mask is not None}
        for idx, t in enumerate(state.tracks.values())
    }


def _frames_tracked(state: VideoState) -> dict[int, dict[str, bool]]:
    return {f: {"reverse": r} for f, r in sorted(state.frames_tracked.items())}


def _empty_per_obj(state: VideoState) -> dict[int, dict[str, dict[int, Any]]]:
    # samurai consolidates every prompt at once: nothing is ever pending
    return {
        idx: {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        for idx in range(len(state.tracks))
    }


VIEWS: dict[str, Callable[[VideoState], Any]] = {
    "video_height": lambda s: s.video_height,
    "video_width": lambda s: s.video_width,
    "num_frames": lambda s: s.num_frames,
    "images": FrameImages,
    "device": lambda s: s.compute_device,
    "storage_device": lambda s: s.storage_device or s.compute_device,
    "offload_video_to_cpu": lambda s: True,
    "offload_state_to_cpu": lambda s: (
        s.storage_device is not None and s.storage_device.type == "cpu"
    ),
    "obj_ids": lambda s: list(s.tracks),
    "obj_id_to_idx": lambda s: {o: i for i, o in enumerate(s.tracks)},
    "obj_idx_to_id": lambda s: dict(enumerate(s.tracks)),
    "point_inputs_per_obj": _point_inputs,
    "mask_inputs_per_obj": _mask_inputs,
    "output_dict_per_obj": _output_dict_per_obj,
    "temp_output_dict_per_obj": _empty_per_obj,
    "consolidated_frame_inds": lambda s: {
        "cond_frame_outputs": {f for t in s.tracks.values() for f in t.cond_memory},
        "non_cond_frame_outputs": {f for t in s.tracks.values() for f in t.memory},
    },
    "frames_already_tracked": _frames_tracked,
    "frames_tracked_per_obj": lambda s: {i: _frames_tracked(s) for i in range(len(s.tracks))},
    "tracking_has_started": lambda s: bool(s.frames_tracked),
    "constants": lambda s: {},
}
"""Official ``inference_state`` key -> how its value is read from a ``VideoState``."""


def read_key(state: VideoState, key: str) -> Any:
    """``inference_state[key]`` of the official predictor, read from ``state``."""
    view = VIEWS.get(key) if isinstance(key, str) else None
    if view is None:
        raise StateKeyError(
            f"inference_state has no key {key!r} in samurai; readable keys: {', '.join(VIEWS)}"
        )
    return view(state)


def refuse_write(key: str) -> None:
    """Assigning an ``inference_state`` key: always a one-line ``TypeError`` naming it."""
    what = "is read-only" if key in VIEWS else "is not a key samurai keeps"
    raise TypeError(
        f"inference_state[{key!r}] {what}: change the state through the predictor's methods"
    )
