#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, idempotently:
#   system packages (mosquitto for the daemon's MQTT tests, chromium + chromedriver for the
#   browser tests), npm packages (package-lock.json: playwright-core, onnxruntime-web),
#   and the Python venv .venv with edgeport[dev].
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
