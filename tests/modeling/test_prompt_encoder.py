"""PromptEncoder: golden outputs of the official encoder and its label / padding rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import golden, sub_state_dict, synth_state_dict
from samurai.modeling.prompt_encoder import PromptEncoder


def _encoder(size: int = 1024) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=256,
        image_embedding_size=(size // 16, size // 16),
        input_image_size=(size, size),
        mask_in_chans=16,
    ).eval()


@pytest.fixture(scope="module")
def encoder() -> PromptEncoder:
    enc = _encoder()
    enc.load_state_dict(sub_state_dict(synth_state_dict("sam2.1_hiera_t"), "sam_prompt_encoder"))
    return enc


def _official_points(
    enc: PromptEncoder, coords: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The official ``_embed_points(pad=False)``: masked in-place updates per label."""
    emb = enc.pe_layer.forward_with_coords(coords + 0.5, enc.input_image_size)
    emb[labels == -1] = 0.0
    emb[labels == -1] += enc.not_a_point_embed.weight
    for label in range(4):
        emb[labels == label] += enc.point_embeddings[label].weight
    return emb


@pytest.mark.golden
@pytest.mark.parametrize("frame", ["f0", "f1"])
def test_golden_sparse_and_dense(encoder: PromptEncoder, frame: str) -> None:
    g = golden("modules_t")
    coords = torch.from_numpy(g[f"{frame}_prompt_point_coords"])
    labels = torch.from_numpy(g[f"{frame}_prompt_point_labels"])
    with torch.no_grad():
        sparse, dense = encoder(points=(coords, labels))
    np.testing.assert_allclose(
        sparse.detach().numpy(), g[f"{frame}_prompt_sparse"], atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(
        dense.detach().numpy(), g[f"{frame}_prompt_dense"], atol=1e-4, rtol=1e-4
    )


@torch.no_grad()
def test_labels_match_official_in_place_updates(encoder: PromptEncoder) -> None:
    gen = torch.Generator().manual_seed(0)
    coords = torch.rand(3, 7, 2, generator=gen) * 1024
    labels = torch.randint(-2, 5, (3, 7), generator=gen, dtype=torch.int32)  # incl. unknown -2, 4
    sparse, _ = encoder(points=(coords, labels), boxes=torch.zeros(3, 4))
    torch.testing.assert_close(
        sparse[:, :7], _official_points(encoder, coords, labels), rtol=0, atol=0
    )


@torch.no_grad()
def test_padding_point_only_without_boxes(encoder: PromptEncoder) -> None:
    coords, labels = torch.tensor([[[10.0, 20.0]]]), torch.tensor([[1]])
    sparse, _ = encoder(points=(coords, labels))
    assert sparse.shape == (1, 2, 256)
    torch.testing.assert_close(sparse[0, 1], encoder.not_a_point_embed.weight[0], rtol=0, atol=0)
    box = torch.tensor([[100.0, 50.0, 300.0, 400.0]])
    sparse, _ = encoder(points=(coords, labels), boxes=box)
    assert sparse.shape == (1, 3, 256)


@torch.no_grad()
def test_box_equals_corner_points(encoder: PromptEncoder) -> None:
    boxes = torch.tensor([[320.0, 0.0, 554.667, 758.519], [10.0, 20.0, 30.0, 40.0]])
    from_box, _ = encoder(boxes=boxes)
    corners, labels = boxes.reshape(2, 2, 2), torch.tensor([[2, 3], [2, 3]])
    from_points, _ = encoder(points=(corners, labels))
    assert from_box.shape == (2, 2, 256)
    # Not bit-equal: the Fourier-feature matmul runs on a different number of rows.
    torch.testing.assert_close(from_box, from_points[:, :2], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_masks_and_empty_prompts() -> None:
    enc = _encoder(512)
    assert enc.mask_input_size == (128, 128)
    sparse, dense = enc(masks=torch.randn(2, 1, 128, 128))
    assert sparse.shape == (2, 0, 256) and dense.shape == (2, 256, 32, 32)
    sparse, dense = enc()
    assert sparse.shape == (1, 0, 256) and dense.shape == (1, 256, 32, 32)
    torch.testing.assert_close(dense[0, :, 5, 7], enc.no_mask_embed.weight[0])
    assert enc.get_dense_pe().shape == (1, 256, 32, 32)


def test_state_dict_keys_match_checkpoint() -> None:
    expected = sub_state_dict(synth_state_dict("sam2.1_hiera_t"), "sam_prompt_encoder")
    got = _encoder().state_dict()
    assert {k: tuple(v.shape) for k, v in got.items()} == {
        k: tuple(v.shape) for k, v in expected.items()
    }
