"""Helpers of the batch tests (import as ``batch.helpers``): synthetic frames, the CLI in a
subprocess, output trees and the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 96, 128
NUM_FRAMES = 3
CLI = [sys.executable, "-m", "samurai.cli"]
# one torch thread everywhere: the same float sums in every worker, so files compare byte for byte
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


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
