"""Masks and boxes: the one vectorised mask-to-box, box format conversions and the SAMURAI box IoU.

Box formats used in this package:

* ``xyxy``: ``[x1, y1, x2, y2]``. Boxes from masks hold *inclusive* pixel indices
  (``x2`` is the last column of the mask), as the reference computes them.
* ``xyah``: ``[xc, yc, a, h]``, centre, aspect ratio ``w / h`` and height, the Kalman-filter
  measurement space. ``w = x2 - x1`` and ``h = y2 - y1`` (no ``+1``), as in the reference.
* ``xywh``: ``[x, y, w, h]``, top-left corner and size with ``w = x2 - x1`` (LaSOT / GOT-10k
  result files written by the official SAMURAI scripts).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around boolean masks, vectorised over any leading dimensions.

    Args:
        masks: ``(..., H, W)`` bool (anything else is compared with ``> 0``), any device.

    Returns:
        ``(..., 4)`` int64 on the masks' device, xyxy inclusive pixel indices
        ``[x_min, y_min, x_max, y_max]`` in the masks' own pixel grid; ``[0, 0, 0, 0]`` for an
        empty mask (the reference's convention, which a one-pixel mask at ``(0, 0)`` shares).
    """
    if masks.ndim < 2:
        raise ValueError(f"masks must have shape (..., H, W), got {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        masks = masks > 0
    height, width = masks.shape[-2:]
    if height == 0 or width == 0:
        return torch.zeros((*masks.shape[:-2], 4), dtype=torch.int64, device=masks.device)
    cols = masks.any(dim=-2)  # (..., W): the column holds a foreground pixel
    rows = masks.any(dim=-1)  # (..., H)
    x_min, x_max = _first_last(cols)
    y_min, y_max = _first_last(rows)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1)
    empty = ~cols.any(dim=-1)
    return boxes.masked_fill(empty.unsqueeze(-1), 0)


def _first_last(flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index where ``flags`` (``(..., L)`` bool, L > 0) is True on the last axis.

    Rows without a True give ``L`` and ``-1``; the caller overwrites them.
    """
    size = flags.shape[-1]
    index = torch.arange(size, device=flags.device, dtype=torch.int64)
    first = torch.where(flags, index, size).amin(dim=-1)
    last = torch.where(flags, index, -1).amax(dim=-1)
    return first, last


def xyxy_to_xyah(boxes: ArrayLike) -> NDArray[np.float64]:
    """Corner boxes to Kalman measurements, as the reference ``KalmanFilter.xyxy_to_xyah``.

    Args:
        boxes: ``(..., 4)`` xyxy, any real dtype (model-resolution pixels for SAMURAI).

    Returns:
        ``(..., 4)`` float64 ``[xc, yc, a, h]`` with ``w = x2 - x1``, ``h = y2 - y1``; a height of
        exactly 0 is replaced by 1 *before* the aspect ratio ``a = w / h`` (so the empty box
        ``[0, 0, 0, 0]`` gives ``[0, 0, 0, 1]``).
    """
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    w = x2 - x1
    h = y2 - y1
    h = np.where(h == 0, 1.0, h)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, w / h, h], axis=-1)


def xyah_to_xyxy(boxes: ArrayLike) -> NDArray[np.float64]:
    """Kalman measurements ``(..., 4)`` ``[xc, yc, a, h]`` to float64 corners ``(..., 4)`` xyxy.

    Same operation order as the reference (``xc - a * h / 2``), so results are bit-identical.
    """
    b = _as_boxes(boxes)
    xc, yc, a, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    half_w = a * h / 2
    return np.stack([xc - half_w, yc - h / 2, xc + half_w, yc + h / 2], axis=-1)


def box_iou(box: ArrayLike, candidates: ArrayLike) -> NDArray[np.float64]:
    """IoU of one box with each candidate, the reference ``KalmanFilter._compute_iou``.

    The plain continuous formula: ``inter / (area1 + area2 - inter)`` with ``w = x2 - x1``
    (no ``+1``) and areas not clipped, so it also runs (as the reference does) on the inverted
    boxes a diverged Kalman filter can predict.

    Args:
        box: ``(4,)`` xyxy (for SAMURAI: the Kalman prediction, float64, model-resolution pixels).
        candidates: ``(K, 4)`` xyxy in the same space (the candidate masks' boxes).

    Returns:
        ``(K,)`` float64; 0 for a candidate exactly ``[0, 0, 0, 0]`` (an empty mask) and where the
        union is 0.
    """
    b1 = _as_boxes(box)
    b2 = _as_boxes(candidates)
    if b1.shape != (4,) or b2.ndim != 2:
        raise ValueError(f"expected box (4,) and candidates (K, 4), got {b1.shape} and {b2.shape}")
    inter_w = np.maximum(0.0, np.minimum(b1[2], b2[:, 2]) - np.maximum(b1[0], b2[:, 0]))
    inter_h = np.maximum(0.0, np.minimum(b1[3], b2[:, 3]) - np.maximum(b1[1], b2[:, 1]))
    inter = inter_w * inter_h
    area1 = (b1[2] - b1[0]) * (b1[3] - b1[1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    union = area1 + area2 - inter
    defined = (union != 0) & np.any(b2 != 0, axis=1)
    iou: NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=defined)
    return iou


def xywh_to_xyxy(boxes: ArrayLike) -> NDArray[np.float64]:
    """``(..., 4)`` ``[x, y, w, h]`` to float64 ``[x1, y1, x1 + w, y1 + h]`` (no ``-1``)."""
    b = _as_boxes(boxes).copy()
    b[..., 2:] += b[..., :2]
    return b


def xyxy_to_xywh(boxes: ArrayLike) -> NDArray[np.float64]:
    """``(..., 4)`` xyxy to float64 ``[x1, y1, x2 - x1, y2 - y1]`` (no ``+1``, as the official
    SAMURAI LaSOT script writes boxes of masks)."""
    b = _as_boxes(boxes).copy()
    b[..., 2:] -= b[..., :2]
    return b


def _as_boxes(boxes: ArrayLike) -> NDArray[np.float64]:
    """Boxes as a float64 array whose last axis has 4 entries (torch CPU tensors accepted)."""
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 0 or b.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {b.shape}")
    return b


__all__ = [
    "box_iou",
    "mask_to_box",
    "xyah_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_xyah",
    "xyxy_to_xywh",
]


def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill small background holes of mask logits, as the official ``fill_holes_in_mask_scores``.

    Background connected components (logit <= 0, 8-connectivity) of at most ``max_area`` pixels
    get the logit 0.1 (foreground). Args: ``mask_logits`` (B, 1, H, W) float; returns a new tensor.
    The official code needs a CUDA extension for this step and silently skips it without one.
    """
    if max_area <= 0:
        return mask_logits
    import cv2

    background = (mask_logits <= 0).to("cpu", torch.uint8).numpy()
    fill = np.zeros(background.shape, dtype=bool)
    for b in range(background.shape[0]):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background[b, 0], connectivity=8)
        small = np.zeros(count, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        fill[b, 0] = small[labels]
    if not fill.any():
        return mask_logits
    holes = torch.from_numpy(fill).to(mask_logits.device)
    return torch.where(holes, torch.tensor(0.1, dtype=mask_logits.dtype), mask_logits)
