"""Text result sinks: ``boxes_<id>.txt``, ``masks.json`` (COCO RLE) and ``scores.csv``.

Each is written unbuffered, frame by frame, under its ``.partial`` name (`TextOutput`), and can
take its last frame back (``undo``) when another output failed on it; see `samurai.io.sinks`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from samurai.io import rle
from samurai.io.frames import Frame
from samurai.io.sink_base import AbsentBox, VideoInfo, video_masks
from samurai.io.staging import OutputError, TextOutput, writing
from samurai.tracking.results import FrameResult

__all__ = ["BoxesSink", "RleJsonSink", "ScoresCsvSink"]


class BoxesSink:
    """``boxes_<obj_id>.txt`` per object: line ``n`` is ``x,y,w,h`` of frame ``n`` (video pixels).

    The box format is that of the official SAMURAI LaSOT script (``scripts/main_inference.py``
    of yangchris11/samurai): ``np.argwhere`` on the video-resolution mask, then
    ``[x_min, y_min, x_max - x_min, y_max - y_min]`` written as integers, so ``w`` and ``h`` are
    one less than the pixel extent (no ``+1``), and an empty mask gives ``0,0,0,0``.

    An object is *absent* on a frame when it is not present, its mask is empty, or it is missing
    from the result (frames before it was added, frames skipped). ``absent_box`` chooses the line:
    ``"zero"``: ``0,0,0,0`` (what the official script writes); ``"last"``: the last box written
    from a mask (``0,0,0,0`` before the first); ``"predicted"``: the Kalman prediction
    ``kf_box_xyxy`` scaled from the ``image_size`` square to video pixels, clipped to the frame,
    with two decimals (``"last"`` when there is none or it is degenerate).

    Frames must arrive in increasing order; skipped frames get absent lines, so line ``n`` is
    always frame ``n`` (lines start at frame 0 even when tracking starts later).
    """

    def __init__(
        self, folder: str | Path, absent_box: AbsentBox = "zero", image_size: int | None = None
    ) -> None:
        if absent_box not in ("zero", "last", "predicted"):
            raise ValueError(f"absent_box must be zero, last or predicted, got {absent_box!r}")
        if absent_box == "predicted" and not image_size:
            raise ValueError("absent_box='predicted' needs the model's image_size")
        self.folder, self.absent_box, self.image_size = Path(folder), absent_box, image_size
        self._files: dict[int, TextOutput] = {}
        self._last: dict[int, str] = {}
        self._next_frame = 0
        self._size: tuple[int, int] | None = None
        self._undo: list[TextOutput] = []
        self._created: list[int] = []
        self._undo_state: tuple[int, dict[int, str]] = (0, {})

    def open(self, video_info: VideoInfo) -> None:
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        self._size = (video_info.height, video_info.width)
        self._next_frame = 0

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        if self._size is None:
            raise ValueError("BoxesSink.write before open")
        if result.frame_idx < self._next_frame:
            raise ValueError(
                f"BoxesSink needs increasing frames: got {result.frame_idx} after "
                f"{self._next_frame - 1}"
            )
        gap = result.frame_idx - self._next_frame
        lines: dict[int, list[str]] = {
            obj_id: [self._absent(obj_id, None)] * gap for obj_id in self._files
        }
        masks = video_masks(result)
        boxes = result.boxes_xyxy().tolist()
        last = dict(self._last)
        for i, obj in enumerate(result.objects):
            if obj.obj_id not in lines:  # appears now: absent lines for the frames before
                lines[obj.obj_id] = ["0,0,0,0"] * result.frame_idx
            if obj.present and masks[i].any():
                x1, y1, x2, y2 = boxes[i]
                last[obj.obj_id] = f"{x1},{y1},{x2 - x1},{y2 - y1}"
                lines[obj.obj_id].append(last[obj.obj_id])
            else:
                lines[obj.obj_id].append(self._absent(obj.obj_id, obj.kf_box_xyxy))
        for obj_id in self._files.keys() - {obj.obj_id for obj in result.objects}:
            lines[obj_id].append(self._absent(obj_id, None))
        self._append_frame(lines)
        self._undo_state = (self._next_frame, self._last)
        self._last, self._next_frame = last, result.frame_idx + 1

    def undo(self) -> None:
        """Take the last frame back out of every box file."""
        for output in self._undo:
            output.undo()
        for obj_id in self._created:  # no complete frame of these objects: no file
            self._files.pop(obj_id).discard()
        self._undo, self._created = [], []
        self._next_frame, self._last = self._undo_state

    def close(self, complete: bool) -> None:
        error: OutputError | None = None
        for output in self._files.values():
            try:
                output.finish(complete)
            except OutputError as exc:
                error = error or exc
        self._files.clear()
        self._last.clear()
        self._size = None
        if error is not None:
            raise error

    def discard(self) -> None:
        for output in self._files.values():
            output.discard()
        self._files.clear()

    def _append_frame(self, lines: dict[int, list[str]]) -> None:
        done: list[TextOutput] = []
        created: list[int] = []
        try:
            for obj_id, texts in lines.items():
                if obj_id not in self._files:
                    self._files[obj_id] = TextOutput(self.folder / f"boxes_{obj_id}.txt")
                    created.append(obj_id)
                    self._files[obj_id].start()
                self._files[obj_id].append("".join(text + "\n" for text in texts))
                done.append(self._files[obj_id])
        except BaseException:
            for output in done:
                output.undo()
            for obj_id in created:  # no complete frame of this object: no file
                self._files.pop(obj_id).discard()
            raise
        self._undo, self._created = done, created

    def _absent(self, obj_id: int, kf_box: NDArray[np.float64] | None) -> str:
        if self.absent_box == "zero":
            return "0,0,0,0"
        if self.absent_box == "predicted" and kf_box is not None:
            predicted = self._predicted(np.asarray(kf_box, dtype=np.float64).reshape(4))
            if predicted is not None:
                return predicted
        return self._last.get(obj_id, "0,0,0,0")

    def _predicted(self, box: NDArray[np.float64]) -> str | None:
        assert self._size is not None and self.image_size is not None
        height, width = self._size
        scale = np.array([width, height, width, height], dtype=np.float64) / self.image_size
        x1, y1, x2, y2 = np.clip(box * scale, 0, [width - 1, height - 1] * 2).tolist()
        if not np.all(np.isfinite(box)) or x2 <= x1 or y2 <= y1:
            return None
        return f"{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}"


class RleJsonSink:
    """``masks.json``: COCO RLE (`samurai.io.rle`) of every object on every frame, streamed.

    Layout, one frame per line as it is written (frames in arrival order)::

        {"video": "clip.mp4", "height": 120, "width": 160, "frames": [
        {"frame": 0, "objects": [{"id": 1, "rle": {"size": [120, 160], "counts": "..."},
          "score": 3.2, "iou": 0.91, "present": true}]},
        ...
        ], "complete": true}

    ``score`` is the object-score logit; ``complete`` is false in a ``.incomplete`` file. The
    ``.partial`` file is valid JSON after every frame (``"complete": false``).
    """

    def __init__(self, path: str | Path) -> None:
        self._output = TextOutput(Path(path), tail=_json_tail)
        self._open = False
        self._size = (0, 0)
        self._frames = 0

    def open(self, video_info: VideoInfo) -> None:
        head = {"video": video_info.name, "height": video_info.height, "width": video_info.width}
        self._output.start(json.dumps(head)[:-1] + ', "frames": [\n')
        self._open = True
        self._size = (video_info.height, video_info.width)
        self._frames = 0

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        if not self._open:
            raise ValueError("RleJsonSink.write before open")
        if tuple(result.video_size) != self._size:
            raise ValueError(f"result size {result.video_size} is not the video's {self._size}")
        objects = [
            {
                "id": obj.obj_id,
                "rle": rle.encode(mask),
                "score": float(obj.object_score_logit),
                "iou": float(obj.iou),
                "present": bool(obj.present),
            }
            for obj, mask in zip(result.objects, video_masks(result), strict=True)
        ]
        entry = json.dumps({"frame": result.frame_idx, "objects": objects})
        self._output.append(("" if self._frames == 0 else ",\n") + entry)
        self._frames += 1

    def undo(self) -> None:
        self._output.undo()
        self._frames = max(self._frames - 1, 0)

    def close(self, complete: bool) -> None:
        if self._open:
            self._open = False
            self._output.finish(complete)

    def discard(self) -> None:
        self._open = False
        self._output.discard()


def _json_tail(complete: bool) -> str:
    return f'\n], "complete": {json.dumps(complete)}}}\n'


class ScoresCsvSink:
    """``scores.csv``: ``frame,object,iou,object_score,present`` per object and frame.

    ``object_score`` is the presence logit, ``present`` is 1 or 0; floats keep full precision.
    """

    COLUMNS = ("frame", "object", "iou", "object_score", "present")

    def __init__(self, path: str | Path) -> None:
        self._output = TextOutput(Path(path))
        self._open = False

    def open(self, video_info: VideoInfo) -> None:
        self._output.start(",".join(self.COLUMNS) + "\n")
        self._open = True

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        if not self._open:
            raise ValueError("ScoresCsvSink.write before open")
        rows = [
            f"{result.frame_idx},{obj.obj_id},{float(obj.iou)!r},"
            f"{float(obj.object_score_logit)!r},{int(obj.present)}\n"
            for obj in result.objects
        ]
        self._output.append("".join(rows))

    def undo(self) -> None:
        self._output.undo()

    def close(self, complete: bool) -> None:
        if self._open:
            self._open = False
            self._output.finish(complete)

    def discard(self) -> None:
        self._open = False
        self._output.discard()
