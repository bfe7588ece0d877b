"""Tiny benchmark folders (LaSOT layout) built from the bedroom frames, for eval tests."""

from __future__ import annotations

from pathlib import Path

GT = "300,0,220,400"
NUM_FRAMES = 3


def make_lasot(root: Path, frames: list[Path], names: tuple[str, ...]) -> Path:
    for name in names:
        folder = root / name.rsplit("-", 1)[0] / name
        (folder / "img").mkdir(parents=True)
        for i, frame in enumerate(frames[:NUM_FRAMES], start=1):
            (folder / "img" / f"{i:08d}.jpg").symlink_to(frame)
        (folder / "groundtruth.txt").write_text(f"{GT}\n" * NUM_FRAMES)
        for flags in ("full_occlusion.txt", "out_of_view.txt"):
            (folder / flags).write_text(",".join("0" * NUM_FRAMES) + "\n")
    return root
