"""Memory encoder: fuses a frame's features with its predicted mask into memory features.

Mirrors ``sam2/modeling/memory_encoder.py``: the mask is downsampled by strided convolutions to
the feature stride (16), added to the projected image features, refined by two ConvNeXt blocks
and projected to ``out_dim`` (64) channels, with a sine position encoding of the result.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from samurai.modeling.common import LayerNorm2d
from samurai.modeling.position_encoding import PositionEmbeddingSine
from samurai.modeling.precision import Linear


@dataclass(frozen=True)
class MemoryEncoderOutput:
    """Memory features of one frame.

    Attributes:
        vision_features: ``(B, out_dim, H, W)`` memory features (``maskmem_features``).
        vision_pos_enc: ``(B, out_dim, H, W)`` their position encoding (``maskmem_pos_enc``).
    """

    vision_features: torch.Tensor
    vision_pos_enc: torch.Tensor


class MaskDownSampler(nn.Module):
    """Strided convolutions (each followed by LayerNorm2d and GELU), then a 1x1 projection.

    Each step divides the resolution by ``stride`` and multiplies the channels by
    ``stride ** 2`` (1 -> 4 -> 16 -> 64 -> 256 with the defaults, which are the SAM 2 / 2.1
    config values, not the official class defaults). Parameter names follow the official
    checkpoints: ``encoder.{i}`` of one ``nn.Sequential``.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 256,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        total_stride: int = 16,
    ) -> None:
        super().__init__()
        num_layers = round(math.log(total_stride, stride))
        if stride**num_layers != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        layers: list[nn.Module] = []
        in_chans = out_chans = 1
        for _ in range(num_layers):
            out_chans = in_chans * stride**2
            layers.append(nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding))
            layers.append(LayerNorm2d(out_chans))
            layers.append(nn.GELU())
            in_chans = out_chans
        layers.append(nn.Conv2d(out_chans, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` mask -> ``(B, embed_dim, H / total_stride, W / total_stride)``."""
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, pointwise MLP (as Linear), layer scale, residual.

    Parameter names follow the official checkpoints: ``dwconv``, ``norm``, ``pwconv1``,
    ``pwconv2``, ``gamma``. Drop path (training only) is omitted.
    """

    def __init__(
        self,
        *,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        groups = dim if use_dwconv else 1
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=groups)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = Linear(dim, 4 * dim)
        self.pwconv2 = Linear(4 * dim, dim)
        self.gamma: nn.Parameter | None = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim))
            if layer_scale_init_value > 0
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W)`` -> ``(B, dim, H, W)``."""
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(self.pwconv1(y, "gelu"))
        if self.gamma is not None:
            y = y * self.gamma
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """``num_layers`` copies of a block applied in sequence (``layers.{i}``)."""

    def __init__(self, *, layer: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode a frame's stride-16 features and its mask into memory features.

    Parameter names follow the official checkpoints: ``mask_downsampler``, ``pix_feat_proj``,
    ``fuser``, ``out_proj`` (absent when ``out_dim == in_dim``).
    """

    def __init__(
        self,
        *,
        out_dim: int = 64,
        mask_downsampler: MaskDownSampler,
        fuser: Fuser,
        position_encoding: PositionEmbeddingSine,
        in_dim: int = 256,
    ) -> None:
        super().__init__()
        self.mask_downsampler = mask_downsampler
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser
        self.position_encoding = position_encoding
        self.out_proj: nn.Module = (
            nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        )

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = True
    ) -> MemoryEncoderOutput:
        """Fuse features and mask.

        Args:
            pix_feat: ``(B, in_dim, H, W)`` stride-16 image features.
            masks: ``(B, 1, 16 H, 16 W)`` mask input at model resolution. SAM 2 passes
                already scaled values (``sigmoid(logits) * 20 - 10``, or ``binary * 20 - 10``
                for masks from clicks) with ``skip_mask_sigmoid=True``.
            skip_mask_sigmoid: when False, ``masks`` are logits and get a sigmoid first.

        Returns:
            Memory features and their position encoding, ``(B, out_dim, H, W)`` each.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        # A fresh tensor per call (not a view of the cached grid): callers may update it in place.
        pos = self.position_encoding(x).to(x.dtype).clone(memory_format=torch.contiguous_format)
        return MemoryEncoderOutput(vision_features=x, vision_pos_enc=pos)
