"""Our per-frame time under the protocol of ../shared/reference/BASELINE.md, side by side.

BASELINE.md timed the official SAMURAI-T on the bedroom frames with the synthetic seed-0
weights: box on frame 0, 20 frames, the mean wall time between two yielded frames over frames
8-19, one fresh process per configuration. This script does the same for float32 and split
bfloat16, each as shipped and with one process-wide setting turned off: the allocator setting
(:mod:`samurai.allocator`, ``SAMURAI_MALLOC_TUNING=0``) or the oneDNN float32 GEMMs
(:mod:`samurai.modeling.gemm`, ``SAMURAI_ONEDNN=0``). It measures the matmul peak in the same
run and prints the ratios to our float32 row and to the official 5.75 s.

    .venv/bin/python benchmarks/baseline_compare.py [--frames 20] [--trace samurai_t_bedroom]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

OFFICIAL = {"samurai_t_bedroom": 5.75, "sam2_t_bedroom": 6.96}
"""Official s/frame (mean of frames 8-19) from BASELINE.md."""


def one_run(trace: str, dtype: str, frames: int) -> dict:
    """Track ``frames`` frames of the golden run in this process; per-frame seconds."""
    from golden_trace import TRACES, make_predictor, prompted_state
    from samurai.allocator import reuse_freed_memory
    from samurai.modeling.gemm import onednn_available

    spec = TRACES[trace]
    predictor = make_predictor(spec)
    predictor.model.set_compute_dtype(getattr(torch, dtype))
    times = []
    with torch.inference_mode():
        state, _ = prompted_state(spec, predictor, frames=frames)
        start = time.perf_counter()
        for result in predictor.propagate(state):
            now = time.perf_counter()
            if result.frame_idx > 0:
                times.append(now - start)
            start = now
    return {
        "times": times,
        "allocator": reuse_freed_memory(),
        "onednn": onednn_available(),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--trace", default="samurai_t_bedroom", choices=sorted(OFFICIAL))
    parser.add_argument("--child", metavar="DTYPE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.trace, args.child, args.frames)))
        return

    from samurai.bench import machine_summary, matmul_peak_gflops

    print(f"machine: {machine_summary()}")
    peaks = {d: matmul_peak_gflops(getattr(torch, d)) for d in ("float32", "bfloat16")}
    print("matmul peak: " + ", ".join(f"{d} {p:.0f} GFLOP/s" for d, p in peaks.items()))
    official = OFFICIAL[args.trace]
    print(
        f"\n{args.trace}, frames 8-{args.frames - 1} (BASELINE.md protocol), "
        f"official {official} s/frame\n"
    )
    print(
        "| dtype | allocator setting | oneDNN GEMMs | s/frame | vs our float32 | vs official "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    base = None
    command = [sys.executable, __file__, "--trace", args.trace, "--frames", str(args.frames)]
    for dtype in ("float32", "bfloat16"):
        for tuning, onednn in (("1", "1"), ("0", "1"), ("1", "0")):
            out = subprocess.run(
                [*command, "--child", dtype],
                env={**os.environ, "SAMURAI_MALLOC_TUNING": tuning, "SAMURAI_ONEDNN": onednn},
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            steady = row["times"][7:]
            sec = sum(steady) / len(steady)
            base = base or sec
            print(
                f"| {dtype} | {'on' if row['allocator'] else 'off'} | "
                f"{'on' if row['onednn'] else 'off'} | {sec:.2f} | {sec / base:.2f}x | "
                f"{sec / official:.2f}x | {row['rss_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
