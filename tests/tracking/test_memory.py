"""Memory selection: golden replays of the reference runs, unit cases, bounded-memory pruning."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from reference import golden
from samurai.config import SAMURAI_DEFAULTS, VARIANTS, SamuraiConfig, TrackerConfig
from samurai.tracking.memory import (
    GateScores,
    MemoryGate,
    MemoryLayout,
    MemorySelection,
    MemorySelector,
    MemorySlot,
    PointerSlot,
    select_closest_cond_frames,
)
from samurai.tracking.selectors import (
    BestIouMemorySelector,
    Sam2StrideSelector,
    SamuraiGatedSelector,
    build_memory_selector,
)

PASS = GateScores(iou=0.9, obj_score=1.0)
FAIL = GateScores(iou=0.2, obj_score=1.0)

SAMURAI_GOLDEN = {
    "samurai_t_bedroom": "sam2.1_hiera_t",
    "samurai_t_points_bedroom": "sam2.1_hiera_t",
    "samurai_bplus_bedroom": "sam2.1_hiera_b+",
    "samurai_l_bedroom": "sam2.1_hiera_l",
}
SAM2_GOLDEN = {"sam2_t_bedroom": "sam2.1_hiera_t", "sam2v0_t_bedroom": "sam2_hiera_t"}


def padded(values: Sequence[int], width: int) -> list[int]:
    return [*values, *([-1] * (width - len(values)))]


def golden_scores(g: Mapping[str, np.ndarray], frame_idx: int) -> GateScores:
    kf = float(g["kf_score"][frame_idx]) if "kf_score" in g else math.nan
    return GateScores(
        iou=float(g["best_iou_score"][frame_idx]),
        obj_score=float(g["object_score_logit"][frame_idx]),
        kf_score=None if math.isnan(kf) else kf,
    )


def replay(name: str, selector: MemorySelector) -> list[MemorySelection]:
    """Selections of frames 1..F-1 of a golden run (frame 0 prompted, the rest tracked)."""
    g = golden(name)
    num_frames = json.loads(str(g["meta_json"]))["num_frames"]
    assert num_frames == len(g["frame_idx"])
    past: dict[int, GateScores] = {}
    out = []
    for f in range(1, num_frames):
        out.append(selector.select(f, cond_frames=[0], past=past, num_frames=num_frames))
        past[f] = golden_scores(g, f)
    return out


@pytest.mark.golden
@pytest.mark.parametrize("name", sorted(SAMURAI_GOLDEN))
def test_samurai_golden_replay(name: str) -> None:
    variant = SAMURAI_GOLDEN[name]
    selector = build_memory_selector(VARIANTS[variant], TrackerConfig(), SAMURAI_DEFAULTS[variant])
    assert isinstance(selector, SamuraiGatedSelector)
    g = golden(name)
    assert (g["mem_frames"][0] == -1).all() and (g["ptr_frames"][0] == -1).all()
    for f, sel in enumerate(replay(name, selector), start=1):
        assert padded(sel.mem_frames, 7) == g["mem_frames"][f].tolist(), f
        assert padded(sel.mem_tpos, 7) == g["mem_tpos"][f].tolist(), f
        assert padded(sel.ptr_frames, 16) == g["ptr_frames"][f].tolist(), f
        evaluated = g["mem_candidates_evaluated"][f]
        assert padded(sel.candidates_evaluated, evaluated.size) == evaluated.tolist(), f
        assert selector.gate.passes(golden_scores(g, f)) == bool(g["mem_gate_pass"][f]), f
        assert sel.ptr_tpos_scale == min(len(g["frame_idx"]), 16) - 1


@pytest.mark.golden
@pytest.mark.parametrize("name", sorted(SAM2_GOLDEN))
def test_sam2_golden_replay(name: str) -> None:
    selector = build_memory_selector(VARIANTS[SAM2_GOLDEN[name]], TrackerConfig())
    assert isinstance(selector, Sam2StrideSelector)
    g = golden(name)
    for f, sel in enumerate(replay(name, selector), start=1):
        assert padded(sel.mem_frames, 7) == g["mem_frames"][f].tolist(), f
        assert padded(sel.mem_tpos, 7) == g["mem_tpos"][f].tolist(), f
        assert padded(sel.ptr_frames, 16) == g["ptr_frames"][f].tolist(), f
        assert sel.candidates_evaluated == ()


def test_pointer_offsets() -> None:
    past = {t: PASS for t in range(1, 8)}
    # only_obj_ptrs_in_the_past_for_eval: a cond frame after f is left out (before f in reverse)
    sel = SamuraiGatedSelector().select(3, cond_frames=[0, 8], past=past, num_frames=10)
    assert sel.pointers == (PointerSlot(0, 3), PointerSlot(2, 1), PointerSlot(1, 2))
    sel = SamuraiGatedSelector().select(3, cond_frames=[0, 8], past=past, reverse=True)
    assert sel.pointers[0] == PointerSlot(8, 5) and sel.ptr_frames[1:] == (4, 5, 6, 7)
    assert sel.ptr_tpos_scale == 15
    # with future cond pointers, SAM 2.1 signs the cond offsets (SAM 2.0: abs); past frames
    # always get the unsigned t_diff
    for signed, expected in ((True, -5), (False, 5)):
        layout = MemoryLayout(
            only_obj_ptrs_in_the_past_for_eval=False, use_signed_tpos_enc_to_obj_ptrs=signed
        )
        sel = Sam2StrideSelector(layout=layout).select(3, cond_frames=[0, 8], past=past)
        assert sel.pointers[:2] == (PointerSlot(0, 3), PointerSlot(8, expected))
        sel = Sam2StrideSelector(layout=layout).select(
            5, cond_frames=[0, 8], past=past, reverse=True
        )
        assert sel.pointers[:3] == (
            PointerSlot(0, -5 if signed else 5),
            PointerSlot(8, 3),
            PointerSlot(6, 1),
        )
    no_ptrs = MemoryLayout(use_obj_ptrs_in_encoder=False)
    assert Sam2StrideSelector(layout=no_ptrs).select(3, cond_frames=[0], past=past).pointers == ()


def test_stride_forward_and_reverse() -> None:
    past = {t: PASS for t in range(1, 59)}
    selector = Sam2StrideSelector(stride=3)
    sel = selector.select(20, cond_frames=[0], past=past)
    assert sel.memory == (
        MemorySlot(0, 0),
        *(MemorySlot(t, p) for t, p in ((6, 1), (9, 2), (12, 3), (15, 4), (18, 5), (19, 6))),
    )
    sel = selector.select(
        20, cond_frames=[59], past={k: v for k, v in past.items() if k != 27}, reverse=True
    )
    # reverse: f+1, then multiples of 3 from ceil((f+2)/3)*3 upward; missing 27 skipped
    assert sel.mem_frames == (59, 36, 33, 30, 24, 21)
    assert sel.mem_tpos == (0, 1, 2, 3, 5, 6)
    assert sel.ptr_frames == (59, *(t for t in range(21, 36) if t != 27))
    assert sel.ptr_t_diffs == (39, *(t - 20 for t in range(21, 36) if t != 27))


def test_stride_skips_untracked_frames_and_uses_unselected_cond() -> None:
    layout = MemoryLayout(max_cond_frames_in_attn=2)
    selector = Sam2StrideSelector(layout=layout)
    cond = [0, 9, 11, 30]
    past = {t: PASS for t in (*range(1, 9), 10, 12)}
    sel = selector.select(13, cond_frames=cond, past=past, num_frames=40)
    assert sel.cond_frames == (11, 30)
    # 11 is a selected cond frame: not reused as ordinary memory; 9 (unselected) is
    assert sel.mem_frames == (11, 30, 7, 8, 9, 10, 12)
    assert sel.mem_tpos == (0, 0, 1, 2, 3, 4, 6)
    # pointers: selected cond frames in the past only, then t_diff 1..15 (0 is unselected cond)
    assert sel.pointers[0] == PointerSlot(11, 2)
    assert sel.ptr_frames[1:] == (12, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
    assert sel.ptr_t_diffs[-1] == 13


def test_select_closest_cond_frames() -> None:
    assert select_closest_cond_frames(25, [0, 10, 20, 30, 40], -1) == ((0, 10, 20, 30, 40), ())
    # before, after, then nearest (10 and 40 tie at distance 15: input order wins)
    assert select_closest_cond_frames(25, [0, 10, 20, 30, 40], 3) == ((20, 30, 10), (0, 40))
    assert select_closest_cond_frames(25, [40, 10, 0, 20, 30], 3) == ((20, 30, 40), (10, 0))
    assert select_closest_cond_frames(50, [0, 10, 20], 2) == ((20, 10), (0,))
    assert select_closest_cond_frames(5, [7, 5, 6], 2) == ((5, 6), (7,))
    with pytest.raises(ValueError):
        select_closest_cond_frames(5, [0, 10], 1)


def test_several_cond_frames_all_attended() -> None:
    selector = SamuraiGatedSelector()
    past = {t: PASS for t in range(1, 100) if t != 50}
    sel = selector.select(60, cond_frames=[100, 0, 50], past=past, num_frames=200)
    assert sel.cond_frames == (100, 0, 50)
    assert sel.mem_frames[:3] == (100, 0, 50) and sel.mem_tpos[:3] == (0, 0, 0)
    assert sel.mem_frames[3:] == (54, 55, 56, 57, 58, 59)
    # pointer to the future cond frame 100 left out (only_obj_ptrs_in_the_past_for_eval)
    assert sel.pointers[:2] == (PointerSlot(0, 60), PointerSlot(50, 10))
    assert 50 not in sel.ptr_frames[2:]
    assert len(sel.pointers) == 2 + 14


def test_cond_frame_overlapping_past_rejected() -> None:
    with pytest.raises(ValueError):
        SamuraiGatedSelector().select(5, cond_frames=[0, 3], past={3: PASS})
    with pytest.raises(ValueError):
        Sam2StrideSelector().select(5, cond_frames=[], past={3: PASS})


def test_gate_thresholds_are_strict() -> None:
    gate = MemoryGate()
    assert gate.passes(GateScores(0.5001, 0.001, None))
    assert not gate.passes(GateScores(0.5, 1.0, None))
    assert not gate.passes(GateScores(0.9, 0.0, None))
    assert not gate.passes(GateScores(0.9, 1.0, 0.0))
    assert gate.passes(GateScores(0.9, 1.0, 0.01))
    custom = MemoryGate.from_config(SamuraiConfig(memory_bank_iou_threshold=0.7))
    assert not custom.passes(GateScores(0.6, 1.0))


def test_samurai_frame_one_never_tested() -> None:
    selector = SamuraiGatedSelector()
    past = {1: PASS, 2: FAIL}
    assert selector.select(2, cond_frames=[0], past={1: PASS}).mem_frames == (0, 1)
    sel = selector.select(3, cond_frames=[0], past=past)
    assert sel.candidates_evaluated == (2,)
    assert sel.memory == (MemorySlot(0, 0), MemorySlot(2, 6))
    past.update({t: FAIL for t in range(3, 10)})
    assert selector.select(10, cond_frames=[0], past=past).mem_frames == (0, 9)


def test_samurai_cap_and_failed_previous_frame() -> None:
    selector = SamuraiGatedSelector()
    past = {t: PASS for t in range(1, 30)}
    sel = selector.select(30, cond_frames=[0], past=past)
    # the scan stops after 15 passes; the last 6 are attended with t_pos 1..6
    assert sel.candidates_evaluated == tuple(range(29, 14, -1))
    assert sel.mem_frames == (0, 24, 25, 26, 27, 28, 29)
    past = {t: (PASS if t in (5, 7, 9) else FAIL) for t in range(1, 11)}
    sel = selector.select(11, cond_frames=[0], past=past)
    assert sel.memory[1:] == tuple(MemorySlot(t, p) for t, p in ((5, 3), (7, 4), (9, 5), (10, 6)))
    past = {t: (PASS if t < 9 else FAIL) for t in range(1, 10)}  # 2..8 pass, f-1 fails
    assert selector.select(10, cond_frames=[0], past=past).mem_frames == (0, 4, 5, 6, 7, 8, 9)
    # f-1 missing: its slot stays reserved (t_pos 6 unused)
    del past[9]
    sel = selector.select(10, cond_frames=[0], past=past)
    assert sel.mem_frames == (0, 4, 5, 6, 7, 8) and sel.mem_tpos == (0, 1, 2, 3, 4, 5)


def test_samurai_reverse() -> None:
    past = {t: PASS for t in range(1, 39)}
    # reference: the scan ignores the direction (frames below f, f-1 always)
    sel = SamuraiGatedSelector().select(20, cond_frames=[39], past=past, reverse=True)
    assert sel.mem_frames == (39, 14, 15, 16, 17, 18, 19)
    assert sel.ptr_frames == (39, *range(21, 36))
    sel = SamuraiGatedSelector(mirror_reverse=True).select(
        20, cond_frames=[39], past=past, reverse=True
    )
    assert sel.mem_frames == (39, 26, 25, 24, 23, 22, 21)
    assert sel.mem_tpos == (0, 1, 2, 3, 4, 5, 6)


def test_samurai_unselected_cond_frame_passes_gate() -> None:
    layout = MemoryLayout(max_cond_frames_in_attn=2)
    past = {t: FAIL for t in range(1, 20) if t not in (5, 12)}
    sel = SamuraiGatedSelector(layout=layout).select(20, cond_frames=[0, 5, 12, 30], past=past)
    assert sel.cond_frames == (12, 30)
    assert 5 in sel.candidates_evaluated and 12 not in sel.candidates_evaluated
    assert sel.memory[2:] == (MemorySlot(5, 5), MemorySlot(19, 6))


def test_best_iou_selection() -> None:
    ious = {2: 0.95, 3: 0.6, 4: 0.99, 5: 0.7, 6: 0.2, 7: 0.8, 8: 0.99, 9: 0.55, 10: 0.7, 11: 0.3}
    past = {t: GateScores(iou, 1.0) for t, iou in ious.items()}
    sel = BestIouMemorySelector().select(12, cond_frames=[0], past=past)
    # f-1 = 11 always; then the 5 best passing frames (10 beats 5 on the 0.7 tie: more recent)
    assert sel.mem_frames == (0, 2, 4, 7, 8, 10, 11)
    assert sel.mem_tpos == (0, 1, 2, 3, 4, 5, 6)
    recent = SamuraiGatedSelector().select(12, cond_frames=[0], past=past)
    assert recent.mem_frames == (0, 5, 7, 8, 9, 10, 11)
    selector = build_memory_selector(
        VARIANTS["sam2.1_hiera_t"], TrackerConfig(), SamuraiConfig(memory_selection="best_iou")
    )
    assert isinstance(selector, BestIouMemorySelector)


def test_layout_from_configs_and_image_mode() -> None:
    layout = MemoryLayout.from_configs(VARIANTS["sam2_hiera_l"], TrackerConfig())
    assert layout == MemoryLayout(use_signed_tpos_enc_to_obj_ptrs=False)
    selector = Sam2StrideSelector(layout=MemoryLayout(num_maskmem=0))
    sel = selector.select(3, cond_frames=[0], past={1: PASS, 2: PASS})
    assert sel.memory == () and sel.pointers == ()


# --- bounded memory: pruning with retained_frames never changes a selection ------------------

SELECTORS: dict[str, Callable[[], MemorySelector]] = {
    "stride1": Sam2StrideSelector,
    "stride3": lambda: Sam2StrideSelector(stride=3),
    "samurai": SamuraiGatedSelector,
    "best_iou": BestIouMemorySelector,
    "samurai_maxcond2": lambda: SamuraiGatedSelector(
        layout=MemoryLayout(max_cond_frames_in_attn=2)
    ),
}
COND = {"samurai_maxcond2": (0, 23, 41)}


def random_scores(rng: random.Random, pass_rate: float) -> GateScores:
    if rng.random() < pass_rate:
        return GateScores(rng.choice([0.55, 0.6, 0.7, 0.8, 0.9]), 1.0, rng.choice([None, 0.5]))
    kind = rng.randrange(3)
    return GateScores(
        0.5 if kind == 0 else 0.8, 0.0 if kind == 1 else 1.0, 0.0 if kind == 2 else None
    )


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_pruning_is_lossless(name: str) -> None:
    selector = SELECTORS[name]()
    cond = COND.get(name, (0,))
    for seed in range(30):
        rng = random.Random(seed)
        num_frames = rng.choice([12, 40, 70, None])
        length = num_frames or 70
        pass_rate = rng.choice([0.05, 0.3, 0.7, 1.0])
        full: dict[int, GateScores] = {}
        pruned: dict[int, GateScores] = {}
        alive_maskmem: set[int] = set()
        alive_ptr: set[int] = set()
        for f in range(1, length):
            if f in cond:
                continue
            want = selector.select(f, cond_frames=cond, past=full, num_frames=num_frames)
            got = selector.select(f, cond_frames=cond, past=pruned, num_frames=num_frames)
            assert (got.memory, got.pointers) == (want.memory, want.pointers), (seed, f)
            # stricter: maskmem / obj_ptr each come only from frames never declared forgettable
            assert {t for t in want.mem_frames if t in full} <= alive_maskmem, (seed, f)
            assert {t for t in want.ptr_frames if t in full} <= alive_ptr, (seed, f)
            if rng.random() < 0.05:  # a frame that was not tracked
                continue
            full[f] = pruned[f] = random_scores(rng, pass_rate)
            kept = selector.retained_frames(f, cond_frames=cond, past=pruned, num_frames=num_frames)
            assert kept == selector.retained_frames(
                f, cond_frames=cond, past=full, num_frames=num_frames
            )
            assert kept.frames <= pruned.keys() and f in kept.maskmem
            alive_maskmem = (alive_maskmem | {f}) & kept.maskmem
            alive_ptr = (alive_ptr | {f}) & kept.obj_ptr
            pruned = {t: s for t, s in pruned.items() if not kept.can_forget(t)}
            max_entries, max_maskmem = (30, 16) if name == "best_iou" else (20, 6)
            assert len(pruned) <= max_entries and len(kept.maskmem) <= max_maskmem


def test_retention_bound_samurai() -> None:
    # frames n-14..n for the pointers, plus n and the 5 most recent passing frames in [2, n-1]
    selector = SamuraiGatedSelector()
    past = {t: (PASS if t in (1, 3, 4, 10, 11, 20, 22) else FAIL) for t in range(1, 41)}
    kept = selector.retained_frames(40, cond_frames=[0], past=past, num_frames=100)
    assert kept.obj_ptr == frozenset(range(26, 41))
    assert kept.maskmem == frozenset({4, 10, 11, 20, 22, 40})
    assert kept.can_forget(3) and not kept.can_forget(4) and not kept.can_forget(26)
    assert kept.frames == kept.maskmem | kept.obj_ptr and kept.scores == frozenset()
    # entries after last_frame (an earlier pass) are kept
    assert 45 in selector.retained_frames(40, cond_frames=[0], past={45: FAIL}).frames
    # stride: f-1 .. f-6 and the pointer window
    kept = Sam2StrideSelector().retained_frames(40, cond_frames=[0], past=past)
    assert kept.maskmem == frozenset(range(35, 41)) and kept.obj_ptr == frozenset(range(26, 41))
    kept = Sam2StrideSelector(stride=4).retained_frames(40, cond_frames=[0], past=past)
    assert kept.maskmem == frozenset({20, 24, 28, 32, 36, 40})


def test_best_iou_retention_is_tight() -> None:
    """Each frame kept by BestIouMemorySelector is attended by some future (constructed witness)."""
    selector = BestIouMemorySelector()
    for seed in range(10):
        rng = random.Random(100 + seed)
        past = {t: random_scores(rng, 0.6) for t in range(1, 30)}
        kept = selector.retained_frames(29, cond_frames=[0], past=past)
        used: set[int] = set()
        for num_low in range(16):  # num_low weak passes, then a failing frame
            history = dict(past)
            for k in range(num_low):
                history[30 + k] = GateScores(0.5 + 1e-6, 1.0)
            for f in (30 + num_low, 31 + num_low):
                used |= set(selector.select(f, cond_frames=[0], past=history).mem_frames)
                history[f] = FAIL
        assert kept.maskmem == {t for t in used if t in past}, seed
        assert kept.maskmem <= kept.scores | {29}
