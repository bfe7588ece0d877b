"""Ownership and database faults against real servers: a second server on the same data folder
is refused before it touches a job; a damaged database is refused and left untouched; a database
that turns read-only at run time gives 503s and a failing health check, and the service recovers
when it is writable again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from samurai.service.store import Store, VideoRecord, new_id
from service.helpers import ServerProcess, free_port, wait_job, wait_progress

pytestmark = pytest.mark.xdist_group("service")

BOX = json.dumps([[300, 100, 200, 250]])


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAMURAI_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "samurai.cli", "serve", "--port", str(free_port()), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def events(db: Path, job_id: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT event FROM job_events WHERE job_id = ? ORDER BY rowid", (job_id,)
        )
        return [row[0] for row in rows]


def test_second_server_is_refused_before_touching_jobs(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    server = ServerProcess(tmp_path, tiny_checkpoint)
    server.start()
    try:
        with server.client() as client, open(clips["long"], "rb") as f:
            created = client.post(
                "/api/jobs", files={"video": ("long.mp4", f)}, data={"boxes": BOX}
            )
            job_id = created.json()["id"]
            wait_progress(client, job_id, 1)
            assert server.proc is not None
            same = ("--data-dir", str(server.data_dir), "--db", str(server.db))
            # the same folders, on the live server's own port (it could not bind) or another
            for extra in (("--port", str(server.port)), ()):
                line = one_line_error(serve(tmp_path, *same, *extra), "in use by another")
                assert f"pid {server.proc.pid}" in line
            # only the database in common
            line = one_line_error(
                serve(tmp_path, "--data-dir", str(tmp_path / "other"), "--db", str(server.db)),
                "in use by another",
            )
            job = client.get(f"/api/jobs/{job_id}").json()
            assert job["state"] == "running" and job["attempts"] == 1, job
            assert events(server.db, job_id) == ["queued", "claimed"]  # not re-queued
            assert client.delete(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
    finally:
        server.stop()
    assert events(server.db, job_id) == ["queued", "claimed", "cancelled"]
    server.start()  # the lock went with the first server
    server.stop()


def make_database(path: Path, jobs: int = 200) -> None:
    store = Store(path)
    video = VideoRecord(new_id(), "a.mp4", "/x/a.mp4", True, 4, 64, 48, 10.0, 123, 0.0)
    store.add_video(video)
    for _ in range(jobs):
        store.add_job({"boxes": [[1, 2, 3, 4]] * 20}, video=video, new_video=False, max_queued=999)
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i``: not even root can write (skipped where the file system lacks it)."""
    done = []
    try:
        for path in paths:
            result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if result.returncode != 0:
                pytest.skip(f"chattr +i unavailable here: {result.stderr.decode().strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder", "not-samurai", "read-only"])
def test_damaged_database_is_refused_and_left_untouched(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "jobs.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database\n" * 400)
    elif damage == "folder":
        db.mkdir()
    elif damage == "not-samurai":
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE accounts (name TEXT)")
    else:
        make_database(db)
        if damage == "truncated":
            size = db.stat().st_size
            with open(db, "r+b") as f:
                f.truncate(size // 2)
    before = digest(db)
    args = ("--data-dir", str(tmp_path / "data"), "--db", str(db))
    if damage == "read-only":
        with immutable(db):
            line = one_line_error(serve(tmp_path, *args), str(db), "cannot be written")
    else:
        line = one_line_error(serve(tmp_path, *args), str(db))
    assert digest(db) == before, "the damaged database was modified"
    if damage in ("garbage", "truncated"):
        assert "untouched" in line


def test_database_turning_read_only_at_run_time(
    tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]
) -> None:
    server = ServerProcess(tmp_path, tiny_checkpoint)
    server.start()
    files = {"video": ("short.mp4", clips["short"].read_bytes(), "video/mp4")}
    try:
        with server.client() as client:
            assert client.get("/healthz").json()["writable"] is True
            wal = server.db.with_name(server.db.name + "-wal")
            with immutable(server.db, wal):
                for _ in range(3):  # every thread's connection, not just the first
                    refused = client.post("/api/jobs", files=files, data={"boxes": BOX})
                    assert refused.status_code == 503, refused.text
                    assert "database" in refused.json()["detail"]
                health = client.get("/healthz")
                assert health.status_code == 503
                assert (
                    health.json()["writable"] is False and str(server.db) in health.json()["reason"]
                )
                assert client.get("/api/jobs").status_code in (200, 503)
                assert not list((server.data_dir / "videos").iterdir())  # nothing half-stored
            health = client.get("/healthz")
            assert health.status_code == 200, health.text
            created = client.post("/api/jobs", files=files, data={"boxes": BOX, "max_frames": "2"})
            assert created.status_code == 201, created.text
            assert wait_job(client, created.json()["id"])["state"] == "done"
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown(tmp_path: Path, tiny_checkpoint: Path, sig: int) -> None:
    """SIGTERM (systemd, docker stop) or Ctrl-C: no leaked semaphores, no traceback."""
    server = ServerProcess(tmp_path, tiny_checkpoint, workers=2)
    server.start()
    assert server.proc is not None
    workers = server.descendants()
    server.proc.send_signal(sig)
    server.proc.wait(60)
    assert not psutil.wait_procs(workers, timeout=20)[1], "workers outlived the server"
    log = server.log.read_text()
    assert "leaked semaphore" not in log and "Traceback" not in log, log
    assert server.proc.returncode in (0, -signal.SIGTERM), server.proc.returncode


def test_full_data_folder(tmp_path: Path, tiny_checkpoint: Path, clips: dict[str, Path]) -> None:
    """The data folder on a small tmpfs, filled up while the server runs: uploads get 503 and
    leave nothing behind, the health check says why; freeing space recovers the service."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    server = ServerProcess(tmp_path, tiny_checkpoint)
    files = {"video": ("short.mp4", clips["short"].read_bytes(), "video/mp4")}
    try:
        server.start()
        filler = data / "filler"
        with open(filler, "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
        with server.client() as client:
            refused = client.post("/api/jobs", files=files, data={"boxes": BOX})
            assert refused.status_code == 503, refused.text
            assert "No space left" in refused.json()["detail"]
            health = client.get("/healthz")
            assert health.status_code == 503 and "data folder" in health.json()["reason"]
            assert not list((data / "tmp").iterdir()) and not list((data / "videos").iterdir())
            filler.unlink()
            assert client.get("/healthz").status_code == 200
            created = client.post("/api/jobs", files=files, data={"boxes": BOX, "max_frames": "2"})
            assert created.status_code == 201, created.text
            assert wait_job(client, created.json()["id"])["state"] == "done"
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)
    assert "Traceback" not in server.log.read_text()
