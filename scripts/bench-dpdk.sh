#!/usr/bin/env bash
# DPDK benchmark: overlink doing NAT on every packet vs dpdk-testpmd --forward-mode=io, on the same
# vdevs, the same input, in the same run.
#
# Input: 64-byte frames (60 bytes + FCS) of UDP over 65,536 established flows (BENCH_FLOWS; 16 consumer
# addresses x 4,096 ports, 198.18.0.0/24, towards one endpoint), replayed at full speed by
# net_pcap0 (rx_pcap=..., infinite_rx=1); net_pcap1 has no tx file, so what is sent to it is
# counted and freed. net_pcap1 receives one ARP request from the backend at start, which tells
# overlink its MAC. Both programs poll with one core (lcore/worker on CPU 1); each runs for
# BENCH_SECONDS (default 5) after a warm-up. No packet leaves the process: these are software
# devices.
#
# Prints `bench <name> <value> <unit>` lines: both rates, and overlink / testpmd.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_MEASURED=${BENCH_SECONDS:-5}
FLOWS=${BENCH_FLOWS:-65536} # at most 65536 (16 addresses x 4096 ports)
work=$(mktemp -d /tmp/overlink-bench-dpdk.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work" "/var/run/dpdk/ol-bench-tp-$$" "/var/run/dpdk/ol-bench-ol-$$"
}
trap cleanup EXIT

for tool in dpdk-testpmd python3 pkg-config; do
  command -v "$tool" >/dev/null || { echo "bench-dpdk: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done

echo "bench-dpdk: building overlink (release, --features dpdk)" >&2
cargo build --release --locked --features dpdk --bin overlink >&2
# Another build in the shared target directory may replace the binary while we run: use a copy.
cp target/release/overlink "$work/overlink"

# net_pcap's MAC addresses are fixed: 02:70:63:61:70:<index of the pcap device in the process>.
PORT0_MAC=02:70:63:61:70:00
python3 - "$work" "$PORT0_MAC" "$FLOWS" <<'PY'
import struct, sys
work, mac, flows = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3])

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)))
            f.write(fr)

def ip4(a):
    return bytes(int(x) for x in a.split("."))

client_mac = bytes.fromhex("020000000007")
endpoint = ip4("198.18.0.50")
payload = b"\0" * 18  # 14 + 20 + 8 + 18 = 60 bytes, 64 on the wire with the FCS
frames = []
for i in range(flows):
    src = ip4("198.18.0.%d" % (100 + i // 4096))
    sport = 10000 + i % 4096
    udp_len = 8 + len(payload)
    pseudo = src + endpoint + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, 80, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, i & 0xFFFF, 0, 64, 17, 0, src, endpoint)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    frames.append(mac + client_mac + b"\x08\x00" + hdr + udp)
pcap(work + "/consumer.pcap", frames)

# The backend (198.18.0.10) asks for the gateway's provider address (198.18.0.1).
backend_mac = bytes.fromhex("020000000010")
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, backend_mac, ip4("198.18.0.10"), b"\0" * 6, ip4("198.18.0.1"))
pcap(work + "/provider.pcap", [b"\xff" * 6 + backend_mac + b"\x08\x06" + arp + b"\0" * 18])
PY

vdevs=("--vdev=net_pcap0,rx_pcap=$work/consumer.pcap,infinite_rx=1" "--vdev=net_pcap1,rx_pcap=$work/provider.pcap")

# ---- dpdk-testpmd, io forwarding: port 0 -> port 1.
testpmd_log=$work/testpmd.log
dpdk-testpmd -l 0-1 --no-huge -m 1024 --no-pci --no-shconf --file-prefix="ol-bench-tp-$$" "${vdevs[@]}" \
  -- --forward-mode=io --auto-start --stats-period=1 --nb-cores=1 --total-num-mbufs=131072 \
  </dev/null >"$testpmd_log" 2>&1 &
pids+=($!)
sleep $((SECONDS_MEASURED + 3))
kill -INT "${pids[-1]}"
wait "${pids[-1]}" || true
# testpmd prints, every second, a block per port; port 1's Tx-pps is the forwarding rate. Take the
# median of the samples after the first two seconds.
testpmd_pps=$(tr -d '\033' <"$testpmd_log" | awk '
  /NIC statistics for port 1/ { p1 = 1 } /NIC statistics for port 0/ { p1 = 0 }
  p1 && /Tx-pps:/ { n++; if (n > 2) print $2 }' | sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }')
if [[ "$testpmd_pps" == 0 ]]; then
  echo "bench-dpdk: testpmd forwarded nothing; its log:" >&2
  tail -30 "$testpmd_log" >&2
  exit 1
fi

# ---- overlink: NAT from the consumer network to the provider network on every packet.
cat >"$work/overlink.toml" <<TOML
accounts = ["provider-b", "team-a"]
[gateway]
io = "dpdk"
workers = 1
cores = [1]
state_dir = "$work/state"
flow_capacity = 262144
dpdk_args = ["-l", "0", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--file-prefix=ol-bench-ol-$$", "${vdevs[0]}", "${vdevs[1]}"]
[gateway.admin]
socket = "$work/admin.sock"
[[networks]]
name = "consumer"
interface = "net_pcap0"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "net_pcap1"
address = "198.18.0.1/24"
[[services]]
name = "bench"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200", "198.18.0.201"]
visibility = ["team-a"]
auto_approval = ["team-a"]
[[endpoints]]
name = "bench-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "bench"
TOML
overlink_log=$work/overlink.log
"$work/overlink" run --config "$work/overlink.toml" >"$overlink_log" 2>&1 &
pids+=($!)
gw=${pids[-1]}
for _ in $(seq 100); do
  [[ -S "$work/admin.sock" ]] && break
  kill -0 "$gw" 2>/dev/null || { echo "bench-dpdk: overlink did not start:" >&2; tail -20 "$overlink_log" >&2; exit 1; }
  sleep 0.1
done
grep -q "DPDK port 0 (net_pcap0, net_pcap): MAC $PORT0_MAC" "$overlink_log" || {
  echo "bench-dpdk: net_pcap0 does not have the MAC the pcap was made for ($PORT0_MAC):" >&2
  grep "DPDK port" "$overlink_log" >&2
  exit 1
}
stat() { # prints "<seconds since epoch> <forwarded> <flows_created>"
  local json
  json=$("$work/overlink" ctl --json --socket "$work/admin.sock" stats)
  python3 -c 'import json,sys,time; s=json.loads(sys.argv[1])["events"]; print(time.time(), s["forwarded"], s["flows_created"])' "$json"
}
# Warm-up: every flow created (the first pass of the file goes through the slow path).
for _ in $(seq 50); do
  read -r _ _ created < <(stat)
  ((created >= FLOWS)) && break
  sleep 0.2
done
sleep 1
read -r t0 f0 c0 < <(stat)
sleep "$SECONDS_MEASURED"
read -r t1 f1 c1 < <(stat)
kill -TERM "$gw"
wait "$gw" || true
if ((c1 < FLOWS || c1 != c0)); then
  echo "bench-dpdk: flows created $c0 -> $c1 (expected $FLOWS, all established before measuring)" >&2
  tail -25 "$overlink_log" >&2
  exit 1
fi
overlink_pps=$(python3 -c "print(($f1 - $f0) / ($t1 - $t0))")
grep -E "^(port|gateway|  drop)" "$overlink_log" | sed 's/^/bench-dpdk: overlink: /' >&2

python3 - "$testpmd_pps" "$overlink_pps" "$FLOWS" <<'PY'
import sys
testpmd, overlink, flows = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print("bench dpdk_testpmd_io_64B_%s_flows %.3f Mpps" % (flows, testpmd / 1e6))
print("bench dpdk_overlink_nat_64B_%s_flows %.3f Mpps" % (flows, overlink / 1e6))
print("bench dpdk_overlink_vs_testpmd %.3f ratio" % (overlink / testpmd))
print("bench dpdk_overlink_ns_per_packet %.1f ns" % (1e9 / overlink if overlink else 0))
PY
