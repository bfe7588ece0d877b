"""Video predictor plumbing at a reduced image size (256): objects, prompts, API, streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reference import REFERENCE_DIR, synth_state_dict
from samurai import SAM2VideoPredictor, Tracker, build_sam2_video_predictor
from samurai.io.frames import ImageFolderSource
from samurai.io.transforms import resize_video_frame

SIZE = 256
BOXES = {1: [300, 0, 520, 400], 2: [560, 180, 760, 470]}


@pytest.fixture(scope="module")
def frames() -> list[Path]:
    return sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:6]


@pytest.fixture(scope="module")
def predictor() -> SAM2VideoPredictor:
    return build_sam2_video_predictor(
        "sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=SIZE
    )


def _track(predictor: SAM2VideoPredictor, frames: list[Path], obj_ids: list[int]) -> dict:
    state = predictor.init_state(ImageFolderSource(frames))
    for obj_id in obj_ids:
        predictor.add_new_points_or_box(state, 0, obj_id, box=BOXES[obj_id])
    out = {}
    for frame_idx, ids, masks in predictor.propagate_in_video(state):
        assert masks.shape == (len(ids), 1, 540, 960)
        out[frame_idx] = {i: masks[k, 0] for k, i in enumerate(ids)}
    return out


def test_two_objects_together_equal_each_alone(predictor, frames) -> None:
    both = _track(predictor, frames, [1, 2])
    for obj_id in (1, 2):
        alone = _track(predictor, frames, [obj_id])
        assert sorted(alone) == list(range(len(frames)))
        for f in alone:
            torch.testing.assert_close(both[f][obj_id], alone[f][obj_id], rtol=0, atol=0)


def test_each_object_has_its_own_kalman_state(predictor, frames) -> None:
    states = {}
    for ids in ([1, 2], [1]):
        state = predictor.init_state(ImageFolderSource(frames))
        for obj_id in ids:
            predictor.add_new_points_or_box(state, 0, obj_id, box=BOXES[obj_id])
        list(predictor.propagate_in_video(state))
        states[len(ids)] = state
    together, alone = states[2].tracks[1].motion, states[1].tracks[1].motion
    assert together is not states[2].tracks[2].motion
    assert together.stable_frames == alone.stable_frames > 0
    np.testing.assert_array_equal(together.mean, alone.mean)
    np.testing.assert_array_equal(together.covariance, alone.covariance)


def test_object_added_mid_video(predictor, frames) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    predictor.add_new_points_or_box(state, 0, 1, box=BOXES[1])
    results = {
        f: ids for f, ids, _ in predictor.propagate_in_video(state, max_frame_num_to_track=2)
    }
    assert results == {0: [1], 1: [1], 2: [1]}
    _, ids, masks = predictor.add_new_points_or_box(state, 3, 2, box=BOXES[2])
    assert ids == [1, 2] and masks.shape[0] == 2
    out = {f: (ids, m) for f, ids, m in predictor.propagate_in_video(state, start_frame_idx=3)}
    assert sorted(out) == [3, 4, 5]
    assert all(ids == [1, 2] for ids, _ in out.values())
    track = state.tracks[2]
    assert sorted(track.cond_memory) == [3], "the prompt frame conditions the new object"
    assert {4, 5} <= set(track.memory), "the new object is tracked after its prompt"
    assert track.entry(2) is None, "nothing is invented before the object's first prompt"


def test_reverse_and_start_frame(predictor, frames) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    predictor.add_new_points_or_box(state, 3, 1, box=BOXES[1])
    fwd = [f for f, _, _ in predictor.propagate_in_video(state)]
    back = [f for f, _, _ in predictor.propagate_in_video(state, reverse=True)]
    assert fwd == [3, 4, 5] and back == [3, 2, 1, 0]
    part = [
        f
        for f, _, _ in predictor.propagate_in_video(
            state, start_frame_idx=4, max_frame_num_to_track=1
        )
    ]
    assert part == [4, 5]


def test_mask_prompt_and_editing(predictor, frames) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    mask = np.zeros((540, 960), dtype=bool)
    mask[100:300, 350:500] = True
    _, ids, masks = predictor.add_new_mask(state, 0, 7, mask)
    assert ids == [7]
    agree = ((masks[0, 0] > 0).numpy() == mask).mean()
    assert agree > 0.98, "a mask prompt is used as the output on its frame"
    predictor.add_new_points_or_box(state, 0, 8, points=[[410, 200]], labels=[1])
    assert state.obj_ids == [7, 8]
    remaining, updated = predictor.remove_object(state, 7)
    assert remaining == [8] and [u[0] for u in updated] == [0]
    predictor.clear_all_prompts_in_frame(state, 0, 8)
    with pytest.raises(ValueError, match="no prompts"):
        list(predictor.propagate_in_video(state))
    predictor.reset_state(state)
    assert state.obj_ids == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box": [10, 10, 5, 50]}, "zero or negative size"),
        ({"box": [10, 10, 10, 50]}, "zero or negative size"),
        ({"box": [2000, 10, 2100, 50]}, "outside"),
        ({"box": [float("nan"), 0, 10, 10]}, "NaN"),
        ({"points": [[10, 10]]}, "together"),
        ({"points": [[10, 10], [20, 20]], "labels": [1]}, "2 points but 1 labels"),
        ({}, "needs a box"),
    ],
)
def test_bad_prompts(predictor, frames, kwargs, message) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    with pytest.raises(ValueError, match=message):
        predictor.add_new_points_or_box(state, 0, 1, **kwargs)


def test_bad_frame_and_object(predictor, frames) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    with pytest.raises(ValueError, match="out of range"):
        predictor.add_new_points_or_box(state, 6, 1, box=BOXES[1])
    with pytest.raises(ValueError, match="obj_id"):
        predictor.add_new_points_or_box(state, 0, "a", box=BOXES[1])
    with pytest.raises(ValueError, match="unknown object id 5"):
        predictor.remove_object(state, 5, strict=True)
    with pytest.raises(RuntimeError, match="unknown object id 5"):  # the official type
        predictor.remove_object(state, 5, strict=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, s: p.add_new_points_or_box(s, 1.5, 1, box=BOXES[1]), "frame_idx must be an"),
        (lambda p, s: p.add_new_points_or_box(s, "0", 1, box=BOXES[1]), "frame_idx must be an"),
        (lambda p, s: p.add_new_points_or_box(s, True, 1, box=BOXES[1]), "frame_idx must be an"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1.0, box=BOXES[1]), "obj_id must be an"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.full((54, 96), np.nan)), "NaN"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.array([["a", "b"], ["c", "d"]])), "dtype <U1"),
        (lambda p, s: p.add_new_mask(s, 0, 1, [[1, "x"]]), "numbers or bools"),
        (lambda p, s: p.add_new_mask(s, 0, 1, torch.full((8, 8), float("inf"))), "infinite"),
    ],
)
def test_wrong_argument_types_are_one_line_errors(predictor, frames, call, message) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    with pytest.raises(ValueError, match=message) as err:
        call(predictor, state)
    assert "\n" not in str(err.value)
    assert state.obj_ids == [], "nothing is added by a refused prompt"


def test_propagation_arguments_are_checked(predictor, frames) -> None:
    state = predictor.init_state(ImageFolderSource(frames))
    predictor.add_new_points_or_box(state, np.int64(0), np.int64(3), box=BOXES[1])
    assert state.obj_ids == [3] and type(state.obj_ids[0]) is int
    with pytest.raises(ValueError, match="max_frame_num_to_track must be >= 0, got -5"):
        list(predictor.propagate_in_video(state, max_frame_num_to_track=-5))
    with pytest.raises(ValueError, match="max_frame_num_to_track must be an integer"):
        list(predictor.propagate_in_video(state, max_frame_num_to_track=2.5))
    with pytest.raises(ValueError, match="frame_idx must be an integer"):
        list(predictor.propagate_in_video(state, start_frame_idx=1.5))
    got = [f for f, _, _ in predictor.propagate_in_video(state, max_frame_num_to_track=0)]
    assert got == [0], "0 more frames: the start frame only, as upstream"


def test_video_without_pixels_is_refused(predictor, tmp_path) -> None:
    with pytest.raises(ValueError, match="has no pixels"):
        predictor.init_state(np.zeros((2, 0, 0, 3), np.uint8))
    with pytest.raises(RuntimeError) as err:  # the official type for a folder without frames
        predictor.init_state(str(tmp_path))
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_streaming_tracker_equals_propagate() -> None:
    """Frames pushed one by one give exactly the masks of offline propagation. The video has
    16 frames: shorter videos normalise pointer offsets by their length, which a stream
    cannot know."""
    from PIL import Image

    paths = sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:16]
    predictor = build_sam2_video_predictor(
        "sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=128
    )
    offline = _track(predictor, paths, [1, 2])
    tracker = Tracker(predictor)
    tracker.add_object(1, box=BOXES[1])
    tracker.add_object(2, box=BOXES[2])
    for idx, path in enumerate(paths):
        result = tracker.step(np.asarray(Image.open(path).convert("RGB")))
        assert result.frame_idx == idx and result.obj_ids == [1, 2]
        assert result.boxes_xywh().shape == (2, 4)
        logits = result.video_res_logits()
        for k, obj_id in enumerate(result.obj_ids):
            torch.testing.assert_close(logits[k, 0], offline[idx][obj_id], rtol=0, atol=0)


def test_live_source_refuses_reverse_and_propagate(predictor) -> None:
    frames = (np.zeros((90, 160, 3), np.uint8) for _ in range(3))
    state = predictor.init_state(frames)
    assert not state.source.seekable
    with pytest.raises(ValueError, match="live"):
        predictor.add_new_points_or_box(state, 0, 1, box=[10, 10, 50, 50])


def test_memory_stays_bounded(predictor) -> None:
    frame = resize_video_frame(np.zeros((90, 160, 3), np.uint8), 64)
    tracker = Tracker(predictor)
    tracker.add_object(1, box=[10, 10, 40, 40])
    for _ in range(40):
        tracker.step(frame)
    track = tracker.state.tracks[1]
    assert len(track.memory) <= 20
    assert len(tracker.state.features) <= 2
