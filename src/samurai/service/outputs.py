"""A finished job's result files as the API serves them: paths relative to the data folder,
the PNG mask folder packed into ``masks.zip``. Shared by local workers and the Ray dispatcher,
so both give the same bytes."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same masks give the same archive, byte for byte


def collect_outputs(data_dir: Path, written: dict[str, Path], out: Path) -> dict[str, Any]:
    """``kind -> path relative to data_dir`` (boxes: ``object id -> path``) for the files
    ``process_video`` wrote into ``out``; the ``masks`` folder becomes ``out/masks.zip``."""

    def rel(path: Path) -> str:
        return path.relative_to(data_dir).as_posix()

    outputs: dict[str, Any] = {}
    boxes = {k.split("_", 1)[1]: rel(p) for k, p in written.items() if k.startswith("boxes_")}
    if boxes:
        outputs["boxes"] = boxes
    for kind in ("overlay", "rle", "scores"):
        if kind in written:
            outputs[kind] = rel(written[kind])
    if "masks" in written:
        archive = out / "masks.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for png in sorted(written["masks"].iterdir()):
                info = zipfile.ZipInfo(f"masks/{png.name}", date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, png.read_bytes())
        shutil.rmtree(written["masks"])
        outputs["masks"] = rel(archive)
    return outputs
