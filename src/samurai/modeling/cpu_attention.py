"""Float32 softmax attention on CPU with oneDNN GEMMs, for a few heads over long sequences.

``F.scaled_dot_product_attention``'s fused CPU kernel multiplies with MKL, which runs at half
speed on AMD CPUs (see :mod:`samurai.modeling.gemm`); this path is taken where the "attention"
shape class measured oneDNN faster. For SAM 2's long attentions (Hiera-T's
global blocks: 4 heads x 4096 tokens; the memory self-attention: 1 head x 4096 tokens; the memory
cross-attention over up to ~30000 memory tokens) one oneDNN GEMM pair per head and block of
queries is faster: 142 -> 82 ms, 85 -> 47 ms and 306 -> 164 ms (19508 memory tokens) on a 2-core
Zen 5.
Many small heads (the windowed Hiera blocks) stay with the fused kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samurai.modeling.gemm import matmul_nt, uses_onednn

SCORE_ELEMENTS = 1 << 23
"""Scores computed at once per head (32 MB in float32, within a 32 MB L3): a block of query rows
against all keys, so each row is normalised once. Against key blocks with a running maximum (five
more passes over the scores), query blocks took the memory cross-attention over 20480 memory
tokens from 166 to 148 ms on a 2-core Zen 5; base-2 weights without the maximum subtracted
(:func:`exp2_weights`) then 140 -> 136 ms, and a Hiera-T global block 74 -> 68 ms."""

LOG2_E = math.log2(math.e)

SAFE_ROW_SUM = 2.0**-60
"""Smallest row sum of unshifted base-2 weights accepted: above it the row's largest weight is a
normal float32 far from underflow, so dropping the usual max subtraction loses nothing."""

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
    """``softmax(q k^T / sqrt(d)) v``, head by head, queries in blocks of whole score rows.

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
    # base-2 scores: softmax(x) = 2^(x log2 e) / sum, and exp2 runs 3x faster than exp here
    q3 = (q * (dim**-0.5 * LOG2_E)).reshape(groups, n_q, dim)
    # contiguous rows: oneDNN reads other layouts element by element (see gemm.linear)
    k3 = k.reshape(groups, n_k, dim).contiguous()
    if shared_values:
        v3 = v.to(q.dtype).contiguous()
    else:
        v3 = v.to(q.dtype).reshape(groups, n_k, -1).contiguous()
    out = q.new_empty(groups, n_q, v3.shape[-1])
    rows = max(1, SCORE_ELEMENTS // n_k)
    for g in range(groups):
        k_g = k3[g]
        v_t = (v3[g // heads] if shared_values else v3[g]).t()
        for start in range(0, n_q, rows):
            weights, sums = exp2_weights(q3[g, start : start + rows], k_g)
            mixed = matmul_nt(weights, v_t, kind="attention")
            torch.div(mixed, sums, out=out[g, start : start + rows])
    return out.view(batch, heads, n_q, -1)


def exp2_weights(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised softmax weights ``2^(q k^T)`` of base-2 scores and their row sums.

    The row maximum is not subtracted first (one pass over the scores fewer: the product is
    normalised after the value GEMM instead). Where that would over- or underflow (a row sum
    not finite, or below :data:`SAFE_ROW_SUM`), the block is recomputed with it subtracted.
    """
    weights = matmul_nt(q, k, kind="attention").exp2_()
    sums = weights.sum(dim=-1, keepdim=True)
    low, high = torch.aminmax(sums)
    if float(low) >= SAFE_ROW_SUM and math.isfinite(float(high)):
        return weights, sums
    scores = matmul_nt(q, k, kind="attention")
    weights = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp2_()
    return weights, weights.sum(dim=-1, keepdim=True)
