"""The tracking service's FastAPI application: HTTP API, live progress (SSE) and the web page.

`create_app` builds everything from `ServiceSettings` when called (nothing happens at import);
the job store opens and the worker processes start with the app's lifespan. Every refused
request gets a 4xx response ``{"detail": "<one line naming the problem>"}``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from samurai.checkpoints import is_cached
from samurai.config import VARIANTS
from samurai.service import job_routes, video_routes
from samurai.service.ownership import DataDirLock
from samurai.service.schemas import (
    DEFAULT_MODEL,
    HealthOut,
    ModelListOut,
    ModelOut,
    ServiceSettings,
)
from samurai.service.security import Guard
from samurai.service.state import ServiceState, state_of
from samurai.service.uploads import RequestError
from samurai.service.worker import ManagerFactory, default_manager_factory

logger = logging.getLogger(__name__)

_DESCRIPTION = """Zero-shot video object tracking (SAM 2 / SAM 2.1 + SAMURAI) as a service.

1. `POST /api/jobs` with a video (`video` upload, server-side `path`, or `video_id` of an earlier
   upload) and `boxes` on its first frame -> `{"id": ...}`.
2. Follow `GET /api/jobs/{id}/events` (Server-Sent Events) or poll `GET /api/jobs/{id}`.
3. Download `GET /api/jobs/{id}/results/{overlay|boxes|rle|scores|masks}`.

Errors are JSON `{"detail": "..."}` with a 4xx status, or 503 while the job database or data
folder cannot be written. With a token configured, every `/api` request needs
`Authorization: Bearer <token>`.
"""


router = APIRouter()


@router.get(
    "/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}}, tags=["service"]
)
def healthz(request: Request) -> JSONResponse:
    """Readiness: jobs can be written (a test row in the database, a file in the data dir);
    how many workers run; job counts by state. 503 with ``reason`` when jobs cannot be written."""
    state = state_of(request)
    pool = state.pool
    reason = state.db().check_writable() or _data_dir_unwritable(state.data_dir)
    try:
        jobs = state.db().count_jobs()
    except sqlite3.Error as exc:
        jobs, reason = {}, reason or f"the job database cannot be read: {exc}"
    health = HealthOut(
        status="ok" if reason is None else "unavailable",
        writable=reason is None,
        reason=reason,
        workers=pool.capacity() if pool else state.settings.workers,
        workers_alive=pool.alive() if pool else 0,
        jobs=jobs,
    )
    return JSONResponse(health.model_dump(), status_code=200 if reason is None else 503)


def _data_dir_unwritable(data_dir: Path) -> str | None:
    probe = data_dir / "tmp" / f".health-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.write_bytes(b"ok")
    except OSError as exc:
        return f"the data folder {data_dir} cannot be written: {exc.strerror or exc}"
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


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


MAX_DETAIL = 300
"""Longest error detail sent back (details may quote the client's input)."""


def _detail(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return JSONResponse({"detail": _detail(exc.detail)}, status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
        detail = f"{detail.lower()}: {request.method} {request.url.path}"
    return JSONResponse(
        {"detail": _detail(detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The job database failed under a request (read-only, disk full, I/O error): 503."""
    assert isinstance(exc, sqlite3.Error)
    logger.error("%s %s: job database error: %s", request.method, request.url.path, exc)
    detail = f"the job database cannot be used right now ({exc}); try again later"
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "10"})


async def _disk_error(request: Request, exc: Exception) -> JSONResponse:
    """The data folder failed under a request (read-only, disk full): 503."""
    assert isinstance(exc, OSError)
    logger.error("%s %s: data folder error: %s", request.method, request.url.path, exc)
    detail = f"the data folder cannot be written right now ({exc.strerror or exc}); try later"
    return JSONResponse({"detail": _detail(detail)}, status_code=503, headers={"Retry-After": "10"})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("path", "query", "body"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return JSONResponse({"detail": _detail("; ".join(parts) or "invalid request")}, status_code=422)


def create_app(
    settings: ServiceSettings,
    manager_factory: ManagerFactory = default_manager_factory,
    *,
    lock: DataDirLock | None = None,
) -> FastAPI:
    """The service for ``settings``; workers start (and stop) with the app's lifespan.

    Args:
        settings: limits, folders, worker count, access control and model options.
        manager_factory: builds the tracking manager in each worker process (a module-level
            function, see `samurai.service.worker.ManagerFactory`).
        lock: the data folder's lock when the caller took it already (`ownership.prepare`);
            otherwise it is taken when the app starts.
    """
    state = ServiceState(settings, manager_factory, lock)

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
    app.add_exception_handler(sqlite3.Error, _database_error)
    app.add_exception_handler(OSError, _disk_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Guard, settings=settings)  # added last: runs first
    app.include_router(router)
    app.include_router(video_routes.router)
    app.include_router(job_routes.router)
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")
    return app
