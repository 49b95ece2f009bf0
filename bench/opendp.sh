#!/usr/bin/env bash
# Peer comparison with OpenDP's Polars API: the grouped DP count (distinct persons per mission and
# registration year, public keys) and a bounded DP sum (months_to_closure clamped to [0, 24]), each
# timed against the same aggregate in plain Polars on the same Parquet files
# (bench/opendp_polars.py). Not run in CI: it needs PyPI for the venv.
#
#   bench/opendp.sh [DATASET_DIR] [--runs N] [--epsilon E] [--contributions K]
#
# DATASET_DIR is an ingested ctstats dataset (the directory with manifest.json). Without one, a
# small dataset (PERSONS, default 20000, over 6 missions) is generated and ingested in a temp dir
# with the release ctstats binary (CTSTATS_BIN, else built with cargo). The venv is made, or
# reused, in ${XDG_CACHE_HOME:-~/.cache}/ctstats/opendp-venv with the pinned versions below.
# Prints one line per measurement (median ms) and the ratios DP/raw.
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenDP 0.16.0's Polars plugin is built against Polars 1.36.1 (its [polars] extra pins it);
# pyarrow is what it converts released frames with.
PINS=(opendp==0.16.0 polars==1.36.1 pyarrow==26.0.1)
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/ctstats/opendp-venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
fi

DATA=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  DATA="$1"
  shift
fi
if [ -z "$DATA" ]; then
  PERSONS="${PERSONS:-20000}"
  BIN="${CTSTATS_BIN:-}"
  if [ -z "$BIN" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
    cargo build --release --quiet --bin ctstats
    BIN="$CARGO_TARGET_DIR/release/ctstats"
  fi
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctstats-opendp.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  "$BIN" generate --out "$WORK/gen" --persons "$PERSONS" --ngos-per-mission 1 \
    --formats csv --error-rate 0 >/dev/null
  "$BIN" keygen --key "$WORK/key" >/dev/null
  for f in "$WORK"/gen/*.csv; do
    mission="$(basename "$f" | cut -d- -f1)"
    "$BIN" ingest --data "$WORK/ds" --key "$WORK/key" --org "bench-$mission" --mission "$mission" \
      "$f" >/dev/null
  done
  DATA="$WORK/ds"
fi
[ -f "$DATA/manifest.json" ] || { echo "bench: $DATA has no manifest.json" >&2; exit 1; }
OUT="$(mktemp)"
"$VENV/bin/python" bench/opendp_polars.py --data "$DATA" "$@" | tee "$OUT"
# The same count (distinct persons per mission-year, k = 1, epsilon 1, public keys) through the
# ctstats engine, in the same script: ledger charge, bounding, OpenDP noise, stored answer.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --example query_bench
"$CARGO_TARGET_DIR/release/examples/query_bench" --data "$DATA" --runs 5 --engine-only true \
  | tee -a "$OUT"
opendp_ms="$(sed -n 's/^opendp_count_ms=//p' "$OUT")"
ctstats_ms="$(sed -n 's/^ctstats_dp_ms=//p' "$OUT")"
rm -f "$OUT"
python3 -c "import sys; o, c = map(float, sys.argv[1:]); print(f'ratio OpenDP Polars / ctstats per DP count query: {o / c:.1f}x ({o:.1f} ms / {c:.1f} ms)')" \
  "$opendp_ms" "$ctstats_ms"
