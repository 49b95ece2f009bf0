#!/usr/bin/env bash
# Query benchmark: a grouped DP query (distinct persons per mission and year) against the same
# aggregation as raw DataFusion SQL on the same Parquet, in one process, then the HTTP service on
# loopback with 64 concurrent clients, fresh and re-served queries (examples/query_bench.rs).
#
#   bench/query.sh [PERSONS]        # default 880000 persons, about 1M rows over 6 missions
#
# Set KEEP=DIR to keep (or reuse) the ingested dataset in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PERSONS="${1:-880000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
# SKIP_BUILD=1 uses the binaries already built in $CARGO_TARGET_DIR/release.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin ctstats --example query_bench
BIN="$CARGO_TARGET_DIR/release/ctstats"
BENCH="$CARGO_TARGET_DIR/release/examples/query_bench"
WORK="${KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/ctstats-qbench.XXXXXX")}"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

if [ ! -f "$WORK/ds/manifest.json" ]; then
  "$BIN" generate --out "$WORK/gen" --persons "$PERSONS" --ngos-per-mission 1 \
    --formats csv --error-rate 0 >/dev/null
  "$BIN" keygen --key "$WORK/key" >/dev/null
  for f in "$WORK"/gen/*.csv; do
    mission="$(basename "$f" | cut -d- -f1)"
    "$BIN" ingest --data "$WORK/ds" --key "$WORK/key" --org "bench-$mission" --mission "$mission" \
      "$f" >/dev/null
  done
  rm -rf "$WORK/gen"
fi
"$BENCH" --data "$WORK/ds" "${@:2}"
