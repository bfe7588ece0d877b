"""``samurai serve --ray-address``: jobs on the actors of a real two-node Ray cluster on this
machine (`batch.helpers.LocalRayCluster`), with the API, database and results on the head.

The results must equal, byte for byte, those of the local worker processes for the same jobs;
a remote job is cancelled promptly with nothing left behind; losing the second node in the
middle of a job still does every job exactly once; ``--ray-address local`` needs no cluster;
an unreachable address is one line at startup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batch.helpers import LocalRayCluster, processes
from samurai.service.params import parse_job_params
from samurai.service.ray_pool import RayPool
from samurai.service.ray_settings import RaySettings
from samurai.service.schemas import ServiceSettings
from samurai.service.store import Store, VideoRecord, new_id
from service.helpers import ServerProcess, free_port, read_sse, wait_job, wait_progress
from service.ray_helpers import (
    JOBS,
    crashing_factory,
    differences,
    job_events,
    results,
    run_jobs,
    submit,
    workers_of,
)

pytest.importorskip("ray")

pytestmark = pytest.mark.xdist_group("ray_service")  # one cluster; the node-loss test is last

ONE_THREAD = ("--threads-per-worker", "1")
SAME_GEMMS = {"SAMURAI_ONEDNN": "1"}
"""Every process compared byte for byte uses one GEMM backend. Left to measure, each server (its
own ``SAMURAI_HOME``) calibrates on its own, and on a loaded machine one once took PyTorch's
path for the narrow layers where the reference took oneDNN's (results ~1e-5 apart)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    started = LocalRayCluster()
    started.env["PYTHONPATH"] = str(Path(__file__).parents[1])  # tests/: actors import helpers
    started.env |= SAME_GEMMS
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, clips: dict[str, Path]
) -> list[dict[str, bytes]]:
    """`JOBS` on the local worker process (one torch thread, as each actor)."""
    server = ServerProcess(tmp_path_factory.mktemp("local"), tiny_checkpoint, *ONE_THREAD)
    server.env["OMP_NUM_THREADS"] = "1"
    server.env |= SAME_GEMMS
    server.start()
    try:
        with server.client() as client:
            return run_jobs(client, clips)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ray_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, cluster: LocalRayCluster
) -> Iterator[ServerProcess]:
    """A server whose jobs run on the cluster: one 1-CPU actor per node."""
    root = tmp_path_factory.mktemp("ray")
    address = ("--ray-address", cluster.address)
    server = ServerProcess(root, tiny_checkpoint, *address, *ONE_THREAD, workers=2)
    server.env |= cluster.env
    server.start()
    yield server
    server.stop()


def test_results_equal_the_local_workers(
    ray_server: ServerProcess, reference: list[dict[str, bytes]], clips: dict[str, Path]
) -> None:
    with ray_server.client() as client:
        assert client.get("/healthz").json()["workers"] == 2
        first = submit(client, clips[JOBS[0][0]], JOBS[0][1])
        events = read_sse(client, first)
        assert events[-1][0] == "end" and events[-1][1]["state"] == "done"
        assert events[-1][1]["frames_done"] == events[-1][1]["num_frames"] == 4
        assert events[-1][1]["fps"] > 0
        got = [results(client, wait_job(client, first))]
        got += run_jobs(client, clips)[1:]
    assert not differences(got, reference)
    assert len(workers_of(ray_server.db)) == 2  # both nodes ran jobs and shipped results back


def test_cancelling_remote_jobs(ray_server: ServerProcess, clips: dict[str, Path]) -> None:
    with ray_server.client() as client:
        running = [submit(client, clips["double"], {"boxes": JOBS[0][1]["boxes"]}) for _ in "ab"]
        for job_id in running:  # one on each node's actor; progress flows back from each
            assert wait_progress(client, job_id, 1)["fps"] > 0
        cancelled_at = time.monotonic()
        for job_id in running:
            assert client.delete(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
        after = submit(client, clips["short"], {"boxes": JOBS[0][1]["boxes"]})
        done = wait_job(client, after)  # an actor was free again: the cancelled jobs stopped
        assert done["state"] == "done" and done["attempts"] == 1
        assert time.monotonic() - cancelled_at < 60
        for job_id in running:
            job = client.get(f"/api/jobs/{job_id}").json()
            assert job["state"] == "cancelled" and job["frames_done"] < 24, job
            assert not (ray_server.data_dir / "jobs" / job_id).exists()
            assert [e for e, _, _ in job_events(ray_server.db, job_id)] == [
                "queued", "claimed", "cancelled",
            ]  # fmt: skip


def test_a_job_that_kills_its_actor_fails_after_max_attempts(
    cluster: LocalRayCluster,
    tmp_path: Path,
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dispatcher in this process, with a factory whose actors die when asked for a model:
    the job is re-queued once, then fails with the reason; the next job meets a new actor."""
    for name, value in cluster.env.items():
        if name.startswith("RAY_"):
            monkeypatch.setenv(name, value)
    ray = RaySettings(cluster.address, cpus_per_job=0, max_jobs_per_node=1, max_attempts=2)
    settings = ServiceSettings(data_dir=tmp_path, ray=ray)  # no CPU reserved: beside ray_server
    store = Store(settings.db_path)
    clip = clips["short"]
    video = VideoRecord(new_id(), clip.name, str(clip), False, 4, 960, 540, 10.0, 1, time.time())
    params = parse_job_params({"boxes": JOBS[0][1]["boxes"]}).to_dict()
    job = store.add_job(params, video=video, new_video=True, max_queued=10)
    pool = RayPool(settings, crashing_factory, store)
    pool.start()
    try:
        deadline = time.monotonic() + 120
        while store.get_job(job.id).state != "failed" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        pool.stop()
    failed = store.get_job(job.id)
    assert failed.state == "failed" and failed.attempts == 2
    assert failed.error.startswith("its Ray actor died 2 times; last: its Ray actor died (")
    assert "\n" not in failed.error
    assert [e for e, _, _ in job_events(settings.db_path, job.id)] == [
        "queued", "claimed", "requeued", "claimed", "failed",
    ]  # fmt: skip
    assert not (tmp_path / "jobs" / job.id).exists()


def test_losing_the_second_node_mid_job_does_every_job_once(
    ray_server: ServerProcess,
    cluster: LocalRayCluster,
    reference: list[dict[str, bytes]],
    clips: dict[str, Path],
) -> None:
    raylet = cluster.raylet(1)
    with ray_server.client() as client:
        ids = [submit(client, clips[clip], fields) for clip, fields in JOBS]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # both actors mid-job: the second node's included
            jobs = [client.get(f"/api/jobs/{job_id}").json() for job_id in ids]
            if sum(j["state"] == "running" and j["frames_done"] >= 1 for j in jobs) == 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the two actors were never busy at once: {jobs}")
        actors = [p for p, (parent, cmd) in processes().items() if parent == raylet]
        os.kill(raylet, signal.SIGKILL)  # the node is lost: its raylet, then its workers
        for pid in actors:
            os.kill(pid, signal.SIGKILL)
        done = [wait_job(client, job_id) for job_id in ids]
        got = [results(client, job) for job in done]
    assert not differences(got, reference)
    histories = [job_events(ray_server.db, job_id) for job_id in ids]
    assert all([e for e, _, _ in h].count("done") == 1 for h in histories), histories
    lost = [h for h in histories if any(e == "requeued" for e, _, _ in h)]
    assert len(lost) == 1, histories  # the second node's job, run again on the head
    assert [(e, a) for e, a, _ in lost[0]] == [
        ("queued", 0), ("claimed", 1), ("requeued", 1), ("claimed", 2), ("done", 2),
    ]  # fmt: skip
    assert lost[0][2][2].startswith("its Ray actor died")
    for job_id in ids:  # only the final attempt's files remain
        folders = sorted(p.name for p in (ray_server.data_dir / "jobs" / job_id).iterdir())
        assert len(folders) == 1


def test_ray_address_local_needs_no_cluster(
    tmp_path: Path,
    tiny_checkpoint: Path,
    reference: list[dict[str, bytes]],
    clips: dict[str, Path],
) -> None:
    extra = ("--ray-address", "local", "--max-jobs-per-node", "1", *ONE_THREAD)
    server = ServerProcess(tmp_path, tiny_checkpoint, *extra)
    server.env["RAY_ADDRESS"] = "127.0.0.1:1"  # never joined: local starts its own instance
    server.env |= SAME_GEMMS
    server.start()
    try:
        with server.client() as client:
            got = results(client, wait_job(client, submit(client, clips["short"], JOBS[0][1])))
            fields = {k: v for k, v in JOBS[2][1].items() if k != "samurai_mode"}
            plain = wait_job(client, submit(client, clips["short"], {**fields, "tracker": "sam2"}))
            assert plain["params"]["tracker"] == "sam2"
            got_plain = results(client, plain)
    finally:
        server.stop()
    assert not differences([got, got_plain], [reference[0], reference[2]])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--ray-address", "127.0.0.1:1"],
            "cannot connect to Ray at 127.0.0.1:1: Connection refused",
        ),
        (["--gpus-per-job", "1"], "--gpus-per-job needs --ray-address"),
        (["--ray-address", "local", "--max-jobs-per-node", "0"], "--max-jobs-per-node must be"),
    ],
)
def test_bad_ray_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    command = [sys.executable, "-m", "samurai.cli", "serve", "--port", str(free_port())]
    command += ["--data-dir", str(tmp_path), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"samurai: error: {message}"), proc.stderr
    assert proc.stderr.count("\n") == 1
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{command[5]}/healthz", timeout=1)


def test_stop_and_restart_requeue_the_running_job(
    ray_server: ServerProcess, clips: dict[str, Path]
) -> None:
    """Ctrl-C stops the remote job and puts it back in the queue; the restarted server (now on
    the head node alone) does it."""
    with ray_server.client() as client:
        job_id = submit(client, clips["double"], {"boxes": JOBS[0][1]["boxes"]})
        wait_progress(client, job_id, 1)
    ray_server.stop()
    events = job_events(ray_server.db, job_id)
    assert [e for e, _, _ in events] == ["queued", "claimed", "requeued"]
    assert events[-1][2] == "server shutdown"
    assert not (ray_server.data_dir / "jobs" / job_id / "1").exists()
    ray_server.workers = 1  # the second node was lost in the test before
    ray_server.start()
    with ray_server.client() as client:
        done = wait_job(client, job_id)
    assert done["state"] == "done" and done["attempts"] == 2 and done["num_frames"] == 24


def actor_pids(raylet: int) -> set[int]:
    return {
        pid
        for pid, (parent, cmd) in processes().items()
        if parent == raylet and cmd.startswith("ray::ServiceActor")
    }


def test_an_actor_lost_while_idle_is_replaced_before_it_gets_a_job(
    ray_server: ServerProcess, cluster: LocalRayCluster, clips: dict[str, Path]
) -> None:
    raylet = cluster.raylet(0)
    (old,) = actor_pids(raylet)  # the restarted server's one actor, on the head
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 120
    with ray_server.client() as client:
        while time.monotonic() < deadline:
            alive = client.get("/healthz").json()["workers_alive"]
            if alive == 1 and actor_pids(raylet) - {old}:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the lost actor was not replaced")
        done = wait_job(client, submit(client, clips["short"], JOBS[0][1]))
    assert done["state"] == "done" and done["attempts"] == 1
