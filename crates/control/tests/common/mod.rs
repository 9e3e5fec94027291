//! Shared fixtures: a configuration matching testkit's two-network topology.
#![allow(dead_code)]

use std::path::Path;

use config::Config;
use io::PortId;
use testkit::{GW_MAC_A, GW_MAC_B, PORT_A, PORT_B};
use wire::EthernetAddress;

/// The test configuration: networks `consumer` (port 0) and `provider` (port 1), both
/// 198.18.0.0/24; service `web` visible to team-a and team-c, auto-approved for team-c.
pub fn config_text(state_dir: &Path) -> String {
    format!(
        r#"
accounts = ["provider-b", "team-a", "team-b", "team-c"]

[gateway]
io = "memory"
workers = 1
state_dir = "{}"
flow_capacity = 4096

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
visibility = ["team-a", "team-c"]
auto_approval = ["team-c"]
echo = "forward"
"#,
        state_dir.display()
    )
}

/// The parsed test configuration.
pub fn config(state_dir: &Path) -> Config {
    config::parse(&config_text(state_dir)).expect("the test configuration is valid")
}

/// Ports and MACs of the two networks, as the engine harness has them.
pub fn ports() -> Vec<(PortId, EthernetAddress)> {
    vec![(PORT_A, EthernetAddress(GW_MAC_A)), (PORT_B, EthernetAddress(GW_MAC_B))]
}
