"""Mask metrics, numerically equal to ``davis2017-evaluation`` ``davis2017/metrics.py``.

J = region IoU, F = boundary F-measure, as also used by the SA-V benchmark. Masks are (H, W)
arrays, nonzero = object; everything is float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray


def region_similarity(pred: ArrayLike, gt: ArrayLike) -> float:
    """J: IoU of two binary masks; 1.0 when both are empty (DAVIS ``db_eval_iou``).

    Args:
        pred: (H, W) mask, nonzero = object.
        gt: (H, W) mask.
    """
    p, g = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def boundary_map(mask: ArrayLike) -> NDArray[np.bool_]:
    """One-pixel boundary of a binary mask (DAVIS ``_seg2bmap`` at full size).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour; the
    last row compares with east only, the last column with south only, the corner never is.
    """
    seg = np.asarray(mask).astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary: NDArray[np.bool_] = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: float) -> NDArray[np.uint8]:
    """``skimage.morphology.disk``: pixels with x^2 + y^2 <= radius^2."""
    offsets = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(offsets, offsets)
    return np.asarray(x**2 + y**2 <= radius**2, dtype=np.uint8)


def boundary_f_measure(pred: ArrayLike, gt: ArrayLike, *, bound_th: float = 0.008) -> float:
    """F: boundary F-measure of two binary masks (DAVIS ``f_measure``).

    Boundaries match within ``ceil(bound_th * image diagonal)`` pixels (a disk dilation), or within
    ``bound_th`` pixels when ``bound_th >= 1``. Both boundaries empty gives 1; one empty gives 0.

    Args:
        pred: (H, W) mask.
        gt: (H, W) mask.
        bound_th: match tolerance, as a fraction of the diagonal (< 1) or in pixels (>= 1).
    """
    p, g = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
    radius = bound_th if bound_th >= 1 else float(np.ceil(bound_th * np.linalg.norm(p.shape)))
    kernel = _disk(radius)
    p_boundary, g_boundary = boundary_map(p), boundary_map(g)
    p_dilated = cv2.dilate(p_boundary.astype(np.uint8), kernel).astype(bool)
    g_dilated = cv2.dilate(g_boundary.astype(np.uint8), kernel).astype(bool)
    n_pred, n_gt = np.count_nonzero(p_boundary), np.count_nonzero(g_boundary)
    if n_pred == 0 or n_gt == 0:
        # DAVIS: (P, R) = (1, 0), (0, 1) or (1, 1), so F is 0 unless both are empty
        return 1.0 if n_pred == n_gt else 0.0
    precision = np.count_nonzero(p_boundary & g_dilated) / n_pred
    recall = np.count_nonzero(g_boundary & p_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class MaskScores:
    """Mean J and F of one object over the evaluated frames."""

    j: float
    f: float

    @property
    def j_and_f(self) -> float:
        """J&F = (J + F) / 2."""
        return (self.j + self.f) / 2.0


def mask_scores(
    preds: Sequence[ArrayLike],
    gts: Sequence[ArrayLike],
    *,
    skip_first_and_last: bool = True,
    bound_th: float = 0.008,
) -> MaskScores:
    """J, F and J&F of one object over a video (means over frames).

    Args:
        preds: per-frame (H, W) predicted masks.
        gts: per-frame (H, W) ground-truth masks, as many as preds.
        skip_first_and_last: drop the first (prompted) and last frame, as the DAVIS semi-supervised
            evaluation and the SA-V val/test evaluator do.
        bound_th: boundary tolerance for F.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted masks for {len(gts)} ground-truth masks")
    indices = range(1, len(gts) - 1) if skip_first_and_last else range(len(gts))
    if len(indices) == 0:
        raise ValueError("no frame to evaluate")
    j = [region_similarity(preds[i], gts[i]) for i in indices]
    f = [boundary_f_measure(preds[i], gts[i], bound_th=bound_th) for i in indices]
    return MaskScores(j=float(np.mean(j)), f=float(np.mean(f)))
