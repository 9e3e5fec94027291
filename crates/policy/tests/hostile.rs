//! Hostile plugins: each fails closed, is counted, is disabled after repeated failures, and
//! never makes the host panic or disturbs other chains.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use control::hooks::{Approval, EndpointPolicy, Visibility};
use datapath::{ConnectVerdict, DropReason, Policy, WorkerConfig};
use policy::{Limits, PolicyHost};
use testkit::*;

fn one(host: &PolicyHost, name: &str, config: &str) -> (tempfile::TempDir, policy::Chain) {
    let d = dir(&[("50-hostile.wasm", name)]);
    let chain = host.load_dir(d.path(), &configs(&[("50-hostile.wasm", config)])).expect("loads");
    (d, chain)
}

#[test]
fn spin_is_stopped_at_the_deadline_and_fails_closed_on_every_hook() {
    let host = host();
    let d = dir(&[("50-spin.wasm", "testing/spin")]);
    let handle = host.chain_handle(d.path(), HashMap::new(), 1);
    let mut p = handle.worker_policy(0);
    let t0 = Instant::now();
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
    let took = t0.elapsed();
    assert_eq!(v, ConnectVerdict::Reset);
    assert!(tlvs.is_empty());
    assert!(took < Duration::from_millis(30), "the 1 ms deadline stopped it, took {took:?}");
    let mut hooks = handle.endpoint_hooks();
    assert_eq!(hooks.visible("acme", "web", "p"), Visibility::Hidden);
    assert_eq!(hooks.approval(&approval_request("acme")), Approval::Pending);
    let s = host.plugin_stats("50-spin.wasm").expect("stats");
    assert_eq!(s.timeouts, 3, "{s:?}");
    assert_eq!(s.traps + s.memory + s.violations, 0);
}

#[test]
fn grow_fails_at_the_memory_cap() {
    let host = host();
    let (_d, chain) = one(&host, "testing/grow", "{}");
    let mut p = chain.policy();
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
    assert_eq!(v, ConnectVerdict::Reset, "the 64 MiB answer never arrives: {tlvs:?}");
    let s = host.plugin_stats("50-hostile.wasm").expect("stats");
    assert_eq!(s.memory, 1, "{s:?}");
}

#[test]
fn grow_succeeds_under_a_larger_cap() {
    // Proves the previous test fails for the right reason: with 128 MiB allowed it answers.
    let host = PolicyHost::new(Limits {
        memory_bytes: 128 << 20,
        max_instances: 8,
        deadline: Duration::from_secs(2),
        ..limits()
    })
    .expect("engine");
    let (_d, chain) = one(&host, "testing/grow", "{}");
    let mut p = chain.policy();
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
    assert_eq!(v, ConnectVerdict::Allow);
    assert_eq!(pairs(&tlvs)[0].0, 0xE1);
}

#[test]
fn trap_and_oob_trap_and_fail_closed() {
    for name in ["testing/trap", "testing/oob"] {
        let host = host();
        let (_d, chain) = one(&host, name, "{}");
        let mut p = chain.policy();
        for i in 0..3 {
            let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(i), 80);
            assert_eq!(v, ConnectVerdict::Reset, "{name}");
            assert!(tlvs.is_empty());
        }
        let s = host.plugin_stats("50-hostile.wasm").expect("stats");
        assert_eq!(s.traps, 3, "{name}: {s:?}");
        // Each trapped instance was replaced by a fresh one: validation + policy + 2 replacements.
        assert_eq!(s.instantiations, 4, "{name}: {s:?}");
    }
}

#[test]
fn bad_tlvs_are_rejected_as_violations() {
    for case in ["reserved", "crc", "huge", "both"] {
        let host = host();
        let d = dir(&[("10-azure.wasm", "azure-link-id"), ("50-hostile.wasm", "testing/bad-tlvs")]);
        let config = format!(r#"{{"case": "{case}"}}"#);
        let chain = host.load_dir(d.path(), &configs(&[("50-hostile.wasm", &config)])).expect("loads");
        let mut p = chain.policy();
        let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
        assert_eq!(v, ConnectVerdict::Reset, "{case}");
        assert!(tlvs.is_empty(), "{case}: the earlier plugin's TLVs are dropped too");
        let s = host.plugin_stats("50-hostile.wasm").expect("stats");
        assert_eq!(s.violations, 1, "{case}: {s:?}");
        assert!(s.last_failure.as_deref().unwrap_or("").contains("TLV"), "{case}: {s:?}");
    }
}

#[test]
fn repeated_failures_disable_with_exponential_backoff() {
    let host = host(); // threshold 5, backoff 200 ms doubling
    let (_d, chain) = one(&host, "testing/trap", "{}");
    let mut p = chain.policy();
    let ask1 = |p: &mut policy::WasmPolicy| ask(p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80).0;
    for _ in 0..5 {
        assert_eq!(ask1(&mut p), ConnectVerdict::Reset);
    }
    let s = host.plugin_stats("50-hostile.wasm").expect("stats");
    assert!(s.disabled, "{s:?}");
    assert_eq!(s.disabled_times, 1);
    assert_eq!(s.traps, 5);
    assert!(
        host.log().iter().any(|l| l.contains("50-hostile.wasm") && l.contains("disabled for 200ms")),
        "{:?}",
        host.log()
    );
    // Disabled: fails closed without calling the guest.
    for _ in 0..10 {
        assert_eq!(ask1(&mut p), ConnectVerdict::Reset);
    }
    let s = host.plugin_stats("50-hostile.wasm").expect("stats");
    assert_eq!((s.traps, s.disabled_calls), (5, 10), "{s:?}");
    // After the backoff one trial call; it traps again: disabled for twice as long.
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ask1(&mut p), ConnectVerdict::Reset);
    let s = host.plugin_stats("50-hostile.wasm").expect("stats");
    assert_eq!((s.traps, s.disabled_times), (6, 2), "{s:?}");
    assert!(host.log().iter().any(|l| l.contains("disabled for 400ms")), "{:?}", host.log());
}

#[test]
fn a_recovered_plugin_is_not_disabled() {
    // Alternate a failing and a healthy decision: the consecutive count resets on success.
    let host = host();
    let d = dir(&[("20-ports.wasm", "port-guard")]);
    let chain = host.load_dir(d.path(), &configs(&[("20-ports.wasm", r#"{"ports": [80]}"#)])).expect("loads");
    let mut p = chain.policy();
    for i in 0..20 {
        let port = if i % 2 == 0 { 80 } else { 81 };
        let want = if port == 80 { ConnectVerdict::Allow } else { ConnectVerdict::Reset };
        assert_eq!(ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(i), port).0, want);
    }
    let s = host.plugin_stats("20-ports.wasm").expect("stats");
    assert_eq!((s.failures(), s.disabled_times), (0, 0), "a reset verdict is an answer, not a failure");
}

/// Other chains on the same engine keep working while a hostile one fails, also on the
/// engine: the hostile worker's SYNs are reset, the healthy worker's reach the backend.
#[test]
fn other_traffic_is_unaffected() {
    let host = host();
    let (_bad_dir, bad) = one(&host, "testing/spin", "{}");
    let good_dir = dir(&[("10-azure.wasm", "azure-link-id")]);
    let good = host.load_dir(good_dir.path(), &HashMap::new()).expect("loads");
    let mut bad_h = Harness::build(standard_model(APPROVED, 1), 1, |_| WorkerConfig::default(), |_| bad.policy());
    let mut good_h = Harness::build(standard_model(APPROVED, 1), 1, |_| WorkerConfig::default(), |_| good.policy());
    bad_h.learn_neighbors();
    good_h.learn_neighbors();
    for i in 0..20u16 {
        let (s, dst) = to_endpoint(30000 + i);
        let syn = tcp(l2_consumer(), s, dst, 64, 1, Flags::syn(), &[]);
        let sent = bad_h.exchange(PORT_A, &syn);
        assert!(sent.b.is_empty());
        let sent = good_h.exchange(PORT_A, &syn);
        assert_eq!(sent.b.len(), 1, "flow {i} of the healthy chain goes through");
    }
    assert_eq!(bad_h.counters().dropped(DropReason::PolicyReset), 20);
    assert_eq!(good_h.counters().dropped(DropReason::PolicyReset), 0);
    let s = host.plugin_stats("50-hostile.wasm").expect("stats");
    assert_eq!(s.timeouts, 5, "disabled after 5: {s:?}");
    assert_eq!(s.disabled_calls, 15);
    assert_eq!(host.plugin_stats("10-azure.wasm").expect("stats").failures(), 0);
}

/// `leaky` counts its calls in a static. An instance created in a reused pool slot (only four
/// slots exist) starts from zero: nothing of the previous instance's memory is visible.
#[test]
fn leaky_in_a_reused_pool_slot_sees_fresh_memory() {
    let host = PolicyHost::new(Limits { max_instances: 4, ..limits() }).expect("engine");
    let (_d, chain) = one(&host, "testing/leaky", "{}");
    for round in 0..12 {
        let mut p = chain.policy();
        for n in 1..=3u32 {
            let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
            assert_eq!(v, ConnectVerdict::Allow);
            assert_eq!(pairs(&tlvs), vec![(0xE1, n.to_le_bytes().to_vec())], "round {round}");
        }
    }
    assert!(host.plugin_stats("50-hostile.wasm").expect("stats").instantiations >= 13);
}

/// A trap in one plugin replaces only that plugin's instance; `leaky` before it keeps counting.
#[test]
fn a_trap_replaces_only_the_trapping_instance() {
    let host = host();
    let d = dir(&[("10-leaky.wasm", "testing/leaky"), ("20-trap.wasm", "testing/trap")]);
    let chain = host.load_dir(d.path(), &HashMap::new()).expect("loads");
    let mut p = chain.policy();
    for _ in 0..3 {
        assert_eq!(ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80).0, ConnectVerdict::Reset);
    }
    let leaky = host.plugin_stats("10-leaky.wasm").expect("stats");
    assert_eq!(leaky.instantiations, 2, "validation and this worker's instance only");
}

#[test]
fn slow_init_is_rejected_and_the_previous_chain_keeps_serving() {
    let host = host();
    let d = dir(&[("10-azure.wasm", "azure-link-id")]);
    let handle = host.chain_handle(d.path(), configs(&[("60-spin.wasm", r#"{"spin": true}"#)]), 1);
    let mut p = handle.worker_policy(0);
    install(d.path(), "60-slow.wasm", "testing/slow-init");
    install(d.path(), "60-spin.wasm", "testing/slow-init");
    install_bytes(d.path(), "70-garbage.wasm", b"this is not wasm");
    let t0 = Instant::now();
    let report = handle.reload_now();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(!report.published, "{report:?}");
    let mut rejected: Vec<&str> = report.rejected.iter().map(|e| e.file.as_str()).collect();
    rejected.sort();
    assert_eq!(rejected, vec!["60-slow.wasm", "60-spin.wasm", "70-garbage.wasm"]);
    let reason = |f: &str| report.rejected.iter().find(|e| e.file == f).map(|e| e.reason.clone()).unwrap_or_default();
    assert!(reason("60-slow.wasm").contains("init refused"), "{}", reason("60-slow.wasm"));
    assert!(reason("60-spin.wasm").contains("timeout"), "{}", reason("60-spin.wasm"));
    assert!(reason("70-garbage.wasm").contains("not a valid component"), "{}", reason("70-garbage.wasm"));
    let log = host.log();
    for f in ["60-slow.wasm", "60-spin.wasm", "70-garbage.wasm"] {
        assert_eq!(
            log.iter().filter(|l| l.contains(f) && l.contains("rejected")).count(),
            1,
            "one line for {f}: {log:?}"
        );
    }
    p.between_bursts();
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
    assert_eq!(v, ConnectVerdict::Allow);
    assert_eq!(pairs(&tlvs).len(), 1, "only azure's TLV: {tlvs:?}");
    // Rescanning unchanged files neither recompiles nor logs again.
    let report = handle.reload_now();
    assert!(report.rejected.is_empty() && !report.published);
    assert_eq!(host.log().len(), log.len());
}
