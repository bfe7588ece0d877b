"""Float32 CPU GEMMs through oneDNN instead of MKL.

PyTorch sends float32 CPU matmuls to MKL, whose sgemm takes its AVX2 code path on AMD CPUs:
190-200 GFLOP/s on the 2-core Zen 5 these numbers come from, half of what its AVX-512 units do.
oneDNN, which PyTorch bundles for its convolutions, runs the same products at 380-450 GFLOP/s
(2-3.7x faster for every linear-layer shape of SAM 2.1-T at 1024 px) in IEEE float32 with float32
accumulation: results differ from MKL's by summation order only (about 1e-6 relative).

:func:`linear` and :func:`matmul_nt` take that path for float32 CPU tensors on x86-64 when
autograd is off (oneDNN's op has no backward); everything else goes to the usual PyTorch ops.
``SAMURAI_ONEDNN=0`` turns it off (for A/B measurements).
"""

from __future__ import annotations

import functools
import os
import platform

import torch
import torch.nn.functional as F

ENV_VAR = "SAMURAI_ONEDNN"


@functools.cache
def onednn_available() -> bool:
    """True when float32 CPU GEMMs can go through oneDNN (x86-64 PyTorch built with it)."""
    if os.environ.get(ENV_VAR, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False  # aarch64 builds route oneDNN through ACL, which is not faster there
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def uses_onednn(*tensors: torch.Tensor) -> bool:
    """True when a product of these tensors goes through oneDNN (float32 CPU, autograd off)."""
    return (
        all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
        and not torch.is_grad_enabled()
        and onednn_available()
    )


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
"""Activations :func:`linear` can apply (GELU is the exact, erf one)."""


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``x @ weight^T + bias`` over the last axis of ``x``.

    ``activation`` ("relu" or "gelu") is applied to the result; oneDNN applies it as the GEMM
    writes its output (one pass over the activations fewer, 1-2 ms per Hiera MLP at 1024 px).
    """
    if activation is not None and activation not in ACTIVATIONS:
        names = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {activation!r}; expected one of {names}")
    if uses_onednn(x, weight):
        if not (weight.is_contiguous() or weight.t().is_contiguous()):
            # oneDNN reads any other weight layout element by element: a (256, 256) view of
            # a (256, 512) matrix took 2.7 s instead of 2 ms
            weight = weight.contiguous()
        # the last argument is the GELU approximation ("none": erf), ignored by the others
        attr = activation or "none"
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], "none")
    y = F.linear(x, weight, bias)
    return y if activation is None else ACTIVATIONS[activation](y)


def matmul_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b^T`` for ``a`` of shape ``(..., M, K)`` and a 2-D ``b`` of shape ``(N, K)``."""
    return linear(a, b)
