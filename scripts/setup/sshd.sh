#!/usr/bin/env bash
# OpenSSH server from Debian, for `citygrid edge deploy` tests: the test fixture starts its
# own sshd on a free 127.0.0.1 port with its own host key, so the distribution's service is
# left stopped.
source "$(dirname "$0")/common.sh"
if [ ! -x /usr/sbin/sshd ]; then
  log "apt-get install openssh-server"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet ssh 2>/dev/null; then
  systemctl stop ssh || true
fi
log "sshd $(/usr/sbin/sshd -V 2>&1 | head -1)"
