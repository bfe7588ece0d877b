"""Tracking and segmentation metrics, numerically equal to the official toolkits (float64 numpy).

Box metrics follow two toolkits, each documented where it differs:

- OPE benchmarks (LaSOT, LaSOT_ext, OTB100, NfS, UAV123, TrackingNet): pytracking
  ``pytracking/analysis/extract_results.py`` (``calc_seq_err_robust`` + ``extract_results``), which
  mirrors the LaSOT MATLAB toolkit ``utils/calc_seq_err_robust.m`` / ``utils/eval_tracker.m``.
  Success curve over 21 IoU thresholds, AUC = its mean, precision at 20 px, normalised precision at
  0.20 of the ground-truth size; every sequence weighs the same.
- GOT-10k: the ``got10k`` toolkit ``got10k/experiments/got10k.py`` (``report`` + ``_evaluate``) with
  ``got10k/utils/metrics.py`` ``rect_iou``. AO, SR0.5, SR0.75 over all frames of all sequences.

Mask metrics (J&F) are in :mod:`samurai.eval.mask_metrics`.

Boxes are ``(N, 4)`` float64 ``x, y, w, h`` in pixels of the original frame, top-left corner first.
Everything is float64; pytracking keeps its per-sequence curves in float32, so its printed scores
differ from these in the 7th digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]

SUCCESS_THRESHOLDS: Array = np.linspace(0.0, 1.0, 21)
"""IoU thresholds of the success curve. pytracking uses ``torch.arange(0, 1.05, 0.05)``, which
differs from these by at most 1 ulp; only an IoU within 1e-16 of a threshold would notice."""
PRECISION_THRESHOLDS: Array = np.arange(0, 51, dtype=np.float64)
"""Centre-error thresholds in pixels; precision is reported at index 20 (20 px)."""
NORM_PRECISION_THRESHOLDS: Array = np.arange(0, 51, dtype=np.float64) / 100.0
"""Normalised centre-error thresholds; normalised precision is reported at index 20 (0.20)."""
GOT10K_THRESHOLDS: Array = np.linspace(0.0, 1.0, 101)
"""IoU thresholds of the GOT-10k success curve (toolkit ``nbins_iou = 101``)."""


def _boxes(boxes: ArrayLike, what: str) -> Array:
    array = np.array(boxes, dtype=np.float64, ndmin=2)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{what} must have shape (N, 4), got {array.shape}")
    return array


def overlap_ratio(boxes1: ArrayLike, boxes2: ArrayLike) -> Array:
    """IoU in the pixel-inclusive form of pytracking ``calc_iou_overlap`` and the LaSOT/OTB kits.

    The intersection spans ``x .. x + w - 1`` inclusive (so ``br - tl + 1``); areas are ``w * h``.
    The +-1 cancel, so this is the continuous IoU up to rounding, kept in the toolkits' form so that
    the rounding matches. No epsilon: a zero union gives NaN, as in the toolkits.

    Args:
        boxes1: (N, 4) xywh.
        boxes2: (N, 4) xywh.

    Returns:
        (N,) float64 IoU.
    """
    a, b = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    top_left = np.maximum(a[:, :2], b[:, :2])
    bottom_right = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
    size = np.clip(bottom_right - top_left + 1.0, 0.0, None)
    intersection = size[:, 0] * size[:, 1]
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def rect_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, bound: tuple[float, float] | None = None
) -> Array:
    """IoU as ``got10k.utils.metrics.rect_iou``: continuous areas, ``+ eps`` in the union, clipped.

    With ``bound = (width, height)`` both box sets are first clipped to the image as the toolkit
    does (x into [0, width], w into [0, width - x], same for y/h), so boxes outside the image or
    with negative size score 0. Unlike the toolkit, the inputs are not modified in place.

    Args:
        boxes1: (N, 4) xywh.
        boxes2: (N, 4) xywh.
        bound: image (width, height) in pixels, or None for no clipping.

    Returns:
        (N,) float64 IoU in [0, 1] (NaN where an input is NaN).
    """
    a, b = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    if bound is not None:
        a, b = _clip_to_bound(a, bound), _clip_to_bound(b, bound)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    intersection = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - intersection
    iou: Array = np.clip(intersection / (union + np.finfo(float).eps), 0.0, 1.0)
    return iou


def _clip_to_bound(boxes: Array, bound: tuple[float, float]) -> Array:
    width, height = bound
    out = boxes.copy()
    out[:, 0] = np.clip(out[:, 0], 0, width)
    out[:, 1] = np.clip(out[:, 1], 0, height)
    out[:, 2] = np.clip(out[:, 2], 0, width - out[:, 0])
    out[:, 3] = np.clip(out[:, 3], 0, height - out[:, 1])
    return out


def center_error(pred: ArrayLike, gt: ArrayLike, *, normalized: bool = False) -> Array:
    """Euclidean distance of box centres ``x + (w - 1) / 2`` (pytracking ``calc_err_center``).

    Args:
        pred: (N, 4) xywh predictions.
        gt: (N, 4) xywh ground truth.
        normalized: divide both centres by the ground-truth (w, h) first (TrackingNet's normalised
            precision), giving an error in units of the target size.

    Returns:
        (N,) float64 distances (pixels, or target sizes when normalized).
    """
    p, g = _boxes(pred, "pred"), _boxes(gt, "gt")
    p_center = p[:, :2] + 0.5 * (p[:, 2:] - 1.0)
    g_center = g[:, :2] + 0.5 * (g[:, 2:] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalized:
            p_center, g_center = p_center / g[:, 2:], g_center / g[:, 2:]
        distance: Array = np.sqrt(((p_center - g_center) ** 2).sum(axis=1))
        return distance


def success_curve(
    ious: ArrayLike, *, thresholds: ArrayLike = SUCCESS_THRESHOLDS, num_frames: int | None = None
) -> Array:
    """Fraction of frames with IoU strictly above each threshold (``np.greater``, as all toolkits).

    Args:
        ious: (N,) per-frame IoU; -1 marks a frame that can never succeed.
        thresholds: (T,) IoU thresholds.
        num_frames: denominator; defaults to N.

    Returns:
        (T,) float64 success rates.
    """
    values = np.asarray(ious, dtype=np.float64).reshape(-1, 1)
    count = len(values) if num_frames is None else num_frames
    rates: Array = (values > np.asarray(thresholds)[None, :]).sum(axis=0) / count
    return rates


def precision_curve(
    errors: ArrayLike,
    *,
    thresholds: ArrayLike = PRECISION_THRESHOLDS,
    num_frames: int | None = None,
) -> Array:
    """Fraction of frames with centre error at most each threshold (``np.less_equal``).

    Args:
        errors: (N,) per-frame centre errors; inf never counts, -1 always counts.
        thresholds: (T,) error thresholds.
        num_frames: denominator; defaults to N.

    Returns:
        (T,) float64 precision rates.
    """
    values = np.asarray(errors, dtype=np.float64).reshape(-1, 1)
    count = len(values) if num_frames is None else num_frames
    rates: Array = (values <= np.asarray(thresholds)[None, :]).sum(axis=0) / count
    return rates


@dataclass(frozen=True)
class OpeConvention:
    """How one OPE benchmark's toolkit treats special frames (pytracking ``calc_seq_err_robust``).

    Common to all: the first frame's prediction is replaced by the ground truth; a frame is *valid*
    when its ground truth has w > 0 and h > 0 and (if visibility is given) the target is visible;
    invalid frames get IoU -1 (never a success) and normalised centre error -1 (always a hit, a
    toolkit quirk); the denominator is every frame of the sequence.
    """

    name: str
    absent_is_miss: bool = False
    """LaSOT branch: centre and normalised centre errors are +inf where the target is not visible,
    so absent frames count as misses in both precision curves (LaSOT toolkit: removed frames)."""
    invalid_center_is_hit: bool = False
    """UAV branch: centre error -1 (a hit) on invalid frames instead of +inf (a miss)."""
    allow_nan_ground_truth: bool = False
    """UAV123 marks absent targets with NaN rows; elsewhere NaN ground truth is an error."""
    exclude_invalid_frames: bool = False
    """pytracking's ``exclude_invalid_frames`` option: divide by the number of valid frames."""


GENERIC = OpeConvention("generic")
LASOT = OpeConvention("lasot", absent_is_miss=True)
UAV = OpeConvention("uav", invalid_center_is_hit=True, allow_nan_ground_truth=True)
CONVENTIONS: dict[str, OpeConvention] = {
    "lasot": LASOT, "lasot_ext": LASOT, "uav": UAV, "otb": GENERIC, "nfs": GENERIC,
    "trackingnet": GENERIC, "generic": GENERIC,
}  # fmt: skip
"""Benchmark key -> convention. LaSOT_ext uses the LaSOT rule as the official LaSOT toolkit does;
pytracking's ``lasot_extension_subset`` falls into its generic branch, which counts absent frames
as normalised-precision hits, so its P_norm on LaSOT_ext reads higher."""


@dataclass(frozen=True)
class FrameErrors:
    """Per-frame errors of one sequence after the toolkit's clean-up; all arrays are (N,)."""

    iou: Array
    center: Array
    norm_center: Array
    valid: NDArray[np.bool_]


def ope_frame_errors(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    visible: ArrayLike | None = None,
    convention: OpeConvention = GENERIC,
) -> FrameErrors:
    """Per-frame IoU and centre errors of one sequence, as pytracking ``calc_seq_err_robust``.

    Predictions with NaN or a non-positive width/height are replaced by the previous frame's box
    (LaSOT toolkit ``calc_seq_err_robust.m``; pytracking does the same for zero sizes and raises on
    NaN or negative ones), except where the ground truth row has NaN. Predictions longer than the
    ground truth are cut (LaSOT monkey-17); shorter ones raise (pytracking pads with zeros outside
    LaSOT, which would hide an incomplete run). A NaN left over (a NaN first-frame prediction
    carried forward) scores as a miss, as MATLAB comparisons with NaN do.

    Args:
        pred: (M, 4) xywh predictions, M >= N.
        gt: (N, 4) xywh ground truth.
        visible: (N,) bool, False where the target is absent (LaSOT full occlusion / out of view).
        convention: the benchmark's rules, see ``CONVENTIONS``.

    Returns:
        The cleaned-up per-frame errors.
    """
    boxes, truth = _boxes(pred, "pred").copy(), _boxes(gt, "gt")
    gt_has_nan = np.isnan(truth).any(axis=1)
    if gt_has_nan.any() and not convention.allow_nan_ground_truth:
        raise ValueError(f"NaN in ground truth, not allowed for {convention.name}")
    if len(boxes) < len(truth):
        raise ValueError(f"{len(boxes)} predicted boxes for {len(truth)} ground-truth frames")
    boxes = boxes[: len(truth)]
    bad = np.isnan(boxes).any(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    for i in np.flatnonzero(bad & ~gt_has_nan):
        if i > 0:
            boxes[i] = boxes[i - 1]
    boxes[0] = truth[0]
    with np.errstate(invalid="ignore"):
        valid = (truth[:, 2] > 0) & (truth[:, 3] > 0)
    visible_mask = None if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    if visible_mask is not None:
        if visible_mask.shape != valid.shape:
            raise ValueError(f"visible has {visible_mask.size} entries for {len(valid)} frames")
        valid &= visible_mask
    iou = np.nan_to_num(overlap_ratio(boxes, truth), nan=0.0)
    center = np.nan_to_num(center_error(boxes, truth), nan=np.inf)
    norm_center = np.nan_to_num(center_error(boxes, truth, normalized=True), nan=np.inf)
    iou[~valid] = -1.0
    center[~valid] = -1.0 if convention.invalid_center_is_hit else np.inf
    norm_center[~valid] = -1.0
    if convention.absent_is_miss and visible_mask is not None:
        center[~visible_mask] = np.inf
        norm_center[~visible_mask] = np.inf
    return FrameErrors(iou=iou, center=center, norm_center=norm_center, valid=valid)


@dataclass(frozen=True)
class OpeScores:
    """Success / precision / normalised precision curves of one sequence or a mean over several.

    Values are fractions in [0, 1]; pytracking prints them x100. ``average_overlap`` is the mean IoU
    over valid frames (pytracking ``avg_overlap_all``), averaged over sequences for a summary.
    """

    success: Array
    precision: Array
    norm_precision: Array
    average_overlap: float
    num_sequences: int = 1

    @property
    def auc(self) -> float:
        """Area under the success curve: the mean over the 21 thresholds."""
        return float(self.success.mean())

    @property
    def op50(self) -> float:
        """Success rate at IoU 0.5 (pytracking OP50)."""
        return float(self.success[10])

    @property
    def op75(self) -> float:
        """Success rate at IoU 0.75 (pytracking OP75)."""
        return float(self.success[15])

    @property
    def precision_20(self) -> float:
        """Precision at 20 pixels."""
        return float(self.precision[20])

    @property
    def norm_precision_20(self) -> float:
        """Normalised precision at 0.20."""
        return float(self.norm_precision[20])


def sequence_scores(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    visible: ArrayLike | None = None,
    convention: OpeConvention = GENERIC,
) -> OpeScores:
    """OPE curves of one sequence (pytracking ``extract_results``, one tracker, one sequence).

    Args:
        pred: (M, 4) xywh predictions, M >= N.
        gt: (N, 4) xywh ground truth.
        visible: (N,) bool target visibility, or None.
        convention: the benchmark's rules, see ``CONVENTIONS``.

    Returns:
        The sequence's curves.
    """
    errors = ope_frame_errors(pred, gt, visible=visible, convention=convention)
    count = int(errors.valid.sum()) if convention.exclude_invalid_frames else len(errors.iou)
    if count <= 0:
        raise ValueError("sequence has no frame to evaluate")
    overlap = float(errors.iou[errors.valid].mean()) if errors.valid.any() else float("nan")
    return OpeScores(
        success=success_curve(errors.iou, num_frames=count),
        precision=precision_curve(errors.center, num_frames=count),
        norm_precision=precision_curve(
            errors.norm_center, thresholds=NORM_PRECISION_THRESHOLDS, num_frames=count
        ),
        average_overlap=overlap,
    )


def summarize(scores: Sequence[OpeScores]) -> OpeScores:
    """Mean curves over sequences, each weighing the same (pytracking ``get_auc_curve``)."""
    if not scores:
        raise ValueError("no sequences to summarize")
    return OpeScores(
        success=np.mean([s.success for s in scores], axis=0),
        precision=np.mean([s.precision for s in scores], axis=0),
        norm_precision=np.mean([s.norm_precision for s in scores], axis=0),
        average_overlap=float(np.nanmean([s.average_overlap for s in scores])),
        num_sequences=sum(s.num_sequences for s in scores),
    )


def got10k_ious(
    pred: ArrayLike,
    gt: ArrayLike,
    *,
    image_size: tuple[float, float],
    cover: ArrayLike | None = None,
) -> Array:
    """Per-frame IoU of one GOT-10k run, as ``ExperimentGOT10k.report``.

    Frame 0 (the initialisation) is excluded; boxes are clipped to the image (``bound`` =
    ``meta_info.ini`` resolution); only frames with ``cover > 0`` are kept (the toolkit's "valid
    frames where targets are visible"; cover 0 is a fully occluded / absent target, the frames
    ``absence.label`` marks). The toolkit would turn a NaN prediction into a NaN AO; here it scores
    0, like an empty box.

    Args:
        pred: (N, 4) xywh predictions; must have as many rows as gt (toolkit assertion).
        gt: (N, 4) xywh ground truth.
        image_size: (width, height) of the frames.
        cover: (N,) ``cover.label`` values, or None to keep every frame.

    Returns:
        (K,) float64 IoU of the kept frames.
    """
    boxes, truth = _boxes(pred, "pred"), _boxes(gt, "gt")
    if boxes.shape != truth.shape:
        raise ValueError(f"{len(boxes)} predicted boxes for {len(truth)} ground-truth frames")
    ious = np.nan_to_num(rect_iou(boxes[1:], truth[1:], bound=image_size), nan=0.0)
    if cover is None:
        return ious
    cover_values = np.asarray(cover, dtype=np.float64).reshape(-1)
    if cover_values.shape != (len(truth),):
        raise ValueError(f"cover has {cover_values.size} entries for {len(truth)} frames")
    return ious[cover_values[1:] > 0]


@dataclass(frozen=True)
class Got10kScores:
    """GOT-10k average overlap and success rates (fractions), as ``ExperimentGOT10k._evaluate``."""

    ao: float
    sr50: float
    sr75: float
    success: Array
    num_frames: int


def got10k_scores(ious: Array | Sequence[ArrayLike]) -> Got10kScores:
    """AO / SR over all given frames pooled together, so long sequences weigh more (the toolkit
    concatenates the IoUs of every sequence and repetition before averaging).

    Args:
        ious: (K,) IoU array, or a list of them (sequences / repetitions) to pool.

    Returns:
        The scores; NaN for no frames.
    """
    if isinstance(ious, np.ndarray):
        values = ious.astype(np.float64).reshape(-1)
    else:
        parts = [np.asarray(part, dtype=np.float64).reshape(-1) for part in ious]
        values = np.concatenate(parts) if parts else np.zeros(0)
    if values.size == 0:
        nan = float("nan")
        return Got10kScores(nan, nan, nan, np.full(len(GOT10K_THRESHOLDS), nan), 0)
    return Got10kScores(
        ao=float(values.mean()),
        sr50=float((values > 0.5).mean()),
        sr75=float((values > 0.75).mean()),
        success=success_curve(values, thresholds=GOT10K_THRESHOLDS),
        num_frames=int(values.size),
    )
