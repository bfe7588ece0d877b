"""Peak RSS and page faults of tracking with and without the allocator setting.

Run once per setting (the setting is process-wide, so each needs its own process):

    python benchmarks/allocator_rss.py --setting on  --model sam2.1_hiera_t --frames 30
    python benchmarks/allocator_rss.py --setting off --model sam2.1_hiera_t --frames 30

Random weights (memory does not depend on them), the generated 640x360 demo clip at 1024,
2 torch threads. ``--path propagate`` is what ``samurai track`` runs; ``--path tracker`` the
streaming `samurai.Tracker`. Prints one line: peak RSS, RSS after every 5th frame, minor page
faults and CPU seconds while tracking.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=("on", "off"), required=True)
    parser.add_argument("--model", default="sam2.1_hiera_t")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--path", choices=("propagate", "tracker"), default="propagate")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.setting == "off":
        os.environ["SAMURAI_MALLOC_TUNING"] = "0"  # read when the predictor is built

    import numpy as np
    import torch

    from samurai.api import split_overrides
    from samurai.build import build_model
    from samurai.demo import DemoClip
    from samurai.tracking.predictor import VideoPredictor
    from samurai.tracking.tracker import Tracker

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model)  # random weights; applies the setting first
    clip = DemoClip(args.frames)
    x, y, w, h = (int(v) for v in clip.boxes[0])
    box = [x, y, x + w, y + h]
    marks: list[int] = []

    def mark(index: int) -> None:
        if index % 5 == 4:
            marks.append(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    start_usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with torch.inference_mode():
        if args.path == "propagate":
            policy = split_overrides(args.model, tracker="samurai", overrides={}).policy
            predictor = VideoPredictor.from_policy(model, policy)
            state = predictor.init_video(np.stack(list(clip.frames())))
            predictor.add_prompt(state, frame_idx=0, obj_id=1, box=box)
            for index, _ in enumerate(predictor.propagate(state)):
                mark(index)
        else:
            tracker = Tracker(model, tracker="samurai")
            for index, frame in enumerate(clip.frames()):
                if index == 0:
                    tracker.add_object(1, box=box)
                tracker.step(frame)
                mark(index)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"setting {args.setting}, {args.model}, {args.path}, {args.frames} frames: "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB (after every 5th frame: {marks}), "
        f"{(usage.ru_minflt - start_usage.ru_minflt) / 1e6:.2f} M minor faults, "
        f"sys {usage.ru_stime - start_usage.ru_stime:.1f} s, "
        f"user {usage.ru_utime - start_usage.ru_utime:.1f} s, "
        f"wall {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
