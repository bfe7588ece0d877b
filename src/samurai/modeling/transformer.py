"""Two-way transformer of the SAM mask decoder: prompt and image tokens attend to each other."""

from __future__ import annotations

import torch
from torch import nn

from samurai.modeling.attention import Attention
from samurai.modeling.common import MLP


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, token MLP, image-to-token attention.

    Parameter names follow the official checkpoints: ``self_attn``, ``norm1``,
    ``cross_attn_token_to_image``, ``norm2``, ``mlp.layers.{0,1}``, ``norm3``, ``norm4``,
    ``cross_attn_image_to_token``.

    Args:
        embedding_dim: channels of tokens and image embedding.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLP.
        activation: activation of the token MLP.
        attention_downsample_rate: internal-dim divisor of the two cross attentions.
        skip_first_layer_pe: first block: self-attention without the query PE and without its
            residual connection (the official first layer replaces the tokens).
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim=embedding_dim, num_heads=num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update ``queries (B, N, C)`` (tokens) and ``keys (B, HW, C)`` (image).

        ``query_pe`` is ``(B, N, C)``, ``key_pe`` ``(B or 1, HW, C)``. Returns the new
        ``(queries, keys)``.
        """
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        k = keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of ``TwoWayAttentionBlock`` plus a final token-to-image attention.

    Parameter names follow the official checkpoints: ``layers.{i}``,
    ``final_attn_token_to_image``, ``norm_final_attn``.

    Args:
        depth: number of blocks (2).
        embedding_dim: channels (256).
        num_heads: attention heads (8).
        mlp_dim: hidden width of the block MLPs (2048).
        activation: activation of the block MLPs.
        attention_downsample_rate: internal-dim divisor of the cross attentions (2).
    """

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=i == 0,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two-way transformer.

        Args:
            image_embedding: ``(B, C, h, w)`` image tokens.
            image_pe: ``(B or 1, C, h, w)`` their positional encoding.
            point_embedding: ``(B, N, C)`` output + prompt tokens (also used as their PE).

        Returns:
            tokens ``(B, N, C)`` and image tokens ``(B, h*w, C)`` (HW-major).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
