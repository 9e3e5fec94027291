//! `overlink run --config FILE`: the gateway.
//!
//! Start-up order: configuration, I/O ports (their MACs feed the model), the control plane
//! (state directory, audit log), the admin API, then one worker per configured core. It runs until
//! SIGINT or SIGTERM, then stops the workers, closes the API and prints the per-port and
//! per-reason totals, like `dpdk-testpmd`. Every start-up error is one line and exit status 1.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use admin_http::{Limits, Listeners, Server};
use anyhow::{anyhow, Context};
use clap::Args;
use config::{Config, IoBackend};
use control::{Api, Control, Tokens};
use datapath::{
    AllowApproved, Counters, DropReason, Event, Mailboxes, Policy, SharedCounters, Telemetry, Worker, WorkerConfig,
};
use flow::SystemClock;
use io::{MemIo, MemPool, PacketIo, PortId, PortStats};
use wire::EthernetAddress;

/// Options of `overlink run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Print per-port statistics every N seconds (0: only at exit).
    #[arg(long, default_value_t = 0)]
    pub stats_period: u64,
}

/// The policy a worker asks about new flows: the native default, or the plugin chain.
#[derive(Debug)]
enum GatewayPolicy {
    /// No plugins directory: every flow of an approved endpoint is allowed.
    Native(AllowApproved),
    /// The WebAssembly plugin chain from the plugins directory.
    Plugins(Box<policy::WasmPolicy>),
}

impl Policy for GatewayPolicy {
    fn connect(
        &mut self,
        request: &datapath::ConnectRequest<'_>,
        tlvs: &mut datapath::Tlvs,
    ) -> datapath::ConnectVerdict {
        match self {
            GatewayPolicy::Native(p) => p.connect(request, tlvs),
            GatewayPolicy::Plugins(p) => p.connect(request, tlvs),
        }
    }

    fn between_bursts(&mut self) {
        if let GatewayPolicy::Plugins(p) = self {
            p.between_bursts();
        }
    }
}

/// How the ports of one backend are opened for each worker. Port `i` is the `i`-th distinct
/// interface of the configuration (networks on VLANs of one interface share its port).
trait Backend: Send + Sync + 'static {
    type Io: PacketIo + Send + 'static;
    /// Opens the ports for worker `worker`.
    fn open(&self, worker: usize) -> anyhow::Result<Self::Io>;
    /// The MAC address of each port.
    fn macs(&self, io: &Self::Io) -> Vec<EthernetAddress>;
    /// Start-up warnings (offloads that produce super-frames, ...).
    fn warnings(&self, _io: &Self::Io) -> Vec<String> {
        Vec::new()
    }
    /// Backend-specific per-port counters (name, value) of one worker's ports, for the exit
    /// statistics: the reasons behind each port's RX-dropped and TX-dropped.
    fn port_details(&self, _io: &Self::Io) -> Vec<Vec<(&'static str, u64)>> {
        Vec::new()
    }
    /// Lines printed after the totals at exit (a device's own counters and link state).
    fn report(&self) -> Vec<String> {
        Vec::new()
    }
}

/// In-memory ports: nothing arrives, nothing leaves. For trying the control plane and the admin
/// API without touching any interface.
struct Memory {
    ports: usize,
}

impl Backend for Memory {
    type Io = MemIo;

    fn open(&self, _worker: usize) -> anyhow::Result<MemIo> {
        Ok(MemIo::new(MemPool::new(4096), self.ports, 1024))
    }

    fn macs(&self, _io: &MemIo) -> Vec<EthernetAddress> {
        (0..self.ports).map(|i| EthernetAddress([0x02, 0, 0, 0, 0, u8::try_from(i + 1).unwrap_or(0xff)])).collect()
    }
}

/// AF_PACKET rings on Linux interfaces, one socket per worker per interface in a fanout group.
struct AfPacket {
    interfaces: Vec<String>,
    workers: usize,
}

impl Backend for AfPacket {
    type Io = io_afpacket::AfPacketIo;

    fn open(&self, worker: usize) -> anyhow::Result<Self::Io> {
        let names: Vec<&str> = self.interfaces.iter().map(String::as_str).collect();
        Ok(io_afpacket::AfPacketIo::open(&names, worker, self.workers, io_afpacket::RingConfig::default())?)
    }

    fn macs(&self, io: &Self::Io) -> Vec<EthernetAddress> {
        (0..self.interfaces.len())
            .map(|p| EthernetAddress(io.mac(PortId(u16::try_from(p).unwrap_or(u16::MAX)))))
            .collect()
    }

    fn warnings(&self, io: &Self::Io) -> Vec<String> {
        (0..self.interfaces.len())
            .flat_map(|p| io.offload_warnings(PortId(u16::try_from(p).unwrap_or(u16::MAX))))
            .collect()
    }

    fn port_details(&self, io: &Self::Io) -> Vec<Vec<(&'static str, u64)>> {
        (0..self.interfaces.len())
            .map(|p| {
                let s = io.afpacket_stats(PortId(u16::try_from(p).unwrap_or(u16::MAX)));
                vec![
                    ("oversize", s.oversize),
                    ("truncated", s.truncated),
                    ("buffer_too_small", s.buffer_too_small),
                    ("csum_failed", s.csum_failed),
                    ("ring_overruns", s.ring_overruns),
                    ("csum_completed", s.csum_completed),
                    ("tx_ring_full", s.tx_ring_full),
                    ("tx_too_big", s.tx_too_big),
                ]
            })
            .collect()
    }
}

/// DPDK poll-mode drivers: the EAL started from `gateway.dpdk_args`, port `i` the DPDK port named
/// by the `i`-th distinct interface, one queue pair per worker.
#[cfg(feature = "dpdk")]
struct DpdkBackend {
    dpdk: Arc<io_dpdk::Dpdk>,
}

#[cfg(feature = "dpdk")]
impl DpdkBackend {
    fn ports(&self) -> impl Iterator<Item = PortId> {
        (0..self.dpdk.ports()).map(|p| PortId(u16::try_from(p).unwrap_or(u16::MAX)))
    }
}

#[cfg(feature = "dpdk")]
impl Backend for DpdkBackend {
    type Io = io_dpdk::DpdkIo;

    fn open(&self, worker: usize) -> anyhow::Result<Self::Io> {
        Ok(self.dpdk.io(worker)?)
    }

    fn macs(&self, _io: &Self::Io) -> Vec<EthernetAddress> {
        self.ports().map(|p| EthernetAddress(self.dpdk.mac(p))).collect()
    }

    fn warnings(&self, _io: &Self::Io) -> Vec<String> {
        let d = &self.dpdk;
        self.ports()
            .filter(|&p| !d.link(p).up)
            .map(|p| format!("DPDK port {} ({}): link down", p.0, d.name(p)))
            .collect()
    }

    fn port_details(&self, io: &Self::Io) -> Vec<Vec<(&'static str, u64)>> {
        self.ports()
            .map(|p| {
                let s = io.extra_stats(p);
                vec![("multi_segment", s.multi_segment), ("tx_not_taken", s.tx_not_taken)]
            })
            .collect()
    }

    fn report(&self) -> Vec<String> {
        let d = &self.dpdk;
        self.ports()
            .map(|p| {
                let s = d.device_stats(p);
                format!(
                    "port {} ({}) device: RX-packets: {} RX-missed: {} RX-errors: {} RX-nombuf: {} TX-packets: {} \
                     TX-errors: {} ({}, MAC {}, {})",
                    p.0,
                    d.name(p),
                    s.ipackets,
                    s.imissed,
                    s.ierrors,
                    s.rx_nombuf,
                    s.opackets,
                    s.oerrors,
                    d.driver(p),
                    EthernetAddress(d.mac(p)),
                    d.link(p)
                )
            })
            .collect()
    }
}

/// The distinct interfaces of the configuration, in order of first use, and each network's port.
fn interfaces(config: &Config) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = Vec::new();
    let mut port_of = Vec::new();
    for n in &config.networks {
        let port = match names.iter().position(|i| i == &n.interface) {
            Some(p) => p,
            None => {
                names.push(n.interface.clone());
                names.len() - 1
            }
        };
        port_of.push(port);
    }
    (names, port_of)
}

fn read_token(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
    let token = token.trim().to_string();
    if token.len() < 16 {
        return Err(anyhow!(
            "the admin token in {} is shorter than 16 characters; use a long random token",
            path.display()
        ));
    }
    Ok(Some(token))
}

/// Runs the gateway until SIGINT/SIGTERM.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config).map_err(|e| anyhow!("{}: {e}", args.config.display()))?;
    let (names, _) = interfaces(&config);
    match config.gateway.io {
        IoBackend::Memory => {
            let backend = Memory { ports: names.len() };
            serve(config, backend, args)
        }
        IoBackend::AfPacket => {
            let backend = AfPacket { interfaces: names, workers: config.gateway.workers };
            serve(config, backend, args)
        }
        #[cfg(feature = "dpdk")]
        IoBackend::Dpdk => {
            let dpdk = io_dpdk::Dpdk::start(
                &config.gateway.dpdk_args,
                &names,
                config.gateway.workers,
                &io_dpdk::DpdkConfig::from_eal_args(&config.gateway.dpdk_args, config.gateway.workers),
            )?;
            let backend = DpdkBackend { dpdk };
            for p in backend.ports() {
                let d = &backend.dpdk;
                let mac = EthernetAddress(d.mac(p));
                eprintln!("overlink: DPDK port {} ({}, {}): MAC {mac}, {}", p.0, d.name(p), d.driver(p), d.link(p));
            }
            serve(config, backend, args)
        }
        #[cfg(not(feature = "dpdk"))]
        IoBackend::Dpdk => Err(anyhow!(
            "io = \"dpdk\": this overlink was built without DPDK; rebuild it with `cargo build --release --features \
             dpdk` (needs libdpdk-dev and libclang-dev)"
        )),
    }
}

fn serve<B: Backend>(config: Config, backend: B, args: &RunArgs) -> anyhow::Result<()> {
    let workers = config.gateway.workers;
    // Open every worker's ports before anything runs, so an I/O error stops start-up cleanly.
    let mut ios = Vec::with_capacity(workers);
    for w in 0..workers {
        ios.push(backend.open(w)?);
    }
    for warning in ios.first().map(|io| backend.warnings(io)).unwrap_or_default() {
        eprintln!("overlink: warning: {warning}");
    }
    let macs = ios.first().map(|io| backend.macs(io)).unwrap_or_default();
    let (_, port_of) = interfaces(&config);
    let ports: Vec<(PortId, EthernetAddress)> = port_of
        .iter()
        .map(|&p| (PortId(u16::try_from(p).unwrap_or(u16::MAX)), macs.get(p).copied().unwrap_or_default()))
        .collect();
    let tokens = Tokens {
        admin: read_token(&config.gateway.admin.token_file)?,
        read: read_token(&config.gateway.admin.read_token_file)?,
    };
    let listeners = Listeners { unix: Some(config.gateway.admin.socket.clone()), tcp: config.gateway.admin.tcp };
    let cores = config.gateway.cores.clone();
    let flow_capacity = config.gateway.flow_capacity;
    let (port_names, _) = interfaces(&config);

    let plugins_dir = config.gateway.plugins_dir.clone();
    let plugin_configs: std::collections::HashMap<String, String> =
        config.plugins.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut control = Control::open(config, ports).map_err(|e| anyhow!("{e}"))?;
    let model = control.shared_model();

    // The plugin chain: compiled off the datapath, watched for changes, one instance set per
    // worker and one for the control plane. Without a plugins directory no engine is started.
    let watcher = match &plugins_dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(anyhow!("gateway.plugins_dir: {} is not a directory", dir.display()));
            }
            let host = policy::PolicyHost::new(policy::Limits::default()).map_err(|e| anyhow!("plugin host: {e}"))?;
            let watcher = host.watch(dir, plugin_configs, workers);
            let chain = watcher.handle().chain();
            eprintln!("overlink: plugins from {}: {}", dir.display(), chain.names().join(", "));
            control.set_endpoint_policy(Box::new(watcher.handle().endpoint_hooks()));
            Some((host, watcher))
        }
        None => None,
    };
    let telemetry = Telemetry::new(workers);

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install the signal handlers")?;
    }

    let mailboxes = Mailboxes::new(workers, 4096);
    // A fresh secret per run keys the flow-table hash and the NAT port order, so that consumers
    // can neither aim hash collisions nor predict NAT ports (RFC 6056).
    let seed = random_seed().context("cannot read /dev/urandom for the flow-table and NAT port seed")?;
    let mut counters: Vec<Arc<SharedCounters>> = Vec::new();
    let mut handles = Vec::new();
    for (w, io) in ios.into_iter().enumerate() {
        let config = WorkerConfig { id: w, workers, flow_capacity, seed, ..WorkerConfig::default() };
        let policy = match &watcher {
            Some((_, w)) => GatewayPolicy::Plugins(Box::new(
                w.handle().worker_policy(config.id).with_model(model.clone()).with_clock(SystemClock::new()),
            )),
            None => GatewayPolicy::Native(AllowApproved),
        };
        let worker = Worker::new(config, io, policy, SystemClock::new(), model.clone(), mailboxes.clone())
            .with_telemetry(telemetry.clone());
        counters.push(worker.shared_counters());
        let stop = stop.clone();
        let core = cores.as_ref().and_then(|c| c.get(w).copied());
        let handle = thread::Builder::new()
            .name(format!("overlink-worker-{w}"))
            .spawn(move || run_worker(worker, core, &stop))
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }

    let api = Api::new(control, telemetry, counters.clone(), tokens);
    let mut server = match Server::bind(&listeners, Limits::default(), api) {
        Ok(s) => s,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                let _ = h.join();
            }
            return Err(anyhow!("admin API: {e}"));
        }
    };
    let status_counts = server.status_counts_handle();
    server.handler().count_server_responses(status_counts);
    let shutdown = server.shutdown_handle();
    let api_thread = thread::Builder::new().name("overlink-admin".into()).spawn(move || server.run())?;

    eprintln!(
        "overlink: running {workers} worker(s) on {} network(s); admin API on {}",
        port_names.len(),
        listeners.unix.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    );
    let period = Duration::from_secs(args.stats_period);
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(50));
        if args.stats_period > 0 && Instant::now() >= next {
            next += period;
            print_stats("periodic", &port_names, &counters, false);
        }
    }
    eprintln!("overlink: stopping");
    shutdown.shutdown();
    // Each worker hands its I/O back so the backend's own counters can be printed with the totals.
    let mut details: Vec<Vec<(&'static str, u64)>> = Vec::new();
    for h in handles {
        if let Ok(worker) = h.join() {
            for (i, port) in backend.port_details(worker.io()).into_iter().enumerate() {
                if details.len() <= i {
                    details.push(port.iter().map(|&(name, _)| (name, 0)).collect());
                }
                for (sum, (_, v)) in details[i].iter_mut().zip(port) {
                    sum.1 += v;
                }
            }
        }
    }
    match api_thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("overlink: admin API: {e}"),
        Err(_) => eprintln!("overlink: the admin API thread panicked"),
    }
    print_stats("totals at exit", &port_names, &counters, true);
    for (i, (name, port)) in port_names.iter().zip(&details).enumerate() {
        let fields: Vec<String> = port.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("port {i} ({name}) backend: {}", fields.join(" "));
    }
    for line in backend.report() {
        println!("{line}");
    }
    Ok(())
}

fn run_worker<I: PacketIo, P: Policy>(
    mut worker: Worker<I, P, SystemClock>,
    core: Option<usize>,
    stop: &AtomicBool,
) -> Worker<I, P, SystemClock> {
    if let Some(core) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("overlink: could not pin a worker to core {core}; it runs unpinned");
        }
    }
    worker.run(stop);
    worker
}

/// Prints per-port RX/TX/dropped and the drop reasons, like testpmd's statistics.
fn print_stats(title: &str, networks: &[String], counters: &[Arc<SharedCounters>], drops: bool) {
    let mut total = Counters::default();
    let mut ports: Vec<PortStats> = vec![PortStats::default(); networks.len()];
    for c in counters {
        total.add(&c.read());
        for (p, s) in ports.iter_mut().zip(c.ports()) {
            p.rx_packets += s.rx_packets;
            p.rx_bytes += s.rx_bytes;
            p.rx_dropped += s.rx_dropped;
            p.tx_packets += s.tx_packets;
            p.tx_bytes += s.tx_bytes;
            p.tx_dropped += s.tx_dropped;
        }
    }
    println!("---------------------- {title} ----------------------");
    for (i, (name, p)) in networks.iter().zip(&ports).enumerate() {
        println!(
            "port {i} ({name}): RX-packets: {:<12} RX-dropped: {:<10} TX-packets: {:<12} TX-dropped: {}",
            p.rx_packets, p.rx_dropped, p.tx_packets, p.tx_dropped
        );
    }
    println!(
        "gateway: received {} forwarded {} local {} dropped {}",
        total.get(Event::Received),
        total.get(Event::Forwarded),
        total.get(Event::Local),
        total.total_drops()
    );
    if drops {
        for reason in DropReason::ALL.iter().filter(|r| total.dropped(**r) > 0) {
            println!("  drop {:<28} {}", reason.name(), total.dropped(*reason));
        }
    }
}

/// 64 random bits from the kernel.
fn random_seed() -> std::io::Result<u64> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}
