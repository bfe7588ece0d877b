"""Running the service's jobs on Ray actors (``samurai serve --ray-address``).

The API server, its SQLite store and the data folder stay on the head. `RayPool` takes the
place of the local `WorkerPool`: a dispatcher thread keeps up to `RaySettings.jobs_on` actors
on every live node (a node that joins gets actors, a lost node's are forgotten), claims a
queued job from the store for each idle actor, ships the video through the object store,
renews the job's lease and copies the actor's progress into the store while it runs, and
writes the returned files into ``jobs/<id>/<attempt>/`` with the ``.partial`` -> final naming
of local workers. Cancellation raises the actor's stop flag. An actor that dies under a job
(node lost, out of memory, a crash) puts the job back in the queue, or fails it after
``max_attempts`` deaths with the reason; the store's attempt token keeps every job done once.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samurai.batch.executor import connect_ray, import_ray
from samurai.batch.worker import JobReport, write_shipped
from samurai.service.managers import ManagerFactory
from samurai.service.outputs import collect_outputs
from samurai.service.ray_actor import (
    ActorSettings,
    RemoteJob,
    RemoteResult,
    ServiceActor,
    pack_video,
)
from samurai.service.schemas import JobParams, ServiceSettings
from samurai.service.store import JobRecord, Store
from samurai.service.worker import error_line, job_dir

logger = logging.getLogger(__name__)

ACTOR_DIED = "its Ray actor died"
"""Prefix of the re-queue reason when a job's actor or node is lost (counted per job)."""
_TICK_S = 0.25
_NODES_EVERY_S = 2.0


@dataclass
class _Running:
    """One job attempt on an actor."""

    job: JobRecord
    ref: Any
    poll: Any = None
    stop: bool = False
    renewed: float = field(default_factory=time.monotonic)


@dataclass
class _Slot:
    """One actor: starting (``ready`` pending), idle, or running ``job``."""

    actor: Any
    node: str
    name: str
    ready: Any = None  # the pending ready() ref, None once started
    missing: list[str] = field(default_factory=list)  # checkpoints to ship to this node
    job: _Running | None = None
    dead: bool = False
    ping: Any = None  # a pending poll() of an idle actor: a dead one is noticed before use
    pinged: float = 0.0


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class RayPool:
    """Dispatches queued jobs to Ray actors; same interface as `WorkerPool`."""

    def __init__(self, settings: ServiceSettings, factory: ManagerFactory, store: Store) -> None:
        assert settings.ray is not None
        self.settings, self.ray_settings, self.factory = settings, settings.ray, factory
        self.store = store
        self.actor_settings = ActorSettings(
            checkpoints={k: str(p) for k, p in settings.checkpoints.items()},
            device=settings.device,
            dtype=settings.dtype,
            image_size=settings.image_size,
            threads=max(1, round(self.ray_settings.cpus_per_job)),
        )
        self._slots: list[_Slot] = []
        self._shipped: dict[str, Any] = {}  # variant -> ObjectRef of its checkpoint bytes
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._remote: Any = None
        self._count = 0
        self.ray: Any = None

    # the WorkerPool interface

    def start(self) -> None:
        self.ray = import_ray()
        if not self.ray.is_initialized():
            connect_ray(self.ray_settings.address, cpus=int(self.ray_settings.cpus_per_job))
        self._thread = threading.Thread(target=self._loop, name="samurai-ray", daemon=True)
        self._thread.start()
        self._started.wait(60)

    def alive(self) -> int:
        """Actors started and ready for jobs."""
        return sum(s.ready is None and not s.dead for s in list(self._slots))

    def capacity(self) -> int:
        """Actors wanted on the live nodes (jobs at once)."""
        return len(self._slots)

    def pids(self) -> list[int]:
        return []  # the actors are Ray's processes, possibly on other machines

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the running jobs (back to the queue), the actors and Ray."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 5)

    # the dispatcher

    def _loop(self) -> None:
        last_nodes = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if time.monotonic() - last_nodes >= _NODES_EVERY_S:
                        last_nodes = time.monotonic()
                        self._fit_actors()
                        self._requeue_expired()
                        self._started.set()
                    self._hand_out()
                    self._wait()
                    self._tend()
                except sqlite3.Error as exc:  # retried: leases keep the jobs safe meanwhile
                    logger.error("the job database failed: %s", exc)
                    self.store.close()
                    self._stopping.wait(2.0)
                except Exception as exc:  # e.g. Ray's head unreachable for a while: retried
                    logger.error("the Ray dispatcher: %s", first_line(exc), exc_info=exc)
                    self._stopping.wait(2.0)
        finally:
            self._started.set()
            self._shutdown()

    def _fit_actors(self) -> None:
        """Start actors on live nodes up to their share; forget the slots of lost nodes."""
        try:
            nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        except Exception as exc:  # the GCS restarting: try again at the next round
            logger.warning("cannot list the Ray nodes: %s", first_line(exc))
            return
        alive = {n["NodeID"] for n in nodes}
        for slot in list(self._slots):
            if slot.node not in alive and slot.job is None:
                self._forget(slot)
        for node in nodes:
            have = sum(s.node == node["NodeID"] for s in self._slots)
            for _ in range(self.ray_settings.jobs_on(node.get("Resources", {})) - have):
                self._spawn(node["NodeID"])

    def _spawn(self, node: str) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._remote is None:
            self._remote = self.ray.remote(ServiceActor)
        rs = self.ray_settings
        options: dict[str, Any] = {
            "num_cpus": rs.cpus_per_job,
            "num_gpus": rs.gpus_per_job,
            "max_restarts": 0,
            "max_task_retries": 0,
            "max_concurrency": 2,  # run + poll
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False),
        }
        if rs.resources:
            options["resources"] = rs.resources
        actor = self._remote.options(**options).remote(self.actor_settings, self.factory)
        self._count += 1
        name = f"ray-{self._count}@{node[:12]}"
        self._slots.append(_Slot(actor, node, name, ready=actor.ready.remote()))

    def _hand_out(self) -> None:
        """Give the oldest queued jobs to idle actors."""
        for slot in self._slots:
            if slot.ready is not None or slot.dead or slot.job is not None:
                continue
            job = self.store.claim_next(slot.name, lease_s=self.settings.job_lease_s)
            if job is None:
                return
            logger.info("job %s (attempt %d) started on %s", job.id, job.attempts, slot.name)
            try:
                task = self._task(job, slot)
            except (OSError, ValueError) as exc:  # e.g. the video was deleted or unreadable
                self.store.fail(job.id, job.attempts, error_line(exc))
                continue
            slot.job = _Running(job, slot.actor.run.remote(task))

    def _task(self, job: JobRecord, slot: _Slot) -> RemoteJob:
        video = self.store.get_video(job.video_id)
        if video is None:
            raise ValueError(f"video {job.video_id} was deleted")
        params = JobParams.from_dict(job.params)
        checkpoint = None
        if params.model in slot.missing:  # this node lacks the file: send it once per actor
            if params.model not in self._shipped:
                data = Path(self.actor_settings.checkpoints[params.model]).read_bytes()
                self._shipped[params.model] = self.ray.put(data)
            checkpoint = self._shipped[params.model]
        payload = self.ray.put(pack_video(video.path))
        return RemoteJob(job.id, job.attempts, job.params, video.path, payload, checkpoint)

    def _wait(self) -> None:
        """Wait a tick for an actor to start, a job to end or a progress poll to return."""
        refs: dict[Any, tuple[str, _Slot]] = {}
        for slot in self._slots:
            if slot.ready is not None:
                refs[slot.ready] = ("ready", slot)
            if slot.job is not None:
                refs[slot.job.ref] = ("run", slot)
                if slot.job.poll is not None:
                    refs[slot.job.poll] = ("poll", slot)
            if slot.ping is not None:
                refs[slot.ping] = ("ping", slot)
        if not refs:
            self._stopping.wait(_TICK_S)
            return
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=_TICK_S)
        for ref in ready:
            kind, slot = refs[ref]
            if kind == "ready":
                self._actor_started(slot)
            elif kind == "poll":
                self._progress(slot, ref)
            elif kind == "ping":
                self._pinged(slot)
            elif slot.job is not None and slot.job.ref is ref:
                self._ended(slot)

    def _actor_started(self, slot: _Slot) -> None:
        ref, slot.ready = slot.ready, None
        try:
            node, slot.missing = self.ray.get(ref)
        except Exception as exc:  # its node went away, or it could not start: try again later
            logger.warning("a Ray actor on node %s did not start: %s", slot.node, first_line(exc))
            self._forget(slot)
            return
        logger.info("%s ready on node %s", slot.name, node)

    def _progress(self, slot: _Slot, ref: Any) -> None:
        running = slot.job
        if running is None or running.poll is not ref:  # the job ended meanwhile
            return
        running.poll = None
        try:
            done, total, fps = self.ray.get(ref)
        except Exception:  # the actor died: its run() call says how
            return
        job = running.job
        if done or total:
            held = self.store.report_progress(
                job.id, job.attempts, frames_done=done, num_frames=total, fps=fps
            )
        else:
            held = self.store.holds(job.id, job.attempts)
        running.stop = running.stop or not held  # cancelled or re-queued: stop the actor

    def _pinged(self, slot: _Slot) -> None:
        ref, slot.ping = slot.ping, None
        try:
            self.ray.get(ref)
        except Exception as exc:  # died while idle (OOM killer, node lost): no job pays for it
            if slot.job is None and not slot.dead:
                logger.warning("%s was lost while idle: %s", slot.name, first_line(exc))
                self._forget(slot)

    def _tend(self) -> None:
        """Renew the leases of running jobs, ask their actors for progress, check idle ones."""
        now = time.monotonic()
        for slot in list(self._slots):
            running = slot.job
            if running is None:
                idle = slot.ready is None and not slot.dead and slot.ping is None
                if idle and now - slot.pinged >= _NODES_EVERY_S:
                    slot.ping, slot.pinged = slot.actor.poll.remote(""), now
                continue
            if now - running.renewed >= self.settings.job_lease_s / 4:
                running.renewed = now
                job = running.job
                if not self.store.renew_lease(job.id, job.attempts, self.settings.job_lease_s):
                    running.stop = True
            if running.poll is None and not slot.dead:
                stop = running.stop or self._stopping.is_set()
                running.poll = slot.actor.poll.remote(running.job.id, stop)

    def _ended(self, slot: _Slot) -> None:
        running = slot.job
        assert running is not None
        slot.job = None
        job = running.job
        try:
            result: RemoteResult = self.ray.get(running.ref)
        except self._lost_errors as exc:
            self._actor_died(slot, job, exc)
            return
        except self.ray.exceptions.RayTaskError as exc:
            self._failed(job, getattr(exc, "cause", None) or exc)
            return
        except Exception as exc:  # e.g. a result that could not be deserialized
            self._failed(job, exc)
            return
        if not result.complete:
            self._stopped(job)
            return
        self._complete(job, result)

    @property
    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        errors = self.ray.exceptions
        return (errors.RayActorError, errors.ObjectLostError, errors.WorkerCrashedError)

    def _complete(self, job: JobRecord, result: RemoteResult) -> None:
        out = job_dir(self.settings.data_dir, job.id) / str(job.attempts)
        final = {"frames_done": result.frames, "num_frames": result.frames, "fps": result.fps}
        if not self.store.report_progress(job.id, job.attempts, **final):  # short jobs: unpolled
            self._stopped(job)
            return
        shutil.rmtree(out, ignore_errors=True)
        try:
            write_shipped(JobReport(job.id, result.frames, 0.0, (), result.node, result.files), out)
            written = {kind: out / rel for kind, rel in result.outputs.items()}
            outputs = collect_outputs(self.settings.data_dir, written, out)
        except OSError as exc:  # a full or read-only data folder
            self._failed(job, exc)
            return
        if self.store.complete(job.id, job.attempts, outputs=outputs):
            logger.info("job %s done (%.2f frames/s on %s)", job.id, result.fps, result.node)
            for other in out.parent.iterdir():
                if other != out:
                    shutil.rmtree(other, ignore_errors=True)
        else:
            self._stopped(job)

    def _failed(self, job: JobRecord, exc: BaseException) -> None:
        if not self.store.holds(job.id, job.attempts):
            self._stopped(job)
            return
        message = error_line(exc)
        logger.warning("job %s failed: %s", job.id, message)
        self.store.fail(job.id, job.attempts, message)
        shutil.rmtree(job_dir(self.settings.data_dir, job.id) / str(job.attempts), True)

    def _stopped(self, job: JobRecord) -> None:
        """The attempt ended early: cancelled, re-queued elsewhere, or the server stops."""
        if self._stopping.is_set():
            self.store.release(job.id, job.attempts, "server shutdown")
        current = self.store.get_job(job.id)
        folder = job_dir(self.settings.data_dir, job.id)
        if current is None or current.state == "cancelled":
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("job %s cancelled", job.id)
        else:
            shutil.rmtree(folder / str(job.attempts), ignore_errors=True)

    def _actor_died(self, slot: _Slot, job: JobRecord, exc: BaseException) -> None:
        reason = f"{ACTOR_DIED} ({first_line(exc)})"
        logger.warning("job %s: %s on %s", job.id, reason, slot.name)
        self._forget(slot)
        deaths = self.store.count_requeues(job.id, ACTOR_DIED) + 1
        if deaths >= self.ray_settings.max_attempts:
            self.store.fail(job.id, job.attempts, f"{ACTOR_DIED} {deaths} times; last: {reason}")
        elif not self.store.release(job.id, job.attempts, reason):
            self._stopped(job)

    def _forget(self, slot: _Slot) -> None:
        slot.dead = True
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:
            logger.debug("kill of a lost actor failed", exc_info=True)
        if slot.job is None and slot in self._slots:
            self._slots.remove(slot)

    def _requeue_expired(self) -> None:
        try:
            for job_id in self.store.requeue_expired():
                logger.warning("job %s re-queued: its lease expired", job_id)
        except sqlite3.Error as exc:
            logger.debug("cannot check job leases: %s", exc)

    def _shutdown(self, timeout_s: float = 8.0) -> None:
        """Stop running jobs (they go back to the queue), kill the actors, leave Ray."""
        running = [s for s in self._slots if s.job is not None and not s.dead]
        try:
            for slot in running:
                assert slot.job is not None
                slot.actor.poll.remote(slot.job.job.id, True)
            deadline = time.monotonic() + timeout_s
            for slot in running:
                assert slot.job is not None
                left = max(0.0, deadline - time.monotonic())
                if self.ray.wait([slot.job.ref], timeout=left)[0]:
                    self._ended(slot)  # stopped: back to the queue (or done, or failed)
        except Exception as exc:  # Ray or the database failing: the jobs are re-queued below
            logger.error("running jobs not settled at shutdown: %s", first_line(exc))
        for slot in list(self._slots):
            if slot.job is not None:  # never ended: back to the queue
                job = slot.job.job
                try:
                    self.store.release(job.id, job.attempts, "server shutdown")
                except sqlite3.Error as exc:  # re-queued at the next start instead
                    logger.error("cannot re-queue job %s: %s", job.id, exc)
            slot.job = None
            self._forget(slot)
        self.ray.shutdown()
