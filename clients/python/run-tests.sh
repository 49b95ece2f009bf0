#!/usr/bin/env bash
# The Python client's tests against a real `ctstats serve` (started by tests/conftest.py).
# Makes, or reuses, a venv in ${XDG_CACHE_HOME:-~/.cache}/ctstats/client-venv with the package
# and its test extras (httpx, pandas, pytest) from PyPI, then runs pytest.
#
#   clients/python/run-tests.sh        (CTSTATS_BIN: the ctstats binary, default the debug build)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/ctstats/client-venv"
PYTHON="${PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
export CTSTATS_BIN="${CTSTATS_BIN:-$CARGO_TARGET_DIR/debug/ctstats}"
[ -x "$CTSTATS_BIN" ] || { echo "client tests: no ctstats binary at $CTSTATS_BIN" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
# Reinstalled each run (quick once the dependencies are cached), so the tests see this checkout.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check ".[test]"
"$VENV/bin/python" -m pytest -q tests "$@"
