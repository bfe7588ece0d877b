"""Run one configuration in a fresh child process (its peer's own interpreter), and the load.

Each child is a new process of the peer's virtual environment, so nothing (weights, caches,
allocator state, thread pools) carries over between configurations. Its peak RSS is the
kernel's ``ru_maxrss`` of that child, read with ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class Config:
    peer: str  # ours | official | hf
    variant: str = "t"  # t | b+
    mode: str = "samurai"  # samurai | sam2
    dtype: str = "float32"
    threads: int = 2
    image_size: int = 1024
    onednn: str | None = None  # SAMURAI_ONEDNN for ours (None: as shipped)
    malloc_tuning: str | None = None  # SAMURAI_MALLOC_TUNING for ours (None: as shipped)
    obj_threshold: float | None = None  # None: the peer's default
    load: bool = False  # a background model process runs alongside
    env: tuple[tuple[str, str], ...] = field(default=())

    @property
    def label(self) -> str:
        parts = [self.peer, self.mode, self.variant, f"{self.threads}t"]
        if self.dtype != "float32":
            parts.append("bf16" if self.dtype == "bfloat16" else self.dtype)
        if self.image_size != 1024:
            parts.append(str(self.image_size))
        if self.onednn is not None:
            parts.append(f"onednn{self.onednn}")
        if self.malloc_tuning is not None:
            parts.append(f"malloc{self.malloc_tuning}")
        if self.load:
            parts.append("load")
        parts += [f"{k}={v}" for k, v in self.env]
        return "-".join(parts).replace("+", "p")


def peer_python(peer: str, peers_dir: Path) -> str:
    if peer == "ours":
        return sys.executable
    return str(peers_dir / ("official" if peer == "official" else "hf") / "bin" / "python")


def child_command(cfg: Config, frames_dir: Path, out: Path, peers_dir: Path) -> list[str]:
    name = {"t": "sam2.1_hiera_t", "b+": "sam2.1_hiera_b+"}[cfg.variant]
    cmd = [
        peer_python(cfg.peer, peers_dir),
        str(HERE / f"child_{cfg.peer}.py"),
        "--frames-dir",
        str(frames_dir),
        "--out",
        str(out),
        "--variant",
        cfg.variant,
        "--mode",
        cfg.mode,
        "--threads",
        str(cfg.threads),
        "--dtype",
        cfg.dtype,
        "--image-size",
        str(cfg.image_size),
    ]
    if cfg.peer == "hf":
        cmd += ["--hf-dir", str(peers_dir / "weights" / f"hf-{name}")]
    else:
        cmd += ["--ckpt", str(peers_dir / "weights" / f"{name}.pt")]
    if cfg.peer == "official":
        cmd += ["--repo", str(peers_dir / "samurai")]
    if cfg.obj_threshold is not None:
        cmd += ["--obj-threshold", str(cfg.obj_threshold)]
    return cmd


def child_env(cfg: Config) -> dict[str, str]:
    # the user's environment without thread, spin or backend settings (``import samurai`` in
    # this process sets GOMP_SPINCOUNT; every child starts from none)
    prefixes = ("SAMURAI_", "OMP_", "GOMP_", "MKL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    if "SAMURAI_HOME" in os.environ:  # where ours caches its measured GEMM choice
        env["SAMURAI_HOME"] = os.environ["SAMURAI_HOME"]
    env.update(
        OMP_NUM_THREADS=str(cfg.threads),
        MKL_NUM_THREADS=str(cfg.threads),
        TQDM_DISABLE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
        PYTHONUNBUFFERED="1",
    )
    if cfg.onednn is not None:
        env["SAMURAI_ONEDNN"] = cfg.onednn
    if cfg.malloc_tuning is not None:
        env["SAMURAI_MALLOC_TUNING"] = cfg.malloc_tuning
    env.update(dict(cfg.env))
    return env


def run_config(
    cfg: Config, frames_dir: Path, out: Path, peers_dir: Path, *, timeout: float, nice: int = 0
) -> dict[str, Any]:
    """Run ``cfg`` once; its result.json plus the child's ru_maxrss, wall time and exit code."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = child_command(cfg, frames_dir, out, peers_dir)
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    start = time.perf_counter()
    with open(out / "child.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(cfg))
        status, usage = _wait(proc, timeout)
    row: dict[str, Any] = {"config": asdict(cfg), "label": cfg.label, "command": cmd}
    row.update(
        wall_s=time.perf_counter() - start,
        returncode=os.waitstatus_to_exitcode(status) if status is not None else None,
        rss_mib=usage.ru_maxrss / 1024 if usage is not None else None,
        out=str(out),
    )
    result = out / "result.json"
    if row["returncode"] == 0 and result.is_file():
        row = {**json.loads(result.read_text()), **row}  # the runner's keys win
    else:
        row["error"] = (out / "child.log").read_text()[-2000:]
    return row


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
            return status, usage
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, usage
        time.sleep(0.1)


class BackgroundLoad:
    """A fixed model load beside the measured run: ours Hiera-T image encoder in a loop.

    Started before the child and stopped (SIGTERM, then SIGKILL) when it ends; the load script
    also stops by itself after ``max_seconds``. It reports its encoder passes per second.
    """

    def __init__(self, peers_dir: Path, out: Path, *, threads: int = 2, max_seconds: float = 3600):
        self.cmd = [
            sys.executable,
            str(HERE / "load.py"),
            "--ckpt",
            str(peers_dir / "weights" / "sam2.1_hiera_t.pt"),
            "--threads",
            str(threads),
            "--seconds",
            str(max_seconds),
            "--report",
            str(out / "load.json"),
        ]
        self.threads = threads
        self.out = out
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> BackgroundLoad:
        self.out.mkdir(parents=True, exist_ok=True)
        env = child_env(Config("ours", threads=self.threads))
        self.log = open(self.out / "load.log", "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        ready = self.out / "load.json"
        deadline = time.monotonic() + 300
        while not ready.exists() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the load is running (first pass done) before the child starts
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def report(self) -> dict[str, Any]:
        path = self.out / "load.json"
        return json.loads(path.read_text()) if path.is_file() else {}
