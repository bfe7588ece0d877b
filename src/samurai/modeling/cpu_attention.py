"""Float32 softmax attention on CPU with oneDNN GEMMs, for a few heads over long sequences.

``F.scaled_dot_product_attention``'s fused CPU kernel multiplies with MKL, which runs at half
speed on AMD CPUs (see :mod:`samurai.modeling.gemm`); this path is taken where the "attention"
shape class measured oneDNN faster. For SAM 2's long attentions (Hiera-T's
global blocks: 4 heads x 4096 tokens; the memory self-attention: 1 head x 4096 tokens; the memory
cross-attention over up to ~30000 memory tokens) one oneDNN GEMM per head and block of keys is
faster: 142 -> 82 ms, 85 -> 47 ms and 306 -> 164 ms (19508 memory tokens) on a 2-core Zen 5.
Many small heads (the windowed Hiera blocks) stay with the fused kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samurai.modeling.gemm import matmul_nt, uses_onednn

SCORE_ELEMENTS = 1 << 24
"""Scores computed at once per head (64 MB in float32): a 4096-token self-attention in one
block with a plain softmax; longer key sequences go in blocks with a running maximum."""

MAX_GROUPS = 64
"""Batch x heads above which the fused kernel is used: this path runs a Python-level GEMM pair
per head, cheap for SAM 2's few long heads; windowed Hiera blocks have 100-2000 short ones."""


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``(B, heads, N, d)`` tensors, no mask, no dropout."""
    groups = q.shape[0] * q.shape[1]
    long = q.shape[-2] * k.shape[-2] >= 1 << 20
    if not long or groups > MAX_GROUPS or not uses_onednn(q, k, kind="attention"):
        return F.scaled_dot_product_attention(q, k, v)
    return softmax_attention(q, k, v)


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, shared_values: bool = False
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v``, head by head, keys in blocks of :data:`SCORE_ELEMENTS`.

    Args:
        q: ``(B, heads, Nq, d)``.
        k: ``(B, heads, Nk, d)``.
        v: ``(B, heads, Nk, dv)``, or ``(B, Nk, dv)`` shared by all heads when ``shared_values``.

    Returns:
        ``(B, heads, Nq, dv)`` in ``q``'s dtype.
    """
    batch, heads, n_q, dim = q.shape
    n_k = k.shape[-2]
    groups = batch * heads
    q3 = (q * dim**-0.5).reshape(groups, n_q, dim)
    # contiguous rows: oneDNN reads other layouts element by element (see gemm.linear)
    k3 = k.reshape(groups, n_k, dim).contiguous()
    if shared_values:
        v3 = v.to(q.dtype).contiguous()
    else:
        v3 = v.to(q.dtype).reshape(groups, n_k, -1).contiguous()
    out = q.new_empty(groups, n_q, v3.shape[-1])
    block = max(1, min(n_k, SCORE_ELEMENTS // n_q))
    for g in range(groups):
        q_g, k_g = q3[g], k3[g]
        v_g = v3[g // heads] if shared_values else v3[g]
        if block == n_k:
            weights = torch.softmax(matmul_nt(q_g, k_g, kind="attention"), dim=-1)
            out[g] = matmul_nt(weights, v_g.t(), kind="attention")
            continue
        row_max = q.new_full((n_q, 1), float("-inf"))
        denom = q.new_zeros(n_q, 1)
        acc = out[g].zero_()
        for start in range(0, n_k, block):
            scores = matmul_nt(q_g, k_g[start : start + block], kind="attention")
            new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))
            rescale = (row_max - new_max).exp_()  # 0 on the first block (row_max = -inf)
            row_max = new_max
            scores.sub_(row_max).exp_()
            denom.mul_(rescale).add_(scores.sum(dim=-1, keepdim=True))
            weighted = matmul_nt(scores, v_g[start : start + block].t(), kind="attention")
            acc.mul_(rescale).add_(weighted)
        acc.div_(denom)
    return out.view(batch, heads, n_q, -1)
