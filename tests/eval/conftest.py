"""Tiny benchmark folder trees built in tmp_path, and ``samurai eval`` run in this process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest


def write_lines(path: Path, rows: np.ndarray | list[list[float]], sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(f"{v:g}" for v in row) + "\n" for row in rows))
    return path


def touch_frames(folder: Path, numbers: range, pattern: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        (folder / pattern.format(number)).write_bytes(b"")


@pytest.fixture
def tree() -> SimpleNamespace:
    """Helpers to build folder trees: ``write_lines(path, rows, sep)``, ``touch_frames(...)``."""
    return SimpleNamespace(write_lines=write_lines, touch_frames=touch_frames)


@pytest.fixture
def make_lasot(tmp_path: Path) -> Callable[..., Path]:
    """Factory: {name: (boxes, absent)} -> LaSOT root with those sequences."""

    def make(sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
        root = tmp_path / "lasot"
        for name, (boxes, absent) in sequences.items():
            folder = root / name.rsplit("-", 1)[0] / name
            write_lines(folder / "groundtruth.txt", boxes)
            flags = ",".join(str(int(a)) for a in absent)
            (folder / "full_occlusion.txt").write_text(flags + "\n")
            (folder / "out_of_view.txt").write_text(",".join("0" for _ in absent) + "\n")
            touch_frames(folder / "img", range(1, len(boxes) + 1), "{:08d}.jpg")
        return root

    return make


@pytest.fixture
def make_got10k(tmp_path: Path) -> Callable[..., Path]:
    """Factory: {name: (boxes, cover)} -> GOT-10k root with a ``val`` split of those sequences."""

    def make(sequences: dict[str, tuple[np.ndarray, np.ndarray]], split: str = "val") -> Path:
        root = tmp_path / "got10k"
        base = root / split
        base.mkdir(parents=True)
        (base / "list.txt").write_text("\n".join(sequences) + "\n")
        for name, (boxes, cover) in sequences.items():
            folder = base / name
            rows = boxes if split == "val" else boxes[:1]
            write_lines(folder / "groundtruth.txt", rows)
            touch_frames(folder, range(1, len(boxes) + 1), "{:08d}.jpg")
            (folder / "meta_info.ini").write_text(
                "[METAINFO]\nurl: x\nresolution: (320, 240)\nanno_fps: 10Hz\n"
            )
            if split == "val":
                (folder / "cover.label").write_text("".join(f"{int(c)}\n" for c in cover))
                (folder / "absence.label").write_text("".join(f"{int(c == 0)}\n" for c in cover))
        return root

    return make


@pytest.fixture
def cli_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``samurai eval ARGS`` through ``samurai.cli.main`` in this process (logging left alone):
    (exit code, stdout, stderr)."""
    import samurai.cli

    monkeypatch.setattr(samurai.cli, "configure_logging", lambda quiet: None)

    def run(*args: object) -> tuple[int, str, str]:
        code = samurai.cli.main(["eval", *map(str, args)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
