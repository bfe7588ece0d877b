"""The service's Ray actor class used directly, in this process: a checkpoint that is missing on
the actor's node is taken from the bytes the head ships; a stop that names a job stops it even
before it starts, and names only that job."""

from __future__ import annotations

from pathlib import Path

from samurai.service.params import parse_job_params
from samurai.service.ray_actor import ActorSettings, RemoteJob, ServiceActor, pack_video
from samurai.service.worker import default_manager_factory
from service.ray_helpers import JOBS


def make_actor(tmp_path: Path) -> ServiceActor:
    settings = ActorSettings(
        checkpoints={"sam2.1_hiera_t": str(tmp_path / "only-on-the-head.pt")},
        device="cpu",
        dtype="float32",
        image_size=256,
        threads=1,
    )
    return ServiceActor(settings, default_manager_factory)


def test_missing_checkpoint_comes_from_the_head_and_stops_name_their_job(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    actor = make_actor(tmp_path)
    assert actor.ready()[1] == ["sam2.1_hiera_t"]  # the head will ship it
    params = parse_job_params({**JOBS[0][1], "max_frames": "2"}).to_dict()
    video = pack_video(str(clips["short"]))
    weights = tiny_checkpoint.read_bytes()
    stopped = RemoteJob("a" * 32, 1, params, "/head/video.mp4", video, weights)
    actor.poll(stopped.job_id, stop=True)  # before it runs: it stops at the first check
    result = actor.run(stopped)
    assert not result.complete and result.files == {}
    actor.poll(stopped.job_id, stop=True)  # late: must not touch the next job
    job = RemoteJob("b" * 32, 1, params, "/head/video.mp4", video, weights)
    result = actor.run(job)
    assert result.complete and result.frames == 2
    assert sorted(result.outputs) == ["boxes_1", "masks", "overlay", "rle", "scores"]
    assert result.outputs["masks"] == "masks" and "masks/00001.png" in result.files
    assert result.files["masks.json"].startswith(b'{"video": "/head/video.mp4"')
    assert actor.poll(job.job_id) == (2, 2, actor.poll(job.job_id)[2])
    assert actor.poll("c" * 32) == (0, None, 0.0)
    shipped = actor._shipped["sam2.1_hiera_t"]
    assert shipped.read_bytes() == weights  # saved once, reused by later jobs


def test_the_jobs_tracker_reaches_the_model(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    actor = make_actor(tmp_path)
    video = pack_video(str(clips["short"]))
    weights = tiny_checkpoint.read_bytes()
    for tracker in ("dam4sam", "sam2"):
        form = {**JOBS[0][1], "max_frames": "2", "tracker": tracker, "outputs": "boxes"}
        job = RemoteJob("d" * 32, 1, parse_job_params(form).to_dict(), "v.mp4", video, weights)
        assert actor.run(job).complete
        assert actor.cache.managers["sam2.1_hiera_t"][1].tracker_name == tracker
