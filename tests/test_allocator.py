"""The glibc setting that keeps freed large blocks for reuse (run in fresh processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from samurai import allocator

_PROBE = """
import resource, sys
import torch
import samurai.tracking.predictor  # applies the setting after the model's imports, as here
from samurai.allocator import reuse_freed_memory

def faults_of_one_frame_like_cycle() -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, above glibc's mmap threshold
        del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

applied = reuse_freed_memory()
faults_of_one_frame_like_cycle()  # the first cycle grows the heap
print(applied, faults_of_one_frame_like_cycle())
"""


def _probe(env: dict[str, str]) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc setting (Linux only)")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    applied, faults = _probe({allocator.ENV_VAR: "1"})
    assert applied
    # 3 x 64 MiB = 49152 pages would be faulted in again without the setting
    assert faults < 1000
    disabled, faults_default = _probe({allocator.ENV_VAR: "0"})
    assert not disabled
    assert faults_default > 3 * (64 << 20) // 4096 // 2


def test_env_var_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv(allocator.ENV_VAR, "off")
    assert allocator.reuse_freed_memory() is False
    monkeypatch.setenv(allocator.ENV_VAR, "1")
    assert allocator.reuse_freed_memory() is False  # decided once per process
