"""Run our DAM4SAM policy the way ``tools/golden/dam4sam/generate.py`` ran the official
tracker, and collect per-frame arrays named as in ``tests/data/golden/dam4sam/*.npz``."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference import REFERENCE_DIR, _synth_module, synth_state_dict
from samurai.build import build_model
from samurai.config import DAM4SAM_TRACKER, Dam4samConfig, SamuraiConfig
from samurai.io.frames import ImageFolderSource
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.results import FrameResult

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden" / "dam4sam"
RUNS = ("dam4sam_t_bedroom", "dam4sam_t_bedroom_absent", "dam4sam_t_bedroom_iouhi")
VARIANT = "sam2.1_hiera_t"
IOU_BIAS = "sam_mask_decoder.iou_prediction_head.layers.2.bias"
OBJ_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


@lru_cache(maxsize=4)
def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def meta(name: str) -> dict[str, Any]:
    return json.loads(str(golden(name)["meta_json"]))


def calibrated_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The seed-0 synthetic weights with the run's head calibration (README "Synthetic
    weights"); both calibrated biases have zero spread, so only their values change."""
    calib = meta(name)["calibration"]
    sd = dict(synth_state_dict(VARIANT))
    sd[IOU_BIAS] = torch.tensor(calib["iou_b_values"], dtype=torch.float32)
    sd[OBJ_BIAS] = torch.full_like(sd[OBJ_BIAS], calib["obj_score_b_mean"])
    digest = _synth_module().state_dict_digest(sd)
    assert digest == meta(name)["synth_state_dict_sha256"], "not the golden run's weights"
    return sd


def make_predictor(
    name: str, *, samurai: SamuraiConfig | None = None, dtype: str = "float32"
) -> VideoPredictor:
    from samurai.config import RuntimeOptions

    model = build_model(VARIANT, calibrated_state_dict(name))
    return VideoPredictor(
        model,
        tracker=DAM4SAM_TRACKER,
        samurai=samurai,
        dam4sam=Dam4samConfig(),
        runtime=RuntimeOptions(dtype=dtype),  # type: ignore[arg-type]
    )


def frame_files(num: int) -> list[Path]:
    return sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:num]


def run(name: str, predictor: VideoPredictor | None = None, frames: int | None = None):
    """Track the golden run's frames from its box; returns (results, predictor, state)."""
    predictor = predictor or make_predictor(name)
    m = meta(name)
    num = int(m["num_frames"]) if frames is None else frames
    state = predictor.init_video(ImageFolderSource(frame_files(num)))
    first = predictor.add_prompt(state, frame_idx=0, obj_id=1, box=m["init_box_xyxy"])
    results = [first, *predictor.propagate(state, start=1)]
    return results, predictor, state


def collect(results: list[FrameResult]) -> dict[str, Any]:
    """Per-frame arrays (frame 0 = init) in the golden files' names and conventions."""
    n = len(results)
    out: dict[str, Any] = {
        "mask_bits": [],
        "video_logits": [],
        "low_res": [],
        "obj_ptr": np.zeros((n, 256), np.float32),
        "ious": np.full((n, 3), np.nan, np.float32),
        "object_score_logit": np.full(n, np.nan, np.float32),
        "chosen_candidate": np.full(n, -1, np.int32),
        "n_pixels_pos_lowres": np.zeros(n, np.int64),
        "details": [],
    }
    for f, r in enumerate(results):
        obj = r.objects[0]
        logits = r.video_res_logits()[0, 0]
        out["video_logits"].append(logits.numpy())
        out["mask_bits"].append((logits > 0).numpy())
        out["low_res"].append(obj.low_res_logits[0, 0].float().numpy())
        out["n_pixels_pos_lowres"][f] = int((obj.low_res_logits > 0).sum())
        d = obj.details
        out["details"].append(d)
        if d is None:
            continue
        out["obj_ptr"][f] = d.obj_ptr.float().numpy()
        if d.dam4sam is not None:
            out["ious"][f] = d.candidate_ious.float().numpy()
            out["object_score_logit"][f] = obj.object_score_logit
            out["chosen_candidate"][f] = d.candidate_index
    return out
