"""Child process: this project's predictor (SAMURAI or plain SAM 2.1), timed per frame.

Run with the project's interpreter by benchmarks/peers.py. The predictor is configured like
the golden runs (no hole filling: the official code ran without its CUDA extension; HF has
none), the object-present threshold like the peer it is compared with (``--obj-threshold``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# first, as in a user's script: the package caps OpenMP spinning before torch is loaded
from samurai import openmp  # noqa: F401, I001

from peers_lib.common import BOX, MANIFEST, Recorder, child_args, frame_files, timed


def main() -> None:
    args = child_args(__doc__.splitlines()[0])
    import torch

    from samurai.allocator import reuse_freed_memory
    from samurai.build import build_model, read_state_dict
    from samurai.config import SAMURAI_DEFAULTS, TrackerConfig
    from samurai.io.frames import ImageFolderSource
    from samurai.tracking.predictor import VideoPredictor

    rec = Recorder(args, "ours")
    variant = MANIFEST[args.variant]
    model = build_model(variant, read_state_dict(args.ckpt), image_size=args.image_size)
    model.set_compute_dtype(getattr(torch, args.dtype))
    threshold = args.obj_threshold if args.obj_threshold is not None else -1.0
    tracker = TrackerConfig(fill_hole_area=0, min_obj_score_logits=threshold)
    samurai = SAMURAI_DEFAULTS[variant] if args.mode == "samurai" else None
    predictor = VideoPredictor(model, tracker=tracker, samurai=samurai)
    with torch.inference_mode():
        state = predictor.init_video(ImageFolderSource(frame_files(args.frames_dir)))
        predictor.add_prompt(state, frame_idx=0, obj_id=0, box=BOX)
        rec.ready()
        for r, sec in timed(predictor.propagate(state)):
            obj = r.objects[0]
            rec.add(r.frame_idx, sec, obj.low_res_logits, r.masks()[0])
    try:
        from samurai.modeling.gemm import onednn_available

        onednn: bool | None = onednn_available()
    except ImportError:
        onednn = None
    rec.extra.update(allocator=reuse_freed_memory(), onednn=onednn, obj_threshold=threshold)
    rec.save()


if __name__ == "__main__":
    main()
