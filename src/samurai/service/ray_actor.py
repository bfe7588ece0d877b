"""The service's Ray actor: one per job slot on a node, keeping its models loaded across jobs.

Nodes need not share the head's file system. The head puts a job's video into the Ray object
store (`pack_video`); the actor tracks it into a private temporary folder and returns every
output file as bytes (`RemoteResult`), which the head writes into its data folder. The actor is
threaded (two calls at once): while ``run`` tracks, the head calls ``poll`` a few times a second
to read the progress and, to cancel, to raise the stop flag that ``run``'s ``should_stop`` reads.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samurai.batch.worker import VideoPayload
from samurai.service.managers import ManagerCache, ManagerFactory
from samurai.service.schemas import JobParams

logger = logging.getLogger(__name__)

Progress = tuple[int, int | None, float]
"""(frames done, frames in all or None, frames per second)."""


@dataclass(frozen=True)
class ActorSettings:
    """What every actor is built with (picklable): the model options of ``samurai serve``."""

    checkpoints: dict[str, str]
    device: str
    dtype: str
    image_size: int | None
    threads: int


@dataclass(frozen=True)
class RemoteJob:
    """One attempt of a job, as sent to an actor.

    Attributes:
        job_id: the job.
        attempt: the store's attempt number (for logs).
        params: `JobParams` as a dict.
        video_name: the video's path on the head (results name it, as local workers do).
        video: a Ray ObjectRef to the `VideoPayload` (or the payload itself).
        checkpoint: ObjectRef to the bytes of the configured checkpoint of ``params.model``,
            sent only to actors whose node lacks that file; else None.
    """

    job_id: str
    attempt: int
    params: dict[str, Any]
    video_name: str
    video: Any
    checkpoint: Any = None


@dataclass(frozen=True)
class RemoteResult:
    """What an attempt produced: ``complete`` False when it was stopped; ``outputs`` maps each
    output kind to its path relative to the output folder, ``files`` every file's bytes."""

    complete: bool
    frames: int
    fps: float
    outputs: dict[str, str]
    files: dict[str, bytes]
    node: str


def pack_video(path: str) -> VideoPayload:
    """A stored video (a file, or a folder of frames) as bytes for a remote actor.

    Raises:
        OSError: it cannot be read.
    """
    source = Path(path)
    if source.is_dir():
        from samurai.io.frames import IMAGE_SUFFIXES

        frames = [p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        return VideoPayload(True, {p.name: p.read_bytes() for p in frames})
    return VideoPayload(False, {source.name: source.read_bytes()})


def _unpack(video: VideoPayload, folder: Path) -> Path:
    folder.mkdir()
    for name, data in video.files.items():
        (folder / Path(name).name).write_bytes(data)
    return folder if video.folder else folder / Path(next(iter(video.files))).name


def _node() -> str:
    """The Ray node id; the host name when used outside Ray."""
    import socket
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return socket.gethostname()


def _resolve(value: Any) -> Any:
    if value is None or isinstance(value, (bytes, VideoPayload)):
        return value
    import ray

    return ray.get(value)  # an ObjectRef: fetched from the head's object store


class ServiceActor:
    """Runs one job at a time (``run``); ``poll`` may be called meanwhile from another thread."""

    def __init__(self, settings: ActorSettings, factory: ManagerFactory) -> None:
        import cv2
        import torch

        torch.set_num_threads(settings.threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        cv2.setNumThreads(settings.threads)
        self.settings = settings
        self.cache = ManagerCache(
            factory,
            checkpoints=settings.checkpoints,
            device=settings.device,
            dtype=settings.dtype,
            image_size=settings.image_size,
        )
        self._lock = threading.Lock()
        self._job: str | None = None  # the job being tracked
        self._stopped: set[str] = set()  # jobs asked to stop (possibly before they started)
        self._progress: Progress = (0, None, 0.0)
        self._shipped: dict[str, Path] = {}  # variant -> checkpoint received from the head

    def ready(self) -> tuple[str, list[str]]:
        """This actor's node, and the configured checkpoints missing on it (to be shipped)."""
        missing = [v for v, p in self.settings.checkpoints.items() if not Path(p).is_file()]
        return _node(), missing

    def poll(self, job_id: str, stop: bool = False) -> Progress:
        """Job ``job_id``'s progress (zeros until it runs); ``stop`` True makes it stop after
        the current frame, or at once if it has not started (a late call for a job that ended
        is ignored: the stop names its job)."""
        with self._lock:
            if stop:
                self._stopped.add(job_id)
            return self._progress if self._job == job_id else (0, None, 0.0)

    def _report(self, done: int, total: int | None, fps: float) -> None:
        self._progress = (done, total, fps)

    def run(self, job: RemoteJob) -> RemoteResult:
        """Track one job; a ValueError is the job's fault, any other error also drops the
        variant's model (it may be in a bad state)."""
        with self._lock:
            self._job, self._progress = job.job_id, (0, None, 0.0)
            self._stopped &= {job.job_id}
        params = JobParams.from_dict(job.params)
        scratch = Path(tempfile.mkdtemp(prefix=f"samurai-job-{job.job_id}-"))
        try:
            video = _unpack(_resolve(job.video), scratch / "video")
            out = scratch / "out"
            try:
                manager = self.cache.get(params, self._checkpoint(params.model, job.checkpoint))
                summary = self._track(manager, params, video, job, out)
            except ValueError:
                raise
            except Exception:
                self.cache.drop(params.model)
                raise
            if not summary.complete:
                return RemoteResult(False, summary.num_frames, summary.fps, {}, {}, _node())
            files = {
                path.relative_to(out).as_posix(): path.read_bytes()
                for path in sorted(out.rglob("*"))
                if path.is_file()
            }
            outputs = {k: Path(p).relative_to(out).as_posix() for k, p in summary.outputs.items()}
            return RemoteResult(True, summary.num_frames, summary.fps, outputs, files, _node())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _track(
        self, manager: Any, params: JobParams, video: Path, job: RemoteJob, out: Path
    ) -> Any:
        from samurai.io.frames import open_source

        source = open_source(str(video))
        source.name = job.video_name  # masks.json names the video as the head knows it
        try:
            return manager.process_video(
                source,
                output_dir=out,
                progress=self._report,
                should_stop=lambda: job.job_id in self._stopped,
                **params.track_kwargs(),
            )
        finally:
            source.close()

    def _checkpoint(self, variant: str, shipped: Any) -> Path | None:
        """The checkpoint received from the head for ``variant`` (saved once per actor);
        None = the configured path or the node's checkpoint cache."""
        if variant in self._shipped:
            return self._shipped[variant]
        if shipped is None:
            return None
        folder = Path(tempfile.mkdtemp(prefix="samurai-weights-"))
        path = folder / f"{variant}.pt"
        path.write_bytes(_resolve(shipped))
        self._shipped[variant] = path
        return path
