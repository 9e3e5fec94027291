#!/usr/bin/env bash
# Installs what building and testing overlink needs, and nothing that is already there.
# Idempotent; safe to run on every test run.
set -euo pipefail

# Debian packages the test suite uses: a C toolchain for -sys crates;
# prometheus for `promtool check metrics` (crates/control/tests/metrics.rs checks /metrics with it);
# iproute2, ethtool, curl, iputils-ping and python3 for the end-to-end tests in namespaces (tests/e2e.rs).
APT_PACKAGES=(build-essential pkg-config prometheus iproute2 ethtool curl iputils-ping python3)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
