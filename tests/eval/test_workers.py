"""Eval workers: the predictor a worker tracks with."""

from __future__ import annotations

import pytest
import torch

from samurai.build import build_model
from samurai.eval.workers import PredictorSpec, SequenceTracker
from samurai.tracking.predictor import VideoPredictor


@pytest.mark.parametrize(
    ("dtype", "compute"), [("bfloat16", torch.bfloat16), ("float32", torch.float32)]
)
def test_bfloat16_is_the_split_model_setting(dtype: str, compute: torch.dtype) -> None:
    # as samurai track --dtype bfloat16: split-bfloat16 layers that keep the decisions, not the
    # plain autocast that flips them
    model = build_model("sam2.1_hiera_t")
    spec = PredictorSpec("sam2.1_hiera_t", None, "cpu", dtype, True, {})
    SequenceTracker(spec, None, VideoPredictor(model))
    assert model.compute_dtype == compute
