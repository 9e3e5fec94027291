//! `overlink demo` as a newcomer runs it: the walkthrough in namespaces succeeds, shows the
//! approval step, the NAT address the service saw and the consumer's own address and link id it
//! read from the PROXY v2 header, and leaves nothing behind.

use std::process::Command;

#[test]
fn the_demo_walks_through_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_overlink")).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the demo failed (it needs root):\n{stdout}\n{stderr}");
    assert!(stdout.contains("pending"), "{stdout}");
    assert!(stdout.contains("client: cannot connect to 198.18.0.50:80"), "pending passes nothing: {stdout}");
    assert!(stdout.contains("approved"), "{stdout}");
    assert!(stdout.contains("service: TCP connection from 198.18.0.200:"), "the service sees the NAT IP: {stdout}");
    // ... and, from the PROXY v2 header, the consumer's own address and the endpoint's link id.
    let link_id = stdout
        .lines()
        .find(|l| l.contains("web-for-team-a") && l.contains("approved"))
        .and_then(|l| l.split_whitespace().nth(7))
        .unwrap_or_else(|| panic!("no link id in the endpoint list: {stdout}"));
    assert!(
        stdout.contains("PROXY v2 says the consumer is 198.18.0.7:") && stdout.contains(&format!("link id {link_id} ")),
        "the service reads the consumer's address and link id {link_id} from the header: {stdout}"
    );
    assert!(stdout.contains("drops.endpoint_not_approved"), "{stdout}");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains("overlink-demo"), "namespaces left behind");
}

#[test]
fn the_in_memory_walkthrough_needs_no_root() {
    let out = Command::new(env!("CARGO_BIN_EXE_overlink")).args(["demo", "--in-memory"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("endpoint_not_approved"));
}
