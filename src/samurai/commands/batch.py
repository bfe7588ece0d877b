"""``samurai batch MANIFEST --out DIR``: track every video of a manifest, resumably, on local
worker processes or a Ray cluster."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from samurai.commands import (
    EXIT_INTERRUPTED,
    add_model_options,
    add_output_options,
    common_options,
    random_weights_banner,
    tracker_from_args,
)

__all__ = ["EXIT_FAILED", "register", "run"]

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
"""Exit code when the batch ran but some jobs failed (2: the batch was refused)."""

_EPILOG = """\
manifest: one job per line (JSONL) or per row (CSV with a header), e.g.
  {"video": "clips/a.mp4", "box": "300,0,220,400"}
  {"video": "clips/b.mp4", "boxes": [[10,20,50,80], [400,100,60,60]], "id": "b2", "save": "all"}
  {"video": "frames/c/", "box_file": "frames/c/groundtruth.txt", "max_frames": 100}
  video,id,box,save
  clips/a.mp4,a,"300,0,220,400",boxes
keys: video (path or URL; relative to the manifest), id (output folder, default the video's
name), box ("x,y,w,h", several separated by ';'), boxes, box_file, points, labels, and the
per-video options save, absent_box, start_frame, max_frames. The model settings (--model,
--tracker, --image-size, ...) are the batch's: a rerun into the same --out with others is
refused.

outputs: <out>/<id>/ holds what `samurai track` writes; <out>/batch.jsonl records each job
that ended. Running the same command again skips finished jobs and retries the others.
Exit code 0 when every job is done, 1 when some failed (listed with reasons), 2 when the
batch is refused (bad manifest or options).

examples:
  samurai batch videos.jsonl --out results/ --workers 2
  samurai batch videos.csv --out results/ --ray-address auto --workers 8 --device cuda
  samurai batch videos.jsonl --out results/ --ray-address local
  samurai batch videos.jsonl --out results_dam/ --tracker dam4sam
"""


def register(subparsers: Any) -> None:
    """Add ``samurai batch`` to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "batch",
        help="track every video of a manifest, resumably, on local workers or Ray",
        description="Track every video listed in a manifest (JSONL or CSV) from its first-frame\n"
        "boxes, writing what `samurai track` writes for each, on local worker processes or a\n"
        "Ray cluster. Resumable: a rerun skips finished videos.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common_options()],
    )
    parser.add_argument("manifest", type=Path, help="JSONL or CSV file, one video per line")
    out = parser.add_argument_group("outputs (defaults for every video; the manifest may override)")
    out.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    add_output_options(
        out, absent_help="box line while an object is absent (default zero: 0,0,0,0)"
    )
    out.add_argument(
        "--max-frames", type=int, metavar="N", help="track N frames after the start frame"
    )
    add_model_options(parser)
    scale = parser.add_argument_group("scale")
    scale.add_argument(
        "--workers", type=int, default=1, metavar="N", help="parallel workers, one model each"
    )
    scale.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="run on Ray: a cluster address (auto, HOST:PORT, ray://HOST:10001) or 'local' to "
        "start one here; the driver ships videos to the workers and writes their results",
    )
    scale.add_argument(
        "--threads", type=int, metavar="N", help="torch threads per worker (default cores / N)"
    )
    scale.add_argument(
        "--gpus-per-worker", type=float, metavar="F", help="GPUs per Ray actor on cuda (default 1)"
    )
    scale.add_argument(
        "--ray-resources",
        metavar="JSON",
        help="custom Ray resources per worker, e.g. '{\"gpu_node\": 1}' (pins workers to nodes)",
    )
    scale.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        metavar="N",
        help="a job whose worker dies (killed, out of memory, node lost) runs again on another "
        "worker, up to N times in all (default 3)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load the manifest, run the batch, print its summary; 0 ok, 1 some failed, 2 refused."""
    from samurai.batch import BatchConfig, JobOptions, ManagerSpec, load_manifest, parse_save
    from samurai.config import resolve_variant

    if args.max_frames is not None and args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 0, got {args.max_frames}")
    if args.image_size is not None and (args.image_size <= 0 or args.image_size % 32):
        raise ValueError(f"--image-size must be a positive multiple of 32, got {args.image_size}")
    if args.random_weights and args.checkpoint is not None:
        raise ValueError("--random-weights and --checkpoint exclude each other")
    tracker = tracker_from_args(args)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    defaults = JobOptions(
        save=parse_save(args.save), absent_box=args.absent_box, max_frames=args.max_frames
    )
    jobs = load_manifest(args.manifest, defaults)
    variant = resolve_variant(args.model)
    config = BatchConfig(
        out=args.out,
        spec=ManagerSpec(
            variant=variant,
            checkpoint=None if args.checkpoint is None else str(Path(args.checkpoint).absolute()),
            device=args.device,
            dtype=args.dtype,
            random_weights=args.random_weights,
            overrides={} if args.image_size is None else {"image_size": args.image_size},
            tracker=tracker,
        ),
        workers=args.workers,
        ray_address=args.ray_address,
        threads=args.threads,
        gpus_per_worker=args.gpus_per_worker,
        ray_resources=_resources(args.ray_resources),
        max_attempts=args.max_attempts,
    )
    if args.random_weights and not args.quiet:
        sys.stderr.write(random_weights_banner(variant))
    from samurai.batch import run_batch

    try:
        with _JobBar(quiet=args.quiet, total=len(jobs)) as bar:
            summary = run_batch(jobs, config, progress=bar)
    except KeyboardInterrupt:
        sys.stderr.write(
            "\nsamurai: interrupted; finished videos are kept, and the same command again "
            "does the others\n"
        )
        return EXIT_INTERRUPTED
    sys.stdout.write("\n".join(summary.lines()) + "\n")
    if summary.failed:
        return EXIT_FAILED
    return 0


def _resources(text: str | None) -> dict[str, float]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in value.items()
    ):
        raise ValueError(f'--ray-resources must be a JSON object like {{"name": 1}}, got {text!r}')
    return {k: float(v) for k, v in value.items()}


class _JobBar:
    """One progress bar over the batch's jobs (stderr, TTY only); failures in its postfix."""

    def __init__(self, *, quiet: bool, total: int) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = total
        self._bar: Any = None

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc="batch", unit="video", dynamic_ncols=True)
        self._bar.set_postfix_str(f"failed {event.failed}, last {event.job_id}: {event.status}")
        self._bar.update(event.finished - self._bar.n)

    def __enter__(self) -> _JobBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()
