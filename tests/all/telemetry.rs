//! Worker reports for the control plane: active flows, per-endpoint totals, NAT IP holders,
//! a sample of flows.

use std::net::SocketAddrV4;
use std::time::Duration;

use datapath::{AllowApproved, Telemetry, WorkerConfig};
use testkit::*;

#[test]
fn reports_count_flows_packets_and_nat_holders() {
    let telemetry = Telemetry::new(1);
    let mut h = Harness::build(
        standard_model(APPROVED, 1),
        1,
        |_| WorkerConfig { flow_capacity: 4096, report_budget: 512, ..Default::default() },
        |_| AllowApproved,
    );
    let worker = h.workers.pop().unwrap().with_telemetry(telemetry.clone());
    h.workers.push(worker);
    h.learn_neighbors();
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut nats = Vec::new();
    for port in [1000u16, 1001, 1002] {
        let (consumer, endpoint) = to_endpoint(port);
        let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"0123456789"));
        nats.push(seen(&out.b[0]).src);
    }
    h.exchange(PORT_B, &udp(l2_backend(), backend, nats[0], 64, b"reply"));
    h.advance(Duration::from_secs(2));
    h.sweep();
    h.poll_n(16);
    let reports = telemetry.reports();
    assert!(reports[0].passes >= 1);
    assert_eq!(reports[0].active_flows, 3);
    assert_eq!(telemetry.flows_holding(NAT_IP), 3);
    let link = telemetry.links()[&LINK_ID];
    assert_eq!(link.packets, [3, 1]);
    assert_eq!(link.bytes, [3 * 38, 33]);
    assert_eq!(link.active_flows, 3);
    assert_eq!(link.flows_created, 3);
    assert_eq!(reports[0].sample.len(), 3);
    assert!(reports[0].sample.iter().all(|s| s.state == "udp" && s.link_id == LINK_ID && s.backend == backend));
    // After expiry and the cool-down, the totals remain and nothing holds the NAT IP.
    h.advance(Duration::from_secs(301));
    h.sweep();
    h.poll_n(16);
    h.advance(Duration::from_secs(2));
    h.sweep();
    h.poll_n(16);
    assert_eq!(telemetry.flows_holding(NAT_IP), 3, "cooling flows still hold their NAT ports");
    assert_eq!(telemetry.reports()[0].cooling_flows, 3);
    h.advance(Duration::from_secs(121));
    h.sweep();
    h.poll_n(16);
    h.advance(Duration::from_secs(2));
    h.sweep();
    h.poll_n(16);
    assert_eq!(telemetry.flows_holding(NAT_IP), 0);
    let link = telemetry.links()[&LINK_ID];
    assert_eq!(link.packets, [3, 1]);
    assert_eq!(link.active_flows, 0);
}
