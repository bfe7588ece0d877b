"""Stand-in for torchvision.transforms.functional.resize (tensor path of 0.28)."""
import torch
import torch.nn.functional as F


def resize(img: torch.Tensor, size, interpolation=None, max_size=None, antialias=True):
    if not isinstance(img, torch.Tensor):
        raise TypeError("this stand-in only implements the tensor path")
    if interpolation not in (None, "bilinear") and str(interpolation).lower().find("bilinear") < 0:
        raise NotImplementedError("only bilinear interpolation is implemented")
    size = [int(s) for s in size]
    if list(img.shape[-2:]) == size:
        return img  # torchvision returns the input unchanged
    squeeze = img.dim() == 3
    x = img.unsqueeze(0) if squeeze else img
    out_dtype = x.dtype
    if out_dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                      antialias=bool(antialias) if antialias is not None else False)
    if out_dtype != x.dtype:
        x = x.round().to(out_dtype) if not out_dtype.is_floating_point else x.to(out_dtype)
    return x.squeeze(0) if squeeze else x
