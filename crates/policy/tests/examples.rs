//! The example plugins' decisions through the real host (and the engine over in-memory I/O).

mod common;

use std::collections::HashMap;

use common::*;
use control::hooks::{Approval, ApprovalRequest, EndpointPolicy, Visibility};
use std::net::SocketAddrV4;

use datapath::{ConnectVerdict, DropReason, Event, WorkerConfig};
use testkit::*;

#[test]
fn empty_directory_allows_and_abstains() {
    let host = host();
    let d = dir(&[]);
    let handle = host.chain_handle(d.path(), HashMap::new(), 1);
    let mut p = handle.worker_policy(0);
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(40000), 80);
    assert_eq!(v, ConnectVerdict::Allow);
    assert!(tlvs.is_empty());
    let mut hooks = handle.endpoint_hooks();
    assert_eq!(hooks.visible("anyone", "web", "provider"), Visibility::Abstain);
    let req = ApprovalRequest {
        account: "a",
        endpoint: "e",
        network: "consumer",
        address: ENDPOINT_IP,
        service: "web",
        provider: "p",
        message: "",
    };
    assert_eq!(hooks.approval(&req), Approval::Abstain);
}

#[test]
fn azure_link_id_adds_tlv_0xee_with_the_link_id() {
    let host = host();
    let d = dir(&[("10-azure.wasm", "azure-link-id")]);
    let chain = host.load_dir(d.path(), &HashMap::new()).expect("loads");
    assert_eq!(chain.names(), vec!["10-azure.wasm"]);
    let mut p = chain.policy();
    let mut endpoint = standard_endpoint(APPROVED);
    let (v, tlvs) = ask(&mut p, &standard_service(), &endpoint, src(40000), 80);
    assert_eq!(v, ConnectVerdict::Allow);
    let mut want = vec![0x01];
    want.extend_from_slice(&LINK_ID.to_le_bytes());
    assert_eq!(tlvs.iter().map(|(k, v)| (k, v.to_vec())).collect::<Vec<_>>(), vec![(0xEE, want)]);
    endpoint.link_id = 7;
    let (_, tlvs) = ask(&mut p, &standard_service(), &endpoint, src(40001), 80);
    assert_eq!(tlvs.iter().next().map(|(k, v)| (k, v.to_vec())), Some((0xEE, vec![1, 7, 0, 0, 0])));
    let stats = host.plugin_stats("10-azure.wasm").expect("stats");
    assert!(stats.calls >= 2);
    assert_eq!(stats.failures(), 0);
}

/// Through the datapath: the chain allows, the SYN reaches the backend.
#[test]
fn azure_link_id_on_the_engine_allows() {
    let host = host();
    let d = dir(&[("10-azure.wasm", "azure-link-id")]);
    let chain = host.load_dir(d.path(), &HashMap::new()).expect("loads");
    let mut h = Harness::build(standard_model(APPROVED, 1), 1, |_| WorkerConfig::default(), |_| chain.policy());
    h.learn_neighbors();
    let (s, dst) = to_endpoint(40000);
    let sent = h.exchange(PORT_A, &tcp(l2_consumer(), s, dst, 64, 1, Flags::syn(), &[]));
    assert_eq!(sent.b.len(), 1, "the SYN goes to the backend");
    assert_eq!(h.counters().get(Event::FlowsCreated), 1);
}

/// port-guard on the engine: a SYN to a port not on its list gets a RST and counts as a
/// policy reset; a SYN to a listed port reaches the backend.
#[test]
fn port_guard_resets_unlisted_ports_on_the_engine() {
    let host = host();
    let d = dir(&[("20-ports.wasm", "port-guard")]);
    let chain = host.load_dir(d.path(), &configs(&[("20-ports.wasm", r#"{"ports": [80]}"#)])).expect("loads");
    let mut endpoint = standard_endpoint(APPROVED);
    endpoint.ports = vec![80, 8443];
    let model = datapath::Model::new(1, standard_networks(), vec![standard_service()], vec![endpoint], 1024..=65535, 1)
        .expect("model");
    let mut h = Harness::build(model, 1, |_| WorkerConfig::default(), |_| chain.policy());
    h.learn_neighbors();
    let s = std::net::SocketAddrV4::new(CONSUMER.ip, 40000);
    let refused = std::net::SocketAddrV4::new(ENDPOINT_IP, 8443);
    let sent = h.exchange(PORT_A, &tcp(l2_consumer(), s, refused, 64, 1, Flags::syn(), &[]));
    assert!(sent.b.is_empty(), "nothing reaches the backend");
    assert_eq!(sent.a.len(), 1, "the consumer gets a RST");
    let rst = etherparse::SlicedPacket::from_ethernet(&sent.a[0]).expect("parses");
    let Some(etherparse::TransportSlice::Tcp(t)) = rst.transport else { panic!("not TCP") };
    assert!(t.rst());
    assert_eq!(h.counters().dropped(DropReason::PolicyReset), 1);
    let allowed = std::net::SocketAddrV4::new(ENDPOINT_IP, 80);
    let sent = h.exchange(
        PORT_A,
        &tcp(l2_consumer(), SocketAddrV4::new(CONSUMER.ip, 40001), allowed, 64, 1, Flags::syn(), &[]),
    );
    assert_eq!(sent.b.len(), 1, "a listed port reaches the backend");
    assert_eq!(h.counters().dropped(DropReason::PolicyReset), 1);
    assert_eq!(h.counters().get(Event::FlowsCreated), 1);
}

#[test]
fn port_guard_and_azure_chain_accumulates_and_first_reset_wins() {
    let host = host();
    let d =
        dir(&[("10-azure.wasm", "azure-link-id"), ("20-ports.wasm", "port-guard"), ("30-aws.wasm", "aws-endpoint-id")]);
    let chain = host.load_dir(d.path(), &configs(&[("20-ports.wasm", r#"{"ports": [80]}"#)])).expect("loads");
    let mut p = chain.policy();
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80);
    assert_eq!(v, ConnectVerdict::Allow);
    let kinds: Vec<u8> = tlvs.iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, vec![0xEE, 0xEA], "TLVs accumulate in file-name order");
    assert_eq!(pairs(&tlvs)[1].1, b"\x01vpce-web-a".to_vec());
    let (v, tlvs) = ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(2), 443);
    assert_eq!(v, ConnectVerdict::Reset);
    assert!(tlvs.is_empty(), "a refused flow carries no TLVs");
    // init twice (the validation instance and this one), then only the allowed flow.
    assert_eq!(host.plugin_stats("30-aws.wasm").expect("stats").calls, 3, "a reset flow never reaches the last plugin");
}

#[test]
fn port_guard_refuses_a_bad_configuration() {
    let host = host();
    let d = dir(&[("20-ports.wasm", "port-guard")]);
    let err = host.load_dir(d.path(), &HashMap::new()).expect_err("ports is required");
    assert_eq!(err[0].file, "20-ports.wasm");
    assert!(err[0].reason.contains("ports"), "{}", err[0].reason);
}

#[test]
fn allow_accounts_visibility_and_approval() {
    let host = host();
    let d = dir(&[("90-accounts.wasm", "allow-accounts")]);
    let handle =
        host.chain_handle(d.path(), configs(&[("90-accounts.wasm", r#"{"accounts": ["acme", "globex"]}"#)]), 1);
    let mut hooks = handle.endpoint_hooks();
    assert_eq!(hooks.visible("acme", "web", "provider-1"), Visibility::Visible);
    assert_eq!(hooks.visible("globex", "web", "provider-1"), Visibility::Visible);
    assert_eq!(hooks.visible("initech", "web", "provider-1"), Visibility::Hidden);
    assert_eq!(hooks.approval(&approval_request("acme")), Approval::Approve);
    assert_eq!(hooks.approval(&approval_request("initech")), Approval::Abstain);
    // It has no connect hook: flows are allowed.
    let mut p = handle.worker_policy(0);
    assert_eq!(ask(&mut p, &standard_service(), &standard_endpoint(APPROVED), src(1), 80).0, ConnectVerdict::Allow);
}

#[test]
fn connection_quota_caps_new_flows_per_second_per_endpoint() {
    let host = host();
    let d = dir(&[("40-quota.wasm", "connection-quota")]);
    let chain = host.load_dir(d.path(), &configs(&[("40-quota.wasm", r#"{"per_second": 3}"#)])).expect("loads");
    let clock = flow::ManualClock::new(flow::Instant::from_nanos(5_000_000_000));
    let mut p = chain.policy().with_clock(clock.clone());
    let service = standard_service();
    let endpoint = standard_endpoint(APPROVED);
    let mut other = standard_endpoint(APPROVED);
    other.link_id = 99;
    let verdicts: Vec<ConnectVerdict> = (0..5).map(|i| ask(&mut p, &service, &endpoint, src(1000 + i), 80).0).collect();
    use ConnectVerdict::{Allow, Reset};
    assert_eq!(verdicts, vec![Allow, Allow, Allow, Reset, Reset]);
    assert_eq!(ask(&mut p, &service, &other, src(2000), 80).0, Allow, "the quota is per endpoint");
    clock.advance(std::time::Duration::from_millis(340));
    assert_eq!(ask(&mut p, &service, &endpoint, src(3000), 80).0, Allow, "a third of a second buys one flow");
    assert_eq!(ask(&mut p, &service, &endpoint, src(3001), 80).0, Reset);
    clock.advance(std::time::Duration::from_secs(1));
    let verdicts: Vec<ConnectVerdict> = (0..4).map(|i| ask(&mut p, &service, &endpoint, src(4000 + i), 80).0).collect();
    assert_eq!(verdicts, vec![Allow, Allow, Allow, Reset]);
    assert_eq!(host.plugin_stats("40-quota.wasm").expect("stats").failures(), 0);
}
