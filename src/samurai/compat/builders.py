"""The official builders with their official signatures: ``build_sam2``,
``build_sam2_video_predictor``, ``build_sam2_hf``, ``build_sam2_video_predictor_hf``.

``config_file`` takes the official config names and paths (``configs/samurai/sam2.1_hiera_b+.yaml``,
``configs/sam2.1/sam2.1_hiera_t.yaml``, ...) as well as samurai's variant names;
``hydra_overrides_extra`` takes the ``++model.<name>=<value>`` overrides the official scripts
use. See ``docs/compatibility.md`` for every argument.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from samurai.api import Checkpoint, load_model, split_overrides
from samurai.build import infer_variant, read_state_dict
from samurai.checkpoints import ensure_checkpoint
from samurai.compat.configs import (
    DECODER_OPTIONS,
    OfficialConfig,
    hf_config_name,
    override_names,
    parse_config_name,
    parse_hydra_overrides,
)
from samurai.config import (
    Dam4samConfig,
    ModelConfig,
    RuntimeOptions,
    SamuraiConfig,
    TrackerConfig,
    resolve_tracker,
    resolve_variant,
    uses_dam4sam,
)
from samurai.modeling.mask_decoder import MaskDecoder
from samurai.modeling.sam2 import Sam2Model
from samurai.tracking.sam2_api import SAM2VideoPredictor

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "sam2.1_hiera_t"
_NOT_IMPLEMENTED_TRUE = ("clear_non_cond_mem_around_input",)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; a one-line ``ValueError`` when it cannot be used here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested but MPS is not available here")
    return dev


def _resolve(
    config_file: str | ModelConfig | None, ckpt_path: Checkpoint, overrides: dict[str, Any]
) -> tuple[str | ModelConfig, OfficialConfig | None, Checkpoint]:
    """The variant (or config) to build, what the config name implies, and the checkpoint
    (read once when the variant must be inferred from it). ``variant=`` / ``checkpoint=``
    (samurai's own keyword names) are taken out of ``overrides``."""
    if "variant" in overrides:
        if config_file is not None:
            raise ValueError("give config_file or variant, not both")
        config_file = overrides.pop("variant")
    if "checkpoint" in overrides:
        if ckpt_path is not None:
            raise ValueError("give ckpt_path or checkpoint, not both")
        ckpt_path = overrides.pop("checkpoint")
    if isinstance(config_file, ModelConfig):
        return config_file, None, ckpt_path
    if isinstance(config_file, Path):
        config_file = str(config_file)
    if config_file is not None:
        official = parse_config_name(config_file)
        return official.variant, official, ckpt_path
    if ckpt_path is None:
        return DEFAULT_VARIANT, None, None
    sd = ckpt_path if isinstance(ckpt_path, dict) else read_state_dict(ckpt_path)
    return infer_variant(sd), None, sd


def _merge(hydra: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    both = set(hydra) & set(overrides)
    clash = [k for k in both if hydra[k] != overrides[k]]
    if clash:
        raise ValueError(f"option(s) {sorted(clash)} given twice with different values")
    return {**hydra, **overrides}


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {"image_size": 1024, "samurai_mode": True}
    for cls in (TrackerConfig, SamuraiConfig, Dam4samConfig):
        out.update({f.name: f.default for f in fields(cls)})
    out.update({DECODER_OPTIONS[0]: True, DECODER_OPTIONS[1]: 0.05, DECODER_OPTIONS[2]: 0.98})
    return out


def _check_types(options: dict[str, Any]) -> None:
    """Each option has the type of its default (ints for floats are fine); one-line errors."""
    defaults = _defaults()
    for name, value in options.items():
        if name not in defaults:
            continue
        default = defaults[name]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            kind = {"bool": "a bool", "int": "an int", "float": "a number"}.get(
                type(default).__name__, f"a {type(default).__name__}"
            )
            raise ValueError(f"option {name}={value!r} must be {kind}")


def _check_mode(mode: str) -> None:
    if mode != "eval":
        raise ValueError(f"mode={mode!r}: samurai runs inference only, use mode='eval'")


def _decoder_options(options: dict[str, Any], apply_postprocessing: bool) -> dict[str, Any]:
    """Pop the mask decoder's options; without post-processing the official decoder runs with
    ``dynamic_multimask_via_stability=False`` (its class default)."""
    decoder = {"dynamic_multimask_via_stability": apply_postprocessing}
    decoder.update({k: options.pop(k) for k in DECODER_OPTIONS if k in options})
    return decoder


def _set_decoder(model: Sam2Model, decoder: dict[str, Any]) -> None:
    head = model.sam_mask_decoder
    assert isinstance(head, MaskDecoder)
    for name, value in decoder.items():
        setattr(head, name, value)


def build_sam2(
    config_file: str | ModelConfig | None = None,
    ckpt_path: Checkpoint = None,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = (),
    apply_postprocessing: bool = True,
    **overrides: Any,
) -> Sam2Model:
    """A SAM 2 / SAM 2.1 model (the official ``build_sam2``).

    Args:
        config_file: official config name or path, or a samurai variant; None infers the variant
            from ``ckpt_path`` (tiny when neither is given).
        ckpt_path: checkpoint file or state dict; None uses the cache or downloads the official
            file (the official builder leaves the weights random).
        device: where the model runs.
        mode: ``"eval"`` only.
        hydra_overrides_extra: ``++model.<name>=<value>`` overrides (``image_size`` and the
            mask decoder's ``sam_mask_decoder_extra_args.*`` apply to a bare model).
        apply_postprocessing: the decoder's dynamic multimask fallback (official default on).
        overrides: the same options as keywords, e.g. ``image_size=512``.
    """
    _check_mode(mode)
    dev = check_device(device)
    variant, _, checkpoint = _resolve(config_file, ckpt_path, overrides)
    options = _merge(parse_hydra_overrides(hydra_overrides_extra), overrides)
    _check_types(options)
    decoder = _decoder_options(options, apply_postprocessing)
    extra = set(options) - {"image_size"}
    if extra - override_names():
        raise ValueError(f"unknown option(s) {sorted(extra - override_names())}")
    if extra:
        raise ValueError(f"option(s) {sorted(extra)} belong to a video predictor, not build_sam2")
    split = split_overrides(variant, samurai_mode=False, overrides=options)
    model = load_model(split.model, checkpoint, device=dev)
    _set_decoder(model, decoder)
    return model


def build_sam2_video_predictor(
    config_file: str | ModelConfig | None = None,
    ckpt_path: Checkpoint = None,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] = (),
    apply_postprocessing: bool = True,
    vos_optimized: bool = False,
    *,
    samurai_mode: bool | None = None,
    tracker: str | None = None,
    **overrides: Any,
) -> SAM2VideoPredictor:
    """A video predictor with the official API (the official ``build_sam2_video_predictor``).

    Args:
        config_file: ``configs/samurai/...`` (SAMURAI on, that config's values),
            ``configs/sam2/...`` or ``configs/sam2.1/...`` (SAMURAI off, the fork's
            ``min_obj_score_logits=-1``), or a samurai variant name (SAMURAI on unless
            ``samurai_mode=False``); None infers the variant from ``ckpt_path``.
        ckpt_path: checkpoint file or state dict; None uses the cache or downloads.
        device: where the model runs.
        mode: ``"eval"`` only.
        hydra_overrides_extra: ``++model.<name>=<value>`` overrides, mapped onto the options.
        apply_postprocessing: the official post-processing overrides (dynamic multimask,
            binarised click masks for memory, ``fill_hole_area=8``); False turns all three off.
        vos_optimized: accepted; the official VOS predictor only compiles the model (same
            results), samurai runs its usual code.
        samurai_mode: force SAMURAI on or off, whatever the config name says.
        tracker: the tracking policy, ``"samurai"``, ``"sam2"``, ``"dam4sam"`` or
            ``"samurai+dam"``; wins over ``samurai_mode`` and the config name.
        overrides: options by keyword (``image_size``, ``fill_hole_area``, ``kf_score_weight``,
            ``min_obj_score_logits``, ``offload_state_to_cpu``, ...).
    """
    _check_mode(mode)
    dev = check_device(device)
    if vos_optimized:
        logger.info("vos_optimized=True: samurai runs the same code (no compilation)")
    variant, official, checkpoint = _resolve(config_file, ckpt_path, overrides)
    options = _merge(parse_hydra_overrides(hydra_overrides_extra), overrides)
    _check_types(options)
    offload = bool(options.pop("offload_state_to_cpu", False))
    decoder = _decoder_options(options, apply_postprocessing)
    if not apply_postprocessing:
        options.setdefault("fill_hole_area", 0)
        options.setdefault("binarize_mask_from_pts_for_mem_enc", False)
    for name in _NOT_IMPLEMENTED_TRUE:
        if options.pop(name, False):
            raise ValueError(f"{name}=True is not supported by samurai")
    hydra_mode = options.pop("samurai_mode", None)
    config_mode = official.samurai_mode if official is not None else None
    mode_on = next((m for m in (samurai_mode, hydra_mode, config_mode) if m is not None), True)
    dam_policy = tracker is not None and uses_dam4sam(resolve_tracker(tracker))
    if official is not None and official.min_obj_score_logits is not None and not dam_policy:
        # DAM4SAM keeps upstream's absent threshold (0) whatever config names the weights
        options.setdefault("min_obj_score_logits", official.min_obj_score_logits)
    split = split_overrides(variant, samurai_mode=bool(mode_on), tracker=tracker, overrides=options)
    model = load_model(split.model, checkpoint, device=dev)
    _set_decoder(model, decoder)
    runtime = RuntimeOptions(device=str(dev), offload_state_to_cpu=offload)
    return SAM2VideoPredictor.from_policy(model, split.policy, runtime=runtime)


def _hf_checkpoint(model_id: str, kwargs: dict[str, Any]) -> tuple[str, Path]:
    config = hf_config_name(model_id)
    if "ckpt_path" in kwargs or "config_file" in kwargs:
        raise ValueError("the _hf builders choose config_file and ckpt_path from the model id")
    return config, ensure_checkpoint(resolve_variant(parse_config_name(config).variant))


def build_sam2_hf(model_id: str, **kwargs: Any) -> Sam2Model:
    """``build_sam2`` of a Hugging Face model id (``facebook/sam2.1-hiera-tiny``); the weights
    come from the cache or the official download (the same files as the Hugging Face repos)."""
    config, path = _hf_checkpoint(model_id, kwargs)
    return build_sam2(config, path, **kwargs)


def build_sam2_video_predictor_hf(model_id: str, **kwargs: Any) -> SAM2VideoPredictor:
    """``build_sam2_video_predictor`` of a Hugging Face model id (SAMURAI off, as its config)."""
    config, path = _hf_checkpoint(model_id, kwargs)
    return build_sam2_video_predictor(config, path, **kwargs)


__all__ = [
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "check_device",
]
