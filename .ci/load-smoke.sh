#!/usr/bin/env bash
# Load smoke test: a few seconds of every loadgen scenario against a
# spawned gdpr-intake, on SQLite and on a fresh PostgreSQL database, at a
# fixed concurrency and at a fixed rate, and once with span export on to a
# receiver in loadgen (every call's span must arrive). The `all` runs also
# measure the anchors (--anchors: on PostgreSQL with pgbench, when it is on
# PATH), so their setup, scripts and clean-up are exercised; their targets
# are not judged here. It fails on any call
# that did not get the code it was meant to get (the only provoked error is the
# NOT_FOUND of get's deliberate misses), and ends with
# `load-smoke: N passed, M failed`. The numbers it prints are not a
# benchmark: CI machines are small and busy.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
out_dir=target/load-smoke
# Both binaries land in one target directory; loadgen finds gdpr-intake
# beside itself.
loadgen="${CARGO_TARGET_DIR:-target}/release/loadgen"

printf '==> cargo build --release --workspace --bins\n'
cargo build --release --workspace --bins --locked

mkdir -p "$out_dir"
passed=0
failed=0

# run NAME ARGS...: one loadgen run; counts its `result:` lines.
run() {
  local name=$1
  shift
  local log="$out_dir/$name.log"
  printf '\n==> loadgen %s\n' "$*"
  local status=0
  timeout 120 "$loadgen" --json "$out_dir/$name.json" "$@" >"$log" 2>&1 || status=$?
  # The closing table and verdicts; the full ghz-style blocks are in the log.
  sed -n '/^== summary/,$p' "$log"
  local ok bad
  ok=$(grep -c '^result: .* passed' "$log" || true)
  bad=$(grep -c '^result: .* failed' "$log" || true)
  if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
    # It could not run at all (exit 2) or was stopped: say why.
    printf 'load-smoke: %s exited with %s; its output:\n' "$name" "$status"
    tail -n 40 "$log"
    bad=1
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
}

common=(--duration 2s --concurrency 8 --connections 2 --get-preload 200 --get-miss-ratio 0.05 --task-preload 500)
rate=(--scenario submit --rate 200/s --duration 2s --concurrency 8 --connections 2)

run sqlite-all --spawn sqlite --scenario all "${common[@]}" --anchors
run sqlite-rate --spawn sqlite "${rate[@]}"
run sqlite-traced --spawn sqlite --scenario all --trace-export on "${common[@]}"

# The anchors include --pgbench's single-row INSERT. With 500 tasks queued,
# the claim-complete anchor runs dry within its 2 s: that path is covered
# too (it warns and counts the steps until then).
anchors_flag=()
if command -v pgbench >/dev/null 2>&1; then
  anchors_flag=(--anchors)
fi
run postgres-all --spawn postgres --database-url "$pg_url" --scenario all "${common[@]}" "${anchors_flag[@]}"
run postgres-rate --spawn postgres --database-url "$pg_url" "${rate[@]}"

printf '\nload-smoke: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
