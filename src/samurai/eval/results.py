"""Tracking result files in each benchmark's official form, written atomically, and their packing.

Layouts (``ResultFolder.layout``):

- ``"ope"`` (LaSOT, LaSOT_ext, OTB100, NfS, UAV123, TrackingNet): ``<root>/<seq>.txt``, one
  ``x,y,w,h`` line per frame, and optionally ``<root>/<seq>_time.txt`` with seconds per frame, as
  pytracking lays them out (pytracking writes tab-separated integers; commas, as SAMURAI and the
  TrackingNet server use, are read by every toolkit).
- ``"got10k"``: ``<root>/<seq>/<seq>_001.txt`` (repetition 1, 2, ...) and
  ``<root>/<seq>/<seq>_time.txt`` with one column per repetition, as the got10k toolkit's
  ``ExperimentGOT10k._record`` writes them.

Every file is written to a temporary name in the same folder and renamed, so a killed run never
leaves a partial file under the final name; the box file is written last, so its presence marks
a finished sequence (``is_done``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Layout = Literal["ope", "got10k"]
_SEPARATORS = re.compile(r"[,\t ;]+")


def run_config(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run configuration (``<tracker>.json``'s ``run``) as this version writes it: those
    written before the tracker policies name ``samurai_mode`` instead of ``tracker`` (True:
    ``samurai``, False: ``sam2``)."""
    if "tracker" in run:
        return dict(run)
    legacy = {k: v for k, v in run.items() if k != "samurai_mode"}
    return {**legacy, "tracker": "samurai" if run.get("samurai_mode", True) else "sam2"}


def read_run(root: str | Path) -> dict[str, Any] | None:
    """The configuration of the ``samurai eval`` run that wrote the result folder ``root``
    (from its sidecar ``<root>.json``), with ``fps`` over its sequences; None for folders
    written elsewhere (or an unreadable sidecar)."""
    path = Path(root).parent / f"{Path(root).name}.json"
    try:
        data = json.loads(path.read_text())
        run = run_config(data["run"])
        timings = list(data.get("sequences", {}).values())
        frames = sum(int(t["frames"]) for t in timings)
        seconds = sum(float(t["seconds"]) for t in timings)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {**run, "fps": frames / seconds if seconds > 0 else None}


def format_boxes(boxes: ArrayLike) -> str:
    """``x,y,w,h`` lines; integral values without decimals, others with at most 3 (got10k ``%.3f``).

    Args:
        boxes: (N, 4) xywh boxes in pixels.
    """
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lines = (
        ",".join(np.format_float_positional(v, precision=3, trim="-") for v in row) for row in array
    )
    return "".join(line + "\n" for line in lines)


def parse_boxes(text: str, *, columns: int = 4) -> NDArray[np.float64]:
    """Parse box lines separated by commas, tabs, spaces or semicolons (OTB mixes them).

    Args:
        text: file content; blank lines are skipped; "NaN" is read as NaN (UAV123).
        columns: values expected per line.

    Returns:
        (N, columns) float64.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = [field for field in _SEPARATORS.split(line.strip()) if field]
        if not fields:
            continue
        if len(fields) != columns:
            raise ValueError(f"line {number}: expected {columns} values, got {len(fields)}")
        rows.append([float(field) for field in fields])
    return np.array(rows, dtype=np.float64).reshape(-1, columns)


def load_boxes(path: str | Path) -> NDArray[np.float64]:
    """Read an ``x,y,w,h`` box file into an (N, 4) float64 array."""
    try:
        return parse_boxes(Path(path).read_text())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True)
class ResultFolder:
    """One tracker's results on one benchmark.

    Attributes:
        root: folder holding the result files (for GOT-10k, the per-sequence folders).
        layout: ``"ope"`` or ``"got10k"``, see the module docstring.
    """

    root: Path
    layout: Layout = "ope"

    @classmethod
    def for_benchmark(cls, root: str | Path, benchmark: str) -> ResultFolder:
        """The folder with the official layout of a benchmark key (``"got10k"`` or an OPE one)."""
        return cls(Path(root), "got10k" if benchmark == "got10k" else "ope")

    def boxes_path(self, sequence: str, *, repetition: int = 1) -> Path:
        """Path of the box file of one sequence (and GOT-10k repetition, counted from 1)."""
        if self.layout == "got10k":
            return self.root / sequence / f"{sequence}_{repetition:03d}.txt"
        if repetition != 1:
            raise ValueError("repetitions exist only in the got10k layout")
        return self.root / f"{sequence}.txt"

    def times_path(self, sequence: str) -> Path:
        """Path of the per-frame time file of one sequence."""
        if self.layout == "got10k":
            return self.root / sequence / f"{sequence}_time.txt"
        return self.root / f"{sequence}_time.txt"

    def write(
        self,
        sequence: str,
        boxes: ArrayLike,
        *,
        times: ArrayLike | None = None,
        repetition: int = 1,
    ) -> Path:
        """Write one sequence's boxes (and per-frame seconds), the box file last.

        Args:
            sequence: sequence name.
            boxes: (N, 4) xywh, one row per frame including the first.
            times: (N,) seconds per frame, or None.
            repetition: GOT-10k repetition number (1 for OPE layouts).

        Returns:
            The box file path.
        """
        array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if times is not None:
            self._write_times(sequence, np.asarray(times, dtype=np.float64).reshape(-1), repetition)
        return atomic_write_text(
            self.boxes_path(sequence, repetition=repetition), format_boxes(array)
        )

    def _write_times(self, sequence: str, times: NDArray[np.float64], repetition: int) -> None:
        columns = times[:, None]
        path = self.times_path(sequence)
        if self.layout == "got10k" and repetition > 1 and path.exists():
            # the toolkit keeps one column per repetition in a single file
            existing = parse_boxes(path.read_text(), columns=repetition - 1)
            if len(existing) != len(times):
                raise ValueError(f"{path}: {len(existing)} rows, new repetition has {len(times)}")
            columns = np.concatenate([existing, columns], axis=1)
        lines = (",".join(f"{v:.8f}" for v in row) for row in columns)
        atomic_write_text(path, "".join(line + "\n" for line in lines))

    def read(self, sequence: str, *, repetition: int = 1) -> NDArray[np.float64]:
        """(N, 4) float64 boxes of one sequence; ValueError naming the file when it is missing."""
        path = self.boxes_path(sequence, repetition=repetition)
        if not path.is_file():
            raise ValueError(f"result file missing: {path}")
        return load_boxes(path)

    def read_repetitions(self, sequence: str) -> list[NDArray[np.float64]]:
        """All repetitions of one sequence (one array for the OPE layout)."""
        if self.layout == "ope":
            return [self.read(sequence)]
        pattern = re.compile(rf"{re.escape(sequence)}_(\d{{3}})\.txt")
        folder = self.root / sequence
        numbers = sorted(
            int(match.group(1))
            for match in map(pattern.fullmatch, os.listdir(folder) if folder.is_dir() else [])
            if match
        )
        if not numbers:
            raise ValueError(f"result file missing: {self.boxes_path(sequence)}")
        return [self.read(sequence, repetition=number) for number in numbers]

    def read_times(self, sequence: str) -> NDArray[np.float64] | None:
        """(N, R) seconds per frame and repetition, or None when no time file exists."""
        path = self.times_path(sequence)
        if not path.is_file():
            return None
        first = next((line for line in path.read_text().splitlines() if line.strip()), "")
        count = len([field for field in _SEPARATORS.split(first.strip()) if field])
        return parse_boxes(path.read_text(), columns=max(count, 1))

    def is_done(self, sequence: str, *, num_frames: int | None = None, repetition: int = 1) -> bool:
        """Whether a sequence's box file exists (with ``num_frames`` rows, when given)."""
        path = self.boxes_path(sequence, repetition=repetition)
        if not path.is_file():
            return False
        if num_frames is None:
            return True
        return sum(1 for line in path.read_text().splitlines() if line.strip()) == num_frames

    def sequences(self) -> list[str]:
        """Names of the sequences with a finished (repetition 1) box file, sorted."""
        if not self.root.is_dir():
            return []
        if self.layout == "got10k":
            names = (entry.name for entry in self.root.iterdir() if entry.is_dir())
        else:
            names = (
                entry.name[:-4] for entry in self.root.iterdir()
                if entry.name.endswith(".txt") and not entry.name.endswith("_time.txt")
                and not entry.name.startswith(".")
            )  # fmt: skip
        return sorted(name for name in names if self.is_done(name))


def _check_done(results: ResultFolder, sequences: Iterable[str] | None) -> list[str]:
    names = results.sequences() if sequences is None else list(sequences)
    missing = [name for name in names if not results.is_done(name)]
    if missing:
        raise ValueError(
            f"{len(missing)} sequences unfinished, first: {results.boxes_path(missing[0])}"
        )
    if not names:
        raise ValueError(f"no finished sequences in {results.root}")
    return names


def _write_zip(zip_path: str | Path, members: dict[str, Path]) -> Path:
    target = Path(zip_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    os.close(handle)
    try:
        with zipfile.ZipFile(temp_name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, source in members.items():
                archive.write(source, name)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def pack_got10k(
    results: ResultFolder, zip_path: str | Path, *, sequences: Iterable[str] | None = None
) -> Path:
    """Zip GOT-10k test results for the evaluation server.

    The archive holds ``<seq>/<seq>_NNN.txt`` and ``<seq>/<seq>_time.txt`` at its top level, the
    tree the toolkit's ``shutil.make_archive(..., "zip", result_dir)`` produces.

    Args:
        results: a ``got10k``-layout result folder.
        zip_path: output file.
        sequences: names that must all be finished (the 180 test sequences); default: all found.
    """
    if results.layout != "got10k":
        raise ValueError("pack_got10k needs a got10k-layout ResultFolder")
    members: dict[str, Path] = {}
    for name in _check_done(results, sequences):
        for entry in sorted((results.root / name).iterdir()):
            if entry.suffix == ".txt" and not entry.name.startswith("."):
                members[f"{name}/{entry.name}"] = entry
    return _write_zip(zip_path, members)


def pack_trackingnet(
    results: ResultFolder, zip_path: str | Path, *, sequences: Iterable[str] | None = None
) -> Path:
    """Zip TrackingNet results for the evaluation server: ``<seq>.txt`` files at the top level.

    Args:
        results: an ``ope``-layout result folder.
        zip_path: output file.
        sequences: names that must all be finished (e.g. the 511 test videos); default: all found.
    """
    if results.layout != "ope":
        raise ValueError("pack_trackingnet needs an ope-layout ResultFolder")
    names = _check_done(results, sequences)
    return _write_zip(zip_path, {f"{name}.txt": results.boxes_path(name) for name in names})
