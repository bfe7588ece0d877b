"""DAM4SAM on the SAM 2 stepper: box -> mask init, RAM/DRM memory, DRM update rule.

Reproduces the official tracker (``dam4sam_tracker.py`` + its vendored predictor, commit
9c954504b39ebca4c412f207be0787c26bfac85a) decision for decision; every step is described in
``tools/golden/dam4sam/SPEC.md`` and checked against its golden runs. ``Dam4samStepper`` is an
``ObjectStepper`` whose memory comes from :func:`dam4sam_rules.select_memory` and which keeps
the per-object DAM4SAM state (`Dam4samTrack`) on the track it is given. With a
``SamuraiConfig`` too (``samurai+dam``), SAMURAI's Kalman filter chooses the candidate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from samurai.config import Dam4samConfig, SamuraiConfig, TrackerConfig
from samurai.io.frames import Frame
from samurai.io.transforms import preprocess_image
from samurai.modeling.sam2 import ImageFeatures, Sam2Model
from samurai.tracking import dam4sam_rules
from samurai.tracking.memory import MemorySelection, MemorySlot, PointerSlot
from samurai.tracking.prompts import BOX_LABELS, make_mask_prompt
from samurai.tracking.results import Dam4samDetails, StepDetails
from samurai.tracking.state import Dam4samTrack, ObjectTrack, PendingDrm, Prompt
from samurai.tracking.step import ObjectStepper, StepOutput


class Dam4samStepper(ObjectStepper):
    """Per-object steps of DAM4SAM (``dam4sam``) or SAMURAI over DAM4SAM memory
    (``samurai+dam``), with a shared model and no per-video state of its own."""

    upsample_after_choice = True  # the official DAM4SAM step up-samples after the choice

    def __init__(
        self,
        model: Sam2Model,
        tracker: TrackerConfig,
        samurai: SamuraiConfig | None,
        dam4sam: Dam4samConfig,
    ) -> None:
        super().__init__(model, tracker, samurai)
        if tracker.max_cond_frames_in_attn < 2:
            raise ValueError("DAM4SAM needs max_cond_frames_in_attn >= 2 (official: 4)")
        if tracker.memory_temporal_stride_for_eval < 1:
            raise ValueError("memory_temporal_stride_for_eval must be >= 1")
        self.dam4sam = dam4sam

    def preprocess(self, frame: Frame, image_size: int) -> torch.Tensor:
        """DAM4SAM's input: float CHW / 255, bilinear antialiased resize, normalise."""
        return preprocess_image(frame, image_size)

    # ------------------------------------------------------------ initialisation
    def estimate_mask_from_box(
        self, features: ImageFeatures, prompt: Prompt, video_size: tuple[int, int]
    ) -> torch.Tensor:
        """The official ``estimate_mask_from_box``: (H, W) bool mask of a box prompt.

        One decoder call on the frame's features (+ no-memory embedding) with the box corners
        as points, single-mask output with the stability fallback, up-sampled to video size.
        """
        labels = prompt.point_labels
        if (
            prompt.point_coords is None
            or labels is None
            or labels.shape[1] != 2
            or tuple(int(v) for v in labels[0]) != BOX_LABELS
        ):
            raise ValueError("DAM4SAM initialises an object from a box or a mask, not clicks")
        model = self.model
        out = model.decode(
            model.condition_on_memory(features, None),
            features.high_res_features,
            point_coords=prompt.point_coords,
            point_labels=prompt.point_labels,
        )
        cand = model.sam_mask_decoder.select(out, multimask_output=False)
        video = F.interpolate(
            cand.masks[:, :1].float(), size=video_size, mode="bilinear", align_corners=False
        )
        return video[0, 0] > 0

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
        """Initialise an object from a box (via `estimate_mask_from_box`) or a mask.

        The mask is used as the frame's output (``mask * 20 - 10``) and its memory is
        encoded from the binarised low-res mask, as the official consolidation does.
        """
        if track.dam is not None or track.cond_memory:
            raise ValueError(
                f"object {track.obj_id} is already initialised: DAM4SAM takes one box or mask "
                "per object (add a new object id instead)"
            )
        if video_size is None:
            raise ValueError("DAM4SAM needs the video size to initialise an object")
        if prompt.mask is None:
            mask = self.estimate_mask_from_box(features, prompt, video_size)
            as_prompt = make_mask_prompt(mask.cpu(), image_size=self.model.image_size)
            assert as_prompt.mask is not None
            prompt = Prompt(mask=as_prompt.mask.to(self.model.device))
        out = super().prompt(
            track,
            frame_idx,
            features,
            prompt,
            is_init_cond_frame=True,
            reverse=False,
            num_frames=None,
        )
        history = max(self.dam4sam.drm_size_history, 2)
        track.dam = Dam4samTrack(
            init_frame=frame_idx,
            video_size=video_size,
            size_history=deque(maxlen=history),
            last_frame=frame_idx,
        )
        return out

    # ---------------------------------------------------------------- tracking
    def dam_selection(self, track: ObjectTrack, frame_idx: int) -> dam4sam_rules.MemorySelection:
        """The RAM / DRM memories and pointers ``frame_idx`` attends (video frame indices)."""
        dam = _state(track)
        k = dam.init_frame
        cond = {t - k: _visible(e.low_res_logits) for t, e in track.cond_memory.items()}
        noncond = {
            t - k: _visible(e.low_res_logits) for t, e in track.memory.items() if t < frame_idx
        }
        rel = frame_idx - k
        cfg = self.model.config
        sel = dam4sam_rules.select_memory(
            rel,
            cond,
            noncond,
            num_frames=rel + 1,  # the official tracker's predictor grows one frame at a time
            num_maskmem=cfg.num_maskmem,
            stride=self.tracker.memory_temporal_stride_for_eval,
            max_cond=self.tracker.max_cond_frames_in_attn,
            max_obj_ptrs=cfg.max_obj_ptrs_in_encoder,
        )
        return dam4sam_rules.MemorySelection(
            drm_selected=tuple(t + k for t in sel.drm_selected),
            entries=tuple(replace(e, frame=e.frame + k) for e in sel.entries),
            pointers=tuple(replace(p, frame=p.frame + k) for p in sel.pointers),
            ptr_t_diff_max=sel.ptr_t_diff_max,
        )

    def _as_selection(self, sel: dam4sam_rules.MemorySelection) -> MemorySelection:
        last = self.model.config.num_maskmem - 1
        return MemorySelection(
            cond_frames=sel.drm_selected,
            memory=tuple(MemorySlot(e.frame, last - e.tpos_index) for e in sel.entries),
            pointers=tuple(PointerSlot(p.frame, p.t_diff) for p in sel.pointers),
            ptr_tpos_scale=sel.ptr_t_diff_max,
        )

    def tracks_frame(self, track: ObjectTrack, frame_idx: int, *, reverse: bool) -> bool:
        """An online tracker: an object exists from its initialisation frame on."""
        return track.dam is None or frame_idx > track.dam.init_frame

    def track(
        self,
        track: ObjectTrack,
        frame_idx: int,
        features: ImageFeatures,
        *,
        reverse: bool,
        num_frames: int | None,
    ) -> StepOutput:
        """Track one frame: consolidate a pending DRM frame, attend RAM + DRM, decode, then
        apply the DRM update rule (updates ``track.dam`` and the track's memory stores)."""
        dam = _state(track)
        if reverse:
            raise ValueError("DAM4SAM tracks forward only (reverse=False)")
        if frame_idx != dam.last_frame + 1:
            raise ValueError(
                f"DAM4SAM tracks frames in order: object {track.obj_id} expects frame "
                f"{dam.last_frame + 1}, got {frame_idx}"
            )
        reencoded = self._consolidate(track, dam)
        sel = self.dam_selection(track, frame_idx)
        out = self.track_with(track, frame_idx, features, self._as_selection(sel))
        details = out.result.details
        assert details is not None and details.candidate_logits is not None
        decision = self._drm_rule(dam, frame_idx, details)
        dam.size_history.append(decision.n_pixels)
        dam.last_frame = frame_idx
        if decision.add_to_drm:
            dam.last_added = frame_idx - dam.init_frame
            dam.pending = PendingDrm(frame_idx, features)
        dam_details = Dam4samDetails(
            selection=sel,
            decision=decision,
            drm_added=decision.add_to_drm,
            reencoded=reencoded,
            n_pixels_pos=int((out.entry.low_res_logits > 0).sum()),
        )
        result = replace(out.result, details=replace(details, dam4sam=dam_details))
        return replace(out, result=result)

    def _drm_rule(
        self, dam: Dam4samTrack, frame_idx: int, details: StepDetails
    ) -> dam4sam_rules.DrmDecision:
        """The official DRM rule on the candidates (after the absent replacement) at video size."""
        assert details.candidate_logits is not None
        video = F.interpolate(
            details.candidate_logits[None].float(),
            size=dam.video_size,
            mode="bilinear",
            align_corners=False,
        )[0]
        masks = (video > 0).cpu().numpy()
        index = details.candidate_index
        return dam4sam_rules.evaluate_drm_rule(
            frame_idx - dam.init_frame,
            dam.last_added,
            list(dam.size_history),
            masks[index],
            list(masks),
            details.candidate_ious.detach().float().cpu().numpy().astype(np.float32),
            self.dam4sam,
            chosen_index=index,
        )

    def _consolidate(self, track: ObjectTrack, dam: Dam4samTrack) -> int | None:
        """Re-encode the pending DRM frame from its binarised mask and make it conditioning."""
        pending = dam.pending
        if pending is None:
            return None
        f = pending.frame_idx
        entry = track.memory.pop(f)
        size = self.model.image_size
        high = F.interpolate(
            entry.low_res_logits.to(self.model.device).float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
        )
        score = torch.tensor([[entry.object_score_logit]], device=high.device)
        mem = self.model.encode_memory(
            pending.features,
            high,
            score,
            binarize=self.tracker.binarize_mask_from_pts_for_mem_enc,
        )
        storage = self.storage_device or mem.maskmem_features.device
        track.cond_memory[f] = replace(
            entry,
            maskmem_features=mem.maskmem_features.to(torch.bfloat16).to(storage),
            maskmem_pos_enc=mem.maskmem_pos_enc,
            is_cond=True,
        )
        dam.pending = None
        return f

    def forget_unreachable(
        self, track: ObjectTrack, last_frame: int, num_frames: int | None
    ) -> None:
        """Drop memories no later frame can attend (results are unchanged).

        Tracked frames: a later frame attends a subset of what frame ``last_frame + 1``
        attends plus newer frames (its newest visible frame and stride grid can only move
        up), so that selection is kept, with the pending DRM frame. Conditioning frames: the
        DRM part of a later frame is its newest conditioning frame before f-1, frame 0, then
        the nearest (= newest) others, so besides frame 0 only the newest
        ``max_cond_frames_in_attn`` (one more for the f-1 exclusion) can come back, plus
        those the next frame attends as pointers.
        """
        dam = track.dam
        if dam is None:
            return
        nxt = self.dam_selection(track, last_frame + 1)
        keep = {e.frame for e in nxt.entries} | {p.frame for p in nxt.pointers}
        if dam.pending is not None:
            keep.add(dam.pending.frame_idx)
        for f in [f for f in track.memory if f <= last_frame and f not in keep]:
            del track.memory[f]
        newest = sorted(track.cond_memory)[-self.tracker.max_cond_frames_in_attn :]
        keep |= {dam.init_frame, *newest}
        for f in [f for f in track.cond_memory if f not in keep]:
            del track.cond_memory[f]


def _state(track: ObjectTrack) -> Dam4samTrack:
    if track.dam is None:
        raise ValueError(f"object {track.obj_id} has no DAM4SAM state: prompt it with a box first")
    return track.dam


def _visible(low_res_logits: torch.Tensor) -> bool:
    """The official ``n_pixels_pos >= 1`` on the 256x256 chosen logits."""
    return bool((low_res_logits > 0).any())


def make_stepper(
    model: Sam2Model,
    tracker: TrackerConfig,
    samurai: SamuraiConfig | None,
    dam4sam: Dam4samConfig | None,
) -> ObjectStepper:
    """The stepper of a policy: SAM 2 / SAMURAI, or DAM4SAM (with SAMURAI: ``samurai+dam``)."""
    if dam4sam is None:
        return ObjectStepper(model, tracker, samurai)
    return Dam4samStepper(model, tracker, samurai, dam4sam)


__all__ = ["Dam4samStepper", "make_stepper"]
