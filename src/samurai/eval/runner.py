"""Track a whole benchmark and report on it: in-process, in a process pool, or on a Ray cluster.

Every sequence is tracked from its first-frame ground-truth box (``x, y, x + w, y + h`` in
integers as the box prompt, as SAMURAI's scripts do) and its boxes are the masks'
bounding boxes, ``[0, 0, 0, 0]`` where the mask is empty. The driver writes each sequence's
result file atomically as soon as it ends, so a killed run resumes where it stopped: sequences
whose box file is complete are skipped. Outputs under ``EvalConfig.out``:

- ``<tracker>/``: result files in the benchmark's official layout (``ResultFolder``);
- ``<tracker>.json``: the run's configuration (tracking policy included) and per-sequence
  frames / seconds / fps;
- ``report.md``, ``report.json`` and the plots (``report.write_report``), or, for test splits
  whose annotations are withheld (GOT-10k test, TrackingNet), the zip the evaluation server takes.

Models are built once per worker (never per sequence); a new ``init_video`` per sequence.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samurai.eval import datasets
from samurai.eval.datasets import Dataset
from samurai.eval.report import evaluate, write_report
from samurai.eval.results import (
    ResultFolder,
    atomic_write_text,
    pack_got10k,
    pack_trackingnet,
    run_config,
)
from samurai.eval.workers import (
    Outcome,
    PredictorSpec,
    SequenceOutput,
    SequenceTask,
    run_here,
    run_pool,
    run_ray,
)

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("lasot", "lasot_ext", "got10k", "otb", "nfs", "uav123", "trackingnet")
"""Benchmark keys of ``samurai eval --dataset``."""


def open_dataset(
    key: str, root: str | Path, *, split: str | None = None, attributes: str | Path | None = None
) -> Dataset:
    """The reader of a benchmark key; ``split`` is LaSOT's ``test``/``all``, GOT-10k's
    ``val``/``test`` or TrackingNet's chunk (``TEST``, ``TRAIN_0``, ...); ``attributes`` a
    pytracking ``*_attributes.json`` file or a LaSOT toolkit ``annos/att`` folder."""
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {key!r}, expected one of: {', '.join(DATASETS)}")
    if not Path(root).is_dir():
        raise ValueError(f"{key}: dataset folder not found: {root}")
    if split is not None and key not in ("lasot", "got10k", "trackingnet"):
        raise ValueError(f"{key} has no splits")
    if attributes is not None and key not in ("lasot", "lasot_ext", "otb", "uav123"):
        raise ValueError(f"{key} has no attribute files")
    extra: dict[str, Any] = {} if attributes is None else {"attributes": attributes}
    readers: dict[str, Callable[[], Dataset]] = {
        "lasot": lambda: datasets.LaSOT(root, split=split or "test", **extra),
        "lasot_ext": lambda: datasets.LaSOTExt(root, **extra),
        "got10k": lambda: datasets.GOT10k(root, split=split or "val"),
        "otb": lambda: datasets.OTB(root, **extra),
        "nfs": lambda: datasets.NfS(root),
        "uav123": lambda: datasets.UAV123(root, **extra),
        "trackingnet": lambda: datasets.TrackingNet(root, chunks=(split or "TEST",)),
    }
    return readers[key]()


@dataclass(frozen=True)
class EvalConfig:
    """One benchmark run (``samurai eval`` options).

    Attributes:
        dataset: benchmark key, one of ``DATASETS``.
        root: dataset folder.
        variant: VARIANTS key of the model.
        checkpoint: weights file; None = the cached official checkpoint (downloaded if missing).
        samurai_mode: SAMURAI motion-aware selection and memory; False = plain SAM 2. Read
            only when ``tracker`` is None.
        overrides: official config names passed to ``build_sam2_video_predictor``
            (``image_size``, ``kf_score_weight``, ...).
        device: torch device of the workers; None = cuda when available, else cpu.
        dtype: ``float32``, or ``bfloat16`` / ``float16`` under ``torch.autocast``.
        split: dataset split, see ``open_dataset``.
        attributes: attribute file or folder, see ``open_dataset``.
        sequences: names to run (and report on); None = the whole split.
        out: output folder (results, sidecar, report).
        workers: parallel workers (processes, or Ray actors), each holding one model.
        ray_address: run on Ray: a cluster address (``auto``, ``ray://host:10001``) or
            ``"local"`` to start a local instance. Frame paths must be readable by every node.
        threads: torch CPU threads per worker; None = max(1, cpu cores // workers).
        gpus_per_worker: GPUs each Ray actor requests on cuda (fractions share a GPU); None = 1.
        compare: tracker name -> result folder of other trackers to add to the report.
        tracker_name: name of this run's result folder; None = ``tracker_label``.
        plots: write the success / precision plots with the report.
        tracker: the tracking policy, one of `samurai.config.TRACKERS`; None = ``samurai`` or
            ``sam2`` as ``samurai_mode`` says.
    """

    dataset: str
    root: Path
    variant: str = "sam2.1_hiera_t"
    checkpoint: Path | None = None
    samurai_mode: bool = True
    overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    dtype: str = "float32"
    split: str | None = None
    attributes: Path | None = None
    sequences: tuple[str, ...] | None = None
    out: Path = Path("samurai_eval")
    workers: int = 1
    ray_address: str | None = None
    threads: int | None = None
    gpus_per_worker: float | None = None
    compare: Mapping[str, Path] = field(default_factory=dict)
    tracker_name: str | None = None
    plots: bool = True
    tracker: str | None = None

    def __post_init__(self) -> None:
        from samurai.config import resolve_tracker, resolve_variant

        object.__setattr__(self, "variant", resolve_variant(self.variant))
        if self.tracker is not None:
            object.__setattr__(self, "tracker", resolve_tracker(self.tracker))
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}, expected one of: {DATASETS}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown dtype {self.dtype!r}, expected float32, bfloat16, float16")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.name in self.compare:
            raise ValueError(f"a compared result folder is also named {self.name!r}")

    @property
    def policy(self) -> str:
        """The tracking policy that runs: ``tracker``, else by ``samurai_mode``."""
        return self.tracker or ("samurai" if self.samurai_mode else "sam2")

    @property
    def name(self) -> str:
        """The result folder's name: ``tracker_name`` or ``tracker_label(...)``."""
        return self.tracker_name or tracker_label(
            self.variant, tracker=self.policy, image_size=self.overrides.get("image_size")
        )

    @property
    def threads_per_worker(self) -> int:
        """Torch threads of each worker (the same for every backend, so results match)."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def tracker_label(
    variant: str,
    *,
    tracker: str | None = None,
    samurai_mode: bool = True,
    image_size: int | None = None,
) -> str:
    """``<tracker>_<variant>``, ``_<size>`` if not 1024: ``samurai_sam2.1_hiera_t``,
    ``dam4sam_sam2.1_hiera_t``, ``sam2_sam2_hiera_t_512``; ``tracker`` None: ``samurai`` or
    ``sam2`` by ``samurai_mode``."""
    from samurai.config import resolve_tracker

    name = resolve_tracker(tracker) if tracker is not None else None
    policy = name or ("samurai" if samurai_mode else "sam2")
    label = f"{policy}_{variant}"
    return label if image_size in (None, 1024) else f"{label}_{int(image_size)}"


@dataclass(frozen=True)
class Progress:
    """Reported after each sequence; ``fps`` is None for a sequence skipped as finished."""

    name: str
    done: int
    total: int
    fps: float | None


class _Sidecar:
    """``<out>/<tracker>.json``: the run's configuration and per-sequence timing."""

    def __init__(self, path: Path, run: dict[str, Any]) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {"run": run, "sequences": {}}
        if isinstance(data.get("run"), dict):
            data["run"] = run_config(data["run"])
        if data.get("run") != run:
            raise ValueError(
                f"{path.parent / path.stem} holds results of another configuration "
                f"({data.get('run')}); choose another --out or tracker name"
            )
        self.data = data

    def record(self, output: SequenceOutput) -> float:
        seconds = float(output.times.sum())
        fps = len(output.times) / seconds if seconds > 0 else float("inf")
        entry = {"frames": len(output.times), "seconds": round(seconds, 6), "fps": round(fps, 4)}
        self.data["sequences"][output.name] = entry
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        return fps


def run_benchmark(
    config: EvalConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    predictor: Any = None,
) -> Path:
    """Track every unfinished sequence of a benchmark, then write its report.

    Args:
        config: the run.
        progress: called after every sequence (skipped ones first, with ``fps=None``).
        predictor: an already built video predictor to use in-process (``workers=1`` without
            Ray only); by default one is built from the config.

    Returns:
        ``<out>/report.md``, or the server zip for test splits with withheld annotations.

    Raises:
        ValueError: bad dataset / options, or some sequences failed (the others are saved; a
            rerun retries only the failed ones).
    """
    dataset = open_dataset(
        config.dataset, config.root, split=config.split, attributes=config.attributes
    )
    names = _select(dataset, config.sequences)
    folder = ResultFolder.for_benchmark(config.out / config.name, dataset.name)
    spec = _predictor_spec(config, resolve_checkpoint=predictor is None)
    run = {
        "dataset": config.dataset,
        "variant": spec.variant,
        "tracker": spec.tracker_name,
        "dtype": spec.dtype,
        "overrides": spec.overrides,
    }
    sidecar = _Sidecar(config.out / f"{config.name}.json", run)
    tasks = _unfinished(dataset, names, folder, progress)
    done = len(names) - len(tasks)
    failures: list[tuple[str, BaseException]] = []
    for task, outcome in _execute(config, spec, tasks, predictor):
        if isinstance(outcome, BaseException):
            logger.error("%s failed: %s", task.name, outcome)
            failures.append((task.name, outcome))
            continue
        times = outcome.times if folder.layout == "got10k" else None
        fps = sidecar.record(outcome)
        folder.write(task.name, outcome.boxes, times=times)  # the box file last marks it done
        done += 1
        logger.info("%s (%d/%d): %.1f fps", task.name, done, len(names), fps)
        if progress is not None:
            progress(Progress(task.name, done, len(names), fps))
    if failures:
        name, error = failures[0]
        raise ValueError(
            f"{len(failures)} of {len(tasks)} sequences failed (first: {name}: {error}); "
            "the others are saved, run again to retry"
        )
    results: dict[str, Path | ResultFolder] = {config.name: folder, **config.compare}
    return report_benchmark(dataset, results, config.out, sequences=names, plots=config.plots)


def _unfinished(
    dataset: Dataset,
    names: list[str],
    folder: ResultFolder,
    progress: Callable[[Progress], None] | None,
) -> list[SequenceTask]:
    tasks: list[SequenceTask] = []
    for index, name in enumerate(names):
        sequence = dataset.load(name)
        if not folder.is_done(name, num_frames=len(sequence.frames)):
            x, y, w, h = (float(v) for v in sequence.init_box)
            tasks.append(SequenceTask(name, tuple(map(str, sequence.frames)), (x, y, w, h)))
        elif progress is not None:
            progress(Progress(name, index + 1 - len(tasks), len(names), None))
    if len(tasks) < len(names):
        skipped = len(names) - len(tasks)
        logger.info("%d of %d sequences already finished in %s", skipped, len(names), folder.root)
    return tasks


def _select(dataset: Dataset, sequences: Iterable[str] | None) -> list[str]:
    """The sequences to run, their files checked (only theirs: a partial download is fine)."""
    available = dataset.sequence_names
    names = available
    if sequences is not None:
        wanted = set(sequences)
        unknown = sorted(wanted - set(available))
        if unknown:
            raise ValueError(f"{dataset.name}: unknown sequence(s) {', '.join(unknown)}")
        names = [name for name in available if name in wanted]
    check = getattr(dataset, "check", None)  # readers of samurai.eval.datasets have one
    if check is not None:
        check(names)
    return names


def _predictor_spec(config: EvalConfig, *, resolve_checkpoint: bool) -> PredictorSpec:
    device = config.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = config.checkpoint
    remote = config.ray_address not in (None, "local")
    if resolve_checkpoint and not remote:  # one download before the workers, not one each
        from samurai.checkpoints import ensure_checkpoint

        checkpoint = ensure_checkpoint(config.variant, checkpoint)
    return PredictorSpec(
        variant=config.variant,
        checkpoint=None if checkpoint is None else str(checkpoint),
        device=device,
        dtype=config.dtype,
        samurai_mode=config.samurai_mode,
        overrides=dict(config.overrides),
        tracker=config.policy,
    )


def _execute(
    config: EvalConfig, spec: PredictorSpec, tasks: list[SequenceTask], predictor: Any
) -> Iterator[tuple[SequenceTask, Outcome]]:
    if not tasks:
        return iter(())
    if predictor is not None and (config.workers > 1 or config.ray_address is not None):
        raise ValueError("a prebuilt predictor runs in-process only (workers=1, no Ray)")
    workers = min(config.workers, len(tasks))
    if config.ray_address is not None:
        return run_ray(config, spec, tasks, workers)
    if config.workers > 1:
        return run_pool(spec, tasks, workers, config.threads_per_worker)
    return run_here(spec, tasks, predictor)


def report_benchmark(
    dataset: Dataset,
    results: Mapping[str, str | Path | ResultFolder],
    out: str | Path,
    *,
    sequences: Iterable[str] | None = None,
    plots: bool = True,
) -> Path:
    """Write ``report.md`` / ``report.json`` (and plots) for result folders into ``out``.

    For test splits with withheld annotations nothing can be scored: the first tracker's results
    are packed as ``<out>/<tracker>.zip`` for the evaluation server instead.

    Returns:
        The report.md path, or the zip path.
    """
    names = _select(dataset, sequences)
    if not dataset.load(names[0]).has_ground_truth:
        tracker, folder = next(iter(results.items()))
        if not isinstance(folder, ResultFolder):
            folder = ResultFolder.for_benchmark(folder, dataset.name)
        pack = pack_got10k if folder.layout == "got10k" else pack_trackingnet
        return pack(folder, Path(out) / f"{tracker}.zip", sequences=names)
    report = evaluate(dataset, results, sequences=names)
    return write_report(report, out, plots=plots)[0]
