"""SAM 2 image encoder: Hiera trunk + FPN neck, with the sine position encoding of each level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
            s = 4, 8, 16 (SAM 2 configs, scalp 1); model-resolution images. A level given a
            projection in ``ImageEncoder.forward`` has that projection's channels instead.
        position_encoding: the neck's sine position encoding (a function of a level's size).
    """

    backbone_fpn: list[torch.Tensor]
    position_encoding: nn.Module = field(repr=False)

    @property
    def vision_features(self) -> torch.Tensor:
        """Lowest-resolution kept level, (B, d_model, H / 16, W / 16): the mask decoder input."""
        return self.backbone_fpn[-1]

    def pos_enc(self, level: int) -> torch.Tensor:
        """Sine position encoding of one level, (B, d_model, H_level, W_level)."""
        feature = self.backbone_fpn[level]
        return self.position_encoding(feature).to(feature.dtype)

    @property
    def vision_pos_enc(self) -> list[torch.Tensor]:
        """Position encoding of every level (computed on demand: the tracker only reads the
        last one, and the stride-4 level's alone is 64 MiB at 1024 px)."""
        return [self.pos_enc(i) for i in range(len(self.backbone_fpn))]


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
        self._pointwise = kernel_size == 1 and stride == 1 and padding == 0

    def forward(
        self,
        xs: Sequence[torch.Tensor],
        projections: Sequence[nn.Module | None] | None = None,
    ) -> list[torch.Tensor]:
        """Fuse trunk levels.

        Args:
            xs: trunk outputs, highest resolution first, (B, C_i, H_i, W_i).
            projections: per level (same order), a 1x1 convolution applied to that level's
                output, or None. On CPU a level that neither takes nor gives a top-down input is
                then computed strip by strip, so its full ``d_model``-channel map (64 MiB for the
                stride-4 level at 1024 px) never exists.

        Returns:
            The features, (B, d_model, H_i, W_i) (projected where asked), same order as ``xs``.
        """
        n = len(self.convs) - 1
        if len(xs) != n + 1:
            raise ValueError(f"expected {n + 1} feature levels, got {len(xs)}")
        if projections is not None and len(projections) > n + 1:
            raise ValueError(f"got {len(projections)} projections for {n + 1} levels")
        out: list[torch.Tensor] = [torch.empty(0)] * (n + 1)
        prev: torch.Tensor | None = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self.convs[n - i]
            project = projections[i] if projections is not None and i < len(projections) else None
            top_down = i in self.fpn_top_down_levels and prev is not None
            if (
                project is not None
                and self._pointwise
                and _is_pointwise(project)
                and not top_down
                and i - 1 not in self.fpn_top_down_levels
            ):
                out[i] = _project_in_strips(lateral, project, xs[i])
                prev = None
                continue
            prev = lateral(xs[i]) if not top_down else self._fuse(lateral(xs[i]), prev)
            out[i] = prev if project is None else project(prev)
        return out

    def _fuse(self, lateral: torch.Tensor, coarser: torch.Tensor) -> torch.Tensor:
        top_down = F.interpolate(
            coarser.to(dtype=torch.float32),
            scale_factor=2.0,
            mode=self.fpn_interp_model,
            align_corners=None if self.fpn_interp_model == "nearest" else False,
            antialias=False,
        )
        fused = lateral + top_down
        return fused / 2 if self.fuse_type == "avg" else fused


STRIP_PIXELS = 8192
"""Pixels per strip where a neck level and its projection run strip by strip."""


def _is_pointwise(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding in ((0, 0), "valid")
    )


def _project_in_strips(lateral: nn.Module, project: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``project(lateral(x))`` for 1x1 convolutions on (B, C, H, W), over strips of rows on CPU."""
    rows = max(1, STRIP_PIXELS // (x.shape[0] * x.shape[-1]))
    if rows >= x.shape[-2] or x.device.type != "cpu":
        return project(lateral(x))
    return torch.cat([project(lateral(strip)) for strip in x.split(rows, dim=-2)], dim=-2)


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

    def forward(
        self, sample: torch.Tensor, projections: Sequence[nn.Module | None] | None = None
    ) -> ImageEncoderOutput:
        """Encode ``sample``: (B, 3, H, W) normalised images at model resolution.

        ``projections`` (see :meth:`FpnNeck.forward`) apply to the kept levels, highest
        resolution first (SAM 2 projects levels 0 and 1 with the decoder's ``conv_s0`` /
        ``conv_s1``).
        """
        features = self.neck(self.trunk(sample), projections)
        if self.scalp > 0:
            features = features[: -self.scalp]
        return ImageEncoderOutput(
            backbone_fpn=features, position_encoding=self.neck.position_encoding
        )


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
