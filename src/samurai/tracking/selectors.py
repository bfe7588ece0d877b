"""Memory-selection strategies behind :class:`~samurai.tracking.memory.MemorySelector`.

`Sam2StrideSelector` (plain SAM 2), `SamuraiGatedSelector` (SAMURAI's quality gate) and its
`BestIouMemorySelector` variant, reproducing ``SAM2Base._prepare_memory_conditioned_features`` of
the SAMURAI fork and of upstream SAM 2.1. Each selector also says which stored non-conditioning
frames a *future* frame of forward tracking can still select (`retained_frames`), so a predictor
can drop the rest and keep memory flat in the video length.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from samurai.config import ModelConfig, SamuraiConfig, TrackerConfig
from samurai.tracking.memory import (
    GateScores,
    MemoryGate,
    MemoryLayout,
    MemorySelection,
    MemorySelector,
    MemorySlot,
    PointerSlot,
    Retention,
    select_closest_cond_frames,
)


def _num_ptrs(layout: MemoryLayout, num_frames: int | None) -> int:
    """Pointer window, ``min(num_frames, max_obj_ptrs_in_encoder)`` (unknown length: the max)."""
    if num_frames is None:
        return layout.max_obj_ptrs_in_encoder
    return min(num_frames, layout.max_obj_ptrs_in_encoder)


@dataclass(frozen=True)
class _SelectorBase(ABC):
    """What every strategy shares: conditioning frames, object pointers, retention."""

    layout: MemoryLayout = field(default_factory=MemoryLayout)

    def select(
        self,
        frame_idx: int,
        *,
        cond_frames: Sequence[int],
        past: Mapping[int, GateScores],
        reverse: bool = False,
        num_frames: int | None = None,
    ) -> MemorySelection:
        """See `MemorySelector.select`."""
        if not cond_frames:
            raise ValueError("a tracked frame needs at least one conditioning frame")
        if any(t in past for t in cond_frames):
            raise ValueError("a conditioning frame cannot also be a non-conditioning memory")
        scale = _num_ptrs(self.layout, num_frames) - 1
        if self.layout.num_maskmem == 0:  # SAM on images: no memory at all
            return MemorySelection((), (), (), scale)
        selected, unselected = select_closest_cond_frames(
            frame_idx, cond_frames, self.layout.max_cond_frames_in_attn
        )
        slots, evaluated = self._past_slots(frame_idx, past, unselected, reverse=reverse)
        pointers = self._pointers(frame_idx, selected, past, unselected, reverse, num_frames)
        memory = tuple(MemorySlot(t, 0) for t in selected) + slots
        return MemorySelection(selected, memory, pointers, scale, evaluated)

    def _pointers(
        self,
        frame_idx: int,
        selected: tuple[int, ...],
        past: Mapping[int, GateScores],
        unselected: tuple[int, ...],
        reverse: bool,
        num_frames: int | None,
    ) -> tuple[PointerSlot, ...]:
        """Not gated: selected cond frames, then up to max_obj_ptrs-1 frames before f."""
        layout = self.layout
        if not layout.use_obj_ptrs_in_encoder:
            return ()
        pointers = [
            PointerSlot(t, (t - frame_idx) if reverse else (frame_idx - t))
            if layout.use_signed_tpos_enc_to_obj_ptrs
            else PointerSlot(t, abs(frame_idx - t))
            for t in selected
            if not layout.only_obj_ptrs_in_the_past_for_eval
            or (t >= frame_idx if reverse else t <= frame_idx)
        ]
        for t_diff in range(1, _num_ptrs(layout, num_frames)):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            # as upstream: past-frame offsets are unsigned even when cond offsets are signed
            if t in past or t in unselected:
                pointers.append(PointerSlot(t, t_diff))
        return tuple(pointers)

    @abstractmethod
    def _past_slots(
        self,
        frame_idx: int,
        past: Mapping[int, GateScores],
        unselected: tuple[int, ...],
        *,
        reverse: bool,
    ) -> tuple[tuple[MemorySlot, ...], tuple[int, ...]]:
        """(non-conditioning memory slots, frames whose gate scores were read)."""

    def retained_frames(
        self,
        last_frame: int,
        *,
        cond_frames: Sequence[int],
        past: Mapping[int, GateScores],
        num_frames: int | None = None,
    ) -> Retention:
        """Frames of ``past`` that any frame after ``last_frame`` (forward) may still select.

        For the stride and the recent-gate strategies this is exactly what frame
        ``last_frame + 1`` selects: a later frame attends to a subset of it plus newer frames
        (checked by brute force in tests/tracking/test_memory.py). Entries after
        ``last_frame`` (an earlier pass) are kept. Prompts added later are not foreseen.
        """
        nxt = self.select(last_frame + 1, cond_frames=cond_frames, past=past, num_frames=num_frames)
        newer = frozenset(t for t in past if t > last_frame)
        return Retention(
            maskmem=frozenset(t for t in nxt.mem_frames if t in past) | newer,
            obj_ptr=frozenset(t for t in nxt.ptr_frames if t in past) | newer,
        )


@dataclass(frozen=True)
class Sam2StrideSelector(_SelectorBase):
    """Plain SAM 2: frame f-1 plus num_maskmem-2 frames on a grid of ``stride`` before it."""

    stride: int = 1

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError("memory_temporal_stride_for_eval must be >= 1")

    @classmethod
    def from_configs(cls, model: ModelConfig, tracker: TrackerConfig) -> Sam2StrideSelector:
        layout = MemoryLayout.from_configs(model, tracker)
        return cls(layout=layout, stride=tracker.memory_temporal_stride_for_eval)

    def _past_slots(
        self,
        frame_idx: int,
        past: Mapping[int, GateScores],
        unselected: tuple[int, ...],
        *,
        reverse: bool,
    ) -> tuple[tuple[MemorySlot, ...], tuple[int, ...]]:
        num_maskmem, r = self.layout.num_maskmem, self.stride
        slots = []
        for t_pos in range(1, num_maskmem):
            t_rel = num_maskmem - t_pos  # how many memories before the current frame
            if t_rel == 1:
                t = frame_idx + 1 if reverse else frame_idx - 1
            elif reverse:  # nearest multiple of r at or after f+2, then further on
                t = -(-(frame_idx + 2) // r) * r + (t_rel - 2) * r
            else:  # nearest multiple of r at or before f-2, then further back
                t = ((frame_idx - 2) // r) * r - (t_rel - 2) * r
            # frames not tracked (yet) are skipped; an unselected cond frame counts as memory
            if t in past or t in unselected:
                slots.append(MemorySlot(t, t_pos))
        return tuple(slots), ()


@dataclass(frozen=True)
class SamuraiGatedSelector(_SelectorBase):
    """SAMURAI: the most recent frames that pass the quality gate, plus frame f-1.

    Frames are scanned from f-1 down to 2 until ``max_obj_ptrs_in_encoder - 1`` of them pass;
    the last ``num_maskmem - 1`` of (passing frames, then f-1 if it failed) are attended, with
    t_pos counting down from ``num_maskmem - 1`` whatever the gaps between them.

    Attributes:
        gate: the score thresholds.
        mirror_reverse: with ``reverse``, scan the frames after f (f+1 always used). False
            reproduces the reference, whose scan ignores the tracking direction.
    """

    gate: MemoryGate = field(default_factory=MemoryGate)
    mirror_reverse: bool = False

    @classmethod
    def from_configs(
        cls, model: ModelConfig, tracker: TrackerConfig, samurai: SamuraiConfig
    ) -> SamuraiGatedSelector:
        return cls(
            layout=MemoryLayout.from_configs(model, tracker), gate=MemoryGate.from_config(samurai)
        )

    def _scan(
        self,
        frame_idx: int,
        past: Mapping[int, GateScores],
        unselected: Collection[int],
        *,
        mirrored: bool,
    ) -> tuple[list[int], tuple[int, ...]]:
        """(passing frames farthest first, frames evaluated nearest first)."""
        # Parity quirk, samurai sam2/sam2/modeling/sam2_base.py: the scan is
        # range(frame_idx - 1, 1, -1), so frame 1 (and 0) is never tested and is only ever
        # attended as "f-1" by frame 2 (test_samurai_frame_one_never_tested).
        stored: Iterable[int]
        if mirrored:
            stored = sorted(t for t in (*past, *unselected) if t > frame_idx)
        elif len(past) + len(unselected) < frame_idx:  # pruned memory: walk what is stored
            stored = sorted((t for t in (*past, *unselected) if 2 <= t < frame_idx), reverse=True)
        else:
            stored = (t for t in range(frame_idx - 1, 1, -1) if t in past or t in unselected)
        passing: list[int] = []
        evaluated: list[int] = []
        for t in stored:
            evaluated.append(t)
            # an unselected cond frame passes (the reference raises KeyError reading its scores)
            if t not in past or self.gate.passes(past[t]):
                passing.insert(0, t)
            if len(passing) >= self.layout.max_obj_ptrs_in_encoder - 1:
                break
        return passing, tuple(evaluated)

    def _choose(self, passing: list[int], prev: int, past: Mapping[int, GateScores]) -> list[int]:
        """Frames attended, oldest first: the last num_maskmem-1 of passing + [prev]."""
        window = passing if prev in passing else [*passing, prev]
        return window[-(self.layout.num_maskmem - 1) :]

    def _past_slots(
        self,
        frame_idx: int,
        past: Mapping[int, GateScores],
        unselected: tuple[int, ...],
        *,
        reverse: bool,
    ) -> tuple[tuple[MemorySlot, ...], tuple[int, ...]]:
        mirrored = reverse and self.mirror_reverse
        passing, evaluated = self._scan(frame_idx, past, unselected, mirrored=mirrored)
        if self.layout.num_maskmem <= 1:
            return (), evaluated
        # Parity quirk (same file): f-1 is always attended, even when it failed the gate; a
        # missing f-1 still takes the newest t_pos (test_samurai_cap_and_failed_previous_frame).
        chosen = self._choose(passing, frame_idx + 1 if mirrored else frame_idx - 1, past)
        first_t_pos = self.layout.num_maskmem - len(chosen)
        slots = tuple(
            MemorySlot(t, first_t_pos + k)
            for k, t in enumerate(chosen)
            if t in past or t in unselected
        )
        return slots, evaluated


@dataclass(frozen=True)
class BestIouMemorySelector(SamuraiGatedSelector):
    """SAMURAI's gate, keeping the highest-IoU passing frames instead of the most recent.

    Among the frames the reference's scan collects (the last ``max_obj_ptrs_in_encoder - 1``
    passing ones), the ``num_maskmem - 2`` with the highest IoU (ties: the more recent) are
    attended, plus frame f-1 as in the reference; t_pos as in the reference.
    """

    def _choose(self, passing: list[int], prev: int, past: Mapping[int, GateScores]) -> list[int]:
        def rank(t: int) -> tuple[float, int]:  # unselected cond frames (not in past) first
            return (past[t].iou if t in past else float("inf")), -abs(prev - t)

        best = sorted((t for t in passing if t != prev), key=rank, reverse=True)
        kept = set(best[: self.layout.num_maskmem - 2])
        return [t for t in passing if t in kept] + [prev]

    def retained_frames(
        self,
        last_frame: int,
        *,
        cond_frames: Sequence[int],
        past: Mapping[int, GateScores],
        num_frames: int | None = None,
    ) -> Retention:
        """As the recent gate, plus the window frames a later frame could still rank first.

        A passing frame x of the scan window is attended later iff frame ``last_frame + 1``
        attends it, or fewer than num_maskmem-2 newer window frames beat it (future weak
        passes can push the older ones out of the window while x stays). All window frames
        keep their scores, so that a scan over the pruned memory stops where the full one
        does. Conditioning frames are left out of the window, which can only keep more.
        """
        kept = super().retained_frames(
            last_frame, cond_frames=cond_frames, past=past, num_frames=num_frames
        )
        window, _ = self._scan(last_frame + 1, past, (), mirrored=False)

        def newer_better(x: int) -> int:
            return sum(1 for b in window if b > x and past[b].iou >= past[x].iou)

        later = {x for x in window if newer_better(x) < self.layout.num_maskmem - 2}
        return replace(kept, maskmem=kept.maskmem | later, scores=frozenset(window))


def build_memory_selector(
    model: ModelConfig, tracker: TrackerConfig, samurai: SamuraiConfig | None = None
) -> MemorySelector:
    """The strategy the configs ask for: SAM 2 stride, or SAMURAI's recent / best-IoU gate."""
    if samurai is None:
        return Sam2StrideSelector.from_configs(model, tracker)
    cls = BestIouMemorySelector if samurai.memory_selection == "best_iou" else SamuraiGatedSelector
    return cls.from_configs(model, tracker, samurai)


__all__ = [
    "BestIouMemorySelector",
    "Sam2StrideSelector",
    "SamuraiGatedSelector",
    "build_memory_selector",
]
