#!/usr/bin/env bash
# A short run of every fuzz target (CI's smoke test; `just fuzz` runs longer).
# Usage: scripts/fuzz-smoke.sh [seconds per target, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi

# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable toolchain use them.
export RUSTC_BOOTSTRAP=1
for target in frame_parser pipeline; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "== fuzz $target for ${secs}s"
  cargo fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY" || true
  # cargo fuzz exits non-zero on a crash; pipefail above would hide it behind grep, so check artifacts.
  if compgen -G "fuzz/artifacts/$target/crash-*" >/dev/null; then
    echo "fuzz-smoke: $target crashed; see fuzz/artifacts/$target" >&2
    exit 1
  fi
done
