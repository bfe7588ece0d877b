"""State shared by the service's routes: settings, job store, worker pool, frame cache, and the
conversions from store records to response models."""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import shutil
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool

from samurai.io.frames import IMAGE_SUFFIXES, FrameSourceError, open_source
from samurai.io.probe import read_frame
from samurai.service import uploads
from samurai.service.ownership import DataDirLock, prepare
from samurai.service.schemas import (
    RESULT_KINDS,
    ErrorOut,
    JobOut,
    JobParams,
    ServiceSettings,
    VideoOut,
)
from samurai.service.store import (
    JobRecord,
    Store,
    VideoRecord,
    is_valid_id,
    new_id,
)
from samurai.service.uploads import RequestError
from samurai.service.worker import ManagerFactory, WorkerPool

if TYPE_CHECKING:
    from samurai.service.ray_pool import RayPool

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


class ServiceState:
    """What the routes share: settings, the store, the worker pool and a small frame cache."""

    def __init__(
        self,
        settings: ServiceSettings,
        manager_factory: ManagerFactory,
        lock: DataDirLock | None = None,
    ) -> None:
        # workers and the routes must agree on result paths: one absolute data dir for all
        self.settings = dataclasses.replace(
            settings, data_dir=settings.data_dir.expanduser().resolve()
        )
        self.data_dir = self.settings.data_dir
        self.store: Store | None = None
        self.pool: WorkerPool | RayPool | None = None
        self.lock = lock
        self._factory = manager_factory
        self._frames: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._frames_lock = threading.Lock()
        self._decode_slots = threading.BoundedSemaphore(_DECODE_SLOTS)
        self.limits = uploads.VideoLimits(
            self.settings.max_frames, self.settings.max_width, self.settings.max_height
        )

    def start(self) -> None:
        """Own the data folder, check the database, re-queue orphans, start the workers.

        Raises:
            OwnershipError: another live server owns the data folder or database.
            DatabaseError: the database is damaged or cannot be written (left untouched).
        """
        if self.lock is None or not self.lock.held:
            self.lock = prepare(self.settings)
        for sub in ("videos", "jobs", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.data_dir / "tmp").iterdir():  # uploads cut off by a crash
            leftover.unlink(missing_ok=True)
        limit_heap_growth()
        self.store = Store(self.settings.db_path)
        requeued = self.store.requeue_running()
        if requeued:
            logger.info("re-queued %d job(s) left running: %s", len(requeued), requeued)
        self._remove_orphans()
        if self.settings.ray is not None:
            from samurai.service.ray_pool import RayPool

            self.pool = RayPool(self.settings, self._factory, self.store)
        else:
            self.pool = WorkerPool(self.settings, self._factory, self.store)
        self.pool.start()

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.lock is not None:
            self.lock.release()

    def _remove_orphans(self) -> None:
        """Result folders of deleted or cancelled jobs (e.g. a crash during DELETE)."""
        assert self.store is not None
        for folder in (self.data_dir / "jobs").iterdir():
            job = self.store.get_job(folder.name)
            if job is None or job.state == "cancelled":
                shutil.rmtree(folder, ignore_errors=True)

    def db(self) -> Store:
        if self.store is None:
            raise HTTPException(503, "the service is starting")
        return self.store

    def frame_jpeg(self, video: VideoRecord, frame_idx: int) -> bytes:
        key = (video.id, frame_idx)
        with self._frames_lock:
            if key in self._frames:
                self._frames.move_to_end(key)
                return self._frames[key]
        if video.width > self.settings.max_width or video.height > self.settings.max_height:
            raise HTTPException(
                413,
                f"video {video.id} is {video.width}x{video.height}; frames "
                f"are served up to {self.limits.max_width}x{self.limits.max_height}",
            )
        # one decode at a time, scaled before encoding: the API process's memory stays flat
        with self._decode_slots:
            try:
                buffer = _frame_jpeg(video.path, frame_idx, self.settings.preview_max_side)
            except (FrameSourceError, IndexError) as exc:
                detail = f"frame {frame_idx} of video {video.id} cannot be read: {exc}"
                raise HTTPException(404, detail) from exc
            finally:
                release_freed_memory()
        with self._frames_lock:
            self._frames[key] = buffer.getvalue()
            while len(self._frames) > 32:
                self._frames.popitem(last=False)
        return buffer.getvalue()

    def probe(self, path: Path, *, display_name: str, upload: bool) -> uploads.VideoMeta:
        """`uploads.probe_video` with the limits, one decode at a time, memory given back."""
        with self._decode_slots:
            try:
                return uploads.probe_video(
                    path, display_name=display_name, limits=self.limits, upload=upload
                )
            finally:
                release_freed_memory()

    def inside_data_dir(self, relative: str) -> Path:
        """A stored result path, refused if it would leave the data dir."""
        path = (self.data_dir / relative).resolve()
        if not path.is_relative_to(self.data_dir) or not path.is_file():
            raise HTTPException(404, "result file not found")
        return path


def _frame_jpeg(path: str, frame_idx: int, max_side: int) -> io.BytesIO:
    """Frame ``frame_idx`` of ``path`` as JPEG, scaled to fit ``max_side`` pixels."""
    import cv2

    if Path(path).is_file() and Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        frame = read_frame(path, frame_idx, max_side=max_side)
    else:  # a server-side frame folder
        with open_source(path) as source:
            frame = source.get(frame_idx)
    height, width = frame.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return buffer


def limit_heap_growth() -> None:
    """glibc only: serve large blocks (decoded frames) from mmap, so that freeing them gives the
    memory back to the system instead of growing the heap of each request thread for good."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        libc.mallopt(_M_ARENA_MAX, 2)


def release_freed_memory() -> None:
    """glibc only: return free heap pages to the system (``malloc_trim``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
_DECODE_SLOTS = 2


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - musl has no malloc_trim
        return libc
    except (OSError, AttributeError):
        return None


def state_of(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def job_or_404(state: ServiceState, job_id: str) -> JobRecord:
    job = state.db().get_job(job_id) if is_valid_id(job_id) else None
    if job is None:
        raise HTTPException(404, f"job {job_id!r} not found")
    return job


def video_or_404(state: ServiceState, video_id: str) -> VideoRecord:
    video = state.db().get_video(video_id) if is_valid_id(video_id) else None
    if video is None:
        raise HTTPException(404, f"video {video_id!r} not found")
    return video


def job_out(job: JobRecord, video: VideoRecord | None) -> JobOut:
    params = JobParams.from_dict(job.params)
    results = {}
    if job.state == "done" and job.outputs:
        results = {k: f"/api/jobs/{job.id}/results/{k}" for k in RESULT_KINDS if k in job.outputs}
    return JobOut(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        progress=job.progress,
        frames_done=job.frames_done,
        num_frames=job.num_frames,
        fps=job.fps,
        error=job.error,
        attempts=job.attempts,
        video_id=job.video_id,
        video_filename=video.filename if video else None,
        model=params.model,
        num_objects=params.num_objects,
        params=job.params,
        results=results,
        created=job.created,
        updated=job.updated,
    )


def video_out(video: VideoRecord) -> VideoOut:
    return VideoOut(
        id=video.id,
        filename=video.filename,
        frames=video.frames,
        width=video.width,
        height=video.height,
        fps=video.fps,
        size=video.size,
        created=video.created,
        first_frame_url=f"/api/videos/{video.id}/frames/0",
    )


async def accept_upload(state: ServiceState, form: uploads.Form) -> uploads.VideoMeta:
    """Check the uploaded file of ``form`` (still at its temporary path) as a video."""
    assert form.file is not None
    if form.file.size == 0:
        raise RequestError(400, f"the uploaded file {form.file.filename!r} is empty (0 bytes)")
    meta: uploads.VideoMeta = await run_in_threadpool(
        state.probe, form.file.path, display_name=repr(form.file.filename), upload=True
    )
    return meta


def store_upload(state: ServiceState, form: uploads.Form, meta: uploads.VideoMeta) -> VideoRecord:
    """Move a validated upload into ``videos/<id>/`` and describe it (not yet in the store)."""
    assert form.file is not None
    video_id = new_id()
    folder = state.data_dir / "videos" / video_id
    folder.mkdir(parents=True)
    path = folder / f"video{uploads.stored_suffix(form.file.filename)}"
    os.replace(form.file.path, path)
    return VideoRecord(
        video_id,
        form.file.filename,
        str(path),
        True,
        meta.frames,
        meta.width,
        meta.height,
        meta.fps,
        form.file.size,
        time.time(),
    )


def remove_video_files(state: ServiceState, video: VideoRecord) -> None:
    if video.owned:
        shutil.rmtree(state.data_dir / "videos" / video.id, ignore_errors=True)
