"""The OpenMP spin cap set at ``import samurai``, before torch loads libgomp."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from samurai import openmp

PROBE = (
    "import sys, os, samurai; "
    "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules, "
    "samurai.openmp.limit_spinning())"
)


def run_probe(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(extra)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_import_sets_spin_cap_before_torch_is_loaded() -> None:
    assert run_probe() == f"{openmp.SPIN_COUNT} False True"


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"GOMP_SPINCOUNT": "300000"}, "300000 False False"),  # the user's own value
        ({"OMP_WAIT_POLICY": "PASSIVE"}, "None False False"),  # the user's wait policy
    ],
)
def test_users_wait_settings_are_left_alone(extra: dict[str, str], want: str) -> None:
    assert run_probe(**extra) == want


def test_limit_spinning_on_a_mapping_and_after_torch() -> None:
    import torch  # noqa: F401

    env: dict[str, str] = {}
    # torch is already imported in this test process: the child processes inherit the value,
    # this process's libgomp does not see it
    assert openmp.limit_spinning(env) is False
    assert env == {"GOMP_SPINCOUNT": openmp.SPIN_COUNT}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    openmp.limit_spinning(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
