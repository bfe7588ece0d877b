"""Official config names, builder arguments, hydra overrides and Hugging Face ids map onto the
right variant, mode and options; the variant is inferred from a checkpoint's shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference import synth_state_dict
from samurai import VARIANTS, build_sam2, build_sam2_video_predictor
from samurai.build import CheckpointMismatchError, build_model_from_config, infer_variant
from samurai.checkpoints import CheckpointError
from samurai.compat.configs import (
    HF_MODEL_IDS,
    official_variants,
    parse_config_name,
    parse_hydra_overrides,
)
from samurai.tracking.image_predictor import SAM2ImagePredictor
from samurai.tracking.sam2_api import SAM2VideoPredictor

# Every model config the official repositories ship (facebookresearch/sam2 sam2/configs/,
# yangchris11/samurai sam2/sam2/configs/): path -> (variant, SAMURAI on).
SIZES = ("t", "s", "b+", "l")
SHIPPED = {
    **{f"configs/sam2/sam2_hiera_{s}.yaml": (f"sam2_hiera_{s}", False) for s in SIZES},
    **{f"configs/sam2.1/sam2.1_hiera_{s}.yaml": (f"sam2.1_hiera_{s}", False) for s in SIZES},
    **{f"configs/samurai/sam2.1_hiera_{s}.yaml": (f"sam2.1_hiera_{s}", True) for s in SIZES},
}
SIZE = 256


def test_every_shipped_config_maps_to_its_variant_and_mode() -> None:
    assert set(official_variants()) == set(SHIPPED)
    for path, (variant, samurai) in SHIPPED.items():
        stem = path.removesuffix(".yaml")
        folder_and_stem = "/".join(stem.split("/")[1:])
        for name in (
            path,
            stem,
            folder_and_stem,  # sam2.1/sam2.1_hiera_t
            folder_and_stem + ".yaml",
            f"sam2/{path}",  # relative to the repository root
            f"/home/user/samurai/sam2/sam2/{path}",
            "./" + path,
            Path("/opt") / path,
        ):
            got = parse_config_name(name)
            assert (got.variant, got.samurai_mode) == (variant, samurai), name
            assert got.min_obj_score_logits == -1.0, name  # the fork's value, SAMURAI or not


def test_old_root_level_names_and_native_names() -> None:
    # early SAM 2 releases: build_sam2("sam2_hiera_l.yaml", ...)
    got = parse_config_name("sam2_hiera_l.yaml")
    assert (got.variant, got.samurai_mode) == ("sam2_hiera_l", False)
    # samurai's own variant names keep the builder's default (SAMURAI on)
    for name in ("sam2.1_hiera_t", "sam2.1_hiera_tiny"):
        got = parse_config_name(name)
        assert (got.variant, got.samurai_mode, got.min_obj_score_logits) == (
            "sam2.1_hiera_t",
            None,
            None,
        )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("configs/sam2.1/sam2.1_hiera_x.yaml", "unknown model variant"),
        ("configs/samurai/sam2_hiera_t.yaml", "sam2.1 configs only"),
        ("configs/mine/sam2.1_hiera_t.yaml", "unknown model config"),
        ("configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml", "training config"),
        ("", "unknown model"),
    ],
)
def test_unknown_config_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config_name(name)


def test_hydra_overrides() -> None:
    got = parse_hydra_overrides(
        [
            "++model.fill_hole_area=0",
            "+model.non_overlap_masks=true",
            "model.kf_score_weight=0.1",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=false",
            "++model.image_size=512",
            "++model.compile_image_encoder=True",
            "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        ]
    )
    assert got == {
        "fill_hole_area": 0,
        "non_overlap_masks": True,
        "kf_score_weight": 0.1,
        "dynamic_multimask_via_stability": False,
        "image_size": 512,
    }
    with pytest.raises(ValueError, match="no option 'use_obj_ptrs_in_encoder'"):
        parse_hydra_overrides(["++model.use_obj_ptrs_in_encoder=false"])
    with pytest.raises(ValueError, match="not understood"):
        parse_hydra_overrides(["trainer.max_epochs=3"])
    with pytest.raises(ValueError, match="cannot build"):
        parse_hydra_overrides(["++model._target_=sam2.modeling.sam2_base.SAM2Base"])


@pytest.fixture(scope="module")
def tiny() -> dict[str, torch.Tensor]:
    return synth_state_dict("sam2.1_hiera_t")


def test_builder_with_official_arguments(tiny) -> None:
    on = build_sam2_video_predictor(
        config_file="configs/samurai/sam2.1_hiera_t.yaml",
        ckpt_path=tiny,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=[f"++model.image_size={SIZE}"],
        apply_postprocessing=True,
        vos_optimized=True,
    )
    assert isinstance(on, SAM2VideoPredictor)
    assert on.samurai_mode is True and on.image_size == SIZE
    assert (on.kf_score_weight, on.min_obj_score_logits, on.fill_hole_area) == (0.25, -1.0, 8)
    assert on.binarize_mask_from_pts_for_mem_enc is True
    assert on.sam_mask_decoder.dynamic_multimask_via_stability is True

    off = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        tiny,
        apply_postprocessing=False,
        hydra_overrides_extra=[f"++model.image_size={SIZE}", "++model.non_overlap_masks=true"],
    )
    assert off.samurai_mode is False and off.samurai is None
    assert off.min_obj_score_logits == -1.0, "the fork's plain configs keep -1"
    assert (off.fill_hole_area, off.binarize_mask_from_pts_for_mem_enc) == (0, False)
    assert off.sam_mask_decoder.dynamic_multimask_via_stability is False
    assert off.non_overlap_masks is True

    upstream = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", tiny, image_size=SIZE, min_obj_score_logits=0
    )
    assert upstream.min_obj_score_logits == 0
    forced = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        tiny,
        hydra_overrides_extra=["++model.samurai_mode=true", f"++model.image_size={SIZE}"],
    )
    assert forced.samurai_mode is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "train"}, "inference only"),
        ({"hydra_overrides_extra": ["++model.num_maskmem=3"]}, "no option 'num_maskmem'"),
        ({"hydra_overrides_extra": ["++model.fill_hole_area=1"], "fill_hole_area": 2}, "twice"),
        ({"kf_score_weight": 0.3, "samurai_mode": False}, "need samurai_mode=True"),
        ({"clear_non_cond_mem_around_input": True}, "not supported"),
        ({"device": "nonsense"}, "not a torch device"),
        ({"hydra_overrides_extra": ["++model.fill_hole_area=abc"]}, "must be an int"),
        ({"kf_score_weight": "0.3"}, "kf_score_weight='0.3' must be a number"),
        ({"non_overlap_masks": 1}, "must be a bool"),
    ],
)
def test_builder_errors(tiny, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_sam2_video_predictor("configs/samurai/sam2.1_hiera_t.yaml", tiny, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_device_without_cuda_is_one_line_error(tiny) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_sam2_video_predictor("configs/samurai/sam2.1_hiera_t.yaml", tiny, device="cuda:0")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_inferred_from_checkpoint_shapes(variant: str) -> None:
    with torch.device("meta"):
        sd = build_model_from_config(VARIANTS[variant]).state_dict()
    assert infer_variant(sd) == variant


def test_variant_inference_errors() -> None:
    with pytest.raises(CheckpointMismatchError, match="no Hiera patch embedding"):
        infer_variant({"x": torch.zeros(1)})
    with torch.device("meta"):
        sd = build_model_from_config(VARIANTS["sam2_hiera_t"]).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith("image_encoder.trunk.blocks.11.")}
    with pytest.raises(CheckpointMismatchError, match="11 blocks"):
        infer_variant(sd)


def test_builders_without_config_infer_it(synth_checkpoint) -> None:
    path: Path = synth_checkpoint("sam2_hiera_t")
    predictor = build_sam2_video_predictor(ckpt_path=path, image_size=SIZE)
    assert predictor.model.config.name == "sam2_hiera_t"
    model = build_sam2(ckpt_path=path, image_size=SIZE)
    assert model.config.name == "sam2_hiera_t" and not model.config.is_sam2_1
    with pytest.raises(ValueError, match=r"does not match sam2\.1_hiera_t"):
        build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", path)


def test_hf_ids_map_to_official_configs(tmp_path, monkeypatch) -> None:
    assert len(HF_MODEL_IDS) == 8
    assert parse_config_name("facebook/sam2.1-hiera-base-plus").variant == "sam2.1_hiera_b+"
    assert parse_config_name("facebook/sam2-hiera-large").variant == "sam2_hiera_l"
    # nothing cached, downloads point at a closed port: the official file name, one line
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", "http://127.0.0.1:9")
    for build in (SAM2VideoPredictor.from_pretrained, SAM2ImagePredictor.from_pretrained):
        with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_tiny\.pt") as err:
            build("facebook/sam2.1-hiera-tiny")
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown Hugging Face model id"):
        SAM2VideoPredictor.from_pretrained("facebook/sam3")


def test_streaming_tracker_takes_official_config_names(tiny) -> None:
    from samurai import Tracker

    on = Tracker("configs/samurai/sam2.1_hiera_t.yaml", tiny, image_size=SIZE)
    assert on.predictor.samurai_mode is True
    off = Tracker("sam2.1/sam2.1_hiera_t", tiny, image_size=SIZE)
    assert off.predictor.samurai_mode is False and off.predictor.min_obj_score_logits == -1.0
    assert Tracker("sam2.1_hiera_t", tiny, image_size=SIZE).predictor.samurai_mode is True
    forced = Tracker(
        "configs/samurai/sam2.1_hiera_t.yaml", tiny, samurai_mode=False, image_size=SIZE
    )
    assert forced.predictor.samurai_mode is False
