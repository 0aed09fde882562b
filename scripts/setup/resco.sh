#!/usr/bin/env bash
# RESCO's benchmark maps (Ault & Sharon, NeurIPS 2021 Datasets and Benchmarks: Cologne, Ingolstadt and
# two synthetic grids) for `citygrid traffic evaluate --net`. Source: the sumo_rl/nets/RESCO folder of
# the `sumo-rl==1.4.5` wheel on PyPI (github.com/LucasAlegre/sumo-rl), fetched as DATA only: the wheel
# is downloaded without dependencies, only the nets folder is extracted, nothing of sumo_rl is imported
# or installed. The maps are not committed (TAPAS Cologne is CC BY-NC-SA, InTAS Ingolstadt is GPL; the
# wheel itself is MIT): they live under .cache/resco/ like every other download.
source "$(dirname "$0")/common.sh"
version=1.4.5
dest="$CACHE/resco"
if [ -f "$dest/.ok-$version" ]; then
  log "resco maps $version: cached in $dest"
  exit 0
fi
py="$ROOT/.venv/bin/python"
[ -x "$py" ] || py=python3
tmp="$(mktemp -d "$CACHE/resco.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "sumo-rl==$version"
wheel="$(ls "$tmp"/sumo_rl-"$version"-*.whl)"
"$py" - "$wheel" "$tmp/out" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("sumo_rl/nets/RESCO/") and not n.endswith("/")]
    if not names:
        sys.exit("the sumo-rl wheel has no sumo_rl/nets/RESCO folder")
    for n in names:
        z.extract(n, out)
    # The licence that comes with the wheel, next to the maps it covers.
    for n in z.namelist():
        if n.endswith(("LICENSE", "LICENSE.txt", "METADATA")):
            z.extract(n, out)
PY
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/out/sumo_rl/nets/RESCO"/* "$dest"/
find "$tmp/out" -maxdepth 2 -name '*.dist-info' -exec cp -r {} "$dest"/ \;
touch "$dest/.ok-$version"
log "resco maps $version: $(ls "$dest" | grep -vc dist-info) maps in $dest"
