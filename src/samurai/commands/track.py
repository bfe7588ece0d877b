"""``samurai track VIDEO --box x,y,w,h``: track objects from first-frame prompts to files."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

from samurai.commands import (
    ProgressBar,
    add_model_options,
    common_options,
    manager_from_args,
)
from samurai.config import resolve_variant
from samurai.io.frames import FrameSourceSpec, open_source
from samurai.io.outputs import ALL_OUTPUTS

__all__ = ["parse_box", "parse_box_file", "parse_points", "register", "run"]

logger = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[,\s]+")
_DEFAULT_SAVE = "overlay,boxes,rle,scores"

_EPILOG = """\
outputs (in --out, default ./samurai_out/<video name>):
  overlay.mp4     the video with each object's mask, box and id drawn in its colour
  boxes_<id>.txt  x,y,w,h per frame, one line per frame (LaSOT / GOT-10k result form)
  masks/          one PNG per frame, pixel value = object id (0 = background)
  masks.json      COCO RLE of every object on every frame, with scores
  scores.csv      frame,object,iou,object_score,present
Files being written are named *.partial.*; an interrupted run leaves *.incomplete.*.

examples:
  samurai track clip.mp4 --box 300,0,220,400
  samurai track frames/ --box-file groundtruth.txt --save boxes --quiet
  samurai track clip.mp4 --box 10,20,50,80 --box 200,40,60,60 --save all
  samurai track clip.mp4 --points "410,200;380,90" --labels "1,0"
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "track",
        help="track objects in a video from first-frame boxes or clicks",
        description="Track objects through a video (file, JPEG/PNG folder, camera index or\n"
        "stream URL) from boxes or clicks on the start frame, writing results as they come.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    parser.add_argument("video", help="video file, frame folder, camera index or stream URL")
    prompts = parser.add_argument_group("prompts (pixels of the start frame)")
    prompts.add_argument(
        "--box",
        action="append",
        default=[],
        metavar="X,Y,W,H",
        help="an object's box; repeat for several objects (ids 1, 2, ... in order)",
    )
    prompts.add_argument(
        "--box-file",
        metavar="FILE",
        help="LaSOT / GOT-10k ground-truth file: its first line (x,y,w,h separated by commas, "
        "tabs or spaces) is the first object's box, before any --box",
    )
    prompts.add_argument(
        "--points", metavar='"X,Y;X,Y"', help="clicks for object 1 (with its box, if any)"
    )
    prompts.add_argument(
        "--labels", metavar='"1,0"', help="one label per click: 1 = object, 0 = background"
    )
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", metavar="DIR", help="output folder (default samurai_out/<video>)")
    out.add_argument(
        "--save",
        default=_DEFAULT_SAVE,
        metavar="LIST",
        help=f"comma-separated outputs among {','.join(sorted(ALL_OUTPUTS))}, or all "
        f"(default {_DEFAULT_SAVE})",
    )
    out.add_argument(
        "--absent-box",
        choices=("zero", "last", "predicted"),
        default="zero",
        help="box line while an object is absent: 0,0,0,0 (default, as the official "
        "evaluation), the last seen box, or the Kalman filter's prediction",
    )
    frames = parser.add_argument_group("frames")
    frames.add_argument(
        "--start-frame", type=int, default=0, metavar="N", help="the prompted frame (default 0)"
    )
    frames.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="track N frames after the start frame (N + 1 written, as the official "
        "max_frame_num_to_track); default: to the end",
    )
    model = add_model_options(parser)
    model.add_argument(
        "--fill-hole-area",
        type=int,
        metavar="PX",
        help="fill background holes up to this area (low-res pixels) in the masks "
        "(default 8, as the official predictor; 0 = off)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    boxes = ([parse_box_file(args.box_file)] if args.box_file else []) + [
        parse_box(text) for text in args.box
    ]
    points = labels = None
    if args.points is not None or args.labels is not None:
        points, labels = parse_points(args.points, args.labels)
    if not boxes and points is None:
        raise ValueError("nothing to track: give --box X,Y,W,H, --box-file or --points/--labels")
    save = _parse_save(args.save)
    resolve_variant(args.model)
    if args.max_frames is not None and args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 0, got {args.max_frames}")
    if args.start_frame < 0:
        raise ValueError(f"--start-frame must be >= 0, got {args.start_frame}")

    # Cheap checks first: a bad box or folder should not wait for a model download.
    from samurai.manager import default_output_dir, ensure_writable_folder, validate_prompts

    spec = _video_spec(args.video)
    source = open_source(spec)
    try:
        validate_prompts(boxes, points, labels, width=source.width, height=source.height)
        out_dir = ensure_writable_folder(
            Path(args.out) if args.out else default_output_dir(args.video)
        )
        overrides = {} if args.fill_hole_area is None else {"fill_hole_area": args.fill_hole_area}
        manager = manager_from_args(args, **overrides)
        logger.info(
            "tracking %d object(s) in %s (%dx%d, %s frames) with %s%s",
            max(len(boxes), 1),
            source.name,
            source.width,
            source.height,
            source.num_frames if source.num_frames is not None else "live",
            manager.variant,
            "" if args.samurai else " (plain SAM 2)",
        )
        with ProgressBar(quiet=args.quiet) as bar:
            summary = manager.process_video(
                source,
                boxes=boxes or None,
                points=points,
                labels=labels,
                output_dir=out_dir,
                save=save,
                absent_box=args.absent_box,
                start_frame=args.start_frame,
                max_frames=args.max_frames,
                progress=bar,
            )
    finally:
        source.close()
    lines = [
        f"tracked {summary.num_frames} frames, {len(summary.obj_ids)} object(s), "
        f"{summary.fps:.2f} frames/s; outputs in {out_dir}:"
    ]
    lines += [f"  {name:<9} {path}" for name, path in summary.outputs.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _video_spec(text: str) -> FrameSourceSpec:
    """A camera index for a bare number that is not a file, else the text itself."""
    if text.isdigit() and not Path(text).exists():
        return int(text)
    return text


def _numbers(text: str) -> list[float]:
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    return [float(p) for p in parts]


def parse_box(text: str, *, what: str = "--box") -> list[float]:
    """``"x,y,w,h"`` (commas, tabs or spaces) -> four floats.

    Raises:
        ValueError: not four numbers, or a non-positive width / height (the message names it).
    """
    try:
        box = _numbers(text)
    except ValueError:
        box = []
    if len(box) != 4:
        raise ValueError(f"malformed {what} {text!r}: expected x,y,w,h (four numbers, pixels)")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{what} {text!r} has a non-positive width or height (x,y,w,h)")
    return box


def parse_box_file(path: str | Path) -> list[float]:
    """First line of a LaSOT / GOT-10k ground-truth file (``x,y,w,h``) as four floats."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"cannot read --box-file {path}: {reason}") from exc
    if not first:
        raise ValueError(f"--box-file {path} is empty")
    return parse_box(first.strip(), what=f"first line of --box-file {path}")


def parse_points(points: str | None, labels: str | None) -> tuple[list[list[float]], list[int]]:
    """``"x,y;x,y"`` and ``"1,0"`` -> clicks and labels (same count; labels 0 or 1)."""
    if points is None or labels is None:
        raise ValueError("--points and --labels go together (one label per point)")
    clicks = []
    for item in (p for p in points.split(";") if p.strip()):
        try:
            xy = _numbers(item)
        except ValueError:
            xy = []
        if len(xy) != 2:
            raise ValueError(f"malformed point {item.strip()!r} in --points: expected x,y")
        clicks.append(xy)
    try:
        values = [int(v) for v in _SEPARATORS.split(labels.strip()) if v]
    except ValueError:
        values = []
    if not values or any(v not in (0, 1) for v in values):
        raise ValueError(f"malformed --labels {labels!r}: expected 1 (object) or 0 per point")
    if len(values) != len(clicks):
        raise ValueError(f"--points has {len(clicks)} point(s) but --labels {len(values)}")
    return clicks, values


def _parse_save(text: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if items == ["all"]:
        return sorted(ALL_OUTPUTS)
    unknown = sorted(set(items) - ALL_OUTPUTS)
    if unknown or not items:
        raise ValueError(
            f"unknown --save {', '.join(unknown) or repr(text)}; choose from "
            f"{','.join(sorted(ALL_OUTPUTS))} or all"
        )
    return items
