"""``samurai bench``: seconds per frame by component, FLOPs, GFLOP/s vs this machine's peak."""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

from samurai.commands import common_options

DEFAULT_FRAMES = (
    Path(os.environ.get("SAMURAI_REFERENCE", "../shared/reference")) / "frames" / "bedroom"
)
BOXES = [[300, 0, 520, 400], [560, 180, 760, 470], [40, 200, 260, 520], [700, 20, 900, 200]]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure tracking speed by component, FLOPs and achieved GFLOP/s",
        parents=[common_options()],
        description=__doc__,
    )
    parser.add_argument("video", nargs="?", help="video or frame folder (default: bedroom frames)")
    parser.add_argument("--models", nargs="+", default=["sam2.1_hiera_t"], metavar="VARIANT")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    parser.add_argument("--objects", nargs="+", type=int, default=[1], metavar="N")
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=[0],
        metavar="N",
        help="torch threads (0 = default)",
    )
    parser.add_argument("--frames", type=int, default=8, help="frames to track (default 8)")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--no-samurai", dest="samurai", action="store_false")
    parser.add_argument("--checkpoint", help="weights (default: random weights of the variant)")
    parser.set_defaults(handler=run)


def _frames(args: argparse.Namespace) -> Any:
    from samurai.io.frames import ImageFolderSource, open_source

    if args.video:
        return open_source(args.video)
    if not DEFAULT_FRAMES.is_dir():
        raise ValueError(f"no video given and {DEFAULT_FRAMES} does not exist")
    return ImageFolderSource(sorted(DEFAULT_FRAMES.glob("*.jpg")))


def _one(args: argparse.Namespace, variant: str, dtype: str, objects: int, peaks: dict) -> str:
    import torch

    from samurai.api import split_overrides
    from samurai.bench import ComponentTimer, count_flops, instrument, peak_rss_mb
    from samurai.build import build_model
    from samurai.tracking.predictor import VideoPredictor

    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    model_cfg, tracker, samurai = split_overrides(
        variant, samurai_mode=args.samurai, overrides=overrides
    )
    model = build_model(model_cfg, args.checkpoint)
    predictor = VideoPredictor(model, tracker=tracker, samurai=samurai)
    timer = ComponentTimer()
    instrument(predictor, timer)
    source = _frames(args)
    model.set_compute_dtype(getattr(torch, dtype))
    state = predictor.init_video(source)
    scale = [state.video_width / 960, state.video_height / 540] * 2
    for i in range(objects):
        box = [b * s for b, s in zip(BOXES[i], scale, strict=True)]
        predictor.add_prompt(state, frame_idx=0, obj_id=i + 1, box=box)
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
    peak = peaks[dtype]
    return (
        f"| {variant} | {dtype} | {objects} | {torch.get_num_threads()} | {sec:.2f} | "
        f"{flops / 1e9:.0f} | {gflops:.0f} ({gflops / peak:.2f} of peak) | "
        f"{peak_rss_mb():.0f} | {parts} |"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from samurai.bench import machine_summary, matmul_peak_gflops

    default_threads = torch.get_num_threads()
    print(f"machine: {machine_summary()}")
    peaks = {d: matmul_peak_gflops(getattr(torch, d)) for d in args.dtypes}
    print("matmul peak: " + ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in peaks.items()))
    print(
        "\n| model | dtype | objects | threads | s/frame | model GFLOP/frame | GFLOP/s | "
        "peak RSS MiB | time by component |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, dtype, objects, threads in itertools.product(
        args.models, args.dtypes, args.objects, args.threads
    ):
        torch.set_num_threads(threads or default_threads)
        print(_one(args, variant, dtype, objects, peaks), flush=True)
    return 0
