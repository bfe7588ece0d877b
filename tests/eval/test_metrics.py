"""Metrics against the got10k toolkit's own functions and hand-computed values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from samurai.eval.metrics import (
    GENERIC,
    LASOT,
    UAV,
    center_error,
    got10k_ious,
    got10k_scores,
    overlap_ratio,
    precision_curve,
    rect_iou,
    sequence_scores,
    success_curve,
    summarize,
)

toolkit_metrics = pytest.importorskip("got10k.utils.metrics")
toolkit_got10k = pytest.importorskip("got10k.experiments.got10k")
toolkit_otb = pytest.importorskip("got10k.experiments.otb")
toolkit_uav = pytest.importorskip("got10k.experiments.uav123")

TOL = 1e-9


def _awkward_predictions(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """Jittered boxes plus empty, negative, degenerate, out-of-image and far-away ones."""
    pred = gt + rng.normal(0, 8, gt.shape)
    n = len(gt)
    pred[rng.random(n) < 0.1, 2:] = 0.0  # empty
    pred[rng.random(n) < 0.05, 2] = -5.0  # negative width
    pred[rng.random(n) < 0.05, 3] = 1e-9  # degenerate sliver
    pred[rng.random(n) < 0.05, :2] = [-50.0, -50.0]  # partly outside the image
    pred[rng.random(n) < 0.05, :2] += 1000.0  # outside the image
    return pred


def test_rect_iou_equals_toolkit() -> None:
    rng = np.random.default_rng(0)
    gt = np.round(rng.uniform(0, 300, (500, 4)), 1)
    pred = _awkward_predictions(rng, gt)
    for bound in (None, (320, 240)):
        expected = toolkit_metrics.rect_iou(pred.copy(), gt.copy(), bound=bound)
        np.testing.assert_allclose(rect_iou(pred, gt, bound=bound), expected, rtol=0, atol=TOL)
    np.testing.assert_allclose(
        center_error(pred, gt), toolkit_metrics.center_error(pred, gt), rtol=0, atol=TOL
    )


def _toolkit_got10k_report(runs: dict[str, list[np.ndarray]], annos: dict, covers: dict, bound):
    """The loop of ExperimentGOT10k.report (val), with the toolkit's own rect_iou and _evaluate."""
    per_sequence, pooled = {}, []
    for name, boxes in runs.items():
        anno = annos[name].copy()
        seq_ious = [toolkit_metrics.rect_iou(b[1:].copy(), anno[1:], bound=bound) for b in boxes]
        seq_ious = np.concatenate([t[covers[name][1:] > 0] for t in seq_ious])
        pooled.append(seq_ious)
        ao, sr, _, curve = toolkit_got10k.ExperimentGOT10k._evaluate(None, seq_ious, [])
        per_sequence[name] = (ao, sr, float(np.mean(seq_ious > 0.75)), curve)
    ious = np.concatenate(pooled)
    ao, sr, _, curve = toolkit_got10k.ExperimentGOT10k._evaluate(None, ious, [])
    return per_sequence, (ao, sr, float(np.mean(ious > 0.75)), curve)


def test_got10k_scores_equal_toolkit() -> None:
    rng = np.random.default_rng(1)
    bound = (320, 240)
    annos, covers, runs = {}, {}, {}
    for index, length in enumerate((40, 75, 12, 60)):
        name = f"GOT-10k_Val_{index:06d}"
        annos[name] = random_boxes_in(rng, length, bound)
        cover = rng.integers(0, 9, length)
        cover[0] = 8
        covers[name] = cover
        repetitions = 3 if index == 1 else 1
        runs[name] = [_awkward_predictions(rng, annos[name]) for _ in range(repetitions)]

    per_sequence, overall = _toolkit_got10k_report(runs, annos, covers, bound)
    all_ious = []
    for name, boxes in runs.items():
        ious = [got10k_ious(b, annos[name], image_size=bound, cover=covers[name]) for b in boxes]
        all_ious += ious
        scores = got10k_scores(ious)
        ao, sr50, sr75, curve = per_sequence[name]
        assert abs(scores.ao - ao) < TOL and abs(scores.sr50 - sr50) < TOL
        assert abs(scores.sr75 - sr75) < TOL
        np.testing.assert_allclose(scores.success, curve, rtol=0, atol=TOL)
    scores = got10k_scores(all_ious)
    assert abs(scores.ao - overall[0]) < TOL and abs(scores.sr50 - overall[1]) < TOL
    assert abs(scores.sr75 - overall[2]) < TOL
    np.testing.assert_allclose(scores.success, overall[3], rtol=0, atol=TOL)


def random_boxes_in(rng: np.random.Generator, count: int, bound: tuple[int, int]) -> np.ndarray:
    w, h = bound
    xy = rng.uniform(0, [w - 20, h - 20], (count, 2))
    wh = rng.uniform(5, 80, (count, 2))
    return np.round(np.concatenate([xy, wh], axis=1), 1)


def test_otb_style_curves_equal_toolkit() -> None:
    rng = np.random.default_rng(2)
    stub = SimpleNamespace(nbins_iou=21, nbins_ce=51)
    gt = np.round(rng.uniform(0, 300, (200, 4)), 1)
    pred = _awkward_predictions(rng, gt)
    ious, errors = toolkit_otb.ExperimentOTB._calc_metrics(stub, pred.copy(), gt.copy())
    expected_success, expected_precision = toolkit_otb.ExperimentOTB._calc_curves(
        stub, ious, errors
    )
    success = success_curve(rect_iou(pred, gt))
    precision = precision_curve(center_error(pred, gt))
    np.testing.assert_allclose(success, expected_success, rtol=0, atol=TOL)
    np.testing.assert_allclose(precision, expected_precision, rtol=0, atol=TOL)
    # UAV123 in the got10k toolkit drops NaN ground-truth rows
    gt[rng.random(len(gt)) < 0.2] = np.nan
    ious, errors = toolkit_uav.ExperimentUAV123._calc_metrics(stub, pred.copy(), gt.copy())
    keep = ~np.isnan(gt).any(axis=1)
    np.testing.assert_allclose(rect_iou(pred[keep], gt[keep]), ious, rtol=0, atol=TOL)


def test_overlap_ratio_pixel_inclusive_by_hand() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [3, 4, 1, 1]], float)
    others = np.array([[5, 5, 10, 10], [10, 0, 10, 10], [0, 0, 10, 10], [3, 4, 1, 1]], float)
    # 5x5 overlap of two 10x10 boxes: 25 / 175; touching boxes share no pixel
    np.testing.assert_allclose(overlap_ratio(boxes, others), [1 / 7, 0.0, 1.0, 1.0], atol=1e-15)


def _hand_sequence() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (5, 1))
    pred = np.array(
        [[50, 50, 5, 5], [0, 0, 10, 10], [5, 5, 10, 10], [0, 0, 0, 0], [100, 100, 10, 10]], float
    )
    visible = np.array([True, True, True, True, False])
    return pred, gt, visible


def test_sequence_scores_lasot_by_hand() -> None:
    pred, gt, visible = _hand_sequence()
    # frame 0 -> ground truth; frame 3 (empty) -> frame 2's box; frame 4 absent
    scores = sequence_scores(pred, gt, visible=visible, convention=LASOT)
    # IoUs 1, 1, 1/7, 1/7, -1: 4/5 above t <= 0.10, 2/5 for 0.15..0.95, 0 at 1.0
    expected = np.array([0.8] * 3 + [0.4] * 17 + [0.0])
    np.testing.assert_allclose(scores.success, expected, atol=1e-15)
    assert scores.auc == pytest.approx((3 * 0.8 + 17 * 0.4) / 21, abs=1e-15)
    assert scores.op50 == pytest.approx(0.4) and scores.op75 == pytest.approx(0.4)
    # centre errors 0, 0, sqrt(50), sqrt(50), inf
    assert scores.precision[0] == pytest.approx(0.4) and scores.precision_20 == pytest.approx(0.8)
    assert scores.precision[7] == pytest.approx(0.4) and scores.precision[8] == pytest.approx(0.8)
    # normalised errors 0, 0, sqrt(0.5), sqrt(0.5), inf
    assert scores.norm_precision_20 == pytest.approx(0.4) and scores.norm_precision[-1] == 0.4
    assert scores.average_overlap == pytest.approx((2 + 2 / 7) / 4)


def test_sequence_scores_generic_counts_invalid_norm_error_as_hit() -> None:
    pred, gt, visible = _hand_sequence()
    scores = sequence_scores(pred, gt, visible=visible, convention=GENERIC)
    assert scores.norm_precision_20 == pytest.approx(0.6)  # pytracking's -1 for invalid frames
    assert scores.precision_20 == pytest.approx(0.8)  # but +inf for the centre error


def test_sequence_scores_uav_nan_ground_truth() -> None:
    pred, gt, _ = _hand_sequence()
    gt[4] = np.nan
    with pytest.raises(ValueError, match="NaN in ground truth"):
        sequence_scores(pred, gt, convention=LASOT)
    scores = sequence_scores(pred, gt, convention=UAV)
    assert scores.success[0] == pytest.approx(0.8)  # the NaN frame never succeeds ...
    assert scores.precision[0] == pytest.approx(0.6)  # ... but counts as a precision hit


def test_sequence_scores_length_and_nan_predictions() -> None:
    pred, gt, _ = _hand_sequence()
    with pytest.raises(ValueError, match="4 predicted boxes for 5"):
        sequence_scores(pred[:4], gt)
    longer = sequence_scores(np.concatenate([pred, pred]), gt)
    np.testing.assert_array_equal(longer.success, sequence_scores(pred, gt).success)
    with_nan = pred.copy()
    with_nan[3] = np.nan  # carried from frame 2 like an empty box
    np.testing.assert_array_equal(
        sequence_scores(with_nan, gt).success, sequence_scores(pred, gt).success
    )


def test_summarize_is_mean_over_sequences() -> None:
    pred, gt, visible = _hand_sequence()
    a = sequence_scores(pred, gt, visible=visible, convention=LASOT)
    b = sequence_scores(gt, gt)
    total = summarize([a, b])
    assert total.num_sequences == 2
    assert total.auc == pytest.approx((a.auc + b.auc) / 2, abs=1e-15)
    assert b.auc == pytest.approx(20 / 21)


def test_got10k_scores_by_hand() -> None:
    scores = got10k_scores(np.array([0.2, 0.6, 0.8, 1.0]))
    assert (scores.ao, scores.sr50, scores.sr75) == pytest.approx((0.65, 0.75, 0.5))
    assert np.isnan(got10k_scores([]).ao)
    gt = np.array([[10, 10, 20, 20], [10, 10, 20, 20], [300, 10, 20, 20]], float)
    pred = np.array([[0, 0, 1, 1], [np.nan] * 4, [310, 10, 20, 20]], float)
    # frame 0 excluded; NaN scores 0; the box clipped to a 320-wide image is 10x20: 200 / 400
    ious = got10k_ious(pred, gt, image_size=(320, 240))
    np.testing.assert_allclose(ious, [0.0, 0.5], atol=1e-12)
    kept = got10k_ious(pred, gt, image_size=(320, 240), cover=[1, 0, 1])
    np.testing.assert_allclose(kept, [0.5], atol=1e-12)
