//! The sandboxed WebAssembly policy plugin host.
//!
//! Plugins are WebAssembly components implementing the contract in `plugins/wit/policy.wit`.
//! They import nothing (no WASI): an empty component linker (plus the types-only `types`
//! interface) is all they get.
//!
//! - One [`wasmtime::Engine`] per [`PolicyHost`], with the pooling allocator (a bounded number of
//!   instances, each linear memory capped) and epoch interruption; an epoch-ticker thread
//!   increments the epoch every [`Limits::epoch_tick`].
//! - Every plugin file is compiled once and pre-instantiated ([`wasmtime::component::InstancePre`]).
//! - Every consumer of the chain (one per datapath worker, one for the control plane) owns one
//!   `Store` + instance per plugin, created once per chain version by the loader (never per
//!   connection, never on the datapath) and handed over through a mailbox; the worker swaps it in
//!   inside [`datapath::Policy::between_bursts`], so every decision is made by exactly one version.
//! - Every call runs under an epoch deadline ([`Limits::deadline`]) and the memory cap; what a
//!   plugin returns is validated (TLV types, lengths, total). A trap, timeout, memory-cap hit or
//!   invalid answer fails **closed** for that hook (connect → reset, visibility → hidden,
//!   approval → pending), is counted per plugin, and the trapped instance is replaced by a fresh
//!   one from its `InstancePre` (between bursts, or at the latest at its next call). After
//!   [`Limits::failure_threshold`] consecutive failures a plugin is disabled with exponential
//!   backoff; a disabled plugin fails its hooks closed.
//! - A [`ChainHandle`] (and the polling [`Watcher`] around it) loads every `*.wasm` of a directory
//!   in file-name order. A new or changed file is validated and compiled off the datapath; a file
//!   that fails validation is rejected with one log line and **the last good version of that file
//!   name keeps serving** (a broken file never replaces a working one); a removed file leaves the
//!   chain.

#![deny(unsafe_code)]

mod chain;
mod host;
mod run;
mod stats;

pub use chain::{Chain, ChainHandle, ReloadReport, Watcher};
pub use host::{HostError, Limits, Plugin, PluginError, PolicyHost};
pub use run::{EndpointHooks, WasmPolicy};
pub use stats::{FailureKind, PluginStats};

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// The generated bindings for the contract (private: the public API speaks datapath/control types).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../plugins/wit",
        world: "plugin",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// The component-model names of the interfaces a plugin may export.
pub(crate) mod names {
    pub const TYPES: &str = "overlink:policy/types@0.1.0";
    pub const LIFECYCLE: &str = "overlink:policy/lifecycle@0.1.0";
    pub const VISIBILITY: &str = "overlink:policy/visibility@0.1.0";
    pub const APPROVAL: &str = "overlink:policy/approval@0.1.0";
    pub const CONNECT: &str = "overlink:policy/connect@0.1.0";
    pub const EXPORTS: [&str; 5] = [TYPES, LIFECYCLE, VISIBILITY, APPROVAL, CONNECT];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handles_cross_threads() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<WasmPolicy>();
        send::<EndpointHooks>();
        send_sync::<ChainHandle>();
        send_sync::<PolicyHost>();
        send_sync::<Chain>();
    }

    #[test]
    fn the_engine_builds_with_the_default_limits() {
        let host = PolicyHost::new(Limits::default()).expect("engine");
        assert!(host.stats().is_empty());
        let err = host.compile("x.wasm", b"\0asm\x01\0\0\0", "{}").expect_err("a core module is not a plugin");
        assert!(err.reason.contains("not a valid component"), "{err}");
    }
}
