"""``samurai bench``: seconds per frame by component, FLOPs, GFLOP/s vs this machine's peak."""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from samurai.commands import common_options
from samurai.config import VARIANTS, resolve_variant

__all__ = ["register", "run"]

# Extra objects' boxes (xyxy) on a 960x540 frame, scaled to the video; the first object of the
# default clip is its moving ellipse.
BOXES = [[300, 0, 520, 400], [560, 180, 760, 470], [40, 200, 260, 520], [700, 20, 900, 200]]

_DESCRIPTION = """\
Measure tracking speed: seconds per frame by component (image encoder, memory attention, ...),
model GFLOP per frame, achieved GFLOP/s against this machine's matmul peak, and peak memory;
one Markdown table row per combination of --models, --dtypes, --objects and --threads.
Without --checkpoint the variant gets random weights: the speed does not depend on them.
"""

_EPILOG = """\
examples:
  samurai bench                                    # tiny model on a generated 640x360 clip
  samurai bench clip.mp4 --models sam2.1_hiera_t sam2.1_hiera_b+ --objects 1 2 4
  samurai bench --image-size 512 --dtypes float32 bfloat16 --threads 1 2
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
        help="frames to track, at least 2 (default 8); the mean leaves out the first two",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="model input size, a multiple of 32 (default 1024, as trained)",
    )
    parser.add_argument(
        "--no-samurai",
        dest="samurai",
        action="store_false",
        help="plain SAM 2 tracking (no Kalman-filter mask selection, no memory gate)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights of the one variant in --models (default: random weights)",
    )
    parser.set_defaults(handler=run)


def _check(args: argparse.Namespace) -> list[str]:
    """Every argument checked before any work; returns the canonical variant names."""
    variants = [resolve_variant(name) for name in args.models]
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
            if source.num_frames is not None and source.num_frames < 2:
                raise ValueError(f"{args.video} has {source.num_frames} frame; bench needs 2")
        return args.video, None
    from samurai.demo import DemoClip

    clip = DemoClip(args.frames)
    x, y, w, h = clip.boxes[0].tolist()
    return np.stack(list(clip.frames())), [x, y, x + w + 1, y + h + 1]


def _one(args: argparse.Namespace, row: dict[str, Any], video: Any, first: Any) -> str:
    import torch

    from samurai.api import split_overrides
    from samurai.bench import ComponentTimer, count_flops, instrument, peak_rss_mb
    from samurai.build import build_model
    from samurai.io.frames import open_source
    from samurai.tracking.predictor import VideoPredictor

    variant, dtype, objects = row["variant"], row["dtype"], row["objects"]
    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    model_cfg, tracker, samurai = split_overrides(
        variant, samurai_mode=args.samurai, overrides=overrides
    )
    model = build_model(model_cfg, args.checkpoint)
    predictor = VideoPredictor(model, tracker=tracker, samurai=samurai)
    timer = ComponentTimer()
    instrument(predictor, timer)
    model.set_compute_dtype(getattr(torch, dtype))
    state = predictor.init_video(open_source(video))
    scale = [state.video_width / 960, state.video_height / 540] * 2
    boxes = [[b * s for b, s in zip(box, scale, strict=True)] for box in BOXES]
    if first is not None:
        boxes[0] = first
    for i in range(objects):
        predictor.add_prompt(state, frame_idx=0, obj_id=i + 1, box=boxes[i])
    times = []
    start = time.perf_counter()
    for result in predictor.propagate(state, max_frames=args.frames - 1):
        now = time.perf_counter()
        if result.frame_idx > 0:
            times.append(now - start)
        start = now
    timer.restore()
    # Model FLOPs: counted in float32, where each multiply-add is done once (split bfloat16
    # GEMMs execute twice the FLOPs of the layers they run).
    model.set_compute_dtype(torch.float32)
    state.features.clear()  # count the image encoder too
    flops = count_flops(
        lambda: predictor.track_frame(state, min(args.frames, state.num_frames or args.frames) - 1)
    )
    steady = times[2:] or times
    sec = sum(steady) / max(1, len(steady))
    total = sum(timer.seconds.values()) or 1.0
    parts = ", ".join(
        f"{k} {100 * v / total:.0f}%"
        for k, v in sorted(timer.seconds.items(), key=lambda kv: -kv[1])
    )
    gflops = flops / sec / 1e9
    peak = row["peak"]
    return (
        f"| {variant} | {dtype} | {objects} | {torch.get_num_threads()} | {sec:.2f} | "
        f"{flops / 1e9:.0f} | {gflops:.0f} ({gflops / peak:.2f} of peak) | "
        f"{peak_rss_mb():.0f} | {parts} |"
    )


def run(args: argparse.Namespace) -> int:
    variants = _check(args)
    video, first = _video(args)

    import torch

    from samurai.bench import machine_summary, matmul_peak_gflops

    default_threads = torch.get_num_threads()
    print(f"machine: {machine_summary()}")
    print(f"video: {args.video or 'generated 640x360 clip (samurai.demo)'}, {args.frames} frames")
    peaks = {d: matmul_peak_gflops(getattr(torch, d)) for d in args.dtypes}
    print("matmul peak: " + ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in peaks.items()))
    print(
        "\n| model | dtype | objects | threads | s/frame | model GFLOP/frame | GFLOP/s | "
        "peak RSS MiB | time by component |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, dtype, objects, threads in itertools.product(
        variants, args.dtypes, args.objects, args.threads
    ):
        torch.set_num_threads(threads or default_threads)
        row = {"variant": variant, "dtype": dtype, "objects": objects, "peak": peaks[dtype]}
        print(_one(args, row, video, first), flush=True)
    return 0
