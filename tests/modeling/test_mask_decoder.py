"""MaskDecoder + TwoWayTransformer: golden decoder captures, output selection, batching."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from reference import golden, require_reference, sub_state_dict, synth_state_dict
from samurai.modeling.mask_decoder import DecoderOutput, MaskDecoder, stability_scores
from samurai.modeling.prompt_encoder import PromptEncoder
from samurai.modeling.transformer import TwoWayTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _decoder(**kwargs: object) -> MaskDecoder:
    transformer = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048)
    return MaskDecoder(transformer_dim=256, transformer=transformer, **kwargs).eval()  # type: ignore[arg-type]


def _prompt_encoder(size: int = 1024) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=256, image_embedding_size=(size // 16,) * 2, input_image_size=(size, size)
    ).eval()


@pytest.fixture(scope="module")
def models() -> tuple[PromptEncoder, MaskDecoder]:
    sd = synth_state_dict("sam2.1_hiera_t")
    encoder, decoder = _prompt_encoder(), _decoder()
    encoder.load_state_dict(sub_state_dict(sd, "sam_prompt_encoder"), strict=True)
    decoder.load_state_dict(sub_state_dict(sd, "sam_mask_decoder"), strict=True)
    return encoder, decoder


def _image_embedding(frame: str) -> torch.Tensor:
    """Decoder input of the golden run: frame 0 + ``no_mem_embed``, frame 1 memory-conditioned."""
    g = golden("modules_t")
    if frame == "f0":
        # directly_add_no_mem_embed: (1, 1, C) added to the (HW, B, C) features = per channel.
        no_mem_embed = synth_state_dict("sam2.1_hiera_t")["no_mem_embed"]
        return torch.from_numpy(g["f0_backbone_fpn2"]) + no_mem_embed.reshape(1, -1, 1, 1)
    return torch.from_numpy(g["f1_memattn_out"]).permute(1, 2, 0).reshape(1, 256, 64, 64)


@torch.no_grad()
def _decode(
    models: tuple[PromptEncoder, MaskDecoder], frame: str, high_res: list[torch.Tensor]
) -> DecoderOutput:
    g = golden("modules_t")
    encoder, decoder = models
    coords = torch.from_numpy(g[f"{frame}_prompt_point_coords"])
    labels = torch.from_numpy(g[f"{frame}_prompt_point_labels"])
    sparse, dense = encoder(points=(coords, labels))
    return decoder(_image_embedding(frame), encoder.get_dense_pe(), sparse, dense, high_res)


def _golden_high_res_f0() -> list[torch.Tensor]:
    g = golden("modules_t")  # float16 captures, already after conv_s0 / conv_s1
    return [torch.from_numpy(g[f"f0_backbone_fpn{i}"].astype(np.float32)) for i in (0, 1)]


def _assert_close(actual: torch.Tensor, name: str, atol: float, rtol: float = 1e-4) -> None:
    np.testing.assert_allclose(actual.numpy(), golden("modules_t")[name], atol=atol, rtol=rtol)


@pytest.mark.golden
@pytest.mark.parametrize("frame", ["f0", "f1"])
def test_golden_scores_and_tokens(models: tuple[PromptEncoder, MaskDecoder], frame: str) -> None:
    # IoUs, tokens and object score do not depend on the high-res features.
    high_res = [torch.zeros(1, 32, 256, 256), torch.zeros(1, 64, 128, 128)]
    out = _decode(models, frame, high_res)
    _assert_close(out.iou_pred, f"{frame}_dec_ious_all4", atol=2e-4)
    _assert_close(out.mask_tokens_out, f"{frame}_dec_sam_tokens_all4", atol=1e-4)
    _assert_close(out.object_score_logits, f"{frame}_dec_object_score_logits", atol=1e-3)


@pytest.mark.golden
def test_golden_frame0_masks_from_float16_features(
    models: tuple[PromptEncoder, MaskDecoder],
) -> None:
    out = _decode(models, "f0", _golden_high_res_f0())
    # The stored high-res inputs are float16: measured max error 6.2e-3 on logits up to ~14.
    _assert_close(out.masks, "f0_dec_masks_all4", atol=1.5e-2, rtol=0)
    selected = models[1].select(out, multimask_output=False)
    assert selected.token_indices.tolist() == [[0]]  # token 0 stable (score 0.992 >= 0.98)
    _assert_close(selected.masks, "f0_low_res_masks", atol=1.5e-2, rtol=0)


@pytest.mark.golden
def test_golden_frame1_selection(models: tuple[PromptEncoder, MaskDecoder]) -> None:
    high_res = [torch.zeros(1, 32, 256, 256), torch.zeros(1, 64, 128, 128)]
    out = _decode(models, "f1", high_res)
    selected = models[1].select(out, multimask_output=True)
    assert selected.token_indices.tolist() == [[1, 2, 3]]
    _assert_close(selected.iou_pred, "f1_ious", atol=2e-4)
    torch.testing.assert_close(selected.sam_tokens, out.mask_tokens_out[:, 1:])


@pytest.fixture(scope="module")
def exact_high_res(models: tuple[PromptEncoder, MaskDecoder]) -> dict[str, list[torch.Tensor]]:
    """float32 conv_s0 / conv_s1 features of frames 0 and 1 from the image encoder."""
    image_encoder_module = pytest.importorskip("samurai.modeling.image_encoder")
    from PIL import Image

    from samurai.config import VARIANTS

    encoder = image_encoder_module.build_image_encoder(VARIANTS["sam2.1_hiera_t"]).eval()
    sd = synth_state_dict("sam2.1_hiera_t")
    encoder.load_state_dict(sub_state_dict(sd, "image_encoder"), strict=True)
    frames = require_reference() / "frames" / "bedroom"
    images = [
        Image.open(frames / f"{i:05d}.jpg").convert("RGB").resize((1024, 1024)) for i in (0, 1)
    ]
    x = torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    result = {}
    with torch.no_grad():
        for i, frame in enumerate(("f0", "f1")):
            fpn = encoder(x[i : i + 1]).backbone_fpn
            result[frame] = list(models[1].project_high_res_features(fpn[0], fpn[1]))
    return result


@pytest.mark.golden
@pytest.mark.parametrize("frame", ["f0", "f1"])
def test_golden_masks_with_exact_features(
    models: tuple[PromptEncoder, MaskDecoder],
    exact_high_res: dict[str, list[torch.Tensor]],
    frame: str,
) -> None:
    out = _decode(models, frame, exact_high_res[frame])
    _assert_close(out.masks, f"{frame}_dec_masks_all4", atol=1e-4)
    if frame == "f0":
        selected = models[1].select(out, multimask_output=False)
        _assert_close(selected.masks, "f0_low_res_masks", atol=1e-4)


def _official_dynamic_selection(
    out: DecoderOutput, delta: float, thresh: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``_dynamic_multimask_via_stability`` (masks, ious), written out."""
    best = torch.argmax(out.iou_pred[:, 1:], dim=-1)
    batch = torch.arange(out.masks.shape[0])
    best_masks = out.masks[:, 1:][batch, best].unsqueeze(1)
    best_ious = out.iou_pred[:, 1:][batch, best].unsqueeze(1)
    flat = out.masks[:, 0:1].flatten(-2)
    area_i = (flat > delta).sum(-1).float()
    area_u = (flat > -delta).sum(-1).float()
    stable = torch.where(area_u > 0, area_i / area_u, 1.0) >= thresh
    masks = torch.where(stable[..., None, None], out.masks[:, 0:1], best_masks)
    return masks, torch.where(stable, out.iou_pred[:, 0:1], best_ious)


def _synthetic_output(batch: int = 3) -> DecoderOutput:
    gen = torch.Generator().manual_seed(0)
    masks = torch.randn(batch, 4, 16, 16, generator=gen) * 5
    masks[0, 0] = 3.0  # stable
    masks[1, 0] = torch.linspace(-0.2, 0.2, 256).view(16, 16)  # unstable: falls back
    masks[2, 0] = -1.0  # empty at -delta: stability 1.0 -> stable
    return DecoderOutput(
        masks=masks,
        iou_pred=torch.rand(batch, 4, generator=gen),
        mask_tokens_out=torch.randn(batch, 4, 8, generator=gen),
        object_score_logits=torch.randn(batch, 1, generator=gen),
    )


def test_dynamic_multimask_fallback_matches_official() -> None:
    decoder = _decoder()
    out = _synthetic_output()
    selected = decoder.select(out, multimask_output=False)
    masks, ious = _official_dynamic_selection(out, 0.05, 0.98)
    torch.testing.assert_close(selected.masks, masks, rtol=0, atol=0)
    torch.testing.assert_close(selected.iou_pred, ious, rtol=0, atol=0)
    best = 1 + int(torch.argmax(out.iou_pred[1, 1:]))
    assert selected.token_indices.tolist() == [[0], [best], [0]]
    # The object pointer always comes from token 0 in single-mask mode, even after a fallback.
    torch.testing.assert_close(selected.sam_tokens, out.mask_tokens_out[:, :1])


def test_selection_flags() -> None:
    out = _synthetic_output()
    plain = _decoder(dynamic_multimask_via_stability=False).select(out, multimask_output=False)
    assert plain.token_indices.tolist() == [[0]] * 3
    torch.testing.assert_close(plain.masks, out.masks[:, :1])
    no_token = _decoder(use_multimask_token_for_obj_ptr=False)
    multi = no_token.select(out, multimask_output=True)
    assert multi.masks.shape == (3, 3, 16, 16) and multi.iou_pred.shape == (3, 3)
    torch.testing.assert_close(multi.sam_tokens, out.mask_tokens_out[:, :1].expand(-1, 3, -1))
    training = _decoder().train().select(out, multimask_output=False)  # official: eval only
    assert training.token_indices.tolist() == [[0]] * 3


def test_stability_scores_empty_mask_is_one() -> None:
    logits = torch.stack([torch.full((4, 4), -1.0), torch.full((4, 4), 0.01)])
    torch.testing.assert_close(stability_scores(logits, 0.05), torch.tensor([1.0, 0.0]))


def _random_inputs(batch: int, image_batch: int, size: int = 512) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    h = size // 16
    return {
        "image": torch.randn(image_batch, 256, h, h, generator=gen),
        "s0": torch.randn(image_batch, 32, 4 * h, 4 * h, generator=gen),
        "s1": torch.randn(image_batch, 64, 2 * h, 2 * h, generator=gen),
        "coords": torch.rand(batch, 2, 2, generator=gen) * size,
        "labels": torch.tensor([[1, 0]] * batch),
    }


@torch.no_grad()
def test_shapes_at_512_and_repeat_image() -> None:
    encoder, decoder = _prompt_encoder(512), _decoder()
    inp = _random_inputs(batch=4, image_batch=2)
    sparse, dense = encoder(points=(inp["coords"], inp["labels"]))
    out = decoder(inp["image"], encoder.get_dense_pe(), sparse, dense, [inp["s0"], inp["s1"]])
    assert out.masks.shape == (4, 4, 128, 128)
    assert out.iou_pred.shape == (4, 4) and out.mask_tokens_out.shape == (4, 4, 256)
    assert out.object_score_logits.shape == (4, 1)
    # repeat_interleave: prompts 0, 1 belong to image 0 and prompts 2, 3 to image 1.
    for p in range(4):
        i = p // 2
        single = decoder(
            inp["image"][i : i + 1],
            encoder.get_dense_pe(),
            sparse[p : p + 1],
            dense[p : p + 1],
            [inp["s0"][i : i + 1], inp["s1"][i : i + 1]],
        )
        torch.testing.assert_close(single.masks[0], out.masks[p], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(single.iou_pred[0], out.iou_pred[p], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        decoder(inp["image"], encoder.get_dense_pe(), sparse[:3], dense[:3], [inp["s0"], inp["s1"]])


@torch.no_grad()
def test_without_high_res_features_or_object_head() -> None:
    decoder = _decoder(use_high_res_features=False, pred_obj_scores=False)
    keys = decoder.state_dict().keys()
    assert not any(k.startswith(("conv_s", "obj_score_token", "pred_obj_score_head")) for k in keys)
    encoder, inp = _prompt_encoder(512), _random_inputs(batch=1, image_batch=1)
    sparse, dense = encoder(points=(inp["coords"], inp["labels"]))
    out = decoder(inp["image"], encoder.get_dense_pe(), sparse, dense)
    assert out.masks.shape == (1, 4, 128, 128)
    torch.testing.assert_close(out.object_score_logits, torch.full((1, 1), 10.0))
    linear_head = _decoder(pred_obj_scores_mlp=False)
    assert "pred_obj_score_head.weight" in linear_head.state_dict()
    with pytest.raises(ValueError, match="high_res_features"):
        _decoder()(inp["image"], encoder.get_dense_pe(), sparse, dense)


def test_state_dict_keys_match_checkpoint() -> None:
    expected = sub_state_dict(synth_state_dict("sam2.1_hiera_t"), "sam_mask_decoder")
    got = _decoder().state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {
        k: tuple(v.shape) for k, v in expected.items()
    }


def test_decoder_output_is_frozen() -> None:
    out = _synthetic_output()
    with pytest.raises(AttributeError):
        out.masks = out.masks  # type: ignore[misc]
    assert replace(out, iou_pred=out.iou_pred * 0).iou_pred.sum() == 0
