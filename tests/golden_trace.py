"""Run our video predictor the way the golden harness ran the official one, and compare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reference import REFERENCE_DIR, golden, synth_state_dict
from samurai.build import build_model
from samurai.config import SAMURAI_DEFAULTS, SamuraiConfig, TrackerConfig
from samurai.io.frames import ImageFolderSource
from samurai.io.masks import mask_to_box
from samurai.tracking.memory import GateScores, MemoryGate
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.results import FrameResult
from samurai.tracking.state import VideoState

MANIFEST = {"t": "sam2.1_hiera_t", "b+": "sam2.1_hiera_b+", "l": "sam2.1_hiera_l"}


@dataclass(frozen=True)
class TraceSpec:
    golden: str
    variant: str
    samurai: bool


TRACES = {
    "samurai_t_bedroom": TraceSpec("samurai_t_bedroom", "sam2.1_hiera_t", True),
    "samurai_t_points_bedroom": TraceSpec("samurai_t_points_bedroom", "sam2.1_hiera_t", True),
    "samurai_bplus_bedroom": TraceSpec("samurai_bplus_bedroom", "sam2.1_hiera_b+", True),
    "samurai_l_bedroom": TraceSpec("samurai_l_bedroom", "sam2.1_hiera_l", True),
    "sam2_t_bedroom": TraceSpec("sam2_t_bedroom", "sam2.1_hiera_t", False),
    "sam2v0_t_bedroom": TraceSpec("sam2v0_t_bedroom", "sam2_hiera_t", False),
}


def make_predictor(spec: TraceSpec, *, dtype: torch.dtype = torch.float32) -> VideoPredictor:
    model = build_model(spec.variant, synth_state_dict(spec.variant))
    # The golden runs used the SAMURAI fork: min_obj_score_logits -1 with SAMURAI on or off,
    # and no hole filling (its CUDA extension was not built).
    tracker = TrackerConfig(fill_hole_area=0, min_obj_score_logits=-1.0)
    samurai: SamuraiConfig | None = SAMURAI_DEFAULTS[spec.variant] if spec.samurai else None
    return VideoPredictor(model, tracker=tracker, samurai=samurai)


def prompted_state(
    spec: TraceSpec, predictor: VideoPredictor, *, frames: int | None = None
) -> tuple[VideoState, FrameResult]:
    """A video of the golden run's frames (the first ``frames`` of them) with its prompt added."""
    meta = json.loads(str(golden(spec.golden)["meta_json"]))
    num = int(meta["num_frames"]) if frames is None else frames
    files = sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:num]
    state = predictor.init_video(ImageFolderSource(files))
    p = meta["prompt"]
    first = predictor.add_prompt(
        state,
        frame_idx=p["frame"],
        obj_id=p["obj_id"],
        box=p["box_xyxy"],
        points=p["points_xy"],
        labels=p["labels"],
    )
    return state, first


def run_trace(spec: TraceSpec, predictor: VideoPredictor | None = None) -> dict[str, np.ndarray]:
    """Track the golden run's frames and prompt; return per-frame arrays named as in golden."""
    predictor = predictor or make_predictor(spec)
    state, first = prompted_state(spec, predictor)
    skip = first.frame_idx
    results = [first] + [r for r in predictor.propagate(state) if r.frame_idx != skip]
    return collect(results, predictor)


Trace = dict[str, dict[int, Any]]
"""Per golden array name: frame index -> our value on that frame."""


def collect(results: list[FrameResult], predictor: VideoPredictor) -> Trace:
    size = predictor.image_size
    trace: Trace = {}
    gate = MemoryGate.from_config(predictor.samurai) if predictor.samurai else None
    for r in results:
        obj = r.objects[0]
        d = obj.details
        assert d is not None, f"frame {r.frame_idx} has no step details"
        masks = r.masks()[0].numpy()
        mem = d.memory
        row: dict[str, Any] = {
            "ious_all4": d.ious_all4.float().numpy(),
            "ious": d.ious_all4[1:].float().numpy(),
            "object_score_logit": obj.object_score_logit,
            "chosen_token": d.chosen_token,
            "chosen_candidate": d.chosen_token - 1 if d.candidate_index < 0 else d.candidate_index,
            "best_iou_score": obj.iou,
            "obj_ptr": d.obj_ptr.float().numpy(),
            "low_res_logits": obj.low_res_logits[0, 0].float().numpy(),
            "chosen_box_1024": d.chosen_box.numpy(),
            "is_obj_appearing_mask": obj.object_score_logit > -1.0,
            "video_masks": masks,
            "video_mask_box": mask_to_box(torch.from_numpy(masks)).numpy(),
            "video_mask_area": int(masks.sum()),
            "mem_frames": _pad([] if mem is None else list(mem.mem_frames), 7),
            "mem_tpos": _pad([] if mem is None else list(mem.mem_tpos), 7),
            "ptr_frames": _pad([] if mem is None else list(mem.ptr_frames), 16),
        }
        if d.candidate_index >= 0 and d.candidate_logits is not None:
            high = F.interpolate(
                d.candidate_logits[None].float(), size=(size, size), mode="bilinear"
            )
            row["cand_boxes_1024"] = mask_to_box(high[0] > 0).numpy()
            row["cand_areas_1024"] = (high[0] > 0).sum(dim=(1, 2)).numpy()
        sel = d.selection
        if gate is not None:
            kf = None if sel is None else sel.kf_score
            row["mem_gate_pass"] = gate.passes(GateScores(obj.iou, obj.object_score_logit, kf))
            row["kf_phase"] = 0 if sel is None else int(sel.phase)
            row["stable_frames"] = 0 if sel is None else sel.state.stable_frames
            if sel is not None and sel.state.mean is not None:
                row["kf_mean"] = sel.state.mean
                row["kf_cov"] = sel.state.covariance
            if sel is not None and sel.kf_ious is not None:
                row["kf_ious"] = sel.kf_ious
                row["selection_scores"] = sel.scores
        for k, v in row.items():
            trace.setdefault(k, {})[r.frame_idx] = v
    return trace


def _pad(values: list[int], n: int) -> np.ndarray:
    return np.array(values + [-1] * (n - len(values)), dtype=np.int64)


DECISION_KEYS = (
    "chosen_token",
    "chosen_candidate",
    "mem_frames",
    "mem_tpos",
    "ptr_frames",
    "is_obj_appearing_mask",
    "kf_phase",
    "stable_frames",
    "mem_gate_pass",
)
"""Per-frame discrete decisions of a golden trace."""


@dataclass(frozen=True)
class Margin:
    frame: int
    kind: str
    margin: float


def decision_margins(g: Any, samurai: bool, variant: str = "sam2.1_hiera_t") -> list[Margin]:
    """How far each tracked frame's decisions of the official run are from flipping, smallest first.

    ``choice``: gap between the best and second-best candidate score (SAMURAI's weighted score
    in the stable phase, the predicted IoU otherwise); ``reset``: best IoU vs
    ``stable_ious_threshold``; ``gate``: distance of the memory gate's deciding score from its
    threshold; ``appearing``: object score vs ``min_obj_score_logits`` (-1).
    """
    cfg = SAMURAI_DEFAULTS[variant]
    out = []
    for f in range(1, len(g["frame_idx"])):
        ious = np.sort(g["ious"][f])[::-1]
        stable = samurai and int(g["kf_phase"][f]) == 3
        if stable:
            scores = np.sort(g["selection_scores"][f])[::-1]
            out.append(Margin(f, "choice", float(scores[0] - scores[1])))
        elif g["multimask_output"][f]:
            out.append(Margin(f, "choice", float(ious[0] - ious[1])))
        out.append(Margin(f, "appearing", abs(float(g["object_score_logit"][f]) + 1.0)))
        if samurai:
            out.append(Margin(f, "reset", abs(float(ious[0]) - cfg.stable_ious_threshold)))
            kf = float(g["kf_score"][f])
            gaps = [
                float(g["best_iou_score"][f]) - cfg.memory_bank_iou_threshold,
                float(g["object_score_logit"][f]) - cfg.memory_bank_obj_score_threshold,
            ] + ([kf - cfg.memory_bank_kf_score_threshold] if np.isfinite(kf) else [])
            failing = [-x for x in gaps if x <= 0]
            # passing: the smallest surplus flips it; failing: every deficit must close
            out.append(Margin(f, "gate", max(failing) if failing else min(gaps)))
    return sorted(out, key=lambda m: m.margin)
