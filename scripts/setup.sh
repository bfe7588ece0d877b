#!/usr/bin/env bash
# Set up .venv for samurai: reuse an existing torch (e.g. a CUDA build) if one is importable,
# otherwise install torch==2.13.0 first; then install the package pinned to that torch.
# SAMURAI_EXTRAS=dev adds the test tools; PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup: $PY not found; install Python >= 3.10 or set PYTHON=/path/to/python3" >&2
    exit 1
  fi
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup: samurai needs Python >= 3.10, $PY is $("$PY" -V 2>&1); set PYTHON=..." >&2
    exit 1
  fi
  if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "setup: $PY has no venv module; install it (Debian / Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
fi
.venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > .venv/torch-constraint.txt
EXTRAS=${SAMURAI_EXTRAS:-}
.venv/bin/pip install -q --disable-pip-version-check -c .venv/torch-constraint.txt -e ".${EXTRAS:+[$EXTRAS]}"
