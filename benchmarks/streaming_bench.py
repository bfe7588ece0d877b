"""Streaming cost: decode + resize vs model step, and peak RSS flat in video length (issue 5).

    .venv/bin/python benchmarks/streaming_bench.py [--frames 1000 10000] [--image-size 1024]

Part 1 encodes a 1080p synthetic mp4 and measures PyAV decode and decode + resize per frame.
Part 2 measures the tracker's step at the model size. Part 3 streams N synthetic 1080p frames
through ``samurai.Tracker`` and records peak RSS after each N (one process, N increasing).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from samurai.bench import machine_summary
from samurai.build import build_model
from samurai.io.transforms import preprocess_video_frame
from samurai.io.video_reader import VideoFileSource
from samurai.io.video_writer import write_video
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.tracker import Tracker

H, W = 1080, 1920


def frame_at(i: int, background: np.ndarray) -> np.ndarray:
    frame = background.copy()
    x = 800 + int(300 * np.sin(i / 25))
    y = 400 + int(150 * np.cos(i / 40))
    frame[y : y + 240, x : x + 320] = (230, 60, 40)
    return frame


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def decode_cost(background: np.ndarray, size: int, count: int = 300) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic_1080p.mp4"
        write_video(path, (frame_at(i, background) for i in range(count)), fps=30)
        with VideoFileSource(path) as src:
            start = time.perf_counter()
            for _ in src.iter_frames():
                pass
            decode = (time.perf_counter() - start) / count
        with VideoFileSource(path) as src:
            start = time.perf_counter()
            for _, frame in src.iter_frames():
                preprocess_video_frame(frame, size)
            both = (time.perf_counter() - start) / count
    return decode, both


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", nargs="+", type=int, default=[1000, 10000])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--step-frames", type=int, default=6, help="frames timed at the model size")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    background = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    print(f"machine: {machine_summary()}")

    decode, both = decode_cost(background, args.image_size)
    model = build_model("sam2.1_hiera_t", None, image_size=args.image_size)
    tracker = Tracker(VideoPredictor(model))
    tracker.add_object(1, box=[800, 400, 1120, 640])
    steps = []
    for i in range(args.step_frames):
        start = time.perf_counter()
        tracker.step(frame_at(i, background))
        steps.append(time.perf_counter() - start)
    step = float(np.mean(steps[2:] if len(steps) > 3 else steps))
    print(f"\nimage size {args.image_size}: model step {step:.3f} s/frame")
    print(
        f"PyAV decode 1080p: {1000 * decode:.1f} ms/frame; decode + resize + normalise: "
        f"{1000 * both:.1f} ms/frame = {100 * both / (both + step):.2f}% of the frame time"
    )
    if args.skip_rss:
        return
    print("\n| frames | peak RSS MiB | s/frame | all-frames-in-RAM loader would need |")
    print("|---|---|---|---|")
    tracker.reset()
    tracker.add_object(1, box=[800, 400, 1120, 640])
    done, start = 0, time.perf_counter()
    for n in sorted(args.frames):
        while done < n:
            tracker.step(frame_at(done, background))
            done += 1
        ram = n * 3 * args.image_size**2 * 4 / 2**30
        print(
            f"| {n} | {peak_rss_mib():.0f} | {(time.perf_counter() - start) / done:.3f} | "
            f"{ram:.1f} GiB (float32 {args.image_size}^2 frames) |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
