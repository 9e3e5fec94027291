//! The Private Link workflow end to end on the engine over in-memory I/O: visibility hides a
//! service, pending passes zero packets, approval lets the next SYN through, rejection resets a
//! live flow, deleting a service disconnects its endpoints, and the state survives a restart.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};

use control::{Actor, Control, ControlError, CreateEndpoint};
use datapath::{AllowApproved, DropReason, Event, WorkerConfig};
use testkit::*;

fn request(account: &str, address: Ipv4Addr, service: &str) -> CreateEndpoint {
    CreateEndpoint {
        name: Some(format!("{account}-ep")),
        account: account.into(),
        network: "consumer".into(),
        address,
        ports: vec![ENDPOINT_PORT],
        service: service.into(),
        message: "let me in".into(),
    }
}

#[test]
fn private_link_workflow_on_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let actor = Actor("test".into());
    let alias = control.services()[0].alias.clone();
    assert!(alias.starts_with("web.") && alias.len() > 4, "alias {alias}");

    // Visibility: team-b cannot see the service, so for it the alias does not exist.
    let err = control.create_endpoint(&actor, request("team-b", ENDPOINT_IP, &alias)).unwrap_err();
    assert!(matches!(err, ControlError::NotFound(_)), "{err}");
    // The service name is not the alias.
    let err = control.create_endpoint(&actor, request("team-a", ENDPOINT_IP, "web")).unwrap_err();
    assert!(matches!(err, ControlError::NotFound(_)), "{err}");

    let ep = control.create_endpoint(&actor, request("team-a", ENDPOINT_IP, &alias)).unwrap();
    assert_eq!(ep.state, "pending");
    assert_eq!(ep.request_message, "let me in");

    let mut h = Harness::with_shared(control.shared_model(), 1, |_| WorkerConfig::default(), |_| AllowApproved);
    h.learn_neighbors();
    let (consumer, endpoint) = to_endpoint(40000);
    let syn = tcp(l2_consumer(), consumer, endpoint, 64, 100, Flags::syn(), &[]);
    assert!(h.exchange(PORT_A, &syn).is_empty(), "pending passes nothing");
    assert!(h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"x")).is_empty());
    assert_eq!(h.counters().dropped(DropReason::EndpointNotApproved), 2);
    assert_eq!(h.counters().get(Event::Forwarded), 0);

    // Approval: the next SYN goes through.
    assert_eq!(control.approve(&actor, &ep.name).unwrap().state, "approved");
    let out = h.exchange(PORT_A, &syn);
    assert_eq!(out.b.len(), 1);
    let nat = seen(&out.b[0]).src;
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    assert_eq!(h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 700, Flags::syn_ack(101), &[])).a.len(), 1);
    assert_eq!(
        h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 101, Flags::ack(701), b"data")).b.len(),
        1
    );

    // Rejection resets the live flow, both ways, at the next poll.
    assert_eq!(control.reject(&actor, &ep.name, "not a customer").unwrap().state, "rejected");
    h.run();
    let out = h.take();
    assert_eq!((out.a.len(), out.b.len()), (1, 1), "a RST to each side");
    for f in out.a.iter().chain(out.b.iter()) {
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
        assert!(t.rst());
    }
    assert_eq!(h.counters().get(Event::FlowsRevoked), 1);
    assert!(h.exchange(PORT_A, &syn).b.is_empty(), "rejected passes nothing");
    // A rejected endpoint cannot be approved again.
    assert!(matches!(control.approve(&actor, &ep.name), Err(ControlError::Conflict(_))));

    // Auto-approval for team-c.
    let other = control.create_endpoint(&actor, request("team-c", Ipv4Addr::new(198, 18, 0, 51), &alias)).unwrap();
    assert_eq!(other.state, "approved");
    assert_ne!(other.link_id, ep.link_id);
    // The same address twice in one network is a conflict.
    let mut dup = request("team-c", Ipv4Addr::new(198, 18, 0, 51), &alias);
    dup.name = Some("dup".into());
    assert!(matches!(control.create_endpoint(&actor, dup), Err(ControlError::Conflict(_))));

    // A restart finds every change.
    let before_services = control.services();
    let before_endpoints = control.endpoints();
    drop(control);
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    assert_eq!(control.services(), before_services);
    assert_eq!(control.endpoints(), before_endpoints);

    // Deleting the service disconnects its endpoints.
    control.delete_service(&actor, "web").unwrap();
    assert!(control.endpoints().iter().all(|e| e.state == "disconnected"));
    assert!(matches!(control.delete_service(&actor, "web"), Err(ControlError::NotFound(_))));
    assert!(matches!(
        control.add_nat_ip(&actor, "web", Ipv4Addr::new(198, 18, 0, 202)),
        Err(ControlError::NotFound(_))
    ));
    // The rejected consumer deletes and asks anew — the service is gone, so: not found.
    control.delete_endpoint(&actor, &ep.name).unwrap();
    assert!(matches!(
        control.create_endpoint(&actor, request("team-a", ENDPOINT_IP, &alias)),
        Err(ControlError::NotFound(_))
    ));
}

#[test]
fn deleted_and_recreated_endpoint_gets_a_fresh_link_id_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let actor = Actor("test".into());
    let alias = control.services()[0].alias.clone();
    let ep = control.create_endpoint(&actor, request("team-a", ENDPOINT_IP, &alias)).unwrap();
    control.reject(&actor, &ep.name, "no").unwrap();
    control.delete_endpoint(&actor, &ep.name).unwrap();
    let again = control.create_endpoint(&actor, request("team-a", ENDPOINT_IP, &alias)).unwrap();
    assert_eq!(again.state, "pending");
    assert_eq!(again.reason, "");
    let ids: std::collections::HashSet<u32> = control.endpoints().iter().map(|e| e.link_id).collect();
    assert_eq!(ids.len(), control.endpoints().len());
}

#[test]
fn nat_ips_can_be_added_and_removed_only_when_drained() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let actor = Actor("test".into());
    let extra = Ipv4Addr::new(198, 18, 0, 201);
    let v = control.add_nat_ip(&actor, "web", extra).unwrap();
    assert_eq!(v.nat_ips, vec![NAT_IP, extra]);
    assert!(control.shared_model().load().address(NET_B, extra).is_some(), "the workers see the new NAT IP");
    assert!(matches!(control.add_nat_ip(&actor, "web", extra), Err(ControlError::Conflict(_))));
    assert!(matches!(control.add_nat_ip(&actor, "web", Ipv4Addr::new(10, 0, 0, 1)), Err(ControlError::Invalid(_))));
    let err = control.remove_nat_ip(&actor, "web", NAT_IP, 3).unwrap_err();
    assert_eq!(err.to_string(), "ip: 198.18.0.200 is still held by 3 flows; remove it once they have drained");
    let v = control.remove_nat_ip(&actor, "web", NAT_IP, 0).unwrap();
    assert_eq!(v.nat_ips, vec![extra]);
    assert!(
        matches!(control.remove_nat_ip(&actor, "web", extra, 0), Err(ControlError::Conflict(_))),
        "not the last one"
    );
}

#[test]
fn config_declared_endpoints_follow_auto_approval_and_keep_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = common::config_text(dir.path());
    text.push_str(
        r#"
[[endpoints]]
name = "declared-a"
account = "team-a"
network = "consumer"
address = "198.18.0.60"
ports = [80]
service = "web"

[[endpoints]]
name = "declared-c"
account = "team-c"
network = "consumer"
address = "198.18.0.61"
service = "web"
"#,
    );
    let cfg = config::parse(&text).unwrap();
    let mut control = Control::open(cfg.clone(), common::ports()).unwrap();
    assert_eq!(control.endpoint("declared-a").unwrap().state, "pending");
    assert_eq!(control.endpoint("declared-c").unwrap().state, "approved");
    assert_eq!(control.endpoint("declared-a").unwrap().origin, "config");
    control.approve(&Actor("t".into()), "declared-a").unwrap();
    drop(control);
    let control = Control::open(cfg, common::ports()).unwrap();
    assert_eq!(control.endpoint("declared-a").unwrap().state, "approved", "a restart does not reset approvals");
}

#[test]
fn a_second_gateway_cannot_open_the_same_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let err = Control::open(common::config(dir.path()), common::ports()).unwrap_err();
    assert!(err.contains("lock") || err.contains("another"), "{err}");
}

#[test]
fn mutations_are_refused_when_the_audit_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.log")).unwrap();
    // Opening writes the alias; with a full audit log even that is refused.
    let err = Control::open(common::config(dir.path()), common::ports()).unwrap_err();
    assert!(err.contains("audit log"), "{err}");
    // With a working log the alias is written; then the log fills up.
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    let control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let alias = control.services()[0].alias.clone();
    drop(control);
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("audit.log")).unwrap();
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    let err = control.create_endpoint(&Actor("t".into()), request("team-a", ENDPOINT_IP, &alias)).unwrap_err();
    assert!(matches!(err, ControlError::Unavailable(_)), "{err}");
    assert!(control.endpoints().is_empty(), "nothing changed");
    drop(control);
    std::fs::remove_file(dir.path().join("audit.log")).unwrap();
    let control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    assert!(control.endpoints().is_empty(), "nothing was persisted either");
}

/// A hook standing in for the plugin chain.
#[derive(Debug)]
struct Hook;

impl control::EndpointPolicy for Hook {
    fn visible(&mut self, account: &str, _service: &str, _provider: &str) -> control::Visibility {
        match account {
            "team-c" => control::Visibility::Hidden,
            "team-b" => control::Visibility::Visible,
            _ => control::Visibility::Abstain,
        }
    }

    fn approval(&mut self, request: &control::ApprovalRequest<'_>) -> control::Approval {
        match request.account {
            "team-a" if request.message == "reject me" => control::Approval::Reject("no contract".into()),
            "team-b" => control::Approval::Approve,
            _ => control::Approval::Abstain,
        }
    }
}

#[test]
fn endpoint_hooks_decide_where_they_answer_and_the_lists_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut control = Control::open(common::config(dir.path()), common::ports()).unwrap();
    control.set_endpoint_policy(Box::new(Hook));
    let actor = Actor("test".into());
    let alias = control.services()[0].alias.clone();
    // The hook hides the service from team-c although the list shows it.
    let err = control.create_endpoint(&actor, request("team-c", Ipv4Addr::new(198, 18, 0, 70), &alias)).unwrap_err();
    assert!(matches!(err, ControlError::NotFound(_)));
    // The hook shows it to team-b (not on the list) and approves it.
    let b = control.create_endpoint(&actor, request("team-b", Ipv4Addr::new(198, 18, 0, 71), &alias)).unwrap();
    assert_eq!(b.state, "approved");
    // team-a: the hook abstains on visibility (the list shows it) and rejects with a reason.
    let mut r = request("team-a", Ipv4Addr::new(198, 18, 0, 72), &alias);
    r.message = "reject me".into();
    let a = control.create_endpoint(&actor, r).unwrap();
    assert_eq!((a.state, a.reason.as_str()), ("rejected", "no contract"));
    // Abstain everywhere: the lists decide (team-a is visible but not auto-approved).
    let mut r = request("team-a", Ipv4Addr::new(198, 18, 0, 73), &alias);
    r.name = Some("team-a-2".into());
    assert_eq!(control.create_endpoint(&actor, r).unwrap().state, "pending");
}
