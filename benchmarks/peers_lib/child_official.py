"""Child process: the official SAMURAI code (its fork of SAM 2.1), timed per frame.

Run with the official virtual environment's interpreter; ``--repo`` is a checkout of
github.com/yangchris11/samurai at the pinned commit (benchmarks/peers_setup.sh). Built as the
golden runs were: ``build_sam2_video_predictor(config, ckpt, device="cpu")`` with its default
post-processing overrides, ``init_state(frames_dir, offload_video_to_cpu=True)``, float32,
``torch.inference_mode()``, no CUDA extension (so no hole filling).
``--mode sam2`` uses ``configs/sam2.1/`` of the same repository (``samurai_mode`` false).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")

from peers_lib.common import BOX, MANIFEST, Recorder, child_args, timed


def main() -> None:
    args = child_args(__doc__.splitlines()[0])
    if args.dtype != "float32" or args.image_size != 1024:
        raise SystemExit("the official code runs float32 at 1024 only")
    sys.path.insert(0, str(args.repo / "sam2"))
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    rec = Recorder(args, "official")
    folder = "samurai" if args.mode == "samurai" else "sam2.1"
    config = f"configs/{folder}/{MANIFEST[args.variant]}.yaml"
    overrides = []
    if args.obj_threshold is not None:
        overrides.append(f"++model.min_obj_score_logits={args.obj_threshold}")
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        config, str(args.ckpt), device="cpu", hydra_overrides_extra=overrides
    )
    with torch.inference_mode():
        state = predictor.init_state(str(args.frames_dir), offload_video_to_cpu=True)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=0, box=BOX)
        rec.ready()
        outputs = state["output_dict_per_obj"][0]
        for (frame_idx, _, video_res), sec in timed(predictor.propagate_in_video(state)):
            out = outputs["cond_frame_outputs"].get(frame_idx)
            if out is None:
                out = outputs["non_cond_frame_outputs"][frame_idx]
            rec.add(frame_idx, sec, out["pred_masks"][0, 0], video_res[0, 0])
    rec.extra.update(
        official_config=config, overrides=overrides, obj_threshold=predictor.min_obj_score_logits
    )
    rec.save()


if __name__ == "__main__":
    main()
