"""Batch manifests: one tracking job per line of a JSONL file or per row of a CSV file.

Keys (JSONL) or columns (CSV, with a header row); every key but ``video`` is optional:

- ``video``: video file, JPEG/PNG folder or stream URL; relative paths are relative to the
  manifest's folder.
- ``id``: the job's name and output folder (``<out>/<id>``); default: the video's stem.
- ``box``: ``x,y,w,h`` (pixels of the start frame); several boxes separated by ``;``.
  JSONL also takes ``[x, y, w, h]`` and ``boxes``: a list of boxes.
- ``box_file``: LaSOT / GOT-10k ground-truth file whose first line is the first object's box.
- ``points`` / ``labels``: clicks for object 1, ``"x,y;x,y"`` and ``"1,0"`` (JSONL: lists too).
- ``save``, ``absent_box``, ``start_frame``, ``max_frames``: as the ``samurai track`` options,
  overriding the batch's defaults for this video.

A malformed manifest is refused as a whole with one line naming the file, the line and the
problem; a video that cannot be read fails only its own job, when it runs.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samurai.io.outputs import ALL_OUTPUTS

__all__ = ["BatchJob", "JobOptions", "load_manifest", "parse_jobs"]

_KEYS = frozenset(
    {
        "video", "id", "box", "boxes", "box_file", "points", "labels",
        "save", "absent_box", "start_frame", "max_frames",
    }
)  # fmt: skip
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_ABSENT = ("zero", "last", "predicted")


@dataclass(frozen=True)
class JobOptions:
    """Per-video options of the ``samurai track`` form (the batch default unless a job sets them).

    Attributes:
        save: outputs among ``overlay``, ``boxes``, ``masks``, ``rle``, ``scores``.
        absent_box: box line of frames where an object is absent: ``zero``, ``last``,
            ``predicted``.
        start_frame: the prompted frame.
        max_frames: frames tracked after the start frame; None = to the end.
    """

    save: tuple[str, ...] = ("overlay", "boxes", "rle", "scores")
    absent_box: str = "zero"
    start_frame: int = 0
    max_frames: int | None = None


@dataclass(frozen=True)
class BatchJob:
    """One video to track (picklable: it travels to worker processes and Ray actors).

    Attributes:
        job_id: name of the job and of its output folder.
        video: absolute path of a file or frame folder, or a URL.
        boxes: one ``(x, y, w, h)`` box per object (ids 1..N), pixels of the start frame.
        points: ``(x, y)`` clicks for object 1, or None.
        labels: one label per click (1 object, 0 background), or None.
        options: outputs and frame range.
        line: manifest line (for messages).
    """

    job_id: str
    video: str
    boxes: tuple[tuple[float, ...], ...]
    points: tuple[tuple[float, ...], ...] | None = None
    labels: tuple[int, ...] | None = None
    options: JobOptions = JobOptions()
    line: int = field(default=0, compare=False)

    @property
    def is_url(self) -> bool:
        return bool(_URL.match(self.video))


def load_manifest(path: str | Path, defaults: JobOptions | None = None) -> list[BatchJob]:
    """Read a ``.jsonl`` / ``.csv`` manifest (by suffix; other suffixes: sniffed) into jobs.

    Raises:
        ValueError: unreadable file, malformed line, unknown key, duplicate id, no jobs
            (one line: ``<manifest>:<line>: <problem>``).
    """
    manifest = Path(path)
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read manifest {manifest}: {_reason(exc)}") from exc
    is_json = manifest.suffix.lower() in (".jsonl", ".json", ".ndjson") or (
        manifest.suffix.lower() != ".csv" and text.lstrip().startswith("{")
    )
    rows = _json_rows(manifest, text) if is_json else _csv_rows(manifest, text)
    return parse_jobs(rows, base=manifest.parent, defaults=defaults, source=str(manifest))


def parse_jobs(
    rows: Sequence[tuple[int, dict[str, Any]]],
    *,
    base: Path,
    defaults: JobOptions | None = None,
    source: str = "manifest",
) -> list[BatchJob]:
    """``(line, mapping)`` rows -> jobs; relative video / box-file paths are taken from ``base``."""
    jobs: list[BatchJob] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            job = _job(row, base, defaults or JobOptions(), line)
        except ValueError as exc:
            raise ValueError(f"{source}:{line}: {exc}") from None
        if job.job_id in seen:
            raise ValueError(
                f"{source}:{line}: job id {job.job_id!r} is also on line {seen[job.job_id]}; "
                "give each video its own id"
            )
        seen[job.job_id] = line
        jobs.append(job)
    if not jobs:
        raise ValueError(f"{source}: no jobs (expected one video per line)")
    return jobs


def _json_rows(manifest: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{manifest}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{manifest}:{number}: expected a JSON object per line")
        rows.append((number, row))
    return rows


def _csv_rows(manifest: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    if "video" not in header:
        raise ValueError(f"{manifest}:1: the CSV header has no 'video' column (got {header})")
    reader.fieldnames = header
    rows = []
    for row in reader:
        number = reader.line_num
        if None in row:
            raise ValueError(f"{manifest}:{number}: more cells than header columns")
        cells = {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
        if cells:
            rows.append((number, cells))
    return rows


def _job(row: dict[str, Any], base: Path, defaults: JobOptions, line: int) -> BatchJob:
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r}; expected some of: {', '.join(sorted(_KEYS))}"
        )
    video = row.get("video")
    if not isinstance(video, str) or not video.strip():
        raise ValueError("'video' (a path or URL) is missing")
    video = video.strip()
    if not _URL.match(video):
        video = str((base / video).absolute())
    boxes = _boxes(row, base)
    points = labels = None
    if "points" in row or "labels" in row:
        points, labels = _clicks(row.get("points"), row.get("labels"))
    if not boxes and points is None:
        raise ValueError("nothing to track: give box, boxes, box_file or points/labels")
    job_id = str(row.get("id") or _default_id(video)).strip()
    if not _SAFE_ID.match(job_id) or job_id in (".", ".."):
        raise ValueError(f"id {job_id!r} is not a plain folder name (letters, digits, ._+-)")
    return BatchJob(
        job_id=job_id,
        video=video,
        boxes=tuple(tuple(b) for b in boxes),
        points=None if points is None else tuple(tuple(p) for p in points),
        labels=None if labels is None else tuple(labels),
        options=_options(row, defaults),
        line=line,
    )


def _boxes(row: dict[str, Any], base: Path) -> list[list[float]]:
    from samurai.commands.track import parse_box, parse_box_file

    boxes: list[list[float]] = []
    if "box_file" in row:
        path = Path(str(row["box_file"]))
        boxes.append(parse_box_file(path if path.is_absolute() else base / path))
    for key in ("box", "boxes"):
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            items: list[Any] = [part for part in value.split(";") if part.strip()]
        elif key == "box" and _is_numbers(value):
            items = [value]
        elif isinstance(value, list):
            items = value
        else:
            raise ValueError(f"malformed {key} {value!r}: expected x,y,w,h")
        for item in items:
            text = ",".join(map(str, item)) if isinstance(item, list) else str(item)
            boxes.append(parse_box(text, what=key))
    return boxes


def _clicks(points: Any, labels: Any) -> tuple[list[list[float]], list[int]]:
    from samurai.commands.track import parse_points

    if isinstance(points, list):
        points = ";".join(",".join(map(str, p)) if isinstance(p, list) else str(p) for p in points)
    if isinstance(labels, list):
        labels = ",".join(map(str, labels))
    try:
        return parse_points(points, labels)
    except ValueError as exc:
        message = str(exc).replace("--points", "points").replace("--labels", "labels")
        raise ValueError(message) from None


def _options(row: dict[str, Any], defaults: JobOptions) -> JobOptions:
    options = defaults
    if "save" in row:
        options = replace(options, save=parse_save(row["save"]))
    if "absent_box" in row:
        if row["absent_box"] not in _ABSENT:
            raise ValueError(f"absent_box must be one of {', '.join(_ABSENT)}")
        options = replace(options, absent_box=str(row["absent_box"]))
    for key in ("start_frame", "max_frames"):
        if key in row:
            options = replace(options, **{key: _count(row[key], key)})
    return options


def parse_save(value: str | Collection[str]) -> tuple[str, ...]:
    """``"boxes,rle"``, ``["boxes", "rle"]`` or ``"all"`` -> output names (ValueError: unknown)."""
    items = [s.strip() for s in (value.split(",") if isinstance(value, str) else value)]
    items = [s for s in items if s]
    if items == ["all"]:
        return tuple(sorted(ALL_OUTPUTS))
    unknown = sorted(set(items) - ALL_OUTPUTS)
    if unknown or not items:
        raise ValueError(
            f"unknown save {', '.join(unknown) or repr(value)}; choose from "
            f"{','.join(sorted(ALL_OUTPUTS))} or all"
        )
    return tuple(dict.fromkeys(items))


def _count(value: Any, key: str) -> int:
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{key} must be >= 0, got {number}")
    return number


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)


def _default_id(video: str) -> str:
    name = video.rstrip("/").rsplit("/", 1)[-1]
    if _URL.match(video):
        name = name.split("?", 1)[0]
    return Path(name).stem or "video"


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
