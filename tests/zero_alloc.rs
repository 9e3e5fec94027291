//! Zero heap allocations per packet on the fast path (conventions, point 4).
//!
//! A counting global allocator wraps the system allocator and counts `alloc`, `alloc_zeroed` and
//! `realloc` calls while a flag is set. The scenario: the standard model, one worker, neighbours
//! learned, 1,000 established flows each of TCP (handshake done), UDP and ICMP echo; then several
//! hundred bursts of 32 pre-built frames of those flows, both directions, are injected, polled
//! and drained with the clock moving on. The measured window must not allocate once, and every
//! frame must be forwarded.
//!
//! Its own test binary with `harness = false`: one thread, so nothing else allocates while the
//! window is open.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use datapath::{DropReason, Event};
use io::{PacketBuf, PortId, BURST};
use testkit::*;

/// Counts allocations while [`COUNTING`] is set.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// When set, the first counted allocation prints a backtrace (and stops counting).
static TRACE_FIRST: AtomicBool = AtomicBool::new(false);

impl CountingAllocator {
    fn count(&self) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if TRACE_FIRST.swap(false, Ordering::Relaxed) {
                // Capturing and printing allocate: stop counting first so we do not recurse.
                COUNTING.store(false, Ordering::Relaxed);
                eprintln!("first allocation in the measured window:\n{}", std::backtrace::Backtrace::force_capture());
            }
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the counting only touches atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count();
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count();
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const FLOWS_PER_PROTOCOL: u16 = 1000;
const BURSTS: usize = 600;

/// A pre-built frame and the port it arrives on.
struct Frame {
    port: PortId,
    bytes: Vec<u8>,
}

/// Sets up the flows and returns one frame per flow and direction, in an interleaved order.
fn establish(h: &mut Harness) -> Vec<Frame> {
    let backend = SocketAddrV4::new(BACKEND.ip, BACKEND_PORT);
    let mut forward = Vec::new();
    let mut reverse = Vec::new();
    for i in 0..FLOWS_PER_PROTOCOL {
        // TCP: SYN, SYN-ACK, ACK; then data both ways.
        let (consumer, endpoint) = to_endpoint(10_000 + i);
        let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 1000, Flags::syn(), &[]));
        assert_eq!(out.b.len(), 1, "SYN {i} forwarded");
        let nat = seen(&out.b[0]).src;
        let out = h.exchange(PORT_B, &tcp(l2_backend(), backend, nat, 64, 5000, Flags::syn_ack(1001), &[]));
        assert_eq!(out.a.len(), 1, "SYN-ACK {i} forwarded");
        let out = h.exchange(PORT_A, &tcp(l2_consumer(), consumer, endpoint, 64, 1001, Flags::ack(5001), &[]));
        assert_eq!(out.b.len(), 1, "ACK {i} forwarded");
        let data = Flags { psh: true, ..Flags::ack(5001) };
        forward.push(Frame { port: PORT_A, bytes: tcp(l2_consumer(), consumer, endpoint, 64, 1001, data, b"request") });
        let data = Flags { psh: true, ..Flags::ack(1008) };
        reverse.push(Frame { port: PORT_B, bytes: tcp(l2_backend(), backend, nat, 64, 5001, data, b"response") });

        // UDP.
        let (consumer, endpoint) = to_endpoint(20_000 + i);
        let out = h.exchange(PORT_A, &udp(l2_consumer(), consumer, endpoint, 64, b"first"));
        assert_eq!(out.b.len(), 1, "UDP {i} forwarded");
        let nat = seen(&out.b[0]).src;
        forward.push(Frame { port: PORT_A, bytes: udp(l2_consumer(), consumer, endpoint, 64, b"datagram") });
        reverse.push(Frame { port: PORT_B, bytes: udp(l2_backend(), backend, nat, 64, b"answer") });

        // ICMP echo.
        let ident = 30_000 + i;
        let out = h.exchange(PORT_A, &echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, ident, 1, b"ping"));
        assert_eq!(out.b.len(), 1, "echo request {i} forwarded");
        let nat_ident = seen(&out.b[0]).src.port();
        forward.push(Frame {
            port: PORT_A,
            bytes: echo(l2_consumer(), CONSUMER.ip, ENDPOINT_IP, 64, true, ident, 2, b"ping"),
        });
        reverse.push(Frame {
            port: PORT_B,
            bytes: echo(l2_backend(), BACKEND.ip, NAT_IP, 64, false, nat_ident, 2, b"ping"),
        });
    }
    let c = h.counters();
    assert_eq!(c.get(Event::FlowsCreated), 3 * u64::from(FLOWS_PER_PROTOCOL));
    assert_eq!(c.total_drops(), 0, "setup dropped nothing");
    // Interleave: consumer → service and backend → consumer alternate within every burst.
    forward.into_iter().zip(reverse).flat_map(|(f, r)| [f, r]).collect()
}

/// Injects, polls and drains `bursts` bursts of frames taken in turn from `frames`, starting at
/// `*next`; returns the number of frames that left the worker.
fn run_bursts(h: &mut Harness, frames: &[Frame], next: &mut usize, bursts: usize) -> u64 {
    let mut sent = 0u64;
    for _ in 0..bursts {
        let worker = &mut h.workers[0];
        for _ in 0..BURST {
            let frame = &frames[*next];
            *next = (*next + 1) % frames.len();
            assert!(worker.io_mut().inject(frame.port, &frame.bytes), "rx queue or pool full");
        }
        worker.poll();
        for port in [PORT_A, PORT_B] {
            worker.io_mut().drain_tx(port, |buf| {
                sent += u64::from(!buf.is_empty());
            });
        }
        h.clock.advance(Duration::from_millis(1));
    }
    sent
}

fn main() -> ExitCode {
    let mut h = Harness::new(standard_model(APPROVED, 1), 1);
    h.learn_neighbors();
    let frames = establish(&mut h);
    let mut next = 0;

    // Warm up: one pass over every flow, so whatever is lazily initialised is now.
    let warm_up = frames.len().div_ceil(BURST);
    assert_eq!(run_bursts(&mut h, &frames, &mut next, warm_up), (warm_up * BURST) as u64);

    // The allocator really counts: one box, one allocation.
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    drop(std::hint::black_box(Box::new(7u64)));
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 1, "the counting allocator is installed");

    let before = h.counters();
    let trace = std::env::var_os("ZERO_ALLOC_TRACE").is_some();
    TRACE_FIRST.store(trace, Ordering::Relaxed);
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    let sent = run_bursts(&mut h, &frames, &mut next, BURSTS);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let after = h.counters();

    let injected = (BURSTS * BURST) as u64;
    let forwarded = after.get(Event::Forwarded) - before.get(Event::Forwarded);
    let received = after.get(Event::Received) - before.get(Event::Received);
    let created = after.get(Event::FlowsCreated) - before.get(Event::FlowsCreated);
    let drops = after.total_drops() - before.total_drops();
    let mut failures = Vec::new();
    if allocations != 0 {
        failures.push(format!(
            "{allocations} heap allocations in {injected} fast-path packets (rerun with ZERO_ALLOC_TRACE=1 for a \
             backtrace of the first)"
        ));
    }
    if received != injected || forwarded != injected || sent != injected {
        failures.push(format!("injected {injected}, received {received}, forwarded {forwarded}, sent {sent}"));
    }
    if created != 0 {
        failures.push(format!("{created} flows created: the frames should all hit established flows"));
    }
    if drops != 0 {
        let reasons: Vec<_> = DropReason::ALL
            .iter()
            .filter(|r| after.dropped(**r) != before.dropped(**r))
            .map(|r| format!("{}={}", r.name(), after.dropped(*r) - before.dropped(*r)))
            .collect();
        failures.push(format!("{drops} drops: {}", reasons.join(", ")));
    }
    if failures.is_empty() {
        println!(
            "zero_alloc: {injected} packets over {} established flows (TCP, UDP, ICMP; both directions) in \
             {BURSTS} bursts of {BURST}: 0 heap allocations, all forwarded",
            frames.len() / 2
        );
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("zero_alloc: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
