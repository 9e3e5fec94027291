//! The backend over DPDK's own software devices, in one process (the EAL starts once):
//! `net_ring0` sends what it transmits back to its receive queue, `net_null0` swallows.
#![cfg(feature = "dpdk")]

use io::{Burst, PacketBuf, PacketIo, PortId};
use io_dpdk::{Dpdk, DpdkConfig, DpdkError};

fn eal_args() -> Vec<String> {
    let prefix = format!("--file-prefix=ol-io-dpdk-{}", std::process::id());
    ["-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--log-level=lib.eal:warning"]
        .iter()
        .map(|s| s.to_string())
        .chain([prefix, "--vdev=net_ring0".into(), "--vdev=net_null0,no-rx=1".into()])
        .collect()
}

#[test]
fn mbufs_queues_and_statistics_on_software_devices() {
    let config = DpdkConfig { spare_mbufs: 1024, ..DpdkConfig::default() };
    let ports = ["net_ring0".to_string(), "net_null0".to_string()];
    let dpdk = Dpdk::start(&eal_args(), &ports, 1, &config).expect("EAL with net_ring and net_null");
    // The EAL leaves its (empty) runtime directory behind.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/ol-io-dpdk-{}", std::process::id()));
    assert!(matches!(Dpdk::start(&eal_args(), &ports, 1, &config), Err(DpdkError::AlreadyStarted)));
    assert_eq!(dpdk.ports(), 2);
    assert_eq!(dpdk.name(PortId(1)), "net_null0");
    assert_eq!(dpdk.driver(PortId(0)), "net_ring");
    assert!(dpdk.link(PortId(0)).up, "{}", dpdk.link(PortId(0)));

    let mut io = dpdk.io(0).unwrap();
    assert!(matches!(dpdk.io(0), Err(DpdkError::WorkerQueues(0))), "queues are handed out once");
    assert!(matches!(dpdk.io(1), Err(DpdkError::WorkerQueues(1))));

    // Headroom, tailroom, growth: a PROXY v2 header (up to ~108 bytes) fits in front or behind.
    let mut m = io.alloc().unwrap();
    assert_eq!((m.len(), m.headroom()), (0, 128));
    let room = m.tailroom();
    assert!(room >= 2048, "{room}");
    assert!(m.set_len(60));
    m.data_mut().copy_from_slice(&[0xab; 60]);
    assert!(m.prepend(108));
    assert_eq!((m.len(), m.headroom(), m.tailroom()), (168, 20, room - 60));
    m.data_mut()[..108].fill(0x11);
    assert!(!m.prepend(21), "beyond the headroom");
    assert_eq!(m.len(), 168, "unchanged after a refused prepend");
    assert!(m.adj(108));
    assert_eq!(m.data(), &[0xab; 60][..]);
    assert!(m.set_len(60 + 108), "growth within the tailroom");
    assert_eq!(&m.data()[..60], &[0xab; 60][..]);
    assert!(!m.set_len(128 + room + 1), "beyond the data room");
    assert!(!m.adj(1000));
    assert_eq!(m.len(), 168);
    assert!(m.set_len(14));
    assert_eq!(m.len(), 14);
    drop(m);

    // 32 distinct frames out of net_ring0 come back in order, byte for byte.
    let mut out: Burst<_> = Burst::new();
    for i in 0..32u8 {
        let mut m = io.alloc().unwrap();
        assert!(m.set_len(64 + usize::from(i)));
        m.data_mut().fill(i);
        out.push(m);
    }
    io.tx_burst(PortId(0), &mut out);
    assert!(out.is_empty());
    let mut back: Burst<_> = Burst::new();
    io.rx_burst(PortId(0), &mut back);
    assert_eq!(back.len(), 32);
    for (i, m) in back.iter().enumerate() {
        assert_eq!(m.len(), 64 + i);
        assert!(m.data().iter().all(|&b| usize::from(b) == i));
        assert_eq!(m.segments(), 1);
    }
    // A burst already partly full gets only what it has room for.
    let keep = back.len();
    io.tx_burst(PortId(0), &mut back);
    assert_eq!(keep, 32);
    let mut partial: Burst<_> = Burst::new();
    for _ in 0..30 {
        partial.push(io.alloc().unwrap());
    }
    io.rx_burst(PortId(0), &mut partial);
    assert_eq!(partial.len(), 32);
    drop(partial);
    let mut rest: Burst<_> = Burst::new();
    io.rx_burst(PortId(0), &mut rest);
    assert_eq!(rest.len(), 30, "the other 30 frames wait in the ring");
    drop(rest);

    let s = io.stats(PortId(0));
    assert_eq!((s.tx_packets, s.rx_packets, s.tx_dropped, s.rx_dropped), (64, 64, 0, 0));
    let bytes: u64 = (0..32u64).map(|i| 64 + i).sum();
    assert_eq!((s.tx_bytes, s.rx_bytes), (2 * bytes, 2 * bytes));
    let d = dpdk.device_stats(PortId(0));
    assert_eq!((d.opackets, d.ipackets), (64, 64));

    // net_null0 takes everything.
    let mut out: Burst<_> = Burst::new();
    for _ in 0..10 {
        let mut m = io.alloc().unwrap();
        assert!(m.set_len(60));
        out.push(m);
    }
    io.tx_burst(PortId(1), &mut out);
    assert_eq!(io.stats(PortId(1)).tx_packets, 10);
    assert_eq!(dpdk.device_stats(PortId(1)).opackets, 10);
    let mut none: Burst<_> = Burst::new();
    io.rx_burst(PortId(1), &mut none);
    assert!(none.is_empty());

    // Dropping an mbuf gives it back: the pool can be emptied and refilled, repeatedly.
    for _ in 0..2 {
        let mut held = Vec::new();
        while let Some(m) = io.alloc() {
            held.push(m);
            assert!(held.len() <= 1 << 20, "the pool never runs out");
        }
        assert!(held.len() >= 1024, "{}", held.len());
        drop(held);
        assert!(io.alloc().is_some());
    }
}
