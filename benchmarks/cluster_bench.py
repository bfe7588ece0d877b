"""Throughput of batch and service: jobs per minute and per-job overhead, local vs Ray.

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

With ``--service``, the same jobs go to ``samurai serve`` instead (uploaded over HTTP, all
queued at once, timed from the first upload to the last job done; the server is started and
ready before the clock starts):

- ``service-processes``: ``--workers N`` local worker processes;
- ``service-ray-local``: ``--ray-address local --max-jobs-per-node N`` (Ray actors; videos and
  results travel through the object store as they would to other nodes);
- ``service-ray``: ``--ray-address ADDR`` (an existing cluster; its memory is not counted).

Per service backend: wall seconds, jobs per minute, the mean tracking seconds of a job (frames
/ fps reported by the job), the per-job overhead as above, and memory: the proportional set
size (PSS, shared pages split) of the server and every process it started, idle after start
and at the end (for Ray: the GCS, raylet, agents and actors).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_bench.py --jobs 8 --workers 2
    .venv/bin/python benchmarks/cluster_bench.py --jobs 200 --workers 8 --ray-address auto \
        --image-size 1024 --frames 50
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_bench.py --service --jobs 12
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
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


def _pss_mib(root_pid: int) -> float:
    """PSS of a process and all its descendants, MiB (RSS where PSS cannot be read)."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return round(total / 2**20, 1)


def run_service(name: str, extra: list[str], args: argparse.Namespace, inputs: tuple) -> dict:
    """One ``samurai serve`` with ``extra`` flags: every video uploaded as a job at once."""
    import httpx

    manifest, checkpoint = inputs
    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "samurai.cli", "serve", "--port", str(port), "-q"]
    command += ["--data-dir", str(root), "--image-size", str(args.image_size)]
    command += ["--checkpoint", f"sam2.1_hiera_t={checkpoint}", "--max-queued", "10000"]
    command += ["--threads-per-worker", str(args.threads), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "RAY_AUTH_MODE": "disabled"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:  # ready: every worker / actor up
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"{name}: server did not start: {(root / 'server.log').read_text()}"
                )
            try:
                health = httpx.get(f"{url}/healthz", timeout=2).json()
                if health["workers_alive"] >= args.workers:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        idle_mib = _pss_mib(server.pid)
        videos = sorted(manifest.parent.glob("v*.mp4"))
        box = "[[20, 20, 36, 30]]"
        with httpx.Client(base_url=url, timeout=120) as client:
            started = time.perf_counter()
            ids = []
            for video in videos:
                with open(video, "rb") as f:
                    response = client.post(
                        "/api/jobs", files={"video": (video.name, f)}, data={"boxes": box}
                    )
                ids.append(response.json()["id"])
            pending, done = set(ids), {}
            while pending:
                for job_id in list(pending):
                    job = client.get(f"/api/jobs/{job_id}").json()
                    if job["state"] in ("done", "failed", "cancelled"):
                        done[job_id] = job
                        pending.discard(job_id)
                time.sleep(0.1)
            wall = time.perf_counter() - started
        end_mib = _pss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    ok = [j for j in done.values() if j["state"] == "done"]
    if len(ok) != len(ids):
        raise SystemExit(f"{name}: {len(ids) - len(ok)} job(s) did not finish")
    mean = float(np.mean([j["num_frames"] / j["fps"] for j in ok]))
    return {
        "backend": name,
        "jobs": len(ok),
        "wall_s": round(wall, 2),
        "jobs_per_min": round(60 * len(ok) / wall, 2),
        "job_s": round(mean, 3),
        "overhead_per_job_ms": round(1000 * (wall * args.workers / len(ok) - mean)),
        "pss_idle_mib": idle_mib,
        "pss_end_mib": end_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--ray-address", help="also run on this existing cluster")
    parser.add_argument("--backends", nargs="+")
    parser.add_argument("--service", action="store_true", help="samurai serve, not batch")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    inputs = make_inputs(root, args.jobs, args.frames)
    if args.service:
        n = str(args.workers)
        extras = {
            "service-processes": ["--workers", n],
            "service-ray-local": ["--ray-address", "local", "--max-jobs-per-node", n],
        }
        if args.ray_address:
            extras["service-ray"] = ["--ray-address", args.ray_address]
        run = run_service
    else:
        extras = {"processes": [], "ray-local": ["--ray-address", "local"]}
        if args.ray_address:
            extras["ray"] = ["--ray-address", args.ray_address]
        run = run_backend
    backends = args.backends or list(extras)
    rows = [run(name, extras[name], args, inputs) for name in backends]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")
    print(json.dumps({"settings": vars(args), "rows": rows}))


if __name__ == "__main__":
    main()
