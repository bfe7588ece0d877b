"""The tracking service's FastAPI application: HTTP API, live progress (SSE) and the web page.

`create_app` builds everything from `ServiceSettings` when called (nothing happens at import);
the job store opens and the worker processes start with the app's lifespan. Every refused
request gets a 4xx response ``{"detail": "<one line naming the problem>"}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from samurai.checkpoints import is_cached
from samurai.config import VARIANTS
from samurai.service import job_routes, video_routes
from samurai.service.schemas import (
    DEFAULT_MODEL,
    HealthOut,
    ModelListOut,
    ModelOut,
    ServiceSettings,
)
from samurai.service.state import ServiceState, state_of
from samurai.service.uploads import RequestError
from samurai.service.worker import ManagerFactory, default_manager_factory

logger = logging.getLogger(__name__)

_DESCRIPTION = """Zero-shot video object tracking (SAM 2 / SAM 2.1 + SAMURAI) as a service.

1. `POST /api/jobs` with a video (`video` upload, server-side `path`, or `video_id` of an earlier
   upload) and `boxes` on its first frame -> `{"id": ...}`.
2. Follow `GET /api/jobs/{id}/events` (Server-Sent Events) or poll `GET /api/jobs/{id}`.
3. Download `GET /api/jobs/{id}/results/{overlay|boxes|rle|scores|masks}`.

Errors are JSON `{"detail": "..."}` with a 4xx status.
"""


router = APIRouter()


@router.get("/healthz", response_model=HealthOut, tags=["service"])
def healthz(request: Request) -> HealthOut:
    """Liveness: the store answers; how many workers run; job counts by state."""
    state = state_of(request)
    pool = state.pool
    return HealthOut(
        status="ok",
        workers=state.settings.workers,
        workers_alive=pool.alive() if pool else 0,
        jobs=state.db().count_jobs(),
    )


@router.get("/api/models", response_model=ModelListOut, tags=["service"])
def list_models(request: Request) -> ModelListOut:
    """Model variants; ``available`` ones need no download."""
    explicit = state_of(request).settings.checkpoints
    models = [ModelOut(name=k, available=k in explicit or is_cached(k)) for k in VARIANTS]
    return ModelListOut(default=DEFAULT_MODEL, models=models)


def _static_dir() -> Path:
    return Path(str(resources.files("samurai.service") / "static"))


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(_static_dir() / "index.html", headers={"Cache-Control": "no-cache"})


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
        detail = f"{detail.lower()}: {request.method} {request.url.path}"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("path", "query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


def create_app(
    settings: ServiceSettings, manager_factory: ManagerFactory = default_manager_factory
) -> FastAPI:
    """The service for ``settings``; workers start (and stop) with the app's lifespan.

    Args:
        settings: limits, folders, worker count and model options.
        manager_factory: builds the tracking manager in each worker process (a module-level
            function, see `samurai.service.worker.ManagerFactory`).
    """
    state = ServiceState(settings, manager_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        logger.info("data dir %s, database %s", state.data_dir, settings.db_path)
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="samurai tracking service",
        description=_DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(router)
    app.include_router(video_routes.router)
    app.include_router(job_routes.router)
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    return app
