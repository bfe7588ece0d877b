"""Typed configuration: what a checkpoint fixes, the tracking policy, SAMURAI / DAM4SAM knobs,
runtime.

Defaults are the *effective* official values: the yaml configs of SAM 2 / SAM 2.1 plus the
overrides ``build_sam2_video_predictor`` injects (dynamic multimask via stability, binarised
prompt masks for the memory encoder, ``fill_hole_area=8``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (defaults: the tiny model)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        """Channels of the trunk stages, deepest first (FPN neck input order)."""
        e = self.embed_dim
        return (8 * e, 4 * e, 2 * e, e)


@dataclass(frozen=True)
class ModelConfig:
    """Everything the weights were trained with: shapes and architecture flags."""

    name: str
    hiera: HieraConfig
    image_size: int = 1024
    hidden_dim: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    iou_prediction_use_sigmoid: bool = True
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = True
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1

    @property
    def image_embedding_size(self) -> int:
        """Side of the stride-16 feature map fed to the mask decoder (64 at 1024)."""
        return self.image_size // 16

    @property
    def is_sam2_1(self) -> bool:
        return self.no_obj_embed_spatial


@dataclass(frozen=True)
class TrackerConfig:
    """SAM 2 inference policy of the video / image predictors."""

    fill_hole_area: int = 8
    """Background holes of at most this many pixels (low-res mask) are filled in the outputs."""
    binarize_mask_from_pts_for_mem_enc: bool = True
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1
    """-1 attends to every conditioning (prompted) frame."""
    min_obj_score_logits: float = 0.0
    """Object judged absent when its score logit is <= this (upstream SAM 2.1: 0; SAMURAI: -1)."""
    non_overlap_masks: bool = False
    clear_non_cond_mem_around_input: bool = False
    add_all_frames_to_correct_as_cond: bool = False


@dataclass(frozen=True)
class SamuraiConfig:
    """SAMURAI motion-aware selection and quality-gated memory (``configs/samurai/*.yaml``)."""

    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = 0.0
    memory_selection: Literal["recent", "best_iou"] = "recent"
    """``recent``: the official gate (most recent passing frames); ``best_iou``: highest IoU."""


SAMURAI_MIN_OBJ_SCORE_LOGITS = -1.0
"""The SAMURAI configs' ``min_obj_score_logits`` (its fork applies it with SAMURAI on or off)."""


@dataclass(frozen=True)
class Dam4samConfig:
    """DAM4SAM's distractor-resolving memory (DRM) update rule (``dam4sam_tracker.py``).

    Official values (hard-coded there); see ``tools/golden/dam4sam/SPEC.md`` section 2.4. The
    memory layout (RAM stride 5, at most 4 DRM entries attended) lives in the
    `TrackerConfig` of the policy (`tracker_config_for`).
    """

    drm_iou_threshold: float = 0.8
    """The chosen mask's predicted IoU must be > this (compared in float32)."""
    drm_size_ratio_min: float = 0.8
    """Mask area / median of recent areas must be >= this ..."""
    drm_size_ratio_max: float = 1.2
    """... and <= this."""
    drm_size_history: int = 300
    """The median looks at the last this many area entries ..."""
    drm_size_median_count: int = 10
    """... of which the last this many non-zero ones."""
    drm_min_gap: int = 5
    """A frame is added only if more than this many frames passed since the last addition."""
    drm_alt_box_iou_max: float = 0.7
    """Added when some alternative's box IoU with the chosen box is <= this."""


TrackerName = Literal["samurai", "sam2", "dam4sam", "samurai+dam"]
TRACKERS: tuple[TrackerName, ...] = ("samurai", "sam2", "dam4sam", "samurai+dam")
"""Tracking policies: SAMURAI (Kalman candidate choice + gated memory), plain SAM 2, DAM4SAM
(RAM/DRM memory), and SAMURAI's candidate choice over DAM4SAM's memory (experimental)."""

DAM4SAM_TRACKER = TrackerConfig(
    fill_hole_area=0,
    memory_temporal_stride_for_eval=5,
    max_cond_frames_in_attn=4,
    min_obj_score_logits=0.0,
)
"""The DAM4SAM memory layout: RAM stride 5, frame 0 + 3 DRM frames attended, upstream absent
threshold, no hole filling (disabled in the official ``sam2/utils/misc.py``)."""


def resolve_tracker(name: str) -> TrackerName:
    """The canonical tracker name; a one-line ``ValueError`` lists the valid ones."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TRACKERS:
        raise ValueError(f"unknown tracker {name!r}; expected one of: {', '.join(TRACKERS)}")
    return key  # type: ignore[return-value]


def uses_samurai(name: TrackerName) -> bool:
    """Whether the policy runs SAMURAI's Kalman candidate choice."""
    return name in ("samurai", "samurai+dam")


def uses_dam4sam(name: TrackerName) -> bool:
    """Whether the policy runs DAM4SAM's RAM/DRM memory."""
    return name in ("dam4sam", "samurai+dam")


def tracker_config_for(name: TrackerName) -> TrackerConfig:
    """The default `TrackerConfig` of a policy (before user overrides)."""
    if uses_dam4sam(name):
        return DAM4SAM_TRACKER
    # The SAMURAI configs judge an object absent at logit <= -1; upstream SAM 2.1 at <= 0.
    return TrackerConfig(
        min_obj_score_logits=SAMURAI_MIN_OBJ_SCORE_LOGITS if name == "samurai" else 0.0
    )


@dataclass(frozen=True)
class TrackingPolicy:
    """Everything a predictor needs to run one tracking policy.

    Attributes:
        name: one of `TRACKERS`.
        tracker: SAM 2 inference policy (memory layout, thresholds, hole filling).
        samurai: SAMURAI knobs (``samurai`` and ``samurai+dam``), else None.
        dam4sam: DRM rule (``dam4sam`` and ``samurai+dam``), else None.
    """

    name: TrackerName
    tracker: TrackerConfig
    samurai: SamuraiConfig | None = None
    dam4sam: Dam4samConfig | None = None

    def __post_init__(self) -> None:
        name = resolve_tracker(self.name)
        if (self.samurai is not None) != uses_samurai(name):
            raise ValueError(
                f"tracker {name!r} {'needs' if uses_samurai(name) else 'takes no'} SamuraiConfig"
            )
        if (self.dam4sam is not None) != uses_dam4sam(name):
            raise ValueError(
                f"tracker {name!r} {'needs' if uses_dam4sam(name) else 'takes no'} Dam4samConfig"
            )


def policy_name(samurai: SamuraiConfig | None, dam4sam: Dam4samConfig | None) -> TrackerName:
    """The tracker name of a (samurai, dam4sam) configuration pair."""
    if dam4sam is not None:
        return "samurai+dam" if samurai is not None else "dam4sam"
    return "samurai" if samurai is not None else "sam2"


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the model runs."""

    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    offload_state_to_cpu: bool = False
    compile: bool = False
    reuse_freed_memory: bool = True
    """On CPU, let glibc reuse freed large blocks instead of unmapping them (process-wide; see
    :mod:`samurai.allocator`): 4-30 % less time per frame at 1024. `samurai.build.build_model`
    applies it already on CPU; ``SAMURAI_MALLOC_TUNING=0`` is the switch that turns it off."""


TINY = HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9))
SMALL = replace(TINY, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13))
BASE_PLUS = HieraConfig(
    embed_dim=112,
    num_heads=2,
    stages=(2, 3, 16, 3),
    global_att_blocks=(12, 16, 20),
    window_pos_embed_bkg_spatial_size=(14, 14),
)
LARGE = HieraConfig(
    embed_dim=144,
    num_heads=2,
    stages=(2, 6, 36, 4),
    global_att_blocks=(23, 33, 43),
    window_spec=(8, 4, 16, 8),
)

_SIZES = {"t": TINY, "s": SMALL, "b+": BASE_PLUS, "l": LARGE}
_LONG_NAMES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


def _sam2_1(size: str) -> ModelConfig:
    return ModelConfig(name=f"sam2.1_hiera_{size}", hiera=_SIZES[size])


def _sam2(size: str) -> ModelConfig:
    # SAM 2.0 lacks no_obj_embed_spatial and the temporal encoding / projection of obj pointers.
    return replace(
        _sam2_1(size),
        name=f"sam2_hiera_{size}",
        no_obj_embed_spatial=False,
        add_tpos_enc_to_obj_ptrs=False,
        proj_tpos_enc_in_obj_ptrs=False,
        use_signed_tpos_enc_to_obj_ptrs=False,
    )


VARIANTS: dict[str, ModelConfig] = {
    **{f"sam2_hiera_{s}": _sam2(s) for s in _SIZES},
    **{f"sam2.1_hiera_{s}": _sam2_1(s) for s in _SIZES},
}

SAMURAI_DEFAULTS: dict[str, SamuraiConfig] = {
    name: SamuraiConfig(kf_score_weight=0.15 if name.endswith("_l") else 0.25) for name in VARIANTS
}
"""Per-variant SAMURAI defaults: the large model's official config uses kf_score_weight 0.15."""

_ALIASES = {
    f"{prefix}_hiera_{long}": f"{prefix}_hiera_{short}"
    for prefix in ("sam2", "sam2.1")
    for short, long in _LONG_NAMES.items()
}


def resolve_variant(name: str) -> str:
    """Canonical VARIANTS key for a name such as ``sam2.1_hiera_t`` or ``sam2.1_hiera_tiny``."""
    key = _ALIASES.get(name, name)
    if key not in VARIANTS:
        known = ", ".join(sorted(VARIANTS))
        raise ValueError(f"unknown model variant {name!r}; expected one of: {known}")
    return key


__all__ = [
    "BASE_PLUS",
    "DAM4SAM_TRACKER",
    "LARGE",
    "SAMURAI_DEFAULTS",
    "SAMURAI_MIN_OBJ_SCORE_LOGITS",
    "SMALL",
    "TINY",
    "TRACKERS",
    "VARIANTS",
    "Dam4samConfig",
    "HieraConfig",
    "ModelConfig",
    "RuntimeOptions",
    "SamuraiConfig",
    "TrackerConfig",
    "TrackerName",
    "TrackingPolicy",
    "policy_name",
    "resolve_tracker",
    "resolve_variant",
    "tracker_config_for",
    "uses_dam4sam",
    "uses_samurai",
]
