//! Running the chain: per-consumer instance sets, the hooks, failing closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use control::hooks::{Approval, ApprovalRequest, EndpointPolicy, Visibility};
use datapath::{ConnectRequest, ConnectVerdict, Policy, SharedModel, Tlvs};

use crate::bindings::exports::overlink::policy::{approval, connect, visibility};
use crate::bindings::overlink::policy::types;
use crate::host::{classify, HostInner, Live, Plugin};
use crate::stats::{nanos, FailureKind};

/// One plugin's instance inside a consumer's set.
pub(crate) struct Slot {
    pub(crate) plugin: Arc<Plugin>,
    /// `None` when the instance trapped (or could not be created): replaced before its next call.
    live: Option<Live>,
}

impl Slot {
    /// Creates the instance; a failure leaves the slot empty (its hooks fail closed).
    pub(crate) fn new(plugin: Arc<Plugin>) -> Slot {
        let mut slot = Slot { plugin, live: None };
        slot.repair();
        slot
    }

    /// Creates a fresh instance if the slot has none (and the plugin is not disabled).
    fn repair(&mut self) -> bool {
        if self.live.is_some() {
            return true;
        }
        match self.plugin.instantiate() {
            Ok(live) => {
                self.live = Some(live);
                true
            }
            Err((kind, reason)) => {
                let host = &self.plugin.host;
                self.plugin.counters.failure(host, kind, || reason.clone());
                false
            }
        }
    }
}

/// The instances of one chain version for one consumer.
pub(crate) struct InstanceSet {
    pub(crate) version: u64,
    pub(crate) slots: Vec<Slot>,
}

impl InstanceSet {
    pub(crate) fn new(version: u64, plugins: &[Arc<Plugin>]) -> InstanceSet {
        InstanceSet { version, slots: plugins.iter().map(|p| Slot::new(p.clone())).collect() }
    }
}

/// Where the loader leaves a consumer's next instance set.
#[derive(Default)]
pub(crate) struct Mailbox {
    /// The version of the set waiting in `pending` (0: none yet).
    pub(crate) published: AtomicU64,
    pub(crate) pending: Mutex<Option<InstanceSet>>,
    /// Sets swapped out, dropped by the loader (off the datapath).
    pub(crate) retired: Mutex<Vec<InstanceSet>>,
}

/// What the hooks share: the current set, the mailbox, and the host.
struct Runner {
    host: Arc<HostInner>,
    set: InstanceSet,
    mailbox: Option<Arc<Mailbox>>,
    model: Option<SharedModel>,
    clock: Option<Box<dyn flow::Clock>>,
}

impl Runner {
    fn new(host: Arc<HostInner>, set: InstanceSet, mailbox: Option<Arc<Mailbox>>) -> Runner {
        let mut r = Runner { host, set, mailbox, model: None, clock: None };
        r.refresh();
        r
    }

    /// Swaps in a newer instance set if the loader left one; replaces trapped instances.
    fn refresh(&mut self) {
        if let Some(mailbox) = &self.mailbox {
            if mailbox.published.load(Ordering::Acquire) != self.set.version {
                let next = mailbox.pending.try_lock().ok().and_then(|mut p| p.take());
                if let Some(next) = next {
                    let old = std::mem::replace(&mut self.set, next);
                    match mailbox.retired.try_lock() {
                        Ok(mut retired) => retired.push(old),
                        Err(_) => drop(old),
                    }
                }
            }
        }
        for slot in &mut self.set.slots {
            if slot.live.is_none() && slot.plugin.counters.enabled(&self.host) {
                slot.repair();
            }
        }
    }

    /// Prepares a call into `slot`: `None` means the hook fails closed (already counted).
    fn enter<'s>(host: &HostInner, slot: &'s mut Slot) -> Option<&'s mut Live> {
        if !slot.plugin.counters.enabled(host) {
            slot.plugin.counters.refused();
            return None;
        }
        if !slot.repair() {
            return None;
        }
        slot.plugin.counters.calls.fetch_add(1, Ordering::Relaxed);
        let live = slot.live.as_mut()?;
        live.store.set_epoch_deadline(host.deadline_ticks);
        live.store.data_mut().limiter.refused = false;
        live.store.data_mut().clock.overtime = None;
        Some(live)
    }

    /// Accounts for a finished call; on error the instance is dropped (a trapped component
    /// instance cannot be entered again) and the failure counted.
    fn finish<R>(host: &HostInner, slot: &mut Slot, started: Instant, result: wasmtime::Result<R>) -> Option<R> {
        let counters = &slot.plugin.counters;
        counters.call_nanos.fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        match result {
            Ok(r) => Some(r),
            Err(e) => {
                let kind = slot.live.as_ref().map_or(FailureKind::Trap, |l| classify(&e, &l.store));
                slot.live = None;
                counters.failure(host, kind, || format!("{e:#}"));
                None
            }
        }
    }

    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        if self.set.slots.is_empty() {
            return ConnectVerdict::Allow;
        }
        let guard = self.model.as_ref().map(|m| m.load());
        let network_id;
        let network: &str = match guard.as_ref().and_then(|m| m.network(request.endpoint.network)) {
            Some(n) => &n.name,
            None => {
                network_id = request.endpoint.network.0.to_string();
                &network_id
            }
        };
        let addr = |a: std::net::SocketAddrV4| {
            let [a0, a1, a2, a3] = a.ip().octets();
            types::SocketAddr { ip: (a0, a1, a2, a3), port: a.port() }
        };
        let wreq = connect::ConnectRequest {
            svc: types::Service { name: &request.service.name, provider: &request.service.provider },
            endpoint: types::Endpoint {
                name: &request.endpoint.name,
                account: &request.endpoint.account,
                network,
                link_id: request.endpoint.link_id,
            },
            source: addr(request.source),
            destination: addr(request.destination),
            protocol: match request.protocol {
                flow::Protocol::Tcp => types::Protocol::Tcp,
                flow::Protocol::Udp => types::Protocol::Udp,
                flow::Protocol::Icmp => types::Protocol::Icmp,
            },
            time_ms: match &self.clock {
                Some(clock) => clock.now().as_nanos() / 1_000_000,
                None => self.host.now_nanos() / 1_000_000,
            },
        };
        let start = tlvs.len();
        let host = &*self.host;
        for slot in &mut self.set.slots {
            if !slot.plugin.has_connect() {
                continue;
            }
            let Some(live) = Self::enter(host, slot) else {
                tlvs.truncate(start);
                return ConnectVerdict::Reset;
            };
            let Some(guest) = live.connect.as_ref() else { continue };
            let t0 = Instant::now();
            let result = guest.call_check(&mut live.store, wreq.clone());
            let Some(verdict) = Self::finish(host, slot, t0, result) else {
                tlvs.truncate(start);
                return ConnectVerdict::Reset;
            };
            match verdict.action {
                connect::Action::Allow => {
                    let mine = tlvs.len();
                    if let Err(reason) = push_tlvs(tlvs, &verdict.tlvs, host.limits.max_tlv_bytes) {
                        tlvs.truncate(mine);
                        slot.plugin.counters.failure(host, FailureKind::Violation, || reason);
                        tlvs.truncate(start);
                        return ConnectVerdict::Reset;
                    }
                    slot.plugin.counters.success();
                }
                connect::Action::Deny => {
                    slot.plugin.counters.success();
                    tlvs.truncate(start);
                    return ConnectVerdict::Deny;
                }
                connect::Action::Reset => {
                    slot.plugin.counters.success();
                    tlvs.truncate(start);
                    return ConnectVerdict::Reset;
                }
            }
        }
        ConnectVerdict::Allow
    }

    fn visible(&mut self, account: &str, service: &str, provider: &str) -> Visibility {
        self.refresh();
        let host = &*self.host;
        let svc = types::Service { name: service, provider };
        for slot in &mut self.set.slots {
            if !slot.plugin.has_visibility() {
                continue;
            }
            let Some(live) = Self::enter(host, slot) else { return Visibility::Hidden };
            let Some(guest) = live.visibility.as_ref() else { continue };
            let t0 = Instant::now();
            let result = guest.call_visible(&mut live.store, account, svc.clone());
            let Some(verdict) = Self::finish(host, slot, t0, result) else { return Visibility::Hidden };
            slot.plugin.counters.success();
            match verdict {
                visibility::VisibilityVerdict::Visible => return Visibility::Visible,
                visibility::VisibilityVerdict::Hidden => return Visibility::Hidden,
                visibility::VisibilityVerdict::Abstain => {}
            }
        }
        Visibility::Abstain
    }

    fn approval(&mut self, request: &ApprovalRequest<'_>) -> Approval {
        self.refresh();
        let host = &*self.host;
        let [a0, a1, a2, a3] = request.address.octets();
        let wreq = approval::ApprovalRequest {
            account: request.account,
            endpoint: request.endpoint,
            network: request.network,
            address: (a0, a1, a2, a3),
            svc: types::Service { name: request.service, provider: request.provider },
            message: request.message,
        };
        for slot in &mut self.set.slots {
            if !slot.plugin.has_approval() {
                continue;
            }
            let Some(live) = Self::enter(host, slot) else { return Approval::Pending };
            let Some(guest) = live.approval.as_ref() else { continue };
            let t0 = Instant::now();
            let result = guest.call_decide(&mut live.store, wreq.clone());
            let Some(verdict) = Self::finish(host, slot, t0, result) else { return Approval::Pending };
            match verdict {
                approval::ApprovalVerdict::Approve => {
                    slot.plugin.counters.success();
                    return Approval::Approve;
                }
                approval::ApprovalVerdict::Pending => {
                    slot.plugin.counters.success();
                    return Approval::Pending;
                }
                approval::ApprovalVerdict::Reject(reason) => {
                    if reason.len() > host.limits.max_reason_bytes {
                        let max = host.limits.max_reason_bytes;
                        slot.plugin.counters.failure(host, FailureKind::Violation, || {
                            format!("a rejection reason of {} bytes (at most {max})", reason.len())
                        });
                        return Approval::Pending;
                    }
                    slot.plugin.counters.success();
                    return Approval::Reject(reason);
                }
                approval::ApprovalVerdict::Abstain => slot.plugin.counters.success(),
            }
        }
        Approval::Abstain
    }
}

/// Validates and appends one plugin's TLVs.
fn push_tlvs(tlvs: &mut Tlvs, list: &[types::Tlv], max: usize) -> Result<(), String> {
    let mut total = 0usize;
    for t in list {
        total = total.saturating_add(3).saturating_add(t.value.len());
        if total > max {
            return Err(format!("returned more than {max} TLV bytes"));
        }
        tlvs.push(t.kind, &t.value).map_err(|e| format!("returned a TLV the datapath refuses: {e}"))?;
    }
    Ok(())
}

/// The plugin chain as one datapath worker's [`Policy`]: its own instance of every plugin.
pub struct WasmPolicy {
    runner: Runner,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy").field("version", &self.runner.set.version).finish_non_exhaustive()
    }
}

impl WasmPolicy {
    pub(crate) fn new(host: Arc<HostInner>, set: InstanceSet, mailbox: Option<Arc<Mailbox>>) -> WasmPolicy {
        WasmPolicy { runner: Runner::new(host, set, mailbox) }
    }

    /// Resolves endpoint network ids to names (the name plugins see) through the model the
    /// control plane publishes; without it plugins see the network id in decimal.
    pub fn with_model(mut self, model: SharedModel) -> Self {
        self.runner.model = Some(model);
        self
    }

    /// The clock whose milliseconds plugins see as `time-ms` (the worker's clock); without it,
    /// the host's monotonic clock.
    pub fn with_clock(mut self, clock: impl flow::Clock + 'static) -> Self {
        self.runner.clock = Some(Box::new(clock));
        self
    }

    /// The chain version this worker decides with.
    pub fn version(&self) -> u64 {
        self.runner.set.version
    }

    /// The plugin file names of the chain this worker decides with, in order.
    pub fn plugins(&self) -> Vec<String> {
        self.runner.set.slots.iter().map(|s| s.plugin.name().to_owned()).collect()
    }
}

impl Policy for WasmPolicy {
    fn connect(&mut self, request: &ConnectRequest<'_>, tlvs: &mut Tlvs) -> ConnectVerdict {
        self.runner.connect(request, tlvs)
    }

    fn between_bursts(&mut self) {
        self.runner.refresh();
    }
}

/// The plugin chain as the control plane's [`EndpointPolicy`] (visibility and approval).
pub struct EndpointHooks {
    runner: Runner,
}

impl std::fmt::Debug for EndpointHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointHooks").field("version", &self.runner.set.version).finish_non_exhaustive()
    }
}

impl EndpointHooks {
    pub(crate) fn new(host: Arc<HostInner>, set: InstanceSet, mailbox: Option<Arc<Mailbox>>) -> EndpointHooks {
        EndpointHooks { runner: Runner::new(host, set, mailbox) }
    }

    /// The chain version in use.
    pub fn version(&self) -> u64 {
        self.runner.set.version
    }
}

impl EndpointPolicy for EndpointHooks {
    fn visible(&mut self, account: &str, service: &str, provider: &str) -> Visibility {
        self.runner.visible(account, service, provider)
    }

    fn approval(&mut self, request: &ApprovalRequest<'_>) -> Approval {
        self.runner.approval(request)
    }
}
