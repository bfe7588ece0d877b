"""Property-based fuzzing of the video predictor's prompt arguments and frame inputs: every
input gives a valid result or a one-line ``ValueError``, never another exception."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reference import REFERENCE_DIR, synth_state_dict
from samurai import SAM2VideoPredictor, build_sam2_video_predictor
from samurai.io.frames import ImageFolderSource
from samurai.tracking.state import VideoState

SIZE = 128
NUM_FRAMES = 2
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def _predictor_and_state() -> tuple[SAM2VideoPredictor, VideoState]:
    predictor = build_sam2_video_predictor(
        "configs/samurai/sam2.1_hiera_t.yaml", synth_state_dict("sam2.1_hiera_t"), image_size=SIZE
    )
    frames = sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:NUM_FRAMES]
    return predictor, predictor.init_state(ImageFolderSource(frames))


def _fresh() -> tuple[SAM2VideoPredictor, VideoState]:
    predictor, state = _predictor_and_state()
    predictor.reset_state(state)
    return predictor, state


def _check(call) -> Any:
    """The call's result, or None after a one-line ValueError."""
    try:
        result = call()
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)
        event(f"refused: {str(exc)[:45]}")
        return None
    event("accepted")
    return result


def _valid_output(out: Any, state: VideoState) -> None:
    frame_idx, obj_ids, masks = out
    assert isinstance(frame_idx, int) and 0 <= frame_idx < NUM_FRAMES
    assert obj_ids == state.obj_ids and all(type(i) is int for i in obj_ids)
    assert masks.shape == (len(obj_ids), 1, 540, 960) and masks.dtype == torch.float32
    assert not torch.isnan(masks).any()


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` three times out of four, else ``bad``."""
    return st.integers(0, 3).flatmap(lambda k: bad if k == 0 else good)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2000, 2000),
    st.integers(-(2**70), 2**70),
    st.integers(-100, 1100),
)
good_indices = st.one_of(
    st.integers(0, NUM_FRAMES - 1), st.integers(0, NUM_FRAMES - 1).map(np.int64)
)
indices = mostly(
    good_indices,
    st.one_of(
        st.integers(-2, NUM_FRAMES + 1),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=3),
        st.booleans(),
        st.none(),
    ),
)
good_obj_ids = st.one_of(st.integers(-(2**31), 2**31), st.integers(0, 5).map(np.int32))
obj_ids = mostly(
    good_obj_ids,
    st.one_of(
        st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3), st.booleans(), st.none()
    ),
)
in_frame = st.tuples(st.floats(-50, 1000), st.floats(-50, 600)).map(list)
good_clicks = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(in_frame, min_size=n, max_size=n),
        st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n),
    )
)
bad_clicks = st.tuples(
    st.one_of(
        st.none(),
        st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=4),
        st.lists(st.lists(numbers, max_size=3), max_size=3),
        arrays(np.float32, st.tuples(st.integers(0, 3), st.integers(1, 3))),
        st.text(max_size=4),
    ),
    st.one_of(
        st.none(),
        st.lists(st.integers(-2, 4), max_size=4),
        st.lists(numbers, max_size=3),
        st.text(max_size=3),
    ),
)
no_clicks = st.just((None, None))
wild_clicks = st.integers(1, 3).flatmap(  # right lengths, any numbers and labels
    lambda n: st.tuples(
        st.lists(st.lists(numbers, min_size=2, max_size=2), min_size=n, max_size=n),
        st.lists(st.integers(-2, 4), min_size=n, max_size=n),
    )
)
clicks = mostly(st.one_of(good_clicks, no_clicks), st.one_of(bad_clicks, wild_clicks))
good_box = st.tuples(
    st.floats(0, 900), st.floats(0, 500), st.floats(1, 960), st.floats(1, 540)
).map(list)
boxes = mostly(
    st.one_of(good_box, st.none()),
    st.one_of(
        st.lists(numbers, min_size=4, max_size=4),
        st.lists(numbers, max_size=6),
        st.text(max_size=4),
    ),
)


@FUZZ
@given(
    frame_idx=indices,
    obj_id=obj_ids,
    points_labels=clicks,
    box=boxes,
    clear_old_points=st.booleans(),
    normalize_coords=st.sampled_from([True, True, True, False]),
)
def test_add_new_points_or_box(frame_idx, obj_id, points_labels, box, **flags) -> None:
    predictor, state = _fresh()
    points, labels = points_labels
    out = _check(
        lambda: predictor.add_new_points_or_box(
            state, frame_idx, obj_id, points=points, labels=labels, box=box, **flags
        )
    )
    if out is not None:
        _valid_output(out, state)
        assert _is_int(frame_idx) and _is_int(obj_id), "non-integer index accepted"


good_masks = arrays(
    st.sampled_from([np.bool_, np.uint8, np.int64, np.float32]),
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    elements=st.integers(0, 1),
)
mask_arrays = mostly(
    good_masks,
    st.one_of(
        arrays(np.float64, st.tuples(st.integers(0, 40), st.integers(0, 40))),
        arrays(np.float32, st.lists(st.integers(0, 5), max_size=4).map(tuple)),
        arrays(np.dtype("U2"), st.tuples(st.integers(1, 3), st.integers(1, 3))),
        st.lists(
            st.lists(st.one_of(st.integers(0, 1), st.text(max_size=1)), max_size=3), max_size=3
        ),
        st.none(),
    ),
)


@FUZZ
@given(frame_idx=indices, obj_id=obj_ids, mask=mask_arrays)
def test_add_new_mask(frame_idx, obj_id, mask) -> None:
    predictor, state = _fresh()
    out = _check(lambda: predictor.add_new_mask(state, frame_idx, obj_id, mask))
    if out is not None:
        _valid_output(out, state)
        assert _is_int(frame_idx) and _is_int(obj_id), "non-integer index accepted"
        array = np.asarray(mask)
        assert array.ndim == 2 and array.size > 0 and array.dtype.kind in "biuf"
        assert np.isfinite(array).all(), "a mask with NaN / inf was accepted"


@FUZZ
@given(
    start=indices,
    max_frames=st.one_of(st.none(), st.integers(-5, 5), st.floats(), st.text(max_size=2)),
    reverse=st.booleans(),
)
def test_propagate_arguments(start, max_frames, reverse) -> None:
    predictor, state = _fresh()
    predictor.add_new_points_or_box(state, 0, 1, box=[300, 0, 520, 400])
    got = _check(
        lambda: [
            (f, ids)
            for f, ids, _ in predictor.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=max_frames, reverse=reverse
            )
        ]
    )
    if got is not None:
        assert all(0 <= f < NUM_FRAMES and ids == [1] for f, ids in got)
        assert max_frames is None or (_is_int(max_frames) and max_frames >= 0)
        # upstream skips reverse tracking from frame 0; otherwise the start frame is tracked
        assert got or (reverse and start in (None, 0)), "nothing tracked"


good_frames = arrays(
    np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 24), st.integers(1, 24), st.just(3))
)
frame_arrays = st.one_of(
    good_frames,
    good_frames,
    arrays(
        st.sampled_from([np.uint8, np.float32, np.int64, np.bool_]),
        st.one_of(
            st.tuples(st.integers(0, 3), st.integers(0, 24), st.integers(0, 24), st.integers(0, 4)),
            st.lists(st.integers(0, 6), max_size=5).map(tuple),
        ),
    ),
)


@FUZZ
@given(frames=frame_arrays)
def test_init_state_with_arrays(frames: np.ndarray) -> None:
    predictor, _ = _predictor_and_state()
    state = _check(lambda: predictor.init_state(frames))
    if state is not None:
        assert state["num_frames"] in (None, frames.shape[0])
        assert (state["video_height"], state["video_width"]) == frames.shape[1:3]
        assert state["video_height"] > 0 and state["video_width"] > 0
