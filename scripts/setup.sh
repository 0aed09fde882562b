#!/usr/bin/env bash
# Idempotent: installs everything citygrid needs on a bare Debian 12 machine. Servers are
# started by `citygrid servers up`, the demo and the test fixtures.
#   bash scripts/setup.sh          what the tests need: the runtime below, plus helm and a Kubernetes
#                                  control plane (built from the Go module proxy) for the chart tests
#   bash scripts/setup.sh runtime  what the platform and the demo need: the Python environment,
#                                  Mosquitto, Kafka, the dev chain, Prometheus (no Go toolchain)
# Each step says when it starts and how long it took; slow downloads run in parallel.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
what="${1:-all}"
start=$(date +%s)
step() {
  local name="$1" t0
  t0=$(date +%s)
  printf '[setup] %s: started\n' "$name" >&2
  bash "$here/setup/$name.sh"
  printf '[setup] %s: done in %s s\n' "$name" "$(( $(date +%s) - t0 ))" >&2
}
pids=()
if [ "$what" = all ]; then
  step helm & pids+=($!)
  step k8s & pids+=($!)  # etcd + kube-apiserver + controller manager: ~6 min cold, cached after
fi
step kafka & pids+=($!)
step chain & pids+=($!)
step mosquitto
step sshd
step prometheus
if [ "$what" = all ]; then step arm64 & pids+=($!); fi  # an arm64 Debian device for the deploy tests (qemu)
step python
step resco  # RESCO's benchmark maps, data only, for `citygrid traffic evaluate`
for p in "${pids[@]}"; do wait "$p"; done
echo "[setup] $what: done in $(( $(date +%s) - start )) s" >&2
