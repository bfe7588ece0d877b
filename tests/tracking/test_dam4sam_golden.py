"""The DAM4SAM policy against the official DAM4SAM runs (tests/data/golden/dam4sam/).

Every frame of the three recorded runs: candidate choice, IoUs, object score, pointer, masks,
memory selection, every DRM condition and decision, the DRM re-encodings; and the
initialisation intermediates of ``modules_init.npz``. Tolerances are the reference README's
(``../shared/reference/README.md``) and the golden README's; decisions must be identical.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import samurai.modeling.gemm as gemm
from samurai.io.frames import ImageFolderSource
from samurai.io.transforms import preprocess_image
from samurai.tracking.dam4sam_rules import DrmDecision, drm_size_ratio, evaluate_drm_rule
from tracking.dam4sam_trace import RUNS, collect, frame_files, golden, make_predictor, meta, run

pytestmark = [pytest.mark.golden, pytest.mark.slow]

NEAR_ZERO = 1e-3
"""A mask pixel may differ only where our logit is within this of 0 (float noise)."""


def _unpack(bits: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits)[: hw[0] * hw[1]].reshape(hw).astype(bool)


def _bits_match(ours_logits: np.ndarray, theirs: np.ndarray, ctx: str) -> None:
    """``ours_logits > 0`` equals ``theirs`` except where our logit is within NEAR_ZERO of 0."""
    diff = (ours_logits > 0) != theirs
    loud = diff & (np.abs(ours_logits) >= NEAR_ZERO)
    assert not loud.any(), f"{ctx}: {int(loud.sum())} mask pixels differ away from logit 0"
    assert diff.sum() <= 1e-4 * diff.size, f"{ctx}: {int(diff.sum())} near-zero flips"


def _bf16_close(ours: torch.Tensor, theirs_bits: np.ndarray, ctx: str) -> None:
    """Stored bfloat16 memories: equal, or one bfloat16 ulp apart (a float32 difference of
    ~1e-5 can cross a rounding boundary), or within the module-capture atol 1e-4 of the
    reference README (near 0, where a ulp is smaller than the float32 noise)."""
    a = ours.detach().to(torch.bfloat16).float().numpy()
    b = torch.from_numpy(theirs_bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    mag = np.maximum(np.abs(a), np.abs(b))
    ulp = np.exp2(np.floor(np.log2(np.maximum(mag, 1e-30))) - 7)  # bfloat16: 7 stored bits
    bad = np.abs(a - b) > np.maximum(ulp, 1e-4)
    assert not bad.any(), f"{ctx}: {int(bad.sum())} values differ by more than 1 bf16 ulp"
    assert (a != b).mean() < 1e-2, f"{ctx}: {int((a != b).sum())} values differ"


def _check_size_ratio(
    rule: DrmDecision, g: dict[str, np.ndarray], f: int, history_flips: list[int], ctx: str
) -> None:
    """The size history, median and ratio of the DRM rule on tracked frame ``f``.

    On the official sizes the rule must give the official median and ratio exactly. Ours may
    differ only as far as the near-zero flips of the chosen masks carry: each size by its
    frame's flips, the median (an order statistic) by the largest of them, and the ratio
    within the quotient of those bounds."""
    theirs = g["n_pixels"][1 : f + 1]
    assert len(rule.object_sizes) == len(theirs) == len(history_flips), ctx
    assert (np.abs(np.array(rule.object_sizes) - theirs) <= history_flips).all(), ctx
    ratio, median = drm_size_ratio(theirs)
    np.testing.assert_array_equal(
        [ratio, median], [g["size_ratio"][f], g["size_median"][f]], err_msg=ctx
    )
    if not any(history_flips):
        np.testing.assert_array_equal(
            [rule.size_ratio, rule.size_median], [ratio, median], err_msg=ctx
        )
        return
    if ratio == -1.0:
        assert rule.size_ratio == -1.0, ctx
        return
    n, spread, flips = float(theirs[-1]), max(history_flips), history_flips[-1]
    assert abs(rule.size_median - median) <= spread, ctx
    low, high = (n - flips) / (median + spread), (n + flips) / (median - spread)
    assert low <= rule.size_ratio <= high, f"{ctx}: {rule.size_ratio} not in [{low}, {high}]"


@pytest.mark.parametrize("name", RUNS)
def test_every_frame_matches_official(name: str) -> None:
    g = golden(name)
    hw = tuple(int(x) for x in g["video_hw"])
    results, _, state = run(name)
    c = collect(results)
    num = len(g["frame_idx"])
    assert len(results) == num
    last_added = -1
    reencoded_at = np.full(num, -1, np.int32)
    history_flips: list[int] = []  # near-zero flips of each tracked frame's chosen mask
    stats = {"frames_with_flips": 0, "max_area_diff": 0}
    for f in range(num):
        ctx = f"{name} frame {f}"
        np.testing.assert_allclose(c["obj_ptr"][f], g["obj_ptr"][f], atol=1e-4, err_msg=ctx)
        _bits_match(c["video_logits"][f], _unpack(g["mask_bits"][f], hw), ctx + " mask")
        _bits_match(c["low_res"][f], _unpack(g["low_res_positive_bits"][f], (256, 256)), ctx)
        low_theirs = _unpack(g["low_res_positive_bits"][f], (256, 256))
        low_flips = int(((c["low_res"][f] > 0) != low_theirs).sum())  # near-zero, checked above
        n_pos, n_pos_theirs = c["n_pixels_pos_lowres"][f], g["n_pixels_pos_lowres"][f]
        assert abs(n_pos - n_pos_theirs) <= low_flips, ctx
        assert (n_pos >= 1) == (n_pos_theirs >= 1), ctx  # the memory visibility decision
        if f == 0:
            continue
        d = c["details"][f]
        dam = d.dam4sam
        assert c["chosen_candidate"][f] == g["chosen_candidate"][f], ctx
        np.testing.assert_allclose(c["ious"][f], g["ious"][f], atol=2e-4, err_msg=ctx)
        np.testing.assert_allclose(d.ious_all4.numpy(), g["ious_all4"][f], atol=2e-4, err_msg=ctx)
        np.testing.assert_allclose(
            c["object_score_logit"][f], g["object_score_logit"][f], atol=1e-3, err_msg=ctx
        )
        if "cand_low_res_positive_bits" in g:
            for k in range(3):
                _bits_match(
                    d.candidate_logits[k].numpy(),
                    _unpack(g["cand_low_res_positive_bits"][f, k], (256, 256)),
                    f"{ctx} candidate {k}",
                )
        # memory selection (frames, source, temporal index, order) and pointers
        sel = dam.selection
        n = int((g["mem_frames"][f] >= 0).sum())
        assert [e.frame for e in sel.entries] == list(g["mem_frames"][f, :n]), ctx
        assert [int(e.from_cond) for e in sel.entries] == list(g["mem_is_drm"][f, :n]), ctx
        assert [e.tpos_index for e in sel.entries] == list(g["mem_tpos_idx"][f, :n]), ctx
        k = int((g["ptr_frames"][f] >= 0).sum())
        assert [p.frame for p in sel.pointers] == list(g["ptr_frames"][f, :k]), ctx
        assert [int(p.from_cond) for p in sel.pointers] == list(g["ptr_is_drm"][f, :k]), ctx
        assert sel.ptr_t_diff_max == g["ptr_t_diff_max"][f], ctx
        # the DRM rule: the video-resolution candidates it reads, then every quantity. Its
        # areas, boxes and IoUs are exact given identical masks; a candidate pixel whose
        # logit is float noise away from 0 (NEAR_ZERO) may flip and move them by that pixel.
        video = F.interpolate(
            d.candidate_logits[None], size=hw, mode="bilinear", align_corners=False
        )[0].numpy()
        flips = 0
        for k in range(3):
            theirs = _unpack(g["cand_video_positive_bits"][f, k], hw)
            _bits_match(video[k], theirs, f"{ctx} video candidate {k}")
            flips += int(((video[k] > 0) != theirs).sum())
        chosen = video[dam.decision.chosen_index] > 0
        frame_flips = int((chosen != _unpack(g["mask_bits"][f], hw)).sum())
        history_flips.append(frame_flips)
        stats["frames_with_flips"] += flips > 0
        rule = dam.decision
        assert last_added == g["last_added_before"][f], ctx
        assert abs(rule.n_pixels - g["n_pixels"][f]) <= frame_flips, ctx
        _check_size_ratio(rule, g, f, history_flips, ctx)
        assert (rule.iou_ok, rule.ratio_ge_min, rule.ratio_le_max, rule.present, rule.gap_ok) == (
            g["c_iou"][f],
            g["c_ratio_lo"][f],
            g["c_ratio_hi"][f],
            g["c_present"][f],
            g["c_spacing"][f],
        ), ctx
        assert rule.first_condition == g["cond1"][f], ctx
        assert rule.alt_candidates == tuple(g["alt_src_candidate"][f]), ctx
        # a removed area is a pixel count: each flipped pixel moves it by at most one
        removed, removed_theirs = np.array(rule.alt_removed_area), g["alt_removed_area"][f]
        assert np.abs(removed - removed_theirs).max() <= flips, f"{ctx}: {removed}"
        stats["max_area_diff"] = max(stats["max_area_diff"], np.abs(removed - removed_theirs).max())
        if flips == 0:
            assert rule.alt_largest_cc_area == tuple(g["alt_largest_cc_area"][f]), ctx
        else:
            # One flipped pixel can bridge two components and move the largest one's area by a
            # whole component, so no count of flips bounds it. The rule is a function of the
            # masks: on the official masks it must give the official numbers exactly.
            on_theirs = evaluate_drm_rule(
                f,
                last_added,
                rule.object_sizes[:-1],
                _unpack(g["mask_bits"][f], hw),
                [_unpack(g["cand_video_positive_bits"][f, k], hw) for k in range(3)],
                g["ious_all4"][f, :3],
                chosen_index=rule.chosen_index,
            )
            assert on_theirs.alt_removed_area == tuple(removed_theirs), ctx
            assert on_theirs.alt_largest_cc_area == tuple(g["alt_largest_cc_area"][f]), ctx
            for slot in range(2):
                rect, want = on_theirs.alt_union_rect[slot], g["alt_union_box_xywh"][f, slot]
                assert (rect is None and want[0] == -1) or tuple(want) == rect, ctx
            np.testing.assert_array_equal(np.array(on_theirs.alt_box_iou), g["alt_iou"][f], ctx)
        assert rule.n_alt_nonempty == g["n_alt_nonempty"][f], ctx
        iou_tol, rect_tol = (0.0, 0.0) if flips == 0 else (1e-2, 1.0)
        np.testing.assert_allclose(
            np.array(rule.alt_box_iou), g["alt_iou"][f], atol=iou_tol, err_msg=ctx
        )
        for slot in range(2):
            rect, want = rule.alt_union_rect[slot], g["alt_union_box_xywh"][f, slot]
            assert (rect is None and want[0] == -1) or (
                rect is not None and np.abs(np.array(rect) - want).max() <= rect_tol
            ), ctx
        assert np.abs(np.array(rule.chosen_rect) - g["chosen_box_xywh"][f]).max() <= rect_tol, ctx
        assert rule.alt_ok == g["c_alt"][f], ctx
        assert dam.drm_added == rule.add_to_drm == g["drm_added"][f], ctx
        if dam.drm_added:
            last_added = f
        if dam.reencoded is not None:
            reencoded_at[dam.reencoded] = f
    np.testing.assert_array_equal(reencoded_at, g["drm_reencoded_at"])
    print(f"{name}: {stats}")
    # the conditioning memory at the end: frame 0 + every DRM frame, in order of addition
    track = state.tracks[1]
    consolidated = [f for f in range(num - 1) if g["drm_added"][f]]
    assert list(track.cond_memory) == [0, *consolidated]
    # full-precision and float16 low-res logits where recorded
    if "low_res_logits_f0_3" in g:
        for f in range(4):
            ours, theirs = c["low_res"][f], g["low_res_logits_f0_3"][f]
            absent = theirs == -1024.0
            np.testing.assert_array_equal(ours[absent], theirs[absent])
            np.testing.assert_allclose(ours[~absent], theirs[~absent], atol=1e-3)
        for i, f in enumerate(g["low_res_logits_f16_frames"]):
            ours16 = c["low_res"][int(f)].astype(np.float16).astype(np.float32)
            theirs16 = g["low_res_logits_f16"][i].astype(np.float32)
            np.testing.assert_allclose(ours16, theirs16, atol=2e-2, err_msg=f"frame {f}")


def test_initialisation_matches_official_modules() -> None:
    """Preprocessing, box -> mask, mask-as-output, frame-0 memory and the first DRM
    re-encoding, against ``modules_init.npz``."""
    name = "dam4sam_t_bedroom"
    m = golden("modules_init")
    hw = tuple(int(x) for x in golden(name)["video_hw"])
    predictor = make_predictor(name)
    # 2.1 preprocessing: float bilinear antialiased resize of the PIL-decoded frame
    state = predictor.init_video(ImageFolderSource(frame_files(4)))
    image = predictor.stepper.preprocess(state.source.get(0), 1024)
    assert image.dtype == torch.float32 and image.shape == (3, 1024, 1024)
    np.testing.assert_array_equal(image[:, :8].numpy(), m["f0_input_crop_rows0_8"])
    assert hashlib.sha256(image.numpy().tobytes()).hexdigest() == str(m["f0_input_sha256_f32"])
    assert torch.equal(image, preprocess_image(state.source.get(0), 1024))
    # 2.2 box -> mask (estimate_mask_from_box) and its 1024 version
    from samurai.tracking.prompts import make_mask_prompt, make_point_prompt

    box = meta(name)["init_box_xyxy"]
    prompt = make_point_prompt(box=box, points=None, labels=None, video_size=hw, image_size=1024)
    with torch.inference_mode():
        mask = predictor.stepper.estimate_mask_from_box(predictor.features(state, 0), prompt, hw)
    np.testing.assert_array_equal(mask.numpy(), _unpack(m["init_mask_bits"], hw))
    assert int(mask.sum()) == int(m["init_mask_area"])
    mask_1024 = make_mask_prompt(mask, image_size=1024).mask
    assert mask_1024 is not None
    np.testing.assert_array_equal(
        mask_1024[0, 0].numpy() > 0, _unpack(m["mask_inputs_1024_bits"], (1024, 1024))
    )
    # frame 0: mask as output, pointer, score, memory from the binarised low-res mask
    first = predictor.add_prompt(state, frame_idx=0, obj_id=1, box=box)
    obj = first.objects[0]
    np.testing.assert_allclose(
        obj.low_res_logits[0].numpy(), m["init_low_res_logits"], atol=1e-5, rtol=0
    )
    assert obj.object_score_logit == float(m["init_object_score_logits"][0, 0]) == 10.0
    assert obj.details is not None
    np.testing.assert_allclose(obj.details.obj_ptr[None].numpy(), m["init_obj_ptr"], atol=1e-4)
    track = state.tracks[1]
    f0 = track.cond_memory[0]
    high = F.interpolate(f0.low_res_logits, size=(1024, 1024), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(
        high[0, 0].numpy() > 0, _unpack(m["f0_memenc_in_mask_positive_1024_bits"], (1024, 1024))
    )
    _bf16_close(f0.maskmem_features, m["f0_maskmem_features_bf16_bits"], "frame-0 memory")
    # the first DRM frame: its tracked memory, then the binarised re-encoding one frame later
    d = int(m["drm0_frame"])
    with torch.inference_mode():
        for f in range(1, d + 1):
            predictor.track_frame(state, f)
        _bf16_close(track.memory[d].maskmem_features, m["drm0_track_maskmem_bf16_bits"], "DRM")
        out = predictor.track_frame(state, d + 1)
    assert out.objects[0].details.dam4sam.reencoded == d
    entry = track.cond_memory[d]
    high = F.interpolate(
        entry.low_res_logits, size=(1024, 1024), mode="bilinear", align_corners=False
    )
    np.testing.assert_array_equal(
        high[0, 0].numpy() > 0,
        _unpack(m["drm0_consolidated_in_positive_1024_bits"], (1024, 1024)),
    )
    _bf16_close(entry.maskmem_features, m["drm0_consolidated_maskmem_bf16_bits"], "DRM re-enc")


DECISIONS = ("c_iou", "c_ratio_lo", "c_ratio_hi", "c_present", "c_spacing", "drm_added")


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("dam4sam_t_bedroom", "default"),
        ("dam4sam_t_bedroom", "split"),
        ("dam4sam_t_bedroom_iouhi", "default"),
    ],
)
def test_bfloat16_keeps_every_decision(
    name: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--dtype bfloat16`` keeps every decision of the float32 official run: candidates,
    DRM conditions and additions, memory frames. ``split``: the split-bfloat16 GEMMs of
    non-x86 CPUs and GPUs (oneDNN off), as tests/tracking/test_bf16_decisions.py does.
    Measured IoU error: 0.0075 on the main run with ``split`` (its closest IoU decision is
    0.0011 from the threshold, frames 34 and 39, and does not flip)."""
    if path == "split":
        monkeypatch.setattr(gemm, "onednn_available", lambda: False)
    g = golden(name)
    predictor = make_predictor(name, dtype="bfloat16")
    results, _, _ = run(name, predictor)
    c = collect(results)
    for f in range(1, len(g["frame_idx"])):
        ctx = f"{name} frame {f} (bfloat16)"
        d = c["details"][f].dam4sam
        assert c["chosen_candidate"][f] == g["chosen_candidate"][f], ctx
        rule = d.decision
        ours = (rule.iou_ok, rule.ratio_ge_min, rule.ratio_le_max, rule.present, rule.gap_ok)
        ours += (d.drm_added,)
        assert ours == tuple(bool(g[k][f]) for k in DECISIONS), ctx
        n = int((g["mem_frames"][f] >= 0).sum())
        assert [e.frame for e in d.selection.entries] == list(g["mem_frames"][f, :n]), ctx
    iou_error = np.nanmax(np.abs(c["ious"][1:] - g["ious"][1:]))
    assert iou_error < 0.01, f"IoU predictions moved by {iou_error:.4f} under bfloat16"
