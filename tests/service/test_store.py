"""SQLite job store: WAL file, atomic claims, attempt tokens, re-queue on restart, bounded queue."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from samurai.service.store import QueueFullError, Store, VideoRecord, is_valid_id, new_id

PARAMS = {"model": "sam2.1_hiera_t", "boxes": [[1.0, 2.0, 3.0, 4.0]]}


def video() -> VideoRecord:
    return VideoRecord(new_id(), "a.mp4", "/x/a.mp4", True, 4, 64, 48, 10.0, 123, time.time())


def queue(store: Store, count: int = 1, *, max_queued: int = 100) -> list[str]:
    ids = []
    for _ in range(count):
        ids.append(store.add_job(PARAMS, video=video(), new_video=True, max_queued=max_queued).id)
    return ids


def test_wal_file_and_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    mode = sqlite3.connect(tmp_path / "jobs.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    (job_id,) = queue(store)
    job = store.get_job(job_id)
    assert job is not None and job.state == "queued" and job.params == PARAMS
    assert job.attempts == 0 and job.outputs is None
    assert store.get_video(job.video_id) is not None
    assert [j.id for j in store.list_jobs()] == [job_id]
    assert store.count_jobs() == {"queued": 1}
    assert is_valid_id(job_id) and not is_valid_id("../" + job_id[3:])


def test_claim_progress_complete(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    first, second = queue(store, 2)
    claimed = store.claim_next("w1")
    assert claimed is not None and claimed.id == first and claimed.attempts == 1
    assert store.claim_next("w2").id == second  # type: ignore[union-attr]
    assert store.claim_next("w3") is None
    assert store.report_progress(first, 1, frames_done=2, num_frames=4, fps=3.0)
    job = store.get_job(first)
    assert job is not None and job.progress == 0.5 and job.frames_done == 2
    assert store.complete(first, 1, outputs={"overlay": "jobs/x/1/overlay.mp4"})
    assert not store.complete(first, 1, outputs={})  # only once
    assert store.get_job(first).state == "done"  # type: ignore[union-attr]
    assert store.fail(second, 1, "boom")
    assert store.get_job(second).error == "boom"  # type: ignore[union-attr]


def test_lost_attempt_cannot_report_or_complete(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    (job_id,) = queue(store)
    store.claim_next("old")
    assert store.requeue_running() == [job_id]  # the server restarted
    again = store.claim_next("new")
    assert again is not None and again.attempts == 2
    assert not store.holds(job_id, 1) and store.holds(job_id, 2)
    assert not store.report_progress(job_id, 1, frames_done=1, num_frames=4, fps=1.0)
    assert not store.complete(job_id, 1, outputs={})
    assert store.complete(job_id, 2, outputs={})
    events = [(e["event"], e["attempt"]) for e in store.events(job_id)]
    assert events == [("queued", 0), ("claimed", 1), ("requeued", 1), ("claimed", 2), ("done", 2)]


def test_cancel_and_delete(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    running, queued = queue(store, 2)
    assert store.claim_next("w").id == running  # type: ignore[union-attr]
    assert store.cancel(queued) == "queued"
    assert store.claim_next("w") is None  # a cancelled job is never claimed
    assert store.cancel(running) == "running"
    assert not store.holds(running, 1)  # the worker's should_stop sees this
    assert not store.complete(running, 1, outputs={})
    assert not store.report_progress(running, 1, frames_done=1, num_frames=2, fps=1.0)
    assert store.get_job(running).state == "cancelled"  # type: ignore[union-attr]
    assert store.cancel(running) == "cancelled"
    assert store.delete_job(queued) and store.get_job(queued) is None
    assert not store.delete_job(new_id())
    assert store.cancel(new_id()) is None


def test_release_requeues_only_the_holder(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    (job_id,) = queue(store)
    store.claim_next("w")
    assert store.running_on("w")[0].id == job_id and store.running_on("x") == []
    assert not store.release(job_id, 2, "wrong attempt")
    assert store.release(job_id, 1, "server shutdown")
    assert store.get_job(job_id).state == "queued"  # type: ignore[union-attr]


def test_bounded_queue(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    queue(store, 2, max_queued=2)
    with pytest.raises(QueueFullError, match="2 jobs waiting"):
        queue(store, 1, max_queued=2)
    assert store.count_jobs() == {"queued": 2}


def test_video_in_use_is_not_deleted(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    (job_id,) = queue(store)
    video_id = store.get_job(job_id).video_id  # type: ignore[union-attr]
    assert not store.delete_video(video_id)
    store.cancel(job_id)
    assert store.delete_video(video_id) and store.get_video(video_id) is None


def _claim_all(db: str, name: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = Store(db)
    claimed = []
    while (job := store.claim_next(name)) is not None:
        claimed.append(job.id)
    out.put(claimed)


def test_concurrent_claims_from_processes_never_overlap(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    ids = queue(Store(db), 200, max_queued=200)
    # fork: a spawned child would spend seconds importing torch through the samurai package
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    out = context.Queue()
    workers = [context.Process(target=_claim_all, args=(str(db), f"w{i}", out)) for i in range(3)]
    for worker in workers:
        worker.start()
    claimed = [job for _ in workers for job in out.get(timeout=60)]
    for worker in workers:
        worker.join(30)
    assert sorted(claimed) == sorted(ids)  # each job claimed exactly once


def test_only_worker_deaths_count_towards_failing_a_job(tmp_path: Path) -> None:
    """Server restarts re-queue a job without using up its worker-death allowance."""
    from samurai.service.schemas import ServiceSettings
    from samurai.service.worker import MAX_ATTEMPTS, WorkerPool, default_manager_factory

    store = Store(tmp_path / "jobs.db")
    (job_id,) = queue(store)
    pool = WorkerPool(ServiceSettings(data_dir=tmp_path), default_manager_factory, store)
    for _ in range(MAX_ATTEMPTS):  # claimed, then the server is killed: re-queued at restart
        assert store.claim_next("w0") is not None
        assert store.requeue_running() == [job_id]
    for death in range(1, MAX_ATTEMPTS + 1):
        assert store.claim_next("w1") is not None
        pool._reclaim("w1", -9)
        job = store.get_job(job_id)
        assert job is not None
        assert job.state == ("failed" if death == MAX_ATTEMPTS else "queued"), (death, job)
    assert job.error is not None and f"{MAX_ATTEMPTS} times" in job.error


def test_lapsed_lease_requeues_and_the_old_holder_is_locked_out(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    first, second = queue(store, 2)
    assert store.claim_next("w1", lease_s=0.3) is not None
    assert store.claim_next("w2", lease_s=0.3) is not None
    for _ in range(3):  # w2 keeps renewing, w1 is silent (frozen, or a vanished executor)
        time.sleep(0.15)
        assert store.renew_lease(second, 1, 0.3)
    assert store.requeue_expired() == [first]
    job = store.get_job(first)
    assert job is not None and job.state == "queued"
    assert not store.renew_lease(first, 1, 0.3)  # the old holder learns it lost the job
    assert not store.complete(first, 1, outputs={})
    assert store.events(first)[-1]["detail"] == "lease expired: w1 stopped renewing it"
    assert store.get_job(second).state == "running"  # type: ignore[union-attr]


def test_old_database_gains_the_lease_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE jobs DROP COLUMN lease_until")
    (job_id,) = queue(Store(path))
    assert Store(path).claim_next("w", lease_s=5).lease_until is not None  # type: ignore[union-attr]
    assert job_id
