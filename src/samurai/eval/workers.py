"""Where benchmark sequences are tracked: in this process, a process pool, or Ray actors.

A worker builds its predictor once from a picklable `PredictorSpec` and tracks `SequenceTask`s
into `SequenceOutput`s; the three runners yield ``(task, output or exception)`` as sequences end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from samurai.eval.runner import EvalConfig


@dataclass(frozen=True)
class PredictorSpec:
    """What a worker needs to build its predictor (picklable); ``tracker`` (one of
    `samurai.config.TRACKERS`) wins over ``samurai_mode`` when given."""

    variant: str
    checkpoint: str | None
    device: str
    dtype: str
    samurai_mode: bool
    overrides: dict[str, Any]
    tracker: str | None = None

    @property
    def tracker_name(self) -> str:
        """The policy the workers run."""
        return self.tracker or ("samurai" if self.samurai_mode else "sam2")

    def build(self) -> Any:
        from samurai.api import build_sam2_video_predictor

        return build_sam2_video_predictor(
            self.variant,
            self.checkpoint,
            self.device,
            tracker=self.tracker_name,
            **self.overrides,
        )


@dataclass(frozen=True)
class SequenceTask:
    """One sequence to track: frame paths and the first frame's ``x, y, w, h`` box."""

    name: str
    frames: tuple[str, ...]
    init_box: tuple[float, float, float, float]


@dataclass(frozen=True)
class SequenceOutput:
    """Tracking output of one sequence.

    Attributes:
        name: sequence name.
        boxes: (N, 4) float64 xywh boxes in pixels of the original frames, one per frame.
        times: (N,) float64 seconds per frame (frame 0 includes opening the video and the prompt).
    """

    name: str
    boxes: NDArray[np.float64]
    times: NDArray[np.float64]


def track_sequence(predictor: Any, task: SequenceTask, *, dtype: str = "float32") -> SequenceOutput:
    """Track one sequence with a video predictor from its first-frame box (object id 1).

    ``float16`` runs the model under ``torch.autocast`` (SAMURAI's scripts run float16 autocast
    on cuda); ``bfloat16`` is the model's split-bfloat16 setting, made by `SequenceTracker`.
    """
    import torch

    from samurai.io.frames import ImageFolderSource

    precision = (
        torch.autocast(predictor.device.type, dtype=torch.float16)
        if dtype == "float16"
        else contextlib.nullcontext()
    )
    boxes = np.zeros((len(task.frames), 4), dtype=np.float64)
    times = np.zeros(len(task.frames), dtype=np.float64)
    start = time.perf_counter()
    with precision:
        state = predictor.init_video(ImageFolderSource([Path(p) for p in task.frames]))
        # the official scripts (SAMURAI scripts/demo.py load_txt) truncate the box to integers
        x, y, w, h = (int(v) for v in task.init_box)
        predictor.add_prompt(state, frame_idx=0, obj_id=1, box=[x, y, x + w, y + h])
        for result in predictor.propagate(state):
            boxes[result.frame_idx] = result.boxes_xywh()[0].cpu().numpy()
            now = time.perf_counter()
            times[result.frame_idx], start = now - start, now
    return SequenceOutput(task.name, boxes, times)


class SequenceTracker:
    """One model and the tracking loop: a process-pool worker's state and the Ray actor."""

    def __init__(self, spec: PredictorSpec, threads: int | None, predictor: Any = None) -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.predictor = spec.build() if predictor is None else predictor
        self.dtype = spec.dtype
        if spec.dtype == "bfloat16":  # split-bfloat16 layers, as samurai track --dtype bfloat16
            self.predictor.model.set_compute_dtype(torch.bfloat16)

    def track(self, task: SequenceTask) -> SequenceOutput:
        return track_sequence(self.predictor, task, dtype=self.dtype)


_WORKER: SequenceTracker | None = None


def _init_pool_worker(spec: PredictorSpec, threads: int, devices: Any) -> None:
    global _WORKER  # one model per worker process, built once
    # Ctrl-C reaches the whole process group: workers leave silently, the driver reports it
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    if devices is not None:  # several GPUs: one per worker, round robin
        spec = PredictorSpec(**{**asdict(spec), "device": devices.get()})
    _WORKER = SequenceTracker(spec, threads)


def _pool_track(task: SequenceTask) -> SequenceOutput:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.track(task)


Outcome = SequenceOutput | BaseException


def run_in_process(
    spec: PredictorSpec, tasks: list[SequenceTask], predictor: Any
) -> Iterator[tuple[SequenceTask, Outcome]]:
    worker = SequenceTracker(spec, None, predictor)
    for task in tasks:
        try:
            yield task, worker.track(task)
        except (ValueError, RuntimeError, OSError) as error:
            yield task, error


def run_pool(
    spec: PredictorSpec, tasks: list[SequenceTask], workers: int, threads: int
) -> Iterator[tuple[SequenceTask, Outcome]]:
    context = get_context("spawn")
    devices = None
    if spec.device == "cuda":
        import torch

        if torch.cuda.device_count() > 1:
            devices = context.SimpleQueue()
            for index in range(workers):
                devices.put(f"cuda:{index % torch.cuda.device_count()}")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_pool_worker,
        initargs=(spec, threads, devices),
    ) as pool:
        futures: dict[Future[SequenceOutput], SequenceTask] = {
            pool.submit(_pool_track, task): task for task in tasks
        }
        try:
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = futures.pop(future)
                    error = future.exception()
                    yield task, error if error is not None else future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray-address needs Ray: pip install 'samurai-tracker[eval]' (or pip install ray)"
        ) from None
    return ray


def run_ray(
    config: EvalConfig, spec: PredictorSpec, tasks: list[SequenceTask], workers: int
) -> Iterator[tuple[SequenceTask, Outcome]]:
    ray = _import_ray()
    threads = config.threads_per_worker
    started = not ray.is_initialized()
    if started and config.ray_address == "local":
        cores = max(os.cpu_count() or 1, workers * threads)
        ray.init(num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING)
    elif started:
        ray.init(address=config.ray_address, logging_level=logging.WARNING)
    try:
        gpus = (config.gpus_per_worker or 1.0) if spec.device.startswith("cuda") else 0.0
        check_ray_resources(ray.cluster_resources(), workers=workers, cpus=threads, gpus=gpus)
        actor_class = ray.remote(num_cpus=threads, num_gpus=gpus)(SequenceTracker)
        actors = [actor_class.remote(spec, threads) for _ in range(workers)]
        queue, pending = deque(tasks), {}
        for actor in actors:
            if queue:
                task = queue.popleft()
                pending[actor.track.remote(task)] = (actor, task)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            actor, task = pending.pop(ref)
            try:
                outcome: Outcome = ray.get(ref)
            except Exception as error:  # a RayTaskError wraps the worker's exception
                outcome = getattr(error, "cause", None) or error
            yield task, outcome
            if queue:
                task = queue.popleft()
                pending[actor.track.remote(task)] = (actor, task)
    finally:
        if started:
            ray.shutdown()


def check_ray_resources(
    available: Mapping[str, float], *, workers: int, cpus: float, gpus: float
) -> None:
    """Refuse actors the cluster can never place (their tasks would wait forever)."""
    for resource, each in (("CPU", cpus), ("GPU", gpus)):
        total = available.get(resource, 0.0)
        if each > 0 and workers * each > total:
            raise ValueError(
                f"{workers} workers x {each:g} {resource} exceed the Ray cluster's {total:g}: "
                f"lower --workers, or --threads / --gpus-per-worker"
            )
