"""Whole-video traces against the official SAM 2.1 / SAMURAI runs in ../shared/reference/golden.

Tolerances are the reference README's; decisions must be identical on every frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden_trace import TRACES, Trace, run_trace
from reference import golden

SAMURAI = [k for k, v in TRACES.items() if v.samurai]


def _trace(name: str, cache: dict[str, Trace]) -> Trace:
    if name not in cache:
        cache[name] = run_trace(TRACES[name])
    return cache[name]


_CACHE: dict[str, Trace] = {}


@pytest.fixture(params=list(TRACES))
def trace_name(request: pytest.FixtureRequest) -> str:
    return request.param


def frames_of(trace: Trace, key: str) -> list[int]:
    return sorted(trace[key])


def assert_frames(trace: Trace, g, key: str, check, frames=None) -> None:
    ours = trace.get(key, {})
    frames = sorted(ours) if frames is None else frames
    assert frames, f"{key}: nothing to compare"
    for f in frames:
        assert f in ours, f"{key}: no value on frame {f}"
        try:
            check(np.asarray(ours[f]), g[key][f])
        except AssertionError as exc:
            raise AssertionError(f"{key} differs on frame {f}: {exc}") from None


def exact(a, b) -> None:
    np.testing.assert_array_equal(a, b)


def close(atol: float, rtol: float = 0.0):
    def check(a, b) -> None:
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol)

    return check


pytestmark = [pytest.mark.golden, pytest.mark.slow]


def _group(name: str):
    # All tests of one trace run on the same xdist worker, so the trace runs once.
    return pytest.param(name, marks=pytest.mark.xdist_group(name), id=name)


ALL = [_group(n) for n in TRACES]
SAM = [_group(n) for n in SAMURAI]


@pytest.mark.parametrize("name", ALL)
def test_decisions_identical(name: str) -> None:
    trace, g = _trace(name, _CACHE), golden(name)
    num = len(g["frame_idx"])
    assert sorted(trace["chosen_token"]) == list(range(num)), "every frame must be tracked"
    for key in ("chosen_token", "chosen_candidate", "mem_frames", "mem_tpos", "ptr_frames"):
        assert_frames(trace, g, key, exact)
    assert_frames(trace, g, "is_obj_appearing_mask", exact)
    assert_frames(trace, g, "chosen_box_1024", exact)
    multimask = [f for f in range(num) if g["multimask_output"][f]]
    assert_frames(trace, g, "cand_boxes_1024", exact, multimask)


@pytest.mark.parametrize("name", ALL)
def test_scores_and_pointers_within_tolerance(name: str) -> None:
    trace, g = _trace(name, _CACHE), golden(name)
    for key in ("ious", "ious_all4", "best_iou_score"):
        assert_frames(trace, g, key, close(2e-4))
    assert_frames(trace, g, "object_score_logit", close(1e-3))
    assert_frames(trace, g, "obj_ptr", close(1e-4))


@pytest.mark.parametrize("name", ALL)
def test_masks_within_tolerance(name: str) -> None:
    trace, g = _trace(name, _CACHE), golden(name)

    def logits(a, b) -> None:
        absent = b == -1024.0
        np.testing.assert_array_equal(a[absent], b[absent])
        np.testing.assert_allclose(a[~absent], b[~absent], atol=1e-3)

    def video_mask(a, b) -> None:
        diff = int((a != b).sum())
        assert diff <= 1e-4 * a.size, f"{diff} pixels differ (limit {1e-4 * a.size:.0f})"

    assert_frames(trace, g, "low_res_logits", logits)
    assert_frames(trace, g, "video_masks", video_mask)
    assert_frames(trace, g, "video_mask_box", close(1.0))
    multimask = [f for f in range(len(g["frame_idx"])) if g["multimask_output"][f]]
    assert_frames(trace, g, "cand_areas_1024", close(0, rtol=1e-3), multimask)


@pytest.mark.parametrize("name", SAM)
def test_samurai_kalman_and_memory_gate(name: str) -> None:
    trace, g = _trace(name, _CACHE), golden(name)
    num = len(g["frame_idx"])
    tracked = list(range(1, num))
    for key in ("kf_phase", "stable_frames", "mem_gate_pass"):
        assert_frames(trace, g, key, exact, tracked)
    with_kf = [f for f in tracked if g["kf_phase"][f] > 0]
    assert_frames(trace, g, "kf_mean", close(0, rtol=1e-9), with_kf)
    assert_frames(trace, g, "kf_cov", close(1e-12, rtol=1e-9), with_kf)
    stable = [f for f in tracked if g["kf_phase"][f] == 3]
    if stable:
        assert_frames(trace, g, "kf_ious", lambda a, b: exact(a.astype(np.float32), b), stable)
        assert_frames(trace, g, "selection_scores", close(2e-4), stable)
