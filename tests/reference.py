"""Access to ../shared/reference: golden files and synthetic state dicts."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("SAMURAI_REFERENCE", REPO_ROOT.parent / "shared" / "reference")
).resolve()


def require_reference() -> Path:
    """The reference folder; skip where it is absent, fail under CI (CI=true)."""
    if (REFERENCE_DIR / "golden").is_dir() and (REFERENCE_DIR / "synth_weights.py").is_file():
        return REFERENCE_DIR
    msg = f"golden reference data not found at {REFERENCE_DIR} (set SAMURAI_REFERENCE)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + "; it is required under CI")
    pytest.skip(msg)


@lru_cache(maxsize=1)
def _synth_module() -> ModuleType:
    path = require_reference() / "synth_weights.py"
    spec = importlib.util.spec_from_file_location("synth_weights", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=2)
def synth_state_dict(manifest: str) -> dict[str, torch.Tensor]:
    """Seed-0 synthetic state dict of an official manifest, e.g. ``"sam2.1_hiera_t"``."""
    mod = _synth_module()
    return mod.synth_state_dict(
        mod.load_manifest(str(require_reference() / "manifests" / f"{manifest}.json")), seed=0
    )


def manifest_keys(manifest: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official checkpoint manifest."""
    mod = _synth_module()
    data = mod.load_manifest(str(require_reference() / "manifests" / f"{manifest}.json"))
    return {e["key"]: tuple(e["shape"]) for e in data["keys"]}


def sub_state_dict(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries of ``sd`` under ``prefix.`` with the prefix removed."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}


@lru_cache(maxsize=8)
def golden(name: str) -> Any:
    """A golden ``.npz`` file by stem, e.g. ``golden("modules_t")``."""
    return np.load(require_reference() / "golden" / f"{name}.npz")
