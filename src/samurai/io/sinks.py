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
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from samurai.io.draw import DEFAULT_COLORS, draw_result
from samurai.io.frames import Frame
from samurai.io.outputs import ALL_OUTPUTS
from samurai.io.sink_base import AbsentBox, ResultSink, VideoInfo, video_masks
from samurai.io.staging import OutputError, Staged, marked_path, writing
from samurai.io.text_sinks import BoxesSink, RleJsonSink, ScoresCsvSink
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
        masks = video_masks(result)
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
