#!/usr/bin/env bash
# Prometheus from Debian, to scrape the local platform in the demo; the project starts it itself
# with its own config (citygrid.local_prometheus), so the distribution's service is stopped.
source "$(dirname "$0")/common.sh"
need_apt prometheus:prometheus
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
fi
log "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
