"""J&F mask metrics, by hand (davis2017-evaluation conventions)."""

from __future__ import annotations

import numpy as np
import pytest

from samurai.eval.mask_metrics import (
    boundary_f_measure,
    boundary_map,
    mask_scores,
    region_similarity,
)


def _square(size: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[rows, cols] = True
    return mask


def test_region_similarity_by_hand() -> None:
    gt = _square(4, slice(0, 2), slice(0, 3))
    assert region_similarity(_square(4, slice(0, 2), slice(0, 2)), gt) == pytest.approx(4 / 6)
    assert region_similarity(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert region_similarity(np.zeros((4, 4)), gt) == 0.0


def test_boundary_map_is_half_pixel_ring() -> None:
    boundary = boundary_map(_square(10, slice(2, 6), slice(2, 6)))
    expected = _square(10, slice(1, 6), slice(1, 6)) & ~_square(10, slice(2, 5), slice(2, 5))
    np.testing.assert_array_equal(boundary, expected)


def test_boundary_f_measure_by_hand() -> None:
    gt = _square(10, slice(2, 6), slice(2, 6))
    shifted = _square(10, slice(2, 6), slice(4, 8))
    # rings of 16 pixels two columns apart; a radius-1 disk matches 10 of 16 both ways
    assert boundary_f_measure(shifted, gt) == pytest.approx(0.625)  # ceil(0.008 * 14.1) = 1
    assert boundary_f_measure(shifted, gt, bound_th=1) == pytest.approx(0.625)
    assert boundary_f_measure(_square(10, slice(2, 6), slice(3, 7)), gt) == 1.0
    assert boundary_f_measure(np.zeros((10, 10)), np.zeros((10, 10))) == 1.0
    assert boundary_f_measure(np.zeros((10, 10)), gt) == 0.0


def test_mask_scores_skip_first_and_last() -> None:
    gt = _square(10, slice(2, 6), slice(2, 6))
    empty = np.zeros_like(gt)
    preds = [empty, gt, _square(10, slice(2, 6), slice(4, 8)), empty]
    scores = mask_scores(preds, [gt] * 4)
    assert scores.j == pytest.approx((1 + 8 / 24) / 2)
    assert scores.f == pytest.approx((1 + 0.625) / 2)
    assert scores.j_and_f == pytest.approx((scores.j + scores.f) / 2)
    assert mask_scores(preds, [gt] * 4, skip_first_and_last=False).j == pytest.approx(
        (1 + 8 / 24) / 4
    )
