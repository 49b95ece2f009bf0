#!/usr/bin/env bash
# Ingest benchmark: throughput (rows/s) and peak RSS of `ctstats ingest` on one generated CSV,
# against a plain arrow-rs CSV->Parquet conversion of the same file run in the same script
# (examples/arrow_csv_to_parquet.rs: schema inference, no validation, no pseudonyms).
#
#   bench/ingest.sh [PERSONS]        # default 880000 persons, about 1M rows
#
# Prints one line per run and the ratios. Needs GNU time (/usr/bin/time) for peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
PERSONS="${1:-880000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
if [ ! -x /usr/bin/time ]; then
  apt-get install -y time >/dev/null 2>&1 || { echo "bench: GNU time is needed (apt-get install time)" >&2; exit 1; }
fi
# SKIP_BUILD=1 uses the binaries already built in $CARGO_TARGET_DIR/release.
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin ctstats --example arrow_csv_to_parquet
BIN="$CARGO_TARGET_DIR/release/ctstats"
BASELINE="$CARGO_TARGET_DIR/release/examples/arrow_csv_to_parquet"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctstats-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

"$BIN" generate --out "$WORK/gen" --persons "$PERSONS" --missions KGZ --ngos-per-mission 1 \
  --formats csv --error-rate 0 >/dev/null
FILE="$(ls "$WORK"/gen/*.csv | head -n 1)"
BYTES="$(stat -c %s "$FILE")"

# run NAME COMMAND...: time one command, keep "seconds peak_kib user_s system_s"
run() {
  local name="$1"; shift
  sync
  /usr/bin/time -f "%e %M %U %S" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
}
run baseline "$BASELINE" "$FILE" "$WORK/baseline.parquet"
"$BIN" keygen --key "$WORK/key" >/dev/null
run ingest "$BIN" ingest --data "$WORK/ds" --key "$WORK/key" --org bench-ngo --mission KGZ \
  --report "$WORK/report.json" "$FILE"

python3 - "$WORK" "$BYTES" <<'PY'
import json, sys
work, size = sys.argv[1], int(sys.argv[2])
report = json.load(open(f"{work}/report.json"))[0]
rows = report["rows_read"]
assert report["status"] == "committed" and report["rows_committed"] == rows, report["status"]
def t(name):
    secs, kib, user, system = open(f"{work}/{name}.time").read().split()
    return float(secs), int(kib) / 1024, float(user) + float(system)
b_s, b_mib, b_cpu = t("baseline")
i_s, i_mib, i_cpu = t("ingest")
print(f"file: {rows} rows, {size / 2**20:.0f} MiB CSV")
print(f"arrow-rs CSV->Parquet baseline: {b_s:7.2f} s  {rows / b_s:10.0f} rows/s  peak RSS {b_mib:6.0f} MiB  CPU {b_cpu:.2f} s ({b_cpu / b_s:.2f} cores)")
print(f"ctstats ingest (validate, pseudonymise, commit): {i_s:7.2f} s  {rows / i_s:10.0f} rows/s  peak RSS {i_mib:6.0f} MiB  CPU {i_cpu:.2f} s ({i_cpu / i_s:.2f} cores)")
print(f"ratio ingest/baseline: time {i_s / b_s:.2f}x, throughput {(rows / i_s) / (rows / b_s):.2f}x, peak RSS {i_mib / b_mib:.2f}x")
PY
