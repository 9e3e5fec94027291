//! End to end, PROXY protocol v2 across identical prefixes: the gateway (`overlink run` on
//! AF_PACKET in its namespace, with the azure-link-id example plugin) puts a PROXY v2 header in
//! front of each TCP connection to the provider network, without terminating TCP.
//!
//! - nginx (Debian's, `listen … proxy_protocol`) reports `$proxy_protocol_addr` = the consumer's
//!   own address, 198.18.0.7, which the provider network has too;
//! - a receiver of ours (this test binary, re-run inside the provider namespace) parses the header
//!   with the `ppp` crate, checks the `0xEE` link-id TLV against the API, and stores the rest of
//!   the stream; a client's own PROXY header arrives as payload after ours;
//! - a server that speaks first (a banner) is answered in `on_handshake_ack` mode;
//! - 100 MB under loss, duplication and reordering on both sides arrive with the same SHA-256
//!   (nftables and htb do what `tc netem` would: see [`impair`]).
//!
//! Needs root, nginx, python3, nftables and tc (iproute2). Every namespace and process is removed at the end.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::*;

/// Set in the environment of the receiver process (this binary, run in the provider namespace).
const RECEIVER_ENV: &str = "OVERLINK_E2E_PROXY_RECEIVER";

/// The endpoints: `web` (nginx :8080), `tlv` (our receiver :9000), `banner` (our server that
/// speaks first, :2525), each with PROXY v2 on, in `on_handshake_ack` mode; `first` (the banner
/// server again, in `on_first_data` mode); `tls` (nginx `ssl proxy_protocol` on :8443).
const WEB_EP: &str = "198.18.0.50";
const TLV_EP: &str = "198.18.0.51";
const BANNER_EP: &str = "198.18.0.52";
const FIRST_EP: &str = "198.18.0.53";
const TLS_EP: &str = "198.18.0.54";

fn config(dir: &Path) -> String {
    let mut s = format!(
        r#"accounts = ["provider-b", "team-0"]
[gateway]
io = "afpacket"
workers = 1
state_dir = "{dir}/state"
plugins_dir = "{dir}/plugins"
[gateway.admin]
socket = "{dir}/admin.sock"
[[networks]]
name = "consumer-0"
interface = "gc0"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "gp"
address = "198.18.0.1/24"
"#,
        dir = dir.display()
    );
    for (name, backend, nat, placement) in [
        ("web", "198.18.0.10:8080", "198.18.0.200", "on_handshake_ack"),
        ("tlv", "198.18.0.10:9000", "198.18.0.201", "on_handshake_ack"),
        ("banner", "198.18.0.10:2525", "198.18.0.202", "on_handshake_ack"),
        ("first", "198.18.0.10:2525", "198.18.0.203", "on_first_data"),
        ("tls", "198.18.0.10:8443", "198.18.0.204", "on_handshake_ack"),
    ] {
        s += &format!(
            "[[services]]\nname = \"{name}\"\nprovider = \"provider-b\"\nnetwork = \"provider\"\nbackends = [\"{backend}\"]\n\
             nat_ips = [\"{nat}\"]\nvisibility = [\"team-0\"]\nauto_approval = [\"team-0\"]\nproxy_protocol = true\n\
             proxy_placement = \"{placement}\"\n"
        );
    }
    for (name, address, port, service) in [
        ("web-0", WEB_EP, 80, "web"),
        ("tlv-0", TLV_EP, 9000, "tlv"),
        ("banner-0", BANNER_EP, 25, "banner"),
        ("first-0", FIRST_EP, 25, "first"),
        ("tls-0", TLS_EP, 443, "tls"),
    ] {
        s += &format!(
            "[[endpoints]]\nname = \"{name}\"\naccount = \"team-0\"\nnetwork = \"consumer-0\"\naddress = \"{address}\"\n\
             ports = [{port}]\nservice = \"{service}\"\n"
        );
    }
    s
}

/// A topology with the gateway running the PROXY configuration and the azure-link-id plugin.
fn topology() -> Topology {
    need("python3", "python3");
    let mut t = Topology::new(Options::default());
    std::fs::write(t.path("overlink.toml"), config(t.dir())).unwrap();
    let plugins = t.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let (_, wasm) = policy::EXAMPLES.iter().find(|(n, _)| *n == "azure-link-id").expect("the example is built");
    std::fs::write(plugins.join("azure-link-id.wasm"), wasm).unwrap();
    t.start_gateway();
    // The plugin chain is loaded at start-up; wait until a first connection could use it.
    t
}

/// Starts the receiver (this test binary in receiver mode) in the provider namespace.
fn start_receiver(t: &mut Topology) {
    let exe = std::env::current_exe().unwrap();
    let out = t.path("received");
    std::fs::create_dir_all(&out).unwrap();
    let p = t.provider().to_string();
    let env = format!("{RECEIVER_ENV}={}", out.display());
    t.spawn(
        "receiver",
        &p,
        &["env", &env, exe.to_str().unwrap(), "--exact", "receiver_process", "--nocapture", "--test-threads", "1"],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !t.log("receiver").contains("receiver: listening") {
        assert!(std::time::Instant::now() < deadline, "the receiver did not start: {}", t.log("receiver"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn link_id(t: &Topology, endpoint: &str) -> u32 {
    let list = t.ctl(&["endpoint", "list"]);
    let e = list.as_array().unwrap().iter().find(|e| e["name"] == endpoint).unwrap_or_else(|| panic!("{list}"));
    u32::try_from(e["link_id"].as_u64().unwrap()).unwrap()
}

/// Runs a Python client in the consumer namespace; returns its stdout (asserting success).
fn python(t: &Topology, name: &str, code: &str, args: &[&str]) -> String {
    let script = t.script(name, code);
    let mut all = vec!["timeout", "240", "python3", script.as_str()];
    all.extend_from_slice(args);
    let out = t.exec(t.consumer(0), &all);
    assert!(
        out.status.success(),
        "{name} failed: {}{}\ngateway: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        t.gateway_log()
    );
    String::from_utf8_lossy(&out.stdout).into()
}

#[test]
fn nginx_reads_the_consumers_own_address_from_the_proxy_header() {
    let _serial = serial();
    need("nginx", "nginx");
    let mut t = topology();
    let d = t.dir().to_path_buf();
    std::fs::create_dir_all(d.join("nginx-tmp")).unwrap();
    let conf = format!(
        r#"user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format pp '$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port via $remote_addr';
    access_log {d}/pp.log pp;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    server {{
        listen 198.18.0.10:8080 proxy_protocol;
        location / {{ default_type text/plain; return 200 "$proxy_protocol_addr\n"; }}
    }}
    server {{
        listen 198.18.0.10:8443 ssl proxy_protocol;
        ssl_certificate {d}/tls.crt;
        ssl_certificate_key {d}/tls.key;
        location / {{ default_type text/plain; return 200 "tls $proxy_protocol_addr\n"; }}
    }}
}}
"#,
        d = d.display()
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    need("openssl", "openssl");
    let (key, crt) = (d.join("tls.key"), d.join("tls.crt"));
    must(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=overlink-test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    let p = t.provider().to_string();
    let (prefix, conf, err) = (
        d.display().to_string(),
        d.join("nginx.conf").display().to_string(),
        d.join("nginx-error.log").display().to_string(),
    );
    t.spawn("nginx", &p, &["nginx", "-p", &prefix, "-e", &err, "-c", &conf, "-g", "daemon off;"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.exec(&p, &["ss", "-Hltn", "src", "198.18.0.10:8080"]).stdout.is_empty() {
        assert!(std::time::Instant::now() < deadline, "nginx did not listen: {}", t.log("nginx"));
        std::thread::sleep(Duration::from_millis(20));
    }

    let (body, code) = t.curl(0, &format!("http://{WEB_EP}/"), 10);
    assert_eq!((body.trim(), code.as_str()), (CONSUMER, "200"), "gateway: {}", t.gateway_log());

    // 50 connections in parallel: every one with its header.
    let out = t.exec(
        t.consumer(0),
        &["sh", "-c", &format!("seq 50 | xargs -P 50 -I{{}} curl -s -m 10 http://{WEB_EP}/?n={{}} | sort | uniq -c")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("50 {CONSUMER}"), "parallel curls: {text}");

    // TLS behind the header: nginx's `ssl proxy_protocol` reads the header, then the ClientHello.
    let out = t.exec(t.consumer(0), &["curl", "-s", "-k", "-m", "10", &format!("https://{TLS_EP}/")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("tls {CONSUMER}"), "{out:?}");

    let log = std::fs::read_to_string(d.join("pp.log")).unwrap();
    assert!(log.contains(&format!(" {TLS_EP}:443 via 198.18.0.204")), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.contains(":443 ")).collect();
    assert_eq!(lines.len(), 51, "{log}");
    for line in &lines {
        assert!(line.starts_with(&format!("{CONSUMER}:")), "{line}");
        assert!(line.ends_with(&format!(" {WEB_EP}:80 via 198.18.0.200")), "{line}");
    }
    let errors = std::fs::read_to_string(d.join("nginx-error.log")).unwrap_or_default();
    assert!(!errors.contains("broken header"), "{errors}");
    let stats = t.stop_gateway();
    assert_eq!(stats.drop_count("pp_oversize"), 0);
}

#[test]
fn our_receiver_sees_the_link_id_and_a_clients_own_header_after_ours() {
    let _serial = serial();
    let mut t = topology();
    start_receiver(&mut t);
    let id = link_id(&t, "tlv-0");
    // A client that sends its own PROXY v2 header (claiming 10.9.9.9) and then a line.
    let client = r#"
import socket, sys
own = bytes.fromhex("0d0a0d0a000d0a515549540a" "21" "11" "000c" "0a090909" "0a090909" "1f90" "0050")
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(own + b"hello after a header of my own\n")
s.shutdown(socket.SHUT_WR)
print(s.makefile("rb").readline().decode().strip())
"#;
    let answer = python(&t, "own-header.py", client, &[TLV_EP, "9000"]);
    assert!(answer.starts_with("ok "), "receiver answered: {answer}");
    let record = wait_record(&t, 1);
    let fields: Vec<&str> = record[0].split_whitespace().collect();
    // "conn <src> <dst> <linkid> <bytes> <file>"
    assert_eq!(fields[1].split(':').next(), Some(CONSUMER), "{record:?}");
    assert_eq!(fields[2], format!("{TLV_EP}:9000"), "{record:?}");
    assert_eq!(fields[3], id.to_string(), "the 0xEE TLV holds the endpoint's link id");
    let rest = std::fs::read(fields[5]).unwrap();
    let own = hex("0d0a0d0a000d0a515549540a2111000c0a0909090a0909091f900050");
    assert_eq!(&rest[..own.len()], &own[..], "the client's own header arrives as data after ours");
    assert_eq!(&rest[own.len()..], b"hello after a header of my own\n");
    drop(t);
}

#[test]
fn a_server_that_speaks_first_gets_the_header_without_client_data() {
    let _serial = serial();
    let mut t = topology();
    start_receiver(&mut t);
    // The client sends nothing: it waits for the banner.
    let client = r#"
import socket, sys, time
t0 = time.time()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
banner = s.makefile("rb").readline().decode().strip()
print(banner, round(time.time() - t0, 3))
"#;
    let out = python(&t, "banner.py", client, &[BANNER_EP, "25"]);
    let (banner, secs) = out.trim().rsplit_once(' ').unwrap();
    assert!(banner.starts_with(&format!("220 {CONSUMER}:")), "banner: {out}");
    let secs: f64 = secs.parse().unwrap();
    assert!(secs < 1.0, "the banner took {secs} s");
    // The header segment is lost once on its way to the server (an nftables rule in the provider
    // namespace drops the first 88-byte segment: IP 20 + TCP 32 + header 36): the gateway sends it
    // again on its own timer, and the banner still comes, one RTO (250 ms) later.
    let rules = "table ip lose {\n  chain in {\n    type filter hook input priority 0;\n\
                 tcp dport 2525 ip length 88 quota until 100 bytes counter drop\n  }\n}\n";
    let file = t.path("lose.nft");
    std::fs::write(&file, rules).unwrap();
    must(&["ip", "netns", "exec", t.provider(), "nft", "-f", file.to_str().unwrap()]);
    let before = t.ctl(&["stats"])["events"]["pp_hdr_timer_tx"].as_u64().unwrap_or(0);
    let out = python(&t, "banner2.py", client, &[BANNER_EP, "25"]);
    let (banner, secs) = out.trim().rsplit_once(' ').unwrap();
    assert!(banner.starts_with(&format!("220 {CONSUMER}:")), "banner: {out}");
    let secs: f64 = secs.parse().unwrap();
    assert!((0.2..2.0).contains(&secs), "the banner took {secs} s after a lost header");
    let lost =
        String::from_utf8_lossy(&t.exec(t.provider(), &["nft", "list", "table", "ip", "lose"]).stdout).to_string();
    assert!(lost.contains("counter packets 1 "), "exactly one header segment was dropped: {lost}");
    let after = t.ctl(&["stats"])["events"]["pp_hdr_timer_tx"].as_u64().unwrap_or(0);
    assert!(after > before, "the gateway retransmitted the header itself");

    // The same with on_first_data: the server waits for a header that never comes (no banner).
    let client = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
try:
    print("got", s.recv(1000))
except socket.timeout:
    print("no banner")
"#;
    assert_eq!(python(&t, "first.py", client, &[FIRST_EP, "25"]).trim(), "no banner");
}

#[test]
fn a_100_mb_transfer_under_loss_and_reordering_arrives_intact() {
    let _serial = serial();
    need("tc", "iproute2");
    need("nft", "nftables");
    let mut t = topology();
    start_receiver(&mut t);
    // Loss, duplication and reordering on both sides: the client's data and the server's ACKs.
    let (c, p) = (t.consumer(0).to_string(), t.provider().to_string());
    impair(&t, &c, "c0", TLV_EP);
    impair(&t, &p, "p0", "198.18.0.201");
    let client = r#"
import hashlib, os, socket, sys
total = 100 * 1024 * 1024
h = hashlib.sha256()
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
chunk = os.urandom(1 << 20)
sent = 0
while sent < total:
    block = bytes([sent >> 20 & 0xff]) + chunk[1:]
    s.sendall(block)
    h.update(block)
    sent += len(block)
s.shutdown(socket.SHUT_WR)
print(s.makefile("rb").readline().decode().strip(), h.hexdigest())
"#;
    let start = std::time::Instant::now();
    let out = python(&t, "bulk.py", client, &[TLV_EP, "9000"]);
    let secs = start.elapsed().as_secs_f64();
    let (answer, digest) = out.trim().rsplit_once(' ').unwrap();
    assert!(answer.starts_with("ok "), "{out}");
    let record = wait_record(&t, 1);
    let fields: Vec<&str> = record[0].split_whitespace().collect();
    assert_eq!(fields[4], (100 * 1024 * 1024).to_string(), "{record:?}");
    let sum = must(&["sha256sum", fields[5]]);
    assert_eq!(sum.split_whitespace().next(), Some(digest), "the stream after the header is intact");
    std::fs::remove_file(fields[5]).unwrap();
    let (consumer, provider) = (impaired(&t, t.consumer(0)), impaired(&t, t.provider()));
    eprintln!("impairments [dropped, duplicated, held back]: client data {consumer:?}, server ACKs {provider:?}");
    assert!(consumer.iter().chain(&provider).all(|&n| n > 0), "every impairment happened");
    let stats = t.ctl(&["stats"]);
    let event = |name: &str| stats["events"][name].as_u64().unwrap_or(0);
    eprintln!(
        "100 MB in {secs:.1} s ({:.1} MB/s) under impairment; gateway: pp_hdr_inserted {} pp_hdr_converted_ack {} \
         pp_hdr_reprepended {} pp_sack_block_removed {} pp_ack_clamped {}",
        100.0 / secs,
        event("pp_hdr_inserted"),
        event("pp_hdr_converted_ack"),
        event("pp_hdr_reprepended"),
        event("pp_sack_block_removed"),
        event("pp_ack_clamped")
    );
    assert_eq!(event("pp_hdr_giveup"), 0, "{stats}");
}

/// Loss (0.3%), duplication (0.2%) and reordering (5% of segments held back in a slow queue) on
/// what `ns` sends out of `dev` towards `peer`.
///
/// `tc netem` would be the usual tool, but the kernels these tests run on may be built without it
/// (no `sch_netem`, no modules); nftables and the htb qdisc are always there. nftables drops and
/// duplicates at random (`numgen random`, `dup to`), and marks a random 5% for an htb class limited
/// to 40 Mbit/s, so those segments fall behind the ones sent after them: reordering.
fn impair(t: &Topology, ns: &str, dev: &str, peer: &str) {
    let rules = format!(
        "table ip impair {{\n  chain out {{\n    type filter hook output priority 0;\n\
         oifname \"{dev}\" numgen random mod 1000 < 3 counter drop\n\
         oifname \"{dev}\" numgen random mod 1000 < 2 counter dup to {peer} device \"{dev}\"\n\
         oifname \"{dev}\" numgen random mod 100 < 5 counter meta priority set 1:20\n  }}\n}}\n"
    );
    let file = t.path(&format!("impair-{dev}.nft"));
    std::fs::write(&file, rules).unwrap();
    must(&["ip", "netns", "exec", ns, "nft", "-f", file.to_str().unwrap()]);
    for args in [
        &["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "1000"][..],
        &["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit", "prio", "0"][..],
        &[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", "40mbit", "ceil", "40mbit",
            "prio", "7",
        ][..],
    ] {
        let mut all = vec!["ip", "netns", "exec", ns, "tc"];
        all.extend_from_slice(args);
        must(&all);
    }
}

/// Packets dropped, duplicated and held back by [`impair`] in `ns`.
fn impaired(t: &Topology, ns: &str) -> [u64; 3] {
    let out = String::from_utf8_lossy(&t.exec(ns, &["nft", "list", "table", "ip", "impair"]).stdout).to_string();
    let mut counts = [0u64; 3];
    for (i, line) in out.lines().filter(|l| l.contains("counter packets")).take(3).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "packets").unwrap();
        counts[i] = words[at + 1].parse().unwrap();
    }
    counts
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Waits for `n` connection records from the receiver.
fn wait_record(t: &Topology, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = t.log("receiver");
        let records: Vec<String> = log.lines().filter(|l| l.starts_with("conn ")).map(String::from).collect();
        let failures: Vec<&str> = log.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(failures.is_empty(), "receiver: {failures:?}");
        if records.len() >= n {
            return records;
        }
        assert!(std::time::Instant::now() < deadline, "no record from the receiver: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- the receiver: runs only when started by `start_receiver` ----

/// Not a test of its own: the receiver process. A no-op in a normal run.
#[test]
fn receiver_process() {
    let Ok(dir) = std::env::var(RECEIVER_ENV) else { return };
    let tlv = TcpListener::bind("198.18.0.10:9000").unwrap();
    let banner = TcpListener::bind("198.18.0.10:2525").unwrap();
    println!("receiver: listening");
    std::io::stdout().flush().unwrap();
    std::thread::spawn(move || {
        for s in banner.incoming().flatten() {
            std::thread::spawn(move || serve_banner(s));
        }
    });
    for (n, s) in tlv.incoming().flatten().enumerate() {
        let dir = dir.clone();
        std::thread::spawn(move || serve_tlv(s, &dir, n));
    }
}

/// Reads the header the way a careful receiver does: the first readable data must hold all of
/// it (`MSG_PEEK`), then it is parsed by `ppp` and consumed.
fn read_header(s: &mut TcpStream) -> Result<(SocketAddr, SocketAddr, Option<u32>), String> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.peek(&mut buf).map_err(|e| format!("peek: {e}"))?;
    let header =
        ppp::v2::Header::try_from(&buf[..n]).map_err(|e| format!("not a whole PROXY v2 header in {n} bytes: {e:?}"))?;
    if header.command != ppp::v2::Command::Proxy {
        return Err(format!("command {:?}", header.command));
    }
    let (src, dst) = match header.addresses {
        ppp::v2::Addresses::IPv4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        other => return Err(format!("addresses {other:?}")),
    };
    let mut link = None;
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|e| format!("tlv: {e:?}"))?;
        if tlv.kind == 0xEE {
            if tlv.value.len() != 5 || tlv.value[0] != 0x01 {
                return Err(format!("bad 0xEE TLV {:?}", tlv.value));
            }
            link = Some(u32::from_le_bytes([tlv.value[1], tlv.value[2], tlv.value[3], tlv.value[4]]));
        }
    }
    let len = header.len();
    let mut skip = vec![0u8; len];
    s.read_exact(&mut skip).map_err(|e| format!("read: {e}"))?;
    Ok((src, dst, link))
}

fn serve_tlv(mut s: TcpStream, dir: &str, n: usize) {
    let (src, dst, link) = match read_header(&mut s) {
        Ok(h) => h,
        Err(e) => {
            println!("FAIL {e}");
            return;
        }
    };
    let Some(link) = link else {
        println!("FAIL no 0xEE TLV");
        return;
    };
    let path = format!("{dir}/stream-{n}");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                file.write_all(&buf[..k]).unwrap();
                total += k as u64;
            }
            Err(e) => {
                println!("FAIL read after {total} bytes: {e}");
                return;
            }
        }
    }
    // One write: a formatted write may go out in pieces, and the client reads one line.
    let _ = s.write_all(format!("ok {total}\n").as_bytes());
    println!("conn {src} {dst} {link} {total} {path}");
    std::io::stdout().flush().unwrap();
}

fn serve_banner(mut s: TcpStream) {
    // A spec-following server that speaks first: it waits for the header, then greets.
    match read_header(&mut s) {
        Ok((src, _, _)) => {
            let _ = s.write_all(format!("220 {src} ready\r\n").as_bytes());
        }
        Err(e) => println!("FAIL banner: {e}"),
    }
}
