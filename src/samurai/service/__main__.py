"""``python -m samurai.service``: the same as ``samurai serve``."""

from __future__ import annotations

import argparse
import sys

from samurai.commands import configure_logging, run_guarded
from samurai.commands.serve import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m samurai.service", description="Run the samurai tracking service."
    )
    add_arguments(parser)
    args = parser.parse_args()
    configure_logging(args.quiet)
    return run_guarded(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
