"""Official SAM 2 / SAMURAI config names, hydra overrides and Hugging Face ids, mapped onto
samurai's variants and options (no hydra, no YAML: the official files' values are known here).

The official repositories ship ``configs/sam2/sam2_hiera_{t,s,b+,l}.yaml``,
``configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml`` and (SAMURAI) ``configs/samurai/
sam2.1_hiera_{t,s,b+,l}.yaml``; early SAM 2 releases also accepted ``sam2_hiera_l.yaml`` at the
package root. A ``configs/samurai/`` name turns SAMURAI on with that file's values (the
``SAMURAI_DEFAULTS`` table); a ``configs/sam2*/`` name turns it off and keeps the fork's
``min_obj_score_logits=-1`` (upstream SAM 2 uses 0: pass ``min_obj_score_logits=0``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from samurai.config import (
    SAMURAI_MIN_OBJ_SCORE_LOGITS,
    VARIANTS,
    SamuraiConfig,
    TrackerConfig,
    resolve_variant,
)

_STEM = re.compile(r"^(sam2(?:\.1)?)_hiera_(t|s|b\+|l|tiny|small|base_plus|large)$")
_PLAIN_FOLDERS = {"sam2", "sam2.1", "configs", ""}
_SAMURAI_FOLDERS = {"samurai"}

HF_MODEL_IDS: dict[str, str] = {
    f"facebook/{prefix}-hiera-{size}": f"configs/{prefix}/{prefix}_hiera_{short}.yaml"
    for prefix in ("sam2", "sam2.1")
    for size, short in (("tiny", "t"), ("small", "s"), ("base-plus", "b+"), ("large", "l"))
}
"""Hugging Face model id -> official config name (``HF_MODEL_ID_TO_FILENAMES`` upstream)."""


@dataclass(frozen=True)
class OfficialConfig:
    """What an official config name means here.

    Attributes:
        variant: VARIANTS key of the model the config builds.
        samurai_mode: SAMURAI on (``configs/samurai/``) or off; None for a native variant name
            (``"sam2.1_hiera_t"``), where the builder's own default applies.
        min_obj_score_logits: the config's absent-object threshold, None for native names.
    """

    variant: str
    samurai_mode: bool | None
    min_obj_score_logits: float | None


def parse_config_name(name: str | os.PathLike[str]) -> OfficialConfig:
    """Map an official config name or path, or a samurai variant name, to a variant and mode.

    Accepts ``configs/samurai/sam2.1_hiera_b+.yaml``, ``sam2.1/sam2.1_hiera_t``,
    ``sam2_hiera_l.yaml``, ``/any/path/sam2/configs/sam2.1/sam2.1_hiera_s.yaml``, ... and the
    VARIANTS keys and aliases (``sam2.1_hiera_t``, ``sam2.1_hiera_tiny``).

    Raises:
        ValueError: not a config name samurai knows (one line, naming it).
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise ValueError(f"config_file must be a config name or path, got {name!r}")
    text = name.strip().replace("\\", "/")
    if text in HF_MODEL_IDS:
        text = HF_MODEL_IDS[text]
    is_yaml = text.endswith((".yaml", ".yml"))
    stem_path = text.rsplit(".", 1)[0] if is_yaml else text
    parts = [p for p in stem_path.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"unknown model config {name!r}")
    stem, folder = parts[-1], parts[-2] if len(parts) > 1 else ""
    if "_training" in folder or stem.endswith("_finetune"):
        raise ValueError(
            f"{name!r} is a training config; samurai runs inference only: use "
            "configs/sam2.1/sam2.1_hiera_b+.yaml with the fine-tuned checkpoint"
        )
    match = _STEM.match(stem)
    if match is None:
        # a plain variant key or alias, e.g. "sam2.1_hiera_t" (raises the usual one-line error)
        return OfficialConfig(resolve_variant(stem_path), None, None)
    variant = resolve_variant(stem)
    if not is_yaml and len(parts) == 1:
        return OfficialConfig(variant, None, None)
    if folder in _SAMURAI_FOLDERS:
        if not variant.startswith("sam2.1"):
            raise ValueError(f"unknown model config {name!r}: SAMURAI ships sam2.1 configs only")
        return OfficialConfig(variant, True, SAMURAI_MIN_OBJ_SCORE_LOGITS)
    if folder in _PLAIN_FOLDERS:
        return OfficialConfig(variant, False, SAMURAI_MIN_OBJ_SCORE_LOGITS)
    raise ValueError(
        f"unknown model config {name!r}: expected configs/sam2/, configs/sam2.1/ or "
        "configs/samurai/ followed by <model>_hiera_{t,s,b+,l}.yaml"
    )


def hf_config_name(model_id: str) -> str:
    """Official config name of a Hugging Face model id (``facebook/sam2.1-hiera-tiny``)."""
    if model_id in HF_MODEL_IDS:
        return HF_MODEL_IDS[model_id]
    known = ", ".join(HF_MODEL_IDS)
    raise ValueError(f"unknown Hugging Face model id {model_id!r}; expected one of: {known}")


DECODER_OPTIONS = (
    "dynamic_multimask_via_stability",
    "dynamic_multimask_stability_delta",
    "dynamic_multimask_stability_thresh",
)
"""``sam_mask_decoder_extra_args.*`` overrides (set on the mask decoder after building)."""

_ACCEPTED_NO_EFFECT = {"compile_image_encoder"}
_OVERRIDE = re.compile(r"^(\+\+|\+)?model\.([A-Za-z_][\w.]*)=(.*)$")


def override_names() -> set[str]:
    """The ``++model.<name>`` names samurai maps onto its options."""
    return (
        {f.name for f in fields(TrackerConfig)}
        | {f.name for f in fields(SamuraiConfig)} - {"memory_selection"}
        | {"image_size", "samurai_mode"}
        | set(DECODER_OPTIONS)
        | _ACCEPTED_NO_EFFECT
    )


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip().strip("'\"")


def parse_hydra_overrides(items: Sequence[str] | str | None) -> dict[str, Any]:
    """``["++model.fill_hole_area=0", ...]`` -> ``{"fill_hole_area": 0, ...}``.

    ``++model.``, ``+model.`` and ``model.`` prefixes are accepted;
    ``model.sam_mask_decoder_extra_args.<name>`` maps to the mask decoder's options. The
    ``_target_`` the official builder sets itself (``SAM2VideoPredictor``) is accepted and ignored.

    Raises:
        ValueError: a malformed override, or a name samurai has no option for (one line).
    """
    if items is None:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, Any] = {}
    known = override_names()
    for item in items:
        match = _OVERRIDE.match(str(item).strip())
        if match is None:
            raise ValueError(
                f"hydra override {item!r} not understood: samurai maps '++model.<name>=<value>'"
            )
        name, value = match.group(2), _value(match.group(3))
        name = name.removeprefix("sam_mask_decoder_extra_args.")
        if name == "_target_":
            if not str(value).endswith("SAM2VideoPredictor"):
                raise ValueError(f"hydra override {item!r}: samurai cannot build {value}")
            continue
        if name not in known:
            raise ValueError(
                f"hydra override {item!r}: samurai has no option {name!r} "
                f"(supported: {', '.join(sorted(known))})"
            )
        if name not in _ACCEPTED_NO_EFFECT:
            out[name] = value
    return out


def official_variants() -> list[str]:
    """Every config path the official SAM 2 and SAMURAI repositories ship (for tests / docs)."""
    out = [f"configs/{v.split('_hiera')[0]}/{v}.yaml" for v in VARIANTS]
    out += [f"configs/samurai/{v}.yaml" for v in VARIANTS if v.startswith("sam2.1")]
    return out
