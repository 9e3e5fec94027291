//! End to end on DPDK: the gateway (`overlink run` with `io = "dpdk"`) in its own network
//! namespace, its ports DPDK `net_af_packet` vdevs on the gateway's ends of two veth pairs,
//! between a consumer namespace and a provider namespace that use the SAME prefix 198.18.0.0/24.
//!
//! * a real HTTP client (curl) reaches a real HTTP server through the endpoint after approval
//!   with `overlink ctl`;
//! * a testpmd-style run: a fixed number of UDP packets over many flows, and at exit the
//!   per-port and device statistics account for every one (sent = received + counted drops);
//! * faults: the EAL failing to start is one line and exit status 1; a veth deleted under a
//!   running vdev does not crash the gateway.
//!
//! Needs root (namespaces) and a build with `--features dpdk`. The tests take a lock so that
//! only one gateway polls at a time (the machine may have two cores). Every namespace and process
//! is removed at the end, also when an assertion fails. No packet can leave the namespaces.
#![cfg(feature = "dpdk")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One gateway at a time: each busy-polls its cores.
static ONE_GATEWAY: Mutex<()> = Mutex::new(());

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = sh(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Namespaces and processes of one test run, removed on drop.
struct Topology {
    names: [String; 3],
    tag: String,
    children: Vec<(String, Child)>,
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
        // The EAL leaves its (empty) runtime directory behind.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/ol-e2e-{}", self.tag));
    }
}

impl Topology {
    fn new() -> Topology {
        assert!(
            sh(&["id", "-u"]).stdout.starts_with(b"0"),
            "this test needs root (network namespaces, AF_PACKET under DPDK); run the suite as root"
        );
        let serial = ONE_GATEWAY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}d{n}", std::process::id() % 100_000);
        let names = [format!("odc{tag}"), format!("odg{tag}"), format!("odp{tag}")];
        let t = Topology {
            names: names.clone(),
            tag,
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            _serial: serial,
        };
        let [c, g, p] = &names;
        for n in &names {
            must(&["ip", "netns", "add", n]);
            must(&["ip", "-n", n, "link", "set", "lo", "up"]);
            // No IPv6: no neighbour discovery or MLD frames to account for.
            for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
                let _ = sh(&["ip", "netns", "exec", n, "sysctl", "-q", "-w", key]);
            }
        }
        must(&["ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "gc", "netns", g]);
        must(&["ip", "link", "add", "p0", "netns", p, "type", "veth", "peer", "name", "gp", "netns", g]);
        // The same prefix on both sides: the consumer is .7, the backend .10.
        must(&["ip", "-n", c, "addr", "add", "198.18.0.7/24", "dev", "c0"]);
        must(&["ip", "-n", p, "addr", "add", "198.18.0.10/24", "dev", "p0"]);
        for (ns, dev) in [(c, "c0"), (p, "p0"), (g, "gc"), (g, "gp")] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            // Offloads off on every end: net_af_packet neither completes checksums nor splits
            // super-frames.
            let _ = sh(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off", "tx", "off",
            ]);
        }
        t
    }

    fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn_in(&mut self, ns: usize, role: &str, args: &[&str]) {
        let file = std::fs::File::create(self.path(&format!("{role}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[ns]])
            .args(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.children.push((role.to_string(), child));
    }

    fn take(&mut self, role: &str) -> Child {
        let i = self.children.iter().position(|(r, _)| r == role).unwrap();
        self.children.remove(i).1
    }

    fn log(&self, role: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{role}.log"))).unwrap_or_default()
    }

    fn curl(&self, url: &str) -> (String, String) {
        let out = sh(&["ip", "netns", "exec", self.ns(0), "curl", "-s", "-m", "3", "-w", "\n%{http_code}", url]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (body.to_string(), code.to_string())
    }

    /// Writes the configuration: the gateway on net_af_packet vdevs over `gc` and `gp`.
    fn write_config(&self, workers: usize) -> PathBuf {
        let eal = [
            "-l".to_string(),
            "0".into(),
            "--no-huge".into(),
            "-m".into(),
            "256".into(),
            "--no-pci".into(),
            "--no-shconf".into(),
            format!("--file-prefix=ol-e2e-{}", self.tag),
            "--log-level=lib.eal:warning".into(),
            format!("--vdev=net_af_packet0,iface=gc,qpairs={workers}"),
            format!("--vdev=net_af_packet1,iface=gp,qpairs={workers}"),
        ];
        let eal: Vec<String> = eal.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            r#"
accounts = ["provider-b", "team-a"]
[gateway]
io = "dpdk"
workers = {workers}
state_dir = "{dir}/state"
flow_capacity = 65536
dpdk_args = [{eal}]
[gateway.admin]
socket = "{dir}/admin.sock"
[[networks]]
name = "consumer"
interface = "net_af_packet0"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "net_af_packet1"
address = "198.18.0.1/24"
[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]
[[endpoints]]
name = "web-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "web"
"#,
            dir = self.dir.path().display(),
            eal = eal.join(", ")
        );
        let path = self.path("overlink.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the gateway in its namespace; returns the admin socket once it is up.
    fn start_gateway(&mut self, workers: usize) -> PathBuf {
        let conf = self.write_config(workers);
        self.spawn_in(1, "gateway", &[env!("CARGO_BIN_EXE_overlink"), "run", "--config", conf.to_str().unwrap()]);
        let socket = self.path("admin.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the gateway did not start: {}", self.log("gateway"));
            let exited = self.children.iter_mut().find(|(r, _)| r == "gateway").unwrap().1.try_wait().unwrap();
            assert!(exited.is_none(), "the gateway exited ({exited:?}): {}", self.log("gateway"));
            sleep(Duration::from_millis(50));
        }
        socket
    }

    /// Stops the gateway with SIGTERM; returns its exit status and log.
    fn stop_gateway(&mut self) -> (std::process::ExitStatus, String) {
        let gw = self.take("gateway");
        must(&["kill", "-TERM", &gw.id().to_string()]);
        let out = gw.wait_with_output().unwrap();
        (out.status, self.log("gateway"))
    }
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ctl(socket: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_overlink"))
        .args(["ctl", "--json", "--socket"])
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

/// The numbers after `key` on the first line of `log` that starts with `prefix`.
fn field(log: &str, prefix: &str, key: &str) -> u64 {
    let line = log.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in {log}"));
    let rest = &line[line.find(key).unwrap_or_else(|| panic!("no {key:?} in {line:?}")) + key.len()..];
    rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key:?} in {line:?}"))
}

#[test]
fn curl_reaches_a_server_with_the_same_prefix_through_dpdk_vdevs_after_approval() {
    let mut t = Topology::new();
    std::fs::write(t.path("index.html"), "hello over DPDK\n").unwrap();
    let www = t.dir.path().to_str().unwrap().to_string();
    t.spawn_in(2, "http", &["python3", "-m", "http.server", "8080", "--bind", "198.18.0.10", "--directory", &www]);
    let socket = t.start_gateway(2);
    sleep(Duration::from_millis(500)); // let http.server bind
    let log = t.log("gateway");
    assert!(log.contains("DPDK port 0 (net_af_packet0, net_af_packet)") && log.contains("link up"), "{log}");

    let (_, code) = t.curl("http://198.18.0.50/index.html");
    assert_eq!(code, "000", "a pending endpoint must pass nothing");

    let out = Command::new(env!("CARGO_BIN_EXE_overlink"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["endpoint", "approve", "web-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 0..10 {
        let (body, code) = t.curl("http://198.18.0.50/index.html");
        assert_eq!((code.as_str(), body.as_str()), ("200", "hello over DPDK\n"), "connection {i}");
    }
    let log = t.log("http");
    assert!(log.contains("198.18.0.200 - - ") && log.contains("GET /index.html"), "{log}");
    assert!(!log.contains("198.18.0.7 - - "), "the server saw the NAT address: {log}");
    let ping = sh(&["ip", "netns", "exec", t.ns(0), "ping", "-c", "2", "-W", "1", "198.18.0.50"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    let (status, log) = t.stop_gateway();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("totals at exit"), "{log}");
    assert!(log.contains("drop endpoint_not_approved"), "the pending attempt was counted: {log}");
    // The device counters are printed, and what the device received the workers saw.
    let device_rx = field(&log, "port 0 (net_af_packet0) device:", "RX-packets:");
    let port_rx = field(&log, "port 0 (net_af_packet0):", "RX-packets:");
    let port_dropped = field(&log, "port 0 (net_af_packet0):", "RX-dropped:");
    assert_eq!(device_rx, port_rx + port_dropped, "{log}");
    assert!(port_rx >= 10 * 5, "{log}");
}

/// Sends `count` UDP datagrams (64-byte frames) round-robin from `flows` source ports, paced,
/// and prints how many the kernel accepted.
const GENERATOR: &str = r#"
import socket, sys, time
count, flows = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.0.7", 20000 + i))
    s.connect(("198.18.0.50", 80))
    socks.append(s)
payload = b"x" * 22
sent = 0
for i in range(count):
    socks[i % flows].send(payload)
    sent += 1
    if i % 100 == 99:
        time.sleep(0.002)
print("sent", sent)
"#;

/// Counts UDP datagrams on 198.18.0.10:8080 until the file `argv[1]` exists, then prints the count.
const SINK: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
s.bind(("198.18.0.10", 8080))
s.settimeout(0.2)
print("ready", flush=True)
got = 0
while True:
    try:
        s.recv(2048)
        got += 1
    except socket.timeout:
        if os.path.exists(sys.argv[1]):
            break
print("received", got, flush=True)
"#;

#[test]
fn a_fixed_number_of_packets_over_many_flows_is_accounted_for_at_exit() {
    const COUNT: u64 = 20_000;
    const FLOWS: u64 = 1_000;
    let mut t = Topology::new();
    let stop = t.path("sink.stop");
    t.spawn_in(2, "sink", &["python3", "-c", SINK, stop.to_str().unwrap()]);
    let socket = t.start_gateway(2);
    ctl(&socket, &["endpoint", "approve", "web-a"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.log("sink").contains("ready") {
        assert!(Instant::now() < deadline, "the sink did not start: {}", t.log("sink"));
        sleep(Duration::from_millis(50));
    }
    // Resolve the endpoint's MAC first, so that the consumer's kernel queues nothing (and drops
    // nothing) while it ARPs. The echo is answered by the gateway: a local packet, not counted.
    let ping = sh(&["ip", "netns", "exec", t.ns(0), "ping", "-c", "1", "-W", "2", "198.18.0.50"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    let out = sh(&["ip", "netns", "exec", t.ns(0), "python3", "-c", GENERATOR, &COUNT.to_string(), &FLOWS.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().strip_prefix("sent ").unwrap().parse().unwrap();
    assert_eq!(sent, COUNT);
    sleep(Duration::from_secs(1)); // let the last packets through
    let stats: serde_json::Value = serde_json::from_str(&ctl(&socket, &["stats"])).unwrap();
    std::fs::write(&stop, "").unwrap();
    let sink = t.take("sink").wait_with_output().unwrap();
    assert!(sink.status.success());
    let sink_log = t.log("sink");
    let received: u64 = sink_log
        .lines()
        .find_map(|l| l.strip_prefix("received "))
        .unwrap_or_else(|| panic!("{sink_log}"))
        .parse()
        .unwrap();

    let (status, log) = t.stop_gateway();
    assert!(status.success(), "{status}: {log}");
    let p0 = "port 0 (net_af_packet0):";
    let p1 = "port 1 (net_af_packet1):";
    let d0 = "port 0 (net_af_packet0) device:";
    let d1 = "port 1 (net_af_packet1) device:";
    let g = "gateway:";
    let (g_received, forwarded, local, dropped) =
        (field(&log, g, "received"), field(&log, g, "forwarded"), field(&log, g, "local"), field(&log, g, "dropped"));
    // The datapath's own invariant: every received frame has exactly one outcome.
    assert_eq!(g_received, forwarded + local + dropped, "{log}");
    // What the devices counted is what the workers saw and sent.
    assert_eq!(
        field(&log, d0, "RX-packets:"),
        field(&log, p0, "RX-packets:") + field(&log, p0, "RX-dropped:"),
        "{log}"
    );
    // (A driver counts a frame it took but could not send in TX-errors, not TX-packets.)
    assert_eq!(field(&log, d1, "TX-packets:") + field(&log, d1, "TX-errors:"), field(&log, p1, "TX-packets:"), "{log}");
    // Every datagram sent was received by the sink or dropped under a counter: in the device
    // (missed, errors), in the backend (rx/tx dropped) or in the datapath (one drop reason).
    let counted_drops = field(&log, d0, "RX-missed:")
        + field(&log, d0, "RX-errors:")
        + field(&log, p0, "RX-dropped:")
        + dropped
        + field(&log, p1, "TX-dropped:")
        + field(&log, d1, "TX-errors:");
    assert_eq!(sent, received + counted_drops, "sent {sent} received {received} drops {counted_drops}: {log}");
    // Only the datagrams were forwarded (ARP and the echo are local), and nearly all arrived.
    assert_eq!(forwarded, received + field(&log, p1, "TX-dropped:") + field(&log, d1, "TX-errors:"), "{log}");
    assert!(received * 100 >= sent * 95, "received {received} of {sent}: {log}");
    // Each flow was created once (by the worker its packets were steered to), and every frame
    // the ports received reached the datapath.
    assert_eq!(stats["events"]["flows_created"].as_u64(), Some(FLOWS), "{stats}");
    assert_eq!(field(&log, p0, "RX-packets:") + field(&log, p1, "RX-packets:"), g_received, "{log}");
    eprintln!("sent {sent} received {received} counted drops {counted_drops}\n{log}");
}

#[test]
fn eal_start_up_failures_are_one_line_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let base = |args: &str, iface: &str| {
        format!(
            r#"
[gateway]
io = "dpdk"
state_dir = "{dir}/state"
dpdk_args = [{args}]
[gateway.admin]
socket = "{dir}/admin.sock"
[[networks]]
name = "consumer"
interface = "{iface}"
address = "198.18.0.1/24"
"#,
            dir = dir.path().display()
        )
    };
    // A pcap file with no packet: net_pcap with one rx file has one queue pair.
    let empty_pcap = dir.path().join("empty.pcap");
    let header: Vec<u8> =
        [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4], 65535u32.to_le_bytes(), 1u32.to_le_bytes()]
            .concat();
    std::fs::write(&empty_pcap, header).unwrap();
    // The EAL arguments of each case: the common ones, then `extra`.
    let eal = |extra: &str| {
        let prefix = format!("--file-prefix=ol-e2e-fail-{}", std::process::id());
        ["-l", "0", "--no-huge", "-m", "128", "--no-pci", "--no-shconf", &prefix, extra]
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cases = [
        (
            base(&eal("--vdev=net_bogus0"), "net_bogus0"),
            "DPDK EAL could not start: No such device: a --vdev/-a device could not be parsed",
        ),
        (
            base(&eal("--bogus-option"), "net_null0"),
            "DPDK EAL could not start: Invalid argument: invalid EAL arguments",
        ),
        (base(&eal("--vdev=net_null0,no-rx=1"), "net_null7"), "no DPDK port named \"net_null7\" (ports: net_null0)"),
        (
            base(&eal(&format!("--vdev=net_pcap0,rx_pcap={}", empty_pcap.display())), "net_pcap0")
                .replace("[gateway]\n", "[gateway]\nworkers = 2\n"),
            "DPDK port net_pcap0: rx has 1 queue(s) but 2 worker(s) need one each",
        ),
    ];
    let _cleanup = RemoveOnDrop(PathBuf::from(format!("/var/run/dpdk/ol-e2e-fail-{}", std::process::id())));
    for (config, expected) in cases {
        let path = dir.path().join("overlink.toml");
        std::fs::write(&path, &config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_overlink"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A start-up failure is quick; a gateway that starts instead would run forever.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the gateway started instead of failing with {expected:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(last.starts_with("overlink: ") && last.contains(expected), "last line {last:?} of {stderr}");
    }
}

#[test]
fn a_veth_deleted_under_a_running_vdev_does_not_crash_the_gateway() {
    let mut t = Topology::new();
    std::fs::write(t.path("index.html"), "still here\n").unwrap();
    let www = t.dir.path().to_str().unwrap().to_string();
    t.spawn_in(2, "http", &["python3", "-m", "http.server", "8080", "--bind", "198.18.0.10", "--directory", &www]);
    let socket = t.start_gateway(1);
    sleep(Duration::from_millis(500));
    ctl(&socket, &["endpoint", "approve", "web-a"]);
    // The backend's MAC is resolved now, so new flows are forwarded towards it at once.
    let (body, code) = t.curl("http://198.18.0.50/index.html");
    assert_eq!((code.as_str(), body.as_str()), ("200", "still here\n"));

    // The provider side goes away under net_af_packet1 (deleting gp deletes its peer p0 too),
    // while the consumer keeps sending: the gateway keeps forwarding onto the vanished device.
    must(&["ip", "-n", t.ns(1), "link", "del", "gp"]);
    let out = sh(&["ip", "netns", "exec", t.ns(0), "python3", "-c", GENERATOR, "2000", "100"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sleep(Duration::from_millis(500));
    let running = t.children.iter_mut().find(|(r, _)| r == "gateway").unwrap().1.try_wait().unwrap();
    assert!(running.is_none(), "the gateway exited ({running:?}): {}", t.log("gateway"));
    // It still answers on the consumer side and on the admin API.
    let ping = sh(&["ip", "netns", "exec", t.ns(0), "ping", "-c", "1", "-W", "1", "198.18.0.50"]);
    assert!(ping.status.success(), "the consumer side still works: {}", String::from_utf8_lossy(&ping.stdout));
    let stats: serde_json::Value = serde_json::from_str(&ctl(&socket, &["stats"])).unwrap();
    assert!(stats["events"]["forwarded"].as_u64().unwrap() >= 2000, "{stats}");

    let (status, log) = t.stop_gateway();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("totals at exit"), "{log}");
    // What could not be sent was counted: by the driver (TX-errors) or by us (TX-dropped).
    let failed = field(&log, "port 1 (net_af_packet1) device:", "TX-errors:")
        + field(&log, "port 1 (net_af_packet1):", "TX-dropped:");
    assert!(failed > 0, "{log}");
}
