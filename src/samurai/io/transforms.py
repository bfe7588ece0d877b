"""Image preprocessing of the official SAM 2 predictors, reproduced bit for bit.

Two different pipelines exist upstream and both are kept:

* video predictor (``sam2/utils/misc.py``): PIL ``convert("RGB").resize((size, size))``
  (bicubic) on uint8, then ``/ 255`` and mean / std normalisation;
* image predictor (``sam2/utils/transforms.py``): ``ToTensor`` (float ``/ 255``), then
  ``Resize((size, size))`` on the float tensor (bilinear, antialiased), then ``Normalize``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

ImageLike = Image.Image | np.ndarray
"""A PIL image (any mode, converted to RGB) or an (H, W, 3) uint8 RGB array."""


def _check_rgb_uint8(array: np.ndarray) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a PIL image or a numpy array, got {type(array).__name__}")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {array.shape}")
    return array


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")


def _to_rgb_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(_check_rgb_uint8(image))


def _chw_float(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (``ToTensor``: float32 division by 255)."""
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, order="C")
    return _tensor_chw_float(torch.from_numpy(array))


def _tensor_chw_float(tensor: torch.Tensor) -> torch.Tensor:
    # contiguous CHW as torchvision's ToTensor: later kernels see the same layout as upstream
    return tensor.permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


def _normalize_(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """In place ``(x - mean) / std`` on (3, H, W) float32, with float32 constants as upstream."""
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return x.sub_(mean_t).div_(std_t)


def resize_video_frame(image: ImageLike, size: int = 1024) -> np.ndarray:
    """Square resize of a video frame as the official video predictor does it.

    Args:
        image: PIL image or (H, W, 3) uint8 RGB array (numpy goes through PIL as well).
        size: output side (the model's ``image_size``).

    Returns:
        (size, size, 3) uint8 RGB: ``Image.convert("RGB").resize((size, size))`` (PIL bicubic).
    """
    _check_size(size)
    return np.asarray(_to_rgb_pil(image).resize((size, size)))


def normalize_uint8_image(
    image: np.ndarray | torch.Tensor,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 ``(x / 255 - mean) / std``.

    ``x / 255`` in float32 equals upstream's float64 division rounded to float32 for every
    uint8 value, so this matches the video predictor bit for bit.
    """
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(
                f"expected an (H, W, 3) uint8 tensor, got {tuple(image.shape)} {image.dtype}"
            )
        x = _tensor_chw_float(image)
    else:
        x = _chw_float(_check_rgb_uint8(image))
    return _normalize_(x, mean, std)


def preprocess_video_frame(image: ImageLike, size: int = 1024) -> torch.Tensor:
    """Video-predictor input of one frame: (3, size, size) float32, normalised.

    Args:
        image: PIL image or (H, W, 3) uint8 RGB array, original resolution.
        size: model resolution.
    """
    return normalize_uint8_image(resize_video_frame(image, size))


def preprocess_image(image: ImageLike, size: int = 1024) -> torch.Tensor:
    """Image-predictor input: (3, size, size) float32, normalised.

    ``ToTensor`` (uint8 HWC -> float CHW / 255), ``Resize((size, size))`` on the float tensor
    (bilinear, ``align_corners=False``, antialiased), then ``Normalize(mean, std)``.

    Args:
        image: PIL image (converted to RGB) or (H, W, 3) uint8 RGB array, original resolution.
        size: model resolution.
    """
    _check_size(size)
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    x = F.interpolate(
        _chw_float(_check_rgb_uint8(array))[None],
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0]
    return _normalize_(x, IMAGENET_MEAN, IMAGENET_STD)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageLike",
    "normalize_uint8_image",
    "preprocess_image",
    "preprocess_video_frame",
    "resize_video_frame",
]
