#!/usr/bin/env bash
# The dashboard in a real browser against the demo data: `ctstats demo --no-serve` builds a
# dataset, a ledger and a release of every indicator; `ctstats serve` serves it on a free
# loopback port; tests/browser/dashboard_test.py drives headless Chromium through ChromeDriver
# and compares the chart and the table with the release JSON, and fails on any console error.
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
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

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
for _ in $(seq 1 120); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$BASE/dashboard" 2>/dev/null; then
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$OUT/server.log" >&2; exit 1; }
  sleep 0.5
done

echo "== dashboard in headless Chromium ($BASE/dashboard)"
python3 tests/browser/dashboard_test.py --base "$BASE" --token "$TOKEN" --out "$OUT"
echo "== screenshots in $OUT"
