"""``samurai eval``: track a benchmark and report on it, or evaluate existing result folders."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from samurai.commands import add_model_options, common_options, tracker_from_args
from samurai.eval.runner import DATASETS

logger = logging.getLogger(__name__)

_EPILOG = """\
examples:
  samurai eval --dataset lasot --root LaSOT --model sam2.1_hiera_l --device cuda --dtype float16
  samurai eval --dataset got10k --root GOT10k --workers 4 --device cuda
  samurai eval --dataset lasot --root LaSOT --ray-address auto --workers 16 --device cuda
  samurai eval --dataset lasot --root LaSOT --tracker dam4sam --device cuda
  samurai eval --dataset lasot --root LaSOT --out runs \
      --results runs/samurai_sam2.1_hiera_t runs/dam4sam_sam2.1_hiera_t   # side by side
"""

# options that only make sense when tracking (dest -> flag), refused with --results
_TRACKING_OPTIONS = {
    "model": "--model", "checkpoint": "--checkpoint", "device": "--device", "dtype": "--dtype",
    "samurai": "--no-samurai", "tracker": "--tracker", "image_size": "--image-size",
    "name": "--name",
    "compare": "--compare", "workers": "--workers", "ray_address": "--ray-address",
    "threads": "--threads", "gpus_per_worker": "--gpus-per-worker",
}  # fmt: skip


def register(subparsers: Any) -> None:
    """Add ``samurai eval`` to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "eval",
        help="track a benchmark (LaSOT, GOT-10k, ...) and report its metrics",
        description="Track every sequence of a benchmark from its first-frame ground-truth box\n"
        "(resumable; in parallel processes or on Ray), then write report.md / report.json and\n"
        "plots. With --results, evaluate existing result folders instead of tracking.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    data = parser.add_argument_group("dataset")
    data.add_argument("--dataset", required=True, choices=DATASETS, help="the benchmark")
    data.add_argument("--root", required=True, type=Path, metavar="PATH", help="its folder")
    data.add_argument(
        "--split",
        help="lasot: test (the 280-sequence protocol, default) or all; got10k: val (default) or "
        "test; trackingnet: the chunk (default TEST)",
    )
    data.add_argument(
        "--attributes",
        type=Path,
        metavar="PATH",
        help="per-sequence attributes: pytracking *_attributes.json or LaSOT annos/att folder",
    )
    data.add_argument("--sequences", nargs="+", metavar="NAME", help="only these sequences")
    out = parser.add_argument_group("outputs")
    out.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="results, timings and report (default samurai_eval/<dataset>)",
    )
    out.add_argument("--name", help="result folder name (default <tracker>_<model>[_<size>])")
    out.add_argument(
        "--compare", nargs="+", type=Path, metavar="DIR", help="other result folders to report"
    )
    out.add_argument(
        "--results",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="evaluate these result folders (names = folder names) without tracking",
    )
    out.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_model_options(parser, random_weights=False)  # workers build their own models
    scale = parser.add_argument_group("scale")
    scale.add_argument(
        "--workers", type=int, metavar="N", help="parallel workers, one model each (default 1)"
    )
    scale.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run on Ray: a cluster address (auto, ray://HOST:10001) or 'local' to start one",
    )
    scale.add_argument(
        "--threads", type=int, metavar="N", help="torch threads per worker (default cores / N)"
    )
    scale.add_argument(
        "--gpus-per-worker", type=float, metavar="F", help="GPUs per Ray actor (default 1)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Track and report, or only evaluate; prints the metrics table to stdout."""
    from samurai.eval.runner import EvalConfig, open_dataset, report_benchmark, run_benchmark

    out = args.out or Path("samurai_eval") / args.dataset
    if args.results:
        defaults = {"model": "sam2.1_hiera_t", "device": "cpu", "dtype": "float32", "samurai": True}
        given = [f for d, f in _TRACKING_OPTIONS.items() if getattr(args, d) != defaults.get(d)]
        if given:
            raise ValueError(f"--results evaluates existing folders; {given[0]} is for tracking")
        dataset = open_dataset(
            args.dataset, args.root, split=args.split, attributes=args.attributes
        )
        results = _named(args.results, "--results")
        path = report_benchmark(
            dataset, results, out, sequences=args.sequences, plots=not args.no_plots
        )
    else:
        tracker = tracker_from_args(args)
        if args.image_size is not None and args.image_size != 1024:
            logger.warning("--image-size %d: the model was trained at 1024", args.image_size)
        config = EvalConfig(
            dataset=args.dataset,
            root=args.root,
            variant=args.model,
            checkpoint=None if args.checkpoint is None else Path(args.checkpoint),
            tracker=tracker,
            overrides={} if args.image_size is None else {"image_size": args.image_size},
            device=args.device,
            dtype=args.dtype,
            split=args.split,
            attributes=args.attributes,
            sequences=None if args.sequences is None else tuple(args.sequences),
            out=out,
            workers=args.workers or 1,
            ray_address=args.ray_address,
            threads=args.threads,
            gpus_per_worker=args.gpus_per_worker,
            compare=_named(args.compare or [], "--compare"),
            tracker_name=args.name,
            plots=not args.no_plots,
        )
        with _SequenceBar(quiet=args.quiet, desc=args.dataset) as bar:
            path = run_benchmark(config, progress=bar)
    if path.suffix == ".md":
        sys.stdout.write(path.read_text())
    sys.stdout.write(f"\nwrote {path}\n")
    return 0


def _named(folders: list[Path], option: str) -> dict[str, Path]:
    """Tracker name (the folder's name) -> result folder."""
    names: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ValueError(f"{option}: result folder not found: {folder}")
        if folder.name in names:
            raise ValueError(f"{option}: two result folders are named {folder.name!r}")
        names[folder.name] = folder
    return names


class _SequenceBar:
    """A `run_benchmark` progress callback: a tqdm bar over sequences (stderr, TTY only)."""

    def __init__(self, *, quiet: bool, desc: str) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.desc = desc
        self._bar: Any = None

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=event.total, desc=self.desc, unit="seq", dynamic_ncols=True)
        speed = "finished before" if event.fps is None else f"{event.fps:.1f} fps"
        self._bar.set_postfix_str(f"{event.name}: {speed}")
        self._bar.update(event.done - self._bar.n)

    def __enter__(self) -> _SequenceBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()
