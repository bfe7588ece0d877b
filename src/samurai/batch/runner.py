"""Track every job of a batch into ``<out>/<id>/``, resumably, here or on a Ray cluster.

``<out>/batch.jsonl`` is the batch's journal: its first line holds the model settings (variant,
checkpoint, dtype, image size, tracking policy, ...), then
one line per job that ended (``done`` with frames, seconds, outputs, node and the tracking
policy its worker ran, or ``failed``
with the reason), appended as each job ends. A job counts as finished when its last record
is ``done`` for the same video, prompts and options and every output it listed is there under
its final name; a rerun skips finished jobs and runs every other one again (failed ones
included). Outputs are written as ``samurai track`` writes them (``*.partial`` renamed when
complete); on Ray the driver writes the files a remote worker sends back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from samurai.batch.executor import (
    Outcome,
    RayExecutor,
    WorkerFactory,
    run_in_process,
    run_processes,
)
from samurai.batch.manifest import BatchJob
from samurai.batch.placement import gpu_queue
from samurai.batch.worker import (
    BatchWorker,
    JobReport,
    LocalTask,
    ManagerSpec,
    ShippedTask,
    pack_video,
    write_shipped,
)

__all__ = ["JOURNAL", "BatchConfig", "BatchProgress", "BatchSummary", "run_batch"]

logger = logging.getLogger(__name__)

JOURNAL = "batch.jsonl"


@dataclass(frozen=True)
class BatchConfig:
    """How a batch runs (``samurai batch`` options).

    Attributes:
        out: output folder: one subfolder per job, plus the journal ``batch.jsonl``.
        spec: the model every worker builds.
        workers: parallel workers, one model each (processes, or Ray actors).
        ray_address: run on Ray: ``local`` (start an instance here), ``auto``,
            ``HOST:PORT`` or ``ray://HOST:10001``; None = this machine only.
        threads: torch CPU threads per worker; None = max(1, cores // workers).
        gpus_per_worker: GPUs per Ray actor when the device is cuda (default 1).
        ray_resources: custom Ray resources each actor asks for (pins workers to nodes).
        max_attempts: how often a job may lose its worker (killed, node lost) before it fails.
    """

    out: Path
    spec: ManagerSpec = field(default_factory=ManagerSpec)
    workers: int = 1
    ray_address: str | None = None
    threads: int | None = None
    gpus_per_worker: float | None = None
    ray_resources: dict[str, float] = field(default_factory=dict)
    max_attempts: int = 3

    def __post_init__(self) -> None:
        for name in ("workers", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.gpus_per_worker is not None and self.gpus_per_worker <= 0:
            raise ValueError(f"gpus per worker must be > 0, got {self.gpus_per_worker}")

    @property
    def threads_per_worker(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


@dataclass(frozen=True)
class BatchProgress:
    """Reported after each job: ``status`` is ``done``, ``failed`` or ``skipped`` (finished
    before); ``finished`` counts every job that ended so far, of ``total``."""

    job_id: str
    status: str
    finished: int
    total: int
    failed: int
    frames: int = 0


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did: job ids done now, failed (id -> reason) and skipped as finished before."""

    done: tuple[str, ...]
    failed: dict[str, str]
    skipped: tuple[str, ...]
    frames: int
    nodes: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        """A human summary: counts, then one line per failed job."""
        head = (
            f"{len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped "
            f"(finished before); {self.frames} frames tracked"
        )
        return [head] + [f"  failed {job}: {reason}" for job, reason in self.failed.items()]


class _Journal:
    """``<out>/batch.jsonl``: the run's settings, then one record per job that ended."""

    def __init__(self, path: Path, run: dict[str, Any]) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        first, *rest = (_read_lines(path) if path.is_file() else []) or [{}]
        if isinstance(first.get("run"), dict):
            first = {**first, "run": _current_form(first["run"])}
        jobs = [r for r in rest if isinstance(r.get("job"), str)]
        if first.get("run") != run and jobs:
            raise ValueError(
                f"{path} holds a batch of other settings ({first.get('run')}); choose another --out"
            )
        self.records = {r["job"]: r for r in jobs}
        if first.get("run") != run:  # new, or no job ended under the old settings
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            self._append({"run": run})

    def finished(self, job: BatchJob, out: Path) -> bool:
        record = self.records.get(job.job_id)
        if not record or record.get("status") != "done" or record.get("key") != _key(job):
            return False
        return all((out / job.job_id / name).exists() for name in record.get("outputs", ()))

    def record(self, job: BatchJob, **entry: Any) -> None:
        record = {"job": job.job_id, "key": _key(job), **entry}
        self.records[job.job_id] = record
        self._append(record)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def _current_form(run: dict[str, Any]) -> dict[str, Any]:
    """A journal's settings as this version writes them: journals from before the tracker
    policies name ``samurai_mode`` (True: ``samurai``, False: ``sam2``) or, for a prebuilt
    manager, nothing (it ran the default, ``samurai``)."""
    if "tracker" in run:
        return run
    legacy = {k: v for k, v in run.items() if k != "samurai_mode"}
    return {**legacy, "tracker": "samurai" if run.get("samurai_mode", True) else "sam2"}


def _read_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: that job simply runs again
        if isinstance(record, dict):
            records.append(record)
    return records


def _key(job: BatchJob) -> dict[str, Any]:
    """What decides a job's outputs (a finished job whose key changed runs again)."""
    return {
        "video": job.video,
        "boxes": [list(b) for b in job.boxes],
        "points": None if job.points is None else [list(p) for p in job.points],
        "labels": None if job.labels is None else list(job.labels),
        "options": {
            k: list(v) if isinstance(v, tuple) else v for k, v in asdict(job.options).items()
        },
    }


def run_batch(
    jobs: Sequence[BatchJob],
    config: BatchConfig,
    *,
    progress: Callable[[BatchProgress], None] | None = None,
    manager: Any = None,
) -> BatchSummary:
    """Track every unfinished job; a failed job does not stop the others.

    Args:
        jobs: the manifest's jobs (`samurai.batch.load_manifest`).
        config: outputs, model and where to run.
        progress: called after every job (skipped ones first).
        manager: an `InferenceManager` to run in this process (``workers=1``, no Ray).

    Returns:
        The summary; ``summary.ok`` is False when some job failed (its reason is in
        ``summary.failed`` and in the journal; a rerun retries it).

    Raises:
        ValueError: bad options, an output folder of other settings, Ray unreachable.
    """
    spec = _resolved(config, manager)
    journal = _Journal(config.out / JOURNAL, _run_settings(spec, manager))
    skipped = tuple(job.job_id for job in jobs if journal.finished(job, config.out))
    todo = [job for job in jobs if job.job_id not in skipped]
    total, finished = len(jobs), 0
    for job_id in skipped:
        finished += 1
        if progress is not None:
            progress(BatchProgress(job_id, "skipped", finished, total, 0))
    if skipped:
        logger.info("%d of %d jobs already finished in %s", len(skipped), total, config.out)
    done: list[str] = []
    failed: dict[str, str] = {}
    frames = 0
    nodes: dict[str, int] = {}
    for job, outcome in _execute(todo, config, spec, manager):
        finished += 1
        report = _settle(job, outcome, journal, config.out)
        status, count = "failed", 0
        if isinstance(report, JobReport):
            done.append(job.job_id)
            status, count = "done", report.frames
            nodes[report.node] = nodes.get(report.node, 0) + 1
        else:
            failed[job.job_id] = report
        frames += count
        if progress is not None:
            progress(BatchProgress(job.job_id, status, finished, total, len(failed), count))
    return BatchSummary(tuple(done), failed, skipped, frames, nodes)


def _settle(job: BatchJob, outcome: Outcome, journal: _Journal, out: Path) -> JobReport | str:
    """Write a shipped job's files, record the job; its report, or the failure's reason."""
    if isinstance(outcome, JobReport) and outcome.files is not None:
        try:
            write_shipped(outcome, out / job.job_id)
        except OSError as error:
            outcome = error
    if isinstance(outcome, JobReport):
        journal.record(
            job,
            status="done",
            frames=outcome.frames,
            seconds=round(outcome.seconds, 3),
            outputs=list(outcome.outputs),
            node=outcome.node,
            tracker=outcome.tracker,
        )
        return outcome
    reason = _reason(outcome)
    logger.error("%s failed: %s", job.job_id, reason)
    journal.record(job, status="failed", reason=reason)
    return reason


def _reason(error: BaseException) -> str:
    from samurai.commands import error_line

    return error_line(error)


def _resolved(config: BatchConfig, manager: Any) -> ManagerSpec:
    """The spec with the checkpoint resolved once here (not once per worker), where it can be."""
    if manager is not None:
        if config.workers > 1 or config.ray_address is not None:
            raise ValueError("a prebuilt manager runs in this process only (workers=1, no Ray)")
        return config.spec
    spec = config.spec
    remote = config.ray_address not in (None, "local")
    if spec.random_weights or remote:
        return spec  # remote nodes read their own checkpoint cache
    from samurai.checkpoints import ensure_checkpoint

    checkpoint = ensure_checkpoint(spec.variant, spec.checkpoint)
    return ManagerSpec(**{**asdict(spec), "checkpoint": str(checkpoint)})


def _run_settings(spec: ManagerSpec, manager: Any) -> dict[str, Any]:
    if manager is not None:
        checkpoint = getattr(manager, "checkpoint", None)
        return {
            "variant": manager.variant,
            "checkpoint": None if checkpoint is None else Path(checkpoint).name,
            "dtype": manager.dtype,
            "image_size": manager.image_size,
            "random_weights": bool(manager.random_weights),
            "tracker": manager.tracker_name,
        }
    return {
        "variant": spec.variant,
        "checkpoint": None if spec.checkpoint is None else Path(spec.checkpoint).name,
        "dtype": spec.dtype,
        "image_size": spec.overrides.get("image_size", 1024),
        "random_weights": spec.random_weights,
        "tracker": spec.tracker_name,
        "overrides": {k: v for k, v in sorted(spec.overrides.items()) if k != "image_size"},
    }


def _execute(
    jobs: list[BatchJob], config: BatchConfig, spec: ManagerSpec, manager: Any
) -> Iterator[tuple[BatchJob, Outcome]]:
    if not jobs:
        return
    workers = min(config.workers, len(jobs))
    if config.ray_address is not None:
        yield from _on_ray(jobs, config, spec, workers)
        return
    out = str(config.out)
    tasks = [LocalTask(job, out) for job in jobs]
    if workers > 1:
        devices = gpu_queue(spec.device, workers)
        args = (spec, config.threads_per_worker)
        factory = WorkerFactory(BatchWorker, args, {} if devices is None else {"devices": devices})
        runs = run_processes(factory, tasks, workers=workers, max_attempts=config.max_attempts)
    else:
        worker = BatchWorker(spec, config.threads, manager=manager)
        runs = run_in_process(worker, tasks)
    for index, outcome in runs:
        yield jobs[index], outcome


def _on_ray(
    jobs: list[BatchJob], config: BatchConfig, spec: ManagerSpec, workers: int
) -> Iterator[tuple[BatchJob, Outcome]]:
    cuda = spec.device.startswith("cuda")
    executor = RayExecutor(
        WorkerFactory(BatchWorker, (spec, config.threads_per_worker)),
        address=str(config.ray_address),
        workers=workers,
        cpus=config.threads_per_worker,
        gpus=(config.gpus_per_worker or 1.0) if cuda else 0.0,
        resources=config.ray_resources,
        max_attempts=config.max_attempts,
        prepare=_ship,
    )
    with executor:
        tasks = [ShippedTask(job) for job in jobs]
        for index, outcome in executor.run(tasks):
            yield jobs[index], outcome


def _ship(task: ShippedTask) -> ShippedTask:
    """Put the job's video into the Ray object store (workers may not see this file system)."""
    import ray

    payload = pack_video(task.job)
    return ShippedTask(task.job, None if payload is None else ray.put(payload))
