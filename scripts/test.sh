#!/usr/bin/env bash
# The whole test suite: installs what the tests need (idempotent), then runs them.
# Works on a fresh Debian 12 machine with rustup's Rust, as root.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo test"
cargo test --workspace --locked

echo "== fuzz smoke"
./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"
