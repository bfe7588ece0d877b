"""Result sinks on hand-made FrameResults: file contents, absent-box policies, partial naming."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from samurai.io import rle
from samurai.io.sinks import (
    DEFAULT_COLORS,
    BoxesSink,
    MaskPngSink,
    MultiSink,
    OutputError,
    OverlayVideoSink,
    ResultSink,
    RleJsonSink,
    ScoresCsvSink,
    VideoInfo,
    draw_result,
    make_sinks,
)
from samurai.tracking.results import FrameResult, ObjectResult

HEIGHT, WIDTH, LOW = 120, 160, 64
INFO = VideoInfo("clip.mp4", HEIGHT, WIDTH, fps=10.0, num_frames=5)
KF_BOX = np.array([100.0, 200.0, 400.0, 600.0])  # model resolution, image_size 1024


def square(y0: int, x0: int, size: int) -> torch.Tensor:
    """(1, 1, 64, 64) logits: +10 on a square of the low-res grid, -10 elsewhere."""
    logits = torch.full((1, 1, LOW, LOW), -10.0)
    logits[..., y0 : y0 + size, x0 : x0 + size] = 10.0
    return logits


def obj(
    obj_id: int, logits: torch.Tensor, *, present: bool = True, kf: np.ndarray | None = None
) -> ObjectResult:
    return ObjectResult(
        obj_id=obj_id,
        low_res_logits=logits,
        object_score_logit=2.5 + obj_id / 8 if present else -3.0,
        iou=0.5 + obj_id / 16,
        present=present,
        kf_box_xyxy=kf,
    )


ABSENT = torch.full((1, 1, LOW, LOW), -1024.0)
EMPTY = torch.full((1, 1, LOW, LOW), -10.0)
RESULTS = [
    FrameResult(0, [obj(1, square(10, 10, 12)), obj(2, square(30, 30, 16))], (HEIGHT, WIDTH)),
    FrameResult(1, [obj(1, square(12, 11, 12)), obj(2, square(15, 15, 10))], (HEIGHT, WIDTH)),
    FrameResult(
        2, [obj(1, ABSENT, present=False, kf=KF_BOX), obj(2, square(33, 30, 16))], (HEIGHT, WIDTH)
    ),
    FrameResult(3, [obj(1, EMPTY), obj(2, ABSENT, present=False)], (HEIGHT, WIDTH)),
    FrameResult(4, [obj(1, square(14, 12, 12)), obj(2, square(36, 30, 16))], (HEIGHT, WIDTH)),
]


def frames(count: int = len(RESULTS)) -> list[np.ndarray]:
    return [np.full((HEIGHT, WIDTH, 3), 40 + 30 * i, dtype=np.uint8) for i in range(count)]


def run(sink: ResultSink, results: list[FrameResult], *, complete: bool = True) -> None:
    sink.open(INFO)
    for frame, result in zip(frames(len(results)), results, strict=True):
        sink.write(frame, result)
    sink.close(complete)


def official_box(mask: np.ndarray) -> str:
    """The box line of yangchris11/samurai scripts/main_inference.py."""
    nonzero = np.argwhere(mask)
    if len(nonzero) == 0:
        return "0,0,0,0"
    y_min, x_min = nonzero.min(axis=0).tolist()
    y_max, x_max = nonzero.max(axis=0).tolist()
    return f"{x_min},{y_min},{x_max - x_min},{y_max - y_min}"


def labels_of(result: FrameResult) -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    for obj_id, mask in zip(result.obj_ids, result.masks().numpy(), strict=True):
        labels[mask] = obj_id
    return labels


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_boxes_zero_policy_matches_official_script(tmp_path: Path) -> None:
    run(BoxesSink(tmp_path), RESULTS)
    for k, obj_id in enumerate([1, 2]):
        expected = [official_box(r.masks()[k].numpy()) for r in RESULTS]
        assert lines(tmp_path / f"boxes_{obj_id}.txt") == expected
    assert lines(tmp_path / "boxes_1.txt")[2:4] == ["0,0,0,0", "0,0,0,0"]
    x, y, w, h = map(int, lines(tmp_path / "boxes_1.txt")[0].split(","))
    mask = RESULTS[0].masks()[0].numpy()
    assert mask[y, x:].any() and mask[y:, x].any() and mask[y + h, x + w - 1 : x + w + 1].any()


def test_boxes_last_and_predicted_policies(tmp_path: Path) -> None:
    run(BoxesSink(tmp_path / "last", "last"), RESULTS)
    run(BoxesSink(tmp_path / "pred", "predicted", image_size=1024), RESULTS)
    last = lines(tmp_path / "last" / "boxes_1.txt")
    assert last[2] == last[3] == last[1] != "0,0,0,0"
    assert (
        lines(tmp_path / "last" / "boxes_2.txt")[3] == lines(tmp_path / "last" / "boxes_2.txt")[2]
    )
    predicted = lines(tmp_path / "pred" / "boxes_1.txt")
    x1, y1, x2, y2 = KF_BOX * np.array([WIDTH, HEIGHT] * 2) / 1024
    np.testing.assert_allclose(
        [float(v) for v in predicted[2].split(",")], [x1, y1, x2 - x1, y2 - y1], atol=0.005
    )
    assert predicted[3] == predicted[1]  # no Kalman prediction on frame 3: the last box
    assert predicted[:2] + predicted[4:] == last[:2] + last[4:]


def test_predicted_box_is_clipped_and_degenerate_falls_back(tmp_path: Path) -> None:
    outside = np.array([-50.0, 900.0, 2000.0, 1100.0])
    inverted = np.array([500.0, 500.0, 400.0, 600.0])
    results = [
        FrameResult(0, [obj(1, square(10, 10, 12))], (HEIGHT, WIDTH)),
        FrameResult(1, [obj(1, ABSENT, present=False, kf=outside)], (HEIGHT, WIDTH)),
        FrameResult(2, [obj(1, ABSENT, present=False, kf=inverted)], (HEIGHT, WIDTH)),
    ]
    run(BoxesSink(tmp_path, "predicted", image_size=1024), results)
    got = lines(tmp_path / "boxes_1.txt")
    y1 = 900 * HEIGHT / 1024
    np.testing.assert_allclose(
        [float(v) for v in got[1].split(",")], [0, y1, WIDTH - 1, HEIGHT - 1 - y1], atol=0.005
    )
    assert got[2] == got[0]


def test_boxes_late_objects_and_skipped_frames(tmp_path: Path) -> None:
    results = [
        FrameResult(1, [obj(1, square(10, 10, 12))], (HEIGHT, WIDTH)),
        FrameResult(4, [obj(3, square(20, 20, 8)), obj(1, square(11, 10, 12))], (HEIGHT, WIDTH)),
        FrameResult(5, [obj(3, square(20, 21, 8))], (HEIGHT, WIDTH)),
    ]
    run(BoxesSink(tmp_path, "last"), results)
    one, three = lines(tmp_path / "boxes_1.txt"), lines(tmp_path / "boxes_3.txt")
    assert len(one) == len(three) == 6
    assert one[0] == "0,0,0,0" and one[2] == one[3] == one[1] and one[5] == one[4]
    assert three[:4] == ["0,0,0,0"] * 4
    assert three[4] == official_box(results[1].masks()[0].numpy())


def test_boxes_need_increasing_frames(tmp_path: Path) -> None:
    sink = BoxesSink(tmp_path)
    sink.open(INFO)
    sink.write(None, RESULTS[1])
    with pytest.raises(ValueError, match="increasing"):
        sink.write(None, RESULTS[0])
    with pytest.raises(ValueError, match="image_size"):
        BoxesSink(tmp_path, "predicted")


def test_mask_pngs_equal_result_masks(tmp_path: Path) -> None:
    run(MaskPngSink(tmp_path / "masks"), RESULTS)
    files = sorted((tmp_path / "masks").iterdir())
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(5)]
    for result, path in zip(RESULTS, files, strict=True):
        png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(png, labels_of(result))
    overlap = RESULTS[1].masks().numpy()
    assert (overlap[0] & overlap[1]).any()  # object 2 is painted over object 1 there


def test_mask_pngs_large_and_invalid_ids(tmp_path: Path) -> None:
    results = [
        FrameResult(0, [obj(7, square(10, 10, 12))], (HEIGHT, WIDTH)),
        FrameResult(1, [obj(7, square(10, 10, 12)), obj(300, square(40, 40, 8))], (HEIGHT, WIDTH)),
        FrameResult(2, [obj(7, square(10, 10, 12))], (HEIGHT, WIDTH)),
    ]
    run(MaskPngSink(tmp_path / "masks"), results)
    pngs = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(tmp_path.glob("masks/*"))]
    assert [p.dtype for p in pngs] == [np.uint8, np.uint16, np.uint16]
    for png, result in zip(pngs, results, strict=True):
        np.testing.assert_array_equal(png, labels_of(result))
    sink = MaskPngSink(tmp_path / "zero")
    sink.open(INFO)
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        sink.write(None, FrameResult(0, [obj(0, square(1, 1, 4))], (HEIGHT, WIDTH)))


def test_rle_json_decodes_to_the_pngs(tmp_path: Path) -> None:
    run(RleJsonSink(tmp_path / "masks.json"), RESULTS)
    run(MaskPngSink(tmp_path / "masks"), RESULTS)
    data = json.loads((tmp_path / "masks.json").read_text())
    assert (data["video"], data["height"], data["width"], data["complete"]) == (
        "clip.mp4",
        HEIGHT,
        WIDTH,
        True,
    )
    assert [f["frame"] for f in data["frames"]] == list(range(5))
    for entry, result in zip(data["frames"], RESULTS, strict=True):
        labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        for item, expected in zip(entry["objects"], result.objects, strict=True):
            assert item["id"] == expected.obj_id and item["present"] == expected.present
            assert item["score"] == expected.object_score_logit and item["iou"] == expected.iou
            assert item["rle"]["size"] == [HEIGHT, WIDTH]
            labels[rle.decode(item["rle"])] = item["id"]
        png = cv2.imread(str(tmp_path / "masks" / f"{entry['frame']:05d}.png"), -1)
        np.testing.assert_array_equal(labels, png)


def test_scores_csv(tmp_path: Path) -> None:
    run(ScoresCsvSink(tmp_path / "scores.csv"), RESULTS)
    with open(tmp_path / "scores.csv", newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == ["frame", "object", "iou", "object_score", "present"]
    expected = [(r.frame_idx, o) for r in RESULTS for o in r.objects]
    assert len(rows) == len(expected)
    for row, (frame_idx, o) in zip(rows, expected, strict=True):
        assert (int(row["frame"]), int(row["object"])) == (frame_idx, o.obj_id)
        assert float(row["iou"]) == o.iou and float(row["object_score"]) == o.object_score_logit
        assert row["present"] == str(int(o.present))


def test_overlay_video_decodes(tmp_path: Path) -> None:
    run(OverlayVideoSink(tmp_path / "overlay.mp4"), RESULTS)
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == 10.0
    assert len(decoded) == len(RESULTS)
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in decoded)
    assert np.abs(decoded[0][-1, 0].astype(int) - 40).max() <= 3  # background untouched


def test_draw_result_blends_and_boxes() -> None:
    frame = np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)
    result = FrameResult(0, [obj(1, square(20, 20, 24)), obj(2, ABSENT, present=False)], (120, 160))
    image = draw_result(frame, result, alpha=0.5)
    assert (frame == 100).all()  # the input is not modified
    color = np.array(DEFAULT_COLORS[1])
    x1, y1, x2, y2 = result.boxes_xyxy()[0].tolist()
    center = image[(y1 + y2) // 2, (x1 + x2) // 2].astype(int)
    assert np.abs(center - (50 + color / 2)).max() <= 0.5
    np.testing.assert_array_equal(image[y2, (x1 + x2) // 2], color)  # the box's bottom edge
    np.testing.assert_array_equal(image[-1, -1], [100, 100, 100])
    with pytest.raises(ValueError, match="video size"):
        draw_result(frame[:-2], result)


def test_nothing_final_before_completion(tmp_path: Path) -> None:
    sinks = make_sinks(tmp_path, fps=10, absent_box="predicted", image_size=1024)
    sinks.open(INFO)
    for frame, result in zip(frames()[:3], RESULTS[:3], strict=True):
        sinks.write(frame, result)
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names and all(".partial" in name for name in names), names
    sinks.write(frames()[3], RESULTS[3])
    sinks.write(frames()[4], RESULTS[4])
    sinks.close(complete=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "boxes_1.txt",
        "boxes_2.txt",
        "masks",
        "masks.json",
        "overlay.mp4",
        "scores.csv",
    ]


def test_incomplete_outputs_are_marked(tmp_path: Path) -> None:
    sinks = make_sinks(tmp_path)
    sinks.open(INFO)
    for frame, result in zip(frames()[:2], RESULTS[:2], strict=True):
        sinks.write(frame, result)
    sinks.close(complete=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "boxes_1.incomplete.txt",
        "boxes_2.incomplete.txt",
        "masks.incomplete",
        "masks.incomplete.json",
        "overlay.incomplete.mp4",
        "scores.incomplete.csv",
    ]
    data = json.loads((tmp_path / "masks.incomplete.json").read_text())
    assert data["complete"] is False and len(data["frames"]) == 2
    assert len(lines(tmp_path / "boxes_1.incomplete.txt")) == 2
    assert len(list((tmp_path / "masks.incomplete").iterdir())) == 2
    with av.open(str(tmp_path / "overlay.incomplete.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 2


def test_rerun_replaces_outputs_of_an_earlier_run(tmp_path: Path) -> None:
    sinks = make_sinks(tmp_path, {"boxes", "masks", "rle"})
    run(sinks, RESULTS[:2], complete=False)
    run(sinks, RESULTS, complete=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "boxes_1.txt",
        "boxes_2.txt",
        "masks",
        "masks.json",
    ]
    assert len(list((tmp_path / "masks").iterdir())) == 5
    run(make_sinks(tmp_path, {"masks"}), RESULTS[:1])
    assert len(list((tmp_path / "masks").iterdir())) == 1


def test_foreign_files_are_never_deleted(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        make_sinks(tmp_path).open(INFO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]  # the masks sink opens first
    assert (tmp_path / "masks" / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError):
        MultiSink([ScoresCsvSink(tmp_path / "scores.csv"), MaskPngSink(tmp_path / "masks")]).open(
            INFO
        )
    assert (tmp_path / "scores.incomplete.csv").exists()  # opened before, closed as incomplete
    (tmp_path / "out.json").mkdir()
    with pytest.raises(IsADirectoryError):
        RleJsonSink(tmp_path / "out.json").open(INFO)


def test_multi_sink_upsamples_once() -> None:
    class Spy:
        def __init__(self) -> None:
            self.masks: list[torch.Tensor] = []
            self.closed: list[bool] = []

        def open(self, video_info: VideoInfo) -> None:
            pass

        def write(self, frame: np.ndarray | None, result: FrameResult) -> None:
            self.masks.append(result.masks())

        def close(self, complete: bool) -> None:
            self.closed.append(complete)

    spies = [Spy(), Spy()]
    sinks = MultiSink(spies)
    sinks.open(INFO)
    sinks.write(None, RESULTS[0])
    sinks.close(complete=True)
    assert spies[0].masks[0] is spies[1].masks[0]
    assert torch.equal(spies[0].masks[0], RESULTS[0].masks())
    assert [s.closed for s in spies] == [[True], [True]]


def test_make_sinks_validates() -> None:
    with pytest.raises(ValueError, match="unknown outputs"):
        make_sinks("out", {"boxes", "video"})
    with pytest.raises(ValueError, match="image_size"):
        make_sinks("out", absent_box="predicted")


def test_partial_text_outputs_are_readable_after_every_frame(tmp_path: Path) -> None:
    """Written unbuffered, frame by frame: a killed process leaves every complete frame."""
    sinks = make_sinks(tmp_path, {"boxes", "rle", "scores"})
    sinks.open(INFO)
    for count, result in enumerate(RESULTS, start=1):
        sinks.write(None, result)
        data = json.loads((tmp_path / "masks.partial.json").read_text())
        assert data["complete"] is False and len(data["frames"]) == count
        assert len(lines(tmp_path / "boxes_2.partial.txt")) == count
        assert len(lines(tmp_path / "scores.partial.csv")) == 1 + 2 * count
    sinks.close(complete=True)
    assert json.loads((tmp_path / "masks.json").read_text())["complete"] is True


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 KiB tmpfs (eight pages), mounted for the test: a real ENOSPC. Root only."""
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mounting a tmpfs needs root; CI runs as root")
        pytest.skip("mounting a tmpfs (disk-full test) needs root")
    point = tmp_path / "disk"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(point)], check=True)
    yield point
    subprocess.run(["umount", "--lazy", str(point)], check=False)  # even with files open


def test_full_disk_takes_the_frame_back_from_every_output(full_disk: Path) -> None:
    # the PNGs fill the disk and come last: the text outputs must take that frame back
    sinks = MultiSink(
        [
            BoxesSink(full_disk),
            RleJsonSink(full_disk / "masks.json"),
            ScoresCsvSink(full_disk / "scores.csv"),
            MaskPngSink(full_disk / "masks"),
        ]
    )
    sinks.open(INFO)
    written = 0
    with pytest.raises(OutputError, match=r"cannot write .*: No space left on device$"):
        for result in RESULTS * 50:
            sinks.write(None, dataclasses.replace(result, frame_idx=written))
            written += 1
    assert 0 < written < 250
    sinks.close(complete=False)
    names = sorted(p.name for p in full_disk.iterdir())
    assert all(".incomplete" in name for name in names), names
    pngs = len(list((full_disk / "masks.incomplete").iterdir()))
    rle_frames = json.loads((full_disk / "masks.incomplete.json").read_text())["frames"]
    assert pngs == len(rle_frames) == written
    assert len(lines(full_disk / "scores.incomplete.csv")) == 1 + 2 * written
    for obj_id in (1, 2):
        path = full_disk / f"boxes_{obj_id}.incomplete.txt"
        assert len(lines(path)) == written if written else not path.exists()


def test_a_failed_rerun_keeps_the_earlier_complete_outputs(tmp_path: Path) -> None:
    sinks = make_sinks(tmp_path)
    sinks.open(INFO)
    for frame, result in zip(frames()[:3], RESULTS[:3], strict=True):
        sinks.write(frame, result)
    sinks.close(complete=True)
    before = (tmp_path / "boxes_1.txt").read_text()
    assert before.count("\n") == 3

    rerun = make_sinks(tmp_path)  # same folder; interrupted after one frame
    rerun.open(INFO)
    assert (tmp_path / "boxes_1.txt").read_text() == before
    rerun.write(frames()[0], RESULTS[0])
    rerun.close(complete=False)
    assert (tmp_path / "boxes_1.txt").read_text() == before
    assert (tmp_path / "boxes_1.incomplete.txt").read_text().count("\n") == 1
    assert len(list((tmp_path / "masks").iterdir())) == 3

    third = make_sinks(tmp_path)  # a complete rerun replaces them
    third.open(INFO)
    third.write(frames()[0], RESULTS[0])
    third.close(complete=True)
    assert (tmp_path / "boxes_1.txt").read_text().count("\n") == 1
    assert not (tmp_path / "boxes_1.incomplete.txt").exists()
