//! Valid configurations: defaults, overrides, the typed model and the sample files.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{parse, EchoMode, IoBackend, Timeouts};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn an_empty_file_is_all_defaults() {
    let c = parse("").unwrap();
    assert!(c.accounts.is_empty() && c.networks.is_empty() && c.services.is_empty() && c.endpoints.is_empty());
    let g = &c.gateway;
    assert_eq!(g.io, IoBackend::AfPacket);
    assert_eq!(g.workers, 1);
    assert_eq!(g.cores, None);
    assert_eq!(g.state_dir, PathBuf::from("/var/lib/overlink"));
    assert_eq!(g.plugins_dir, None);
    assert_eq!(g.flow_capacity, 1 << 20);
    assert_eq!(g.nat_ports, 1024..=65535);
    assert!(g.dpdk_args.is_empty());
    assert_eq!(g.admin.socket, PathBuf::from("/run/overlink/admin.sock"));
    assert_eq!((g.admin.tcp, &g.admin.token_file, &g.admin.read_token_file), (None, &None, &None));
    assert_eq!(g.timeouts, Timeouts::default());
    assert_eq!(g.timeouts.tcp_established, secs(7440));
    assert_eq!(g.timeouts.udp, secs(300));
    assert_eq!(c.gateway.admin.socket, PathBuf::from(config::DEFAULT_ADMIN_SOCKET));
}

const TWO_NETWORKS: &str = r#"
accounts = ["provider-b", "team-a", "team-c"]

[[networks]]
name = "consumer"
interface = "veth-gw-c"
address = "198.18.0.1/24"

[[networks]]
name = "provider"
interface = "veth-gw-p"
address = "198.18.0.1/24"
"#;

#[test]
fn service_and_endpoint_defaults() {
    let c = parse(&format!(
        r#"{TWO_NETWORKS}
[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]

[[endpoints]]
name = "own"
account = "provider-b"
network = "consumer"
address = "198.18.0.50"
service = "web"
"#
    ))
    .unwrap();
    let s = &c.services[0];
    assert_eq!(s.backends, vec![SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10), 8080)]);
    assert_eq!(s.nat_ips, vec![Ipv4Addr::new(198, 18, 0, 200)]);
    assert!(s.visibility.is_empty() && s.auto_approval.is_empty());
    assert_eq!(s.echo, EchoMode::Reply);
    assert!(!s.proxy_protocol);
    assert_eq!(s.timeouts, Timeouts::default());
    let e = &c.endpoints[0];
    assert!(e.ports.is_empty());
    assert!(e.accepts_port(1) && e.accepts_port(65535));
    // The provider sees its own service and needs no approval; nobody else sees it.
    assert!(c.is_visible(s, "provider-b") && c.is_auto_approved(s, "provider-b"));
    assert!(!c.is_visible(s, "team-a") && !c.is_auto_approved(s, "team-a"));
}

#[test]
fn everything_set_and_overridden() {
    let c = parse(&format!(
        r#"{TWO_NETWORKS}
[gateway]
io = "dpdk"
workers = 2
cores = [3, 1]
state_dir = "/srv/overlink"
plugins_dir = "/etc/overlink/plugins"
flow_capacity = 1024
nat_ports = "40000-40001"
dpdk_args = ["-l", "0-1", "--no-huge"]

[gateway.admin]
socket = "/tmp/ol.sock"
tcp = "[::1]:9443"
token_file = "/etc/overlink/admin.token"
read_token_file = "/etc/overlink/ro.token"

[gateway.timeouts]
udp = "10m"
icmp = "90s"
port_cooldown = "500ms"

[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080", "198.18.0.11:8080"]
nat_ips = ["198.18.0.200", "198.18.0.201"]
visibility = ["team-a", "team-c"]
auto_approval = ["team-a"]
echo = "forward"
proxy_protocol = true
proxy_placement = "on_first_data"
proxy_header_budget = 64
proxy_probe_sources = ["198.18.0.99", "198.18.0.64/26"]
[services.timeouts]
tcp_established = "3h"
udp = "2m"

[[services]]
name = "api"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.12:443"]
nat_ips = ["198.18.0.202"]
visibility = ["*"]
auto_approval = ["*"]

[[endpoints]]
name = "web-for-team-a"
account = "team-a"
network = "consumer"
address = "198.18.0.50"
ports = [80, 443]
service = "web"

[[endpoints]]
name = "api-for-team-c"
account = "team-c"
network = "consumer"
address = "198.18.0.51"
service = "api"
"#
    ))
    .unwrap();
    let g = &c.gateway;
    assert_eq!(g.io, IoBackend::Dpdk);
    assert_eq!(g.workers, 2);
    assert_eq!(g.cores, Some(vec![3, 1]));
    assert_eq!(g.state_dir, PathBuf::from("/srv/overlink"));
    assert_eq!(g.plugins_dir, Some(PathBuf::from("/etc/overlink/plugins")));
    assert_eq!(g.flow_capacity, 1024);
    assert_eq!(g.nat_ports, 40000..=40001);
    assert_eq!(g.dpdk_args, vec!["-l", "0-1", "--no-huge"]);
    assert_eq!(g.admin.socket, PathBuf::from("/tmp/ol.sock"));
    assert_eq!(g.admin.tcp, Some("[::1]:9443".parse::<SocketAddr>().unwrap()));
    assert_eq!(g.admin.token_file, Some(PathBuf::from("/etc/overlink/admin.token")));
    assert_eq!(g.admin.read_token_file, Some(PathBuf::from("/etc/overlink/ro.token")));
    // Gateway timeouts: defaults overridden key by key.
    let gt =
        Timeouts { udp: secs(600), icmp: secs(90), port_cooldown: Duration::from_millis(500), ..Timeouts::default() };
    assert_eq!(g.timeouts, gt);
    // A service's timeouts: the gateway's, overridden key by key (udp may go back down to the RFC minimum).
    let web = c.service("web").unwrap().1;
    assert_eq!(web.timeouts, Timeouts { tcp_established: secs(3 * 3600), udp: secs(120), ..gt });
    let (api_index, api) = c.service("api").unwrap();
    assert_eq!(api_index, 1);
    assert_eq!(api.timeouts, gt);
    assert_eq!(web.echo, EchoMode::Forward);
    assert!(web.proxy_protocol);
    assert_eq!(web.proxy.placement, config::ProxyPlacement::OnFirstData);
    assert_eq!(web.proxy.header_budget, 64);
    assert_eq!(
        web.proxy.probe_sources,
        vec![("198.18.0.99".parse().unwrap(), 32), ("198.18.0.64".parse().unwrap(), 26)]
    );
    assert_eq!(api.proxy, config::ProxySettings::default());
    assert_eq!(api.proxy.header_budget, 107);
    // Visibility and auto-approval.
    assert!(c.is_visible(web, "team-c") && !c.is_auto_approved(web, "team-c"));
    assert!(c.is_visible(web, "team-a") && c.is_auto_approved(web, "team-a"));
    assert!(!c.is_visible(web, "someone-else"));
    assert!(c.is_visible(api, "anyone") && c.is_auto_approved(api, "anyone"));
    assert_eq!(api.visibility, vec!["*"]);
    assert_eq!(c.endpoints[0].ports, vec![80, 443]);
    assert!(c.endpoints[0].accepts_port(443) && !c.endpoints[0].accepts_port(8080));
    assert_eq!(c.endpoint("api-for-team-c").map(|(i, _)| i), Some(1));
    assert!(c.service("nope").is_none() && c.network("nope").is_none());
}

#[test]
fn identical_prefixes_and_addresses_across_networks_are_the_point() {
    // The endpoint in `consumer` uses the provider's backend, NAT IP and the same gateway address.
    let c = parse(&format!(
        r#"{TWO_NETWORKS}
[[services]]
name = "web"
provider = "provider-b"
network = "provider"
backends = ["198.18.0.10:8080"]
nat_ips = ["198.18.0.200"]
visibility = ["team-a"]

[[endpoints]]
name = "a"
account = "team-a"
network = "consumer"
address = "198.18.0.200"
service = "web"

[[endpoints]]
name = "b"
account = "team-a"
network = "consumer"
address = "198.18.0.10"
service = "web"
"#
    ))
    .unwrap();
    let (ci, consumer) = c.network("consumer").unwrap();
    let (pi, provider) = c.network("provider").unwrap();
    assert_eq!((ci, pi), (0, 1));
    assert_eq!(consumer.prefix(), provider.prefix());
    assert_eq!(consumer.address, provider.address);
    assert!(consumer.contains(Ipv4Addr::new(198, 18, 0, 200)));
    assert!(!consumer.contains(Ipv4Addr::new(198, 19, 0, 200)));
}

#[test]
fn networks_share_interfaces_through_vlans_and_reach_far_backends_through_next_hops() {
    let c = parse(
        r#"
accounts = ["p"]

[[networks]]
name = "untagged"
interface = "eth1"
address = "10.0.0.1/24"

[[networks]]
name = "tagged"
interface = "eth1"
vlan = 100
address = "10.0.0.1/24"
next_hop = "10.0.0.254"

[[networks]]
name = "other-port"
interface = "eth2"
vlan = 100
address = "172.16.0.1/12"

[[services]]
name = "far"
provider = "p"
network = "tagged"
backends = ["192.0.2.10:443", "10.0.0.9:443"]
nat_ips = ["10.0.0.200"]
"#,
    )
    .unwrap();
    let tagged = c.network("tagged").unwrap().1;
    assert_eq!(tagged.vlan, Some(100));
    assert_eq!(tagged.next_hop, Some(Ipv4Addr::new(10, 0, 0, 254)));
    assert_eq!(c.networks[0].vlan, None);
    let other = &c.networks[2];
    assert_eq!((other.prefix_len, other.prefix()), (12, "172.16.0.0/12".to_owned()));
    assert!(other.contains(Ipv4Addr::new(172, 31, 255, 254)));
    assert_eq!(c.services[0].backends[0], "192.0.2.10:443".parse().unwrap());
}

#[test]
fn durations_take_every_documented_form() {
    let c = parse(
        r#"
[gateway.timeouts]
tcp_established = "2h4m"
tcp_transitory = "4m30s"
udp = "300s"
icmp = "1m"
port_cooldown = "0s"
"#,
    )
    .unwrap();
    let t = c.gateway.timeouts;
    assert_eq!(t.tcp_established, secs(7440));
    assert_eq!(t.tcp_transitory, secs(270));
    assert_eq!(t.udp, secs(300));
    assert_eq!(t.icmp, secs(60));
    assert_eq!(t.port_cooldown, Duration::ZERO);
    assert!(t.meets_rfc_minimums());
    let c = parse("[gateway.timeouts]\nport_cooldown = \"500ms\"\nudp = \"2m\"\n").unwrap();
    assert_eq!(c.gateway.timeouts.port_cooldown, Duration::from_millis(500));
    assert_eq!(c.gateway.timeouts.udp, Timeouts::RFC_MINIMUM.udp);
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn every_sample_config_in_deploy_loads() {
    let mut samples: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    samples.sort();
    assert!(samples.len() >= 2, "{samples:?}");
    for path in &samples {
        if let Err(e) = config::load(path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn the_demo_sample_is_the_demo_topology() {
    let c = config::load(&deploy_dir().join("overlink.toml")).unwrap();
    assert_eq!(c.networks.len(), 2);
    assert_eq!(c.networks[0].prefix(), "198.18.0.0/24");
    assert_eq!(c.networks[1].prefix(), "198.18.0.0/24");
    assert_eq!(c.services.len(), 1);
    let web = &c.services[0];
    assert!(!web.proxy_protocol);
    assert_eq!(web.backends, vec!["198.18.0.10:8080".parse().unwrap()]);
    assert_eq!(web.nat_ips, vec![Ipv4Addr::new(198, 18, 0, 200)]);
    assert_eq!(c.endpoints.len(), 1);
    let e = &c.endpoints[0];
    assert_eq!((e.address, e.ports.as_slice()), (Ipv4Addr::new(198, 18, 0, 50), &[80][..]));
    assert!(c.is_visible(web, &e.account) && !c.is_auto_approved(web, &e.account));
    assert_eq!(c.gateway.timeouts, Timeouts::default());
}

#[test]
fn the_multi_tenant_sample_uses_vlans_shared_prefixes_and_per_service_timeouts() {
    let c = config::load(&deploy_dir().join("multi-tenant.toml")).unwrap();
    assert!(c.networks.iter().all(|n| n.vlan.is_some()));
    let (acme, globex) = (c.network("acme").unwrap().1, c.network("globex").unwrap().1);
    assert_eq!(acme.prefix(), globex.prefix());
    assert_eq!(c.services.len(), 2);
    assert!(c.services.iter().all(|s| s.timeouts != c.gateway.timeouts));
    let accounts: std::collections::BTreeSet<&str> = c.endpoints.iter().map(|e| e.account.as_str()).collect();
    assert!(accounts.len() >= 2);
    let api = c.service("api").unwrap().1;
    assert!(c.is_auto_approved(api, "acme") && !c.is_auto_approved(api, "globex") && c.is_visible(api, "globex"));
}

#[test]
fn plugin_configurations_are_handed_over_as_json_by_file_name() {
    let c = config::parse(
        r#"
[plugins."10-allow-accounts.wasm"]
accounts = ["team-a", "team-b"]
[plugins."20-port-guard.wasm"]
ports = [80, 443]
icmp = false
"#,
    )
    .unwrap();
    assert_eq!(c.plugins["10-allow-accounts.wasm"], r#"{"accounts":["team-a","team-b"]}"#);
    let v: serde_json::Value = serde_json::from_str(&c.plugins["20-port-guard.wasm"]).unwrap();
    assert_eq!(v, serde_json::json!({"ports": [80, 443], "icmp": false}));
    let e = config::parse("[plugins.\"../evil.wasm\"]\nx = 1\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"plugins."../evil.wasm" = "../evil.wasm": a plugin is named by its file name in the plugins directory, ending in `.wasm` (no directories)"#
    );
    let e = config::parse("[plugins]\n\"a.wasm\" = 3\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"plugins."a.wasm" = 3: a plugin's configuration is a table, e.g. `[plugins."x.wasm"]`"#
    );
}
