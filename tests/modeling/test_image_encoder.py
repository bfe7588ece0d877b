"""Hiera trunk + FPN neck: golden captures of the tiny model, key lists, other image sizes."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference import golden, manifest_keys, sub_state_dict, synth_state_dict
from samurai.config import VARIANTS
from samurai.io.transforms import preprocess_image, preprocess_video_frame
from samurai.modeling import hiera, image_encoder
from samurai.modeling.hiera import (
    Hiera,
    MultiScaleBlock,
    max_pool_channels_last,
    window_partition,
    window_unpartition,
)
from samurai.modeling.image_encoder import (
    FpnNeck,
    ImageEncoder,
    ImageEncoderOutput,
    build_image_encoder,
)
from samurai.modeling.position_encoding import PositionEmbeddingSine

MANIFESTS = sorted(VARIANTS)


def _assert_f16_close(mine: torch.Tensor, expected: np.ndarray) -> float:
    """Compare after rounding mine to float16 (atol 1e-2); returns the max abs difference."""
    got = mine.detach().to(torch.float16).float().numpy()
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=0, atol=1e-2)
    return float(np.abs(got - expected.astype(np.float32)).max())


@pytest.fixture(scope="module")
def tiny_state_dict() -> dict[str, torch.Tensor]:
    return synth_state_dict("sam2.1_hiera_t")


@pytest.fixture(scope="module")
def tiny_encoder(tiny_state_dict: dict[str, torch.Tensor]) -> ImageEncoder:
    encoder = build_image_encoder(VARIANTS["sam2.1_hiera_t"]).eval()
    encoder.load_state_dict(sub_state_dict(tiny_state_dict, "image_encoder"), strict=True)
    return encoder


@pytest.fixture(scope="module")
def frame_outputs(
    tiny_encoder: ImageEncoder, bedroom_frames: list[Path]
) -> dict[str, tuple[list[torch.Tensor], ImageEncoderOutput]]:
    """Trunk outputs and encoder output of frames 0 and 1 (video-predictor preprocessing)."""
    captured: list[list[torch.Tensor]] = []
    hook = tiny_encoder.trunk.register_forward_hook(lambda _m, _i, out: captured.append(out))
    outputs = {}
    try:
        with torch.inference_mode():
            for name, path in (("f0", bedroom_frames[0]), ("f1", bedroom_frames[1])):
                out = tiny_encoder(preprocess_video_frame(Image.open(path))[None])
                outputs[name] = (captured.pop(), out)
    finally:
        hook.remove()
    return outputs


@pytest.mark.golden
def test_trunk_last_stage_matches_golden(frame_outputs: dict) -> None:
    trunk, _ = frame_outputs["f0"]
    assert [tuple(t.shape) for t in trunk] == [
        (1, 96, 256, 256),
        (1, 192, 128, 128),
        (1, 384, 64, 64),
        (1, 768, 32, 32),
    ]
    _assert_f16_close(trunk[3], golden("modules_t")["f0_trunk_out3"])


@pytest.mark.golden
@pytest.mark.parametrize("frame", ["f0", "f1"])
def test_vision_features_match_golden(frame_outputs: dict, frame: str) -> None:
    _, out = frame_outputs[frame]
    expected = golden("modules_t")[f"{frame}_backbone_fpn2"]
    np.testing.assert_allclose(out.vision_features.numpy(), expected, atol=1e-4, rtol=1e-4)
    assert out.vision_features is out.backbone_fpn[-1]


@pytest.mark.golden
def test_vision_pos_enc_matches_golden(frame_outputs: dict) -> None:
    _, out = frame_outputs["f0"]
    expected = golden("modules_t")["vision_pos_enc2"]
    np.testing.assert_allclose(out.vision_pos_enc[2].numpy(), expected, atol=1e-4, rtol=1e-4)
    for feat, pos in zip(out.backbone_fpn, out.vision_pos_enc, strict=True):
        assert pos.shape == feat.shape


@pytest.mark.golden
@pytest.mark.parametrize(("level", "channels"), [(0, 32), (1, 64)])
def test_high_res_levels_match_golden(
    frame_outputs: dict, tiny_state_dict: dict, level: int, channels: int
) -> None:
    # The video predictor caches levels 0/1 after the mask decoder's conv_s0 / conv_s1.
    conv = torch.nn.Conv2d(256, channels, kernel_size=1)
    conv.load_state_dict(sub_state_dict(tiny_state_dict, f"sam_mask_decoder.conv_s{level}"))
    _, out = frame_outputs["f0"]
    with torch.inference_mode():
        projected = conv(out.backbone_fpn[level])
    _assert_f16_close(projected, golden("modules_t")[f"f0_backbone_fpn{level}"])


@pytest.mark.golden
def test_image_predictor_embedding_matches_golden(
    tiny_encoder: ImageEncoder, tiny_state_dict: dict, bedroom_frames: list[Path]
) -> None:
    # SAM2ImagePredictor: torchvision-style preprocessing, then features + no_mem_embed.
    image = np.array(Image.open(bedroom_frames[0]).convert("RGB"))
    with torch.inference_mode():
        out = tiny_encoder(preprocess_image(image)[None])
    embed = out.vision_features + tiny_state_dict["no_mem_embed"].reshape(1, -1, 1, 1)
    _assert_f16_close(embed, golden("image_t_bedroom0")["image_embed_f16"])


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_keys_and_shapes_match_manifest(manifest: str) -> None:
    with torch.device("meta"):
        encoder = build_image_encoder(VARIANTS[manifest])
    expected = {
        key.removeprefix("image_encoder."): shape
        for key, shape in manifest_keys(manifest).items()
        if key.startswith("image_encoder.")
    }
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == expected
    fake = {k: torch.empty(shape, device="meta") for k, shape in expected.items()}
    encoder.load_state_dict(fake, strict=True, assign=True)


@pytest.mark.parametrize("size", [512, 256])
def test_tiny_runs_at_other_sizes(tiny_encoder: ImageEncoder, size: int) -> None:
    torch.manual_seed(0)
    with torch.inference_mode():
        out = tiny_encoder(torch.randn(1, 3, size, size))
    strides = (4, 8, 16)
    expected = [(1, 256, size // s, size // s) for s in strides]
    assert [tuple(f.shape) for f in out.backbone_fpn] == expected
    assert [p.shape for p in out.vision_pos_enc] == [f.shape for f in out.backbone_fpn]
    assert all(torch.isfinite(f).all() for f in out.backbone_fpn)


@lru_cache(maxsize=2)
def _meta_encoder(manifest: str) -> ImageEncoder:
    with torch.device("meta"):
        return build_image_encoder(VARIANTS[manifest])


@pytest.mark.parametrize("manifest", ["sam2.1_hiera_b+", "sam2.1_hiera_l"])
@pytest.mark.parametrize("size", [1024, 512, 256])
def test_output_shapes_other_variants(manifest: str, size: int) -> None:
    encoder = _meta_encoder(manifest)
    sample = torch.empty(2, 3, size, size, device="meta")
    trunk = encoder.trunk(sample)
    out = encoder(sample)
    e = VARIANTS[manifest].hiera.embed_dim
    assert [tuple(t.shape) for t in trunk] == [
        (2, e * 2**i, size // 4 // 2**i, size // 4 // 2**i) for i in range(4)
    ]
    assert out.vision_features.shape == (2, 256, size // 16, size // 16)
    assert len(out.backbone_fpn) == len(out.vision_pos_enc) == 3


def test_bad_image_size_raises() -> None:
    trunk = Hiera.from_config(VARIANTS["sam2.1_hiera_t"].hiera)
    with pytest.raises(ValueError, match="multiple"):
        trunk(torch.zeros(1, 3, 200, 200))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        trunk(torch.zeros(3, 256, 256))


@pytest.mark.parametrize(("height", "width", "window"), [(64, 64, 14), (32, 30, 7), (16, 16, 8)])
def test_window_partition_round_trip(height: int, width: int, window: int) -> None:
    x = torch.randn(2, height, width, 5)
    windows, padded = window_partition(x, window)
    assert padded == (-(-height // window) * window, -(-width // window) * window)
    assert windows.shape == (2 * padded[0] * padded[1] // window**2, window, window, 5)
    torch.testing.assert_close(window_unpartition(windows, window, padded, (height, width)), x)


def test_window_partition_pads_with_the_given_value() -> None:
    x = torch.randn(1, 5, 3, 4)
    pad = torch.tensor([1.0, -2.0, 3.0, 0.5])
    windows, padded = window_partition(x, 4, pad)
    assert padded == (8, 4)
    assert windows.shape == (2, 4, 4, 4)
    torch.testing.assert_close(windows[0, :, :3], x[0, :4])
    torch.testing.assert_close(windows[1, :1, :3], x[0, 4:])
    assert (windows[0, :, 3] == pad).all() and (windows[1, 1:] == pad).all()
    torch.testing.assert_close(window_unpartition(windows, 4, padded, (5, 3)), x)


@pytest.mark.parametrize(
    ("dim_out", "q_stride", "window"),
    [(8, None, 4), (16, (2, 2), 6), (8, None, 5), (16, (2, 2), 10), (8, None, 0)],
)
def test_block_projects_unpadded_tokens_as_upstream_does_padded_ones(
    dim_out: int, q_stride: tuple[int, int] | None, window: int
) -> None:
    # upstream zero-pads the normed map to whole windows and projects every token; the block
    # projects the map's own tokens and fills padded ones with the projection of a zero token
    torch.manual_seed(6)
    block = MultiScaleBlock(
        dim=8, dim_out=dim_out, num_heads=2, q_stride=q_stride, window_size=window
    ).eval()
    x = torch.randn(2, 10, 10, 8)
    with torch.no_grad():
        got = block(x)
        normed = block.norm1(x)
        shortcut = x
        if dim_out != 8:
            shortcut = max_pool_channels_last(block.proj(normed), q_stride)
        h, w = shortcut.shape[1:3]
        if window:
            windows, padded = window_partition(normed, window)  # zeros
            out_window = window // (q_stride[0] if q_stride else 1)
            padded = (padded[0] * out_window // window, padded[1] * out_window // window)
            att = window_unpartition(block.attn(windows), out_window, padded, (h, w))
        else:
            att = block.attn(normed)
        y = att + shortcut
        want = y + block.mlp(block.norm2(y))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _small_neck() -> FpnNeck:
    """SAM 2's neck layout (top-down into levels 2 and 3 only) at 8 channels."""
    return FpnNeck(
        position_encoding=PositionEmbeddingSine(8),
        d_model=8,
        backbone_channel_list=[16, 8, 4, 2],
        fpn_top_down_levels=[2, 3],
    )


def test_neck_top_down_levels() -> None:
    torch.manual_seed(0)
    neck = _small_neck()
    xs = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([2, 4, 8, 16])]
    with torch.no_grad():
        out = neck(xs)
        lateral = [neck.convs[3 - i](x) for i, x in enumerate(xs)]
        top = lateral[2] + lateral[3].repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(out[3], lateral[3])
    torch.testing.assert_close(out[2], top)
    torch.testing.assert_close(out[1], lateral[1])  # level 1 / 0: lateral only
    torch.testing.assert_close(out[0], lateral[0])
    encoded = ImageEncoderOutput(backbone_fpn=out, position_encoding=neck.position_encoding)
    assert [p.shape for p in encoded.vision_pos_enc] == [o.shape for o in out]


@pytest.mark.parametrize("strip_pixels", [32, 100, 1 << 20])
def test_neck_projects_levels_in_strips(strip_pixels: int, monkeypatch) -> None:
    """A projected level without top-down links runs strip by strip: its values equal the
    projection of the whole lateral map, for strips that do and do not divide the map."""
    monkeypatch.setattr(image_encoder, "STRIP_PIXELS", strip_pixels)
    torch.manual_seed(1)
    neck = _small_neck()
    conv_s0, conv_s1 = torch.nn.Conv2d(8, 3, 1), torch.nn.Conv2d(8, 5, 1)
    # level 2 takes a top-down input and is projected whole; levels 0 and 1 go in strips
    conv_s2 = torch.nn.Conv2d(8, 4, 1)
    xs = [torch.randn(2, c, 40 // 2**i, 24 // 2**i) for i, c in enumerate([2, 4, 8, 16])]
    with torch.no_grad():
        plain = neck(xs)
        out = neck(xs, projections=(conv_s0, conv_s1, conv_s2))
    for level, conv in enumerate((conv_s0, conv_s1, conv_s2)):
        torch.testing.assert_close(out[level], conv(plain[level]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[3], plain[3])
    with pytest.raises(ValueError, match="projections"):
        neck(xs, projections=[None] * 5)


@pytest.mark.parametrize(("variant", "size"), [("sam2.1_hiera_t", 512), ("sam2.1_hiera_b+", 256)])
def test_trunk_runs_leading_blocks_in_strips(variant: str, size: int, monkeypatch) -> None:
    """Without autograd the leading windowed blocks run strip by strip with exactly the
    values (and stage outputs) of running each block on the whole map."""
    monkeypatch.setattr(hiera, "STRIP_TOKENS", 256)
    torch.manual_seed(2)
    trunk = Hiera.from_config(VARIANTS[variant].hiera).eval()
    with torch.no_grad():
        for p in trunk.parameters():
            p.normal_(0, 0.05)
    count, rows = trunk.strip_plan((size // 4, size // 4))
    # up to the first global block (T) or stage-3 block whose windows need padding (B+)
    assert count == {"sam2.1_hiera_t": 4, "sam2.1_hiera_b+": 6}[variant]
    assert rows < size // 4 and rows % 8 == 0
    image = torch.randn(1, 3, size, size)
    with torch.no_grad():
        got = trunk(image)
        x = trunk.patch_embed(image) + trunk._get_pos_embed((size // 4, size // 4))
        want = []
        for i, block in enumerate(trunk.blocks):
            x = block(x)
            if i in trunk.stage_ends:
                want.append(x.permute(0, 3, 1, 2))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_strip_plan_needs_windows_that_tile_the_map() -> None:
    trunk = Hiera.from_config(VARIANTS["sam2.1_hiera_t"].hiera)
    assert trunk.strip_plan((64, 64)) == (0, 0)  # one strip would be the whole map
    assert trunk.strip_plan((60, 60)) == (0, 0)  # 8-token windows need padding at once
    assert trunk.strip_plan((256, 256)) == (4, 32)


def test_channel_mismatch_raises() -> None:
    trunk = Hiera.from_config(VARIANTS["sam2.1_hiera_t"].hiera)
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(256),
        d_model=256,
        backbone_channel_list=[8, 4, 2, 1],
    )
    with pytest.raises(ValueError, match="channels"):
        ImageEncoder(trunk=trunk, neck=neck)


def test_pos_embed_cache_follows_size_and_weights() -> None:
    torch.manual_seed(0)
    trunk = Hiera.from_config(VARIANTS["sam2.1_hiera_t"].hiera)
    with torch.no_grad():
        trunk.pos_embed.normal_()
        trunk.pos_embed_window.normal_()
        first = trunk._get_pos_embed((64, 64))
        assert trunk._get_pos_embed((64, 64)) is first  # cached
        torch.testing.assert_close(first, trunk._compute_pos_embed((64, 64)), rtol=0, atol=0)
        other = trunk._get_pos_embed((32, 32))
        assert other.shape == (1, 32, 32, 96)
        torch.testing.assert_close(other, trunk._compute_pos_embed((32, 32)), rtol=0, atol=0)
        # new weights (as load_state_dict copies them in place) invalidate the cache
        trunk.load_state_dict({**trunk.state_dict(), "pos_embed": torch.ones_like(trunk.pos_embed)})
        fresh = trunk._get_pos_embed((32, 32))
        torch.testing.assert_close(fresh, trunk._compute_pos_embed((32, 32)), rtol=0, atol=0)
        assert not torch.equal(fresh, other)
    # with autograd the embedding is recomputed, so gradients reach the parameters
    trunk._get_pos_embed((32, 32)).sum().backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0


def test_first_stage_tokens_are_contiguous() -> None:
    """(B, H, W, C) tokens enter the first stage contiguous (strided ones slow its LayerNorm
    and residual adds 5x), with the values of the plain channels-first convolution."""
    torch.manual_seed(0)
    trunk = Hiera.from_config(VARIANTS["sam2.1_hiera_t"].hiera)
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        tokens = trunk.patch_embed(image)
        assert tokens.is_contiguous() and trunk._get_pos_embed((64, 64)).is_contiguous()
        plain = trunk.patch_embed.proj(image).permute(0, 2, 3, 1)
    torch.testing.assert_close(tokens, plain, rtol=0, atol=0)


def test_model_built_under_inference_mode_encodes() -> None:
    """Inference-tensor parameters have no version counter (the position-embedding cache key)."""
    from samurai.build import build_model

    image = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        model = build_model("sam2.1_hiera_t", None, image_size=256).eval()
        first = model.image_encoder(image).vision_features
        with torch.no_grad():
            model.image_encoder.trunk.pos_embed.add_(1.0)
        second = model.image_encoder(image).vision_features
    assert first.shape == (1, 256, 16, 16)
    assert not torch.equal(first, second)
