# ruff: noqa: B007, B905, E501, RUF059  (kept in the official scripts' style on purpose)
"""A user's evaluation loop in the style of SAMURAI's scripts/main_inference.py: every video of
a LaSOT-style testing set, prompted with its first ground-truth box, boxes written as
``x,y,w,h`` lines per video.

Coming from the official repository, the only line that changed is the builder's import.
Extra for the tests: the data root, model size and a frame bound are arguments.
"""

import argparse
import gc
import os
import os.path as osp

import numpy as np
import torch

from samurai import build_sam2_video_predictor  # was: from sam2.build_sam import ...


def load_lasot_gt(gt_path):
    with open(gt_path) as f:
        gt = f.readlines()
    prompts = {}
    for fid, line in enumerate(gt):
        x, y, w, h = map(int, line.split(","))
        x, y, w, h = int(x), int(y), int(w), int(h)
        prompts[fid] = ((x, y, x + w, y + h), 0)
    return prompts


def main(args):
    video_folder = args.data_root
    testing_set = osp.join(video_folder, "testing_set.txt")
    with open(testing_set) as f:
        test_videos = sorted(f.read().splitlines())

    exp_name = "samurai"
    model_name = args.model_name
    checkpoint = osp.join(args.checkpoints, f"sam2.1_hiera_{model_name}.pt")
    if model_name == "base_plus":
        model_cfg = "configs/samurai/sam2.1_hiera_b+.yaml"
    else:
        model_cfg = f"configs/samurai/sam2.1_hiera_{model_name[0]}.yaml"

    pred_folder = osp.join(args.results, exp_name, f"{exp_name}_{model_name}")
    os.makedirs(pred_folder, exist_ok=True)
    device = "cuda:0" if torch.cuda.is_available() else "cpu"

    for vid, video in enumerate(test_videos):
        cat_name = video.split("-")[0]
        frame_folder = osp.join(video_folder, cat_name, video, "img")
        num_frames = len(os.listdir(frame_folder))
        print(
            f"\033[91mRunning video [{vid + 1}/{len(test_videos)}]: {video} with {num_frames} frames\033[0m"
        )

        predictor = build_sam2_video_predictor(model_cfg, checkpoint, device=device)
        predictions = []

        prompts = load_lasot_gt(osp.join(video_folder, cat_name, video, "groundtruth.txt"))
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
            state = predictor.init_state(
                frame_folder,
                offload_video_to_cpu=True,
                offload_state_to_cpu=True,
                async_loading_frames=True,
            )
            bbox, track_label = prompts[0]
            frame_idx, object_ids, masks = predictor.add_new_points_or_box(
                state, box=bbox, frame_idx=0, obj_id=0
            )
            for frame_idx, object_ids, masks in predictor.propagate_in_video(
                state, max_frame_num_to_track=args.max_frames
            ):
                bbox_to_vis = {}
                for obj_id, mask in zip(object_ids, masks):
                    mask = mask[0].cpu().numpy()
                    mask = mask > 0.0
                    non_zero_indices = np.argwhere(mask)
                    if len(non_zero_indices) == 0:
                        bbox = [0, 0, 0, 0]
                    else:
                        y_min, x_min = non_zero_indices.min(axis=0).tolist()
                        y_max, x_max = non_zero_indices.max(axis=0).tolist()
                        bbox = [x_min, y_min, x_max - x_min, y_max - y_min]
                    bbox_to_vis[obj_id] = bbox
                predictions.append(bbox_to_vis)

        with open(osp.join(pred_folder, f"{video}.txt"), "w") as f:
            for pred in predictions:
                x, y, w, h = pred[0]
                f.write(f"{x},{y},{w},{h}\n")

        del predictor
        del state
        gc.collect()
        torch.clear_autocast_cache()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data_root", default="data/LaSOT")
    parser.add_argument("--checkpoints", default="sam2/checkpoints")
    parser.add_argument("--model_name", default="base_plus")
    parser.add_argument("--results", default="results")
    parser.add_argument("--max_frames", type=int, default=None)
    main(parser.parse_args())
