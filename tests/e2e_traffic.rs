//! End to end with real peers from Debian: the gateway (`overlink run`, AF_PACKET) in its own
//! namespace between consumer networks and a provider network that all use 198.18.0.0/24.
//! nginx serves in the provider network, curl, iperf3 and a Python asyncio client run in the
//! consumer networks; approval and rejection go through `overlink ctl`.
//!
//! Needs root. Everything a test makes is removed at its end, also when an assertion fails.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// sha256 of a file, by `sha256sum`.
fn sha256(path: &std::path::Path) -> String {
    must(&["sha256sum", path.to_str().unwrap()]).split_whitespace().next().unwrap().to_string()
}

/// Runs iperf3 (client in consumer network 0, server in the provider network) and returns its JSON.
fn iperf3(t: &mut Topology, extra: &[&str]) -> serde_json::Value {
    t.start_iperf3_server("iperf3-server");
    let mut args = vec!["iperf3", "-c", PERF, "-p", "5201", "--json"];
    args.extend_from_slice(extra);
    let out = t.exec(t.consumer(0), &["timeout", "30", "sh", "-c", &args.join(" ")]);
    let server = t.wait_for("iperf3-server", Duration::from_secs(5));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3 {extra:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(out.status.success() && json.get("error").is_none(), "iperf3 {extra:?} failed: {json}");
    assert!(server.is_some_and(|s| s.success()), "the iperf3 server did not finish: {}", t.log("iperf3-server"));
    json
}

/// Requirements 1 and 2: nginx sees the NAT address; HTTP both ways with every byte intact;
/// iperf3 TCP in both directions and UDP; ICMP echo to the endpoint.
#[test]
fn nginx_sees_the_nat_address_and_bulk_tcp_udp_and_icmp_pass_intact() {
    let _serial = serial();
    need("curl", "curl");
    let mut t = Topology::new(Options::default());
    t.write_config(true, 1);
    t.start_nginx();
    t.start_gateway();

    // A page through the endpoint; nginx reports the NAT address as the peer.
    let (body, code) = t.curl(0, &format!("http://{WEB}/index.html"), 5);
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello from the provider network\n"));
    let (body, code) = t.curl(0, &format!("http://{WEB}/whoami"), 5);
    assert_eq!(code, "200");
    let words: Vec<&str> = body.split_whitespace().collect();
    assert_eq!((words[0], words[2]), (WEB_NAT, "/whoami"), "nginx saw {body:?}");
    let log = t.nginx_log();
    assert!(log.lines().count() >= 2 && log.lines().all(|l| l.starts_with(&format!("{WEB_NAT} "))), "{log}");
    assert!(!log.contains(CONSUMER), "the consumer's own address reached the provider network: {log}");

    // 24 MiB of random bytes down (GET) and up (PUT, nginx's WebDAV), compared by sha256.
    let down = t.path("www/big.bin");
    must(&["sh", "-c", &format!("head -c 25165824 /dev/urandom > {}", down.display())]);
    let got = t.path("got.bin");
    let out = t.exec(
        t.consumer(0),
        &["curl", "-sS", "-m", "30", "-o", got.to_str().unwrap(), &format!("http://{WEB}/big.bin")],
    );
    assert!(out.status.success(), "download: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&got), sha256(&down), "the download arrived changed");
    let out = t.exec(
        t.consumer(0),
        &["curl", "-sS", "-m", "30", "-f", "-T", down.to_str().unwrap(), &format!("http://{WEB}/up/big.bin")],
    );
    assert!(out.status.success(), "upload: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&t.path("www/up/big.bin")), sha256(&down), "the upload arrived changed");

    // iperf3 TCP, consumer → provider and (-R) provider → consumer. The receiver's count ends at
    // the test's end, so what was still in flight then is missing from it: allow a few MB.
    for extra in [&["-t", "2"][..], &["-t", "2", "-R"][..]] {
        let j = iperf3(&mut t, extra);
        let sent = j["end"]["sum_sent"]["bytes"].as_u64().unwrap();
        let received = j["end"]["sum_received"]["bytes"].as_u64().unwrap();
        let gbps = j["end"]["sum_received"]["bits_per_second"].as_f64().unwrap() / 1e9;
        eprintln!("iperf3 {extra:?}: sent {sent} received {received} bytes, {gbps:.2} Gbit/s");
        assert!(received > 10_000_000, "iperf3 {extra:?}: only {received} bytes arrived");
        assert!(sent - received <= 8 << 20, "iperf3 {extra:?}: sent {sent}, received {received}");
        let retransmits = j["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
        eprintln!("iperf3 {extra:?}: {retransmits} retransmits");
    }
    // iperf3 UDP at a bounded rate: loss counted and small.
    let (c, p) = (t.consumer(0).to_string(), t.provider().to_string());
    let before = [t.link_stat(&c, "c0", "tx_packets"), t.link_stat(&p, "p0", "rx_packets")];
    let j = iperf3(&mut t, &["-u", "-b", "20M", "-l", "1200", "-t", "2"]);
    let after = [t.link_stat(&c, "c0", "tx_packets"), t.link_stat(&p, "p0", "rx_packets")];
    eprintln!("UDP test: c0 sent {} frames, p0 received {}", after[0] - before[0], after[1] - before[1]);
    eprintln!("{}", t.ctl(&["stats"]));
    let sum = &j["end"]["sum"];
    let (packets, lost) = (sum["packets"].as_u64().unwrap(), sum["lost_packets"].as_u64().unwrap());
    eprintln!("iperf3 UDP: {packets} packets, {lost} lost");
    assert!(packets > 3000, "{sum}");
    assert!(lost * 20 <= packets, "more than 5% UDP loss: {sum}");

    // ICMP echo to the endpoint address: every request answered.
    let ping = t.exec(t.consumer(0), &["ping", "-c", "5", "-i", "0.2", "-W", "1", WEB]);
    let text = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(ping.status.success() && text.contains("5 packets transmitted, 5 received"), "{text}");

    // Offloads are off: no super-frame reached the gateway. Bulk TCP fills the rx rings now and
    // then (that loss is what the retransmits above repaired); every lost frame is counted.
    let stats = t.stop_gateway();
    eprintln!("{stats:?}");
    for port in ["gc0", "gp"] {
        assert_eq!(stats.backend(port, "oversize"), 0, "{stats:?}");
    }
    assert_eq!(stats.port_drops_besides_overruns(), 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.received, stats.forwarded + stats.local + stats.dropped, "{stats:?}");
}

/// Requirement 3: 1,000 connections open at once from one consumer host, every answer checked.
#[test]
fn a_thousand_concurrent_connections_from_one_host_are_all_answered() {
    let _serial = serial();
    need("python3", "python3");
    let mut t = Topology::new(Options::default());
    t.write_config(true, 2);
    t.start_nginx();
    t.start_gateway();
    let script = t.script("olclient.py", CONCURRENT_PY);
    let out = t.exec(t.consumer(0), &["timeout", "90", "python3", &script, WEB, "1000", "c", "0", WEB_NAT]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let r: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("client: {e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["open_at_once"], 1000, "{r}");
    assert_eq!(r["ok"], 1000, "{r}");
    // 1,000 live flows at once: 1,000 distinct NAT ports towards the one backend.
    assert_eq!(r["distinct_nat_ports"], 1000, "{r}");
    let stats = t.stop_gateway();
    assert_eq!(stats.port_drops_besides_overruns(), 0, "{stats:?}");
}

/// Requirement 4: a pending endpoint passes nothing; approval works for the next connection;
/// rejection resets a running transfer within a second.
#[test]
fn approval_is_live_and_a_reject_resets_a_running_transfer_within_a_second() {
    let _serial = serial();
    let mut t = Topology::new(Options::default());
    t.write_config(false, 1);
    t.start_nginx();
    t.start_gateway();
    assert_eq!(t.endpoint_state("web-0"), "pending");

    // Pending: nothing reaches nginx.
    let (_, code) = t.curl(0, &format!("http://{WEB}/index.html"), 2);
    assert_eq!(code, "000", "a pending endpoint must pass nothing");
    assert_eq!(t.nginx_log(), "", "a pending endpoint let a request through");
    let stats = t.ctl(&["stats"]);
    assert!(stats["drops"]["endpoint_not_approved"].as_u64().unwrap_or(0) >= 1, "{stats}");

    // Approve; the next connection works.
    t.ctl(&["endpoint", "approve", "web-0"]);
    let (body, code) = t.curl(0, &format!("http://{WEB}/index.html"), 5);
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello from the provider network\n"));

    // A slow download (64 KiB/s of 16 MiB) is running when the endpoint is rejected.
    must(&["sh", "-c", &format!("head -c 16777216 /dev/zero > {}", t.path("www/slow/big.bin").display())]);
    let c = t.consumer(0).to_string();
    let url = format!("http://{WEB}/slow/big.bin");
    t.spawn("download", &c, &["curl", "-sS", "-m", "60", "-o", "/dev/null", "-w", "%{size_download}\n", &url]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(t.child("download").try_wait().unwrap().is_none(), "the download ended early: {}", t.log("download"));
    let started = Instant::now();
    t.ctl(&["endpoint", "reject", "web-0", "--reason", "contract ended"]);
    let status = t.wait_for("download", Duration::from_secs(10));
    let elapsed = started.elapsed();
    let log = t.log("download");
    eprintln!("reject → download error in {elapsed:?}: {log}");
    let status = status.unwrap_or_else(|| panic!("the download still ran 10 s after the reject: {log}"));
    // curl's exit code 56: failure receiving data (connection reset by peer).
    assert_eq!(status.code(), Some(56), "{log}");
    assert!(log.contains("reset"), "{log}");
    assert!(elapsed < Duration::from_secs(1), "the running transfer was reset after {elapsed:?}");
    assert_eq!(t.endpoint_state("web-0"), "rejected");

    // Rejected: nothing passes again.
    let before = t.nginx_log().lines().count();
    let (_, code) = t.curl(0, &format!("http://{WEB}/index.html"), 2);
    assert_eq!(code, "000");
    assert_eq!(t.nginx_log().lines().count(), before);
    let stats = t.stop_gateway();
    assert!(stats.drop_count("flow_revoked") + stats.drop_count("endpoint_not_approved") >= 2, "{stats:?}");
}

/// Requirement 5: two consumer networks with the same address (and the same source ports) reach
/// one service through two endpoints at once; each gets its own answers.
#[test]
fn two_consumers_with_the_same_address_reach_one_service_through_two_endpoints_at_once() {
    let _serial = serial();
    need("python3", "python3");
    let mut t = Topology::new(Options { consumers: 2, offloads_off: true });
    t.write_config(true, 1);
    t.start_nginx();
    t.start_gateway();
    let script = t.script("olclient.py", CONCURRENT_PY);
    // The same 200 source ports 40000..40199 from 198.18.0.7 in both networks: identical 5-tuples.
    for i in 0..2 {
        let ns = t.consumer(i).to_string();
        t.spawn(
            &format!("client-{i}"),
            &ns,
            &["timeout", "60", "python3", &script, WEB, "200", &format!("consumer{i}"), "40000", WEB_NAT],
        );
    }
    for i in 0..2 {
        let name = format!("client-{i}");
        let status = t.wait_for(&name, Duration::from_secs(70));
        let text = t.log(&name);
        assert!(status.is_some_and(|s| s.success()), "{name}: {text}");
        let r: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
        // Every answer names this consumer's own request.
        assert_eq!((r["ok"].as_u64(), r["open_at_once"].as_u64()), (Some(200), Some(200)), "{name}: {r}");
    }
    // nginx saw 400 connections from 400 distinct NAT ports.
    let log = t.nginx_log();
    let peers: std::collections::HashSet<(&str, &str)> = log
        .lines()
        .filter(|l| l.contains("/whoami?consumer"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0], w[1])
        })
        .collect();
    assert_eq!(peers.len(), 400, "{log}");
    assert!(peers.iter().all(|(a, _)| *a == WEB_NAT));
    for i in 0..2 {
        let (body, code) = t.curl(i, &format!("http://{WEB}/whoami?again{i}"), 5);
        assert_eq!(code, "200");
        assert!(body.trim_end().ends_with(&format!("/whoami?again{i}")), "{body}");
        let ping = t.exec(t.consumer(i), &["ping", "-c", "2", "-i", "0.2", "-W", "1", WEB]);
        assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    }
    let flows = t.ctl(&["endpoint", "list"]);
    assert!(flows.as_array().unwrap().iter().filter(|e| e["state"] == "approved").count() >= 2, "{flows}");
    let stats = t.stop_gateway();
    assert_eq!(stats.port_drops_besides_overruns(), 0, "{stats:?}");
}
