"""Stand-in for torchvision.transforms (see the package docstring)."""
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional  # noqa: F401


class ToTensor:
    """PIL / uint8 HWC numpy -> float CHW tensor in [0, 1] (torchvision semantics)."""

    def __call__(self, pic):
        import numpy as np

        arr = np.array(pic, copy=True)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        if t.dtype == torch.uint8:
            return t.to(torch.float32).div(255)
        return t


class Resize(nn.Module):
    def __init__(self, size: List[int], antialias: bool = True):
        super().__init__()
        self.size = [int(s) for s in size]
        self.antialias = bool(antialias)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.interpolate(
            img.unsqueeze(0), size=self.size, mode="bilinear",
            align_corners=False, antialias=self.antialias,
        ).squeeze(0)


class Normalize(nn.Module):
    def __init__(self, mean: List[float], std: List[float]):
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return (img - mean) / std
