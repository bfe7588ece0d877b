"""The ``samurai`` command: ``track``, ``download``, ``models``, and ``eval`` / ``serve`` /
``bench`` where those modules are installed.

Each subcommand lives in ``samurai/commands/<name>.py`` and registers itself (see
`samurai.commands`); this file only assembles the parser and runs the chosen handler.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from samurai.commands import configure_logging, run_guarded

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

logger = logging.getLogger(__name__)

COMMAND_MODULES = ("track", "download", "eval", "serve", "bench")
"""Modules of ``samurai.commands`` whose ``register(subparsers)`` adds subcommands, in help order.
A module that does not exist (yet) is skipped."""

_DESCRIPTION = """\
Zero-shot video object tracking and segmentation: SAM 2 / SAM 2.1 with SAMURAI's motion-aware
memory. Example:

  samurai track video.mp4 --box 300,0,220,400          # x,y,w,h of the object on frame 0
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samurai",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module_name = f"samurai.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input or failure, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "quiet", False))
    return run_guarded(lambda: int(args.handler(args)))


if __name__ == "__main__":
    sys.exit(main())
