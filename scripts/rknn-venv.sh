#!/usr/bin/env bash
# Make the isolated venv of the RKNN target (rknn-toolkit2: converter and x86 simulator), idempotently.
#   scripts/rknn-venv.sh [VENV]     default: $EDGEPORT_RKNN_VENV or ~/.cache/edgeport/rknn-venv
# rknn-toolkit2 2.5.0 pins numpy<=1.26.4, onnx<=1.18, protobuf<=4.25.4 and torch<=2.4, which cannot live beside
# edgeport's own packages, so it gets its own venv (pip only). The toolkit is installed with --no-deps and its
# requirements one by one. torch: PyPI's Linux torch is a multi-GB CUDA build, so a CPU build is installed when
# pip finds one (RKNN_TORCH, default torch==2.13.0+cpu); the toolkit computes a few graph rewrites with it (YOLO26's
# attention needs it). Without one, edgeport's worker stands a placeholder in for the toolkit's `import torch`
# and YOLOv8-style graphs still convert (edgeport/convert/rknn_worker.py).
set -euo pipefail
venv="${1:-${EDGEPORT_RKNN_VENV:-$HOME/.cache/edgeport/rknn-venv}}"
toolkit="rknn-toolkit2==2.5.0"
python="${PYTHON:-python3}"
marker="$venv/.edgeport-rknn-venv"
if [ -x "$venv/bin/python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$toolkit" ]; then
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
  "fast-histogram>=0.11" "setuptools>=77"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps "$toolkit"
torch_spec="${RKNN_TORCH:-torch==2.13.0+cpu}"
if "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary :all: "$torch_spec" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check typing-extensions sympy filelock networkx jinja2 fsspec
else
  echo "rknn-venv: no CPU torch ($torch_spec) found: the toolkit runs without torch (YOLO26's attention will not convert)" >&2
fi
echo "$toolkit" > "$marker"
echo "rknn-venv: ready: $venv ($toolkit)"
