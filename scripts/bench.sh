#!/usr/bin/env bash
# Run one benchmark (`bash scripts/bench.sh edge_agent`) or all of them (`all`); each prints a
# table and writes benchmarks/results/NAME.json. Benchmarks that need servers start them.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh runtime
export PYTHONPATH="$ROOT/.dev:$ROOT"
names=("$@")
if [ "${#names[@]}" -eq 0 ] || [ "${names[0]}" = all ]; then
  names=()
  for f in benchmarks/[a-z]*.py; do names+=("$(basename "$f" .py)"); done
fi
.venv/bin/python -m citygrid servers up >/dev/null
for name in "${names[@]}"; do
  echo "== benchmarks.$name"
  .venv/bin/python -m "benchmarks.$name"
done
