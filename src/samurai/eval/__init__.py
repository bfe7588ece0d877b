"""Evaluation harness: benchmark readers, official-toolkit metrics, result files and reports."""

from __future__ import annotations

from samurai.eval.datasets import (
    OTB,
    UAV123,
    Dataset,
    GOT10k,
    LaSOT,
    LaSOTExt,
    NfS,
    Sequence,
    TrackingNet,
)
from samurai.eval.mask_metrics import (
    MaskScores,
    boundary_f_measure,
    mask_scores,
    region_similarity,
)
from samurai.eval.metrics import (
    CONVENTIONS,
    Got10kScores,
    OpeConvention,
    OpeScores,
    got10k_ious,
    got10k_scores,
    overlap_ratio,
    rect_iou,
    sequence_scores,
    summarize,
)
from samurai.eval.report import Report, evaluate, plot_curves, write_report
from samurai.eval.results import ResultFolder, pack_got10k, pack_trackingnet

__all__ = [
    "CONVENTIONS",
    "OTB",
    "UAV123",
    "Dataset",
    "GOT10k",
    "Got10kScores",
    "LaSOT",
    "LaSOTExt",
    "MaskScores",
    "NfS",
    "OpeConvention",
    "OpeScores",
    "Report",
    "ResultFolder",
    "Sequence",
    "TrackingNet",
    "boundary_f_measure",
    "evaluate",
    "got10k_ious",
    "got10k_scores",
    "mask_scores",
    "overlap_ratio",
    "pack_got10k",
    "pack_trackingnet",
    "plot_curves",
    "rect_iou",
    "region_similarity",
    "sequence_scores",
    "summarize",
    "write_report",
]
