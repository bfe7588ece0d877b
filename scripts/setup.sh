#!/usr/bin/env bash
# Set up .venv for samurai: reuse an existing torch (e.g. a CUDA build) if one is importable,
# otherwise install torch==2.13.0 first; then install the package pinned to that torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
fi
.venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > .venv/torch-constraint.txt
EXTRAS=${SAMURAI_EXTRAS:-}
.venv/bin/pip install -q --disable-pip-version-check -c .venv/torch-constraint.txt -e ".${EXTRAS:+[$EXTRAS]}"
