"""Checks of a tracking request before any model work: device, dtype, outputs, prompts, folder.

Every failure is a one-line ``ValueError`` (``OSError`` for the output folder) naming the problem,
so the CLI, the demo and the service can report it without a traceback.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from samurai.io.sinks import ALL_OUTPUTS, marked_path

__all__ = [
    "DTYPES",
    "Dtype",
    "ObjectPrompt",
    "check_device",
    "check_dtype",
    "check_output_names",
    "check_save",
    "ensure_writable_folder",
    "fit_prompt",
    "new_folders",
    "object_prompts",
    "remove_empty_folders",
    "validate_prompts",
]

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's first-frame prompt: a box (x0, y0, x1, y1) and / or clicks."""

    obj_id: int
    box_xyxy: list[float] | None
    points: list[list[float]] | None
    labels: list[int] | None

    def kwargs(self) -> dict[str, Any]:
        return {"box": self.box_xyxy, "points": self.points, "labels": self.labels}


def check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {dev} requested but no CUDA GPU is available to torch")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps requested but MPS is not available to torch")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {dev}; use cpu, cuda or mps")
    return dev


def check_dtype(dtype: str, device: torch.device) -> Dtype:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if dtype == "float16" and device.type == "cpu":
        raise ValueError("float16 is not supported on the CPU; use bfloat16 or float32")
    return dtype  # type: ignore[return-value]


def check_save(save: Collection[str], overlay_path: str | Path | None) -> frozenset[str]:
    chosen = frozenset(save)
    unknown = chosen - ALL_OUTPUTS
    if unknown:
        raise ValueError(
            f"unknown output(s) {', '.join(sorted(unknown))}; choose from "
            f"{', '.join(sorted(ALL_OUTPUTS))}"
        )
    if not chosen:
        raise ValueError("nothing to save: choose at least one output")
    if overlay_path is not None and "overlay" not in chosen:
        raise ValueError("overlay_path given but the overlay is not among the outputs")
    return chosen


def _numbers(values: Sequence[float] | Any, what: str, count: int) -> list[float]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{what} must be {count} finite numbers, got {values!r}")
    return numbers


def object_prompts(
    boxes: Sequence[Sequence[float]] | None,
    points: Sequence[Sequence[float]] | None,
    labels: Sequence[int] | None,
) -> list[ObjectPrompt]:
    """One prompt per object, ids 1..N; boxes converted from x, y, w, h to x0, y0, x1, y1."""
    if (points is None) != (labels is None):
        raise ValueError("points and labels go together: one label (1 or 0) per point")
    clicks: list[list[float]] | None = None
    if points is not None and labels is not None:
        clicks = [_numbers(p, f"point {i + 1}", 2) for i, p in enumerate(points)]
        if not clicks or len(clicks) != len(labels):
            raise ValueError(f"{len(clicks)} point(s) but {len(labels)} label(s)")
        if any(label not in (0, 1) for label in labels):
            raise ValueError(f"labels must be 1 (object) or 0 (background), got {list(labels)}")
    boxes = list(boxes or [])
    if not boxes and clicks is None:
        raise ValueError("nothing to track: give at least one box or points with labels")
    prompts = []
    for i, box in enumerate(boxes or [None]):
        xyxy = None
        if box is not None:
            x, y, w, h = _numbers(box, f"box {i + 1} (x,y,w,h)", 4)
            if w <= 0 or h <= 0:
                raise ValueError(f"box {i + 1} ({_fmt(box)}) must have a positive width and height")
            xyxy = [x, y, x + w, y + h]
        first = i == 0 and clicks is not None
        prompts.append(
            ObjectPrompt(
                obj_id=i + 1,
                box_xyxy=xyxy,
                points=clicks if first else None,
                labels=[int(v) for v in labels] if first and labels is not None else None,
            )
        )
    return prompts


def validate_prompts(
    boxes: Sequence[Sequence[float]] | None,
    points: Sequence[Sequence[float]] | None,
    labels: Sequence[int] | None,
    *,
    width: int,
    height: int,
) -> None:
    """Check prompts as `InferenceManager.process_video` will, before any model is loaded.

    Raises:
        ValueError: malformed numbers, a non-positive box size, points without labels, or a
            box / point outside the ``width`` x ``height`` frame (the message names it).
    """
    for prompt in object_prompts(boxes, points, labels):
        fit_prompt(prompt, width, height, warn=False)


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{float(v):g}" for v in values)


def fit_prompt(prompt: ObjectPrompt, width: int, height: int, *, warn: bool = True) -> ObjectPrompt:
    """Reject prompts outside the frame; clip boxes that stick out of it."""
    size = f"{width}x{height}"
    box = prompt.box_xyxy
    if box is not None:
        x0, y0, x1, y1 = box
        xywh = _fmt([x0, y0, x1 - x0, y1 - y0])
        if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
            raise ValueError(f"box {prompt.obj_id} ({xywh}) lies outside the {size} frame")
        clipped = [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]
        if clipped != box and warn:
            logger.warning("box %d (%s) clipped to the %s frame", prompt.obj_id, xywh, size)
        box = clipped
    for i, (x, y) in enumerate(prompt.points or []):
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"point {i + 1} ({_fmt([x, y])}) lies outside the {size} frame")
    return ObjectPrompt(prompt.obj_id, box, prompt.points, prompt.labels)


def ensure_writable_folder(path: Path) -> Path:
    """Create ``path`` and prove it writable, or raise a one-line OSError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OSError(f"output folder {path} is not writable: {exc.strerror or exc}") from exc
    return path


def new_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: what a failed run created."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


_FRAME_PNG = re.compile(r"^\d+\.png$")


def check_output_names(
    out_dir: Path,
    save: Collection[str],
    num_objects: int,
    *,
    overlay_path: str | Path | None = None,
) -> None:
    """Refuse output names taken by something a run must not replace, before any model work.

    Raises:
        IsADirectoryError: a file output's name (final, ``.partial`` or ``.incomplete``) is a
            folder, e.g. ``boxes_1.txt/``.
        FileExistsError: the masks folder's name is a folder holding more than frame PNGs.
    """
    files = []
    if "overlay" in save:
        files.append(Path(overlay_path) if overlay_path else out_dir / "overlay.mp4")
    if "boxes" in save:
        files += [out_dir / f"boxes_{i}.txt" for i in range(1, num_objects + 1)]
    if "rle" in save:
        files.append(out_dir / "masks.json")
    if "scores" in save:
        files.append(out_dir / "scores.csv")
    for final in files:
        for path in (final, marked_path(final, "partial"), marked_path(final, "incomplete")):
            if path.is_dir():
                raise IsADirectoryError(f"output {path} is a folder; move it or choose --out")
    if "masks" in save:
        final = out_dir / "masks"
        for path in (final, marked_path(final, "partial"), marked_path(final, "incomplete")):
            try:
                names = [c.name for c in path.iterdir()] if path.is_dir() else []
            except OSError:
                names = []  # unreadable: the sink's own error names it
            if not all(_FRAME_PNG.match(name) for name in names):
                raise FileExistsError(
                    f"{path} holds files other than frame PNGs; move it or choose --out"
                )
