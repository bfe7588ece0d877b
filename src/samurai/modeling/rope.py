"""Axial 2-D rotary position encoding (RoPE) of the memory attention.

Same encoding as the official ``compute_axial_cis`` / ``apply_rotary_enc``
(``sam2/modeling/position_encoding.py``), written with real cos/sin tables instead of complex
numbers. Channel pairs ``(2i, 2i + 1)`` of a head are rotated together; the first half of the
pairs by angles ``x * f_j``, the second half by ``y * f_j``, with ``f_j = theta ** (-4j / dim)``
and tokens ordered row-major over the ``end_y x end_x`` grid (token ``t`` at ``x = t % end_x``,
``y = t // end_x``).
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=32)
def axial_rope_tables(
    dim: int,
    end_x: int,
    end_y: int,
    theta: float,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of the axial rotation angles, cached per argument tuple.

    Args:
        dim: channels per attention head (a multiple of 4).
        end_x: grid width (tokens per row).
        end_y: grid height.
        theta: frequency base (10000 in SAM 2).
        device: where the tables live.
        dtype: dtype of the tables (angles and cos/sin are computed in float32 first).

    Returns:
        ``(cos, sin)``, each ``(end_x * end_y, dim // 2)``. Shared cached tensors: never modify
        them in place.
    """
    if dim % 4 != 0:
        raise ValueError(f"axial RoPE needs a head dim divisible by 4, got {dim}")
    # Plain tensors even when first called under inference_mode, so that they can also be used
    # in autograd-recorded code later.
    with torch.inference_mode(False):
        quarter = torch.arange(0, dim, 4, device=device)[: dim // 4].float()
        freqs = 1.0 / (theta ** (quarter / dim))
        t = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
        t_x = t % end_x
        t_y = torch.div(t, end_x, rounding_mode="floor")
        angles = torch.cat((torch.outer(t_x, freqs), torch.outer(t_y, freqs)), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def compute_axial_cis(
    dim: int, end_x: int, end_y: int, theta: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """The official complex form of the tables: ``(end_x * end_y, dim // 2)`` complex64."""
    cos, sin = axial_rope_tables(dim, end_x, end_y, theta, device=torch.device(device or "cpu"))
    return torch.complex(cos, sin)


def apply_axial_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, num_exclude: int = 0
) -> torch.Tensor:
    """Rotate channel pairs of ``x`` by the angles of a token grid.

    Args:
        x: ``(..., N, D)`` per-head queries or keys. The first ``N - num_exclude`` tokens must be
            ``r >= 1`` consecutive copies of the grid (``r`` memory frames of the same size,
            the official ``repeat_freqs_k``); the last ``num_exclude`` tokens (object pointers)
            are passed through unrotated.
        cos: ``(L, D // 2)`` from :func:`axial_rope_tables`, ``L`` = tokens of one grid.
        sin: ``(L, D // 2)``.
        num_exclude: tokens at the end that get no rotation.

    Returns:
        A new tensor shaped and typed like ``x``; ``x`` is not modified.
    """
    n_tokens, dim = x.shape[-2], x.shape[-1]
    grid = cos.shape[0]
    n_rope = n_tokens - num_exclude
    if n_rope < 0 or n_rope % grid != 0 or cos.shape[1] * 2 != dim:
        raise ValueError(
            f"cannot apply a {grid}-token RoPE grid of head dim {2 * cos.shape[1]} to "
            f"{n_rope} tokens of dim {dim} ({num_exclude} excluded)"
        )
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    shape = (n_rope // grid, grid)
    if torch.is_grad_enabled() and x.requires_grad:
        return _rotate_differentiable(x, cos, sin, n_rope, shape)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if n_rope > 0:
        # (..., r, L, D/2, 2): broadcasting the tables over r repeats the grid without a copy.
        src = x[..., :n_rope, :].unflatten(-2, shape).unflatten(-1, (-1, 2))
        dst = out[..., :n_rope, :].unflatten(-2, shape).unflatten(-1, (-1, 2))
        x0, x1 = src.unbind(-1)
        o0, o1 = dst.unbind(-1)
        # (x0 + i x1) * (cos + i sin), as the official complex product.
        torch.mul(x0, cos, out=o0)
        o0.addcmul_(x1, sin, value=-1.0)
        torch.mul(x1, cos, out=o1)
        o1.addcmul_(x0, sin)
    if num_exclude > 0:
        out[..., n_rope:, :] = x[..., n_rope:, :]
    return out


def _rotate_differentiable(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_rope: int, shape: tuple[int, int]
) -> torch.Tensor:
    """:func:`apply_axial_rope` without ``out=`` writes, for autograd."""
    x0, x1 = x[..., :n_rope, :].unflatten(-2, shape).unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
    rotated = rotated.flatten(-2).flatten(-3, -2)
    return torch.cat((rotated, x[..., n_rope:, :]), dim=-2)
