"""Memory attention: golden frame-1 output, RoPE tables, multi-frame memory vs a plain version."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference import golden, manifest_keys, sub_state_dict, synth_state_dict
from samurai.modeling.memory_attention import (
    MemoryAttention,
    MemoryAttentionLayer,
    RoPEAttention,
)
from samurai.modeling.rope import apply_axial_rope, axial_rope_tables, compute_axial_cis

MANIFESTS = [f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l")]


def _memory_attention() -> MemoryAttention:
    layer = MemoryAttentionLayer(
        self_attention=RoPEAttention(embedding_dim=256, num_heads=1),
        cross_attention=RoPEAttention(
            embedding_dim=256, num_heads=1, kv_in_dim=64, rope_k_repeat=True
        ),
        d_model=256,
        dim_feedforward=2048,
    )
    return MemoryAttention(d_model=256, layer=layer, num_layers=4).eval()


@pytest.fixture(scope="module")
def memory_attention() -> MemoryAttention:
    module = _memory_attention()
    sd = sub_state_dict(synth_state_dict("sam2.1_hiera_t"), "memory_attention")
    module.load_state_dict(sd, strict=True)
    return module


# --- plain formulation of the official code (complex RoPE, projected values, SDPA) -------------


def _official_cis(dim: int, side: int) -> torch.Tensor:
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(side * side, dtype=torch.float32)
    t_x, t_y = t % side, torch.div(t, side, rounding_mode="floor")
    fx, fy = torch.outer(t_x, freqs), torch.outer(t_y, freqs)
    return torch.cat(
        [torch.polar(torch.ones_like(fx), fx), torch.polar(torch.ones_like(fy), fy)], -1
    )


def _official_rotate(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    x_c = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    r = x_c.shape[-2] // cis.shape[0]
    cis = cis[None, None].unsqueeze(2).expand(-1, -1, r, -1, -1).flatten(2, 3)
    return torch.view_as_real(x_c * cis).flatten(3)


def _plain_rope_attention(
    attn: RoPEAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_excl: int
) -> torch.Tensor:
    q = attn.separate_heads(attn.q_proj(q))
    k = attn.separate_heads(attn.k_proj(k))
    v = attn.separate_heads(attn.v_proj(v))
    cis = _official_cis(q.shape[-1], round(q.shape[-2] ** 0.5))
    n_rope = k.shape[-2] - n_excl
    q = _official_rotate(q, cis)
    k[:, :, :n_rope] = _official_rotate(k[:, :, :n_rope], cis)
    out = F.scaled_dot_product_attention(q, k, v)
    return attn.out_proj(attn.recombine_heads(out))


def plain_memory_attention(
    module: MemoryAttention,
    curr: torch.Tensor,
    memory: torch.Tensor,
    curr_pos: torch.Tensor,
    memory_pos: torch.Tensor,
    n_ptr: int,
) -> torch.Tensor:
    """The official forward with the official RoPE, written out with ``module``'s weights."""
    out = (curr + 0.1 * curr_pos).transpose(0, 1)
    memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
    for layer in module.layers:
        assert isinstance(layer, MemoryAttentionLayer)
        x = layer.norm1(out)
        out = out + _plain_rope_attention(layer.self_attn, x, x, x, 0)
        x = layer.norm2(out)
        out = out + _plain_rope_attention(
            layer.cross_attn_image, x, memory + memory_pos, memory, n_ptr
        )
        x = layer.norm3(out)
        out = out + layer.linear2(torch.relu(layer.linear1(x)))
    return module.norm(out).transpose(0, 1)


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.golden
@torch.inference_mode()
def test_golden_frame1(memory_attention: MemoryAttention) -> None:
    g = golden("modules_t")
    curr = torch.from_numpy(g["f1_backbone_fpn2"]).flatten(2).permute(2, 0, 1)
    curr_pos = torch.from_numpy(g["vision_pos_enc2"]).flatten(2).permute(2, 0, 1)
    out = memory_attention(
        curr,
        torch.from_numpy(g["f1_memattn_memory"]),
        curr_pos=curr_pos,
        memory_pos=torch.from_numpy(g["f1_memattn_memory_pos"]),
        num_obj_ptr_tokens=int(g["f1_memattn_num_obj_ptr_tokens"]),
    )
    assert out.shape == (4096, 1, 256)
    np.testing.assert_allclose(out.numpy(), g["f1_memattn_out"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_state_dict_keys_and_shapes(manifest: str) -> None:
    expected = {
        k.removeprefix("memory_attention."): s
        for k, s in manifest_keys(manifest).items()
        if k.startswith("memory_attention.")
    }
    module = _memory_attention()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == expected
    module.load_state_dict({k: torch.zeros(s) for k, s in expected.items()}, strict=True)


def test_rope_tables_match_official_complex() -> None:
    cis = _official_cis(256, 64)
    cos, sin = axial_rope_tables(256, 64, 64, 10000.0, device=torch.device("cpu"))
    assert cos.shape == sin.shape == (4096, 128)
    torch.testing.assert_close(torch.complex(cos, sin), cis, rtol=0, atol=1e-6)
    torch.testing.assert_close(compute_axial_cis(256, 64, 64), torch.complex(cos, sin))
    assert axial_rope_tables(256, 64, 64, 10000.0, device=torch.device("cpu"))[0] is cos  # cached


@pytest.mark.parametrize(("frames", "n_excl"), [(1, 0), (3, 0), (3, 16), (0, 4)])
def test_apply_rope_matches_official(frames: int, n_excl: int) -> None:
    gen = torch.Generator().manual_seed(frames)
    x = torch.randn(2, 1, frames * 64 + n_excl, 32, generator=gen)
    cos, sin = axial_rope_tables(32, 8, 8, 10000.0, device=torch.device("cpu"))
    out = apply_axial_rope(x, cos, sin, num_exclude=n_excl)
    expected = x.clone()
    if frames:
        expected[:, :, : frames * 64] = _official_rotate(
            x[:, :, : frames * 64], _official_cis(32, 8)
        )
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert out.data_ptr() != x.data_ptr()


def test_apply_rope_rejects_partial_grid() -> None:
    cos, sin = axial_rope_tables(32, 8, 8, 10000.0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="RoPE grid"):
        apply_axial_rope(torch.zeros(1, 1, 70, 32), cos, sin)


@torch.inference_mode()
@pytest.mark.parametrize(("frames", "n_ptr"), [(1, 0), (3, 16), (7, 64)])
def test_multi_frame_memory_at_512_matches_plain(
    memory_attention: MemoryAttention, frames: int, n_ptr: int
) -> None:
    # Image size 512: a 32x32 grid; several memory frames share the RoPE grid (repeat_freqs_k).
    gen = torch.Generator().manual_seed(frames)
    hw, batch = 32 * 32, 2
    curr = torch.randn(hw, batch, 256, generator=gen)
    curr_pos = torch.randn(hw, batch, 256, generator=gen)
    memory = torch.randn(frames * hw + n_ptr, batch, 64, generator=gen)
    memory_pos = torch.randn(frames * hw + n_ptr, batch, 64, generator=gen)
    out = memory_attention(
        curr, memory, curr_pos=curr_pos, memory_pos=memory_pos, num_obj_ptr_tokens=n_ptr
    )
    assert out.shape == (hw, batch, 256)
    expected = plain_memory_attention(memory_attention, curr, memory, curr_pos, memory_pos, n_ptr)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_multi_head_raw_value_path_matches_plain() -> None:
    torch.manual_seed(0)
    attn = RoPEAttention(embedding_dim=256, num_heads=4, kv_in_dim=32, rope_k_repeat=True).eval()
    q = torch.randn(2, 16 * 16, 256)
    mem = torch.randn(2, 2 * 256 + 3, 32)
    out = attn(q, mem, mem, num_k_exclude_rope=3)
    torch.testing.assert_close(
        out, _plain_rope_attention(attn, q, mem, mem, 3), atol=1e-5, rtol=1e-5
    )


def test_rejects_bad_shapes(memory_attention: MemoryAttention) -> None:
    with pytest.raises(ValueError, match="square"):
        memory_attention.layers[0].self_attn(
            torch.zeros(1, 10, 256), torch.zeros(1, 10, 256), torch.zeros(1, 10, 256)
        )
    with pytest.raises(ValueError, match="rope_k_repeat"):
        memory_attention.layers[0].self_attn(
            torch.zeros(1, 16, 256), torch.zeros(1, 32, 256), torch.zeros(1, 32, 256)
        )
    with pytest.raises(ValueError, match="batch size"):
        memory_attention(
            torch.zeros(16, 1, 256),
            torch.zeros(16, 2, 64),
            curr_pos=torch.zeros(16, 1, 256),
            memory_pos=torch.zeros(16, 2, 64),
        )


def test_grad_mode_uses_differentiable_path() -> None:
    torch.manual_seed(0)
    attn = RoPEAttention(embedding_dim=64, num_heads=1, kv_in_dim=16, rope_k_repeat=True)
    q = torch.randn(1, 8 * 8, 64)
    mem = torch.randn(1, 2 * 64 + 2, 16)
    with torch.inference_mode():  # fills the RoPE table cache from inference mode first
        fast = attn(q, mem, mem, num_k_exclude_rope=2)
    out = attn(q, mem, mem, num_k_exclude_rope=2)
    out.sum().backward()
    torch.testing.assert_close(fast, out.detach())
    assert attn.v_proj.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(attn(q, mem, mem, num_k_exclude_rope=2), out.detach())


def test_objects_on_a_frame_share_its_frame_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory-free first step runs once per frame; each object's result is unchanged."""
    from samurai.build import build_model
    from samurai.modeling.sam2 import ImageFeatures, MemoryInputs

    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_t", None, image_size=256).eval()

    def features() -> ImageFeatures:
        g = torch.Generator().manual_seed(1)
        return ImageFeatures(
            vision_features=torch.randn(1, 256, 16, 16, generator=g),
            vision_pos_enc=torch.randn(1, 256, 16, 16, generator=g),
            high_res_features=[],
        )

    def memory(seed: int, frames: int) -> MemoryInputs:
        g = torch.Generator().manual_seed(seed)
        return MemoryInputs(
            maskmem_features=[torch.randn(1, 64, 16, 16, generator=g) for _ in range(frames)],
            maskmem_pos_enc=[torch.randn(1, 64, 16, 16, generator=g) for _ in range(frames)],
            maskmem_tpos=list(range(frames)),
            obj_ptrs=[torch.randn(1, 256, generator=g)],
            obj_ptr_tdiff=[1],
            obj_ptr_tdiff_max=15,
        )

    calls = []
    original = model.memory_attention.frame_queries

    def counted(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(model.memory_attention, "frame_queries", counted)
    shared = features()
    with torch.inference_mode():
        first = model.condition_on_memory(shared, memory(2, frames=1))
        second = model.condition_on_memory(shared, memory(3, frames=3))
        assert len(calls) == 1 and len(shared.derived) == 1
        assert torch.equal(first, model.condition_on_memory(features(), memory(2, frames=1)))
        assert torch.equal(second, model.condition_on_memory(features(), memory(3, frames=3)))
        model.set_compute_dtype(torch.bfloat16)  # another mode computes its own
        model.condition_on_memory(shared, memory(2, frames=1))
        model.set_compute_dtype(torch.float32)
    assert len(calls) == 4 and len(shared.derived) == 2
