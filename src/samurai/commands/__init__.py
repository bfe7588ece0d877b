"""Subcommands of the ``samurai`` CLI, one module each, plus what they share.

A command module exposes ``register(subparsers)``, which adds its parser(s) with
``subparsers.add_parser(name, help=..., parents=[common_options()])`` and sets
``parser.set_defaults(handler=run)``; ``run(args) -> int`` returns the exit code. Errors are
raised, not printed: `run_guarded` turns the expected ones (bad input, missing or corrupt
checkpoints, I/O) into one line ``samurai: error: <message>`` and exit code 2, and Ctrl-C into
exit code 130. `samurai.cli` lists the modules; a module that does not exist yet is skipped.

Model options (``--model``, ``--checkpoint``, ``--random-weights``, ``--device``, ``--dtype``,
``--tracker`` / ``--no-samurai``, ``--image-size``) come from `add_model_options` and become an
`InferenceManager` through `manager_from_args`, so every command reads them the same way;
`tracker_from_args` resolves the tracking policy. The per-video outputs ``--save`` and
``--absent-box`` of ``track`` and ``batch`` come from `add_output_options`.

Nothing here imports torch: ``samurai --help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

from samurai.checkpoints import CheckpointError
from samurai.config import TRACKERS, VARIANTS

__all__ = [
    "DEFAULT_SAVE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "TRACKER_HELP",
    "ProgressBar",
    "add_model_options",
    "add_output_options",
    "common_options",
    "configure_logging",
    "error_line",
    "manager_from_args",
    "random_weights_banner",
    "run_guarded",
    "tracker_from_args",
]

logger = logging.getLogger(__name__)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# FrameSourceError and CheckpointMismatchError are ValueErrors (named here without importing
# samurai.build, which imports torch).
_EXPECTED_ERRORS = (ValueError, CheckpointError, OSError)

DEFAULT_SAVE = "overlay,boxes,rle,scores"
"""``--save`` default of ``track`` and ``batch``: every output but the PNG masks."""

TRACKER_HELP = (
    "samurai = SAMURAI, Kalman-filter mask choice and quality-gated memory; sam2 = plain "
    "SAM 2.1; dam4sam = DAM4SAM, distractor-aware memory (RAM + DRM), box prompts only; "
    "samurai+dam = SAMURAI's mask choice over DAM4SAM's memory, EXPERIMENTAL and unpublished "
    "(no paper numbers); see docs/trackers.md"
)
"""What each ``--tracker`` choice is, for the help of every command that takes it."""

_BANNER = """\
{rule}
  WARNING: {variant} runs with RANDOM (untrained) weights{reason}.
  Every mask, box and score it writes is MEANINGLESS; the run only shows that
  the pipeline works end to end. For real results: run `samurai download {variant}`
  with network access, or download the checkpoint yourself and pass --checkpoint PATH.
{rule}
"""


def common_options() -> argparse.ArgumentParser:
    """Parent parser with the options every subcommand takes (``--quiet``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="errors only: no progress bar, info or warnings"
    )
    return parser


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    default_model: str = "sam2.1_hiera_t",
    random_weights: bool = True,
) -> Any:
    """``--model --checkpoint [--random-weights] --device --dtype --tracker --no-samurai
    --image-size``; returns the argument group, for commands that add model options of their
    own.

    ``random_weights``: offer ``--random-weights`` (read by `manager_from_args`; commands that
    build their models otherwise pass False).
    """
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default_model,
        metavar="VARIANT",
        help=f"model variant (default {default_model}); one of: {', '.join(VARIANTS)} "
        "(long names such as sam2.1_hiera_tiny work too)",
    )
    group.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights file (.pt or .safetensors) for --model; default: the cached official "
        "checkpoint, downloaded on first use",
    )
    if random_weights:
        group.add_argument(
            "--random-weights",
            action="store_true",
            help="no checkpoint: RANDOM (untrained) weights, to try the tool offline; every "
            "output is then meaningless",
        )
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    group.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="inference precision (default float32); bfloat16: bfloat16 attention in the memory "
        "attention (and split-bfloat16 linear layers where oneDNN's float32 GEMMs are not "
        "available), decisions kept on the reference traces; float16 (cuda, mps) runs under "
        "autocast",
    )
    group.add_argument(
        "--tracker", choices=TRACKERS, help=f"tracking policy (default samurai): {TRACKER_HELP}"
    )
    group.add_argument(
        "--no-samurai",
        dest="samurai",
        action="store_false",
        help="plain SAM 2 tracking, the same as --tracker sam2",
    )
    group.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="model input size, a multiple of 32 (default 1024, as trained); smaller is faster "
        "but changes results",
    )
    return group


def add_output_options(group: Any, *, absent_help: str) -> None:
    """``--save LIST`` and ``--absent-box {zero,last,predicted}`` on ``group`` (a parser or an
    argument group); ``absent_help`` explains the choice in the command's words."""
    from samurai.io.outputs import ALL_OUTPUTS

    group.add_argument(
        "--save",
        default=DEFAULT_SAVE,
        metavar="LIST",
        help=f"comma-separated outputs among {','.join(sorted(ALL_OUTPUTS))}, or all "
        f"(default {DEFAULT_SAVE})",
    )
    group.add_argument(
        "--absent-box",
        choices=("zero", "last", "predicted"),
        default="zero",
        help=absent_help,
    )


def tracker_from_args(args: argparse.Namespace) -> str:
    """The tracking policy of ``--tracker`` / ``--no-samurai`` (default ``samurai``).

    ``--no-samurai`` is ``--tracker sam2``; with another ``--tracker`` it is a one-line
    ``ValueError``.
    """
    tracker = getattr(args, "tracker", None)
    plain = not getattr(args, "samurai", True)
    if tracker is None:
        return "sam2" if plain else "samurai"
    if plain and tracker != "sam2":
        raise ValueError(f"--no-samurai means --tracker sam2; it contradicts --tracker {tracker}")
    return str(tracker)


def random_weights_banner(variant: str, reason: str | None = None) -> str:
    """The loud stderr warning of a run on random weights (``reason``: why, if not chosen)."""
    because = "" if reason is None else f":\n    the checkpoint is not available: {reason}"
    return _BANNER.format(rule="!" * 78, variant=variant, reason=because)


def manager_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    """An `InferenceManager` for the parsed model options (``overrides``: config names).

    With ``--random-weights`` the model is untrained and a loud banner goes to stderr (unless
    ``--quiet``); a checkpoint that cannot be downloaded names that option in its error.
    """
    from samurai.config import resolve_variant
    from samurai.manager import InferenceManager  # imports torch: only when a command needs it

    random_weights = bool(getattr(args, "random_weights", False))
    if random_weights and args.checkpoint is not None:
        raise ValueError("--random-weights and --checkpoint exclude each other")
    if args.image_size is not None:
        if args.image_size <= 0 or args.image_size % 32:
            raise ValueError(
                f"--image-size must be a positive multiple of 32, got {args.image_size}"
            )
        overrides["image_size"] = args.image_size
        if args.image_size != 1024:
            logger.warning(
                "--image-size %d: the model was trained at 1024; results will differ",
                args.image_size,
            )
    if random_weights and not args.quiet:
        sys.stderr.write(random_weights_banner(resolve_variant(args.model)))
    try:
        return InferenceManager(
            args.model,
            args.checkpoint,
            device=args.device,
            dtype=args.dtype,
            tracker=tracker_from_args(args),
            random_weights=random_weights,
            download_progress=not args.quiet,
            **overrides,
        )
    except CheckpointError as exc:
        if args.checkpoint is not None or not hasattr(args, "random_weights"):
            raise
        raise CheckpointError(
            f"{exc}; or try samurai offline with --random-weights (meaningless results)"
        ) from exc


_silenced: list[tuple[int, list[Any]]] = []  # what --quiet replaced: logging.disable, filters


def configure_logging(quiet: bool) -> None:
    """samurai's messages on stderr as ``samurai: <message>``; errors only under ``--quiet``.

    Without ``quiet`` only the ``samurai`` logger is touched (a handler added once), so
    embedding code keeps its own logging setup. ``quiet`` means errors only for the whole
    process: every logger below ERROR and Python warnings are silenced too.
    """
    package = logging.getLogger("samurai")
    for handler in [h for h in package.handlers if getattr(h, "_samurai_cli", False)]:
        package.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("samurai: %(message)s"))
    handler._samurai_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.ERROR if quiet else logging.INFO)
    if quiet and not _silenced:
        _silenced.append((logging.root.manager.disable, list(warnings.filters)))
        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")
    elif not quiet and _silenced:  # a later non-quiet call in the same process undoes it
        level, filters = _silenced.pop()
        logging.disable(level)
        warnings.filters[:] = filters


def error_line(exc: BaseException) -> str:
    """One line describing ``exc`` (OSError: reason and file name)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.strerror}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def run_guarded(body: Callable[[], int], *, prog: str = "samurai") -> int:
    """Run a command body; expected errors -> one line on stderr, exit 2; Ctrl-C -> 130."""
    try:
        return body()
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\n{prog}: interrupted; outputs written so far are kept as *.incomplete\n"
        )
        return EXIT_INTERRUPTED
    except _EXPECTED_ERRORS as exc:
        logger.debug("command failed", exc_info=True)
        sys.stderr.write(f"{prog}: error: {error_line(exc)}\n")
        return EXIT_ERROR


class ProgressBar:
    """An `InferenceManager` progress callback drawing a tqdm bar (frames/s, ETA) on stderr.

    Disabled under ``quiet`` or when stderr is not a terminal. Use as a context manager so the
    bar is closed however tracking ends.
    """

    def __init__(self, *, quiet: bool, desc: str = "tracking") -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.desc = desc
        self._bar: Any = None

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit="frame", dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
