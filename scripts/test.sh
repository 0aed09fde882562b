#!/usr/bin/env bash
# Quick start, command 2: install what is missing, lint, then run every test
# (unit tests and the integration tests on real Mosquitto, Kafka and the dev chain,
# which the test fixtures start). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
export PYTHONPATH="$ROOT/.dev"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -ra "$@"
