//! Endpoint policy hooks: visibility and approval decided by something other than the
//! configuration's lists (the WebAssembly plugin chain, in the `policy` crate).
//!
//! An `Abstain` answer leaves the decision to the configuration: the service's `visibility` and
//! `auto_approval` lists. With no hook installed the lists decide everything.

use std::net::Ipv4Addr;

/// May an account see a service?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// It may.
    Visible,
    /// It may not: creating an endpoint fails as "not found".
    Hidden,
    /// The configuration's visibility list decides.
    Abstain,
}

/// What happens to a new endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approval {
    /// Approved at once.
    Approve,
    /// Pending until the provider decides.
    Pending,
    /// Rejected, with a reason for the consumer.
    Reject(String),
    /// The configuration's auto-approval list decides.
    Abstain,
}

/// A new endpoint asking to connect.
#[derive(Clone, Copy, Debug)]
pub struct ApprovalRequest<'a> {
    /// The consumer account.
    pub account: &'a str,
    /// The endpoint's name.
    pub endpoint: &'a str,
    /// The consumer network.
    pub network: &'a str,
    /// The endpoint address.
    pub address: Ipv4Addr,
    /// The service's name.
    pub service: &'a str,
    /// The service's provider account.
    pub provider: &'a str,
    /// The consumer's request message.
    pub message: &'a str,
}

/// Visibility and approval decided outside the configuration file.
pub trait EndpointPolicy: Send + std::fmt::Debug {
    /// May `account` see `service` (owned by `provider`)?
    fn visible(&mut self, account: &str, service: &str, provider: &str) -> Visibility;
    /// What happens to a new endpoint.
    fn approval(&mut self, request: &ApprovalRequest<'_>) -> Approval;
}
