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
plugins_dir = "{dir}/plugins"
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
proxy_protocol = true
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
    println!("   The service has PROXY protocol v2 on, and the gateway loads the example plugin");
    println!("   azure-link-id, which puts the endpoint's link id into every connection's header.");
    std::fs::write(demo.dir.join("overlink.toml"), config(&demo.dir))?;
    let plugins = demo.dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    let (_, wasm) = policy::EXAMPLES
        .iter()
        .find(|(name, _)| *name == "azure-link-id")
        .ok_or_else(|| anyhow!("the azure-link-id example plugin is not built into this binary"))?;
    std::fs::write(plugins.join("10-azure-link-id.wasm"), wasm)?;
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
    println!("   The TCP peer is the NAT IP 198.18.0.200: 198.18.0.7 is an address the provider network");
    println!("   has too, so the gateway cannot use it there. The PROXY v2 header the gateway put in front");
    println!("   of the stream (without terminating TCP) carries the consumer's real address 198.18.0.7");
    println!("   and the endpoint's link id (TLV 0xEE), like Azure Private Link does.");

    println!("\n6. The gateway's counters:");
    print!("{}", indent(&demo.ctl(&["stats"])?));
    println!("\nCleaning up: every namespace and process of the demo is removed.");
    Ok(())
}

/// `demo-serve ADDR`: reads the PROXY v2 header the gateway puts in front of each connection,
/// answers with one line naming the peer and the consumer, and logs both.
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let peer = stream.peer_addr().map(|p| p.to_string()).unwrap_or_default();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        // Read until the header is complete and the client's line has arrived.
        let (consumer, rest) = loop {
            match wire::proxy::Header::parse(&buf) {
                Ok((header, len)) => break (describe(&header), buf[len..].to_vec()),
                Err(wire::Error::Truncated) if buf.len() < 1024 => {}
                Err(_) => break ("no valid PROXY v2 header".to_string(), buf.clone()),
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break ("the stream ended before a PROXY v2 header".to_string(), buf.clone()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let mut said = rest;
        if !said.contains(&b'\n') {
            let n = stream.read(&mut chunk).unwrap_or(0);
            said.extend_from_slice(&chunk[..n]);
        }
        let asked = String::from_utf8_lossy(&said).trim().to_string();
        println!("service: TCP connection from {peer}; {consumer}");
        let _ = std::io::stdout().flush();
        let _ = writeln!(stream, "hello from `web`; TCP peer {peer}, {consumer} (you said: {asked})");
    }
    Ok(())
}

/// The header in words: the consumer's address and the Azure link id TLV.
fn describe(header: &wire::proxy::Header<'_>) -> String {
    let addresses = match header.addresses() {
        wire::proxy::Addresses::Ipv4 { src, dst } => format!("PROXY v2 says the consumer is {src} (it dialled {dst})"),
        wire::proxy::Addresses::Ipv6 { src, dst } => format!("PROXY v2 says the consumer is {src} (it dialled {dst})"),
        wire::proxy::Addresses::Unspec => "PROXY v2 LOCAL header (a health probe)".to_string(),
    };
    let link = header.tlvs().filter_map(Result::ok).find_map(|(kind, value)| {
        (kind == wire::proxy::TLV_AZURE && value.len() == 5 && value[0] == wire::proxy::AZURE_SUBTYPE_LINK_ID)
            .then(|| u32::from_le_bytes([value[1], value[2], value[3], value[4]]))
    });
    match link {
        Some(id) => format!("{addresses}, link id {id} (0x{id:08x})"),
        None => addresses,
    }
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
