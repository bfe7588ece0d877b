"""Batch throughput: jobs per minute and per-job overhead, local worker processes vs Ray.

Makes ``--jobs`` small synthetic videos (``--frames`` frames of 128x96 each) and a checkpoint
of seeded random weights, then runs the same batch once per backend with ``--workers``
workers of ``--threads`` torch threads:

- ``processes``: ``samurai batch --workers N`` (a spawned process pool, writes in place);
- ``ray-local``: ``--ray-address local`` (a Ray instance started for the run: videos shipped
  through the object store, results sent back and written by the driver);
- ``ray``: ``--ray-address ADDR`` when ``--ray-address`` is given (an existing cluster).

Each backend runs in a fresh process (``samurai batch``), timed end to end. Reported per
backend: wall seconds, jobs per minute, the mean seconds a job took on its worker (from the
journal), and the per-job overhead: ``wall * workers / jobs - mean job seconds``, i.e. the
worker time each job cost beyond its own tracking (start-up, model load, shipping, writing),
spread over the jobs. Start-up is a fixed cost, so the overhead falls with more jobs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_bench.py --jobs 8 --workers 2
    .venv/bin/python benchmarks/cluster_bench.py --jobs 200 --workers 8 --ray-address auto \
        --image-size 1024 --frames 50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_inputs(root: Path, jobs: int, frames: int) -> tuple[Path, Path]:
    """Videos, their manifest and a seeded checkpoint under ``root``."""
    import torch

    from samurai.build import build_model
    from samurai.io.video_writer import write_video

    rng = np.random.default_rng(0)
    lines = []
    for index in range(jobs):
        background = rng.integers(0, 120, size=(96, 128, 3), dtype=np.uint8)
        clip = []
        for i in range(frames):
            frame = background.copy()
            frame[20 + i : 50 + i, 20 + 2 * i : 56 + 2 * i] = (230, 80, 40)
            clip.append(frame)
        write_video(root / f"v{index:04d}.mp4", clip, fps=10)
        lines.append(json.dumps({"video": f"v{index:04d}.mp4", "box": "20,20,36,30"}))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    checkpoint = root / "seeded_t.pt"
    torch.save({"model": build_model("sam2.1_hiera_t", None).state_dict()}, checkpoint)
    return manifest, checkpoint


def run_backend(name: str, extra: list[str], args: argparse.Namespace, inputs: tuple) -> dict:
    manifest, checkpoint = inputs
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    command = [sys.executable, "-m", "samurai.cli", "batch", str(manifest), "--out", str(out)]
    command += ["--checkpoint", str(checkpoint), "--image-size", str(args.image_size), "-q"]
    command += ["--workers", str(args.workers), "--threads", str(args.threads), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()[1:]]
    seconds = [r["seconds"] for r in records if r.get("status") == "done"]
    mean = float(np.mean(seconds))
    return {
        "backend": name,
        "jobs": len(seconds),
        "wall_s": round(wall, 2),
        "jobs_per_min": round(60 * len(seconds) / wall, 2),
        "job_s": round(mean, 3),
        "overhead_per_job_s": round(wall * args.workers / len(seconds) - mean, 3),
        "nodes": len({r["node"] for r in records}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--ray-address", help="also run on this existing cluster")
    parser.add_argument("--backends", nargs="+", default=["processes", "ray-local"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    inputs = make_inputs(root, args.jobs, args.frames)
    extras = {"processes": [], "ray-local": ["--ray-address", "local"]}
    if args.ray_address:
        extras["ray"] = ["--ray-address", args.ray_address]
        args.backends.append("ray")
    rows = [run_backend(name, extras[name], args, inputs) for name in args.backends]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")
    print(json.dumps({"settings": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
