"""Where benchmark sequences are tracked: in this process, a process pool, or Ray actors.

A worker builds its predictor once from a picklable `PredictorSpec` and tracks `SequenceTask`s
into `SequenceOutput`s; the three runners yield ``(task, output or exception)`` as sequences end.
They run on `samurai.batch.executor`, as batch tracking does: a sequence whose worker dies
(killed, out of memory, Ray node lost) runs again on another worker, up to three times.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from samurai.batch.executor import RayExecutor, WorkerFactory, run_in_process, run_processes
from samurai.batch.placement import gpu_queue, node_name, take_device

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
    """One model and the tracking loop: a process-pool worker, a Ray actor, or in-process."""

    def __init__(
        self,
        spec: PredictorSpec,
        threads: int | None,
        predictor: Any = None,
        devices: Any = None,
    ) -> None:
        """``devices``: a `gpu_queue` this worker takes its device from (local processes over
        several GPUs)."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        if devices is not None:
            spec = replace(spec, device=take_device(devices))
        self.predictor = spec.build() if predictor is None else predictor
        self.dtype = spec.dtype
        if spec.dtype == "bfloat16":  # split-bfloat16 layers, as samurai track --dtype bfloat16
            self.predictor.model.set_compute_dtype(torch.bfloat16)

    def ready(self) -> str:
        """Where this worker runs (called once when it starts)."""
        return node_name()

    def run(self, task: SequenceTask) -> SequenceOutput:
        return track_sequence(self.predictor, task, dtype=self.dtype)


Outcome = SequenceOutput | BaseException


def run_here(
    spec: PredictorSpec, tasks: list[SequenceTask], predictor: Any
) -> Iterator[tuple[SequenceTask, Outcome]]:
    """Track every sequence in this process, in order (``predictor`` if given, else built)."""
    for index, outcome in run_in_process(SequenceTracker(spec, None, predictor), tasks):
        yield tasks[index], outcome


def run_pool(
    spec: PredictorSpec, tasks: list[SequenceTask], workers: int, threads: int
) -> Iterator[tuple[SequenceTask, Outcome]]:
    """Track on ``workers`` spawned processes of ``threads`` torch threads each."""
    devices = gpu_queue(spec.device, workers)
    factory = WorkerFactory(SequenceTracker, (spec, threads), {"devices": devices})
    for index, outcome in run_processes(factory, tasks, workers=workers):
        yield tasks[index], outcome


def run_ray(
    config: EvalConfig, spec: PredictorSpec, tasks: list[SequenceTask], workers: int
) -> Iterator[tuple[SequenceTask, Outcome]]:
    """Track on ``workers`` Ray actors at ``config.ray_address`` (``local`` starts Ray here)."""
    threads = config.threads_per_worker
    gpus = (config.gpus_per_worker or 1.0) if spec.device.startswith("cuda") else 0.0
    factory = WorkerFactory(SequenceTracker, (spec, threads))
    address = str(config.ray_address)
    with RayExecutor(factory, address=address, workers=workers, cpus=threads, gpus=gpus) as ray:
        for index, outcome in ray.run(tasks):
            yield tasks[index], outcome
