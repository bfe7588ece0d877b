"""``samurai batch`` on Ray: a local instance (``--ray-address local``) and a real two-node
cluster on this machine (``ray start --head`` plus ``ray start --address`` with its own temp
folder and a custom resource). Results must equal the local worker pool's byte for byte,
also when the second node is lost (its raylet and busy worker SIGKILLed) in the middle of a
job; a task that kills its worker every time fails after a bounded number of attempts, with
the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.helpers import CLI, SIZE, LocalRayCluster, journal, processes, run_cli, tree

pytest.importorskip("ray")

from samurai.batch.executor import RayExecutor, WorkerFactory, WorkerLost

ONE_THREAD = ["--workers", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    started = LocalRayCluster()
    started.env["PYTHONPATH"] = str(Path(__file__).parents[1])  # tests/: batch.helpers
    try:
        yield started.start()
    finally:
        started.stop()


def batch_args(videos: Path, out: Path, checkpoint: Path, address: str) -> list[str | Path]:
    args = ["batch", videos / "manifest.jsonl", "--out", out, "--checkpoint", checkpoint, *SIZE]
    return [*args, *ONE_THREAD, "--ray-address", address]


def test_ray_address_local_needs_no_cluster(
    pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    proc = run_cli(*batch_args(videos, tmp_path, seeded_checkpoint, "local"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 done, 0 failed" in proc.stdout
    assert tree(tmp_path) == tree(reference)


def repeated_manifest(videos: Path, folder: Path, copies: int) -> Path:
    """The test manifest ``copies`` times over, job ids ``<id>-<k>`` (absolute video paths)."""
    lines = []
    for k in range(copies):
        for line in (videos / "manifest.jsonl").read_text().splitlines():
            job = json.loads(line)
            job["id"] = f"{job.get('id', Path(job['video']).stem)}-{k}"
            job["video"] = str(videos / job["video"])
            lines.append(json.dumps(job) + "\n")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(lines))
    return manifest


def test_two_nodes_give_the_local_files(
    cluster: LocalRayCluster, pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    # enough jobs that the worker that starts first cannot do them all before the other is up
    copies = 4
    args = batch_args(videos, tmp_path / "out", seeded_checkpoint, cluster.address)
    args[1] = repeated_manifest(videos, tmp_path, copies)
    proc = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=300, env=cluster.env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("a", "b", "frames_c"):
        for k in range(copies):
            assert tree(tmp_path / "out" / f"{job}-{k}") == tree(reference / job), (job, k)
    nodes = {record["node"] for record in journal(tmp_path / "out")[1:]}
    assert len(nodes) == 2  # one worker per node: both nodes tracked and shipped results back


class CrashOn:
    """A worker whose process exits (a real actor death) on the task ``"crash"``."""

    def ready(self) -> str:
        return "ready"

    def run(self, task: object) -> object:
        if task == "crash":
            os._exit(1)
        return task


def test_a_task_that_kills_its_worker_fails_after_max_attempts(
    cluster: LocalRayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cluster.env.items():
        if name.startswith("RAY_"):
            monkeypatch.setenv(name, value)
    executor = RayExecutor(
        WorkerFactory(CrashOn), address=cluster.address, workers=2, cpus=1, max_attempts=2
    )
    with executor:
        outcomes = dict(executor.run(["a", "crash", "b", "c"]))
    assert [outcomes[0], outcomes[2], outcomes[3]] == ["a", "b", "c"]
    assert isinstance(outcomes[1], WorkerLost)
    assert "died 2 time(s)" in str(outcomes[1]) and "\n" not in str(outcomes[1])


def test_killing_the_second_nodes_raylet_mid_job_still_does_every_job_once(
    cluster: LocalRayCluster, pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    raylet = cluster.raylet(1)
    args = batch_args(videos, tmp_path, seeded_checkpoint, cluster.address)
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    killed = False
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        table = processes()  # a worker of the second node in the middle of a job
        busy = [
            pid
            for pid, (parent, cmd) in table.items()
            if parent == raylet and cmd.startswith("ray::BatchWorker.run")
        ]
        if busy:  # the node is lost: its raylet, then the worker (which could still finish)
            os.kill(raylet, signal.SIGKILL)
            os.kill(busy[0], signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed, "no job ran on the second node"
    assert proc.returncode == 0, stderr[-3000:]
    assert "3 done, 0 failed" in stdout
    records = journal(tmp_path)[1:]
    assert sorted(r["job"] for r in records) == ["a", "b", "frames_c"]  # each exactly once
    assert all(r["status"] == "done" for r in records)
    assert tree(tmp_path) == tree(reference)
    assert "a worker died running task" in stderr


def test_an_unreachable_cluster_is_one_line(tmp_path: Path, videos: Path) -> None:
    args = ["batch", videos / "manifest.jsonl", "--out", tmp_path, "--random-weights", "-q"]
    proc = run_cli(*args, "--ray-address", "127.0.0.1:1", timeout=60)
    assert proc.returncode == 2
    assert (
        proc.stderr == "samurai: error: cannot connect to Ray at 127.0.0.1:1: Connection refused\n"
    )
