"""Split-bfloat16 compute: bfloat16 matmul speed with float32-grade weights.

Rounding a weight matrix to bfloat16 shifts every token's output the same way, a systematic
error that the IoU and object-score heads amplify until near-threshold tracking decisions flip
(plain ``torch.autocast`` moves SAM 2.1-T's IoU predictions by up to 0.17 with the reference
weights). Rounding activations and outputs adds errors that are independent per element and
mostly average out. So a :class:`Linear` in bfloat16 mode keeps its float32 weight as a pair
``W = hi + lo`` of bfloat16 matrices and computes ``[x, x] @ [hi, lo]^T`` in one bfloat16 GEMM
(float32 accumulation, bias added in float32): twice the bfloat16 FLOPs of plain autocast, yet
1.6-1.8x faster than MKL's float32 for Hiera's 96-1536-channel layers on CPUs with native
bfloat16 matmuls, and SAM 2.1-T's IoU predictions stay within 0.007 of float32 on the reference
traces (0.17 with plain autocast). Where oneDNN's float32 GEMMs are available (x86-64 CPUs,
:mod:`samurai.modeling.gemm`) they are faster still, so the layers run those instead.

:func:`attention_bfloat16` is the matching attention: bfloat16 score and weighting GEMMs, softmax
computed in float32 by PyTorch's bfloat16 kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samurai.modeling.gemm import ACTIVATIONS, linear, uses_onednn

_SCORE_BLOCK_ELEMENTS = 1 << 25
"""Attention scores held at once per head by :func:`attention_bfloat16` (64 MB in bfloat16)."""

SUPPORTED = (torch.float32, torch.bfloat16)

SPLIT_MIN_FEATURES = 96
"""Narrower layers stay float32 (the memory attention's 64-channel key / value projections):
their GEMMs are memory-bound and the split's casts cost more than the bfloat16 GEMM saves.
From 96 channels up (all of Hiera) the split is faster once its rows are chunked (below):
0.6x of float32 at 96 channels, 0.55x at 192-768 (measured at 1024 px)."""

SPLIT_CHUNK_ROWS = 4096
"""Rows per GEMM of a split layer: the bfloat16 copy of the input, the GEMM output and the
float32 result of a chunk stay in cache instead of streaming Hiera's first-stage activations
(65536 tokens) through memory three times (1.2-1.35x faster there; results are identical)."""


def split_bfloat16(weight: torch.Tensor) -> torch.Tensor:
    """``(out, in)`` float32 -> ``(out, 2 * in)`` bfloat16 ``[hi, lo]``, ``hi + lo ~ weight``."""
    hi = weight.to(torch.bfloat16)
    lo = (weight - hi.float()).to(torch.bfloat16)
    return torch.cat([hi, lo], dim=1).contiguous()


def check_compute_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """The compute dtype, float32 for None; ValueError for anything unsupported."""
    dtype = dtype or torch.float32
    if dtype not in SUPPORTED:
        names = ", ".join(str(d).removeprefix("torch.") for d in SUPPORTED)
        raise ValueError(f"unsupported compute dtype {dtype}; expected one of: {names}")
    return dtype


class Linear(nn.Linear):
    """``nn.Linear`` that can run as a split-bfloat16 GEMM (see the module docstring).

    In float32 mode (the default) it computes what ``nn.Linear`` does, through oneDNN on CPU
    (:mod:`samurai.modeling.gemm`). In bfloat16 mode it runs the split GEMM, except where
    oneDNN's float32 GEMM is available (float32 CPU inputs on x86-64, autograd off): that is
    1.05-1.4x faster than the split for every SAM 2.1-T layer shape and exact. The split weight
    is a non-persistent buffer built on first use, so checkpoints keep the official keys; it is
    rebuilt when the weight changes (e.g. a checkpoint loaded after the mode was set).
    """

    split_weight: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("split_weight", None, persistent=False)
        self._split_version = -1
        self.compute_dtype = torch.float32

    def set_compute_dtype(self, dtype: torch.dtype | None) -> None:
        """float32 (or None): plain ``nn.Linear``; bfloat16: split-bfloat16 GEMM.

        Layers with fewer than :data:`SPLIT_MIN_FEATURES` input or output features stay float32.
        """
        narrow = min(self.in_features, self.out_features) < SPLIT_MIN_FEATURES
        split = check_compute_dtype(dtype) == torch.bfloat16 and not narrow
        self.compute_dtype = torch.bfloat16 if split else torch.float32
        self.split_weight = None
        self._split_version = -1

    def _split(self) -> torch.Tensor:
        with torch.no_grad():
            self.split_weight = split_bfloat16(self.weight.detach().float())
        self._split_version = self.weight._version
        return self.split_weight

    def forward(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """``activation(x @ weight^T + bias)``; ``activation`` is None, "relu" or "gelu"."""
        if self.compute_dtype == torch.float32 or uses_onednn(x, self.weight):
            return linear(x, self.weight, self.bias, activation)
        y = self._split_forward(x)
        return y if activation is None else ACTIVATIONS[activation](y)

    def _split_forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.split_weight
        if weight is None or self._split_version != self.weight._version:
            weight = self._split()
        if torch.is_grad_enabled():  # the chunks write into a preallocated output
            xb = x.to(torch.bfloat16)
            y = F.linear(torch.cat([xb, xb], dim=-1), weight).float()
            return y if self.bias is None else y + self.bias
        features = x.shape[-1]
        flat = x.reshape(-1, features)
        rows = flat.shape[0]
        chunk = max(1, min(rows, SPLIT_CHUNK_ROWS))
        doubled = flat.new_empty(chunk, 2 * features, dtype=torch.bfloat16)
        out = flat.new_empty(rows, self.out_features, dtype=torch.float32)
        for start in range(0, rows, chunk):
            part = flat[start : start + chunk]
            n = part.shape[0]
            doubled[:n, :features].copy_(part)  # [x, x] in bfloat16, one cast per half
            doubled[:n, features:].copy_(part)
            y = F.linear(doubled[:n], weight)
            if self.bias is None:
                out[start : start + n].copy_(y)
            else:
                torch.add(y, self.bias, out=out[start : start + n])
        return out.view(*x.shape[:-1], self.out_features)


def set_compute_dtype(module: nn.Module, dtype: torch.dtype | None) -> None:
    """Set the compute dtype of every submodule of ``module`` that has one."""
    dtype = check_compute_dtype(dtype)
    for sub in module.modules():
        if sub is not module and hasattr(sub, "set_compute_dtype"):
            sub.set_compute_dtype(dtype)


def attention_bfloat16(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, shared_values: bool = False
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` with bfloat16 GEMMs; returns float32.

    Args:
        q: ``(B, heads, Nq, d)``.
        k: ``(B, heads, Nk, d)``.
        v: ``(B, heads, Nk, dv)``, or ``(B, Nk, dv)`` shared by all heads when
            ``shared_values`` (SAM 2's raw 64-channel memory values).

    Returns:
        ``(B, heads, Nq, dv)`` float32.
    """
    batch, heads, n_q, dim = q.shape
    n_k = k.shape[-2]
    qb = (q * dim**-0.5).to(torch.bfloat16)
    kb = k.to(torch.bfloat16)
    vb = v.to(torch.bfloat16)
    rows = max(1, _SCORE_BLOCK_ELEMENTS // max(1, n_k))
    # a power of two: 1633 rows (5 frames of memory) ran the attention 15 % slower than 1024
    rows = min(n_q, 1 << (rows.bit_length() - 1))
    out = q.new_empty(batch, heads, n_q, vb.shape[-1], dtype=torch.float32)
    for b in range(batch):
        for h in range(heads):
            # F.linear multiplies by the transposed keys / values in place; matmul copied the
            # 20000 x 256 keys to transpose them (7 ms of a 96 ms cross-attention)
            keys = kb[b, h]
            values_t = (vb[b] if shared_values else vb[b, h]).t()
            for start in range(0, n_q, rows):
                weights = torch.softmax(F.linear(qb[b, h, start : start + rows], keys), dim=-1)
                out[b, h, start : start + rows] = F.linear(weights, values_t)
    return out
