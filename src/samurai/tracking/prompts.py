"""Validate user prompts (box, clicks, mask) and convert them to model-resolution ``Prompt``s."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike

from samurai.tracking.state import Prompt

BOX_LABELS = (2, 3)
"""Labels of a box's top-left and bottom-right corners in the prompt encoder."""


def _as_float_array(value: ArrayLike | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr


def parse_box(box: ArrayLike | torch.Tensor, *, width: float, height: float) -> np.ndarray:
    """A box ``[x0, y0, x1, y1]`` in pixels of a ``width`` x ``height`` frame, validated."""
    arr = _as_float_array(box, "box").reshape(-1)
    if arr.shape != (4,):
        raise ValueError(f"box must have 4 numbers [x0, y0, x1, y1], got {arr.size}")
    x0, y0, x1, y1 = arr
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {arr.tolist()} has zero or negative size (need x1 > x0 and y1 > y0)")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ValueError(f"box {arr.tolist()} lies outside the {width:g}x{height:g} frame")
    return arr


def parse_points(
    points: ArrayLike | torch.Tensor | None, labels: ArrayLike | torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Clicks ``(N, 2)`` (x, y) and labels ``(N,)`` (1 positive, 0 negative), validated."""
    if points is None and labels is None:
        return None
    if points is None or labels is None:
        raise ValueError("points and labels must be given together (one label per point)")
    pts = _as_float_array(points, "points").reshape(-1, 2)
    lab = _as_float_array(labels, "labels").reshape(-1)
    if len(pts) != len(lab):
        raise ValueError(f"got {len(pts)} points but {len(lab)} labels")
    if len(pts) == 0:
        raise ValueError("points is empty")
    if not np.all(np.isin(lab, (0, 1, 2, 3, -1))):
        raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {lab.tolist()}")
    return pts, lab.astype(np.int32)


def make_point_prompt(
    *,
    box: ArrayLike | torch.Tensor | None,
    points: ArrayLike | torch.Tensor | None,
    labels: ArrayLike | torch.Tensor | None,
    video_size: tuple[int, int],
    image_size: int,
    normalize_coords: bool = True,
    previous: Prompt | None = None,
) -> Prompt:
    """Clicks and/or a box as model-resolution points (box corners first, labels 2 and 3).

    Coordinates are video pixels, or [0, 1] fractions with ``normalize_coords=False``
    (the official convention). ``previous`` clicks on the same frame are kept before the new ones.
    """
    height, width = video_size
    scale = np.array([width, height], dtype=np.float64) if normalize_coords else np.ones(2)
    frame_w, frame_h = (width, height) if normalize_coords else (1.0, 1.0)
    coords: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    if box is not None:
        corners = parse_box(box, width=frame_w, height=frame_h).reshape(2, 2)
        coords.append(corners)
        labs.append(np.array(BOX_LABELS, dtype=np.int32))
    parsed = parse_points(points, labels)
    if parsed is not None:
        coords.append(parsed[0])
        labs.append(parsed[1])
    if not coords:
        raise ValueError("a prompt needs a box, points with labels, or a mask")
    # Same float32 arithmetic as the official add_new_points_or_box.
    pts = torch.tensor(np.concatenate(coords), dtype=torch.float32)[None]
    pts = pts / torch.tensor(scale, dtype=torch.float32) * image_size
    lab = torch.tensor(np.concatenate(labs), dtype=torch.int32)[None]
    if previous is not None and previous.point_coords is not None:
        pts = torch.cat([previous.point_coords.cpu(), pts], dim=1)
        lab = torch.cat([previous.point_labels.cpu(), lab], dim=1)
    return Prompt(point_coords=pts, point_labels=lab)


def make_mask_prompt(mask: ArrayLike | torch.Tensor, *, image_size: int) -> Prompt:
    """A 2-D mask (any resolution, bool or 0/1) as a (1, 1, S, S) 0/1 mask at model resolution."""
    t = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if t.dim() != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError("mask is empty")
    m = t.to(torch.bool).float()[None, None]
    if m.shape[-2:] != (image_size, image_size):
        m = F.interpolate(
            m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
        m = (m >= 0.5).float()
    return Prompt(mask=m)
