"""Evaluate result folders of any number of trackers on a benchmark; write markdown, JSON and plots.

OPE benchmarks get AUC / OP50 / OP75 / precision@20px / normalised precision@0.20 overall and per
attribute (sequences averaged with equal weight, as pytracking and the LaSOT toolkit do). GOT-10k
val gets AO / SR0.5 / SR0.75 over all frames and repetitions, as the got10k toolkit does. Test
sets with withheld annotations cannot be evaluated here: pack them with ``results.pack_got10k`` /
``results.pack_trackingnet`` for the servers. Folders written by ``samurai eval`` carry their
run's configuration (``<folder>.json``): the report then adds a "Runs" table naming each
folder's tracking policy, model, image size, dtype and speed, so policies compare side by side.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samurai.eval.datasets import LASOT_ATTRIBUTES, Dataset, Sequence
from samurai.eval.metrics import (
    CONVENTIONS,
    GENERIC,
    GOT10K_THRESHOLDS,
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    Got10kScores,
    OpeConvention,
    OpeScores,
    got10k_ious,
    got10k_scores,
    sequence_scores,
    summarize,
)
from samurai.eval.results import ResultFolder, atomic_write_text, read_run

Scores = OpeScores | Got10kScores


@dataclass(frozen=True)
class Report:
    """Scores of several trackers on one benchmark.

    Attributes:
        benchmark: dataset key (``Dataset.name``).
        trackers: tracker names in the order given.
        sequences: evaluated sequence names.
        overall: tracker -> scores over all sequences.
        per_sequence: tracker -> sequence -> scores.
        per_attribute: attribute -> tracker -> scores over the sequences with that attribute.
        attribute_counts: attribute -> number of evaluated sequences with it.
        runs: tracker -> configuration of the ``samurai eval`` run behind its folder (tracking
            policy, variant, dtype, ..., ``fps``); folders written elsewhere have none.
    """

    benchmark: str
    trackers: tuple[str, ...]
    sequences: tuple[str, ...]
    overall: dict[str, Scores]
    per_sequence: dict[str, dict[str, Scores]]
    per_attribute: dict[str, dict[str, Scores]]
    attribute_counts: dict[str, int]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_got10k(self) -> bool:
        """Whether the scores are GOT-10k AO/SR rather than OPE curves."""
        return self.benchmark == "got10k"

    def ranked(self) -> list[str]:
        """Trackers, best first (by AUC, or AO for GOT-10k)."""
        return sorted(self.trackers, key=lambda name: -_headline(self.overall[name]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: overall scalars and curves, per-attribute and per-sequence scalars."""
        return {
            "benchmark": self.benchmark,
            "num_sequences": len(self.sequences),
            "trackers": list(self.trackers),
            "overall": {t: _scalars(s, curves=True) for t, s in self.overall.items()},
            "per_attribute": {
                attribute: {
                    "name": LASOT_ATTRIBUTES.get(attribute, attribute),
                    "num_sequences": self.attribute_counts[attribute],
                    "trackers": {t: _scalars(s) for t, s in by_tracker.items()},
                }
                for attribute, by_tracker in self.per_attribute.items()
            },
            "per_sequence": {
                t: {seq: _scalars(s) for seq, s in by_seq.items()}
                for t, by_seq in self.per_sequence.items()
            },
            "runs": self.runs,
        }

    def to_markdown(self) -> str:
        """Markdown tables, values in percent as pytracking prints them."""
        lines = [f"# {self.benchmark}: {len(self.sequences)} sequences", ""]
        columns = _columns(self.is_got10k)
        lines += _table(["Tracker", *columns], [
            [name, *(_percent(v) for v in _row(self.overall[name]))] for name in self.ranked()
        ])  # fmt: skip
        if self.per_attribute:
            key = "AO" if self.is_got10k else "AUC"
            lines += ["", f"## Per attribute ({key})", ""]
            rows = [
                [f"{LASOT_ATTRIBUTES.get(a, a)} ({a})", str(self.attribute_counts[a]),
                 *(_percent(_headline(by_tracker[t])) for t in self.ranked())]
                for a, by_tracker in sorted(self.per_attribute.items())
            ]  # fmt: skip
            lines += _table(["Attribute", "Sequences", *self.ranked()], rows)
        if self.runs:
            lines += ["", "## Runs", ""]
            lines += _table(
                ["Tracker", "Policy", "Model", "Image size", "dtype", "Frames/s"],
                [_run_row(name, self.runs.get(name)) for name in self.ranked()],
            )
        return "\n".join(lines) + "\n"


def _run_row(name: str, run: dict[str, Any] | None) -> list[str]:
    """One tracker's line of the Runs table (dashes for folders written elsewhere)."""
    if run is None:
        return [name, "-", "-", "-", "-", "-"]
    size = run.get("overrides", {}).get("image_size", 1024)
    fps = run.get("fps")
    return [
        name,
        str(run.get("tracker", "-")),
        str(run.get("variant", "-")),
        str(size),
        str(run.get("dtype", "-")),
        "-" if fps is None else f"{fps:.2f}",
    ]


def _headline(scores: Scores) -> float:
    return scores.ao if isinstance(scores, Got10kScores) else scores.auc


def _columns(got10k: bool) -> list[str]:
    if got10k:
        return ["AO", "SR0.50", "SR0.75"]
    return ["AUC", "OP50", "OP75", "Precision", "Norm. precision"]


def _row(scores: Scores) -> list[float]:
    if isinstance(scores, Got10kScores):
        return [scores.ao, scores.sr50, scores.sr75]
    return [scores.auc, scores.op50, scores.op75, scores.precision_20, scores.norm_precision_20]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _curve_list(values: np.ndarray) -> list[float | None]:
    return [_finite(float(v)) for v in values]


def _scalars(scores: Scores, *, curves: bool = False) -> dict[str, Any]:
    keys = ["ao", "sr50", "sr75"] if isinstance(scores, Got10kScores) else [
        "auc", "op50", "op75", "precision", "norm_precision"
    ]  # fmt: skip
    out: dict[str, Any] = {k: _finite(v) for k, v in zip(keys, _row(scores), strict=True)}
    if isinstance(scores, Got10kScores):
        out["num_frames"] = scores.num_frames
        if curves:
            out["success_curve"] = _curve_list(scores.success)
        return out
    out["average_overlap"] = _finite(scores.average_overlap)
    if curves:
        out["success_curve"] = _curve_list(scores.success)
        out["precision_curve"] = _curve_list(scores.precision)
        out["norm_precision_curve"] = _curve_list(scores.norm_precision)
    return out


def _percent(value: float) -> str:
    return f"{100.0 * value:.2f}" if math.isfinite(value) else "n/a"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _image_size(sequence: Sequence) -> tuple[int, int]:
    if sequence.image_size is not None:
        return sequence.image_size
    from PIL import Image

    with Image.open(sequence.frames[0]) as image:
        return image.size


def _score_sequence(
    sequence: Sequence, folder: ResultFolder, benchmark: str, convention: OpeConvention
) -> Scores:
    if not sequence.has_ground_truth:
        raise ValueError(
            f"{benchmark}: {sequence.name} has withheld ground truth; pack results for the server"
        )
    visible = None if sequence.absent is None else ~sequence.absent
    if benchmark == "got10k":
        size = _image_size(sequence)
        runs = folder.read_repetitions(sequence.name)
        return got10k_scores([
            got10k_ious(run, sequence.ground_truth, image_size=size, cover=visible) for run in runs
        ])  # fmt: skip
    return sequence_scores(
        folder.read(sequence.name), sequence.ground_truth, visible=visible, convention=convention
    )


def evaluate(
    dataset: Dataset,
    results: Mapping[str, str | Path | ResultFolder],
    *,
    sequences: Iterable[str] | None = None,
    convention: OpeConvention | None = None,
    skip_missing: bool = False,
) -> Report:
    """Score every tracker's results on a dataset.

    Args:
        dataset: benchmark reader; its ``name`` picks the convention and the result layout.
        results: tracker name -> result folder (a path uses the benchmark's official layout).
        sequences: subset of sequence names; default all.
        convention: override of the OPE convention (``metrics.CONVENTIONS[dataset.name]``).
        skip_missing: drop a sequence for every tracker when one lacks it (pytracking
            ``skip_missing_seq``); otherwise a missing result file raises.

    Returns:
        The report.
    """
    if not results:
        raise ValueError("no trackers to evaluate")
    folders = {
        name: f if isinstance(f, ResultFolder) else ResultFolder.for_benchmark(f, dataset.name)
        for name, f in results.items()
    }
    rule = convention or CONVENTIONS.get(dataset.name, GENERIC)
    per_sequence: dict[str, dict[str, Scores]] = {name: {} for name in folders}
    evaluated: list[Sequence] = []
    for name in dataset.sequence_names if sequences is None else sequences:
        if skip_missing and not all(f.is_done(name) for f in folders.values()):
            continue
        sequence = dataset.load(name)
        for tracker, folder in folders.items():
            per_sequence[tracker][name] = _score_sequence(sequence, folder, dataset.name, rule)
        evaluated.append(sequence)
    if not evaluated:
        raise ValueError(f"{dataset.name}: no sequence to evaluate")
    return Report(
        benchmark=dataset.name,
        trackers=tuple(folders),
        sequences=tuple(s.name for s in evaluated),
        overall={t: _pool(list(by_seq.values())) for t, by_seq in per_sequence.items()},
        per_sequence=per_sequence,
        per_attribute=_per_attribute(evaluated, per_sequence),
        attribute_counts=dict(Counter(a for s in evaluated for a in s.attributes).most_common()),
        runs={n: run for n, f in folders.items() if (run := read_run(f.root)) is not None},
    )


def _pool(scores: list[Scores]) -> Scores:
    ope = [s for s in scores if isinstance(s, OpeScores)]
    if ope:
        return summarize(ope)
    return _pool_got10k([s for s in scores if isinstance(s, Got10kScores)])


def _pool_got10k(scores: list[Got10kScores]) -> Got10kScores:
    """Frame-weighted mean: equal, to rounding, to the toolkit's mean over the concatenated IoUs."""
    kept = [s for s in scores if s.num_frames > 0]
    if not kept:
        return got10k_scores([])
    weights = np.array([s.num_frames for s in kept], dtype=np.float64)
    return Got10kScores(
        ao=float(np.average([s.ao for s in kept], weights=weights)),
        sr50=float(np.average([s.sr50 for s in kept], weights=weights)),
        sr75=float(np.average([s.sr75 for s in kept], weights=weights)),
        success=np.average([s.success for s in kept], axis=0, weights=weights),
        num_frames=int(weights.sum()),
    )


def _per_attribute(
    sequences: list[Sequence], per_sequence: dict[str, dict[str, Scores]]
) -> dict[str, dict[str, Scores]]:
    names = sorted({a for s in sequences for a in s.attributes})
    return {
        attribute: {
            tracker: _pool([by_seq[s.name] for s in sequences if attribute in s.attributes])
            for tracker, by_seq in per_sequence.items()
        }
        for attribute in names
    }


_PLOTS = (
    ("success", "Overlap threshold", "Success rate [%]", "Success plot"),
    ("precision", "Location error threshold [pixels]", "Precision [%]", "Precision plot"),
    ("norm_precision", "Normalized location error threshold", "Precision [%]",
     "Normalized precision plot"),
)  # fmt: skip


def _curve(scores: Scores, kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    if isinstance(scores, Got10kScores):
        return GOT10K_THRESHOLDS, scores.success, scores.ao
    if kind == "success":
        return SUCCESS_THRESHOLDS, scores.success, scores.auc
    if kind == "precision":
        return PRECISION_THRESHOLDS, scores.precision, scores.precision_20
    return NORM_PRECISION_THRESHOLDS, scores.norm_precision, scores.norm_precision_20


def plot_curves(report: Report, out_dir: str | Path, *, dpi: int = 150) -> list[Path]:
    """Success (and, for OPE benchmarks, precision and normalised precision) plots as PNG.

    Uses matplotlib's object API with the Agg canvas, so no global backend is touched. Trackers
    are drawn best first; the legend shows the score in brackets as pytracking does.

    Args:
        report: evaluated report.
        out_dir: folder for ``success.png`` (``precision.png``, ``norm_precision.png``).
        dpi: resolution.

    Returns:
        The written files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, xlabel, ylabel, title in _PLOTS[:1] if report.is_got10k else _PLOTS:
        figure = Figure(figsize=(7, 5))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for name in sorted(report.trackers, key=lambda t: -_curve(report.overall[t], kind)[2]):
            x, y, score = _curve(report.overall[name], kind)
            axes.plot(x, 100.0 * y, linewidth=2, label=f"{name} [{100.0 * score:.1f}]")
        axes.set(
            xlabel=xlabel,
            ylabel=ylabel,
            xlim=(x[0], x[-1]),
            ylim=(0, 100),
            title=f"{title} on {report.benchmark} ({len(report.sequences)} sequences)",
        )
        axes.grid(True, linestyle="-.")
        axes.legend(loc="lower left" if kind == "success" else "lower right")
        figure.tight_layout()
        path = folder / f"{kind}.png"
        figure.savefig(path, dpi=dpi)
        written.append(path)
    return written


def write_report(report: Report, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
    """Write ``report.md``, ``report.json`` and (with ``plots``) the PNG curves into ``out_dir``.

    Returns:
        The written files.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    markdown = atomic_write_text(folder / "report.md", report.to_markdown())
    data = atomic_write_text(folder / "report.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return [markdown, data, *(plot_curves(report, folder) if plots else [])]
