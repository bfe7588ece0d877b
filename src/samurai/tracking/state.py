"""Typed per-video and per-object tracking state (the model never holds any of it)."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from samurai.io.frames import FrameSource
from samurai.tracking.motion import MotionState
from samurai.tracking.state_view import VIEWS, read_key, refuse_write

if TYPE_CHECKING:
    from samurai.modeling.sam2 import ImageFeatures


@dataclass
class Prompt:
    """User input for one object on one frame, in model-resolution coordinates.

    Attributes:
        point_coords: (1, N, 2) float32 pixels of the S x S model input (x, y), or None.
        point_labels: (1, N) int32: 1 positive, 0 negative, 2/3 box corners, or None.
        mask: (1, 1, S, S) float32 0/1 mask at model resolution, or None.
    """

    point_coords: torch.Tensor | None = None
    point_labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass
class MemoryEntry:
    """What one tracked (or prompted) frame leaves in an object's memory bank.

    Attributes:
        frame_idx: the frame.
        maskmem_features: (1, 64, h, w) bfloat16 spatial memory (stored as the reference does).
        maskmem_pos_enc: (1, 64, h, w) float32 position encoding of the memory.
        obj_ptr: (1, 256) object pointer.
        low_res_logits: (1, 1, 4h, 4w) chosen mask logits (hole-filled output).
        object_score_logit: object presence logit.
        iou: predicted IoU of the chosen mask (SAMURAI memory gate input).
        kf_score: IoU of the chosen mask's box with the Kalman prediction (stable phase only).
        is_cond: a conditioning (prompted) frame.
    """

    frame_idx: int
    maskmem_features: torch.Tensor
    maskmem_pos_enc: torch.Tensor
    obj_ptr: torch.Tensor
    low_res_logits: torch.Tensor
    object_score_logit: float
    iou: float
    kf_score: float | None
    is_cond: bool


@dataclass
class PendingDrm:
    """A frame just added to DAM4SAM's DRM: re-encoded (binarised mask) at the next frame's
    start with its own features, kept until then."""

    frame_idx: int
    features: ImageFeatures


@dataclass
class Dam4samTrack:
    """Per-object DAM4SAM state (the official tracker's fields, one object each).

    Frame indices in ``last_added`` are relative to ``init_frame`` (DAM4SAM's own frame
    counter starts at the object's initialisation frame); the others are video frames.

    Attributes:
        init_frame: the frame the object was initialised on (its DRM "frame 0").
        video_size: (height, width) of the video (the DRM rule works at video resolution).
        size_history: video-resolution mask areas of the tracked frames, newest last (the
            official ``object_sizes``, kept to the length the rule reads).
        last_added: relative frame of the last DRM addition, -1 for none.
        last_frame: the last frame processed (frames are tracked in order, forward).
        pending: a DRM frame waiting for its re-encoding, or None.
    """

    init_frame: int
    video_size: tuple[int, int]
    size_history: deque[int]
    last_added: int = -1
    last_frame: int = -1
    pending: PendingDrm | None = None


@dataclass
class ObjectTrack:
    """One tracked object: its prompts, memory bank and motion state."""

    obj_id: int
    prompts: dict[int, Prompt] = field(default_factory=dict)
    cond_memory: dict[int, MemoryEntry] = field(default_factory=dict)
    memory: dict[int, MemoryEntry] = field(default_factory=dict)
    """Non-conditioning memories by frame, pruned to what future frames can still select."""
    motion: MotionState = field(default_factory=MotionState)
    prompted_outputs: set[int] = field(default_factory=set)
    """Frames whose output came from a prompt (reused, not recomputed, during propagation)."""
    dam: Dam4samTrack | None = None
    """DAM4SAM state (DAM4SAM policies only; conditioning memory = init frame + DRM frames)."""

    def entry(self, frame_idx: int) -> MemoryEntry | None:
        """The stored entry of a frame, conditioning or not."""
        return self.cond_memory.get(frame_idx) or self.memory.get(frame_idx)


class FeatureCache:
    """A small LRU of encoded frames (the image encoder runs once per frame for all objects)."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._items: OrderedDict[int, ImageFeatures] = OrderedDict()

    def get(self, frame_idx: int) -> ImageFeatures | None:
        item = self._items.get(frame_idx)
        if item is not None:
            self._items.move_to_end(frame_idx)
        return item

    def put(self, frame_idx: int, features: ImageFeatures) -> None:
        self._items[frame_idx] = features
        self._items.move_to_end(frame_idx)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class VideoState:
    """Everything known about one video being tracked (a new video = a new VideoState).

    Attributes:
        source: lazy frame source; frames are decoded when needed and not kept.
        video_height: original frame height in pixels.
        video_width: original frame width in pixels.
        num_frames: frame count, None for live streams.
        tracks: tracked objects by id, in the order they were added.
        features: LRU of encoded frames, shared by all objects.
        frames_tracked: frame index -> tracked in reverse (SAM 2's ``frames_already_tracked``).
        storage_device: where memories live (CPU when offloading GPU state), None = model device.
        image_size: the model's input size (set by ``init_video``; used by ``state["images"]``).
        compute_device: the model's device (set by ``init_video``).

    ``state[key]`` reads the official ``inference_state`` keys (``"video_height"``,
    ``"num_frames"``, ``"obj_ids"``, ``"output_dict_per_obj"``, ...; see ``state_view.VIEWS``).
    """

    source: FrameSource
    video_height: int
    video_width: int
    num_frames: int | None
    tracks: dict[int, ObjectTrack] = field(default_factory=dict)
    features: FeatureCache = field(default_factory=FeatureCache)
    frames_tracked: dict[int, bool] = field(default_factory=dict)
    storage_device: torch.device | None = None
    image_size: int | None = None
    compute_device: torch.device | None = None

    @property
    def obj_ids(self) -> list[int]:
        return list(self.tracks)

    def __getitem__(self, key: str) -> Any:
        return read_key(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        refuse_write(key)

    def __contains__(self, key: object) -> bool:
        return key in VIEWS

    def keys(self) -> list[str]:
        """The official ``inference_state`` keys this state answers."""
        return list(VIEWS)

    def get(self, key: str, default: Any = None) -> Any:
        """``state[key]``, or ``default`` for a key samurai does not keep."""
        return read_key(self, key) if key in VIEWS else default

    def close(self) -> None:
        self.features.clear()
        self.source.close()
