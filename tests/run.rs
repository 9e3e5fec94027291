//! `overlink run` as a separate process: start-up, the admin API with `overlink ctl`, a clean
//! stop on SIGTERM with exit statistics, state kept across restarts, one-line start-up errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn overlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_overlink"))
}

fn write_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
accounts = ["provider-b", "team-a"]
[gateway]
io = "memory"
workers = 2
state_dir = "{state}"
[gateway.admin]
socket = "{socket}"
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
[[endpoints]]
name = "web-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80]
service = "web"
"#,
        state = dir.join("state").display(),
        socket = dir.join("admin.sock").display()
    );
    let path = dir.join("overlink.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(config: &Path) -> Child {
    overlink()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start overlink run")
}

fn wait_for(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the admin socket did not appear");
        sleep(Duration::from_millis(20));
    }
}

fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = overlink().arg("ctl").arg("--socket").arg(socket).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn terminate(mut child: Child) -> (i32, String, String) {
    let pid = i32::try_from(child.id()).unwrap();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        assert!(Instant::now() < deadline, "overlink did not stop on SIGTERM");
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn run_serves_the_api_stops_cleanly_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let socket = dir.path().join("admin.sock");
    let child = start(&config);
    wait_for(&socket);
    let (ok, out, err) = ctl(&socket, &["endpoint", "show", "web-a"]);
    assert!(ok, "{err}");
    assert!(out.contains("pending"), "{out}");
    let (ok, out, _) = ctl(&socket, &["endpoint", "approve", "web-a"]);
    assert!(ok && out.contains("approved"));
    let (ok, out, _) = ctl(&socket, &["stats"]);
    assert!(ok && out.contains("events.rx"), "{out}");

    // A second gateway on the same state directory and socket refuses to start, in one line.
    let second = overlink().args(["run", "--config"]).arg(&config).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("lock") || err.contains("in use"), "{err}");

    let (code, stdout, stderr) = terminate(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("totals at exit") && stdout.contains("port 0 (veth-c)"), "{stdout}");
    assert!(!socket.exists(), "the socket is removed at exit");

    // Restart: the approval is still there.
    let child = start(&config);
    wait_for(&socket);
    let (ok, out, _) = ctl(&socket, &["endpoint", "show", "web-a"]);
    assert!(ok && out.contains("approved"), "{out}");
    let (code, _, _) = terminate(child);
    assert_eq!(code, 0);
}

#[test]
fn start_up_errors_are_one_clear_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[gateway]\nworkers = 0\n").unwrap();
    for (args, expect) in [
        (vec!["run", "--config", bad.to_str().unwrap()], "gateway.workers"),
        (vec!["run", "--config", "/nonexistent/overlink.toml"], "cannot read"),
    ] {
        let out = overlink().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{err}");
    }
}
