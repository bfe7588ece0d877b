"""Memory attention: conditions the current frame's features on the memory bank.

Mirrors ``sam2/modeling/memory_attention.py`` and ``RoPEAttention`` of
``sam2/modeling/sam/transformer.py``. Each layer runs self-attention over the current frame,
cross-attention to the memory tokens (mask memories of up to 7 frames, then object-pointer
tokens) and an MLP, all pre-norm, with axial RoPE on queries and keys.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from samurai.modeling.attention import Attention
from samurai.modeling.common import activation_from_name
from samurai.modeling.cpu_attention import scaled_dot_product_attention, softmax_attention
from samurai.modeling.precision import Linear, attention_bfloat16, check_compute_dtype
from samurai.modeling.rope import apply_axial_rope, axial_rope_tables


def attend_raw_values(
    q: torch.Tensor, k: torch.Tensor, values: torch.Tensor, v_proj: nn.Linear
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v_proj(values)``, with ``v_proj`` applied after the weighting.

    Attention rows sum to one, so weighting the raw ``kv_in_dim``-channel values first and
    projecting afterwards gives the same result (up to float rounding) for
    ``kv_in_dim / d`` of the weighting cost: a quarter for SAM 2's 64-channel memory.
    ``F.scaled_dot_product_attention`` cannot do this (its fused CPU kernel needs equal q/v head
    dims); :func:`~samurai.modeling.cpu_attention.softmax_attention` can.

    Args:
        q: ``(B, heads, Nq, d)`` queries (after RoPE).
        k: ``(B, heads, Nk, d)`` keys (after RoPE).
        values: ``(B, Nk, kv_in_dim)`` un-projected values, shared by all heads.
        v_proj: the value projection, ``kv_in_dim -> heads * d``.

    Returns:
        ``(B, heads, Nq, d)``, as ``scaled_dot_product_attention`` with projected values.
    """
    mixed = softmax_attention(q, k, values, shared_values=True)
    return project_values(mixed, v_proj)


def project_values(mixed: torch.Tensor, v_proj: nn.Linear) -> torch.Tensor:
    """Per-head value projection of attention-weighted raw values.

    ``(B, h, Nq, kv_in_dim) @ (h, kv_in_dim, d) + (h, 1, d)`` -> ``(B, h, Nq, d)``.
    """
    heads = mixed.shape[1]
    dim = v_proj.weight.shape[0] // heads
    weight = v_proj.weight.view(heads, dim, -1).transpose(1, 2)
    out = torch.matmul(mixed, weight)
    if v_proj.bias is not None:
        out = out + v_proj.bias.view(heads, 1, dim)
    return out


class RoPEAttention(Attention):
    """Attention with axial rotary position encoding of queries and keys.

    The queries are a square ``s x s`` grid of tokens (``s = sqrt(Nq)``, as in the official
    code); the RoPE tables are computed for that size on first use and cached. Keys are either
    the same grid (``rope_k_repeat=False``) or several frames of it, followed by
    ``num_k_exclude_rope`` tokens (object pointers) that get no rotation.
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
    ) -> None:
        super().__init__(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=downsample_rate,
            kv_in_dim=kv_in_dim,
        )
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.compute_dtype = torch.float32

    def set_compute_dtype(self, dtype: torch.dtype | None) -> None:
        """bfloat16: attention GEMMs in bfloat16 (softmax in float32); float32: exact path."""
        self.compute_dtype = check_compute_dtype(dtype)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        """Attend ``q`` to ``k`` / ``v``.

        Args:
            q: ``(B, Nq, embedding_dim)``, ``Nq = s * s`` tokens of a row-major grid.
            k: ``(B, Nk, kv_in_dim)``; ``Nk - num_k_exclude_rope`` is ``Nq`` or, with
                ``rope_k_repeat``, a multiple of it.
            v: ``(B, Nk, kv_in_dim)``.
            num_k_exclude_rope: trailing keys without RoPE (object-pointer tokens).

        Returns:
            ``(B, Nq, embedding_dim)``.
        """
        n_q = q.shape[-2]
        side = math.isqrt(n_q)
        if side * side != n_q:
            raise ValueError(f"RoPE attention needs a square token grid, got {n_q} queries")
        if k.shape[-2] != n_q and not self.rope_k_repeat:
            raise ValueError("keys differ in length from the queries but rope_k_repeat is False")
        head_dim = self.internal_dim // self.num_heads
        cos, sin = axial_rope_tables(
            head_dim, side, side, self.rope_theta, device=q.device, dtype=q.dtype
        )
        q = apply_axial_rope(self.separate_heads(self.q_proj(q)), cos, sin)
        k = apply_axial_rope(
            self.separate_heads(self.k_proj(k)), cos, sin, num_exclude=num_k_exclude_rope
        )
        raw_values = self.kv_in_dim < head_dim
        if self.compute_dtype == torch.bfloat16:
            if raw_values:
                mixed = attention_bfloat16(q, k, v, shared_values=True)
                out = project_values(mixed, self.v_proj)
            else:
                out = attention_bfloat16(q, k, self.separate_heads(self.v_proj(v)))
            return self.out_proj(self.recombine_heads(out))
        # The raw-value path pays off on CPU, where SDPA's fused kernel needs equal head dims; it
        # writes into preallocated buffers, which autograd cannot record.
        if raw_values and q.device.type == "cpu" and not torch.is_grad_enabled():
            out = attend_raw_values(q, k, v, self.v_proj)
        else:
            out = scaled_dot_product_attention(q, k, self.separate_heads(self.v_proj(v)))
        return self.out_proj(self.recombine_heads(out))


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: RoPE self-attention, RoPE cross-attention to memory, MLP.

    Parameter names follow the official checkpoints: ``self_attn``, ``cross_attn_image``,
    ``linear1``, ``linear2``, ``norm1``..``norm3``. Dropout (training only) is omitted.
    """

    def __init__(
        self,
        *,
        self_attention: RoPEAttention,
        cross_attention: RoPEAttention,
        d_model: int = 256,
        dim_feedforward: int = 2048,
        activation: str = "relu",
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
        pos_enc_at_cross_attn_queries: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.self_attn = self_attention
        self.cross_attn_image = cross_attention
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        activation_from_name(activation)  # refuses unknown names
        self.activation_name = activation  # applied inside linear1's GEMM
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        num_k_exclude_rope: int = 0,
    ) -> torch.Tensor:
        """Update the current-frame tokens.

        Args:
            tgt: ``(B, HW, d_model)`` current-frame tokens.
            memory: ``(B, M, kv_in_dim)`` memory tokens (pointer tokens last).
            pos: ``(B, M, kv_in_dim)`` memory position encoding.
            query_pos: ``(B, HW, d_model)`` current-frame position encoding.
            num_k_exclude_rope: trailing memory tokens without RoPE.

        Returns:
            ``(B, HW, d_model)``.
        """
        tgt = self.attend_self(tgt, query_pos)
        return self.attend_memory(
            tgt, memory, pos=pos, query_pos=query_pos, num_k_exclude_rope=num_k_exclude_rope
        )

    def attend_self(self, tgt: torch.Tensor, query_pos: torch.Tensor | None) -> torch.Tensor:
        """The self-attention sub-block: depends on the current frame only."""
        x = self.norm1(tgt)
        qk = _with_pos(x, query_pos, self.pos_enc_at_attn)
        return tgt + self.self_attn(qk, qk, x)

    def attend_memory(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        *,
        pos: torch.Tensor | None,
        query_pos: torch.Tensor | None,
        num_k_exclude_rope: int,
    ) -> torch.Tensor:
        """The cross-attention and MLP sub-blocks (see :meth:`forward`)."""
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(
            _with_pos(x, query_pos, self.pos_enc_at_cross_attn_queries),
            _with_pos(memory, pos, self.pos_enc_at_cross_attn_keys),
            memory,
            num_k_exclude_rope=num_k_exclude_rope,
        )
        x = self.linear2(self.linear1(self.norm3(tgt), self.activation_name))
        return tgt + x


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None, enabled: bool) -> torch.Tensor:
    if not enabled:
        return x
    if pos is None:
        raise ValueError("this layer adds a position encoding, but none was given")
    return x + pos


class MemoryAttention(nn.Module):
    """Stack of ``num_layers`` copies of a :class:`MemoryAttentionLayer` and a final LayerNorm.

    Parameter names follow the official checkpoints: ``layers.{i}``, ``norm``. Inputs and
    outputs are sequence-first like the official module; the layers run batch-first.
    """

    def __init__(
        self,
        *,
        d_model: int,
        layer: MemoryAttentionLayer,
        num_layers: int,
        pos_enc_at_input: bool = True,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("only batch_first=True (the official setting) is supported")
        self.d_model = d_model
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input

    def forward(
        self,
        curr: torch.Tensor,
        memory: torch.Tensor,
        *,
        curr_pos: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
        frame_queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Condition the current frame on memory.

        Args:
            curr: ``(HW, B, d_model)`` current-frame features, tokens row-major over the grid.
            memory: ``(M, B, mem_dim)`` memory tokens: ``r`` frames of ``HW`` mask-memory tokens,
                then ``num_obj_ptr_tokens`` object-pointer tokens.
            curr_pos: ``(HW, B, d_model)`` position encoding of ``curr``.
            memory_pos: ``(M, B, mem_dim)`` position encoding of ``memory``.
            num_obj_ptr_tokens: pointer tokens at the end of ``memory`` (no RoPE).
            frame_queries: :meth:`frame_queries` of ``curr`` / ``curr_pos`` when already
                computed (shared by every object tracked on the frame).

        Returns:
            ``(HW, B, d_model)`` conditioned features.
        """
        if curr.shape[1] != memory.shape[1]:
            raise ValueError("curr and memory must have the same batch size")
        output = self.frame_queries(curr, curr_pos) if frame_queries is None else frame_queries
        query_pos = curr_pos.transpose(0, 1)
        memory_b = memory.transpose(0, 1)
        memory_pos_b = memory_pos.transpose(0, 1)
        for i, layer in enumerate(self.layers):
            if i > 0:
                output = layer.attend_self(output, query_pos)
            output = layer.attend_memory(
                output,
                memory_b,
                pos=memory_pos_b,
                query_pos=query_pos,
                num_k_exclude_rope=num_obj_ptr_tokens,
            )
        return self.norm(output).transpose(0, 1)

    def frame_queries(self, curr: torch.Tensor, curr_pos: torch.Tensor) -> torch.Tensor:
        """The part of :meth:`forward` that depends on the frame alone: ``(B, HW, d_model)``.

        The input position term and the first layer's self-attention see no memory, so every
        object tracked on a frame can share them (about 55 ms per further object for
        SAM 2.1-T at 1024 px on 2 CPU cores).
        """
        output = curr + 0.1 * curr_pos if self.pos_enc_at_input else curr
        return self.layers[0].attend_self(output.transpose(0, 1), curr_pos.transpose(0, 1))
