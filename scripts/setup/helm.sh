#!/usr/bin/env bash
# Helm 3, built from the Go module proxy into .cache/helm/bin (no download site needed).
# The binary is cached per version, so a second run is instant.
source "$(dirname "$0")/common.sh"
HELM_VERSION="${CITYGRID_HELM_VERSION:-v3.21.4}"
BIN="$CACHE/helm/$HELM_VERSION/helm"
if [ -x "$BIN" ]; then
  log "helm $HELM_VERSION cached"
  exit 0
fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$GO" ]; then
  log "go not found: install Go >= 1.24 (e.g. /usr/local/go) or set GO=/path/to/go"
  exit 1
fi
log "building helm $HELM_VERSION with $("$GO" version | awk '{print $3}') (a few minutes the first time)"
mkdir -p "$CACHE/helm/$HELM_VERSION"
# Keep Go's module and build caches inside the project cache, not in $HOME.
GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-buildvcs=false \
  CGO_ENABLED=0 GOBIN="$CACHE/helm/$HELM_VERSION" \
  "$GO" install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
ln -sfn "$HELM_VERSION/helm" "$CACHE/helm/helm"
log "helm: $("$BIN" version --short)"
