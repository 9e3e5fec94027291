//! The control plane: configuration plus runtime state, the Private Link workflow, persistence
//! and publication of the model the workers read.
//!
//! Every operation follows the same order: validate against the current state (nothing changes
//! on an error), write the audit entry (refuse if it cannot be written), append the mutation to
//! the store (durable before anything else happens), apply it in memory, publish a new model
//! snapshot. The caller answers its client only after all of that returned.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use config::Config;
use datapath::{
    ConnectionState, EchoMode, Endpoint, Model, Network, Placement, ProxyProtocol, Service, ServiceId, SharedModel,
};
use flow::NetworkId;
use io::PortId;
use serde::Serialize;
use store::{AuditEntry, AuditLog, Store};
use wire::EthernetAddress;

use crate::hooks::{Approval, ApprovalRequest, EndpointPolicy, Visibility};
use crate::state::{EndpointRecord, EndpointState, Mutation, Origin, ServiceRecord, State};

/// Take a snapshot of the state after this many logged mutations.
const SNAPSHOT_EVERY: u64 = 256;

/// An error an operation returns; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// No such thing, or not visible to the caller (404).
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// Persistence failed: nothing was changed (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ControlError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Invalid(_) => 400,
            ControlError::NotFound(_) => 404,
            ControlError::Conflict(_) => 409,
            ControlError::Unavailable(_) => 503,
        }
    }
}

type Result<T> = std::result::Result<T, ControlError>;

/// Who asks (for the audit log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

/// A request to create an endpoint.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Unique name; generated when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The consumer account.
    pub account: String,
    /// The consumer network.
    pub network: String,
    /// The endpoint address in that network.
    pub address: Ipv4Addr,
    /// Accepted ports (absent or empty: all).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The service alias (`name.suffix`).
    pub service: String,
    /// A message for the provider.
    #[serde(default)]
    pub message: String,
}

/// A service as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ServiceView {
    /// Name.
    pub name: String,
    /// Alias consumers use.
    pub alias: String,
    /// Provider account.
    pub provider: String,
    /// Provider network.
    pub network: String,
    /// Backends.
    pub backends: Vec<SocketAddrV4>,
    /// Current NAT IPs.
    pub nat_ips: Vec<Ipv4Addr>,
    /// Visibility list.
    pub visibility: Vec<String>,
    /// Auto-approval list.
    pub auto_approval: Vec<String>,
    /// PROXY v2 on/off.
    pub proxy_protocol: bool,
    /// Deleted through the API.
    pub deleted: bool,
    /// Endpoints mapped to it.
    pub endpoints: usize,
}

/// An endpoint as the API shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EndpointView {
    /// Name.
    pub name: String,
    /// Consumer account.
    pub account: String,
    /// Consumer network.
    pub network: String,
    /// Address.
    pub address: Ipv4Addr,
    /// Ports (empty: all).
    pub ports: Vec<u16>,
    /// Service name.
    pub service: String,
    /// Service alias.
    pub service_alias: String,
    /// `pending`, `approved`, `rejected`, `disconnected`.
    pub state: &'static str,
    /// Link id.
    pub link_id: u32,
    /// The consumer's request message.
    pub request_message: String,
    /// Rejection or disconnection reason.
    pub reason: String,
    /// `config` or `api`.
    pub origin: &'static str,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The control plane.
#[derive(Debug)]
pub struct Control {
    config: Config,
    state: State,
    store: Store,
    audit: AuditLog,
    model: SharedModel,
    generation: u64,
    ports: Vec<(PortId, EthernetAddress)>,
    workers: usize,
    hooks: Option<Box<dyn EndpointPolicy>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom only fails when the OS has no entropy source at all; fall back to the clock.
    if getrandom::fill(&mut b).is_err() {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        b = t.to_le_bytes();
    }
    u32::from_le_bytes(b)
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
}

impl Control {
    /// Opens the state directory, recovers the state, brings it in line with the configuration
    /// (aliases for new services, config-declared endpoints), and publishes the first model.
    ///
    /// `ports` gives each configured network (in config order) its I/O port and MAC address.
    pub fn open(config: Config, ports: Vec<(PortId, EthernetAddress)>) -> std::result::Result<Control, String> {
        if ports.len() != config.networks.len() {
            return Err(format!("{} networks configured but {} ports given", config.networks.len(), ports.len()));
        }
        let dir = config.gateway.state_dir.clone();
        let (store, recovered) = Store::open(&dir).map_err(|e| e.to_string())?;
        let mut state = match &recovered.snapshot {
            Some(bytes) => serde_json::from_slice::<State>(bytes)
                .map_err(|e| format!("{}: the state snapshot does not parse: {e}", dir.display()))?,
            None => State::default(),
        };
        for (i, record) in recovered.records.iter().enumerate() {
            let m: Mutation = serde_json::from_slice(record)
                .map_err(|e| format!("{}: log record {i} does not parse: {e}", dir.display()))?;
            state.apply(&m);
        }
        let audit = AuditLog::open(&dir.join("audit.log")).map_err(|e| e.to_string())?;
        let workers = config.gateway.workers;
        let placeholder =
            Model::new(0, Vec::new(), Vec::new(), Vec::new(), 1..=65535, 1).map_err(|e| format!("internal: {e}"))?;
        let mut control = Control {
            config,
            state,
            store,
            audit,
            model: Arc::new(ArcSwap::from_pointee(placeholder)),
            generation: 0,
            ports,
            workers,
            hooks: None,
        };
        control.reconcile_with_config().map_err(|e| e.to_string())?;
        control.publish().map_err(|e| e.to_string())?;
        Ok(control)
    }

    /// Lets `hooks` (the plugin chain) decide visibility and approval of new endpoints; where
    /// it abstains, the configuration's lists decide.
    pub fn set_endpoint_policy(&mut self, hooks: Box<dyn EndpointPolicy>) {
        self.hooks = Some(hooks);
    }

    /// The model snapshot the workers read.
    pub fn shared_model(&self) -> SharedModel {
        self.model.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    fn system() -> Actor {
        Actor("overlink".into())
    }

    /// Gives every configured service an alias and creates config-declared endpoints that the
    /// state does not hold yet (approved when the account is on the auto-approval list).
    fn reconcile_with_config(&mut self) -> Result<()> {
        let names: Vec<String> = self.config.services.iter().map(|s| s.name.clone()).collect();
        for name in names {
            if self.state.services.get(&name).is_none_or(|s| s.alias.is_empty()) {
                let alias = format!("{name}.{:08x}", random_u32());
                self.commit(
                    &Self::system(),
                    "assign_alias",
                    &name,
                    Mutation::AssignAlias { service: name.clone(), alias },
                )?;
            }
        }
        let declared = self.config.endpoints.clone();
        for e in declared {
            if self.state.endpoints.contains_key(&e.name) {
                continue;
            }
            let Some((_, service)) = self.config.service(&e.service) else { continue };
            let state = if self.config.is_auto_approved(service, &e.account) {
                EndpointState::Approved
            } else {
                EndpointState::Pending
            };
            let record = EndpointRecord {
                name: e.name.clone(),
                account: e.account.clone(),
                network: e.network.clone(),
                address: e.address,
                ports: e.ports.clone(),
                service: e.service.clone(),
                state,
                link_id: self.new_link_id(),
                request_message: String::new(),
                reason: String::new(),
                origin: Origin::Config,
                created_at: now_secs(),
            };
            self.commit(&Self::system(), "create_endpoint", &e.name, Mutation::CreateEndpoint { endpoint: record })?;
        }
        Ok(())
    }

    fn new_link_id(&self) -> u32 {
        loop {
            let id = random_u32();
            if id != 0 && !self.state.link_id_in_use(id) {
                return id;
            }
        }
    }

    /// Audit, persist, apply. Nothing changes unless both writes succeed.
    fn commit(&mut self, actor: &Actor, action: &str, target: &str, mutation: Mutation) -> Result<()> {
        let detail = serde_json::to_string(&mutation).unwrap_or_default();
        self.audit
            .record(&AuditEntry { at: SystemTime::now(), who: &actor.0, action, target, result: "ok", detail: &detail })
            .map_err(|e| {
                ControlError::Unavailable(format!("the audit log cannot be written, so nothing was changed: {e}"))
            })?;
        let bytes = serde_json::to_vec(&mutation).map_err(|e| ControlError::Unavailable(format!("internal: {e}")))?;
        if let Err(e) = self.store.append(&bytes) {
            let _ = self.audit.record(&AuditEntry {
                at: SystemTime::now(),
                who: &actor.0,
                action,
                target,
                result: "failed",
                detail: &e.to_string(),
            });
            return Err(ControlError::Unavailable(format!(
                "the state could not be saved, so nothing was changed: {e}"
            )));
        }
        self.state.apply(&mutation);
        if self.store.records_since_snapshot() >= SNAPSHOT_EVERY {
            if let Ok(bytes) = serde_json::to_vec(&self.state) {
                // A failed snapshot loses nothing: the log still holds every record.
                let _ = self.store.snapshot(&bytes);
            }
        }
        Ok(())
    }

    /// Records a refused request in the audit log (best effort: nothing changed anyway).
    fn audit_refusal(&mut self, actor: &Actor, action: &str, target: &str, error: &ControlError) {
        let _ = self.audit.record(&AuditEntry {
            at: SystemTime::now(),
            who: &actor.0,
            action,
            target,
            result: "refused",
            detail: &error.to_string(),
        });
    }

    /// Compiles configuration and state into a new model and publishes it.
    fn publish(&mut self) -> Result<()> {
        let model =
            self.compile().map_err(|e| ControlError::Conflict(format!("the new model is inconsistent: {e}")))?;
        self.model.store(Arc::new(model));
        Ok(())
    }

    /// The model for the current configuration and state.
    pub fn compile(&mut self) -> std::result::Result<Model, datapath::ModelError> {
        self.generation += 1;
        let networks = self
            .config
            .networks
            .iter()
            .zip(&self.ports)
            .map(|(n, &(port, mac))| Network {
                name: n.name.clone(),
                port,
                vlan: n.vlan,
                mac,
                address: n.address,
                prefix_len: n.prefix_len,
                next_hop: n.next_hop,
                mtu: n.mtu,
            })
            .collect();
        let mut services = Vec::new();
        let mut service_ids = BTreeMap::new();
        for s in &self.config.services {
            let record = self.state.services.get(&s.name).cloned().unwrap_or_default();
            if record.deleted {
                continue;
            }
            let Some((network, _)) = self.config.network(&s.network) else { continue };
            let nat_ips = current_nat_ips(&s.nat_ips, &record);
            if nat_ips.is_empty() {
                continue;
            }
            service_ids.insert(s.name.clone(), ServiceId(u32::try_from(services.len()).unwrap_or(u32::MAX)));
            services.push(Service {
                name: s.name.clone(),
                provider: s.provider.clone(),
                network: NetworkId(u16::try_from(network).unwrap_or(u16::MAX)),
                backends: s.backends.clone(),
                nat_ips,
                echo: match s.echo {
                    config::EchoMode::Reply => EchoMode::Reply,
                    config::EchoMode::Forward => EchoMode::Forward,
                },
                timeouts: s.timeouts,
                proxy: s.proxy_protocol.then(|| ProxyProtocol {
                    placement: match s.proxy.placement {
                        config::ProxyPlacement::OnHandshakeAck => Placement::OnHandshakeAck,
                        config::ProxyPlacement::OnFirstData => Placement::OnFirstData,
                    },
                    header_budget: s.proxy.header_budget,
                    probe_sources: s.proxy.probe_sources.clone(),
                }),
            });
        }
        let mut endpoints = Vec::new();
        for e in self.state.endpoints.values() {
            let (Some(&service), Some((network, _))) = (service_ids.get(&e.service), self.config.network(&e.network))
            else {
                continue;
            };
            endpoints.push(Endpoint {
                name: e.name.clone(),
                account: e.account.clone(),
                network: NetworkId(u16::try_from(network).unwrap_or(u16::MAX)),
                address: e.address,
                ports: e.ports.clone(),
                service,
                state: match e.state {
                    EndpointState::Pending => ConnectionState::Pending,
                    EndpointState::Approved => ConnectionState::Approved,
                    EndpointState::Rejected => ConnectionState::Rejected,
                    EndpointState::Disconnected => ConnectionState::Disconnected,
                },
                link_id: e.link_id,
            });
        }
        Model::new(self.generation, networks, services, endpoints, self.config.gateway.nat_ports.clone(), self.workers)
    }

    fn service_view(&self, s: &config::ServiceConfig) -> ServiceView {
        let record = self.state.services.get(&s.name).cloned().unwrap_or_default();
        ServiceView {
            name: s.name.clone(),
            alias: record.alias.clone(),
            provider: s.provider.clone(),
            network: s.network.clone(),
            backends: s.backends.clone(),
            nat_ips: current_nat_ips(&s.nat_ips, &record),
            visibility: s.visibility.clone(),
            auto_approval: s.auto_approval.clone(),
            proxy_protocol: s.proxy_protocol,
            deleted: record.deleted,
            endpoints: self.state.endpoints.values().filter(|e| e.service == s.name).count(),
        }
    }

    fn endpoint_view(&self, e: &EndpointRecord) -> EndpointView {
        EndpointView {
            name: e.name.clone(),
            account: e.account.clone(),
            network: e.network.clone(),
            address: e.address,
            ports: e.ports.clone(),
            service: e.service.clone(),
            service_alias: self.state.services.get(&e.service).map(|s| s.alias.clone()).unwrap_or_default(),
            state: e.state.as_str(),
            link_id: e.link_id,
            request_message: e.request_message.clone(),
            reason: e.reason.clone(),
            origin: match e.origin {
                Origin::Config => "config",
                Origin::Api => "api",
            },
            created_at: e.created_at,
        }
    }

    /// Every service.
    pub fn services(&self) -> Vec<ServiceView> {
        self.config.services.iter().map(|s| self.service_view(s)).collect()
    }

    /// One service by name or alias.
    pub fn service(&self, name_or_alias: &str) -> Result<ServiceView> {
        self.find_service(name_or_alias).map(|s| self.service_view(s))
    }

    fn find_service(&self, name_or_alias: &str) -> Result<&config::ServiceConfig> {
        self.config
            .services
            .iter()
            .find(|s| {
                s.name == name_or_alias || self.state.services.get(&s.name).is_some_and(|r| r.alias == name_or_alias)
            })
            .ok_or_else(|| ControlError::NotFound(format!("no service `{name_or_alias}`")))
    }

    /// A service that has not been deleted.
    fn find_live_service(&self, name_or_alias: &str) -> Result<&config::ServiceConfig> {
        let s = self.find_service(name_or_alias)?;
        if self.state.services.get(&s.name).is_some_and(|r| r.deleted) {
            return Err(ControlError::NotFound(format!("no service `{name_or_alias}` (it was deleted)")));
        }
        Ok(s)
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> Vec<EndpointView> {
        self.state.endpoints.values().map(|e| self.endpoint_view(e)).collect()
    }

    /// One endpoint.
    pub fn endpoint(&self, name: &str) -> Result<EndpointView> {
        self.state
            .endpoints
            .get(name)
            .map(|e| self.endpoint_view(e))
            .ok_or_else(|| ControlError::NotFound(format!("no endpoint `{name}`")))
    }

    /// A consumer asks for an endpoint to a service it found by alias.
    pub fn create_endpoint(&mut self, actor: &Actor, request: CreateEndpoint) -> Result<EndpointView> {
        let target = request.name.clone().unwrap_or_default();
        match self.check_create(request) {
            Ok(record) => {
                let name = record.name.clone();
                self.commit(actor, "create_endpoint", &name, Mutation::CreateEndpoint { endpoint: record })?;
                self.publish()?;
                self.endpoint(&name)
            }
            Err(e) => {
                self.audit_refusal(actor, "create_endpoint", &target, &e);
                Err(e)
            }
        }
    }

    fn check_create(&mut self, r: CreateEndpoint) -> Result<EndpointRecord> {
        if !self.config.accounts.iter().any(|a| a == &r.account) {
            return Err(ControlError::Invalid(format!(
                "account: `{}` is not a known account; known accounts: {}",
                r.account,
                self.config.accounts.join(", ")
            )));
        }
        let Some((_, network)) = self.config.network(&r.network) else {
            let known: Vec<&str> = self.config.networks.iter().map(|n| n.name.as_str()).collect();
            return Err(ControlError::Invalid(format!(
                "network: `{}` is not a configured network; configured: {}",
                r.network,
                known.join(", ")
            )));
        };
        // A service the account cannot see does not exist for it.
        let not_found = || {
            ControlError::NotFound(format!("service: no service `{}` is visible to account `{}`", r.service, r.account))
        };
        let service = self.find_service(&r.service).map_err(|_| not_found())?.clone();
        let record = self.state.services.get(&service.name).cloned().unwrap_or_default();
        if record.deleted || record.alias != r.service {
            return Err(not_found());
        }
        let visible = match self.hooks.as_mut().map(|h| h.visible(&r.account, &service.name, &service.provider)) {
            Some(Visibility::Visible) => true,
            Some(Visibility::Hidden) => false,
            Some(Visibility::Abstain) | None => self.config.is_visible(&service, &r.account),
        };
        if !visible {
            return Err(not_found());
        }
        let network = network.clone();
        let service = &service;
        let name = match r.name {
            Some(n) => {
                if !valid_name(&n) {
                    return Err(ControlError::Invalid(format!(
                        "name: `{n}` is not allowed; use 1 to 63 of a-z, 0-9 and '-', not starting with '-'"
                    )));
                }
                if self.state.endpoints.contains_key(&n) {
                    return Err(ControlError::Conflict(format!("name: an endpoint `{n}` already exists")));
                }
                n
            }
            None => loop {
                let n = format!("{}-{:08x}", service.name, random_u32());
                if !self.state.endpoints.contains_key(&n) {
                    break n;
                }
            },
        };
        if !network.contains(r.address) || r.address == network.address {
            return Err(ControlError::Invalid(format!(
                "address: {} is not usable in network `{}` ({}/{}): it must be inside the prefix and not the gateway's address",
                r.address, network.name, network.address, network.prefix_len
            )));
        }
        if let Some(other) = self.state.endpoints.values().find(|e| e.network == r.network && e.address == r.address) {
            return Err(ControlError::Conflict(format!(
                "address: {} is already endpoint `{}` in network `{}`",
                r.address, other.name, r.network
            )));
        }
        for s in &self.config.services {
            let rec = self.state.services.get(&s.name).cloned().unwrap_or_default();
            if s.network == r.network && current_nat_ips(&s.nat_ips, &rec).contains(&r.address) {
                return Err(ControlError::Conflict(format!(
                    "address: {} is a NAT IP of service `{}` in network `{}`",
                    r.address, s.name, r.network
                )));
            }
        }
        let mut ports = r.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != r.ports.len() || ports.contains(&0) || ports.len() > 64 {
            return Err(ControlError::Invalid("ports: give at most 64 distinct ports, each 1 to 65535".into()));
        }
        if r.message.len() > 1024 {
            return Err(ControlError::Invalid("message: at most 1024 bytes".into()));
        }
        let decision = self.hooks.as_mut().map(|h| {
            h.approval(&ApprovalRequest {
                account: &r.account,
                endpoint: &name,
                network: &r.network,
                address: r.address,
                service: &service.name,
                provider: &service.provider,
                message: &r.message,
            })
        });
        let (state, reason) = match decision {
            Some(Approval::Approve) => (EndpointState::Approved, String::new()),
            Some(Approval::Pending) => (EndpointState::Pending, String::new()),
            Some(Approval::Reject(reason)) => (EndpointState::Rejected, reason),
            Some(Approval::Abstain) | None if self.config.is_auto_approved(service, &r.account) => {
                (EndpointState::Approved, String::new())
            }
            Some(Approval::Abstain) | None => (EndpointState::Pending, String::new()),
        };
        Ok(EndpointRecord {
            name,
            account: r.account,
            network: r.network,
            address: r.address,
            ports: r.ports,
            service: service.name.clone(),
            state,
            link_id: self.new_link_id(),
            request_message: r.message,
            reason,
            origin: Origin::Api,
            created_at: now_secs(),
        })
    }

    fn transition(
        &mut self,
        actor: &Actor,
        action: &str,
        name: &str,
        to: EndpointState,
        reason: String,
    ) -> Result<EndpointView> {
        let check = || -> Result<()> {
            let e = self
                .state
                .endpoints
                .get(name)
                .ok_or_else(|| ControlError::NotFound(format!("no endpoint `{name}`")))?;
            match (e.state, to) {
                (EndpointState::Rejected, EndpointState::Approved) => Err(ControlError::Conflict(format!(
                    "endpoint `{name}` was rejected and cannot be approved again; the consumer must delete it and ask anew"
                ))),
                (EndpointState::Disconnected, _) => Err(ControlError::Conflict(format!(
                    "endpoint `{name}` is disconnected (its service was deleted); delete it"
                ))),
                _ => Ok(()),
            }
        };
        if let Err(e) = check() {
            self.audit_refusal(actor, action, name, &e);
            return Err(e);
        }
        if self.state.endpoints.get(name).is_some_and(|e| e.state == to && e.reason == reason) {
            return self.endpoint(name);
        }
        self.commit(actor, action, name, Mutation::SetEndpointState { name: name.into(), state: to, reason })?;
        self.publish()?;
        self.endpoint(name)
    }

    /// The provider approves a pending endpoint.
    pub fn approve(&mut self, actor: &Actor, name: &str) -> Result<EndpointView> {
        self.transition(actor, "approve_endpoint", name, EndpointState::Approved, String::new())
    }

    /// The provider rejects an endpoint (pending or approved) with a reason.
    pub fn reject(&mut self, actor: &Actor, name: &str, reason: &str) -> Result<EndpointView> {
        if reason.len() > 1024 {
            return Err(ControlError::Invalid("reason: at most 1024 bytes".into()));
        }
        self.transition(actor, "reject_endpoint", name, EndpointState::Rejected, reason.to_string())
    }

    /// Deletes an endpoint; its flows are reset.
    pub fn delete_endpoint(&mut self, actor: &Actor, name: &str) -> Result<()> {
        if !self.state.endpoints.contains_key(name) {
            let e = ControlError::NotFound(format!("no endpoint `{name}`"));
            self.audit_refusal(actor, "delete_endpoint", name, &e);
            return Err(e);
        }
        self.commit(actor, "delete_endpoint", name, Mutation::DeleteEndpoint { name: name.into() })?;
        self.publish()
    }

    /// Deletes a service; its endpoints become disconnected.
    pub fn delete_service(&mut self, actor: &Actor, name: &str) -> Result<()> {
        let service = match self.find_service(name) {
            Ok(s) if !self.state.services.get(&s.name).is_some_and(|r| r.deleted) => s.name.clone(),
            Ok(_) | Err(_) => {
                let e = ControlError::NotFound(format!("no service `{name}`"));
                self.audit_refusal(actor, "delete_service", name, &e);
                return Err(e);
            }
        };
        self.commit(actor, "delete_service", &service, Mutation::DeleteService { service: service.clone() })?;
        self.publish()
    }

    /// Adds a NAT IP to a running service.
    pub fn add_nat_ip(&mut self, actor: &Actor, service: &str, ip: Ipv4Addr) -> Result<ServiceView> {
        let target = format!("{service}/{ip}");
        let checked = (|| {
            let s = self.find_live_service(service)?;
            let (_, network) =
                self.config.network(&s.network).ok_or_else(|| ControlError::NotFound("network".into()))?;
            if !network.contains(ip) || ip == network.address {
                return Err(ControlError::Invalid(format!(
                    "ip: {ip} is outside network `{}` ({}/{}) or is the gateway's address",
                    network.name, network.address, network.prefix_len
                )));
            }
            for other in &self.config.services {
                let rec = self.state.services.get(&other.name).cloned().unwrap_or_default();
                if other.network == s.network && current_nat_ips(&other.nat_ips, &rec).contains(&ip) {
                    return Err(ControlError::Conflict(format!(
                        "ip: {ip} is already a NAT IP of service `{}`",
                        other.name
                    )));
                }
            }
            if let Some(e) = self.state.endpoints.values().find(|e| e.network == s.network && e.address == ip) {
                return Err(ControlError::Conflict(format!("ip: {ip} is endpoint `{}`", e.name)));
            }
            Ok(s.name.clone())
        })();
        let name = match checked {
            Ok(n) => n,
            Err(e) => {
                self.audit_refusal(actor, "add_nat_ip", &target, &e);
                return Err(e);
            }
        };
        self.commit(actor, "add_nat_ip", &target, Mutation::AddNatIp { service: name.clone(), ip })?;
        self.publish()?;
        self.service(&name)
    }

    /// Removes a NAT IP, only once no flow holds it (`flows_holding` comes from the workers).
    pub fn remove_nat_ip(
        &mut self,
        actor: &Actor,
        service: &str,
        ip: Ipv4Addr,
        flows_holding: u64,
    ) -> Result<ServiceView> {
        let target = format!("{service}/{ip}");
        let checked = (|| {
            let s = self.find_live_service(service)?;
            let rec = self.state.services.get(&s.name).cloned().unwrap_or_default();
            let current = current_nat_ips(&s.nat_ips, &rec);
            if !current.contains(&ip) {
                return Err(ControlError::NotFound(format!("ip: {ip} is not a NAT IP of service `{}`", s.name)));
            }
            if current.len() == 1 {
                return Err(ControlError::Conflict(format!("ip: {ip} is the last NAT IP of service `{}`", s.name)));
            }
            if flows_holding > 0 {
                return Err(ControlError::Conflict(format!(
                    "ip: {ip} is still held by {flows_holding} flows; remove it once they have drained"
                )));
            }
            Ok(s.name.clone())
        })();
        let name = match checked {
            Ok(n) => n,
            Err(e) => {
                self.audit_refusal(actor, "remove_nat_ip", &target, &e);
                return Err(e);
            }
        };
        self.commit(actor, "remove_nat_ip", &target, Mutation::RemoveNatIp { service: name.clone(), ip })?;
        self.publish()?;
        self.service(&name)
    }
}

/// A service's NAT IPs now: configured, minus removed, plus added.
fn current_nat_ips(configured: &[Ipv4Addr], record: &ServiceRecord) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = configured.iter().copied().filter(|ip| !record.removed_nat_ips.contains(ip)).collect();
    for ip in &record.added_nat_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    ips
}
