"""The tracker-policy interface: names, configs, ``split_overrides`` and the builders."""

from __future__ import annotations

import pytest

from samurai.api import split_overrides
from samurai.config import (
    DAM4SAM_TRACKER,
    TRACKERS,
    Dam4samConfig,
    SamuraiConfig,
    TrackerConfig,
    TrackingPolicy,
    policy_name,
    resolve_tracker,
)
from samurai.tracking import dam4sam_rules


def test_tracker_names_and_errors() -> None:
    assert TRACKERS == ("samurai", "sam2", "dam4sam", "samurai+dam")
    for name in TRACKERS:
        assert resolve_tracker(name) == name
    assert resolve_tracker("DAM4SAM") == "dam4sam"
    with pytest.raises(ValueError, match="expected one of: samurai, sam2, dam4sam, samurai\\+dam"):
        resolve_tracker("dam")


def test_dam4sam_defaults_are_the_official_values() -> None:
    cfg = Dam4samConfig()
    assert (cfg.drm_iou_threshold, cfg.drm_size_ratio_min, cfg.drm_size_ratio_max) == (
        0.8,
        0.8,
        1.2,
    )
    assert (cfg.drm_size_history, cfg.drm_size_median_count, cfg.drm_min_gap) == (300, 10, 5)
    assert cfg.drm_alt_box_iou_max == 0.7
    assert DAM4SAM_TRACKER.memory_temporal_stride_for_eval == 5
    assert DAM4SAM_TRACKER.max_cond_frames_in_attn == 4
    assert DAM4SAM_TRACKER.min_obj_score_logits == 0.0
    assert DAM4SAM_TRACKER.fill_hole_area == 0
    # one source of truth: the rules read the config
    assert cfg.drm_iou_threshold == dam4sam_rules.DRM_IOU_THRESHOLD
    assert cfg.drm_alt_box_iou_max == dam4sam_rules.DRM_ALT_BOX_IOU_MAX
    assert cfg.drm_min_gap == dam4sam_rules.DRM_MIN_GAP


@pytest.mark.parametrize(
    ("kwargs", "name", "has_samurai", "has_dam"),
    [
        ({}, "samurai", True, False),
        ({"samurai_mode": False}, "sam2", False, False),
        ({"tracker": "dam4sam"}, "dam4sam", False, True),
        ({"samurai_mode": False, "tracker": "samurai+dam"}, "samurai+dam", True, True),
        ({"samurai_mode": True, "tracker": "sam2"}, "sam2", False, False),
    ],
)
def test_split_overrides_policies(
    kwargs: dict[str, object], name: str, has_samurai: bool, has_dam: bool
) -> None:
    split = split_overrides("sam2.1_hiera_t", overrides={}, **kwargs)  # type: ignore[arg-type]
    policy = split.policy
    assert policy.name == name
    assert (policy.samurai is not None, policy.dam4sam is not None) == (has_samurai, has_dam)
    assert policy_name(policy.samurai, policy.dam4sam) == name
    model, tracker, samurai = split  # legacy unpacking
    assert model is split.model and tracker is policy.tracker and samurai is policy.samurai
    if has_dam:
        assert policy.tracker == DAM4SAM_TRACKER
    elif name == "samurai":
        assert policy.tracker.min_obj_score_logits == -1.0
    else:
        assert policy.tracker == TrackerConfig()


def test_split_overrides_option_groups() -> None:
    split = split_overrides(
        "sam2.1_hiera_t",
        tracker="samurai+dam",
        overrides={"kf_score_weight": 0.5, "drm_min_gap": 3, "fill_hole_area": 4},
    )
    assert split.policy.samurai == SamuraiConfig(kf_score_weight=0.5)
    assert split.policy.dam4sam == Dam4samConfig(drm_min_gap=3)
    assert split.policy.tracker.fill_hole_area == 4
    assert split.policy.tracker.memory_temporal_stride_for_eval == 5
    with pytest.raises(ValueError, match="DAM4SAM options \\['drm_min_gap'\\] need") as err:
        split_overrides("sam2.1_hiera_t", overrides={"drm_min_gap": 3})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="SAMURAI options \\['kf_score_weight'\\] need"):
        split_overrides("sam2.1_hiera_t", tracker="dam4sam", overrides={"kf_score_weight": 0.5})
    with pytest.raises(ValueError, match="unknown tracker"):
        split_overrides("sam2.1_hiera_t", tracker="nope", overrides={})
    with pytest.raises(ValueError, match="unknown option"):
        split_overrides("sam2.1_hiera_t", tracker="dam4sam", overrides={"drm_nope": 1})


def test_policy_checks_its_parts() -> None:
    with pytest.raises(ValueError, match="needs Dam4samConfig"):
        TrackingPolicy("dam4sam", DAM4SAM_TRACKER)
    with pytest.raises(ValueError, match="takes no SamuraiConfig"):
        TrackingPolicy("sam2", TrackerConfig(), SamuraiConfig())


def test_builders_take_the_tracker() -> None:
    from reference import synth_state_dict
    from samurai.compat.builders import build_sam2_video_predictor as official_builder
    from samurai.tracking.dam4sam_step import Dam4samStepper

    sd = synth_state_dict("sam2.1_hiera_t")
    # an official SAM 2.1 config name implies the fork's min_obj_score_logits=-1 for SAM 2,
    # but DAM4SAM keeps upstream's 0
    pred = official_builder(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=sd, image_size=256, tracker="dam4sam"
    )
    assert pred.tracker_name == "dam4sam" and isinstance(pred.stepper, Dam4samStepper)
    assert pred.tracker == DAM4SAM_TRACKER and pred.samurai is None
    pred = official_builder(ckpt_path=sd, image_size=256, tracker="samurai+dam", drm_min_gap=7)
    assert pred.tracker_name == "samurai+dam" and pred.dam4sam == Dam4samConfig(drm_min_gap=7)
    pred = official_builder(ckpt_path=sd, image_size=256, samurai_mode=False)
    assert pred.tracker_name == "sam2"
    with pytest.raises(ValueError, match="unknown tracker"):
        official_builder(ckpt_path=sd, image_size=256, tracker="dam5sam")
