"""Position encodings: 2-D sine (image features) and random Fourier features (prompts)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import nn


@lru_cache(maxsize=16)
def _sine_grid(
    num_pos_feats: int,
    height: int,
    width: int,
    temperature: float,
    scale: float,
    device: torch.device,
) -> torch.Tensor:
    # Same operation order as the official PositionEmbeddingSine (normalised, eps 1e-6).
    y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=device).view(-1, 1)
    x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=device).view(1, -1)
    y_embed = (y_embed / (y_embed[-1:, :] + 1e-6) * scale).expand(height, width)
    x_embed = (x_embed / (x_embed[:, -1:] + 1e-6) * scale).expand(height, width)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = x_embed[:, :, None] / dim_t
    pos_y = y_embed[:, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
    pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()


class PositionEmbeddingSine(nn.Module):
    """DETR-style 2-D sine encoding of a feature map's grid, normalised to [0, 2*pi].

    Returns ``(B, num_pos_feats, H, W)`` float32 for an input of shape ``(B, C, H, W)``; the grid is
    computed once per (size, device) and cached.
    """

    def __init__(
        self, num_pos_feats: int, *, temperature: float = 10000.0, scale: float | None = None
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = _sine_grid(
            self.num_pos_feats, x.shape[-2], x.shape[-1], self.temperature, self.scale, x.device
        )
        return grid[None].expand(x.shape[0], -1, -1, -1)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier-feature encoding of normalised 2-D coordinates (SAM prompt encoder)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        # Loaded from the checkpoint; the random init only matters for untrained models.
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats)
        )
        self.positional_encoding_gaussian_matrix: torch.Tensor

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an ``(h, w)`` grid of pixel centres: ``(C, h, w)``."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode ``(B, N, 2)`` pixel coordinates ``(x, y)`` of an ``image_size = (h, w)`` image."""
        coords = coords.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))
