"""DAM4SAM's distractor-resolving-memory (DRM) update rule, its VOT conventions and its
RAM/DRM memory selection.

Pure, stateless pieces of the DAM4SAM tracker (``dam4sam_tracker.py`` of
github.com/jovanavidenovic/DAM4SAM, commit 9c954504b39ebca4c412f207be0787c26bfac85a),
reproduced decision for decision; see ``tools/golden/dam4sam/SPEC.md`` (section 2.4/2.5)
and the golden data in ``tests/data/golden/dam4sam/``. Wired into the predictor by
:mod:`samurai.tracking.dam4sam_step`.

VOT-toolkit conventions (vot-toolkit 0.7.1, which the official code calls):

* :func:`vot_mask_bounds`: inclusive ``(left, top, right, bottom)`` of the non-zero pixels,
  ``(0, 0, 0, 0)`` for an empty mask.
* :func:`vot_mask_to_rect` (``Mask.convert(RegionType.RECTANGLE)``): ``(x, y, w, h) =
  (left, top, right - left, bottom - top)`` -- *no* ``+ 1``.
* :func:`vot_rect_overlap` (``calculate_overlaps([a], [b])[0]`` without bounds): a rectangle
  covers the pixels ``x .. x + w - 1`` and ``y .. y + h - 1`` (so a rectangle made from a mask
  loses the mask's last column and row); if the union box of the two rectangles is
  degenerate (``left >= right`` or ``top >= bottom``) the overlap is 1.0; otherwise
  ``#intersection / #union`` of the pixel sets (0.0 for an empty union).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from samurai.config import Dam4samConfig

# Thresholds of the official tracker (hard-coded there; one source of truth: Dam4samConfig).
_DEFAULTS = Dam4samConfig()
DRM_IOU_THRESHOLD = _DEFAULTS.drm_iou_threshold  # chosen mask's predicted IoU must be > this
DRM_SIZE_RATIO_MIN = _DEFAULTS.drm_size_ratio_min  # n / median(sizes) in [min, max] (inclusive)
DRM_SIZE_RATIO_MAX = _DEFAULTS.drm_size_ratio_max
DRM_MIN_GAP = _DEFAULTS.drm_min_gap  # frame_idx - last_added must be > this (or none added)
DRM_SIZE_HISTORY = _DEFAULTS.drm_size_history  # sizes considered: the last 300 entries ...
DRM_SIZE_MEDIAN_COUNT = _DEFAULTS.drm_size_median_count  # ... of which the last 10 non-zero
DRM_ALT_BOX_IOU_MAX = _DEFAULTS.drm_alt_box_iou_max  # add if an alternative's box IoU <= this

Rect = tuple[float, float, float, float]


def vot_mask_bounds(mask: ArrayLike) -> tuple[int, int, int, int]:
    """``vot.region.raster.mask_bounds``: inclusive (left, top, right, bottom); zeros if empty."""
    m = np.asarray(mask) != 0
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(m.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def vot_mask_to_rect(mask: ArrayLike) -> Rect:
    """``Mask(mask).convert(RegionType.RECTANGLE)`` as ``(x, y, w, h)`` (float32 values)."""
    left, top, right, bottom = vot_mask_bounds(mask)
    vals = np.array([left, top, right - left, bottom - top], dtype=np.float32)
    return (float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3]))


def _rect_pixel_bounds(r: Sequence[float]) -> tuple[int, int, int, int]:
    # _infer_meta: np.round of the float32 data; _bounds_rectangle: int(round(x + w - 1)), ...
    x, y, w, h = (float(v) for v in np.round(np.asarray(r, dtype=np.float32)))
    return (round(x), round(y), round(x + w - 1), round(y + h - 1))


def vot_rect_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """``vot.region.raster.calculate_overlaps([Rectangle(*a)], [Rectangle(*b)])[0]`` (no bounds)."""
    ra = np.round(np.asarray(a, dtype=np.float32)).astype(np.float64)
    rb = np.round(np.asarray(b, dtype=np.float32)).astype(np.float64)
    ba, bb = _rect_pixel_bounds(a), _rect_pixel_bounds(b)
    union = (min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3]))
    if union[0] >= union[2] or union[1] >= union[3]:
        return 1.0  # "two empty regions are considered identical"

    def raster_range(r: NDArray[np.float64]) -> tuple[int, int, int, int] | None:
        # rasterize_rectangle(data, union): coordinates relative to the union box, inclusive
        x, y, w, h = r
        if x > union[2] or x + w - 1 < union[0] or y > union[3] or y + h - 1 < union[1]:
            return None
        left = max(0, int(x - union[0]))
        top = max(0, int(y - union[1]))
        right = min(union[2], int(x + w - 1 - union[0]))
        bottom = min(union[3], int(y + h - 1 - union[1]))
        if right < left or bottom < top:
            return None
        return (left, top, right, bottom)

    pa, pb = raster_range(ra), raster_range(rb)

    def area(p: tuple[int, int, int, int] | None) -> int:
        return 0 if p is None else (p[2] - p[0] + 1) * (p[3] - p[1] + 1)

    inter = 0
    if pa is not None and pb is not None:
        iw = min(pa[2], pb[2]) - max(pa[0], pb[0]) + 1
        ih = min(pa[3], pb[3]) - max(pa[1], pb[1]) + 1
        inter = max(0, iw) * max(0, ih)
    uni = area(pa) + area(pb) - inter
    return float(inter) / float(uni) if uni > 0 else 0.0


def keep_largest_component(mask: ArrayLike) -> NDArray[np.uint8]:
    """DAM4SAM ``utils.utils.keep_largest_component``: largest 8-connected component (uint8 0/1).

    Ties go to the lowest OpenCV label (labels follow the raster order of the components'
    first pixels). The mask must have at least one non-zero pixel.
    """
    m = np.ascontiguousarray(np.asarray(mask), dtype=np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    out = np.zeros_like(m)
    out[labels == largest] = 1
    return out


def drm_size_ratio(
    object_sizes: Sequence[int], config: Dam4samConfig = _DEFAULTS
) -> tuple[float, float]:
    """Size ratio of the newest entry of ``object_sizes`` (which includes the current frame).

    Returns ``(ratio, median)``; ``(-1, nan)`` when there is a single entry or the current
    mask is empty (the official ``obj_sizes_ratio = -1``).
    """
    n = int(object_sizes[-1])
    if len(object_sizes) > 1 and n >= 1:
        sel = [int(s) for s in list(object_sizes)[-config.drm_size_history :] if s >= 1][
            -config.drm_size_median_count :
        ]
        med = float(np.median(sel))
        return float(n / np.median(sel)), med
    return -1.0, float("nan")


@dataclass(frozen=True)
class DrmDecision:
    """Every quantity of the official rule on one tracked frame (all conditions evaluated)."""

    chosen_index: int
    chosen_iou: float
    n_pixels: int
    size_median: float
    size_ratio: float
    iou_ok: bool
    ratio_ge_min: bool
    ratio_le_max: bool
    present: bool
    gap_ok: bool
    # alternative-mask test (evaluated here for every frame; the official code only runs
    # it when ``first_condition`` holds)
    alt_candidates: tuple[int, ...]  # candidate indices of the 2 alternatives
    alt_removed_area: tuple[int, ...]  # pixels left after removing the chosen mask
    alt_largest_cc_area: tuple[int, ...]  # -1 where the alternative became empty
    alt_union_rect: tuple[Rect | None, ...]  # VOT rect of (largest component OR chosen)
    alt_box_iou: tuple[float, ...]  # nan where the alternative became empty
    chosen_rect: Rect
    object_sizes: tuple[int, ...] = field(repr=False)  # the history after this frame
    alt_box_iou_max: float = DRM_ALT_BOX_IOU_MAX

    @property
    def first_condition(self) -> bool:
        return (
            self.iou_ok and self.ratio_ge_min and self.ratio_le_max and self.present and self.gap_ok
        )

    @property
    def n_alt_nonempty(self) -> int:
        return sum(1 for a in self.alt_largest_cc_area if a >= 0)

    @property
    def alt_min_iou(self) -> float:
        vals = [v for v in self.alt_box_iou if v == v]
        return min(vals) if vals else float("nan")

    @property
    def alt_ok(self) -> bool:
        return self.n_alt_nonempty > 0 and self.alt_min_iou <= self.alt_box_iou_max

    @property
    def add_to_drm(self) -> bool:
        return self.first_condition and self.alt_ok


def evaluate_drm_rule(
    frame_idx: int,
    last_added: int,
    object_sizes: Sequence[int],
    chosen_mask: ArrayLike,
    candidate_masks: Sequence[ArrayLike],
    candidate_ious: ArrayLike,
    config: Dam4samConfig = _DEFAULTS,
    chosen_index: int | None = None,
) -> DrmDecision:
    """The DRM update rule of ``DAM4SAMTracker.track`` on tracked frame ``frame_idx`` (>= 1).

    ``object_sizes``: the tracker's size history *before* this frame (tracked frames only);
    ``last_added``: last DRM frame or -1; ``chosen_mask``: the output mask at video
    resolution (``logits > 0``); ``candidate_masks``: the 3 candidates at video resolution
    (``logits > 0``, after the object-absent replacement), ``candidate_ious``: their 3
    predicted IoUs (float32). The chosen candidate is ``argmax(candidate_ious)`` (the official
    choice) unless ``chosen_index`` says otherwise (``samurai+dam``: the Kalman choice).
    """
    ious = np.asarray(candidate_ious, dtype=np.float32)
    m_idx = int(np.argmax(ious)) if chosen_index is None else int(chosen_index)
    m_iou = ious[m_idx]
    m = (np.asarray(chosen_mask) != 0).astype(np.uint8)
    n = int(m.sum())
    sizes = (*(int(s) for s in object_sizes), n)
    ratio, med = drm_size_ratio(sizes, config)
    alt_idx = tuple(i for i in range(len(candidate_masks)) if i != m_idx)
    not_m = m == 0
    removed = [((np.asarray(candidate_masks[i]) != 0) & not_m).astype(np.uint8) for i in alt_idx]
    removed_area = tuple(int(r.sum()) for r in removed)
    chosen_rect = vot_mask_to_rect(m)
    cc_area: list[int] = []
    rects: list[Rect | None] = []
    box_iou: list[float] = []
    for r in removed:
        if r.sum() >= 1:
            comp = keep_largest_component(r)
            union = np.logical_or(comp, m).astype(np.uint8)
            rect = vot_mask_to_rect(union)
            cc_area.append(int(comp.sum()))
            rects.append(rect)
            box_iou.append(vot_rect_overlap(chosen_rect, rect))
        else:
            cc_area.append(-1)
            rects.append(None)
            box_iou.append(float("nan"))
    return DrmDecision(
        chosen_index=m_idx,
        chosen_iou=float(m_iou),
        n_pixels=n,
        size_median=med,
        size_ratio=ratio,
        iou_ok=bool(m_iou > config.drm_iou_threshold),
        ratio_ge_min=bool(ratio >= config.drm_size_ratio_min),
        ratio_le_max=bool(ratio <= config.drm_size_ratio_max),
        present=n >= 1,
        gap_ok=bool(frame_idx - last_added > config.drm_min_gap or last_added == -1),
        alt_candidates=alt_idx,
        alt_removed_area=removed_area,
        alt_largest_cc_area=tuple(cc_area),
        alt_union_rect=tuple(rects),
        alt_box_iou=tuple(box_iou),
        chosen_rect=chosen_rect,
        object_sizes=sizes,
        alt_box_iou_max=config.drm_alt_box_iou_max,
    )


# --------------------------------------------------------------------------- memory selection
@dataclass(frozen=True)
class MemoryEntry:
    """One attended spatial memory: its frame, whether it comes from the conditioning (DRM)
    outputs (frame 0 and consolidated DRM frames) and the index k of the
    ``maskmem_tpos_enc[k]`` added to its positional encoding."""

    frame: int
    from_cond: bool
    tpos_index: int


@dataclass(frozen=True)
class PointerEntry:
    frame: int
    from_cond: bool
    t_diff: int


@dataclass(frozen=True)
class MemorySelection:
    drm_selected: tuple[int, ...]  # the DRM entries, in attention order
    entries: tuple[MemoryEntry, ...]  # spatial memories in concatenation order
    pointers: tuple[PointerEntry, ...]  # object pointers in concatenation order
    ptr_t_diff_max: int  # normaliser of the pointer temporal encoding


def select_drm_frames(
    frame_idx: int, cond_frames: Sequence[int], max_cond: int = 4
) -> tuple[int, ...]:
    """DAM4SAM's ``select_closest_cond_frames``: the closest conditioning frame before
    ``frame_idx - 1``, then frame 0, then the others closest to ``frame_idx`` (never
    ``frame_idx - 1``), at most ``max_cond`` in all. ``cond_frames`` in insertion order."""
    sel: list[int] = []
    before = [t for t in cond_frames if t < frame_idx - 1]
    if before and max(before) >= 0:
        sel.append(max(before))
    if 0 not in sel:
        if 0 not in cond_frames:
            raise KeyError(0)
        sel.append(0)
    num_remain = max_cond - len(sel)
    rest = sorted(
        (t for t in cond_frames if t not in sel and t != frame_idx - 1),
        key=lambda x: abs(x - frame_idx),
    )[: max(num_remain, 0)]
    return (*sel, *rest)


def select_memory(
    frame_idx: int,
    cond_visible: dict[int, bool],
    noncond_visible: dict[int, bool],
    num_frames: int,
    num_maskmem: int = 7,
    stride: int = 5,
    max_cond: int = 4,
    max_obj_ptrs: int = 16,
) -> MemorySelection:
    """Memories and object pointers attended by tracked frame ``frame_idx`` (DAM4SAM's
    ``_prepare_memory_conditioned_features``, forward tracking).

    ``cond_visible`` / ``noncond_visible``: the stored conditioning (frame 0 + consolidated
    DRM frames, in insertion order) and non-conditioning (tracked) frames before
    ``frame_idx``, each mapped to ``n_pixels_pos >= 1`` (the 256x256 chosen logits have a
    positive pixel). ``num_frames``: the predictor's frame count (``frame_idx + 1`` in the
    tracker). See ``tools/golden/dam4sam/SPEC.md`` section 3.2.
    """
    f = frame_idx
    sel = select_drm_frames(f, list(cond_visible), max_cond)

    def usable(p: int) -> bool:
        return p in noncond_visible and noncond_visible[p] and p not in sel

    ram: list[tuple[int, MemoryEntry | None]] = []
    p = f - 1
    for i in range(num_maskmem - 1 - (len(sel) - 1)):
        found: tuple[int, bool] | None = None  # (frame, from_cond)
        if i == 0:
            p = f - 1
            if p in cond_visible:
                ok = cond_visible[p] and p not in sel
                found = (p, True) if ok else None
            else:
                found = (p, False) if usable(p) else None
            if found is None:
                while True:
                    p -= 1
                    if p > 0:
                        if usable(p):
                            found = (p, False)
                            break
                    else:
                        break
        elif p >= 0:
            p = ((p - 1) // stride) * stride
            found = (p, False) if usable(p) else None
            if found is None:
                while True:
                    p -= stride
                    if p > 0:
                        if usable(p):
                            found = (p, False)
                            break
                    else:
                        break
        ram.append((p, None if found is None else MemoryEntry(found[0], found[1], -1)))
    keyed: list[tuple[int, MemoryEntry | None]] = [(0, MemoryEntry(t, True, -1)) for t in sel]
    keyed += ram
    keyed.sort(key=lambda kv: kv[0])  # stable, like Python's sorted in the official code
    total = len(keyed)
    entries = []
    for j, (key, e) in enumerate(keyed):
        if e is None:
            continue
        t_pos = 0 if key == 0 else j
        entries.append(MemoryEntry(e.frame, e.from_cond, total - t_pos - 1))

    max_ptr = min(num_frames, max_obj_ptrs)
    ptrs = [PointerEntry(t, True, abs(f - t)) for t in sel if t <= f]
    unselected = {t: v for t, v in cond_visible.items() if t not in sel}
    for t_diff in range(1, max_ptr):
        t = f - t_diff
        if t < 0 or t >= num_frames:
            break
        if t in noncond_visible:
            if noncond_visible[t]:
                ptrs.append(PointerEntry(t, False, t_diff))
        elif unselected.get(t):
            ptrs.append(PointerEntry(t, True, t_diff))
    return MemorySelection(tuple(sel), tuple(entries), tuple(ptrs), max_ptr - 1)
