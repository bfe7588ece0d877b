"""A batch worker: one `InferenceManager` (built once) tracking jobs to files.

Two kinds of task reach it:

- `LocalTask` (this machine, a process pool): the worker writes straight into ``<out>/<id>``
  exactly as ``samurai track`` does (``*.partial`` files renamed when complete).
- `ShippedTask` (a Ray node that may not share the head's file system): the video arrives as
  bytes (`VideoPayload`, through the Ray object store), the worker tracks into a private
  temporary folder and sends every output file back as bytes; the head writes them
  (`write_shipped`) under the same ``.partial`` -> final naming.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samurai.batch.manifest import BatchJob
from samurai.batch.placement import node_name, take_device

__all__ = [
    "BatchWorker",
    "JobReport",
    "LocalTask",
    "ManagerSpec",
    "ShippedTask",
    "VideoPayload",
    "pack_video",
    "write_shipped",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerSpec:
    """What a worker needs to build its `InferenceManager` (picklable).

    Attributes:
        variant: VARIANTS key.
        checkpoint: weights file readable on every node at this path; None = each node's
            checkpoint cache (downloaded there when missing).
        device: torch device of the workers.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        samurai_mode: SAMURAI selection and memory (False: plain SAM 2); read only when
            ``tracker`` is None.
        random_weights: untrained weights (a trial only: meaningless outputs).
        overrides: official config names (``image_size``, ``fill_hole_area``, ...).
        tracker: the tracking policy, one of `samurai.config.TRACKERS`; None = ``samurai``
            or ``sam2`` as ``samurai_mode`` says.
    """

    variant: str = "sam2.1_hiera_t"
    checkpoint: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    samurai_mode: bool = True
    random_weights: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    tracker: str | None = None

    def __post_init__(self) -> None:
        from samurai.config import resolve_tracker

        if self.tracker is not None:  # canonical name, so journals compare equal
            object.__setattr__(self, "tracker", resolve_tracker(self.tracker))

    @property
    def tracker_name(self) -> str:
        """The resolved policy: ``tracker``, else ``samurai`` / ``sam2`` by ``samurai_mode``."""
        return self.tracker or ("samurai" if self.samurai_mode else "sam2")

    def build(self) -> Any:
        from samurai.manager import InferenceManager

        return InferenceManager(
            self.variant,
            self.checkpoint,
            device=self.device,
            dtype=self.dtype,  # type: ignore[arg-type]
            tracker=self.tracker_name,
            random_weights=self.random_weights,
            download_progress=False,
            **self.overrides,
        )


@dataclass(frozen=True)
class VideoPayload:
    """A video's files as bytes: one file, or the frames of a folder (name -> bytes)."""

    folder: bool
    files: dict[str, bytes]


@dataclass(frozen=True)
class LocalTask:
    """Track ``job`` into ``out_dir / job.job_id`` on a shared file system."""

    job: BatchJob
    out_dir: str


@dataclass(frozen=True)
class ShippedTask:
    """Track ``job`` from shipped bytes; ``video`` is a `VideoPayload`, a Ray ObjectRef to one,
    or None for a URL the worker opens itself."""

    job: BatchJob
    video: Any = None


@dataclass(frozen=True)
class JobReport:
    """A finished job.

    Attributes:
        job_id: the job.
        frames: frames tracked.
        seconds: wall-clock seconds of the job on the worker (model load excluded).
        outputs: output names written (``overlay.mp4``, ``boxes_1.txt``, ``masks``, ...).
        node: where it ran (host name, or the Ray node id).
        files: a shipped job's outputs, relative path -> bytes (None when written in place).
        tracker: the tracking policy that ran (the worker's predictor says), or None.
    """

    job_id: str
    frames: int
    seconds: float
    outputs: tuple[str, ...]
    node: str
    files: dict[str, bytes] | None = None
    tracker: str | None = None


class BatchWorker:
    """One model, many jobs: a process-pool worker's state, a Ray actor, or in-process."""

    def __init__(
        self,
        spec: ManagerSpec,
        threads: int | None = None,
        manager: Any = None,
        devices: Any = None,
    ) -> None:
        """``devices``: a queue of device names (``cuda:0``, ``cuda:1``, ...) this worker takes
        one from: local processes spread over several GPUs (Ray assigns GPUs itself)."""
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        if devices is not None:
            spec = replace(spec, device=take_device(devices))
        self.manager = spec.build() if manager is None else manager

    def ready(self) -> str:
        """Where this worker runs (called once when it starts)."""
        return node_name()

    def run(self, task: LocalTask | ShippedTask) -> JobReport:
        if isinstance(task, LocalTask):
            return self._track(task.job, Path(task.out_dir) / task.job.job_id, task.job.video)
        video = task.video
        if video is not None and not isinstance(video, VideoPayload):
            import ray

            video = ray.get(video)  # an ObjectRef: fetched from the head's object store
        scratch = Path(tempfile.mkdtemp(prefix=f"samurai-batch-{task.job.job_id}-"))
        try:
            source = task.job.video if video is None else _unpack(video, task.job, scratch)
            out = scratch / "out"
            report = self._track(task.job, out, source)
            files = {
                str(path.relative_to(out)): path.read_bytes()
                for path in sorted(out.rglob("*"))
                if path.is_file()
            }
            return replace(report, files=files)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _track(self, job: BatchJob, out: Path, video: str) -> JobReport:
        from samurai.io.frames import open_source

        options = job.options
        started = time.perf_counter()
        source = open_source(video)
        source.name = job.video  # masks.json names the video as given, wherever it was read
        try:
            summary = self.manager.process_video(
                source,
                boxes=[list(b) for b in job.boxes] or None,
                points=None if job.points is None else [list(p) for p in job.points],
                labels=None if job.labels is None else list(job.labels),
                output_dir=out,
                save=options.save,
                absent_box=options.absent_box,
                start_frame=options.start_frame,
                max_frames=options.max_frames,
            )
        finally:
            source.close()
        outputs = tuple(sorted(Path(p).name for p in summary.outputs.values()))
        seconds = time.perf_counter() - started
        return JobReport(
            job.job_id, summary.num_frames, seconds, outputs, node_name(), tracker=summary.tracker
        )


def pack_video(job: BatchJob) -> VideoPayload | None:
    """The job's video as bytes for a remote worker (None for URLs, opened by the worker).

    Raises:
        OSError: the file or folder cannot be read.
    """
    if job.is_url:
        return None
    path = Path(job.video)
    if path.is_dir():
        from samurai.io.frames import IMAGE_SUFFIXES

        frames = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        return VideoPayload(True, {p.name: p.read_bytes() for p in frames})
    return VideoPayload(False, {path.name: path.read_bytes()})


def _unpack(video: VideoPayload, job: BatchJob, scratch: Path) -> str:
    folder = scratch / "video"
    folder.mkdir()
    for name, data in video.files.items():
        (folder / name).write_bytes(data)
    return str(folder if video.folder else folder / next(iter(video.files)))


def write_shipped(report: JobReport, out_dir: Path) -> None:
    """Write a shipped job's files into ``out_dir``: each output as ``.partial``, then renamed.

    Every output is staged before any is renamed, so a failure (disk full) leaves no final name.
    """
    from samurai.io.staging import Staged, writing

    assert report.files is not None
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for rel, data in report.files.items():
        top, _, rest = rel.partition("/")
        groups.setdefault(top, []).append((rest, data))
    staged = []
    for top, items in sorted(groups.items()):
        folder = any(rest for rest, _ in items)
        stage = Staged(out_dir / top, folder=folder)
        partial = stage.start()
        with writing(partial):
            if folder:
                partial.mkdir()
            for rest, data in items:
                target = partial / rest if folder else partial
                with open(target, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
        staged.append(stage)
    for stage in staged:
        stage.finish(True)
