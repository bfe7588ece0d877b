"""`InferenceManager`: one loaded model, any number of videos tracked from first-frame prompts
straight to files on disk (what ``samurai track``, the demo and the web service call).

Example:
    >>> manager = InferenceManager("sam2.1_hiera_t")  # doctest: +SKIP
    >>> summary = manager.process_video_with_bbox("clip.mp4", [300, 0, 220, 400])  # doctest: +SKIP
    >>> summary.outputs["boxes_1"]  # doctest: +SKIP
    PosixPath('samurai_out/clip/boxes_1.txt')
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from samurai.api import split_overrides
from samurai.build import build_model
from samurai.checkpoints import ensure_checkpoint
from samurai.config import RuntimeOptions, resolve_variant
from samurai.io.frames import Frame, FrameSource, FrameSourceSpec, open_source
from samurai.io.sinks import (
    AbsentBox,
    MultiSink,
    OutputError,
    OverlayVideoSink,
    VideoInfo,
    make_sinks,
    marked_path,
)
from samurai.track_request import (
    DTYPES,
    Dtype,
    ObjectPrompt,
    check_device,
    check_dtype,
    check_output_names,
    check_save,
    ensure_writable_folder,
    fit_prompt,
    new_folders,
    object_prompts,
    remove_empty_folders,
    validate_prompts,
)
from samurai.tracking.results import FrameResult
from samurai.tracking.sam2_api import SAM2VideoPredictor
from samurai.tracking.tracker import Tracker

__all__ = [
    "DEFAULT_SAVE",
    "DTYPES",
    "VIDEO_SUFFIXES",
    "InferenceManager",
    "ProgressCallback",
    "StopCallback",
    "TrackSummary",
    "default_output_dir",
    "ensure_writable_folder",
    "validate_prompts",
]

logger = logging.getLogger(__name__)

DEFAULT_SAVE: tuple[str, ...] = ("overlay", "boxes", "rle", "scores")
"""Outputs written unless told otherwise: everything but the PNG masks."""
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm"})

ProgressCallback = Callable[[int, "int | None", float], None]
"""``progress(frames_done, total_frames_or_None, frames_per_second)``, called after each frame."""
StopCallback = Callable[[], bool]
"""``should_stop()``: True ends tracking after the current frame; outputs are kept, incomplete."""


@dataclass(frozen=True)
class TrackSummary:
    """What one `InferenceManager.process_video` call produced.

    Attributes:
        num_frames: frames tracked and written.
        fps: tracking speed in frames per second (wall clock, model load excluded).
        outputs: output name -> path: ``"overlay"``, ``"boxes_<id>"``, ``"masks"``, ``"rle"``,
            ``"scores"`` (only those written). Incomplete runs point at the
            ``.incomplete`` names (``boxes_1.incomplete.txt``).
        complete: False when tracking was stopped (``should_stop``, Ctrl-C) before the end.
        obj_ids: the tracked objects, 1..N in prompt order.
        tracker: the tracking policy that ran (``samurai``, ``sam2``, ``dam4sam``,
            ``samurai+dam``).
    """

    num_frames: int
    fps: float
    outputs: dict[str, Path]
    complete: bool
    obj_ids: tuple[int, ...]
    tracker: str = "samurai"


def default_output_dir(video: FrameSourceSpec) -> Path:
    """``samurai_out/<video stem>`` (``samurai_out/<folder name>`` for frame folders)."""
    if isinstance(video, (str, Path)) and "://" not in str(video):
        stem = Path(video).stem or Path(video).resolve().name
    elif isinstance(video, FrameSource):
        stem = Path(video.name).stem
    else:
        stem = "stream"
    return Path("samurai_out") / (stem or "video")


class InferenceManager:
    """Builds the predictor once and tracks videos with it, writing results as they come.

    Calls run one at a time: a lock serialises ``process_video`` (the model is shared, the
    per-video state is not), so a second thread waits for the first call to finish.

    Args:
        variant: VARIANTS key or alias (``"sam2.1_hiera_t"``, ``"sam2.1_hiera_tiny"``, ...).
        checkpoint: a ``.pt`` / ``.safetensors`` path or a state dict; None takes the cached
            official checkpoint and downloads it on first use.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        dtype: ``"float32"``; ``"bfloat16"`` runs the image-encoder trunk and memory attention
            as split-bfloat16 GEMMs (about 0.6x the float32 time on CPUs with bfloat16
            matmuls, tracking decisions kept on the reference traces; docs/benchmarks.md);
            ``"float16"`` (CUDA, MPS) runs under ``torch.autocast`` like the official demo.
        samurai_mode: SAMURAI motion-aware selection and memory (False: plain SAM 2).
        tracker: the tracking policy, ``"samurai"``, ``"sam2"``, ``"dam4sam"`` or
            ``"samurai+dam"``; wins over ``samurai_mode`` (the resolved name is
            ``self.tracker_name``).
        random_weights: skip the checkpoint and use untrained weights (demo fallback only:
            the masks are then meaningless).
        download_progress: show a progress bar while downloading a checkpoint (TTY only).
        **overrides: official config names: ``image_size``, ``fill_hole_area``,
            ``kf_score_weight``, ``memory_bank_iou_threshold``, ``offload_state_to_cpu``, ...

    Raises:
        ValueError: unknown variant, option, device or dtype; a checkpoint that does not fit.
        CheckpointError: the checkpoint is missing and cannot be downloaded.
    """

    def __init__(
        self,
        variant: str = "sam2.1_hiera_t",
        checkpoint: str | Path | dict[str, torch.Tensor] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: Dtype = "float32",
        samurai_mode: bool = True,
        tracker: str | None = None,
        random_weights: bool = False,
        download_progress: bool = True,
        **overrides: Any,
    ) -> None:
        self.variant = resolve_variant(variant)
        self.device = check_device(device)
        self.dtype = check_dtype(dtype, self.device)
        offload = bool(overrides.pop("offload_state_to_cpu", False))
        split = split_overrides(
            self.variant, samurai_mode=samurai_mode, tracker=tracker, overrides=overrides
        )
        self.tracker_name = split.policy.name
        self.checkpoint: Path | None = None
        if random_weights:
            weights = None
        elif checkpoint is None or not isinstance(checkpoint, dict):
            self.checkpoint = ensure_checkpoint(
                self.variant, checkpoint, progress=download_progress
            )
            weights = self.checkpoint
        else:
            weights = checkpoint
        model = build_model(split.model, weights, device=self.device)
        runtime = RuntimeOptions(
            device=str(self.device), dtype=self.dtype, offload_state_to_cpu=offload
        )
        self.predictor = SAM2VideoPredictor.from_policy(model, split.policy, runtime=runtime)
        self.random_weights = random_weights
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.predictor.image_size

    # ----------------------------------------------------------------- official-style entry points
    def process_video_with_bbox(
        self,
        video_path: FrameSourceSpec,
        bbox: Sequence[float],
        output_path: str | Path | None = None,
    ) -> TrackSummary:
        """Track one object from its first-frame box, as the official SAMURAI demo does.

        Args:
            video_path: video file, JPEG/PNG folder, stream URL, ... (see `open_source`).
            bbox: ``x, y, w, h`` in pixels of the first frame.
            output_path: an overlay video path (``.mp4``, ``.mov``, ...; only the overlay is
                written, as the official ``--video_output_path``), or a folder for every
                default output; None = ``samurai_out/<video stem>``.
        """
        if output_path is not None and Path(output_path).suffix.lower() in VIDEO_SUFFIXES:
            overlay = Path(output_path)
            return self.process_video(
                video_path,
                boxes=[bbox],
                output_dir=overlay.parent,
                save=("overlay",),
                overlay_path=overlay,
            )
        return self.process_video_with_bboxes(video_path, [bbox], output_path)

    def process_video_with_bboxes(
        self,
        video_path: FrameSourceSpec,
        bboxes: Sequence[Sequence[float]],
        output_dir: str | Path | None = None,
    ) -> TrackSummary:
        """Track several objects (ids 1..N) from their first-frame ``x, y, w, h`` boxes."""
        out = default_output_dir(video_path) if output_dir is None else Path(output_dir)
        return self.process_video(video_path, boxes=bboxes, output_dir=out)

    def process_batch(
        self,
        manifest: str | Path | Sequence[Any],
        output_dir: str | Path,
        *,
        save: Collection[str] = DEFAULT_SAVE,
        absent_box: AbsentBox = "zero",
        progress: Callable[[Any], None] | None = None,
    ) -> Any:
        """Track every video of a manifest into ``<output_dir>/<id>/``, resumably, with this
        model in this process (as ``samurai batch``; several workers or a Ray cluster:
        `samurai.batch.run_batch`). The journal records this manager's settings, its tracking
        policy included: rerunning into ``output_dir`` with another policy is refused.

        Args:
            manifest: a JSONL / CSV manifest path, or `samurai.batch.BatchJob`s.
            output_dir: one folder per job plus the journal ``batch.jsonl``.
            save: default outputs (a manifest line may set its own).
            absent_box: default box line of frames where an object is absent.
            progress: called with a `samurai.batch.BatchProgress` after each job.

        Returns:
            A `samurai.batch.BatchSummary`: jobs done, failed (with reasons), skipped.
        """
        from samurai.batch import BatchConfig, JobOptions, load_manifest, run_batch

        if isinstance(manifest, (str, Path)):
            options = JobOptions(save=tuple(save), absent_box=absent_box)
            jobs = load_manifest(manifest, options)
        else:
            jobs = list(manifest)
        config = BatchConfig(out=Path(output_dir))
        return run_batch(jobs, config, progress=progress, manager=self)

    # ----------------------------------------------------------------------------- main call
    def process_video(
        self,
        video: FrameSourceSpec,
        *,
        boxes: Sequence[Sequence[float]] | None = None,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        output_dir: str | Path,
        save: Collection[str] = DEFAULT_SAVE,
        absent_box: AbsentBox = "zero",
        start_frame: int = 0,
        max_frames: int | None = None,
        overlay_path: str | Path | None = None,
        progress: ProgressCallback | None = None,
        should_stop: StopCallback | None = None,
    ) -> TrackSummary:
        """Track objects prompted on ``start_frame`` and stream every frame's result to disk.

        Frames are decoded lazily and each result goes straight to the output files, so memory
        stays flat in video length. Seekable sources (files, folders) are tracked with
        ``propagate``; live ones (cameras, RTSP) with the streaming `Tracker`.

        Args:
            video: a path, URL, camera index, frame array or an open `FrameSource` (not closed
                here; sources opened here are).
            boxes: one ``x, y, w, h`` box per object (pixels of ``start_frame``); ids 1..N.
            points: ``(x, y)`` clicks on ``start_frame`` for object 1 (with ``boxes[0]`` if
                given), pixels; ``labels`` 1 = object, 0 = background, one per click.
            labels: see ``points``.
            output_dir: folder of the outputs (created).
            save: any of ``"overlay"``, ``"boxes"``, ``"masks"``, ``"rle"``, ``"scores"``.
            absent_box: box line of frames where an object is absent: ``"zero"``, ``"last"``,
                ``"predicted"`` (see `samurai.io.sinks.BoxesSink`).
            start_frame: the prompted frame; tracking runs forward from it.
            max_frames: track at most this many frames after ``start_frame`` (the official
                ``max_frame_num_to_track``: ``max_frames + 1`` frames in all); None = to the end.
            overlay_path: overlay file name instead of ``<output_dir>/overlay.mp4``.
            progress: called after each frame with (frames done, total or None, frames/s).
            should_stop: polled after each frame; True stops cleanly (outputs ``.incomplete``).

        Returns:
            A `TrackSummary`. On an exception (Ctrl-C included) the complete frames written so
            far are kept under the ``.incomplete`` names and the exception propagates; a call
            that completed no frame leaves no output, nor a folder it created.

        Raises:
            ValueError: bad prompts (malformed, outside the frame), options or frame range.
            FrameSourceError: the video cannot be opened or read.
            OSError: the output folder cannot be created or written; an output name is taken
                by a folder; `OutputError` (one line naming the file and the frames kept) when
                writing fails, e.g. on a full disk.
        """
        with self._lock:
            prompts = object_prompts(boxes, points, labels)
            save = check_save(save, overlay_path)
            owned = not isinstance(video, FrameSource)
            source = open_source(video)
            created = new_folders(Path(output_dir))
            try:
                prompts = [fit_prompt(p, source.width, source.height) for p in prompts]
                total = _frame_count(source, start_frame, max_frames)
                check_output_names(Path(output_dir), save, len(prompts), overlay_path=overlay_path)
                out = ensure_writable_folder(Path(output_dir))
                sinks = make_sinks(
                    out,
                    [s for s in save if overlay_path is None or s != "overlay"],
                    absent_box=absent_box,
                    image_size=self.image_size,
                )
                if overlay_path is not None and "overlay" in save:
                    sinks.sinks.append(OverlayVideoSink(overlay_path))
                results = self._results(
                    source, prompts, start_frame, max_frames, need_frames="overlay" in save
                )
                done, fps, complete = self._write_all(
                    source, sinks, results, total, progress, should_stop
                )
            except BaseException:
                remove_empty_folders(created)  # a run that wrote nothing leaves nothing
                raise
            finally:
                if owned:
                    source.close()
        obj_ids = tuple(p.obj_id for p in prompts)
        outputs = _outputs(out, save, obj_ids, overlay_path, complete)
        tracker = self.predictor.tracker_name  # what the predictor runs, from its own configs
        return TrackSummary(done, fps, outputs, complete, obj_ids, tracker)

    def _write_all(
        self,
        source: FrameSource,
        sinks: MultiSink,
        results: Iterator[tuple[Frame | None, FrameResult]],
        total: int | None,
        progress: ProgressCallback | None,
        should_stop: StopCallback | None,
    ) -> tuple[int, float, bool]:
        """Feed every result to the sinks; returns (frames, frames/s, complete)."""
        sinks.open(VideoInfo.from_source(source))
        done, fps, stopped = 0, 0.0, False
        started = time.perf_counter()
        try:
            with self._precision():
                for frame, result in results:
                    sinks.write(frame, result)
                    done += 1
                    fps = done / max(time.perf_counter() - started, 1e-9)
                    if progress is not None:
                        progress(done, total, fps)
                    more = total is None or done < total
                    if more and should_stop is not None and should_stop():
                        stopped = True
                        logger.info("stopped after %d frames; outputs are incomplete", done)
                        break
        except BaseException as exc:
            with contextlib.suppress(Exception):
                sinks.close(complete=False) if done else sinks.discard()
            if isinstance(exc, OutputError):
                kept = f"{done} complete frame(s) kept as *.incomplete" if done else "nothing kept"
                raise OutputError(f"{exc}; {kept}", exc.errno) from exc
            raise
        try:
            sinks.close(complete=not stopped)
        except OutputError as exc:
            raise OutputError(f"{exc}; {done} frame(s) kept as *.incomplete", exc.errno) from exc
        return done, fps, not stopped

    def _results(
        self,
        source: FrameSource,
        prompts: list[ObjectPrompt],
        start_frame: int,
        max_frames: int | None,
        *,
        need_frames: bool,
    ) -> Iterator[tuple[Frame | None, FrameResult]]:
        """(frame or None, result) per tracked frame, computed lazily."""
        if source.seekable:
            state = self.predictor.init_video(source)
            for p in prompts:
                self.predictor.add_prompt(
                    state, frame_idx=start_frame, obj_id=p.obj_id, **p.kwargs()
                )
            for result in self.predictor.propagate(state, start=start_frame, max_frames=max_frames):
                yield (source.get(result.frame_idx) if need_frames else None), result
            return
        tracker = Tracker(self.predictor)
        for p in prompts:
            tracker.add_object(p.obj_id, **p.kwargs())
        stop = None if max_frames is None else max_frames + 1
        for _, frame in source.iter_frames(0, stop):
            yield frame, tracker.step(frame)

    def _precision(self) -> contextlib.AbstractContextManager[Any]:
        # bfloat16 is a model setting (RuntimeOptions -> split-bfloat16 layers), no autocast
        if self.dtype != "float16":
            return contextlib.nullcontext()
        return _reduced_precision(self.device, self.dtype)


@contextlib.contextmanager
def _reduced_precision(device: torch.device, dtype: str) -> Iterator[None]:
    """``torch.autocast`` to ``dtype``; failures inside become one-line ValueErrors."""
    try:
        with torch.autocast(device.type, dtype=getattr(torch, dtype)):
            yield
    except (RuntimeError, TypeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"{dtype} inference failed ({reason}); reduced precision is experimental, "
            "use --dtype float32"
        ) from exc


def _frame_count(source: FrameSource, start_frame: int, max_frames: int | None) -> int | None:
    """Frames the call will track (None for live sources of unknown length)."""
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if not source.seekable:
        if start_frame != 0:
            raise ValueError(f"{source.name} is a live stream: tracking starts at frame 0")
        return None if max_frames is None else max_frames + 1
    assert source.num_frames is not None
    if start_frame >= source.num_frames:
        raise ValueError(
            f"start frame {start_frame} is past the end of {source.name} "
            f"({source.num_frames} frames)"
        )
    left = source.num_frames - start_frame
    return left if max_frames is None else min(left, max_frames + 1)


def _outputs(
    out: Path,
    save: Collection[str],
    obj_ids: Sequence[int],
    overlay_path: str | Path | None,
    complete: bool,
) -> dict[str, Path]:
    finals: dict[str, Path] = {}
    if "overlay" in save:
        finals["overlay"] = Path(overlay_path) if overlay_path else out / "overlay.mp4"
    if "boxes" in save:
        finals.update({f"boxes_{i}": out / f"boxes_{i}.txt" for i in obj_ids})
    if "masks" in save:
        finals["masks"] = out / "masks"
    if "rle" in save:
        finals["rle"] = out / "masks.json"
    if "scores" in save:
        finals["scores"] = out / "scores.csv"
    paths = {k: p if complete else marked_path(p, "incomplete") for k, p in finals.items()}
    return {k: p for k, p in paths.items() if p.exists()}
