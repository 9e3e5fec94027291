//! PROXY protocol v2 insertion without terminating TCP: the per-service settings, the per-flow
//! sequence map, the header, and the segment edits (sequence shift, ACK/SACK map, MSS clamp).
//!
//! The design (`ARCHITECTURE.md`, "PROXY v2 insertion") in one paragraph: with `C` the client's
//! ISN+1 and `L` the header length, the header occupies server sequence space `[C, C+L)` and every
//! client byte at `c >= C` moves to `c+L`. The map is fixed at the SYN. Server ACKs and SACK edges
//! map back (`a < C`: `a`; `C <= a < C+L`: `C`; else `a-L`), so the client never sees an ACK
//! beyond what it sent. Every client segment whose data or FIN starts at `C` carries the same
//! header (retransmissions included); in [`Placement::OnHandshakeAck`] mode the client's handshake
//! ACK is turned into the header segment and the gateway retransmits it until the server ACKs it.
//!
//! Everything here works on a TCP segment (`&mut [u8]` from the TCP header on) and keeps its
//! checksum right with RFC 1624 updates; the worker does the frame surgery.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use flow::Instant;
use wire::checksum::Delta;
use wire::proxy::{Addresses, Command, Encoder, Transport};
use wire::tcp::kind;

use crate::policy::Tlvs;

/// The longest header the gateway inserts (a budget larger than this is refused by the config).
pub const MAX_HEADER_LEN: usize = 255;
/// The default header budget: what Debian 12's nginx (1.22) reads in one peek.
pub const DEFAULT_HEADER_BUDGET: u16 = 107;
/// The smallest useful budget: a PROXY header with IPv4 addresses and no TLV.
pub const MIN_HEADER_BUDGET: u16 = 28;
/// The gateway's first retransmission of a header segment it sent itself.
pub const FIRST_RTO: Duration = Duration::from_millis(250);
/// Sends of a gateway-owned header segment before the connection is given up (reset both ways):
/// at about 0, 0.25, 0.75, 1.75 and 3.75 s, four of them inside a receiver's 3 s minimum wait.
pub const MAX_SENDS: u8 = 5;
/// An MSS is never clamped below this; smaller segments are split instead.
pub const MSS_FLOOR: u16 = 256;

/// Where the header goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Placement {
    /// On the client's handshake-completing ACK, with the gateway retransmitting it until the
    /// server ACKs it: works for protocols where the server speaks first (SMTP, SSH, MySQL).
    #[default]
    OnHandshakeAck,
    /// On the first client segment that carries data or FIN (AWS NLB's default).
    OnFirstData,
}

/// A service's PROXY v2 settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Where the header goes.
    pub placement: Placement,
    /// The longest header allowed (addresses, TLVs and padding); a flow whose header would be
    /// longer is refused.
    pub header_budget: u16,
    /// Consumer sources (`address/prefix`, in any consumer network) whose connections are health
    /// probes: they get a LOCAL header, which carries no client information.
    pub probe_sources: Vec<(Ipv4Addr, u8)>,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        ProxyProtocol {
            placement: Placement::default(),
            header_budget: DEFAULT_HEADER_BUDGET,
            probe_sources: Vec::new(),
        }
    }
}

impl ProxyProtocol {
    /// True when connections from `source` are health probes.
    pub fn is_probe(&self, source: Ipv4Addr) -> bool {
        self.probe_sources.iter().any(|&(net, len)| {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
            u32::from(source) & mask == u32::from(net) & mask
        })
    }
}

/// Why a header could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TooLong;

/// Builds the header for a connection from `source` to the endpoint `destination` with the
/// policy's TLVs, padded to an even length. `None` when it would exceed `budget`.
pub fn build_header(
    out: &mut [u8; MAX_HEADER_LEN],
    local: bool,
    source: SocketAddrV4,
    destination: SocketAddrV4,
    tlvs: &Tlvs,
    budget: u16,
) -> Result<usize, TooLong> {
    let budget = usize::from(budget).min(MAX_HEADER_LEN);
    let buf = &mut out[..budget];
    let len = if local {
        // A LOCAL header carries no addresses and no TLVs: `sig 20 00 0000`.
        Encoder::new(buf, Command::Local, Transport::Stream, Addresses::Unspec).and_then(Encoder::finish)
    } else {
        Encoder::new(buf, Command::Proxy, Transport::Stream, Addresses::Ipv4 { src: source, dst: destination })
            .and_then(|mut e| {
                for (kind, value) in tlvs.iter() {
                    e.tlv(kind, value)?;
                }
                e.pad_to_even()?;
                e.finish()
            })
    };
    len.map_err(|_| TooLong)
}

/// Where the header is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HeaderState {
    /// Not sent yet: client sequence numbers at `C` are not shifted.
    Pending,
    /// Sent at least once, not yet acknowledged.
    InFlight,
    /// The server acknowledged `C+L`: only the shift and the ACK map remain.
    Acked,
}

/// The per-flow sequence map, kept inline in the flow (the hot part).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SeqMap {
    /// The client's ISN + 1: where the header starts in server space.
    pub c: u32,
    /// The header length `L` (even).
    pub len: u32,
    /// Header state.
    pub state: HeaderState,
}

/// `a - b` as a signed distance (serial arithmetic).
#[inline]
pub fn dist(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl SeqMap {
    /// A server-space ACK or SACK edge in client space: `a < C` stays, `a` inside the header
    /// becomes `C`, beyond it `a - L`.
    #[inline]
    pub fn map_ack(&self, a: u32) -> u32 {
        if dist(a, self.c) < 0 {
            a
        } else if a.wrapping_sub(self.c) < self.len {
            self.c
        } else {
            a.wrapping_sub(self.len)
        }
    }

    /// True when `a` falls strictly inside the header (`C < a < C+L`): mapping clamps it.
    #[inline]
    pub fn clamps(&self, a: u32) -> bool {
        dist(a, self.c) > 0 && a.wrapping_sub(self.c) < self.len
    }

    /// The shift of a client segment that does not carry the header: `L` for segments that
    /// consume sequence space after `C`, and once the header is on the wire for every other one.
    #[inline]
    pub fn shift(&self, seq: u32, consumes: bool) -> u32 {
        if (consumes && dist(seq, self.c) > 0) || self.state != HeaderState::Pending {
            self.len
        } else {
            0
        }
    }
}

/// The cold part of a PROXY flow: the header bytes and what the gateway needs to send the header
/// segment itself. Boxed in the flow, touched only until the header is acknowledged and when a
/// segment starts at `C`.
#[derive(Clone, Debug)]
pub struct ProxyFlow {
    /// The header, exactly `L` bytes (allocated to size: most are far below the maximum, and
    /// every byte of a fresh flow is memory the kernel must fault in).
    pub header: Box<[u8]>,
    /// Where the header goes.
    pub placement: Placement,
    /// The provider network's MTU (egress towards the server).
    pub mtu: u16,
    /// The server's ISN, from the SYN-ACK.
    pub server_isn: Option<u32>,
    /// Sends of the header segment the gateway owns (OnHandshakeAck).
    pub sends: u8,
    /// When the gateway last sent it.
    pub last_tx: Instant,
    /// The current retransmission timeout.
    pub rto: Duration,
    /// The client's last ACK number, window and timestamps (`tsval`, `tsecr`), to build the
    /// header segment like the client would have.
    pub last_ack: u32,
    /// The client's last window (unscaled, as on the wire).
    pub last_win: u16,
    /// The client's last timestamps, if it uses them.
    pub timestamps: Option<(u32, u32)>,
    /// A header segment the gateway built is in flight with the timer armed.
    pub timer_armed: bool,
}

impl ProxyFlow {
    /// A flow's cold state with `header[..len]`.
    pub fn new(header: &[u8], placement: Placement, mtu: u16, now: Instant) -> ProxyFlow {
        ProxyFlow {
            header: header[..header.len().min(MAX_HEADER_LEN)].into(),
            placement,
            mtu,
            server_isn: None,
            sends: 0,
            last_tx: now,
            rto: FIRST_RTO,
            last_ack: 0,
            last_win: 0,
            timestamps: None,
            timer_armed: false,
        }
    }
}

// ---- segment edits -------------------------------------------------------------------------

const SEQ: usize = 4;
const ACK: usize = 8;
const CHECKSUM: usize = 16;
const OPTIONS: usize = 20;

fn get32(seg: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([seg[at], seg[at + 1], seg[at + 2], seg[at + 3]])
}

fn get16(seg: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([seg[at], seg[at + 1]])
}

/// The TCP header length of `seg` (its data offset, already validated by the parser).
#[inline]
pub fn header_len(seg: &[u8]) -> usize {
    usize::from(seg[12] >> 4) * 4
}

/// Replaces the 32-bit field at `at` (an even offset) with `new`, updating the checksum.
#[inline]
fn put32(seg: &mut [u8], at: usize, new: u32) {
    let old = get32(seg, at);
    if old == new {
        return;
    }
    seg[at..at + 4].copy_from_slice(&new.to_be_bytes());
    let sum = Delta::ZERO.replace32(old, new).apply(get16(seg, CHECKSUM));
    seg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Adds `delta` to the sequence number.
#[inline]
pub fn shift_seq(seg: &mut [u8], delta: u32) {
    if delta != 0 {
        let seq = get32(seg, SEQ);
        put32(seg, SEQ, seq.wrapping_add(delta));
    }
}

/// Sets the sequence number.
#[inline]
pub fn set_seq(seg: &mut [u8], seq: u32) {
    put32(seg, SEQ, seq);
}

/// Sets the acknowledgement number.
#[inline]
pub fn set_ack(seg: &mut [u8], ack: u32) {
    put32(seg, ACK, ack);
}

/// True when the options are absent or exactly the usual `NOP NOP TS` layout: no SACK to map.
#[inline]
pub fn options_need_scan(seg: &[u8]) -> bool {
    let hl = header_len(seg);
    !(hl == OPTIONS || (hl == OPTIONS + 12 && seg[20] == 1 && seg[21] == 1 && seg[22] == kind::TIMESTAMP))
}

/// Calls `f(kind, offset, len)` for each option of `seg` (offset of the kind byte, total
/// length), stopping at the end-of-list option or at the first malformed one.
fn for_each_option(seg: &[u8], mut f: impl FnMut(u8, usize, usize)) {
    let end = header_len(seg).min(seg.len());
    let mut at = OPTIONS;
    while at < end {
        match seg[at] {
            kind::END_OF_LIST => return,
            kind::NO_OPERATION => at += 1,
            k => {
                let Some(&len) = seg.get(at + 1) else { return };
                let len = usize::from(len);
                if len < 2 || at + len > end {
                    return;
                }
                f(k, at, len);
                at += len;
            }
        }
    }
}

/// The segment's timestamps option `(tsval, tsecr)`.
pub fn timestamps(seg: &[u8]) -> Option<(u32, u32)> {
    let mut ts = None;
    for_each_option(seg, |k, at, len| {
        if k == kind::TIMESTAMP && len == 10 {
            ts = Some((get32(seg, at + 2), get32(seg, at + 6)));
        }
    });
    ts
}

/// Maps the edges of every SACK block with `map`, deleting blocks that come out empty (later
/// blocks move down, the freed tail and, with no block left, the whole option become NOPs; the
/// header length never changes). Returns the number of blocks removed.
pub fn map_sack(seg: &mut [u8], map: &SeqMap) -> u32 {
    let mut found = None;
    for_each_option(seg, |k, at, len| {
        if k == kind::SACK && found.is_none() {
            found = Some((at, len));
        }
    });
    let Some((at, len)) = found else { return 0 };
    let hl = header_len(seg);
    let mut options = [0u8; 40];
    let n = hl - OPTIONS;
    options[..n].copy_from_slice(&seg[OPTIONS..hl]);
    let start = at - OPTIONS;
    let blocks = (len - 2) / 8;
    let mut kept = 0usize;
    let mut removed = 0u32;
    for b in 0..blocks {
        let edge = start + 2 + b * 8;
        let left = map.map_ack(get32(seg, OPTIONS + edge));
        let right = map.map_ack(get32(seg, OPTIONS + edge + 4));
        if dist(right, left) <= 0 {
            removed += 1;
            continue;
        }
        let to = start + 2 + kept * 8;
        options[to..to + 4].copy_from_slice(&left.to_be_bytes());
        options[to + 4..to + 8].copy_from_slice(&right.to_be_bytes());
        kept += 1;
    }
    if kept == 0 {
        options[start..start + len].fill(kind::NO_OPERATION);
    } else {
        let new_len = 2 + kept * 8;
        // The option length byte is written as a u8: new_len <= len <= 40.
        options[start + 1] = u8::try_from(new_len).unwrap_or(u8::MAX);
        options[start + new_len..start + len].fill(kind::NO_OPERATION);
    }
    // Options start at an even offset and are a whole number of 32-bit words.
    let mut delta = Delta::ZERO;
    for w in (0..n).step_by(2) {
        let old = get16(seg, OPTIONS + w);
        let new = u16::from_be_bytes([options[w], options[w + 1]]);
        delta = delta.replace16(old, new);
    }
    seg[OPTIONS..hl].copy_from_slice(&options[..n]);
    let sum = delta.apply(get16(seg, CHECKSUM));
    seg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
    removed
}

/// Lowers the MSS option of a SYN-ACK so that a client segment plus the header fits `mtu`:
/// `min(mss, mtu - 40) - len`, never below [`MSS_FLOOR`] (then it is left alone and oversized
/// first segments are split). Returns true when the option was changed.
pub fn clamp_mss(seg: &mut [u8], len: u32, mtu: u16) -> bool {
    let mut found = None;
    for_each_option(seg, |k, at, l| {
        if k == kind::MAX_SEGMENT_SIZE && l == 4 && found.is_none() {
            found = Some(at);
        }
    });
    let Some(at) = found else { return false };
    let old = get16(seg, at + 2);
    let ceiling = mtu.saturating_sub(40);
    let Some(new) = old.min(ceiling).checked_sub(u16::try_from(len).unwrap_or(u16::MAX)) else { return false };
    if new < MSS_FLOOR || new == old {
        return false;
    }
    // The value sits at `at + 2`; with `at` odd it straddles two 16-bit words of the checksum.
    let words = if at % 2 == 0 { [at + 2, at + 2] } else { [at + 1, at + 3] };
    let before = [get16(seg, words[0]), get16(seg, words[1])];
    seg[at + 2..at + 4].copy_from_slice(&new.to_be_bytes());
    let mut delta = Delta::ZERO.replace16(before[0], get16(seg, words[0]));
    if words[1] != words[0] {
        delta = delta.replace16(before[1], get16(seg, words[1]));
    }
    let sum = delta.apply(get16(seg, CHECKSUM));
    seg[CHECKSUM..CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

const FAST_OPEN: u8 = 34;

/// True when the segment carries a TCP Fast Open option.
pub fn has_fast_open(seg: &[u8]) -> bool {
    let mut found = false;
    for_each_option(seg, |k, _, _| found |= k == FAST_OPEN);
    found
}

/// Turns a TCP Fast Open option into NOPs (the SYN's data is dropped by the caller): the client
/// sends that data again at `C`, where it gets the header.
pub fn strip_fast_open(seg: &mut [u8]) -> bool {
    let mut found = None;
    for_each_option(seg, |k, at, len| {
        if k == FAST_OPEN && found.is_none() {
            found = Some((at, len));
        }
    });
    let Some((at, len)) = found else { return false };
    seg[at..at + len].fill(kind::NO_OPERATION);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(c: u32, len: u32) -> SeqMap {
        SeqMap { c, len, state: HeaderState::InFlight }
    }

    #[test]
    fn ack_map_clamps_inside_the_header_and_wraps() {
        let m = map(1001, 36);
        assert_eq!(m.map_ack(1000), 1000);
        assert_eq!(m.map_ack(1001), 1001);
        assert_eq!(m.map_ack(1020), 1001);
        assert!(m.clamps(1020) && !m.clamps(1001) && !m.clamps(1037));
        assert_eq!(m.map_ack(1037), 1001);
        assert_eq!(m.map_ack(1137), 1101);
        let w = map(0xFFFF_FFF1, 36);
        assert_eq!(w.map_ack(0x0000_0079), 0x0000_0055);
        assert_eq!(w.map_ack(0x0000_0010), 0xFFFF_FFF1);
        assert_eq!(w.map_ack(0xFFFF_FFF0), 0xFFFF_FFF0);
    }

    #[test]
    fn probe_sources_match_prefixes() {
        let p = ProxyProtocol { probe_sources: vec![(Ipv4Addr::new(198, 18, 0, 64), 26)], ..Default::default() };
        assert!(p.is_probe(Ipv4Addr::new(198, 18, 0, 100)));
        assert!(!p.is_probe(Ipv4Addr::new(198, 18, 0, 7)));
        let all = ProxyProtocol { probe_sources: vec![(Ipv4Addr::UNSPECIFIED, 0)], ..Default::default() };
        assert!(all.is_probe(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn the_design_test_vector() {
        let mut tlvs = Tlvs::default();
        tlvs.push(0xEE, &[0x01, 0x78, 0x56, 0x34, 0x12]).unwrap();
        let mut out = [0u8; MAX_HEADER_LEN];
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 4), 50000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 10), 443);
        let n = build_header(&mut out, false, src, dst, &tlvs, 107).unwrap();
        let expected: [u8; 36] = [
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x14, 10, 0, 1,
            4, 10, 0, 2, 10, 0xC3, 0x50, 0x01, 0xBB, 0xEE, 0x00, 0x05, 0x01, 0x78, 0x56, 0x34, 0x12,
        ];
        assert_eq!(&out[..n], &expected);
        assert_eq!(build_header(&mut out, false, src, dst, &tlvs, 35), Err(TooLong));
        let n = build_header(&mut out, true, src, dst, &tlvs, 107).unwrap();
        assert_eq!(&out[..n], &[0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0, 0, 0]);
        // An odd length is padded with a NOOP TLV.
        let mut odd = Tlvs::default();
        odd.push(0xE1, &[1, 2]).unwrap();
        let n = build_header(&mut out, false, src, dst, &odd, 107).unwrap();
        assert_eq!(n % 2, 0);
        assert_eq!(n, 28 + 5 + 3);
    }
}
