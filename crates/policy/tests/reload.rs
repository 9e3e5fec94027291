//! Hot reload under load: thousands of new flows per second through two workers over in-memory
//! I/O while another thread swaps plugin versions by copying files and reloading.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use datapath::{ConnectRequest, ConnectVerdict, Event, Policy, Tlvs, WorkerConfig};
use policy::WasmPolicy;
use testkit::*;

type Log = Arc<Mutex<Vec<(u16, u64, Vec<u8>)>>>;

/// Records what the wasm chain decided for every new flow: (source port, version, TLV types).
#[derive(Debug)]
struct Recording {
    inner: WasmPolicy,
    log: Log,
}

impl Policy for Recording {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        let v = self.inner.connect(request, tlvs);
        let kinds = tlvs.iter().map(|(k, _)| k).collect();
        self.log.lock().unwrap().push((request.source.port(), self.inner.version(), kinds));
        v
    }

    fn between_bursts(&mut self) {
        self.inner.between_bursts();
    }
}

/// Version A: both files add 0xEE; version B: both add 0xEA.
fn install_version(dir: &std::path::Path, b: bool) {
    let name = if b { "aws-endpoint-id" } else { "azure-link-id" };
    install(dir, "10-tag.wasm", name);
    install(dir, "20-tag.wasm", name);
}

#[test]
fn every_decision_is_made_by_exactly_one_version_under_load() {
    let host = host();
    let d = dir(&[]);
    install_version(d.path(), false);
    let handle = host.chain_handle(d.path(), HashMap::new(), 2);
    assert_eq!(handle.version(), 1);
    let log: Log = Arc::default();
    let mut h = Harness::build(
        standard_model(APPROVED, 2),
        2,
        |_| WorkerConfig::default(),
        |i| Recording { inner: handle.worker_policy(i), log: log.clone() },
    );
    h.learn_neighbors();

    // Flows established before the swaps.
    let mut established = Vec::new();
    for i in 0..8u16 {
        let (s, dst) = to_endpoint(60000 + i);
        let w = usize::from(i % 2);
        h.inject(w, PORT_A, &tcp(l2_consumer(), s, dst, 64, 1, Flags::syn(), &[]));
        h.run();
        established.push((w, s, dst));
    }
    assert_eq!(h.take().b.len(), 8);

    let stop = Arc::new(AtomicBool::new(false));
    let swapped = Arc::new(AtomicU32::new(0));
    let reloader = {
        let handle = handle.clone();
        let dir = d.path().to_owned();
        let stop = stop.clone();
        let swapped = swapped.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u32;
            let mut broken = 0u32;
            let mut b = false;
            while !stop.load(Ordering::Relaxed) {
                if swaps % 5 == 4 {
                    // A broken file never replaces the working version of that file.
                    install_bytes(&dir, "10-tag.wasm", b"\0asm broken");
                    let r = handle.reload_now();
                    assert!(!r.published && r.rejected.len() == 1, "{r:?}");
                    broken += 1;
                }
                b = !b;
                install_version(&dir, b);
                let r = handle.reload_now();
                assert!(r.published, "{r:?}");
                swaps += 1;
                swapped.store(swaps, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(3));
            }
            (swaps, broken)
        })
    };

    let t0 = Instant::now();
    let mut sport = 1024u16;
    let mut flows = 0u32;
    while swapped.load(Ordering::Relaxed) < 12 && sport < 59000 {
        for _ in 0..32 {
            let (s, dst) = to_endpoint(sport);
            h.inject(usize::from(sport % 2), PORT_A, &tcp(l2_consumer(), s, dst, 64, 1, Flags::syn(), &[]));
            sport += 1;
            flows += 1;
        }
        h.run();
        let _ = h.take();
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (swaps, broken) = reloader.join().expect("reloader");

    let rate = f64::from(flows) / elapsed.as_secs_f64();
    eprintln!("reload under load: {flows} flows in {elapsed:?} ({rate:.0}/s), {swaps} swaps, {broken} broken files");
    assert!(rate > 1000.0, "thousands of new flows per second: {rate:.0}/s");
    assert!(swaps >= 10, "the chain was swapped repeatedly: {swaps}");
    assert!(broken >= 1);

    let log = log.lock().unwrap();
    let new: Vec<_> = log.iter().filter(|(p, _, _)| *p < 60000).collect();
    assert_eq!(new.len(), flows as usize, "every new flow asked the policy once");
    assert_eq!(h.counters().get(Event::FlowsCreated), u64::from(flows) + 8);
    // Every decision is made by exactly one version: both TLVs of a flow come from the same
    // build, and every flow decided by a version carries that version's TLVs.
    let mut by_version: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (port, version, kinds) in &new {
        assert!(kinds == &vec![0xEE, 0xEE] || kinds == &vec![0xEA, 0xEA], "flow {port}: torn TLVs {kinds:x?}");
        let seen = by_version.entry(*version).or_insert_with(|| kinds.clone());
        assert_eq!(seen, kinds, "version {version} decided flow {port} differently");
    }
    assert!(by_version.len() >= 3, "flows were decided by several versions: {:?}", by_version.keys());
    let kinds: std::collections::BTreeSet<_> = by_version.values().collect();
    assert_eq!(kinds.len(), 2, "both builds served");
    drop(log);

    // Established flows were untouched: their next packets take the fast path (no policy call).
    let before = h.counters().get(Event::FlowsCreated);
    for (w, s, dst) in &established {
        h.inject(*w, PORT_A, &tcp(l2_consumer(), *s, *dst, 64, 2, Flags::ack(1), b"GET /"));
        h.run();
    }
    let sent = h.take();
    assert_eq!(sent.b.len(), 8, "established flows still forward");
    assert_eq!(h.counters().get(Event::FlowsCreated), before);
}

#[test]
fn removed_files_leave_the_chain_and_the_watcher_picks_up_changes() {
    let host = host();
    let d = dir(&[("10-azure.wasm", "azure-link-id"), ("20-aws.wasm", "aws-endpoint-id")]);
    let handle = host.chain_handle(d.path(), HashMap::new(), 1);
    let mut p = handle.worker_policy(0);
    let kinds = |p: &mut WasmPolicy| -> Vec<u8> {
        ask(p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80).1.iter().map(|(k, _)| k).collect()
    };
    assert_eq!(kinds(&mut p), vec![0xEE, 0xEA]);
    std::fs::remove_file(d.path().join("10-azure.wasm")).unwrap();
    let r = handle.reload_now();
    assert_eq!(
        (r.removed.clone(), r.chain.clone()),
        (vec!["10-azure.wasm".to_owned()], vec!["20-aws.wasm".to_owned()])
    );
    assert_eq!(kinds(&mut p), vec![0xEE, 0xEA], "no swap inside a burst");
    p.between_bursts();
    assert_eq!(kinds(&mut p), vec![0xEA]);
    assert_eq!(p.version(), 2);
    drop(p);

    // The polling watcher (200 ms) notices a new file without reload_now.
    let d2 = dir(&[]);
    let watcher = host.watch(d2.path(), HashMap::new(), 1);
    let mut p = watcher.handle().worker_policy(0);
    assert_eq!(kinds(&mut p), Vec::<u8>::new());
    install(d2.path(), "10-azure.wasm", "azure-link-id");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.between_bursts();
        if p.version() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher did not pick up the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(kinds(&mut p), vec![0xEE]);
}
