//! `overlink demo`: the main job on its built-in default, in network namespaces.
//!
//! Three namespaces — a consumer network, the gateway, a provider network — where both networks
//! use the SAME prefix, 198.18.0.0/24. The gateway runs `overlink run` on AF_PACKET in its own
//! namespace, so no packet can leave them. The service and the client are this binary itself
//! (`demo-serve`, `demo-fetch`), so nothing else needs installing. Everything the demo made is
//! removed at the end, also on Ctrl-C or failure. It needs root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

const CONSUMER: &str = "overlink-demo-consumer";
const GATEWAY: &str = "overlink-demo-gateway";
const PROVIDER: &str = "overlink-demo-provider";

/// Namespaces and processes the demo made; removed on drop.
struct Demo {
    children: Vec<Child>,
    dir: PathBuf,
    exe: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [CONSUMER, GATEWAY, PROVIDER] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (Debian package iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Demo {
    fn spawn(&mut self, ns: &str, args: &[&str], log: &str) -> anyhow::Result<()> {
        let file = std::fs::File::create(self.dir.join(log))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&self.exe)
            .args(args)
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("cannot start a process in a namespace")?;
        self.children.push(child);
        Ok(())
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out =
            Command::new(&self.exe).arg("ctl").arg("--socket").arg(self.dir.join("admin.sock")).args(args).output()?;
        if !out.status.success() {
            bail!("overlink ctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into())
    }

    fn fetch(&self) -> anyhow::Result<(bool, String)> {
        let out = Command::new("ip")
            .args(["netns", "exec", CONSUMER])
            .arg(&self.exe)
            .args(["demo-fetch", "198.18.0.50:80"])
            .output()?;
        let text = if out.status.success() { &out.stdout } else { &out.stderr };
        Ok((out.status.success(), String::from_utf8_lossy(text).trim().trim_start_matches("overlink: ").to_string()))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

fn config(dir: &Path) -> String {
    format!(
        r#"accounts = ["provider-b", "team-a"]
[gateway]
io = "afpacket"
workers = 1
state_dir = "{dir}/state"
[gateway.admin]
socket = "{dir}/admin.sock"
[[networks]]
name = "consumer"
interface = "gw-consumer"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "gw-provider"
address = "198.18.0.1/24"
[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]
[[endpoints]]
name = "web-for-team-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "web"
"#,
        dir = dir.display()
    )
}

/// Runs the demo.
pub fn run() -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the demo creates network namespaces and opens AF_PACKET sockets, which needs root: run `sudo overlink demo` \
             (or `overlink demo --in-memory` for the engine-only walkthrough)"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let dir = std::env::temp_dir().join(format!("overlink-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut demo = Demo { children: Vec::new(), dir, exe: std::env::current_exe()? };
    // A demo killed earlier may have left its namespaces behind.
    for ns in [CONSUMER, GATEWAY, PROVIDER] {
        let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
    }

    println!("overlink demo: a Private Link between two networks that use the same prefix\n");
    println!("1. Three network namespaces: a consumer network, the gateway, a provider network.");
    println!("   Both networks are 198.18.0.0/24: the consumer is 198.18.0.7, the service 198.18.0.10.");
    for ns in [CONSUMER, GATEWAY, PROVIDER] {
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&[
        "link",
        "add",
        "consumer0",
        "netns",
        CONSUMER,
        "type",
        "veth",
        "peer",
        "name",
        "gw-consumer",
        "netns",
        GATEWAY,
    ])?;
    ip(&[
        "link",
        "add",
        "provider0",
        "netns",
        PROVIDER,
        "type",
        "veth",
        "peer",
        "name",
        "gw-provider",
        "netns",
        GATEWAY,
    ])?;
    ip(&["-n", CONSUMER, "addr", "add", "198.18.0.7/24", "dev", "consumer0"])?;
    ip(&["-n", PROVIDER, "addr", "add", "198.18.0.10/24", "dev", "provider0"])?;
    for (ns, dev) in
        [(CONSUMER, "consumer0"), (PROVIDER, "provider0"), (GATEWAY, "gw-consumer"), (GATEWAY, "gw-provider")]
    {
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        // Offloads off where ethtool exists, so the veths hand the gateway plain frames.
        let _ = Command::new("ip")
            .args(["netns", "exec", ns, "ethtool", "-K", dev, "gro", "off", "gso", "off", "tso", "off", "tx", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    println!("\n2. The service `web` starts in the provider network, and the gateway between the two.");
    std::fs::write(demo.dir.join("overlink.toml"), config(&demo.dir))?;
    demo.spawn(PROVIDER, &["demo-serve", "198.18.0.10:8080"], "service.log")?;
    let conf = demo.dir.join("overlink.toml").display().to_string();
    demo.spawn(GATEWAY, &["run", "--config", &conf], "gateway.log")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !demo.dir.join("admin.sock").exists() {
        if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
            bail!("the gateway did not start:\n{}", demo.log("gateway.log"));
        }
        sleep(Duration::from_millis(50));
    }
    print!("{}", indent(&demo.ctl(&["service", "list"])?));

    println!("\n3. Team A's endpoint 198.18.0.50:80 in the consumer network maps to `web`. It is pending:");
    print!("{}", indent(&demo.ctl(&["endpoint", "list"])?));
    println!("   The consumer tries to connect to 198.18.0.50:80 ...");
    let (ok, out) = demo.fetch()?;
    if ok {
        bail!("a pending endpoint let a connection through: {out}");
    }
    println!("    {out}");

    println!("\n4. The provider approves the endpoint:  overlink ctl endpoint approve web-for-team-a");
    print!("{}", indent(&demo.ctl(&["endpoint", "approve", "web-for-team-a"])?));
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    println!("   The consumer connects again:");
    let (ok, out) = demo.fetch()?;
    if !ok {
        bail!("the approved endpoint did not connect: {out}\n{}", demo.log("gateway.log"));
    }
    println!("    {out}");

    println!("\n5. Who connected, as the service sees it:");
    print!("{}", indent(demo.log("service.log").trim_end()));
    println!("   The service saw the NAT IP 198.18.0.200, not 198.18.0.7 — an address its own network also");
    println!("   has. (With PROXY v2, a later step, it will also get 198.18.0.7 and the endpoint's link id.)");

    println!("\n6. The gateway's counters:");
    print!("{}", indent(&demo.ctl(&["stats"])?));
    println!("\nCleaning up: every namespace and process of the demo is removed.");
    Ok(())
}

/// `demo-serve ADDR`: answers each connection with one line naming the peer, and logs it.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = stream.peer_addr().map(|p| p.to_string()).unwrap_or_default();
        println!("service: connection from {peer}");
        let _ = std::io::stdout().flush();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = [0u8; 256];
        let n = stream.read(&mut request).unwrap_or(0);
        let asked = String::from_utf8_lossy(&request[..n]).trim().to_string();
        let _ = writeln!(stream, "hello from `web` in the provider network; you are {peer} (you said: {asked})");
    }
    Ok(())
}

/// `demo-fetch ADDR`: connects (2 s timeout), says hello, prints the answer.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| anyhow!("client: cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    writeln!(stream, "hello from the consumer")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(|e| anyhow!("client: no answer: {e}"))?;
    println!("client: {}", line.trim());
    Ok(())
}
