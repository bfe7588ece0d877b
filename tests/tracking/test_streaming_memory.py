"""Memory stays flat in video length: 2,000 streamed frames use what 200 frames use."""

from __future__ import annotations

import numpy as np
import pytest

from reference import synth_state_dict
from samurai import Tracker, build_sam2_video_predictor


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def moving_square(i: int, background: np.ndarray) -> np.ndarray:
    frame = background.copy()
    x = 100 + int(60 * np.sin(i / 15))
    frame[60:120, x : x + 60] = (255, 40, 40)
    return frame


@pytest.mark.slow
@pytest.mark.xdist_group("streaming_memory")
def test_rss_growth_from_200_to_2000_frames_under_5_percent() -> None:
    predictor = build_sam2_video_predictor(
        "sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=128
    )
    background = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    tracker = Tracker(predictor)
    tracker.add_object(1, box=[100, 60, 160, 120])
    tracker.add_object(2, box=[10, 10, 60, 50])
    at_200, peak = 0.0, 0.0
    for i in range(2000):
        result = tracker.step(moving_square(i, background))
        if i == 199:
            at_200 = rss_mib()
        elif i > 199 and i % 50 == 0:
            peak = max(peak, rss_mib())
    peak = max(peak, rss_mib())
    assert result.frame_idx == 1999
    growth = (peak - at_200) / at_200
    assert growth < 0.05, f"RSS grew {100 * growth:.1f}% ({at_200:.0f} -> {peak:.0f} MiB)"
    state = tracker.state
    assert state is not None
    assert all(len(t.memory) <= 20 for t in state.tracks.values())
    assert len(state.features) <= 2
