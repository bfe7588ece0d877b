"""Float32 softmax attention on CPU: oneDNN GEMMs for a few long heads, batched GEMMs for many
short ones.

``F.scaled_dot_product_attention``'s fused CPU kernel multiplies with MKL, which runs at half
speed on AMD CPUs (see :mod:`samurai.modeling.gemm`); :func:`softmax_attention` is taken where the
"attention" shape class measured oneDNN faster. For SAM 2's long attentions (Hiera-T's
global blocks: 4 heads x 4096 tokens; the memory self-attention: 1 head x 4096 tokens; the memory
cross-attention over up to ~30000 memory tokens) one oneDNN GEMM pair per head and block of
queries is faster: 142 -> 82 ms, 85 -> 47 ms and 306 -> 164 ms (19508 memory tokens) on a 2-core
Zen 5.

Many short heads (the windowed Hiera blocks: 25-4096 heads of 4-196 tokens) go to
:func:`batched_attention`, two batched GEMMs per group of heads around one pass of base-2
weights. The fused kernel works through such heads in fixed-size tiles whose set-up dominates the
smallest ones: on the same CPU 4096 heads x 16 tokens took 10.2 -> 6.1 ms and 8192 heads of
4 queries x 16 keys 16.9 -> 5.4 ms; the 196-token windows come out about even. The Hiera-B+
encoder went from 1.88 to 1.82 s at 1024 px.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samurai.modeling.gemm import matmul_nt, uses_onednn

SCORE_ELEMENTS = 1 << 22
"""Scores computed at once (16 MB in float32, half a 32 MB L3): a tile of query rows against a
block of keys. Base-2 weights taken without subtracting a row maximum add up across key blocks
with no rescaling, so long key sequences are cut into blocks: each GEMM then packs a block of
keys instead of all of them. Against tiles of whole score rows (2^23 scores) this took the memory
cross-attention over 28716 memory tokens (SAM 2.1-B+, 7 memory frames) from 190-217 to 174-178 ms
and over 20524 tokens from 142 to 125 ms on a 2-core Zen 5; 2^21-2^23 were within a few percent of
each other, 2^24 slower."""

QUERY_ROWS = 4096
"""Query rows per tile in :func:`softmax_attention` (SAM 2 at 1024 px has 4096 queries)."""

LOG2_E = math.log2(math.e)

SAFE_ROW_SUM = 2.0**-60
"""Smallest row sum of unshifted base-2 weights accepted: above it the row's largest weight is a
normal float32 far from underflow, so dropping the usual max subtraction loses nothing."""

MAX_GROUPS = 64
"""Batch x heads above which a long attention goes to the fused kernel: :func:`softmax_attention`
runs a Python-level GEMM pair per head, cheap for SAM 2's few long heads only."""

LONG_SCORES = 1 << 20
"""Scores per head (queries x keys) from which an attention is long: head by head."""


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for ``(B, heads, N, d)`` tensors, no mask, no dropout."""
    if not all(t.dtype == torch.float32 and t.device.type == "cpu" for t in (q, k, v)) or (
        torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    ):
        return F.scaled_dot_product_attention(q, k, v)
    if q.shape[-2] * k.shape[-2] < LONG_SCORES:
        return batched_attention(q, k, v)
    groups = q.shape[0] * q.shape[1]
    if groups > MAX_GROUPS or not uses_onednn(q, k, kind="attention"):
        return F.scaled_dot_product_attention(q, k, v)
    return softmax_attention(q, k, v)


def batched_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for many short heads, ``(B, heads, N, d)`` tensors.

    Whole batch entries (Hiera's windows) go in groups of about :data:`SCORE_ELEMENTS` scores,
    each through one batched GEMM for its scores and one for its values. Only a group's
    operands are copied into the contiguous ``(heads, N, d)`` blocks the GEMMs read, so the
    copies stay a few MB whatever the map's size.
    """
    batch, heads, n_q, dim = q.shape
    n_k = k.shape[-2]
    scale = dim**-0.5 * LOG2_E
    out = q.new_empty(batch, heads, n_q, v.shape[-1])
    step = max(1, SCORE_ELEMENTS // (heads * n_q * n_k))
    for start in range(0, batch, step):
        part = slice(start, start + step)
        groups = out[part].shape[0] * heads
        weights, sums = exp2_weights(
            q[part].reshape(groups, n_q, dim), k[part].reshape(groups, n_k, dim), scale
        )
        mixed = out[part].view(groups, n_q, -1)
        torch.bmm(weights, v[part].reshape(groups, n_k, -1), out=mixed)
        mixed.div_(sums)
    return out


def softmax_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, shared_values: bool = False
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v``, head by head, in tiles of query rows and keys.

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
    rows = min(n_q, QUERY_ROWS)
    keys = max(1, SCORE_ELEMENTS // rows)
    for g in range(groups):
        v_g = v3[g // heads] if shared_values else v3[g]
        for start in range(0, n_q, rows):
            block = slice(start, start + rows)
            attend_rows(q3[g, block], k3[g], v_g, keys, out=out[g, block])
    return out.view(batch, heads, n_q, -1)


def attend_rows(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: int, *, out: torch.Tensor
) -> None:
    """``out = softmax(q k^T) v`` for base-2 scores, ``q`` ``(M, d)``, ``k`` ``(N, d)``, ``v``
    ``(N, dv)``, over blocks of ``keys`` keys.

    Each block's weights ``2^s`` are taken without subtracting a row maximum, so blocks simply
    add up: the weighted values and the row sums, normalised once at the end. Where that over- or
    underflows (a row sum not finite, or below :data:`SAFE_ROW_SUM`), the rows are computed again
    with each row's maximum over all keys subtracted.
    """
    n_k = k.shape[0]
    mixed, sums = _weighted_blocks(q, k, v, keys, None)
    low, high = torch.aminmax(sums)
    if not (float(low) >= SAFE_ROW_SUM and math.isfinite(float(high))):
        top = torch.stack(
            [
                matmul_nt(q, k[start : start + keys], kind="attention").amax(dim=-1)
                for start in range(0, n_k, keys)
            ]
        ).amax(dim=0, keepdim=True)
        mixed, sums = _weighted_blocks(q, k, v, keys, top.t())
    torch.div(mixed, sums, out=out)


def _weighted_blocks(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: int, shift: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over key blocks of ``2^(q k^T - shift) v`` and of the weights, per query row."""
    mixed = sums = None
    for start in range(0, k.shape[0], keys):
        block = slice(start, start + keys)
        scores = matmul_nt(q, k[block], kind="attention")
        weights = (scores if shift is None else scores.sub_(shift)).exp2_()
        # v[block] is (keys, dv) with contiguous rows: as the GEMM's transposed operand, no copy
        part = matmul_nt(weights, v[block].t(), kind="attention")
        part_sums = weights.sum(dim=-1, keepdim=True)
        if mixed is None:
            mixed, sums = part, part_sums
        else:
            mixed.add_(part)
            sums.add_(part_sums)
    return mixed, sums


def exp2_weights(
    q: torch.Tensor, k: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalised softmax weights ``2^(scale q k^T)`` of base-2 scores and their row sums, for
    ``(G, M, d)`` queries and ``(G, N, d)`` keys (one batched GEMM).

    The row maximum is not subtracted first (one pass over the scores fewer: the product is
    normalised after the value GEMM instead). Where that would over- or underflow (a row sum
    not finite, or below :data:`SAFE_ROW_SUM`), the weights are recomputed with it subtracted.
    """
    weights = _scores(q, k, scale).exp2_()
    sums = weights.sum(dim=-1, keepdim=True)
    low, high = torch.aminmax(sums)
    if float(low) >= SAFE_ROW_SUM and math.isfinite(float(high)):
        return weights, sums
    scores = _scores(q, k, scale)
    weights = scores.sub_(scores.amax(dim=-1, keepdim=True)).exp2_()
    return weights, weights.sum(dim=-1, keepdim=True)


def _scores(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    # beta=0: the (1, 1, 1) input is never read; the scale costs nothing inside the GEMM
    return torch.baddbmm(q.new_empty(1, 1, 1), q, k.transpose(1, 2), beta=0.0, alpha=scale)
