"""Result files: round trips, atomic writes, resumability, server zips."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from samurai.eval import results as results_module
from samurai.eval.results import (
    ResultFolder,
    atomic_write_text,
    format_boxes,
    load_boxes,
    pack_got10k,
    pack_trackingnet,
    parse_boxes,
)


def test_format_and_parse_round_trip() -> None:
    boxes = np.array([[10, 20, 30, 40], [1.5, 2.25, 3.125, 4.0], [0.1234, -1, 0, 7]])
    text = format_boxes(boxes)
    assert text.splitlines()[0] == "10,20,30,40"  # integral values as SAMURAI writes them
    assert text.splitlines()[1] == "1.5,2.25,3.125,4"
    np.testing.assert_allclose(parse_boxes(text), np.round(boxes, 3))
    mixed = "1\t2\t3\t4\n\n5 6 7 8\n9,10,11,12\nNaN,NaN,NaN,NaN\n"
    parsed = parse_boxes(mixed)
    assert parsed.shape == (4, 4) and np.isnan(parsed[3]).all()
    with pytest.raises(ValueError, match="line 1: expected 4 values, got 3"):
        parse_boxes("1,2,3\n")


def test_ope_folder_round_trip(tmp_path: Path) -> None:
    folder = ResultFolder.for_benchmark(tmp_path / "lasot" / "samurai", "lasot")
    boxes = np.array([[1, 2, 3, 4], [5, 6, 7, 8.5]])
    path = folder.write("airplane-1", boxes, times=[0.1, 0.2])
    assert path == tmp_path / "lasot" / "samurai" / "airplane-1.txt"
    np.testing.assert_array_equal(folder.read("airplane-1"), boxes)
    np.testing.assert_allclose(folder.read_times("airplane-1")[:, 0], [0.1, 0.2])
    assert folder.is_done("airplane-1") and folder.is_done("airplane-1", num_frames=2)
    assert not folder.is_done("airplane-1", num_frames=3) and not folder.is_done("bird-2")
    (folder.root / ".bird-2.txt.xyz.tmp").write_text("1,2,3,4\n")  # a killed writer's leftover
    assert folder.sequences() == ["airplane-1"]
    with pytest.raises(ValueError, match=r"result file missing: .*bird-2.txt"):
        folder.read("bird-2")
    assert load_boxes(path).shape == (2, 4)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "seq.txt"
    atomic_write_text(target, "old\n")

    def fail(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(results_module.os, "replace", fail)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["seq.txt"]


def test_got10k_layout_and_zip(tmp_path: Path) -> None:
    folder = ResultFolder.for_benchmark(tmp_path / "GOT-10k" / "samurai", "got10k")
    boxes = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], float)
    for name in ("GOT-10k_Test_000001", "GOT-10k_Test_000002"):
        folder.write(name, boxes, times=[0.5, 0.25])
    folder.write("GOT-10k_Test_000001", boxes + 1, times=[0.4, 0.2], repetition=2)
    seq_dir = folder.root / "GOT-10k_Test_000001"
    assert sorted(os.listdir(seq_dir)) == [
        "GOT-10k_Test_000001_001.txt",
        "GOT-10k_Test_000001_002.txt",
        "GOT-10k_Test_000001_time.txt",
    ]
    assert (seq_dir / "GOT-10k_Test_000001_time.txt").read_text().splitlines()[0] == (
        "0.50000000,0.40000000"
    )
    runs = folder.read_repetitions("GOT-10k_Test_000001")
    assert len(runs) == 2 and np.array_equal(runs[1], boxes + 1)
    assert folder.read_times("GOT-10k_Test_000001").shape == (2, 2)
    assert folder.sequences() == ["GOT-10k_Test_000001", "GOT-10k_Test_000002"]

    archive = pack_got10k(folder, tmp_path / "samurai_got10k.zip")
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == [
            "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_002.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_time.txt",
        ]
        content = zipped.read("GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt")
        assert content == b"1,2,3,4\n5,6,7,8\n"
    with pytest.raises(ValueError, match=r"1 sequences unfinished, first: .*_000003"):
        pack_got10k(folder, tmp_path / "x.zip", sequences=["GOT-10k_Test_000003"])
    with pytest.raises(ValueError, match="repetitions exist only"):
        ResultFolder(tmp_path).boxes_path("a", repetition=2)


def test_trackingnet_zip(tmp_path: Path) -> None:
    folder = ResultFolder.for_benchmark(tmp_path / "trackingnet", "trackingnet")
    folder.write("vid_a", [[1, 2, 3, 4]], times=[0.1])
    folder.write("vid_b", [[1, 2, 3, 4]])
    archive = pack_trackingnet(folder, tmp_path / "out" / "submission.zip")
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == ["vid_a.txt", "vid_b.txt"]
    with pytest.raises(ValueError, match="got10k-layout"):
        pack_got10k(folder, tmp_path / "y.zip")
