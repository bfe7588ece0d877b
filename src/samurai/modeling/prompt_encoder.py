"""SAM prompt encoder: points, boxes and mask prompts to sparse / dense embeddings."""

from __future__ import annotations

import torch
from torch import nn

from samurai.modeling.common import LayerNorm2d
from samurai.modeling.position_encoding import PositionEmbeddingRandom

NUM_POINT_EMBEDDINGS = 4
"""Point labels 0 (negative), 1 (positive), 2 (box top-left), 3 (box bottom-right)."""


class PromptEncoder(nn.Module):
    """Encodes point, box and mask prompts for the mask decoder.

    Parameter names follow the official checkpoints (``sam_prompt_encoder.*``): ``pe_layer``,
    ``point_embeddings.{0..3}``, ``not_a_point_embed``, ``mask_downscaling.{0,1,3,4,6}``,
    ``no_mask_embed``.

    Args:
        embed_dim: channels of the prompt embeddings (256).
        image_embedding_size: ``(h, w)`` of the stride-16 image embedding (64, 64 at 1024).
        input_image_size: ``(H, W)`` of the model input in pixels (1024, 1024).
        mask_in_chans: hidden channels of the mask-prompt downscaling convs.
        activation: activation of the mask downscaling path.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_EMBEDDINGS)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """``(4h, 4w)``: the size mask prompts must have (256x256 at 1024)."""
        return (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: ``(1, C, h, w)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _label_table(self) -> torch.Tensor:
        """``(6, C)`` rows added per label: -1, 0, 1, 2, 3, then zeros for any other label."""
        rows = [self.not_a_point_embed.weight]
        rows += [emb.weight for emb in self.point_embeddings]
        rows.append(torch.zeros_like(self.not_a_point_embed.weight))
        return torch.cat(rows, dim=0)

    def _embed_points(
        self, coords: torch.Tensor, labels: torch.Tensor, *, pad: bool
    ) -> torch.Tensor:
        """``(B, N, 2)`` pixel coords + ``(B, N)`` labels -> ``(B, N (+1 if pad), C)``."""
        coords = coords + 0.5  # pixel centres
        if pad:
            # Padding is added after the shift; its coordinate is irrelevant (label -1).
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels.long()
        is_padding = (labels == -1).unsqueeze(-1)
        # Official: -1 -> not_a_point_embed only; 0..3 -> PE + point_embeddings[label];
        # any other label keeps the bare PE (last, all-zero row of the table).
        known = (labels >= -1) & (labels < NUM_POINT_EMBEDDINGS)
        index = torch.where(known, labels + 1, NUM_POINT_EMBEDDINGS + 1)
        embedding = torch.where(is_padding, torch.zeros_like(embedding), embedding)
        return embedding + self._label_table()[index]

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``(B, 4)`` xyxy pixel boxes -> ``(B, 2, C)`` corner embeddings (labels 2 and 3)."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return embedding + corner_embed

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts.

        Args:
            points: ``coords (B, N, 2)`` float ``(x, y)`` in model-input pixels (before the
                +0.5 pixel-centre shift) and ``labels (B, N)`` int: -1 padding, 0 negative,
                1 positive, 2 / 3 box top-left / bottom-right corner. Without ``boxes`` one
                padding point (label -1) is appended, as in the official encoder.
            boxes: ``(B, 4)`` xyxy in model-input pixels.
            masks: ``(B, 1, 4h, 4w)`` mask-prompt logits (see ``mask_input_size``).

        Returns:
            sparse ``(B, N', C)`` point/box tokens and dense ``(B, C, h, w)`` mask embedding
            (``no_mask_embed`` broadcast when ``masks`` is None).
        """
        batch = _batch_size(points, boxes, masks)
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty((batch, 0, self.embed_dim), device=device)]
        if points is not None:
            coords, labels = points
            sparse.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        sparse_embeddings = torch.cat(sparse, dim=1)
        if masks is not None:
            dense_embeddings = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense_embeddings = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                batch, -1, h, w
            )
        return sparse_embeddings, dense_embeddings


def _batch_size(
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
) -> int:
    """Batch size of the first given prompt (1 without prompts), as the official encoder."""
    if points is not None:
        return points[0].shape[0]
    if boxes is not None:
        return boxes.shape[0]
    if masks is not None:
        return masks.shape[0]
    return 1
