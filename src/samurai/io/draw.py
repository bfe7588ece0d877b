"""Drawing of tracking results on frames: each object's mask, box and id in its colour."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from samurai.io.frames import Frame
from samurai.tracking.results import FrameResult

__all__ = ["DEFAULT_COLORS", "draw_result"]

# matplotlib's tab10 palette, RGB; object k gets DEFAULT_COLORS[k % 10].
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def draw_result(
    frame: Frame,
    result: FrameResult,
    *,
    colors: Sequence[tuple[int, int, int]] = DEFAULT_COLORS,
    alpha: float = 0.5,
) -> Frame:
    """Draw each object's mask (alpha blend), box and id in its colour on a copy of ``frame``.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB at the video's resolution (``result.video_size``).
        result: the frame's result; object ``k`` gets ``colors[k % len(colors)]``.
        colors: RGB colours.
        alpha: mask opacity in [0, 1].

    Returns:
        A new ``(H, W, 3)`` uint8 RGB frame; objects with an empty mask are not drawn.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[:2] != tuple(result.video_size):
        raise ValueError(f"frame {frame.shape} does not match the video size {result.video_size}")
    image = np.array(frame, dtype=np.uint8, order="C")
    masks = result.masks().cpu().numpy()
    boxes = result.boxes_xyxy().tolist()
    drawn = [(i, colors[o.obj_id % len(colors)]) for i, o in enumerate(result.objects)]
    drawn = [(i, rgb) for i, rgb in drawn if masks[i].any()]
    for i, rgb in drawn:  # blend inside the box only: a small object costs little on 4K frames
        x1, y1, x2, y2 = boxes[i]
        crop = image[y1 : y2 + 1, x1 : x2 + 1]
        tint = cv2.addWeighted(crop, 1 - alpha, np.full_like(crop, rgb), alpha, 0)
        np.copyto(crop, tint, where=masks[i, y1 : y2 + 1, x1 : x2 + 1, None])
    thickness = max(1, round(min(image.shape[:2]) / 360))
    scale = max(0.4, min(image.shape[:2]) / 1200)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, rgb in drawn:
        x1, y1, x2, y2 = boxes[i]
        cv2.rectangle(image, (x1, y1), (x2, y2), rgb, thickness)
        text = str(result.objects[i].obj_id)
        (w, h), base = cv2.getTextSize(text, font, scale, thickness)
        top = y1 - h - base if y1 >= h + base else y1  # inside the box when it touches the top
        cv2.rectangle(image, (x1, top), (x1 + w + 2, top + h + base), rgb, cv2.FILLED)
        ink = (0, 0, 0) if sum(rgb) > 384 else (255, 255, 255)
        cv2.putText(image, text, (x1 + 1, top + h), font, scale, ink, thickness, cv2.LINE_AA)
    return image
