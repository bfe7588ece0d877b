"""Load test of the tracking service: N jobs posted at once on W workers (issue: service).

Starts ``samurai serve`` in a subprocess, posts every job concurrently, and while they run polls
``GET /api/jobs/{id}`` every 100 ms (the latency a client sees while the workers are busy) and
samples the resident memory of the server and its worker processes. Prints a table; asserts
nothing (the issue's targets: all jobs done, memory bounded, status answers within 200 ms).

Weights: ``--checkpoint VARIANT=PATH``, else synthetic ``sam2.1_hiera_t`` weights made from
../shared/reference (the cost does not depend on the weight values), else the checkpoint cache.

    .venv/bin/python benchmarks/service_load.py [--jobs 20] [--workers 2] [--frames 4]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch
from PIL import Image

from samurai.bench import machine_summary
from samurai.io.video_writer import write_video

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("SAMURAI_REFERENCE", ROOT.parent / "shared" / "reference"))
BOX = "[[300, 100, 200, 250]]"


def synthetic_checkpoint(folder: Path) -> Path | None:
    """Synthetic sam2.1_hiera_t weights from ../shared/reference/synth_weights.py, or None."""
    import importlib.util

    script = REFERENCE / "synth_weights.py"
    if not script.is_file():
        return None
    spec = importlib.util.spec_from_file_location("synth_weights", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest = module.load_manifest(str(REFERENCE / "manifests" / "sam2.1_hiera_t.json"))
    path = folder / "sam2.1_hiera_t.pt"
    torch.save({"model": module.synth_state_dict(manifest, seed=0)}, path)
    return path


def make_clip(folder: Path, frames: int) -> Path:
    files = sorted((REFERENCE / "frames" / "bedroom").glob("*.jpg"))[:frames]
    if len(files) < frames:
        raise SystemExit(f"need {frames} bedroom frames under {REFERENCE}/frames/bedroom")
    path = folder / f"bedroom{frames}.mp4"
    write_video(path, (np.asarray(Image.open(f).convert("RGB")) for f in files), fps=10)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sampler(threading.Thread):
    """Samples status latency and the server tree's memory until stopped."""

    def __init__(self, url: str, server_pid: int, job_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.server_pid, self.job_ids = url, server_pid, job_ids
        self.latencies_ms: list[float] = []
        self.peak_total_mb = self.peak_server_mb = self.peak_worker_mb = 0.0
        self.stop = threading.Event()

    def memory(self) -> None:
        try:
            server = psutil.Process(self.server_pid)
            workers = [p.memory_info().rss for p in server.children(recursive=True)]
            own = server.memory_info().rss
        except psutil.Error:
            return
        mb = 2**20
        self.peak_server_mb = max(self.peak_server_mb, own / mb)
        self.peak_worker_mb = max(self.peak_worker_mb, max(workers, default=0) / mb)
        self.peak_total_mb = max(self.peak_total_mb, (own + sum(workers)) / mb)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            tick = 0
            while not self.stop.is_set():
                started = time.perf_counter()
                response = client.get(f"/api/jobs/{random.choice(self.job_ids)}")
                response.raise_for_status()
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                if tick % 5 == 0:
                    self.memory()
                tick += 1
                self.stop.wait(0.1)


def start_server(args: argparse.Namespace, root: Path, checkpoint: str | None) -> tuple:
    port = free_port()
    command = [
        sys.executable, "-m", "samurai.cli", "serve", "-q", "--port", str(port),
        "--workers", str(args.workers), "--data-dir", str(root / "data"),
        "--image-size", str(args.image_size), "--max-queued", str(max(100, args.jobs)),
    ]  # fmt: skip
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed by main
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).json()["workers_alive"] == args.workers:
                return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"server did not start; see {root / 'server.log'}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4, help="frames per video (bedroom clip)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--checkpoint", metavar="VARIANT=PATH", help="weights for the server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="samurai-load-") as tmp:
        root = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            synthetic = synthetic_checkpoint(root)
            checkpoint = f"sam2.1_hiera_t={synthetic}" if synthetic else None
        clip = make_clip(root, args.frames).read_bytes()
        proc, url, log = start_server(args, root, checkpoint)
        idle_server_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
        try:
            started = time.perf_counter()

            def post(i: int) -> tuple[str, float]:
                t0 = time.perf_counter()
                response = httpx.post(
                    url + "/api/jobs",
                    files={"video": (f"clip{i}.mp4", clip)},
                    data={"boxes": BOX},
                    timeout=120,
                )
                response.raise_for_status()
                return response.json()["id"], (time.perf_counter() - t0) * 1000

            with ThreadPoolExecutor(args.jobs) as pool:
                posted = list(pool.map(post, range(args.jobs)))
            job_ids = [job_id for job_id, _ in posted]
            sampler = Sampler(url, proc.pid, job_ids)
            sampler.start()
            with httpx.Client(base_url=url, timeout=30) as client:
                while True:
                    jobs = [client.get(f"/api/jobs/{j}").json() for j in job_ids]
                    if all(j["state"] in ("done", "failed", "cancelled") for j in jobs):
                        break
                    time.sleep(1.0)
            wall = time.perf_counter() - started
            sampler.stop.set()
            sampler.join()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            log.close()

    states = [j["state"] for j in jobs]
    lat = sampler.latencies_ms
    post_ms = [ms for _, ms in posted]
    post_text = f"{statistics.median(post_ms):.0f} / {max(post_ms):.0f} ms"
    lat_text = f"{percentile(lat, 50):.1f} / {percentile(lat, 95):.1f} / {max(lat):.1f} ms"
    rows = [
        ("machine", machine_summary()),
        ("jobs / workers / frames per job", f"{args.jobs} / {args.workers} / {args.frames}"),
        ("image size", str(args.image_size)),
        ("jobs done / failed", f"{states.count('done')} / {states.count('failed')}"),
        ("jobs run twice", str(sum(j["attempts"] != 1 for j in jobs))),
        ("wall time", f"{wall:.1f} s ({args.jobs * args.frames / wall:.2f} frames/s overall)"),
        ("POST /api/jobs latency p50 / max", post_text),
        ("status requests while busy", str(len(lat))),
        ("status latency p50 / p95 / max", lat_text),
        ("status requests over 200 ms", str(sum(ms > 200 for ms in lat))),
        ("server RSS idle / peak", f"{idle_server_mb:.0f} / {sampler.peak_server_mb:.0f} MiB"),
        ("largest worker RSS peak", f"{sampler.peak_worker_mb:.0f} MiB"),
        ("server + workers RSS peak", f"{sampler.peak_total_mb:.0f} MiB"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
