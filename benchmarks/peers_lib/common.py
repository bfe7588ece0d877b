"""Shared by every peer's child process: arguments, official-style pixels, timing, results.

Only numpy, torch and Pillow are imported here: this module runs in the official SAMURAI
and the Hugging Face virtual environments too.

Child protocol: ``python child_<peer>.py --frames-dir D --out O ...`` tracks the box
``BOX`` from frame 0 over every JPEG in ``D`` and writes ``O/result.json`` (per-frame
seconds, setup seconds, the child's own peak RSS) and ``O/masks.npz`` (per frame the
chosen low-resolution mask logits ``> 0``, bit-packed, and the video-resolution mask area).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

BOX = [300, 0, 520, 400]
"""Box prompt on frame 0 in video pixels (x0, y0, x1, y1): the golden runs' prompt."""

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
STEADY_FROM = 8
"""First steady-state frame: the memory bank (conditioning frame + 6 past frames) is full."""

MANIFEST = {"t": "sam2.1_hiera_t", "b+": "sam2.1_hiera_b+"}
HF_NAME = {"t": "sam2.1_hiera_tiny", "b+": "sam2.1_hiera_base_plus"}
"""Model names understood by HF's get_config() in convert_sam2_video_to_hf.py."""


def child_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--frames-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variant", choices=sorted(MANIFEST), default="t")
    p.add_argument("--mode", choices=("samurai", "sam2"), default="samurai")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--ckpt", type=Path, help="official-layout .pt (ours, official)")
    p.add_argument("--hf-dir", type=Path, help="converted HF model folder (hf)")
    p.add_argument("--repo", type=Path, help="official SAMURAI checkout (official)")
    p.add_argument(
        "--obj-threshold",
        type=float,
        default=None,
        help="object-present logit threshold (SAMURAI fork default -1; upstream SAM 2.1 / HF 0)",
    )
    args = p.parse_args()
    set_threads(args.threads)
    return args


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set
        torch.set_num_interop_threads(1)


def frame_files(frames_dir: Path) -> list[Path]:
    return sorted(frames_dir.glob("*.jpg"), key=lambda p: int(p.stem))


def video_size(frames_dir: Path) -> tuple[int, int]:
    """(height, width) of the first frame."""
    with Image.open(frame_files(frames_dir)[0]) as im:
        return im.height, im.width


def official_pixels(files: Iterable[Path], size: int = 1024) -> torch.Tensor:
    """(N, 3, size, size) float32 model input exactly as the official ``init_state`` makes it.

    PIL ``convert("RGB").resize((size, size))`` (bicubic), uint8 / 255 in float64 stored into a
    float32 tensor, then ``-= mean``, ``/= std`` in float32 (``load_video_frames_from_jpg_images``).
    """
    files = list(files)
    images = torch.zeros(len(files), 3, size, size, dtype=torch.float32)
    for n, f in enumerate(files):
        with Image.open(f) as im:
            arr = np.array(im.convert("RGB").resize((size, size))) / 255.0
        images[n] = torch.from_numpy(arr).permute(2, 0, 1)
    images -= torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return images


def timed(iterator: Iterable[Any]) -> Iterator[tuple[Any, float]]:
    """Each item with the wall seconds since the previous one was yielded (or since the call).

    The consumer's work on the previous item (e.g. the video-resolution mask) is included, as
    the official generator computes that mask before it yields.
    """
    start = time.perf_counter()
    for item in iterator:
        now = time.perf_counter()
        yield item, now - start
        start = now


class Recorder:
    """Collects per-frame seconds and masks; ``save`` writes result.json and masks.npz."""

    def __init__(self, args: argparse.Namespace, peer: str) -> None:
        self.args = args
        self.peer = peer
        self.t0 = time.perf_counter()
        self.setup_s: float | None = None
        self.frames: list[int] = []
        self.seconds: list[float] = []
        self.low_res: list[np.ndarray] = []
        self.video_area: list[int] = []
        self.extra: dict[str, Any] = {}

    def ready(self) -> None:
        """Model built, video loaded, prompt added: tracking starts now."""
        self.setup_s = time.perf_counter() - self.t0

    def add(
        self, frame_idx: int, seconds: float, low_res_logits: torch.Tensor, video_mask: torch.Tensor
    ) -> None:
        self.frames.append(int(frame_idx))
        self.seconds.append(float(seconds))
        self.low_res.append(
            (low_res_logits.detach().float().reshape(low_res_logits.shape[-2:]) > 0).numpy()
        )
        self.video_area.append(int((video_mask > 0).sum()))

    def save(self) -> None:
        out: Path = self.args.out
        out.mkdir(parents=True, exist_ok=True)
        order = np.argsort(self.frames)
        low = np.stack([self.low_res[i] for i in order])
        np.savez_compressed(
            out / "masks.npz",
            frames=np.array(self.frames)[order],
            shape=np.array(low.shape[1:]),
            low_res_packed=np.packbits(low.reshape(len(low), -1), axis=1),
            video_area=np.array(self.video_area)[order],
        )
        steady = [s for f, s in zip(self.frames, self.seconds, strict=True) if f >= STEADY_FROM]
        result = {
            "peer": self.peer,
            "variant": self.args.variant,
            "mode": self.args.mode,
            "dtype": self.args.dtype,
            "threads": torch.get_num_threads(),
            "image_size": self.args.image_size,
            "frames": self.frames,
            "seconds": self.seconds,
            "steady_mean_s": float(np.mean(steady)) if steady else None,
            "setup_s": self.setup_s,
            "rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "env": {
                k: os.environ[k]
                for k in sorted(os.environ)
                if k.startswith(("SAMURAI_", "OMP_", "MKL_"))
            },
            **self.extra,
        }
        (out / "result.json").write_text(json.dumps(result, indent=1))


def load_masks(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bool masks (F, H, W)) written by ``Recorder.save``."""
    data = np.load(out / "masks.npz")
    h, w = (int(x) for x in data["shape"])
    bits = np.unpackbits(data["low_res_packed"], axis=1)[:, : h * w]
    return data["frames"], bits.reshape(-1, h, w).astype(bool)
