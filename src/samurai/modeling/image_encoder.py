"""SAM 2 image encoder: Hiera trunk + FPN neck, with the sine position encoding of each level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samurai.config import ModelConfig
from samurai.modeling.hiera import Hiera
from samurai.modeling.position_encoding import PositionEmbeddingSine


@dataclass(frozen=True)
class ImageEncoderOutput:
    """Multi-scale features of one batch of images (highest resolution first).

    Attributes:
        backbone_fpn: FPN levels after the scalp, (B, d_model, H / s, W / s) for strides
            s = 4, 8, 16 (SAM 2 configs, scalp 1); model-resolution images.
        vision_pos_enc: sine position encoding of each level, same shapes as ``backbone_fpn``.
    """

    backbone_fpn: list[torch.Tensor]
    vision_pos_enc: list[torch.Tensor]

    @property
    def vision_features(self) -> torch.Tensor:
        """Lowest-resolution kept level, (B, d_model, H / 16, W / 16): the mask decoder input."""
        return self.backbone_fpn[-1]


class FpnNeck(nn.Module):
    """Feature pyramid neck without output convolutions (SAM 2's modified FPN).

    Each trunk level gets a lateral conv to ``d_model`` channels; levels listed in
    ``fpn_top_down_levels`` also add the upsampled output of the level below them (coarser).
    ``convs[0]`` acts on the deepest trunk level (``backbone_channel_list`` is deepest first).
    """

    def __init__(
        self,
        *,
        position_encoding: nn.Module,
        d_model: int,
        backbone_channel_list: Sequence[int],
        fpn_top_down_levels: Sequence[int] | None = None,
        fpn_interp_model: str = "nearest",
        fuse_type: str = "sum",
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        self.position_encoding = position_encoding
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module(
                "conv",
                nn.Conv2d(dim, d_model, kernel_size=kernel_size, stride=stride, padding=padding),
            )
            self.convs.append(lateral)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        levels = range(len(self.convs)) if fpn_top_down_levels is None else fpn_top_down_levels
        self.fpn_top_down_levels = list(levels)

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Fuse trunk levels.

        Args:
            xs: trunk outputs, highest resolution first, (B, C_i, H_i, W_i).

        Returns:
            (features, position encodings), both lists of (B, d_model, H_i, W_i), same order.
        """
        n = len(self.convs) - 1
        if len(xs) != n + 1:
            raise ValueError(f"expected {n + 1} feature levels, got {len(xs)}")
        out: list[torch.Tensor] = [torch.empty(0)] * (n + 1)
        pos: list[torch.Tensor] = [torch.empty(0)] * (n + 1)
        prev: torch.Tensor | None = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                top_down = F.interpolate(
                    prev.to(dtype=torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False,
                )
                prev = lateral + top_down
                if self.fuse_type == "avg":
                    prev = prev / 2
            else:
                prev = lateral
            out[i] = prev
            pos[i] = self.position_encoding(prev).to(prev.dtype)
        return out, pos


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the ``scalp`` lowest-resolution levels from the output."""

    def __init__(self, *, trunk: nn.Module, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        trunk_channels = list(getattr(trunk, "channel_list", neck.backbone_channel_list))
        if trunk_channels != neck.backbone_channel_list:
            raise ValueError(
                f"trunk channels {trunk_channels} != neck channels {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> ImageEncoderOutput:
        """Encode ``sample``: (B, 3, H, W) normalised images at model resolution."""
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return ImageEncoderOutput(backbone_fpn=features, vision_pos_enc=pos)


def build_image_encoder(config: ModelConfig) -> ImageEncoder:
    """The image encoder of a SAM 2 / 2.1 checkpoint (keys under ``image_encoder.``)."""
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(config.hidden_dim),
        d_model=config.hidden_dim,
        backbone_channel_list=config.hiera.backbone_channel_list,
        fpn_top_down_levels=config.fpn_top_down_levels,
        fpn_interp_model="nearest",
    )
    return ImageEncoder(trunk=Hiera.from_config(config.hiera), neck=neck, scalp=config.scalp)


__all__ = ["FpnNeck", "ImageEncoder", "ImageEncoderOutput", "build_image_encoder"]
