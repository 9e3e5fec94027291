//! Shared pieces of the end-to-end tests (`tests/e2e_*.rs`): network namespaces with the SAME
//! prefix on both sides of a gateway namespace, the gateway as a separate `overlink run` process
//! on AF_PACKET, Debian's nginx and iperf3 as real peers, and readers for the gateway's exit
//! statistics.
//!
//! Layout of a [`Topology`] (every name carries a pid-based tag, so parallel runs never meet):
//!
//! ```text
//!  consumer i (198.18.0.7/24 on c0) --veth-- gc<i> [gateway ns: overlink run] gp --veth-- p0 (198.18.0.10/24) provider
//! ```
//!
//! Every namespace and process is removed on drop, also when an assertion fails. The gateway
//! namespace has no route anywhere, so no packet can leave the namespaces.
#![allow(dead_code, reason = "each test binary uses a different part of this module")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The backend's address in the provider network; the same prefix as every consumer network.
pub const BACKEND: &str = "198.18.0.10";
/// The consumer host's address in every consumer network.
pub const CONSUMER: &str = "198.18.0.7";
/// Endpoint of the `web` service (nginx on 8080) in every consumer network.
pub const WEB: &str = "198.18.0.50";
/// Endpoint of the `perf` service (iperf3 on 5201, every port) in consumer network 0.
pub const PERF: &str = "198.18.0.51";
/// Endpoint of the `sink` service (UDP port 9, counted and dropped by nftables) in consumer network 0.
pub const SINK: &str = "198.18.0.52";
/// NAT IPs of the three services in the provider network.
pub const WEB_NAT: &str = "198.18.0.200";
pub const PERF_NAT: &str = "198.18.0.201";
pub const SINK_NAT: &str = "198.18.0.202";

/// Runs a command, returning its output (panics only if it cannot be started).
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn must(args: &[&str]) -> String {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// Fails with a clear message when a Debian tool the test needs is missing.
pub fn need(tool: &str, package: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file())).unwrap_or(false)
            || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(tool).is_file());
    assert!(found, "this test needs `{tool}` (Debian package {package}); scripts/setup.sh installs it");
}

/// One gateway-heavy test at a time inside a test binary: every gateway worker busy-polls a core,
/// and these machines have two.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How to build a topology.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Consumer networks (each its own namespace with the same address).
    pub consumers: usize,
    /// Switch GRO/GSO/TSO/checksum offloads off on every veth end (the normal case).
    pub offloads_off: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { consumers: 1, offloads_off: true }
    }
}

/// A named child process of a test.
struct Proc {
    name: String,
    child: Child,
}

/// Namespaces, processes and files of one test, removed on drop.
pub struct Topology {
    /// Consumer namespaces, then the gateway's, then the provider's.
    names: Vec<String>,
    consumers: usize,
    procs: Vec<Proc>,
    dir: Option<tempfile::TempDir>,
    gateway_runs: u32,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology").field("names", &self.names).finish()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // SIGTERM first, so that nginx's master stops its workers (a SIGKILLed master leaves them
        // running), then SIGKILL whatever is left after a grace period.
        for p in &self.procs {
            let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).stderr(Stdio::null()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in self.procs.iter_mut().rev() {
            while Instant::now() < deadline && matches!(p.child.try_wait(), Ok(None)) {
                sleep(Duration::from_millis(10));
            }
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for n in &self.names {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

impl Topology {
    pub fn new(options: Options) -> Topology {
        assert!(
            sh(&["id", "-u"]).stdout.starts_with(b"0"),
            "this test needs root (network namespaces and AF_PACKET); run the suite as root"
        );
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}y{n}", std::process::id() % 100_000);
        let mut t = Topology {
            names: Vec::new(),
            consumers: options.consumers,
            procs: Vec::new(),
            dir: Some(tempfile::tempdir().unwrap()),
            gateway_runs: 0,
        };
        for i in 0..options.consumers {
            t.names.push(format!("olc{tag}n{i}"));
        }
        t.names.push(format!("olg{tag}"));
        t.names.push(format!("olp{tag}"));
        for ns in t.names.clone() {
            must(&["ip", "netns", "add", &ns]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            // No IPv6 chatter (neighbour discovery, MLD): the gateway translates IPv4 only, and the
            // tests count every frame.
            must(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
        }
        let (g, p) = (t.gateway().to_string(), t.provider().to_string());
        let mut ends = Vec::new();
        for i in 0..options.consumers {
            let c = t.consumer(i).to_string();
            let gc = format!("gc{i}");
            must(&["ip", "link", "add", "c0", "netns", &c, "type", "veth", "peer", "name", &gc, "netns", &g]);
            must(&["ip", "-n", &c, "addr", "add", &format!("{CONSUMER}/24"), "dev", "c0"]);
            ends.push((c, "c0".to_string()));
            ends.push((g.clone(), gc));
        }
        must(&["ip", "link", "add", "p0", "netns", &p, "type", "veth", "peer", "name", "gp", "netns", &g]);
        must(&["ip", "-n", &p, "addr", "add", &format!("{BACKEND}/24"), "dev", "p0"]);
        ends.push((p.clone(), "p0".into()));
        ends.push((g.clone(), "gp".into()));
        for (ns, dev) in &ends {
            if options.offloads_off {
                must(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off", "tx",
                    "off",
                ]);
            }
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    pub fn consumer(&self, i: usize) -> &str {
        assert!(i < self.consumers);
        &self.names[i]
    }

    pub fn gateway(&self) -> &str {
        &self.names[self.consumers]
    }

    pub fn provider(&self) -> &str {
        &self.names[self.consumers + 1]
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Runs `args` in namespace `ns`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Starts `args` in namespace `ns` under `name`, output to `<dir>/<name>.log`.
    pub fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) {
        let file = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.procs.push(Proc { name: name.into(), child });
    }

    /// Starts `args` in namespace `ns` with piped stdin/stdout; the child stays owned by the
    /// topology (killed on drop) and is reached through [`Topology::child`].
    pub fn spawn_piped(&mut self, name: &str, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.procs.push(Proc { name: name.into(), child });
    }

    pub fn child(&mut self, name: &str) -> &mut Child {
        &mut self.procs.iter_mut().find(|p| p.name == name).unwrap_or_else(|| panic!("no process {name}")).child
    }

    /// Removes the process `name` from the topology and waits for it to end by itself, at most
    /// `limit`; kills it after that. Returns its exit status (`None`: it had to be killed).
    pub fn wait_for(&mut self, name: &str, limit: Duration) -> Option<std::process::ExitStatus> {
        let i = self.procs.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("no process {name}"));
        let mut p = self.procs.remove(i);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = p.child.kill();
                let _ = p.child.wait();
                return None;
            }
            sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// The MAC address of `dev` in `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> String {
        let out = self.exec(ns, &["cat", &format!("/sys/class/net/{dev}/address")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A kernel interface counter (`/sys/class/net/<dev>/statistics/<stat>`).
    pub fn link_stat(&self, ns: &str, dev: &str, stat: &str) -> u64 {
        let out = self.exec(ns, &["cat", &format!("/sys/class/net/{dev}/statistics/{stat}")]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("{ns} {dev} {stat}: {out:?}"))
    }

    // ---- the gateway ----

    /// Writes the gateway configuration (see [`config`]).
    pub fn write_config(&self, approved: bool, workers: usize) -> PathBuf {
        let path = self.path("overlink.toml");
        std::fs::write(&path, config(self.dir(), self.consumers, approved, workers)).unwrap();
        path
    }

    pub fn socket(&self) -> PathBuf {
        self.path("admin.sock")
    }

    /// Starts `overlink run` in the gateway namespace; returns once its admin API is up. Each
    /// start logs to its own file (`gateway-<n>.log`); the name of the process is `gateway`.
    pub fn start_gateway(&mut self) {
        self.gateway_runs += 1;
        let log = format!("gateway-{}", self.gateway_runs);
        let conf = self.path("overlink.toml");
        let ns = self.gateway().to_string();
        self.spawn(&log, &ns, &[env!("CARGO_BIN_EXE_overlink"), "run", "--config", conf.to_str().unwrap()]);
        self.procs.last_mut().unwrap().name = "gateway".into();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The socket file may be left over from a killed gateway: wait for the start-up line.
        while !self.log(&log).contains("overlink: running") {
            let status = self.child("gateway").try_wait().unwrap();
            assert!(
                status.is_none() && Instant::now() < deadline,
                "the gateway did not start ({status:?}): {}",
                self.log(&log)
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// The log of the latest gateway run.
    pub fn gateway_log(&self) -> String {
        self.log(&format!("gateway-{}", self.gateway_runs))
    }

    pub fn gateway_pid(&mut self) -> u32 {
        self.child("gateway").id()
    }

    /// Stops the gateway with SIGTERM and returns its exit statistics.
    pub fn stop_gateway(&mut self) -> ExitStats {
        let pid = self.gateway_pid().to_string();
        must(&["kill", "-TERM", &pid]);
        let status = self.wait_for("gateway", Duration::from_secs(20));
        let log = self.gateway_log();
        assert!(status.is_some_and(|s| s.success()), "the gateway did not stop cleanly ({status:?}): {log}");
        ExitStats::parse(&log)
    }

    /// `kill -9` of the gateway (the `ip netns exec` wrapper execs it, so the pid is the gateway's).
    pub fn kill9_gateway(&mut self) {
        let pid = self.gateway_pid().to_string();
        must(&["kill", "-KILL", &pid]);
        let status = self.wait_for("gateway", Duration::from_secs(10));
        assert!(status.is_some(), "the gateway did not die");
    }

    /// `overlink ctl --json ARGS` against this gateway; must succeed.
    pub fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_overlink"))
            .args(["ctl", "--json", "--socket"])
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// The state of endpoint `name` as the admin API reports it.
    pub fn endpoint_state(&self, name: &str) -> String {
        let list = self.ctl(&["endpoint", "list"]);
        let all = list.as_array().unwrap_or_else(|| panic!("endpoint list: {list}"));
        let e = all.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no endpoint {name}: {list}"));
        e["state"].as_str().unwrap().to_string()
    }

    // ---- peers ----

    /// Starts nginx in the provider namespace on 198.18.0.10:8080 with its own configuration,
    /// pid file, logs and temp directories under the test's directory. Serves:
    /// `/whoami` → `$remote_addr $remote_port $request_uri`; files under `www/`; PUT under `/up/`
    /// (WebDAV); `/slow/` files at 64 KiB/s. The access log is `nginx-access.log` with
    /// `$remote_addr` first.
    pub fn start_nginx(&mut self) {
        need("nginx", "nginx");
        let d = self.dir().to_path_buf();
        for sub in ["www", "www/up", "www/slow", "nginx-tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("www/index.html"), "hello from the provider network\n").unwrap();
        let conf = format!(
            r#"user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    log_format peer '$remote_addr $remote_port "$request" $status $body_bytes_sent';
    access_log {d}/nginx-access.log peer;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    keepalive_timeout 120s;
    keepalive_requests 100000;
    server {{
        listen {BACKEND}:8080 backlog=4096;
        root {d}/www;
        client_max_body_size 256m;
        location = /whoami {{ default_type text/plain; return 200 "$remote_addr $remote_port $request_uri\n"; }}
        location /up/ {{ dav_methods PUT; create_full_put_path on; }}
        location /slow/ {{ limit_rate 64k; }}
    }}
}}
"#,
            d = d.display()
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let p = self.provider().to_string();
        let (prefix, conf, err) = (
            d.display().to_string(),
            d.join("nginx.conf").display().to_string(),
            d.join("nginx-error.log").display().to_string(),
        );
        self.spawn("nginx", &p, &["nginx", "-p", &prefix, "-e", &err, "-c", &conf, "-g", "daemon off;"]);
        self.wait_listening(&p, "tcp", &format!("{BACKEND}:8080"), "nginx");
    }

    /// Starts an iperf3 server in the provider namespace on 198.18.0.10:5201 (one test, then it exits).
    pub fn start_iperf3_server(&mut self, name: &str) {
        need("iperf3", "iperf3");
        let p = self.provider().to_string();
        self.spawn(name, &p, &["iperf3", "-s", "-1", "-B", BACKEND, "-p", "5201"]);
        self.wait_listening(&p, "tcp", &format!("{BACKEND}:5201"), name);
    }

    fn wait_listening(&mut self, ns: &str, proto: &str, addr: &str, name: &str) {
        let flag = if proto == "tcp" { "-Hltn" } else { "-Hlun" };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.exec(ns, &["ss", flag, "src", addr]);
            if !out.stdout.is_empty() {
                return;
            }
            let status = self.child(name).try_wait().unwrap();
            assert!(
                status.is_none() && Instant::now() < deadline,
                "{name} did not listen on {addr}: {}",
                self.log(name)
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// curl in consumer network `i`: (body, HTTP code; "000" when no answer), bounded by `max_secs`.
    pub fn curl(&self, i: usize, url: &str, max_secs: u32) -> (String, String) {
        let out =
            self.exec(self.consumer(i), &["curl", "-s", "-m", &max_secs.to_string(), "-w", "\n%{http_code}", url]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (body.to_string(), code.to_string())
    }

    /// The nginx access log.
    pub fn nginx_log(&self) -> String {
        std::fs::read_to_string(self.path("nginx-access.log")).unwrap_or_default()
    }

    /// Writes a Python helper script into the test directory and returns its path.
    pub fn script(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

/// Reads one line from a piped child's stdout (byte by byte: no buffering beyond the line).
pub fn read_line(child: &mut Child) -> String {
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into()
}

/// The gateway configuration of a topology: consumer network `consumer-<i>` on `gc<i>` for each
/// consumer, the provider network on `gp`, all with the gateway at 198.18.0.1/24; services
/// `web` (nginx, 198.18.0.10:8080, NAT 198.18.0.200), `perf` (iperf3, :5201, NAT .201), `sink`
/// (UDP :9, NAT .202); endpoints `web-<i>` at 198.18.0.50 port 80 in every consumer network
/// (account `team-<i>`), `perf-0` at .51 and `sink-0` at .52 (every port) in network 0.
/// `approved`: the consumer accounts are auto-approved; otherwise every endpoint starts pending.
pub fn config(dir: &Path, consumers: usize, approved: bool, workers: usize) -> String {
    let teams: Vec<String> = (0..consumers).map(|i| format!("\"team-{i}\"")).collect();
    let auto = if approved { teams.join(", ") } else { String::new() };
    let mut s = format!(
        r#"accounts = ["provider-b", {teams}]
[gateway]
io = "afpacket"
workers = {workers}
state_dir = "{dir}/state"
[gateway.admin]
socket = "{dir}/admin.sock"
"#,
        teams = teams.join(", "),
        dir = dir.display()
    );
    for i in 0..consumers {
        s += &format!("[[networks]]\nname = \"consumer-{i}\"\ninterface = \"gc{i}\"\naddress = \"198.18.0.1/24\"\n");
    }
    s += "[[networks]]\nname = \"provider\"\ninterface = \"gp\"\naddress = \"198.18.0.1/24\"\n";
    for (name, backend, nat) in [
        ("web", "198.18.0.10:8080", WEB_NAT),
        ("perf", "198.18.0.10:5201", PERF_NAT),
        ("sink", "198.18.0.10:9", SINK_NAT),
    ] {
        s += &format!(
            "[[services]]\nname = \"{name}\"\nprovider = \"provider-b\"\nnetwork = \"provider\"\nbackends = [\"{backend}\"]\n\
             nat_ips = [\"{nat}\"]\nvisibility = [{teams}]\nauto_approval = [{auto}]\necho = \"reply\"\n",
            teams = teams.join(", ")
        );
    }
    for i in 0..consumers {
        s += &format!(
            "[[endpoints]]\nname = \"web-{i}\"\naccount = \"team-{i}\"\nnetwork = \"consumer-{i}\"\naddress = \"{WEB}\"\n\
             ports = [80]\nservice = \"web\"\n"
        );
    }
    s += &format!(
        "[[endpoints]]\nname = \"perf-0\"\naccount = \"team-0\"\nnetwork = \"consumer-0\"\naddress = \"{PERF}\"\nservice = \"perf\"\n\
         [[endpoints]]\nname = \"sink-0\"\naccount = \"team-0\"\nnetwork = \"consumer-0\"\naddress = \"{SINK}\"\nservice = \"sink\"\n"
    );
    s
}

/// The statistics `overlink run` prints when it stops.
#[derive(Debug, Default, Clone)]
pub struct ExitStats {
    /// Per port: (name, rx packets, rx dropped, tx packets, tx dropped).
    pub ports: Vec<(String, u64, u64, u64, u64)>,
    pub received: u64,
    pub forwarded: u64,
    pub local: u64,
    pub dropped: u64,
    /// `drop <reason> <n>` lines.
    pub drops: Vec<(String, u64)>,
    /// Per port: the backend's own counters (`port i (name) backend: k v ...`).
    pub backend: Vec<(String, Vec<(String, u64)>)>,
}

impl ExitStats {
    pub fn parse(log: &str) -> ExitStats {
        let at_exit = log.rsplit_once("totals at exit").unwrap_or_else(|| panic!("no exit statistics in: {log}")).1;
        let mut s = ExitStats::default();
        let num = |w: Option<&str>| -> u64 { w.and_then(|w| w.parse().ok()).unwrap_or_else(|| panic!("{at_exit}")) };
        for line in at_exit.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("port ") && line.contains("backend:") {
                let name = words[2].trim_matches(|c| c == '(' || c == ')').to_string();
                let fields = words[4..].chunks(2).map(|kv| (kv[0].to_string(), num(kv.get(1).copied()))).collect();
                s.backend.push((name, fields));
            } else if line.starts_with("port ") {
                let name = words[2].trim_matches(|c| c == '(' || c == ')' || c == ':').to_string();
                let field = |k: &str| num(words.iter().position(|w| *w == k).map(|i| words[i + 1]));
                s.ports.push((
                    name,
                    field("RX-packets:"),
                    field("RX-dropped:"),
                    field("TX-packets:"),
                    field("TX-dropped:"),
                ));
            } else if line.starts_with("gateway: ") {
                let field = |k: &str| num(words.iter().position(|w| *w == k).map(|i| words[i + 1]));
                s.received = field("received");
                s.forwarded = field("forwarded");
                s.local = field("local");
                s.dropped = field("dropped");
            } else if line.trim_start().starts_with("drop ") {
                s.drops.push((words[1].to_string(), num(words.get(2).copied())));
            }
        }
        assert!(!s.ports.is_empty(), "no port lines in: {at_exit}");
        s
    }

    pub fn drop_count(&self, reason: &str) -> u64 {
        self.drops.iter().find(|(r, _)| r == reason).map_or(0, |d| d.1)
    }

    /// A backend counter of port `port` (by interface name).
    pub fn backend(&self, port: &str, counter: &str) -> u64 {
        let (_, fields) = self
            .backend
            .iter()
            .find(|(n, _)| n == port)
            .unwrap_or_else(|| panic!("no backend line for {port}: {:?}", self.backend));
        fields.iter().find(|(k, _)| k == counter).map_or(0, |f| f.1)
    }

    /// Frames the ports dropped (backend) on receive and transmit, summed over ports.
    pub fn port_drops(&self) -> u64 {
        self.ports.iter().map(|p| p.2 + p.4).sum()
    }

    /// A backend counter summed over all ports.
    pub fn backend_total(&self, counter: &str) -> u64 {
        self.backend.iter().map(|(port, _)| self.backend(port, counter)).sum()
    }

    /// Port drops other than rx ring overruns (the kernel found the ring full: the gateway was
    /// slower than the sender, which TCP's congestion control provokes on purpose).
    pub fn port_drops_besides_overruns(&self) -> u64 {
        self.port_drops() - self.backend_total("ring_overruns")
    }
}

/// A Python client that opens `n` TCP connections to `host:80` from the consumer network, waits
/// until all are open at once, then sends `GET /whoami?<tag>-<i>` on each and checks every answer
/// (`200`, the body `<nat_ip> <port> /whoami?<tag>-<i>`). `base_port` > 0 binds connection `i` to
/// source port `base_port + i` (the same 5-tuples in every consumer network). Prints one JSON line.
pub const CONCURRENT_PY: &str = r#"
import asyncio, json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
host, n, tag, base_port, nat = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]

async def one(i, ready, go):
    kw = {"local_addr": ("198.18.0.7", base_port + i)} if base_port else {}
    r, w = await asyncio.wait_for(asyncio.open_connection(host, 80, **kw), 30)
    ready.append(i)
    await go.wait()
    uri = f"/whoami?{tag}-{i}"
    w.write(f"GET {uri} HTTP/1.1\r\nHost: endpoint\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(r.read(), 30)
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode(), body.decode(), uri

async def main():
    go, ready = asyncio.Event(), []
    tasks = [asyncio.create_task(one(i, ready, go)) for i in range(n)]
    while len(ready) < n and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    open_at_once = len(ready)
    go.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok, ports, bad = 0, set(), []
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            bad.append(f"{i}: {r!r}")
            continue
        status, body, uri = r
        parts = body.split()
        if status == "200" and len(parts) == 3 and parts[0] == nat and parts[2] == uri:
            ok += 1
            ports.add(parts[1])
        else:
            bad.append(f"{i}: {status} {body!r}")
    print(json.dumps({"ok": ok, "open_at_once": open_at_once, "distinct_nat_ports": len(ports), "bad": bad[:5]}))

asyncio.run(main())
"#;

/// A Python client with one keep-alive connection to `host:80`: one request, prints `ready`, waits
/// for a line on stdin, sends a second request on the same connection and prints what happened
/// (`reset <ms>`, `closed <ms>`, `timeout <ms>` or `answer <ms>`), measured from that send.
pub const KEEPALIVE_PY: &str = r#"
import socket, sys, time
host = sys.argv[1]
s = socket.create_connection((host, 80), timeout=5)
req = b"GET /whoami HTTP/1.1\r\nHost: endpoint\r\n\r\n"
s.sendall(req)
data = b""
while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
    data += s.recv(4096)
print("ready " + data.split(b"\r\n\r\n", 1)[1].decode().strip(), flush=True)
sys.stdin.readline()
s.settimeout(10)
t = time.monotonic()
try:
    s.sendall(req)
    got = s.recv(4096)
    kind = "answer" if got else "closed"
except ConnectionResetError:
    kind = "reset"
except socket.timeout:
    kind = "timeout"
print(f"{kind} {(time.monotonic() - t) * 1000:.0f}", flush=True)
"#;
