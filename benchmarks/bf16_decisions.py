"""bfloat16 vs float32 on the golden traces: seconds per frame and every discrete decision.

Runs samurai_t_bedroom and sam2_t_bedroom (40 frames each, synthetic reference weights) once in
float32 and once with ``model.set_compute_dtype(torch.bfloat16)``, in one process, and prints
the time ratio, the decisions that differ from the official run, the largest IoU / object-score
errors, and the smallest decision margins of the official run (how close to a threshold the
trace comes), for docs/benchmarks.md.

    .venv/bin/python benchmarks/bf16_decisions.py [--traces samurai_t_bedroom sam2_t_bedroom]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from golden_trace import (
    DECISION_KEYS,
    TRACES,
    decision_margins,
    make_predictor,
    run_trace,
)
from reference import golden
from samurai.bench import machine_summary


def measure(name: str, dtype: torch.dtype) -> tuple[float, dict]:
    predictor = make_predictor(TRACES[name])
    predictor.model.set_compute_dtype(dtype)
    start = time.perf_counter()
    with torch.inference_mode():
        trace = run_trace(TRACES[name], predictor)
    frames = len(trace["chosen_token"])
    return (time.perf_counter() - start) / frames, trace


def compare(name: str, trace: dict) -> str:
    g = golden(name)
    n = len(g["frame_idx"])
    flips = [
        f"frame {f} {k}"
        for f in range(n)
        for k in DECISION_KEYS
        if k in g.files and f in trace.get(k, {}) and not np.array_equal(trace[k][f], g[k][f])
    ]
    iou = max(float(np.abs(trace["ious_all4"][f] - g["ious_all4"][f]).max()) for f in range(n))
    obj = max(
        abs(trace["object_score_logit"][f] - float(g["object_score_logit"][f])) for f in range(n)
    )
    return (
        f"flips: {', '.join(flips[:4]) or 'none'}; "
        f"max |IoU error| {iou:.4f}, max |object score error| {obj:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", nargs="+", default=["samurai_t_bedroom", "sam2_t_bedroom"])
    args = parser.parse_args()
    print(f"machine: {machine_summary()}")
    for name in args.traces:
        spec = TRACES[name]
        margins = decision_margins(golden(name), spec.samurai, spec.variant)
        smallest = ", ".join(f"{m.kind} frame {m.frame} {m.margin:.4f}" for m in margins[:3])
        print(f"\n{name}: smallest decision margins of the official run: {smallest}")
        fp32, _ = measure(name, torch.float32)
        bf16, trace = measure(name, torch.bfloat16)
        print(f"  float32 {fp32:.2f} s/frame, bfloat16 {bf16:.2f} s/frame ({bf16 / fp32:.2f}x)")
        print(f"  bfloat16 vs official: {compare(name, trace)}", flush=True)


if __name__ == "__main__":
    main()
