#!/usr/bin/env bash
# Make the isolated venv of the RKNN target (rknn-toolkit2: converter and x86 simulator), idempotently.
#   scripts/rknn-venv.sh [VENV]     default: $EDGEPORT_RKNN_VENV or ~/.cache/edgeport/rknn-venv
# rknn-toolkit2 2.5.0 pins numpy<=1.26.4, onnx<=1.18, protobuf<=4.25.4 and torch<=2.4, which cannot live beside
# edgeport's own packages, so it gets its own venv (pip and PyPI only). The toolkit is installed with --no-deps
# and its requirements one by one, leaving torch out: edgeport converts from ONNX, and its worker stands a
# placeholder in for the `import torch` the toolkit does at import time (edgeport/convert/rknn_worker.py).
set -euo pipefail
venv="${1:-${EDGEPORT_RKNN_VENV:-$HOME/.cache/edgeport/rknn-venv}}"
toolkit="rknn-toolkit2==2.5.0"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('rknn-toolkit2') != '2.5.0')" 2>/dev/null; then
  echo "rknn-venv: $venv already holds $toolkit"
  exit 0
fi
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "rknn-venv: $toolkit ships wheels for CPython 3.11 on x86_64 here; run with PYTHON=python3.11" >&2; exit 1; }
echo "rknn-venv: creating $venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check \
  "numpy>=1.23,<=1.26.4" "onnx>=1.16.1,<=1.18.0" "onnxruntime>=1.17.0,<1.20" "protobuf>=4.21.6,<=4.25.4" \
  "psutil>=5.9.0" "ruamel.yaml>=0.17.21" "scipy>=1.9.3" "tqdm>=4.64.1" "opencv-python-headless>=4.5.5.64,<4.11" \
  "fast-histogram>=0.11"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$toolkit"
echo "rknn-venv: ready: $venv ($toolkit, without torch)"
