#!/usr/bin/env bash
# System benchmark: overlink on AF_PACKET vs the Linux kernel doing the same SNAT+DNAT with
# nftables (conntrack), on the same three-namespace veth topology, with the same load.
#
#   consumer ns (198.18.0.7/24) --veth-- gateway ns --veth-- provider ns (backend)
#
# 1. overlink: both networks use 198.18.0.0/24 (the backend is 198.18.0.10); `overlink run`
#    (release build, one worker pinned to core 1) in the gateway namespace.
# 2. kernel: the kernel has no VRF here, so it cannot hold the same prefix on both sides: the
#    provider network is 198.19.0.0/24 (backend 198.19.0.10). Forwarding, DNAT to the backend
#    and SNAT to the NAT IP by nftables with conntrack. The NAT work per packet is the same.
#    The kernel forwards in the softirq of the sending core (veth has one queue). Spreading it to
#    core 1 with RPS is not possible with this generator: the frames queued for the other core
#    hold trafgen's socket send buffer, trafgen's flush fails with EAGAIN and it stops, and
#    net.core.wmem_max cannot be raised from inside a namespace. So the kernel gets core 0
#    (shared with trafgen), overlink gets core 0 for the kernel's veth/AF_PACKET receive work
#    (shared with trafgen) plus its poll-mode worker on core 1: that second core is what a
#    poll-mode gateway costs, and the comparison says so.
#
# Loads, the same for both:
#  * UDP: `trafgen` (pinned to core 0) sends 64-byte frames (60 + FCS) over 4,096 flows to the
#    endpoint's UDP port 9, a fixed count, as fast as it can; the provider counts them in
#    nftables and drops them. The rate is what reached the sink over trafgen's run time.
#  * TCP: `ab` makes short connections (one request each, no keep-alive) to nginx through the
#    endpoint, a fixed count, 32 at a time; client and nginx pinned to core 0.
#
# Output: `bench <name> <value> <unit>` lines. Bounded in count and time; every namespace and
# process it made is removed on exit, also on Ctrl-C. Needs root; packets never leave the
# namespaces (the gateway namespace has no route out).
#
# Environment: UDP_PACKETS (default 3000000), TCP_CONNS (default 10000), OVERLINK (a prebuilt
# binary; default: cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."

UDP_PACKETS=${UDP_PACKETS:-3000000}
TCP_CONNS=${TCP_CONNS:-10000}
FLOWS=4096

[[ $(id -u) -eq 0 ]] || { echo "bench-system: needs root (network namespaces, AF_PACKET)" >&2; exit 1; }
for tool in trafgen:netsniff-ng nft:nftables nginx:nginx ab:apache2-utils ethtool:ethtool taskset:util-linux; do
  command -v "${tool%%:*}" >/dev/null || { echo "bench-system: needs ${tool%%:*} (Debian package ${tool#*:}); run scripts/setup.sh" >&2; exit 1; }
done
if [[ -z ${OVERLINK:-} ]]; then
  cargo build --release --bin overlink >&2
  OVERLINK=$PWD/target/release/overlink
fi

TAG="olb$$"
C="${TAG}c" G="${TAG}g" P="${TAG}p"
WORK=$(mktemp -d /tmp/overlink-bench.XXXXXX)
PIDS=()

cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  for ns in "$C" "$G" "$P"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
stat_of() { in_ns "$1" cat "/sys/class/net/$2/statistics/$3"; }
now() { date +%s.%N; }

# The namespaces and veths; $1 = the provider prefix's third octet ("18" same prefix, "19" distinct).
topology() {
  local prov=$1
  for ns in "$C" "$G" "$P"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add c0 netns "$C" type veth peer name gc netns "$G"
  ip link add p0 netns "$P" type veth peer name gp netns "$G"
  ip -n "$C" addr add 198.18.0.7/24 dev c0
  ip -n "$P" addr add "198.$prov.0.10/24" dev p0
  for end in "$C c0" "$P p0" "$G gc" "$G gp"; do
    set -- $end
    in_ns "$1" ethtool -K "$2" gro off gso off tso off tx off >/dev/null
    ip -n "$1" link set "$2" up
  done
  # The sink: the provider counts and drops the UDP load (the same rule in both runs).
  in_ns "$P" nft -f - <<EOF
table ip olsink {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    udp dport 9 counter drop
  }
}
EOF
  # nginx for the TCP load, on core 0, with everything under $WORK.
  mkdir -p "$WORK/www" "$WORK/tmp"
  cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    server {
        listen 198.$prov.0.10:8080 backlog=4096;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
  # `ip netns exec` and taskset exec the program, so $! is nginx's master (SIGTERM stops its workers).
  ip netns exec "$P" taskset -c 0 nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' &
  PIDS+=($!)
  for _ in $(seq 100); do
    [[ -n $(in_ns "$P" ss -Hltn src "198.$prov.0.10:8080") ]] && return 0
    sleep 0.05
  done
  echo "bench-system: nginx did not start: $(cat "$WORK/nginx-error.log")" >&2
  exit 1
}

sink_count() {
  in_ns "$P" nft list table ip olsink | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'
}

# Sends the UDP load; prints "<sink rate pps> <offered pps>".
udp_load() {
  local gwmac mymac
  gwmac=$(in_ns "$G" cat /sys/class/net/gc/address)
  mymac=$(in_ns "$C" cat /sys/class/net/c0/address)
  cat >"$WORK/udp.trafgen" <<EOF
{
  eth(da=$gwmac, sa=$mymac),
  ipv4(saddr=198.18.0.7, daddr=198.18.0.52, ttl=64),
  udp(sp=dinc(10000, $((10000 + FLOWS - 1))), dp=9),
  fill(0x42, 18),
}
EOF
  # Warm-up: every flow once (creates the flows / conntrack entries, resolves the neighbours).
  in_ns "$C" taskset -c 0 timeout 20 trafgen -o c0 -i "$WORK/udp.trafgen" -n "$FLOWS" -b 20000pps -P 1 >/dev/null 2>&1
  sleep 0.5
  local s0 t0 t1 s1 tx0 tx1
  s0=$(sink_count) tx0=$(stat_of "$C" c0 tx_packets) t0=$(now)
  in_ns "$C" taskset -c 0 timeout 60 trafgen -o c0 -i "$WORK/udp.trafgen" -n "$UDP_PACKETS" -P 1 >"$WORK/trafgen.log" 2>&1 ||
    echo "bench-system: trafgen: $(grep -v '^Cannot set' "$WORK/trafgen.log" | tail -3)" >&2
  t1=$(now)
  sleep 0.5
  s1=$(sink_count) tx1=$(stat_of "$C" c0 tx_packets)
  awk -v s=$((s1 - s0)) -v tx=$((tx1 - tx0)) -v t0="$t0" -v t1="$t1" \
    'BEGIN { d = t1 - t0; printf "%.0f %.0f %d %d\n", s / d, tx / d, s, tx }'
}

# Runs the TCP load; prints connections per second.
tcp_load() {
  in_ns "$C" taskset -c 0 timeout 120 ab -q -n 200 -c 8 -s 5 http://198.18.0.50/ >/dev/null 2>&1 || true
  in_ns "$C" taskset -c 0 timeout 120 ab -n "$TCP_CONNS" -c 32 -s 5 http://198.18.0.50/ >"$WORK/ab.log" 2>&1 || true
  local failed rate
  failed=$(sed -n 's/^Failed requests: *\([0-9]*\).*/\1/p' "$WORK/ab.log")
  rate=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$WORK/ab.log")
  if [[ -z $rate || ${failed:-1} -ne 0 ]]; then
    echo "bench-system: ab failed: $(tail -5 "$WORK/ab.log")" >&2
    echo 0
  else
    echo "$rate"
  fi
}

echo "== overlink on AF_PACKET (release), same prefix 198.18.0.0/24 on both sides, 1 worker on core 1" >&2
topology 18
cat >"$WORK/overlink.toml" <<EOF
accounts = ["provider", "consumer"]
[gateway]
io = "afpacket"
workers = 1
cores = [1]
state_dir = "$WORK/state"
[gateway.admin]
socket = "$WORK/admin.sock"
[[networks]]
name = "consumer"
interface = "gc"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "gp"
address = "198.18.0.1/24"
[[services]]
name = "web"
provider = "provider"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["consumer"]
auto_approval = ["consumer"]
[[services]]
name = "sink"
provider = "provider"
network = "provider"
backends = ["198.18.0.10:9"]
nat_ips = ["198.18.0.202"]
visibility = ["consumer"]
auto_approval = ["consumer"]
[[endpoints]]
name = "web"
account = "consumer"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "web"
[[endpoints]]
name = "sink"
account = "consumer"
network = "consumer"
address = "198.18.0.52"
ports = [9]
service = "sink"
EOF
ip netns exec "$G" "$OVERLINK" run --config "$WORK/overlink.toml" >"$WORK/overlink.log" 2>&1 &
GW=$!
PIDS+=($GW)
for _ in $(seq 200); do grep -qs "overlink: running" "$WORK/overlink.log" && break; sleep 0.05; done
grep -q "overlink: running" "$WORK/overlink.log" || { echo "bench-system: overlink did not start: $(cat "$WORK/overlink.log")" >&2; exit 1; }
read -r OL_PPS OL_OFFERED OL_SINK OL_SENT < <(udp_load)
OL_CPS=$(tcp_load)
kill -TERM "$GW"
wait "$GW" 2>/dev/null || true
sed -n '/totals at exit/,$s/^/  /p' "$WORK/overlink.log" >&2
cleanup

echo "== Linux kernel: nftables SNAT+DNAT with conntrack; provider prefix 198.19.0.0/24 (no VRF here)" >&2
topology 19
ip -n "$G" addr add 198.18.0.1/24 dev gc
ip -n "$G" addr add 198.18.0.50/32 dev gc
ip -n "$G" addr add 198.18.0.52/32 dev gc
ip -n "$G" addr add 198.19.0.1/24 dev gp
ip -n "$G" addr add 198.19.0.200/32 dev gp
in_ns "$G" sysctl -qw net.ipv4.ip_forward=1
in_ns "$G" nft -f - <<EOF
table ip olnat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 198.18.0.50 tcp dport 80 dnat to 198.19.0.10:8080
    ip daddr 198.18.0.52 udp dport 9 dnat to 198.19.0.10:9
  }
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "gp" snat to 198.19.0.200
  }
}
EOF
read -r K_PPS K_OFFERED K_SINK K_SENT < <(udp_load)
K_CPS=$(tcp_load)
in_ns "$G" sh -c 'echo conntrack entries: $(cat /proc/sys/net/netfilter/nf_conntrack_count)' >&2 || true
cleanup

echo "UDP 64 B, $FLOWS flows: overlink $OL_SINK of $OL_SENT frames reached the sink (offered ${OL_OFFERED} pps); kernel $K_SINK of $K_SENT (offered ${K_OFFERED} pps)" >&2
echo "bench system_udp64_overlink_afpacket $OL_PPS pps"
echo "bench system_udp64_kernel_nftables $K_PPS pps"
awk -v a="$OL_PPS" -v b="$K_PPS" 'BEGIN { printf "bench system_udp64_ratio_overlink_vs_kernel %.2f x\n", (b > 0 ? a / b : 0) }'
echo "bench system_tcp_conn_overlink_afpacket $OL_CPS conn/s"
echo "bench system_tcp_conn_kernel_nftables $K_CPS conn/s"
awk -v a="$OL_CPS" -v b="$K_CPS" 'BEGIN { printf "bench system_tcp_conn_ratio_overlink_vs_kernel %.2f x\n", (b > 0 ? a / b : 0) }'
echo "note: the kernel baseline's provider side is 198.19.0.0/24 (distinct prefixes: no VRF on this kernel); overlink's is 198.18.0.0/24, the same as the consumer's" >&2
