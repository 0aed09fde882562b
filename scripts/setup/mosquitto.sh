#!/usr/bin/env bash
# Mosquitto from Debian; the project starts it itself with its own config
# (citygrid.devtools.local_servers), so the distribution's service is stopped.
source "$(dirname "$0")/common.sh"
need_apt mosquitto:mosquitto mosquitto_pub:mosquitto-clients openssl:openssl
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi
# The local broker is TLS-only with identities from the dynamic-security plugin Debian ships
# (citygrid.devtools.local_servers); the project's CA and certificates are made at first start.
plugin=$(dpkg -L mosquitto | grep -m1 'mosquitto_dynamic_security.so$' || true)
[ -n "$plugin" ] || { echo "mosquitto_dynamic_security.so missing from Debian's mosquitto" >&2; exit 1; }
log "mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') (dynamic security: $plugin)"
