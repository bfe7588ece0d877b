"""Memory encoder: golden memory features of frames 0 and 1, key layout, shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reference import golden, manifest_keys, sub_state_dict, synth_state_dict
from samurai.modeling.memory_encoder import (
    CXBlock,
    Fuser,
    MaskDownSampler,
    MemoryEncoder,
    MemoryEncoderOutput,
)
from samurai.modeling.position_encoding import PositionEmbeddingSine

MANIFESTS = [f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l")]
SIGMOID_SCALE, SIGMOID_BIAS = 20.0, -10.0


def _memory_encoder() -> MemoryEncoder:
    return MemoryEncoder(
        out_dim=64,
        mask_downsampler=MaskDownSampler(embed_dim=256, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(layer=CXBlock(dim=256, kernel_size=7, padding=3), num_layers=2),
        position_encoding=PositionEmbeddingSine(64),
        in_dim=256,
    ).eval()


@pytest.fixture(scope="module")
def memory_encoder() -> MemoryEncoder:
    module = _memory_encoder()
    module.load_state_dict(
        sub_state_dict(synth_state_dict("sam2.1_hiera_t"), "memory_encoder"), strict=True
    )
    return module


@pytest.mark.golden
@torch.inference_mode()
def test_golden_frame0_mask_from_points(memory_encoder: MemoryEncoder) -> None:
    g = golden("modules_t")
    binary = torch.from_numpy(g["f0_memenc_in_mask_positive_1024"]).float()
    out = memory_encoder(
        torch.from_numpy(g["f0_backbone_fpn2"]), binary * SIGMOID_SCALE + SIGMOID_BIAS
    )
    assert out.vision_features.shape == out.vision_pos_enc.shape == (1, 64, 64, 64)
    np.testing.assert_allclose(
        out.vision_features.numpy(), g["f0_maskmem_features"], atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(
        out.vision_pos_enc.numpy(), g["f0_maskmem_pos_enc"], atol=1e-4, rtol=1e-4
    )


@pytest.mark.golden
@torch.inference_mode()
def test_golden_frame1_object_absent(memory_encoder: MemoryEncoder) -> None:
    g = golden("modules_t")
    assert not (g["f1_memenc_in_mask_positive_1024"]).any()
    # Logits -1024 everywhere: sigmoid 0, scaled to -10.
    masks = torch.sigmoid(torch.full((1, 1, 1024, 1024), -1024.0)) * SIGMOID_SCALE + SIGMOID_BIAS
    out = memory_encoder(torch.from_numpy(g["f1_backbone_fpn2"]), masks)
    score = torch.from_numpy(g["f1_dec_object_score_logits"])  # -1.356: object absent
    is_obj_appearing = (score > 0).float()
    no_obj = synth_state_dict("sam2.1_hiera_t")["no_obj_embed_spatial"]
    features = (
        out.vision_features + (1 - is_obj_appearing[..., None, None]) * no_obj[..., None, None]
    )
    np.testing.assert_allclose(features.numpy(), g["f1_maskmem_features"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_state_dict_keys_and_shapes(manifest: str) -> None:
    expected = {
        k.removeprefix("memory_encoder."): s
        for k, s in manifest_keys(manifest).items()
        if k.startswith("memory_encoder.")
    }
    module = _memory_encoder()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == expected
    module.load_state_dict({k: torch.zeros(s) for k, s in expected.items()}, strict=True)


@torch.inference_mode()
def test_shapes_at_512_and_sigmoid_option(memory_encoder: MemoryEncoder) -> None:
    gen = torch.Generator().manual_seed(0)
    pix = torch.randn(2, 256, 32, 32, generator=gen)
    logits = torch.randn(2, 1, 512, 512, generator=gen) * 5
    out = memory_encoder(pix, logits, skip_mask_sigmoid=False)
    assert isinstance(out, MemoryEncoderOutput)
    assert out.vision_features.shape == out.vision_pos_enc.shape == (2, 64, 32, 32)
    same = memory_encoder(pix, torch.sigmoid(logits), skip_mask_sigmoid=True)
    torch.testing.assert_close(out.vision_features, same.vision_features, rtol=0, atol=0)
    # The position encoding is a fresh tensor each call, not a view of the cached grid.
    out.vision_pos_enc.add_(1.0)
    torch.testing.assert_close(same.vision_pos_enc + 1.0, out.vision_pos_enc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.vision_features = pix  # type: ignore[misc]


def test_mask_downsampler_layout() -> None:
    down = MaskDownSampler()
    convs = [m for m in down.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 16, 64, 256, 256]
    assert [c.stride for c in convs] == [(2, 2)] * 4 + [(1, 1)]
    with pytest.raises(ValueError, match="power"):
        MaskDownSampler(stride=3, total_stride=16)
