#!/usr/bin/env bash
# Schemathesis against the query service's own OpenAPI document (GET /openapi.json).
#
# What it does: makes a throwaway dataset with `ctstats demo --no-serve` in a temp dir, adds one
# principal per role (ngo for kaz-ngo-1, analyst, researcher, admin; analyst and researcher get a
# budget of epsilon 1000, delta 1e-3), serves it on a free loopback port, and runs `st run` once
# per role token and once with an unknown token. Exits non-zero if any run fails.
# CI runs it after the tests with ST_MAX_EXAMPLES=60 (the venv needs PyPI once).
#
#   tests/schemathesis/run.sh
#
# Environment:
#   CTSTATS_BIN       the ctstats binary (default: $CARGO_TARGET_DIR/debug/ctstats; build it first)
#   ST_MAX_EXAMPLES   test cases per operation in the fuzzing phase (default 150: the whole script
#                     takes about 3.5 minutes on 2 busy cores with a debug binary)
#   ST_SEED           Hypothesis seed (default fixed, so a failure reproduces; set another to explore)
#   ST_CHECKS         checks to run (default: all, see CHECKS below)
#   ST_KEEP=1         keep the work dir (logs, JUnit and HAR reports, server log); it is also kept
#                     whenever a run fails, and its path printed
# The venv is made, or reused, in ${XDG_CACHE_HOME:-~/.cache}/ctstats/schemathesis-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

PINS=(schemathesis==4.32.5)
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/ctstats/schemathesis-venv"
PYTHON="${PYTHON:-python3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctstats/target}"
BIN="${CTSTATS_BIN:-$CARGO_TARGET_DIR/debug/ctstats}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-150}"
SEED="${ST_SEED:-20261129}"
# Every check Schemathesis 4.32 has. The ones asked for at least: not_a_server_error,
# status_code_conformance, content_type_conformance, response_headers_conformance,
# response_schema_conformance. `all` adds negative_data_rejection / positive_data_acceptance
# (does the server accept exactly what the document allows), missing_required_header,
# unsupported_method, allow_header_conformance, ignored_auth, use_after_free,
# ensure_resource_availability and object_level_authorization.
# Every check is on by default in 4.32; the command line is not given `--checks` unless ST_CHECKS
# is set, because a check named there overrides the per-operation settings of schemathesis.toml.
CHECKS="${ST_CHECKS:-}"
CHECK_ARGS=()
[ -z "$CHECKS" ] || CHECK_ARGS=(--checks "$CHECKS")
NICE=(nice -n 10)

[ -x "$BIN" ] || { echo "schemathesis: no ctstats binary at $BIN (set CTSTATS_BIN)" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  "${NICE[@]}" "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
fi
ST="$VENV/bin/st"
CONFIG="$PWD/tests/schemathesis/schemathesis.toml"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctstats-schemathesis.XXXXXX")"
SERVER_PID=""
FAILED=0
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$FAILED" -eq 0 ] && [ "${ST_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "schemathesis: logs and reports kept in $WORK" >&2
  fi
}
trap cleanup EXIT

echo "== demo dataset in $WORK/demo"
"${NICE[@]}" "$BIN" demo --dir "$WORK/demo" --no-serve --persons 500 >"$WORK/demo.log" 2>&1 || {
  FAILED=1; tail -20 "$WORK/demo.log" >&2; exit 1; }
DATA="$WORK/demo/data"
KEY="$WORK/demo/ctstats.key"
[ -f "$DATA/manifest.json" ] && [ -f "$KEY" ] || {
  FAILED=1; echo "schemathesis: the demo left no dataset at $DATA or key at $KEY" >&2; exit 1; }

# `principal add` prints "id: ..." and "token: ..."; sets ADDED_ID and ADDED_TOKEN.
add_principal() {
  local out
  out="$("$BIN" principal add --data "$DATA" "$@")"
  ADDED_ID="$(sed -n 's/^id: *//p' <<<"$out")"
  ADDED_TOKEN="$(sed -n 's/^token: *//p' <<<"$out")"
  [ -n "$ADDED_ID" ] && [ -n "$ADDED_TOKEN" ] || { echo "unexpected principal add output: $out" >&2; return 1; }
}
declare -A TOKEN
add_principal --name st-ngo --role ngo --org kaz-ngo-1 --missions KAZ; TOKEN[ngo]="$ADDED_TOKEN"
for role in analyst researcher; do
  add_principal --name "st-$role" --role "$role"; TOKEN[$role]="$ADDED_TOKEN"
  "$BIN" budget set --data "$DATA" --principal "$ADDED_ID" --epsilon 1000 --delta 1e-3 >/dev/null
done
add_principal --name st-admin --role admin; TOKEN[admin]="$ADDED_TOKEN"
# A second admin for the last run, which may revoke every principal, itself included (below).
add_principal --name st-admin-revoker --role admin; TOKEN[admin-revoker]="$ADDED_TOKEN"
# Well-formed but unknown.
TOKEN[bad-token]="cts_$(printf '0%.0s' {1..64})"

PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
echo "== serving on $BASE"
RUST_BACKTRACE=1 "${NICE[@]}" "$BIN" serve --data "$DATA" --key "$KEY" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
  if curl -sf -o /dev/null "$BASE/openapi.json"; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { FAILED=1; tail -20 "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -sf -o "$WORK/openapi.json" "$BASE/openapi.json" || {
  FAILED=1; echo "schemathesis: $BASE/openapi.json did not come up" >&2; exit 1; }

# --output-sanitize false: the default sanitizer replaces the value of any field named `keys` (a
# QuerySpec field) with [Filtered], which breaks the printed reproductions; the tokens it would
# hide belong to this throwaway ledger. --continue-on-failure: report every distinct failure of an
# operation, not only the first.
declare -a SUMMARY
run_st() { # NAME TOKEN [extra st args...]
  local name="$1" token="$2"
  shift 2
  echo "== st run as $name"
  local start=$SECONDS rc=0
  (cd "$WORK" && "${NICE[@]}" "$ST" --config-file "$CONFIG" run "$BASE/openapi.json" \
      -H "Authorization: Bearer $token" \
      "${CHECK_ARGS[@]}" --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
      --continue-on-failure --request-timeout 60 --no-color \
      --output-sanitize false --generation-database none \
      --report junit,har --report-dir "$WORK/reports/$name" \
      "$@") >"$WORK/$name.log" 2>&1 || rc=$?
  # The failures and errors, each with its operation, check, response status and curl line.
  awk '/^=+ (ERRORS|FAILURES) =+$/ {on=1} /^=+ (WARNINGS|SUMMARY) =+$/ {on=0} on' "$WORK/$name.log" |
    grep -E '^(_{3,} |- ST|\[[0-9]{3}\]|    curl |Network Error|    Connection )' || true
  grep -E '^  [0-9]+ generated' "$WORK/$name.log" || true
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "schemathesis: the server died during the $name run" >&2
    rc=99
  fi
  SUMMARY+=("$(printf '%-16s exit %-3s %4ss  %s' "$name" "$rc" "$((SECONDS - start))" "$WORK/$name.log")")
  [ "$rc" -eq 0 ] || FAILED=1
  [ "$rc" -ne 99 ] || exit 1
}

# Order matters: the admin runs change the ledger (budgets, new and revoked principals), so they
# go last, after the runs that need the other roles' tokens and budgets.
run_st bad-token "${TOKEN[bad-token]}"
run_st ngo "${TOKEN[ngo]}"
run_st analyst "${TOKEN[analyst]}"
run_st researcher "${TOKEN[researcher]}"
# DELETE /v1/principals/{id} is left out of this admin run only: Schemathesis learns principal ids
# from GET /v1/principals and revokes them, its own token included, after which every request of
# the run gets 401 and tests nothing. The run after it covers DELETE.
run_st admin "${TOKEN[admin]}" --exclude-operation-id revoke_principal
# Every operation with a second admin token, DELETE included; last, since it may revoke itself.
run_st admin-revoker "${TOKEN[admin-revoker]}"

if grep -q 'panicked at' "$WORK/server.log"; then
  echo "== the server panicked (server.log):"
  # Each panic's message and the first frame in ctstats' own crates, counted.
  awk '/panicked at/ {getline msg; want=1; next}
       want && /^ +[0-9]+: ctstats/ {print msg " in " $2; want=0}' "$WORK/server.log" | sort | uniq -c
  FAILED=1
fi
echo "== summary (schemathesis ${PINS[*]}, checks ${CHECKS:-all by default}, max-examples $MAX_EXAMPLES, seed $SEED)"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
