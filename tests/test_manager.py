"""InferenceManager: one model for many videos, stopping early, outputs, prompt checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reference import synth_state_dict
from samurai.io.frames import IteratorSource
from samurai.manager import InferenceManager, TrackSummary, validate_prompts

NUM_FRAMES, HEIGHT, WIDTH = 3, 180, 320
BOX = [100.0, 0.0, 73.0, 133.0]  # x, y, w, h at 320x180 (the bedroom golden box, scaled)


@pytest.fixture(scope="module")
def frames(bedroom_frames: list[Path]) -> np.ndarray:
    """(3, 180, 320, 3) uint8: the first bedroom frames, downscaled."""
    files = bedroom_frames[:NUM_FRAMES]
    small = [Image.open(f).convert("RGB").resize((WIDTH, HEIGHT)) for f in files]
    return np.stack([np.asarray(image) for image in small])


@pytest.fixture(scope="module")
def manager() -> InferenceManager:
    return InferenceManager("sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=256)


def boxes_text(summary: TrackSummary, obj_id: int = 1) -> list[str]:
    return summary.outputs[f"boxes_{obj_id}"].read_text().splitlines()


def test_two_calls_reuse_one_model(manager: InferenceManager, frames, tmp_path: Path) -> None:
    predictor, model = manager.predictor, manager.predictor.model
    first = manager.process_video(frames, boxes=[BOX], output_dir=tmp_path / "a")
    second = manager.process_video(frames, boxes=[BOX], output_dir=tmp_path / "b")
    assert manager.predictor is predictor and manager.predictor.model is model
    assert first.complete and second.complete
    assert first.num_frames == second.num_frames == NUM_FRAMES
    assert first.obj_ids == (1,) and first.fps > 0
    assert set(first.outputs) == {"overlay", "boxes_1", "rle", "scores"}
    assert boxes_text(first) == boxes_text(second)  # nothing leaks from one video to the next


def test_should_stop_ends_cleanly_with_incomplete_outputs(
    manager: InferenceManager, frames, tmp_path: Path
) -> None:
    seen: list[tuple[int, int | None]] = []

    def progress(done: int, total: int | None, fps: float) -> None:
        assert fps > 0
        seen.append((done, total))

    summary = manager.process_video(
        frames,
        boxes=[BOX],
        output_dir=tmp_path,
        save=("boxes", "masks", "rle", "scores", "overlay"),
        progress=progress,
        should_stop=lambda: len(seen) >= 2,
    )
    assert not summary.complete and summary.num_frames == 2
    assert seen == [(1, NUM_FRAMES), (2, NUM_FRAMES)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "boxes_1.incomplete.txt",
        "masks.incomplete",
        "masks.incomplete.json",
        "overlay.incomplete.mp4",
        "scores.incomplete.csv",
    ]
    assert summary.outputs["boxes_1"] == tmp_path / "boxes_1.incomplete.txt"
    assert len(boxes_text(summary)) == 2
    assert '"complete": false' in summary.outputs["rle"].read_text()


def test_stop_requested_after_the_last_frame_is_complete(manager, frames, tmp_path) -> None:
    summary = manager.process_video(
        frames, boxes=[BOX], output_dir=tmp_path, save=("boxes",), should_stop=lambda: True,
        max_frames=0,
    )  # fmt: skip
    assert summary.complete and summary.num_frames == 1
    assert summary.outputs == {"boxes_1": tmp_path / "boxes_1.txt"}


def test_an_exception_mid_video_leaves_incomplete_outputs(manager, frames, tmp_path) -> None:
    def progress(done: int, total: int | None, fps: float) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        manager.process_video(
            frames, boxes=[BOX], output_dir=tmp_path, save=("boxes",), progress=progress
        )
    assert [p.name for p in tmp_path.iterdir()] == ["boxes_1.incomplete.txt"]


def test_live_sources_track_like_files(manager, frames, tmp_path: Path) -> None:
    """A generator (not seekable) goes through the streaming Tracker; results are the same."""
    live = IteratorSource(iter(list(frames)), name="live")
    assert not live.seekable
    streamed = manager.process_video(
        live, boxes=[BOX], output_dir=tmp_path / "live", save=["boxes"]
    )
    seekable = manager.process_video(
        frames, boxes=[BOX], output_dir=tmp_path / "file", save=["boxes"]
    )
    assert streamed.complete and streamed.num_frames == NUM_FRAMES
    # Same prompt frame; later frames may differ only where the video length matters (the
    # object-pointer encoding of videos shorter than 16 frames), which a stream does not know.
    assert boxes_text(streamed)[0] == boxes_text(seekable)[0]
    assert len(boxes_text(streamed)) == NUM_FRAMES


def test_start_frame_and_max_frames(manager, frames, tmp_path: Path) -> None:
    summary = manager.process_video(
        frames, boxes=[BOX], output_dir=tmp_path, save=["boxes", "masks"], start_frame=1,
        max_frames=1,
    )  # fmt: skip
    assert summary.num_frames == 2
    # Line n is frame n: frame 0 (before the prompt) is absent.
    assert boxes_text(summary)[0] == "0,0,0,0" and len(boxes_text(summary)) == 3
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["00001.png", "00002.png"]


def test_several_objects_and_points(manager, frames, tmp_path: Path) -> None:
    summary = manager.process_video(
        frames,
        boxes=[BOX, [200, 60, 50, 50]],
        points=[[130, 60]],
        labels=[1],
        output_dir=tmp_path,
        save=["boxes", "scores"],
        max_frames=1,
    )
    assert summary.obj_ids == (1, 2)
    assert {"boxes_1", "boxes_2", "scores"} == set(summary.outputs)
    assert len(summary.outputs["scores"].read_text().splitlines()) == 1 + 2 * 2


def test_official_style_entry_points(manager, frames, tmp_path: Path) -> None:
    overlay = tmp_path / "demo.mp4"
    summary = manager.process_video_with_bbox(frames[:1], BOX, overlay)
    assert summary.outputs == {"overlay": overlay} and overlay.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["demo.mp4"]  # only the video, as upstream

    folder = manager.process_video_with_bbox(frames[:1], BOX, tmp_path / "out")
    assert set(folder.outputs) == {"overlay", "boxes_1", "rle", "scores"}

    multi = manager.process_video_with_bboxes(frames[:1], [BOX, BOX], tmp_path / "multi")
    assert multi.obj_ids == (1, 2) and "boxes_2" in multi.outputs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": [[1, 2, 3]]}, "box 1 (x,y,w,h) must be 4 finite numbers"),
        ({"boxes": [[1, 2, 0, 3]]}, "box 1 (1,2,0,3) must have a positive width and height"),
        ({"boxes": [[400, 2, 10, 10]]}, "box 1 (400,2,10,10) lies outside the 320x180 frame"),
        ({"points": [[10, 10]]}, "points and labels go together"),
        ({"points": [[10, 10]], "labels": [2]}, "labels must be 1 (object) or 0"),
        ({"points": [[10, 500]], "labels": [1]}, "point 1 (10,500) lies outside the 320x180"),
        ({}, "nothing to track"),
    ],
)
def test_bad_prompts(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        validate_prompts(
            kwargs.get("boxes"), kwargs.get("points"), kwargs.get("labels"), width=WIDTH,
            height=HEIGHT,
        )  # fmt: skip
    assert message in str(exc.value)


def test_bad_options_fail_before_writing(manager, frames, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown output"):
        manager.process_video(frames, boxes=[BOX], output_dir=tmp_path / "x", save=["video"])
    with pytest.raises(ValueError, match="past the end"):
        manager.process_video(frames, boxes=[BOX], output_dir=tmp_path / "x", start_frame=9)
    assert not (tmp_path / "x").exists()


def test_box_sticking_out_is_clipped(manager, frames, tmp_path, caplog) -> None:
    summary = manager.process_video(
        frames, boxes=[[300, 150, 100, 100]], output_dir=tmp_path, save=["boxes"], max_frames=0
    )
    assert summary.complete
    assert "clipped to the 320x180 frame" in caplog.text


def test_constructor_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model variant 'sam3'"):
        InferenceManager("sam3")
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        InferenceManager(dtype="float16", random_weights=True)
    with pytest.raises(ValueError, match="unknown dtype"):
        InferenceManager(dtype="int8", random_weights=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown option"):
        InferenceManager(random_weights=True, not_an_option=1)


def test_the_tracker_reaches_summaries_and_batch_journals(
    manager: InferenceManager, frames, tmp_path: Path
) -> None:
    """``tracker=`` is what the predictor runs, what each summary and a batch journal say; a
    batch folder of one tracker refuses a manager of another."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text(f'{{"video": "{folder}", "box": "{",".join(map(str, BOX))}"}}\n')
    plain = InferenceManager(
        "sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=256, tracker="sam2"
    )
    assert (plain.tracker_name, plain.predictor.tracker_name) == ("sam2", "sam2")
    assert plain.process_video(frames, boxes=[BOX], output_dir=tmp_path / "a").tracker == "sam2"
    assert manager.process_video(frames, boxes=[BOX], output_dir=tmp_path / "b").tracker == (
        "samurai"
    )
    summary = plain.process_batch(manifest, tmp_path / "out", save=("boxes",))
    assert summary.done == ("frames",)
    run, job = (json.loads(line) for line in (tmp_path / "out" / "batch.jsonl").open())
    assert run["run"]["tracker"] == "sam2" and job["tracker"] == "sam2"
    with pytest.raises(ValueError, match="holds a batch of other settings"):
        manager.process_batch(manifest, tmp_path / "out", save=("boxes",))
