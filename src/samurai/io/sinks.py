"""Result writers of ``samurai track``: overlay video, box files, PNG masks, RLE JSON, scores CSV.

Every sink follows `ResultSink`: ``open(video_info)``, then ``write(frame, result)`` per frame,
then ``close(complete)``. Nothing half-written carries a final name: each output is written as
``<stem>.partial<suffix>`` (``boxes_1.partial.txt``, ``overlay.partial.mp4``, ``masks.partial/``)
and renamed on ``close(complete=True)`` to its final name (``boxes_1.txt``), or on
``close(complete=False)`` (Ctrl-C, an error) to ``<stem>.incomplete<suffix>``, which keeps what
was written. A ``.partial`` name left behind means the process died; its text outputs still hold
every complete frame, as they are written unbuffered frame by frame. The marker goes before the
suffix so players and JSON readers still open incomplete files.

A frame is complete when every sink of a `MultiSink` has it: when one fails on a frame (disk full),
the others take that frame back, so all outputs end on the same frame (the overlay video, which
cannot take a frame back, may hold one more). Write failures are one-line `OutputError`s. Nothing
gets its final name unless every output of the run could be finished. Opening a sink removes that
output's final, partial and incomplete files of an earlier run (for box files: when their
object first appears).

Frames are ``(H, W, 3)`` uint8 RGB (only `OverlayVideoSink` needs them; the others accept None).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import av
import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from samurai.io import rle
from samurai.io.draw import DEFAULT_COLORS, draw_result
from samurai.io.frames import Frame, FrameSource
from samurai.io.outputs import ALL_OUTPUTS
from samurai.io.staging import OutputError, Staged, TextOutput, marked_path, writing
from samurai.io.video_writer import VideoWriter
from samurai.tracking.results import FrameResult

__all__ = [
    "ALL_OUTPUTS",
    "DEFAULT_COLORS",
    "AbsentBox",
    "BoxesSink",
    "MaskPngSink",
    "MultiSink",
    "OutputError",
    "OverlayVideoSink",
    "ResultSink",
    "RleJsonSink",
    "ScoresCsvSink",
    "VideoInfo",
    "draw_result",
    "make_sinks",
    "marked_path",
]

logger = logging.getLogger(__name__)

AbsentBox = Literal["zero", "last", "predicted"]


@dataclass(frozen=True)
class VideoInfo:
    """What sinks learn about the video before its first frame.

    Attributes:
        name: path, URL or description of the video (written into ``masks.json``).
        height: frame height in pixels.
        width: frame width in pixels.
        fps: frames per second, None where unknown (the overlay then uses 30).
        num_frames: number of frames, None where unknown.
    """

    name: str
    height: int
    width: int
    fps: float | None = None
    num_frames: int | None = None

    @classmethod
    def from_source(cls, source: FrameSource) -> VideoInfo:
        return cls(source.name, source.height, source.width, source.fps, source.num_frames)


class ResultSink(Protocol):
    """Something that stores per-frame results; see the module docstring for file naming."""

    def open(self, video_info: VideoInfo) -> None: ...

    def write(self, frame: Frame | None, result: FrameResult) -> None: ...

    def close(self, complete: bool) -> None: ...


def _masks(result: FrameResult) -> NDArray[np.bool_]:
    """``(N, H, W)`` bool masks at video resolution, on the CPU."""
    return result.masks().cpu().numpy()


class _MasksOnce(FrameResult):
    """The result with its video-resolution masks and boxes computed once, for all sinks."""

    @cached_property
    def _cpu_masks(self) -> torch.Tensor:
        return super().masks().cpu()

    @cached_property
    def _cpu_boxes(self) -> torch.Tensor:
        return super().boxes_xyxy()

    def masks(self) -> torch.Tensor:
        return self._cpu_masks

    def boxes_xyxy(self) -> torch.Tensor:
        return self._cpu_boxes


def _share_masks(result: FrameResult) -> FrameResult:
    if isinstance(result, _MasksOnce):
        return result
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.init}
    return _MasksOnce(**values)


class OverlayVideoSink:
    """Video of the frames with masks, boxes and ids drawn (`draw_result`), H.264 by default."""

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        *,
        colors: Sequence[tuple[int, int, int]] = DEFAULT_COLORS,
        alpha: float = 0.5,
    ) -> None:
        """``fps`` None takes the video's rate (30 where unknown)."""
        self._staged = Staged(Path(path))
        self.fps, self.colors, self.alpha = fps, tuple(colors), alpha
        self._writer: VideoWriter | None = None

    def open(self, video_info: VideoInfo) -> None:
        fps = self.fps or video_info.fps or 30.0
        path = self._staged.start()
        with _writing_video(path):
            self._writer = VideoWriter(path, fps)

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        if self._writer is None:
            raise ValueError("OverlayVideoSink.write before open")
        if frame is None:
            raise ValueError("OverlayVideoSink needs the frame")
        image = draw_result(frame, result, colors=self.colors, alpha=self.alpha)
        with _writing_video(self._staged.partial):
            self._writer.write(image)

    def finish_writing(self) -> None:
        """Flush the encoder and write the file's index (may fail: disk full)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with _writing_video(self._staged.partial):
                writer.close()

    def close(self, complete: bool) -> None:
        if self._writer is None and not self._staged.partial.exists():
            return
        try:
            self.finish_writing()
        except OutputError:
            if complete:
                self._staged.finish(False)
                raise
        if not complete and self._staged.partial.stat().st_size == 0:
            self._staged.discard()  # nothing reached the file (disk full): no empty video
            return
        self._staged.finish(complete)

    def discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self._staged.discard()


@contextlib.contextmanager
def _writing_video(path: Path) -> Iterator[None]:
    """PyAV's failures (disk full, ...) as one-line `OutputError`s."""
    try:
        with writing(path):
            yield
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OutputError(f"cannot write {path}: {reason}") from exc


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
        masks = _masks(result)
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


class MaskPngSink:
    """``<folder>/<frame_idx:05d>.png`` per frame: pixel = object id, 0 = background.

    Objects are painted in result order, so later objects cover earlier ones. PNGs are 8-bit
    grey until an id above 255 has been seen, 16-bit from then on. Ids must lie in 1..65535.
    """

    def __init__(self, folder: str | Path) -> None:
        self._staged = Staged(Path(folder), folder=True)
        self._dir: Path | None = None
        self._dtype: type[np.uint8] | type[np.uint16] = np.uint8
        self._last: Path | None = None

    def open(self, video_info: VideoInfo) -> None:
        path = self._staged.start()
        with writing(path):
            path.mkdir()
        self._dir = path

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        if self._dir is None:
            raise ValueError("MaskPngSink.write before open")
        ids = result.obj_ids
        if ids and (min(ids) < 1 or max(ids) > 65535):
            raise ValueError(f"MaskPngSink needs object ids in 1..65535, got {ids}")
        if ids and max(ids) > 255:
            self._dtype = np.uint16
        masks = _masks(result)
        labels = np.zeros(tuple(result.video_size), dtype=self._dtype)
        for obj_id, mask in zip(ids, masks, strict=True):
            labels[mask] = obj_id
        path = self._dir / f"{result.frame_idx:05d}.png"
        encoded, data = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not encoded:
            raise ValueError(f"cannot encode the mask of frame {result.frame_idx} as PNG")
        try:
            with writing(path), open(path, "wb") as file:
                file.write(data.tobytes())
        except OutputError:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._last = path

    def undo(self) -> None:
        """Remove the last frame's PNG."""
        if self._last is not None:
            with contextlib.suppress(OSError):
                self._last.unlink()
            self._last = None

    def close(self, complete: bool) -> None:
        if self._dir is not None:
            self._dir = None
            self._staged.finish(complete)

    def discard(self) -> None:
        self._dir = None
        self._staged.discard()


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
            for obj, mask in zip(result.objects, _masks(result), strict=True)
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


class MultiSink:
    """Several sinks as one; masks are upsampled once per frame for all of them.

    A frame one sink fails to write is taken back out of the sinks that wrote it (their
    ``undo()``, where they have one), so every output ends on the last complete frame. Closing
    as complete first finishes every sink's writing (``finish_writing()``: the overlay's index)
    and renames only when all succeeded; otherwise all are closed as incomplete.
    """

    def __init__(self, sinks: Iterable[ResultSink]) -> None:
        self.sinks = list(sinks)

    def open(self, video_info: VideoInfo) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.open(video_info)
            except BaseException:
                for opened in self.sinks[:i]:
                    with contextlib.suppress(Exception):
                        opened.close(complete=False)
                raise

    def write(self, frame: Frame | None, result: FrameResult) -> None:
        shared = _share_masks(result)
        for i, sink in enumerate(self.sinks):
            try:
                sink.write(frame, shared)
            except BaseException:
                for written in self.sinks[:i]:
                    undo = getattr(written, "undo", None)
                    if undo is not None:
                        undo()
                raise

    def close(self, complete: bool) -> None:
        """Close every sink, even when one fails; the first error is raised afterwards.

        ``complete=True`` gives final names only if every sink could finish writing.
        """
        if complete:
            try:
                for sink in self.sinks:
                    finish = getattr(sink, "finish_writing", None)
                    if finish is not None:
                        finish()
            except Exception:
                self._close_all(complete=False)
                raise
        self._close_all(complete)

    def discard(self) -> None:
        """Remove every output (a run that completed no frame); sinks without ``discard()`` are
        closed as incomplete."""
        for sink in self.sinks:
            discard = getattr(sink, "discard", None)
            with contextlib.suppress(Exception):
                discard() if discard is not None else sink.close(complete=False)

    def _close_all(self, complete: bool) -> None:
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close(complete)
            except Exception as exc:
                logger.debug("closing %s failed", type(sink).__name__, exc_info=True)
                error = error or exc
        if error is not None:
            raise error


def make_sinks(
    out_dir: str | Path,
    save: Collection[str] = ALL_OUTPUTS,
    *,
    fps: float | None = None,
    absent_box: AbsentBox = "zero",
    image_size: int | None = None,
) -> MultiSink:
    """The sinks of ``samurai track`` writing into ``out_dir``.

    Args:
        out_dir: output folder (created on open).
        save: any of ``"overlay"`` (``overlay.mp4``), ``"boxes"`` (``boxes_<id>.txt``),
            ``"masks"`` (``masks/<frame>.png``), ``"rle"`` (``masks.json``), ``"scores"``
            (``scores.csv``).
        fps: overlay frame rate; None = the video's.
        absent_box: `BoxesSink` policy for frames where an object is absent.
        image_size: the model's input size (``ModelConfig.image_size``), for ``"predicted"``.
    """
    unknown = set(save) - ALL_OUTPUTS
    if unknown:
        raise ValueError(f"unknown outputs {sorted(unknown)}; choose from {sorted(ALL_OUTPUTS)}")
    out = Path(out_dir)
    sinks: list[ResultSink] = []
    if "masks" in save:  # first: the only sink that can refuse to open (foreign files)
        sinks.append(MaskPngSink(out / "masks"))
    if "boxes" in save:
        sinks.append(BoxesSink(out, absent_box, image_size))
    if "rle" in save:
        sinks.append(RleJsonSink(out / "masks.json"))
    if "scores" in save:
        sinks.append(ScoresCsvSink(out / "scores.csv"))
    if "overlay" in save:
        sinks.append(OverlayVideoSink(out / "overlay.mp4", fps))
    return MultiSink(sinks)
