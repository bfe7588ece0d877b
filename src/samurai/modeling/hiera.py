"""Hiera trunk of the SAM 2 image encoder (hierarchical ViT with windowed attention).

Tensors inside the trunk are channels-last, ``(B, H, W, C)``. Parameter names are the official
checkpoint keys under ``image_encoder.trunk.``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samurai.config import HieraConfig
from samurai.modeling.common import MLP
from samurai.modeling.cpu_attention import scaled_dot_product_attention
from samurai.modeling.precision import Linear


def window_partition(
    x: torch.Tensor, window_size: int, pad_value: torch.Tensor | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split a feature map into non-overlapping windows, padding the bottom / right edges.

    Args:
        x: (B, H, W, C) tokens.
        window_size: side of the square windows.
        pad_value: (C,) value of the padded tokens; zeros when None.

    Returns:
        The windows, (B * num_windows, window_size, window_size, C), and the padded size (Hp, Wp).
        The attention sees padded tokens as ordinary keys, as upstream does.
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_value is not None and (pad_h or pad_w):
        padded = x.new_empty(b, h + pad_h, w + pad_w, c)
        padded[:, :h, :w] = x
        padded[:, h:] = pad_value
        padded[:, :h, w:] = pad_value
        x = padded
    elif pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * num_windows, ws, ws, C) -> (B, H, W, C)."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.reshape(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def max_pool_channels_last(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """``nn.MaxPool2d(kernel_size=stride, stride=stride)`` (floor mode) on (B, H, W, C) tokens."""
    # the channels-last max-pool kernel reads the (B, H, W, C) memory directly (no copy)
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: (B, 3, H, W) image -> (B, H/4, W/4, C) tokens."""

    def __init__(self, *, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A channels-last convolution (same values, faster) makes the (B, H, W, C) view
        # contiguous, which the first stage's LayerNorm and residual adds need to run at speed.
        return self.proj(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled (stage transitions).

    Input (B, H, W, dim) -> output (B, H / s, W / s, dim_out), s = the query stride (1 if none).
    """

    def __init__(
        self, *, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        if dim_out % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide dim_out={dim_out}")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = Linear(dim, dim_out * 3)
        self.proj = Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """The attention between the projections: (B, H, W, 3 * dim_out) -> (B, H', W', dim_out)."""
        b, h, w, _ = qkv.shape
        heads = self.num_heads
        # (B, H*W, 3, heads, hd) -> 3 x (B, heads, H*W, hd)
        q, k, v = qkv.reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.q_stride is not None:
            # pooling is per channel: pool each head's (H, W, hd) map
            q = max_pool_channels_last(q.reshape(b * heads, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, heads, h * w, -1)
        x = scaled_dot_product_attention(q, k, v)
        return x.transpose(1, 2).reshape(b, h, w, -1)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; at a stage change it widens channels and pools by ``q_stride``.

    Input (B, H, W, dim) -> output (B, H / s, W / s, dim_out).
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(
            dim=dim, dim_out=dim_out, num_heads=num_heads, q_stride=q_stride
        )
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = max_pool_channels_last(shortcut, self.q_stride)
        window_size = self.window_size
        if window_size > 0 and (x.shape[1] % window_size or x.shape[2] % window_size):
            # The projections run on the map's own tokens only: upstream pads the normed map
            # with zeros before them, so a padded token's q, k and v are the projection of a
            # zero token, filled in here (Hiera-B+ stage 3: 4096 tokens instead of 4900).
            pad_value = self.attn.qkv(x.new_zeros(x.shape[-1]))
            qkv, _ = window_partition(self.attn.qkv(x), window_size, pad_value)
        elif window_size > 0:
            # no padding: partitioning the block input copies a third of what its q, k, v are
            qkv = self.attn.qkv(window_partition(x, window_size)[0])
        else:
            qkv = self.attn.qkv(x)
        x = self.attn.attend(qkv)
        if window_size > 0:
            if self.q_stride is not None:
                window_size //= self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded_hw = (-(-h // window_size) * window_size, -(-w // window_size) * window_size)
            x = window_unpartition(x, window_size, padded_hw, (h, w))
        x = self.attn.proj(x)
        # in place on freshly computed tensors only (the block input may be a kept stage output)
        x = x.add_(shortcut)
        return self.mlp(self.norm2(x)).add_(x)


STRIP_TOKENS = 8192
"""Tokens per strip (first-stage tokens) where the leading windowed blocks run strip by strip."""


class Hiera(nn.Module):
    """Hierarchical vision transformer (Hiera, arXiv:2306.00989) as configured in SAM 2.

    Four stages; each later stage halves the resolution (query pooling in its first block) and
    multiplies channels by ``dim_mul`` and heads by ``head_mul``. Blocks attend within windows
    of ``window_spec[stage]`` tokens, except those in ``global_att_blocks``.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        stages: tuple[int, ...],
        global_att_blocks: tuple[int, ...],
        window_spec: tuple[int, ...],
        window_pos_embed_bkg_spatial_size: tuple[int, int],
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError("stages and window_spec must have the same length")
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {q_pool}")
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.window_spec = tuple(window_spec)
        self.global_att_blocks = tuple(global_att_blocks)
        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )
        self._pos_embed_cache: tuple[tuple, torch.Tensor] | None = None
        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(stages)):
            dim_out = embed_dim
            # The window size lags by one block: a stage's first (pooling) block still uses the
            # previous stage's window, as upstream does.
            window_size = 0 if i in self.global_att_blocks else window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out = int(embed_dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
            block = MultiScaleBlock(
                dim=embed_dim,
                dim_out=dim_out,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                q_stride=q_stride if i in q_pool_blocks else None,
                window_size=window_size,
            )
            self.blocks.append(block)
            embed_dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    @classmethod
    def from_config(cls, config: HieraConfig) -> Hiera:
        """Build the trunk described by a :class:`~samurai.config.HieraConfig`."""
        return cls(
            embed_dim=config.embed_dim,
            num_heads=config.num_heads,
            stages=config.stages,
            global_att_blocks=config.global_att_blocks,
            window_spec=config.window_spec,
            window_pos_embed_bkg_spatial_size=config.window_pos_embed_bkg_spatial_size,
            q_pool=config.q_pool,
            q_stride=config.q_stride,
            dim_mul=config.dim_mul,
            head_mul=config.head_mul,
            mlp_ratio=config.mlp_ratio,
        )

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Background embedding resized (bicubic) to ``hw`` plus the tiled window embedding.

        Returns (1, H, W, C); H and W must be multiples of ``window_spec[0]``. Without autograd
        the result is cached per size and parameter version (the bicubic resize costs 20 ms per
        1024 px frame); never modify it in place.
        """
        params = (self.pos_embed, self.pos_embed_window)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._compute_pos_embed(hw)
        if any(p.is_inference() for p in params):
            # a model built under inference_mode: its parameters have no version counter to
            # tell whether they changed, so nothing is cached
            return self._compute_pos_embed(hw)
        key = (hw, self.pos_embed.device, self.pos_embed.dtype, *(p._version for p in params))
        if self._pos_embed_cache is None or self._pos_embed_cache[0] != key:
            # a plain tensor even under inference_mode, usable later with autograd on
            with torch.inference_mode(False), torch.no_grad():
                self._pos_embed_cache = (key, self._compute_pos_embed(hw))
        return self._pos_embed_cache[1]

    def _compute_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        window = self.pos_embed_window
        wh, ww = window.shape[-2:]
        if h % wh or w % ww:
            raise ValueError(
                f"patch grid {h}x{w} is not a multiple of the {wh}x{ww} window position embedding"
            )
        pos_embed = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        pos_embed = pos_embed + window.tile(1, 1, h // wh, w // ww)
        return pos_embed.permute(0, 2, 3, 1).contiguous()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the trunk.

        Args:
            x: (B, 3, H, W) normalised image; H / 4 and W / 4 must be multiples of
                ``window_spec[0]`` (H = W = 1024, 512 or 256 for the SAM 2 configs).

        Returns:
            The 4 stage outputs, highest resolution first: (B, C_i, H / 4 / 2^i, W / 4 / 2^i)
            with C_i = embed_dim * dim_mul^i (channels-last memory layout).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) image tensor, got {tuple(x.shape)}")
        x = self.patch_embed(x)
        x = x + self._get_pos_embed((x.shape[1], x.shape[2]))
        outputs = []
        first = 0
        if x.device.type == "cpu" and not torch.is_grad_enabled():
            # on GPUs the caching allocator reuses whole maps and larger kernels run faster
            first, x, outputs = self._forward_strips(x)
        for i in range(first, len(self.blocks)):
            x = self.blocks[i](x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

    def strip_plan(self, hw: tuple[int, int]) -> tuple[int, int]:
        """How the leading blocks of a ``hw`` token map run strip by strip.

        A windowed block whose windows tile its map without padding mixes no tokens across
        window rows, so a run of such blocks gives the same result on any horizontal strip whose
        height is a multiple of every window (and pooling stride) it meets. Running the
        high-resolution stages strip by strip keeps their activations (the first stage's MLP
        alone is 96 MiB per frame at 1024 px) a few MiB each.

        Returns:
            (number of leading blocks, strip height in tokens); (0, 0) when no strip is smaller
            than the map.
        """
        h, w = hw
        scale, rows, count = 1, 1, 0
        for block in self.blocks:
            ws = block.window_size
            if ws == 0 or h % (scale * ws) or w % (scale * ws):
                break
            rows = math.lcm(rows, scale * ws)
            if block.q_stride is not None:
                scale *= block.q_stride[0]
                if block.q_stride[0] != block.q_stride[1] or h % scale or w % scale:
                    break
            count += 1
        if count == 0:
            return 0, 0
        rows *= max(1, STRIP_TOKENS // (rows * w))
        return (count, rows) if rows < h else (0, 0)

    def _forward_strips(self, x: torch.Tensor) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
        """Run the leading blocks of :meth:`strip_plan` strip by strip (CPU, no autograd).

        Returns the number of blocks run, their output map and the stage outputs among them.
        """
        count, rows = self.strip_plan((x.shape[1], x.shape[2]))
        if count == 0:
            return 0, x, []
        keep = [i for i in range(count) if i in self.stage_ends or i == count - 1]
        scales = [1] * count  # each block's output stride relative to x
        for i, block in enumerate(self.blocks[:count]):
            stride = 1 if block.q_stride is None else block.q_stride[0]
            scales[i] = (scales[i - 1] if i else 1) * stride
        full: dict[int, torch.Tensor] = {}
        for top in range(0, x.shape[1], rows):
            y = x[:, top : top + rows]
            for i in range(count):
                y = self.blocks[i](y)
                if i in keep:
                    scale = scales[i]
                    if i not in full:
                        b, _, w, c = y.shape
                        full[i] = y.new_empty(b, x.shape[1] // scale, w, c)
                    full[i][:, top // scale : top // scale + y.shape[1]] = y
        outputs = [full[i].permute(0, 3, 1, 2) for i in keep if i in self.stage_ends]
        return count, full[count - 1], outputs
