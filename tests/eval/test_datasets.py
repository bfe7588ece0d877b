"""Benchmark readers on tiny folder trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samurai.eval.datasets import (
    LASOT_EXT_SEQUENCES,
    LASOT_TEST_SEQUENCES,
    OTB,
    UAV123,
    GOT10k,
    LaSOT,
    LaSOTExt,
    NfS,
    TrackingNet,
)


def test_lasot_test_split_is_the_official_280() -> None:
    assert len(LASOT_TEST_SEQUENCES) == len(set(LASOT_TEST_SEQUENCES)) == 280
    assert len(LASOT_EXT_SEQUENCES) == 150
    got10k_datasets = pytest.importorskip("got10k.datasets")
    split_file = Path(got10k_datasets.__file__).parent / "lasot.json"
    assert set(LASOT_TEST_SEQUENCES) == set(json.loads(split_file.read_text())["test"])


def test_lasot_reader(make_lasot, tree, tmp_path: Path) -> None:
    boxes = np.array([[1, 2, 30, 40], [2, 3, 30, 40], [0, 0, 0, 0]], float)
    root = make_lasot({"airplane-1": (boxes, [0, 0, 1]), "bird-3": (boxes[:2], [0, 0])})
    attributes = tmp_path / "att"
    tree.write_lines(attributes / "airplane-1.txt", [[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]])
    tree.write_lines(attributes / "bird-3.txt", [[0] * 14])
    dataset = LaSOT(root, split="all", attributes=attributes)
    assert dataset.sequence_names == ["airplane-1", "bird-3"] and len(dataset) == 2
    sequence = dataset.load("airplane-1")
    np.testing.assert_array_equal(sequence.ground_truth, boxes)
    np.testing.assert_array_equal(sequence.absent, [False, False, True])
    assert sequence.frames[2] == root / "airplane" / "airplane-1" / "img" / "00000003.jpg"
    assert sequence.attributes == {"IV", "FOC"} and sequence.has_ground_truth
    np.testing.assert_array_equal(sequence.init_box, boxes[0])
    assert [s.name for s in dataset] == ["airplane-1", "bird-3"]


def test_lasot_missing_files(make_lasot) -> None:
    root = make_lasot({"airplane-1": (np.ones((2, 4)), [0, 0])})
    with pytest.raises(ValueError, match=r"LaSOT: missing 279 of 280 sequence\(s\) .*airplane-9"):
        LaSOT(root).check()  # the whole test split
    (root / "airplane" / "airplane-1" / "out_of_view.txt").unlink()
    with pytest.raises(ValueError, match=r"missing .*airplane-1/out_of_view.txt"):
        LaSOT(root, split="all").check()
    with pytest.raises(ValueError, match=r"LaSOT: missing .*airplane-1/out_of_view.txt"):
        LaSOT(root, split="all").load("airplane-1")
    with pytest.raises(ValueError, match=r"LaSOT_ext: missing .*atv-1"):
        LaSOTExt(root).check()


def test_lasot_attributes_from_pytracking_json(make_lasot, tmp_path: Path) -> None:
    root = make_lasot({"airplane-1": (np.ones((2, 4)), [0, 0])})
    spec = tmp_path / "LaSOT_attributes.json"
    spec.write_text(json.dumps({"att_name_short": ["IV"], "airplane-1": ["POC", "ARC"]}))
    sequence = LaSOT(root, split="all", attributes=spec).load("airplane-1")
    assert sequence.attributes == {"POC", "ARC"}


def test_got10k_val_and_test(make_got10k) -> None:
    boxes = np.array([[1, 2, 30, 40], [2, 3, 30, 40], [5, 5, 10, 10]], float)
    root = make_got10k({"GOT-10k_Val_000001": (boxes, [8, 0, 3])})
    sequence = GOT10k(root, split="val").load("GOT-10k_Val_000001")
    np.testing.assert_array_equal(sequence.absent, [False, True, False])
    assert sequence.image_size == (320, 240) and len(sequence.frames) == 3
    assert sequence.frames[0].name == "00000001.jpg" and sequence.has_ground_truth
    assert GOT10k(root / "val").sequence_names == ["GOT-10k_Val_000001"]
    (root / "val" / "GOT-10k_Val_000001" / "cover.label").unlink()
    np.testing.assert_array_equal(GOT10k(root).load("GOT-10k_Val_000001").absent, [0, 1, 0])
    with pytest.raises(ValueError, match=r"GOT-10k: missing .*test/list.txt"):
        GOT10k(root, split="test")


def test_got10k_test_has_only_first_box(make_got10k) -> None:
    boxes = np.array([[1, 2, 30, 40], [2, 3, 30, 40]], float)
    root = make_got10k({"GOT-10k_Test_000001": (boxes, [8, 8])}, split="test")
    sequence = GOT10k(root, split="test").load("GOT-10k_Test_000001")
    assert sequence.ground_truth.shape == (1, 4) and not sequence.has_ground_truth
    assert sequence.absent is None


def test_otb_reader_special_sequences(tree, tmp_path: Path) -> None:
    root = tmp_path / "otb"
    tree.touch_frames(root / "Jogging" / "img", range(1, 4), "{:04d}.jpg")
    tree.write_lines(root / "Jogging" / "groundtruth_rect.1.txt", np.ones((3, 4)))
    tree.write_lines(root / "Jogging" / "groundtruth_rect.2.txt", 2 * np.ones((3, 4)), sep="\t")
    tree.touch_frames(root / "Human4" / "img", range(1, 3), "{:04d}.jpg")
    (root / "Human4" / "groundtruth_rect.1.txt").write_text("\n")
    tree.write_lines(root / "Human4" / "groundtruth_rect.2.txt", np.ones((2, 4)), sep=" ")
    tree.touch_frames(root / "Tiger1" / "img", range(1, 9), "{:04d}.jpg")
    tree.write_lines(root / "Tiger1" / "groundtruth_rect.txt", np.arange(32).reshape(8, 4))
    tree.touch_frames(root / "BlurCar3" / "img", range(1, 7), "{:04d}.jpg")
    tree.write_lines(root / "BlurCar3" / "groundtruth_rect.txt", np.ones((4, 4)))
    dataset = OTB(root)
    assert dataset.sequence_names == ["BlurCar3", "Human4_2", "Jogging_1", "Jogging_2", "Tiger1"]
    tiger = dataset.load("Tiger1")
    assert [f.name for f in tiger.frames] == ["0006.jpg", "0007.jpg", "0008.jpg"]
    np.testing.assert_array_equal(tiger.ground_truth[0], [20, 21, 22, 23])
    assert dataset.load("BlurCar3").frames[0].name == "0003.jpg"
    np.testing.assert_array_equal(dataset.load("Jogging_2").ground_truth, 2 * np.ones((3, 4)))
    (root / "BlurCar3" / "img" / "0005.jpg").unlink()
    with pytest.raises(ValueError, match="BlurCar3 misses frame 5"):
        dataset.load("BlurCar3")
    (root / "Empty" / "img").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"OTB: missing 1 of 6 .*: Empty/groundtruth_rect.txt"):
        OTB(root).check()
    OTB(root).check(["Tiger1"])


def test_nfs_both_layouts(tree, tmp_path: Path) -> None:
    pytracking_root = tmp_path / "nfs_pytracking"
    tree.touch_frames(pytracking_root / "sequences" / "bee", range(1, 4), "{:05d}.jpg")
    tree.write_lines(pytracking_root / "anno" / "nfs_bee.txt", np.ones((3, 4)), sep="\t")
    sequence = NfS(pytracking_root).load("nfs_bee")
    assert sequence.name == "nfs_bee" and len(sequence.frames) == 3

    raw_root = tmp_path / "nfs_raw"
    tree.touch_frames(raw_root / "bee" / "30" / "bee", range(1, 4), "{:05d}.jpg")
    rows = [f'1 {i} {i + 1} {i + 11} {i + 21} {i} 0 0 0 "bee"' for i in range(24)]
    (raw_root / "bee" / "30" / "bee.txt").write_text("\n".join(rows) + "\n")
    sequence = NfS(raw_root).load("nfs_bee")
    # 240 fps rows for 30 fps frames: every 8th, corners -> xywh
    np.testing.assert_array_equal(sequence.ground_truth[:, 0], [0, 8, 16])
    np.testing.assert_array_equal(sequence.ground_truth[1], [8, 9, 11, 20])
    with pytest.raises(ValueError, match="NfS: no anno"):
        NfS(tmp_path / "nfs_pytracking" / "sequences")


def test_uav123_reader(tree, tmp_path: Path) -> None:
    root = tmp_path / "uav"
    tree.write_lines(root / "anno" / "UAV123" / "bird1_2.txt", [[1, 2, 3, 4], [np.nan] * 4])
    tree.write_lines(root / "anno" / "UAV123" / "car1_s.txt", [[1, 2, 3, 4]])
    (root / "data_seq" / "UAV123" / "bird1").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"UAV123: missing .*UAV123/car1_s"):
        UAV123(root).check()
    UAV123(root).check(["uav_bird1_2"])
    (root / "data_seq" / "UAV123" / "car1_s").mkdir(parents=True)
    dataset = UAV123(root)
    assert dataset.sequence_names == ["uav_bird1_2", "uav_car1_s"]
    sequence = dataset.load("uav_bird1_2")
    assert [f.name for f in sequence.frames] == ["000775.jpg", "000776.jpg"]
    assert sequence.frames[0].parent.name == "bird1"
    np.testing.assert_array_equal(sequence.absent, [False, True])


def test_trackingnet_reader(tree, tmp_path: Path) -> None:
    root = tmp_path / "trackingnet"
    tree.touch_frames(root / "TEST" / "frames" / "abc_1", range(12), "{}.jpg")
    tree.write_lines(root / "TEST" / "anno" / "abc_1.txt", [[1, 2, 3, 4]])
    sequence = TrackingNet(root).load("abc_1")
    assert [f.name for f in sequence.frames[8:11]] == ["8.jpg", "9.jpg", "10.jpg"]
    assert not sequence.has_ground_truth
    with pytest.raises(ValueError, match=r"TrackingNet: missing .*TRAIN_0/anno"):
        TrackingNet(root, chunks=("TRAIN_0",))


def test_partial_download_checks_only_the_sequences_that_run(make_lasot, tmp_path: Path) -> None:
    """A LaSOT download of two test sequences runs them; a missing one is named, all in a line."""
    root = make_lasot({name: (np.ones((2, 4)), [0, 0]) for name in ("airplane-1", "bird-2")})
    dataset = LaSOT(root)  # the 280-sequence test split, of which two are present
    dataset.check(["airplane-1", "bird-2"])
    assert len(dataset.load("airplane-1").frames) == 2
    (root / "bird" / "bird-2" / "groundtruth.txt").unlink()
    with pytest.raises(ValueError) as error:
        dataset.check(["airplane-1", "airplane-9", "bird-2", "cat-1"])
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"LaSOT: missing 3 of 4 sequence(s) under {root}: airplane/airplane-9, "
        "bird/bird-2/groundtruth.txt, cat/cat-1"
    )
    with pytest.raises(ValueError, match="unknown sequence 'cow-99'"):
        dataset.check(["cow-99"])
    attributes = tmp_path / "att"
    attributes.mkdir()
    (attributes / "airplane-1.txt").write_text(",".join(["0"] * 14))
    LaSOT(root, attributes=attributes).check(["airplane-1"])  # no attribute files for the rest


def test_got10k_and_trackingnet_partial_downloads(make_got10k, tree, tmp_path: Path) -> None:
    boxes = np.array([[1, 2, 30, 40], [2, 3, 30, 40]], float)
    root = make_got10k({"GOT-10k_Val_000001": (boxes, [8, 8])})
    (root / "val" / "list.txt").write_text("GOT-10k_Val_000001\nGOT-10k_Val_000002\n")
    dataset = GOT10k(root)  # list.txt names a sequence that is not there: fine until it runs
    dataset.check(["GOT-10k_Val_000001"])
    with pytest.raises(ValueError, match=r"GOT-10k: missing 1 of 2 .*: GOT-10k_Val_000002/"):
        dataset.check()
    trackingnet = tmp_path / "trackingnet"
    tree.touch_frames(trackingnet / "TEST" / "frames" / "abc_1", range(3), "{}.jpg")
    for name in ("abc_1", "abc_2"):
        tree.write_lines(trackingnet / "TEST" / "anno" / f"{name}.txt", [[1, 2, 3, 4]])
    tn = TrackingNet(trackingnet)
    tn.check(["abc_1"])
    with pytest.raises(ValueError, match=r"TrackingNet: missing 1 of 2 .*: TEST/frames/abc_2$"):
        tn.check()
