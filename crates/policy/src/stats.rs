//! Per-plugin counters, the failure kinds and the disable-with-backoff state machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::host::HostInner;

/// Why a plugin call failed (every kind fails closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...), or the
    /// instance could not be (re-)created.
    Trap,
    /// The call ran past its epoch deadline.
    Timeout,
    /// The guest asked for more memory (or table space) than the cap, then failed.
    Memory,
    /// The guest returned something invalid (a reserved or oversized TLV, a bad string, ...).
    Violation,
    /// The plugin is disabled (backoff after repeated failures): its hooks fail closed.
    Disabled,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory cap",
            FailureKind::Violation => "contract violation",
            FailureKind::Disabled => "disabled",
        })
    }
}

/// A snapshot of one plugin's counters (per file name, across versions and consumers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// The plugin's file name.
    pub name: String,
    /// Calls made into the guest (hooks and `init`).
    pub calls: u64,
    /// Failed calls by kind.
    pub traps: u64,
    /// Calls stopped at the deadline.
    pub timeouts: u64,
    /// Calls that failed after the memory cap refused a growth.
    pub memory: u64,
    /// Invalid answers.
    pub violations: u64,
    /// Hook calls refused (failed closed) because the plugin was disabled.
    pub disabled_calls: u64,
    /// How many times the plugin was disabled.
    pub disabled_times: u64,
    /// Disabled right now.
    pub disabled: bool,
    /// Consecutive failures so far.
    pub consecutive_failures: u64,
    /// Instances created (chain versions × consumers, plus replacements after traps).
    pub instantiations: u64,
    /// Total time spent in guest calls, nanoseconds.
    pub call_nanos: u64,
    /// The last failure, for operators.
    pub last_failure: Option<String>,
}

impl PluginStats {
    /// Every failure (trap, timeout, memory, violation; not the disabled refusals).
    pub fn failures(&self) -> u64 {
        self.traps + self.timeouts + self.memory + self.violations
    }
}

#[derive(Debug, Default)]
struct DisableState {
    until_nanos: u64,
    level: u32,
    last_failure: Option<String>,
}

/// Shared counters of one plugin file name.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) name: String,
    pub(crate) calls: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory: AtomicU64,
    violations: AtomicU64,
    disabled_calls: AtomicU64,
    disabled_times: AtomicU64,
    pub(crate) instantiations: AtomicU64,
    pub(crate) call_nanos: AtomicU64,
    consecutive: AtomicU64,
    disabled: AtomicBool,
    state: Mutex<DisableState>,
}

impl Counters {
    pub(crate) fn new(name: &str) -> Self {
        Counters { name: name.to_owned(), ..Default::default() }
    }

    /// True when the plugin may be called now; re-enables it (for a trial call) once its
    /// backoff has passed.
    pub(crate) fn enabled(&self, host: &HostInner) -> bool {
        if !self.disabled.load(Relaxed) {
            return true;
        }
        let Ok(state) = self.state.lock() else { return false };
        if !self.disabled.load(Relaxed) {
            return true;
        }
        if host.now_nanos() < state.until_nanos {
            return false;
        }
        // Half-open: one more failure disables it again, for twice as long.
        self.consecutive.store(host.limits.failure_threshold.saturating_sub(1).into(), Relaxed);
        self.disabled.store(false, Relaxed);
        drop(state);
        host.log(format!("plugin {}: re-enabled after its backoff", self.name));
        true
    }

    /// A refused call while disabled.
    pub(crate) fn refused(&self) {
        self.disabled_calls.fetch_add(1, Relaxed);
    }

    pub(crate) fn success(&self) {
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
            if let Ok(mut state) = self.state.lock() {
                state.level = 0;
            }
        }
    }

    pub(crate) fn failure(&self, host: &HostInner, kind: FailureKind, detail: impl FnOnce() -> String) {
        match kind {
            FailureKind::Trap => &self.traps,
            FailureKind::Timeout => &self.timeouts,
            FailureKind::Memory => &self.memory,
            FailureKind::Violation => &self.violations,
            FailureKind::Disabled => &self.disabled_calls,
        }
        .fetch_add(1, Relaxed);
        let n = self.consecutive.fetch_add(1, Relaxed) + 1;
        let Ok(mut state) = self.state.lock() else { return };
        state.last_failure = Some(format!("{kind}: {}", detail()));
        if n >= u64::from(host.limits.failure_threshold) && !self.disabled.load(Relaxed) {
            let limits = &host.limits;
            let factor = 1u32.checked_shl(state.level.min(30)).unwrap_or(u32::MAX);
            let backoff = limits.backoff_initial.saturating_mul(factor).min(limits.backoff_max);
            state.level = state.level.saturating_add(1);
            state.until_nanos = host.now_nanos().saturating_add(nanos(backoff));
            self.disabled_times.fetch_add(1, Relaxed);
            self.disabled.store(true, Relaxed);
            let last = state.last_failure.clone().unwrap_or_default();
            drop(state);
            host.log(format!(
                "plugin {}: disabled for {backoff:?} after {n} consecutive failures (last: {last}); its hooks fail closed",
                self.name
            ));
        }
    }

    /// A new version of the file was loaded: it starts with a clean record.
    pub(crate) fn reset_health(&self) {
        self.consecutive.store(0, Relaxed);
        if let Ok(mut state) = self.state.lock() {
            state.level = 0;
            state.until_nanos = 0;
        }
        self.disabled.store(false, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PluginStats {
        let last_failure = self.state.lock().ok().and_then(|s| s.last_failure.clone());
        PluginStats {
            name: self.name.clone(),
            calls: self.calls.load(Relaxed),
            traps: self.traps.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            memory: self.memory.load(Relaxed),
            violations: self.violations.load(Relaxed),
            disabled_calls: self.disabled_calls.load(Relaxed),
            disabled_times: self.disabled_times.load(Relaxed),
            disabled: self.disabled.load(Relaxed),
            consecutive_failures: self.consecutive.load(Relaxed),
            instantiations: self.instantiations.load(Relaxed),
            call_nanos: self.call_nanos.load(Relaxed),
            last_failure,
        }
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
