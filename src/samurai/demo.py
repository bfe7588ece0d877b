"""End-to-end demo: make a short video, track its object with the tiny model, write every output.

    python -m samurai.demo --out out/demo [--frames 24] [--image-size 1024] [--checkpoint PATH]

The video (``demo_input.mp4``, 640x360) shows a textured ellipse moving over a textured
background; its true boxes are written to ``demo_groundtruth.txt``. The object is tracked from
its first-frame box with ``sam2.1_hiera_t``: the cached checkpoint, else downloaded. Where the
download is impossible (offline), the demo says so loudly and runs on RANDOM weights, so the
whole pipeline still runs but the masks are meaningless. ``--video PATH --box x,y,w,h`` tracks
a video of your own instead. About 2 s per frame on 2 CPU cores at 1024 (the whole default
run, 24 frames, about a minute); ``--image-size 512`` is several times faster (and changes
results).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from samurai.checkpoints import CheckpointError, ensure_checkpoint
from samurai.commands import ProgressBar, configure_logging, random_weights_banner, run_guarded
from samurai.commands.track import parse_box
from samurai.io.video_writer import write_video
from samurai.manager import InferenceManager, TrackSummary, ensure_writable_folder

__all__ = ["DemoClip", "main", "make_demo_clip"]

logger = logging.getLogger(__name__)

VARIANT = "sam2.1_hiera_t"
WIDTH, HEIGHT, FPS = 640, 360, 12


class DemoClip:
    """A synthetic clip: a textured ellipse moving over a textured background.

    Attributes:
        num_frames: number of frames.
        boxes: ``(num_frames, 4)`` int ``x, y, w, h`` of the object on each frame, in the
            official result form (``w = x_max - x_min``).
    """

    def __init__(self, num_frames: int, *, seed: int = 0) -> None:
        if num_frames < 1:
            raise ValueError(f"--frames must be >= 1, got {num_frames}")
        self.num_frames = num_frames
        rng = np.random.default_rng(seed)
        self._background = _texture(rng, HEIGHT, WIDTH, cells=(9, 16), tint=(0.55, 0.65, 0.5))
        self._skin = _texture(rng, HEIGHT, WIDTH, cells=(4, 6), tint=(1.0, 0.45, 0.25))
        ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
        self._checker = (((ys // 12) + (xs // 12)) % 2).astype(bool)
        self.boxes = np.array([_box(self._mask(i)) for i in range(num_frames)], dtype=np.int64)

    def _mask(self, idx: int) -> NDArray[np.bool_]:
        """The object's pixels on frame ``idx``: it crosses the frame left to right, bobbing."""
        t = idx / max(self.num_frames - 1, 1)
        cx = 120 + 380 * t
        cy = 180 + 60 * np.sin(2 * np.pi * t)
        axes = (int(60 + 12 * t), int(42 - 6 * t))
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.ellipse(mask, (round(cx), round(cy)), axes, 25 * t, 0, 360, 1, cv2.FILLED)
        return mask.astype(bool)

    def frames(self) -> Iterator[NDArray[np.uint8]]:
        """``(360, 640, 3)`` uint8 RGB frames, made one at a time."""
        for idx in range(self.num_frames):
            frame = self._background.copy()
            mask = self._mask(idx)
            skin = np.where(self._checker[..., None], self._skin, self._skin // 2 + 60)
            frame[mask] = skin[mask]
            yield frame


def _texture(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    cells: tuple[int, int],
    tint: Sequence[float],
) -> NDArray[np.uint8]:
    """Smooth blobs plus fine grain, coloured by ``tint``."""
    coarse = cv2.resize(rng.random((*cells, 3)), (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.random((height, width, 1))
    image = (0.7 * coarse + 0.3 * fine) * np.asarray(tint) * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def _box(mask: NDArray[np.bool_]) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]


def make_demo_clip(folder: Path, num_frames: int) -> tuple[Path, list[float]]:
    """Write ``demo_input.mp4`` and ``demo_groundtruth.txt``; returns the video and the
    first-frame prompt box ``x, y, w, h`` (covering the object's pixels)."""
    clip = DemoClip(num_frames)
    video = folder / "demo_input.mp4"
    write_video(video, clip.frames(), fps=FPS)
    lines = [",".join(str(v) for v in box) for box in clip.boxes.tolist()]
    (folder / "demo_groundtruth.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
    x, y, w, h = clip.boxes[0].tolist()
    return video, [float(x), float(y), float(w + 1), float(h + 1)]


def _weights(checkpoint: str | None, *, quiet: bool) -> Path | None:
    """The checkpoint to use, or None (random weights) after a loud banner on stderr."""
    if checkpoint is not None:
        return ensure_checkpoint(VARIANT, checkpoint)
    try:
        return ensure_checkpoint(VARIANT, progress=not quiet)
    except CheckpointError as exc:
        sys.stderr.write(random_weights_banner(VARIANT, str(exc)))
        return None


def _mean_iou(boxes_file: Path, truth: Path) -> float:
    """Mean IoU of tracked vs true ``x, y, w, h`` boxes (same convention, same frames)."""
    ours = np.loadtxt(boxes_file, delimiter=",", ndmin=2)
    gt = np.loadtxt(truth, delimiter=",", ndmin=2)[: len(ours)]
    a0, a1 = ours[:, :2], ours[:, :2] + ours[:, 2:]
    b0, b1 = gt[:, :2], gt[:, :2] + gt[:, 2:]
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(axis=1)
    union = ours[:, 2:].prod(axis=1) + gt[:, 2:].prod(axis=1) - inter
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)))


def _report(summary: TrackSummary, out: Path, truth: Path | None, random: bool) -> str:
    lines = [
        f"demo: tracked {summary.num_frames} frames at {summary.fps:.2f} frames/s; "
        f"outputs in {out}:"
    ]
    lines += [f"  {name:<9} {path}" for name, path in summary.outputs.items()]
    if truth is not None and "boxes_1" in summary.outputs:
        iou = _mean_iou(summary.outputs["boxes_1"], truth)
        lines.append(f"  mean IoU with demo_groundtruth.txt: {iou:.3f}")
    if random:
        lines.append("  (RANDOM weights: these results are meaningless, see the warning above)")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m samurai.demo",
        description="Make a short demo video and track it end to end with the tiny model.",
    )
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--frames", type=int, default=24, help="demo video length (default 24)")
    parser.add_argument("--checkpoint", metavar="PATH", help=f"{VARIANT} weights file")
    parser.add_argument(
        "--image-size",
        type=int,
        default=1024,
        help="model input size (default 1024); 512 or 256 run faster and change results",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    parser.add_argument("--video", help="track this video instead of the generated one")
    parser.add_argument("--box", metavar="X,Y,W,H", help="first-frame box for --video")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="errors only: no progress bar, info or warnings (except the random-weights one)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    out = ensure_writable_folder(Path(args.out))
    if (args.video is None) != (args.box is None):
        raise ValueError("--video and --box go together")
    truth = None
    if args.video is None:
        logger.info("writing a %d-frame demo video to %s", args.frames, out / "demo_input.mp4")
        video, box = make_demo_clip(out, args.frames)
        truth = out / "demo_groundtruth.txt"
    else:
        video, box = Path(args.video), parse_box(args.box)
    weights = _weights(args.checkpoint, quiet=args.quiet)
    manager = InferenceManager(
        VARIANT,
        weights,
        device=args.device,
        tracker="samurai",  # the demo shows SAMURAI, whatever the default policy becomes
        random_weights=weights is None,
        image_size=args.image_size,
    )
    logger.info("tracking %s from box %s with %s at %d", video, box, VARIANT, args.image_size)
    with ProgressBar(quiet=args.quiet, desc="demo") as bar:
        summary = manager.process_video(
            video,
            boxes=[box],
            output_dir=out,
            save=("overlay", "boxes", "masks", "rle", "scores"),
            progress=bar,
        )
    sys.stdout.write(_report(summary, out, truth, weights is None))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    return run_guarded(lambda: run(args), prog="samurai demo")


if __name__ == "__main__":
    sys.exit(main())
