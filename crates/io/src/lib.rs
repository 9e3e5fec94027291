//! The burst I/O boundary between the datapath and the packet backends.
//!
//! A worker owns one `PacketIo` (one queue pair per port) and moves packets in bursts of up to
//! [`BURST`] into caller-owned fixed arrays: no `Vec` per burst, no syscall per packet. Buffers are
//! owned handles ([`PacketBuf`]) that return to their pool when dropped, the way a DPDK mbuf does,
//! so a dropped packet is simply a dropped value.
//!
//! This crate has the trait, the in-memory backend used by tests and engine benchmarks, and a
//! pcap writer. The AF_PACKET and DPDK backends live in their own crates.
#![forbid(unsafe_code)]

pub mod mem;
pub mod pcap;

use arrayvec::ArrayVec;

pub use mem::{MemBuf, MemIo, MemPool};
pub use pcap::PcapWriter;

/// The most packets one rx or tx call moves.
pub const BURST: usize = 32;

/// A caller-owned, fixed-capacity burst of packets.
pub type Burst<B> = ArrayVec<B, BURST>;

/// Index of a port (an interface or a DPDK port) within one backend.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Default)]
pub struct PortId(pub u16);

impl PortId {
    /// The port as an index into per-port arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// An owned packet buffer with headroom in front of the frame.
pub trait PacketBuf: Send + 'static {
    /// The frame.
    fn data(&self) -> &[u8];
    /// The frame, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Frame length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True when the frame is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes free before the frame.
    fn headroom(&self) -> usize;
    /// Bytes free after the frame.
    fn tailroom(&self) -> usize;
    /// Grows the frame by `n` bytes at the front; false (and unchanged) without enough headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; false (and unchanged) if the frame is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Sets the frame length (keeping the front); false (and unchanged) beyond the capacity.
    fn set_len(&mut self, len: usize) -> bool;
}

/// Per-port counters kept by a backend (what the device or ring saw, before the datapath).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames handed to the datapath.
    pub rx_packets: u64,
    /// Bytes handed to the datapath.
    pub rx_bytes: u64,
    /// Frames the backend dropped on receive (ring overrun, truncated, oversize).
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the backend could not send (ring or queue full).
    pub tx_dropped: u64,
}

/// A burst packet I/O backend: one queue pair on every port, owned by one worker.
pub trait PacketIo {
    /// The buffer type this backend hands out.
    type Buf: PacketBuf;

    /// Number of ports.
    fn ports(&self) -> usize;
    /// Receives up to the free space of `burst` from `port`, appending to it.
    fn rx_burst(&mut self, port: PortId, burst: &mut Burst<Self::Buf>);
    /// Sends every packet of `burst` on `port` and empties it; what the device cannot take is
    /// dropped and counted in [`PortStats::tx_dropped`].
    fn tx_burst(&mut self, port: PortId, burst: &mut Burst<Self::Buf>);
    /// An empty buffer for a packet the datapath originates (ARP, RST, ICMP), or `None` when the
    /// pool is exhausted.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// The backend's counters for `port`.
    fn stats(&self, port: PortId) -> PortStats;
}
