//! End-to-end tests over a veth pair between two network namespaces created per test.
//!
//! Namespace A holds `va` (198.18.0.1, fd00:198:18::1) and the "peer" side: raw injection and
//! capture sockets, TCP/UDP senders. Namespace B holds `vb` (198.18.0.2, fd00:198:18::2), where
//! the backend under test opens its sockets. Nothing is ever sent outside these namespaces.
//!
//! These tests need root (namespaces, veth, AF_PACKET); without it they fail with a message
//! saying so rather than skipping.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test helpers cast small, known values for C APIs"
)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use io::{Burst, PacketBuf, PacketIo, PortId};
use io_afpacket::{AfPacketError, AfPacketIo, RingConfig};

const P0: PortId = PortId(0);
const OTHERHOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const PEER_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const OUR_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];
const MARKER_TYPE: [u8; 2] = [0x88, 0xb5];

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test needs root (it creates network namespaces and veth pairs and opens \
             AF_PACKET sockets); run it as root, e.g. `sudo -E cargo test -p overlink-io-afpacket`"
        );
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run ip");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

static RIGS: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair; deleted on drop (also on panic).
struct Rig {
    a: String,
    b: String,
}

impl Rig {
    fn new() -> Rig {
        require_root();
        let n = RIGS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let rig = Rig { a: format!("olaf-{pid}-{n}-a"), b: format!("olaf-{pid}-{n}-b") };
        let (a, b) = (rig.a.as_str(), rig.b.as_str());
        sh(&["ip", "netns", "add", a]);
        sh(&["ip", "netns", "add", b]);
        sh(&["ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b]);
        sh(&["ip", "-n", a, "addr", "add", "198.18.0.1/24", "dev", "va"]);
        sh(&["ip", "-n", b, "addr", "add", "198.18.0.2/24", "dev", "vb"]);
        sh(&["ip", "-n", a, "addr", "add", "fd00:198:18::1/64", "dev", "va", "nodad"]);
        sh(&["ip", "-n", b, "addr", "add", "fd00:198:18::2/64", "dev", "vb", "nodad"]);
        for (ns, dev) in [(a, "va"), (b, "vb"), (a, "lo"), (b, "lo")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Static neighbours: no ARP/ND delay before the first datagram.
        let (mac_a, mac_b) = (rig.mac(a, "va"), rig.mac(b, "vb"));
        for (ns, dev, addr, mac) in [
            (a, "va", "198.18.0.2", &mac_b),
            (a, "va", "fd00:198:18::2", &mac_b),
            (b, "vb", "198.18.0.1", &mac_a),
            (b, "vb", "fd00:198:18::1", &mac_a),
        ] {
            sh(&["ip", "-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent"]);
        }
        rig
    }

    /// The MAC of `dev` in namespace `ns`, as `ip` prints it.
    fn mac(&self, ns: &str, dev: &str) -> String {
        let out = Command::new("ip").args(["-n", ns, "-o", "link", "show", dev]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("a MAC").to_owned()
    }

    /// Runs `f` on a thread that has entered namespace `ns`; sockets it creates stay there.
    fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
                // SAFETY: setns on a valid namespace fd only changes this thread's namespace;
                // the thread is ours and ends after `f`.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Rig::run_in(&self.a, f)
    }

    fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Rig::run_in(&self.b, f)
    }

    /// The backend on `vb`.
    fn open_b(&self, worker: usize, workers: usize) -> AfPacketIo {
        self.in_b(|| AfPacketIo::open(&["vb"], worker, workers, RingConfig::default())).expect("open AfPacketIo on vb")
    }

    /// A plain capture/injection socket on `va`.
    fn raw_a(&self) -> RawSock {
        self.in_a(|| RawSock::open("va"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A plain (non-ring) AF_PACKET socket, as the independent peer.
struct RawSock(OwnedFd);

impl RawSock {
    fn open(iface: &str) -> RawSock {
        // SAFETY: plain socket creation; checked below.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(0x0003u16.to_be())) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is fresh and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {iface}");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0003u16.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval { tv_sec: 0, tv_usec: 20_000 };
        // SAFETY: `tv` is a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        assert_eq!(rc, 0);
        let size: libc::c_int = 16 << 20;
        // SAFETY: `size` is a valid int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        RawSock(fd)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: `frame` is a valid buffer of the given length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// One frame, or `None` after the receive timeout.
    fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }
}

/// A test frame: Ethernet with a local experimental EtherType, tagged `tag`, numbered `seq`.
fn marker(src: [u8; 6], tag: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&OTHERHOST);
    f.extend_from_slice(&src);
    f.extend_from_slice(&MARKER_TYPE);
    f.extend_from_slice(b"OLAF");
    f.push(tag);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u8;
    while f.len() < len.max(60) {
        f.push(i);
        i = i.wrapping_add(7);
    }
    f
}

/// The (tag, seq) of a marker frame, looking through up to two VLAN tags.
fn marker_id(f: &[u8]) -> Option<(u8, u32)> {
    let mut at = 12;
    while f.get(at..at + 2).is_some_and(|t| t == [0x81, 0x00] || t == [0x88, 0xa8]) {
        at += 4;
    }
    if f.get(at..at + 2)? != MARKER_TYPE || f.get(at + 2..at + 6)? != b"OLAF" {
        return None;
    }
    let seq = f.get(at + 7..at + 11)?;
    Some((f[at + 6], u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]])))
}

/// Polls `io` until `want` frames matching `keep` arrived or `timeout` passed; then keeps
/// polling for `settle` more to catch extras.
fn collect(
    io: &mut AfPacketIo,
    want: usize,
    timeout: Duration,
    settle: Duration,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut settle_until: Option<Instant> = None;
    loop {
        let mut burst = Burst::new();
        io.rx_burst(P0, &mut burst);
        let empty = burst.is_empty();
        for buf in burst.drain(..) {
            if keep(buf.data()) {
                got.push(buf.data().to_vec());
            }
        }
        let now = Instant::now();
        if got.len() >= want && settle_until.is_none() {
            settle_until = Some(now + settle);
        }
        if settle_until.is_some_and(|t| now >= t) || now >= deadline {
            return got;
        }
        if empty {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Verifies a TCP/UDP checksum over IPv4/IPv6 independently: the one's complement sum of
/// pseudo-header and segment must be 0xFFFF. Returns `None` for other frames.
fn l4_checksum_ok(f: &[u8]) -> Option<bool> {
    fn add(acc: &mut u64, b: &[u8]) {
        for (i, byte) in b.iter().enumerate() {
            *acc += if i % 2 == 0 { u64::from(*byte) << 8 } else { u64::from(*byte) };
        }
    }
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let mut acc = 0u64;
    let (proto, seg) = match ethertype {
        0x0800 => {
            let ip = &f[14..];
            let ihl = usize::from(ip[0] & 15) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            add(&mut acc, &ip[12..20]);
            (ip[9], &ip[ihl..total])
        }
        0x86dd => {
            let ip = &f[14..];
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            add(&mut acc, &ip[8..40]);
            (ip[6], &ip[40..40 + plen])
        }
        _ => return None,
    };
    if proto != 6 && proto != 17 {
        return None;
    }
    acc += u64::from(proto) + seg.len() as u64;
    add(&mut acc, seg);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    Some(acc == 0xffff)
}

fn udp_frame(sport: u16, payload: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(PEER_SRC, OTHERHOST)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(sport, 7);
    let mut out = Vec::new();
    builder.write(&mut out, payload).unwrap();
    out
}

#[test]
fn missing_interface_is_a_clear_error() {
    let rig = Rig::new();
    let err = rig.in_b(|| AfPacketIo::open(&["vb", "olaf-nope0"], 0, 1, RingConfig::default())).unwrap_err();
    assert!(matches!(err, AfPacketError::NoSuchInterface { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("olaf-nope0") && msg.contains("no such interface"), "{msg}");
}

#[test]
fn mac_mtu_and_offload_warnings() {
    let rig = Rig::new();
    rig.in_b(|| sh(&["ip", "link", "set", "vb", "mtu", "1400"]));
    let io = rig.open_b(0, 1);
    assert_eq!(io.mtu(P0), 1400);
    let mac = rig.mac(&rig.b, "vb");
    let want: Vec<u8> = mac.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    assert_eq!(io.mac(P0).to_vec(), want);

    set_gro(&rig, true);
    let warnings = rig.in_b(|| io_afpacket::offload_warnings("vb"));
    assert!(
        warnings.iter().any(|w| w.contains("GRO is on for vb") && w.contains("ethtool -K vb gro off")),
        "{warnings:?}"
    );
    assert!(warnings.iter().any(|w| w.contains("veth")), "{warnings:?}");
    assert_eq!(io.offload_warnings(P0), warnings);
    set_gro(&rig, false);
    let warnings = rig.in_b(|| io_afpacket::offload_warnings("vb"));
    assert!(!warnings.iter().any(|w| w.contains("GRO")), "{warnings:?}");
    let missing = rig.in_b(|| io_afpacket::offload_warnings("olaf-nope0"));
    assert!(missing.iter().any(|w| w.contains("olaf-nope0")), "{missing:?}");
}

/// `ethtool -K vb gro on|off` in namespace B (there is no ethtool binary on the test host).
fn set_gro(rig: &Rig, on: bool) {
    rig.in_b(|| {
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        let mut value = EthtoolValue { cmd: 0x2c, data: u32::from(on) }; // ETHTOOL_SGRO
                                                                         // SAFETY: plain socket creation; checked below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0);
        // SAFETY: `fd` is fresh and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid ifreq.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"vb") {
            *d = *s as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
        // SAFETY: `req` names an interface and points at a live ethtool_value.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
        assert_eq!(rc, 0, "ETHTOOL_SGRO: {}", std::io::Error::last_os_error());
    });
}

#[test]
fn rx_frames_arrive_whole_and_in_order() {
    let rig = Rig::new();
    let mut io = rig.open_b(0, 1);
    let peer = rig.raw_a();
    let sent: Vec<Vec<u8>> = (0..300u32).map(|i| marker(PEER_SRC, 1, i, 60 + (i as usize * 37) % 1455)).collect();
    for f in &sent {
        peer.send(f);
    }
    let got =
        collect(&mut io, sent.len(), Duration::from_secs(5), Duration::from_millis(50), |f| marker_id(f).is_some());
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "frames differ or are out of order");
    let stats = io.stats(P0);
    assert!(stats.rx_packets >= sent.len() as u64);
    assert_eq!(stats.rx_dropped, 0);
}

#[test]
fn tx_frames_arrive_byte_identical_and_are_not_received_back() {
    let rig = Rig::new();
    let mut io = rig.open_b(0, 1);
    let peer = rig.raw_a();
    let mut sent = Vec::new();
    for round in 0..10u32 {
        let mut burst = Burst::new();
        for i in 0..20u32 {
            let seq = round * 20 + i;
            let f = marker(OUR_SRC, 2, seq, 60 + (seq as usize * 53) % 1455);
            let mut buf = io.alloc().expect("a buffer");
            assert!(buf.set_len(f.len()));
            buf.data_mut().copy_from_slice(&f);
            burst.push(buf);
            sent.push(f);
        }
        io.tx_burst(P0, &mut burst);
        assert!(burst.is_empty());
    }
    let mut captured = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while captured.len() < sent.len() && Instant::now() < deadline {
        if let Some(f) = peer.recv() {
            if marker_id(&f).is_some_and(|(tag, _)| tag == 2) {
                captured.push(f);
            }
        }
    }
    assert_eq!(captured.len(), sent.len(), "{:?} {:?}", io.stats(P0), io.afpacket_stats(P0));
    assert!(captured == sent, "captured frames differ from the sent ones");
    let stats = io.stats(P0);
    assert_eq!(stats.tx_packets, sent.len() as u64);
    assert_eq!(stats.tx_dropped, 0);

    // Nothing of ours comes back on rx.
    let echoed = collect(&mut io, usize::MAX, Duration::from_millis(300), Duration::ZERO, |f| marker_id(f).is_some());
    assert!(echoed.is_empty(), "{} own frames received back", echoed.len());
    assert_eq!(io.pool().available(), RingConfig::default().pool_buffers);
}

#[test]
fn unsendable_frames_are_counted() {
    let rig = Rig::new();
    let config = RingConfig { tx_frames: 32, ..RingConfig::default() };
    let mut io = rig.in_b(|| AfPacketIo::open(&["vb"], 0, 1, config)).unwrap();
    // A frame larger than a tx frame allows (MTU 1500) and an empty one.
    let mut burst = Burst::new();
    let mut big = io.alloc().unwrap();
    assert!(big.set_len(io_afpacket::MAX_BUF_FRAME));
    burst.push(big);
    burst.push(io.alloc().unwrap()); // empty
                                     // One byte over MTU + header, untagged; and the same length with a tag (allowed).
    let over = marker(OUR_SRC, 6, 0, 1515);
    let mut tagged = over[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&over[12..]);
    tagged.truncate(1515);
    for f in [&over, &tagged] {
        let mut buf = io.alloc().unwrap();
        assert!(buf.set_len(f.len()));
        buf.data_mut().copy_from_slice(f);
        burst.push(buf);
    }
    io.tx_burst(P0, &mut burst);
    let extra = io.afpacket_stats(P0);
    assert_eq!(extra.tx_too_big, 3, "{extra:?}");
    assert_eq!(io.stats(P0).tx_dropped, 3);
    assert_eq!(io.stats(P0).tx_packets, 1);
}

#[test]
fn vlan_tags_stripped_by_the_kernel_are_put_back() {
    let rig = Rig::new();
    let mut io = rig.open_b(0, 1);
    let peer = rig.raw_a();
    let mut sent = Vec::new();
    for i in 0..20u32 {
        let inner = marker(PEER_SRC, 3, i, 100);
        let mut f = inner[..12].to_vec();
        if i % 2 == 0 {
            // 802.1Q, priority 1, VID 100 + i.
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&((1u16 << 13) | (100 + i as u16)).to_be_bytes());
        } else {
            // QinQ: 802.1ad outer VID 200, 802.1Q inner VID 300 + i.
            f.extend_from_slice(&[0x88, 0xa8]);
            f.extend_from_slice(&200u16.to_be_bytes());
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&(300 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&inner[12..]);
        peer.send(&f);
        sent.push(f);
    }
    let got =
        collect(&mut io, sent.len(), Duration::from_secs(5), Duration::from_millis(50), |f| marker_id(f).is_some());
    assert!(got == sent, "got {got:02x?}");
    assert_eq!(io.afpacket_stats(P0).vlan_restored, sent.len() as u64, "the kernel stripped every tag");
}

#[test]
fn partial_checksums_are_completed() {
    let rig = Rig::new();
    let mut io = rig.open_b(0, 1);
    // UDP over IPv4 and IPv6 and a TCP connection from A: veth passes CHECKSUM_PARTIAL skbs.
    let listener = rig.in_b(|| TcpListener::bind("198.18.0.2:7001")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all.len()
    });
    rig.in_a(|| {
        let udp = UdpSocket::bind("198.18.0.1:0").unwrap();
        let udp6 = UdpSocket::bind("[fd00:198:18::1]:0").unwrap();
        for i in 0..20u8 {
            udp.send_to(&[i; 333], "198.18.0.2:7002").unwrap();
            udp6.send_to(&[i; 301], "[fd00:198:18::2]:7002").unwrap();
        }
        let mut tcp = TcpStream::connect("198.18.0.2:7001").unwrap();
        for _ in 0..10 {
            tcp.write_all(&[0x5a; 999]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    assert_eq!(server.join().unwrap(), 9990);
    let got = collect(&mut io, 60, Duration::from_secs(3), Duration::from_millis(100), |f| {
        l4_checksum_ok(f).is_some() && f[6..12] != [0; 6]
    });
    let (mut v4, mut v6) = (0, 0);
    for f in &got {
        assert_eq!(l4_checksum_ok(f), Some(true), "bad checksum in {f:02x?}");
        match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 => v4 += 1,
            _ => v6 += 1,
        }
    }
    let extra = io.afpacket_stats(P0);
    assert!(v4 >= 20 && v6 >= 20, "v4 {v4} v6 {v6}");
    assert!(extra.csum_completed >= 40, "{extra:?}");
    assert_eq!(extra.csum_failed, 0);
}

#[test]
fn super_frames_are_counted_and_dropped() {
    let rig = Rig::new();
    set_gro(&rig, true);
    let mut io = rig.open_b(0, 1);
    let listener = rig.in_b(|| TcpListener::bind("198.18.0.2:7003")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all.len()
    });
    let client = {
        let stream = rig.in_a(|| TcpStream::connect("198.18.0.2:7003")).unwrap();
        std::thread::spawn(move || {
            let mut stream = stream;
            let chunk = vec![0xa5u8; 64 * 1024];
            for _ in 0..64 {
                stream.write_all(&chunk).unwrap();
            }
        })
    };
    let mut max_len = 0;
    let mut data_frames = 0;
    let done = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() && Instant::now() < done {
        let mut burst = Burst::new();
        io.rx_burst(P0, &mut burst);
        for b in burst.drain(..) {
            max_len = max_len.max(b.len());
            data_frames += 1;
        }
    }
    client.join().unwrap();
    assert_eq!(server.join().unwrap(), 64 * 64 * 1024);
    let rest = collect(&mut io, usize::MAX, Duration::from_millis(200), Duration::ZERO, |_| true);
    for f in &rest {
        max_len = max_len.max(f.len());
    }
    let extra = io.afpacket_stats(P0);
    let stats = io.stats(P0);
    assert!(max_len <= 1518, "rx_burst returned a {max_len}-byte frame");
    assert!(extra.oversize > 0, "no super-frame seen ({data_frames} frames): {extra:?}");
    assert!(stats.rx_dropped >= extra.oversize);
}

#[test]
fn truncated_frames_are_counted_and_dropped() {
    let rig = Rig::new();
    let mut io = rig.open_b(0, 1);
    io.set_rx_snaplen_for_test(P0, 80).unwrap();
    let peer = rig.raw_a();
    for i in 0..10u32 {
        peer.send(&marker(PEER_SRC, 4, i, 200));
        peer.send(&marker(PEER_SRC, 5, i, 60));
    }
    let got = collect(&mut io, 10, Duration::from_secs(5), Duration::from_millis(100), |f| marker_id(f).is_some());
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|f| marker_id(f).unwrap().0 == 5 && f.len() == 60));
    assert!(io.afpacket_stats(P0).truncated >= 10);
    assert!(io.stats(P0).rx_dropped >= 10);
}

#[test]
fn fanout_workers_see_every_frame_exactly_once() {
    let rig = Rig::new();
    let mut w0 = rig.open_b(0, 2);
    let mut w1 = rig.open_b(1, 2);
    let peer = rig.raw_a();
    let n = 400u32;
    for i in 0..n {
        let sport = 10_000 + u16::try_from(i).unwrap();
        peer.send(&udp_frame(sport, &i.to_be_bytes()));
    }
    let is_ours = |f: &[u8]| f.len() >= 46 && f[6..12] == PEER_SRC && f[12..14] == [0x08, 0x00];
    let seq = |f: &Vec<u8>| u32::from_be_bytes([f[42], f[43], f[44], f[45]]);
    let mut seen = vec![0u32; n as usize];
    let (mut c0, mut c1) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let a = collect(&mut w0, 0, Duration::from_millis(20), Duration::ZERO, is_ours);
        let b = collect(&mut w1, 0, Duration::from_millis(20), Duration::ZERO, is_ours);
        c0 += a.len();
        c1 += b.len();
        for f in a.iter().chain(&b) {
            seen[seq(f) as usize] += 1;
        }
        if c0 + c1 >= n as usize {
            break;
        }
    }
    // Catch duplicates arriving late.
    for f in collect(&mut w0, usize::MAX, Duration::from_millis(100), Duration::ZERO, is_ours).iter().chain(&collect(
        &mut w1,
        usize::MAX,
        Duration::from_millis(100),
        Duration::ZERO,
        is_ours,
    )) {
        seen[seq(f) as usize] += 1;
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "counts {:?}",
        seen.iter().enumerate().filter(|(_, &c)| c != 1).collect::<Vec<_>>()
    );
    assert!(c0 > 0 && c1 > 0, "no split: {c0} / {c1}");
}

#[test]
fn ring_overruns_are_counted() {
    let rig = Rig::new();
    let config = RingConfig { rx_block_size: 4096, rx_blocks: 2, ..RingConfig::default() };
    let mut io = rig.in_b(|| AfPacketIo::open(&["vb"], 0, 1, config)).unwrap();
    let peer = rig.raw_a();
    // Two 4 KiB blocks hold a handful of 1000-byte frames; nobody polls while 100 arrive.
    for i in 0..100u32 {
        peer.send(&marker(PEER_SRC, 7, i, 1000));
    }
    std::thread::sleep(Duration::from_millis(50));
    let got = collect(&mut io, usize::MAX, Duration::from_millis(200), Duration::ZERO, |f| marker_id(f).is_some());
    let extra = io.afpacket_stats(P0);
    let stats = io.stats(P0);
    assert!(!got.is_empty() && got.len() < 100, "{} frames", got.len());
    assert!(extra.ring_overruns > 0, "{extra:?}");
    assert!(stats.rx_dropped >= extra.ring_overruns);
    // Received frames are still whole and in order.
    let seqs: Vec<u32> = got.iter().map(|f| marker_id(f).unwrap().1).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
