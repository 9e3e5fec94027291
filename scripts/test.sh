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

echo "== cargo test --features dpdk (the DPDK backend: software vdevs, then end to end on net_af_packet)"
cargo test --locked -p overlink-io-dpdk --features dpdk
cargo test --locked --features dpdk --test e2e_dpdk

echo "== fuzz smoke"
./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-20}"
