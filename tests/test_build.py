"""Variants, strict loading of official-layout checkpoints, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reference import synth_state_dict
from samurai import VARIANTS, build_sam2
from samurai.build import (
    CheckpointMismatchError,
    build_model,
    build_model_from_config,
    model_config,
)
from samurai.config import resolve_variant

KEYS_DIR = Path(__file__).parent / "data" / "keys"


def committed_keys(variant: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (KEYS_DIR / f"{variant}.txt").read_text().splitlines():
        key, shape = line.split(" ")
        out[key] = tuple(int(s) for s in shape.split(",")) if shape else ()
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_keys_and_shapes_match_official(variant: str) -> None:
    with torch.device("meta"):
        model = build_model_from_config(VARIANTS[variant])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == committed_keys(variant)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_synthetic_checkpoint_loads_strictly(variant: str, synth_checkpoint) -> None:
    model = build_model(variant, synth_checkpoint(variant))
    sd = synth_state_dict(variant)
    got = model.state_dict()
    for key in (
        "no_mem_embed",
        "sam_mask_decoder.iou_token.weight",
        "image_encoder.trunk.pos_embed",
    ):
        torch.testing.assert_close(got[key], sd[key], rtol=0, atol=0)


def test_aliases_and_unknown_variant() -> None:
    assert resolve_variant("sam2.1_hiera_tiny") == "sam2.1_hiera_t"
    assert resolve_variant("sam2_hiera_base_plus") == "sam2_hiera_b+"
    assert resolve_variant("sam2.1_hiera_large") == "sam2.1_hiera_l"
    with pytest.raises(ValueError, match="unknown model variant 'sam3'"):
        resolve_variant("sam3")


def test_sam2_and_sam2_1_differences() -> None:
    v0, v1 = VARIANTS["sam2_hiera_t"], VARIANTS["sam2.1_hiera_t"]
    assert not v0.no_obj_embed_spatial and v1.no_obj_embed_spatial
    assert not v0.add_tpos_enc_to_obj_ptrs and v1.add_tpos_enc_to_obj_ptrs
    assert VARIANTS["sam2.1_hiera_l"].hiera.window_spec == (8, 4, 16, 8)
    assert VARIANTS["sam2.1_hiera_b+"].hiera.backbone_channel_list == (896, 448, 224, 112)


def test_wrong_variant_names_first_mismatch(synth_checkpoint) -> None:
    with pytest.raises(
        CheckpointMismatchError, match=r"sam2_hiera_t: unexpected key 'no_obj_embed_spatial'"
    ):
        build_model("sam2_hiera_t", synth_checkpoint("sam2.1_hiera_t"))
    with pytest.raises(
        CheckpointMismatchError,
        match=r"sam2.1_hiera_s: 'image_encoder.trunk.blocks.10.attn.qkv.weight' has shape",
    ):
        build_model("sam2.1_hiera_s", synth_checkpoint("sam2.1_hiera_t"))


def test_shape_mismatch_and_truncated_and_corrupt(tmp_path: Path) -> None:
    sd = dict(synth_state_dict("sam2.1_hiera_t"))
    sd["no_obj_ptr"] = torch.zeros(1, 128)
    bad = tmp_path / "bad.pt"
    torch.save({"model": sd}, bad)
    with pytest.raises(
        CheckpointMismatchError, match=r"'no_obj_ptr' has shape \(1, 128\), expected \(1, 256\)"
    ):
        build_model("sam2.1_hiera_t", bad)
    good = tmp_path / "good.pt"
    torch.save({"model": synth_state_dict("sam2.1_hiera_t")}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint") as info:
        build_model("sam2.1_hiera_t", truncated)
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        build_model("sam2.1_hiera_t", text)
    with pytest.raises(CheckpointMismatchError, match="not found"):
        build_model("sam2.1_hiera_t", tmp_path / "missing.pt")


def test_safetensors_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = synth_state_dict("sam2.1_hiera_t")
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    model = build_model("sam2.1_hiera_t", path)
    torch.testing.assert_close(model.state_dict()["no_obj_ptr"], sd["no_obj_ptr"])


def test_build_sam2_with_image_size_override(synth_checkpoint) -> None:
    model = build_sam2("sam2.1_hiera_tiny", synth_checkpoint("sam2.1_hiera_t"), image_size=512)
    assert model.config.image_size == 512
    with torch.inference_mode():
        feats = model.encode_image(torch.zeros(1, 3, 512, 512))
    assert feats.vision_features.shape == (1, 256, 32, 32)
    assert [f.shape[-1] for f in feats.high_res_features] == [128, 64]
    with pytest.raises(ValueError, match="multiple of 32"):
        model_config("sam2.1_hiera_t", image_size=500)
    with pytest.raises(ValueError, match="unknown option"):
        build_sam2("sam2.1_hiera_t", synth_checkpoint("sam2.1_hiera_t"), image_sise=512)
