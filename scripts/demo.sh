#!/usr/bin/env bash
# Quick start, command 1: install what is missing, then run the local platform end to end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh runtime
exec .venv/bin/citygrid demo "$@"
