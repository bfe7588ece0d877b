"""Composed-model steps of frames 0 and 1 against ``modules_t.npz`` (SAMURAI-T golden run)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import golden, synth_state_dict
from samurai.build import build_model
from samurai.modeling.sam2 import NO_OBJ_SCORE, MemoryInputs

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def g():
    return golden("modules_t")


@pytest.fixture(scope="module")
def model():
    return build_model("sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def close(ours: torch.Tensor, ref: np.ndarray, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    np.testing.assert_allclose(ours.detach().float().numpy(), ref, atol=atol, rtol=rtol)


@torch.inference_mode()
def test_object_pointers(model, g) -> None:
    tokens0 = _t(g["f0_dec_sam_tokens_all4"])
    appearing0 = _t(g["f0_dec_object_score_logits"]) > -1.0
    close(model.object_pointer(tokens0[:, 0], appearing0), g["f0_obj_ptr"])
    # Frame 1: object absent (score -1.356 <= -1) -> the fixed no-object pointer.
    tokens1 = _t(g["f1_dec_sam_tokens_all4"])
    appearing1 = _t(g["f1_dec_object_score_logits"]) > -1.0
    assert not bool(appearing1)
    chosen = int(np.argmax(g["f1_ious"][0])) + 1
    close(model.object_pointer(tokens1[:, chosen], appearing1), g["f1_obj_ptr"])


@torch.inference_mode()
def test_memory_tokens_of_frame_1(model, g) -> None:
    """Frame 1 attends to frame 0's bfloat16 memory (t_pos 0) and its pointer (offset 1 / 15)."""
    memory = MemoryInputs(
        maskmem_features=[_t(g["f0_maskmem_features"]).to(torch.bfloat16)],
        maskmem_pos_enc=[_t(g["f0_maskmem_pos_enc"])],
        maskmem_tpos=[0],
        obj_ptrs=[_t(g["f0_obj_ptr"])],
        obj_ptr_tdiff=[1],
        obj_ptr_tdiff_max=15,
    )
    tokens, pos = model._memory_tokens(memory, batch_size=1)
    assert int(g["f1_memattn_num_obj_ptr_tokens"]) == 4
    close(tokens, g["f1_memattn_memory"], atol=0, rtol=2**-8)
    close(pos, g["f1_memattn_memory_pos"])


@torch.inference_mode()
def test_encode_memory_both_frames(model, g) -> None:
    from samurai.modeling.sam2 import ImageFeatures

    def feats(key: str) -> ImageFeatures:
        v = _t(g[key])
        return ImageFeatures(
            vision_features=v, vision_pos_enc=_t(g["vision_pos_enc2"]), high_res_features=[]
        )

    # Frame 0: mask from a box prompt -> binarised; object present.
    mask0 = _t(g["f0_memenc_in_mask_positive_1024"]) * 2 - 1  # logits with the same sign
    out0 = model.encode_memory(
        feats("f0_backbone_fpn2"), mask0, _t(g["f0_dec_object_score_logits"]), binarize=True
    )
    close(out0.maskmem_features, g["f0_maskmem_features"])
    close(out0.maskmem_pos_enc, g["f0_maskmem_pos_enc"])
    # Frame 1: all logits -1024 (object absent) -> sigmoid 0; score <= 0 adds no_obj_embed_spatial.
    mask1 = torch.full((1, 1, 1024, 1024), NO_OBJ_SCORE)
    out1 = model.encode_memory(
        feats("f1_backbone_fpn2"), mask1, _t(g["f1_dec_object_score_logits"]), binarize=False
    )
    close(out1.maskmem_features, g["f1_maskmem_features"])


@torch.inference_mode()
def test_frame_1_candidates_after_absent_replacement(model, g) -> None:
    """The decoder's candidates are replaced by -1024 when the object score is <= -1."""
    from samurai.modeling.mask_decoder import DecoderOutput

    out = DecoderOutput(
        masks=_t(g["f1_dec_masks_all4"]),
        iou_pred=_t(g["f1_dec_ious_all4"]),
        mask_tokens_out=_t(g["f1_dec_sam_tokens_all4"]),
        object_score_logits=_t(g["f1_dec_object_score_logits"]),
    )
    sel = model.sam_mask_decoder.select(out, multimask_output=True)
    masks = torch.where(out.object_score_logits[:, :, None, None] > -1.0, sel.masks, NO_OBJ_SCORE)
    np.testing.assert_array_equal(masks.numpy(), g["f1_low_res_multimasks"])
    close(sel.iou_pred, g["f1_ious"])
    chosen = int(torch.argmax(sel.iou_pred[0]))
    np.testing.assert_array_equal(masks[:, chosen : chosen + 1].numpy(), g["f1_low_res_masks"])
    # Frame 0 (box prompt, single mask via the stability rule) keeps token 0.
    out0 = DecoderOutput(
        masks=_t(g["f0_dec_masks_all4"]),
        iou_pred=_t(g["f0_dec_ious_all4"]),
        mask_tokens_out=_t(g["f0_dec_sam_tokens_all4"]),
        object_score_logits=_t(g["f0_dec_object_score_logits"]),
    )
    sel0 = model.sam_mask_decoder.select(out0, multimask_output=False)
    assert int(sel0.token_indices[0, 0]) == 0
    np.testing.assert_array_equal(sel0.masks.numpy(), g["f0_low_res_masks"])
