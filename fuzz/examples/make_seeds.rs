//! Writes the seed corpora under `fuzz/seeds/<target>/` from testkit's frames (built by
//! etherparse). Run from `fuzz/`: `cargo run --example make_seeds`.
//!
//! `pipeline` seeds are sequences of `selector | length (u16 BE) | frame` records (see
//! `fuzz_targets/pipeline.rs` for the selector bits); `frame_parser` seeds are a selector byte
//! (the layer to start at) followed by the bytes.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{Icmpv4Type, PacketBuilder};
use testkit::{
    arp_reply, arp_request, echo, icmp_error, l2_backend, l2_consumer, tcp, to_endpoint, udp, Flags, Host, BACKEND,
    BACKEND_PORT, CONSUMER, ENDPOINT_IP, GW_IP, GW_MAC_A, L2, NAT_IP,
};
use wire::proxy::{self, Addresses, Command, Encoder, Transport};

// Selector bits of the pipeline target.
const WORKER1: u8 = 0x01;
const PORT_B: u8 = 0x02;
const FIX: u8 = 0x04;
const BATCH: u8 = 0x08;
const REPLY: u8 = 0x10;
// Bits 12–15 of the length word.
const PUBLISH: u16 = 0x8000;
const APPROVED: u16 = 0x0000;
const PENDING: u16 = 0x1000;
const REJECTED: u16 = 0x2000;
const SWEEP: u16 = 0x4000;
/// Clock advance index (bits 5–7): 1 = 4 s, 2 = 16 s, 3 = 64 s, 4 = 128 s, 5 = 304 s, 6 = 1024 s, 7 = 8000 s.
const fn advance(index: u8) -> u8 {
    index << 5
}

#[derive(Default)]
struct Seq(Vec<u8>);

impl Seq {
    fn frame(self, selector: u8, frame: &[u8]) -> Self {
        self.frame_ext(selector, 0, frame)
    }

    /// With bits 12–15 of the length word set (`PUBLISH | state`, `SWEEP`).
    fn frame_ext(mut self, selector: u8, ext: u16, frame: &[u8]) -> Self {
        let len = u16::try_from(frame.len()).ok().filter(|l| *l < 0x1000).expect("seed frames are small");
        self.0.push(selector);
        self.0.extend_from_slice(&(len | ext).to_be_bytes());
        self.0.extend_from_slice(frame);
        self
    }
}

fn from_backend() -> (SocketAddrV4, SocketAddrV4) {
    // The NAT port is random; the REPLY bit fills in the real one.
    (SocketAddrV4::new(BACKEND.ip, BACKEND_PORT), SocketAddrV4::new(NAT_IP, 1024))
}

fn tcp_flags(syn: bool, ack: Option<u32>, fin: bool, rst: bool, psh: bool) -> Flags {
    Flags { syn, ack, fin, rst, psh }
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let (c, e) = to_endpoint(40001);
    let (b, n) = from_backend();
    let a = l2_consumer();
    let bl2 = l2_backend();

    // --- frames ---
    let syn = tcp(a, c, e, 64, 1000, Flags::syn(), &[]);
    let syn_ack = tcp(bl2, b, n, 64, 5000, Flags::syn_ack(1001), &[]);
    let ack = tcp(a, c, e, 64, 1001, Flags::ack(5001), &[]);
    let request = tcp(a, c, e, 64, 1001, tcp_flags(false, Some(5001), false, false, true), b"GET / HTTP/1.1\r\n\r\n");
    let response =
        tcp(bl2, b, n, 64, 5001, tcp_flags(false, Some(1019), false, false, true), b"HTTP/1.1 200 OK\r\n\r\n");
    let fin = tcp(a, c, e, 64, 1019, Flags::fin_ack(5020), &[]);
    let fin_back = tcp(bl2, b, n, 64, 5020, Flags::fin_ack(1020), &[]);
    let last_ack = tcp(a, c, e, 64, 1020, Flags::ack(5021), &[]);
    let rst = tcp(a, c, e, 64, 1020, Flags::rst(), &[]);

    let (uc, ue) = to_endpoint(40002);
    let datagram = udp(a, uc, ue, 64, b"hello");
    let datagram_back = udp(bl2, b, n, 64, b"world");

    let ping = echo(a, CONSUMER.ip, ENDPOINT_IP, 64, true, 0x1234, 1, b"abcdefgh");
    let pong = echo(bl2, BACKEND.ip, NAT_IP, 64, false, 0x1234, 1, b"abcdefgh");
    let ping_gw = echo(a, CONSUMER.ip, GW_IP, 64, true, 0x4321, 7, b"gateway!");

    // ICMP errors: the REPLY bit replaces the quoted bytes with the frame the gateway sent.
    let placeholder = &datagram[14..];
    let unreachable = icmp_error(
        bl2,
        BACKEND.ip,
        NAT_IP,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        placeholder,
    );
    let frag_needed = icmp_error(
        bl2,
        BACKEND.ip,
        NAT_IP,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }),
        &syn[14..],
    );
    let time_exceeded = icmp_error(
        bl2,
        Ipv4Addr::new(198, 18, 0, 254),
        NAT_IP,
        64,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
        &syn[14..],
    );

    let who_has_endpoint = arp_request(CONSUMER, ENDPOINT_IP);
    let stranger = Host { mac: [0x02, 0xaa, 0, 0, 0, 0x63], ip: Ipv4Addr::new(198, 18, 0, 99) };
    let who_has_gw = arp_request(stranger, GW_IP);
    let who_has_other = arp_request(CONSUMER, Ipv4Addr::new(198, 18, 0, 33));
    let stranger_reply = arp_reply(stranger, GW_MAC_A, GW_IP);
    let who_has_nat = arp_request(BACKEND, NAT_IP);

    let stranger_syn = tcp(
        L2::new(stranger.mac, GW_MAC_A),
        SocketAddrV4::new(stranger.ip, 40003),
        SocketAddrV4::new(ENDPOINT_IP, 80),
        64,
        77,
        Flags::syn(),
        &[],
    );
    let ttl_one = tcp(a, c, e, 1, 1000, Flags::syn(), &[]);
    let other_port = tcp(a, c, SocketAddrV4::new(ENDPOINT_IP, 443), 64, 1, Flags::syn(), &[]);
    let unsolicited = |port: u16| tcp(bl2, b, SocketAddrV4::new(NAT_IP, port), 64, 9, Flags::syn_ack(1), &[]);
    let vlan_frame = tcp(L2 { vlan: Some(10), ..a }, c, e, 64, 1000, Flags::syn(), &[]);
    let mut ipv6_frame = Vec::new();
    PacketBuilder::ethernet2(CONSUMER.mac, GW_MAC_A)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(40004, 80, 1, 64240)
        .syn()
        .write(&mut ipv6_frame, &[])
        .expect("ipv6 frame");
    let mut ipv6_udp = Vec::new();
    PacketBuilder::ethernet2(CONSUMER.mac, GW_MAC_A)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(5353, 53)
        .write(&mut ipv6_udp, b"q")
        .expect("ipv6 udp");
    let mut ipv6_icmp = Vec::new();
    PacketBuilder::ethernet2(CONSUMER.mac, GW_MAC_A)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .icmpv6_echo_request(1, 2)
        .write(&mut ipv6_icmp, b"ping")
        .expect("ipv6 icmp");
    let mut qinq = Vec::new();
    PacketBuilder::ethernet2(CONSUMER.mac, GW_MAC_A)
        .double_vlan(etherparse::VlanId::try_new(100).unwrap(), etherparse::VlanId::try_new(10).unwrap())
        .ipv4(CONSUMER.ip.octets(), ENDPOINT_IP.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut qinq, b"x")
        .expect("qinq frame");
    let other_mac = tcp(L2::new(CONSUMER.mac, [0x02, 0, 0, 0, 0, 0x99]), c, e, 64, 1000, Flags::syn(), &[]);
    let trailer = {
        let mut f = datagram.clone();
        f.extend_from_slice(&[0u8; 6]);
        f
    };
    let ip_options = {
        // The SYN with a 4-byte IPv4 option block (NOP NOP NOP EOL): IHL 6.
        let mut f = syn[..34].to_vec();
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&syn[34..]);
        f[14] = 0x46;
        let total = u16::try_from(f.len() - 14).unwrap();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let sum = wire::checksum::data(&f[14..38]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
        f
    };

    // --- pipeline ---
    let pipeline: Vec<(&str, Seq)> = vec![
        (
            "tcp_handshake",
            Seq::default()
                .frame(FIX, &syn)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(FIX, &ack)
                .frame(FIX, &request)
                .frame(PORT_B | FIX | REPLY, &response)
                .frame(FIX, &fin)
                .frame(PORT_B | FIX | REPLY, &fin_back)
                .frame(FIX, &last_ack),
        ),
        (
            "tcp_reset",
            Seq::default().frame(FIX, &syn).frame(PORT_B | FIX | REPLY, &syn_ack).frame(FIX, &rst).frame(FIX, &ack),
        ),
        (
            "tcp_expiry",
            Seq::default()
                .frame(FIX, &syn)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(FIX, &ack)
                .frame(FIX | advance(7), &request)
                .frame(PORT_B | FIX | REPLY, &response),
        ),
        (
            "revoke",
            Seq::default()
                .frame(FIX, &syn)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(FIX, &ack)
                .frame(FIX, &ping)
                .frame_ext(FIX, PUBLISH | PENDING, &request)
                .frame(FIX, &syn)
                .frame_ext(FIX, PUBLISH | REJECTED, &datagram)
                .frame_ext(FIX, PUBLISH | APPROVED, &syn),
        ),
        (
            "sweep",
            Seq::default()
                .frame(FIX, &datagram)
                .frame(FIX, &ping)
                .frame_ext(FIX | advance(5), SWEEP, &datagram)
                .frame_ext(PORT_B | FIX | REPLY | advance(7), SWEEP, &datagram_back),
        ),
        (
            "udp",
            Seq::default()
                .frame(FIX, &datagram)
                .frame(PORT_B | FIX | REPLY, &datagram_back)
                .frame(WORKER1 | FIX, &datagram)
                .frame(FIX | advance(5), &datagram)
                .frame(PORT_B | FIX | REPLY, &datagram_back),
        ),
        (
            "icmp_echo",
            Seq::default()
                .frame(FIX, &ping)
                .frame(PORT_B | FIX | REPLY, &pong)
                .frame(FIX, &ping_gw)
                .frame(FIX | advance(3), &ping),
        ),
        (
            "icmp_errors",
            Seq::default()
                .frame(FIX, &datagram)
                .frame(PORT_B | FIX | REPLY, &unreachable)
                .frame(FIX, &syn)
                .frame(PORT_B | WORKER1 | FIX | REPLY, &frag_needed)
                .frame(PORT_B | FIX | REPLY, &time_exceeded),
        ),
        (
            "arp",
            Seq::default()
                .frame(0, &who_has_endpoint)
                .frame(WORKER1, &who_has_gw)
                .frame(0, &who_has_other)
                .frame(0, &stranger_reply)
                .frame(PORT_B, &who_has_nat),
        ),
        (
            "neighbor_wait",
            Seq::default()
                .frame(FIX, &stranger_syn)
                .frame(FIX | advance(1), &stranger_syn)
                .frame(advance(1), &[])
                .frame(advance(1), &stranger_reply),
        ),
        (
            // The backend answers a consumer whose MAC the gateway has not learned: the reply
            // waits for ARP and is released by the consumer's ARP reply.
            "neighbor_resolve",
            Seq::default()
                .frame(FIX, &stranger_syn)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(0, &stranger_reply)
                .frame(FIX, &stranger_syn),
        ),
        (
            // ... or never answers: the waiting frames are dropped after three tries.
            "neighbor_unresolved",
            Seq::default()
                .frame(FIX, &stranger_syn)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(PORT_B | FIX | REPLY, &syn_ack)
                .frame(advance(1), &[])
                .frame(advance(2), &[]),
        ),
        (
            "handoff",
            Seq::default()
                .frame(PORT_B | FIX | BATCH, &unsolicited(1024))
                .frame(PORT_B | WORKER1 | FIX | BATCH, &unsolicited(1025))
                .frame(PORT_B | FIX, &unsolicited(50000))
                .frame(PORT_B | WORKER1 | FIX, &unsolicited(65535)),
        ),
        (
            "odd_frames",
            Seq::default()
                .frame(FIX, &ttl_one)
                .frame(FIX, &other_port)
                .frame(0, &vlan_frame)
                .frame(0, &qinq)
                .frame(0, &ipv6_frame)
                .frame(0, &other_mac)
                .frame(FIX, &trailer)
                .frame(FIX, &ip_options)
                .frame(0, &syn[..40]),
        ),
    ];

    // --- frame_parser ---
    let eth = |f: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(f);
        v
    };
    let mut proxy_buf = [0u8; 128];
    let proxy_len = {
        let mut enc =
            Encoder::new(&mut proxy_buf, Command::Proxy, Transport::Stream, Addresses::Ipv4 { src: c, dst: e })
                .expect("room");
        enc.tlv_parts(proxy::TLV_AZURE, &[&[proxy::AZURE_SUBTYPE_LINK_ID], &0x2100_45c1u32.to_le_bytes()]).unwrap();
        enc.tlv(proxy::TLV_AUTHORITY, b"web.example").unwrap();
        enc.pad_to_even().unwrap();
        enc.finish().unwrap()
    };
    let mut proxy_seed = vec![9u8];
    proxy_seed.extend_from_slice(&proxy_buf[..proxy_len]);
    let frame_parser: Vec<(&str, Vec<u8>)> = vec![
        ("tcp_syn", eth(&syn)),
        ("tcp_data", eth(&request)),
        ("udp", eth(&datagram)),
        ("icmp_echo", eth(&ping)),
        ("icmp_unreachable", eth(&unreachable)),
        ("icmp_frag_needed", eth(&frag_needed)),
        ("arp_request", eth(&who_has_endpoint)),
        ("arp_reply", eth(&stranger_reply)),
        ("vlan", eth(&vlan_frame)),
        ("qinq", eth(&qinq)),
        ("ipv6_tcp", eth(&ipv6_frame)),
        ("ipv6_udp", eth(&ipv6_udp)),
        ("ipv6_icmp", eth(&ipv6_icmp)),
        ("ipv4_options", eth(&ip_options)),
        ("trailer", eth(&trailer)),
        ("proxy_v2", proxy_seed),
    ];

    for (target, seeds) in
        [("pipeline", pipeline.into_iter().map(|(n, s)| (n, s.0)).collect::<Vec<_>>()), ("frame_parser", frame_parser)]
    {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), &bytes)?;
        }
        println!("wrote {}", dir.display());
    }
    Ok(())
}
