"""Tests of samurai.tracking.motion: golden replays and every SAMURAI branch on hand-made input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import golden
from samurai.config import SAMURAI_DEFAULTS, SamuraiConfig
from samurai.io.masks import xyxy_to_xyah
from samurai.tracking.kalman import Gaussian, KalmanFilter
from samurai.tracking.motion import (
    BestIouSelector,
    CandidateSelection,
    CandidateSelector,
    KalmanPhase,
    MotionState,
    SamuraiMotionSelector,
)

GOLDEN_RUNS = {
    "samurai_t_bedroom": "sam2.1_hiera_t",
    "samurai_t_points_bedroom": "sam2.1_hiera_t",
    "samurai_bplus_bedroom": "sam2.1_hiera_b+",
    "samurai_l_bedroom": "sam2.1_hiera_l",
}
RTOL = 1e-9
THRESHOLD = np.float32(0.3)
BOX = np.array([100, 200, 300, 600])  # the tracked object, model-resolution pixels
FAR = np.array([800, 10, 900, 60])  # a distractor far away
EMPTY = np.zeros(4, dtype=np.int64)


def _nan(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan)


def _replay(name: str) -> tuple[list[CandidateSelection], SamuraiMotionSelector]:
    g = golden(name)
    selector = SamuraiMotionSelector(SAMURAI_DEFAULTS[GOLDEN_RUNS[name]])
    state = MotionState()
    results = []
    for f in range(1, len(g["frame_idx"])):  # frame 0: prompted, single-mask, no KF
        assert g["multimask_output"][f]
        result = selector.select(g["ious"][f], g["cand_boxes_1024"][f], state)
        results.append(result)
        state = result.state
    return results, selector


@pytest.mark.golden
@pytest.mark.parametrize("name", sorted(GOLDEN_RUNS))
def test_golden_replay(name: str) -> None:
    """Golden ious + candidate boxes of frames 1..F-1 reproduce every SAMURAI decision/state."""
    g = golden(name)
    results, _ = _replay(name)
    frames = slice(1, None)
    np.testing.assert_array_equal([r.index for r in results], g["chosen_candidate"][frames])
    np.testing.assert_array_equal([r.phase for r in results], g["kf_phase"][frames])
    for key, attr in [
        ("kf_initiated", "initiated"),
        ("kf_predicted", "predicted"),
        ("kf_updated", "updated"),
    ]:
        np.testing.assert_array_equal([getattr(r, attr) for r in results], g[key][frames])
    np.testing.assert_array_equal(
        [r.stable_frames_before for r in results], g["stable_frames_before"][frames]
    )
    np.testing.assert_array_equal(
        [r.state.stable_frames for r in results], g["stable_frames"][frames]
    )
    np.testing.assert_array_equal([r.iou for r in results], g["best_iou_score"][frames])

    def stack(attr: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.stack([_nan(shape) if (v := getattr(r, attr)) is None else v for r in results])

    np.testing.assert_allclose(
        stack("measurement", (4,)), g["kf_measurement_xyah"][frames], rtol=RTOL, atol=0
    )
    np.testing.assert_allclose(
        [_gaussian(r.state).mean for r in results], g["kf_mean"][frames], rtol=RTOL, atol=0
    )
    np.testing.assert_allclose(
        [_gaussian(r.state).covariance for r in results], g["kf_cov"][frames], rtol=RTOL, atol=0
    )
    np.testing.assert_allclose(
        stack("predicted_box", (4,)), g["kf_pred_box_xyxy"][frames], rtol=RTOL, atol=0
    )
    # stored as float32 in the golden file; the reference computes them in float64
    np.testing.assert_array_equal(stack("kf_ious", (3,)).astype(np.float32), g["kf_ious"][frames])
    kf_scores = [np.nan if r.kf_score is None else r.kf_score for r in results]
    np.testing.assert_array_equal(np.array(kf_scores, np.float32), g["kf_score"][frames])
    scores = np.stack([r.scores for r in results]).astype(np.float32)
    np.testing.assert_array_equal(scores, g["selection_scores"][frames])


@pytest.mark.golden
def test_golden_branch_coverage() -> None:
    """The main file covers empty-box initiate, resets and a KF-changed choice (README)."""
    g = golden("samurai_t_bedroom")
    results, _ = _replay("samurai_t_bedroom")
    by_frame = dict(enumerate(results, start=1))
    np.testing.assert_array_equal(by_frame[1].state.mean, [0, 0, 0, 1, 0, 0, 0, 0])
    assert [f for f, r in by_frame.items() if r.phase == KalmanPhase.INITIATE] == [1, 11, 13, 15]
    assert by_frame[39].index == 2 and g["argmax_candidate"][39] == 1


def _gaussian(state: MotionState) -> Gaussian:
    assert state.mean is not None and state.covariance is not None
    return Gaussian(state.mean, state.covariance)


def _selector(**overrides: float) -> SamuraiMotionSelector:
    return SamuraiMotionSelector(SamuraiConfig(**overrides))  # type: ignore[arg-type]


def _boxes(*boxes: np.ndarray) -> np.ndarray:
    return np.stack(boxes).astype(np.int64)


def _ious(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _to_stable(selector: SamuraiMotionSelector, box: np.ndarray = BOX) -> MotionState:
    """Initiate + stabilising updates until the stable phase is reached."""
    state = MotionState()
    for _ in range(selector.config.stable_frames_threshold):
        state = selector.select(_ious(0.9, 0.5, 0.1), _boxes(box, FAR, EMPTY), state).state
    assert state.stable_frames == selector.config.stable_frames_threshold
    return state


class TestSamuraiBranches:
    def test_initiate_from_best_iou(self) -> None:
        r = _selector().select(_ious(0.2, 0.7, 0.1), _boxes(FAR, BOX, EMPTY), MotionState())
        assert r.phase == KalmanPhase.INITIATE and r.index == 1
        assert r.kf_events == ("initiate",) and r.kf_ious is None and r.kf_score is None
        np.testing.assert_array_equal(r.measurement, xyxy_to_xyah(BOX))
        np.testing.assert_array_equal(_gaussian(r.state).mean[:4], xyxy_to_xyah(BOX))
        assert r.state.stable_frames == 1
        assert r.iou == np.float32(0.7)

    def test_initiate_from_empty_mask(self) -> None:
        """Object absent on the first tracked frame: every box is [0, 0, 0, 0]."""
        r = _selector().select(_ious(0.03, 0.9, 0.78), _boxes(EMPTY, EMPTY, EMPTY), MotionState())
        np.testing.assert_array_equal(r.measurement, [0, 0, 0, 1])
        np.testing.assert_array_equal(r.state.mean, [0, 0, 0, 1, 0, 0, 0, 0])

    def test_stabilising_update(self) -> None:
        selector = _selector()
        state = selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), MotionState()).state
        r = selector.select(_ious(0.4, 0.8, 0.1), _boxes(FAR, BOX + 4, EMPTY), state)
        assert r.phase == KalmanPhase.STABILISING and r.index == 1
        assert r.kf_events == ("predict", "update")
        assert r.state.stable_frames == 2 and r.stable_frames_before == 1
        kf = KalmanFilter()
        expected = kf.update(*kf.predict(*_gaussian(state)), xyxy_to_xyah(BOX + 4))
        np.testing.assert_array_equal(r.state.mean, expected.mean)
        np.testing.assert_array_equal(r.scores, _ious(0.4, 0.8, 0.1).astype(np.float64))

    def test_stabilising_reset_at_exactly_threshold(self) -> None:
        selector = _selector()
        state = selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), MotionState()).state
        r = selector.select(_ious(0.3, 0.1, 0.2), _boxes(BOX, FAR, EMPTY), state)
        assert r.phase == KalmanPhase.STABILISING and r.index == 0
        assert r.kf_events == ("predict",) and r.measurement is None
        assert r.state.stable_frames == 0
        predicted = KalmanFilter().predict(*_gaussian(state))
        np.testing.assert_array_equal(r.state.mean, predicted.mean)  # predicted state kept
        np.testing.assert_array_equal(r.state.covariance, predicted.covariance)
        # the next multimask frame re-initiates from its best candidate
        nxt = selector.select(_ious(0.1, 0.6, 0.2), _boxes(BOX, FAR, EMPTY), r.state)
        assert nxt.phase == KalmanPhase.INITIATE and nxt.index == 1
        np.testing.assert_array_equal(_gaussian(nxt.state).mean[:4], xyxy_to_xyah(FAR))
        assert nxt.state.stable_frames == 1

    def test_stabilising_update_just_above_threshold(self) -> None:
        selector = _selector()
        state = selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), MotionState()).state
        above = np.nextafter(THRESHOLD, np.float32(1))
        r = selector.select(_ious(above, 0.1, 0.2), _boxes(BOX, FAR, EMPTY), state)
        assert r.updated and r.state.stable_frames == 2

    def test_reaches_stable_phase_and_stays(self) -> None:
        selector = _selector()
        state = _to_stable(selector)
        for _ in range(5):
            r = selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), state)
            assert r.phase == KalmanPhase.STABLE and r.kf_events == ("predict", "update")
            assert r.state.stable_frames == selector.config.stable_frames_threshold
            state = r.state

    def test_stable_weighted_choice_differs_from_argmax(self) -> None:
        selector = _selector()
        state = _to_stable(selector)
        ious = _ious(0.5, 0.55, 0.1)
        r = selector.select(ious, _boxes(BOX, FAR, EMPTY), state)
        assert int(np.argmax(ious)) == 1 and r.index == 0
        predicted = KalmanFilter().predict(*_gaussian(state))
        np.testing.assert_array_equal(r.predicted_box, KalmanFilter.predicted_box(predicted.mean))
        assert r.kf_ious is not None and r.kf_ious[0] > 0.9
        assert r.kf_ious[1] == 0.0 and r.kf_ious[2] == 0.0  # disjoint, empty
        assert r.kf_score == r.kf_ious[0]
        np.testing.assert_array_equal(r.scores, 0.25 * r.kf_ious + np.float32(0.75) * ious)
        np.testing.assert_array_equal(r.measurement, xyxy_to_xyah(BOX))

    def test_stable_reset_when_chosen_iou_below_threshold(self) -> None:
        selector = _selector()
        state = _to_stable(selector)
        below = np.nextafter(THRESHOLD, np.float32(0))
        r = selector.select(_ious(below, 0.25, 0.1), _boxes(BOX, FAR, EMPTY), state)
        assert r.phase == KalmanPhase.STABLE and r.index == 0
        assert r.kf_events == ("predict",) and r.measurement is None
        assert r.state.stable_frames == 0 and r.kf_score is not None
        predicted = KalmanFilter().predict(*_gaussian(state))
        np.testing.assert_array_equal(r.state.mean, predicted.mean)
        nxt = selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), r.state)
        assert nxt.phase == KalmanPhase.INITIATE

    def test_stable_exactly_threshold_updates(self) -> None:
        selector = _selector()
        state = _to_stable(selector)
        r = selector.select(_ious(0.3, 0.1, 0.1), _boxes(BOX, FAR, EMPTY), state)
        assert r.index == 0 and r.updated and r.state.stable_frames == 15

    def test_stable_all_empty_candidates(self) -> None:
        """Object judged absent in the stable phase: kf_ious all 0, choice = argmax(ious)."""
        selector = _selector()
        state = _to_stable(selector)
        r = selector.select(_ious(0.2, 0.8, 0.7), _boxes(EMPTY, EMPTY, EMPTY), state)
        np.testing.assert_array_equal(r.kf_ious, [0, 0, 0])
        assert r.index == 1 and r.kf_score == 0.0 and r.updated
        np.testing.assert_array_equal(r.measurement, [0, 0, 0, 1])

    def test_custom_thresholds(self) -> None:
        selector = _selector(stable_frames_threshold=3, stable_ious_threshold=0.5)
        state = MotionState()
        phases = []
        for iou in (0.9, 0.9, 0.9, 0.9, 0.5, 0.9):
            r = selector.select(_ious(iou, 0.1, 0.1), _boxes(BOX, FAR, EMPTY), state)
            phases.append(int(r.phase))
            state = r.state
        # initiate, stabilise x2 -> stable; stable 0.5 (not < 0.5) updates
        assert phases == [1, 2, 2, 3, 3, 3]

    def test_input_state_not_mutated(self) -> None:
        selector = _selector()
        state = _to_stable(selector)
        mean, cov = (a.copy() for a in _gaussian(state))
        selector.select(_ious(0.9, 0.5, 0.1), _boxes(BOX, FAR, EMPTY), state)
        np.testing.assert_array_equal(state.mean, mean)
        np.testing.assert_array_equal(state.covariance, cov)
        assert state.stable_frames == 15

    def test_torch_inputs_and_batch_axis(self) -> None:
        selector = _selector()
        ious = torch.tensor([[0.2, 0.7, 0.1]])
        boxes = torch.from_numpy(_boxes(FAR, BOX, EMPTY)).unsqueeze(0)
        r = selector.select(ious, boxes, MotionState())
        assert r.index == 1
        np.testing.assert_array_equal(r.measurement, xyxy_to_xyah(BOX))

    def test_bad_inputs(self) -> None:
        selector = _selector()
        with pytest.raises(ValueError):
            selector.select(_ious(0.2, 0.7, 0.1), None, MotionState())
        with pytest.raises(ValueError):
            selector.select(_ious(0.2, 0.7, 0.1), _boxes(BOX, FAR), MotionState())
        with pytest.raises(ValueError):
            selector.select(np.zeros(0, np.float32), np.zeros((0, 4)), MotionState())

    def test_long_random_run_keeps_covariance_spd(self) -> None:
        rng = np.random.default_rng(0)
        selector = _selector()
        state = MotionState()
        box = BOX.copy()
        phases = set()
        for _ in range(400):
            box = np.clip(box + rng.integers(-8, 9, size=4), 0, 1023)
            box[2:] = np.maximum(box[2:], box[:2] + 1)
            cands = _boxes(box, rng.integers(0, 1023, size=4), EMPTY if rng.random() < 0.5 else box)
            r = selector.select(rng.uniform(0.05, 1.0, size=3).astype(np.float32), cands, state)
            phases.add(int(r.phase))
            state = r.state
            cov = _gaussian(state).covariance
            np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12 * np.abs(cov).max())
            assert np.linalg.eigvalsh((cov + cov.T) / 2).min() > 0
        assert phases == {1, 2, 3}


@pytest.mark.parametrize("weight", [0.25, 0.15, 0.5])
def test_weighted_scores_match_torch_reference_arithmetic(weight: float) -> None:
    """``torch.tensor(list of numpy float64)`` is float64; ``(1 - w) * ious`` stays float32."""
    rng = np.random.default_rng(int(weight * 100))
    selector = _selector(kf_score_weight=weight)
    for _ in range(200):
        kf_list = [np.float64(v) for v in rng.uniform(0, 1, size=3)]
        ious = torch.from_numpy(rng.uniform(0, 1, size=3).astype(np.float32))
        expected = weight * torch.tensor(kf_list) + (1 - weight) * ious
        assert expected.dtype == torch.float64
        got = selector.weighted_scores(np.array(kf_list), ious.numpy())
        np.testing.assert_array_equal(got, expected.numpy())


class TestBestIouSelector:
    def test_argmax_and_state_untouched(self) -> None:
        state = MotionState(stable_frames=4)
        r = BestIouSelector().select(_ious(0.2, 0.7, 0.7), None, state)
        assert r.index == 1  # first of a tie
        assert r.state is state and r.phase == KalmanPhase.NONE and r.kf_events == ()
        assert r.kf_ious is None and r.kf_score is None and r.measurement is None
        np.testing.assert_array_equal(r.scores, _ious(0.2, 0.7, 0.7).astype(np.float64))

    def test_same_interface(self) -> None:
        selectors: list[CandidateSelector] = [BestIouSelector(), SamuraiMotionSelector()]
        assert [s.needs_boxes for s in selectors] == [False, True]
        for s in selectors:
            r = s.select(torch.tensor([0.1, 0.9, 0.3]), _boxes(FAR, BOX, EMPTY), MotionState())
            assert r.index == 1

    def test_golden_plain_sam2_argmax(self) -> None:
        g = golden("sam2_t_bedroom")
        chosen = [
            BestIouSelector().select(g["ious"][f], None, MotionState()).index
            for f in range(1, len(g["frame_idx"]))
        ]
        np.testing.assert_array_equal(chosen, g["chosen_candidate"][1:])
