"""``samurai bench``: seconds per frame by component, FLOPs, GFLOP/s vs this machine's peak."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from samurai.commands import TRACKER_HELP, common_options
from samurai.config import TRACKERS, VARIANTS, resolve_variant

__all__ = ["register", "run"]

# Extra objects' boxes (xyxy) on a 960x540 frame, scaled to the video; the first object of the
# default clip is its moving ellipse.
BOXES = [[300, 0, 520, 400], [560, 180, 760, 470], [40, 200, 260, 520], [700, 20, 900, 200]]

_DESCRIPTION = """\
Measure tracking speed: seconds per frame by component (image encoder, memory attention, ...),
model GFLOP per frame, achieved GFLOP/s against this machine's matmul peak, and peak memory;
one Markdown table row per combination of --models, --trackers, --dtypes, --objects and
--threads. Several --trackers are measured in the same run, frame by frame in turn (one model
each), so load from other jobs hits them alike: compare their ratios. Peak RSS is the whole
process's, all trackers of a combination together. Without --checkpoint the variant gets random
weights: the speed does not depend on them.
"""

_EPILOG = """\
examples:
  samurai bench                                    # tiny model on a generated 640x360 clip
  samurai bench clip.mp4 --models sam2.1_hiera_t sam2.1_hiera_b+ --objects 1 2 4
  samurai bench --image-size 512 --dtypes float32 bfloat16 --threads 1 2
  samurai bench --trackers samurai sam2 dam4sam --frames 8 --threads 2
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure tracking speed by component, FLOPs and achieved GFLOP/s",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    parser.add_argument(
        "video",
        nargs="?",
        help="video file or frame folder (default: the demo's generated 640x360 clip)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["sam2.1_hiera_t"],
        metavar="VARIANT",
        help=f"variants to measure (default sam2.1_hiera_t); any of: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16"],
        help="compute precisions to measure (default float32)",
    )
    parser.add_argument(
        "--objects",
        nargs="+",
        type=int,
        default=[1],
        metavar="N",
        help=f"objects tracked at once, 1 to {len(BOXES)} (default 1)",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=[0],
        metavar="N",
        help="torch threads (default 0 = torch's default)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=8,
        metavar="N",
        help="frames to track and time, at least 2 (default 8), then one more whose FLOPs are "
        "counted; the mean leaves out the first two",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="model input size, a multiple of 32 (default 1024, as trained)",
    )
    parser.add_argument(
        "--trackers",
        "--tracker",
        nargs="+",
        choices=TRACKERS,
        metavar="TRACKER",
        help=f"tracking policies to measure, frame by frame in turn (default samurai): "
        f"{TRACKER_HELP}",
    )
    parser.add_argument(
        "--no-samurai",
        dest="samurai",
        action="store_false",
        help="plain SAM 2 tracking, the same as --trackers sam2",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights of the one variant in --models (default: random weights)",
    )
    parser.set_defaults(handler=run)


def _trackers(args: argparse.Namespace) -> list[str]:
    """The policies of ``--trackers`` / ``--no-samurai`` (each once, in the order given)."""
    if args.trackers is None:
        return ["samurai" if args.samurai else "sam2"]
    trackers = list(dict.fromkeys(args.trackers))
    if not args.samurai and trackers != ["sam2"]:
        raise ValueError(
            f"--no-samurai means --trackers sam2; it contradicts --trackers {' '.join(trackers)}"
        )
    return trackers


def _check(args: argparse.Namespace) -> list[str]:
    """Every argument checked before any work; returns the canonical variant names."""
    variants = [resolve_variant(name) for name in args.models]
    _trackers(args)
    bad_objects = [n for n in args.objects if not 1 <= n <= len(BOXES)]
    if bad_objects:
        raise ValueError(f"--objects must be 1 to {len(BOXES)}, got {bad_objects[0]}")
    if any(n < 0 for n in args.threads):
        raise ValueError(f"--threads must be >= 0, got {min(args.threads)}")
    if args.frames < 2:
        raise ValueError(f"--frames must be >= 2 (frame 0 takes the prompt), got {args.frames}")
    if args.image_size is not None and (args.image_size <= 0 or args.image_size % 32):
        raise ValueError(f"--image-size must be a positive multiple of 32, got {args.image_size}")
    if args.checkpoint is not None:
        if len(set(variants)) > 1:
            raise ValueError("--checkpoint holds one variant's weights: give a single --models")
        if not Path(args.checkpoint).is_file():
            raise ValueError(f"checkpoint file not found: {args.checkpoint}")
    return variants


def _video(args: argparse.Namespace) -> tuple[Any, list[float] | None]:
    """What to open for each row (a path, or the generated clip as an array) and, for the
    generated clip, its object's first-frame box (xyxy)."""
    import numpy as np

    from samurai.io.frames import open_source

    if args.video is not None:
        with open_source(args.video) as source:  # unreadable or empty: fails here, before work
            if source.num_frames is not None and source.num_frames < 3:
                raise ValueError(f"{args.video} has {source.num_frames} frame(s); bench needs 3")
        return args.video, None
    from samurai.demo import DemoClip

    clip = DemoClip(args.frames + 1)  # + the frame whose FLOPs are counted
    x, y, w, h = clip.boxes[0].tolist()
    return np.stack(list(clip.frames())), [x, y, x + w + 1, y + h + 1]


class _Run:
    """One tracker of a combination: its own model, predictor, timer and video state."""

    def __init__(self, args: argparse.Namespace, row: dict[str, Any], tracker: str) -> None:
        import torch

        from samurai.api import split_overrides
        from samurai.bench import ComponentTimer
        from samurai.build import build_model
        from samurai.tracking.predictor import VideoPredictor

        overrides = {} if args.image_size is None else {"image_size": args.image_size}
        split = split_overrides(row["variant"], tracker=tracker, overrides=overrides)
        self.model = build_model(split.model, args.checkpoint)
        self.model.set_compute_dtype(getattr(torch, row["dtype"]))
        self.predictor = VideoPredictor.from_policy(self.model, split.policy)
        self.timer = ComponentTimer()
        self.times: list[float] = []
        self.flops = 0
        self.state: Any = None
        self._results: Any = None

    def start(self, args: argparse.Namespace, objects: int, video: Any, first: Any) -> None:
        """Open the video, prompt ``objects`` objects on frame 0 and track frame 0."""
        from samurai.io.frames import open_source

        self.state = self.predictor.init_video(open_source(video))
        scale = [self.state.video_width / 960, self.state.video_height / 540] * 2
        boxes = [[b * s for b, s in zip(box, scale, strict=True)] for box in BOXES]
        if first is not None:
            boxes[0] = first
        for i in range(objects):
            self.predictor.add_prompt(self.state, frame_idx=0, obj_id=i + 1, box=boxes[i])
        # frames 1 .. last - 1 are timed; the last one is tracked again under the FLOP counter
        # (trackers such as DAM4SAM take frames in order only: it is not re-tracked afterwards)
        self.last = min(args.frames, (self.state.num_frames or args.frames + 1) - 1)
        self.tracked = 0
        self._results = self.predictor.propagate(self.state, max_frames=self.last)
        next(self._results)  # frame 0: the prompt's output

    def step(self) -> bool:
        """Track and time one more frame; False when only the FLOP-counted frame is left."""
        if self.tracked + 1 >= self.last:
            return False
        self.tracked += 1
        start = time.perf_counter()
        next(self._results)
        self.times.append(time.perf_counter() - start)
        return True

    def count_flops(self) -> None:
        """Track the last frame under the FLOP counter."""
        import torch

        from samurai.bench import count_flops

        # Model FLOPs: counted in float32, where each multiply-add is done once (split bfloat16
        # GEMMs execute twice the FLOPs of the layers they run).
        self.model.set_compute_dtype(torch.float32)
        self.flops = count_flops(lambda: next(self._results))
        self.tracked += 1

    def row(self, row: dict[str, Any], peak_rss: float) -> str:
        """The table row (the tracker as the predictor names its own policy)."""
        import torch

        steady = self.times[2:] or self.times
        sec = sum(steady) / max(1, len(steady))
        total = sum(self.timer.seconds.values()) or 1.0
        parts = ", ".join(
            f"{k} {100 * v / total:.0f}%"
            for k, v in sorted(self.timer.seconds.items(), key=lambda kv: -kv[1])
        )
        gflops = self.flops / sec / 1e9
        peak = row["peak"]
        return (
            f"| {row['variant']} | {self.predictor.tracker_name} | {row['dtype']} | "
            f"{row['objects']} | "
            f"{torch.get_num_threads()} | {sec:.2f} | {self.flops / 1e9:.0f} | "
            f"{gflops:.0f} ({gflops / peak:.2f} of peak) | {peak_rss:.0f} | {parts} |"
        )


def _measure(
    args: argparse.Namespace, row: dict[str, Any], trackers: list[str], video: Any, first: Any
) -> list[str]:
    """One row per tracker, their frames tracked in turn: A1 B1 C1 A2 B2 C2 ..."""
    from samurai.bench import Turns, peak_rss_mb, reset_peak_rss

    runs = [_Run(args, row, tracker) for tracker in trackers]
    turns = Turns([run.predictor for run in runs], [run.timer for run in runs])
    reset_peak_rss()  # earlier rows and the matmul peak's matrices do not count
    try:
        for index, run in enumerate(runs):
            turns.turn(index)
            run.start(args, row["objects"], video, first)
        going = list(range(len(runs)))
        while going:
            for index in list(going):
                turns.turn(index)
                if not runs[index].step():
                    going.remove(index)
        # the FLOP counter's own bookkeeping would inflate the peak: read it before
        peak_rss = peak_rss_mb()
        for index, run in enumerate(runs):
            turns.turn(index)
            run.count_flops()
    finally:
        turns.restore()
    return [run.row(row, peak_rss) for run in runs]


def _gemm_backends() -> str:
    """The float32 GEMM backend this machine uses per shape class (``samurai.modeling.gemm``),
    e.g. ``narrow onednn, wide onednn, attention aten``."""
    from samurai.modeling.gemm import backend_choice

    return ", ".join(f"{kind} {backend}" for kind, backend in backend_choice().items())


def run(args: argparse.Namespace) -> int:
    variants = _check(args)
    trackers = _trackers(args)
    video, first = _video(args)

    import torch

    from samurai.bench import machine_summary, matmul_peak_gflops

    default_threads = torch.get_num_threads()
    print(f"machine: {machine_summary()}")
    name = args.video or "generated 640x360 clip (samurai.demo)"
    print(f"video: {name}, {args.frames} frames tracked, then 1 more FLOP-counted")
    peaks = {d: matmul_peak_gflops(getattr(torch, d)) for d in args.dtypes}
    gemm = []
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads or default_threads)
        gemm.append(f"{torch.get_num_threads()} threads: {_gemm_backends()}")
    torch.set_num_threads(default_threads)
    print(
        "matmul peak: "
        + ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in peaks.items())
        + "; float32 GEMM backend ("
        + "; ".join(gemm)
        + ")"
    )
    print(
        "\n| model | tracker | dtype | objects | threads | s/frame | model GFLOP/frame | "
        "GFLOP/s | peak RSS MiB | time by component |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant, dtype, objects, threads in itertools.product(
        variants, args.dtypes, args.objects, args.threads
    ):
        torch.set_num_threads(threads or default_threads)
        row = {"variant": variant, "dtype": dtype, "objects": objects, "peak": peaks[dtype]}
        for line in _measure(args, row, trackers, video, first):
            print(line, flush=True)
    return 0
