"""The peak-memory measure of `samurai bench`: it can be restarted, so a row's peak is its own."""

from __future__ import annotations

import mmap
import sys

import pytest

from samurai.bench import peak_rss_mb, reset_peak_rss

MIB = 1 << 20


def _touch(size: int) -> mmap.mmap:
    """``size`` bytes of resident memory, outside malloc (whose setting other tests change)."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="clear_refs is Linux only")
def test_reset_peak_rss_forgets_an_earlier_peak() -> None:
    block = _touch(300 * MIB)
    high = peak_rss_mb()
    block.close()
    assert reset_peak_rss()
    after = peak_rss_mb()
    assert after < high - 250, (high, after)
    block = _touch(100 * MIB)
    assert peak_rss_mb() >= after + 90
    block.close()
