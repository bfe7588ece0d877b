"""Names of the result outputs a tracking run can write (``samurai track --save``).

Kept apart from `samurai.io.sinks` (which imports torch) so the CLI can list and check them
without importing torch.
"""

from __future__ import annotations

__all__ = ["ALL_OUTPUTS"]

ALL_OUTPUTS = frozenset({"overlay", "boxes", "masks", "rle", "scores"})
