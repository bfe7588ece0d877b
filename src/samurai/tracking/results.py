"""Per-frame results returned (or yielded) by the trackers; nothing here is kept by them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samurai.io.masks import mask_to_box
from samurai.tracking import dam4sam_rules
from samurai.tracking.memory import MemorySelection
from samurai.tracking.motion import CandidateSelection


@dataclass(frozen=True)
class Dam4samDetails:
    """DAM4SAM's part of a tracked frame (video frame indices throughout).

    Attributes:
        selection: the RAM / DRM memories and pointers attended, with their sources and
            ``maskmem_tpos_enc`` indices.
        decision: every quantity of the DRM update rule on this frame.
        drm_added: the frame was added to the DRM.
        reencoded: the DRM frame whose memory was re-encoded at this frame's start, or None.
        n_pixels_pos: positive pixels of the chosen low-res logits (the memory visibility).
    """

    selection: dam4sam_rules.MemorySelection
    decision: dam4sam_rules.DrmDecision
    drm_added: bool
    reencoded: int | None
    n_pixels_pos: int


@dataclass(frozen=True)
class StepDetails:
    """Diagnostics of one object's step (what the golden traces record).

    Attributes:
        ious_all4: (4,) predicted IoUs of all mask tokens.
        candidate_ious: (M,) IoUs of the candidates the choice was made among.
        chosen_token: decoder token of the output mask (0..3).
        candidate_index: index among the candidates (-1: single-mask output).
        candidate_boxes: (M, 4) int64 xyxy boxes of the candidates at model resolution, or None.
        selection: the SAMURAI / best-IoU choice (None on single-mask frames).
        memory: which memories and pointers conditioned the frame (None without memory).
        obj_ptr: (256,) the frame's object pointer.
        chosen_box: (4,) int64 xyxy box of the chosen mask at model resolution.
        candidate_logits: (M, h, w) low-res logits of the candidates (-1024 where absent).
        dam4sam: DAM4SAM's memory selection and DRM decision (DAM4SAM policies only).
    """

    ious_all4: torch.Tensor
    candidate_ious: torch.Tensor
    chosen_token: int
    candidate_index: int
    candidate_boxes: torch.Tensor | None
    selection: CandidateSelection | None
    memory: MemorySelection | None
    obj_ptr: torch.Tensor
    chosen_box: torch.Tensor
    candidate_logits: torch.Tensor | None = None
    dam4sam: Dam4samDetails | None = None


@dataclass(frozen=True)
class ObjectResult:
    """One object on one frame.

    Attributes:
        obj_id: the object.
        low_res_logits: (1, 1, h, w) mask logits at 1/4 model resolution (-1024 = absent).
        object_score_logit: presence logit; ``present`` is ``logit > min_obj_score_logits``.
        iou: predicted IoU of the output mask.
        present: whether the object is judged visible.
        kf_box_xyxy: the Kalman filter's predicted box (model resolution) when SAMURAI runs.
        details: diagnostics, or None for frames whose output came from a prompt.
    """

    obj_id: int
    low_res_logits: torch.Tensor
    object_score_logit: float
    iou: float
    present: bool
    kf_box_xyxy: np.ndarray | None = None
    details: StepDetails | None = None


@dataclass(frozen=True)
class FrameResult:
    """All tracked objects on one frame, with masks at the video's resolution on demand."""

    frame_idx: int
    objects: list[ObjectResult]
    video_size: tuple[int, int]
    """(height, width) of the original video."""

    @property
    def obj_ids(self) -> list[int]:
        return [o.obj_id for o in self.objects]

    def object(self, obj_id: int) -> ObjectResult:
        for o in self.objects:
            if o.obj_id == obj_id:
                return o
        raise KeyError(f"object {obj_id} is not in the result of frame {self.frame_idx}")

    def video_res_logits(self) -> torch.Tensor:
        """(N, 1, H, W) float32 mask logits at video resolution (bilinear upsampling)."""
        if not self.objects:
            return torch.zeros(0, 1, *self.video_size)
        low = torch.cat([o.low_res_logits for o in self.objects], dim=0).float()
        return F.interpolate(low, size=self.video_size, mode="bilinear", align_corners=False)

    def masks(self) -> torch.Tensor:
        """(N, H, W) bool masks at video resolution."""
        return self.video_res_logits()[:, 0] > 0

    def boxes_xywh(self) -> torch.Tensor:
        """(N, 4) int64 ``x, y, w, h`` (LaSOT / GOT-10k form, ``w = x1 - x0``); zeros if empty."""
        b = self.boxes_xyxy()
        return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1)

    def boxes_xyxy(self) -> torch.Tensor:
        """(N, 4) int64 inclusive xyxy boxes of the masks in video pixels ([0,0,0,0] if empty)."""
        return mask_to_box(self.masks())
