"""Minimal CPU stand-in for the parts of torchvision that DAM4SAM imports.

The PyPI torchvision wheel that matches torch 2.13 (torchvision 0.28.0) is a
CUDA build whose compiled ops cannot load against the CPU build of torch, so
the golden-data generator puts this package first on sys.path instead. It
reproduces torchvision 0.28's *tensor* code path for the only calls DAM4SAM
makes:

* ``torchvision.transforms.functional.resize(img, [h, w])`` on a float CHW
  tensor: ``F.interpolate(img[None], size, mode="bilinear",
  align_corners=False, antialias=True)[0]`` (torchvision >= 0.17 defaults to
  ``antialias=True``; torchvision 0.16, pinned in DAM4SAM's README, used
  ``antialias=False`` for tensors. On the bedroom frames (960x540 -> 1024x1024,
  an up-sampling on both axes) the two differ by at most 1.8e-7).
* ``torchvision.transforms.{Resize, Normalize, ToTensor}``: only constructed by
  ``sam2.utils.transforms.SAM2Transforms`` (used by ``estimate_mask_from_box``
  for ``transform_boxes`` / ``postprocess_masks``, which do not use them).
"""

__version__ = "0.28.0-standin"
from . import transforms  # noqa: E402,F401
