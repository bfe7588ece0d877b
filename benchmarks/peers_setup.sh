#!/usr/bin/env bash
# Set up the peers of benchmarks/peers.py OUTSIDE the project (default: ../peers), each in its
# own virtual environment with the same torch as ours (2.13.0, CPU):
#
#   official/   venv for the official SAMURAI code: torch, numpy, pillow, scipy, hydra-core,
#               iopath, tqdm, loguru (its sam2/setup.py requirements minus torchvision, which
#               the video predictor does not import; the golden data were made without it)
#   samurai/    github.com/yangchris11/samurai at commit $SAMURAI_COMMIT (the commit of the
#               golden reference data, ../shared/reference/README.md), cloned with git
#   hf/         venv with transformers==$TRANSFORMERS_VERSION (Sam2VideoModel first appeared
#               in transformers 4.56.0; the newest release is used by default)
#   hf-convert/ transformers' own conversion script convert_sam2_video_to_hf.py (it is in the
#               transformers repository, not in the wheel), at tag v$TRANSFORMERS_VERSION
#   weights/    the synthetic seed-0 checkpoints (../shared/reference/synth_weights.py) in the
#               official {"model": state_dict} layout, and their HF conversions
#
#   benchmarks/peers_setup.sh            # idempotent; re-run to complete a partial setup
#
# Environment: SAMURAI_PEERS (target folder), PYTHON (interpreter for the venvs, >= 3.10),
# SAMURAI_GIT (clone source: URL or a local clone/mirror of the official repository),
# HF_CONVERT_SCRIPT (a local copy of convert_sam2_video_to_hf.py instead of downloading it),
# TRANSFORMERS_VERSION, SAMURAI_REFERENCE (golden reference folder), VARIANTS ("t b+").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${SAMURAI_PEERS:-$ROOT/../peers}
PYTHON=${PYTHON:-python3}
REFERENCE=${SAMURAI_REFERENCE:-$ROOT/../shared/reference}
SAMURAI_COMMIT=76ba195984892b0d1e3db5d9c9f90bb62175680a
SAMURAI_GIT=${SAMURAI_GIT:-https://github.com/yangchris11/samurai.git}
TRANSFORMERS_VERSION=${TRANSFORMERS_VERSION:-5.25.0}
HF_CONVERT_URL=https://raw.githubusercontent.com/huggingface/transformers/v$TRANSFORMERS_VERSION/src/transformers/models/sam2_video/convert_sam2_video_to_hf.py
VARIANTS=${VARIANTS:-"t b+"}
OURS_PY=$ROOT/.venv/bin/python
TORCH="torch==2.13.0"

mkdir -p "$PEERS/weights" "$PEERS/hf-convert"
PEERS=$(cd "$PEERS" && pwd)
echo "$TORCH" > "$PEERS/constraints.txt"
say() { echo "peers_setup: $*"; }

make_venv() {  # name, packages...
  local dir=$PEERS/$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    say "creating venv $dir"
    "$PYTHON" -m venv "$dir"
  fi
  # torch first, alone: any other request for torch could pull a CUDA build
  "$dir/bin/pip" install -q "$TORCH"
  "$dir/bin/pip" install -q -c "$PEERS/constraints.txt" "$@"
  "$dir/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
}

# (a) official SAMURAI code at the pinned commit, and its venv
# (only its model code, sam2/sam2/, is checked out: the repository also holds videos)
if [ ! -d "$PEERS/samurai/.git" ]; then
  say "cloning $SAMURAI_GIT"
  git clone -q --no-checkout "$SAMURAI_GIT" "$PEERS/samurai"
fi
git -C "$PEERS/samurai" sparse-checkout set sam2/sam2
git -C "$PEERS/samurai" -c advice.detachedHead=false checkout -q "$SAMURAI_COMMIT"
test "$(git -C "$PEERS/samurai" rev-parse HEAD)" = "$SAMURAI_COMMIT"
make_venv official numpy pillow scipy hydra-core iopath tqdm loguru

# (b) HF transformers with Sam2VideoModel, and HF's conversion script
make_venv hf "transformers==$TRANSFORMERS_VERSION" pillow numpy safetensors
CONVERT=$PEERS/hf-convert/convert_sam2_video_to_hf.py
if [ ! -s "$CONVERT" ]; then
  if [ -n "${HF_CONVERT_SCRIPT:-}" ]; then
    cp "$HF_CONVERT_SCRIPT" "$CONVERT"
  else
    say "downloading $HF_CONVERT_URL"
    curl -fsSL -o "$CONVERT" "$HF_CONVERT_URL"
  fi
fi

# (c) synthetic checkpoints (official layout) and their HF conversions
for v in $VARIANTS; do
  name=sam2.1_hiera_$v
  ckpt=$PEERS/weights/$name.pt
  if [ ! -s "$ckpt" ]; then
    say "synthetic weights $ckpt"
    "$OURS_PY" "$REFERENCE/synth_weights.py" "$REFERENCE/manifests/$name.json" "$ckpt" --seed 0
  fi
  if [ ! -s "$PEERS/weights/hf-$name/config.json" ]; then
    "$PEERS/hf/bin/python" "$ROOT/benchmarks/peers_lib/convert_hf.py" --script "$CONVERT" \
      --variant "$v" --ckpt "$ckpt" --out "$PEERS/weights/hf-$name"
  fi
done

{
  echo "samurai commit: $(git -C "$PEERS/samurai" rev-parse HEAD)"
  echo "official venv: $("$PEERS/official/bin/python" -c 'import torch, hydra, numpy; print("torch", torch.__version__, "hydra", hydra.__version__, "numpy", numpy.__version__)')"
  echo "hf venv: $("$PEERS/hf/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
  echo "hf conversion script sha256: $(sha256sum "$CONVERT" | cut -d' ' -f1)"
} | tee "$PEERS/VERSIONS.txt"
say "done: $PEERS"
