"""Per-frame tracking cost: SAMURAI vs plain SAM 2.1, and 1 / 2 / 4 objects (issue: predictor).

Runs on the bedroom frames of ../shared/reference (or any JPEG folder) with synthetic weights
(cost does not depend on weight values except through how many memories pass SAMURAI's gate).

    .venv/bin/python benchmarks/tracking_bench.py [--frames 10] [--variant sam2.1_hiera_t]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from samurai.api import split_overrides
from samurai.bench import ComponentTimer, instrument, machine_summary, peak_rss_mb
from samurai.build import build_model
from samurai.io.frames import ImageFolderSource
from samurai.tracking.predictor import VideoPredictor

ROOT = Path(__file__).resolve().parents[1]
FRAMES = (
    Path(os.environ.get("SAMURAI_REFERENCE", ROOT.parent / "shared" / "reference"))
    / "frames"
    / "bedroom"
)
BOXES = [[300, 0, 520, 400], [560, 180, 760, 470], [40, 200, 260, 520], [700, 20, 900, 200]]


def synthetic_weights(variant: str) -> dict[str, torch.Tensor] | None:
    sys.path.insert(0, str(FRAMES.parents[1]))
    try:
        from synth_weights import load_manifest, synth_state_dict

        return synth_state_dict(
            load_manifest(str(FRAMES.parents[1] / "manifests" / f"{variant}.json"))
        )
    except ImportError:
        return None


def run(
    model, *, samurai_mode: bool, objects: int, frames: list[Path]
) -> tuple[float, ComponentTimer]:
    """Seconds per tracked frame (frames after the prompt, excluding the first two)."""
    _, tracker, samurai = split_overrides(model.config, samurai_mode=samurai_mode, overrides={})
    predictor = VideoPredictor(model, tracker=tracker, samurai=samurai)
    timer = ComponentTimer()
    instrument(predictor, timer)
    state = predictor.init_video(ImageFolderSource(frames))
    for i in range(objects):
        predictor.add_prompt(state, frame_idx=0, obj_id=i + 1, box=BOXES[i])
    times = []
    start = time.perf_counter()
    for _ in predictor.propagate(state):
        now = time.perf_counter()
        times.append(now - start)
        start = now
    timer.restore()
    steady = times[3:] or times[1:]
    return sum(steady) / len(steady), timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--variant", default="sam2.1_hiera_t")
    args = parser.parse_args()
    frames = sorted(FRAMES.glob("*.jpg"))[: args.frames]
    model = build_model(args.variant, synthetic_weights(args.variant))
    print(f"machine: {machine_summary()}; {len(frames)} frames of {FRAMES}")
    print("\n| mode | objects | s / frame (steady) | per object vs 1 |")
    print("|---|---|---|---|")
    base = None
    timers = {}
    for samurai_mode, objects in ((False, 1), (True, 1), (True, 2), (True, 4)):
        sec, timer = run(model, samurai_mode=samurai_mode, objects=objects, frames=frames)
        timers[(samurai_mode, objects)] = timer
        if samurai_mode and objects == 1:
            base = sec
        ratio = f"{sec / base:.2f}x" if base and samurai_mode else "-"
        mode = "SAMURAI" if samurai_mode else "SAM 2.1"
        print(f"| {mode} | {objects} | {sec:.2f} | {ratio} |", flush=True)
    print("\nComponent breakdown, SAMURAI 1 object (all frames, seconds):")
    timer = timers[(True, 1)]
    total = sum(v for k, v in timer.seconds.items())
    for name, sec in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {sec:7.2f} s  {100 * sec / total:5.1f} %  ({timer.calls[name]} calls)")
    book = sum(
        timer.seconds[k]
        for k in (
            "selection (KF / best IoU)",
            "memory selection",
            "memory pruning",
            "candidate boxes",
        )
    )
    print(f"SAMURAI bookkeeping: {100 * book / total:.2f} % of the measured time")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
