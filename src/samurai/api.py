"""One-call builders with the official names: ``build_sam2``, ``build_sam2_video_predictor``."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from samurai.build import build_model, model_config
from samurai.checkpoints import ensure_checkpoint
from samurai.config import (
    SAMURAI_DEFAULTS,
    SAMURAI_MIN_OBJ_SCORE_LOGITS,
    ModelConfig,
    RuntimeOptions,
    SamuraiConfig,
    TrackerConfig,
    resolve_variant,
)
from samurai.modeling.sam2 import Sam2Model
from samurai.tracking.sam2_api import SAM2VideoPredictor

Checkpoint = str | Path | dict[str, torch.Tensor] | None


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def split_overrides(
    variant: str | ModelConfig, *, samurai_mode: bool, overrides: dict[str, Any]
) -> tuple[ModelConfig, TrackerConfig, SamuraiConfig | None]:
    """Sort official config names (``image_size``, ``fill_hole_area``, ``kf_score_weight``, ...)
    into the model, tracker and SAMURAI configs; unknown names raise ``ValueError``."""
    model = model_config(variant)
    model_keys = _field_names(ModelConfig) - {"name", "hiera"}
    tracker_keys, samurai_keys = _field_names(TrackerConfig), _field_names(SamuraiConfig)
    unknown = set(overrides) - model_keys - tracker_keys - samurai_keys
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    if "image_size" in overrides:
        model = model_config(model, image_size=int(overrides["image_size"]))
    model = replace(
        model, **{k: v for k, v in overrides.items() if k in model_keys - {"image_size"}}
    )
    # The SAMURAI configs judge an object absent at logit <= -1; upstream SAM 2.1 at <= 0.
    tracker = TrackerConfig(
        min_obj_score_logits=SAMURAI_MIN_OBJ_SCORE_LOGITS if samurai_mode else 0.0
    )
    tracker = replace(tracker, **{k: v for k, v in overrides.items() if k in tracker_keys})
    samurai = None
    if samurai_mode:
        base = SAMURAI_DEFAULTS.get(model.name, SamuraiConfig())
        samurai = replace(base, **{k: v for k, v in overrides.items() if k in samurai_keys})
    elif set(overrides) & samurai_keys:
        raise ValueError(
            f"SAMURAI options {sorted(set(overrides) & samurai_keys)} need samurai_mode=True"
        )
    return model, tracker, samurai


def load_model(
    config: ModelConfig, checkpoint: Checkpoint, *, device: str | torch.device = "cpu"
) -> Sam2Model:
    """Build ``config`` and load its weights; ``checkpoint=None`` uses the cache / downloads."""
    if checkpoint is None:
        checkpoint = ensure_checkpoint(resolve_variant(config.name))
    return build_model(config, checkpoint, device=device)


def build_sam2(
    variant: str = "sam2.1_hiera_t",
    checkpoint: Checkpoint = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> Sam2Model:
    """A SAM 2 / SAM 2.1 model with official weights (downloaded and cached when not given).

    ``overrides`` are model config names, e.g. ``image_size=512`` (faster, changes results).
    """
    model, _, _ = split_overrides(variant, samurai_mode=False, overrides=overrides)
    return load_model(model, checkpoint, device=device)


def build_sam2_video_predictor(
    variant: str = "sam2.1_hiera_t",
    checkpoint: Checkpoint = None,
    device: str | torch.device = "cpu",
    samurai_mode: bool = True,
    **overrides: Any,
) -> SAM2VideoPredictor:
    """A video predictor with the official SAM 2 API; SAMURAI on by default.

    ``overrides`` take the official config names: ``image_size``, ``fill_hole_area``,
    ``min_obj_score_logits``, ``kf_score_weight``, ``stable_frames_threshold``,
    ``memory_bank_iou_threshold``, ... and ``offload_state_to_cpu``.
    """
    offload = bool(overrides.pop("offload_state_to_cpu", False))
    model_cfg, tracker, samurai = split_overrides(
        variant, samurai_mode=samurai_mode, overrides=overrides
    )
    model = load_model(model_cfg, checkpoint, device=device)
    runtime = RuntimeOptions(device=str(device), offload_state_to_cpu=offload)
    return SAM2VideoPredictor(model, tracker=tracker, samurai=samurai, runtime=runtime)
