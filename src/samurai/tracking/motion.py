"""Candidate-mask selection: plain SAM 2 (best predicted IoU) and SAMURAI (Kalman-weighted).

On every tracked frame with multimask output the mask decoder proposes K = 3 candidate masks
with predicted IoUs. A :class:`CandidateSelector` picks one. :class:`SamuraiMotionSelector`
reproduces the ``samurai_mode`` branch of ``SAM2Base._forward_sam_heads`` in
``sam2/sam2/modeling/sam2_base.py`` of the SAMURAI repository; unlike the reference, the Kalman
state is per object (:class:`MotionState`, stored on the track) instead of one filter on the
model shared by every object and video.

The selector is a pure function of its inputs: it never mutates the ``MotionState`` it is given
and returns the next one in :attr:`CandidateSelection.state`; the caller stores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from samurai.config import SamuraiConfig
from samurai.io.masks import xyxy_to_xyah
from samurai.tracking.kalman import FloatArray, KalmanFilter

Float32Array = NDArray[np.float32]


class KalmanPhase(IntEnum):
    """Which SAMURAI branch ran on a frame (the golden files' ``kf_phase``)."""

    NONE = 0
    """No Kalman step: plain SAM 2 selection (or a frame without multimask output)."""
    INITIATE = 1
    """``initiate`` from the best-IoU candidate: first tracked frame or first after a reset."""
    STABILISING = 2
    """``predict``; best-IoU candidate; ``update`` if its IoU > threshold, else reset."""
    STABLE = 3
    """``predict``; Kalman-weighted choice; ``update`` unless the chosen IoU < threshold."""


@dataclass(frozen=True, eq=False)
class MotionState:
    """Kalman state of one object, in model-resolution pixels (1024x1024 for SAM 2).

    Attributes:
        mean: ``(8,)`` float64 ``(xc, yc, a, h, vxc, vyc, va, vh)``, or None before the first
            tracked frame. After a reset it keeps the last *predicted* state (as the reference).
        covariance: ``(8, 8)`` float64, or None with ``mean``.
        stable_frames: the reference's ``stable_frames`` counter: 0 = (re-)initiate on the next
            multimask frame; below ``stable_frames_threshold`` = stabilising; at it = stable.
    """

    mean: FloatArray | None = None
    covariance: FloatArray | None = None
    stable_frames: int = 0


@dataclass(frozen=True, eq=False)
class CandidateSelection:
    """A selector's decision for one frame and everything to store or log with it.

    Attributes:
        index: chosen candidate, ``0 .. K-1``.
        iou: predicted IoU of the chosen candidate (a float32 value), the reference's
            ``best_iou_score`` stored with the frame's memory.
        scores: ``(K,)`` float64 values that were arg-maxed: the IoUs (float32 values widened)
            or, in the stable phase, ``w * kf_ious + (1 - w) * ious``.
        state: the object's next motion state (the input state when nothing changed).
        phase: the branch that ran.
        stable_frames_before: ``stable_frames`` of the input state.
        kf_ious: stable phase only: ``(K,)`` float64 IoU of each candidate box with
            ``predicted_box``; None otherwise.
        kf_score: stable phase only: ``kf_ious[index]`` (memory-gate input); None otherwise.
        predicted_box: stable phase only: ``(4,)`` float64 xyxy box of the predicted mean.
        measurement: ``(4,)`` float64 ``(xc, yc, a, h)`` given to ``initiate`` / ``update``,
            or None.
        initiated, predicted, updated: which Kalman-filter calls happened.
    """

    index: int
    iou: float
    scores: FloatArray
    state: MotionState
    phase: KalmanPhase = KalmanPhase.NONE
    stable_frames_before: int = 0
    kf_ious: FloatArray | None = None
    kf_score: float | None = None
    predicted_box: FloatArray | None = None
    measurement: FloatArray | None = None
    initiated: bool = False
    predicted: bool = False
    updated: bool = False

    @property
    def kf_events(self) -> tuple[str, ...]:
        """Kalman calls of the frame in order, e.g. ``("predict", "update")``."""
        flags = (self.initiated, self.predicted, self.updated)
        return tuple(n for n, f in zip(("initiate", "predict", "update"), flags, strict=True) if f)


class CandidateSelector(Protocol):
    """Chooses one of the K candidate masks of a multimask decoder output."""

    @property
    def needs_boxes(self) -> bool:
        """Whether :meth:`select` reads ``boxes`` (else the caller may pass None)."""
        ...

    def select(
        self,
        ious: ArrayLike | torch.Tensor,
        boxes: ArrayLike | torch.Tensor | None,
        state: MotionState,
    ) -> CandidateSelection:
        """Pick a candidate.

        Args:
            ious: ``(K,)`` predicted IoUs of the candidates (float32).
            boxes: ``(K, 4)`` xyxy inclusive integer boxes of the candidate masks at model
                resolution (``mask_to_box(upsampled_logits > 0)``, ``[0, 0, 0, 0]`` if empty).
            state: the object's motion state before this frame (not mutated).
        """
        ...


@dataclass(frozen=True)
class BestIouSelector:
    """Plain SAM 2: the candidate with the highest predicted IoU (first one on ties)."""

    @property
    def needs_boxes(self) -> bool:
        return False

    def select(
        self,
        ious: ArrayLike | torch.Tensor,
        boxes: ArrayLike | torch.Tensor | None,
        state: MotionState,
    ) -> CandidateSelection:
        """Pick ``argmax(ious)``; ``boxes`` is ignored and ``state`` returned unchanged."""
        scores = _as_ious(ious)
        index = int(np.argmax(scores))
        return CandidateSelection(
            index=index,
            iou=float(scores[index]),
            scores=scores.astype(np.float64),
            state=state,
            stable_frames_before=state.stable_frames,
        )


@dataclass(frozen=True)
class SamuraiMotionSelector:
    """SAMURAI motion-aware selection with a per-object Kalman filter on the candidates' boxes.

    Reproduces the reference exactly, including its quirks (each checked by a test):

    * The filter starts on the first multimask frame it sees (the first tracked frame; box and
      multi-point prompts use single-mask output and never reach the selector). An empty chosen
      mask initiates it from ``[0, 0, 0, 0]`` -> ``(0, 0, 0, 1)``.
    * Threshold comparisons are made in float32 (the IoUs' dtype in the reference) and are
      asymmetric: stabilising updates only if ``iou > threshold`` (exactly equal resets), the
      stable phase resets only if ``iou < threshold`` (exactly equal updates).
    * A reset sets ``stable_frames = 0`` and keeps the predicted mean and covariance; the next
      multimask frame re-initiates from its best-IoU candidate.
    * In the stable phase ``stable_frames`` stays at the threshold (it is not incremented).
    * Stable-phase scores: ``torch.tensor(compute_iou(...))`` makes the reference's
      ``kf_ious`` a **float64** tensor (its items are numpy float64 scalars), while
      ``(1 - w) * ious`` is a float32 product; the sum is float64. The same arithmetic here
      gives bit-identical scores (and hence identical arg-max decisions).
    """

    config: SamuraiConfig = field(default_factory=SamuraiConfig)
    kalman: KalmanFilter = field(default_factory=KalmanFilter)

    @property
    def needs_boxes(self) -> bool:
        return True

    def select(
        self,
        ious: ArrayLike | torch.Tensor,
        boxes: ArrayLike | torch.Tensor | None,
        state: MotionState,
    ) -> CandidateSelection:
        """Run one SAMURAI step; see :class:`CandidateSelector` for the arguments."""
        ious32 = _as_ious(ious)
        if boxes is None:
            raise ValueError("SamuraiMotionSelector needs the candidate boxes")
        boxes64 = _as_boxes(boxes, len(ious32))
        if state.mean is None or state.covariance is None or state.stable_frames == 0:
            return self._initiate(ious32, boxes64, state)
        if state.stable_frames < self.config.stable_frames_threshold:
            return self._stabilise(ious32, boxes64, state)
        return self._stable(ious32, boxes64, state)

    def _initiate(
        self, ious: Float32Array, boxes: FloatArray, state: MotionState
    ) -> CandidateSelection:
        index = int(np.argmax(ious))
        measurement = xyxy_to_xyah(boxes[index])
        mean, covariance = self.kalman.initiate(measurement)
        return CandidateSelection(
            index=index,
            iou=float(ious[index]),
            scores=ious.astype(np.float64),
            state=MotionState(mean, covariance, state.stable_frames + 1),
            phase=KalmanPhase.INITIATE,
            stable_frames_before=state.stable_frames,
            measurement=measurement,
            initiated=True,
        )

    def _stabilise(
        self, ious: Float32Array, boxes: FloatArray, state: MotionState
    ) -> CandidateSelection:
        assert state.mean is not None and state.covariance is not None
        mean, covariance = self.kalman.predict(state.mean, state.covariance)
        index = int(np.argmax(ious))
        measurement: FloatArray | None = None
        if ious[index] > np.float32(self.config.stable_ious_threshold):
            measurement = xyxy_to_xyah(boxes[index])
            mean, covariance = self.kalman.update(mean, covariance, measurement)
            next_state = MotionState(mean, covariance, state.stable_frames + 1)
        else:
            next_state = MotionState(mean, covariance, 0)
        return CandidateSelection(
            index=index,
            iou=float(ious[index]),
            scores=ious.astype(np.float64),
            state=next_state,
            phase=KalmanPhase.STABILISING,
            stable_frames_before=state.stable_frames,
            measurement=measurement,
            predicted=True,
            updated=measurement is not None,
        )

    def _stable(
        self, ious: Float32Array, boxes: FloatArray, state: MotionState
    ) -> CandidateSelection:
        assert state.mean is not None and state.covariance is not None
        mean, covariance = self.kalman.predict(state.mean, state.covariance)
        kf_ious = self.kalman.candidate_ious(mean, boxes)
        scores = self.weighted_scores(kf_ious, ious)
        index = int(np.argmax(scores))
        measurement: FloatArray | None = None
        if ious[index] < np.float32(self.config.stable_ious_threshold):
            next_state = MotionState(mean, covariance, 0)
        else:
            measurement = xyxy_to_xyah(boxes[index])
            updated = self.kalman.update(mean, covariance, measurement)
            next_state = MotionState(updated.mean, updated.covariance, state.stable_frames)
        return CandidateSelection(
            index=index,
            iou=float(ious[index]),
            scores=scores,
            state=next_state,
            phase=KalmanPhase.STABLE,
            stable_frames_before=state.stable_frames,
            kf_ious=kf_ious,
            kf_score=float(kf_ious[index]),
            predicted_box=self.kalman.predicted_box(mean),
            measurement=measurement,
            predicted=True,
            updated=measurement is not None,
        )

    def weighted_scores(self, kf_ious: ArrayLike, ious: ArrayLike) -> FloatArray:
        """Stable-phase selection scores ``w * kf_ious + (1 - w) * ious``, as the reference.

        Args:
            kf_ious: ``(K,)`` float64 box IoUs with the predicted state.
            ious: ``(K,)`` float32 predicted mask IoUs.

        Returns:
            ``(K,)`` float64: ``w * kf_ious`` in float64 plus ``float32(1 - w) * ious`` rounded
            to float32 (torch multiplies a float32 tensor by a Python scalar in float32).
        """
        w = self.config.kf_score_weight
        kf = np.asarray(kf_ious, dtype=np.float64)
        appearance = np.float32(1.0 - w) * np.asarray(ious, dtype=np.float32)
        return np.asarray(w * kf + appearance.astype(np.float64), dtype=np.float64)


def _as_numpy(value: ArrayLike | torch.Tensor) -> NDArray[np.generic]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        # numpy has no bfloat16 / float16 -> float32 is exact for both.
        return (value.float() if value.dtype in (torch.bfloat16, torch.float16) else value).numpy()
    return np.asarray(value)


def _as_ious(ious: ArrayLike | torch.Tensor) -> Float32Array:
    """``(K,)`` float32 IoUs (a leading batch axis of size 1 is dropped)."""
    a = _as_numpy(ious).astype(np.float32)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"ious must have shape (K,) with K > 0, got {a.shape}")
    return a


def _as_boxes(boxes: ArrayLike | torch.Tensor, count: int) -> FloatArray:
    """``(K, 4)`` float64 boxes (exact for the integer pixel boxes of masks)."""
    b = _as_numpy(boxes).astype(np.float64)
    if b.ndim == 3 and b.shape[0] == 1:
        b = b[0]
    if b.shape != (count, 4):
        raise ValueError(f"boxes must have shape ({count}, 4) to match ious, got {b.shape}")
    return b


__all__ = [
    "BestIouSelector",
    "CandidateSelection",
    "CandidateSelector",
    "KalmanPhase",
    "MotionState",
    "SamuraiMotionSelector",
]
