"""``samurai track VIDEO --box x,y,w,h``: track objects from first-frame prompts to files."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from samurai.commands import (
    ProgressBar,
    add_model_options,
    add_output_options,
    common_options,
    manager_from_args,
    tracker_from_args,
)
from samurai.config import resolve_variant
from samurai.io.frames import FrameSourceSpec, open_source
from samurai.io.outputs import ALL_OUTPUTS

__all__ = [
    "Interrupted",
    "StopSignals",
    "parse_box",
    "parse_box_file",
    "parse_points",
    "register",
    "run",
]

logger = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[,\s]+")
_MAX_IMAGE_SIZE = 4096
# Ctrl-C, `docker stop` / systemd, a closed terminal: exit codes 130, 143, 129 (128 + signal)
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

_EPILOG = """\
outputs (in --out, default ./samurai_out/<video name>):
  overlay.mp4     the video with each object's mask, box and id drawn in its colour
  boxes_<id>.txt  x,y,w,h per frame, one line per frame (LaSOT / GOT-10k result form)
  masks/          one PNG per frame, pixel value = object id (0 = background)
  masks.json      COCO RLE of every object on every frame, with scores
  scores.csv      frame,object,iou,object_score,present
Files being written are named *.partial.*. Ctrl-C, SIGTERM (docker stop, systemd) or SIGHUP
finish the frame in hand and leave *.incomplete.* files with every complete frame (exit 130,
143, 129); so does a failure such as a full disk (exit 2). Nothing gets its final name unless
the run completes.

examples:
  samurai track clip.mp4 --box 300,0,220,400
  samurai track frames/ --box-file groundtruth.txt --save boxes --quiet
  samurai track clip.mp4 --box 10,20,50,80 --box 200,40,60,60 --save all
  samurai track clip.mp4 --points "410,200;380,90" --labels "1,0"
  samurai track clip.mp4 --box 300,0,220,400 --tracker dam4sam
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
    add_output_options(
        out,
        absent_help="box line while an object is absent: 0,0,0,0 (default, as the official "
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
        "(default 8, as the official predictor; dam4sam: 0, as its code; 0 = off)",
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
    tracker_from_args(args)
    _check_numbers(args)

    # Cheap checks first: a bad box or folder should not wait for a model download.
    from samurai.manager import default_output_dir
    from samurai.track_request import new_folders, remove_empty_folders

    out_dir = Path(args.out) if args.out else default_output_dir(args.video)
    created = new_folders(out_dir)
    with StopSignals() as signals:
        try:
            return _track(args, boxes, points, labels, save, out_dir, signals)
        except Interrupted as exc:
            if signals.deferred:
                _say(f"interrupted by {exc.name}; complete frames are kept as *.incomplete")
            else:
                _say(f"interrupted by {exc.name} before tracking began; nothing was written")
            return exc.exit_code
        finally:
            remove_empty_folders(created)  # a run that wrote nothing leaves no folder


def _track(
    args: argparse.Namespace,
    boxes: list[list[float]],
    points: list[list[float]] | None,
    labels: list[int] | None,
    save: list[str],
    out_dir: Path,
    signals: StopSignals,
) -> int:
    from samurai.manager import ensure_writable_folder, validate_prompts
    from samurai.track_request import check_output_names

    source = open_source(_video_spec(args.video))
    try:
        validate_prompts(boxes, points, labels, width=source.width, height=source.height)
        check_output_names(out_dir, save, max(len(boxes), 1))
        ensure_writable_folder(out_dir)
        overrides = {} if args.fill_hole_area is None else {"fill_hole_area": args.fill_hole_area}
        manager = manager_from_args(args, **overrides)
        logger.info(
            "tracking %d object(s) in %s (%dx%d, %s frames) with %s (%s)",
            max(len(boxes), 1),
            source.name,
            source.width,
            source.height,
            source.num_frames if source.num_frames is not None else "live",
            manager.variant,
            manager.predictor.tracker_name,
        )
        signals.defer()  # from here a signal ends tracking after the frame in hand
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
                should_stop=signals.requested,
            )
    finally:
        source.close()
    if summary.complete:
        head = f"tracked {summary.num_frames} frames"
    else:
        head = f"stopped after {summary.num_frames} frames (incomplete)"
    lines = [
        f"{head}, {len(summary.obj_ids)} object(s), {summary.fps:.2f} frames/s; "
        f"outputs in {out_dir}:"
    ]
    lines += [f"  {name:<9} {path}" for name, path in summary.outputs.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    if summary.complete or signals.received is None:
        return 0
    name = signals.received.name
    _say(f"interrupted by {name} after {summary.num_frames} frames; outputs kept as *.incomplete")
    return 128 + int(signals.received)


def _check_numbers(args: argparse.Namespace) -> None:
    """Range of every numeric option, as one-line errors."""
    if args.max_frames is not None and args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 0, got {args.max_frames}")
    if args.start_frame < 0:
        raise ValueError(f"--start-frame must be >= 0, got {args.start_frame}")
    if args.fill_hole_area is not None and args.fill_hole_area < 0:
        raise ValueError(f"--fill-hole-area must be >= 0 (0 = off), got {args.fill_hole_area}")
    if args.image_size is not None and not 32 <= args.image_size <= _MAX_IMAGE_SIZE:
        raise ValueError(
            f"--image-size must be a multiple of 32 from 32 to {_MAX_IMAGE_SIZE}, "
            f"got {args.image_size}"
        )


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr may be gone after SIGHUP
        sys.stderr.write(f"samurai: {message}\n")
        sys.stderr.flush()


def _video_spec(text: str) -> FrameSourceSpec:
    """A camera index for a bare number that is not a file, else the text itself."""
    if text.isdigit() and not Path(text).exists():
        return int(text)
    return text


def _numbers(text: str) -> list[float]:
    """Finite numbers separated by commas or spaces (ValueError for anything else)."""
    numbers = [float(p) for p in _SEPARATORS.split(text.strip()) if p]
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"not finite: {text!r}")
    return numbers


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


class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the command at once (``exit_code`` = 128 + signal number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP handled alike while ``samurai track`` runs (main thread only).

    Until `defer` a signal raises `Interrupted` at once (no output written yet). After it, the
    first signal only sets `received`, which `requested` reports to the manager: the frame in
    hand is finished and the outputs are closed as ``*.incomplete``. A second signal raises at
    once. The previous handlers are put back on exit.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._deferred = False
        self._previous: dict[int, Any] = {}

    @property
    def deferred(self) -> bool:
        """Whether tracking has begun (signals now stop it after the frame in hand)."""
        return self._deferred

    def defer(self) -> None:
        self._deferred = True

    def requested(self) -> bool:
        return self.received is not None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for name in _STOP_SIGNALS:
                signum = getattr(signal, name, None)
                # an ignored signal stays ignored (nohup, a background job's SIGINT)
                if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self._deferred or self.received is not None:
            raise Interrupted(signum)
        self.received = signal.Signals(signum)
        logger.warning("%s: finishing the frame in hand, then stopping", self.received.name)
