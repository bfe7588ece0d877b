"""Preprocessing of the video predictor (PIL bicubic) and the image predictor (antialiased)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from reference import golden
from samurai.io.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize_uint8_image,
    preprocess_image,
    preprocess_video_frame,
    resize_video_frame,
)


def _random_image(height: int = 37, width: int = 53, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _upstream_video_normalisation(resized: np.ndarray) -> torch.Tensor:
    """The official ``load_video_frames``: float64 ``/ 255`` -> float32, then float32 mean / std."""
    image = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
    image -= torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    image /= torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return image


@pytest.mark.golden
def test_video_resize_matches_golden(bedroom_frames: list[Path]) -> None:
    resized = resize_video_frame(Image.open(bedroom_frames[0]), 1024)
    np.testing.assert_array_equal(resized, golden("modules_t")["f0_image_resized_uint8"])


@pytest.mark.golden
def test_video_frame_preprocessing_is_upstream_bit_exact(bedroom_frames: list[Path]) -> None:
    image = Image.open(bedroom_frames[0])
    x = preprocess_video_frame(image, 1024)
    assert x.shape == (3, 1024, 1024) and x.dtype == torch.float32 and x.is_contiguous()
    expected = _upstream_video_normalisation(golden("modules_t")["f0_image_resized_uint8"])
    assert torch.equal(x, expected)


def test_normalisation_is_bit_exact_for_every_uint8_value() -> None:
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    assert torch.equal(normalize_uint8_image(values), _upstream_video_normalisation(values))
    assert torch.equal(
        normalize_uint8_image(torch.from_numpy(values)), normalize_uint8_image(values)
    )


def test_video_numpy_and_pil_inputs_agree() -> None:
    array = _random_image()
    from_numpy = preprocess_video_frame(array, 64)
    from_pil = preprocess_video_frame(Image.fromarray(array), 64)
    assert from_numpy.shape == (3, 64, 64)
    assert torch.equal(from_numpy, from_pil)
    # any PIL mode is converted to RGB first
    gray = Image.fromarray(array[:, :, 0])
    rgb_of_gray = np.repeat(array[:, :, :1], 3, axis=2)
    assert torch.equal(preprocess_video_frame(gray, 32), preprocess_video_frame(rgb_of_gray, 32))


def test_image_preprocessing_follows_torchvision_semantics() -> None:
    array = _random_image(90, 160)
    x = preprocess_image(array, 48)
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32
    chw = torch.from_numpy(array).permute(2, 0, 1).contiguous().float() / 255
    resized = F.interpolate(
        chw[None], size=(48, 48), mode="bilinear", align_corners=False, antialias=True
    )[0]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.equal(x, (resized - mean) / std)
    assert torch.equal(preprocess_image(Image.fromarray(array), 48), x)


def test_image_and_video_pipelines_differ() -> None:
    # downscaling: antialiased bilinear on floats is not PIL bicubic on uint8
    array = _random_image(90, 160)
    assert not torch.allclose(preprocess_image(array, 48), preprocess_video_frame(array, 48))


def test_constant_image_normalises_to_constants() -> None:
    array = np.full((20, 30, 3), 255, dtype=np.uint8)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    for x in (preprocess_image(array, 16), preprocess_video_frame(array, 16)):
        torch.testing.assert_close(x[:, 5, 5], expected)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((8, 8), dtype=np.uint8), "RGB"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "RGB"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "non-empty"),
        ([[0, 0, 0]], "numpy"),
    ],
)
def test_bad_inputs_raise(bad: object, match: str) -> None:
    for fn in (preprocess_image, preprocess_video_frame):
        with pytest.raises(ValueError, match=match):
            fn(bad, 16)  # type: ignore[arg-type]


def test_bad_size_and_tensor_raise() -> None:
    with pytest.raises(ValueError, match="size"):
        preprocess_image(_random_image(), 0)
    with pytest.raises(ValueError, match="size"):
        resize_video_frame(_random_image(), -4)
    with pytest.raises(ValueError, match="uint8"):
        normalize_uint8_image(torch.zeros(4, 4, 3))
