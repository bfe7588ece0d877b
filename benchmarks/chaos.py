"""Chaos test of the tracking service: N jobs while workers and the server are killed at random.

Starts ``samurai serve`` on a fresh data folder, posts N jobs (each its own upload of a short
synthetic clip), then, until every job has ended, kills at random moments a worker (SIGKILL or
SIGTERM) or the server itself (SIGKILL, or SIGTERM for a graceful stop), restarting the server
each time it went down. Meanwhile a client polls job status every 100 ms (latency, and how often
the service could not be reached) and the memory of the server and its workers is sampled.

At the end every job must be done exactly once with complete results: state ``done``, exactly
one ``done`` event in the job history, one attempt folder, and boxes / scores / RLE / overlay /
masks covering every frame. Prints a Markdown table (docs/reliability.md) and exits 1 if any job
was lost or duplicated.

Weights: synthetic ``sam2.1_hiera_t`` weights from ../shared/reference (the cost and the
failure modes do not depend on the weight values), or ``--checkpoint VARIANT=PATH``.

    .venv/bin/python benchmarks/chaos.py [--jobs 100] [--workers 2] [--frames 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from samurai.bench import machine_summary
from samurai.io.video_reader import VideoFileSource
from samurai.io.video_writer import write_video

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_load import free_port, percentile, synthetic_checkpoint

TOKEN = "chaos-token-0123456789abcdef"
TERMINAL = ("done", "failed", "cancelled")


def make_clip(folder: Path, frames: int) -> Path:
    """A 160x96 clip of a square moving on a gradient."""
    ramp = np.linspace(40, 200, 160, dtype=np.float32)
    path = folder / "clip.mp4"
    images = []
    for i in range(frames):
        image = np.empty((96, 160, 3), np.uint8)
        image[...] = ramp[None, :, None].astype(np.uint8)
        image[30:62, 20 + 6 * i : 52 + 6 * i] = (220, 40, 40)
        images.append(image)
    write_video(path, images, fps=10)
    return path


@dataclass
class Tally:
    """What happened during the run."""

    kills: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    unreachable: int = 0
    peak_server_mb: float = 0.0
    peak_total_mb: float = 0.0


class Server:
    """``samurai serve`` on a fixed port and data folder, restartable."""

    def __init__(self, root: Path, args: argparse.Namespace, checkpoint: str | None) -> None:
        self.root, self.args, self.checkpoint = root, args, checkpoint
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        token_file = self.root / "token"
        token_file.write_text(TOKEN)
        token_file.chmod(0o600)
        command = [
            sys.executable, "-m", "samurai.cli", "serve", "--port", str(self.port),
            "--workers", str(self.args.workers), "--data-dir", str(self.root / "data"),
            "--image-size", str(self.args.image_size), "--max-queued", str(self.args.jobs + 10),
            "--token-file", str(token_file), "--threads-per-worker", "1",
        ]  # fmt: skip
        if self.checkpoint:
            command += ["--checkpoint", self.checkpoint]
        with open(self.root / f"server-{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.root / f"server-{self.starts}.log").read_text()
                raise SystemExit(f"server exited at start:\n{text}")
            try:
                health = httpx.get(self.url + "/healthz", timeout=2).json()
                if health["workers_alive"] == self.args.workers:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise SystemExit("server did not start in 180 s")

    def workers(self) -> list[psutil.Process]:
        """Live worker processes (zombies of killed ones are left out)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)  # type: ignore[union-attr]
        except psutil.Error:
            return []
        alive = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
            except psutil.Error:
                pass
        return alive

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        workers = self.workers()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        psutil.wait_procs(workers, timeout=20)  # they die with the server (parent-death signal)


def sample(server: Server, job_ids: list[str], tally: Tally, stop: threading.Event) -> None:
    """Status latency every 100 ms and memory every 0.5 s, until ``stop``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=10, headers=headers) as client:
        tick = 0
        while not stop.is_set():
            started = time.perf_counter()
            try:
                client.get(f"/api/jobs/{random.choice(job_ids)}").raise_for_status()
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                tally.unreachable += 1
            if tick % 5 == 0 and server.proc is not None:
                try:
                    own = psutil.Process(server.proc.pid).memory_info().rss
                    total = own + sum(w.memory_info().rss for w in server.workers())
                    tally.peak_server_mb = max(tally.peak_server_mb, own / 2**20)
                    tally.peak_total_mb = max(tally.peak_total_mb, total / 2**20)
                except psutil.Error:
                    pass
            tick += 1
            stop.wait(0.1)


def job_states(server: Server, job_ids: list[str]) -> dict[str, str] | None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
            jobs = client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return {j["id"]: j["state"] for j in jobs if j["id"] in set(job_ids)}


def chaos(server: Server, job_ids: list[str], args: argparse.Namespace, tally: Tally) -> None:
    """Faults at exponentially distributed intervals until every job has ended."""
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.timeout
    faults = ["worker-kill9", "worker-term", "server-kill9", "server-term"]
    weights = [0.4, 0.2, 0.25, 0.15]
    while time.monotonic() < deadline:
        states = job_states(server, job_ids)
        if states is not None and all(s in TERMINAL for s in states.values()):
            return
        time.sleep(rng.expovariate(1 / args.interval))
        fault = rng.choices(faults, weights)[0]
        if fault.startswith("worker"):
            workers = server.workers()
            if not workers:
                continue
            rng.choice(workers).send_signal(
                signal.SIGKILL if fault == "worker-kill9" else signal.SIGTERM
            )
        else:
            server.stop(signal.SIGKILL if fault == "server-kill9" else signal.SIGTERM)
            server.start()
            tally.restarts += 1
        tally.kills[fault] = tally.kills.get(fault, 0) + 1
    raise SystemExit(f"jobs still running after {args.timeout} s")


def verify(server: Server, db: Path, job_ids: list[str], frames: int) -> dict[str, int]:
    """Count jobs done exactly once with complete results, duplicates and lost jobs."""
    counts = {"complete": 0, "duplicates": 0, "lost": 0, "incomplete": 0}
    with sqlite3.connect(db) as conn:
        done_events = dict(
            conn.execute(
                "SELECT job_id, COUNT(*) FROM job_events WHERE event = 'done' GROUP BY job_id"
            )
        )
        attempts = dict(conn.execute("SELECT id, attempts FROM jobs"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
        for job_id in job_ids:
            job = client.get(f"/api/jobs/{job_id}").json()
            if job["state"] != "done":
                counts["lost"] += 1
                print(f"lost: {job_id} {job['state']} {job.get('error')}", file=sys.stderr)
                continue
            folders = list((server.root / "data" / "jobs" / job_id).iterdir())
            if done_events.get(job_id, 0) != 1 or len(folders) != 1:
                counts["duplicates"] += 1
                continue
            if complete_results(client, job, frames, server.root):
                counts["complete"] += 1
            else:
                counts["incomplete"] += 1
    counts["max_attempts"] = max(attempts.values(), default=0)
    counts["rerun_jobs"] = sum(a > 1 for a in attempts.values())
    return counts


def complete_results(client: httpx.Client, job: dict, frames: int, root: Path) -> bool:
    results = job["results"]
    boxes = client.get(results["boxes"]).text.strip().splitlines()
    rle = client.get(results["rle"]).json()
    scores = client.get(results["scores"]).text.strip().splitlines()
    with zipfile.ZipFile(io.BytesIO(client.get(results["masks"]).content)) as zf:
        masks = len(zf.namelist())
    overlay = root / "overlay-check.mp4"
    overlay.write_bytes(client.get(results["overlay"]).content)
    with VideoFileSource(overlay) as video:
        overlay_frames = sum(1 for _ in video.iter_frames())
    return (
        len(boxes) == frames
        and rle["complete"] is True
        and len(rle["frames"]) == frames
        and len(scores) == frames + 1
        and masks == frames
        and overlay_frames == frames
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=2, help="frames per video")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--interval", type=float, default=6.0, help="mean seconds between faults")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", metavar="VARIANT=PATH", help="weights for the server")
    parser.add_argument("--keep", type=Path, help="keep the data folder and logs here")
    args = parser.parse_args()
    random.seed(args.seed)

    with tempfile.TemporaryDirectory(prefix="samurai-chaos-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        checkpoint = args.checkpoint
        if checkpoint is None:
            synthetic = synthetic_checkpoint(root)
            checkpoint = f"sam2.1_hiera_t={synthetic}" if synthetic else None
        clip = make_clip(root, args.frames).read_bytes()
        server = Server(root, args, checkpoint)
        server.start()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def post(i: int) -> str:
            response = httpx.post(
                server.url + "/api/jobs",
                files={"video": (f"clip{i}.mp4", clip, "video/mp4")},
                data={"boxes": "[[20, 30, 32, 32]]"},
                headers=headers,
                timeout=120,
            )
            response.raise_for_status()
            return str(response.json()["id"])

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(post, range(args.jobs)))
        tally = Tally()
        stop = threading.Event()
        sampler = threading.Thread(target=sample, args=(server, job_ids, tally, stop), daemon=True)
        sampler.start()
        try:
            chaos(server, job_ids, args, tally)
        finally:
            stop.set()
            sampler.join()
        wall = time.perf_counter() - started
        counts = verify(server, root / "data" / "jobs.db", job_ids, args.frames)
        server.stop(signal.SIGINT)
        logs = "".join(p.read_text(errors="replace") for p in sorted(root.glob("server-*.log")))

    lat = tally.latencies_ms
    rows = [
        ("machine", machine_summary()),
        ("jobs / workers / frames per job / image size",
         f"{args.jobs} / {args.workers} / {args.frames} / {args.image_size}"),
        ("wall time", f"{wall:.0f} s"),
        ("faults", ", ".join(f"{k} {v}" for k, v in sorted(tally.kills.items()))),
        ("server restarts", str(tally.restarts)),
        ("jobs done once with complete results", str(counts["complete"])),
        ("duplicates (done twice / two result folders)", str(counts["duplicates"])),
        ("lost (not done)", str(counts["lost"])),
        ("done but incomplete results", str(counts["incomplete"])),
        ("jobs run more than once (interrupted)", str(counts["rerun_jobs"])),
        ("most claims of one job", str(counts["max_attempts"])),
        ("status requests / unreachable (restarting)", f"{len(lat)} / {tally.unreachable}"),
        ("status latency p50 / p99 / max",
         f"{percentile(lat, 50):.1f} / {percentile(lat, 99):.1f} / {max(lat, default=0):.1f} ms"),
        ("peak RSS server / server + workers",
         f"{tally.peak_server_mb:.0f} / {tally.peak_total_mb:.0f} MiB"),
        ("tracebacks in server logs", str(logs.count("Traceback"))),
        ("'leaked semaphore' in logs", str(logs.count("leaked semaphore"))),
    ]  # fmt: skip
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(json.dumps({"counts": counts, "kills": tally.kills, "restarts": tally.restarts}))
    return 0 if counts["duplicates"] == 0 and counts["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
