#!/usr/bin/env bash
# A Kubernetes control plane for the chart tests (tests/integration/deploy): etcd,
# kube-apiserver and kube-controller-manager, built from the Go module proxy with the
# pinned modules in deploy/local/k8s/ (their go.sum verifies every download).
# Binaries are cached per version in .cache/k8s/<version>/, so a second run is instant.
# Go's module and build caches live outside the clone (CITYGRID_GO_CACHE, default
# ~/.cache/citygrid-go), so a fresh clone on a machine that built before links in ~10 s
# instead of compiling Kubernetes from cold (~6 min on 2 cores, 11-25; more with slow downloads).
source "$(dirname "$0")/common.sh"
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
OUT="$CACHE/k8s/$K8S_VERSION"
if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ] && [ -x "$OUT/etcd" ]; then
  log "kubernetes $K8S_VERSION control plane cached"
  exit 0
fi
GO="${GO:-/usr/local/go/bin/go}"
[ -x "$GO" ] || GO="$(command -v go || true)"
if [ -z "$GO" ] || ! "$GO" version | grep -qE 'go1\.(2[6-9]|[3-9][0-9])'; then
  log "Go >= 1.26 not found (Kubernetes $K8S_VERSION needs it): install it in /usr/local/go or set GO=/path/to/go"
  exit 1
fi
GO_CACHE="${CITYGRID_GO_CACHE:-$HOME/.cache/citygrid-go}"
export GOMODCACHE="$GO_CACHE/mod" GOCACHE="$GO_CACHE/build" GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0 GOTOOLCHAIN=local
start=$(date +%s)
log "building etcd $ETCD_VERSION, kube-apiserver and kube-controller-manager $K8S_VERSION" \
  "with $("$GO" version | awk '{print $3}') (minutes the first time; Go caches in $GO_CACHE)"
mkdir -p "$OUT"
tmp="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
src="$ROOT/deploy/local/k8s"
(cd "$src/etcd" && "$GO" build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
# Without gitVersion the server reports v0.0.0 and helm refuses the chart's kubeVersion.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36"
for cmd in kube-apiserver kube-controller-manager; do
  (cd "$src/kube" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
done
mv "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/kube-controller-manager" "$OUT/"
ln -sfn "$K8S_VERSION" "$CACHE/k8s/current"
log "kubernetes $K8S_VERSION control plane built in $(( $(date +%s) - start )) s:" \
  "$("$OUT/kube-apiserver" --version), etcd $("$OUT/etcd" --version | awk 'NR==1{print $3}')"
