#!/usr/bin/env bash
# An aarch64 board on this x86 machine: a Debian bookworm arm64 userland run by qemu-user through
# binfmt_misc, holding only the device side's aarch64 wheels, reached over ssh on 127.0.0.1.
#
#   scripts/aarch64_board.sh build          build (or reuse) the cached board; prints its root
#   scripts/aarch64_board.sh sshd PORT DIR  start a loopback sshd whose sessions run inside the board
#                                           (DIR: keys and config; prints `ssh://root@127.0.0.1:PORT KEY`)
#   scripts/aarch64_board.sh check          exit 0 if the board can run here, else print why and exit 77
#
# Emulated: the board's numerics are the ARM kernels' own (qemu executes the ARM instructions), its
# timings are not a Pi's. The ssh sessions carry QEMU_CPU=cortex-a76 (the Pi 5's core); the board's
# /etc/mvit-deploy-board records that it is emulated, and the device side reports it.
#
# Cached under $MVIT_BOARD_DIR (default /var/cache/mvit-deploy/aarch64-board), keyed by the wheel
# pins below: a fresh clone reuses it. ~8 min and 320 MB the first time. Needs root.
set -euo pipefail

BOARD_DIR=${MVIT_BOARD_DIR:-/var/cache/mvit-deploy/aarch64-board}
ROOT=$BOARD_DIR/root
PY_VERSION=3.11
# The device side's runtimes, as requirements.lock pins them (the host's own versions).
WHEELS=(numpy==2.4.6 onnxruntime==1.31.1 ai-edge-litert==2.3.0)
# `pip install mvit-deploy[device]` on the board also takes the base install's packages.
BASE_WHEELS=(click==8.5.1 pillow==13.0.0 rich==15.0.0)
KEY=$(printf '%s\n' "${WHEELS[@]}" "${BASE_WHEELS[@]}" bookworm v2 | sha256sum | cut -c1-12)
STAMP=$BOARD_DIR/.built-$KEY

die() { echo "aarch64 board: $*" >&2; exit "${2:-1}"; }

check() {
  [ "$(uname -m)" = x86_64 ] || die "this builds an emulated board on x86_64 hosts; on an ARM host run the device side natively" 77
  [ "$(id -u)" = 0 ] || die "needs root (binfmt_misc, debootstrap, chroot)" 77
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
      || die "binfmt_misc cannot be mounted here (a container without the privilege?)" 77
  fi
  if [ ! -x /usr/bin/qemu-aarch64-static ] || ! command -v update-binfmts >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null \
      || die "cannot install qemu-user-static, binfmt-support, debootstrap" 77
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "update-binfmts cannot register qemu-aarch64" 77
  # the interpreter must be opened at registration (flag F): sessions chroot into the board
  grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 is registered without the F flag; reinstall qemu-user-static" 77
}

# The Pi 5's core as its cpuinfo library expects it: onnxruntime and LiteRT parse these at start
# and crash under qemu-user when they describe the host's x86 CPU (or are missing).
fake_cpu() {
  mkdir -p "$ROOT/proc" "$ROOT/sys/devices/system/cpu"
  : >"$ROOT/proc/cpuinfo"
  for i in 0 1 2 3; do
    cat >>"$ROOT/proc/cpuinfo" <<EOF
processor	: $i
BogoMIPS	: 108.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x4
CPU part	: 0xd0b
CPU revision	: 1

EOF
  done
  for f in possible present online; do echo 0-3 >"$ROOT/sys/devices/system/cpu/$f"; done
  for i in 0 1 2 3; do mkdir -p "$ROOT/sys/devices/system/cpu/cpu$i"; done
}

build() {
  check
  if [ -e "$STAMP" ]; then echo "$ROOT"; return; fi
  local mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || die "no Debian mirror found in apt's sources"
  # never delete through a bind mount into the host
  if mountpoint -q "$ROOT/proc" 2>/dev/null || mountpoint -q "$ROOT/dev" 2>/dev/null || mountpoint -q "$ROOT/tmp" 2>/dev/null; then
    die "$ROOT has mounts inside; unmount them first"
  fi
  rm -rf --one-file-system "$BOARD_DIR"
  mkdir -p "$BOARD_DIR"
  echo "aarch64 board: debootstrap bookworm arm64 from $mirror (~8 min)" >&2
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$ROOT" "$mirror" >"$BOARD_DIR/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $BOARD_DIR/debootstrap.log"
  fake_cpu
  echo "aarch64 board: downloading aarch64 wheels" >&2
  mkdir -p "$ROOT/wheels"
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 \
    --platform manylinux2014_aarch64 --platform any --python-version "$PY_VERSION" --implementation cp \
    -d "$ROOT/wheels" "${WHEELS[@]}" "${BASE_WHEELS[@]}" >"$BOARD_DIR/wheels.log" 2>&1 \
    || die "pip download of the aarch64 wheels failed; see $BOARD_DIR/wheels.log"
  # Only the runtimes in the board's system Python: the clean interpreter the device code must run in.
  # (pip inside the root cannot verify this network's TLS, so it installs from the host's download.)
  QEMU_CPU=cortex-a76 chroot "$ROOT" /usr/bin/python3 -m pip install -q --no-index --find-links /wheels \
    --break-system-packages "${WHEELS[@]}" >"$BOARD_DIR/install.log" 2>&1 \
    || die "installing the wheels on the board failed; see $BOARD_DIR/install.log"
  printf 'emulated: qemu-user %s, cpu cortex-a76 (Raspberry Pi 5 core); timings are not a device latency\n' \
    "$(/usr/bin/qemu-aarch64-static --version | head -1 | awk '{print $3}')" >"$ROOT/etc/mvit-deploy-board"
  QEMU_CPU=cortex-a76 chroot "$ROOT" /usr/bin/python3 -c 'import numpy, onnxruntime, ai_edge_litert.interpreter' \
    || die "the runtimes do not import on the board"
  touch "$STAMP"
  echo "$ROOT"
}

# A host sshd (x86, fast handshakes) whose sessions chroot into the board: every command a session
# runs is the board's own aarch64 binary, run by qemu-user; scp uses the in-process sftp server.
sshd_start() {
  local port=$1 dir=$2
  [ -e "$STAMP" ] || die "the board is not built; run $0 build"
  mkdir -p "$dir" /run/sshd
  [ -e "$dir/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host"
  [ -e "$dir/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client"
  cp "$dir/client.pub" "$dir/authorized_keys"
  cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PidFile $dir/sshd.pid
ChrootDirectory $ROOT
SetEnv QEMU_CPU=cortex-a76 HOME=/root PATH=/usr/local/bin:/usr/bin:/bin
Subsystem sftp internal-sftp
EOF
  /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" || die "sshd did not start; see $dir/sshd.log"
  echo "ssh://root@127.0.0.1:$port $dir/client"
}

case "${1:-}" in
  build) build ;;
  check) check; echo ok ;;
  sshd) [ $# -eq 3 ] || die "usage: $0 sshd PORT DIR" 2; sshd_start "$2" "$3" ;;
  *) die "usage: $0 build | check | sshd PORT DIR" 2 ;;
esac
