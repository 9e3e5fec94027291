//! The DPDK backend of the burst I/O trait: poll-mode drivers, mbufs, no copy.
//!
//! [`Dpdk::start`] starts the EAL from arguments written the way `dpdk-testpmd` takes them
//! (`-l 0 --no-huge -m 1024 --no-pci --vdev=net_af_packet0,iface=veth0`), finds the configured
//! ports by their DPDK names, and configures each with one rx/tx queue pair per worker (RSS over
//! the IPv4 addresses and ports where the device offers it, so each flow stays on one worker),
//! and one mempool per worker. [`Dpdk::io`] hands worker `w` its [`DpdkIo`]: queue `w` of every
//! port. Packets are [`Mbuf`]s, owned and freed on drop; bursts go straight from the driver into
//! the caller's fixed arrays.
//!
//! The EAL can start once per process. Its errors come back as one line that says what to do
//! ([`DpdkError`]). Device statistics (`rte_eth_stats`) and link state are read with
//! [`Dpdk::device_stats`] and [`Dpdk::link`], from any thread.
//!
//! Everything is behind the `dpdk` feature; without it this crate is empty. All `unsafe` is
//! FFI into DPDK, each block with its reason.
#![cfg(feature = "dpdk")]

mod eal;
mod mbuf;

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dpdk_sys as sys;
use io::{Burst, PacketBuf, PacketIo, PortId, PortStats, BURST};

pub use mbuf::Mbuf;

/// RSS hash types asked for (those the device offers): IPv4 addresses, TCP and UDP ports.
const RSS_HASH: u64 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7);

/// Sizes of one gateway's DPDK resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Receive descriptors per queue (adjusted to what the device accepts).
    pub rx_descriptors: u16,
    /// Transmit descriptors per queue (adjusted to what the device accepts).
    pub tx_descriptors: u16,
    /// Mbufs in each worker's mempool, beyond what its queues' descriptors can hold.
    pub spare_mbufs: u32,
    /// Per-thread cache of each mempool.
    pub mempool_cache: u32,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig { rx_descriptors: 1024, tx_descriptors: 1024, spare_mbufs: 8192, mempool_cache: 256 }
    }
}

/// Bytes one mbuf takes in its mempool (data room, `rte_mbuf` header and mempool overhead).
const MBUF_FOOTPRINT: u64 = 2560;
/// The most spare mbufs per worker (2^17 - 1: mempool rings are sized in powers of two).
const MAX_SPARE_MBUFS: u64 = (1 << 17) - 1;

impl DpdkConfig {
    /// The defaults, with the mempools sized from the EAL's memory when the arguments fix it
    /// (`-m MB` or `--socket-mem=MB,...`): half of it, split between the workers. Drivers that
    /// keep many mbufs (`net_pcap` with `infinite_rx=1` caches the whole file) need that room.
    pub fn from_eal_args(args: &[String], workers: usize) -> DpdkConfig {
        let mut config = DpdkConfig::default();
        let Some(mb) = eal_memory_mb(args) else { return config };
        let per_worker = (mb << 20) / 2 / (workers.max(1) as u64) / MBUF_FOOTPRINT;
        let spare =
            per_worker.saturating_sub(4 * (u64::from(config.rx_descriptors) + u64::from(config.tx_descriptors)));
        config.spare_mbufs = u32::try_from(spare.clamp(4096, MAX_SPARE_MBUFS)).unwrap_or(4096);
        config
    }
}

/// The memory the EAL arguments give the EAL, in MB (`-m 512`, `-m512`, `--socket-mem=256,256`).
fn eal_memory_mb(args: &[String]) -> Option<u64> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "-m" | "--socket-mem" => it.next().map(String::as_str),
            a => a.strip_prefix("--socket-mem=").or_else(|| a.strip_prefix("-m")),
        };
        if let Some(v) = value {
            let total: Option<u64> = v.split(',').map(|x| x.trim().parse::<u64>().ok()).sum();
            if let Some(t) = total.filter(|&t| t > 0) {
                return Some(t);
            }
        }
    }
    None
}

/// Why the DPDK backend could not start. Each message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` failed.
    #[error("DPDK EAL could not start: {reason}: {hint} (EAL arguments: {args})")]
    Eal {
        /// DPDK's text for `rte_errno`.
        reason: String,
        /// The likely cause and the fix.
        hint: &'static str,
        /// The arguments given.
        args: String,
    },
    /// The EAL was already started in this process (it can start only once).
    #[error("DPDK EAL was already started in this process; it can start only once")]
    AlreadyStarted,
    /// An EAL argument holds a NUL byte.
    #[error("invalid DPDK argument {0:?}")]
    BadArgument(String),
    /// No probed port has this name.
    #[error(
        "no DPDK port named {name:?} (ports: {available}); name it as the EAL does (e.g. net_af_packet0 for \
         --vdev=net_af_packet0,iface=...), and check the EAL messages above for a device that failed to probe"
    )]
    NoSuchPort {
        /// The configured name.
        name: String,
        /// The names the EAL probed.
        available: String,
    },
    /// A port has fewer queues than there are workers.
    #[error(
        "DPDK port {name}: {what} has {max} queue(s) but {workers} worker(s) need one each (for net_af_packet add \
         qpairs={workers} to its --vdev, or lower gateway.workers)"
    )]
    TooFewQueues {
        /// The port.
        name: String,
        /// rx or tx.
        what: &'static str,
        /// The device's maximum.
        max: u16,
        /// Workers configured.
        workers: usize,
    },
    /// A DPDK call on a port failed.
    #[error("DPDK port {name}: {op} failed: {reason}{hint}")]
    Port {
        /// The port.
        name: String,
        /// The call.
        op: &'static str,
        /// DPDK's text for the error.
        reason: String,
        /// The likely cause, when known.
        hint: &'static str,
    },
    /// A mempool could not be created.
    #[error("DPDK mempool for worker {worker} ({mbufs} mbufs) could not be created: {reason}; raise -m in dpdk_args")]
    Mempool {
        /// The worker.
        worker: usize,
        /// Its size.
        mbufs: u32,
        /// DPDK's text for the error.
        reason: String,
    },
    /// The worker index is out of range, or its queues were already handed out.
    #[error("DPDK queues of worker {0} are not available (out of range or already opened)")]
    WorkerQueues(usize),
    /// The configuration cannot work (no port, no worker, too many).
    #[error("DPDK configuration: {0}")]
    Config(String),
}

fn port_error(name: &str, op: &'static str, rc: i32) -> DpdkError {
    let hint = match -rc {
        libc::EBUSY => " (the port is busy: is another process using the device?)",
        libc::ENOTSUP => " (the driver does not support this)",
        libc::ENOMEM => " (out of memory: raise -m)",
        libc::EINVAL => " (a value the driver refuses)",
        _ => "",
    };
    DpdkError::Port { name: name.to_owned(), op, reason: eal::strerror(rc), hint }
}

/// A port's link state as the driver reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.up {
            let duplex = if self.full_duplex { "full-duplex" } else { "half-duplex" };
            write!(f, "link up {} Mbps {duplex}", self.speed_mbps)
        } else {
            f.write_str("link down")
        }
    }
}

/// The device's own counters for a port (`rte_eth_stats`), over all its queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the device dropped because the rx queue was full.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// One configured port.
#[derive(Debug)]
struct Port {
    /// The name it was configured under.
    name: String,
    /// DPDK's port id.
    id: u16,
    mac: [u8; 6],
    driver: String,
}

/// A started EAL with its ports configured and running.
#[derive(Debug)]
pub struct Dpdk {
    ports: Vec<Port>,
    /// Per worker: its mempool, and whether its queues were handed out.
    workers: Vec<(NonNull<sys::rte_mempool>, AtomicBool)>,
}

// SAFETY: the mempool pointers are only handed to DPDK calls that are thread-safe for them
// (rte_pktmbuf_alloc/free on multi-producer/multi-consumer pools); the rest is plain data.
unsafe impl Send for Dpdk {}
// SAFETY: as above; the shared state is read-only apart from the AtomicBools.
unsafe impl Sync for Dpdk {}

impl Dpdk {
    /// Starts the EAL with `eal_args` and starts the ports named `ports` (port `i` of the
    /// backend is `ports[i]`) with one queue pair per worker.
    pub fn start(
        eal_args: &[String],
        ports: &[String],
        workers: usize,
        config: &DpdkConfig,
    ) -> Result<Arc<Dpdk>, DpdkError> {
        if ports.is_empty() {
            return Err(DpdkError::Config("no port to open".into()));
        }
        let queues = u16::try_from(workers)
            .ok()
            .filter(|&q| q > 0 && usize::from(q) <= sys::RTE_MAX_LCORE as usize)
            .ok_or_else(|| DpdkError::Config(format!("{workers} workers")))?;
        eal::start(eal_args)?;

        let mut found = Vec::with_capacity(ports.len());
        for name in ports {
            let id = port_by_name(name)?;
            if found.iter().any(|p: &Port| p.id == id) {
                return Err(DpdkError::Config(format!("port {name} is named twice")));
            }
            let (info, driver) = device_info(name, id)?;
            for (what, max) in [("rx", info.max_rx_queues), ("tx", info.max_tx_queues)] {
                if max < queues {
                    return Err(DpdkError::TooFewQueues { name: name.clone(), what, max, workers });
                }
            }
            found.push(Port { name: name.clone(), id, mac: [0; 6], driver });
        }

        // One mempool per worker, big enough for every descriptor of its queues plus spares.
        let nb_ports = u32::try_from(found.len()).unwrap_or(u32::MAX);
        let per_worker = nb_ports
            .saturating_mul(u32::from(config.rx_descriptors) + u32::from(config.tx_descriptors))
            .saturating_add(config.spare_mbufs);
        let mut pools = Vec::with_capacity(workers);
        for w in 0..workers {
            pools.push((create_pool(w, per_worker, config.mempool_cache)?, AtomicBool::new(false)));
        }

        for port in &mut found {
            configure_port(port, queues, &pools, config)?;
        }
        Ok(Arc::new(Dpdk { ports: found, workers: pools }))
    }

    /// Worker `worker`'s queues: queue pair `worker` of every port. Each worker's queues can be
    /// opened once.
    pub fn io(self: &Arc<Self>, worker: usize) -> Result<DpdkIo, DpdkError> {
        let (pool, taken) = self.workers.get(worker).ok_or(DpdkError::WorkerQueues(worker))?;
        if taken.swap(true, Ordering::AcqRel) {
            return Err(DpdkError::WorkerQueues(worker));
        }
        Ok(DpdkIo {
            dpdk: self.clone(),
            ids: self.ports.iter().map(|p| p.id).collect(),
            queue: u16::try_from(worker).map_err(|_| DpdkError::WorkerQueues(worker))?,
            pool: *pool,
            stats: vec![PortStats::default(); self.ports.len()],
            extra: vec![DpdkStats::default(); self.ports.len()],
            registered: false,
        })
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// The configured name of `port`.
    pub fn name(&self, port: PortId) -> &str {
        self.ports.get(port.index()).map_or("", |p| p.name.as_str())
    }

    /// The driver of `port` (`net_af_packet`, `net_pcap`, ...).
    pub fn driver(&self, port: PortId) -> &str {
        self.ports.get(port.index()).map_or("", |p| p.driver.as_str())
    }

    /// The MAC address of `port`.
    pub fn mac(&self, port: PortId) -> [u8; 6] {
        self.ports.get(port.index()).map_or([0; 6], |p| p.mac)
    }

    /// The link state of `port`, without waiting.
    pub fn link(&self, port: PortId) -> Link {
        let Some(p) = self.ports.get(port.index()) else { return Link::default() };
        let mut link = sys::rte_eth_link::default();
        // SAFETY: `p.id` is a started port and `link` a valid out-parameter.
        if unsafe { sys::rte_eth_link_get_nowait(p.id, &mut link) } != 0 {
            return Link::default();
        }
        Link {
            up: u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: u32::from(link.link_duplex()) == sys::RTE_ETH_LINK_FULL_DUPLEX,
        }
    }

    /// The device's counters for `port` (`rte_eth_stats_get`), over all queues.
    pub fn device_stats(&self, port: PortId) -> DeviceStats {
        let Some(p) = self.ports.get(port.index()) else { return DeviceStats::default() };
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: `p.id` is a configured port and `s` a valid out-parameter.
        if unsafe { sys::rte_eth_stats_get(p.id, &mut s) } != 0 {
            return DeviceStats::default();
        }
        DeviceStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }
}

impl Drop for Dpdk {
    fn drop(&mut self) {
        for p in &self.ports {
            // SAFETY: no DpdkIo is left (each holds an Arc of this), so no thread polls the
            // port's queues any more. The mempools are never freed: an mbuf that outlives the
            // ports still has somewhere to go back to.
            unsafe {
                sys::rte_eth_dev_stop(p.id);
                sys::rte_eth_dev_close(p.id);
            }
        }
    }
}

fn port_by_name(name: &str) -> Result<u16, DpdkError> {
    let c = CString::new(name).map_err(|_| DpdkError::BadArgument(name.to_owned()))?;
    let mut id = 0u16;
    // SAFETY: `c` is NUL-terminated and `id` a valid out-parameter.
    if unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) } == 0 {
        return Ok(id);
    }
    Err(DpdkError::NoSuchPort { name: name.to_owned(), available: available_ports().join(", ") })
}

/// The names of every probed port.
fn available_ports() -> Vec<String> {
    let mut names = Vec::new();
    for id in 0..u16::try_from(sys::RTE_MAX_ETHPORTS).unwrap_or(u16::MAX) {
        // SAFETY: any id may be asked about.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
            continue;
        }
        let mut buf = [0 as c_char; 64];
        // SAFETY: `buf` has room for RTE_ETH_NAME_MAX_LEN (64) bytes, which the call may write.
        if unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) } == 0 {
            // SAFETY: on success the name is NUL-terminated inside `buf`.
            names.push(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned());
        }
    }
    if names.is_empty() {
        names.push("none".into());
    }
    names
}

fn device_info(name: &str, id: u16) -> Result<(sys::rte_eth_dev_info, String), DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: `id` is a valid port and `info` a valid out-parameter.
    let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
    if rc != 0 {
        return Err(port_error(name, "rte_eth_dev_info_get", rc));
    }
    let driver = if info.driver_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null driver name is a static NUL-terminated string of the driver.
        unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
    };
    Ok((info, driver))
}

fn create_pool(worker: usize, mbufs: u32, cache: u32) -> Result<NonNull<sys::rte_mempool>, DpdkError> {
    let name = CString::new(format!("overlink_w{worker}")).map_err(|_| DpdkError::Config("pool name".into()))?;
    let data_room = u16::try_from(sys::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap_or(u16::MAX);
    // SAFETY: the name is NUL-terminated; the EAL is started. SOCKET_ID_ANY lets DPDK choose.
    let pool =
        unsafe { sys::rte_pktmbuf_pool_create(name.as_ptr(), mbufs, cache.min(512), 0, data_room, sys::SOCKET_ID_ANY) };
    NonNull::new(pool).ok_or_else(|| DpdkError::Mempool { worker, mbufs, reason: eal::strerror(eal::errno()) })
}

fn configure_port(
    port: &mut Port,
    queues: u16,
    pools: &[(NonNull<sys::rte_mempool>, AtomicBool)],
    config: &DpdkConfig,
) -> Result<(), DpdkError> {
    let (info, _) = device_info(&port.name, port.id)?;
    let name = port.name.as_str();
    let mut conf = sys::rte_eth_conf::default();
    // RSS keeps each flow on one queue, hence one worker. A device that hashes nothing itself
    // (net_af_packet spreads by its fanout, net_ring has one queue) is left as it is.
    let rss = RSS_HASH & info.flow_type_rss_offloads;
    if queues > 1 && rss != 0 {
        conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = rss;
    }
    // SAFETY: `port.id` is a valid, stopped port; `conf` is a valid configuration.
    let rc = unsafe { sys::rte_eth_dev_configure(port.id, queues, queues, &conf) };
    if rc != 0 {
        return Err(port_error(name, "rte_eth_dev_configure", rc));
    }
    let (mut rxd, mut txd) = (config.rx_descriptors, config.tx_descriptors);
    // SAFETY: valid port; both are valid in/out parameters.
    let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port.id, &mut rxd, &mut txd) };
    if rc != 0 {
        return Err(port_error(name, "rte_eth_dev_adjust_nb_rx_tx_desc", rc));
    }
    // SAFETY: valid port.
    let socket = unsafe { sys::rte_eth_dev_socket_id(port.id) };
    let socket = u32::try_from(socket).unwrap_or(0);
    for (q, (pool, _)) in (0..queues).zip(pools) {
        // SAFETY: valid configured port and queue index; a null rxconf means the driver's
        // defaults; the pool outlives the port (mempools are never freed).
        let rc = unsafe { sys::rte_eth_rx_queue_setup(port.id, q, rxd, socket, std::ptr::null(), pool.as_ptr()) };
        if rc != 0 {
            return Err(port_error(name, "rte_eth_rx_queue_setup", rc));
        }
        // SAFETY: as above; a null txconf means the driver's defaults.
        let rc = unsafe { sys::rte_eth_tx_queue_setup(port.id, q, txd, socket, std::ptr::null()) };
        if rc != 0 {
            return Err(port_error(name, "rte_eth_tx_queue_setup", rc));
        }
    }
    // SAFETY: valid, configured port with every queue set up.
    let rc = unsafe { sys::rte_eth_dev_start(port.id) };
    if rc != 0 {
        return Err(port_error(name, "rte_eth_dev_start", rc));
    }
    let mut mac = sys::rte_ether_addr::default();
    // SAFETY: valid port; `mac` a valid out-parameter.
    if unsafe { sys::rte_eth_macaddr_get(port.id, &mut mac) } == 0 {
        port.mac = mac.addr_bytes;
    }
    Ok(())
}

/// Counters specific to this backend, per port and worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkStats {
    /// Received frames in more than one segment (jumbo frames); dropped.
    pub multi_segment: u64,
    /// Frames the device did not take on transmit (queue full or link gone); freed.
    pub tx_not_taken: u64,
}

/// One worker's queues: queue pair `worker` on every port.
#[derive(Debug)]
pub struct DpdkIo {
    dpdk: Arc<Dpdk>,
    ids: Vec<u16>,
    queue: u16,
    pool: NonNull<sys::rte_mempool>,
    stats: Vec<PortStats>,
    extra: Vec<DpdkStats>,
    /// Whether the polling thread is registered with the EAL (for the mempool cache).
    registered: bool,
}

// SAFETY: a DpdkIo is moved to its worker thread and used there only; its queues are not used
// by any other thread (each worker's queues are handed out once), and the mempool is
// multi-producer/multi-consumer.
unsafe impl Send for DpdkIo {}

impl DpdkIo {
    /// The shared EAL and ports.
    pub fn dpdk(&self) -> &Arc<Dpdk> {
        &self.dpdk
    }

    /// This backend's extra counters for `port`.
    pub fn extra_stats(&self, port: PortId) -> DpdkStats {
        self.extra.get(port.index()).copied().unwrap_or_default()
    }

    /// Registers the polling thread with the EAL once, so that it gets an lcore id and with it
    /// the mempool's per-thread cache (without one every mbuf goes through the shared ring).
    #[inline]
    fn register_thread(&mut self) {
        if !self.registered {
            self.registered = true;
            // SAFETY: registers the calling thread; on failure (no lcore left) it stays an
            // unregistered thread, which DPDK supports with the cache bypassed.
            let _ = unsafe { sys::rte_thread_register() };
        }
    }
}

impl PacketIo for DpdkIo {
    type Buf = Mbuf;

    fn ports(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    fn rx_burst(&mut self, port: PortId, burst: &mut Burst<Mbuf>) {
        self.register_thread();
        let Some(&id) = self.ids.get(port.index()) else { return };
        let room = burst.remaining_capacity();
        if room == 0 {
            return;
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        // `room <= BURST`, which fits.
        let want = u16::try_from(room).unwrap_or(0);
        // SAFETY: the queue is this worker's alone; `raw` has room for `want <= BURST` pointers.
        let n = unsafe { sys::rte_eth_rx_burst(id, self.queue, raw.as_mut_ptr(), want) };
        let (stats, extra) = (&mut self.stats[port.index()], &mut self.extra[port.index()]);
        for &m in &raw[..usize::from(n).min(room)] {
            let Some(m) = NonNull::new(m) else { continue };
            // SAFETY: the driver handed us ownership of a valid mbuf.
            let m = unsafe { Mbuf::from_raw(m) };
            if m.segments() != 1 {
                extra.multi_segment += 1;
                stats.rx_dropped += 1;
                continue;
            }
            stats.rx_packets += 1;
            stats.rx_bytes += m.len() as u64;
            burst.push(m);
        }
    }

    #[inline]
    fn tx_burst(&mut self, port: PortId, burst: &mut Burst<Mbuf>) {
        let Some(&id) = self.ids.get(port.index()) else {
            burst.clear();
            return;
        };
        let n = burst.len();
        if n == 0 {
            return;
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        let mut lens = [0u16; BURST];
        for ((slot, len), m) in raw.iter_mut().zip(lens.iter_mut()).zip(burst.drain(..)) {
            *len = m.data_len();
            *slot = m.into_raw();
        }
        let count = u16::try_from(n).unwrap_or(0);
        // SAFETY: the queue is this worker's alone; the first `n` pointers are mbufs we owned,
        // and the driver takes ownership of the first `sent`.
        let sent = usize::from(unsafe { sys::rte_eth_tx_burst(id, self.queue, raw.as_mut_ptr(), count) }).min(n);
        let stats = &mut self.stats[port.index()];
        stats.tx_packets += sent as u64;
        stats.tx_bytes += lens[..sent].iter().map(|&l| u64::from(l)).sum::<u64>();
        if sent < n {
            let left = n - sent;
            stats.tx_dropped += left as u64;
            self.extra[port.index()].tx_not_taken += left as u64;
            // SAFETY: the driver did not take the mbufs after `sent`; they are still ours.
            unsafe { sys::rte_pktmbuf_free_bulk(raw[sent..].as_mut_ptr(), u32::try_from(left).unwrap_or(0)) };
        }
    }

    fn alloc(&mut self) -> Option<Mbuf> {
        self.register_thread();
        // SAFETY: the pool is valid for the life of the process.
        let m = NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.pool.as_ptr()) })?;
        // SAFETY: a fresh mbuf from the pool: one segment, refcount one, ours alone.
        Some(unsafe { Mbuf::from_raw(m) })
    }

    fn stats(&self, port: PortId) -> PortStats {
        self.stats.get(port.index()).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn mempools_are_sized_from_the_eal_memory() {
        assert_eq!(eal_memory_mb(&args("-l 0 --no-huge -m 1024 --no-pci")), Some(1024));
        assert_eq!(eal_memory_mb(&args("-l 0 -m512")), Some(512));
        assert_eq!(eal_memory_mb(&args("--socket-mem=256,256")), Some(512));
        assert_eq!(eal_memory_mb(&args("--socket-mem 128")), Some(128));
        assert_eq!(eal_memory_mb(&args("-l 0 --no-pci")), None);
        assert_eq!(DpdkConfig::from_eal_args(&args("-l 0"), 2), DpdkConfig::default());
        // 1 GB, one worker: half of it, capped.
        assert_eq!(DpdkConfig::from_eal_args(&args("-m 1024"), 1).spare_mbufs, 131_071);
        // 256 MB, two workers: 64 MB each, less the descriptors.
        assert_eq!(DpdkConfig::from_eal_args(&args("-m 256"), 2).spare_mbufs, 26_214 - 8192);
        assert_eq!(DpdkConfig::from_eal_args(&args("-m 16"), 4).spare_mbufs, 4096);
    }
}
