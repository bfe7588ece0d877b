"""Settings, request parameters and response models of the tracking service.

`ServiceSettings` is what ``samurai serve`` is started with; `JobParams` is a validated request
(`samurai.service.params.parse_job_params` makes one from the form fields); the pydantic models
document the responses on the OpenAPI page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from samurai.config import SamuraiConfig, resolve_variant
from samurai.service.ray_settings import RaySettings

ResultKind = Literal["overlay", "boxes", "rle", "scores", "masks"]
RESULT_KINDS: tuple[str, ...] = ("overlay", "boxes", "rle", "scores", "masks")
DEFAULT_MODEL = "sam2.1_hiera_t"
SAMURAI_OPTIONS: frozenset[str] = frozenset(f.name for f in fields(SamuraiConfig))
MAX_OBJECTS = 32
MAX_POINTS = 64
MAX_COORDINATE = 1e9
MAX_JSON_DEPTH = 4
"""Deepest nesting of brackets accepted in a JSON form field (``[[x, y, w, h]]`` is 2)."""
MIN_TOKEN_LENGTH = 16
LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})


def default_data_dir() -> Path:
    """``$SAMURAI_HOME/service`` (``~/.cache/samurai/service``)."""
    home = os.environ.get("SAMURAI_HOME") or "~/.cache/samurai"
    return Path(home).expanduser() / "service"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine."""
    import ipaddress

    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs; ``samurai serve`` flags map one to one onto these fields.

    Attributes:
        host: interface to bind; 127.0.0.1 keeps the service local.
        port: TCP port.
        workers: worker processes; each loads its own model and runs one job at a time.
        data_dir: uploads, results and (by default) the job database live here.
        db: SQLite file; None = ``data_dir / "jobs.db"``.
        max_upload_mb: largest accepted upload, in MiB.
        max_frames: longest accepted video, in frames.
        max_queued: most jobs waiting at once (the bounded queue); more get HTTP 429.
        allowed_roots: folders whose files may be tracked by server-side ``path``; none = off.
        checkpoints: variant -> weights file used instead of the checkpoint cache.
        image_size: model input size override (smaller is faster, changes results); None = 1024.
        device: torch device of the workers, e.g. ``cpu`` or ``cuda``.
        dtype: float32, bfloat16 or float16.
        threads_per_worker: torch CPU threads per worker; None = CPU cores / workers.
        worker_niceness: added to the workers' nice value so the API stays responsive.
        poll_interval_s: how often idle workers look for jobs and SSE streams for changes.
        token: bearer token every ``/api`` request must carry (header or the page's cookie);
            None = no authentication, allowed only on a loopback ``host``.
        allowed_hosts: ``Host`` header names accepted besides the bound host's own names;
            ``*`` turns the check off (behind a proxy that checks it).
        cors_origins: origins (``https://app.example``) allowed to call the API from their
            pages; none = CORS off, cross-origin state-changing requests refused.
        max_width: widest accepted video frame, in pixels.
        max_height: tallest accepted video frame, in pixels.
        max_megapixels: most decoded pixels per job (frames x width x height), in millions.
        preview_max_side: frames served as JPEG are scaled to fit this many pixels.
        job_lease_s: a worker renews its job's lease every quarter of this; a job whose lease
            lapses (frozen or vanished holder) goes back to the queue.
        ray: run jobs on Ray actors instead of local worker processes (``workers`` unused).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = field(default_factory=default_data_dir)
    db: Path | None = None
    max_upload_mb: float = 1024.0
    max_frames: int = 100_000
    max_queued: int = 100
    allowed_roots: tuple[Path, ...] = ()
    checkpoints: dict[str, Path] = field(default_factory=dict)
    image_size: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    threads_per_worker: int | None = None
    worker_niceness: int = 5
    poll_interval_s: float = 0.2
    token: str | None = field(default=None, repr=False)
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_width: int = 4096
    max_height: int = 4096
    max_megapixels: float = 200_000.0
    preview_max_side: int = 1920
    job_lease_s: float = 60.0
    ray: RaySettings | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_upload_mb <= 0 or self.max_frames < 1 or self.max_queued < 1:
            raise ValueError("max_upload_mb, max_frames and max_queued must be positive")
        if min(self.max_width, self.max_height, self.preview_max_side) < 1:
            raise ValueError("max_width, max_height and preview_max_side must be positive")
        if not self.max_megapixels > 0:
            raise ValueError("max_megapixels must be positive")
        if not self.job_lease_s >= 1:
            raise ValueError("job_lease_s must be at least 1 second")
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the token must have at least {MIN_TOKEN_LENGTH} characters")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"listening on {self.host} needs a token: --token-file PATH or SAMURAI_TOKEN "
                "(or bind 127.0.0.1)"
            )
        for variant in self.checkpoints:
            resolve_variant(variant)

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.data_dir / "jobs.db"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    @property
    def torch_threads(self) -> int:
        if self.threads_per_worker is not None:
            return max(1, self.threads_per_worker)
        return max(1, (os.cpu_count() or 1) // self.workers)


@dataclass(frozen=True)
class JobParams:
    """A validated tracking request (stored as JSON with the job).

    Attributes:
        model: VARIANTS key.
        boxes: one ``[x, y, w, h]`` per object (ids 1..N), pixels of the first frame, or None.
        points: ``[x, y]`` clicks on object 1 (refining ``boxes[0]`` if given), or None.
        labels: 1 (object) / 0 (background) per point.
        samurai_mode: SAMURAI motion-aware tracking (False = plain SAM 2).
        options: SAMURAI option overrides (`samurai.config.SamuraiConfig` field names).
        max_frames: track at most this many frames, None = the whole video.
        outputs: result kinds to write.
        tracker: the tracking policy (`samurai.config.TRACKERS`); agrees with samurai_mode.
    """

    model: str
    boxes: list[list[float]] | None
    points: list[list[float]] | None
    labels: list[int] | None
    samurai_mode: bool
    options: dict[str, Any]
    max_frames: int | None
    outputs: list[str]
    tracker: str = "samurai"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobParams:
        known = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        # jobs stored before the tracker option: samurai_mode alone chose the policy
        known.setdefault("tracker", "samurai" if values["samurai_mode"] else "sam2")
        return cls(**known)

    @property
    def num_objects(self) -> int:
        return max(len(self.boxes or []), 1)

    def track_kwargs(self) -> dict[str, Any]:
        """The `InferenceManager.process_video` arguments this job asks for (local workers and
        Ray actors alike)."""
        return {
            "boxes": self.boxes,
            "points": self.points,
            "labels": self.labels,
            "save": self.outputs,
            # max_frames counts the prompt frame; process_video counts the frames after it
            "max_frames": None if self.max_frames is None else self.max_frames - 1,
        }


# response models (OpenAPI documentation)


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong with the request, in one line.")


class JobCreatedOut(BaseModel):
    id: str
    video_id: str
    state: str


class JobOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(description="Fraction of frames done, 0..1.")
    frames_done: int
    num_frames: int | None
    fps: float | None = Field(description="Processing speed in frames per second.")
    error: str | None
    attempts: int = Field(description="How many times a worker started the job.")
    video_id: str
    video_filename: str | None
    model: str
    num_objects: int
    params: dict[str, Any]
    results: dict[str, str] = Field(description="Result kind -> download URL (state done).")
    created: float
    updated: float


class JobListOut(BaseModel):
    jobs: list[JobOut]


class DeletedOut(BaseModel):
    id: str
    state: str = Field(description="cancelled (was queued or running) or deleted.")


class VideoOut(BaseModel):
    id: str
    filename: str
    frames: int
    width: int
    height: int
    fps: float | None
    size: int
    created: float
    first_frame_url: str


class VideoListOut(BaseModel):
    videos: list[VideoOut]


class ModelOut(BaseModel):
    name: str
    available: bool = Field(description="Weights are on this server (no download needed).")


class ModelListOut(BaseModel):
    default: str
    models: list[ModelOut]


class HealthOut(BaseModel):
    status: str = Field(description="ok, or unavailable when jobs cannot be written.")
    writable: bool = Field(description="A job can be written to the database and data folder.")
    reason: str | None = Field(None, description="Why jobs cannot be written.")
    workers: int
    workers_alive: int
    jobs: dict[str, int]


__all__ = [
    "DEFAULT_MODEL",
    "RESULT_KINDS",
    "JobParams",
    "ServiceSettings",
]


def __getattr__(name: str) -> Any:
    """The form parsers live in `samurai.service.params` (kept importable from here)."""
    if name in ("check_in_frame", "parse_job_params", "json_depth"):
        from samurai.service import params

        return getattr(params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
