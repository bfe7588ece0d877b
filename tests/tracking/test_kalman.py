"""Tests of samurai.tracking.kalman against the reference trace ``kalman.npz``."""

from __future__ import annotations

import numpy as np
import pytest

from reference import golden
from samurai.io.masks import xyxy_to_xyah
from samurai.tracking.kalman import Gaussian, KalmanFilter

RTOL = 1e-9


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)


def test_constants() -> None:
    g = golden("kalman")
    kf = KalmanFilter()
    np.testing.assert_array_equal(kf.motion_mat, g["motion_mat"])
    np.testing.assert_array_equal(kf.update_mat, g["update_mat"])
    assert kf.std_weight_position == g["std_weight_position"]
    assert kf.std_weight_velocity == g["std_weight_velocity"]


def test_golden_trace() -> None:
    """Replays the reference's 30-step trace: every array of kalman.npz, rtol 1e-9."""
    g = golden("kalman")
    kf = KalmanFilter()
    np.testing.assert_array_equal(xyxy_to_xyah(g["boxes_xyxy"]), g["measurements_xyah"])
    mean, cov = kf.initiate(g["measurements_xyah"][0])
    _close(mean, g["mean_after_step"][0])
    _close(cov, g["cov_after_step"][0])
    for t in range(1, len(g["boxes_xyxy"])):
        mean, cov = kf.predict(mean, cov)
        _close(mean, g["mean_after_predict"][t])
        _close(cov, g["cov_after_predict"][t])
        projected_mean, projected_cov = kf.project(mean, cov)
        _close(projected_mean, g["projected_mean"][t])
        _close(projected_cov, g["projected_cov"][t])
        _close(kf.predicted_box(mean), g["predicted_box_xyxy"][t])
        _close(kf.candidate_ious(mean, g["candidate_boxes_xyxy"][t]), g["candidate_ious"][t])
        if g["updated"][t]:
            mean, cov = kf.update(mean, cov, g["measurements_xyah"][t])
        _close(mean, g["mean_after_step"][t])
        _close(cov, g["cov_after_step"][t])
    assert not g["updated"][[7, 8, 19]].any()


def test_initiate_from_empty_box() -> None:
    mean, cov = KalmanFilter().initiate(xyxy_to_xyah([0, 0, 0, 0]))
    np.testing.assert_array_equal(mean, [0, 0, 0, 1, 0, 0, 0, 0])
    expected_std = [0.1, 0.1, 1e-2, 0.1, 0.0625, 0.0625, 1e-5, 0.0625]
    np.testing.assert_allclose(np.diag(cov), np.square(expected_std), rtol=1e-15)
    assert np.count_nonzero(cov - np.diag(np.diag(cov))) == 0


def test_gaussian_is_a_pair() -> None:
    result = KalmanFilter().initiate([1.0, 2.0, 0.5, 10.0])
    assert isinstance(result, Gaussian)
    mean, cov = result
    assert mean.shape == (8,) and cov.shape == (8, 8)
    assert mean.dtype == np.float64 and cov.dtype == np.float64


def test_inputs_not_modified() -> None:
    kf = KalmanFilter()
    mean, cov = kf.initiate([100.0, 100.0, 0.5, 40.0])
    mean0, cov0 = mean.copy(), cov.copy()
    kf.update(*kf.predict(mean, cov), [101.0, 99.0, 0.5, 41.0])
    np.testing.assert_array_equal(mean, mean0)
    np.testing.assert_array_equal(cov, cov0)


def _assert_spd(cov: np.ndarray) -> None:
    scale = np.abs(cov).max()
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12 * scale)
    assert np.linalg.eigvalsh((cov + cov.T) / 2).min() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_covariance_stays_spd_over_long_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kf = KalmanFilter()
    box = np.array([300.0, 200.0, 420.0, 500.0])
    mean, cov = kf.initiate(xyxy_to_xyah(box))
    for step in range(1000):
        mean, cov = kf.predict(mean, cov)
        _assert_spd(cov)
        box = box + rng.integers(-6, 7, size=4)
        box[2:] = np.maximum(box[2:], box[:2] + 1)
        if rng.random() > 0.1 or step > 900:  # skipped updates, then a long tracked tail
            mean, cov = kf.update(mean, cov, xyxy_to_xyah(box))
        _assert_spd(cov)
    assert np.all(np.isfinite(mean))


def test_degenerate_measurements() -> None:
    """Zero-height and empty boxes (h replaced by 1, a = 0) keep the filter finite."""
    kf = KalmanFilter()
    mean, cov = kf.initiate(xyxy_to_xyah([0, 0, 0, 0]))
    for box in ([0, 0, 0, 0], [10, 20, 30, 20], [5, 5, 5, 90], [0, 0, 1023, 1023]):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xyxy_to_xyah(box))
        assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
        _assert_spd(cov)


def test_update_pulls_towards_measurement() -> None:
    kf = KalmanFilter()
    mean, cov = kf.predict(*kf.initiate([100.0, 100.0, 0.5, 40.0]))
    new_mean, new_cov = kf.update(mean, cov, [110.0, 100.0, 0.5, 40.0])
    assert 100.0 < new_mean[0] < 110.0 and new_mean[4] > 0
    assert np.all(np.diag(new_cov) <= np.diag(cov))


def test_gating_distance() -> None:
    kf = KalmanFilter()
    mean, cov = kf.predict(*kf.initiate([100.0, 80.0, 0.5, 40.0]))
    z = np.array([[100.0, 80.0, 0.5, 40.0], [104.0, 77.0, 0.6, 44.0]])
    projected_mean, projected_cov = kf.project(mean, cov)
    d = z - projected_mean
    expected = np.einsum("ni,ij,nj->n", d, np.linalg.inv(projected_cov), d)
    np.testing.assert_allclose(kf.gating_distance(mean, cov, z), expected, rtol=1e-10)
    pos = np.einsum("ni,ij,nj->n", d[:, :2], np.linalg.inv(projected_cov[:2, :2]), d[:, :2])
    np.testing.assert_allclose(
        kf.gating_distance(mean, cov, z, only_position=True), pos, rtol=1e-10
    )
    assert kf.gating_distance(mean, cov, z)[0] == pytest.approx(0.0, abs=1e-20)


def test_bad_shapes() -> None:
    kf = KalmanFilter()
    mean, cov = kf.initiate([1.0, 2.0, 0.5, 10.0])
    with pytest.raises(ValueError):
        kf.initiate([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        kf.predict(mean[:4], cov)
    with pytest.raises(ValueError):
        kf.update(mean, cov[:4, :4], [1.0, 2.0, 0.5, 10.0])
    with pytest.raises(ValueError):
        kf.gating_distance(mean, cov, [1.0, 2.0, 0.5, 10.0])
    with pytest.raises(ValueError):
        kf.predicted_box(mean[:3])
