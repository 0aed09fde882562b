#!/usr/bin/env bash
# Mosquitto from Debian; the project starts it itself with its own config
# (citygrid.devservers), so the distribution's service is stopped.
source "$(dirname "$0")/common.sh"
need_apt mosquitto:mosquitto mosquitto_pub:mosquitto-clients openssl:openssl
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi
log "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')"
