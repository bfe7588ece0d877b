"""One-call builders with the official names: ``build_sam2``, ``build_sam2_video_predictor``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from samurai.build import build_model, model_config
from samurai.checkpoints import ensure_checkpoint
from samurai.config import (
    SAMURAI_DEFAULTS,
    Dam4samConfig,
    ModelConfig,
    RuntimeOptions,
    SamuraiConfig,
    TrackerConfig,
    TrackingPolicy,
    resolve_tracker,
    resolve_variant,
    tracker_config_for,
    uses_dam4sam,
    uses_samurai,
)
from samurai.modeling.sam2 import Sam2Model
from samurai.tracking.sam2_api import SAM2VideoPredictor

Checkpoint = str | Path | dict[str, torch.Tensor] | None


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


@dataclass(frozen=True)
class SplitOptions:
    """What `split_overrides` returns: the model config and the tracking policy.

    Unpacks as the legacy triple ``model, tracker, samurai`` (``tracker`` the `TrackerConfig`)
    for callers written before the tracker policies; new code reads ``.model`` / ``.policy``.
    """

    model: ModelConfig
    policy: TrackingPolicy

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.policy.tracker, self.policy.samurai))


def split_overrides(
    variant: str | ModelConfig,
    *,
    samurai_mode: bool = True,
    tracker: str | None = None,
    overrides: dict[str, Any],
) -> SplitOptions:
    """Sort official config names (``image_size``, ``fill_hole_area``, ``kf_score_weight``,
    ``drm_iou_threshold``, ...) into the model config and the tracking policy.

    ``tracker`` (one of `TRACKERS`) wins when given; otherwise ``samurai_mode`` picks
    ``"samurai"`` or ``"sam2"``. SAMURAI options need ``samurai`` / ``samurai+dam``, DAM4SAM
    options ``dam4sam`` / ``samurai+dam``; those and unknown names raise ``ValueError``.
    """
    name = (
        resolve_tracker(tracker) if tracker is not None else ("samurai" if samurai_mode else "sam2")
    )
    model = model_config(variant)
    model_keys = _field_names(ModelConfig) - {"name", "hiera"}
    tracker_keys, samurai_keys = _field_names(TrackerConfig), _field_names(SamuraiConfig)
    dam_keys = _field_names(Dam4samConfig)
    unknown = set(overrides) - model_keys - tracker_keys - samurai_keys - dam_keys
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    if set(overrides) & samurai_keys and not uses_samurai(name):
        raise ValueError(
            f"SAMURAI options {sorted(set(overrides) & samurai_keys)} need samurai_mode=True "
            f"(tracker 'samurai' or 'samurai+dam'), not tracker {name!r}"
        )
    if set(overrides) & dam_keys and not uses_dam4sam(name):
        raise ValueError(
            f"DAM4SAM options {sorted(set(overrides) & dam_keys)} need tracker 'dam4sam' or "
            f"'samurai+dam', not {name!r}"
        )
    if "image_size" in overrides:
        model = model_config(model, image_size=int(overrides["image_size"]))
    model = replace(
        model, **{k: v for k, v in overrides.items() if k in model_keys - {"image_size"}}
    )
    tracker_cfg = replace(
        tracker_config_for(name), **{k: v for k, v in overrides.items() if k in tracker_keys}
    )
    samurai = None
    if uses_samurai(name):
        base = SAMURAI_DEFAULTS.get(model.name, SamuraiConfig())
        samurai = replace(base, **{k: v for k, v in overrides.items() if k in samurai_keys})
    dam4sam = None
    if uses_dam4sam(name):
        dam4sam = Dam4samConfig(**{k: v for k, v in overrides.items() if k in dam_keys})
    return SplitOptions(model, TrackingPolicy(name, tracker_cfg, samurai, dam4sam))


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
    split = split_overrides(variant, samurai_mode=False, overrides=overrides)
    return load_model(split.model, checkpoint, device=device)


def build_sam2_video_predictor(
    variant: str = "sam2.1_hiera_t",
    checkpoint: Checkpoint = None,
    device: str | torch.device = "cpu",
    samurai_mode: bool = True,
    tracker: str | None = None,
    **overrides: Any,
) -> SAM2VideoPredictor:
    """A video predictor with the official SAM 2 API; SAMURAI on by default.

    ``tracker`` (``"samurai"``, ``"sam2"``, ``"dam4sam"``, ``"samurai+dam"``) overrides
    ``samurai_mode``. ``overrides`` take the official config names: ``image_size``,
    ``fill_hole_area``, ``min_obj_score_logits``, ``kf_score_weight``,
    ``stable_frames_threshold``, ``memory_bank_iou_threshold``, ``drm_iou_threshold``, ...
    and ``offload_state_to_cpu``.
    """
    offload = bool(overrides.pop("offload_state_to_cpu", False))
    split = split_overrides(
        variant, samurai_mode=samurai_mode, tracker=tracker, overrides=overrides
    )
    model = load_model(split.model, checkpoint, device=device)
    runtime = RuntimeOptions(device=str(device), offload_state_to_cpu=offload)
    return SAM2VideoPredictor.from_policy(model, split.policy, runtime=runtime)
