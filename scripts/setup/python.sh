#!/usr/bin/env bash
# The project's virtual environment (.venv) with every extra installed.
# citygrid is installed as a wheel, not editable: its source folders (edge/,
# stream/, ledger/) are mapped under the `citygrid` namespace by hatchling,
# which editable installs cannot express. So a source change reinstalls the
# project alone (seconds); a pyproject change reinstalls the dependencies.
source "$(dirname "$0")/common.sh"
PY="${CITYGRID_PYTHON:-python3}"
VENV="$ROOT/.venv"
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
deps_want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
src_want="$(cd "$ROOT" && find core edge stream ledger dashboards sim ops devtools pyproject.toml -name '*.py' -o -name '*.toml' -o -name '*.onnx' -o -name '*.json' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
# .dev/citygrid -> core: with PYTHONPATH=.dev the checkout's sources are imported
# directly (scripts/test.sh does this), so no reinstall is needed while developing.
mkdir -p "$ROOT/.dev"
[ -L "$ROOT/.dev/citygrid" ] || ln -sfn ../core "$ROOT/.dev/citygrid"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip==25.3 hatchling==1.33.0
fi
if [ "$(cat "$VENV/.deps.sha256" 2>/dev/null)" != "$deps_want" ]; then
  log "pip install .[edge,stream,ledger,ops,sim,dev]"
  "$VENV/bin/python" -m pip install -q "$ROOT[edge,stream,ledger,ops,sim,dev]"
  "$VENV/bin/python" -m pip check
  echo "$deps_want" > "$VENV/.deps.sha256"
  echo "$src_want" > "$VENV/.src.sha256"
elif [ "$(cat "$VENV/.src.sha256" 2>/dev/null)" != "$src_want" ]; then
  log "reinstalling citygrid (sources changed)"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation --force-reinstall "$ROOT"
  echo "$src_want" > "$VENV/.src.sha256"
else
  log "python env up to date"
fi
