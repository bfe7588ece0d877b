"""Worker processes of the tracking service.

`WorkerPool` (in the server process) keeps ``settings.workers`` worker processes alive. Each
worker is a separate, spawned process, so a crash, a hang in a decoder or a heavy job never takes
the API down. A worker claims jobs from the SQLite store (`Store.claim_next`), keeps one
`InferenceManager` per model variant it has loaded and reuses it for later jobs, writes progress
to the store, and stops a job as soon as it is cancelled (its ``should_stop`` polls the store).

Workers run at a higher nice value and with ``settings.torch_threads`` torch threads each, so
``workers x threads`` matches the cores and the server keeps answering while they compute. A
worker dies with the server (``PR_SET_PDEATHSIG`` on Linux, a parent check elsewhere): after a
crash of the server, nothing keeps running a job that the restarted server re-queues.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samurai.service.managers import ManagerCache, ManagerFactory
from samurai.service.outputs import collect_outputs
from samurai.service.schemas import JobParams, ServiceSettings
from samurai.service.store import JobRecord, Store

logger = logging.getLogger(__name__)

__all__ = ["JobRunner", "ManagerFactory", "WorkerPool", "default_manager_factory", "job_dir"]

MAX_ATTEMPTS = 3
"""A job whose worker process dies this many times is failed instead of re-queued (restarts and
shutdowns of the server, and workers stopped by SIGTERM, do not count)."""
_PROGRESS_EVERY_S = 0.25
WORKER_DIED = "the worker process died"


def default_manager_factory(
    variant: str,
    *,
    checkpoint: Path | None,
    device: str,
    dtype: str,
    samurai_mode: bool,
    overrides: dict[str, Any],
    tracker: str | None = None,
) -> Any:
    """An `InferenceManager` (weights from ``checkpoint`` or the checkpoint cache)."""
    from samurai.manager import InferenceManager

    return InferenceManager(
        variant,
        checkpoint,
        device=device,
        dtype=dtype,  # type: ignore[arg-type]
        samurai_mode=samurai_mode,
        tracker=tracker,
        download_progress=False,
        **overrides,
    )


def job_dir(data_dir: Path, job_id: str) -> Path:
    """Folder of a job's results: ``<data dir>/jobs/<id>`` (one sub-folder per attempt)."""
    return data_dir / "jobs" / job_id


def error_line(exc: BaseException) -> str:
    """One line for a failed job; unexpected exception types are named."""
    from samurai.checkpoints import CheckpointError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (ValueError, OSError, CheckpointError)):
        return text
    return f"{type(exc).__name__}: {text}"


class _JobControl:
    """Progress and stop callbacks of one job attempt."""

    def __init__(self, store: Store, job: JobRecord, should_exit: Callable[[], bool]) -> None:
        self.store, self.job, self._should_exit = store, job, should_exit
        self.lost = False  # the attempt no longer holds the job (cancelled, re-queued)
        self.exiting = False  # the worker is shutting down
        self._last_report = self._last_check = 0.0

    def progress(self, done: int, total: int | None, fps: float) -> None:
        now = time.monotonic()
        if now - self._last_report < _PROGRESS_EVERY_S and done != total:
            return
        self._last_report = now
        held = self.store.report_progress(
            self.job.id, self.job.attempts, frames_done=done, num_frames=total, fps=fps
        )
        self.lost = self.lost or not held

    def should_stop(self) -> bool:
        if self._should_exit():
            self.exiting = True
        now = time.monotonic()
        if not (self.lost or self.exiting) and now - self._last_check >= _PROGRESS_EVERY_S:
            self._last_check = now
            self.lost = not self.store.holds(self.job.id, self.job.attempts)
        return self.lost or self.exiting


class JobRunner:
    """The loop of one worker process: claim a job, run it, record the outcome, repeat."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        factory: ManagerFactory,
        should_exit: Callable[[], bool],
    ) -> None:
        self.name, self.settings, self.factory = name, settings, factory
        self.should_exit = should_exit
        self.store = Store(settings.db_path)
        self.cache = ManagerCache(
            factory,
            checkpoints=settings.checkpoints,
            device=settings.device,
            dtype=settings.dtype,
            image_size=settings.image_size,
        )

    def serve(self, wait: Callable[[float], object]) -> None:
        """Run jobs until ``should_exit``; ``wait(seconds)`` idles between empty polls."""
        failing = False
        while not self.should_exit():
            try:
                job = self.store.claim_next(self.name, lease_s=self.settings.job_lease_s)
            except sqlite3.Error as exc:  # read-only or full disk: wait for it to be fixed
                if not failing:
                    logger.error("cannot claim jobs: the job database failed: %s", exc)
                failing = True
                self.store.close()
                wait(2.0)
                continue
            failing = False
            if job is None:
                wait(self.settings.poll_interval_s)
                continue
            logger.info("job %s (attempt %d) started", job.id, job.attempts)
            try:
                self.run(job)
            except sqlite3.Error as exc:  # the server re-queues the job once it can write
                logger.error("job %s: the job database failed: %s; worker exits", job.id, exc)
                raise SystemExit(3) from None

    def run(self, job: JobRecord) -> None:
        """Run one claimed attempt, renewing its lease meanwhile; every outcome ends in the
        store (or the job was lost)."""
        control = _JobControl(self.store, job, self.should_exit)
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(job, control, stop), name="lease", daemon=True
        )
        heartbeat.start()
        try:
            self._run(job, control)
        finally:
            stop.set()
            heartbeat.join()

    def _heartbeat(self, job: JobRecord, control: _JobControl, stop: threading.Event) -> None:
        lease_s = self.settings.job_lease_s
        try:
            while not stop.wait(lease_s / 4):
                try:
                    if not self.store.renew_lease(job.id, job.attempts, lease_s):
                        control.lost = True  # cancelled, or re-queued after a lapse
                        return
                except sqlite3.Error as exc:  # the lease may lapse; the attempt token still rules
                    logger.debug("job %s: lease not renewed: %s", job.id, exc)
        finally:
            self.store.close()

    def _run(self, job: JobRecord, control: _JobControl) -> None:
        params = JobParams.from_dict(job.params)
        out = job_dir(self.settings.data_dir, job.id) / str(job.attempts)
        try:
            video = self.store.get_video(job.video_id)
            if video is None:
                raise ValueError(f"video {job.video_id} was deleted")
            shutil.rmtree(out, ignore_errors=True)
            summary = self.cache.get(params).process_video(
                video.path,
                output_dir=out,
                progress=control.progress,
                should_stop=control.should_stop,
                **params.track_kwargs(),
            )
        except Exception as exc:
            self._failed(job, control, exc, out)
            return
        if not summary.complete or control.lost:
            self._stopped(job, control, out)
            return
        outputs = collect_outputs(self.settings.data_dir, summary.outputs, out)
        if self.store.complete(job.id, job.attempts, outputs=outputs):
            logger.info("job %s done (%.2f frames/s)", job.id, summary.fps)
            for other in out.parent.iterdir():
                if other != out:
                    shutil.rmtree(other, ignore_errors=True)
        else:
            self._stopped(job, control, out)

    def _failed(self, job: JobRecord, control: _JobControl, exc: Exception, out: Path) -> None:
        # the API removes a cancelled job's files, so writes fail before the next check: ask now
        if not (control.lost or control.exiting):
            control.lost = not self.store.holds(job.id, job.attempts)
        if control.lost or control.exiting:
            logger.debug("job %s stopped while failing: %s", job.id, error_line(exc))
            self._stopped(job, control, out)
            return
        message = error_line(exc)
        logger.warning("job %s failed: %s", job.id, message, exc_info=exc)
        self.store.fail(job.id, job.attempts, message)
        shutil.rmtree(out, ignore_errors=True)
        if not isinstance(exc, ValueError):  # the manager may be in a bad state: rebuild it
            self.cache.drop(JobParams.from_dict(job.params).model)

    def _stopped(self, job: JobRecord, control: _JobControl, out: Path) -> None:
        """Tracking stopped early: cancelled or re-queued elsewhere (lost), or shutting down."""
        if control.exiting and not control.lost:
            self.store.release(job.id, job.attempts, "server shutdown")
            logger.info("job %s returned to the queue (shutdown)", job.id)
        current = self.store.get_job(job.id)
        if current is None or current.state == "cancelled":
            shutil.rmtree(out.parent, ignore_errors=True)
            logger.info("job %s cancelled", job.id)
        else:
            shutil.rmtree(out, ignore_errors=True)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def worker_main(
    name: str, settings: ServiceSettings, factory: ManagerFactory, parent_pid: int
) -> None:
    """Entry point of a worker process. SIGTERM stops it after the current frame: its job goes
    back to the queue (no multiprocessing semaphore, so nothing is left for a resource tracker).
    """
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    logging.basicConfig(
        level=logging.INFO, format=f"samurai {name}: %(message)s", stream=sys.stderr
    )
    with contextlib.suppress(OSError):
        os.nice(settings.worker_niceness)
    import cv2
    import torch

    torch.set_num_threads(settings.torch_threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    cv2.setNumThreads(settings.torch_threads)

    def should_exit() -> bool:
        return stop_event.is_set() or os.getppid() != parent_pid

    runner = JobRunner(name, settings, factory, should_exit)
    try:
        runner.serve(stop_event.wait)
    finally:
        runner.store.close()


class WorkerPool:
    """Keeps ``settings.workers`` worker processes running; replaces any that die.

    A supervisor thread spawns the processes (so Linux's parent-death signal is tied to a thread
    that lives as long as the pool) and checks them twice a second. The job a dead worker held
    goes back to the queue, or fails after `MAX_ATTEMPTS` deaths.
    """

    def __init__(self, settings: ServiceSettings, factory: ManagerFactory, store: Store) -> None:
        self.settings, self.factory, self.store = settings, factory, store
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._processes: dict[int, tuple[str, Any]] = {}
        self._unclaimed: dict[str, int | None] = {}  # dead workers whose jobs wait for re-queueing
        self._generation = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="samurai-workers", daemon=True)
        self._thread.start()
        self._started.wait(60)

    def capacity(self) -> int:
        return self.settings.workers

    def alive(self) -> int:
        return sum(proc.is_alive() for _, proc in list(self._processes.values()))

    def pids(self) -> list[int]:
        return [proc.pid for _, proc in list(self._processes.values()) if proc.pid is not None]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the workers to stop (their jobs go back to the queue) and wait for them."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 5)

    def _spawn(self, slot: int) -> None:
        self._generation += 1
        name = f"worker-{slot}.{self._generation}@{os.getpid()}"
        proc = self._context.Process(
            target=worker_main,
            args=(name, self.settings, self.factory, os.getpid()),
            name=name,
            daemon=True,
        )
        proc.start()
        self._processes[slot] = (name, proc)
        logger.info("started %s (pid %d)", name, proc.pid)

    def _supervise(self) -> None:
        try:
            for slot in range(self.settings.workers):
                self._spawn(slot)
        finally:
            self._started.set()
        restarts: list[float] = []
        last_lease_check = 0.0
        while not self._stopping.wait(0.5):
            if time.monotonic() - last_lease_check > min(5.0, self.settings.job_lease_s / 4):
                last_lease_check = time.monotonic()
                self._requeue_expired()
            for slot, (name, proc) in list(self._processes.items()):
                if proc.is_alive():
                    continue
                proc.join(0)
                if proc.exitcode == 0:  # SIGTERM from outside: its job went back to the queue
                    logger.info("%s stopped (exit code 0)", name)
                else:
                    logger.error("%s died (exit code %s)", name, proc.exitcode)
                self._unclaimed[name] = proc.exitcode
                self._reclaim_all()
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                if len(restarts) > 4 * self.settings.workers:  # crashing at start: back off
                    self._stopping.wait(10)
                if not self._stopping.is_set():
                    self._spawn(slot)
            self._reclaim_all()
        self._shutdown()

    def _requeue_expired(self) -> None:
        try:
            expired = self.store.requeue_expired()
        except sqlite3.Error as exc:
            logger.debug("cannot check job leases: %s", exc)
            return
        for job_id in expired:
            logger.warning("job %s re-queued: its worker stopped renewing its lease", job_id)

    def _reclaim_all(self) -> None:
        """Re-queue the jobs of dead workers; retried while the database cannot be written."""
        for name, exitcode in list(self._unclaimed.items()):
            try:
                self._reclaim(name, exitcode)
            except sqlite3.Error as exc:
                logger.debug("cannot re-queue the jobs of %s yet: %s", name, exc)
                return
            del self._unclaimed[name]

    def _reclaim(self, name: str, exitcode: int | None) -> None:
        for job in self.store.running_on(name):
            reason = f"{WORKER_DIED} (exit code {exitcode})"
            deaths = self.store.count_requeues(job.id, WORKER_DIED) + 1
            if deaths >= MAX_ATTEMPTS:
                self.store.fail(job.id, job.attempts, f"{reason}, {deaths} times")
            else:
                self.store.release(job.id, job.attempts, reason)

    def _shutdown(self, timeout_s: float = 10.0) -> None:
        for _, proc in self._processes.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: stop after the current frame, give the job back
        deadline = time.monotonic() + timeout_s
        for _, proc in self._processes.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for name, proc in self._processes.values():
            if proc.is_alive():
                logger.warning("%s did not stop in time; killing it", name)
                proc.kill()
                proc.join(3)
            try:
                for job in self.store.running_on(name):
                    self.store.release(job.id, job.attempts, "server shutdown")
            except sqlite3.Error as exc:  # re-queued at the next start instead
                logger.error("cannot re-queue the jobs of %s: %s", name, exc)
