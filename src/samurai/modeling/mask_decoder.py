"""SAM 2 mask decoder: all candidate masks in one step, then the official output selection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samurai.modeling.common import MLP, LayerNorm2d


@dataclass(frozen=True)
class DecoderOutput:
    """Everything one decoder step predicts, for all ``K = num_multimask_outputs + 1`` tokens.

    Attributes:
        masks: ``(B, K, 4h, 4w)`` low-res mask logits (256x256 at 1024); token 0 is the
            single-mask token, tokens 1..K-1 the multimask candidates.
        iou_pred: ``(B, K)`` predicted IoU of each mask (after sigmoid if configured).
        mask_tokens_out: ``(B, K, C)`` mask-token outputs of the transformer ("SAM tokens").
        object_score_logits: ``(B, 1)`` object-presence logit (10.0 without an object head).
    """

    masks: torch.Tensor
    iou_pred: torch.Tensor
    mask_tokens_out: torch.Tensor
    object_score_logits: torch.Tensor


@dataclass(frozen=True)
class MaskSelection:
    """The official output selection of ``DecoderOutput`` (``MaskDecoder.select``).

    Attributes:
        masks: ``(B, M, 4h, 4w)`` logits; ``M = K - 1`` candidates in multimask mode, else 1.
        iou_pred: ``(B, M)``.
        token_indices: ``(B, M)`` int64 decoder token of each returned mask (0..K-1).
        sam_tokens: ``(B, M, C)`` the token whose projection is the object pointer when the
            m-th mask is chosen: the candidate's own token in multimask mode with
            ``use_multimask_token_for_obj_ptr``, otherwise always token 0 (also when the
            stability fallback picked a multimask token's mask).
        object_score_logits: ``(B, 1)``.
    """

    masks: torch.Tensor
    iou_pred: torch.Tensor
    token_indices: torch.Tensor
    sam_tokens: torch.Tensor
    object_score_logits: torch.Tensor


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``+delta`` and ``-delta``: ``(..., H, W)`` -> ``(...)``.

    1.0 where the ``-delta`` mask is empty, as the official ``_get_stability_scores``.
    """
    logits = mask_logits.flatten(-2)
    area_i = (logits > delta).sum(dim=-1).float()
    area_u = (logits > -delta).sum(dim=-1).float()
    return torch.where(area_u > 0, area_i / area_u, 1.0)


class MaskDecoder(nn.Module):
    """Predicts masks, IoUs and an object score from image and prompt embeddings.

    Parameter names follow the official checkpoints (``sam_mask_decoder.*``): ``transformer``,
    ``iou_token``, ``mask_tokens``, ``obj_score_token``, ``output_upscaling.{0,1,3}``,
    ``conv_s0``, ``conv_s1``, ``output_hypernetworks_mlps.{i}``, ``iou_prediction_head``,
    ``pred_obj_score_head``.

    Args:
        transformer_dim: channels C of the transformer (256).
        transformer: the ``TwoWayTransformer``.
        num_multimask_outputs: candidate masks in multimask mode (3).
        activation: activation of the upscaling path.
        iou_head_depth, iou_head_hidden_dim: IoU-head MLP shape.
        use_high_res_features: add stride-4 / stride-8 features while upscaling.
        iou_prediction_use_sigmoid: IoU head output through a sigmoid.
        pred_obj_scores: predict an object-presence logit (else constant 10.0).
        pred_obj_scores_mlp: 3-layer MLP object-score head (else one linear layer).
        use_multimask_token_for_obj_ptr: in multimask mode the chosen candidate's token feeds
            the object pointer (else token 0 always does).
        dynamic_multimask_via_stability: in single-mask mode, fall back to the best-IoU
            candidate when token 0's mask is unstable.
        dynamic_multimask_stability_delta, dynamic_multimask_stability_thresh: that test.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer_dim = c
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, c)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            activation(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1, stride=1)
            self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1, stride=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            c,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = (
                MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)
            )
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def project_high_res_features(
        self, feat_s0: torch.Tensor, feat_s1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``conv_s0`` / ``conv_s1`` to the stride-4 / stride-8 FPN levels.

        ``(B, C, 4h, 4w)``, ``(B, C, 2h, 2w)`` -> ``(B, C/8, 4h, 4w)``, ``(B, C/4, 2h, 2w)``; done
        once per image (the official ``forward_image``), the results go to ``forward``.
        """
        if not self.use_high_res_features:
            raise ValueError("this decoder was built with use_high_res_features=False")
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor] | None = None,
    ) -> DecoderOutput:
        """Predict all ``K`` masks, IoUs, mask tokens and the object score.

        Args:
            image_embeddings: ``(B_img, C, h, w)``; with ``B_img < B`` each image is repeated
                ``B / B_img`` times (official ``repeat_image``: several prompts per image).
            image_pe: ``(1, C, h, w)`` from ``PromptEncoder.get_dense_pe``.
            sparse_prompt_embeddings: ``(B, N, C)``.
            dense_prompt_embeddings: ``(B, C, h, w)``.
            high_res_features: ``[(B_img, C/8, 4h, 4w), (B_img, C/4, 2h, 2w)]`` FPN levels 0/1
                already projected by ``conv_s0`` / ``conv_s1`` (``project_high_res_features``).
        """
        batch = sparse_prompt_embeddings.shape[0]
        src = _repeat_to_batch(image_embeddings, batch) + dense_prompt_embeddings
        tokens = torch.cat([self._output_tokens(batch), sparse_prompt_embeddings], dim=1)
        hs, src = self.transformer(src, image_pe, tokens)
        s = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens]

        b, c, h, w = dense_prompt_embeddings.shape
        upscaled = self._upscale(src.transpose(1, 2).reshape(b, c, h, w), high_res_features)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            # No object head: "object present" (sigmoid(10) ~ 1), as the official decoder.
            object_score_logits = iou_pred.new_full((b, 1), 10.0)
        return DecoderOutput(
            masks=masks,
            iou_pred=iou_pred,
            mask_tokens_out=mask_tokens_out,
            object_score_logits=object_score_logits,
        )

    def _output_tokens(self, batch: int) -> torch.Tensor:
        """``(B, [1 +] 1 + K, C)``: [object-score token,] IoU token, mask tokens."""
        parts = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            parts.insert(0, self.obj_score_token.weight)
        return torch.cat(parts, dim=0).unsqueeze(0).expand(batch, -1, -1)

    def _upscale(
        self,
        src: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor] | None,
    ) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, C/8, 4h, 4w)``, adding the high-res features if used."""
        if not self.use_high_res_features:
            return self.output_upscaling(src)
        if high_res_features is None:
            raise ValueError("use_high_res_features=True needs high_res_features (levels 0, 1)")
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = (_repeat_to_batch(f, src.shape[0]) for f in high_res_features)
        x = act1(ln1(dc1(src) + feat_s1))
        return act2(dc2(x) + feat_s0)

    def select(self, out: DecoderOutput, *, multimask_output: bool) -> MaskSelection:
        """The official output selection (``MaskDecoder.forward`` + token choice of SAM2Base).

        ``multimask_output=True``: candidates = tokens 1..K-1. Otherwise token 0, except with
        ``dynamic_multimask_via_stability`` (inference only): when token 0's stability score is
        below the threshold, the candidate with the highest predicted IoU replaces it.
        """
        batch = out.masks.shape[0]
        if multimask_output:
            indices = torch.arange(1, self.num_mask_tokens, device=out.masks.device)
            token_indices = indices.unsqueeze(0).expand(batch, -1)
            masks, iou_pred = out.masks[:, 1:], out.iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            token_indices = self._stable_token(out).unsqueeze(1)
            masks = _gather_tokens(out.masks, token_indices)
            iou_pred = out.iou_pred.gather(1, token_indices)
        else:
            token_indices = out.masks.new_zeros((batch, 1), dtype=torch.long)
            masks, iou_pred = out.masks[:, :1], out.iou_pred[:, :1]

        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens = out.mask_tokens_out[:, 1:]
        else:
            sam_tokens = out.mask_tokens_out[:, :1].expand(-1, masks.shape[1], -1)
        return MaskSelection(
            masks=masks,
            iou_pred=iou_pred,
            token_indices=token_indices,
            sam_tokens=sam_tokens,
            object_score_logits=out.object_score_logits,
        )

    def _stable_token(self, out: DecoderOutput) -> torch.Tensor:
        """``(B,)`` token 0 if its mask is stable, else 1 + argmax of the candidates' IoUs."""
        best = torch.argmax(out.iou_pred[:, 1:], dim=-1) + 1
        scores = stability_scores(out.masks[:, 0], self.dynamic_multimask_stability_delta)
        is_stable = scores >= self.dynamic_multimask_stability_thresh
        return torch.where(is_stable, torch.zeros_like(best), best)


def _gather_tokens(masks: torch.Tensor, token_indices: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` masks at ``(B, M)`` token indices -> ``(B, M, H, W)``."""
    batch_indices = torch.arange(masks.shape[0], device=masks.device).unsqueeze(1)
    return masks[batch_indices, token_indices]


def _repeat_to_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat each of the ``B_img`` items of ``x`` ``batch / B_img`` times (repeat_interleave)."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 0 or batch % x.shape[0] != 0:
        raise ValueError(f"batch of prompts ({batch}) is not a multiple of images ({x.shape[0]})")
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    return torch.repeat_interleave(x, batch // x.shape[0], dim=0)
