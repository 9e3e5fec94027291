//! The worker: rx burst → classify → fast path | slow path → tx burst.
//!
//! A worker owns its I/O queues, flow table, NAT port slice, neighbour table, counters and policy
//! instance; nothing on the packet path is shared or locked. The control plane publishes a
//! [`Model`] snapshot that the worker re-reads once per burst. Packets that belong to a flow owned
//! by another worker (the owner is computable from the NAT port) are handed to it over a bounded
//! lock-free queue ([`Mailboxes`]).
//!
//! See `ARCHITECTURE.md` for the life of a packet through [`Worker::poll`].
#![forbid(unsafe_code)]

pub mod counters;
mod craft;
pub mod model;
pub mod neighbor;
pub mod policy;
pub mod proxy;
pub mod telemetry;
mod worker;

pub use counters::{Counters, DropReason, Event, SharedCounters};
pub use model::{
    Address, ConnectionState, EchoMode, Endpoint, EndpointId, Model, ModelError, Network, Service, ServiceId,
    DEFAULT_MTU,
};
pub use policy::{AllowApproved, ConnectRequest, ConnectVerdict, Policy, TlvError, Tlvs, MAX_TLV_BYTES};
pub use proxy::{Placement, ProxyProtocol};
pub use telemetry::{FlowSample, LinkStats, Telemetry, WorkerReport};
pub use worker::{FlowState, Mailboxes, Message, Rewrite, SharedModel, Worker, WorkerConfig};
