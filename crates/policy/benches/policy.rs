//! New flows per second through the datapath with the example chain (azure-link-id, port-guard
//! and allow-accounts) against the same policy in native Rust; the cost of one `connect`; the
//! hot-reload swap time. Prints `bench <name> <value> <unit>` lines, then runs criterion.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use datapath::{ConnectRequest, ConnectVerdict, Policy, Tlvs, WorkerConfig};
use policy::{Limits, PolicyHost};
use testkit::*;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

fn plugin(name: &str) -> &'static str {
    PLUGINS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p).expect("plugin built")
}

/// The example chain in native Rust.
#[derive(Debug)]
struct Native {
    ports: Vec<u16>,
}

impl Policy for Native {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        let mut value = [0x01, 0, 0, 0, 0];
        value[1..].copy_from_slice(&request.endpoint.link_id.to_le_bytes());
        if tlvs.push(0xEE, &value).is_err() {
            return ConnectVerdict::Reset;
        }
        if !self.ports.contains(&request.destination.port()) {
            tlvs.clear();
            return ConnectVerdict::Reset;
        }
        ConnectVerdict::Allow
    }
}

fn example_dir() -> (tempfile::TempDir, HashMap<String, String>) {
    let d = tempfile::tempdir().expect("tempdir");
    for (file, name) in
        [("10-azure.wasm", "azure-link-id"), ("20-ports.wasm", "port-guard"), ("90-accounts.wasm", "allow-accounts")]
    {
        std::fs::copy(plugin(name), d.path().join(file)).expect("copy");
    }
    let configs =
        [("20-ports.wasm", r#"{"ports": [80, 443]}"#), ("90-accounts.wasm", r#"{"accounts": ["consumer-1"]}"#)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    (d, configs)
}

/// New flows per second through one worker: SYNs with distinct source ports, in bursts.
fn flows_per_second<P: Policy>(make: impl Fn() -> P) -> f64 {
    const FLOWS: u16 = 40_000;
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let (s, dst) = to_endpoint(1024 + i);
            tcp(l2_consumer(), s, dst, 64, 1, Flags::syn(), &[])
        })
        .collect();
    let mut best = 0f64;
    for _ in 0..3 {
        let mut h = Harness::build(standard_model(APPROVED, 1), 1, |_| WorkerConfig::default(), |_| make());
        h.learn_neighbors();
        let t0 = Instant::now();
        for chunk in frames.chunks(32) {
            for f in chunk {
                h.inject(0, PORT_A, f);
            }
            h.run();
            black_box(h.take());
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let created = h.counters().get(datapath::Event::FlowsCreated);
        assert!(created + 16 >= u64::from(FLOWS), "only {created} flows created");
        let rate = created as f64 / elapsed;
        best = best.max(rate);
    }
    best
}

fn connect_ns(policy: &mut impl Policy, n: u32) -> f64 {
    let service = standard_service();
    let endpoint = standard_endpoint(APPROVED);
    let t0 = Instant::now();
    for i in 0..n {
        let request = ConnectRequest {
            service: &service,
            endpoint: &endpoint,
            protocol: flow::Protocol::Tcp,
            source: SocketAddrV4::new(CONSUMER.ip, (i % 60000) as u16 + 1024),
            destination: SocketAddrV4::new(ENDPOINT_IP, 80),
        };
        let mut tlvs = Tlvs::default();
        let v = policy.connect(&request, &mut tlvs);
        if v != ConnectVerdict::Allow {
            if let Some(host) = HOST.get() {
                eprintln!("call {i}: {v:?}: {:#?}", host.stats());
            }
            panic!("not allowed");
        }
        black_box(&tlvs);
    }
    t0.elapsed().as_nanos() as f64 / f64::from(n)
}

fn reload_figures(host: &PolicyHost, dir: &Path, configs: HashMap<String, String>) -> (f64, f64) {
    let handle = host.chain_handle(dir, configs, 1);
    let mut p = handle.worker_policy(0);
    let (mut reload, mut swap) = (Duration::MAX, Duration::MAX);
    for i in 0..10 {
        let tmp = dir.join(".swap.tmp");
        std::fs::copy(plugin(if i % 2 == 0 { "aws-endpoint-id" } else { "azure-link-id" }), &tmp).expect("copy");
        std::fs::rename(&tmp, dir.join("10-azure.wasm")).expect("rename");
        let t0 = Instant::now();
        assert!(handle.reload_now().published);
        reload = reload.min(t0.elapsed());
        let t1 = Instant::now();
        p.between_bursts();
        swap = swap.min(t1.elapsed());
        assert_eq!(p.version(), handle.version());
    }
    (reload.as_secs_f64() * 1e3, swap.as_nanos() as f64)
}

static HOST: std::sync::OnceLock<PolicyHost> = std::sync::OnceLock::new();

fn main() {
    let host = PolicyHost::new(Limits::default()).expect("engine");
    let _ = HOST.set(host.clone());
    let (dir, configs) = example_dir();
    let chain = host.load_dir(dir.path(), &configs).expect("the example chain loads");

    let wasm = flows_per_second(|| chain.policy());
    let native = flows_per_second(|| Native { ports: vec![80, 443] });
    println!("bench new_flows_wasm_chain {wasm:.0} flows/s");
    println!("bench new_flows_native {native:.0} flows/s");
    println!("bench new_flows_ratio {:.3} wasm/native", wasm / native);

    let mut p = chain.policy();
    connect_ns(&mut p, 10_000);
    println!("bench connect_wasm_chain {:.0} ns", connect_ns(&mut p, 200_000));
    let mut single = host.load_dir(&single_dir(), &HashMap::new()).expect("azure alone").policy();
    connect_ns(&mut single, 10_000);
    println!("bench connect_wasm_one_plugin {:.0} ns", connect_ns(&mut single, 200_000));
    let mut n = Native { ports: vec![80, 443] };
    println!("bench connect_native {:.1} ns", connect_ns(&mut n, 1_000_000));

    let (reload_ms, swap_ns) = reload_figures(&host, dir.path(), configs);
    println!("bench reload_compile_publish {reload_ms:.2} ms");
    println!("bench swap_between_bursts {swap_ns:.0} ns");

    let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(2));
    c.bench_function("connect/wasm_chain", |b| {
        let service = standard_service();
        let endpoint = standard_endpoint(APPROVED);
        let request = ConnectRequest {
            service: &service,
            endpoint: &endpoint,
            protocol: flow::Protocol::Tcp,
            source: SocketAddrV4::new(CONSUMER.ip, 4000),
            destination: SocketAddrV4::new(ENDPOINT_IP, 80),
        };
        b.iter(|| {
            let mut tlvs = Tlvs::default();
            black_box(p.connect(&request, &mut tlvs));
            tlvs
        })
    });
    c.final_summary();
}

fn single_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("overlink-policy-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    std::fs::copy(plugin("azure-link-id"), d.join("10-azure.wasm")).expect("copy");
    d
}
