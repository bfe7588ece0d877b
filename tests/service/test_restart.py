"""Crash recovery: SIGKILL the server mid-job, start it again on the same database and data dir;
every job completes exactly once and none is lost."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from service.helpers import ServerProcess, wait_job, wait_progress

pytestmark = pytest.mark.xdist_group("service")

BOX = json.dumps([[300, 100, 200, 250]])


def job_events(db: Path, job_id: str) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT event, attempt FROM job_events WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [(event, attempt) for event, attempt in rows]


def test_kill_mid_job_and_restart(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    server = ServerProcess(tmp_path, tiny_checkpoint)
    server.start()
    try:
        with server.client() as client:
            running = []
            for clip, extra in (
                (clips["long"], {"max_frames": "6"}),
                (clips["short"], {"max_frames": "2"}),
            ):
                with open(clip, "rb") as f:
                    response = client.post(
                        "/api/jobs", files={"video": (clip.name, f)}, data={"boxes": BOX, **extra}
                    )
                assert response.status_code == 201, response.text
                running.append(response.json()["id"])
            first, second = running
            wait_progress(client, first, 1)
            assert client.get(f"/api/jobs/{second}").json()["state"] == "queued"
        workers = server.descendants()
        assert workers, "the server has no worker processes"
        server.kill()
        _, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"workers outlived the killed server: {alive}"
        with sqlite3.connect(server.db) as conn:
            state = conn.execute("SELECT state FROM jobs WHERE id = ?", (first,)).fetchone()[0]
        assert state == "running"  # what the crash left behind

        server.start()
        with server.client() as client:
            done = [wait_job(client, job_id) for job_id in (first, second)]
            assert [job["state"] for job in done] == ["done", "done"], done
            assert done[0]["attempts"] == 2 and done[1]["attempts"] == 1
            assert done[0]["num_frames"] == 6 and done[1]["num_frames"] == 2
            boxes = client.get(done[0]["results"]["boxes"]).text.strip().splitlines()
            assert len(boxes) == 6
            assert client.get(done[0]["results"]["overlay"]).status_code == 200
    finally:
        server.stop()
    assert job_events(server.db, first) == [
        ("queued", 0), ("claimed", 1), ("requeued", 1), ("claimed", 2), ("done", 2),
    ]  # fmt: skip
    assert job_events(server.db, second) == [("queued", 0), ("claimed", 1), ("done", 1)]
    attempts = sorted(p.name for p in (server.data_dir / "jobs" / first).iterdir())
    assert attempts == ["2"]  # the killed attempt's partial files are gone


def test_graceful_stop_requeues_the_running_job(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    """Ctrl-C stops the workers; the interrupted job waits in the queue for the next start."""
    server = ServerProcess(tmp_path, tiny_checkpoint)
    server.start()
    with server.client() as client, open(clips["long"], "rb") as f:
        job_id = client.post(
            "/api/jobs", files={"video": ("long.mp4", f)}, data={"boxes": BOX}
        ).json()["id"]
        wait_progress(client, job_id, 1)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 30
    assert "Traceback" not in server.log.read_text()
    with sqlite3.connect(server.db) as conn:
        state = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    assert state == "queued"
    assert job_events(server.db, job_id)[-1] == ("requeued", 1)


def test_worker_crash_requeues_job_and_is_replaced(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    """SIGKILL a worker mid-job: the server stays up, starts a new worker, and the job is run
    again by it and completes once."""
    server = ServerProcess(tmp_path, tiny_checkpoint)
    server.start()
    try:
        with server.client() as client, open(clips["long"], "rb") as f:
            job_id = client.post(
                "/api/jobs",
                files={"video": ("long.mp4", f)},
                data={"boxes": BOX, "max_frames": "3"},
            ).json()["id"]
            wait_progress(client, job_id, 1)
            workers = [
                p for p in server.descendants() if "resource_tracker" not in " ".join(p.cmdline())
            ]
            assert len(workers) == 1
            workers[0].kill()
            assert client.get("/healthz").json()["status"] == "ok"
            job = wait_job(client, job_id)
            assert job["state"] == "done" and job["attempts"] == 2, job
            assert client.get("/healthz").json()["workers_alive"] == 1
    finally:
        server.stop()
    events = job_events(server.db, job_id)
    assert [e for e, _ in events] == ["queued", "claimed", "requeued", "claimed", "done"]
    assert "died (exit code -9)" in server.log.read_text()


def test_frozen_worker_loses_its_job_by_lease(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    """SIGSTOP the worker holding a job: alive but silent, its lease lapses, the other worker
    runs the job; after SIGCONT the frozen one finds it lost the job and stops quietly."""
    server = ServerProcess(tmp_path, tiny_checkpoint, "--job-lease", "2", workers=2)
    server.start()
    frozen = None
    try:
        with server.client() as client, open(clips["long"], "rb") as f:
            job_id = client.post(
                "/api/jobs",
                files={"video": ("long.mp4", f)},
                data={"boxes": BOX, "max_frames": "6"},
            ).json()["id"]
            wait_progress(client, job_id, 1)
            with sqlite3.connect(server.db) as conn:
                (holder,) = conn.execute(
                    "SELECT worker FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
            pids = dict(re.findall(r"started (\S+) \(pid (\d+)\)", server.log.read_text()))
            frozen = psutil.Process(int(pids[holder]))
            frozen.suspend()  # SIGSTOP
            job = wait_job(client, job_id)
            assert job["state"] == "done" and job["attempts"] == 2, job
            frozen.resume()  # SIGCONT
            folder = server.data_dir / "jobs" / job_id
            for _ in range(100):
                if sorted(p.name for p in folder.iterdir()) == ["2"]:
                    break
                time.sleep(0.1)
            assert sorted(p.name for p in folder.iterdir()) == ["2"]
            assert client.get(f"/api/jobs/{job_id}").json()["state"] == "done"
    finally:
        if frozen is not None and frozen.is_running():
            frozen.resume()
        server.stop()
    events = job_events(server.db, job_id)
    assert [e for e, _ in events] == ["queued", "claimed", "requeued", "claimed", "done"], events
    assert "Traceback" not in server.log.read_text()
