//! Crash safety of the control plane: a child process applies mutations through `Control`
//! (create, approve, reject) and prints each one after it returns; the parent kills it with
//! SIGKILL at a random moment, reopens the state directory, and checks that every acknowledged
//! change is there and nothing is torn. Fifty rounds on one directory, each continuing the last.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use control::{Actor, Control, CreateEndpoint};

const CHILD_ENV: &str = "OVERLINK_CONTROL_CRASH_DIR";

/// The fixture with a /16 consumer network, so endpoints do not run out of addresses.
fn config(dir: &Path) -> config::Config {
    let text = common::config_text(dir).replacen("198.18.0.1/24", "198.18.0.1/16", 1);
    config::parse(&text).expect("valid configuration")
}

/// The child: mutate forever, acknowledging each change on stdout.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let mut control = Control::open(config(Path::new(&dir)), common::ports()).expect("open");
    let actor = Actor("crash-test".into());
    let alias = control.services()[0].alias.clone();
    let mut i = control.endpoints().len();
    loop {
        let name = format!("e{i}");
        let address = Ipv4Addr::new(198, 18, 1 + u8::try_from(i / 250).unwrap(), 1 + u8::try_from(i % 250).unwrap());
        let request = CreateEndpoint {
            name: Some(name.clone()),
            account: "team-a".into(),
            network: "consumer".into(),
            address,
            ports: vec![80],
            service: alias.clone(),
            message: String::new(),
        };
        if i >= 60_000 {
            return;
        }
        control.create_endpoint(&actor, request).expect("create");
        println!("ACK create {name} {}", control.endpoint(&name).unwrap().link_id);
        match i % 3 {
            0 => {
                control.approve(&actor, &name).expect("approve");
                println!("ACK approved {name}");
            }
            1 => {
                control.reject(&actor, &name, "crash test").expect("reject");
                println!("ACK rejected {name}");
            }
            _ => {}
        }
        i += 1;
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_changes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    // On the target directory's disk, not a tmpfs, so that fsync is real.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut seed = std::env::var("OVERLINK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
        u64::from(nanos) ^ 0x9e37_79b9_7f4a_7c15
    });
    eprintln!("seed {seed}");
    let mut created: HashMap<String, u32> = HashMap::new();
    let mut states: HashMap<String, &'static str> = HashMap::new();
    let mut alias: Option<String> = None;
    let mut killed = 0;
    for round in 0..50 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(xorshift(&mut seed) % 60_000);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        if !finished {
            assert_eq!(status.signal(), Some(9), "round {round}: the child died of SIGKILL");
            killed += 1;
        }
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        for line in out.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ACK", "create", name, link] => {
                    created.insert(name.to_string(), link.parse().unwrap());
                    states.insert(name.to_string(), "pending");
                }
                ["ACK", "approved", name] => {
                    states.insert(name.to_string(), "approved");
                }
                ["ACK", "rejected", name] => {
                    states.insert(name.to_string(), "rejected");
                }
                _ => {}
            }
        }
        // Reopen: every acknowledged change is there, nothing is torn.
        let control = Control::open(config(dir.path()), common::ports())
            .unwrap_or_else(|e| panic!("round {round}: the state does not reopen: {e}"));
        let current = control.services()[0].alias.clone();
        match &alias {
            Some(a) => assert_eq!(&current, a, "the alias is stable"),
            None => alias = Some(current),
        }
        let endpoints = control.endpoints();
        let mut link_ids = HashSet::new();
        for e in &endpoints {
            assert!(link_ids.insert(e.link_id), "round {round}: link id {} twice", e.link_id);
            assert!(["pending", "approved", "rejected"].contains(&e.state));
        }
        for (name, link) in &created {
            let e = endpoints.iter().find(|e| &e.name == name);
            let e = e.unwrap_or_else(|| panic!("round {round}: acknowledged endpoint {name} is missing"));
            assert_eq!(e.link_id, *link, "round {round}: {name} kept its link id");
            let expected = states[name];
            // An unacknowledged state change may or may not have landed; an acknowledged one must have.
            if expected != "pending" {
                assert_eq!(e.state, expected, "round {round}: acknowledged state of {name}");
            }
        }
        // Names run without gaps: the child creates e0, e1, ... in order.
        let mut names: Vec<usize> = endpoints.iter().map(|e| e.name[1..].parse().unwrap()).collect();
        names.sort_unstable();
        assert!(names.iter().enumerate().all(|(i, n)| i == *n), "round {round}: endpoints are a prefix e0..");
        drop(control);
    }
    eprintln!("{killed} of 50 rounds killed; {} endpoints acknowledged", created.len());
    assert!(killed >= 40, "only {killed} of 50 rounds were killed mid-run");
    assert!(created.len() > 20, "only {} acknowledged creations: the test did not exercise much", created.len());
}
