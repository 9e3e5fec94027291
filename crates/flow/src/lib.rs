//! Per-worker flow state for the overlink datapath: flow keys, the fixed-capacity flow table,
//! the NAT port allocator, TCP connection tracking, timeouts and an injectable clock.
//!
//! Everything here is owned by one worker: no locks, and no allocation after construction on
//! the packet path (lookup, insert, remove, sweep, allocate, release). Nothing panics on input.
#![forbid(unsafe_code)]

pub mod clock;
pub mod key;
pub mod ports;
pub mod table;
pub mod tcp;
pub mod timeouts;

pub use clock::{Clock, Instant, ManualClock, SystemClock};
pub use key::{Direction, FlowKey, NetworkId, Protocol};
pub use ports::{owner_of_port, slice_of, PortAllocator};
pub use table::{Entry, EntryState, FlowId, FlowTable, InsertError, SweepAction};
pub use tcp::{TcpState, TcpTracker};
pub use timeouts::Timeouts;
