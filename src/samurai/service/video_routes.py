"""Routes under ``/api/videos``: upload a video, list them, serve frames as JPEG, delete."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from samurai.service import uploads
from samurai.service.schemas import (
    DeletedOut,
    VideoListOut,
    VideoOut,
)
from samurai.service.state import (
    ERRORS,
    accept_upload,
    remove_video_files,
    state_of,
    store_upload,
    video_or_404,
    video_out,
)
from samurai.service.uploads import RequestError

router = APIRouter(tags=["videos"])


@router.post(
    "/api/videos",
    status_code=201,
    response_model=VideoOut,
    responses=ERRORS,
    tags=["videos"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["video"],
                        "properties": {"video": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
async def upload_video(request: Request) -> VideoOut:
    """Upload a video (multipart field ``video``) to draw boxes on before starting a job."""
    state = state_of(request)
    form = await uploads.read_form(
        request, tmp_dir=state.data_dir / "tmp", max_bytes=state.settings.max_upload_bytes
    )
    try:
        if form.file is None:
            raise RequestError(400, "video: no file uploaded (multipart field 'video')")
        meta = await accept_upload(state, form)
        video = store_upload(state, form, meta)
        try:
            await run_in_threadpool(state.db().add_video, video)
        except BaseException:
            remove_video_files(state, video)
            raise
        return video_out(video)
    finally:
        form.discard()


@router.get("/api/videos", response_model=VideoListOut, tags=["videos"])
def list_videos(request: Request) -> VideoListOut:
    """Videos uploaded or tracked before, newest first."""
    return VideoListOut(videos=[video_out(v) for v in state_of(request).db().list_videos()])


@router.get("/api/videos/{video_id}", response_model=VideoOut, responses=ERRORS, tags=["videos"])
def get_video(request: Request, video_id: str) -> VideoOut:
    return video_out(video_or_404(state_of(request), video_id))


@router.get(
    "/api/videos/{video_id}/frames/{frame_idx}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
    tags=["videos"],
)
def get_frame(request: Request, video_id: str, frame_idx: int) -> Response:
    """Frame ``frame_idx`` of a video as JPEG (frame 0 is where boxes are drawn)."""
    state = state_of(request)
    video = video_or_404(state, video_id)
    if not 0 <= frame_idx < video.frames:
        raise HTTPException(404, f"frame {frame_idx} is out of range (0..{video.frames - 1})")
    jpeg = state.frame_jpeg(video, frame_idx)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.delete(
    "/api/videos/{video_id}", response_model=DeletedOut, responses=ERRORS, tags=["videos"]
)
def delete_video(request: Request, video_id: str) -> DeletedOut:
    """Forget a video (and delete the upload); refused while a queued or running job uses it."""
    state = state_of(request)
    video = video_or_404(state, video_id)
    if not state.db().delete_video(video.id):
        raise HTTPException(409, f"video {video_id!r} is used by a queued or running job")
    remove_video_files(state, video)
    return DeletedOut(id=video.id, state="deleted")
