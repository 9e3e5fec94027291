//! `/metrics` from a real running server after a known sequence (endpoints created, approved and
//! rejected; worker reports with known per-endpoint packets and bytes and NAT port usage; known
//! datapath counters; known admin responses): `promtool check metrics` accepts it without a
//! warning, and the samples are exactly what was published.
//!
//! `promtool` comes with the Debian package `prometheus` (scripts/setup.sh installs it); without
//! it this test fails rather than skip.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use admin_http::{Limits, Listeners, Server, ServerError, Shutdown};
use control::{Api, Control, Tokens};
use datapath::{Counters, DropReason, Event, LinkStats, SharedCounters, Telemetry, WorkerReport};
use serde_json::{json, Value};

const READ_TOKEN: &str = "read-token-for-prometheus";
const BODY_LIMIT: usize = 4096;

struct Gateway {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: SocketAddr,
    telemetry: Arc<Telemetry>,
    counters: Vec<Arc<SharedCounters>>,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
    /// Statuses of every response this test received.
    statuses: BTreeMap<u16, u64>,
}

impl Gateway {
    fn start(workers: usize) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::open(common::config(&dir.path().join("state")), common::ports()).unwrap();
        let telemetry = Telemetry::new(workers);
        let counters: Vec<Arc<SharedCounters>> = (0..workers).map(|_| Arc::new(SharedCounters::default())).collect();
        let tokens = Tokens { admin: Some("admin-token-unused-here".into()), read: Some(READ_TOKEN.into()) };
        let api = Api::new(control, telemetry.clone(), counters.clone(), tokens);
        let socket = dir.path().join("admin.sock");
        let listeners = Listeners { unix: Some(socket.clone()), tcp: Some("127.0.0.1:0".parse().unwrap()) };
        let limits = Limits { max_body_bytes: BODY_LIMIT, ..Limits::default() };
        let mut server = Server::bind(&listeners, limits, api).unwrap();
        let counts = server.status_counts_handle();
        server.handler().count_server_responses(counts);
        let tcp = server.local_tcp_addr().unwrap();
        let shutdown = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run());
        Gateway {
            _dir: dir,
            socket,
            tcp,
            telemetry,
            counters,
            shutdown,
            thread: Some(thread),
            statuses: BTreeMap::new(),
        }
    }

    /// One request (`token`: over TCP with that bearer token, or `None` on the unix socket; `Some("")`
    /// is TCP without a token). Returns status and body.
    fn call(&mut self, token: Option<&str>, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: overlink\r\nConnection: close\r\n");
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        let mut raw = Vec::new();
        let timeout = Some(Duration::from_secs(20));
        let result = match token {
            None => {
                let mut s = UnixStream::connect(&self.socket).unwrap();
                s.set_read_timeout(timeout).unwrap();
                let _ = s.write_all(&bytes);
                s.read_to_end(&mut raw)
            }
            Some(_) => {
                let mut s = TcpStream::connect(self.tcp).unwrap();
                s.set_read_timeout(timeout).unwrap();
                let _ = s.write_all(&bytes);
                s.read_to_end(&mut raw)
            }
        };
        if let Err(e) = result {
            assert!(!raw.is_empty(), "no answer: {e}");
        }
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .expect("Content-Length");
        let body = raw[end + 4..].to_vec();
        assert_eq!(body.len(), length);
        *self.statuses.entry(status).or_default() += 1;
        (status, body)
    }

    fn json(&mut self, method: &str, path: &str, body: Option<Value>, expect: u16) -> Value {
        let body = body.map(|b| b.to_string().into_bytes());
        let (status, reply) = self.call(None, method, path, body.as_deref());
        assert_eq!(status, expect, "{method} {path}: {}", String::from_utf8_lossy(&reply));
        serde_json::from_slice(&reply).unwrap()
    }

    fn publish_report(&self, worker: usize, report: WorkerReport) {
        let mut report = report;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.telemetry.publish(worker, &mut report) {
            assert!(Instant::now() < deadline, "the telemetry lock stays busy");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("the server thread does not panic");
            if !std::thread::panicking() {
                result.expect("the server stops cleanly");
            }
        }
    }
}

/// Runs `promtool check metrics` on the file; returns (success, everything it printed).
fn promtool_check(file: &Path) -> (bool, String) {
    let input = std::fs::File::open(file).unwrap();
    let output = match Command::new("promtool").args(["check", "metrics"]).stdin(input).stderr(Stdio::piped()).output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed (Debian package `prometheus`): run scripts/setup.sh, which installs it; \
             /metrics cannot be checked without it"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), printed)
}

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition format (enough of it for what we write: no timestamps).
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "one TYPE per family: {name}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels in {line:?}"));
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(c) => value.push(c),
                                None => panic!("{line}"),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                    labels.insert(key, value);
                }
                (name.to_owned(), labels)
            }
        };
        assert!(types.contains_key(&name), "{name} has a TYPE line before its samples");
        samples.push((name, labels, value));
    }
    (samples, types)
}

/// The value of the one sample of `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let found: Vec<f64> = samples.iter().filter(|(n, l, _)| n == name && *l == want).map(|(_, _, v)| *v).collect();
    assert_eq!(found.len(), 1, "{name}{want:?}: {found:?}");
    found[0]
}

fn link_stats(packets: [u64; 2], bytes: [u64; 2], active_flows: u64, flows_created: u64) -> LinkStats {
    LinkStats { packets, bytes, active_flows, flows_created }
}

fn create(gw: &mut Gateway, name: &str, account: &str, last_octet: u8, alias: &str) -> (u32, String) {
    let v = gw.json(
        "POST",
        "/v1/endpoints",
        Some(json!({
            "name": name, "account": account, "network": "consumer",
            "address": Ipv4Addr::new(198, 18, 0, last_octet).to_string(), "service": alias,
        })),
        201,
    );
    (u32::try_from(v["link_id"].as_u64().unwrap()).unwrap(), v["state"].as_str().unwrap().to_owned())
}

#[test]
fn metrics_pass_promtool_and_match_what_was_published() {
    let mut gw = Gateway::start(2);
    let alias = gw.json("GET", "/v1/services", None, 200)[0]["alias"].as_str().unwrap().to_owned();

    // Endpoints: one pending, two approved (one by auto-approval), one rejected.
    let (_, s) = create(&mut gw, "a1", "team-a", 50, &alias);
    assert_eq!(s, "pending");
    let (c1, s) = create(&mut gw, "c1", "team-c", 51, &alias);
    assert_eq!(s, "approved");
    let (a2, _) = create(&mut gw, "a2", "team-a", 52, &alias);
    gw.json("POST", "/v1/endpoints/a2/approve", None, 200);
    let (a3, _) = create(&mut gw, "a3", "team-a", 53, &alias);
    gw.json("POST", "/v1/endpoints/a3/reject", Some(json!({"reason": "no"})), 200);
    gw.json("POST", "/v1/services/web/nat-ips", Some(json!({"ip": "198.18.0.201"})), 201);

    // Two workers' reports.
    let nat0: Ipv4Addr = "198.18.0.200".parse().unwrap();
    let nat1: Ipv4Addr = "198.18.0.201".parse().unwrap();
    let mut w0 = WorkerReport { passes: 4, active_flows: 3, ..WorkerReport::default() };
    w0.links.insert(c1, link_stats([10, 7], [1000, 700], 2, 3));
    w0.links.insert(a2, link_stats([4, 4], [400, 440], 1, 1));
    w0.nat_ips.insert(nat0, (5, 32000, 5));
    w0.nat_ips.insert(nat1, (0, 32000, 0));
    let mut w1 = WorkerReport { passes: 2, active_flows: 1, ..WorkerReport::default() };
    w1.links.insert(c1, link_stats([5, 1], [500, 100], 1, 2));
    w1.links.insert(a3, link_stats([9, 0], [540, 0], 0, 1)); // before the rejection
    w1.nat_ips.insert(nat0, (2, 32000, 2));
    w1.nat_ips.insert(nat1, (1, 32000, 1));
    gw.publish_report(0, w0);
    gw.publish_report(1, w1);

    // Two workers' counters.
    let mut k0 = Counters::default();
    let mut k1 = Counters::default();
    for _ in 0..7 {
        k0.drop(DropReason::EndpointNotApproved);
    }
    for _ in 0..3 {
        k0.drop(DropReason::NotForUs);
        k1.drop(DropReason::Ipv4BadChecksum);
    }
    k1.drop(DropReason::EndpointNotApproved);
    k0.events[Event::Forwarded as usize] = 100;
    k1.events[Event::Forwarded as usize] = 50;
    k0.events[Event::FlowsCreated as usize] = 4;
    k1.events[Event::FlowsCreated as usize] = 3;
    k0.events[Event::Received as usize] = 120;
    gw.counters[0].publish(&k0);
    gw.counters[1].publish(&k1);

    // Some errors, among them answers the server gives without the handler (413).
    let (s, _) = gw.call(None, "GET", "/v1/endpoints/nope", None);
    assert_eq!(s, 404);
    let (s, _) = gw.call(None, "POST", "/v1/endpoints", Some(b"{oops"));
    assert_eq!(s, 400);
    let (s, _) = gw.call(None, "POST", "/v1/endpoints", Some(&vec![b' '; BODY_LIMIT + 1]));
    assert_eq!(s, 413);
    let (s, _) = gw.call(Some(""), "GET", "/metrics", None);
    assert_eq!(s, 401);
    let (s, _) = gw.call(Some(READ_TOKEN), "POST", "/v1/endpoints/a1/approve", None);
    assert_eq!(s, 403);
    let (s, _) = gw.call(None, "PUT", "/metrics", None);
    assert_eq!(s, 405);

    // Scrape (over TCP with the read token, as Prometheus would).
    let expected_statuses = gw.statuses.clone();
    let (status, body) = gw.call(Some(READ_TOKEN), "GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let (ok, printed) = promtool_check(file.path());
    assert!(ok && printed.trim().is_empty(), "promtool check metrics:\n{printed}\n--- metrics:\n{text}");

    let (samples, types) = parse(&text);
    for (name, kind) in &types {
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has HELP");
    }
    let w = "web";
    // Packets and bytes per endpoint and direction, summed over workers.
    let per_link: [(&str, [f64; 2], [f64; 2]); 4] = [
        ("a1", [0.0, 0.0], [0.0, 0.0]),
        ("c1", [15.0, 8.0], [1500.0, 800.0]),
        ("a2", [4.0, 4.0], [400.0, 440.0]),
        ("a3", [9.0, 0.0], [540.0, 0.0]),
    ];
    for (endpoint, packets, bytes) in per_link {
        for (d, direction) in ["to_service", "to_consumer"].iter().enumerate() {
            let labels = [("service", w), ("endpoint", endpoint), ("direction", direction)];
            assert_eq!(value(&samples, "overlink_packets_total", &labels), packets[d], "{endpoint} {direction}");
            assert_eq!(value(&samples, "overlink_bytes_total", &labels), bytes[d], "{endpoint} {direction}");
        }
    }
    assert_eq!(samples.iter().filter(|(n, _, _)| n == "overlink_packets_total").count(), 8, "no other series");
    let ep = |e: &'static str| [("service", w), ("endpoint", e)];
    assert_eq!(value(&samples, "overlink_endpoint_active_flows", &ep("c1")), 3.0);
    assert_eq!(value(&samples, "overlink_endpoint_active_flows", &ep("a2")), 1.0);
    assert_eq!(value(&samples, "overlink_endpoint_active_flows", &ep("a1")), 0.0);
    assert_eq!(value(&samples, "overlink_endpoint_flows_created_total", &ep("c1")), 5.0);
    assert_eq!(value(&samples, "overlink_endpoint_flows_created_total", &ep("a3")), 1.0);

    // Endpoints by state.
    for (state, n) in [("pending", 1.0), ("approved", 2.0), ("rejected", 1.0), ("disconnected", 0.0)] {
        assert_eq!(value(&samples, "overlink_endpoints", &[("state", state)]), n, "{state}");
    }
    // Flows over all workers.
    assert_eq!(value(&samples, "overlink_active_flows", &[]), 4.0);
    assert_eq!(value(&samples, "overlink_flows_created_total", &[]), 7.0);
    assert_eq!(value(&samples, "overlink_new_flows_per_second", &[]), 0.0, "no rate before a second scrape");
    // Drops by reason (every reason present), events.
    for r in DropReason::ALL {
        let expected = match r {
            DropReason::EndpointNotApproved => 8.0,
            DropReason::NotForUs | DropReason::Ipv4BadChecksum => 3.0,
            _ => 0.0,
        };
        assert_eq!(value(&samples, "overlink_drops_total", &[("reason", r.name())]), expected, "{}", r.name());
    }
    assert_eq!(value(&samples, "overlink_datapath_events_total", &[("event", "forwarded")]), 150.0);
    assert_eq!(value(&samples, "overlink_datapath_events_total", &[("event", "rx")]), 120.0);
    assert_eq!(value(&samples, "overlink_datapath_events_total", &[("event", "flows_created")]), 7.0);
    assert_eq!(
        samples.iter().filter(|(n, _, _)| n == "overlink_datapath_events_total").count(),
        Event::COUNT,
        "every event"
    );
    // NAT ports per NAT IP, summed over workers.
    let nat = |ip: &'static str| [("service", w), ("nat_ip", ip)];
    assert_eq!(value(&samples, "overlink_nat_ports_used", &nat("198.18.0.200")), 7.0);
    assert_eq!(value(&samples, "overlink_nat_ports_used", &nat("198.18.0.201")), 1.0);
    assert_eq!(value(&samples, "overlink_nat_ports_capacity", &nat("198.18.0.200")), 64000.0);
    assert_eq!(value(&samples, "overlink_nat_ports_capacity", &nat("198.18.0.201")), 64000.0);
    // Admin responses by status: exactly what this test received before the scrape, including
    // the 413 the server sent without asking the handler.
    let counted: BTreeMap<u16, f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "overlink_admin_requests_total")
        .map(|(_, l, v)| (l["status"].parse().unwrap(), *v))
        .collect();
    let expected: BTreeMap<u16, f64> = expected_statuses.iter().map(|(s, n)| (*s, *n as f64)).collect();
    assert_eq!(counted, expected);
    assert_eq!(expected_statuses.get(&413), Some(&1));

    // The values follow the counters: publish more, scrape again.
    k1.drop(DropReason::EndpointNotApproved);
    k1.events[Event::FlowsCreated as usize] += 10;
    gw.counters[1].publish(&k1);
    std::thread::sleep(Duration::from_millis(600)); // the rate needs half a second between scrapes
    let (_, body) = gw.call(None, "GET", "/metrics", None);
    let text = String::from_utf8(body).unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let (ok, printed) = promtool_check(file.path());
    assert!(ok && printed.trim().is_empty(), "promtool check metrics (second scrape):\n{printed}");
    let (samples, _) = parse(&text);
    assert_eq!(value(&samples, "overlink_drops_total", &[("reason", "endpoint_not_approved")]), 9.0);
    assert_eq!(value(&samples, "overlink_flows_created_total", &[]), 17.0);
    let rate = value(&samples, "overlink_new_flows_per_second", &[]);
    assert!(rate > 0.0 && rate <= 10.0 / 0.6, "10 flows over at least 0.6 s: {rate}");
    assert_eq!(
        value(&samples, "overlink_admin_requests_total", &[("status", "200")]),
        expected_statuses[&200] as f64 + 1.0
    );
}

#[test]
fn promtool_is_a_real_check() {
    // Guard against a check that passes anything: promtool must reject a counter without `_total`
    // and a malformed line.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "# HELP bad A counter.\n# TYPE bad counter\nbad 1\n").unwrap();
    let (ok, printed) = promtool_check(file.path());
    assert!(!ok || !printed.trim().is_empty(), "promtool accepted a counter without _total");
    std::fs::write(file.path(), "# TYPE x gauge\nx{a=\"1} 1\n").unwrap();
    let (ok, _) = promtool_check(file.path());
    assert!(!ok, "promtool accepted a malformed line");
}
