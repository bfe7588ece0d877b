"""samurai: zero-shot video object tracking and segmentation (SAM 2 / SAM 2.1 + SAMURAI)."""

from samurai.api import build_sam2, build_sam2_video_predictor
from samurai.build import build_model
from samurai.config import (
    VARIANTS,
    ModelConfig,
    RuntimeOptions,
    SamuraiConfig,
    TrackerConfig,
)
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.results import FrameResult, ObjectResult
from samurai.tracking.sam2_api import SAM2VideoPredictor
from samurai.tracking.tracker import Tracker

__all__ = [
    "VARIANTS",
    "FrameResult",
    "ModelConfig",
    "ObjectResult",
    "RuntimeOptions",
    "SAM2VideoPredictor",
    "SamuraiConfig",
    "Tracker",
    "TrackerConfig",
    "VideoPredictor",
    "build_model",
    "build_sam2",
    "build_sam2_video_predictor",
]
