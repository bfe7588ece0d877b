"""``samurai download [MODEL|all]`` and ``samurai models``: official checkpoints and the cache."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from samurai.checkpoints import (
    BASE_URL_ENV,
    HOME_ENV,
    checkpoint_path,
    download,
    is_cached,
    list_models,
    samurai_home,
)
from samurai.commands import common_options
from samurai.config import VARIANTS, resolve_variant

__all__ = ["register", "run_download", "run_models"]

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download official checkpoints into the cache",
        description=f"Download official SAM 2 / SAM 2.1 checkpoints, verify their size and "
        f"sha256, and cache them as ${HOME_ENV}/checkpoints/<variant>.pt (${HOME_ENV} "
        f"defaults to ~/.cache/samurai; ${BASE_URL_ENV} sets a mirror).",
        parents=[common_options()],
    )
    parser.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help=f"a variant ({', '.join(VARIANTS)}) or all; default: --model",
    )
    parser.add_argument(
        "--model", dest="model_option", default="sam2.1_hiera_t", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--force", action="store_true", help="download again even when already cached"
    )
    parser.set_defaults(handler=run_download)

    models = subparsers.add_parser(
        "models",
        help="list model variants, checkpoint sizes and whether they are cached",
        parents=[common_options()],
    )
    models.set_defaults(handler=run_models)


def run_download(args: argparse.Namespace) -> int:
    name = args.model or args.model_option
    variants = list(VARIANTS) if name == "all" else [resolve_variant(name)]
    lines = []
    for variant in variants:
        if is_cached(variant) and not args.force:
            path = checkpoint_path(variant)
            logger.info("%s is already cached", variant)
        else:
            logger.info("downloading %s", variant)
            path = download(variant, progress=not args.quiet)
        lines.append(f"{variant}  {path}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def run_models(args: argparse.Namespace) -> int:
    rows = [("variant", "size", "cached", "path")]
    for info in list_models():
        size = "?" if info.size is None else f"{info.size / 2**20:.0f} MiB"
        rows.append((info.variant, size, "yes" if info.cached else "no", str(info.path)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    lines.append(f"cache: {samurai_home() / 'checkpoints'} (set ${HOME_ENV} to move it)")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
