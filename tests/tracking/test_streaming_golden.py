"""The streaming Tracker reproduces the golden SAMURAI trace on the frames it is given."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from golden_trace import TRACES, make_predictor
from reference import REFERENCE_DIR, golden
from samurai import Tracker

pytestmark = [pytest.mark.golden, pytest.mark.slow]


@pytest.mark.xdist_group("streaming_golden")
def test_tracker_steps_match_samurai_t_bedroom() -> None:
    g = golden("samurai_t_bedroom")
    tracker = Tracker(make_predictor(TRACES["samurai_t_bedroom"]))
    tracker.add_object(0, box=[300, 0, 520, 400])
    paths = sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:6]
    for idx, path in enumerate(paths):
        result = tracker.step(np.asarray(Image.open(path).convert("RGB")))
        obj = result.objects[0]
        assert obj.details is not None
        assert obj.details.chosen_token == g["chosen_token"][idx], f"frame {idx}"
        np.testing.assert_allclose(obj.object_score_logit, g["object_score_logit"][idx], atol=1e-3)
        ours, ref = obj.low_res_logits[0, 0].numpy(), g["low_res_logits"][idx]
        absent = ref == -1024.0
        np.testing.assert_array_equal(ours[absent], ref[absent])
        np.testing.assert_allclose(ours[~absent], ref[~absent], atol=1e-3)
        mask = result.masks()[0].numpy()
        diff = int((mask != g["video_masks"][idx]).sum())
        assert diff <= 1e-4 * mask.size, f"frame {idx}: {diff} pixels differ"
