"""The ``samurai`` command: ``track``, ``download``, ``models``, ``eval``, ``batch``, ``serve``,
``bench``.

Each subcommand lives in ``samurai/commands/<module>.py`` and registers itself (see
`samurai.commands`); this file only assembles the parser and runs the chosen handler. Only the
chosen command's module is imported (the others appear in ``--help`` by name and help line),
so ``samurai --help`` and argument errors print at once, without importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable, Sequence

from samurai.commands import configure_logging, run_guarded

__all__ = ["COMMANDS", "COMMAND_MODULES", "build_parser", "main"]

logger = logging.getLogger(__name__)

COMMANDS: dict[str, tuple[str, str]] = {
    "track": ("track", "track objects in a video from first-frame boxes or clicks"),
    "download": ("download", "download official checkpoints into the cache"),
    "models": ("download", "list model variants, checkpoint sizes and whether they are cached"),
    "eval": ("eval", "track a benchmark (LaSOT, GOT-10k, ...) and report its metrics"),
    "batch": ("batch", "track every video of a manifest, resumably, on local workers or Ray"),
    "serve": ("serve", "run the tracking web service (HTTP API + web page)"),
    "bench": ("bench", "measure tracking speed by component, FLOPs and achieved GFLOP/s"),
}
"""Subcommand -> (module of ``samurai.commands`` whose ``register(subparsers)`` adds it, help
line shown by ``samurai --help``), in help order. tests/test_cli_help.py checks that each help
line is the one its module registers."""

COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))

_DESCRIPTION = """\
Zero-shot video object tracking and segmentation: SAM 2 / SAM 2.1 with SAMURAI's motion-aware
memory. Example:

  samurai track video.mp4 --box 300,0,220,400          # x,y,w,h of the object on frame 0
  samurai track video.mp4 --box 300,0,220,400 --random-weights   # offline trial, meaningless
"""


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument not starting with '-')."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser with the modules of ``commands`` registered (None: every module).

    The other subcommands get a placeholder parser with their help line, so ``--help`` lists
    them and their modules stay unimported.
    """
    parser = argparse.ArgumentParser(
        prog="samurai",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = COMMANDS if commands is None else commands
    modules = {COMMANDS[name][0] for name in wanted}
    for name, (module_name, help_line) in COMMANDS.items():
        if name in subparsers.choices:  # registered with an earlier name's module
            continue
        if module_name in modules:
            importlib.import_module(f"samurai.commands.{module_name}").register(subparsers)
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code: 0 ok, 1 some batch jobs failed, 2 bad input or failure,
    130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP (completed frames kept)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen(argv)
    args = build_parser([command] if command in COMMANDS else []).parse_args(argv)
    configure_logging(getattr(args, "quiet", False))
    return run_guarded(lambda: int(args.handler(args)))


if __name__ == "__main__":
    sys.exit(main())
