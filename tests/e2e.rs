//! End to end on real interfaces: the gateway (`overlink run`, AF_PACKET) in its own network
//! namespace between a consumer namespace and a provider namespace that use the SAME prefix,
//! 198.18.0.0/24. A real HTTP client (curl) reaches a real HTTP server (Python's http.server)
//! through the endpoint address; the approval is given with `overlink ctl`.
//!
//! Needs root (namespaces, AF_PACKET). Every namespace and process is removed at the end, also
//! when an assertion fails. No packet can leave the namespaces: the gateway has no route out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
        let tag = std::process::id() % 100_000;
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
    format!(
        r#"
accounts = ["provider-b", "team-a"]
[gateway]
io = "afpacket"
workers = 2
state_dir = "{dir}/state"
[gateway.admin]
socket = "{dir}/admin.sock"
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
ports = [80]
service = "web"
"#,
        dir = dir.display()
    )
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
