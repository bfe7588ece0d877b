"""Shared fixtures: the golden reference data and synthetic checkpoints made from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference import require_reference, synth_state_dict


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return require_reference()


@pytest.fixture(scope="session")
def bedroom_frames(reference_dir: Path) -> list[Path]:
    """Paths of the 40 bedroom JPEG frames (960x540)."""
    return sorted((reference_dir / "frames" / "bedroom").glob("*.jpg"))


@pytest.fixture(scope="session")
def synth_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """Factory: manifest name -> path of a ``{"model": state_dict}`` checkpoint file."""
    root = tmp_path_factory.mktemp("checkpoints")

    def make(manifest: str) -> Path:
        path = root / f"{manifest}.pt"
        if not path.exists():
            torch.save({"model": synth_state_dict(manifest)}, path)
        return path

    return make
