#!/usr/bin/env python
"""Golden-data generator: the *official* DAM4SAM tracker on CPU, synthetic weights.

Runs `DAM4SAMTracker("sam21pp-T")` of github.com/jovanavidenovic/DAM4SAM (pinned
commit, CPU patch `official-cpu.patch`, see README.md next to this file) on the
bedroom frames of `../shared/reference` with the deterministic synthetic SAM 2.1
tiny weights of `synth_weights.py` (seed 0) plus the head calibration below, and
records, per frame, every decision of the tracker and the model quantities that
feed them. The official code is not modified beyond the CPU patch: everything is
observed from outside (wrapped methods, a forward pre-hook on the memory
attention, the tracker's own attributes), and every recorded DRM decision is
cross-checked against what the official code actually did.

Rerun (about 5 minutes on 1 thread; see README.md for the environment):

    /work/dam4sam_official/.venv/bin/python tools/golden/dam4sam/generate.py \
        --official /work/dam4sam_official --reference ../shared/reference \
        --out tests/data/golden/dam4sam

Outputs (in --out): `dam4sam_t_bedroom.npz` (per-frame arrays),
`dam4sam_t_bedroom.frames.json` (readable per-frame log), `modules_init.npz`
(module-level intermediates of the box -> mask initialisation and frame-0
memory), `coverage.json` (which DRM-rule branches the run exercised).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[2]

PINNED_COMMIT = "9c954504b39ebca4c412f207be0787c26bfac85a"
TRACKER_NAME = "sam21pp-T"
CONFIG = "sam21pp_hiera_t.yaml"
MANIFEST = "manifests/sam2.1_hiera_t.json"
SEED = 0
# Initial box: the one of the SAMURAI golden traces, [x0, y0, x1, y1] = [300, 0, 520, 400]
# in original-video pixels, given to DAM4SAM as [x, y, w, h] (what its box selector returns).
INIT_BOX_XYWH = [300, 0, 220, 400]

# Synthetic score calibration (see README.md, "Calibration"). Applied as overrides of
# synth_weights.HEAD_RULES before the state dict is built; every other tensor is the
# seed-0 synthetic tensor of the reference.
CALIBRATION = {
    # IoU head final-layer bias [single-mask token, candidates 1, 2, 3]
    "iou_b_values": [-0.6, 19.0, -41.78, 9.25],
    # object-score head final-layer bias
    "obj_score_b_mean": -17.376,
}

NO_OBJ_SCORE = -1024.0


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def bf16_bits(t) -> np.ndarray:
    """bfloat16 tensor -> its raw uint16 bits (exact)."""
    import torch

    return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).cpu().numpy().view(np.uint16)


def packbits(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", default="/work/dam4sam_official",
                    help="DAM4SAM checkout at the pinned commit with official-cpu.patch applied")
    ap.add_argument("--reference", default=str(PROJECT.parent / "shared" / "reference"))
    ap.add_argument("--out", default=str(PROJECT / "tests" / "data" / "golden" / "dam4sam"))
    ap.add_argument("--num-frames", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iou-b-values", type=float, nargs=4, default=None,
                    help="override CALIBRATION['iou_b_values'] (exploration only)")
    ap.add_argument("--obj-score-b", type=float, default=None,
                    help="override CALIBRATION['obj_score_b_mean'] (the _absent companion file uses -19.376)")
    ap.add_argument("--tag", default="dam4sam_t_bedroom", help="output file stem")
    ap.add_argument("--coverage-only", action="store_true",
                    help="only recompute <tag> coverage json from an existing <out>/<tag>.npz")
    args = ap.parse_args(argv)
    if args.coverage_only:
        path = Path(args.out) / (args.tag + ".npz")
        Z = np.load(str(path))
        G = {k: Z[k] for k in Z.files}
        meta = json.loads(str(G["meta_json"]))
        cov = coverage(G, len(G["frame_idx"]))
        cov["meta"] = dict(calibration=meta["calibration"], synth_state_dict_sha256=meta["synth_state_dict_sha256"],
                           official_commit=meta["official_commit"])
        name = "coverage.json" if args.tag == "dam4sam_t_bedroom" else args.tag + ".coverage.json"
        (Path(args.out) / name).write_text(json.dumps(cov, indent=1))
        print(json.dumps(cov["summary"], indent=1))
        return 0

    official = Path(args.official).resolve()
    reference = Path(args.reference).resolve()
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = json.loads(json.dumps(CALIBRATION))
    if args.iou_b_values is not None:
        calib["iou_b_values"] = list(args.iou_b_values)
    if args.obj_score_b is not None:
        calib["obj_score_b_mean"] = float(args.obj_score_b)

    # --- environment: stand-in torchvision, official repo, reference -------------------
    sys.path.insert(0, str(HERE / "standins"))
    sys.path.insert(0, str(official))
    sys.path.insert(0, str(reference))
    import torch

    torch.set_num_threads(args.threads)
    import synth_weights  # from the reference directory

    # --- synthetic checkpoint where the official `determine_tracker` looks for it -------
    synth_weights.HEAD_RULES.update(calib)
    sd = synth_weights.synth_state_dict(synth_weights.load_manifest(str(reference / MANIFEST)), seed=SEED)
    digest = synth_weights.state_dict_digest(sd)
    ckpt = official / "sam2.1_hiera_tiny.pt"  # utils.utils.determine_tracker("sam21pp-T")
    torch.save({"model": sd}, str(ckpt))
    sd_keys = list(sd)
    del sd

    cwd = os.getcwd()
    os.chdir(str(official))  # the official scripts are run from the repository root
    try:
        import dam4sam_tracker as D
        from PIL import Image
        from sam2.modeling import sam2_base
        from sam2.modeling.sam2_utils import get_1d_sine_pe
        from vot.region import RegionType
        from vot.region.raster import calculate_overlaps
        from vot.region.shapes import Mask
        from utils.utils import keep_largest_component

        assert Path(D.__file__).resolve().parent == official, D.__file__
        t_build = time.time()
        tracker = D.DAM4SAMTracker(TRACKER_NAME)
        t_build = time.time() - t_build
    finally:
        os.chdir(cwd)
    pred = tracker.predictor
    # the model really holds the synthetic weights of this run (the checkpoint path is fixed)
    msd = pred.state_dict()
    loaded = {k: msd[k] for k in sd_keys}
    assert synth_weights.state_dict_digest(loaded) == digest, "loaded weights differ from this run's"
    del msd, loaded
    assert str(tracker.checkpoint).endswith("sam2.1_hiera_tiny.pt") and tracker.model_cfg == CONFIG

    # =====================================================================================
    # Instrumentation (observation only; the official functions are called unchanged)
    # =====================================================================================
    ctx = {"frame": None, "phase": None}
    dec_calls = []          # every mask-decoder call: (frame, phase, tensors)
    shead_calls = []        # every _forward_sam_heads call
    memenc_calls = []       # every _encode_new_memory call
    runmem_calls = []       # consolidation re-encodings (_run_memory_encoder)
    memattn = {}            # frame -> identified memory
    drm_calls = []          # add_to_drm calls
    yields = {}             # frame -> what propagate_in_video yielded
    init_capture = {}

    dec = pred.sam_mask_decoder
    _orig_predict_masks = dec.predict_masks

    def predict_masks(*a, **k):
        out = _orig_predict_masks(*a, **k)
        masks, iou_pred, mask_tokens_out, object_score_logits = out
        dec_calls.append(dict(frame=ctx["frame"], phase=ctx["phase"],
                              masks=masks.detach().clone(), iou_pred=iou_pred.detach().clone(),
                              tokens=mask_tokens_out.detach().clone(),
                              obj=object_score_logits.detach().clone()))
        return out

    dec.predict_masks = predict_masks

    _orig_fsh = pred._forward_sam_heads

    def forward_sam_heads(*a, **k):
        out = _orig_fsh(*a, **k)
        (low_res_multimasks, high_res_multimasks, ious, low_res_masks, high_res_masks,
         obj_ptr, object_score_logits, extra) = out
        shead_calls.append(dict(frame=ctx["frame"], phase=ctx["phase"],
                                multimask=bool(k.get("multimask_output", False)),
                                mask_inputs=k.get("mask_inputs") is not None,
                                low_res_multimasks=low_res_multimasks.detach().clone(),
                                ious=ious.detach().clone(), low_res_masks=low_res_masks.detach().clone(),
                                obj_ptr=obj_ptr.detach().clone(), obj=object_score_logits.detach().clone(),
                                all_ious=np.array(extra[1], copy=True)))
        return out

    pred._forward_sam_heads = forward_sam_heads

    _orig_enc = pred._encode_new_memory

    def encode_new_memory(*a, **k):
        feats, pos = _orig_enc(*a, **k)
        hr = k["pred_masks_high_res"]
        memenc_calls.append(dict(frame=ctx["frame"], phase=ctx["phase"],
                                 is_mask_from_pts=bool(k["is_mask_from_pts"]),
                                 obj=k["object_score_logits"].detach().clone(),
                                 in_pos_1024=(hr > 0).detach().cpu().numpy()[0, 0],
                                 feats_bf16=bf16_bits(feats)))
        return feats, pos

    pred._encode_new_memory = encode_new_memory

    _orig_runmem = pred._run_memory_encoder

    def run_memory_encoder(inference_state, frame_idx, batch_size, high_res_masks,
                           object_score_logits, is_mask_from_pts):
        saved = (ctx["frame"], ctx["phase"])
        ctx["frame"], ctx["phase"] = frame_idx, "consolidate"
        runmem_calls.append(dict(at_frame=saved[0], frame=frame_idx, is_mask_from_pts=bool(is_mask_from_pts)))
        try:
            return _orig_runmem(inference_state, frame_idx, batch_size, high_res_masks,
                                object_score_logits, is_mask_from_pts)
        finally:
            ctx["frame"], ctx["phase"] = saved

    pred._run_memory_encoder = run_memory_encoder

    _orig_rsfi = pred._run_single_frame_inference

    def run_single_frame_inference(*a, **k):
        saved = (ctx["frame"], ctx["phase"])
        ctx["frame"] = k["frame_idx"]
        ctx["phase"] = "init_mask" if k.get("mask_inputs") is not None else "track"
        try:
            return _orig_rsfi(*a, **k)
        finally:
            ctx["frame"], ctx["phase"] = saved

    pred._run_single_frame_inference = run_single_frame_inference

    _orig_add_to_drm = pred.add_to_drm

    def add_to_drm(inference_state, frame_idx, obj_id):
        drm_calls.append(int(frame_idx))
        return _orig_add_to_drm(inference_state=inference_state, frame_idx=frame_idx, obj_id=obj_id)

    pred.add_to_drm = add_to_drm

    _orig_piv = pred.propagate_in_video

    def propagate_in_video(*a, **k):
        for item in _orig_piv(*a, **k):
            yields[int(item[0])] = item
            yield item

    pred.propagate_in_video = propagate_in_video

    _orig_est = tracker.estimate_mask_from_box

    def estimate_mask_from_box(bbox):
        saved = (ctx["frame"], ctx["phase"])
        ctx["frame"], ctx["phase"] = 0, "estimate_mask_from_box"
        try:
            m = _orig_est(bbox)
        finally:
            ctx["frame"], ctx["phase"] = saved
        init_capture["init_mask"] = np.array(m, copy=True)
        return m

    tracker.estimate_mask_from_box = estimate_mask_from_box

    def identify_memory(module, args_, kwargs):
        f = ctx["frame"]
        memory = kwargs["memory"]
        memory_pos = kwargs["memory_pos"]
        n_ptr_tok = int(kwargs["num_obj_ptr_tokens"])
        state = tracker.inference_state
        od = state["output_dict"]
        cands = [(t, "drm", o) for t, o in od["cond_frame_outputs"].items()]
        cands += [(t, "ram", o) for t, o in od["non_cond_frame_outputs"].items()]
        n_spatial = memory.shape[0] - n_ptr_tok
        assert n_spatial % 4096 == 0
        tpos = pred.maskmem_tpos_enc
        mem_frames, mem_kind, mem_tpos_idx = [], [], []
        for i in range(n_spatial // 4096):
            chunk = memory[i * 4096:(i + 1) * 4096]
            cpos = memory_pos[i * 4096:(i + 1) * 4096]
            hits = [(t, kind, o) for t, kind, o in cands
                    if torch.equal(o["maskmem_features"].flatten(2).permute(2, 0, 1).to(chunk.dtype), chunk)]
            assert len(hits) == 1, (f, i, [(h[0], h[1]) for h in hits])
            t, kind, o = hits[0]
            penc = o["maskmem_pos_enc"][-1].flatten(2).permute(2, 0, 1)
            ks = [k_ for k_ in range(tpos.shape[0]) if torch.equal(penc + tpos[k_], cpos)]
            assert len(ks) == 1, (f, i, ks)
            mem_frames.append(int(t))
            mem_kind.append(kind)
            mem_tpos_idx.append(int(ks[0]))
        ptr_frames, ptr_kind = [], []
        if n_ptr_tok:
            toks = memory[n_spatial:]
            assert n_ptr_tok % 4 == 0
            for j in range(n_ptr_tok // 4):
                p = toks[4 * j:4 * j + 4].permute(1, 0, 2).reshape(1, 256)
                hits = [(t, kind) for t, kind, o in cands if torch.equal(o["obj_ptr"], p)]
                assert len(hits) >= 1, (f, j)
                # identical pointers on several frames would be ambiguous: refuse
                assert len(hits) == 1, (f, j, hits)
                ptr_frames.append(int(hits[0][0]))
                ptr_kind.append(hits[0][1])
            # verify the temporal encoding of the pointers by recomputing it officially
            num_frames = state["num_frames"]
            t_diff_max = min(num_frames, pred.max_obj_ptrs_in_encoder) - 1
            pos_list = [abs(f - t) for t in ptr_frames]
            obj_pos = get_1d_sine_pe(torch.tensor(pos_list) / t_diff_max, dim=pred.hidden_dim)
            obj_pos = pred.obj_ptr_tpos_proj(obj_pos).unsqueeze(1).expand(-1, 1, pred.mem_dim)
            obj_pos = obj_pos.repeat_interleave(pred.hidden_dim // pred.mem_dim, dim=0)
            assert torch.equal(obj_pos, memory_pos[n_spatial:]), f
        else:
            t_diff_max = None
        memattn[f] = dict(mem_frames=mem_frames, mem_kind=mem_kind, mem_tpos_idx=mem_tpos_idx,
                          ptr_frames=ptr_frames, ptr_kind=ptr_kind, ptr_t_diff_max=t_diff_max,
                          num_frames=int(state["num_frames"]),
                          drm_available=sorted(int(t) for t in od["cond_frame_outputs"]))
        return None

    pred.memory_attention.register_forward_pre_hook(identify_memory, with_kwargs=True)

    # =====================================================================================
    # The run: exactly the official demo loop (run_bbox_example.py)
    # =====================================================================================
    frames_dir = reference / "frames" / "bedroom"
    F_ = args.num_frames
    H = W = None
    per = []
    times = []
    for i in range(F_):
        img = Image.open(str(frames_dir / ("%05d.jpg" % i)))
        sizes_before = [int(s) for s in tracker.object_sizes] if i > 0 else []
        last_added_before = int(tracker.last_added) if i > 0 else None
        n_drm_before = len(drm_calls)
        t0 = time.time()
        ctx["frame"], ctx["phase"] = i, ("init" if i == 0 else "track")
        if i == 0:
            out = tracker.initialize(img, None, bbox=INIT_BOX_XYWH)
            H, W = tracker.img_height, tracker.img_width
        else:
            out = tracker.track(img)
        times.append(time.time() - t0)
        ctx["frame"], ctx["phase"] = None, None
        m_out = np.asarray(out["pred_mask"]).astype(np.uint8)
        rec = dict(frame=i, mask=m_out, time_s=times[-1])
        if i > 0:
            rec.update(drm_eval(i, yields[i], sizes_before, last_added_before, W, H,
                                Mask, RegionType, calculate_overlaps, keep_largest_component))
            added_now = drm_calls[n_drm_before:]
            assert added_now == ([i] if rec["drm_added"] else []), (i, added_now, rec["drm_added"])
            assert [int(s) for s in tracker.object_sizes] == sizes_before + [rec["n_pixels"]]
            assert tracker.last_added == (i if rec["drm_added"] else last_added_before)
            assert np.array_equal(rec["chosen_mask_video"], m_out)
        per.append(rec)
        sc = ""
        if i > 0:
            sc = " obj=%.4f" % float([c for c in dec_calls if c["phase"] == "track" and c["frame"] == i][0]["obj"][0, 0])
            rec["obj_score"] = float(sc.split("=")[1])
        print("frame %2d  %.1fs  %s%s" % (i, times[-1], short(rec), sc), flush=True)

    # raw records first (so that a failure below does not lose the run)
    import pickle

    import tempfile

    with open(os.path.join(tempfile.gettempdir(), args.tag + ".raw.pkl"), "wb") as fh:
        pickle.dump(dict(per=per, memattn=memattn, runmem=runmem_calls, drm_calls=drm_calls,
                         dec=[{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in c.items()} for c in dec_calls]), fh)

    # =====================================================================================
    # Assemble the arrays
    # =====================================================================================
    G = {}
    G["frame_idx"] = np.arange(F_, dtype=np.int32)
    # decoder outputs of the tracked frames (one decoder call per tracked frame)
    track_dec = {c["frame"]: c for c in dec_calls if c["phase"] == "track"}
    track_heads = {c["frame"]: c for c in shead_calls if c["phase"] == "track"}
    assert sorted(track_dec) == list(range(1, F_)), sorted(track_dec)
    nan4 = np.full(4, np.nan, np.float32)
    G["ious_all4"] = np.stack([track_dec[f]["iou_pred"][0].numpy() if f in track_dec else nan4 for f in range(F_)]).astype(np.float32)
    G["ious"] = np.stack([track_heads[f]["ious"][0].numpy() if f in track_heads else nan4[:3] for f in range(F_)]).astype(np.float32)
    assert np.array_equal(G["ious"][1:], G["ious_all4"][1:, 1:])
    obj = np.full(F_, np.nan, np.float32)
    for f in range(1, F_):
        obj[f] = float(track_dec[f]["obj"][0, 0])
    init_heads = [c for c in shead_calls if c["frame"] == 0 and c["phase"] == "init_mask"]
    G["object_score_logit"] = obj  # frame 0: mask input, score fixed to +10 (see modules_init)
    G["is_obj_appearing"] = np.array([True] + [bool(obj[f] > 0) for f in range(1, F_)])
    G["chosen_candidate"] = np.array([-1] + [per[f]["m_idx"] for f in range(1, F_)], np.int32)
    G["chosen_iou"] = np.array([np.nan] + [per[f]["m_iou"] for f in range(1, F_)], np.float32)
    G["obj_ptr"] = np.zeros((F_, 256), np.float32)
    od = tracker.inference_state["output_dict"]
    for f in range(F_):
        o = od["cond_frame_outputs"].get(f, od["non_cond_frame_outputs"].get(f))
        G["obj_ptr"][f] = o["obj_ptr"][0].numpy()
    for f in range(1, F_):
        assert torch.equal(track_heads[f]["obj_ptr"], od["cond_frame_outputs"].get(f, od["non_cond_frame_outputs"].get(f))["obj_ptr"])
    G["n_pixels_pos_lowres"] = np.array([int(np.asarray(od["cond_frame_outputs"].get(f, od["non_cond_frame_outputs"].get(f))["n_pixels_pos"]).reshape(-1)[0]) for f in range(F_)], np.int64)
    # chosen low-res logits (what the model stores as pred_masks; -1024 when absent)
    low = np.zeros((F_, 256, 256), np.float32)
    for f in range(F_):
        o = od["cond_frame_outputs"].get(f, od["non_cond_frame_outputs"].get(f))
        low[f] = o["pred_masks"][0, 0].numpy()
    sel = lowres_f16_frames(F_, [f for f in range(1, F_) if per[f]["drm_added"]])
    G["low_res_logits_f16_frames"] = np.array(sel, np.int32)
    G["low_res_logits_f16"] = low[sel].astype(np.float16)
    G["low_res_logits_f0_3"] = low[:4].copy()
    G["low_res_positive_bits"] = np.stack([packbits(low[f] > 0) for f in range(F_)])
    # candidate masks (after the object-absent replacement) at 256 and at video resolution
    cand_low_bits = np.zeros((F_, 3, 256 * 256 // 8), np.uint8)
    for f in range(1, F_):
        for c in range(3):
            cand_low_bits[f, c] = packbits(track_heads[f]["low_res_multimasks"][0, c].numpy() > 0)
    G["cand_low_res_positive_bits"] = cand_low_bits
    G["video_hw"] = np.array([H, W], np.int32)
    G["mask_bits"] = np.stack([packbits(per[f]["mask"]) for f in range(F_)])
    G["mask_area"] = np.array([int(per[f]["mask"].sum()) for f in range(F_)], np.int64)
    cvb = np.zeros((F_, 3, (H * W + 7) // 8), np.uint8)
    for f in range(1, F_):
        for c in range(3):
            cvb[f, c] = packbits(per[f]["cand_video_pos"][c])
    G["cand_video_positive_bits"] = cvb
    G["cand_video_area"] = np.array([[0, 0, 0]] + [[int(x.sum()) for x in per[f]["cand_video_pos"]] for f in range(1, F_)], np.int64)
    # DRM rule
    def col(key, dtype, fill):
        return np.array([fill] + [per[f][key] for f in range(1, F_)], dtype)
    G["n_pixels"] = np.array([int(per[0]["mask"].sum())] + [per[f]["n_pixels"] for f in range(1, F_)], np.int64)
    G["size_median"] = col("median", np.float64, np.nan)
    G["size_ratio"] = col("ratio", np.float64, np.nan)
    G["last_added_before"] = col("last_added_before", np.int32, -1)
    for k in ["c_iou", "c_ratio_lo", "c_ratio_hi", "c_present", "c_spacing", "cond1", "alt_evaluated", "c_alt", "drm_added"]:
        G[k] = col(k, bool, False)
    G["n_alt_nonempty"] = col("n_alt_nonempty", np.int32, -1)
    G["alt_iou"] = np.array([[np.nan, np.nan]] + [per[f]["alt_iou"] for f in range(1, F_)], np.float64)
    G["alt_src_candidate"] = np.array([[-1, -1]] + [per[f]["alt_src"] for f in range(1, F_)], np.int32)
    G["alt_removed_area"] = np.array([[-1, -1]] + [per[f]["alt_removed_area"] for f in range(1, F_)], np.int64)
    G["alt_largest_cc_area"] = np.array([[-1, -1]] + [per[f]["alt_cc_area"] for f in range(1, F_)], np.int64)
    G["alt_union_box_xywh"] = np.array([[[-1] * 4] * 2] + [per[f]["alt_boxes"] for f in range(1, F_)], np.float32)
    G["chosen_box_xywh"] = np.array([vot_rect(per[0]["mask"], Mask, RegionType)] + [per[f]["chosen_box"] for f in range(1, F_)], np.float32)
    G["alt_min_iou"] = np.array([np.nan] + [per[f]["alt_min_iou"] for f in range(1, F_)], np.float64)
    # memory
    memf = np.full((F_, 7), -1, np.int32)
    memk = np.full((F_, 7), -1, np.int8)
    memt = np.full((F_, 7), -1, np.int32)
    # pointers: up to max_cond_frames_in_attn (4) DRM frames + 15 past frames
    ptrf = np.full((F_, 20), -1, np.int32)
    ptrk = np.full((F_, 20), -1, np.int8)
    ptmax = np.full(F_, -1, np.int32)
    drm_avail = np.full((F_, F_), -1, np.int32)
    for f in range(1, F_):
        m = memattn[f]
        n = len(m["mem_frames"])
        memf[f, :n] = m["mem_frames"]
        memk[f, :n] = [1 if k == "drm" else 0 for k in m["mem_kind"]]
        memt[f, :n] = m["mem_tpos_idx"]
        n = len(m["ptr_frames"])
        ptrf[f, :n] = m["ptr_frames"]
        ptrk[f, :n] = [1 if k == "drm" else 0 for k in m["ptr_kind"]]
        ptmax[f] = -1 if m["ptr_t_diff_max"] is None else m["ptr_t_diff_max"]
        drm_avail[f, :len(m["drm_available"])] = m["drm_available"]
    G["mem_frames"], G["mem_is_drm"], G["mem_tpos_idx"] = memf, memk, memt
    G["ptr_frames"], G["ptr_is_drm"], G["ptr_t_diff_max"] = ptrf, ptrk, ptmax
    G["drm_frames_available"] = drm_avail
    G["drm_reencoded_at"] = np.full(F_, -1, np.int32)
    for c in runmem_calls:
        if c["frame"] != 0:
            G["drm_reencoded_at"][c["frame"]] = c["at_frame"]
    G["time_s"] = np.array(times, np.float64)

    meta = dict(
        official_repo="github.com/jovanavidenovic/DAM4SAM", official_commit=PINNED_COMMIT,
        official_patch="tools/golden/dam4sam/official-cpu.patch", tracker_name=TRACKER_NAME,
        config=CONFIG, manifest=MANIFEST, seed=SEED, calibration=calib,
        synth_state_dict_sha256=digest, init_box_xywh=INIT_BOX_XYWH,
        init_box_xyxy=[INIT_BOX_XYWH[0], INIT_BOX_XYWH[1], INIT_BOX_XYWH[0] + INIT_BOX_XYWH[2], INIT_BOX_XYWH[1] + INIT_BOX_XYWH[3]],
        frames="frames/bedroom/%05d.jpg", num_frames=F_, video_hw=[H, W],
        threads=args.threads, build_s=t_build,
        software=dict(python=platform.python_version(), torch=torch.__version__, numpy=np.__version__,
                      pillow=Image.__version__, torchvision="stand-in (tools/golden/dam4sam/standins)",
                      vot_toolkit=_ver("vot-toolkit"), opencv=_cv2ver(), numba=_ver("numba"),
                      hydra_core=_ver("hydra-core")),
        generator="tools/golden/dam4sam/generate.py",
    )
    G["meta_json"] = np.array(json.dumps(meta))
    np.savez_compressed(str(out_dir / (args.tag + ".npz")), **G)

    # ---------------- module-level captures of the initialisation -------------------------
    M = {}
    est_dec = [c for c in dec_calls if c["phase"] == "estimate_mask_from_box"]
    assert len(est_dec) == 1
    M["est_dec_masks_all4_f16"] = est_dec[0]["masks"].numpy().astype(np.float16)
    M["est_dec_ious_all4"] = est_dec[0]["iou_pred"].numpy()
    M["est_dec_object_score_logits"] = est_dec[0]["obj"].numpy()
    M["est_dec_tokens_all4"] = est_dec[0]["tokens"].numpy()
    M["init_mask_bits"] = packbits(init_capture["init_mask"] > 0)
    M["init_mask_area"] = np.array(int((init_capture["init_mask"] > 0).sum()))
    mi = tracker.inference_state["mask_inputs_per_obj"][0][0]
    M["mask_inputs_1024_bits"] = packbits(mi[0, 0].numpy() > 0.5)
    M["mask_inputs_1024_area"] = np.array(int((mi[0, 0] > 0.5).sum()))
    assert len(init_heads) == 1
    M["init_obj_ptr_dec_ious_all4"] = [c for c in dec_calls if c["phase"] == "init_mask"][0]["iou_pred"].numpy()
    M["init_obj_ptr_dec_object_score_logits"] = [c for c in dec_calls if c["phase"] == "init_mask"][0]["obj"].numpy()
    M["init_obj_ptr"] = G["obj_ptr"][0:1]
    M["init_low_res_logits"] = low[0:1]
    o0 = od["cond_frame_outputs"][0]
    M["init_object_score_logits"] = o0["object_score_logits"].numpy()
    enc0 = [c for c in memenc_calls if c["frame"] == 0 and c["phase"] == "consolidate"]
    assert len(enc0) == 1 and enc0[0]["is_mask_from_pts"]
    M["f0_memenc_in_mask_positive_1024_bits"] = packbits(enc0[0]["in_pos_1024"])
    M["f0_maskmem_features_bf16_bits"] = enc0[0]["feats_bf16"]
    assert np.array_equal(bf16_bits(o0["maskmem_features"]), enc0[0]["feats_bf16"])
    # first DRM frame: the tracked (sigmoid) encoding and the consolidation re-encoding
    drm_frames = [f for f in range(1, F_) if per[f]["drm_added"]]
    if drm_frames:
        d = drm_frames[0]
        tr = [c for c in memenc_calls if c["frame"] == d and c["phase"] == "track"]
        cs = [c for c in memenc_calls if c["frame"] == d and c["phase"] == "consolidate"]
        M["drm0_frame"] = np.array(d)
        M["drm0_track_maskmem_bf16_bits"] = tr[0]["feats_bf16"]
        M["drm0_track_is_mask_from_pts"] = np.array(tr[0]["is_mask_from_pts"])
        if cs:
            M["drm0_consolidated_maskmem_bf16_bits"] = cs[0]["feats_bf16"]
            M["drm0_consolidated_in_positive_1024_bits"] = packbits(cs[0]["in_pos_1024"])
            M["drm0_consolidated_is_mask_from_pts"] = np.array(cs[0]["is_mask_from_pts"])
    # input image of frame 0 as the tracker prepares it (digest + a crop)
    img0 = Image.open(str(frames_dir / "00000.jpg"))
    x0 = tracker._prepare_image(img0)
    M["f0_input_sha256_f32"] = np.array(sha256_bytes(x0.contiguous().numpy().tobytes()))
    M["f0_input_crop_rows0_8"] = x0[:, :8, :].numpy()
    M["meta_json"] = G["meta_json"]
    mod_name = "modules_init.npz" if args.tag == "dam4sam_t_bedroom" else args.tag + ".modules_init.npz"
    np.savez_compressed(str(out_dir / mod_name), **M)

    # ---------------- readable log + coverage --------------------------------------------
    log = dict(meta=meta, frames=[frame_json(per[f], G, f) for f in range(F_)])
    (out_dir / (args.tag + ".frames.json")).write_text(json.dumps(log, indent=1))
    cov = coverage(G, F_)
    cov["meta"] = dict(calibration=calib, synth_state_dict_sha256=digest, official_commit=PINNED_COMMIT)
    (out_dir / ("coverage.json" if args.tag == "dam4sam_t_bedroom" else args.tag + ".coverage.json")).write_text(json.dumps(cov, indent=1))
    print(json.dumps(cov["summary"], indent=1))
    return 0


def lowres_f16_frames(num_frames, drm_frames):
    """Frames whose chosen low-res logits are stored (float16): every 5th frame + DRM frames."""
    return sorted(set(range(0, num_frames, 5)) | set(int(f) for f in drm_frames))


def _ver(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _cv2ver():
    import cv2

    return cv2.__version__


def vot_rect(mask, Mask, RegionType):
    r = Mask(np.asarray(mask).astype(np.uint8)).convert(RegionType.RECTANGLE)
    return [r.x, r.y, r.width, r.height]


def drm_eval(frame, item, sizes_before, last_added, W, H, Mask, RegionType, calculate_overlaps,
             keep_largest_component):
    """Mirror of DAM4SAMTracker.track()'s DRM logic, evaluating *every* condition.

    Same statements as the official code (dam4sam_tracker.py, pinned commit), but the
    alternative-mask test is also evaluated when the first condition fails (flagged
    `alt_evaluated=False` then); the official decision is `cond1 and c_alt`. The caller
    asserts that this equals what the official tracker did on the frame.
    """
    out_frame_idx, _, out_mask_logits, alternative_masks_ious = item
    assert out_frame_idx == frame
    m = (out_mask_logits[0][0] > 0.0).float().cpu().numpy().astype(np.uint8)
    alternative_masks, out_all_ious = alternative_masks_ious
    cand_video_pos = [(a[0][0] > 0.0).cpu().numpy() for a in alternative_masks]
    m_idx = int(np.argmax(out_all_ious))
    m_iou = out_all_ious[m_idx]
    alt_src = [i for i in range(len(alternative_masks)) if i != m_idx]
    alternative_masks = [mk for i, mk in enumerate(alternative_masks) if i != m_idx]
    n_pixels = (m == 1).sum()
    sizes = list(sizes_before) + [n_pixels]
    med = np.nan
    if len(sizes) > 1 and n_pixels >= 1:
        sel = [size for size in sizes[-300:] if size >= 1][-10:]
        med = float(np.median(sel))
        ratio = n_pixels / np.median(sel)
    else:
        ratio = -1
    c_iou = bool(m_iou > 0.8)
    c_lo = bool(ratio >= 0.8)
    c_hi = bool(ratio <= 1.2)
    c_present = bool(n_pixels >= 1)
    c_spacing = bool(frame - last_added > 5 or last_added == -1)
    cond1 = c_iou and c_lo and c_hi and c_present and c_spacing
    alts = [Mask((m_[0][0] > 0.0).cpu().numpy()).rasterize((0, 0, W - 1, H - 1)).astype(np.uint8)
            for m_ in alternative_masks]
    chosen_mask_np = m.copy()
    chosen_bbox = Mask(chosen_mask_np).convert(RegionType.RECTANGLE)
    alts = [np.logical_and(m_, np.logical_not(chosen_mask_np)).astype(np.uint8) for m_ in alts]
    removed_area = [int(a.sum()) for a in alts]
    kept = [(s, keep_largest_component(a)) for s, a in zip(alt_src, alts) if np.sum(a) >= 1]
    cc_area = [-1, -1]
    boxes = [[-1.0] * 4, [-1.0] * 4]
    ious = [np.nan, np.nan]
    c_alt = False
    min_iou = np.nan
    if len(kept) > 0:
        unions = [np.logical_or(a, chosen_mask_np).astype(np.uint8) for _, a in kept]
        bbs = [Mask(u).convert(RegionType.RECTANGLE) for u in unions]
        ov = [calculate_overlaps([chosen_bbox], [bb])[0] for bb in bbs]
        for j, (s, a) in enumerate(kept):
            slot = alt_src.index(s)
            cc_area[slot] = int(a.sum())
            boxes[slot] = [bbs[j].x, bbs[j].y, bbs[j].width, bbs[j].height]
            ious[slot] = float(ov[j])
        min_iou = float(np.min(np.array(ov)))
        c_alt = bool(np.min(np.array(ov)) <= 0.7)
    return dict(m_idx=m_idx, m_iou=float(m_iou), n_pixels=int(n_pixels), median=med, ratio=float(ratio),
                last_added_before=int(last_added), c_iou=c_iou, c_ratio_lo=c_lo, c_ratio_hi=c_hi,
                c_present=c_present, c_spacing=c_spacing, cond1=cond1, alt_evaluated=cond1,
                n_alt_nonempty=len(kept), alt_src=alt_src, alt_removed_area=removed_area,
                alt_cc_area=cc_area, alt_boxes=boxes, alt_iou=ious, alt_min_iou=min_iou, c_alt=c_alt,
                drm_added=bool(cond1 and c_alt),
                chosen_box=[chosen_bbox.x, chosen_bbox.y, chosen_bbox.width, chosen_bbox.height],
                chosen_mask_video=m, cand_video_pos=cand_video_pos,
                all_ious=[float(x) for x in out_all_ious])


def short(rec):
    if rec["frame"] == 0:
        return "init area=%d" % int(rec["mask"].sum())
    # (object score printed by the caller)
    return ("idx=%d iou=%.3f n=%d ratio=%.3f [iou %d lo %d hi %d pres %d sp %d] alt=%s min=%.3f add=%d" % (
        rec["m_idx"], rec["m_iou"], rec["n_pixels"], rec["ratio"], rec["c_iou"], rec["c_ratio_lo"],
        rec["c_ratio_hi"], rec["c_present"], rec["c_spacing"], rec["n_alt_nonempty"],
        rec["alt_min_iou"] if rec["alt_min_iou"] == rec["alt_min_iou"] else -1, rec["drm_added"]))


def frame_json(rec, G, f):
    d = dict(frame=f)
    if f == 0:
        d.update(kind="init (estimate_mask_from_box -> add_new_mask)", mask_area=int(G["mask_area"][0]),
                 chosen_box_xywh=[float(x) for x in G["chosen_box_xywh"][0]])
        return d
    d.update(
        ious=[round(float(x), 6) for x in G["ious"][f]], ious_all4=[round(float(x), 6) for x in G["ious_all4"][f]],
        object_score_logit=round(float(G["object_score_logit"][f]), 5), chosen_candidate=int(G["chosen_candidate"][f]),
        chosen_iou=round(float(G["chosen_iou"][f]), 6), n_pixels=int(G["n_pixels"][f]),
        n_pixels_pos_lowres=int(G["n_pixels_pos_lowres"][f]),
        size_median=None if np.isnan(G["size_median"][f]) else float(G["size_median"][f]),
        size_ratio=float(G["size_ratio"][f]), last_added_before=int(G["last_added_before"][f]),
        conditions=dict(iou_gt_0_8=bool(G["c_iou"][f]), ratio_ge_0_8=bool(G["c_ratio_lo"][f]),
                        ratio_le_1_2=bool(G["c_ratio_hi"][f]), present=bool(G["c_present"][f]),
                        spacing_gt_5=bool(G["c_spacing"][f]), all_first=bool(G["cond1"][f])),
        alt=dict(evaluated_by_official=bool(G["alt_evaluated"][f]), n_nonempty=int(G["n_alt_nonempty"][f]),
                 src_candidates=[int(x) for x in G["alt_src_candidate"][f]],
                 removed_area=[int(x) for x in G["alt_removed_area"][f]],
                 largest_cc_area=[int(x) for x in G["alt_largest_cc_area"][f]],
                 union_box_xywh=[[float(v) for v in b] for b in G["alt_union_box_xywh"][f]],
                 box_iou=[None if np.isnan(x) else float(x) for x in G["alt_iou"][f]],
                 min_iou_le_0_7=bool(G["c_alt"][f])),
        chosen_box_xywh=[float(x) for x in G["chosen_box_xywh"][f]],
        drm_added=bool(G["drm_added"][f]),
        memory=dict(frames=[int(x) for x in G["mem_frames"][f] if x >= 0],
                    is_drm=[int(x) for x in G["mem_is_drm"][f] if x >= 0],
                    tpos_idx=[int(x) for x in G["mem_tpos_idx"][f] if x >= 0],
                    drm_available=[int(x) for x in G["drm_frames_available"][f] if x >= 0]),
        pointers=dict(frames=[int(x) for x in G["ptr_frames"][f] if x >= 0],
                      is_drm=[int(x) for x in G["ptr_is_drm"][f] if x >= 0],
                      t_diff_max=int(G["ptr_t_diff_max"][f])),
        mask_area=int(G["mask_area"][f]),
    )
    return d


def coverage(G, F_):
    fr = range(1, F_)
    cov = {}

    def frames(pred):
        return [f for f in fr if pred(f)]

    conds = ["c_iou", "c_ratio_lo", "c_ratio_hi", "c_present", "c_spacing"]
    names = {"c_iou": "chosen IoU > 0.8", "c_ratio_lo": "size ratio >= 0.8", "c_ratio_hi": "size ratio <= 1.2",
             "c_present": "target present (n_pixels >= 1)", "c_spacing": "> 5 frames since last DRM addition"}
    for c in conds:
        cov[names[c]] = dict(
            passes=frames(lambda f: G[c][f]),
            rejects=frames(lambda f: not G[c][f]),
            sole_reject=frames(lambda f: (not G[c][f]) and all(G[o][f] for o in conds if o != c)),
        )
    cov["first condition (all five)"] = dict(passes=frames(lambda f: G["cond1"][f]), rejects=frames(lambda f: not G["cond1"][f]))
    cov["alternative test evaluated"] = frames(lambda f: G["cond1"][f])
    cov["alternative: no non-empty alternative left"] = frames(lambda f: G["cond1"][f] and G["n_alt_nonempty"][f] == 0)
    cov["alternative: min box IoU <= 0.7 (added)"] = frames(lambda f: G["cond1"][f] and G["c_alt"][f])
    cov["alternative: min box IoU > 0.7 (not added)"] = frames(lambda f: G["cond1"][f] and G["n_alt_nonempty"][f] > 0 and not G["c_alt"][f])
    cov["drm_added"] = frames(lambda f: G["drm_added"][f])
    ok = {}
    for c in conds:
        ok["%s rejects at least once" % names[c]] = len(cov[names[c]]["rejects"]) > 0
        ok["%s is the only failing condition at least once" % names[c]] = len(cov[names[c]]["sole_reject"]) > 0
    ok["DRM rule fires"] = len(cov["drm_added"]) > 0
    ok["alternative IoU test <= 0.7"] = len(cov["alternative: min box IoU <= 0.7 (added)"]) > 0
    ok["alternative IoU test > 0.7"] = len(cov["alternative: min box IoU > 0.7 (not added)"]) > 0
    cov["summary"] = ok
    # decision margins: distance of each tested value from its threshold (smallest first)
    def smallest(vals):
        vals = [(abs(v), f, v) for f, v in vals if v == v]
        return [dict(frame=int(f), value=float(v), margin=float(m)) for m, f, v in sorted(vals)[:3]]

    cov["margins"] = {
        "chosen IoU vs 0.8 (all tracked frames)": smallest([(f, G["chosen_iou"][f] - 0.8) for f in fr]),
        "size ratio vs 0.8 (frames with ratio >= 0)": smallest([(f, G["size_ratio"][f] - 0.8) for f in fr if G["size_ratio"][f] >= 0]),
        "size ratio vs 1.2 (frames with ratio >= 0)": smallest([(f, G["size_ratio"][f] - 1.2) for f in fr]),
        "min alternative box IoU vs 0.7 (frames where the official code evaluates it)": smallest(
            [(f, G["alt_min_iou"][f] - 0.7) for f in fr if G["cond1"][f]]),
        "min alternative box IoU vs 0.7 (all frames, recorded values)": smallest([(f, G["alt_min_iou"][f] - 0.7) for f in fr]),
        "object score vs 0": smallest([(f, G["object_score_logit"][f]) for f in fr]),
        "top-1 vs top-2 candidate IoU": smallest([(f, np.sort(G["ious"][f])[-1] - np.sort(G["ious"][f])[-2]) for f in fr]),
    }
    return cov


if __name__ == "__main__":
    sys.exit(main())
