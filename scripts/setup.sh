#!/usr/bin/env bash
# Idempotent: installs everything citygrid needs on a bare Debian 12 machine
# (Python env, Mosquitto, Kafka jars, the Substrate dev chain). Servers are
# started by `citygrid servers up`, the demo and the test fixtures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
bash "$here/setup/mosquitto.sh"
bash "$here/setup/sshd.sh"
bash "$here/setup/prometheus.sh"
bash "$here/setup/helm.sh" &  # built from the Go module proxy: minutes the first time
h=$!
bash "$here/setup/kafka.sh" &
k=$!
bash "$here/setup/chain.sh" &
c=$!
bash "$here/setup/python.sh"
wait $k; wait $c; wait $h
echo "[setup] done in $(( $(date +%s) - start )) s" >&2
