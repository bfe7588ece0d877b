"""Settings, request parameters and response models of the tracking service.

`ServiceSettings` is what ``samurai serve`` is started with; `parse_job_params` turns the form
fields of ``POST /api/jobs`` into a validated `JobParams` (every error a one-line `ValueError`
naming the field); the pydantic models document the responses on the OpenAPI page.
"""

from __future__ import annotations

import json
import math
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
    """

    model: str
    boxes: list[list[float]] | None
    points: list[list[float]] | None
    labels: list[int] | None
    samurai_mode: bool
    options: dict[str, Any]
    max_frames: int | None
    outputs: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobParams:
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    @property
    def num_objects(self) -> int:
        return max(len(self.boxes or []), 1)


def json_depth(text: str) -> int:
    """Deepest bracket nesting of JSON ``text`` (brackets inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json(name: str, text: str) -> Any:
    """Parse a JSON form field, refusing nesting deeper than `MAX_JSON_DEPTH` before parsing."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"{name}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at position {exc.pos})") from exc
    except (RecursionError, MemoryError):  # defence in depth: the depth check comes first
        raise ValueError(f"{name}: JSON too deeply nested or too large") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"{name}: not valid JSON ({str(exc)[:80]})") from None


def _number(name: str, value: Any) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if not bad:
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits
            bad = True
    if bad or not math.isfinite(value) or abs(value) > MAX_COORDINATE:
        shown = json.dumps(value)[:40] if not isinstance(value, int) else str(value)[:40]
        raise ValueError(f"{name}: expected a finite number of magnitude <= 1e9, got {shown}")
    return float(value)


def parse_boxes(text: str) -> list[list[float]]:
    """``boxes`` field: JSON ``[[x, y, w, h], ...]``, one box per object (ids 1..N)."""
    boxes = _json("boxes", text)
    if not isinstance(boxes, list) or not boxes:
        raise ValueError("boxes: expected a non-empty JSON list of [x, y, w, h], one per object")
    if len(boxes) > MAX_OBJECTS:
        raise ValueError(f"boxes: at most {MAX_OBJECTS} objects per job, got {len(boxes)}")
    parsed = []
    for i, box in enumerate(boxes):
        if not isinstance(box, list) or len(box) != 4:
            raise ValueError(f"boxes[{i}]: expected [x, y, w, h], got {json.dumps(box)[:60]}")
        x, y, w, h = (_number(f"boxes[{i}]", v) for v in box)
        if w <= 0 or h <= 0:
            raise ValueError(f"boxes[{i}]: width and height must be positive, got {w:g} x {h:g}")
        parsed.append([x, y, w, h])
    return parsed


def parse_points(points_text: str, labels_text: str | None) -> tuple[list[list[float]], list[int]]:
    """``points`` (JSON ``[[x, y], ...]``: clicks on object 1) and ``labels`` (JSON ``[1, 0,
    ...]``, 1 = object, 0 = background; default all 1)."""
    points = _json("points", points_text)
    if not isinstance(points, list) or not points:
        raise ValueError("points: expected a non-empty JSON list of [x, y] clicks")
    if len(points) > MAX_POINTS:
        raise ValueError(f"points: at most {MAX_POINTS} clicks, got {len(points)}")
    labels = _json("labels", labels_text) if labels_text else [1] * len(points)
    if not isinstance(labels, list) or len(labels) != len(points):
        raise ValueError(f"labels: expected a JSON list of {len(points)} labels, one per point")
    if any(isinstance(m, bool) or m not in (0, 1) for m in labels):
        raise ValueError("labels: each label is 1 (object) or 0 (background)")
    if 1 not in labels:
        raise ValueError("labels: at least one point must be on the object (label 1)")
    parsed = []
    for j, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 2:
            raise ValueError(f"points[{j}]: expected [x, y], got {json.dumps(point)[:60]}")
        parsed.append([_number(f"points[{j}]", v) for v in point])
    return parsed, [int(m) for m in labels]


def check_in_frame(params: JobParams, *, width: int, height: int) -> None:
    """Reject boxes and points outside a ``width`` x ``height`` first frame, as
    `InferenceManager.process_video` would (boxes that only stick out are clipped there)."""
    for i, (x, y, w, h) in enumerate(params.boxes or []):
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise ValueError(
                f"boxes[{i}]: [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} "
                "first frame"
            )
    for j, (x, y) in enumerate(params.points or []):
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(
                f"points[{j}]: ({x:g}, {y:g}) lies outside the {width}x{height} first frame"
            )


def parse_options(text: str | None) -> dict[str, Any]:
    """``options`` field: JSON object of SAMURAI options, e.g. ``{"kf_score_weight": 0.15}``."""
    if not text:
        return {}
    options = _json("options", text)
    if not isinstance(options, dict):
        raise ValueError('options: expected a JSON object such as {"kf_score_weight": 0.15}')
    unknown = sorted(set(options) - SAMURAI_OPTIONS)
    if unknown:
        raise ValueError(f"options: unknown {unknown}; known: {sorted(SAMURAI_OPTIONS)}")
    for key, value in options.items():
        default = getattr(SamuraiConfig(), key)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"options.{key}: expected a string")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"options.{key}: expected an integer")
        else:
            _number(f"options.{key}", value)
    return dict(options)


def parse_bool(name: str, text: str | None, default: bool) -> bool:
    if text is None or text == "":
        return default
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: expected true or false, got {text!r}")


def parse_outputs(text: str | None) -> list[str]:
    """``outputs``: comma-separated or JSON list of result kinds; default all."""
    if not text:
        return list(RESULT_KINDS)
    values = _json("outputs", text) if text.lstrip().startswith("[") else text.split(",")
    kinds = [str(v).strip() for v in values if str(v).strip()]
    unknown = sorted(set(kinds) - set(RESULT_KINDS))
    if unknown or not kinds:
        raise ValueError(f"outputs: unknown {unknown}; choose from {list(RESULT_KINDS)}")
    return [k for k in RESULT_KINDS if k in kinds]


def parse_job_params(form: dict[str, str]) -> JobParams:
    """Validate the form fields of ``POST /api/jobs`` (see `check_in_frame` for the frame).

    Raises:
        ValueError: one line naming the field and the problem.
    """
    try:
        model = resolve_variant(form.get("model") or DEFAULT_MODEL)
    except ValueError as exc:
        raise ValueError(f"model: {exc}") from exc
    boxes = parse_boxes(form["boxes"]) if form.get("boxes") else None
    points = labels = None
    if form.get("points"):
        points, labels = parse_points(form["points"], form.get("labels"))
    elif form.get("labels"):
        raise ValueError("labels: given without points")
    if boxes is None and points is None:
        raise ValueError(
            "boxes: required, a JSON list of [x, y, w, h] on the first frame (or give points)"
        )
    samurai_mode = parse_bool("samurai_mode", form.get("samurai_mode"), True)
    options = parse_options(form.get("options"))
    if options and not samurai_mode:
        raise ValueError("options: SAMURAI options need samurai_mode=true")
    max_frames = None
    if form.get("max_frames"):
        text = form["max_frames"]
        try:
            max_frames = int(text)
        except ValueError:
            raise ValueError(f"max_frames: expected an integer, got {text[:40]!r}") from None
        if not 1 <= max_frames <= 1_000_000_000:
            raise ValueError("max_frames: must be between 1 and 1e9")
    outputs = parse_outputs(form.get("outputs"))
    return JobParams(model, boxes, points, labels, samurai_mode, options, max_frames, outputs)


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
    "check_in_frame",
    "parse_job_params",
]
