"""COCO run-length encoding of binary masks in numpy, byte-identical to pycocotools.

A COCO RLE is ``{"size": [height, width], "counts": counts}``. ``counts`` are the lengths of
alternating runs of 0s and 1s over the mask read in *column-major* (Fortran) order, starting
with a run of 0s (of length 0 when the first pixel is set). The compressed form, the one
``pycocotools.mask.encode`` returns and COCO result files hold, stores the counts as an ASCII
string: each count from the fourth on is replaced by its difference to the count two places
earlier, then written as little-endian groups of 5 bits, one character (``48 + group``) per
group, bit ``0x20`` set on every group but the last and bit ``0x10`` of the last group being
the sign (the ``rleToString`` / ``rleFrString`` scheme of the COCO API's ``maskApi.c``).

Here ``counts`` is a ``str``, ready for JSON (pycocotools returns ``bytes``); `decode` also
takes ``bytes`` and the uncompressed form with a list of ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["area", "counts_from_string", "counts_to_string", "decode", "encode", "to_bbox"]

# A count fits in 32 bits (pycocotools uses uint32), so a difference needs at most 7 groups of 5.
_MAX_GROUPS = 8


def encode(mask: ArrayLike) -> dict[str, Any]:
    """Compressed COCO RLE of one mask, equal to ``pycocotools.mask.encode`` (counts as str).

    Args:
        mask: ``(H, W)`` mask; bool, or numbers compared with ``> 0``.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {m.shape}")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(_counts(m))}


def decode(rle: dict[str, Any]) -> NDArray[np.bool_]:
    """The ``(H, W)`` bool mask of a COCO RLE (compressed ``str``/``bytes`` or a list of counts)."""
    height, width = _size(rle)
    counts = _counts_of(rle)
    if counts.size and counts.min() < 0:
        raise ValueError("RLE counts must not be negative")
    if int(counts.sum()) != height * width:
        raise ValueError(
            f"RLE counts cover {int(counts.sum())} pixels, size {height}x{width} has "
            f"{height * width}"
        )
    values = np.arange(counts.size, dtype=np.int64) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of a COCO RLE (``pycocotools.mask.area``)."""
    return int(_counts_of(rle)[1::2].sum())


def to_bbox(rle: dict[str, Any]) -> NDArray[np.float64]:
    """COCO box ``(4,)`` float64 ``[x, y, w, h]`` of a COCO RLE, as ``pycocotools.mask.toBbox``.

    COCO boxes are exclusive: ``w = x_max - x_min + 1`` for the last foreground column
    ``x_max``; an empty mask gives ``[0, 0, 0, 0]``.
    """
    mask = decode(rle)
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return np.zeros(4, dtype=np.float64)
    x0, x1, y0, y1 = cols[0], cols[-1], rows[0], rows[-1]
    return np.array([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dtype=np.float64)


def counts_to_string(counts: Sequence[int] | NDArray[np.int64]) -> str:
    """Compress uncompressed COCO counts into the COCO ASCII string (``rleToString``)."""
    x = np.asarray(counts, dtype=np.int64).copy()
    if x.size == 0:
        return ""
    if x.min() < 0 or x.max() >= 2**32:
        raise ValueError("RLE counts must lie in [0, 2**32)")
    x[3:] -= np.asarray(counts, dtype=np.int64)[1:-2]
    groups: list[NDArray[np.int64]] = []
    emitted: list[NDArray[np.bool_]] = []
    active = np.ones(x.size, dtype=bool)
    for _ in range(_MAX_GROUPS):
        group = x & 0x1F
        x = x >> 5  # arithmetic shift, like the C code's signed long
        more = np.where(group & 0x10, x != -1, x != 0)
        groups.append(group | (more.astype(np.int64) << 5))
        emitted.append(active)
        active = active & more
        if not active.any():
            break
    chars = np.stack(groups, axis=1)[np.stack(emitted, axis=1)] + 48
    return chars.astype(np.uint8).tobytes().decode("ascii")


def counts_from_string(text: str | bytes) -> NDArray[np.int64]:
    """Uncompressed counts ``(M,)`` int64 of a COCO ASCII string (``rleFrString``)."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    chars = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 0 or chars.max() > 63:
        raise ValueError("not a COCO RLE string: characters outside '0'..'o'")
    last = (chars & 0x20) == 0
    if not last[-1]:
        raise ValueError("not a COCO RLE string: the last count is cut off")
    value_idx = np.concatenate([[0], np.cumsum(last)[:-1]])
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]]))
    shift = 5 * (np.arange(chars.size) - starts[value_idx])
    if shift.max() >= 5 * _MAX_GROUPS:
        raise ValueError("not a COCO RLE string: a count has too many digits")
    num = int(last.sum())
    x = np.zeros(num, dtype=np.int64)
    np.add.at(x, value_idx, (chars & 0x1F) << shift)
    ends = np.flatnonzero(last)
    negative = (chars[ends] & 0x10) != 0
    x[negative] -= np.int64(1) << (shift[ends][negative] + 5)
    # Counts from the fourth on were stored as differences to the count two places earlier.
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x


def _counts(mask: NDArray[Any]) -> NDArray[np.int64]:
    """Uncompressed COCO counts of a 2-D mask (``rleEncode``)."""
    flat = mask.ravel(order="F")
    flat = flat if flat.dtype == np.bool_ else flat > 0
    if flat.size == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).astype(np.int64)
    return np.concatenate([[0], counts]) if flat[0] else counts


def _size(rle: dict[str, Any]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in rle["size"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"RLE needs 'size': [height, width], got {rle!r:.80}") from exc
    if height < 0 or width < 0:
        raise ValueError(f"RLE size must not be negative, got {[height, width]}")
    return height, width


def _counts_of(rle: dict[str, Any]) -> NDArray[np.int64]:
    counts = rle.get("counts") if isinstance(rle, dict) else None
    if isinstance(counts, str | bytes):
        return counts_from_string(counts)
    if isinstance(counts, list | tuple | np.ndarray):
        try:
            return np.asarray(counts, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"RLE counts must be integers below 2**63: {exc}") from None
    raise ValueError(f"RLE needs 'counts' (str, bytes or list of ints), got {type(counts)}")
