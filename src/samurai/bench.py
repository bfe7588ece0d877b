"""Measurements behind ``samurai bench`` and ``benchmarks/``: time per component, FLOPs, peak.

Nothing here asserts a speed; numbers are printed and recorded in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
import platform
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from samurai.modeling.gemm import matmul_nt
from samurai.tracking.predictor import VideoPredictor


def machine_summary() -> str:
    """One line naming the CPU / GPU, threads and torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads, {gpu}, torch {torch.__version__}"


def matmul_peak_gflops(
    dtype: torch.dtype = torch.float32, *, n: int = 2048, device: str = "cpu", seconds: float = 1.5
) -> float:
    """Achieved GFLOP/s of a large square matmul (this machine's practical peak).

    Float32 on CPU goes through :func:`samurai.modeling.gemm.matmul_nt`, the model's own GEMM
    (oneDNN where available: twice MKL's speed on AMD CPUs).
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with torch.no_grad():
        matmul_nt(a, b)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            matmul_nt(a, b)
            count += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def _cpu_flash_attention_flops(query, key, value, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _onednn_linear_flops(x_shape, weight_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return 2 * math.prod(x_shape) * weight_shape[0]


# PyTorch's counter knows the CUDA attention kernels only (SAM 2's Hiera attends with the CPU
# one), and not oneDNN's linear op (samurai.modeling.gemm).
_EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
    torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops,
}


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return int(counter.get_total_flops())


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB: since the last `reset_peak_rss` where that
    worked (Linux), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Restart the peak count of `peak_rss_mb` at the current resident size (Linux >= 4.0:
    ``/proc/self/clear_refs``); False where the system cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


_MISSING = object()


@dataclass
class ComponentTimer:
    """Wall time per named component, accumulated over calls."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _patched: list[tuple[Any, str, Any]] = field(default_factory=list)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def wrap(
        self,
        obj: Any,
        attr: str,
        name: str,
        *,
        into: Callable[[], ComponentTimer] | None = None,
    ) -> None:
        """Time every call of ``obj.attr`` under ``name`` (instance attribute patch), in this
        timer or, with ``into``, in the timer it returns at call time."""
        original = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with (self if into is None else into()).measure(name):
                return original(*args, **kwargs)

        self._patched.append((obj, attr, obj.__dict__.get(attr, _MISSING)))
        object.__setattr__(obj, attr, timed)  # also on frozen dataclasses

    def restore(self) -> None:
        """Undo every ``wrap`` (newest first)."""
        for obj, attr, previous in reversed(self._patched):
            if previous is _MISSING:
                object.__delattr__(obj, attr)
            else:
                object.__setattr__(obj, attr, previous)
        self._patched.clear()


_MODEL_PARTS = (
    ("encode_image", "image encoder"),
    ("condition_on_memory", "memory attention"),
    ("decode", "mask decoder"),
    ("encode_memory", "memory encoder"),
)
_STEPPER_PARTS = (
    ("select_memory", "memory selection"),
    ("forget_unreachable", "memory pruning"),
)


def _instrument_own(predictor: VideoPredictor, timer: ComponentTimer) -> None:
    """Time the parts that belong to this predictor (its model and stepper)."""
    for attr, name in _MODEL_PARTS:
        timer.wrap(predictor.model, attr, name)
    stepper = predictor.stepper
    timer.wrap(stepper.candidate_selector, "select", "selection (KF / best IoU)")
    for attr, name in _STEPPER_PARTS:
        if hasattr(stepper, attr):
            timer.wrap(stepper, attr, name)


def instrument(predictor: VideoPredictor, timer: ComponentTimer) -> None:
    """Time the tracker's components: encoder, memory attention, decoder, memory encoder,
    SAMURAI / SAM 2 selection bookkeeping, frame decode + resize."""
    _instrument_own(predictor, timer)
    from samurai.tracking import step as step_module

    timer.wrap(step_module, "mask_to_box", "candidate boxes")


class Turns:
    """Several predictors measured turn by turn (``samurai bench --trackers``), each with its
    own `ComponentTimer`; the module-level parts every predictor shares are timed into the
    timer of the predictor whose turn it is (`turn`). Each predictor needs its own model.
    """

    def __init__(self, predictors: list[VideoPredictor], timers: list[ComponentTimer]) -> None:
        if len({id(p.model) for p in predictors}) < len(predictors):
            raise ValueError("predictors measured by turns need a model each")
        self.timers = timers
        self.current = 0
        for predictor, timer in zip(predictors, timers, strict=True):
            _instrument_own(predictor, timer)
        from samurai.tracking import step as step_module

        self._shared = ComponentTimer()  # holds the module patch
        self._shared.wrap(
            step_module, "mask_to_box", "candidate boxes", into=lambda: self.timers[self.current]
        )

    def turn(self, index: int) -> None:
        """From now on, shared parts count for predictor ``index``."""
        self.current = index

    def restore(self) -> None:
        """Undo every patch."""
        for timer in self.timers:
            timer.restore()
        self._shared.restore()
