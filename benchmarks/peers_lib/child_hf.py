"""Child process: Hugging Face transformers' ``Sam2VideoModel`` (plain SAM 2.1), timed per frame.

Run with the HF virtual environment's interpreter on a folder converted by convert_hf.py.
HF's ``Sam2VideoProcessor`` needs torchvision, which no peer installs (every venv has the
same CPU torch and nothing else from PyTorch), so this script does the processor's three
jobs itself, the way the official code does them:

* pixels: ``common.official_pixels`` (PIL bicubic resize to 1024, /255, mean/std) handed to
  ``Sam2VideoInferenceSession(video=...)``, so every peer sees the same model input;
* the box prompt: two points with labels 2 and 3 scaled by 1024 / W and 1024 / H, added
  with ``session.add_point_inputs`` as ``process_new_points_or_boxes_for_video_frame`` does;
* the video-resolution mask: the low-resolution logits upsampled bilinearly (no corner
  alignment) straight to the video size, as the official ``_get_orig_video_res_output``.

HF has no SAMURAI mode and no hole filling, and its object-present threshold is fixed at 0
(upstream SAM 2.1); the runner compares it with ours / the official code run with 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers_lib.common import (
    BOX,
    Recorder,
    child_args,
    frame_files,
    official_pixels,
    timed,
    video_size,
)


def main() -> None:
    args = child_args(__doc__.splitlines()[0])
    if args.mode != "sam2" or args.image_size != 1024:
        raise SystemExit("HF Sam2VideoModel: plain SAM 2.1 at 1024 only")
    import torch
    import torch.nn.functional as F
    from transformers import Sam2VideoModel
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    rec = Recorder(args, "hf")
    dtype = getattr(torch, args.dtype)
    model = Sam2VideoModel.from_pretrained(args.hf_dir, dtype=dtype).eval()
    h, w = video_size(args.frames_dir)
    with torch.inference_mode():
        pixels = official_pixels(frame_files(args.frames_dir), 1024)
        session = Sam2VideoInferenceSession(
            video=pixels, video_height=h, video_width=w, inference_device="cpu", dtype=dtype
        )
        del pixels  # the session keeps its own per-frame copies
        obj_idx = session.obj_id_to_idx(0)
        box = torch.tensor(BOX, dtype=torch.float32).reshape(1, 1, 2, 2)
        box = box / torch.tensor([w, h], dtype=torch.float32) * 1024
        labels = torch.tensor([[[2, 3]]], dtype=torch.int32)
        session.add_point_inputs(obj_idx, 0, {"point_coords": box, "point_labels": labels})
        session.remove_mask_inputs(obj_idx, 0)
        session.obj_with_new_inputs = [0]
        model(inference_session=session, frame_idx=0)
        rec.ready()
        for out, sec in timed(model.propagate_in_video_iterator(session, start_frame_idx=0)):
            low = out.pred_masks.float()
            video = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
            rec.add(out.frame_idx, sec, low[0, 0], video[0, 0])
    rec.extra.update(attn_implementation=getattr(model.config, "_attn_implementation", None))
    import transformers

    rec.extra.update(transformers=transformers.__version__, obj_threshold=0.0)
    rec.save()


if __name__ == "__main__":
    main()
