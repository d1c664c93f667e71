#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, idempotently:
#   system packages (mosquitto for the daemon's MQTT tests, chromium + chromedriver for the
#   browser tests), npm packages (package-lock.json: playwright-core, onnxruntime-web),
#   the Python venv .venv with edgeport[dev], and the emulated Raspberry Pi (scripts/pi-rootfs.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -f package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
echo "setup: pip install -e '.[dev]'"
.venv/bin/pip install -q -e '.[dev]'

# rknn-toolkit2 (the rknn target's converter and x86 simulator) in its own venv, ~/.cache/edgeport/rknn-venv:
# its numpy/onnx/protobuf pins cannot live in .venv. About a minute once; EDGEPORT_SKIP_RKNN=1 leaves it out
# (the rknn tests then skip, and fail under CI=true).
if [ "${EDGEPORT_SKIP_RKNN:-}" = 1 ]; then
  echo "setup: EDGEPORT_SKIP_RKNN=1: no rknn-toolkit2 venv"
else
  echo "setup: rknn-toolkit2's venv (scripts/rknn-venv.sh)"
  scripts/rknn-venv.sh || echo "setup: no rknn-toolkit2 venv (see above): the rknn tests skip, or fail under CI" >&2
fi

# The emulated Raspberry Pi of the tests marked arm64: an arm64 Debian 12 rootfs (debootstrap + qemu-user-static,
# about 5 minutes once, cached in ~/.cache/edgeport/pi-rootfs) with this tree's edgeport[tflite,onnx,ncnn,daemon]
# installed from wheels only. Needs root or passwordless sudo; EDGEPORT_SKIP_PI=1 leaves it out. Without it the
# arm64 tests skip, and fail under CI=true.
if [ "${EDGEPORT_SKIP_PI:-}" = 1 ]; then
  echo "setup: EDGEPORT_SKIP_PI=1: no emulated Raspberry Pi"
else
  echo "setup: the emulated Raspberry Pi (scripts/pi-rootfs.sh install)"
  scripts/pi-rootfs.sh install || echo "setup: no emulated Raspberry Pi (see above): the arm64 tests skip, or fail under CI" >&2
fi
