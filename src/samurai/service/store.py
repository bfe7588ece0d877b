"""SQLite job store of the tracking service: one file in WAL mode, shared by the server and workers.

Every process (the API server and each worker) opens its own `Store` on the same file. A job
moves ``queued -> running -> done | failed | cancelled``. Workers claim jobs atomically
(``UPDATE ... WHERE state = 'queued'``), and each claim increments ``attempts``; every later
write of that worker names the attempt it holds (``WHERE state = 'running' AND attempts = ?``),
so a worker that lost its job (cancelled, or re-queued after a restart and claimed again) can
neither report progress nor complete it. That is how no job runs twice to completion.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})
TERMINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    path TEXT NOT NULL,
    owned INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    fps REAL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    video_id TEXT NOT NULL,
    params TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    num_frames INTEGER,
    fps REAL,
    error TEXT,
    outputs TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS service_health (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    detail TEXT
);
"""


class QueueFullError(RuntimeError):
    """The bounded queue holds its maximum number of waiting jobs."""


@dataclass(frozen=True)
class VideoRecord:
    """One stored video. ``owned`` videos live in the data dir; the others under an allowed root.

    Attributes:
        id: 32 hex digits.
        filename: the client's file name or the server-side path's name (display only).
        path: absolute path of the file.
        owned: True when the service copied the file into its data dir (deleted with the video).
        frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frames per second, None where unknown.
        size: file size in bytes.
        created: UNIX time.
    """

    id: str
    filename: str
    path: str
    owned: bool
    frames: int
    width: int
    height: int
    fps: float | None
    size: int
    created: float


@dataclass(frozen=True)
class JobRecord:
    """One job row.

    Attributes:
        id: 32 hex digits.
        state: queued, running, done, failed or cancelled.
        video_id: the video it tracks.
        params: validated request parameters (`samurai.service.schemas.JobParams` as a dict).
        progress: fraction of frames done, 0..1.
        frames_done: frames processed by the current attempt.
        num_frames: frames the job will process, once known.
        fps: processing speed of the current attempt, frames per second.
        error: one-line failure message (state failed).
        outputs: result kind -> path relative to the data dir (state done).
        attempts: how many times a worker claimed the job.
        worker: name of the worker holding or last holding it.
        created: UNIX time.
        updated: UNIX time of the last change.
        lease_until: UNIX time until which the holder's lease runs (state running); the holder
            renews it while it works, and the job goes back to the queue once it lapses.
    """

    id: str
    state: str
    video_id: str
    params: dict[str, Any]
    progress: float
    frames_done: int
    num_frames: int | None
    fps: float | None
    error: str | None
    outputs: dict[str, Any] | None
    attempts: int
    worker: str | None
    created: float
    updated: float
    lease_until: float | None = None


def new_id() -> str:
    """A fresh random id: 32 lowercase hex digits (safe in paths and URLs)."""
    return uuid.uuid4().hex


def is_valid_id(value: str) -> bool:
    """Whether ``value`` has the shape of `new_id` (rejects traversal and odd characters)."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _video(row: sqlite3.Row) -> VideoRecord:
    return VideoRecord(**{**dict(row), "owned": bool(row["owned"])})


def _job(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["params"] = json.loads(values["params"])
    values["outputs"] = json.loads(values["outputs"]) if values["outputs"] else None
    return JobRecord(**values)


class Store:
    """Jobs and videos in one SQLite file; safe to use from several threads and processes.

    Each thread gets its own connection. Writes that read first run in ``BEGIN IMMEDIATE``
    transactions, so two workers can never claim the same job.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connection()
        db.executescript(_SCHEMA)  # commits on its own: no BEGIN around it
        columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        if "lease_until" not in columns:  # a database of an earlier version
            db.execute("ALTER TABLE jobs ADD COLUMN lease_until REAL")

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed statement may have ended it
                    db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # a connection opened while the file was read-only stays read-only: open a new one
            # next time, so the store recovers once the file is writable again
            if not isinstance(exc, sqlite3.IntegrityError):
                self.close()
            raise

    def close(self) -> None:
        """Close this thread's connection (other threads close theirs when they end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def check_writable(self) -> str | None:
        """Write one row (as a job would); None when it worked, else the one-line reason.

        A failure is retried once on a new connection: this thread's connection may date from
        a moment the file was read-only.
        """
        for attempt in range(2):
            try:
                with self._transaction() as db:
                    db.execute(
                        "INSERT OR REPLACE INTO service_health VALUES (1, ?)", (time.time(),)
                    )
            except sqlite3.Error as exc:
                self.close()
                if attempt == 1:
                    return f"the job database {self.path} cannot be written: {exc}"
            else:
                return None
        return None

    # videos

    def add_video(self, video: VideoRecord) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO videos VALUES (:id, :filename, :path, :owned, :frames, :width, "
                ":height, :fps, :size, :created)",
                video.__dict__,
            )

    def get_video(self, video_id: str) -> VideoRecord | None:
        row = self._connection().execute("SELECT * FROM videos WHERE id = ?", (video_id,))
        found = row.fetchone()
        return _video(found) if found else None

    def list_videos(self) -> list[VideoRecord]:
        rows = self._connection().execute("SELECT * FROM videos ORDER BY created DESC")
        return [_video(row) for row in rows]

    def delete_video(self, video_id: str) -> bool:
        """Remove a video that no queued or running job uses; False when one does."""
        with self._transaction() as db:
            busy = db.execute(
                "SELECT 1 FROM jobs WHERE video_id = ? AND state IN ('queued', 'running')",
                (video_id,),
            ).fetchone()
            if busy:
                return False
            db.execute("DELETE FROM videos WHERE id = ?", (video_id,))
        return True

    # jobs: the API side

    def add_job(
        self,
        params: dict[str, Any],
        *,
        video: VideoRecord,
        new_video: bool,
        max_queued: int,
    ) -> JobRecord:
        """Queue a job (and store its video when ``new_video``) in one transaction.

        Raises:
            QueueFullError: ``max_queued`` jobs are already waiting.
        """
        now = time.time()
        job_id = new_id()
        with self._transaction() as db:
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()
            if queued >= max_queued:
                raise QueueFullError(f"the queue is full ({queued} jobs waiting)")
            if new_video:
                db.execute(
                    "INSERT INTO videos VALUES (:id, :filename, :path, :owned, :frames, :width, "
                    ":height, :fps, :size, :created)",
                    video.__dict__,
                )
            db.execute(
                "INSERT INTO jobs (id, state, video_id, params, created, updated) "
                "VALUES (?, 'queued', ?, ?, ?, ?)",
                (job_id, video.id, json.dumps(params), now, now),
            )
            self._event(db, job_id, "queued", 0)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._connection().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def list_jobs(self, *, limit: int = 200) -> list[JobRecord]:
        rows = self._connection().execute(
            "SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)
        )
        return [_job(row) for row in rows]

    def count_jobs(self) -> dict[str, int]:
        rows = self._connection().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {state: count for state, count in rows}

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job; returns the state it had (None: unknown job)."""
        with self._transaction() as db:
            row = db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["state"] in ACTIVE_STATES:
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', updated = ? WHERE id = ?",
                    (time.time(), job_id),
                )
                self._event(db, job_id, "cancelled", row["attempts"])
            return str(row["state"])

    def delete_job(self, job_id: str) -> bool:
        """Remove a finished (done, failed or cancelled) job's row; False otherwise."""
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM jobs WHERE id = ? AND state IN ('done', 'failed', 'cancelled')",
                (job_id,),
            ).rowcount
            if deleted:
                db.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
        return bool(deleted)

    def requeue_running(self) -> list[str]:
        """At server start: put every job left ``running`` by a dead server back in the queue."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, attempts FROM jobs WHERE state = 'running'").fetchall()
            for row in rows:
                self._requeue(db, row["id"], row["attempts"], "server restart")
        return [row["id"] for row in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history: ``{"time", "event", "attempt", "detail"}`` in order."""
        rows = self._connection().execute(
            "SELECT time, event, attempt, detail FROM job_events WHERE job_id = ? ORDER BY rowid",
            (job_id,),
        )
        return [dict(row) for row in rows]

    # jobs: the worker side

    def claim_next(self, worker: str, *, lease_s: float = 60.0) -> JobRecord | None:
        """Atomically take the oldest queued job for ``worker`` with a lease of ``lease_s``
        seconds (renew it with `renew_lease`); None when the queue is empty."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, "
                "progress = 0, frames_done = 0, fps = NULL, error = NULL, updated = ?, "
                "lease_until = ? WHERE id = ? AND state = 'queued'",
                (worker, now, now + lease_s, row["id"]),
            )
            job = _job(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
            self._event(db, job.id, "claimed", job.attempts, worker)
        return job

    def renew_lease(self, job_id: str, attempt: int, lease_s: float) -> bool:
        """Extend the holder's lease (its heartbeat); False when the attempt lost the job."""
        with self._transaction() as db:
            renewed = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND state = 'running' "
                "AND attempts = ?",
                (time.time() + lease_s, job_id, attempt),
            ).rowcount
        return renewed == 1

    def requeue_expired(self) -> list[str]:
        """Put running jobs whose lease lapsed back in the queue: their holder is gone or hung
        (a remote executor that vanished, a frozen process)."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, attempts, worker FROM jobs WHERE state = 'running' "
                "AND lease_until IS NOT NULL AND lease_until < ?",
                (time.time(),),
            ).fetchall()
            for row in rows:
                reason = f"lease expired: {row['worker']} stopped renewing it"
                self._requeue(db, row["id"], row["attempts"], reason)
        return [row["id"] for row in rows]

    def report_progress(
        self, job_id: str, attempt: int, *, frames_done: int, num_frames: int | None, fps: float
    ) -> bool:
        """Record progress; False when the attempt no longer holds the job (stop working)."""
        progress = min(1.0, frames_done / num_frames) if num_frames else 0.0
        cursor = self._connection().execute(
            "UPDATE jobs SET frames_done = ?, num_frames = ?, fps = ?, progress = ?, updated = ? "
            "WHERE id = ? AND state = 'running' AND attempts = ?",
            (frames_done, num_frames, fps, progress, time.time(), job_id, attempt),
        )
        return cursor.rowcount == 1

    def holds(self, job_id: str, attempt: int) -> bool:
        """Whether ``attempt`` still holds the running job."""
        row = (
            self._connection()
            .execute(
                "SELECT 1 FROM jobs WHERE id = ? AND state = 'running' AND attempts = ?",
                (job_id, attempt),
            )
            .fetchone()
        )
        return row is not None

    def complete(self, job_id: str, attempt: int, *, outputs: dict[str, Any]) -> bool:
        """Mark the job done; False (and nothing written) when the attempt lost the job."""
        with self._transaction() as db:
            done = db.execute(
                "UPDATE jobs SET state = 'done', progress = 1, outputs = ?, updated = ? "
                "WHERE id = ? AND state = 'running' AND attempts = ?",
                (json.dumps(outputs), time.time(), job_id, attempt),
            ).rowcount
            if done:
                self._event(db, job_id, "done", attempt)
        return bool(done)

    def fail(self, job_id: str, attempt: int, error: str) -> bool:
        """Mark the job failed with a one-line ``error``; False when the attempt lost the job."""
        with self._transaction() as db:
            failed = db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, updated = ? "
                "WHERE id = ? AND state = 'running' AND attempts = ?",
                (error, time.time(), job_id, attempt),
            ).rowcount
            if failed:
                self._event(db, job_id, "failed", attempt, error)
        return bool(failed)

    def release(self, job_id: str, attempt: int, reason: str) -> bool:
        """Give a running job back to the queue (server shutdown, a worker that died)."""
        with self._transaction() as db:
            return self._requeue(db, job_id, attempt, reason)

    def count_requeues(self, job_id: str, reason_prefix: str) -> int:
        """How often the job went back to the queue for a reason starting with ``reason_prefix``."""
        (count,) = (
            self._connection()
            .execute(
                "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND event = 'requeued' "
                "AND substr(detail, 1, ?) = ?",
                (job_id, len(reason_prefix), reason_prefix),
            )
            .fetchone()
        )
        return int(count)

    def running_on(self, worker: str) -> list[JobRecord]:
        """Jobs ``worker`` holds (the pool asks when a worker process died)."""
        rows = self._connection().execute(
            "SELECT * FROM jobs WHERE state = 'running' AND worker = ?", (worker,)
        )
        return [_job(row) for row in rows]

    @staticmethod
    def _requeue(db: sqlite3.Connection, job_id: str, attempt: int, reason: str) -> bool:
        requeued = db.execute(
            "UPDATE jobs SET state = 'queued', progress = 0, frames_done = 0, fps = NULL, "
            "updated = ? WHERE id = ? AND state = 'running' AND attempts = ?",
            (time.time(), job_id, attempt),
        ).rowcount
        if requeued:
            Store._event(db, job_id, "requeued", attempt, reason)
        return bool(requeued)

    @staticmethod
    def _event(
        db: sqlite3.Connection, job_id: str, event: str, attempt: int, detail: str | None = None
    ) -> None:
        db.execute(
            "INSERT INTO job_events VALUES (?, ?, ?, ?, ?)",
            (job_id, time.time(), event, attempt, detail),
        )
