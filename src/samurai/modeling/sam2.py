"""The composed SAM 2 / SAM 2.1 model: pure steps over tensors, no per-video state.

``Sam2Model`` owns the weights (attribute names = official checkpoint keys) and exposes the
steps a tracker chains per frame: ``encode_image`` -> ``condition_on_memory`` -> ``decode`` ->
``object_pointer`` -> ``encode_memory``. Which memories to use, which candidate to choose and
what to remember is decided by the tracker (``samurai.tracking``), never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from samurai.config import ModelConfig
from samurai.modeling.common import MLP
from samurai.modeling.mask_decoder import DecoderOutput
from samurai.modeling.precision import check_compute_dtype, set_compute_dtype

NO_OBJ_SCORE = -1024.0
"""Logit written into every mask pixel of an object judged absent (official ``NO_OBJ_SCORE``)."""


@dataclass(frozen=True)
class ImageFeatures:
    """Backbone features of a batch of frames.

    Attributes:
        vision_features: (B, 256, h, w) stride-16 features (h = w = image_size / 16).
        vision_pos_enc: (B, 256, h, w) sine position encoding of ``vision_features``.
        high_res_features: [(B, 32, 4h, 4w), (B, 64, 2h, 2w)], already projected by the
            decoder's ``conv_s0`` / ``conv_s1``.
        derived: results computed from these features once and shared by every object on the
            frame, keyed by what computed them (see ``Sam2Model.condition_on_memory``).
    """

    vision_features: torch.Tensor
    vision_pos_enc: torch.Tensor
    high_res_features: list[torch.Tensor]
    derived: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def expand(self, batch_size: int) -> ImageFeatures:
        """The same features repeated for ``batch_size`` objects (views, no copy)."""
        return ImageFeatures(
            vision_features=self.vision_features.expand(batch_size, -1, -1, -1),
            vision_pos_enc=self.vision_pos_enc.expand(batch_size, -1, -1, -1),
            high_res_features=[f.expand(batch_size, -1, -1, -1) for f in self.high_res_features],
        )

    def to(self, device: torch.device | str) -> ImageFeatures:
        return ImageFeatures(
            vision_features=self.vision_features.to(device),
            vision_pos_enc=self.vision_pos_enc.to(device),
            high_res_features=[f.to(device) for f in self.high_res_features],
        )


@dataclass(frozen=True)
class MemoryInputs:
    """The memories one frame attends to, in the order they are concatenated.

    Attributes:
        maskmem_features: each (B, 64, h, w), spatial memories (conditioning frames first).
        maskmem_pos_enc: each (B, 64, h, w), their spatial position encodings.
        maskmem_tpos: temporal position of each memory (0 = conditioning frame; the previous
            frame has ``num_maskmem - 1``).
        obj_ptrs: each (B, 256), object pointers.
        obj_ptr_tdiff: temporal offset of each pointer from the current frame.
        obj_ptr_tdiff_max: normaliser of the pointer offsets (``min(num_frames, 16) - 1``).
    """

    maskmem_features: list[torch.Tensor]
    maskmem_pos_enc: list[torch.Tensor]
    maskmem_tpos: list[int]
    obj_ptrs: list[torch.Tensor]
    obj_ptr_tdiff: list[int]
    obj_ptr_tdiff_max: int


@dataclass(frozen=True)
class MemoryFeatures:
    """Output of the memory encoder for one frame: (B, 64, h, w) features and position enc."""

    maskmem_features: torch.Tensor
    maskmem_pos_enc: torch.Tensor


def get_1d_sine_pe(pos_inds: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine/cosine encoding of (possibly fractional) positions: (N,) -> (N, dim)."""
    pe_dim = dim // 2
    dim_t = torch.arange(pe_dim, dtype=torch.float32, device=pos_inds.device)
    dim_t = temperature ** (2 * (dim_t // 2) / pe_dim)
    pos_embed = pos_inds.unsqueeze(-1) / dim_t
    return torch.cat([pos_embed.sin(), pos_embed.cos()], dim=-1)


class Sam2Model(nn.Module):
    """SAM 2 / SAM 2.1: image encoder, prompt encoder, mask decoder, memory encoder/attention."""

    def __init__(
        self,
        *,
        config: ModelConfig,
        image_encoder: nn.Module,
        memory_attention: nn.Module,
        memory_encoder: nn.Module,
        sam_prompt_encoder: nn.Module,
        sam_mask_decoder: nn.Module,
    ) -> None:
        super().__init__()
        self.config = config
        hidden, mem = config.hidden_dim, config.mem_dim
        self.image_encoder = image_encoder
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        # Downsamples a mask prompt to stride 4 when it produces an object pointer.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden))
        self.no_obj_embed_spatial: nn.Parameter | None = None
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))
        self.obj_ptr_proj = MLP(hidden, hidden, hidden, 3)
        self._compute_dtype = torch.float32
        self.obj_ptr_tpos_proj: nn.Module = (
            nn.Linear(hidden, mem) if config.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        )

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def compute_dtype(self) -> torch.dtype:
        """float32, or bfloat16 after ``set_compute_dtype(torch.bfloat16)``."""
        return self._compute_dtype

    def set_compute_dtype(self, dtype: torch.dtype | None) -> Sam2Model:
        """Run the image-encoder trunk and memory attention in split bfloat16, or float32.

        On x86-64 CPUs the linear layers stay float32 even in bfloat16 mode: oneDNN's float32
        GEMMs outrun the split there (``modeling/gemm.py``), so the memory attention's score and
        weighting GEMMs are what bfloat16 speeds up.

        Those two hold over 95 % of a tracked frame's FLOPs. Everything else (FPN neck, prompt
        encoder, mask decoder and its IoU / object-score heads, memory encoder, pointers) stays
        float32: it is cheap, and the score heads turn small feature errors into flipped
        decisions. See ``modeling/precision.py``.
        """
        dtype = check_compute_dtype(dtype)
        set_compute_dtype(self.image_encoder.trunk, dtype)
        set_compute_dtype(self.memory_attention, dtype)
        self._compute_dtype = dtype
        return self

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # ------------------------------------------------------------------ image
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """Encode normalised images (B, 3, S, S) into decoder-ready features."""
        decoder = self.sam_mask_decoder
        out = self.image_encoder(images, projections=(decoder.conv_s0, decoder.conv_s1))
        fpn = out.backbone_fpn
        return ImageFeatures(
            vision_features=fpn[-1], vision_pos_enc=out.pos_enc(-1), high_res_features=fpn[:2]
        )

    def add_no_mem_embed(self, vision_features: torch.Tensor) -> torch.Tensor:
        """Features of a frame decoded without memory (initial conditioning frame / image)."""
        return vision_features + self.no_mem_embed.view(1, -1, 1, 1)

    # ---------------------------------------------------------------- decoder
    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res_features: list[torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Run prompt encoder + mask decoder; returns all 4 mask tokens.

        Args:
            pix_feat: (B, 256, h, w) memory-conditioned (or no-memory) features.
            high_res_features: the frame's projected stride-4 / stride-8 features.
            point_coords: (B, N, 2) model-resolution pixels; None pads one "not a point".
            point_labels: (B, N) int32 labels.
            mask_input: (B, 1, H, W) mask logits/probabilities, resized to the decoder's
                mask input size (4h x 4w) with antialiasing when needed.
        """
        b = pix_feat.shape[0]
        if point_coords is None or point_labels is None:
            point_coords = torch.zeros(b, 1, 2, device=pix_feat.device)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=pix_feat.device)
        if mask_input is not None:
            size = self.sam_prompt_encoder.mask_input_size
            if tuple(mask_input.shape[-2:]) != tuple(size):
                mask_input = F.interpolate(
                    mask_input.float(),
                    size=size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
        sparse, dense = self.sam_prompt_encoder(
            points=(point_coords, point_labels), boxes=None, masks=mask_input
        )
        return self.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            high_res_features=high_res_features,
        )

    def object_pointer(
        self, sam_token: torch.Tensor, is_obj_appearing: torch.Tensor
    ) -> torch.Tensor:
        """Object pointer (B, 256) from the chosen mask's SAM token; absent objects get
        ``no_obj_ptr`` (``is_obj_appearing``: (B, 1) bool or float in [0, 1])."""
        return self.object_pointer_mix(self.obj_ptr_proj(sam_token), is_obj_appearing)

    def object_pointer_mix(
        self, obj_ptr: torch.Tensor, is_obj_appearing: torch.Tensor
    ) -> torch.Tensor:
        """Replace (``fixed_no_obj_ptr``) or mix the pointer of an absent object with
        ``no_obj_ptr``."""
        appearing = is_obj_appearing.to(obj_ptr.dtype)
        if self.config.fixed_no_obj_ptr:
            obj_ptr = appearing * obj_ptr
        return obj_ptr + (1 - appearing) * self.no_obj_ptr

    # ----------------------------------------------------------------- memory
    def condition_on_memory(
        self, features: ImageFeatures, memory: MemoryInputs | None
    ) -> torch.Tensor:
        """Fuse the frame's features with its memories: (B, 256, h, w).

        ``memory=None`` is an initial conditioning frame: the no-memory embedding is added
        directly (``directly_add_no_mem_embed``), as the official model does.
        """
        if memory is None:
            return self.add_no_mem_embed(features.vision_features)
        tokens, pos = self._memory_tokens(memory, features.vision_features.shape[0])
        b, c, h, w = features.vision_features.shape
        curr = features.vision_features.flatten(2).permute(2, 0, 1)
        curr_pos = features.vision_pos_enc.flatten(2).permute(2, 0, 1)
        num_ptr_tokens = len(memory.obj_ptrs) * (c // self.config.mem_dim)
        # the frame-only first step is computed once per frame, for whichever object comes first
        # (not kept with autograd on: the cached tensor would carry a graph across objects)
        key = ("memory_attention.frame_queries", id(self.memory_attention), self._compute_dtype)
        cache = {} if torch.is_grad_enabled() else features.derived
        queries = cache.get(key)
        if queries is None:
            queries = cache[key] = self.memory_attention.frame_queries(curr, curr_pos)
        out = self.memory_attention(
            curr=curr,
            curr_pos=curr_pos,
            memory=tokens,
            memory_pos=pos,
            num_obj_ptr_tokens=num_ptr_tokens,
            frame_queries=queries,
        )
        return out.permute(1, 2, 0).reshape(b, c, h, w)

    def _memory_tokens(
        self, memory: MemoryInputs, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenate spatial memories and object pointers into (M, B, 64) tokens + positions."""
        cfg = self.config
        tokens, pos = [], []
        for feats, enc, t_pos in zip(
            memory.maskmem_features, memory.maskmem_pos_enc, memory.maskmem_tpos, strict=True
        ):
            # Stored memories are bfloat16 (as the official predictor stores them).
            tokens.append(feats.to(torch.float32).flatten(2).permute(2, 0, 1))
            enc = enc.flatten(2).permute(2, 0, 1)
            pos.append(enc + self.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1])
        if memory.obj_ptrs:
            ptr_tokens, ptr_pos = self._pointer_tokens(memory, batch_size)
            tokens.append(ptr_tokens)
            pos.append(ptr_pos)
        return torch.cat(tokens, dim=0), torch.cat(pos, dim=0)

    def _pointer_tokens(
        self, memory: MemoryInputs, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        c, mem = cfg.hidden_dim, cfg.mem_dim
        ptrs = torch.stack(memory.obj_ptrs, dim=0)  # (P, B, C)
        if cfg.add_tpos_enc_to_obj_ptrs:
            tpos_dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mem
            t = torch.tensor(memory.obj_ptr_tdiff, device=ptrs.device)
            obj_pos = get_1d_sine_pe(t / memory.obj_ptr_tdiff_max, dim=tpos_dim)
            obj_pos = self.obj_ptr_tpos_proj(obj_pos)
            obj_pos = obj_pos.unsqueeze(1).expand(-1, batch_size, mem)
        else:
            obj_pos = ptrs.new_zeros(len(memory.obj_ptrs), batch_size, mem)
        if mem < c:
            # A pointer is split into C / mem tokens of mem channels each.
            ptrs = ptrs.reshape(-1, batch_size, c // mem, mem).permute(0, 2, 1, 3).flatten(0, 1)
            obj_pos = obj_pos.repeat_interleave(c // mem, dim=0)
        return ptrs, obj_pos

    def encode_memory(
        self,
        features: ImageFeatures,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        *,
        binarize: bool,
    ) -> MemoryFeatures:
        """Encode a frame and its chosen mask into a spatial memory.

        Args:
            features: the frame's features (raw, not memory-conditioned).
            high_res_masks: (B, 1, S, S) mask logits at model resolution.
            object_score_logits: (B, 1); a score <= 0 adds ``no_obj_embed_spatial`` (SAM 2.1).
            binarize: use ``logits > 0`` instead of ``sigmoid(logits)`` (masks from clicks).
        """
        cfg = self.config
        if binarize:
            mask_for_mem = (high_res_masks > 0).to(high_res_masks.dtype)
        else:
            mask_for_mem = torch.sigmoid(high_res_masks)
        mask_for_mem = mask_for_mem * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(features.vision_features, mask_for_mem, skip_mask_sigmoid=True)
        maskmem = out.vision_features
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).to(maskmem.dtype)
            maskmem = maskmem + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return MemoryFeatures(maskmem_features=maskmem, maskmem_pos_enc=out.vision_pos_enc)
