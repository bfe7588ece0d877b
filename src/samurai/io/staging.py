"""Output files that never carry a final name half-written (see :mod:`samurai.io.sinks`).

An output is written as ``<stem>.partial<suffix>`` and renamed when closed: to its final name when
complete, to ``<stem>.incomplete<suffix>`` when not. Only files, and folders of frame PNGs, are
ever removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["Staged", "marked_path"]

_FRAME_PNG = re.compile(r"^\d+\.png$")


def marked_path(path: Path, mark: str) -> Path:
    """``boxes_1.txt`` -> ``boxes_1.<mark>.txt``, ``masks`` -> ``masks.<mark>``."""
    return path.with_name(f"{path.stem}.{mark}{path.suffix}")


class Staged:
    """One output path written under its ``.partial`` name and renamed when closed."""

    def __init__(self, final: Path, *, folder: bool = False) -> None:
        self.final, self.folder = final, folder
        self.partial = marked_path(final, "partial")
        self.incomplete = marked_path(final, "incomplete")

    def start(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if not self.folder and self.final.is_dir():
            raise IsADirectoryError(f"{self.final} is a folder; the output is a file")
        for stale in (self.final, self.partial, self.incomplete):
            _remove(stale)
        return self.partial

    def finish(self, complete: bool) -> Path:
        target = self.final if complete else self.incomplete
        _remove(target)
        os.replace(self.partial, target)
        return target


def _remove(path: Path) -> None:
    """Delete an output file, or an output folder of frame PNGs (never anything else)."""
    if path.is_dir():
        for child in path.iterdir():
            if _FRAME_PNG.match(child.name):
                child.unlink()
        try:
            path.rmdir()
        except OSError as exc:
            raise FileExistsError(f"{path} holds files other than frame PNGs; move it") from exc
    elif path.exists() or path.is_symlink():
        path.unlink()
