"""The official SAM 2 video-predictor API over ``VideoPredictor``, so SAM 2 / SAMURAI user code
can switch imports: ``init_state``, ``add_new_points_or_box``, ``propagate_in_video``, ...
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from numpy.typing import ArrayLike

from samurai.io.frames import FrameSourceSpec
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.results import FrameResult
from samurai.tracking.state import VideoState

Output = tuple[int, list[int], torch.Tensor]
"""``(frame_idx, obj_ids, video_res_masks)``: mask logits (N, 1, H, W) at video resolution."""


def _output(result: FrameResult) -> Output:
    return result.frame_idx, result.obj_ids, result.video_res_logits()


class SAM2VideoPredictor(VideoPredictor):
    """``VideoPredictor`` with the method names and return values of the official predictor."""

    def init_state(
        self,
        video_path: FrameSourceSpec,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> VideoState:
        """Open a video (mp4/mov/... file, JPEG/PNG folder, ...). Frames are decoded lazily,
        so ``offload_video_to_cpu`` / ``async_loading_frames`` have nothing left to do."""
        del offload_video_to_cpu, async_loading_frames
        return self.init_video(video_path, offload_state_to_cpu=offload_state_to_cpu)

    def add_new_points_or_box(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        points: ArrayLike | torch.Tensor | None = None,
        labels: ArrayLike | torch.Tensor | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: ArrayLike | torch.Tensor | None = None,
    ) -> Output:
        """Add clicks and/or a box ``[x0, y0, x1, y1]`` (video pixels) for an object."""
        result = self.add_prompt(
            inference_state,
            frame_idx=frame_idx,
            obj_id=obj_id,
            box=box,
            points=points,
            labels=labels,
            clear_old_points=clear_old_points,
            normalize_coords=normalize_coords,
        )
        return _output(result)

    add_new_points = add_new_points_or_box

    def add_new_mask(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        mask: ArrayLike | torch.Tensor,
    ) -> Output:
        """Add a 2-D mask for an object on a frame."""
        return _output(
            self.add_prompt(inference_state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
        )

    def propagate_in_video(
        self,
        inference_state: VideoState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[Output]:
        """Yield ``(frame_idx, obj_ids, video_res_masks)`` for every tracked frame."""
        for result in self.propagate(
            inference_state,
            start=start_frame_idx,
            reverse=reverse,
            max_frames=max_frame_num_to_track,
        ):
            yield _output(result)

    def clear_all_prompts_in_frame(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: int,
        need_output: bool = True,
    ) -> Output | None:
        """Remove an object's prompts on a frame."""
        self.clear_prompts(inference_state, frame_idx, obj_id)
        if not need_output:
            return None
        return _output(self._frame_result(inference_state, frame_idx))

    def remove_object(  # type: ignore[override]
        self,
        inference_state: VideoState,
        obj_id: int,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list[int], list[Output]]:
        """Remove an object; returns the remaining ids and the re-rendered prompted frames."""
        if obj_id not in inference_state.tracks:
            if strict:
                raise ValueError(f"unknown object id {obj_id}; known: {inference_state.obj_ids}")
            return inference_state.obj_ids, []
        frames = sorted(inference_state.tracks[obj_id].prompted_outputs)
        super().remove_object(inference_state, obj_id)
        updated = (
            [_output(self._frame_result(inference_state, f)) for f in frames] if need_output else []
        )
        return inference_state.obj_ids, updated

    def reset_state(self, inference_state: VideoState) -> None:
        """Remove all objects, prompts and tracking results."""
        self.reset(inference_state)
