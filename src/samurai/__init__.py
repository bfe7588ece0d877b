"""samurai: zero-shot video object tracking and segmentation (SAM 2 / SAM 2.1 + SAMURAI).

The public names are imported on first use (PEP 562), so ``import samurai.<module>`` (the CLI's
help and argument checks, for one) does not pay for importing torch. Importing the package also
caps how long idle OpenMP threads spin (:mod:`samurai.openmp`), before torch is loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from samurai.openmp import limit_spinning

limit_spinning()

if TYPE_CHECKING:
    from samurai.build import build_model
    from samurai.compat.builders import (
        build_sam2,
        build_sam2_hf,
        build_sam2_video_predictor,
        build_sam2_video_predictor_hf,
    )
    from samurai.config import (
        VARIANTS,
        ModelConfig,
        RuntimeOptions,
        SamuraiConfig,
        TrackerConfig,
    )
    from samurai.tracking.image_predictor import SAM2ImagePredictor
    from samurai.tracking.predictor import VideoPredictor
    from samurai.tracking.results import FrameResult, ObjectResult
    from samurai.tracking.sam2_api import SAM2VideoPredictor
    from samurai.tracking.tracker import Tracker

_MODULE_OF = {
    "VARIANTS": "samurai.config",
    "FrameResult": "samurai.tracking.results",
    "ModelConfig": "samurai.config",
    "ObjectResult": "samurai.tracking.results",
    "RuntimeOptions": "samurai.config",
    "SAM2ImagePredictor": "samurai.tracking.image_predictor",
    "SAM2VideoPredictor": "samurai.tracking.sam2_api",
    "SamuraiConfig": "samurai.config",
    "Tracker": "samurai.tracking.tracker",
    "TrackerConfig": "samurai.config",
    "VideoPredictor": "samurai.tracking.predictor",
    "build_model": "samurai.build",
    "build_sam2": "samurai.compat.builders",
    "build_sam2_hf": "samurai.compat.builders",
    "build_sam2_video_predictor": "samurai.compat.builders",
    "build_sam2_video_predictor_hf": "samurai.compat.builders",
}

__all__ = [
    "VARIANTS",
    "FrameResult",
    "ModelConfig",
    "ObjectResult",
    "RuntimeOptions",
    "SAM2ImagePredictor",
    "SAM2VideoPredictor",
    "SamuraiConfig",
    "Tracker",
    "TrackerConfig",
    "VideoPredictor",
    "build_model",
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'samurai' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
