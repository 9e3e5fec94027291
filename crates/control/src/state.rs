//! The runtime state of the control plane and the mutations that change it.
//!
//! The state is what the configuration file cannot say: service aliases, endpoints created
//! through the API, their connection states and link ids, NAT IPs added or removed at runtime,
//! deleted services. Every change is a [`Mutation`]: applied to the state in memory only after it
//! has been appended to the crash-safe store, so the state after a restart is the state every
//! acknowledged mutation produced. Applying a mutation is deterministic and never fails: each one
//! is checked before it is logged.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Connection state of an endpoint (Azure Private Link's states).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Waiting for the provider.
    Pending,
    /// Passes traffic.
    Approved,
    /// Refused; cannot be approved again.
    Rejected,
    /// Its service was deleted.
    Disconnected,
}

impl EndpointState {
    /// The lower-case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Pending => "pending",
            EndpointState::Approved => "approved",
            EndpointState::Rejected => "rejected",
            EndpointState::Disconnected => "disconnected",
        }
    }
}

/// Where an endpoint came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Declared in the configuration file.
    Config,
    /// Created through the admin API.
    Api,
}

/// One endpoint.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Unique name.
    pub name: String,
    /// The consumer account that owns it.
    pub account: String,
    /// Consumer network name.
    pub network: String,
    /// Endpoint address.
    pub address: Ipv4Addr,
    /// Accepted ports (empty: all).
    pub ports: Vec<u16>,
    /// Service name.
    pub service: String,
    /// Connection state.
    pub state: EndpointState,
    /// Unique, never reused while the endpoint exists.
    pub link_id: u32,
    /// The consumer's request message.
    pub request_message: String,
    /// Why the provider rejected it, or why it was disconnected.
    pub reason: String,
    /// Where it came from.
    pub origin: Origin,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// What the runtime adds to a configured service.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// `name.<suffix>`: what consumers use to find the service.
    pub alias: String,
    /// NAT IPs added at runtime.
    pub added_nat_ips: Vec<Ipv4Addr>,
    /// Configured NAT IPs removed at runtime.
    pub removed_nat_ips: Vec<Ipv4Addr>,
    /// Deleted through the API.
    pub deleted: bool,
}

/// The whole runtime state.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Services by name.
    pub services: BTreeMap<String, ServiceRecord>,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

/// One acknowledged change.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    /// A service got its alias.
    AssignAlias { service: String, alias: String },
    /// An endpoint was created (from the config or the API).
    CreateEndpoint { endpoint: EndpointRecord },
    /// An endpoint changed state.
    SetEndpointState { name: String, state: EndpointState, reason: String },
    /// An endpoint was deleted.
    DeleteEndpoint { name: String },
    /// A service was deleted; its endpoints become disconnected.
    DeleteService { service: String },
    /// A NAT IP was added to a service.
    AddNatIp { service: String, ip: Ipv4Addr },
    /// A NAT IP was removed from a service.
    RemoveNatIp { service: String, ip: Ipv4Addr },
}

impl State {
    /// Applies one mutation (already validated).
    pub fn apply(&mut self, mutation: &Mutation) {
        match mutation {
            Mutation::AssignAlias { service, alias } => {
                self.services.entry(service.clone()).or_default().alias = alias.clone();
            }
            Mutation::CreateEndpoint { endpoint } => {
                self.endpoints.insert(endpoint.name.clone(), endpoint.clone());
            }
            Mutation::SetEndpointState { name, state, reason } => {
                if let Some(e) = self.endpoints.get_mut(name) {
                    e.state = *state;
                    e.reason = reason.clone();
                }
            }
            Mutation::DeleteEndpoint { name } => {
                self.endpoints.remove(name);
            }
            Mutation::DeleteService { service } => {
                self.services.entry(service.clone()).or_default().deleted = true;
                for e in self.endpoints.values_mut().filter(|e| &e.service == service) {
                    e.state = EndpointState::Disconnected;
                    e.reason = format!("service `{service}` was deleted");
                }
            }
            Mutation::AddNatIp { service, ip } => {
                let s = self.services.entry(service.clone()).or_default();
                s.removed_nat_ips.retain(|x| x != ip);
                if !s.added_nat_ips.contains(ip) {
                    s.added_nat_ips.push(*ip);
                }
            }
            Mutation::RemoveNatIp { service, ip } => {
                let s = self.services.entry(service.clone()).or_default();
                let was_added = s.added_nat_ips.contains(ip);
                s.added_nat_ips.retain(|x| x != ip);
                if !was_added && !s.removed_nat_ips.contains(ip) {
                    s.removed_nat_ips.push(*ip);
                }
            }
        }
    }

    /// True when `link_id` is held by an endpoint.
    pub fn link_id_in_use(&self, link_id: u32) -> bool {
        self.endpoints.values().any(|e| e.link_id == link_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, service: &str, link_id: u32) -> EndpointRecord {
        EndpointRecord {
            name: name.into(),
            account: "team-a".into(),
            network: "consumer".into(),
            address: Ipv4Addr::new(198, 18, 0, 50),
            ports: vec![80],
            service: service.into(),
            state: EndpointState::Pending,
            link_id,
            request_message: "please".into(),
            reason: String::new(),
            origin: Origin::Api,
            created_at: 1,
        }
    }

    #[test]
    fn mutations_round_trip_through_json_and_apply() {
        let mutations = vec![
            Mutation::AssignAlias { service: "web".into(), alias: "web.abc123".into() },
            Mutation::CreateEndpoint { endpoint: endpoint("e1", "web", 7) },
            Mutation::SetEndpointState { name: "e1".into(), state: EndpointState::Approved, reason: String::new() },
            Mutation::AddNatIp { service: "web".into(), ip: Ipv4Addr::new(198, 18, 0, 201) },
            Mutation::RemoveNatIp { service: "web".into(), ip: Ipv4Addr::new(198, 18, 0, 200) },
            Mutation::DeleteService { service: "web".into() },
        ];
        let mut state = State::default();
        for m in &mutations {
            let json = serde_json::to_vec(m).unwrap();
            let back: Mutation = serde_json::from_slice(&json).unwrap();
            assert_eq!(&back, m);
            state.apply(&back);
        }
        let web = &state.services["web"];
        assert_eq!(web.alias, "web.abc123");
        assert!(web.deleted);
        assert_eq!(web.added_nat_ips, vec![Ipv4Addr::new(198, 18, 0, 201)]);
        assert_eq!(web.removed_nat_ips, vec![Ipv4Addr::new(198, 18, 0, 200)]);
        assert_eq!(state.endpoints["e1"].state, EndpointState::Disconnected);
        assert!(state.link_id_in_use(7));
        state.apply(&Mutation::DeleteEndpoint { name: "e1".into() });
        assert!(!state.link_id_in_use(7));
    }

    #[test]
    fn removing_an_added_nat_ip_forgets_it() {
        let mut state = State::default();
        let ip = Ipv4Addr::new(198, 18, 0, 9);
        state.apply(&Mutation::AddNatIp { service: "s".into(), ip });
        state.apply(&Mutation::RemoveNatIp { service: "s".into(), ip });
        assert!(state.services["s"].added_nat_ips.is_empty());
        assert!(state.services["s"].removed_nat_ips.is_empty());
    }
}
