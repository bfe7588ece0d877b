"""Reports over several trackers: scores, markdown, JSON and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samurai.eval.datasets import GOT10k, LaSOT
from samurai.eval.metrics import LASOT, sequence_scores, summarize
from samurai.eval.report import evaluate, write_report
from samurai.eval.results import ResultFolder

toolkit_metrics = pytest.importorskip("got10k.utils.metrics")
toolkit_got10k = pytest.importorskip("got10k.experiments.got10k")


def _sequences(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, length in (("airplane-1", 30), ("bird-3", 20), ("cat-2", 25)):
        xy = rng.uniform(0, 200, (length, 2))
        boxes = np.round(np.concatenate([xy, rng.uniform(10, 60, (length, 2))], axis=1), 1)
        absent = rng.random(length) < 0.15
        absent[0] = False
        boxes[absent] = 0.0
        out[name] = (boxes, absent.astype(int))
    return out


def _tracker(rng: np.random.Generator, root: Path, gt: dict, noise: float) -> Path:
    folder = ResultFolder(root)
    for name, (boxes, _) in gt.items():
        pred = boxes + rng.normal(0, noise, boxes.shape)
        pred[rng.random(len(pred)) < 0.1] = 0.0  # lost: empty box
        folder.write(name, pred)
    return root


def test_lasot_report_files(make_lasot, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    gt = _sequences(rng)
    dataset = LaSOT(
        make_lasot(gt), split="all",
        attributes={"airplane-1": ["FOC", "IV"], "bird-3": ["FOC"], "cat-2": []},
    )  # fmt: skip
    results = {
        "good": _tracker(rng, tmp_path / "good", gt, 2.0),
        "bad": _tracker(rng, tmp_path / "bad", gt, 15.0),
    }
    report = evaluate(dataset, results)
    assert report.ranked() == ["good", "bad"] and report.attribute_counts == {"FOC": 2, "IV": 1}
    expected = [
        sequence_scores(
            ResultFolder(results["good"]).read(name), boxes, visible=absent == 0, convention=LASOT
        )
        for name, (boxes, absent) in gt.items()
    ]
    np.testing.assert_allclose(report.overall["good"].success, summarize(expected).success)
    foc = summarize(expected[:2])
    assert report.per_attribute["FOC"]["good"].auc == pytest.approx(foc.auc, abs=1e-12)

    written = write_report(report, tmp_path / "report")
    names = sorted(p.name for p in written)
    assert names == [
        "norm_precision.png",
        "precision.png",
        "report.json",
        "report.md",
        "success.png",
    ]
    for path in written:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["overall"]["good"]["auc"] == pytest.approx(report.overall["good"].auc)
    assert len(data["overall"]["bad"]["success_curve"]) == 21
    assert data["per_attribute"]["FOC"]["num_sequences"] == 2
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| good |" in markdown and "Full Occlusion (FOC)" in markdown


def test_skip_missing_and_errors(make_lasot, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    gt = _sequences(rng)
    dataset = LaSOT(make_lasot(gt), split="all")
    root = _tracker(rng, tmp_path / "partial", gt, 2.0)
    (root / "bird-3.txt").unlink()
    with pytest.raises(ValueError, match=r"result file missing: .*bird-3.txt"):
        evaluate(dataset, {"partial": root})
    report = evaluate(dataset, {"partial": root}, skip_missing=True)
    assert report.sequences == ("airplane-1", "cat-2")
    with pytest.raises(ValueError, match="no trackers"):
        evaluate(dataset, {})


def test_got10k_report_equals_toolkit(make_got10k, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    sequences, runs = {}, {}
    for index, length in enumerate((15, 40, 22)):
        boxes = np.round(
            np.c_[rng.uniform(0, 250, (length, 2)), rng.uniform(5, 60, (length, 2))], 1
        )
        cover = rng.integers(0, 9, length)
        cover[0] = 8
        name = f"GOT-10k_Val_{index + 1:06d}"
        sequences[name] = (boxes, cover)
        runs[name] = [boxes + rng.normal(0, 6, boxes.shape) for _ in range(2 if index else 1)]
    dataset = GOT10k(make_got10k(sequences))
    folder = ResultFolder.for_benchmark(tmp_path / "results", "got10k")
    for name, boxes_list in runs.items():
        for repetition, boxes in enumerate(boxes_list, start=1):
            folder.write(name, boxes, repetition=repetition)
    report = evaluate(dataset, {"samurai": folder.root})

    pooled = []
    for name, (gt, cover) in sequences.items():
        # what the toolkit reads back: the written files (3 decimals)
        boxes = [folder.read(name, repetition=r + 1) for r in range(len(runs[name]))]
        ious = [toolkit_metrics.rect_iou(b[1:], gt[1:].copy(), bound=(320, 240)) for b in boxes]
        seq_ious = np.concatenate([t[cover[1:] > 0] for t in ious])
        pooled.append(seq_ious)
        ao, sr, _, _ = toolkit_got10k.ExperimentGOT10k._evaluate(None, seq_ious, [])
        scores = report.per_sequence["samurai"][name]
        assert scores.ao == pytest.approx(ao, abs=1e-9)
        assert scores.sr50 == pytest.approx(sr, abs=1e-9)
    ao, sr, _, curve = toolkit_got10k.ExperimentGOT10k._evaluate(None, np.concatenate(pooled), [])
    overall = report.overall["samurai"]
    assert overall.ao == pytest.approx(ao, abs=1e-9) and overall.sr50 == pytest.approx(sr, abs=1e-9)
    np.testing.assert_allclose(overall.success, curve, rtol=0, atol=1e-9)
    written = write_report(report, tmp_path / "got_report")
    assert sorted(p.name for p in written) == ["report.json", "report.md", "success.png"]
    assert "| samurai |" in (tmp_path / "got_report" / "report.md").read_text()


def test_withheld_ground_truth_is_refused(make_got10k, tmp_path: Path) -> None:
    boxes = np.ones((3, 4))
    root = make_got10k({"GOT-10k_Test_000001": (boxes, [8] * 3)}, split="test")
    dataset = GOT10k(root, split="test")
    folder = ResultFolder.for_benchmark(tmp_path / "r", "got10k")
    folder.write("GOT-10k_Test_000001", boxes)
    with pytest.raises(ValueError, match="withheld ground truth"):
        evaluate(dataset, {"t": folder})
