//! The file as serde reads it: every key, nothing checked yet. Numbers are `i64` and addresses,
//! durations and choices are strings, so that [`validate`](crate::validate) can say precisely
//! what is wrong with a value rather than serde's generic "invalid type".

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub gateway: RawGateway,
    #[serde(default)]
    pub networks: Vec<RawNetwork>,
    #[serde(default)]
    pub services: Vec<RawService>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    /// Per plugin file name, its own configuration table (handed to its `init` as JSON).
    #[serde(default)]
    pub plugins: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub io: Option<String>,
    pub workers: Option<i64>,
    pub cores: Option<Vec<i64>>,
    pub state_dir: Option<String>,
    pub plugins_dir: Option<String>,
    pub flow_capacity: Option<i64>,
    pub nat_ports: Option<String>,
    pub dpdk_args: Option<Vec<String>>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub socket: Option<String>,
    pub tcp: Option<String>,
    pub token_file: Option<String>,
    pub read_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub tcp_established: Option<String>,
    pub tcp_transitory: Option<String>,
    pub udp: Option<String>,
    pub icmp: Option<String>,
    pub port_cooldown: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub name: String,
    pub interface: String,
    pub vlan: Option<i64>,
    pub address: String,
    pub next_hop: Option<String>,
    pub mtu: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: String,
    pub provider: String,
    pub network: String,
    pub backends: Vec<String>,
    pub nat_ips: Vec<String>,
    #[serde(default)]
    pub visibility: Vec<String>,
    #[serde(default)]
    pub auto_approval: Vec<String>,
    pub echo: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub proxy_placement: Option<String>,
    pub proxy_header_budget: Option<i64>,
    pub proxy_probe_sources: Option<Vec<String>>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub name: String,
    pub account: String,
    pub network: String,
    pub address: String,
    #[serde(default)]
    pub ports: Vec<i64>,
    pub service: String,
}
