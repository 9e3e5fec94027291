#!/usr/bin/env bash
# Installs what building and testing overlink needs, and nothing that is already there.
# Idempotent; safe to run on every test run.
set -euo pipefail

# Debian packages the test suite uses: a C toolchain for -sys crates;
# prometheus for `promtool check metrics` (crates/control/tests/metrics.rs checks /metrics with it);
# iproute2, ethtool, curl, iputils-ping and python3 for the end-to-end tests in namespaces (tests/e2e.rs);
# libdpdk-dev (DPDK 22.11, pkg-config libdpdk), dpdk-dev (dpdk-testpmd) and libclang-dev (bindgen) for
# the `dpdk` feature (crates/dpdk-sys, crates/io-dpdk, tests/e2e_dpdk.rs, scripts/bench-dpdk.sh);
# nginx (the real HTTP server behind the gateway), iperf3 (bulk TCP/UDP), netsniff-ng (trafgen, the
# packet generator) and nftables (the sink's counter, and the kernel-NAT baseline) for
# tests/e2e_traffic.rs, tests/e2e_robust.rs and scripts/bench-system.sh; apache2-utils (ab, TCP
# connections per second) for scripts/bench-system.sh; openssl (a test certificate for nginx's
# `ssl proxy_protocol` in tests/e2e_proxy.rs); procps (`kill`, `sysctl`: the tests stop their
# processes and switch IPv6 off in their namespaces; minimal images lack it).
APT_PACKAGES=(build-essential pkg-config prometheus iproute2 ethtool curl iputils-ping python3
  libdpdk-dev dpdk-dev libclang-dev
  nginx iperf3 netsniff-ng nftables apache2-utils openssl procps)

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
  # Debian's nginx (and iperf3) start a system service on install; the tests run their own
  # instances inside network namespaces, so keep services from starting during the install
  # (policy-rc.d) and disable nginx's afterwards: nothing of ours listens on the host's port 80.
  policy_rc=/usr/sbin/policy-rc.d
  made_policy_rc=0
  if [[ ! -e $policy_rc ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod +x "$policy_rc"
    made_policy_rc=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  ((made_policy_rc)) && rm -f "$policy_rc"
  ((status == 0)) || exit "$status"
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now nginx.service iperf3.service >/dev/null 2>&1 || true
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
