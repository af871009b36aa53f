#!/usr/bin/env bash
# Fuzz smoke: builds every cargo-fuzz target in fuzz/ and runs each for
# FUZZ_SECONDS (default 30) from its seed corpus; fails on any crash.
#
# Needs cargo-fuzz (installed here from crates.io if missing) and a C++
# compiler for libFuzzer. cargo-fuzz passes -Z flags (sanitizer, coverage
# passes) that only a nightly compiler takes; RUSTC_BOOTSTRAP=1 lets the
# stable one take them too. A cold build takes about 8 minutes on two
# cores, so .ci/run does not call this script: it checks that the targets
# build and runs the harness on its seeds instead (see README, Fuzzing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

# The fuzz crate is a workspace of its own; its lock file starts from the
# service's, so both build the same versions.
cp Cargo.lock fuzz/Cargo.lock

# Seeds are code (they follow the protos): write them where libFuzzer
# starts. Built in the service's target directory, whose dependencies it
# shares.
CARGO_TARGET_DIR="$PWD/target" cargo run -q --manifest-path fuzz/Cargo.toml \
  --example write_seeds -- fuzz/corpus/decode_requests

mkdir -p fuzz/artifacts
for target in $(cargo fuzz list); do
  log="fuzz/artifacts/$target.log"
  printf 'fuzzing %s for %ss\n' "$target" "$seconds"
  if ! cargo fuzz run "$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    printf 'fuzz target %s failed; the input is in fuzz/artifacts/%s/\n' "$target" "$target"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' "$log"
done
