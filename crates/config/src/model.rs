//! The validated, typed configuration. Every value here has passed the checks in
//! [`validate`](crate::validate): names are unique, references resolve, addresses sit where they
//! must. Nothing here knows serde.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use flow::Timeouts;

/// A whole, validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Every account that a list (provider, visibility, auto-approval, endpoint) may name.
    pub accounts: Vec<String>,
    /// Process-wide settings: I/O backend, workers, state, admin listener, default timeouts.
    pub gateway: Gateway,
    /// The networks attached to the gateway, in file order (two may share a prefix).
    pub networks: Vec<NetworkConfig>,
    /// The private link services, in file order.
    pub services: Vec<ServiceConfig>,
    /// The private endpoints declared in the file, in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// Each plugin's own configuration, by plugin file name (e.g. `10-allow-accounts.wasm`), as
    /// the JSON text its `init` receives. A plugin without an entry gets `{}`.
    pub plugins: std::collections::BTreeMap<String, String>,
}

/// The packet I/O backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// AF_PACKET (`TPACKET_V3`) on Linux interfaces: runs anywhere, veth included.
    AfPacket,
    /// DPDK poll-mode drivers (the binary must be built with the `dpdk` feature).
    Dpdk,
    /// In-memory queues, for tests and engine benchmarks.
    Memory,
}

impl IoBackend {
    /// The name used in the configuration file: `afpacket`, `dpdk` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::AfPacket => "afpacket",
            IoBackend::Dpdk => "dpdk",
            IoBackend::Memory => "memory",
        }
    }
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the gateway does with an ICMP echo request to an endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EchoMode {
    /// The gateway answers the echo itself (the endpoint "is up" when the gateway is).
    #[default]
    Reply,
    /// The echo is translated like any flow and forwarded to a backend, which answers it.
    Forward,
}

impl EchoMode {
    /// The name used in the configuration file: `reply` or `forward`.
    pub fn as_str(self) -> &'static str {
        match self {
            EchoMode::Reply => "reply",
            EchoMode::Forward => "forward",
        }
    }
}

impl fmt::Display for EchoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Process-wide settings (`[gateway]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The packet I/O backend (default: AF_PACKET).
    pub io: IoBackend,
    /// How many workers (poll-mode threads), 1..=64 (default 1).
    pub workers: usize,
    /// The core each worker is pinned to (`cores[i]` for worker `i`), or `None` to let the
    /// scheduler place them. When set, it has exactly `workers` distinct entries.
    pub cores: Option<Vec<usize>>,
    /// Where the crash-safe runtime store lives (default `/var/lib/overlink`).
    pub state_dir: PathBuf,
    /// Where the WebAssembly policy plugins are loaded from, if anywhere.
    pub plugins_dir: Option<PathBuf>,
    /// Flow table capacity of each worker (default 1 048 576).
    pub flow_capacity: usize,
    /// The NAT port range of every NAT IP, split into per-worker slices (default 1024-65535).
    pub nat_ports: RangeInclusive<u16>,
    /// DPDK EAL arguments (only with [`IoBackend::Dpdk`]), the way `dpdk-testpmd` takes them.
    pub dpdk_args: Vec<String>,
    /// The admin API listener.
    pub admin: Admin,
    /// Default idle timeouts: the built-in defaults overridden by `[gateway.timeouts]`.
    pub timeouts: Timeouts,
}

/// The admin API listener (`[gateway.admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The unix socket (always served; default `/run/overlink/admin.sock`).
    pub socket: PathBuf,
    /// An optional TCP listener (bearer-token authenticated).
    pub tcp: Option<SocketAddr>,
    /// The file holding the read-write bearer token; set exactly when `tcp` is.
    pub token_file: Option<PathBuf>,
    /// The file holding a read-only bearer token (only with `tcp`).
    pub read_token_file: Option<PathBuf>,
}

/// One network (`[[networks]]`): an address domain behind an interface (and optional VLAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Unique name.
    pub name: String,
    /// The interface (a Linux interface name, or a DPDK port name with `io = "dpdk"`).
    pub interface: String,
    /// The 802.1Q VLAN id on the interface, if tagged.
    pub vlan: Option<u16>,
    /// The gateway's own address in this network.
    pub address: Ipv4Addr,
    /// The prefix length of the network (8..=30).
    pub prefix_len: u8,
    /// The router for destinations outside the prefix, if any.
    pub next_hop: Option<Ipv4Addr>,
    /// The largest IP packet the network carries (576..=9216, default 1500).
    pub mtu: u16,
}

impl NetworkConfig {
    /// The network mask, e.g. `255.255.255.0` for a /24.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    /// The network's own address (host bits zero), e.g. `198.18.0.0`.
    pub fn network_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & prefix_mask(self.prefix_len))
    }

    /// The directed broadcast address (host bits one), e.g. `198.18.0.255`.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !prefix_mask(self.prefix_len))
    }

    /// Whether `ip` is inside this network's prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }

    /// Whether `ip` may be given to a host in this network: inside the prefix and neither the
    /// network nor the broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network_address() && ip != self.broadcast()
    }

    /// The prefix in CIDR notation, e.g. `198.18.0.0/24`.
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.network_address(), self.prefix_len)
    }
}

/// The mask of a prefix length (0..=32).
pub(crate) fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - u32::from(l)),
    }
}

/// One private link service (`[[services]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// The account that owns the service; it always sees it and its endpoints are approved at once.
    pub provider: String,
    /// The name of the provider network holding the backends and the NAT IPs.
    pub network: String,
    /// Where connections go, `ip:port` in the provider network (1..=64, distinct).
    pub backends: Vec<SocketAddrV4>,
    /// The NAT pool: source addresses of translated connections (1..=64, distinct).
    pub nat_ips: Vec<Ipv4Addr>,
    /// Accounts that may see the service, `"*"` meaning every account.
    pub visibility: Vec<String>,
    /// Accounts whose endpoints are approved at once, `"*"` meaning every account that sees it.
    pub auto_approval: Vec<String>,
    /// What happens to an ICMP echo to the service's endpoints.
    pub echo: EchoMode,
    /// Whether a PROXY protocol v2 header is inserted at the start of each TCP connection.
    pub proxy_protocol: bool,
    /// How the PROXY v2 header is inserted (meaningful when `proxy_protocol` is on).
    pub proxy: ProxySettings,
    /// This service's idle timeouts: the gateway's, overridden by `[services.timeouts]`.
    pub timeouts: Timeouts,
}

/// Where the PROXY v2 header goes (`proxy_placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyPlacement {
    /// `"on_handshake_ack"` (default): on the client's handshake ACK, retransmitted by the gateway
    /// until the server acknowledges it; serves protocols where the server speaks first.
    #[default]
    OnHandshakeAck,
    /// `"on_first_data"`: on the first client segment carrying data or FIN.
    OnFirstData,
}

/// PROXY v2 settings of a service (`proxy_placement`, `proxy_header_budget`,
/// `proxy_probe_sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// Where the header goes.
    pub placement: ProxyPlacement,
    /// The longest header allowed, 28..=255 bytes (default 107, what Debian 12's nginx reads).
    pub header_budget: u16,
    /// Consumer sources whose connections are health probes and get a LOCAL header:
    /// `(address, prefix length)`.
    pub probe_sources: Vec<(Ipv4Addr, u8)>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings { placement: ProxyPlacement::default(), header_budget: 107, probe_sources: Vec::new() }
    }
}

/// One private endpoint (`[[endpoints]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Unique name.
    pub name: String,
    /// The consumer account that owns it.
    pub account: String,
    /// The name of the consumer network it lives in.
    pub network: String,
    /// Its address in that network (the gateway answers ARP for it).
    pub address: Ipv4Addr,
    /// The ports it accepts (distinct); empty means every port.
    pub ports: Vec<u16>,
    /// The name of the service it maps to.
    pub service: String,
}

impl EndpointConfig {
    /// Whether the endpoint accepts connections to `port`.
    pub fn accepts_port(&self, port: u16) -> bool {
        self.ports.is_empty() || self.ports.contains(&port)
    }
}

impl Config {
    /// The network called `name`, with its index in [`Config::networks`].
    pub fn network(&self, name: &str) -> Option<(usize, &NetworkConfig)> {
        self.networks.iter().enumerate().find(|(_, n)| n.name == name)
    }

    /// The service called `name`, with its index in [`Config::services`].
    pub fn service(&self, name: &str) -> Option<(usize, &ServiceConfig)> {
        self.services.iter().enumerate().find(|(_, s)| s.name == name)
    }

    /// The endpoint called `name`, with its index in [`Config::endpoints`].
    pub fn endpoint(&self, name: &str) -> Option<(usize, &EndpointConfig)> {
        self.endpoints.iter().enumerate().find(|(_, e)| e.name == name)
    }

    /// Whether `account` may see `service`: it is the provider, or the visibility list names it
    /// or `"*"`.
    pub fn is_visible(&self, service: &ServiceConfig, account: &str) -> bool {
        service.provider == account || service.visibility.iter().any(|v| v == "*" || v == account)
    }

    /// Whether a new endpoint of `account` on `service` is approved at once: it is the provider,
    /// or the account sees the service and the auto-approval list names it or `"*"`.
    pub fn is_auto_approved(&self, service: &ServiceConfig, account: &str) -> bool {
        service.provider == account
            || (self.is_visible(service, account) && service.auto_approval.iter().any(|a| a == "*" || a == account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(address: [u8; 4], prefix_len: u8) -> NetworkConfig {
        NetworkConfig {
            name: "n".into(),
            interface: "eth0".into(),
            vlan: None,
            address: Ipv4Addr::from(address),
            prefix_len,
            next_hop: None,
            mtu: 1500,
        }
    }

    #[test]
    fn prefix_arithmetic() {
        let n = net([198, 18, 0, 1], 24);
        assert_eq!(n.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(n.network_address(), Ipv4Addr::new(198, 18, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
        assert_eq!(n.prefix(), "198.18.0.0/24");
        assert!(n.contains(Ipv4Addr::new(198, 18, 0, 255)));
        assert!(!n.contains(Ipv4Addr::new(198, 18, 1, 0)));
        assert!(n.is_host(Ipv4Addr::new(198, 18, 0, 254)));
        assert!(!n.is_host(Ipv4Addr::new(198, 18, 0, 0)));
        assert!(!n.is_host(Ipv4Addr::new(198, 18, 0, 255)));
        let n = net([10, 1, 2, 3], 8);
        assert!(n.contains(Ipv4Addr::new(10, 255, 0, 1)));
        assert!(!n.contains(Ipv4Addr::new(11, 0, 0, 1)));
        let n = net([10, 0, 0, 5], 30);
        assert_eq!(n.prefix(), "10.0.0.4/30");
        assert!(n.is_host(Ipv4Addr::new(10, 0, 0, 6)));
        assert!(!n.contains(Ipv4Addr::new(10, 0, 0, 8)));
        assert_eq!(prefix_mask(0), 0);
        assert_eq!(prefix_mask(32), u32::MAX);
    }
}
