"""Single-image segmentation with SAM 2: embed an image once, then prompt it repeatedly.

The API and numbers follow the official ``sam2/sam2_image_predictor.py`` (``SAM2ImagePredictor``)
with its ``sam2/utils/transforms.py`` pre- and post-processing: the image predictor's own resize
(``preprocess_image``, not the video one), boxes as two corner points (labels 2, 3) placed before
the clicks, several boxes as a batch of prompts on one image, masks upsampled bilinearly to the
original size and thresholded at ``mask_threshold``, low-res logits clamped to [-32, 32].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from samurai.io.transforms import ImageLike, preprocess_image
from samurai.modeling.mask_decoder import MaskDecoder
from samurai.modeling.prompt_encoder import PromptEncoder
from samurai.modeling.sam2 import Sam2Model

LOW_RES_CLAMP = 32.0
"""Low-res logits returned by ``predict`` are clamped to [-32, 32] (official)."""


class ImageNotSetError(RuntimeError, ValueError):
    """``predict`` before ``set_image``: a ``ValueError`` here, a ``RuntimeError`` upstream."""


@dataclass(frozen=True)
class _Embedding:
    """Features of the images given to ``set_image`` / ``set_image_batch``."""

    image_embed: torch.Tensor  # (B, 256, h, w) level-2 features + no_mem_embed
    high_res_features: list[torch.Tensor]  # projected levels 0 and 1
    orig_hw: list[tuple[int, int]]


@dataclass(frozen=True)
class _Prompts:
    """Prompts of one image in model-input pixels, batched over objects."""

    point_coords: torch.Tensor | None  # (B, N, 2)
    point_labels: torch.Tensor | None  # (B, N) int32
    boxes: torch.Tensor | None  # (B, 4) xyxy
    mask_input: torch.Tensor | None  # (B or 1, 1, 4h, 4w) logits


@dataclass(frozen=True)
class _RawPrompts:
    """Prompts as the user passed them (numpy-like, original-image coordinates)."""

    point_coords: ArrayLike | None
    point_labels: ArrayLike | None
    box: ArrayLike | None
    mask_input: ArrayLike | None


class SAM2ImagePredictor:
    """Predicts masks of one image (or a batch of images) from points, boxes and mask prompts.

    Args:
        model: a loaded ``Sam2Model`` (shared, never modified).
        mask_threshold: logit above which a pixel is foreground.
        max_hole_area: background components (8-connected, logit <= threshold) of the low-res
            masks up to this area are filled before upsampling; 0 disables it.
        max_sprinkle_area: foreground components up to this area are removed; 0 disables it.
    """

    def __init__(
        self,
        model: Sam2Model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        self.model = model
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self._embedding: _Embedding | None = None

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2ImagePredictor:
        """A predictor of a Hugging Face model id (``"facebook/sam2.1-hiera-tiny"``), with the
        official checkpoint from the cache or the official download."""
        from samurai.compat.builders import build_sam2_hf

        options = {
            k: kwargs.pop(k)
            for k in ("mask_threshold", "max_hole_area", "max_sprinkle_area")
            if k in kwargs
        }
        return cls(build_sam2_hf(model_id, **kwargs), **options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def _prompt_encoder(self) -> PromptEncoder:
        return cast(PromptEncoder, self.model.sam_prompt_encoder)

    @property
    def _mask_decoder(self) -> MaskDecoder:
        return cast(MaskDecoder, self.model.sam_mask_decoder)

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def orig_hw(self) -> list[tuple[int, int]]:
        """(height, width) of each image that was set."""
        return list(self._require_embedding().orig_hw)

    def reset_predictor(self) -> None:
        """Forget the current image embedding."""
        self._embedding = None

    # ----------------------------------------------------------------- images
    def set_image(self, image: ImageLike) -> None:
        """Embed one image for ``predict``.

        Args:
            image: (H, W, 3) uint8 RGB array or a PIL image (converted to RGB).
        """
        self.reset_predictor()
        self._embedding = self._embed([image])

    def set_image_batch(self, images: list[ImageLike]) -> None:
        """Embed several images (any sizes) for ``predict_batch``."""
        self.reset_predictor()
        if not isinstance(images, list) or not images:
            raise ValueError("set_image_batch expects a non-empty list of images")
        self._embedding = self._embed(images)

    @torch.inference_mode()
    def _embed(self, images: list[ImageLike]) -> _Embedding:
        orig_hw = [_image_hw(image) for image in images]
        size = self.model.image_size
        batch = torch.stack([preprocess_image(image, size) for image in images]).to(self.device)
        features = self.model.encode_image(batch)
        return _Embedding(
            image_embed=self.model.add_no_mem_embed(features.vision_features),
            high_res_features=features.high_res_features,
            orig_hw=orig_hw,
        )

    def get_image_embedding(self) -> torch.Tensor:
        """(B, 256, h, w) embedding of the images set (B = 1 after ``set_image``)."""
        return self._require_embedding().image_embed

    def _require_embedding(self) -> _Embedding:
        if self._embedding is None:
            raise ImageNotSetError(
                "an image must be set with .set_image(...) or .set_image_batch(...) first"
            )
        return self._embedding

    # ---------------------------------------------------------------- predict
    def predict(
        self,
        point_coords: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_input: ArrayLike | None = None,
        *,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[NDArray[np.generic], NDArray[np.float32], NDArray[np.float32]]:
        """Masks of the image set with ``set_image``.

        Args:
            point_coords: (N, 2) ``(x, y)`` clicks, original-image pixels (normalised [0, 1]
                coordinates with ``normalize_coords=False``); (B, N, 2) with B boxes.
            point_labels: (N,) or (B, N): 1 positive, 0 negative.
            box: (4,) xyxy, or (B, 4) for B objects (batched prompts on the same image).
            mask_input: (1, 256, 256) low-res logits of an earlier ``predict``, or (B, 1, 256, 256).
            multimask_output: three candidates; otherwise one mask (the most stable token).
            return_logits: return upsampled logits instead of thresholded masks.
            normalize_coords: coordinates are pixels of the original image (else [0, 1]).

        Returns:
            masks (C, H, W) bool (float32 logits with ``return_logits``; the official SAM 2
            predictor returns float32 0/1) at the original size, iou_predictions (C,) float32,
            low_res_masks (C, 256, 256) float32 logits. With B > 1 prompts each gets a leading
            B axis.
        """
        embedding = self._require_embedding()
        if len(embedding.orig_hw) != 1:
            raise ValueError("several images are set: use predict_batch")
        return self._predict_numpy(
            _RawPrompts(point_coords, point_labels, box, mask_input),
            image_index=0,
            multimask_output=multimask_output,
            return_logits=return_logits,
            normalize_coords=normalize_coords,
        )

    def predict_batch(
        self,
        point_coords_batch: list[ArrayLike | None] | None = None,
        point_labels_batch: list[ArrayLike | None] | None = None,
        box_batch: list[ArrayLike | None] | None = None,
        mask_input_batch: list[ArrayLike | None] | None = None,
        *,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[NDArray[np.generic]], list[NDArray[np.float32]], list[NDArray[np.float32]]]:
        """``predict`` on each image of ``set_image_batch``; each argument is a list with one
        entry (or None) per image. Returns lists of masks, iou_predictions and low_res_masks."""
        num_images = len(self._require_embedding().orig_hw)
        lists = (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)
        for name, values in zip(
            ("point_coords", "point_labels", "box", "mask_input"), lists, strict=True
        ):
            if values is not None and len(values) != num_images:
                raise ValueError(f"{name}_batch has {len(values)} entries for {num_images} images")
        all_masks, all_ious, all_low_res = [], [], []
        for i in range(num_images):
            raw = _RawPrompts(*(None if values is None else values[i] for values in lists))
            masks, ious, low_res = self._predict_numpy(
                raw,
                image_index=i,
                multimask_output=multimask_output,
                return_logits=return_logits,
                normalize_coords=normalize_coords,
            )
            all_masks.append(masks)
            all_ious.append(ious)
            all_low_res.append(low_res)
        return all_masks, all_ious, all_low_res

    def _predict_numpy(
        self,
        raw: _RawPrompts,
        *,
        image_index: int,
        multimask_output: bool,
        return_logits: bool,
        normalize_coords: bool,
    ) -> tuple[NDArray[np.generic], NDArray[np.float32], NDArray[np.float32]]:
        orig_hw = self._require_embedding().orig_hw[image_index]
        prompts = self._prepare(raw, orig_hw=orig_hw, normalize_coords=normalize_coords)
        masks, ious, low_res = self.predict_torch(
            prompts.point_coords,
            prompts.point_labels,
            prompts.boxes,
            prompts.mask_input,
            multimask_output=multimask_output,
            return_logits=return_logits,
            image_index=image_index,
        )
        masks_np = masks.squeeze(0).cpu().numpy()
        ious_np = ious.squeeze(0).float().cpu().numpy()
        return masks_np, ious_np, low_res.squeeze(0).float().cpu().numpy()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        *,
        multimask_output: bool = True,
        return_logits: bool = False,
        image_index: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks from prompts already in model-input pixels (official ``_predict``).

        Args:
            point_coords: (B, N, 2) float ``(x, y)`` in pixels of the ``image_size`` square.
            point_labels: (B, N) int labels.
            boxes: (B, 4) xyxy in the same space, prepended to the points as labels 2, 3.
            mask_input: (B or 1, 1, 256, 256) low-res mask logits.
            image_index: which image of ``set_image_batch``.

        Returns:
            masks (B, C, H, W) bool (float logits with ``return_logits``) at the original size,
            iou_predictions (B, C), low_res_masks (B, C, 256, 256) clamped to [-32, 32].
        """
        embedding = self._require_embedding()
        if not 0 <= image_index < len(embedding.orig_hw):
            raise ValueError(f"image_index {image_index} out of range")
        points = _concat_box_points(point_coords, point_labels, boxes)
        if mask_input is not None and points is not None:
            batch = points[0].shape[0]
            if mask_input.shape[0] not in (1, batch):
                raise ValueError(f"mask_input batch {mask_input.shape[0]} != prompt batch {batch}")
            mask_input = mask_input.expand(batch, -1, -1, -1)
        sparse, dense = self._prompt_encoder(points=points, boxes=None, masks=mask_input)
        decoder = self._mask_decoder
        i = slice(image_index, image_index + 1)
        out = decoder(
            image_embeddings=embedding.image_embed[i],
            image_pe=self._prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            high_res_features=[f[i] for f in embedding.high_res_features],
        )
        selection = decoder.select(out, multimask_output=multimask_output)
        masks = self._postprocess(selection.masks, embedding.orig_hw[image_index])
        low_res = selection.masks.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, selection.iou_pred, low_res

    def _postprocess(self, low_res: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Hole / sprinkle removal on the low-res logits, then bilinear upsampling."""
        masks = low_res.float()
        flat = masks.flatten(0, 1)
        threshold = self.mask_threshold
        if self.max_hole_area > 0:
            holes = _small_components(flat <= threshold, self.max_hole_area).view_as(masks)
            masks = torch.where(holes, threshold + 10.0, masks)
        if self.max_sprinkle_area > 0:
            # Upstream finds sprinkles on the masks *before* hole filling; kept for parity.
            sprinkles = _small_components(flat > threshold, self.max_sprinkle_area)
            masks = torch.where(sprinkles.view_as(masks), threshold - 10.0, masks)
        return F.interpolate(masks, orig_hw, mode="bilinear", align_corners=False)

    def _prepare(
        self, raw: _RawPrompts, *, orig_hw: tuple[int, int], normalize_coords: bool
    ) -> _Prompts:
        """Validate numpy prompts and map them to model-input pixels."""
        size = self.model.image_size
        hw = orig_hw if normalize_coords else None
        coords = labels = boxes = masks = None
        if (raw.point_coords is None) != (raw.point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if raw.point_coords is not None and raw.point_labels is not None:
            coords = _to_model_space(_finite("point_coords", raw.point_coords), size, hw)
            labels = _finite("point_labels", raw.point_labels).to(torch.int32)
            if coords.dim() == 2:
                coords, labels = coords[None], labels[None]
            if coords.dim() != 3 or coords.shape[-1] != 2:
                raise ValueError(
                    f"point_coords must be (N, 2) or (B, N, 2), got {tuple(coords.shape)}"
                )
            if labels.shape != coords.shape[:-1]:
                raise ValueError(
                    f"point_labels {tuple(labels.shape)} does not match "
                    f"point_coords {tuple(coords.shape)}"
                )
        if raw.box is not None:
            boxes = _finite("box", raw.box)
            if boxes.dim() not in (1, 2) or boxes.shape[-1] != 4:
                raise ValueError(f"box must be (4,) or (B, 4) xyxy, got {tuple(boxes.shape)}")
            boxes = _to_model_space(boxes.reshape(-1, 2, 2), size, hw).reshape(-1, 4)
            if coords is not None and coords.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"{boxes.shape[0]} boxes but {coords.shape[0]} sets of points: "
                    "give points as (B, N, 2) with one set per box"
                )
        if raw.mask_input is not None:
            masks = self._prepare_mask(_finite("mask_input", raw.mask_input))
        device = self.device
        return _Prompts(
            point_coords=None if coords is None else coords.to(device),
            point_labels=None if labels is None else labels.to(device),
            boxes=None if boxes is None else boxes.to(device),
            mask_input=None if masks is None else masks.to(device),
        )

    def _prepare_mask(self, mask: torch.Tensor) -> torch.Tensor:
        size = self._prompt_encoder.mask_input_size
        if mask.dim() == 3:
            mask = mask[None]
        if mask.dim() != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != size:
            raise ValueError(
                f"mask_input must be (1, {size[0]}, {size[1]}) low-res logits "
                f"(or (B, 1, {size[0]}, {size[1]})), got {tuple(mask.shape)}"
            )
        return mask


def _image_hw(image: ImageLike) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB uint8 image, got shape {image.shape}")
        return int(image.shape[0]), int(image.shape[1])
    raise ValueError(f"expected an RGB uint8 numpy array or a PIL image, got {type(image)}")


def _finite(name: str, value: ArrayLike) -> torch.Tensor:
    """``value`` as a float32 CPU tensor; rejects NaN / inf."""
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric, got {value!r}") from error
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _to_model_space(
    coords: torch.Tensor, size: int, orig_hw: tuple[int, int] | None
) -> torch.Tensor:
    """(..., 2) ``(x, y)`` in original pixels (or [0, 1] if ``orig_hw`` is None) -> model pixels.

    Same float32 operations as ``SAM2Transforms.transform_coords``: ``x / w * size``.
    """
    if orig_hw is not None:
        h, w = orig_hw
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / w
        coords[..., 1] = coords[..., 1] / h
    return coords * size


def _concat_box_points(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Boxes become two corner points (labels 2, 3) placed before the clicks, as upstream."""
    points = None
    if point_coords is not None and point_labels is not None:
        points = (point_coords, point_labels.to(torch.int32))
    elif point_coords is not None or point_labels is not None:
        raise ValueError("point_coords and point_labels must be given together")
    if boxes is None:
        return points
    corners = boxes.reshape(-1, 2, 2)
    corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device)
    corner_labels = corner_labels.repeat(corners.shape[0], 1)
    if points is None:
        return corners, corner_labels
    return torch.cat([corners, points[0]], dim=1), torch.cat([corner_labels, points[1]], dim=1)


def _small_components(binary: torch.Tensor, max_area: float) -> torch.Tensor:
    """(..., H, W) bool -> pixels in 8-connected True components of at most ``max_area`` pixels.

    CPU stand-in (OpenCV) for the official CUDA ``get_connected_components``.
    """
    import cv2

    planes = binary.reshape(-1, *binary.shape[-2:]).to("cpu", torch.uint8).numpy()
    small = np.zeros(planes.shape, dtype=bool)
    for i, plane in enumerate(planes):
        _, labels, stats, _ = cv2.connectedComponentsWithStats(plane, connectivity=8)
        is_small = stats[:, cv2.CC_STAT_AREA] <= max_area
        is_small[0] = False  # label 0 = the False pixels
        small[i] = is_small[labels]
    return torch.from_numpy(small).to(binary.device).view_as(binary)


__all__ = ["LOW_RES_CLAMP", "ImageNotSetError", "SAM2ImagePredictor"]
