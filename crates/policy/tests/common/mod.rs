//! Shared helpers: the compiled plugins, a plugins directory, requests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datapath::{ConnectRequest, ConnectVerdict, Endpoint, Policy, Service, Tlvs};
use policy::{Limits, PolicyHost};

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The path of a compiled plugin by its name in `PLUGINS`.
pub fn plugin(name: &str) -> PathBuf {
    let (_, path) =
        PLUGINS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no plugin {name} in {PLUGINS:?}"));
    PathBuf::from(path)
}

/// The bytes of a compiled plugin.
pub fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).expect("read plugin")
}

/// Limits for tests: fast backoff so disabling can be observed.
pub fn limits() -> Limits {
    Limits {
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        max_instances: 64,
        ..Limits::default()
    }
}

pub fn host() -> PolicyHost {
    PolicyHost::new(limits()).expect("engine")
}

/// A temporary plugins directory holding `files` (file name, plugin name).
pub fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for (file, name) in files {
        install(d.path(), file, name);
    }
    d
}

/// Copies plugin `name` to `dir/file` atomically (write then rename), with a fresh inode.
pub fn install(dir: &Path, file: &str, name: &str) {
    install_bytes(dir, file, &bytes(name));
}

pub fn install_bytes(dir: &Path, file: &str, data: &[u8]) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, data).expect("write plugin");
    std::fs::rename(&tmp, dir.join(file)).expect("rename plugin");
}

pub fn configs(list: &[(&str, &str)]) -> HashMap<String, String> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Asks `policy` about a TCP flow from `source` to the standard endpoint on `port`.
pub fn ask(
    policy: &mut impl Policy,
    service: &Service,
    endpoint: &Endpoint,
    source: SocketAddrV4,
    port: u16,
) -> (ConnectVerdict, Tlvs) {
    let request = ConnectRequest {
        service,
        endpoint,
        protocol: flow::Protocol::Tcp,
        source,
        destination: SocketAddrV4::new(testkit::ENDPOINT_IP, port),
    };
    let mut tlvs = Tlvs::default();
    let verdict = policy.connect(&request, &mut tlvs);
    (verdict, tlvs)
}

pub fn src(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(testkit::CONSUMER.ip, port)
}

/// An approval request from `account`.
pub fn approval_request(account: &str) -> control::hooks::ApprovalRequest<'_> {
    control::hooks::ApprovalRequest {
        account,
        endpoint: "web-a",
        network: "consumer",
        address: testkit::ENDPOINT_IP,
        service: "web",
        provider: "provider-1",
        message: "please",
    }
}

/// The TLVs as (type, value) pairs.
pub fn pairs(tlvs: &Tlvs) -> Vec<(u8, Vec<u8>)> {
    tlvs.iter().map(|(k, v)| (k, v.to_vec())).collect()
}
