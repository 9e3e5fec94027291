//! `overlink ctl` against a real admin API on a unix socket: the Azure-style verbs, tables and
//! `--json`, and a clear message when no gateway is running.

use std::path::Path;
use std::process::Command;
use std::thread;

use admin_http::{Limits, Listeners, Server};
use control::{Api, Control, Tokens};
use datapath::Telemetry;
use io::PortId;
use wire::EthernetAddress;

const CONFIG: &str = r#"
accounts = ["provider-b", "team-a"]
[gateway]
io = "memory"
state_dir = "STATE"
[[networks]]
name = "consumer"
interface = "veth-c"
address = "198.18.0.1/24"
[[networks]]
name = "provider"
interface = "veth-p"
address = "198.18.0.1/24"
[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]
"#;

fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overlink"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run overlink");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn ctl_walks_the_private_link_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config::parse(&CONFIG.replace("STATE", state.to_str().unwrap())).unwrap();
    let ports =
        vec![(PortId(0), EthernetAddress([2, 0, 0, 0, 0, 1])), (PortId(1), EthernetAddress([2, 0, 0, 0, 0, 2]))];
    let control = Control::open(config, ports).unwrap();
    let api = Api::new(control, Telemetry::new(1), Vec::new(), Tokens::default());
    let socket = dir.path().join("admin.sock");
    let listeners = Listeners { unix: Some(socket.clone()), tcp: None };
    let mut server = Server::bind(&listeners, Limits::default(), api).unwrap();
    let shutdown = server.shutdown_handle();
    let runner = thread::spawn(move || server.run());

    let (ok, out, err) = ctl(&socket, &["service", "list"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("NAME"), "a table with a header: {out}");
    let (ok, json, _) = ctl(&socket, &["--json", "service", "list"]);
    assert!(ok);
    let services: serde_json::Value = serde_json::from_str(&json).unwrap();
    let alias = services[0]["alias"].as_str().unwrap().to_string();
    assert!(out.contains(&alias));

    let (ok, out, err) = ctl(
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
            "--name",
            "ep1",
            "--message",
            "hello",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("ep1") && out.contains("pending"), "{out}");
    let (ok, out, _) = ctl(&socket, &["endpoint", "approve", "ep1"]);
    assert!(ok && out.contains("approved"), "{out}");
    let (ok, out, _) = ctl(&socket, &["endpoint", "list", "--state", "approved"]);
    assert!(ok && out.contains("ep1"), "{out}");
    let (ok, out, _) = ctl(&socket, &["endpoint", "reject", "ep1", "--reason", "expired contract"]);
    assert!(ok && out.contains("rejected") && out.contains("expired contract"), "{out}");
    // A rejected endpoint cannot be approved again: the API's message, and a failure exit.
    let (ok, _, err) = ctl(&socket, &["endpoint", "approve", "ep1"]);
    assert!(!ok);
    assert!(err.contains("cannot be approved again") && err.contains("409"), "{err}");
    let (ok, _, err) = ctl(&socket, &["endpoint", "show", "nope"]);
    assert!(!ok && err.contains("no endpoint `nope`") && err.contains("404"), "{err}");
    let (ok, out, _) = ctl(&socket, &["flows"]);
    assert!(ok && out.starts_with("PROTO"), "{out}");
    let (ok, out, _) = ctl(&socket, &["stats"]);
    assert!(ok && out.contains("events.rx"), "{out}");
    let (ok, out, _) = ctl(&socket, &["endpoint", "delete", "ep1"]);
    assert!(ok && out.contains("deleted"), "{out}");

    shutdown.shutdown();
    runner.join().unwrap().unwrap();

    // No gateway: one clear line and a failure exit.
    let (ok, _, err) = ctl(&socket, &["service", "list"]);
    assert!(!ok);
    assert!(err.contains("cannot reach the gateway") && err.contains("is `overlink run` running?"), "{err}");
}
