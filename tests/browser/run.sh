#!/usr/bin/env bash
# The dashboard and the upload page in a real browser against the demo data: `ctstats demo
# --no-serve` builds a dataset, a ledger and a release of every indicator; `ctstats serve`
# serves it on a free loopback port; tests/browser/dashboard_test.py drives headless Chromium
# through ChromeDriver and compares the chart and the table with the release JSON; then a second
# server that takes uploads (with the demo's key, files up to 1 MiB) serves
# tests/browser/upload_test.py, which uploads as the demo's NGO. Both fail on console errors.
#
#   tests/browser/run.sh
#
# Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: chromium, chromium-driver; .ci/run
# installs them). Environment:
#   CTSTATS_BIN        the ctstats binary (default: $CARGO_TARGET_DIR/debug/ctstats)
#   CTSTATS_ARTIFACTS  where screenshots and logs go (default: $CARGO_TARGET_DIR/browser)
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
BIN="${CTSTATS_BIN:-$CARGO_TARGET_DIR/debug/ctstats}"
OUT="${CTSTATS_ARTIFACTS:-$CARGO_TARGET_DIR/browser}"
[ -x "$BIN" ] || { echo "browser: no ctstats binary at $BIN (set CTSTATS_BIN)" >&2; exit 2; }
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "browser: $tool is missing (apt-get install chromium chromium-driver)" >&2; exit 2; }
done
mkdir -p "$OUT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctstats-browser.XXXXXX")"
SERVER_PID=""
UPLOAD_PID=""
cleanup() {
  for pid in $SERVER_PID $UPLOAD_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_up URL PID LOG: until URL answers; fails with the log's tail if the server dies.
wait_up() {
  for _ in $(seq 1 120); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { tail -20 "$3" >&2; exit 1; }
    sleep 0.5
  done
  echo "browser: $1 did not come up" >&2; exit 1
}

echo "== demo dataset and release"
"$BIN" demo --dir "$WORK/demo" --no-serve --persons 600 >"$WORK/demo.log" 2>&1 || {
  tail -30 "$WORK/demo.log" >&2; exit 1; }
grep -E '^   release [0-9]+:' "$WORK/demo.log"
TOKEN="$(sed -n 's/^ *researcher token: *//p' "$WORK/demo.log")"
[ -n "$TOKEN" ] || { echo "browser: the demo printed no researcher token" >&2; exit 1; }

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --data "$WORK/demo/data" --no-upload --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
wait_up "$BASE/dashboard" "$SERVER_PID" "$OUT/server.log"

echo "== dashboard in headless Chromium ($BASE/dashboard)"
python3 tests/browser/dashboard_test.py --base "$BASE" --token "$TOKEN" --out "$OUT"
echo "== screenshots in $OUT"

echo "== upload page in headless Chromium (a server taking uploads of at most 1 MiB)"
NGO="$(sed -n 's/^ *ngo token[^:]*: *//p' "$WORK/demo.log")"
[ -n "$NGO" ] || { echo "browser: the demo printed no ngo token" >&2; exit 1; }
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""
UPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
UBASE="http://127.0.0.1:$UPORT"
"$BIN" serve --data "$WORK/demo/data" --key "$WORK/demo/ctstats.key" --max-upload-mib 1 \
  --listen "127.0.0.1:$UPORT" >"$OUT/upload-server.log" 2>&1 &
UPLOAD_PID=$!
wait_up "$UBASE/upload" "$UPLOAD_PID" "$OUT/upload-server.log"
python3 tests/browser/upload_test.py --base "$UBASE" --token "$NGO" --out "$OUT"
echo "== screenshots in $OUT"
