"""Form parsing of ``POST /api/jobs`` and the ``samurai serve`` options, without a server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from samurai.commands.serve import add_arguments, register, settings_from_args
from samurai.service.schemas import (
    RESULT_KINDS,
    JobParams,
    ServiceSettings,
    check_in_frame,
    parse_job_params,
)


def test_defaults_and_round_trip() -> None:
    params = parse_job_params({"boxes": "[[1, 2, 30, 40], [5, 6, 7, 8]]"})
    assert params.model == "sam2.1_hiera_t" and params.samurai_mode is True
    assert params.boxes == [[1, 2, 30, 40], [5, 6, 7, 8]] and params.num_objects == 2
    assert params.outputs == list(RESULT_KINDS) and params.options == {}
    assert JobParams.from_dict(params.to_dict()) == params


def test_points_options_and_aliases() -> None:
    params = parse_job_params(
        {
            "points": "[[10, 20], [30, 40]]",
            "labels": "[1, 0]",
            "model": "sam2.1_hiera_tiny",
            "options": '{"kf_score_weight": 0.15, "memory_selection": "best_iou"}',
            "max_frames": "5",
            "outputs": '["scores", "boxes"]',
        }
    )
    assert params.model == "sam2.1_hiera_t" and params.points == [[10, 20], [30, 40]]
    assert params.labels == [1, 0] and params.num_objects == 1
    assert params.options == {"kf_score_weight": 0.15, "memory_selection": "best_iou"}
    assert params.max_frames == 5 and params.outputs == ["boxes", "scores"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"boxes": "[[1, 2, 3, true]]"}, r"boxes\[0\]: expected a finite number"),
        ({"boxes": "[[1, 2, 3, NaN]]"}, r"boxes\[0\]"),
        ({"boxes": "[" + "[1, 2, 3, 4]," * 40 + "[1, 2, 3, 4]]"}, "at most 32 objects"),
        ({"boxes": "[[1, 1, 2, 2]]", "options": '{"stable_frames_threshold": 1.5}'}, "integer"),
        ({"boxes": "[[1, 1, 2, 2]]", "options": '{"memory_selection": 3}'}, "string"),
        ({"boxes": "[[1, 1, 2, 2]]", "options": "[1]"}, "JSON object"),
        ({"labels": "[1]"}, "without points"),
        ({"points": "[[1, 2, 3]]"}, r"points\[0\]"),
        ({"boxes": "[[1, 1, 2, 2]]", "max_frames": "ten"}, "max_frames"),
    ],
)
def test_refused_forms(form: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_job_params(form)


def test_in_frame_check_allows_boxes_that_stick_out() -> None:
    inside = parse_job_params({"boxes": "[[900, 500, 100, 100]]", "points": "[[960, 540]]"})
    check_in_frame(inside, width=960, height=540)  # clipped by the manager, as the CLI does
    with pytest.raises(ValueError, match=r"boxes\[0\].*outside the 960x540"):
        check_in_frame(parse_job_params({"boxes": "[[960, 0, 5, 5]]"}), width=960, height=540)
    with pytest.raises(ValueError, match=r"points\[0\]"):
        check_in_frame(parse_job_params({"points": "[[-1, 0]]"}), width=960, height=540)


def test_serve_arguments(tmp_path: Path) -> None:
    weights = tmp_path / "t.pt"
    weights.write_bytes(b"x")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--workers", "2", "--data-dir", str(tmp_path), "--allowed-root", str(tmp_path),
         "--checkpoint", f"sam2.1_hiera_tiny={weights}", "--image-size", "256",
         "--max-upload-mb", "5", "--max-frames", "10"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert settings.host == "127.0.0.1" and settings.port == 8000 and settings.workers == 2
    assert settings.db_path == tmp_path / "jobs.db" and settings.allowed_roots == (tmp_path,)
    assert settings.checkpoints == {"sam2.1_hiera_t": weights} and settings.image_size == 256
    assert settings.max_upload_bytes == 5 * 2**20 and settings.max_frames == 10
    with pytest.raises(SystemExit):
        parser.parse_args(["--checkpoint", "no-equals-sign"])
    missing = parser.parse_args(["--checkpoint", f"sam2.1_hiera_t={tmp_path / 'none.pt'}"])
    with pytest.raises(ValueError, match="file not found"):
        settings_from_args(missing)


def test_serve_is_a_cli_subcommand() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "9000", "-q"])
    assert args.port == 9000 and args.quiet and callable(args.handler)


def test_settings_checks() -> None:
    with pytest.raises(ValueError, match="workers"):
        ServiceSettings(workers=0)
    with pytest.raises(ValueError, match="unknown model variant"):
        ServiceSettings(checkpoints={"sam9": Path("x")})
    assert ServiceSettings(workers=2, threads_per_worker=3).torch_threads == 3


def test_tracker_field() -> None:
    box = "[[1, 1, 2, 2]]"
    assert parse_job_params({"boxes": box}).tracker == "samurai"
    assert parse_job_params({"boxes": box, "samurai_mode": "false"}).tracker == "sam2"
    plain = parse_job_params({"boxes": box, "tracker": "SAM2"})
    assert plain.tracker == "sam2" and plain.samurai_mode is False
    both = parse_job_params({"boxes": box, "tracker": "samurai+dam", "samurai_mode": "true"})
    assert both.tracker == "samurai+dam" and both.samurai_mode is True
    dam = parse_job_params({"boxes": box, "tracker": "dam4sam"})
    assert dam.samurai_mode is False and JobParams.from_dict(dam.to_dict()) == dam
    old = dam.to_dict()  # a job stored before the tracker option
    del old["tracker"]
    assert JobParams.from_dict(old).tracker == "sam2"
    for form, message in [
        ({"tracker": "kalman"}, "tracker: unknown tracker 'kalman'; expected one of"),
        ({"tracker": "dam4sam", "samurai_mode": "true"}, "samurai_mode: true contradicts"),
        ({"tracker": "sam2", "options": '{"kf_score_weight": 0.1}'}, "options: SAMURAI options"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_job_params({"boxes": box, **form})


def test_ray_arguments(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data-dir", str(tmp_path)]
    assert settings_from_args(parser.parse_args(base)).ray is None
    args = parser.parse_args(
        [*base, "--ray-address", "auto", "--device", "cuda", "--gpus-per-job", "0.5",
         "--max-jobs-per-node", "2", "--ray-resources", '{"a100": 1}', "--threads-per-worker",
         "4", "--max-attempts", "5"]
    )  # fmt: skip
    ray = settings_from_args(args).ray
    assert (ray.address, ray.cpus_per_job, ray.gpus_per_job) == ("auto", 4.0, 0.5)
    assert (ray.max_jobs_per_node, ray.resources, ray.max_attempts) == (2, {"a100": 1.0}, 5)
    assert ray.jobs_on({"CPU": 16, "GPU": 2, "a100": 2}) == 2  # --max-jobs-per-node
    assert ray.jobs_on({"CPU": 16, "GPU": 0.5, "a100": 2}) == 1  # half a GPU each
    assert ray.jobs_on({"CPU": 16, "GPU": 8}) == 0  # no a100 resource: no jobs there
    cpu = settings_from_args(parser.parse_args([*base, "--ray-address", "local"])).ray
    assert cpu.gpus_per_job == 0 and cpu.cpus_per_job == 1 and cpu.jobs_on({"CPU": 3}) == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--ray-resources", "[1]"])
    with pytest.raises(ValueError, match="Ray picks the GPU"):
        settings_from_args(
            parser.parse_args([*base, "--ray-address", "auto", "--device", "cuda:1"])
        )
    with pytest.raises(ValueError, match="--gpus-per-job needs --device cuda"):
        settings_from_args(
            parser.parse_args([*base, "--ray-address", "x:1", "--gpus-per-job", "1"])
        )
