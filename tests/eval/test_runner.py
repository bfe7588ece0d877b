"""Runner logic with a scripted predictor (fast): files, resuming, sidecar, report, errors.

The real model, the process pool and Ray run end to end in test_eval_cli.py.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from eval_layouts import GT, NUM_FRAMES, make_lasot
from samurai.eval.runner import (
    EvalConfig,
    Progress,
    open_dataset,
    report_benchmark,
    run_benchmark,
    tracker_label,
)
from samurai.eval.workers import PredictorSpec, SequenceTask, run_ray


def make_got10k(root: Path, frames: list[Path], names: tuple[str, ...], split: str) -> Path:
    base = root / split
    base.mkdir(parents=True)
    (base / "list.txt").write_text("".join(f"{name}\n" for name in names))
    for name in names:
        folder = base / name
        folder.mkdir()
        for i, frame in enumerate(frames[:NUM_FRAMES], start=1):
            (folder / f"{i:08d}.jpg").symlink_to(frame)
        (folder / "groundtruth.txt").write_text(f"{GT}\n" * (NUM_FRAMES if split == "val" else 1))
        (folder / "meta_info.ini").write_text("[METAINFO]\nresolution: (960, 540)\n")
        if split == "val":
            (folder / "absence.label").write_text("0\n" * NUM_FRAMES)
            (folder / "cover.label").write_text("8\n" * NUM_FRAMES)
    return root


class ScriptedPredictor:
    """Predicts the prompt box moved right by one pixel per frame; records each video opened."""

    device = torch.device("cpu")

    def __init__(self, fail_on: str | None = None) -> None:
        self.videos: list[str] = []
        self.prompts: list[list[float]] = []
        self.fail_on = fail_on

    def init_video(self, source: object) -> SimpleNamespace:
        files = source.files  # type: ignore[attr-defined]
        name = files[0].parts[-3] if files[0].parent.name == "img" else files[0].parent.name
        if name == self.fail_on:
            raise ValueError(f"cannot read {name}")
        self.videos.append(name)
        return SimpleNamespace(num_frames=len(files), box=None)

    def add_prompt(self, state: SimpleNamespace, *, frame_idx: int, obj_id: int, box: list) -> None:
        assert (frame_idx, obj_id) == (0, 1)
        self.prompts.append(box)
        state.box = box

    def propagate(self, state: SimpleNamespace) -> Iterator[SimpleNamespace]:
        x0, y0, x1, y1 = state.box
        for i in range(state.num_frames):
            xywh = torch.tensor([[x0 + i, y0, x1 - x0, y1 - y0]], dtype=torch.int64)
            yield SimpleNamespace(frame_idx=i, boxes_xywh=lambda b=xywh: b)


@pytest.fixture
def lasot_root(tmp_path: Path, bedroom_frames: list[Path]) -> Path:
    return make_lasot(tmp_path / "lasot", bedroom_frames, ("cat-1", "dog-1"))


def config(root: Path, out: Path, **kwargs: object) -> EvalConfig:
    kwargs.setdefault("dataset", "lasot")
    kwargs.setdefault("split", "all" if kwargs["dataset"] == "lasot" else "val")
    return EvalConfig(root=root, out=out, **kwargs)  # type: ignore[arg-type]


def test_lasot_run_writes_official_files_sidecar_and_report(lasot_root: Path, tmp_path: Path):
    events: list[Progress] = []
    predictor = ScriptedPredictor()
    out = tmp_path / "out"
    report = run_benchmark(config(lasot_root, out), progress=events.append, predictor=predictor)
    assert report == out / "report.md"
    folder = out / "samurai_sam2.1_hiera_t"
    assert sorted(p.name for p in folder.iterdir()) == ["cat-1.txt", "dog-1.txt"]
    assert (folder / "cat-1.txt").read_text() == "300,0,220,400\n301,0,220,400\n302,0,220,400\n"
    assert predictor.videos == ["cat-1", "dog-1"]
    assert [(e.name, e.done, e.total) for e in events] == [("cat-1", 1, 2), ("dog-1", 2, 2)]
    sidecar = json.loads((out / "samurai_sam2.1_hiera_t.json").read_text())
    assert sidecar["run"]["variant"] == "sam2.1_hiera_t"
    assert sidecar["run"]["tracker"] == "samurai"
    assert sidecar["sequences"]["dog-1"]["frames"] == NUM_FRAMES
    assert sidecar["sequences"]["dog-1"]["fps"] > 0
    data = json.loads((out / "report.json").read_text())
    assert data["trackers"] == ["samurai_sam2.1_hiera_t"] and data["num_sequences"] == 2
    # frame 0 is the ground truth; frames 1, 2 are shifted by 1, 2 pixels: IoU 219/221, 218/222
    assert data["overall"]["samurai_sam2.1_hiera_t"]["op75"] == pytest.approx(1.0)
    for plot in ("success.png", "precision.png", "norm_precision.png"):
        assert (out / plot).stat().st_size > 0


def test_resume_tracks_only_unfinished_sequences(lasot_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_benchmark(config(lasot_root, out, sequences=("cat-1",)), predictor=ScriptedPredictor())
    finished = out / "samurai_sam2.1_hiera_t" / "cat-1.txt"
    stamp = finished.stat().st_mtime_ns
    predictor, events = ScriptedPredictor(), []
    run_benchmark(config(lasot_root, out), predictor=predictor, progress=events.append)
    assert predictor.videos == ["dog-1"]
    assert finished.stat().st_mtime_ns == stamp
    assert [(e.name, e.fps is None) for e in events] == [("cat-1", True), ("dog-1", False)]
    # an interrupted file (fewer lines than frames) is redone
    finished.write_text("300,0,220,400\n")
    predictor = ScriptedPredictor()
    run_benchmark(config(lasot_root, out), predictor=predictor)
    assert predictor.videos == ["cat-1"]


def test_results_of_another_configuration_are_not_mixed(lasot_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_benchmark(config(lasot_root, out, sequences=("cat-1",)), predictor=ScriptedPredictor())
    other = config(lasot_root, out, overrides={"kf_score_weight": 0.1})
    with pytest.raises(ValueError, match="another configuration"):
        run_benchmark(other, predictor=ScriptedPredictor())


def test_failed_sequence_is_reported_after_the_others(lasot_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"1 of 2 sequences failed \(first: cat-1: cannot read"):
        run_benchmark(config(lasot_root, out), predictor=ScriptedPredictor(fail_on="cat-1"))
    assert (out / "samurai_sam2.1_hiera_t" / "dog-1.txt").is_file()
    assert not (out / "report.md").exists()


def test_got10k_val_layout_with_times(tmp_path: Path, bedroom_frames: list[Path]):
    names = ("GOT-10k_Val_000001", "GOT-10k_Val_000002")
    root = make_got10k(tmp_path / "got10k", bedroom_frames, names, "val")
    for name in names:  # GOT-10k boxes have decimals; the prompt truncates them as upstream
        (root / "val" / name / "groundtruth.txt").write_text("300.7,0.2,220.5,400.9\n" * 3)
    out = tmp_path / "out"
    plain = config(root, out, dataset="got10k", samurai_mode=False, overrides={"image_size": 256})
    predictor = ScriptedPredictor()
    run_benchmark(plain, predictor=predictor)
    assert predictor.prompts == [[300, 0, 520, 400]] * 2
    folder = out / "sam2_sam2.1_hiera_t_256" / names[0]
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{names[0]}_001.txt",
        f"{names[0]}_time.txt",
    ]
    assert len((folder / f"{names[0]}_time.txt").read_text().split()) == NUM_FRAMES
    data = json.loads((out / "report.json").read_text())
    assert 0.9 < data["overall"]["sam2_sam2.1_hiera_t_256"]["ao"] < 1.0


def test_got10k_test_split_is_packed_for_the_server(tmp_path: Path, bedroom_frames: list[Path]):
    root = make_got10k(tmp_path / "got10k", bedroom_frames, ("GOT-10k_Test_000001",), "test")
    out = tmp_path / "out"
    path = run_benchmark(
        config(root, out, dataset="got10k", split="test"), predictor=ScriptedPredictor()
    )
    assert path == out / "samurai_sam2.1_hiera_t.zip"
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt",
        ]


def test_report_compares_trackers(lasot_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    run_benchmark(config(lasot_root, out), predictor=ScriptedPredictor())
    other = tmp_path / "other" / "Baseline"
    other.mkdir(parents=True)
    for name in ("cat-1", "dog-1"):
        (other / f"{name}.txt").write_text(f"{GT}\n0,0,0,0\n{GT}\n")
    dataset = open_dataset("lasot", lasot_root, split="all")
    ours = out / "samurai_sam2.1_hiera_t"
    results = {"ours": ours, "Baseline": other}
    report_benchmark(dataset, results, tmp_path / "cmp", sequences=["dog-1", "cat-1"], plots=False)
    data = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert data["trackers"] == ["ours", "Baseline"] and data["num_sequences"] == 2
    # frame 1 (empty box) takes frame 0's box (toolkit rule): IoU 1 everywhere, and the 21st
    # threshold (IoU > 1) never succeeds
    assert data["overall"]["Baseline"]["auc"] == pytest.approx(20 / 21)
    with pytest.raises(ValueError, match="also named 'ours'"):
        config(lasot_root, out, tracker_name="ours", compare={"ours": other})


def test_bad_input_gives_one_line_errors(lasot_root: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="unknown dataset 'vot'"):
        open_dataset("vot", lasot_root)
    with pytest.raises(ValueError, match="dataset folder not found"):
        open_dataset("lasot", tmp_path / "missing")
    partial = config(lasot_root, tmp_path, split="test", sequences=("cat-1", "cat-3"))
    with pytest.raises(ValueError, match=r"missing 1 of 2 sequence\(s\) .*: cat/cat-3$"):
        run_benchmark(partial, predictor=object())  # cat-1 is there, cat-3 is not
    with pytest.raises(ValueError, match="unknown sequence"):
        run_benchmark(config(lasot_root, tmp_path, sequences=("cow-3",)), predictor=object())
    with pytest.raises(ValueError, match="in-process only"):
        run_benchmark(config(lasot_root, tmp_path, workers=2), predictor=ScriptedPredictor())
    with pytest.raises(ValueError, match="workers must be >= 1"):
        config(lasot_root, tmp_path, workers=0)


def test_missing_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "ray", None)
    spec = PredictorSpec("sam2.1_hiera_t", None, "cpu", "float32", True, {})
    task = SequenceTask("cat-1", ("0.jpg",), (1.0, 2.0, 3.0, 4.0))
    ray_config = config(tmp_path, tmp_path, ray_address="local")
    with pytest.raises(ValueError, match=r"--ray-address needs Ray: pip install"):
        list(run_ray(ray_config, spec, [task], workers=1))


def test_tracker_names():
    assert tracker_label("sam2.1_hiera_l", samurai_mode=True) == "samurai_sam2.1_hiera_l"
    assert tracker_label("sam2_hiera_t", samurai_mode=False, image_size=512) == (
        "sam2_sam2_hiera_t_512"
    )
    alias = EvalConfig(dataset="otb", root=Path("."), variant="sam2.1_hiera_tiny")
    assert alias.name == "samurai_sam2.1_hiera_t"  # resumes into the same folder as the key
    assert EvalConfig(dataset="otb", root=Path("."), overrides={"image_size": 1024}).name == (
        "samurai_sam2.1_hiera_t"
    )
    assert EvalConfig(dataset="otb", root=Path("."), tracker_name="ours").name == "ours"
    assert EvalConfig(dataset="otb", root=Path("."), workers=64).threads_per_worker >= 1
    with pytest.raises(ValueError, match="unknown model variant"):
        EvalConfig(dataset="otb", root=Path("."), variant="sam3")
