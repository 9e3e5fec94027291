//! The policy hook the slow path asks about every new flow.
//!
//! The datapath only knows this trait. The native default allows every flow of an approved
//! endpoint (approval itself is checked before the hook); the sandboxed WebAssembly plugin chain
//! implements the same trait in the `policy` crate.

use std::net::SocketAddrV4;

use flow::Protocol;

use crate::model::{Endpoint, Service};

/// Everything a policy may look at when a new flow starts.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// The service the endpoint maps to.
    pub service: &'a Service,
    /// The endpoint, with its account and link id.
    pub endpoint: &'a Endpoint,
    /// TCP, UDP or ICMP (echo).
    pub protocol: Protocol,
    /// The consumer's source `ip:port` (for ICMP echo, the port is the identifier).
    pub source: SocketAddrV4,
    /// The endpoint `ip:port` the consumer addressed.
    pub destination: SocketAddrV4,
}

/// The decision about a new flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConnectVerdict {
    /// Create the flow.
    Allow,
    /// Drop the packet silently.
    Deny,
    /// Refuse actively: RST for TCP, ICMP administratively prohibited otherwise.
    Reset,
}

/// A per-worker policy: called on the slow path only, once per new flow.
pub trait Policy {
    /// Decides about a new flow.
    fn connect(&mut self, request: &ConnectRequest<'_>) -> ConnectVerdict;
}

/// The native default: every flow of an approved endpoint is allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowApproved;

impl Policy for AllowApproved {
    fn connect(&mut self, _request: &ConnectRequest<'_>) -> ConnectVerdict {
        ConnectVerdict::Allow
    }
}

impl<F> Policy for F
where
    F: FnMut(&ConnectRequest<'_>) -> ConnectVerdict,
{
    fn connect(&mut self, request: &ConnectRequest<'_>) -> ConnectVerdict {
        self(request)
    }
}
