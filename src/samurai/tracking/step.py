"""One object, one frame: memory -> decoder -> candidate choice -> pointer -> memory encoding.

``ObjectStepper`` holds the model, the policies and the two strategies (candidate selector,
memory selector) but no per-video state: every call reads and returns typed state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samurai.config import SamuraiConfig, TrackerConfig
from samurai.io.frames import Frame
from samurai.io.masks import fill_holes, mask_to_box
from samurai.io.transforms import preprocess_video_frame
from samurai.modeling.sam2 import NO_OBJ_SCORE, ImageFeatures, MemoryInputs, Sam2Model
from samurai.tracking.memory import GateScores, MemorySelection
from samurai.tracking.motion import (
    BestIouSelector,
    CandidateSelection,
    CandidateSelector,
    MotionState,
    SamuraiMotionSelector,
)
from samurai.tracking.results import ObjectResult, StepDetails
from samurai.tracking.selectors import build_memory_selector
from samurai.tracking.state import MemoryEntry, ObjectTrack, Prompt

MASK_OUT_SCALE, MASK_OUT_BIAS = 20.0, -10.0
"""A mask prompt used directly as output becomes logits of +10 / -10 (official values)."""


@dataclass(frozen=True)
class StepOutput:
    """What one step produces: the result to report, the memory entry, the new motion state."""

    result: ObjectResult
    entry: MemoryEntry
    motion: MotionState


@dataclass(frozen=True)
class _Decoded:
    low_res: torch.Tensor  # (1, 1, h, w) chosen logits (absent -> -1024)
    high_res: torch.Tensor  # (1, 1, S, S)
    obj_ptr: torch.Tensor  # (1, 256)
    score: torch.Tensor  # (1, 1)
    iou: float
    kf_score: float | None
    motion: MotionState
    details: StepDetails


class ObjectStepper:
    """Runs the per-object steps of SAM 2 / SAMURAI tracking with a shared model."""

    upsample_after_choice = False
    """Up-sample only the chosen candidate for memory encoding (DAM4SAM) instead of taking it
    from the up-sampled candidates SAMURAI measured (equal up to float rounding)."""

    def __init__(
        self, model: Sam2Model, tracker: TrackerConfig, samurai: SamuraiConfig | None
    ) -> None:
        self.model = model
        self.tracker = tracker
        self.samurai = samurai
        self.candidate_selector: CandidateSelector = (
            SamuraiMotionSelector(samurai) if samurai is not None else BestIouSelector()
        )
        self.memory_selector = build_memory_selector(model.config, tracker, samurai)
        self.storage_device: torch.device | None = None
        """Where memories are kept (CPU with ``offload_state_to_cpu``); None = model device."""

    def preprocess(self, frame: Frame, image_size: int) -> torch.Tensor:
        """Model input (3, S, S) of a video frame: SAM 2's video loader (PIL bicubic)."""
        return preprocess_video_frame(frame, image_size)

    # ----------------------------------------------------------------- memory
    def select_memory(
        self, track: ObjectTrack, frame_idx: int, *, reverse: bool, num_frames: int | None
    ) -> MemorySelection:
        """Which stored memories and pointers condition ``frame_idx``."""
        past = {
            f: GateScores(iou=e.iou, obj_score=e.object_score_logit, kf_score=e.kf_score)
            for f, e in track.memory.items()
        }
        return self.memory_selector.select(
            frame_idx,
            cond_frames=sorted(track.cond_memory),
            past=past,
            reverse=reverse,
            num_frames=num_frames,
        )

    def memory_inputs(self, track: ObjectTrack, selection: MemorySelection) -> MemoryInputs:
        device = self.model.device
        feats, pos, tpos, ptrs, tdiff = [], [], [], [], []
        for slot in selection.memory:
            entry = track.entry(slot.frame_idx)
            if entry is None:  # padding slot (frame not tracked): skipped as upstream does
                continue
            feats.append(entry.maskmem_features.to(device, non_blocking=True))
            pos.append(entry.maskmem_pos_enc.to(device, non_blocking=True))
            tpos.append(slot.t_pos)
        for ptr in selection.pointers:
            entry = track.entry(ptr.frame_idx)
            if entry is not None:
                ptrs.append(entry.obj_ptr.to(device))
                tdiff.append(ptr.t_diff)
        return MemoryInputs(
            maskmem_features=feats,
            maskmem_pos_enc=pos,
            maskmem_tpos=tpos,
            obj_ptrs=ptrs,
            obj_ptr_tdiff=tdiff,
            obj_ptr_tdiff_max=selection.ptr_tpos_scale,
        )

    def forget_unreachable(
        self, track: ObjectTrack, last_frame: int, num_frames: int | None
    ) -> None:
        """Drop non-conditioning memories no future (forward) frame can select any more."""
        past = {
            f: GateScores(iou=e.iou, obj_score=e.object_score_logit, kf_score=e.kf_score)
            for f, e in track.memory.items()
        }
        kept = self.memory_selector.retained_frames(
            last_frame, cond_frames=sorted(track.cond_memory), past=past, num_frames=num_frames
        )
        for f in [f for f in track.memory if f <= last_frame and kept.can_forget(f)]:
            del track.memory[f]

    # ------------------------------------------------------------------ steps
    def tracks_frame(self, track: ObjectTrack, frame_idx: int, *, reverse: bool) -> bool:
        """Whether ``track`` is tracked on ``frame_idx`` (SAM 2: on every frame)."""
        return True

    def use_multimask(self, is_init_cond_frame: bool, prompt: Prompt | None) -> bool:
        """Official rule: 3 candidates on tracked frames and for 0-1 clicks on a prompt."""
        cfg = self.model.config
        labels = None if prompt is None else prompt.point_labels
        num_pts = 0 if labels is None else labels.shape[1]
        return (
            cfg.multimask_output_in_sam
            and (is_init_cond_frame or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_pts <= cfg.multimask_max_pt_num
        )

    def track(
        self,
        track: ObjectTrack,
        frame_idx: int,
        features: ImageFeatures,
        *,
        reverse: bool,
        num_frames: int | None,
    ) -> StepOutput:
        """Track an object on a frame without prompt, from its memory."""
        selection = self.select_memory(track, frame_idx, reverse=reverse, num_frames=num_frames)
        return self.track_with(track, frame_idx, features, selection)

    def track_with(
        self,
        track: ObjectTrack,
        frame_idx: int,
        features: ImageFeatures,
        selection: MemorySelection,
    ) -> StepOutput:
        """Track an object on a frame from the memories of ``selection``."""
        pix = self.model.condition_on_memory(features, self.memory_inputs(track, selection))
        dec = self._decode(
            track.motion,
            features,
            pix,
            None,
            None,
            multimask=self.use_multimask(False, None),
            memory=selection,
        )
        mem = self.model.encode_memory(features, dec.high_res, dec.score, binarize=False)
        return self._finish(
            track, frame_idx, dec, mem.maskmem_features, mem.maskmem_pos_enc, is_cond=False
        )

    def prompt(
        self,
        track: ObjectTrack,
        frame_idx: int,
        features: ImageFeatures,
        prompt: Prompt,
        *,
        is_init_cond_frame: bool,
        reverse: bool,
        num_frames: int | None,
        prev_logits: torch.Tensor | None = None,
        video_size: tuple[int, int] | None = None,
    ) -> StepOutput:
        """Segment an object on a prompted frame (clicks, box or mask).

        An initial conditioning frame is decoded without memory; a correction on an already
        tracked frame is decoded with memory. The memory is then encoded from the (hole-filled)
        output mask, binarised, as the official predictor does when tracking starts.
        ``video_size`` (height, width) is for policies that work at video resolution.
        """
        if prompt.mask is not None and self.model.config.use_mask_input_as_output_without_sam:
            dec = self._mask_as_output(track.motion, features, prompt.mask)
        else:
            selection = None
            if is_init_cond_frame:
                pix = self.model.condition_on_memory(features, None)
            else:
                selection = self.select_memory(
                    track, frame_idx, reverse=reverse, num_frames=num_frames
                )
                pix = self.model.condition_on_memory(features, self.memory_inputs(track, selection))
            mask_input = prompt.mask
            if prev_logits is not None and prompt.point_coords is not None:
                mask_input = torch.clamp(prev_logits, -32.0, 32.0)
            dec = self._decode(
                track.motion,
                features,
                pix,
                prompt,
                mask_input,
                multimask=self.use_multimask(is_init_cond_frame, prompt),
                memory=selection,
            )
        filled = fill_holes(dec.low_res, self.tracker.fill_hole_area)
        high = F.interpolate(
            filled, size=dec.high_res.shape[-2:], mode="bilinear", align_corners=False
        )
        mem = self.model.encode_memory(
            features, high, dec.score, binarize=self.tracker.binarize_mask_from_pts_for_mem_enc
        )
        is_cond = is_init_cond_frame or self.tracker.add_all_frames_to_correct_as_cond
        return self._finish(
            track, frame_idx, dec, mem.maskmem_features, mem.maskmem_pos_enc, is_cond=is_cond
        )

    def _finish(
        self,
        track: ObjectTrack,
        frame_idx: int,
        dec: _Decoded,
        maskmem_features: torch.Tensor,
        maskmem_pos_enc: torch.Tensor,
        *,
        is_cond: bool,
    ) -> StepOutput:
        storage = self.storage_device or maskmem_features.device
        low = fill_holes(dec.low_res, self.tracker.fill_hole_area)
        score = float(dec.score.reshape(-1)[0])
        entry = MemoryEntry(
            frame_idx=frame_idx,
            # Stored in bfloat16 as the official predictor does; later frames read them back.
            maskmem_features=maskmem_features.to(torch.bfloat16).to(storage),
            maskmem_pos_enc=maskmem_pos_enc,
            obj_ptr=dec.obj_ptr,
            low_res_logits=low.to(storage),
            object_score_logit=score,
            iou=dec.iou,
            kf_score=dec.kf_score,
            is_cond=is_cond,
        )
        sel = dec.details.selection
        result = ObjectResult(
            obj_id=track.obj_id,
            low_res_logits=low,
            object_score_logit=score,
            iou=dec.iou,
            present=score > self.tracker.min_obj_score_logits,
            kf_box_xyxy=None if sel is None else sel.predicted_box,
            details=dec.details,
        )
        return StepOutput(result=result, entry=entry, motion=dec.motion)

    # ---------------------------------------------------------------- decoder
    def _decode(
        self,
        motion: MotionState,
        features: ImageFeatures,
        pix: torch.Tensor,
        prompt: Prompt | None,
        mask_input: torch.Tensor | None,
        *,
        multimask: bool,
        memory: MemorySelection | None,
    ) -> _Decoded:
        model = self.model
        out = model.decode(
            pix,
            features.high_res_features,
            point_coords=None if prompt is None else prompt.point_coords,
            point_labels=None if prompt is None else prompt.point_labels,
            mask_input=mask_input,
        )
        cand = model.sam_mask_decoder.select(out, multimask_output=multimask)
        appearing = out.object_score_logits > self.tracker.min_obj_score_logits
        masks = torch.where(appearing[:, :, None, None], cand.masks, NO_OBJ_SCORE).float()
        size = (model.image_size, model.image_size)
        selection: CandidateSelection | None = None
        boxes = None
        if multimask:
            high_all = None
            if self.candidate_selector.needs_boxes:
                high_all = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
                boxes = mask_to_box(high_all[0] > 0)
            selection = self.candidate_selector.select(cand.iou_pred[0], boxes, motion)
            motion = selection.state
            index = selection.index
            reuse = high_all is not None and not self.upsample_after_choice
            high = high_all[:, index : index + 1] if reuse else None
        else:
            index = 0
            high = None
        low = masks[:, index : index + 1]
        if high is None:
            high = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        obj_ptr = model.object_pointer(cand.sam_tokens[:, index], appearing)
        iou = float(cand.iou_pred[0, index])
        details = StepDetails(
            ious_all4=out.iou_pred[0],
            candidate_ious=cand.iou_pred[0],
            chosen_token=int(cand.token_indices[0, index]),
            candidate_index=index if multimask else -1,
            candidate_boxes=boxes,
            selection=selection,
            memory=memory,
            obj_ptr=obj_ptr[0],
            chosen_box=boxes[index] if boxes is not None else mask_to_box(high[0, 0] > 0),
            candidate_logits=masks[0],
        )
        return _Decoded(
            low_res=low,
            high_res=high,
            obj_ptr=obj_ptr,
            score=out.object_score_logits,
            iou=iou,
            kf_score=None if selection is None else selection.kf_score,
            motion=motion,
            details=details,
        )

    def _mask_as_output(
        self, motion: MotionState, features: ImageFeatures, mask: torch.Tensor
    ) -> _Decoded:
        """Use a mask prompt directly as the output (``use_mask_input_as_output_without_sam``)."""
        model = self.model
        high = mask.float() * MASK_OUT_SCALE + MASK_OUT_BIAS
        h, w = high.shape[-2:]
        low = F.interpolate(
            high, size=(h // 4, w // 4), mode="bilinear", align_corners=False, antialias=True
        )
        # The pointer comes from the decoder fed with the downsampled mask and raw features.
        out = model.decode(
            features.vision_features,
            features.high_res_features,
            mask_input=model.mask_downsample(mask.float()),
        )
        cand = model.sam_mask_decoder.select(out, multimask_output=False)
        inner = out.object_score_logits > self.tracker.min_obj_score_logits
        obj_ptr = model.object_pointer(cand.sam_tokens[:, 0], inner)
        appearing = torch.any(mask.flatten(1) > 0.0, dim=1, keepdim=True)
        obj_ptr = model.object_pointer_mix(obj_ptr, appearing)
        score = MASK_OUT_SCALE * appearing.float() + MASK_OUT_BIAS
        details = StepDetails(
            ious_all4=out.iou_pred[0],
            candidate_ious=torch.ones(1),
            chosen_token=-1,
            candidate_index=-1,
            candidate_boxes=None,
            selection=None,
            memory=None,
            obj_ptr=obj_ptr[0],
            chosen_box=mask_to_box(high[0, 0] > 0),
        )
        return _Decoded(
            low_res=low,
            high_res=high,
            obj_ptr=obj_ptr,
            score=score,
            iou=1.0,
            kf_score=None,
            motion=motion,
            details=details,
        )
