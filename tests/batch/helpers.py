"""Helpers of the batch tests (import as ``batch.helpers``): synthetic frames, the CLI in a
subprocess, output trees and the journal."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 96, 128
NUM_FRAMES = 3
CLI = [sys.executable, "-m", "samurai.cli"]
SIZE = ["--image-size", "256"]
# one torch thread and one GEMM backend everywhere (processes that measure the backends on their
# own may choose differently on a loaded machine): the same float sums in every worker, so files
# compare byte for byte
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SAMURAI_ONEDNN": "1"}


def frames(seed: int, count: int = NUM_FRAMES) -> list[np.ndarray]:
    """A square moving over a textured background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    out = []
    for i in range(count):
        frame = background.copy()
        x, y = 20 + 6 * i + seed, 25 + 3 * i
        frame[y : y + 30, x : x + 36] = (230, 60 + 20 * seed, 40)
        out.append(frame)
    return out


def run_cli(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def tree(folder: Path, skip: tuple[str, ...] = ("batch.jsonl",)) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``folder`` (the journal left out)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, UnicodeDecodeError):
            continue
        table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


def kill_a_worker_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 240.0
) -> int | None:
    """SIGKILL one spawned worker process of ``proc`` as soon as ``ready()``; its pid, or None
    when ``proc`` ended (or ``timeout`` passed) first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            workers = [
                pid
                for pid, (parent, cmd) in processes().items()
                if parent == proc.pid and "spawn_main" in cmd
            ]
            if workers:
                os.kill(workers[0], signal.SIGKILL)
                return workers[0]
        time.sleep(0.02)
    return None


class LocalRayCluster:
    """A real two-node Ray cluster on this machine: ``ray start --head`` with 1 CPU, and a
    second node (1 CPU, custom resource ``node2``) with its own temp folder.

    One CPU per node makes a 1-thread worker land on each. Everything it started is found by
    its temp folders (and their children) and killed by pid on `stop`: never ``ray stop``,
    which would stop every Ray instance of the machine.
    """

    def __init__(self) -> None:
        self.temp_dirs = [
            tempfile.mkdtemp(prefix="rbh", dir="/tmp"),
            tempfile.mkdtemp(prefix="rbn", dir="/tmp"),
        ]
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # no token to hand around; a lost node is noticed in about 2 s instead of 15 s
        self.env = {**ENV, "RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500"}
        self.env |= {"RAY_health_check_failure_threshold": "4"}

    def _start(self, *args: str, temp_dir: str) -> None:
        ports = [
            ("--dashboard-agent-listen-port", free_port()),
            ("--dashboard-agent-grpc-port", free_port()),
            ("--metrics-export-port", free_port()),
            ("--runtime-env-agent-port", free_port()),
        ]
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            *args,
            "--temp-dir",
            temp_dir,
        ]
        command += ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
        command += ["--object-store-memory", str(100 * 2**20)]
        command += [str(v) for pair in ports for v in pair]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=self.env)
        assert proc.returncode == 0, proc.stderr[-2000:]

    def start(self) -> LocalRayCluster:
        head = ["--head", "--port", str(self.port), "--include-dashboard", "false"]
        self._start(*head, "--dashboard-port", str(free_port()), temp_dir=self.temp_dirs[0])
        second = ["--address", self.address, "--resources", '{"node2": 1}']
        self._start(*second, temp_dir=self.temp_dirs[1])
        return self

    def raylet(self, node: int) -> int:
        """pid of a node's raylet (0 head, 1 the second node)."""
        mark = self.temp_dirs[node]
        return next(
            pid for pid, (_, cmd) in processes().items() if "/raylet/raylet " in cmd and mark in cmd
        )

    def stop(self) -> None:
        table = processes()
        mine = {p for p, (_, cmd) in table.items() if any(d in cmd for d in self.temp_dirs)}
        grown = True
        while grown:  # and their children (workers and agents rename themselves ray::...)
            children = {p for p, (parent, _) in table.items() if parent in mine} - mine
            mine |= children
            grown = bool(children)
        for pid in mine - {os.getpid()}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for folder in self.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)
