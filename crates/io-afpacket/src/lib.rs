//! The AF_PACKET backend of the burst I/O trait: mmap'd `TPACKET_V3` rings, no syscall per
//! packet.
//!
//! One [`AfPacketIo`] serves one worker. For every interface (port `i` is the `i`-th name given
//! to [`AfPacketIo::open`]) it owns one `AF_PACKET`/`SOCK_RAW` socket bound to that interface
//! with a `TPACKET_V3` rx ring (blocks the kernel retires after a timeout) and a `TPACKET_V3` tx
//! ring (fixed frames), both in one shared mapping. The workers' sockets of one interface join
//! one `PACKET_FANOUT_HASH` group, so each flow goes to one worker. Transmissions bypass the
//! qdisc (`PACKET_QDISC_BYPASS`) and are kicked once per burst; frames this host sends are not
//! received back (`PACKET_IGNORE_OUTGOING`, and a `PACKET_OUTGOING` check as a fallback).
//!
//! # What the kernel does to frames, and what this backend does about it
//!
//! * **VLAN tags** are stripped into the ring header (`TP_STATUS_VLAN_VALID`); they are put
//!   back in front of the EtherType, so the datapath sees the frame as it was on the wire.
//! * **`TP_STATUS_CSUMNOTREADY`** frames (a `CHECKSUM_PARTIAL` skb, e.g. from a local sender or
//!   a veth peer) carry only the pseudo-header sum; the full TCP/UDP checksum is computed
//!   before the datapath sees the frame. Frames whose checksum cannot be completed are dropped.
//! * **Truncated frames** (`tp_snaplen < tp_len`) are counted and dropped.
//! * **GRO/GSO super-frames** longer than the interface MTU plus an Ethernet header and one
//!   VLAN tag are counted and dropped, never forwarded. [`offload_warnings`] tells the operator
//!   at start-up which offloads produce them.
//!
//! Everything dropped is counted in [`PortStats::rx_dropped`] and in a specific
//! [`AfPacketStats`] counter.
//!
//! All `unsafe` of the backend is in this crate: the system-call wrappers in `sys` and the
//! ring accesses below, each with its reason.
#![deny(unsafe_op_in_unsafe_fn)]

mod fixup;
mod offload;
mod sys;

use std::cell::Cell;
use std::io as stdio;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use io::{Burst, MemBuf, MemPool, PacketBuf, PacketIo, PortId, PortStats};

pub use fixup::{complete_l4_checksum, CsumError};
pub use offload::offload_warnings;

/// Length of an Ethernet header.
const ETH_HLEN: usize = 14;
/// Length of one VLAN tag.
const VLAN_HLEN: usize = 4;
/// The largest frame one pooled buffer holds (its size less the headroom).
pub const MAX_BUF_FRAME: usize = io::mem::BUF_SIZE - io::mem::HEADROOM;

/// Sizes and options of one worker's rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per rx block; a multiple of the page size. Frames are packed into blocks.
    pub rx_block_size: u32,
    /// Number of rx blocks per socket.
    pub rx_blocks: u32,
    /// Milliseconds after which the kernel hands over a block that is not full (latency bound).
    pub rx_block_timeout_ms: u32,
    /// Tx frames per socket (rounded up to fill whole tx blocks).
    pub tx_frames: u32,
    /// Buffers in the worker's pool (shared by all its ports, rx and [`PacketIo::alloc`]).
    pub pool_buffers: usize,
    /// Put the interfaces in promiscuous mode (not needed when the gateway answers ARP for its
    /// endpoint and NAT addresses with its own MAC).
    pub promiscuous: bool,
    /// Base of the fanout group ids (the group of an interface is `base + ifindex`); `None`
    /// derives it from the process id, so that the workers of one process share groups.
    pub fanout_group_base: Option<u16>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            // 32 blocks of 128 KiB (4 MiB, as many frames as 4 blocks of 1 MiB): the kernel
            // retires a block after `rx_block_timeout_ms` however few frames it holds, so at low
            // rates the ring covers `rx_blocks` timeouts of a worker that is not scheduled; with
            // only 4 blocks that was 8 ms, and a busy machine lost frames at 2,000 packets/s.
            // 128 KiB still holds a 64 KiB super-frame whole, so it is dropped as oversize.
            // A frame waits at most one timeout for its block to be handed over, on every hop
            // through the gateway: 1 ms rather than 2 ms nearly doubled new TCP connections/s.
            rx_block_size: 1 << 17,
            rx_blocks: 32,
            rx_block_timeout_ms: 1,
            tx_frames: 1024,
            pool_buffers: 4096,
            promiscuous: false,
            fanout_group_base: None,
        }
    }
}

/// Counters specific to this backend, per port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames the kernel delivered cut short (`tp_snaplen < tp_len`); dropped.
    pub truncated: u64,
    /// Frames longer than MTU + Ethernet header + one VLAN tag (GRO/GSO/LRO super-frames); dropped.
    pub oversize: u64,
    /// Frames within the MTU but larger than a pool buffer (MTU above [`MAX_BUF_FRAME`]); dropped.
    pub buffer_too_small: u64,
    /// `TP_STATUS_CSUMNOTREADY` frames whose L4 checksum was completed.
    pub csum_completed: u64,
    /// `TP_STATUS_CSUMNOTREADY` frames whose checksum could not be completed; dropped.
    pub csum_failed: u64,
    /// Frames whose stripped VLAN tag was put back.
    pub vlan_restored: u64,
    /// Frames the kernel dropped because the rx ring was full (`tp_drops`).
    pub ring_overruns: u64,
    /// Frames seen with `PACKET_OUTGOING` (only without `PACKET_IGNORE_OUTGOING`); skipped.
    pub outgoing_ignored: u64,
    /// Times an rx burst stopped early because the pool was empty (frames stay in the ring).
    pub no_buffer: u64,
    /// Frames not sent because the tx ring was full (also in `tx_dropped`).
    pub tx_ring_full: u64,
    /// Frames not sent because they exceed the MTU (+ Ethernet header, + a tag if tagged) or
    /// are shorter than an Ethernet header (also in `tx_dropped`).
    pub tx_too_big: u64,
    /// Kicks (`sendto`) that failed; the frames stay queued for the next kick.
    pub tx_kick_errors: u64,
}

/// Why opening the backend failed. Every variant names the interface and carries the OS error.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// The interface name cannot be an interface name.
    #[error("invalid interface name {iface:?}: {reason}")]
    InvalidName {
        /// The name given.
        iface: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No interface of that name in this network namespace.
    #[error("no such interface {iface:?} in this network namespace ({source})")]
    NoSuchInterface {
        /// The name given.
        iface: String,
        /// The OS error.
        source: stdio::Error,
    },
    /// Not root and no `CAP_NET_RAW` (or `CAP_NET_ADMIN` for an option that needs it).
    #[error("{iface}: permission denied for {op}: AF_PACKET needs root or CAP_NET_RAW ({source})")]
    PermissionDenied {
        /// The interface.
        iface: String,
        /// The operation refused.
        op: &'static str,
        /// The OS error.
        source: stdio::Error,
    },
    /// The interface is not an Ethernet interface.
    #[error("{iface}: not an Ethernet interface (hardware type {hw_type})")]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Its ARPHRD_* type.
        hw_type: u16,
    },
    /// The fanout group id is used by a different socket set (another process, another type).
    #[error("{iface}: cannot join fanout group {group:#06x} ({source}); is another program using it? set RingConfig::fanout_group_base")]
    FanoutGroup {
        /// The interface.
        iface: String,
        /// The group id.
        group: u16,
        /// The OS error.
        source: stdio::Error,
    },
    /// Another system call failed.
    #[error("{iface}: {op} failed: {source}")]
    Os {
        /// The interface.
        iface: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        source: stdio::Error,
    },
    /// The ring configuration is not one the kernel accepts.
    #[error("invalid ring configuration: {0}")]
    Config(String),
}

fn os_error(iface: &str, op: &'static str, source: stdio::Error) -> AfPacketError {
    let iface = iface.to_owned();
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => AfPacketError::PermissionDenied { iface, op, source },
        Some(libc::ENODEV | libc::ENXIO) => AfPacketError::NoSuchInterface { iface, source },
        _ => AfPacketError::Os { iface, op, source },
    }
}

/// The rx ring's cursor: which block, and where in it.
#[derive(Debug)]
struct RxRing {
    block_size: usize,
    blocks: usize,
    /// Block being read (or to be read next).
    block: usize,
    /// Packets left in the current block; 0 when no block is held.
    left: u32,
    /// Offset of the next packet inside the current block.
    next: usize,
}

/// The tx ring's cursor.
#[derive(Debug)]
struct TxRing {
    /// Where the tx ring starts in the mapping.
    base: usize,
    frame_size: usize,
    frames: usize,
    head: usize,
    /// A kick failed; kick again at the next burst even if nothing new is queued.
    kick_pending: bool,
}

#[derive(Debug)]
struct Port {
    name: String,
    ifindex: i32,
    mtu: u32,
    mac: [u8; 6],
    /// Longest frame accepted on rx (MTU + Ethernet header + one VLAN tag).
    max_frame: usize,
    // `map` is declared before `fd` so it is unmapped first.
    map: sys::Mmap,
    fd: OwnedFd,
    rx: RxRing,
    tx: TxRing,
    stats: PortStats,
    extra: AfPacketStats,
    /// Kernel drop counts read by `stats(&self)` and not yet folded into `stats`/`extra`.
    kernel_drops: Cell<u64>,
}

/// The AF_PACKET backend for one worker. See the crate documentation.
#[derive(Debug)]
pub struct AfPacketIo {
    ports: Vec<Port>,
    pool: MemPool,
    worker: usize,
    workers: usize,
}

fn check_name(iface: &str) -> Result<(), AfPacketError> {
    let reason = if iface.is_empty() {
        "empty"
    } else if iface.len() >= libc::IFNAMSIZ {
        "longer than 15 bytes"
    } else if iface.bytes().any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace()) {
        "contains NUL, '/' or whitespace"
    } else {
        return Ok(());
    };
    Err(AfPacketError::InvalidName { iface: iface.to_owned(), reason })
}

fn default_group_base() -> u16 {
    let pid = std::process::id();
    // Spread pids over the 16-bit id space; the interface index is added per interface.
    let mixed = pid.wrapping_mul(0x9e37_79b9);
    (mixed >> 16) as u16
}

impl AfPacketIo {
    /// Opens worker `worker` of `workers` on `interfaces` (port `i` = `interfaces[i]`).
    ///
    /// Every worker of a process opens the same interfaces with the same `workers`; with more
    /// than one worker their sockets of one interface share a `PACKET_FANOUT_HASH` group.
    pub fn open(
        interfaces: &[&str],
        worker: usize,
        workers: usize,
        config: RingConfig,
    ) -> Result<AfPacketIo, AfPacketError> {
        if workers == 0 || worker >= workers {
            return Err(AfPacketError::Config(format!("worker {worker} of {workers}")));
        }
        if interfaces.len() > usize::from(u16::MAX) {
            return Err(AfPacketError::Config("too many interfaces".into()));
        }
        let page = sys::page_size();
        let block = config.rx_block_size as usize;
        if block == 0 || block % page != 0 {
            return Err(AfPacketError::Config(format!(
                "rx_block_size {block} is not a positive multiple of the page size {page}"
            )));
        }
        if config.rx_blocks == 0 || config.tx_frames == 0 {
            return Err(AfPacketError::Config("rx_blocks and tx_frames must be positive".into()));
        }
        let mut ports = Vec::with_capacity(interfaces.len());
        for &iface in interfaces {
            ports.push(open_port(iface, workers, &config, page)?);
        }
        Ok(AfPacketIo { ports, pool: MemPool::new(config.pool_buffers), worker, workers })
    }

    /// The pool rx buffers and [`PacketIo::alloc`] draw from.
    pub fn pool(&self) -> &MemPool {
        &self.pool
    }

    /// This worker's index and the number of workers.
    pub fn worker(&self) -> (usize, usize) {
        (self.worker, self.workers)
    }

    fn port(&self, port: PortId) -> &Port {
        &self.ports[port.index()]
    }

    /// The interface name of `port`. Panics if `port` does not exist.
    pub fn name(&self, port: PortId) -> &str {
        &self.port(port).name
    }

    /// The MAC address of `port`'s interface (read at open). Panics if `port` does not exist.
    pub fn mac(&self, port: PortId) -> [u8; 6] {
        self.port(port).mac
    }

    /// The MTU of `port`'s interface (read at open). Panics if `port` does not exist.
    pub fn mtu(&self, port: PortId) -> u32 {
        self.port(port).mtu
    }

    /// The kernel interface index of `port`. Panics if `port` does not exist.
    pub fn ifindex(&self, port: PortId) -> i32 {
        self.port(port).ifindex
    }

    /// The socket of `port`, to `poll` for readability when idle. Panics if `port` does not exist.
    pub fn raw_fd(&self, port: PortId) -> RawFd {
        self.port(port).fd.as_raw_fd()
    }

    /// The backend-specific counters of `port` (zero for a port that does not exist).
    pub fn afpacket_stats(&self, port: PortId) -> AfPacketStats {
        match self.ports.get(port.index()) {
            Some(p) => {
                let mut extra = p.extra;
                extra.ring_overruns += p.poll_kernel_drops();
                extra
            }
            None => AfPacketStats::default(),
        }
    }

    /// The warnings of [`offload_warnings`] for `port`'s interface.
    pub fn offload_warnings(&self, port: PortId) -> Vec<String> {
        let p = self.port(port);
        offload::warnings_with(&p.fd, &p.name)
    }

    /// Test hook: deliver only the first `snaplen` bytes of each frame (a socket filter), to
    /// provoke truncated frames.
    #[doc(hidden)]
    pub fn set_rx_snaplen_for_test(&mut self, port: PortId, snaplen: u32) -> stdio::Result<()> {
        sys::attach_snaplen_filter(&self.port(port).fd, snaplen)
    }
}

fn open_port(iface: &str, workers: usize, config: &RingConfig, page: usize) -> Result<Port, AfPacketError> {
    check_name(iface)?;
    let fd = sys::packet_socket().map_err(|e| os_error(iface, "socket(AF_PACKET)", e))?;

    let mut req = sys::ifreq(iface);
    sys::ifreq_ioctl(&fd, libc::SIOCGIFINDEX, &mut req).map_err(|e| os_error(iface, "SIOCGIFINDEX", e))?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote the `ifru_ifindex` member.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };

    let mut req = sys::ifreq(iface);
    sys::ifreq_ioctl(&fd, libc::SIOCGIFMTU, &mut req).map_err(|e| os_error(iface, "SIOCGIFMTU", e))?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the `ifru_mtu` member.
    let mtu = u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).unwrap_or(0);

    let mut req = sys::ifreq(iface);
    sys::ifreq_ioctl(&fd, libc::SIOCGIFHWADDR, &mut req).map_err(|e| os_error(iface, "SIOCGIFHWADDR", e))?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the `ifru_hwaddr` member.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != sys::ARPHRD_ETHER {
        return Err(AfPacketError::NotEthernet { iface: iface.to_owned(), hw_type: hw.sa_family });
    }
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = src.to_ne_bytes()[0];
    }

    let max_frame = mtu as usize + ETH_HLEN + VLAN_HLEN;

    let set = |name: libc::c_int, value: libc::c_int, op: &'static str| {
        sys::setsockopt(&fd, sys::SOL_PACKET, name, &value).map_err(|e| os_error(iface, op, e))
    };
    set(sys::PACKET_VERSION, sys::TPACKET_V3, "PACKET_VERSION(TPACKET_V3)")?;
    // A malformed tx frame is skipped instead of stalling the ring.
    set(sys::PACKET_LOSS, 1, "PACKET_LOSS")?;

    let rx_req = sys::TpacketReq3 {
        block_size: config.rx_block_size,
        block_nr: config.rx_blocks,
        // V3 rx frames are variable-sized; the kernel only checks this against the block.
        frame_size: 2048,
        frame_nr: config.rx_blocks * (config.rx_block_size / 2048),
        retire_blk_tov: config.rx_block_timeout_ms,
        sizeof_priv: 0,
        feature_req_word: 0,
    };
    sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_RX_RING, &rx_req)
        .map_err(|e| os_error(iface, "PACKET_RX_RING", e))?;

    // Tx frames: header + the largest frame we send, rounded up to a power of two.
    let tx_frame = (sys::TPACKET3_HDR_ALIGNED + max_frame).next_power_of_two().max(2048);
    let tx_block = tx_frame.max(64 * 1024).max(page);
    let per_block = tx_block / tx_frame;
    let tx_blocks = (config.tx_frames as usize).div_ceil(per_block);
    let to_u32 = |v: usize| u32::try_from(v).map_err(|_| AfPacketError::Config(format!("tx ring size {v} too large")));
    let tx_req = sys::TpacketReq3 {
        block_size: to_u32(tx_block)?,
        block_nr: to_u32(tx_blocks)?,
        frame_size: to_u32(tx_frame)?,
        frame_nr: to_u32(tx_blocks * per_block)?,
        ..sys::TpacketReq3::default()
    };
    sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_TX_RING, &tx_req)
        .map_err(|e| os_error(iface, "PACKET_TX_RING", e))?;

    let rx_len = config.rx_block_size as usize * config.rx_blocks as usize;
    let tx_len = tx_block * tx_blocks;
    let map = sys::Mmap::rings(&fd, rx_len + tx_len).map_err(|e| os_error(iface, "mmap", e))?;

    set(sys::PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS")?;
    // Kernels before 4.20 lack it; rx then skips PACKET_OUTGOING frames itself.
    let _ = set(sys::PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING");

    let fanout = workers > 1;
    if fanout {
        // Until the socket is in the fanout group it would see every frame of the interface,
        // duplicating what the group's other sockets see: drop everything meanwhile.
        sys::attach_snaplen_filter(&fd, 0).map_err(|e| os_error(iface, "SO_ATTACH_FILTER", e))?;
    }
    sys::bind_all(&fd, ifindex).map_err(|e| os_error(iface, "bind", e))?;
    if fanout {
        let base = config.fanout_group_base.unwrap_or_else(default_group_base);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "ids wrap")]
        let group = base.wrapping_add(ifindex as u16);
        let arg = u32::from(group) | (sys::PACKET_FANOUT_HASH << 16);
        sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_FANOUT, &arg).map_err(|source| {
            match source.raw_os_error() {
                Some(libc::EINVAL | libc::EALREADY | libc::EEXIST) => {
                    AfPacketError::FanoutGroup { iface: iface.to_owned(), group, source }
                }
                _ => os_error(iface, "PACKET_FANOUT", source),
            }
        })?;
        sys::detach_filter(&fd).map_err(|e| os_error(iface, "SO_DETACH_FILTER", e))?;
    }
    if config.promiscuous {
        let mreq = sys::PacketMreq { ifindex, kind: sys::PACKET_MR_PROMISC, ..Default::default() };
        sys::setsockopt(&fd, sys::SOL_PACKET, sys::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| os_error(iface, "PACKET_ADD_MEMBERSHIP(PROMISC)", e))?;
    }

    Ok(Port {
        name: iface.to_owned(),
        ifindex,
        mtu,
        mac,
        max_frame,
        map,
        fd,
        rx: RxRing {
            block_size: config.rx_block_size as usize,
            blocks: config.rx_blocks as usize,
            block: 0,
            left: 0,
            next: 0,
        },
        tx: TxRing { base: rx_len, frame_size: tx_frame, frames: tx_blocks * per_block, head: 0, kick_pending: false },
        stats: PortStats::default(),
        extra: AfPacketStats::default(),
        kernel_drops: Cell::new(0),
    })
}

/// The fields of a `tpacket3_hdr` (and its `sockaddr_ll`) the rx path uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FrameHdr {
    next_offset: u32,
    snaplen: u32,
    len: u32,
    status: u32,
    mac: u16,
    vlan_tci: u16,
    vlan_tpid: u16,
    pkttype: u8,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

impl FrameHdr {
    /// Reads the header at the start of `b`, or `None` if `b` is too short.
    fn read(b: &[u8]) -> Option<FrameHdr> {
        if b.len() < sys::H3_SLL_PKTTYPE + 1 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, reason = "a VLAN TCI is 16 bits")]
        let vlan_tci = u32_at(b, sys::H3_VLAN_TCI) as u16;
        Some(FrameHdr {
            next_offset: u32_at(b, sys::H3_NEXT_OFFSET),
            snaplen: u32_at(b, sys::H3_SNAPLEN),
            len: u32_at(b, sys::H3_LEN),
            status: u32_at(b, sys::H3_STATUS),
            mac: u16_at(b, sys::H3_MAC),
            vlan_tci,
            vlan_tpid: u16_at(b, sys::H3_VLAN_TPID),
            pkttype: b[sys::H3_SLL_PKTTYPE],
        })
    }
}

/// What to do with one received frame.
#[derive(Debug)]
enum Verdict {
    Deliver(MemBuf),
    /// Dropped (and counted).
    Drop,
    /// Not ours to see; skipped without counting a drop.
    Skip,
    /// The pool is empty: leave the frame in the ring and end the burst.
    NoBuffer,
}

/// Turns the frame at `pkt` (its `tpacket3_hdr` at the start) into a buffer, repairing or
/// dropping it. Counts into `extra`; the caller counts `Drop` in `rx_dropped`.
fn receive(pkt: &[u8], hdr: &FrameHdr, max_frame: usize, pool: &MemPool, extra: &mut AfPacketStats) -> Verdict {
    if hdr.pkttype == sys::PACKET_OUTGOING {
        extra.outgoing_ignored += 1;
        return Verdict::Skip;
    }
    let snaplen = hdr.snaplen as usize;
    let start = usize::from(hdr.mac);
    let Some(frame) = pkt.get(start..start + snaplen) else {
        extra.truncated += 1;
        return Verdict::Drop;
    };
    let vlan = hdr.status & sys::TP_STATUS_VLAN_VALID != 0;
    if hdr.snaplen < hdr.len || hdr.status & sys::TP_STATUS_COPY != 0 || frame.len() < ETH_HLEN {
        extra.truncated += 1;
        return Verdict::Drop;
    }
    let out_len = snaplen + if vlan { VLAN_HLEN } else { 0 };
    if out_len > max_frame {
        extra.oversize += 1;
        return Verdict::Drop;
    }
    if out_len > MAX_BUF_FRAME {
        extra.buffer_too_small += 1;
        return Verdict::Drop;
    }
    let Some(mut buf) = pool.get() else {
        extra.no_buffer += 1;
        return Verdict::NoBuffer;
    };
    // Cannot fail: out_len <= MAX_BUF_FRAME, the buffer's room after the headroom.
    let _ = buf.set_len(out_len);
    if vlan {
        let tpid =
            if hdr.status & sys::TP_STATUS_VLAN_TPID_VALID != 0 && hdr.vlan_tpid != 0 { hdr.vlan_tpid } else { 0x8100 };
        fixup::copy_with_vlan(frame, tpid, hdr.vlan_tci, buf.data_mut());
        extra.vlan_restored += 1;
    } else {
        buf.data_mut().copy_from_slice(frame);
    }
    if hdr.status & sys::TP_STATUS_CSUMNOTREADY != 0 {
        if fixup::complete_l4_checksum(buf.data_mut()).is_err() {
            extra.csum_failed += 1;
            return Verdict::Drop;
        }
        extra.csum_completed += 1;
    }
    Verdict::Deliver(buf)
}

fn block_ptr(map: &sys::Mmap, rx: &RxRing, block: usize) -> *mut u8 {
    assert!(block < rx.blocks && rx.blocks * rx.block_size <= map.len());
    // SAFETY: `block * block_size` is inside the rx part of the mapping (checked above).
    unsafe { map.ptr().add(block * rx.block_size) }
}

/// The current rx block as bytes. Only call while we own it (its status has `TP_STATUS_USER`).
fn block_bytes<'a>(map: &'a sys::Mmap, rx: &RxRing) -> &'a [u8] {
    // SAFETY: the block is `block_size` bytes inside the mapping, which outlives 'a; while its
    // status says TP_STATUS_USER the kernel does not write to it (the ring ownership protocol),
    // and the Acquire load of the status ordered the kernel's writes before these reads. The
    // slice is dropped before the block is handed back (`release_block` needs `&mut self`).
    unsafe { std::slice::from_raw_parts(block_ptr(map, rx, rx.block), rx.block_size) }
}

impl Port {
    /// Reads and resets the kernel's drop counter, remembering it until folded in.
    fn poll_kernel_drops(&self) -> u64 {
        if let Ok(st) = sys::getsockopt::<sys::TpacketStatsV3>(&self.fd, sys::SOL_PACKET, sys::PACKET_STATISTICS) {
            self.kernel_drops.set(self.kernel_drops.get() + u64::from(st.drops));
        }
        self.kernel_drops.get()
    }

    fn fold_kernel_drops(&mut self) {
        let drops = self.poll_kernel_drops();
        self.kernel_drops.set(0);
        self.extra.ring_overruns += drops;
        self.stats.rx_dropped += drops;
    }

    fn block_ptr(&self, block: usize) -> *mut u8 {
        block_ptr(&self.map, &self.rx, block)
    }

    /// The `block_status` word of `block`, shared with the kernel.
    fn block_status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the word is 4-aligned (blocks are page-aligned, the field is at offset 8),
        // lives as long as the mapping (`&self`), and the kernel and we only access it
        // atomically (the kernel with smp_wmb/smp_rmb around plain stores, as the ABI says).
        unsafe { AtomicU32::from_ptr(self.block_ptr(block).add(sys::BLK_STATUS).cast::<u32>()) }
    }

    fn release_block(&mut self) {
        self.block_status(self.rx.block).store(sys::TP_STATUS_KERNEL, Ordering::Release);
        self.rx.block = (self.rx.block + 1) % self.rx.blocks;
        self.rx.left = 0;
    }

    fn rx_burst(&mut self, pool: &MemPool, burst: &mut Burst<MemBuf>) {
        while !burst.is_full() {
            if self.rx.left == 0 {
                let status = self.block_status(self.rx.block).load(Ordering::Acquire);
                if status & sys::TP_STATUS_USER == 0 {
                    break;
                }
                if status & sys::TP_STATUS_LOSING != 0 {
                    self.fold_kernel_drops();
                }
                let block = block_bytes(&self.map, &self.rx);
                let pkts = u32_at(block, sys::BLK_NUM_PKTS);
                let first = u32_at(block, sys::BLK_OFFSET_TO_FIRST) as usize;
                if pkts == 0 {
                    self.release_block();
                    continue;
                }
                self.rx.left = pkts;
                self.rx.next = first;
            }
            let block = block_bytes(&self.map, &self.rx);
            let off = self.rx.next;
            let (verdict, next_offset) = match block.get(off..).and_then(FrameHdr::read) {
                Some(hdr) => {
                    let verdict = receive(&block[off..], &hdr, self.max_frame, pool, &mut self.extra);
                    (verdict, hdr.next_offset as usize)
                }
                // A corrupt offset: give the block back rather than read out of bounds.
                None => (Verdict::Drop, 0),
            };
            match verdict {
                Verdict::NoBuffer => break,
                Verdict::Deliver(buf) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += buf.len() as u64;
                    burst.push(buf);
                }
                Verdict::Drop => self.stats.rx_dropped += 1,
                Verdict::Skip => {}
            }
            self.rx.left -= 1;
            self.rx.next = off + next_offset;
            if self.rx.left == 0 || next_offset == 0 {
                self.release_block();
            }
        }
    }

    /// The tx frame at `index`.
    fn tx_frame(&self, index: usize) -> *mut u8 {
        debug_assert!(index < self.tx.frames);
        // SAFETY: frames are laid out back to back from `tx.base` (whole frames per block,
        // blocks contiguous), so this stays inside the tx part of the mapping.
        unsafe { self.map.ptr().add(self.tx.base + index * self.tx.frame_size) }
    }

    fn tx_status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: `tp_status` is at offset 20 of a 16-aligned frame (4-aligned), inside the
        // mapping, and both sides access it atomically per the ring protocol.
        unsafe { AtomicU32::from_ptr(self.tx_frame(index).add(sys::H3_STATUS).cast::<u32>()) }
    }

    fn tx_burst(&mut self, burst: &mut Burst<MemBuf>) {
        let room = self.tx.frame_size - sys::TPACKET3_HDR_ALIGNED;
        let mut queued = 0usize;
        for buf in burst.drain(..) {
            let data = buf.data();
            // The kernel refuses frames over MTU + header (+ a tag if the frame carries one);
            // under PACKET_LOSS it would skip them silently, so refuse and count them here.
            let tagged = data.len() >= ETH_HLEN && matches!([data[12], data[13]], [0x81, 0x00] | [0x88, 0xa8]);
            let limit = self.mtu as usize + ETH_HLEN + if tagged { VLAN_HLEN } else { 0 };
            if data.len() < ETH_HLEN || data.len() > room || data.len() > limit {
                self.extra.tx_too_big += 1;
                self.stats.tx_dropped += 1;
                continue;
            }
            let head = self.tx.head;
            let status = self.tx_status(head).load(Ordering::Acquire);
            if status != sys::TP_STATUS_AVAILABLE && status != sys::TP_STATUS_WRONG_FORMAT {
                self.extra.tx_ring_full += 1;
                self.stats.tx_dropped += 1;
                continue;
            }
            let frame = self.tx_frame(head);
            let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
            // SAFETY: the frame is ours (status AVAILABLE: the kernel neither reads nor writes
            // it until we set SEND_REQUEST below). The header fields are 4-aligned u32s inside
            // the frame and the data fits (`len <= room`) after the 48-byte header.
            unsafe {
                frame.add(sys::H3_NEXT_OFFSET).cast::<u32>().write(0);
                frame.add(sys::H3_SNAPLEN).cast::<u32>().write(len);
                frame.add(sys::H3_LEN).cast::<u32>().write(len);
                std::ptr::copy_nonoverlapping(data.as_ptr(), frame.add(sys::TPACKET3_HDR_ALIGNED), data.len());
            }
            // Release: the frame's contents are visible before the kernel sees the request.
            self.tx_status(head).store(sys::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx.head = (head + 1) % self.tx.frames;
            self.stats.tx_packets += 1;
            self.stats.tx_bytes += data.len() as u64;
            queued += 1;
        }
        if queued > 0 || self.tx.kick_pending {
            match sys::kick(&self.fd) {
                Ok(()) => self.tx.kick_pending = false,
                Err(_) => {
                    self.extra.tx_kick_errors += 1;
                    self.tx.kick_pending = true;
                }
            }
        }
    }
}

impl PacketIo for AfPacketIo {
    type Buf = MemBuf;

    fn ports(&self) -> usize {
        self.ports.len()
    }

    fn rx_burst(&mut self, port: PortId, burst: &mut Burst<MemBuf>) {
        let Some(p) = self.ports.get_mut(port.index()) else { return };
        p.rx_burst(&self.pool, burst);
    }

    fn tx_burst(&mut self, port: PortId, burst: &mut Burst<MemBuf>) {
        match self.ports.get_mut(port.index()) {
            Some(p) => p.tx_burst(burst),
            None => burst.clear(),
        }
    }

    fn alloc(&mut self) -> Option<MemBuf> {
        self.pool.get()
    }

    fn stats(&self, port: PortId) -> PortStats {
        match self.ports.get(port.index()) {
            Some(p) => {
                let mut stats = p.stats;
                stats.rx_dropped += p.poll_kernel_drops();
                stats
            }
            None => PortStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(hdr: &FrameHdr, frame: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; usize::from(hdr.mac) + frame.len()];
        b[sys::H3_SNAPLEN..sys::H3_SNAPLEN + 4].copy_from_slice(&hdr.snaplen.to_ne_bytes());
        b[usize::from(hdr.mac)..].copy_from_slice(frame);
        b
    }

    fn hdr(frame: &[u8]) -> FrameHdr {
        let n = u32::try_from(frame.len()).unwrap();
        FrameHdr { snaplen: n, len: n, mac: 82, ..FrameHdr::default() }
    }

    #[test]
    fn frame_header_round_trip() {
        let mut b = vec![0u8; 100];
        b[sys::H3_NEXT_OFFSET..][..4].copy_from_slice(&96u32.to_ne_bytes());
        b[sys::H3_SNAPLEN..][..4].copy_from_slice(&60u32.to_ne_bytes());
        b[sys::H3_LEN..][..4].copy_from_slice(&64u32.to_ne_bytes());
        b[sys::H3_STATUS..][..4].copy_from_slice(&(sys::TP_STATUS_USER | sys::TP_STATUS_VLAN_VALID).to_ne_bytes());
        b[sys::H3_MAC..][..2].copy_from_slice(&82u16.to_ne_bytes());
        b[sys::H3_VLAN_TCI..][..4].copy_from_slice(&0x2064u32.to_ne_bytes());
        b[sys::H3_VLAN_TPID..][..2].copy_from_slice(&0x88a8u16.to_ne_bytes());
        b[sys::H3_SLL_PKTTYPE] = 3;
        let h = FrameHdr::read(&b).unwrap();
        assert_eq!(
            h,
            FrameHdr {
                next_offset: 96,
                snaplen: 60,
                len: 64,
                status: sys::TP_STATUS_USER | sys::TP_STATUS_VLAN_VALID,
                mac: 82,
                vlan_tci: 0x2064,
                vlan_tpid: 0x88a8,
                pkttype: 3
            }
        );
        assert_eq!(FrameHdr::read(&b[..50]), None);
    }

    #[test]
    fn receive_repairs_and_drops() {
        let pool = MemPool::new(4);
        let mut extra = AfPacketStats::default();
        let frame: Vec<u8> = (0..64u8).collect();

        // Plain.
        let h = hdr(&frame);
        let Verdict::Deliver(buf) = receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra) else { panic!() };
        assert_eq!(buf.data(), &frame[..]);
        drop(buf);

        // Stripped tag, 802.1ad TPID reported.
        let h = FrameHdr {
            status: sys::TP_STATUS_VLAN_VALID | sys::TP_STATUS_VLAN_TPID_VALID,
            vlan_tci: 5,
            vlan_tpid: 0x88a8,
            ..hdr(&frame)
        };
        let Verdict::Deliver(buf) = receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra) else { panic!() };
        assert_eq!(&buf.data()[12..16], &[0x88, 0xa8, 0, 5]);
        assert_eq!(buf.len(), 68);
        assert_eq!(extra.vlan_restored, 1);
        drop(buf);

        // Truncated.
        let h = FrameHdr { len: 1000, ..hdr(&frame) };
        assert!(matches!(receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra), Verdict::Drop));
        assert_eq!(extra.truncated, 1);

        // Oversize (a GRO frame on a 1500-byte MTU).
        let big = vec![0u8; 3000];
        let h = hdr(&big);
        assert!(matches!(receive(&pkt(&h, &big), &h, 1518, &pool, &mut extra), Verdict::Drop));
        assert_eq!(extra.oversize, 1);

        // Within the MTU but not a pool buffer.
        assert!(matches!(receive(&pkt(&h, &big), &h, 9018, &pool, &mut extra), Verdict::Drop));
        assert_eq!(extra.buffer_too_small, 1);

        // Our own outgoing frame.
        let h = FrameHdr { pkttype: sys::PACKET_OUTGOING, ..hdr(&frame) };
        assert!(matches!(receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra), Verdict::Skip));

        // CSUMNOTREADY on something that is not TCP/UDP.
        let h = FrameHdr { status: sys::TP_STATUS_CSUMNOTREADY, ..hdr(&frame) };
        assert!(matches!(receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra), Verdict::Drop));
        assert_eq!(extra.csum_failed, 1);

        // Empty pool.
        let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
        let h = hdr(&frame);
        assert!(matches!(receive(&pkt(&h, &frame), &h, 1518, &pool, &mut extra), Verdict::NoBuffer));
        drop(held);
    }

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        for name in ["", "a-name-that-is-too-long", "a/b", "a b"] {
            let err = AfPacketIo::open(&[name], 0, 1, RingConfig::default()).unwrap_err();
            assert!(matches!(err, AfPacketError::InvalidName { .. }), "{name}: {err}");
        }
        let err = AfPacketIo::open(&["lo"], 2, 2, RingConfig::default()).unwrap_err();
        assert!(matches!(err, AfPacketError::Config(_)), "{err}");
    }
}
