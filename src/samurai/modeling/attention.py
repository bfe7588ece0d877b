"""Multi-head attention with separate q/k/v projections (SAM's ``Attention``)."""

from __future__ import annotations

import torch
from torch import nn

from samurai.modeling.cpu_attention import scaled_dot_product_attention
from samurai.modeling.precision import Linear


class Attention(nn.Module):
    """Attention that can downscale the embedding size after projecting to queries, keys, values.

    Parameter names follow the official checkpoints: ``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``. Inputs are ``(B, N, C)``; keys/values may have ``kv_in_dim`` channels.
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = Linear(embedding_dim, self.internal_dim)
        self.k_proj = Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = Linear(self.internal_dim, embedding_dim)

    def separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` -> ``(B, heads, N, C / heads)``."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    @staticmethod
    def recombine_heads(x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, N, c)`` -> ``(B, N, heads * c)``."""
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self.separate_heads(self.q_proj(q))
        k = self.separate_heads(self.k_proj(k))
        v = self.separate_heads(self.v_proj(v))
        out = scaled_dot_product_attention(q, k, v)
        return self.out_proj(self.recombine_heads(out))
