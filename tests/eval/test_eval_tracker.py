"""``samurai eval --tracker``: result folder labels, run configs (old ones without a tracker
still load), the policy the workers' predictors run, and the report's side-by-side Runs table.
Real CLI in this process, synthetic weights, 256 px, tiny LaSOT trees of 3 frames a sequence."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from eval_layouts import GT, NUM_FRAMES, make_lasot
from samurai.config import TRACKERS
from samurai.eval.report import evaluate
from samurai.eval.results import read_run, run_config
from samurai.eval.runner import EvalConfig, open_dataset, tracker_label
from samurai.eval.workers import PredictorSpec

# Every policy is tracked end to end (dam4sam and samurai+dam too).
TRACKED = TRACKERS


@pytest.fixture
def lasot(tmp_path: Path, bedroom_frames: list[Path]) -> Path:
    return make_lasot(tmp_path / "LaSOT", bedroom_frames, ("cat-1",))


def test_labels_name_the_tracker() -> None:
    assert tracker_label("sam2.1_hiera_t", tracker="dam4sam") == "dam4sam_sam2.1_hiera_t"
    assert tracker_label("sam2.1_hiera_l", tracker="samurai+dam", image_size=512) == (
        "samurai+dam_sam2.1_hiera_l_512"
    )
    assert tracker_label("sam2.1_hiera_t", tracker="SAM2") == "sam2_sam2.1_hiera_t"
    # the form from before the tracker policies
    assert tracker_label("sam2.1_hiera_t", samurai_mode=False) == "sam2_sam2.1_hiera_t"
    assert tracker_label("sam2.1_hiera_t", samurai_mode=True) == "samurai_sam2.1_hiera_t"
    with pytest.raises(ValueError, match="unknown tracker 'dam'"):
        tracker_label("sam2.1_hiera_t", tracker="dam")


def test_config_policy_and_name(tmp_path: Path) -> None:
    def config(**kwargs: object) -> EvalConfig:
        return EvalConfig(dataset="lasot", root=tmp_path, **kwargs)  # type: ignore[arg-type]

    assert (config().policy, config().name) == ("samurai", "samurai_sam2.1_hiera_t")
    assert config(samurai_mode=False).name == "sam2_sam2.1_hiera_t"
    dam = config(tracker="dam4sam", variant="sam2.1_hiera_large", overrides={"image_size": 512})
    assert (dam.policy, dam.name) == ("dam4sam", "dam4sam_sam2.1_hiera_l_512")
    assert config(tracker="sam2", samurai_mode=True).policy == "sam2"  # tracker wins
    with pytest.raises(ValueError, match="unknown tracker"):
        config(tracker="samurai2")


def test_old_run_configs_mean_their_tracker() -> None:
    old = {"dataset": "lasot", "variant": "sam2.1_hiera_t", "samurai_mode": False, "dtype": "x"}
    assert run_config(old) == {**{k: v for k, v in old.items() if k != "samurai_mode"},
                               "tracker": "sam2"}  # fmt: skip
    assert run_config({**old, "samurai_mode": True})["tracker"] == "samurai"
    new = {"variant": "sam2.1_hiera_t", "tracker": "dam4sam"}
    assert run_config(new) == new


@pytest.mark.parametrize("tracker", TRACKED)
def test_worker_spec_builds_a_predictor_running_the_tracker(tracker: str, synth_checkpoint):
    checkpoint = str(synth_checkpoint("sam2.1_hiera_t"))
    spec = PredictorSpec("sam2.1_hiera_t", checkpoint, "cpu", "float32", True, {}, tracker)
    spec = PredictorSpec(**{**spec.__dict__, "overrides": {"image_size": 256}})
    assert spec.build().tracker_name == tracker
    legacy = PredictorSpec("sam2.1_hiera_t", checkpoint, "cpu", "float32", False, {})
    assert legacy.tracker_name == "sam2"


def test_eval_tracks_each_tracker_and_reports_them_side_by_side(
    lasot: Path, tmp_path: Path, synth_checkpoint, cli_main
) -> None:
    checkpoint = synth_checkpoint("sam2.1_hiera_t")
    out = tmp_path / "runs"
    base = ["--dataset", "lasot", "--root", lasot, "--split", "all", "--out", out, "--no-plots"]
    model = ["--checkpoint", checkpoint, "--image-size", 256]
    folders = []
    for tracker in TRACKED:
        code, stdout, stderr = cli_main(*base, *model, "--tracker", tracker)
        assert code == 0, stderr
        name = f"{tracker}_sam2.1_hiera_t_256"
        folders.append(out / name)
        assert len((out / name / "cat-1.txt").read_text().splitlines()) == NUM_FRAMES
        run = json.loads((out / f"{name}.json").read_text())["run"]
        assert run["tracker"] == tracker and "samurai_mode" not in run
        assert f"| {name} | {tracker} | sam2.1_hiera_t | 256 | float32 |" in stdout
    baseline = tmp_path / "raw" / "Baseline"
    baseline.mkdir(parents=True)
    (baseline / "cat-1.txt").write_text(f"{GT}\n" * NUM_FRAMES)

    code, stdout, stderr = cli_main(*base, "--results", *folders, baseline)
    assert code == 0, stderr
    runs = stdout[stdout.index("## Runs") :]
    assert "| Tracker | Policy | Model | Image size | dtype | Frames/s |" in runs
    for tracker, folder in zip(TRACKED, folders, strict=True):
        assert f"| {folder.name} | {tracker} | sam2.1_hiera_t | 256 | float32 |" in runs
    assert "| Baseline | - | - | - | - | - |" in runs
    data = json.loads((out / "report.json").read_text())
    assert sorted(data["runs"]) == sorted(f.name for f in folders)
    assert data["runs"][folders[0].name]["fps"] > 0


def test_an_old_result_folder_resumes_and_refuses_another_tracker(
    lasot: Path, tmp_path: Path, synth_checkpoint, cli_main, caplog: pytest.LogCaptureFixture
) -> None:
    """A sidecar written before --tracker (samurai_mode) still loads as its tracker."""
    out = tmp_path / "runs"
    args = ["--dataset", "lasot", "--root", lasot, "--split", "all", "--out", out, "--no-plots"]
    args += ["--checkpoint", synth_checkpoint("sam2.1_hiera_t"), "--image-size", 256]
    assert cli_main(*args)[0] == 0
    sidecar = out / "samurai_sam2.1_hiera_t_256.json"
    data = json.loads(sidecar.read_text())
    run = dict(data["run"])
    assert run.pop("tracker") == "samurai"
    data["run"] = {**run, "samurai_mode": True}
    sidecar.write_text(json.dumps(data))
    assert read_run(out / "samurai_sam2.1_hiera_t_256")["tracker"] == "samurai"

    caplog.set_level(logging.INFO, logger="samurai")
    code, stdout, stderr = cli_main(*args)
    assert code == 0, stderr
    assert "1 of 1 sequences already finished" in caplog.text
    assert "| samurai_sam2.1_hiera_t_256 | samurai |" in stdout
    code, _, stderr = cli_main(*args, "--tracker", "sam2", "--name", "samurai_sam2.1_hiera_t_256")
    assert code == 2 and "holds results of another configuration" in stderr


def test_report_without_sidecars_has_no_runs_table(lasot: Path, tmp_path: Path) -> None:
    folder = tmp_path / "raw" / "Baseline"
    folder.mkdir(parents=True)
    (folder / "cat-1.txt").write_text(f"{GT}\n" * NUM_FRAMES)
    (tmp_path / "raw" / "Baseline.json").write_text("{not json")  # unreadable: ignored
    report = evaluate(open_dataset("lasot", lasot, split="all"), {"Baseline": folder})
    assert report.runs == {} and "## Runs" not in report.to_markdown()
