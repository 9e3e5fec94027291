//! End to end on real interfaces: the gateway (`overlink run`, AF_PACKET) in its own network
//! namespace between a consumer namespace and a provider namespace that use the SAME prefix,
//! 198.18.0.0/24. A real HTTP client (curl) reaches a real HTTP server (Python's http.server)
//! through the endpoint address; the approval is given with `overlink ctl`.
//!
//! Needs root (namespaces, AF_PACKET). Every namespace and process is removed at the end, also
//! when an assertion fails. No packet can leave the namespaces: the gateway has no route out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

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
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

impl Topology {
    fn new() -> Topology {
        assert!(
            sh(&["id", "-u"]).stdout.starts_with(b"0"),
            "this test needs root (network namespaces and AF_PACKET); run the suite as root"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let names = [format!("olc{tag}"), format!("olg{tag}"), format!("olp{tag}")];
        let t = Topology { names: names.clone(), children: Vec::new(), dir: tempfile::tempdir().unwrap() };
        let [c, g, p] = &names;
        for n in &names {
            must(&["ip", "netns", "add", n]);
            must(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        must(&["ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "gc", "netns", g]);
        must(&["ip", "link", "add", "p0", "netns", p, "type", "veth", "peer", "name", "gp", "netns", g]);
        // The same prefix on both sides: the consumer is .7, the backend .10.
        must(&["ip", "-n", c, "addr", "add", "198.18.0.7/24", "dev", "c0"]);
        must(&["ip", "-n", p, "addr", "add", "198.18.0.10/24", "dev", "p0"]);
        for (ns, dev) in [(c, "c0"), (p, "p0"), (g, "gc"), (g, "gp")] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            // Offloads off on every end, so no super-frames reach the gateway.
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

    fn spawn_in(&mut self, ns: usize, args: &[&str], log: &Path) {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[ns]])
            .args(args)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    fn curl(&self, url: &str) -> (String, String) {
        let out = sh(&["ip", "netns", "exec", self.ns(0), "curl", "-s", "-m", "3", "-w", "\n%{http_code}", url]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (body.to_string(), code.to_string())
    }
}

fn config(dir: &Path) -> String {
    config_with(dir, "", "[80]")
}

fn config_with(dir: &Path, extra_gateway: &str, ports: &str) -> String {
    format!(
        r#"
accounts = ["provider-b", "team-a"]
[gateway]
io = "afpacket"
workers = 2
state_dir = "{dir}/state"
[gateway.admin]
socket = "{dir}/admin.sock"
{extra_gateway}
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
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]
echo = "reply"
[[endpoints]]
name = "web-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = {ports}
service = "web"
"#,
        dir = dir.display()
    )
}

/// Starts the service (http.server on 198.18.0.10:8080 serving `www`) and the gateway; returns
/// the admin socket once it is up.
fn start_gateway(t: &mut Topology, www: &str) -> PathBuf {
    t.spawn_in(
        2,
        &["python3", "-m", "http.server", "8080", "--bind", "198.18.0.10", "--directory", www],
        &t.path("http.log"),
    );
    let conf = t.path("overlink.toml");
    t.spawn_in(1, &[env!("CARGO_BIN_EXE_overlink"), "run", "--config", conf.to_str().unwrap()], &t.path("gateway.log"));
    let socket = t.path("admin.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        let log = std::fs::read_to_string(t.path("gateway.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "the gateway did not start: {log}");
        sleep(Duration::from_millis(50));
    }
    sleep(Duration::from_millis(500)); // let http.server bind
    socket
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

/// The example plugins the build compiled (crates/policy/build.rs puts them under target/plugins).
fn example_plugin(file: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_overlink"));
    let target = exe.parent().and_then(Path::parent).expect("target directory");
    let path = target.join("plugins/wasm32-wasip2/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: the policy crate's build script compiles the example plugins",
        path.display()
    );
    path
}

#[test]
fn plugins_approve_endpoints_and_guard_ports_on_the_real_datapath() {
    let mut t = Topology::new();
    std::fs::write(t.path("index.html"), "hello\n").unwrap();
    let plugins = t.path("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(example_plugin("allow_accounts.wasm"), plugins.join("10-allow-accounts.wasm")).unwrap();
    std::fs::copy(example_plugin("port_guard.wasm"), plugins.join("20-port-guard.wasm")).unwrap();
    let extra = format!("plugins_dir = \"{}\"\n", plugins.display());
    let mut text = config_with(t.dir.path(), "", "[80, 8081]");
    // `plugins_dir` belongs to [gateway]; the plugin tables go at the end.
    text = text.replace("[gateway]\n", &format!("[gateway]\n{extra}"));
    text.push_str("\n[plugins.\"10-allow-accounts.wasm\"]\naccounts = [\"team-a\"]\n[plugins.\"20-port-guard.wasm\"]\nports = [80]\n");
    // No endpoint in the file: it is created through the API so the plugins decide its approval.
    let text = text[..text.find("[[endpoints]]").unwrap()].to_string() + &text[text.find("\n[plugins.").unwrap()..];
    std::fs::write(t.path("overlink.toml"), text).unwrap();
    let www = t.dir.path().to_str().unwrap().to_string();
    let socket = start_gateway(&mut t, &www);

    let services: serde_json::Value = serde_json::from_str(&ctl(&socket, &["service", "list"])).unwrap();
    let alias = services[0]["alias"].as_str().unwrap().to_string();
    let created: serde_json::Value = serde_json::from_str(&ctl(
        &socket,
        &[
            "endpoint",
            "create",
            "--account",
            "team-a",
            "--network",
            "consumer",
            "--address",
            "198.18.0.50",
            "--service",
            &alias,
            "--port",
            "80",
            "--port",
            "8081",
            "--name",
            "web-a",
        ],
    ))
    .unwrap();
    assert_eq!(created["state"], "approved", "allow-accounts approved team-a's endpoint: {created}");

    let (body, code) = t.curl("http://198.18.0.50/index.html");
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello\n"));
    // port-guard resets flows to ports outside its list: curl fails at once instead of timing out.
    let started = Instant::now();
    let (_, code) = t.curl("http://198.18.0.50:8081/index.html");
    assert_eq!(code, "000");
    assert!(started.elapsed() < Duration::from_secs(2), "a reset, not a silent drop");
    let stats: serde_json::Value = serde_json::from_str(&ctl(&socket, &["stats"])).unwrap();
    assert!(stats["drops"]["policy_reset"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn curl_reaches_a_server_in_a_network_with_the_same_prefix_after_approval() {
    let mut t = Topology::new();
    std::fs::write(t.path("index.html"), "hello from the provider network\n").unwrap();
    std::fs::write(t.path("overlink.toml"), config(t.dir.path())).unwrap();
    let www = t.dir.path().to_str().unwrap().to_string();
    t.spawn_in(
        2,
        &["python3", "-m", "http.server", "8080", "--bind", "198.18.0.10", "--directory", &www],
        &t.path("http.log"),
    );
    let conf = t.path("overlink.toml");
    t.spawn_in(1, &[env!("CARGO_BIN_EXE_overlink"), "run", "--config", conf.to_str().unwrap()], &t.path("gateway.log"));
    let socket = t.path("admin.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the gateway did not start: {}",
            std::fs::read_to_string(t.path("gateway.log")).unwrap_or_default()
        );
        sleep(Duration::from_millis(50));
    }
    sleep(Duration::from_millis(500)); // let http.server bind

    // Pending: nothing passes.
    let (_, code) = t.curl("http://198.18.0.50/index.html");
    assert_eq!(code, "000", "a pending endpoint must pass nothing");

    // Approve with the CLI; the next connection works.
    let out = Command::new(env!("CARGO_BIN_EXE_overlink"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["endpoint", "approve", "web-a"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (body, code) = t.curl("http://198.18.0.50/index.html");
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello from the provider network\n"));
    // The server saw the NAT address, not the consumer's 198.18.0.7 (which is its own network's).
    let log = std::fs::read_to_string(t.path("http.log")).unwrap();
    assert!(log.contains("198.18.0.200 - - ") && log.contains("GET /index.html"), "{log}");
    assert!(!log.contains("198.18.0.7 - - "), "{log}");

    // Many connections in a row, all answered.
    for i in 0..20 {
        let (body, code) = t.curl("http://198.18.0.50/index.html");
        assert_eq!((code.as_str(), body.len()), ("200", 32), "connection {i}");
    }
    // ICMP echo to the endpoint address is answered by the gateway.
    let ping = sh(&["ip", "netns", "exec", t.ns(0), "ping", "-c", "2", "-W", "1", "198.18.0.50"]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));

    // A clean stop prints the totals; nothing was dropped for bad reasons.
    let gw = t.children.remove(1);
    let pid = gw.id().to_string();
    must(&["kill", "-TERM", &pid]);
    let out = gw.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = std::fs::read_to_string(t.path("gateway.log")).unwrap();
    assert!(log.contains("totals at exit"), "{log}");
    assert!(log.contains("drop endpoint_not_approved"), "the pending attempt was counted: {log}");
}
