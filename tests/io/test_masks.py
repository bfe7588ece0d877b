"""Tests of samurai.io.masks: mask_to_box, box conversions and the SAMURAI box IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import golden
from samurai.io.masks import (
    box_iou,
    mask_to_box,
    xyah_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_xyah,
    xyxy_to_xywh,
)


def _loop_mask_to_box(mask: np.ndarray) -> list[int]:
    """The reference's per-mask code path: argwhere, min / max, [0, 0, 0, 0] when empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _loop_iou(b1: list[float], b2: list[float]) -> float:
    """The reference ``_compute_iou`` formula, scalar by scalar."""
    if list(b2) == [0, 0, 0, 0]:
        return 0.0
    x1, y1, x2, y2 = b1
    u1, v1, u2, v2 = b2
    inter = max(0, min(x2, u2) - max(x1, u1)) * max(0, min(y2, v2) - max(y1, v1))
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    return inter / union if union != 0 else 0.0


class TestMaskToBox:
    def test_empty_single_pixel_full(self) -> None:
        masks = torch.zeros(4, 6, 9, dtype=torch.bool)
        masks[1, 2, 7] = True
        masks[2] = True
        masks[3, 0, 0] = True
        boxes = mask_to_box(masks)
        assert boxes.dtype == torch.int64
        assert boxes.tolist() == [[0, 0, 0, 0], [7, 2, 7, 2], [0, 0, 8, 5], [0, 0, 0, 0]]

    def test_inclusive_corners(self) -> None:
        mask = torch.zeros(1, 10, 12, dtype=torch.bool)
        mask[0, 3:7, 2:11] = True  # rows 3..6, columns 2..10
        assert mask_to_box(mask).tolist() == [[2, 3, 10, 6]]

    def test_random_batch_matches_loop(self) -> None:
        gen = torch.Generator().manual_seed(0)
        masks = torch.rand(16, 33, 47, generator=gen) > 0.995
        masks[3] = False
        expected = [_loop_mask_to_box(m.numpy()) for m in masks]
        assert mask_to_box(masks).tolist() == expected

    def test_leading_dims_and_logits(self) -> None:
        logits = torch.full((2, 3, 8, 8), -1024.0)
        logits[1, 2, 4:6, 1:3] = 0.5
        logits[0, 0, 0, 7] = 0.0  # not > 0
        boxes = mask_to_box(logits)
        assert boxes.shape == (2, 3, 4)
        assert boxes[1, 2].tolist() == [1, 4, 2, 5]
        assert boxes[0, 0].tolist() == [0, 0, 0, 0]

    def test_zero_size_and_bad_shape(self) -> None:
        assert mask_to_box(torch.zeros(3, 0, 5, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]] * 3
        with pytest.raises(ValueError):
            mask_to_box(torch.zeros(5, dtype=torch.bool))


class TestConversions:
    def test_golden_edge_cases(self) -> None:
        g = golden("kalman")
        np.testing.assert_array_equal(xyxy_to_xyah(g["edge_xyxy"]), g["edge_xyah"])
        np.testing.assert_array_equal(xyxy_to_xyah(g["boxes_xyxy"]), g["measurements_xyah"])

    def test_empty_and_zero_height(self) -> None:
        np.testing.assert_array_equal(xyxy_to_xyah([0, 0, 0, 0]), [0, 0, 0, 1])
        # h == 0 is replaced by 1 before a = w / h
        np.testing.assert_array_equal(xyxy_to_xyah([10, 20, 30, 20]), [20, 20, 20, 1])
        # zero width is kept: a = 0
        np.testing.assert_array_equal(xyxy_to_xyah([5, 5, 5, 9]), [5, 7, 0, 4])

    def test_no_plus_one(self) -> None:
        np.testing.assert_array_equal(xyxy_to_xyah([0, 0, 1022, 511]), [511.0, 255.5, 2.0, 511])

    def test_round_trip(self) -> None:
        rng = np.random.default_rng(0)
        xy = rng.integers(0, 1000, size=(50, 2))
        wh = rng.integers(1, 500, size=(50, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
        np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(boxes)), boxes, rtol=0, atol=1e-9)

    def test_xyah_to_xyxy_values(self) -> None:
        np.testing.assert_array_equal(xyah_to_xyxy([10, 20, 0.5, 8]), [8, 16, 12, 24])

    def test_xywh(self) -> None:
        np.testing.assert_array_equal(xywh_to_xyxy([[1, 2, 3, 4]]), [[1, 2, 4, 6]])
        np.testing.assert_array_equal(xyxy_to_xywh([[1, 2, 4, 6]]), [[1, 2, 3, 4]])
        box = torch.tensor([5, 6, 15, 26])
        np.testing.assert_array_equal(xywh_to_xyxy(xyxy_to_xywh(box)), box.numpy())

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError):
            xyxy_to_xyah([1, 2, 3])


class TestBoxIou:
    def test_simple_cases(self) -> None:
        box = [0.0, 0.0, 10.0, 10.0]
        cands = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
        np.testing.assert_array_equal(box_iou(box, cands), [1.0, 50 / 150, 0.0, 0.0])

    def test_empty_candidate_is_zero_even_if_overlapping(self) -> None:
        # [0, 0, 0, 0] is 0 by definition, whatever the predicted box
        assert box_iou([-5.0, -5.0, 5.0, 5.0], [[0, 0, 0, 0]])[0] == 0.0

    def test_zero_union(self) -> None:
        assert box_iou([3.0, 3.0, 3.0, 3.0], [[3, 3, 3, 3]])[0] == 0.0

    def test_matches_scalar_formula(self) -> None:
        rng = np.random.default_rng(1)
        for _ in range(200):
            pred = list(rng.uniform(-50, 300, size=4))
            cands = rng.integers(0, 256, size=(3, 4))
            cands[rng.integers(0, 3)] = 0
            expected = [_loop_iou(pred, [int(v) for v in c]) for c in cands]
            np.testing.assert_array_equal(box_iou(pred, cands), expected)

    def test_golden_candidate_ious(self) -> None:
        g = golden("kalman")
        for t in range(1, len(g["boxes_xyxy"])):
            ious = box_iou(g["predicted_box_xyxy"][t], g["candidate_boxes_xyxy"][t])
            np.testing.assert_allclose(ious, g["candidate_ious"][t], rtol=1e-9, atol=0)

    def test_bad_shapes(self) -> None:
        with pytest.raises(ValueError):
            box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]])
