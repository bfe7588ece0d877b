"""``samurai serve``: the tracking service (HTTP API + web page) on uvicorn."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from samurai.commands import common_options

__all__ = ["add_arguments", "register", "run", "settings_from_args"]

logger = logging.getLogger(__name__)

_EPILOG = """\
examples:
  samurai serve                                   # http://127.0.0.1:8000/ (API docs at /docs)
  samurai serve --workers 2 --data-dir /srv/samurai --allowed-root /data/videos
  samurai serve --device cuda --checkpoint sam2.1_hiera_l=/models/large.pt

Jobs, uploads and results live in --data-dir (default $SAMURAI_HOME/service); the job database
(SQLite) survives restarts: jobs that were running are queued again.
"""


def _checkpoint(text: str) -> tuple[str, Path]:
    variant, sep, path = text.partition("=")
    if not sep or not variant or not path:
        raise argparse.ArgumentTypeError(f"expected VARIANT=PATH, got {text!r}")
    return variant, Path(path).expanduser()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (also used by ``python -m samurai.service``)."""
    if not any(a.dest == "quiet" for a in parser._actions):
        parser.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    net.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    net.add_argument(
        "--workers", type=int, default=1, help="worker processes, one job each (default 1)"
    )
    net.add_argument(
        "--threads-per-worker",
        type=int,
        metavar="N",
        help="torch CPU threads per worker (default: CPU cores / workers)",
    )
    store = parser.add_argument_group("storage and limits")
    store.add_argument(
        "--data-dir", type=Path, help="uploads and results (default $SAMURAI_HOME/service)"
    )
    store.add_argument("--db", type=Path, help="SQLite job database (default DATA_DIR/jobs.db)")
    store.add_argument(
        "--max-upload-mb", type=float, default=1024.0, help="largest upload (default 1024)"
    )
    store.add_argument(
        "--max-frames", type=int, default=100_000, help="longest video in frames (default 100000)"
    )
    store.add_argument(
        "--max-queued", type=int, default=100, help="most waiting jobs (default 100)"
    )
    store.add_argument(
        "--allowed-root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="allow jobs on server-side files under DIR (repeatable; default: none)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--checkpoint",
        type=_checkpoint,
        action="append",
        default=[],
        metavar="VARIANT=PATH",
        help="weights for a variant instead of the checkpoint cache (repeatable)",
    )
    model.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    model.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16"), help="precision"
    )
    model.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="model input size (default 1024); smaller is faster but changes results (for testing)",
    )


def settings_from_args(args: argparse.Namespace) -> Any:
    """`ServiceSettings` for parsed arguments."""
    from samurai.config import resolve_variant
    from samurai.service.schemas import ServiceSettings, default_data_dir

    checkpoints = {resolve_variant(v): p for v, p in args.checkpoint}
    for variant, path in checkpoints.items():
        if not path.is_file():
            raise ValueError(f"--checkpoint {variant}={path}: file not found")
    return ServiceSettings(
        host=args.host,
        port=args.port,
        workers=args.workers,
        data_dir=args.data_dir or default_data_dir(),
        db=args.db.expanduser().resolve() if args.db else None,
        max_upload_mb=args.max_upload_mb,
        max_frames=args.max_frames,
        max_queued=args.max_queued,
        allowed_roots=tuple(p.expanduser().resolve() for p in args.allowed_root),
        checkpoints=checkpoints,
        image_size=args.image_size,
        device=args.device,
        dtype=args.dtype,
        threads_per_worker=args.threads_per_worker,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code."""
    try:
        import uvicorn

        from samurai.service.app import create_app
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"samurai serve needs {exc.name!r}: pip install fastapi uvicorn python-multipart"
        ) from exc

    settings = settings_from_args(args)
    for root in settings.allowed_roots:
        if not root.is_dir():
            raise ValueError(f"--allowed-root {root}: not a folder")
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: the service has no authentication", settings.host)
    logger.info("http://%s:%d/ (API docs at /docs)", settings.host, settings.port)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning" if args.quiet else "info",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the tracking web service (HTTP API + web page)",
        description="Run the tracking service: upload a video, draw boxes in the browser, follow "
        "progress live, download results; or use the HTTP API (docs at /docs).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
