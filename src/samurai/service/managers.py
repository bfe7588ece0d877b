"""The models a service worker (a local process or a Ray actor) keeps loaded: one
`InferenceManager` per variant, reused across jobs and rebuilt only when a job's SAMURAI
options differ from the cached one's."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from samurai.service.schemas import JobParams

ManagerFactory = Callable[..., Any]
"""``factory(variant, *, checkpoint, device, dtype, samurai_mode, tracker, overrides) ->
manager`` with an `InferenceManager`-compatible ``process_video``; must be picklable (a
module-level function)."""


class ManagerCache:
    """One manager per variant, built by ``factory`` on first use."""

    def __init__(
        self,
        factory: ManagerFactory,
        *,
        checkpoints: Mapping[str, Path | str],
        device: str,
        dtype: str,
        image_size: int | None,
    ) -> None:
        self.factory, self.checkpoints = factory, dict(checkpoints)
        self.device, self.dtype, self.image_size = device, dtype, image_size
        self.managers: dict[str, tuple[tuple[Any, ...], Any]] = {}

    def get(self, params: JobParams, checkpoint: Path | str | None = None) -> Any:
        """The manager of ``params.model``; ``checkpoint`` overrides the configured weights."""
        key = (params.tracker, tuple(sorted(params.options.items())))
        cached = self.managers.get(params.model)
        if cached is not None and cached[0] == key:
            return cached[1]
        self.drop(params.model)
        overrides = dict(params.options)
        if self.image_size is not None:
            overrides["image_size"] = self.image_size
        weights = checkpoint if checkpoint is not None else self.checkpoints.get(params.model)
        manager = self.factory(
            params.model,
            checkpoint=None if weights is None else Path(weights),
            device=self.device,
            dtype=self.dtype,
            samurai_mode=params.samurai_mode,
            tracker=params.tracker,
            overrides=overrides,
        )
        self.managers[params.model] = (key, manager)
        return manager

    def drop(self, variant: str) -> None:
        """Forget a variant's manager (after an unexpected error it may be in a bad state)."""
        if self.managers.pop(variant, None) is not None:
            gc.collect()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
