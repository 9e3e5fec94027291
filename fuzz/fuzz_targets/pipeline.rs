//! The whole datapath over in-memory I/O: sequences of frames into two workers, then the
//! invariants that must hold whatever the frames were.
//!
//! One `testkit::Harness` per process (the standard model: networks A and B with the same
//! /24, one approved endpoint, PROXY v2 on for the service's TCP flows, two workers with 4096 flow slots each, neighbours learned),
//! reused across inputs, so flows created by one input are met by later ones. An input is a
//! sequence of records:
//!
//! ```text
//! selector: u8 | word: u16 big-endian | (word & 0x0fff) bytes of frame (truncated at the input's end)
//! ```
//!
//! Selector bits:
//! - bit 0: worker (0 or 1) that receives the frame;
//! - bit 1: port: 0 = network A (consumers), 1 = network B (provider);
//! - bit 2: fix the frame up first: clamp the IPv4 total length (and UDP length) to what is
//!   there, then recompute the IPv4 header and TCP/UDP/ICMP checksums;
//! - bit 3: batch: do not run the workers after this frame (the next frames share its burst);
//! - bit 4: reply: rewrite the frame as an answer to the last IPv4 frame the gateway sent on
//!   that port in this input (addresses and ports swapped, echo identifier copied, and for an
//!   ICMP error the quoted packet replaced by that frame) — how the fuzzer gets past the random
//!   NAT port to established flows and ICMP error translation;
//! - bits 5–7: advance the clock before this frame, by 0, 4, 16, 64, 128, 304, 1024 or 8000 s
//!   (in four steps, polling the workers after each, so ARP retries run out and flows expire).
//!
//! Bits 12–15 of the length word, before the frame:
//! - bit 15: publish the standard model again with the endpoint Approved, Pending, Rejected or
//!   Disconnected (bits 12–13), as the control plane does: flows of a revoked endpoint are reset;
//! - bit 14: poll the workers until the expiry sweep has visited every flow slot.
//!
//! A model published by one input is replaced by the approved one at the start of the next.
//!
//! After the input: run the workers until idle and check, on the counters summed over both
//! workers, `handoff_out == handoff_in` and
//! `rx == forwarded + local + Σ drops + frames waiting for ARP` (with nothing waiting, that is
//! `rx == forwarded + local + Σ drops`), that `rx` matches the I/O backend's count, that no
//! packet buffer leaked, and that every frame sent parses with etherparse, carries the
//! gateway's MAC of its port as source and, if IPv4, a valid header checksum.
//!
//! `PIPELINE_DEBUG=1` prints the non-zero counters (cumulative) after each input.
//!
//! Because the harness lives across inputs, a crash that depends on state left by earlier
//! inputs may not reproduce from its artifact alone; the final check covers everything so far.
#![no_main]

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::time::Duration;

use datapath::{AllowApproved, ConnectionState, Event, WorkerConfig};
use io::PortId;
use libfuzzer_sys::fuzz_target;
use testkit::{standard_model, Harness, APPROVED, GW_MAC_A, GW_MAC_B, PORT_A, PORT_B};

/// The standard model with PROXY v2 on for the service: its TCP flows take the PROXY paths
/// (header insertion, sequence and ACK/SACK mapping, MSS clamping, the gateway's retransmissions).
fn model(state: ConnectionState) -> datapath::Model {
    let mut m = standard_model(state, 2);
    m.services[0].proxy = Some(datapath::ProxyProtocol::default());
    m
}
use wire::checksum;

const MAX_FRAMES: usize = 64;
/// Fits a pool buffer (2304 bytes less 128 of headroom).
const MAX_FRAME_LEN: usize = 2048;
/// Flow slots per worker (the default is 65536).
const FLOW_CAPACITY: usize = 4096;
const ADVANCE_SECS: [u64; 8] = [0, 4, 16, 64, 128, 304, 1024, 8000];

struct State {
    h: Harness,
    /// Free pool buffers when idle, right after set-up.
    pool_total: usize,
    /// The last IPv4 frame the gateway sent on A and on B during the current input.
    last: [Option<Vec<u8>>; 2],
    sent: u64,
    /// A model other than the standard approved one is published.
    model_changed: bool,
    /// `PIPELINE_DEBUG=1`: print the non-zero counters after each input (to see what seeds reach).
    debug: bool,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn setup() -> State {
    // `Harness::new` with a smaller flow table, so that a full sweep (bit 14), a model
    // revalidation and a full table all stay cheap enough to be fuzzed.
    let config = |_| WorkerConfig { flow_capacity: FLOW_CAPACITY, ..WorkerConfig::default() };
    let mut h = Harness::build(model(APPROVED), 2, config, |_| AllowApproved);
    h.learn_neighbors();
    let pool_total = h.pool.available();
    State {
        h,
        pool_total,
        last: [None, None],
        sent: 0,
        model_changed: false,
        debug: std::env::var_os("PIPELINE_DEBUG").is_some(),
    }
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let st = cell.get_or_insert_with(setup);
        one_input(st, data);
    });
});

fn one_input(st: &mut State, data: &[u8]) {
    st.last = [None, None];
    if st.model_changed {
        st.h.publish(model(APPROVED));
        st.model_changed = false;
    }
    let mut rest = data;
    let mut frames = 0;
    while rest.len() >= 3 && frames < MAX_FRAMES {
        let selector = rest[0];
        let word = u16::from_be_bytes([rest[1], rest[2]]);
        let len = usize::from(word & 0x0fff);
        rest = &rest[3..];
        let n = len.min(rest.len());
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        frames += 1;

        let advance = ADVANCE_SECS[usize::from(selector >> 5)];
        if advance > 0 {
            st.h.run();
            collect(st);
            let step = Duration::from_secs(advance) / 4;
            for _ in 0..4 {
                st.h.advance(step);
                for w in &mut st.h.workers {
                    w.poll();
                }
            }
            collect(st);
        }

        if word & 0x8000 != 0 {
            let state = [
                ConnectionState::Approved,
                ConnectionState::Pending,
                ConnectionState::Rejected,
                ConnectionState::Disconnected,
            ][usize::from((word >> 12) & 3)];
            st.h.publish(model(state));
            st.model_changed = true;
            st.h.run();
            collect(st);
        }
        if word & 0x4000 != 0 {
            st.h.run();
            st.h.sweep();
            collect(st);
        }

        let worker = usize::from(selector & 1);
        let side = usize::from((selector >> 1) & 1);
        let (port, gw_mac) = if side == 0 { (PORT_A, GW_MAC_A) } else { (PORT_B, GW_MAC_B) };
        let mut frame = bytes[..bytes.len().min(MAX_FRAME_LEN)].to_vec();
        if selector & 0x10 != 0 {
            if let Some(last) = &st.last[side] {
                reply(&mut frame, last, gw_mac);
            }
        }
        if selector & 0x04 != 0 {
            fix_up(&mut frame);
        }
        // A full queue or pool is not an error of the datapath: the frame is just not received.
        let _ = st.h.workers[worker].io_mut().inject(port, &frame);
        if selector & 0x08 == 0 {
            st.h.run();
            collect(st);
        }
    }
    st.h.run();
    collect(st);
    check(st);
    if st.debug {
        let c = st.h.counters();
        let events = Event::ALL.iter().filter(|e| c.get(**e) > 0).map(|e| format!("{}={}", e.name(), c.get(*e)));
        let drops = datapath::DropReason::ALL
            .iter()
            .filter(|r| c.dropped(**r) > 0)
            .map(|r| format!("{}={}", r.name(), c.dropped(*r)));
        eprintln!("[pipeline] {}", events.chain(drops).collect::<Vec<_>>().join(" "));
    }
}

/// Drains every worker's tx queues and checks each frame sent.
fn collect(st: &mut State) {
    for w in 0..st.h.workers.len() {
        for (side, port) in [(0, PORT_A), (1, PORT_B)] {
            for frame in st.h.workers[w].io_mut().take_tx(port) {
                check_sent(port, &frame);
                st.sent += 1;
                if ipv4_at(&frame).is_some() {
                    st.last[side] = Some(frame);
                }
            }
        }
    }
}

fn check_sent(port: PortId, frame: &[u8]) {
    let packet = etherparse::SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("the gateway sent a frame etherparse rejects ({e}) on {port:?}: {frame:02x?}"));
    let gw_mac = if port == PORT_A { GW_MAC_A } else { GW_MAC_B };
    assert_eq!(frame[6..12], gw_mac, "frame sent on {port:?} with a source MAC not the gateway's: {frame:02x?}");
    if let Some(etherparse::NetSlice::Ipv4(ip)) = &packet.net {
        // Summed over the raw header bytes: etherparse's `Ipv4Header` has no field for the
        // reserved flag bit, so `to_header().calc_header_checksum()` is wrong when it is set.
        let header = ip.header().slice();
        let mut sum: u32 = header.chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff, "IPv4 header checksum of a frame sent on {port:?}: {frame:02x?}");
    }
}

fn check(st: &State) {
    let c = st.h.counters();
    assert_eq!(c.get(Event::HandoffOut), c.get(Event::HandoffIn), "every hand-off arrived: {c:?}");
    let waiting: usize = st.h.workers.iter().map(|w| w.neighbor_waiting()).sum();
    let received = c.get(Event::Received);
    let outcomes = c.get(Event::Forwarded) + c.get(Event::Local) + c.total_drops();
    assert_eq!(
        received,
        outcomes + waiting as u64,
        "conservation: rx = forwarded + local + drops + waiting-for-ARP ({waiting} waiting): {c:?}"
    );
    let io_rx: u64 =
        st.h.workers.iter().flat_map(|w| [PORT_A, PORT_B].map(|p| io::PacketIo::stats(w.io(), p).rx_packets)).sum();
    assert_eq!(received, io_rx, "the datapath counted every frame the backend handed it");
    let io_tx: u64 =
        st.h.workers.iter().flat_map(|w| [PORT_A, PORT_B].map(|p| io::PacketIo::stats(w.io(), p).tx_packets)).sum();
    // The learn_neighbors ARP replies were sent before `sent` started counting.
    let learned = 2 * st.h.workers.len() as u64;
    assert_eq!(io_tx, st.sent + learned, "every frame sent reached the tx queue and was drained");
    assert_eq!(
        st.h.pool.available() + waiting,
        st.pool_total,
        "no packet buffer leaked (idle, {waiting} frames waiting for ARP)"
    );
}

/// Where the IPv4 header starts and ends, and the L4 bounds (clamped to the frame).
#[derive(Clone, Copy, Debug)]
struct Ip {
    l3: usize,
    l4: usize,
    end: usize,
    protocol: u8,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

fn ipv4_at(f: &[u8]) -> Option<Ip> {
    let l3 = match be16(f, 12)? {
        0x0800 => 14,
        0x8100 if be16(f, 16)? == 0x0800 => 18,
        _ => return None,
    };
    let first = *f.get(l3)?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || f.len() < l3 + ihl {
        return None;
    }
    let total = usize::from(be16(f, l3 + 2)?);
    let end = (l3 + total).min(f.len()).max(l3 + ihl);
    Some(Ip { l3, l4: l3 + ihl, end, protocol: f[l3 + 9] })
}

fn addr(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

/// Clamps the IPv4 total length and UDP length to the bytes present, then fills in the IPv4
/// header checksum and the TCP, UDP or ICMP checksum.
fn fix_up(f: &mut [u8]) {
    let Some(ip) = ipv4_at(f) else { return };
    let available = f.len() - ip.l3;
    let total = usize::from(be16(f, ip.l3 + 2).unwrap_or(0));
    if total > available || total < ip.l4 - ip.l3 {
        put16(f, ip.l3 + 2, u16::try_from(available).unwrap_or(u16::MAX));
    }
    let Some(ip) = ipv4_at(f) else { return };
    put16(f, ip.l3 + 10, 0);
    let sum = checksum::data(&f[ip.l3..ip.l4]);
    put16(f, ip.l3 + 10, sum);
    let (src, dst) = (addr(f, ip.l3 + 12), addr(f, ip.l3 + 16));
    let segment = &mut f[ip.l4..ip.end];
    let len = segment.len();
    match ip.protocol {
        6 if len >= 20 => {
            put16(segment, 16, 0);
            let pseudo = checksum::pseudo_header_v4(src, dst, 6, u16::try_from(len).unwrap_or(u16::MAX));
            let sum = checksum::finish(pseudo + checksum::sum(segment));
            put16(segment, 16, sum);
        }
        17 if len >= 8 => {
            let mut udp_len = usize::from(be16(segment, 4).unwrap_or(0));
            if udp_len < 8 || udp_len > len {
                udp_len = len;
                put16(segment, 4, u16::try_from(len).unwrap_or(u16::MAX));
            }
            put16(segment, 6, 0);
            let pseudo = checksum::pseudo_header_v4(src, dst, 17, u16::try_from(udp_len).unwrap_or(u16::MAX));
            let sum = checksum::udp_nonzero(checksum::finish(pseudo + checksum::sum(&segment[..udp_len])));
            put16(segment, 6, sum);
        }
        1 if len >= 4 => {
            put16(segment, 2, 0);
            let sum = checksum::data(segment);
            put16(segment, 2, sum);
        }
        _ => {}
    }
}

/// Turns `f` into an answer to `last` (a frame the gateway sent on the same port): destination
/// MAC the gateway's, addresses and ports swapped, the echo identifier copied, or for an ICMP
/// error, `last`'s IPv4 packet quoted.
fn reply(f: &mut Vec<u8>, last: &[u8], gw_mac: [u8; 6]) {
    if let Some(d) = f.get_mut(..6) {
        d.copy_from_slice(&gw_mac);
    }
    let (Some(ip), Some(was)) = (ipv4_at(f), ipv4_at(last)) else { return };
    let (old_src, old_dst) = (addr(last, was.l3 + 12), addr(last, was.l3 + 16));
    f[ip.l3 + 12..ip.l3 + 16].copy_from_slice(&old_dst.octets());
    f[ip.l3 + 16..ip.l3 + 20].copy_from_slice(&old_src.octets());
    let sent = &last[was.l4..was.end];
    match ip.protocol {
        6 | 17 => {
            if let (Some(d), Some(s)) = (f.get_mut(ip.l4..ip.l4 + 4), sent.get(..4)) {
                d[..2].copy_from_slice(&s[2..4]);
                d[2..].copy_from_slice(&s[..2]);
            }
        }
        1 => match f.get(ip.l4) {
            Some(0 | 8) => {
                if let (Some(d), Some(s)) = (f.get_mut(ip.l4 + 4..ip.l4 + 6), sent.get(4..6)) {
                    d.copy_from_slice(s);
                }
            }
            Some(3 | 11 | 12) => {
                let quoted = &last[was.l3..was.end];
                let room = f.len().saturating_sub(ip.l4 + 8);
                let keep = quoted.len().min(room.max(was.l4 - was.l3 + 8));
                f.resize(ip.l4 + 8, 0);
                f.extend_from_slice(&quoted[..keep]);
                f.truncate(MAX_FRAME_LEN);
                let total = u16::try_from(f.len() - ip.l3).unwrap_or(u16::MAX);
                put16(f, ip.l3 + 2, total);
            }
            _ => {}
        },
        _ => {}
    }
}
