"""Which stored frames a tracked frame attends to: conditioning frames, maskmem slots, obj_ptrs.

Pure logic on frame indices and a few scores (no tensors), reproducing
``SAM2Base._prepare_memory_conditioned_features`` of the SAMURAI fork
(``yangchris11/samurai`` ``sam2/sam2/modeling/sam2_base.py``) and of upstream SAM 2.1
(``facebookresearch/sam2`` ``sam2/modeling/sam2_base.py``). This module holds what a selection
is made of (slots, gate scores, the gate, the layout) and the `MemorySelector` protocol; the
strategies behind it live in :mod:`samurai.tracking.selectors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from samurai.config import ModelConfig, SamuraiConfig, TrackerConfig


@dataclass(frozen=True)
class GateScores:
    """What SAMURAI's memory gate reads from a stored frame.

    Attributes:
        iou: predicted IoU of the chosen mask (the reference's ``best_iou_score``).
        obj_score: object score logit of the frame.
        kf_score: IoU of the chosen mask's box with the Kalman prediction; None outside the
            stable phase (None passes the gate).
    """

    iou: float
    obj_score: float
    kf_score: float | None = None


@dataclass(frozen=True)
class MemorySlot:
    """One spatial memory: ``t_pos`` 0 for conditioning frames, else 1..num_maskmem-1.

    The added temporal embedding is ``maskmem_tpos_enc[num_maskmem - t_pos - 1]``.
    """

    frame_idx: int
    t_pos: int


@dataclass(frozen=True)
class PointerSlot:
    """One object pointer and its temporal offset ``t_diff`` (encoded as ``t_diff / scale``)."""

    frame_idx: int
    t_diff: int


@dataclass(frozen=True)
class MemorySelection:
    """What one frame attends to, in the order the reference concatenates it.

    Attributes:
        cond_frames: conditioning frames selected for attention (`select_closest_cond_frames`).
        memory: spatial memories: the selected conditioning frames (t_pos 0), then past frames
            by increasing t_pos.
        pointers: object pointers: conditioning frames first, then past frames by increasing
            distance.
        ptr_tpos_scale: divisor of the pointer offsets, ``min(num_frames, max_obj_ptrs) - 1``.
        candidates_evaluated: frames whose gate scores were read, nearest first (gated
            selectors only).
    """

    cond_frames: tuple[int, ...]
    memory: tuple[MemorySlot, ...]
    pointers: tuple[PointerSlot, ...]
    ptr_tpos_scale: int
    candidates_evaluated: tuple[int, ...] = ()

    @property
    def mem_frames(self) -> tuple[int, ...]:
        return tuple(slot.frame_idx for slot in self.memory)

    @property
    def mem_tpos(self) -> tuple[int, ...]:
        return tuple(slot.t_pos for slot in self.memory)

    @property
    def ptr_frames(self) -> tuple[int, ...]:
        return tuple(slot.frame_idx for slot in self.pointers)

    @property
    def ptr_t_diffs(self) -> tuple[int, ...]:
        return tuple(slot.t_diff for slot in self.pointers)


@dataclass(frozen=True)
class Retention:
    """Stored non-conditioning frames that a future frame may still attend to.

    Attributes:
        maskmem: frames whose spatial memory (maskmem features) may be selected again.
        obj_ptr: frames whose object pointer may be selected again.
        scores: frames whose gate scores a future scan must still see (`BestIouMemorySelector`:
            the frames that bound its look-back window); their maskmem may go.
    """

    maskmem: frozenset[int]
    obj_ptr: frozenset[int]
    scores: frozenset[int] = frozenset()

    @property
    def frames(self) -> frozenset[int]:
        """Frames whose entry (or at least its gate scores) must be kept."""
        return self.maskmem | self.obj_ptr | self.scores

    def can_forget(self, frame_idx: int) -> bool:
        return frame_idx not in self.frames


@dataclass(frozen=True)
class MemoryLayout:
    """Memory sizes shared by all strategies (from `ModelConfig` and `TrackerConfig`)."""

    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    use_obj_ptrs_in_encoder: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True

    def __post_init__(self) -> None:
        if self.num_maskmem < 0 or self.max_obj_ptrs_in_encoder < 1:
            raise ValueError("num_maskmem must be >= 0 and max_obj_ptrs_in_encoder >= 1")

    @classmethod
    def from_configs(cls, model: ModelConfig, tracker: TrackerConfig) -> MemoryLayout:
        return cls(
            num_maskmem=model.num_maskmem,
            max_obj_ptrs_in_encoder=model.max_obj_ptrs_in_encoder,
            max_cond_frames_in_attn=tracker.max_cond_frames_in_attn,
            use_obj_ptrs_in_encoder=model.use_obj_ptrs_in_encoder,
            use_signed_tpos_enc_to_obj_ptrs=model.use_signed_tpos_enc_to_obj_ptrs,
            only_obj_ptrs_in_the_past_for_eval=model.only_obj_ptrs_in_the_past_for_eval,
        )


@dataclass(frozen=True)
class MemoryGate:
    """SAMURAI's memory-bank gate: strict ``>`` on every score, a missing kf_score passes."""

    iou_threshold: float = 0.5
    obj_score_threshold: float = 0.0
    kf_score_threshold: float = 0.0

    @classmethod
    def from_config(cls, samurai: SamuraiConfig) -> MemoryGate:
        return cls(
            iou_threshold=samurai.memory_bank_iou_threshold,
            obj_score_threshold=samurai.memory_bank_obj_score_threshold,
            kf_score_threshold=samurai.memory_bank_kf_score_threshold,
        )

    def passes(self, scores: GateScores) -> bool:
        return (
            scores.iou > self.iou_threshold
            and scores.obj_score > self.obj_score_threshold
            and (scores.kf_score is None or scores.kf_score > self.kf_score_threshold)
        )


class MemorySelector(Protocol):
    """A memory-selection strategy (plain SAM 2 stride, SAMURAI gate, ...)."""

    def select(
        self,
        frame_idx: int,
        *,
        cond_frames: Sequence[int],
        past: Mapping[int, GateScores],
        reverse: bool = False,
        num_frames: int | None = None,
    ) -> MemorySelection:
        """Memory of a tracked (not initial-conditioning) frame.

        Args:
            frame_idx: the frame being tracked.
            cond_frames: conditioning (prompted) frames, in insertion order (non-empty).
            past: stored non-conditioning frames and their gate scores.
            reverse: tracking runs towards frame 0.
            num_frames: video length when known (scales the pointer offsets when < 16).
        """
        ...

    def retained_frames(
        self,
        last_frame: int,
        *,
        cond_frames: Sequence[int],
        past: Mapping[int, GateScores],
        num_frames: int | None = None,
    ) -> Retention:
        """Frames of ``past`` that frames after ``last_frame`` (forward tracking) may select."""
        ...


def select_closest_cond_frames(
    frame_idx: int, cond_frames: Sequence[int], max_cond_frames: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(selected, unselected) conditioning frames, as ``sam2/modeling/sam2_utils.py`` does.

    All of them when ``max_cond_frames == -1`` or there are few enough; otherwise the closest
    one before ``frame_idx``, the closest at or after it, then the nearest others (ties keep
    the input order).
    """
    if max_cond_frames == -1 or len(cond_frames) <= max_cond_frames:
        return tuple(cond_frames), ()
    if max_cond_frames < 2:
        raise ValueError("max_cond_frames_in_attn must be -1 or >= 2")
    before = [t for t in cond_frames if t < frame_idx]
    after = [t for t in cond_frames if t >= frame_idx]
    selected = ([max(before)] if before else []) + ([min(after)] if after else [])
    rest = sorted((t for t in cond_frames if t not in selected), key=lambda t: abs(t - frame_idx))
    selected += rest[: max_cond_frames - len(selected)]
    unselected = tuple(t for t in cond_frames if t not in selected)
    return tuple(selected), unselected


__all__ = [
    "GateScores",
    "MemoryGate",
    "MemoryLayout",
    "MemorySelection",
    "MemorySelector",
    "MemorySlot",
    "PointerSlot",
    "Retention",
    "select_closest_cond_frames",
]
