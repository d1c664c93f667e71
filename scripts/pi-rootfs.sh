#!/usr/bin/env bash
# An emulated Raspberry Pi: a Debian 12 (bookworm) arm64 root filesystem, the software of Raspberry Pi OS,
# run through qemu-user-static. Builds and caches it, installs edgeport from this working tree with
# binary wheels only, and runs commands inside. Needs root (re-runs itself with sudo -n when not root).
#
#   scripts/pi-rootfs.sh build                 debootstrap the rootfs and make /venv (cached; ~4-6 min once)
#   scripts/pi-rootfs.sh install [EXTRAS]      build, then pip install this tree's edgeport[EXTRAS] into /venv
#                                              (default tflite,onnx,ncnn,daemon; skipped if unchanged)
#   scripts/pi-rootfs.sh run [-v HOST[:GUEST][:rw]]... [-w DIR] -- CMD...
#                                              install, then run CMD inside (/venv/bin first on PATH); this tree
#                                              is mounted read-only at /project; -v mounts more (read-only unless
#                                              :rw; GUEST defaults to the same path), so outputs written to an
#                                              :rw mount are on the host when CMD ends; -w sets the working folder
#   scripts/pi-rootfs.sh size                  install size of edgeport[tflite], [onnx], [tflite,daemon] on the Pi
#   scripts/pi-rootfs.sh status | path | clean
#
# Environment: EDGEPORT_PI_ROOTFS (default ~/.cache/edgeport/pi-rootfs), EDGEPORT_PI_MIRROR (default
# http://deb.debian.org/debian). Timings inside are emulated (qemu): never read them as the Pi's speed.
set -euo pipefail

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${EDGEPORT_PI_ROOTFS:-${HOME:-/root}/.cache/edgeport/pi-rootfs}
MIRROR=${EDGEPORT_PI_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
RECIPE="edgeport-pi-rootfs 1 $SUITE arm64 minbase python3 python3-venv"  # change it to force a rebuild
BUILT_STAMP=.edgeport-rootfs      # written last by `build`: its absence means an incomplete rootfs
INSTALLED_STAMP=.edgeport-installed
DEFAULT_EXTRAS=tflite,onnx,ncnn,daemon

say() { echo "pi-rootfs: $*" >&2; }
die() { echo "pi-rootfs: error: $*" >&2; exit 1; }

as_root() {  # re-run this script as root (sudo -n) when it is not: debootstrap, mount and chroot need it
  [ "$(id -u)" = 0 ] && return 0
  sudo -n true 2>/dev/null || die "needs root for debootstrap, mount and chroot: run it as root or with passwordless sudo"
  exec sudo -n EDGEPORT_PI_ROOTFS="$ROOT" EDGEPORT_PI_MIRROR="$MIRROR" CI="${CI:-}" bash "${BASH_SOURCE[0]}" "$@"
}

host_tools() {  # debootstrap, qemu-user-static and binfmt support on the host; aarch64 binaries runnable
  local need=()
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null 2>&1 || [ -x /usr/sbin/update-binfmts ] || need+=(binfmt-support)
  if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "install ${need[*]} (Debian/Ubuntu package names) first"
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered with binfmt_misc \
(try: update-binfmts --enable qemu-aarch64)"
}

is_built() { [ -f "$ROOT/$BUILT_STAMP" ] && [ "$(cat "$ROOT/$BUILT_STAMP")" = "$RECIPE" ]; }

remove_tree() {  # never crosses into a mount (a /proc or /dev left behind by a killed build)
  local dir=$1
  [ -e "$dir" ] || return 0
  if grep -q " $(realpath "$dir")/" /proc/mounts; then
    awk -v d="$(realpath "$dir")/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l || true
  fi
  rm -rf --one-file-system "$dir"
}

pip_conf() {  # the host's pip settings that work inside: https indexes, constraints, CA bundle, timeout
  local target=$1 key value pip_cmd cert="" constraint="" index="" extra="" timeout=""
  pip_cmd=$(command -v pip3 || command -v pip || true)
  if [ -n "$pip_cmd" ]; then
    while IFS= read -r line; do
      key=${line%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
      case "${key##*.}" in
        cert) cert=$value ;;
        constraint) constraint=$value ;;
        index-url) index=$value ;;
        extra-index-url) extra="$extra $value" ;;
        default-timeout|timeout) timeout=$value ;;
      esac
    done < <("$pip_cmd" config list 2>/dev/null || true)
  fi
  cert=${cert:-${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}}
  {
    echo "[global]"
    echo "disable-pip-version-check = true"
    echo "default-timeout = ${timeout:-120}"
    if [ -n "$cert" ] && [ -f "$cert" ]; then
      cp "$cert" "$target/etc/ssl/certs/edgeport-host-ca.pem"
      echo "cert = /etc/ssl/certs/edgeport-host-ca.pem"
    fi
    if [ -n "$constraint" ] && [ -f "$constraint" ]; then
      cp "$constraint" "$target/etc/pip-constraints.txt"
      echo "constraint = /etc/pip-constraints.txt"
    fi
    case "$index" in http://*|https://*) echo "index-url = $index" ;; esac
    local kept=""  # file:// indexes and find-links folders of the host do not exist in the rootfs
    for url in $extra; do case "$url" in http://*|https://*) kept="$kept $url" ;; esac; done
    [ -z "$kept" ] || echo "extra-index-url =$kept"
  } > "$target/etc/pip.conf"
}

build() {
  host_tools
  is_built && return 0
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$ROOT.lock"; flock 9
  is_built && return 0
  [ ! -e "$ROOT" ] || say "removing the incomplete rootfs $ROOT"
  remove_tree "$ROOT"
  say "debootstrap $SUITE arm64 into $ROOT (emulated: several minutes)"
  # its own mount namespace: what debootstrap mounts inside dies with it, even when it is killed
  unshare --mount --propagation private debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOT" "$MIRROR" \
    > "$ROOT.debootstrap.log" 2>&1 || { tail -20 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  pip_conf "$ROOT"
  say "creating /venv"
  inside "" python3 -m venv /venv
  echo "$RECIPE" > "$ROOT/$BUILT_STAMP"
  say "rootfs ready: $ROOT"
}

source_tar() {  # what goes into the wheel, byte-identical for identical content (its hash decides reinstalls)
  (cd "$PROJECT" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - pyproject.toml README.md edgeport \
    $(ls LICENSE* 2>/dev/null || true))
}

install() {
  local extras=${1:-$DEFAULT_EXTRAS} digest
  build
  digest="$(source_tar | sha256sum | cut -c1-64) $extras"
  if [ -f "$ROOT/$INSTALLED_STAMP" ] && [ "$(cat "$ROOT/$INSTALLED_STAMP")" = "$digest" ]; then
    return 0
  fi
  exec 9>"$ROOT.lock"; flock 9
  if [ -f "$ROOT/$INSTALLED_STAMP" ] && [ "$(cat "$ROOT/$INSTALLED_STAMP")" = "$digest" ]; then
    return 0  # installed by another run while this one waited for the lock
  fi
  say "installing edgeport[$extras] from $PROJECT (binary wheels only)"
  rm -rf "$ROOT/tmp/edgeport-src" "$ROOT/tmp/edgeport-wheel" "$ROOT/$INSTALLED_STAMP"
  mkdir -p "$ROOT/tmp/edgeport-src"
  source_tar | tar -xf - -C "$ROOT/tmp/edgeport-src"
  # edgeport itself is pure Python: built into a wheel here; every dependency must come as a wheel
  inside "" /venv/bin/pip install -q -U --only-binary=:all: 'setuptools>=77' wheel
  inside "" /venv/bin/pip wheel -q --no-deps --no-build-isolation -w /tmp/edgeport-wheel /tmp/edgeport-src
  local wheel
  wheel=$(cd "$ROOT/tmp/edgeport-wheel" && ls edgeport-*.whl)
  inside "" /venv/bin/pip install -q --only-binary=:all: --force-reinstall --no-deps "/tmp/edgeport-wheel/$wheel"
  inside "" /venv/bin/pip install -q --only-binary=:all: "/tmp/edgeport-wheel/$wheel[$extras]"
  rm -rf "$ROOT/tmp/edgeport-src"
  echo "$digest" > "$ROOT/$INSTALLED_STAMP"
  say "installed edgeport[$extras] in $ROOT/venv"
}

# inside WORKDIR CMD... [with MOUNTS array of HOST:GUEST:MODE]: chroot with /proc and /dev, never /sys
# (XNNPACK's cpuinfo would read the host's CPU and crash under qemu), this tree read-only at /project
MOUNTS=()
inside() {
  local workdir=${1:-/}; shift
  local setup="set -e; mount -t proc proc '$ROOT/proc'; mount --rbind /dev '$ROOT/dev'"
  mkdir -p "$ROOT/project"
  setup="$setup; mount --bind '$PROJECT' '$ROOT/project'; mount -o remount,bind,ro '$ROOT/project'"
  local spec host guest mode target
  for spec in ${MOUNTS[@]+"${MOUNTS[@]}"}; do
    IFS=: read -r host guest mode <<< "$spec"
    target=$(realpath -m "$ROOT/$guest")
    case "$target/" in "$(realpath "$ROOT")"/?*) ;; *) die "mount point $guest leaves the rootfs" ;; esac
    if [ -d "$host" ]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; touch "$target"; fi
    setup="$setup; mount --bind '$host' '$target'"
    [ "$mode" = rw ] || setup="$setup; mount -o remount,bind,ro '$target'"
  done
  local keep=()
  for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY TERM CI; do
    [ -z "${!name:-}" ] || keep+=("$name=${!name}")
  done
  unshare --mount --propagation private bash -c "$setup"'; exec chroot "$0" /usr/bin/env -i "$@"' \
    "$ROOT" ${keep[@]+"${keep[@]}"} HOME=/root LANG=C.UTF-8 PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}

run() {
  local workdir=/project
  while [ $# -gt 0 ]; do
    case "$1" in
      -v) shift; [ $# -gt 0 ] || die "-v needs HOST[:GUEST][:rw]"
          local host guest mode
          IFS=: read -r host guest mode <<< "$1"
          if [ "$guest" = rw ] || [ "$guest" = ro ]; then mode=$guest; guest=""; fi
          [ -e "$host" ] || die "-v $1: $host does not exist"
          host=$(realpath "$host"); guest=${guest:-$host}
          MOUNTS+=("$host:$guest:${mode:-ro}") ;;
      -w) shift; [ $# -gt 0 ] || die "-w needs a folder"; workdir=$1 ;;
      --) shift; break ;;
      *) die "run: unknown option $1 (usage: run [-v HOST[:GUEST][:rw]]... [-w DIR] -- CMD...)" ;;
    esac
    shift
  done
  [ $# -gt 0 ] || die "run: no command (usage: run [-v HOST[:GUEST][:rw]]... [-w DIR] -- CMD...)"
  install
  inside "$workdir" "$@"
}

size() {  # each extra set in a fresh venv; the empty venv's size is subtracted
  install
  local wheel extras empty total
  wheel=$(cd "$ROOT/tmp/edgeport-wheel" && ls edgeport-*.whl)
  inside "" sh -c 'rm -rf /tmp/size-venv && python3 -m venv /tmp/size-venv'
  empty=$(du -sb "$ROOT/tmp/size-venv" | cut -f1)
  printf '%-24s %10s %10s\n' "install" "venv MB" "added MB"
  for extras in tflite onnx tflite,daemon; do
    inside "" sh -c "rm -rf /tmp/size-venv && python3 -m venv /tmp/size-venv && \
      /tmp/size-venv/bin/pip install -q --only-binary=:all: '/tmp/edgeport-wheel/$wheel[$extras]'"
    total=$(du -sb "$ROOT/tmp/size-venv" | cut -f1)
    awk -v n="edgeport[$extras]" -v t="$total" -v e="$empty" 'BEGIN {printf "%-24s %10.1f %10.1f\n", n, t / 1e6, (t - e) / 1e6}'
  done
  rm -rf "$ROOT/tmp/size-venv"
}

main() {
  local command=${1:-}
  [ $# -gt 0 ] && shift
  case "$command" in
    build|install|run|size|clean) as_root "$command" "$@" ;;
  esac
  case "$command" in
    build) build ;;
    install) install "$@" ;;
    run) run "$@" ;;
    size) size ;;
    path) echo "$ROOT" ;;
    status) if is_built && [ -f "$ROOT/$INSTALLED_STAMP" ]; then echo "ready: $ROOT"
            elif is_built; then echo "built, edgeport not installed: $ROOT"; return 2
            else echo "absent or incomplete: $ROOT"; return 1; fi ;;
    clean) remove_tree "$ROOT"; rm -f "$ROOT.lock" "$ROOT.debootstrap.log" ;;
    *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$command" ] || return 2 ;;
  esac
}

main "$@"; exit $?  # one line: an edit of this file never reaches a run in progress
