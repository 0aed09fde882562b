#!/usr/bin/env bash
# An arm64 device on this machine, from Debian's own packages: a Debian bookworm arm64 root
# filesystem (debootstrap) in .cache/arm64/rootfs, run under qemu-user-static through binfmt_misc.
# It holds what a Raspberry Pi OS device has for the agent: python3 with venv and pip, and an
# OpenSSH server the deploy tests start on a loopback port (citygrid.devtools.arm64).
# Not part of `setup.sh runtime`: the demo never needs it. Built once (about 3 minutes), then cached;
# rebuilt only when the root filesystem is missing or incomplete.
source "$(dirname "$0")/common.sh"
ROOTFS="$CACHE/arm64/rootfs"
BINFMT=/proc/sys/fs/binfmt_misc
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"

# Its own apt call (not need_apt): setup.sh runs this step beside others that may hold apt's lock.
missing=()
for pair in debootstrap:debootstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

# binfmt_misc lets the kernel hand aarch64 ELF files to qemu-aarch64-static; without it nothing
# arm64 can run here, so say exactly what the kernel refused.
if ! grep -qw binfmt_misc /proc/filesystems; then
  log "this kernel has no binfmt_misc (not in /proc/filesystems): arm64 programs cannot run here"
  exit 1
fi
if [ ! -e "$BINFMT/register" ]; then
  if ! err=$($sudo mount -t binfmt_misc binfmt_misc "$BINFMT" 2>&1); then
    log "mount -t binfmt_misc binfmt_misc $BINFMT was refused: $err"
    exit 1
  fi
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  $sudo update-binfmts --enable qemu-aarch64 || { log "update-binfmts --enable qemu-aarch64 failed"; exit 1; }
fi
# F (fix binary): the kernel opens qemu once, so it works inside the chroot, where it is not installed.
grep -q '^flags: .*F' "$BINFMT/qemu-aarch64" || log "warning: qemu-aarch64 is registered without flag F"

if [ ! -f "$ROOTFS/.citygrid-complete" ]; then
  # The host's own Debian mirror (deb822 or one-line sources); none found: debootstrap's own default.
  mirror=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)
  log "debootstrap bookworm arm64 from ${mirror:-the default mirror of debootstrap} into $ROOTFS (about 3 minutes)"
  $sudo rm -rf "$ROOTFS"
  mkdir -p "$(dirname "$ROOTFS")"
  $sudo debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,openssh-server,openssh-sftp-server,procps \
    bookworm "$ROOTFS" ${mirror:+"$mirror"} >"$CACHE/arm64/debootstrap.log" 2>&1 \
    || { log "debootstrap failed; see $CACHE/arm64/debootstrap.log"; tail -5 "$CACHE/arm64/debootstrap.log" >&2; exit 1; }
  touch "$ROOTFS/.citygrid-complete"
fi
# The host's CA bundle, so pip inside reaches the package index (also through an inspecting proxy).
$sudo cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
$sudo cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
$sudo mkdir -p "$ROOTFS/run/sshd"
log "arm64 device: $($sudo chroot "$ROOTFS" /usr/bin/python3 -c 'import platform; print(platform.machine(), platform.python_version())') in $ROOTFS"
