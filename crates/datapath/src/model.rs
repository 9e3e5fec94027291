//! The compiled model the workers read: networks, services, endpoints, timeouts.
//!
//! The control plane compiles configuration and runtime state into a `Model` and publishes it
//! as an immutable snapshot ([`crate::Snapshot`]); workers read the newest one once per burst.
//! Everything here is plain data with indexes built once at [`Model::new`], so the datapath never
//! parses a string and every lookup is a hash or an array index.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

use flow::{NetworkId, Timeouts};
use io::PortId;
use wire::EthernetAddress;

use crate::proxy::ProxyProtocol;

/// Index of a service in [`Model::services`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ServiceId(pub u32);

/// Index of an endpoint in [`Model::endpoints`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EndpointId(pub u32);

/// One address domain attached to the gateway through a port and an optional VLAN.
#[derive(Clone, Debug)]
pub struct Network {
    /// Name, for counters and messages only.
    pub name: String,
    /// The I/O port the network is attached to.
    pub port: PortId,
    /// The 802.1Q VLAN id on that port, or untagged.
    pub vlan: Option<u16>,
    /// The gateway's MAC address on this network.
    pub mac: EthernetAddress,
    /// The gateway's own address in this network.
    pub address: Ipv4Addr,
    /// Prefix length of the on-link subnet.
    pub prefix_len: u8,
    /// Router for destinations outside the subnet; `None` means everything is on-link.
    pub next_hop: Option<Ipv4Addr>,
    /// The largest IP packet the network carries (PROXY v2 insertion and MSS clamping keep
    /// segments within it).
    pub mtu: u16,
}

/// The MTU of a network that does not say (Ethernet).
pub const DEFAULT_MTU: u16 = 1500;

impl Network {
    /// True when `ip` is inside this network's on-link prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix_len.min(32))) };
        u32::from(ip) & mask == u32::from(self.address) & mask
    }

    /// The neighbour to send to for `destination`: itself when on-link, else the router.
    pub fn gateway_for(&self, destination: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.contains(destination) {
            Some(destination)
        } else {
            self.next_hop
        }
    }
}

/// What the gateway does with ICMP echo requests to an endpoint address.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum EchoMode {
    /// The gateway answers itself: the endpoint is up.
    #[default]
    Reply,
    /// Echo is translated to a backend like any flow (approved endpoints only).
    Forward,
}

/// A private link service: backends in a provider network, exposed through a NAT pool.
#[derive(Clone, Debug)]
pub struct Service {
    /// Name, for counters and messages only.
    pub name: String,
    /// The provider account that owns it (plugins see it).
    pub provider: String,
    /// The provider network holding the backends and NAT IPs.
    pub network: NetworkId,
    /// Backends, `ip:port`; new flows are spread over them by a hash of the consumer's source.
    pub backends: Vec<SocketAddrV4>,
    /// The NAT pool: source addresses in the provider network.
    pub nat_ips: Vec<Ipv4Addr>,
    /// ICMP echo handling.
    pub echo: EchoMode,
    /// Idle timeouts for this service's flows.
    pub timeouts: Timeouts,
    /// PROXY protocol v2 insertion on TCP connections, when on.
    pub proxy: Option<ProxyProtocol>,
}

/// Connection state of an endpoint (Azure Private Link's states).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectionState {
    /// Waiting for the provider's approval; passes nothing.
    Pending,
    /// Passes traffic.
    Approved,
    /// Refused by the provider; passes nothing and cannot be approved again.
    Rejected,
    /// Its service was deleted; passes nothing.
    Disconnected,
}

/// A private endpoint: an address in a consumer network mapped to one service.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Name, for counters and messages only.
    pub name: String,
    /// The consumer account that owns it.
    pub account: String,
    /// The consumer network the address lives in.
    pub network: NetworkId,
    /// The endpoint address consumers connect to.
    pub address: Ipv4Addr,
    /// TCP/UDP destination ports accepted on the address; empty accepts every port.
    pub ports: Vec<u16>,
    /// The service it maps to.
    pub service: ServiceId,
    /// Only `Approved` passes traffic.
    pub state: ConnectionState,
    /// Unique per gateway, never reused while the endpoint exists; flows refer to it.
    pub link_id: u32,
}

impl Endpoint {
    /// True when `port` is accepted on this endpoint.
    pub fn accepts_port(&self, port: u16) -> bool {
        self.ports.is_empty() || self.ports.contains(&port)
    }
}

/// A problem found while indexing a model; the control plane validates before this, so these
/// are internal consistency errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Two networks on one port share a VLAN (or are both untagged).
    #[error("networks `{0}` and `{1}` are both on port {2} with the same VLAN")]
    DuplicatePortVlan(String, String, u16),
    /// A reference to a network that does not exist.
    #[error("`{0}` refers to network #{1}, which does not exist")]
    NoSuchNetwork(String, u16),
    /// A reference to a service that does not exist.
    #[error("endpoint `{0}` refers to service #{1}, which does not exist")]
    NoSuchService(String, u32),
    /// Two endpoints with one address in one network.
    #[error("endpoints `{0}` and `{1}` share address {2} in one network")]
    DuplicateEndpointAddress(String, String, Ipv4Addr),
    /// A NAT IP used twice in one network.
    #[error("NAT IP {0} is used twice in network `{1}`")]
    DuplicateNatIp(Ipv4Addr, String),
    /// Two endpoints with one link id.
    #[error("link id {0} is used twice")]
    DuplicateLinkId(u32),
    /// A service without backends or NAT IPs.
    #[error("service `{0}` needs at least one backend and one NAT IP")]
    EmptyService(String),
    /// A port range too small for the number of workers.
    #[error("NAT port range {0}..={1} is too small for {2} workers")]
    PortRange(u16, u16, usize),
}

/// What an address is to the gateway, within one network.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Address {
    /// The gateway's own address.
    Gateway,
    /// An endpoint address.
    Endpoint(EndpointId),
    /// A NAT IP of a service.
    NatIp(ServiceId),
}

/// The compiled, indexed model a worker reads.
#[derive(Debug)]
pub struct Model {
    /// Increases with every snapshot the control plane publishes.
    pub generation: u64,
    /// Networks; `NetworkId(i)` is `networks[i]`.
    pub networks: Vec<Network>,
    /// Services; `ServiceId(i)` is `services[i]`.
    pub services: Vec<Service>,
    /// Endpoints; `EndpointId(i)` is `endpoints[i]`.
    pub endpoints: Vec<Endpoint>,
    /// The NAT port range of every NAT IP, split into per-worker slices.
    pub nat_port_range: RangeInclusive<u16>,
    /// Number of workers the port range is split between.
    pub workers: usize,
    port_vlan: Vec<(PortId, Option<u16>, NetworkId)>,
    addresses: HashMap<(NetworkId, Ipv4Addr), Address>,
    by_link_id: HashMap<u32, EndpointId>,
}

impl Model {
    /// Indexes a model, checking that references and addresses are consistent.
    pub fn new(
        generation: u64,
        networks: Vec<Network>,
        services: Vec<Service>,
        endpoints: Vec<Endpoint>,
        nat_port_range: RangeInclusive<u16>,
        workers: usize,
    ) -> Result<Model, ModelError> {
        let span = usize::from(*nat_port_range.end()).saturating_sub(usize::from(*nat_port_range.start())) + 1;
        if nat_port_range.is_empty() || workers == 0 || span < workers {
            return Err(ModelError::PortRange(*nat_port_range.start(), *nat_port_range.end(), workers));
        }
        let mut port_vlan: Vec<(PortId, Option<u16>, NetworkId)> = Vec::new();
        let mut addresses = HashMap::new();
        for (i, net) in networks.iter().enumerate() {
            let id = NetworkId(u16::try_from(i).map_err(|_| ModelError::NoSuchNetwork(net.name.clone(), u16::MAX))?);
            if let Some(&(_, _, other)) = port_vlan.iter().find(|(p, v, _)| *p == net.port && *v == net.vlan) {
                return Err(ModelError::DuplicatePortVlan(
                    networks[usize::from(other.0)].name.clone(),
                    net.name.clone(),
                    net.port.0,
                ));
            }
            port_vlan.push((net.port, net.vlan, id));
            addresses.insert((id, net.address), Address::Gateway);
        }
        let network_name = |id: NetworkId| networks.get(usize::from(id.0)).map(|n| n.name.clone());
        for (i, svc) in services.iter().enumerate() {
            let id = ServiceId(u32::try_from(i).unwrap_or(u32::MAX));
            let Some(net_name) = network_name(svc.network) else {
                return Err(ModelError::NoSuchNetwork(svc.name.clone(), svc.network.0));
            };
            if svc.backends.is_empty() || svc.nat_ips.is_empty() {
                return Err(ModelError::EmptyService(svc.name.clone()));
            }
            for &ip in &svc.nat_ips {
                if addresses.insert((svc.network, ip), Address::NatIp(id)).is_some() {
                    return Err(ModelError::DuplicateNatIp(ip, net_name));
                }
            }
        }
        let mut by_link_id = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let id = EndpointId(u32::try_from(i).unwrap_or(u32::MAX));
            if network_name(ep.network).is_none() {
                return Err(ModelError::NoSuchNetwork(ep.name.clone(), ep.network.0));
            }
            if services.get(ep.service.0 as usize).is_none() {
                return Err(ModelError::NoSuchService(ep.name.clone(), ep.service.0));
            }
            if let Some(prev) = addresses.insert((ep.network, ep.address), Address::Endpoint(id)) {
                let other = match prev {
                    Address::Endpoint(e) => endpoints[e.0 as usize].name.clone(),
                    Address::Gateway => "the gateway".to_string(),
                    Address::NatIp(s) => format!("NAT IP of `{}`", services[s.0 as usize].name),
                };
                return Err(ModelError::DuplicateEndpointAddress(other, ep.name.clone(), ep.address));
            }
            if by_link_id.insert(ep.link_id, id).is_some() {
                return Err(ModelError::DuplicateLinkId(ep.link_id));
            }
        }
        Ok(Model {
            generation,
            networks,
            services,
            endpoints,
            nat_port_range,
            workers,
            port_vlan,
            addresses,
            by_link_id,
        })
    }

    /// The network attached at `port` with `vlan`.
    #[inline]
    pub fn network_at(&self, port: PortId, vlan: Option<u16>) -> Option<NetworkId> {
        self.port_vlan.iter().find(|(p, v, _)| *p == port && *v == vlan).map(|&(_, _, id)| id)
    }

    /// A network by id.
    #[inline]
    pub fn network(&self, id: NetworkId) -> Option<&Network> {
        self.networks.get(usize::from(id.0))
    }

    /// A service by id.
    pub fn service(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id.0 as usize)
    }

    /// An endpoint by id.
    pub fn endpoint(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(id.0 as usize)
    }

    /// What `ip` is in network `network`, if anything the gateway answers for.
    pub fn address(&self, network: NetworkId, ip: Ipv4Addr) -> Option<Address> {
        self.addresses.get(&(network, ip)).copied()
    }

    /// The endpoint with `link_id`.
    pub fn endpoint_by_link_id(&self, link_id: u32) -> Option<(EndpointId, &Endpoint)> {
        let id = *self.by_link_id.get(&link_id)?;
        Some((id, self.endpoint(id)?))
    }
}
