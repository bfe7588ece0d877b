"""``samurai serve``: the tracking service (HTTP API + web page) on uvicorn."""

from __future__ import annotations

import argparse
import json
import logging
import os
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
  SAMURAI_TOKEN=$(cat ~/.samurai-token) samurai serve --host 0.0.0.0 --allowed-host gpu1.lab
  samurai serve --ray-address auto --device cuda --gpus-per-job 1   # jobs on a Ray cluster

Jobs, uploads and results live in --data-dir (default $SAMURAI_HOME/service); the job database
(SQLite) survives restarts: jobs that were running are queued again. One server owns a data
folder at a time. Listening beyond 127.0.0.1 needs a token (--token-file or SAMURAI_TOKEN);
see docs/service.md for the security model and running behind a TLS reverse proxy. With
--ray-address, jobs run on Ray actors (videos and results travel through Ray; the database and
results stay here): see docs/cluster.md.
"""


def _resolution(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 4096x4096, got {text!r}")
    return int(width), int(height)


def read_token(token_file: Path | None) -> str | None:
    """The token from ``token_file`` (first line) or ``$SAMURAI_TOKEN``; None when neither."""
    if token_file is None:
        return os.environ.get("SAMURAI_TOKEN", "").strip() or None
    try:
        token = token_file.expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"--token-file {token_file}: {reason}") from None
    if not token or "\n" in token:
        raise ValueError(f"--token-file {token_file}: expected one line holding the token")
    if token_file.stat().st_mode & 0o077:
        logger.warning("--token-file %s can be read by other users (chmod 600 it)", token_file)
    return token


def _checkpoint(text: str) -> tuple[str, Path]:
    variant, sep, path = text.partition("=")
    if not sep or not variant or not path:
        raise argparse.ArgumentTypeError(f"expected VARIANT=PATH, got {text!r}")
    return variant, Path(path).expanduser()


def _resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as {{"a100": 1}}, got {text!r}'
        )
    return {str(k): float(v) for k, v in value.items()}


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    ray = parser.add_argument_group("Ray cluster (docs/cluster.md)")
    ray.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run jobs on Ray actors: auto, HOST:PORT, ray://HOST:10001, or local (a Ray "
        "instance started with the server); --workers is then unused",
    )
    ray.add_argument(
        "--gpus-per-job",
        type=float,
        metavar="G",
        help="GPUs each Ray actor asks for with --device cuda (default 1; 0.5 shares a GPU)",
    )
    ray.add_argument(
        "--max-jobs-per-node",
        type=int,
        metavar="K",
        help="most jobs at once per Ray node (default: as many as its CPUs / GPUs hold, "
        "--threads-per-worker CPUs each)",
    )
    ray.add_argument(
        "--ray-resources",
        type=_resources,
        metavar="JSON",
        help="custom Ray resources per actor, e.g. '{\"a100\": 1}', to use only nodes having them",
    )
    ray.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="a job whose Ray actor dies N times (node lost, out of memory) fails (default 3)",
    )


def _ray_settings(args: argparse.Namespace) -> Any:
    """`RaySettings` for ``--ray-address`` (None without it)."""
    from samurai.service.ray_settings import RaySettings

    ray_only = ("gpus_per_job", "max_jobs_per_node", "ray_resources")
    if args.ray_address is None:
        given = [name for name in ray_only if getattr(args, name) is not None]
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} needs --ray-address")
        return None
    cuda = args.device.startswith("cuda")
    if args.device.startswith("cuda:"):
        raise ValueError(f"--device {args.device}: with --ray-address use cuda (Ray picks the GPU)")
    if args.gpus_per_job and not cuda:
        raise ValueError("--gpus-per-job needs --device cuda")
    return RaySettings(
        address=args.ray_address,
        cpus_per_job=float(args.threads_per_worker or 1),
        gpus_per_job=(1.0 if args.gpus_per_job is None else args.gpus_per_job) if cuda else 0.0,
        max_jobs_per_node=args.max_jobs_per_node,
        resources=args.ray_resources or {},
        max_attempts=args.max_attempts,
    )


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
    access = parser.add_argument_group("access")
    access.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding the bearer token every /api request needs (or set SAMURAI_TOKEN); "
        "required unless --host is a loopback address",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept requests whose Host header names NAME, e.g. the name a reverse proxy "
        "serves (repeatable; '*' turns the Host check off)",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of ORIGIN (https://app.example) call the API (repeatable; default: "
        "CORS off, cross-origin writes refused)",
    )
    net.add_argument(
        "--threads-per-worker",
        type=int,
        metavar="N",
        help="torch CPU threads per worker (default: CPU cores / workers; on Ray: 1), the CPUs "
        "a Ray actor asks for",
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
        "--job-lease",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a running job whose worker stops renewing its lease this long (frozen, hung) "
        "goes back to the queue (default 60)",
    )
    store.add_argument(
        "--max-resolution",
        type=_resolution,
        default=(4096, 4096),
        metavar="WxH",
        help="largest frame size accepted, checked from the container (default 4096x4096)",
    )
    store.add_argument(
        "--max-megapixels",
        type=float,
        default=200_000.0,
        metavar="N",
        help="most decoded pixels per job, frames x width x height, in millions (default 200000)",
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
    _add_ray_arguments(parser)


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
        token=read_token(args.token_file),
        allowed_hosts=tuple(args.allowed_host),
        cors_origins=tuple(args.cors_origin),
        max_width=args.max_resolution[0],
        max_height=args.max_resolution[1],
        max_megapixels=args.max_megapixels,
        job_lease_s=args.job_lease,
        ray=_ray_settings(args),
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit code."""
    try:
        import uvicorn

        from samurai.service.app import create_app
        from samurai.service.ownership import prepare
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"samurai serve needs {exc.name!r}: pip install fastapi uvicorn python-multipart"
        ) from exc

    settings = settings_from_args(args)
    for root in settings.allowed_roots:
        if not root.is_dir():
            raise ValueError(f"--allowed-root {root}: not a folder")
    lock = prepare(settings)  # before anything touches a job: one owner, a sound database
    try:
        if settings.ray is not None:  # here, not in the app: a bad address is one line at once
            from samurai.batch.executor import connect_ray

            connect_ray(settings.ray.address, cpus=int(settings.ray.cpus_per_job))
        logger.info("http://%s:%d/ (API docs at /docs)", settings.host, settings.port)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, lock=lock),
                host=settings.host,
                port=settings.port,
                log_level="warning" if args.quiet else "info",
                access_log=False,
                timeout_graceful_shutdown=3,
            )
        )
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly
            logger.info("stopped")
            return 0
        if not server.started:
            raise OSError(f"the server could not start on {settings.host}:{settings.port}")
    finally:
        lock.release()
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
