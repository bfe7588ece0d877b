"""Routes under ``/api/jobs``: create, list, inspect, follow (Server-Sent Events), download
results, cancel or delete."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
import time
import zipfile
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from samurai.config import TRACKERS, VARIANTS
from samurai.service import uploads
from samurai.service.params import check_in_frame, parse_job_params
from samurai.service.schemas import (
    DEFAULT_MODEL,
    RESULT_KINDS,
    DeletedOut,
    JobCreatedOut,
    JobListOut,
    JobOut,
    ResultKind,
)
from samurai.service.state import (
    ERRORS,
    ServiceState,
    accept_upload,
    job_or_404,
    job_out,
    remove_video_files,
    state_of,
    store_upload,
    video_or_404,
)
from samurai.service.store import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    QueueFullError,
    VideoRecord,
    new_id,
)
from samurai.service.uploads import RequestError
from samurai.service.worker import job_dir

_MEDIA_TYPES = {
    "overlay": "video/mp4",
    "boxes": "text/plain",
    "rle": "application/json",
    "scores": "text/csv",
    "masks": "application/zip",
}
_FILE_NAMES = {"overlay": "overlay.mp4", "rle": "masks.json", "scores": "scores.csv"}

router = APIRouter(tags=["jobs"])


_JOB_FORM = {
    "type": "object",
    "properties": {
        "video": {"type": "string", "format": "binary", "description": "the video file"},
        "path": {"type": "string", "description": "or: a server-side file under --allowed-root"},
        "video_id": {"type": "string", "description": "or: the id of an earlier upload"},
        "boxes": {"type": "string", "description": "JSON [[x, y, w, h], ...] on frame 0"},
        "points": {"type": "string", "description": "or/and: JSON [[x, y], ...] on object 1"},
        "labels": {"type": "string", "description": "JSON [1, 0, ...] per point (default 1)"},
        "model": {"type": "string", "default": DEFAULT_MODEL, "enum": list(VARIANTS)},
        "samurai_mode": {"type": "boolean", "default": True},
        "tracker": {
            "type": "string",
            "enum": list(TRACKERS),
            "description": "tracking policy (default samurai; sam2 when samurai_mode=false)",
        },
        "options": {
            "type": "string",
            "description": 'JSON SAMURAI options {"kf_score_weight": 0.15}',
        },
        "max_frames": {"type": "integer", "description": "track at most this many frames"},
        "outputs": {"type": "string", "description": "comma list of " + ",".join(RESULT_KINDS)},
    },
}


async def _job_video(state: ServiceState, form: uploads.Form) -> tuple[VideoRecord, bool]:
    """The job's video, from exactly one of ``video``, ``path`` or ``video_id``."""
    given = [k for k in ("path", "video_id") if form.fields.get(k)]
    given += ["video"] if form.file is not None else []
    if len(given) != 1:
        raise RequestError(
            400,
            "give the video as exactly one of: video (upload), path (server-side file), "
            f"video_id (earlier upload); got {given or 'none'}",
        )
    if form.file is not None:
        meta = await accept_upload(state, form)
        return store_upload(state, form, meta), True
    if form.fields.get("video_id"):
        return video_or_404(state, form.fields["video_id"]), False
    path = uploads.resolve_allowed_path(form.fields["path"], state.settings.allowed_roots)
    meta = await run_in_threadpool(
        state.probe, path, display_name=repr(form.fields["path"]), upload=False
    )
    size = path.stat().st_size if path.is_file() else 0
    video = VideoRecord(
        new_id(),
        path.name,
        str(path),
        False,
        meta.frames,
        meta.width,
        meta.height,
        meta.fps,
        size,
        time.time(),
    )
    return video, True


def _check_pixel_budget(state: ServiceState, video: VideoRecord, max_frames: int | None) -> None:
    """Refuse a job that would decode more pixels than ``--max-megapixels`` (413)."""
    frames = video.frames if max_frames is None else min(video.frames, max_frames)
    pixels = frames * video.width * video.height
    if pixels > state.settings.max_pixels:
        allowed = state.settings.max_megapixels
        raise RequestError(
            413,
            f"the job would decode {pixels / 1e6:,.0f} megapixels ({frames} frames of "
            f"{video.width}x{video.height}); this server allows {allowed:,.0f} per job "
            "(use max_frames)",
        )


@router.post(
    "/api/jobs",
    status_code=201,
    response_model=JobCreatedOut,
    responses=ERRORS,
    tags=["jobs"],
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _JOB_FORM}}}
    },
)
async def create_job(request: Request) -> JobCreatedOut:
    """Queue a tracking job: a video plus first-frame ``boxes`` (one per object, ids 1..N)."""
    state = state_of(request)
    form = await uploads.read_form(
        request, tmp_dir=state.data_dir / "tmp", max_bytes=state.settings.max_upload_bytes
    )
    video: VideoRecord | None = None
    new_video = False
    try:
        params = parse_job_params(form.fields)
        video, new_video = await _job_video(state, form)
        check_in_frame(params, width=video.width, height=video.height)
        _check_pixel_budget(state, video, params.max_frames)
        job = await run_in_threadpool(
            state.db().add_job,
            params.to_dict(),
            video=video,
            new_video=new_video,
            max_queued=state.settings.max_queued,
        )
    except ValueError as exc:
        raise RequestError(422, str(exc)) from exc
    except QueueFullError as exc:
        raise RequestError(429, f"{exc}; try again later") from exc
    finally:
        form.discard()
        if video is not None and new_video and state.db().get_video(video.id) is None:
            remove_video_files(state, video)  # refused after the upload was moved in
    return JobCreatedOut(id=job.id, video_id=video.id, state=job.state)


@router.get("/api/jobs", response_model=JobListOut, tags=["jobs"])
def list_jobs(request: Request, limit: int = Query(200, ge=1, le=1000)) -> JobListOut:
    """Every job (newest first) with its state and progress."""
    store = state_of(request).db()
    videos = {v.id: v for v in store.list_videos()}
    return JobListOut(
        jobs=[job_out(j, videos.get(j.video_id)) for j in store.list_jobs(limit=limit)]
    )


@router.get("/api/jobs/{job_id}", response_model=JobOut, responses=ERRORS, tags=["jobs"])
def get_job(request: Request, job_id: str) -> JobOut:
    """State (queued, running, done, failed, cancelled), progress, speed, error and result URLs."""
    state = state_of(request)
    job = job_or_404(state, job_id)
    return job_out(job, state.db().get_video(job.video_id))


@router.get(
    "/api/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
    tags=["jobs"],
)
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """Server-Sent Events: ``job`` events (the `JobOut` JSON) on every change, then ``end``."""
    state = state_of(request)
    job_or_404(state, job_id)
    return StreamingResponse(
        _event_stream(request, state, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(request: Request, state: ServiceState, job_id: str) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    last, last_sent = "", time.monotonic()
    while True:
        try:
            job = await run_in_threadpool(state.db().get_job, job_id)
            video = await run_in_threadpool(state.db().get_video, job.video_id) if job else None
        except sqlite3.Error as exc:  # the response has started: end the stream, not a 500
            detail = json.dumps({"detail": f"the job database cannot be read ({exc})"})
            yield f"event: error\ndata: {detail}\n\n"
            return
        if job is None:
            yield f'event: deleted\ndata: {{"id": "{job_id}"}}\n\n'
            return
        payload = job_out(job, video).model_dump_json()
        if job.state in TERMINAL_STATES:
            yield f"event: end\ndata: {payload}\n\n"
            return
        if payload != last:
            yield f"event: job\ndata: {payload}\n\n"
            last, last_sent = payload, time.monotonic()
        elif time.monotonic() - last_sent > 15:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if await request.is_disconnected():
            return
        await asyncio.sleep(state.settings.poll_interval_s)


@router.get(
    "/api/jobs/{job_id}/results/{kind}",
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in _MEDIA_TYPES.values()}}, **ERRORS},
    tags=["jobs"],
)
def get_result(
    request: Request,
    job_id: str,
    kind: ResultKind,
    obj_id: int | None = Query(None, description="boxes: one object's file instead of a zip"),
) -> Response:
    """A result of a done job: overlay (mp4), boxes (``x,y,w,h`` per frame; zip when several
    objects), rle (COCO RLE JSON), scores (CSV), masks (zip of PNGs)."""
    state = state_of(request)
    job = job_or_404(state, job_id)
    if job.state != "done" or not job.outputs:
        raise HTTPException(409, f"job {job_id!r} is {job.state}; results exist once it is done")
    if kind not in job.outputs:
        raise HTTPException(404, f"job {job_id!r} did not save {kind!r} (outputs)")
    stem = job_id[:8]
    if kind == "boxes":
        return _boxes_response(state, job.outputs["boxes"], obj_id, stem)
    path = state.inside_data_dir(job.outputs[kind])
    name = _FILE_NAMES.get(kind, path.name)
    inline = kind == "overlay"
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES[kind],
        filename=f"{stem}_{name}",
        content_disposition_type="inline" if inline else "attachment",
    )


def _boxes_response(
    state: ServiceState, files: dict[str, str], obj_id: int | None, stem: str
) -> Response:
    if obj_id is not None or len(files) == 1:
        key = str(obj_id) if obj_id is not None else next(iter(files))
        if key not in files:
            raise HTTPException(404, f"no object {obj_id}; objects: {', '.join(files)}")
        path = state.inside_data_dir(files[key])
        return FileResponse(path, media_type="text/plain", filename=f"{stem}_boxes_{key}.txt")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, rel in files.items():
            zf.write(state.inside_data_dir(rel), f"boxes_{key}.txt")
    headers = {"Content-Disposition": f'attachment; filename="{stem}_boxes.zip"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)


@router.delete("/api/jobs/{job_id}", response_model=DeletedOut, responses=ERRORS, tags=["jobs"])
def delete_job(request: Request, job_id: str) -> DeletedOut:
    """Cancel a queued or running job (its files are removed; it stays listed as cancelled),
    or delete a finished one with its files."""
    state = state_of(request)
    job = job_or_404(state, job_id)
    previous = state.db().cancel(job.id)
    if previous is None:
        raise HTTPException(404, f"job {job_id!r} not found")
    if previous in ACTIVE_STATES:
        result = "cancelled"
    elif state.db().delete_job(job.id):
        result = "deleted"
    else:
        raise HTTPException(409, f"job {job_id!r} changed state; try again")
    # a running job's worker stops at its next check and removes what it wrote after this
    shutil.rmtree(job_dir(state.data_dir, job.id), ignore_errors=True)
    return DeletedOut(id=job.id, state=result)
