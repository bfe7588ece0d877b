"""Official SAM 2 / SAM 2.1 checkpoints: registry, local cache and verified download.

Every command resolves its weights with :func:`ensure_checkpoint`: an explicit ``--checkpoint``
path first, then the cache ``$SAMURAI_HOME/checkpoints/<variant>.pt`` (``SAMURAI_HOME`` defaults
to ``~/.cache/samurai``), then a download. Downloads stream to a temporary file next to the
cache entry, are checked against the size and sha256 recorded below, and only then renamed into
place, so an interrupted or corrupt download never leaves a file that looks cached.

``SAMURAI_CHECKPOINT_BASE_URL`` replaces the official location with a mirror: the official file
name (e.g. ``sam2.1_hiera_tiny.pt``) is appended to it. Mirrors are held to the same size and
sha256 as the official files.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from samurai.config import VARIANTS, resolve_variant

logger = logging.getLogger(__name__)

HOME_ENV = "SAMURAI_HOME"
BASE_URL_ENV = "SAMURAI_CHECKPOINT_BASE_URL"
DEFAULT_HOME = Path("~/.cache/samurai")
DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for the connection and for each read before giving up."""

_CHUNK_BYTES = 1 << 20
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
_SAM2_1_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
_HOW_TO_FIX = "download the file yourself and pass --checkpoint PATH"


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded or verified; the message is one line."""


@dataclass(frozen=True)
class CheckpointSpec:
    """One official checkpoint file.

    Attributes:
        variant: VARIANTS key, e.g. ``"sam2.1_hiera_t"``.
        file_name: official file name, e.g. ``"sam2.1_hiera_tiny.pt"``.
        url: official download URL.
        size: file size in bytes; None when no public source states it.
        sha256: lowercase hex digest; None when no public source states it.
    """

    variant: str
    file_name: str
    url: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``samurai models``."""

    variant: str
    url: str
    size: int | None
    cached: bool
    path: Path


# URLs: facebookresearch/sam2 checkpoints/download_ckpts.sh (072824 = SAM 2, 092824 = SAM 2.1).
# sha256 + size: the Git LFS pointers of Meta's Hugging Face repos facebook/sam2-hiera-{tiny,
# small,base-plus,large} and facebook/sam2.1-hiera-{tiny,small,base-plus,large} (same files as
# the URLs above). Where the facebook page showed the digest but not the exact byte count, the
# size comes from an LFS pointer of a verbatim mirror with the same sha256: merve/sam2-hiera-
# {base-plus,large} for SAM 2 b+/l, camenduru/sam2-1-hiera (commit cdd35a4) for all of SAM 2.1.
# Both columns agree with computational-cell-analytics/micro-sam micro_sam/v2/util.py (sha256,
# checked by pooch against these URLs) and segment-anything-models-java/SAMJ
# Sam2EnvManager.java (byte sizes checked against these URLs).
CHECKPOINTS: dict[str, CheckpointSpec] = {
    spec.variant: spec
    for spec in (
        CheckpointSpec(
            variant="sam2_hiera_t",
            file_name="sam2_hiera_tiny.pt",
            url=f"{_SAM2_URL}/sam2_hiera_tiny.pt",
            size=155906050,
            sha256="65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
        ),
        CheckpointSpec(
            variant="sam2_hiera_s",
            file_name="sam2_hiera_small.pt",
            url=f"{_SAM2_URL}/sam2_hiera_small.pt",
            size=184309650,
            sha256="95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
        ),
        CheckpointSpec(
            variant="sam2_hiera_b+",
            file_name="sam2_hiera_base_plus.pt",
            url=f"{_SAM2_URL}/sam2_hiera_base_plus.pt",
            size=323493298,
            sha256="d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
        ),
        CheckpointSpec(
            variant="sam2_hiera_l",
            file_name="sam2_hiera_large.pt",
            url=f"{_SAM2_URL}/sam2_hiera_large.pt",
            size=897952466,
            sha256="7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b",
        ),
        CheckpointSpec(
            variant="sam2.1_hiera_t",
            file_name="sam2.1_hiera_tiny.pt",
            url=f"{_SAM2_1_URL}/sam2.1_hiera_tiny.pt",
            size=156008466,
            sha256="7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
        ),
        CheckpointSpec(
            variant="sam2.1_hiera_s",
            file_name="sam2.1_hiera_small.pt",
            url=f"{_SAM2_1_URL}/sam2.1_hiera_small.pt",
            size=184416285,
            sha256="6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
        ),
        CheckpointSpec(
            variant="sam2.1_hiera_b+",
            file_name="sam2.1_hiera_base_plus.pt",
            url=f"{_SAM2_1_URL}/sam2.1_hiera_base_plus.pt",
            size=323606802,
            sha256="a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
        ),
        CheckpointSpec(
            variant="sam2.1_hiera_l",
            file_name="sam2.1_hiera_large.pt",
            url=f"{_SAM2_1_URL}/sam2.1_hiera_large.pt",
            size=898083611,
            sha256="2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
        ),
    )
}


def samurai_home() -> Path:
    """Root of samurai's local data: ``$SAMURAI_HOME``, else ``~/.cache/samurai``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def checkpoint_spec(variant: str) -> CheckpointSpec:
    """Registry entry of a variant (aliases such as ``sam2.1_hiera_tiny`` accepted).

    Raises:
        ValueError: unknown variant.
    """
    return CHECKPOINTS[resolve_variant(variant)]


def checkpoint_url(variant: str) -> str:
    """Where the variant is downloaded from: ``$SAMURAI_CHECKPOINT_BASE_URL/<file>`` or official."""
    spec = checkpoint_spec(variant)
    base = os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{spec.file_name}" if base else spec.url


def checkpoint_path(variant: str) -> Path:
    """Cache location ``$SAMURAI_HOME/checkpoints/<variant>.pt`` (canonical key, may not exist)."""
    return samurai_home() / "checkpoints" / f"{resolve_variant(variant)}.pt"


def is_cached(variant: str) -> bool:
    """True when the cache holds the variant's file with the expected size (hash not re-read)."""
    spec = checkpoint_spec(variant)
    path = checkpoint_path(spec.variant)
    return path.is_file() and (spec.size is None or path.stat().st_size == spec.size)


def list_models() -> list[ModelInfo]:
    """Every official variant in VARIANTS order, with its URL, size and cache state."""
    return [
        ModelInfo(
            variant=key,
            url=checkpoint_url(key),
            size=CHECKPOINTS[key].size,
            cached=is_cached(key),
            path=checkpoint_path(key),
        )
        for key in VARIANTS
    ]


def ensure_checkpoint(
    variant: str,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    download_missing: bool = True,
    progress: bool = True,
) -> Path:
    """Path of the weights to load: explicit ``checkpoint`` > cache > download.

    Args:
        variant: VARIANTS key or alias; validated even when ``checkpoint`` is given.
        checkpoint: a local file chosen by the user (``--checkpoint``); it must exist and is
            used as is (not size- or hash-checked: fine-tuned weights are allowed).
        download_missing: download into the cache when it lacks the variant.
        progress: show a progress bar while downloading (only on a TTY).

    Raises:
        ValueError: unknown variant.
        CheckpointError: the explicit file is missing, or the variant is not cached and
            cannot (or may not) be downloaded.
    """
    key = resolve_variant(variant)
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path} (given with --checkpoint)")
        return path
    if is_cached(key):
        return checkpoint_path(key)
    if checkpoint_path(key).exists():
        logger.warning("cached %s has the wrong size; downloading it again", checkpoint_path(key))
    if not download_missing:
        raise CheckpointError(
            f"{key} is not in the cache ({checkpoint_path(key)}); run `samurai download "
            f"--model {key}` or {_HOW_TO_FIX}"
        )
    return download(key, progress=progress)


def download(
    variant: str,
    *,
    url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download a variant into the cache, verify it, and return its cache path.

    Always downloads (replacing a cached file only once the new one is verified); use
    :func:`ensure_checkpoint` to reuse the cache.

    Args:
        variant: VARIANTS key or alias.
        url: source to use instead of :func:`checkpoint_url`; held to the same size/sha256.
        progress: show a tqdm progress bar on stderr (only when stderr is a TTY).
        timeout: seconds allowed for connecting and for each read.

    Raises:
        ValueError: unknown variant.
        CheckpointError: network unreachable, HTTP error, timeout, truncated transfer, size or
            checksum mismatch, or the cache folder is not writable. No partial file remains.
    """
    spec = checkpoint_spec(variant)
    source = url or checkpoint_url(spec.variant)
    dest = checkpoint_path(spec.variant)

    def fail(what: str) -> CheckpointError:
        return CheckpointError(
            f"cannot download {spec.variant} from {source}: {what}; {_HOW_TO_FIX}"
        )

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise fail(f"cache folder {dest.parent} is not writable ({exc})") from exc
    tmp = Path(name)
    try:
        with open(fd, "wb") as handle:
            digest = _fetch(
                source, handle, spec=spec, progress=progress, timeout=timeout, fail=fail
            )
        if spec.sha256 is not None and digest != spec.sha256:
            raise fail(f"checksum mismatch (sha256 {digest}, expected {spec.sha256})")
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the cache holds public files
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s to %s", spec.variant, dest)
    return dest


def _fetch(
    source: str,
    out: BinaryIO,
    *,
    spec: CheckpointSpec,
    progress: bool,
    timeout: float,
    fail: Callable[[str], CheckpointError],
) -> str:
    """Stream ``source`` into ``out`` and check its length; return the sha256 hex digest."""
    with _open(source, timeout=timeout, fail=fail) as response:
        header = response.headers.get("Content-Length")
        announced = int(header) if header and header.isdigit() else None
        if spec.size is not None and announced is not None and announced != spec.size:
            raise fail(f"size mismatch (server sends {announced} bytes, expected {spec.size})")
        total = announced if announced is not None else spec.size
        hasher = hashlib.sha256()
        received = 0
        show = progress and sys.stderr.isatty()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=spec.variant,
            disable=not show,
        ) as bar:
            while chunk := _read(response, received=received, total=total, fail=fail):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise fail(f"cannot write to the cache ({exc.strerror or exc})") from exc
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if announced is not None and received < announced:
        raise fail(f"truncated download ({received} of {announced} bytes received)")
    if spec.size is not None and received != spec.size:
        raise fail(f"size mismatch (got {received} bytes, expected {spec.size})")
    return hasher.hexdigest()


def _open(
    source: str, *, timeout: float, fail: Callable[[str], CheckpointError]
) -> http.client.HTTPResponse:
    request = urllib.request.Request(source, headers={"User-Agent": "samurai-tracker"})
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise fail(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise fail(f"network unreachable ({_describe(exc.reason)})") from exc
    except TimeoutError as exc:
        raise fail(f"no answer within {timeout:g} s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise fail(f"network unreachable ({_describe(exc)})") from exc
    return response


def _read(
    response: http.client.HTTPResponse,
    *,
    received: int,
    total: int | None,
    fail: Callable[[str], CheckpointError],
) -> bytes:
    """Next chunk of the body; b"" at the end. Transfer failures become CheckpointError."""
    of_total = f" of {total}" if total is not None else ""
    try:
        return response.read(_CHUNK_BYTES)
    except http.client.IncompleteRead as exc:
        got = received + len(exc.partial)
        raise fail(f"truncated download ({got}{of_total} bytes received)") from exc
    except TimeoutError as exc:
        raise fail(f"timed out after {received}{of_total} bytes") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise fail(f"connection lost after {received}{of_total} bytes ({_describe(exc)})") from exc


def _describe(reason: object) -> str:
    """Short text for a socket-level failure reason."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host: {reason.strerror or reason}"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def load_failure(path: str | Path, exc: BaseException) -> str:
    """One line for a checkpoint file that ``torch.load(weights_only=True)`` could not read.

    A file that is not a plain tensor checkpoint (pickled Python objects, which could run code
    if unpickled, or a pickle torch's safe loader cannot read) is refused as such; torch's advice
    to load it with ``weights_only=False`` is never passed on.
    """
    text = str(exc)
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        named = re.search(r"GLOBAL ([\w.]+)", text)
        if named:
            detail = f"it holds pickled Python objects ({named.group(1)}) that could run code"
        else:
            lines = [line for line in text.splitlines() if "weights_only" not in line]
            detail = next((line.strip() for line in lines if line.strip()), "unreadable pickle")
        return f"{path} is not a plain checkpoint and is refused: {detail}"
    reason = text.splitlines()[0] if text else type(exc).__name__
    return f"cannot read checkpoint {path}: {reason}"
