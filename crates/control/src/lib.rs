//! The control plane: runtime state with Azure Private Link's semantics, persisted in a
//! crash-safe store, published to the workers as model snapshots, and served over the admin API.
//!
//! - [`state`]: the runtime state and the mutations that change it;
//! - [`control`]: the workflow (aliases, visibility, approval, link ids, NAT IPs), the audit and
//!   persistence order, and the compilation of configuration + state into a `datapath::Model`;
//! - [`api`]: the HTTP routes, authorisation and `/metrics`.
#![forbid(unsafe_code)]

pub mod api;
pub mod control;
pub mod hooks;
pub mod metrics;
pub mod state;

pub use api::{Api, Tokens, ROUTES};
pub use control::{Actor, Control, ControlError, CreateEndpoint, EndpointView, ServiceView};
pub use hooks::{Approval, ApprovalRequest, EndpointPolicy, Visibility};
pub use state::{EndpointRecord, EndpointState, Mutation, Origin, State};
