"""Build SAM 2 / SAM 2.1 models from typed configs and load official checkpoints strictly."""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from samurai.allocator import reuse_freed_memory
from samurai.checkpoints import load_failure
from samurai.config import VARIANTS, ModelConfig, resolve_variant
from samurai.modeling.image_encoder import build_image_encoder
from samurai.modeling.mask_decoder import MaskDecoder
from samurai.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer, RoPEAttention
from samurai.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from samurai.modeling.position_encoding import PositionEmbeddingSine
from samurai.modeling.prompt_encoder import PromptEncoder
from samurai.modeling.sam2 import Sam2Model
from samurai.modeling.transformer import TwoWayTransformer

logger = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the chosen model variant (one-line message)."""


def model_config(variant: str | ModelConfig, *, image_size: int | None = None) -> ModelConfig:
    """The ``ModelConfig`` of a variant name (or a config), with an optional image size."""
    config = variant if isinstance(variant, ModelConfig) else VARIANTS[resolve_variant(variant)]
    if image_size is not None:
        if image_size <= 0 or image_size % 32 != 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        config = replace(config, image_size=image_size)
    return config


def _memory_attention(config: ModelConfig) -> MemoryAttention:
    d = config.hidden_dim
    layer = MemoryAttentionLayer(
        self_attention=RoPEAttention(embedding_dim=d, num_heads=1, rope_theta=config.rope_theta),
        cross_attention=RoPEAttention(
            embedding_dim=d,
            num_heads=1,
            kv_in_dim=config.mem_dim,
            rope_theta=config.rope_theta,
            rope_k_repeat=True,
        ),
        d_model=d,
        dim_feedforward=config.memory_attention_ffn_dim,
    )
    return MemoryAttention(d_model=d, layer=layer, num_layers=config.memory_attention_layers)


def _memory_encoder(config: ModelConfig) -> MemoryEncoder:
    return MemoryEncoder(
        out_dim=config.mem_dim,
        mask_downsampler=MaskDownSampler(embed_dim=config.hidden_dim),
        fuser=Fuser(layer=CXBlock(dim=config.hidden_dim), num_layers=2),
        position_encoding=PositionEmbeddingSine(config.mem_dim),
        in_dim=config.hidden_dim,
    )


def _mask_decoder(config: ModelConfig) -> MaskDecoder:
    d = config.hidden_dim
    return MaskDecoder(
        transformer_dim=d,
        transformer=TwoWayTransformer(depth=2, embedding_dim=d, num_heads=8, mlp_dim=2048),
        num_multimask_outputs=3,
        use_high_res_features=config.use_high_res_features_in_sam,
        iou_prediction_use_sigmoid=config.iou_prediction_use_sigmoid,
        pred_obj_scores=config.pred_obj_scores,
        pred_obj_scores_mlp=config.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=config.use_multimask_token_for_obj_ptr,
    )


def build_model_from_config(config: ModelConfig) -> Sam2Model:
    """An uninitialised ``Sam2Model`` of ``config`` (weights come from a checkpoint)."""
    e = config.image_embedding_size
    return Sam2Model(
        config=config,
        image_encoder=build_image_encoder(config),
        memory_attention=_memory_attention(config),
        memory_encoder=_memory_encoder(config),
        sam_prompt_encoder=PromptEncoder(
            embed_dim=config.hidden_dim,
            image_embedding_size=(e, e),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=16,
        ),
        sam_mask_decoder=_mask_decoder(config),
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``{"model": state_dict}`` ``.pt`` file or a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / pickled code / not a checkpoint at all
        raise CheckpointMismatchError(load_failure(path, exc)) from exc
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointMismatchError(f"{path} is not a SAM 2 checkpoint (no tensor state dict)")
    return data


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], variant: str) -> None:
    """Raise a one-line error naming the first missing / unexpected key or shape mismatch."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise CheckpointMismatchError(
                f"checkpoint does not match {variant}: missing key {key!r}"
            )
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise CheckpointMismatchError(
                f"checkpoint does not match {variant}: {key!r} has shape "
                f"{tuple(state_dict[key].shape)}, expected {tuple(value.shape)}"
            )
    for key in state_dict:
        if key not in expected:
            raise CheckpointMismatchError(
                f"checkpoint does not match {variant}: unexpected key {key!r}"
            )


def infer_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The VARIANTS key a checkpoint was made for, from its shapes (embed dim, block count) and
    the SAM 2.1-only keys.

    Raises:
        CheckpointMismatchError: the state dict is no SAM 2 / SAM 2.1 checkpoint of any variant.
    """
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if not isinstance(patch, torch.Tensor) or patch.dim() != 4:
        raise CheckpointMismatchError(
            "cannot tell the model variant: the checkpoint has no Hiera patch embedding "
            "('image_encoder.trunk.patch_embed.proj.weight')"
        )
    blocks = {
        int(key.split(".")[3])
        for key in state_dict
        if key.startswith("image_encoder.trunk.blocks.") and key.split(".")[3].isdigit()
    }
    prefix = "sam2.1" if "no_obj_embed_spatial" in state_dict else "sam2"
    for name, config in VARIANTS.items():
        hiera = config.hiera
        if (
            name.startswith(prefix + "_")
            and hiera.embed_dim == patch.shape[0]
            and sum(hiera.stages) == len(blocks)
        ):
            return name
    raise CheckpointMismatchError(
        f"cannot tell the model variant: no {prefix} variant has a Hiera trunk of embed dim "
        f"{patch.shape[0]} and {len(blocks)} blocks"
    )


def build_model(
    variant: str | ModelConfig | None,
    checkpoint: str | Path | dict[str, torch.Tensor] | None = None,
    *,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
) -> Sam2Model:
    """Build a model and load its weights strictly.

    Args:
        variant: a VARIANTS key (``"sam2.1_hiera_t"``, also ``"sam2.1_hiera_tiny"``) or a config;
            None infers it from the checkpoint's shapes (``infer_variant``).
        checkpoint: an official ``.pt`` file, a ``.safetensors`` file, a state dict, or None
            for random (untrained) weights.
        device: where the model runs.
        image_size: model input size (default 1024); smaller sizes are faster and change results.

    On CPU this applies the process-wide allocator setting (`samurai.allocator`) first, before
    the weights are allocated: applied after them, the same setting gave peaks 150-450 MiB
    higher and from one run to the next less predictable (docs/benchmarks.md).
    """
    if torch.device(device).type == "cpu":
        reuse_freed_memory()
    sd = None
    if checkpoint is not None:
        sd = checkpoint if isinstance(checkpoint, dict) else read_state_dict(checkpoint)
    if variant is None:
        if sd is None:
            raise ValueError("give a model variant, a checkpoint, or both")
        variant = infer_variant(sd)
    config = model_config(variant, image_size=image_size)
    model = build_model_from_config(config)
    if sd is None:
        logger.warning("no checkpoint given: %s has random weights", config.name)
    else:
        check_state_dict(model, sd, config.name)
        model.load_state_dict(sd, strict=True)
    return model.eval().to(device)
