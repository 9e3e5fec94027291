//! The admin API against a real running server (`admin_http::Server` + `control::Api`) on a unix
//! socket and on TCP: every route, every error status, the auth matrix for every mutating route
//! (a refused request changes nothing, down to the bytes of the state directory), the audit log,
//! the 503s (audit log unwritable, too many connections), 408, 413, the socket's mode, and the
//! statuses `openapi.json` documents against the statuses the routes really return.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use admin_http::{Limits, Listeners, Server, ServerError, Shutdown};
use control::{Api, Control, Tokens, ROUTES};
use datapath::{FlowSample, SharedCounters, Telemetry, WorkerReport};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-0123456789abcdef";
const READ_TOKEN: &str = "read-0123456789abcdef";
/// Same length as the admin token, one byte off.
const WRONG_TOKEN: &str = "admin-0123456789abcdeF";
const BODY_LIMIT: usize = 16 * 1024;
const NAT_IP: &str = "198.18.0.200";

// ---------------------------------------------------------------------------------------------
// The gateway under test
// ---------------------------------------------------------------------------------------------

struct Gateway {
    dir: tempfile::TempDir,
    socket: PathBuf,
    tcp: SocketAddr,
    telemetry: Arc<Telemetry>,
    shutdown: Shutdown,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

struct Options {
    config: String,
    limits: Limits,
    /// Point `<state_dir>/audit.log` at /dev/full after the first start (aliases written).
    break_audit: bool,
}

impl Options {
    fn new(state_dir: &Path) -> Options {
        Options {
            config: common::config_text(state_dir),
            limits: Limits { max_body_bytes: BODY_LIMIT, ..Limits::default() },
            break_audit: false,
        }
    }
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_with(|_| {})
    }

    fn start_with(adjust: impl FnOnce(&mut Options)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let mut options = Options::new(&state_dir);
        adjust(&mut options);
        let config = config::parse(&options.config).expect("test configuration");
        if options.break_audit {
            // The first start writes the alias (and config-declared endpoints); then the log fills up.
            drop(Control::open(config.clone(), common::ports()).unwrap());
            std::fs::remove_file(state_dir.join("audit.log")).unwrap();
            std::os::unix::fs::symlink("/dev/full", state_dir.join("audit.log")).unwrap();
        }
        let control = Control::open(config, common::ports()).unwrap();
        let telemetry = Telemetry::new(1);
        let counters = vec![Arc::new(SharedCounters::default())];
        let tokens = Tokens { admin: Some(ADMIN_TOKEN.into()), read: Some(READ_TOKEN.into()) };
        let api = Api::new(control, telemetry.clone(), counters, tokens);
        let socket = dir.path().join("admin.sock");
        let listeners = Listeners { unix: Some(socket.clone()), tcp: Some("127.0.0.1:0".parse().unwrap()) };
        let mut server = Server::bind(&listeners, options.limits, api).unwrap();
        let counts = server.status_counts_handle();
        server.handler().count_server_responses(counts);
        let tcp = server.local_tcp_addr().unwrap();
        let shutdown = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run());
        Gateway { dir, socket, tcp, telemetry, shutdown, thread: Some(thread) }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn unix(&self) -> Client {
        Client::new(Via::Unix(self.socket.clone()))
    }

    fn tcp(&self, token: Option<&str>) -> Client {
        Client::new(Via::Tcp(self.tcp, token.map(|t| format!("Bearer {t}"))))
    }

    /// A TCP client with a raw `Authorization` value.
    fn tcp_authorization(&self, value: &str) -> Client {
        Client::new(Via::Tcp(self.tcp, Some(value.to_owned())))
    }

    fn publish(&self, report: WorkerReport) {
        let mut report = report;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.telemetry.publish(0, &mut report) {
            assert!(Instant::now() < deadline, "the telemetry lock stays busy");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Every audit log entry so far.
    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("audit.log")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}"))).collect()
    }

    /// Every regular file of the state directory, by name, with its bytes.
    fn state_files(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(self.state_dir()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                out.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
            }
        }
        out
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

// ---------------------------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Via {
    Unix(PathBuf),
    /// Address and the `Authorization` value to send, if any.
    Tcp(SocketAddr, Option<String>),
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts this is the error body with `status`, and returns its message.
    fn error_message(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self.header("content-type").is_some_and(|t| t.starts_with("application/json")));
        let v = self.json();
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "only `error`: {v}");
        assert_eq!(v["error"]["status"], status, "{v}");
        assert_eq!(v["error"].as_object().map(|o| o.len()), Some(2), "status and message: {v}");
        let message = v["error"]["message"].as_str().expect("message").to_owned();
        assert!(!message.is_empty());
        message
    }
}

fn connect(via: &Via) -> Box<dyn ReadWrite> {
    let timeout = Some(Duration::from_secs(20));
    match via {
        Via::Unix(path) => {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(timeout).unwrap();
            Box::new(s)
        }
        Via::Tcp(addr, _) => {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(timeout).unwrap();
            Box::new(s)
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Writes `bytes` (a write error is ignored: the server may answer and close before reading it
/// all), reads until the server closes, and parses one response.
fn exchange(via: &Via, bytes: &[u8]) -> Reply {
    exchange_for(via, bytes, false)
}

/// `exchange`; a response to `HEAD` (`head_only`) announces a length but has no body.
fn exchange_for(via: &Via, bytes: &[u8], head_only: bool) -> Reply {
    let mut stream = connect(via);
    let _ = stream.write_all(bytes);
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // A reset after a complete answer is fine; anything else is a failure below.
        assert!(!raw.is_empty(), "no answer: {e}");
    }
    parse_reply(&raw, head_only)
}

fn parse_reply(raw: &[u8], head_only: bool) -> Reply {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete head in {:?}", String::from_utf8_lossy(raw));
    });
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("header line {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("Content-Length");
    assert_eq!(body.len(), if head_only { 0 } else { length }, "exactly one response of Content-Length bytes");
    Reply { status, headers, body }
}

/// Requests sent and statuses seen: (method, concrete path, status).
type Seen = Rc<RefCell<Vec<(String, String, u16)>>>;

#[derive(Clone)]
struct Client {
    via: Via,
    seen: Seen,
}

impl Client {
    fn new(via: Via) -> Client {
        Client { via, seen: Rc::default() }
    }

    /// The same transport, recording into `seen`.
    fn recording(mut self, seen: &Seen) -> Client {
        self.seen = seen.clone();
        self
    }

    fn request_bytes(&self, method: &str, path: &str, body: Option<&[u8]>, content_length: Option<usize>) -> Vec<u8> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: overlink\r\nConnection: close\r\n");
        if let Via::Tcp(_, Some(auth)) = &self.via {
            out.push_str(&format!("Authorization: {auth}\r\n"));
        }
        if let Some(body) = body {
            out.push_str("Content-Type: application/json\r\n");
            out.push_str(&format!("Content-Length: {}\r\n", content_length.unwrap_or(body.len())));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        bytes
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let bytes = self.request_bytes(method, path, body.map(str::as_bytes), None);
        let reply = exchange_for(&self.via, &bytes, method == "HEAD");
        self.seen.borrow_mut().push((method.to_owned(), path.to_owned(), reply.status));
        reply
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(&body.to_string()))
    }

    fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None)
    }

    /// A body one byte over the limit.
    fn oversized(&self, method: &str, path: &str) -> Reply {
        let body = vec![b' '; BODY_LIMIT + 1];
        let reply = exchange(&self.via, &self.request_bytes(method, path, Some(&body), None));
        self.seen.borrow_mut().push((method.to_owned(), path.to_owned(), reply.status));
        reply
    }
}

/// The `ROUTES` pattern a concrete request matches.
fn pattern_of(method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    let path = path.split('?').next().unwrap();
    let concrete: Vec<&str> = path.split('/').collect();
    ROUTES.iter().copied().find(|(m, p)| {
        let pattern: Vec<&str> = p.split('/').collect();
        *m == method
            && pattern.len() == concrete.len()
            && pattern.iter().zip(&concrete).all(|(p, c)| p.starts_with('{') || p == c)
    })
}

fn mutates(method: &str) -> bool {
    method != "GET"
}

fn openapi() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The statuses `openapi.json` lists per route.
fn documented_statuses() -> BTreeSet<(&'static str, &'static str, u16)> {
    let spec = openapi();
    let mut out = BTreeSet::new();
    for (m, p) in ROUTES {
        let responses = spec["paths"][p][m.to_ascii_lowercase()]["responses"].as_object().expect("documented");
        for status in responses.keys() {
            out.insert((*m, *p, status.parse::<u16>().unwrap()));
        }
    }
    out
}

/// The keys of a JSON object equal the properties (all required) of an `openapi.json` schema.
fn assert_matches_schema(value: &Value, schema: &str) {
    let spec = openapi();
    let s = &spec["components"]["schemas"][schema];
    let props: BTreeSet<&str> = s["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let required: BTreeSet<&str> = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let keys: BTreeSet<&str> =
        value.as_object().unwrap_or_else(|| panic!("{value}")).keys().map(String::as_str).collect();
    assert_eq!(keys, props, "{schema}: {value}");
    assert_eq!(keys, required, "{schema}: every field is always present");
}

fn our_uid(dir: &Path) -> u32 {
    std::fs::metadata(dir).unwrap().uid()
}

fn create_body(name: Option<&str>, account: &str, address: &str, service: &str) -> Value {
    let mut v = json!({
        "account": account,
        "network": "consumer",
        "address": address,
        "ports": [80],
        "service": service,
        "message": "let me in",
    });
    if let Some(n) = name {
        v["name"] = json!(n);
    }
    v
}

fn report_holding(ip: &str, flows: u64) -> WorkerReport {
    let mut r = WorkerReport { passes: 1, ..WorkerReport::default() };
    r.nat_ips.insert(ip.parse().unwrap(), (u32::try_from(flows).unwrap(), 1000, flows));
    r
}

fn sample(link_id: u32, protocol: flow::Protocol, port: u16) -> FlowSample {
    FlowSample {
        worker: 0,
        protocol,
        consumer: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 7), port),
        endpoint: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 50), 80),
        nat: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 200), 40000 + port),
        backend: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 8080),
        link_id,
        state: if protocol == flow::Protocol::Tcp { "established" } else { "udp" },
        packets: [3, 2],
        bytes: [300, 200],
    }
}

// ---------------------------------------------------------------------------------------------
// Every route and every error, over one listener
// ---------------------------------------------------------------------------------------------

/// Runs every route and every error the handler produces through `c` (unix, or TCP with the admin
/// token). Audit entries are checked against `who`.
fn every_route(gw: &Gateway, c: &Client, who: &dyn Fn(&str) -> bool) {
    // --- health, metrics, services, counters
    let r = c.get("/healthz");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(r.text().contains("# TYPE overlink_packets_total counter"));

    let r = c.get("/v1/services");
    assert_eq!(r.status, 200);
    let services = r.json();
    assert_eq!(services.as_array().unwrap().len(), 1);
    assert_matches_schema(&services[0], "ServiceView");
    let alias = services[0]["alias"].as_str().unwrap().to_owned();
    assert!(alias.starts_with("web."));
    assert_eq!(services[0]["nat_ips"], json!([NAT_IP]));
    assert_eq!(c.get("/v1/services/web").json(), services[0]);
    assert_eq!(c.get(&format!("/v1/services/{alias}")).json(), services[0], "by alias too");
    assert!(c.get("/v1/services/nope").error_message(404).contains("nope"));

    let r = c.get("/v1/counters");
    assert_eq!(r.status, 200);
    let counters = r.json();
    assert_matches_schema(&counters, "Counters");
    assert_eq!(counters["drops"].as_object().unwrap().len(), datapath::DropReason::COUNT);
    assert_eq!(counters["events"].as_object().unwrap().len(), datapath::Event::COUNT);
    assert_eq!(counters["events"]["forwarded"], 0);

    // --- creating endpoints: every 400, 404 and 409
    let ep = "/v1/endpoints";
    let m = c.call("POST", ep, Some(r#"{"account": "team-a", "network": "#)).error_message(400);
    assert!(m.contains("bad JSON"), "{m}");
    assert!(c.call("POST", ep, Some("")).error_message(400).contains("body is required"));
    assert!(c.call("POST", ep, Some("[1, 2]")).error_message(400).contains("bad JSON"));
    let mut missing = create_body(Some("e1"), "team-a", "198.18.0.50", &alias);
    missing.as_object_mut().unwrap().remove("address");
    assert!(c.post(ep, &missing).error_message(400).contains("address"), "names the missing field");
    let mut unknown = create_body(Some("e1"), "team-a", "198.18.0.50", &alias);
    unknown["colour"] = json!("blue");
    assert!(c.post(ep, &unknown).error_message(400).contains("colour"), "names the unknown field");
    assert_eq!(c.post(ep, &create_body(Some("e1"), "team-a", "198.18.0.300", &alias)).status, 400, "bad ip");
    let m = c.post(ep, &create_body(Some("Bad_Name"), "team-a", "198.18.0.50", &alias)).error_message(400);
    assert!(m.starts_with("name:"), "{m}");
    let m = c.post(ep, &create_body(Some("e1"), "team-z", "198.18.0.50", &alias)).error_message(400);
    assert!(m.starts_with("account:"), "{m}");
    let mut bad_network = create_body(Some("e1"), "team-a", "198.18.0.50", &alias);
    bad_network["network"] = json!("elsewhere");
    assert!(c.post(ep, &bad_network).error_message(400).starts_with("network:"));
    let m = c.post(ep, &create_body(Some("e1"), "team-a", "10.0.0.5", &alias)).error_message(400);
    assert!(m.starts_with("address:"), "outside the prefix: {m}");
    let mut bad_ports = create_body(Some("e1"), "team-a", "198.18.0.50", &alias);
    bad_ports["ports"] = json!([80, 80]);
    assert!(c.post(ep, &bad_ports).error_message(400).starts_with("ports:"));
    bad_ports["ports"] = json!([70000]);
    assert_eq!(c.post(ep, &bad_ports).status, 400, "a port over 65535 does not decode");
    // team-b cannot see the service: for it, it does not exist. Nor does the bare name.
    let m = c.post(ep, &create_body(Some("e1"), "team-b", "198.18.0.50", &alias)).error_message(404);
    assert!(m.contains("visible"), "{m}");
    assert_eq!(c.post(ep, &create_body(Some("e1"), "team-a", "198.18.0.50", "web")).status, 404);
    assert_eq!(c.post(ep, &create_body(Some("e1"), "team-a", "198.18.0.50", "nope.1234")).status, 404);

    let r = c.post(ep, &create_body(Some("e1"), "team-a", "198.18.0.50", &alias));
    assert_eq!(r.status, 201, "{}", r.text());
    let e1 = r.json();
    assert_matches_schema(&e1, "EndpointView");
    assert_eq!((e1["state"].as_str(), e1["origin"].as_str()), (Some("pending"), Some("api")));
    assert_eq!(e1["request_message"], "let me in");
    assert_eq!(e1["service"], "web");
    assert_eq!(e1["service_alias"], alias.as_str());

    let m = c.post(ep, &create_body(Some("dup"), "team-a", "198.18.0.50", &alias)).error_message(409);
    assert!(m.contains("already endpoint `e1`"), "duplicate address: {m}");
    let m = c.post(ep, &create_body(Some("e1"), "team-a", "198.18.0.59", &alias)).error_message(409);
    assert!(m.contains("already exists"), "duplicate name: {m}");
    let mut natty = create_body(Some("natty"), "team-a", NAT_IP, &alias);
    natty["network"] = json!("provider");
    let m = c.post(ep, &natty).error_message(409);
    assert!(m.contains("NAT IP"), "{m}");

    let e2 = c.post(ep, &create_body(Some("e2"), "team-c", "198.18.0.51", &alias));
    assert_eq!((e2.status, e2.json()["state"].as_str()), (201, Some("approved")), "auto-approved for team-c");
    let e2 = e2.json();
    let generated = c.post(ep, &create_body(None, "team-a", "198.18.0.52", &alias));
    assert_eq!(generated.status, 201);
    let generated = generated.json()["name"].as_str().unwrap().to_owned();
    assert!(generated.starts_with("web-"), "{generated}");

    // --- listing and showing endpoints
    let names = |r: Reply| -> Vec<String> {
        assert_eq!(r.status, 200);
        r.json().as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
    };
    let mut all = vec!["e1".to_owned(), "e2".to_owned(), generated.clone()];
    all.sort();
    assert_eq!(names(c.get(ep)), all);
    assert_eq!(names(c.get("/v1/endpoints?state=approved")), ["e2"]);
    assert_eq!(names(c.get("/v1/endpoints?account=team-c")), ["e2"]);
    assert_eq!(names(c.get(&format!("/v1/endpoints?service={alias}"))), all);
    assert_eq!(names(c.get("/v1/endpoints?service=web&state=pending&account=team-a")), {
        let mut v = vec!["e1".to_owned(), generated.clone()];
        v.sort();
        v
    });
    assert!(names(c.get("/v1/endpoints?service=other")).is_empty());
    assert_eq!(c.get("/v1/endpoints/e1").json(), e1);
    assert!(c.get("/v1/endpoints/nope").error_message(404).contains("nope"));

    // --- approve and reject
    assert_eq!(c.call("POST", "/v1/endpoints/nope/approve", None).error_message(404), "no endpoint `nope`");
    let r = c.call("POST", "/v1/endpoints/e1/approve", None);
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("approved")));
    let reject = "/v1/endpoints/e1/reject";
    assert!(c.post(reject, &json!({"reason": "  "})).error_message(400).starts_with("reason:"), "blank reason");
    assert!(c.post(reject, &json!({})).error_message(400).contains("reason"), "missing reason");
    assert!(c.post(reject, &json!({"reason": "x", "why": 1})).error_message(400).contains("why"));
    assert_eq!(c.call("POST", reject, Some("{reason")).status, 400);
    assert_eq!(c.call("POST", reject, None).status, 400, "no body");
    let long = "x".repeat(1025);
    assert!(c.post(reject, &json!({"reason": long})).error_message(400).contains("1024"));
    assert_eq!(c.post("/v1/endpoints/nope/reject", &json!({"reason": "no"})).status, 404);
    let r = c.post(reject, &json!({"reason": "not a customer"}));
    assert_eq!(r.status, 200);
    assert_eq!((r.json()["state"].as_str(), r.json()["reason"].as_str()), (Some("rejected"), Some("not a customer")));
    let m = c.call("POST", "/v1/endpoints/e1/approve", None).error_message(409);
    assert!(m.contains("was rejected"), "approve after reject: {m}");
    assert_eq!(c.get("/v1/endpoints/e1").json()["state"], "rejected", "the 409 changed nothing");

    // --- NAT IPs
    let nat = "/v1/services/web/nat-ips";
    let m = c.delete(&format!("{nat}/{NAT_IP}")).error_message(409);
    assert!(m.contains("last NAT IP"), "{m}");
    assert!(c.delete(&format!("{nat}/not-an-ip")).error_message(400).contains("not-an-ip"));
    assert_eq!(c.delete(&format!("/v1/services/nope/nat-ips/{NAT_IP}")).status, 404);
    assert!(c.delete(&format!("{nat}/198.18.0.99")).error_message(404).contains("not a NAT IP"));
    assert!(c.post(nat, &json!({"ip": "198.18.0.300"})).error_message(400).contains("bad JSON"), "bad ip");
    assert_eq!(c.post(nat, &json!({"ip": 5})).status, 400);
    assert_eq!(c.post(nat, &json!({})).status, 400);
    assert_eq!(c.post(nat, &json!({"ip": "198.18.0.201", "extra": true})).status, 400);
    assert!(c.post(nat, &json!({"ip": "10.1.2.3"})).error_message(400).starts_with("ip:"), "outside the network");
    assert_eq!(c.post(nat, &json!({"ip": "198.18.0.1"})).status, 400, "the gateway's address");
    assert!(c.post(nat, &json!({"ip": NAT_IP})).error_message(409).contains("already a NAT IP"));
    assert_eq!(c.post("/v1/services/nope/nat-ips", &json!({"ip": "198.18.0.201"})).status, 404);
    let r = c.post(nat, &json!({"ip": "198.18.0.201"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_matches_schema(&r.json(), "ServiceView");
    assert_eq!(r.json()["nat_ips"], json!([NAT_IP, "198.18.0.201"]));
    // Flows still hold the old one: 409 until they drain.
    gw.publish(report_holding(NAT_IP, 3));
    let m = c.delete(&format!("{nat}/{NAT_IP}")).error_message(409);
    assert_eq!(m, "ip: 198.18.0.200 is still held by 3 flows; remove it once they have drained");
    assert_eq!(c.get("/v1/services/web").json()["nat_ips"], json!([NAT_IP, "198.18.0.201"]));
    gw.publish(report_holding(NAT_IP, 0));
    let r = c.delete(&format!("{nat}/{NAT_IP}"));
    assert_eq!((r.status, r.json()["nat_ips"].clone()), (200, json!(["198.18.0.201"])));

    // --- flows: a sample with filters
    let e1_link = u32::try_from(e1["link_id"].as_u64().unwrap()).unwrap();
    let e2_link = u32::try_from(e2["link_id"].as_u64().unwrap()).unwrap();
    let mut report = WorkerReport { passes: 2, active_flows: 3, ..WorkerReport::default() };
    report.sample = vec![
        sample(e1_link, flow::Protocol::Tcp, 1000),
        sample(e2_link, flow::Protocol::Udp, 1001),
        sample(e2_link, flow::Protocol::Tcp, 1002),
    ];
    gw.publish(report);
    let flows = |q: &str| -> Vec<Value> {
        let r = c.get(&format!("/v1/flows{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let v = r.json();
        assert_matches_schema(&v, "FlowList");
        v["flows"].as_array().unwrap().clone()
    };
    let all = flows("");
    assert_eq!(all.len(), 3);
    assert_matches_schema(&all[0], "Flow");
    assert_eq!(all[0]["endpoint"], "e1");
    assert_eq!(all[0]["protocol"], "tcp");
    assert_eq!(all[0]["consumer"], "198.18.0.7:1000");
    assert_eq!((all[0]["packets_to_service"].as_u64(), all[0]["bytes_to_consumer"].as_u64()), (Some(3), Some(200)));
    assert_eq!(flows("?limit=2").len(), 2);
    assert_eq!(c.get("/v1/flows?limit=1").json()["limit"], 1);
    assert_eq!(flows("?protocol=udp").len(), 1);
    assert_eq!(flows("?protocol=TCP").len(), 2);
    assert_eq!(flows("?endpoint=e2").len(), 2);
    assert_eq!(flows("?endpoint=e2&protocol=tcp").len(), 1);
    assert_eq!(flows(&format!("?service={alias}")).len(), 3);
    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?limit=-1", "?protocol=sctp"] {
        let m = c.get(&format!("/v1/flows{bad}")).error_message(400);
        assert!(m.starts_with("limit:") || m.starts_with("protocol:"), "{bad}: {m}");
    }
    assert_eq!(flows("?limit=1000").len(), 3);
    assert!(c.get("/v1/flows?endpoint=nope").error_message(404).contains("nope"));
    assert_eq!(c.get("/v1/flows?service=nope").status, 404);

    // --- 404 for unknown routes, 405 with Allow for every path
    for path in ["/", "/v2/services", "/v1/endpoints/e1/nothing", "/v1/services/web/nat-ips/1.2.3.4/x", "/healthz/x"] {
        assert!(c.get(path).error_message(404).contains("no such route"), "{path}");
    }
    let mut methods_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, p) in ROUTES {
        methods_of.entry(p).or_default().insert(m);
    }
    for (pattern, allowed) in &methods_of {
        let path = pattern.replace("{service}", "web").replace("{endpoint}", "e1").replace("{ip}", "198.18.0.201");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"] {
            // HEAD is answered like GET.
            if allowed.contains(method) || (method == "HEAD" && allowed.contains("GET")) {
                continue;
            }
            let r = c.call(method, &path, None);
            assert_eq!(r.status, 405, "{method} {path}");
            let allow: BTreeSet<&str> = r.header("allow").expect("Allow").split(", ").collect();
            assert_eq!(&allow, allowed, "{method} {path}: Allow lists the path's methods");
            if method != "HEAD" {
                r.error_message(405);
            }
        }
    }

    // --- 413 on every route that takes a body; nothing changes
    let before = (c.get("/v1/services").body, c.get(ep).body);
    for (m, p) in [("POST", ep), ("POST", nat), ("POST", "/v1/endpoints/e2/reject")] {
        let r = c.oversized(m, p);
        r.error_message(413);
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!((c.get("/v1/services").body, c.get(ep).body), before);

    // --- deletions
    assert_eq!(c.delete("/v1/endpoints/nope").error_message(404), "no endpoint `nope`");
    let r = c.delete(&format!("/v1/endpoints/{generated}"));
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})));
    assert_eq!(c.get(&format!("/v1/endpoints/{generated}")).status, 404);
    assert_eq!(c.delete(&format!("/v1/endpoints/{generated}")).status, 404, "gone");
    assert_eq!(c.delete("/v1/services/nope").error_message(404), "no service `nope`");
    let r = c.delete(&format!("/v1/services/{alias}"));
    assert_eq!((r.status, r.json()), (200, json!({"deleted": true})), "by alias");
    let endpoints = c.get(ep).json();
    assert!(endpoints.as_array().unwrap().iter().all(|e| e["state"] == "disconnected"), "{endpoints}");
    assert_eq!(c.get("/v1/services/web").json()["deleted"], true);
    assert_eq!(c.delete("/v1/services/web").status, 404, "already deleted");
    let m = c.post("/v1/endpoints/e2/reject", &json!({"reason": "late"})).error_message(409);
    assert!(m.contains("disconnected"), "{m}");
    assert_eq!(c.call("POST", "/v1/endpoints/e2/approve", None).status, 409);
    let r = c.delete("/v1/endpoints/e2");
    assert_eq!(r.status, 200, "a disconnected endpoint can be deleted");

    // --- the audit log: one `ok` entry per mutation, in order, with who, action, target, time
    let audit = gw.audit();
    for entry in &audit {
        let keys: BTreeSet<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["at", "who", "action", "target", "result", "detail"]), "{entry}");
        let at = entry["at"].as_str().unwrap();
        assert!(at.len() >= 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "RFC 3339 UTC: {at}");
    }
    let ok: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["who"] != "overlink" && e["result"] == "ok")
        .inspect(|e| assert!(who(e["who"].as_str().unwrap()), "who: {e}"))
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("create_endpoint", "e1"),
        ("create_endpoint", "e2"),
        ("create_endpoint", generated.as_str()),
        ("approve_endpoint", "e1"),
        ("reject_endpoint", "e1"),
        ("add_nat_ip", "web/198.18.0.201"),
        ("remove_nat_ip", "web/198.18.0.200"),
        ("delete_endpoint", generated.as_str()),
        ("delete_service", "web"),
        ("delete_endpoint", "e2"),
    ]
    .iter()
    .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
    .collect();
    assert_eq!(ok, expected, "one audit entry per mutation");
    assert_eq!(audit.iter().filter(|e| e["who"] == "overlink").count(), 1, "only the alias at startup");
    // Refusals the control plane saw are audited too (best effort), each as `refused`.
    let refused: BTreeSet<(String, String)> = audit
        .iter()
        .filter(|e| e["result"] == "refused")
        .inspect(|e| assert!(who(e["who"].as_str().unwrap()), "who: {e}"))
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned()))
        .collect();
    for (action, target) in [
        ("create_endpoint", "dup"),
        ("approve_endpoint", "e1"),
        ("remove_nat_ip", "web/198.18.0.200"),
        ("add_nat_ip", "web/198.18.0.200"),
        ("delete_service", "nope"),
    ] {
        assert!(refused.contains(&(action.to_owned(), target.to_owned())), "refused {action} {target}: {refused:?}");
    }
}

/// With the audit log on /dev/full every mutation is answered 503 and nothing changes; reads work.
fn audit_log_unwritable(c: &Client, gw: &Gateway) {
    let alias = c.get("/v1/services").json()[0]["alias"].as_str().unwrap().to_owned();
    assert_eq!(c.get("/v1/endpoints/declared-a").json()["state"], "pending");
    let files = gw.state_files();
    let views = (c.get("/v1/services").body, c.get("/v1/endpoints").body);
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/v1/endpoints".into(), Some(create_body(Some("e9"), "team-a", "198.18.0.90", &alias))),
        ("POST", "/v1/endpoints/declared-a/approve".into(), None),
        ("POST", "/v1/endpoints/declared-a/reject".into(), Some(json!({"reason": "no"}))),
        ("DELETE", "/v1/endpoints/declared-a".into(), None),
        ("POST", "/v1/services/web/nat-ips".into(), Some(json!({"ip": "198.18.0.203"}))),
        ("DELETE", "/v1/services/web/nat-ips/198.18.0.202".into(), None),
        ("DELETE", "/v1/services/web".into(), None),
    ];
    let covered: BTreeSet<_> = requests.iter().filter_map(|(m, p, _)| pattern_of(m, p)).collect();
    let mutating: BTreeSet<_> = ROUTES.iter().copied().filter(|(m, _)| mutates(m)).collect();
    assert_eq!(covered, mutating, "every mutating route");
    for (method, path, body) in &requests {
        let r = c.call(method, path, body.as_ref().map(Value::to_string).as_deref());
        let m = r.error_message(503);
        assert!(m.contains("audit log"), "{method} {path}: {m}");
        assert_eq!(gw.state_files(), files, "{method} {path}: the state directory is unchanged");
        assert_eq!((c.get("/v1/services").body, c.get("/v1/endpoints").body), views, "{method} {path}");
    }
    assert_eq!(c.get("/healthz").status, 200, "reads still work");
    assert_eq!(c.get("/metrics").status, 200);
}

fn broken_audit_gateway() -> Gateway {
    Gateway::start_with(|o| {
        o.config = o.config.replace(r#"nat_ips = ["198.18.0.200"]"#, r#"nat_ips = ["198.18.0.200", "198.18.0.202"]"#);
        o.config.push_str(
            r#"
[[endpoints]]
name = "declared-a"
account = "team-a"
network = "consumer"
address = "198.18.0.60"
service = "web"
"#,
        );
        o.break_audit = true;
    })
}

/// Every (route, status) `openapi.json` documents was seen, and every status seen is documented.
fn assert_covers_the_documented_statuses(seen: &Seen, tcp: bool) {
    let observed: BTreeSet<(&str, &str, u16)> =
        seen.borrow().iter().filter_map(|(m, p, s)| pattern_of(m, p).map(|(m, p)| (m, p, *s))).collect();
    let documented = documented_statuses();
    let undocumented: Vec<_> = observed.difference(&documented).collect();
    assert!(undocumented.is_empty(), "statuses the routes return but openapi.json does not list: {undocumented:?}");
    let unseen: Vec<_> = documented
        .difference(&observed)
        .filter(|(_, _, s)| tcp || ![401, 403].contains(s)) // no tokens on the unix socket
        .collect();
    assert!(unseen.is_empty(), "documented statuses this test never saw: {unseen:?}");
}

#[test]
fn every_route_and_every_error_on_the_unix_socket() {
    let gw = Gateway::start();
    let seen = Seen::default();
    let c = gw.unix().recording(&seen);
    let uid = our_uid(gw.dir.path());
    every_route(&gw, &c, &|who| who == format!("unix:uid={uid}"));
    // An Authorization header means nothing on the unix socket: the socket's mode is the access control.
    let with_junk = Client::new(Via::Unix(gw.socket.clone()));
    let r = exchange(
        &with_junk.via,
        b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer nonsense\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);

    let broken = broken_audit_gateway();
    audit_log_unwritable(&broken.unix().recording(&seen), &broken);
    assert_covers_the_documented_statuses(&seen, false);
}

#[test]
fn every_route_and_every_error_on_tcp() {
    let gw = Gateway::start();
    let seen = Seen::default();
    let c = gw.tcp(Some(ADMIN_TOKEN)).recording(&seen);

    // Every route: 401 without a token and with a wrong one, 403 for the read token on mutations,
    // and the read token reads. (Run first: e1 must not exist yet for this to change nothing.)
    let no_token = gw.tcp(None).recording(&seen);
    let wrong = gw.tcp(Some(WRONG_TOKEN)).recording(&seen);
    let read = gw.tcp(Some(READ_TOKEN)).recording(&seen);
    let before = gw.state_files();
    for (method, pattern) in ROUTES {
        let path = pattern.replace("{service}", "web").replace("{endpoint}", "e1").replace("{ip}", NAT_IP);
        let body = (*method == "POST").then_some("{}");
        let r = no_token.call(method, &path, body);
        assert!(r.error_message(401).contains("bearer token is required"), "{method} {path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{method} {path}");
        let r = wrong.call(method, &path, body);
        assert!(r.error_message(401).contains("not valid"), "{method} {path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"invalid_token\""));
        let r = read.call(method, &path, body);
        if mutates(method) {
            assert!(r.error_message(403).contains("admin token"), "{method} {path}");
        } else {
            assert!(r.status == 200 || r.status == 404, "{method} {path}: {}", r.status);
        }
    }
    assert_eq!(gw.state_files(), before, "refused requests changed nothing");
    assert_eq!(read.get("/v1/services/web").status, 200);

    every_route(&gw, &c, &|who| who.starts_with("tcp:127.0.0.1:") && who.ends_with(":admin"));
    // The unix listener of the same server sees the same state.
    assert_eq!(gw.unix().get("/v1/endpoints").body, c.get("/v1/endpoints").body);

    let broken = broken_audit_gateway();
    audit_log_unwritable(&broken.tcp(Some(ADMIN_TOKEN)).recording(&seen), &broken);
    assert_covers_the_documented_statuses(&seen, true);
}

// ---------------------------------------------------------------------------------------------
// The auth matrix
// ---------------------------------------------------------------------------------------------

#[test]
fn the_auth_matrix_for_every_mutating_route_changes_nothing_when_refused() {
    let gw = Gateway::start();
    let unix = gw.unix();
    let alias = unix.get("/v1/services").json()[0]["alias"].as_str().unwrap().to_owned();
    let audit_before = gw.audit().len();
    // In an order where the admin's request succeeds each time.
    let steps: Vec<(&str, &str, Option<Value>, u16)> = vec![
        ("POST", "/v1/endpoints", Some(create_body(Some("m1"), "team-a", "198.18.0.50", &alias)), 201),
        ("POST", "/v1/endpoints/m1/approve", None, 200),
        ("POST", "/v1/endpoints/m1/reject", Some(json!({"reason": "no"})), 200),
        ("DELETE", "/v1/endpoints/m1", None, 200),
        ("POST", "/v1/services/web/nat-ips", Some(json!({"ip": "198.18.0.202"})), 201),
        ("DELETE", "/v1/services/web/nat-ips/198.18.0.202", None, 200),
        ("DELETE", "/v1/services/web", None, 200),
    ];
    let covered: BTreeSet<_> = steps.iter().filter_map(|(m, p, _, _)| pattern_of(m, p)).collect();
    let mutating: BTreeSet<_> = ROUTES.iter().copied().filter(|(m, _)| mutates(m)).collect();
    assert_eq!(covered, mutating, "the matrix covers every mutating route");

    let refused: Vec<(Client, u16, &str)> = vec![
        (gw.tcp(None), 401, "Bearer"),
        (gw.tcp(Some(WRONG_TOKEN)), 401, "Bearer error=\"invalid_token\""),
        (gw.tcp(Some("short")), 401, "Bearer error=\"invalid_token\""),
        (gw.tcp_authorization(&format!("Basic {ADMIN_TOKEN}")), 401, "Bearer"),
        (gw.tcp(Some(READ_TOKEN)), 403, ""),
    ];
    let admin = gw.tcp(Some(ADMIN_TOKEN));
    let snapshot = || (unix.get("/v1/services").body, unix.get("/v1/endpoints").body, gw.state_files());
    for (method, path, body, ok) in &steps {
        let body = body.as_ref().map(Value::to_string);
        for (client, status, challenge) in &refused {
            let before = snapshot();
            let r = client.call(method, path, body.as_deref());
            r.error_message(*status);
            if *status == 401 {
                assert_eq!(r.header("www-authenticate"), Some(*challenge), "{method} {path}");
            }
            let after = snapshot();
            assert!(before.0 == after.0, "{method} {path} ({status}): GET /v1/services changed");
            assert!(before.1 == after.1, "{method} {path} ({status}): GET /v1/endpoints changed");
            assert!(before.2 == after.2, "{method} {path} ({status}): the state directory changed");
        }
        let before = snapshot();
        let r = admin.call(method, path, body.as_deref());
        assert_eq!(r.status, *ok, "{method} {path} with the admin token: {}", r.text());
        assert!(before != snapshot(), "{method} {path}: the admin's request changed something");
    }
    // Seven mutations, seven audit entries, all by the admin token over TCP.
    let audit = gw.audit();
    let new: Vec<(String, String, String)> = audit[audit_before..]
        .iter()
        .inspect(|e| {
            let who = e["who"].as_str().unwrap();
            assert!(who.starts_with("tcp:127.0.0.1:") && who.ends_with(":admin"), "{who}");
        })
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("action"), s("target"), s("result"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("create_endpoint", "m1"),
        ("approve_endpoint", "m1"),
        ("reject_endpoint", "m1"),
        ("delete_endpoint", "m1"),
        ("add_nat_ip", "web/198.18.0.202"),
        ("remove_nat_ip", "web/198.18.0.202"),
        ("delete_service", "web"),
    ]
    .iter()
    .map(|(a, t)| ((*a).to_owned(), (*t).to_owned(), "ok".to_owned()))
    .collect();
    assert_eq!(new, expected);
}

// ---------------------------------------------------------------------------------------------
// Listener properties and server limits
// ---------------------------------------------------------------------------------------------

#[test]
fn the_unix_socket_has_mode_0600_and_is_removed_on_shutdown() {
    let gw = Gateway::start();
    let meta = std::fs::metadata(&gw.socket).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), our_uid(gw.dir.path()));
    let socket = gw.socket.clone();
    drop(gw);
    assert!(!socket.exists(), "removed when the server stops");
}

#[test]
fn too_many_connections_are_answered_503_and_slow_requests_408() {
    let gw = Gateway::start_with(|o| {
        o.limits = Limits { max_connections: 2, request_timeout: Duration::from_millis(400), ..Limits::default() };
    });
    let clients = [gw.unix(), gw.tcp(Some(ADMIN_TOKEN))];
    for c in &clients {
        // Two idle connections take every slot; the third is refused at once.
        let idle: Vec<_> = (0..2).map(|_| connect(&c.via)).collect();
        // Nothing is sent: the server answers before reading (a request it never read could make
        // the close a reset that destroys the answer).
        let r = exchange(&c.via, b"");
        assert!(r.error_message(503).contains("too many"), "{:?}", c.via);
        drop(idle);
        // Once they are gone, the slots are free again.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = c.get("/healthz");
            if r.status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "the slots are never freed: {}", r.status);
            std::thread::sleep(Duration::from_millis(20));
        }
        // A request that does not arrive in time: 408.
        let started = Instant::now();
        let r = exchange(&c.via, b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        assert!(r.error_message(408).contains("did not arrive"));
        assert!(started.elapsed() >= Duration::from_millis(350), "{:?}", started.elapsed());
    }
}

#[test]
fn metrics_and_reads_with_the_read_token_and_the_tcp_statuses_counted() {
    // The server's own answers (413, 503, 408, ...) count in overlink_admin_requests_total too.
    let gw = Gateway::start();
    let read = gw.tcp(Some(READ_TOKEN));
    assert_eq!(read.oversized("POST", "/v1/endpoints").status, 413);
    assert_eq!(gw.tcp(None).get("/metrics").status, 401);
    let r = read.get("/metrics");
    assert_eq!(r.status, 200);
    let counted: HashMap<&str, &str> = r
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("overlink_admin_requests_total{status=\""))
        .filter_map(|l| l.split_once("\"} "))
        .collect();
    assert_eq!(counted, HashMap::from([("413", "1"), ("401", "1")]));
}
