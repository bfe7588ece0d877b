"""Float32 CPU GEMMs through oneDNN or PyTorch's own (MKL) path, whichever this CPU runs faster.

PyTorch sends float32 CPU matmuls to MKL. On AMD CPUs MKL's sgemm takes its AVX2 code path:
190-200 GFLOP/s on the 2-core Zen 5 these notes come from, where oneDNN (bundled with PyTorch for
its convolutions) runs the same products at 380-450 GFLOP/s. On an Intel Xeon with AVX-512 and
AMX the order was the other way round (MKL 298 GFLOP/s, oneDNN 106-137 GFLOP/s). So the backend is
not chosen by vendor but measured: :func:`backend_choice` times both on a few model-shaped
products per shape class (:data:`CALIBRATION_SHAPES`, a few hundred ms, once per machine, torch
version and thread count, cached in ``$SAMURAI_HOME/gemm-backends.json``; processes that start
together measure once, under a file lock, and share that choice). Both backends compute in IEEE
float32 with float32 accumulation: results differ by summation order only (~1e-6).

:func:`linear` and :func:`matmul_nt` take oneDNN for float32 CPU tensors on x86-64 when autograd
is off (oneDNN's op has no backward) and the measurement chose it for the product's shape class.
``SAMURAI_ONEDNN=0`` never uses oneDNN, ``SAMURAI_ONEDNN=1`` always does where it can (A/B runs);
unset or ``auto`` measures.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import fcntl
except ImportError:  # Windows: no lock, each process measures on its own
    fcntl = None  # type: ignore[assignment]

ENV_VAR = "SAMURAI_ONEDNN"
CACHE_FILE = "gemm-backends.json"

logger = logging.getLogger(__name__)

CALIBRATION_SHAPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    # (M, K, N) products of SAM 2.1 at 1024 px, scaled to a few ms each
    "narrow": ((4096, 96, 384), (4096, 256, 64)),  # Hiera stage 1-2, 64-256-channel layers
    "wide": ((1024, 384, 1536), (1024, 1024, 256)),  # Hiera stage 3-4, memory-attention MLP
    "attention": ((1024, 64, 4096), (1024, 4096, 64)),  # one head: scores, then values
}
"""Shape classes and the products that stand for each in the calibration."""

NARROW_CHANNELS = 256
"""A linear layer whose smaller side has fewer channels is in the "narrow" class."""


def _env_mode(value: str | None = None) -> str:
    value = (os.environ.get(ENV_VAR, "auto") if value is None else value).strip().lower()
    if value in {"0", "false", "no", "off"}:
        return "off"
    if value in {"1", "true", "yes", "on"}:
        return "on"
    return "auto"


@functools.cache
def onednn_supported() -> bool:
    """True when this PyTorch can run float32 linears through oneDNN on this CPU (x86-64)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False  # aarch64 builds route oneDNN through ACL, which is not faster there
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_available() -> bool:
    """True when float32 CPU GEMMs may go through oneDNN (supported, not turned off)."""
    return _env_mode() != "off" and onednn_supported()


def _cpu_key() -> str:
    """The CPU's vendor, model and feature flags (hashed): what the measured choice depends on."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    flags = info.get("flags", info.get("Features", ""))
    digest = hashlib.sha1(flags.encode()).hexdigest()[:12]
    model = " ".join(filter(None, (info.get("vendor_id"), info.get("model name"))))
    return f"{model or platform.machine()} flags:{digest}"


def _cache_path(home: str | None) -> Path:
    return Path(home or Path.home() / ".cache" / "samurai") / CACHE_FILE


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_backends(repeats: int = 3) -> dict[str, dict[str, float]]:
    """Seconds (best of ``repeats``) per shape class for ``{"onednn": ..., "aten": ...}``."""
    generator = torch.Generator().manual_seed(0)
    timings: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for kind, shapes in CALIBRATION_SHAPES.items():
            pairs = [
                (torch.randn(m, k, generator=generator), torch.randn(n, k, generator=generator))
                for m, k, n in shapes
            ]

            def run_onednn(pairs=pairs) -> None:
                for a, b in pairs:
                    torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "none")

            def run_aten(pairs=pairs) -> None:
                for a, b in pairs:
                    F.linear(a, b)

            run_onednn(), run_aten()  # warm-up: allocation, oneDNN primitive creation
            # interleaved, so a burst of load elsewhere hits both backends alike
            onednn = aten = float("inf")
            for _ in range(repeats):
                onednn = min(onednn, _seconds(run_onednn))
                aten = min(aten, _seconds(run_aten))
            timings[kind] = {"onednn": onednn, "aten": aten}
    return timings


def _read_choice(path: Path, key: str) -> dict[str, bool] | None:
    try:
        cached = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(cached, dict) and set(cached.get("onednn", {})) == set(CALIBRATION_SHAPES):
        return {kind: bool(v) for kind, v in cached["onednn"].items()}
    return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock next to ``path`` (none where it cannot be taken: a read-only home,
    a platform without ``fcntl``)."""
    fd = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _calibrate(threads: int, path: Path) -> dict[str, bool]:
    key = f"{_cpu_key()} | torch {torch.__version__} | threads {threads}"
    choice = _read_choice(path, key)
    if choice is not None:
        return choice
    # Processes that start together (a server's workers) measure once, under the lock, and all
    # read that choice: measured apart on a loaded machine they could choose differently and
    # give the same job results ~1e-5 apart.
    with _exclusive(path):
        choice = _read_choice(path, key)
        if choice is not None:
            return choice
        start = time.perf_counter()
        timings = measure_backends()
        choice = {kind: t["onednn"] < t["aten"] for kind, t in timings.items()}
        logger.debug(
            "GEMM backends measured in %.0f ms: %s", 1e3 * (time.perf_counter() - start), timings
        )
        try:
            try:
                entries = json.loads(path.read_text())
                entries = entries if isinstance(entries, dict) else {}
            except (OSError, ValueError):
                entries = {}
            entries[key] = {"onednn": choice, "seconds": timings}
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home: measure again in the next process
    return choice


@functools.cache
def _choice(threads: int, env_value: str | None, home: str | None) -> dict[str, bool]:
    # every input is an argument: a changed environment (tests, A/B runs) is a new cache entry
    mode = _env_mode(env_value or "auto")
    if mode == "off" or not onednn_supported():
        return dict.fromkeys(CALIBRATION_SHAPES, False)
    if mode == "on":
        return dict.fromkeys(CALIBRATION_SHAPES, True)
    return _calibrate(threads, _cache_path(home))


def _current_choice() -> dict[str, bool]:
    environ = os.environ
    return _choice(torch.get_num_threads(), environ.get(ENV_VAR), environ.get("SAMURAI_HOME"))


def backend_choice() -> dict[str, str]:
    """The backend each shape class uses here and now: ``{"narrow": "onednn" | "aten", ...}``."""
    return {kind: "onednn" if on else "aten" for kind, on in _current_choice().items()}


def shape_class(k: int, n: int) -> str:
    """The calibration class of a linear layer with ``k`` inputs and ``n`` outputs."""
    return "narrow" if min(k, n) < NARROW_CHANNELS else "wide"


def uses_onednn(*tensors: torch.Tensor, kind: str | None = None) -> bool:
    """True when a product of these tensors goes through oneDNN: float32 CPU, autograd off, and
    measured faster for its shape class (``kind``, else that of a linear layer whose weight is
    ``tensors[-1]``)."""
    if not (
        all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
        and not torch.is_grad_enabled()
        and onednn_available()
    ):
        return False
    if kind is None:
        weight = tensors[-1]
        kind = shape_class(weight.shape[-1], weight.shape[0]) if weight.dim() == 2 else "wide"
    return _current_choice()[kind]


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
"""Activations :func:`linear` can apply (GELU is the exact, erf one)."""


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    *,
    kind: str | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``x @ weight^T + bias`` over the last axis of ``x``.

    ``activation`` ("relu" or "gelu") is applied to the result; oneDNN applies it as the GEMM
    writes its output (one pass over the activations fewer, 1-2 ms per Hiera MLP at 1024 px).
    ``kind`` names the shape class that picks the backend (default: from the weight's shape).
    """
    if activation is not None and activation not in ACTIVATIONS:
        names = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {activation!r}; expected one of {names}")
    if uses_onednn(x, weight, kind=kind):
        if not (weight.is_contiguous() or weight.t().is_contiguous()):
            # oneDNN reads any other weight layout element by element: a (256, 256) view of
            # a (256, 512) matrix took 2.7 s instead of 2 ms
            weight = weight.contiguous()
        # the last argument is the GELU approximation ("none": erf), ignored by the others
        attr = activation or "none"
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], "none")
    y = F.linear(x, weight, bias)
    return y if activation is None else ACTIVATIONS[activation](y)


def matmul_nt(a: torch.Tensor, b: torch.Tensor, *, kind: str | None = None) -> torch.Tensor:
    """``a @ b^T`` for ``a`` of shape ``(..., M, K)`` and a 2-D ``b`` of shape ``(N, K)``."""
    return linear(a, b, kind=kind)
