#!/usr/bin/env bash
# GPU check and speed, for a machine with CUDA (run from the repository root):
#   1. CUDA results against the CPU golden decisions (SAMURAI-T and SAM 2.1-T bedroom traces),
#   2. frames per second for t / b+ / l in fp32, split bf16 (--dtype bfloat16), plain bf16
#      autocast and with torch.compile,
#   3. peak GPU memory for a long streamed video with offload_state_to_cpu.
# Needs ../shared/reference (golden data + synthetic weights) next to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

echo "== 1. CUDA vs golden decisions"
$PY - <<'PY'
import sys, torch
sys.path.insert(0, "tests")
from golden_trace import DECISION_KEYS, TRACES, make_predictor, run_trace
from reference import golden
for name in ("samurai_t_bedroom", "sam2_t_bedroom"):
  for dtype in (torch.float32, torch.bfloat16):
    predictor = make_predictor(TRACES[name])
    predictor.model.to("cuda").set_compute_dtype(dtype)
    with torch.inference_mode():
        trace = run_trace(TRACES[name], predictor)
    g = golden(name)
    for key in DECISION_KEYS:
        if key not in g.files or key not in trace:
            continue
        diff = [f for f, v in trace[key].items() if (v != g[key][f]).any()]
        print(f"{name} {dtype} {key}: {'identical' if not diff else 'differs on frames ' + str(diff)}")
PY

echo "== 2. frames per second (bedroom frames, 1 object)"
for model in sam2.1_hiera_t sam2.1_hiera_b+ sam2.1_hiera_l; do
  for dtype in float32 bfloat16 autocast-bfloat16; do
    $PY - "$model" "$dtype" <<'PY'
import sys, time, torch
from samurai.build import build_model
from samurai.tracking.predictor import VideoPredictor
from samurai.io.frames import ImageFolderSource
from samurai.config import SAMURAI_DEFAULTS
model_name, dtype = sys.argv[1], sys.argv[2]
frames = sorted(__import__("pathlib").Path("../shared/reference/frames/bedroom").glob("*.jpg"))
for compiled in (False, True):
    model = build_model(model_name, None, device="cuda")
    model.set_compute_dtype(torch.bfloat16 if dtype == "bfloat16" else torch.float32)
    if compiled:
        model.image_encoder = torch.compile(model.image_encoder)
    predictor = VideoPredictor(model, samurai=SAMURAI_DEFAULTS[model_name])
    state = predictor.init_video(ImageFolderSource(frames))
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "autocast-bfloat16"):
        predictor.add_prompt(state, frame_idx=0, obj_id=1, box=[300, 0, 520, 400])
        times, start = [], time.perf_counter()
        for r in predictor.propagate(state):
            torch.cuda.synchronize(); now = time.perf_counter(); times.append(now - start); start = now
    steady = times[10:]
    print(f"{model_name} {dtype} compile={compiled}: {len(steady) / sum(steady):.1f} FPS")
PY
  done
done

echo "== 3. peak GPU memory, 2,000 streamed frames, offload_state_to_cpu"
$PY - <<'PY'
import numpy as np, torch
from samurai.build import build_model
from samurai.config import RuntimeOptions
from samurai.tracking.predictor import VideoPredictor
from samurai.tracking.tracker import Tracker
model = build_model("sam2.1_hiera_t", None, device="cuda")
tracker = Tracker(VideoPredictor(model, runtime=RuntimeOptions(device="cuda", offload_state_to_cpu=True)))
tracker.add_object(1, box=[800, 400, 1120, 640])
bg = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
for i in range(2000):
    tracker.step(bg)
    if i in (199, 1999):
        print(f"after {i + 1} frames: peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
PY
