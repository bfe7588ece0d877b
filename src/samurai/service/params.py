"""The form fields of ``POST /api/jobs`` turned into a validated `JobParams`: every error a
one-line `ValueError` naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

from samurai.config import SamuraiConfig, resolve_tracker, resolve_variant, uses_samurai
from samurai.service.schemas import (
    DEFAULT_MODEL,
    MAX_COORDINATE,
    MAX_JSON_DEPTH,
    MAX_OBJECTS,
    MAX_POINTS,
    RESULT_KINDS,
    SAMURAI_OPTIONS,
    JobParams,
)

__all__ = ["check_in_frame", "json_depth", "parse_job_params", "parse_tracker"]


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
    samurai_mode, tracker = parse_tracker(form.get("tracker"), form.get("samurai_mode"))
    options = parse_options(form.get("options"))
    if options and not samurai_mode:
        raise ValueError(
            "options: SAMURAI options need samurai_mode=true (tracker samurai or samurai+dam)"
        )
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
    return JobParams(
        model, boxes, points, labels, samurai_mode, options, max_frames, outputs, tracker
    )


def parse_tracker(text: str | None, samurai_text: str | None) -> tuple[bool, str]:
    """``tracker`` (samurai, sam2, dam4sam, samurai+dam) and ``samurai_mode``: without a
    tracker, samurai_mode picks samurai (default) or sam2; with one, samurai_mode may be left
    out or must agree. Returns (samurai_mode, tracker)."""
    samurai_mode = parse_bool("samurai_mode", samurai_text, True)
    if not text:
        return samurai_mode, "samurai" if samurai_mode else "sam2"
    try:
        tracker = resolve_tracker(text)
    except ValueError as exc:
        raise ValueError(f"tracker: {exc}") from None
    if samurai_text not in (None, "") and samurai_mode != uses_samurai(tracker):
        raise ValueError(
            f"samurai_mode: {samurai_text.strip()[:10]} contradicts tracker {tracker!r} (leave "
            "samurai_mode out)"
        )
    return uses_samurai(tracker), tracker
