//! The engine, its limits, compiling and validating plugins, and creating instances.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};

use crate::bindings::exports::overlink::policy::{approval, connect, lifecycle, visibility};
use crate::names;
use crate::stats::{nanos, Counters, FailureKind, PluginStats};

/// The sandbox's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The deadline of one hook call.
    pub deadline: Duration,
    /// The deadline of instantiation plus `init` (off the datapath).
    pub init_deadline: Duration,
    /// How often the epoch ticker increments the engine's epoch (the deadline's resolution).
    pub epoch_tick: Duration,
    /// The most linear memory one plugin instance may use, bytes.
    pub memory_bytes: usize,
    /// The most table elements one plugin instance may use.
    pub table_elements: usize,
    /// The most plugin instances alive at once (the pooling allocator's size).
    pub max_instances: u32,
    /// The most TLV bytes (type, length and value) one plugin may return for one flow.
    pub max_tlv_bytes: usize,
    /// The longest rejection reason an approval plugin may return, bytes.
    pub max_reason_bytes: usize,
    /// Consecutive failures that disable a plugin.
    pub failure_threshold: u32,
    /// The first backoff of a disabled plugin; doubled each time it is disabled again.
    pub backoff_initial: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(1),
            init_deadline: Duration::from_millis(100),
            epoch_tick: Duration::from_micros(200),
            memory_bytes: 16 << 20,
            table_elements: 10_000,
            max_instances: 512,
            max_tlv_bytes: datapath::MAX_TLV_BYTES,
            max_reason_bytes: 512,
            failure_threshold: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// The engine could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the plugin engine: {0}")]
pub struct HostError(String);

/// A plugin file that was refused (it is not loaded; the previous version keeps serving).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin {file} rejected: {reason}")]
pub struct PluginError {
    /// The file name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// The shared state behind a [`PolicyHost`].
pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    linker: Linker<StoreData>,
    started: Instant,
    pub(crate) deadline_ticks: u64,
    init_ticks: u64,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    log: Mutex<VecDeque<String>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for HostInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostInner").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

impl HostInner {
    pub(crate) fn now_nanos(&self) -> u64 {
        nanos(self.started.elapsed())
    }

    /// One log line: to stderr with a clear prefix, and kept (the last 256) for [`PolicyHost::log`].
    pub(crate) fn log(&self, line: String) {
        eprintln!("overlink-policy: {line}");
        if let Ok(mut log) = self.log.lock() {
            if log.len() == 256 {
                log.pop_front();
            }
            log.push_back(line);
        }
    }

    pub(crate) fn counters(&self, name: &str) -> Arc<Counters> {
        let mut all = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(name.to_owned()).or_insert_with(|| Arc::new(Counters::new(name))).clone()
    }
}

/// The plugin host: one engine (pooling allocator, epoch deadlines) and its epoch ticker.
#[derive(Clone, Debug)]
pub struct PolicyHost {
    pub(crate) inner: Arc<HostInner>,
}

impl PolicyHost {
    /// Builds the engine and starts the epoch-ticker thread (it stops when the last clone of
    /// the host, and every chain and instance made from it, is gone).
    pub fn new(limits: Limits) -> Result<PolicyHost, HostError> {
        let n = limits.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(2))
            .max_memory_size(limits.memory_bytes)
            .max_memories_per_component(2)
            .max_tables_per_component(4);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| HostError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        // The only thing a plugin may import: the types-only interface of the contract.
        linker.instance(names::TYPES).map_err(|e| HostError(format!("{e:#}")))?;
        let tick = limits.epoch_tick.max(Duration::from_micros(10));
        let ticks = |d: Duration| u64::try_from(d.as_nanos().div_ceil(tick.as_nanos())).unwrap_or(u64::MAX).max(1) + 1;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("policy-epoch".into())
                .spawn(move || {
                    while !stop.load(Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| HostError(format!("cannot start the epoch ticker: {e}")))?;
        }
        let inner = HostInner {
            deadline_ticks: ticks(limits.deadline),
            init_ticks: ticks(limits.init_deadline),
            engine,
            limits,
            linker,
            started: Instant::now(),
            counters: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            stop,
        };
        Ok(PolicyHost { inner: Arc::new(inner) })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Every plugin's counters, by file name.
    pub fn stats(&self) -> Vec<PluginStats> {
        let all = self.inner.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<PluginStats> = all.values().map(|c| c.snapshot()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One plugin's counters.
    pub fn plugin_stats(&self, name: &str) -> Option<PluginStats> {
        let all = self.inner.counters.lock().unwrap_or_else(|e| e.into_inner());
        all.get(name).map(|c| c.snapshot())
    }

    /// The recent log lines (loads, rejections, disables), oldest first.
    pub fn log(&self) -> Vec<String> {
        self.inner.log.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }

    /// Compiles and validates one plugin: it must be a component, import nothing (but the
    /// contract's types), export only contract interfaces with the contract's types, and its
    /// `init(config)` must succeed in a trial instance.
    pub fn compile(&self, name: &str, bytes: &[u8], config: &str) -> Result<Arc<Plugin>, PluginError> {
        let err = |reason: String| PluginError { file: name.to_owned(), reason };
        let host = &self.inner;
        let component =
            Component::new(&host.engine, bytes).map_err(|e| err(format!("not a valid component: {e:#}")))?;
        let ty = component.component_type();
        for (import, item) in ty.imports(&host.engine) {
            let types_only = import == names::TYPES
                && matches!(&item.ty, ComponentItem::ComponentInstance(i)
                    if i.exports(&host.engine).all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))));
            if !types_only {
                return Err(err(format!("imports `{import}`; plugins may import nothing")));
            }
        }
        for (export, _) in ty.exports(&host.engine) {
            if !names::EXPORTS.contains(&export) {
                return Err(err(format!("exports `{export}`, which is not an overlink:policy@0.1.0 interface")));
            }
        }
        let pre = host.linker.instantiate_pre(&component).map_err(|e| err(format!("cannot link: {e:#}")))?;
        let has = |n: &str| component.get_export_index(None, n).is_some();
        let indices = Indices {
            lifecycle: has(names::LIFECYCLE)
                .then(|| lifecycle::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| err(format!("bad lifecycle export: {e:#}")))?,
            visibility: has(names::VISIBILITY)
                .then(|| visibility::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| err(format!("bad visibility export: {e:#}")))?,
            approval: has(names::APPROVAL)
                .then(|| approval::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| err(format!("bad approval export: {e:#}")))?,
            connect: has(names::CONNECT)
                .then(|| connect::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| err(format!("bad connect export: {e:#}")))?,
        };
        if indices.visibility.is_none() && indices.approval.is_none() && indices.connect.is_none() {
            return Err(err("exports no hook (visibility, approval or connect)".into()));
        }
        let plugin = Arc::new(Plugin {
            name: name.to_owned(),
            config: config.to_owned(),
            pre,
            indices,
            counters: host.counters(name),
            host: self.inner.clone(),
        });
        // The trial instance: type-checks the exports and runs `init`.
        plugin.instantiate().map_err(|(_, reason)| err(reason))?;
        Ok(plugin)
    }

    /// Compiles a plugin file (see [`PolicyHost::compile`]); the name is the file name.
    pub fn compile_file(&self, path: &Path, config: &str) -> Result<Arc<Plugin>, PluginError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes =
            std::fs::read(path).map_err(|e| PluginError { file: name.clone(), reason: format!("cannot read: {e}") })?;
        self.compile(&name, &bytes, config)
    }
}

#[derive(Clone)]
struct Indices {
    lifecycle: Option<lifecycle::GuestIndices>,
    visibility: Option<visibility::GuestIndices>,
    approval: Option<approval::GuestIndices>,
    connect: Option<connect::GuestIndices>,
}

/// One compiled, validated plugin (one version of one file).
pub struct Plugin {
    name: String,
    config: String,
    pre: InstancePre<StoreData>,
    indices: Indices,
    pub(crate) counters: Arc<Counters>,
    pub(crate) host: Arc<HostInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("connect", &self.indices.connect.is_some())
            .field("visibility", &self.indices.visibility.is_some())
            .field("approval", &self.indices.approval.is_some())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it exports the connect hook.
    pub fn has_connect(&self) -> bool {
        self.indices.connect.is_some()
    }

    /// Whether it exports the visibility hook.
    pub fn has_visibility(&self) -> bool {
        self.indices.visibility.is_some()
    }

    /// Whether it exports the approval hook.
    pub fn has_approval(&self) -> bool {
        self.indices.approval.is_some()
    }

    /// A fresh instance in its own store (off the datapath: the loader, or between bursts).
    pub(crate) fn instantiate(&self) -> Result<Live, (FailureKind, String)> {
        let host = &self.host;
        self.counters.instantiations.fetch_add(1, Relaxed);
        let mut store = Store::new(&host.engine, StoreData::new(&host.limits));
        store.limiter(|d| &mut d.limiter);
        store.epoch_deadline_callback(StoreData::deadline_reached);
        store.data_mut().clock =
            CallClock { ticks: host.init_ticks, budget_ns: nanos(host.limits.init_deadline), overtime: None };
        store.set_epoch_deadline(host.init_ticks);
        let classify = |e: wasmtime::Error, store: &Store<StoreData>| (classify(&e, store), format!("{e:#}"));
        let instance = self.pre.instantiate(&mut store).map_err(|e| {
            let (kind, msg) = classify(e, &store);
            (kind, format!("cannot instantiate: {msg}"))
        })?;
        let load_err = |e: wasmtime::Error| (FailureKind::Violation, format!("export has the wrong type: {e:#}"));
        let connect =
            self.indices.connect.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(load_err)?;
        let visibility =
            self.indices.visibility.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(load_err)?;
        let approval =
            self.indices.approval.as_ref().map(|i| i.load(&mut store, &instance)).transpose().map_err(load_err)?;
        if let Some(lifecycle) = &self.indices.lifecycle {
            let guest = lifecycle.load(&mut store, &instance).map_err(load_err)?;
            self.counters.calls.fetch_add(1, Relaxed);
            match guest.call_init(&mut store, &self.config) {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    return Err((FailureKind::Violation, format!("init refused the configuration: {message}")))
                }
                Err(e) => {
                    let (kind, msg) = classify(e, &store);
                    return Err((kind, format!("init failed ({kind}): {msg}")));
                }
            }
        }
        store.data_mut().clock =
            CallClock { ticks: host.deadline_ticks, budget_ns: nanos(host.limits.deadline), overtime: None };
        Ok(Live { store, connect, visibility, approval })
    }
}

/// A live instance of one plugin in its own store.
pub(crate) struct Live {
    pub(crate) store: Store<StoreData>,
    pub(crate) connect: Option<connect::Guest>,
    pub(crate) visibility: Option<visibility::Guest>,
    pub(crate) approval: Option<approval::Guest>,
}

/// What a failed call was.
pub(crate) fn classify(e: &wasmtime::Error, store: &Store<StoreData>) -> FailureKind {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::Timeout,
        Some(_) if store.data().limiter.refused => FailureKind::Memory,
        Some(_) => FailureKind::Trap,
        None if store.data().limiter.refused => FailureKind::Memory,
        // Errors that are not traps come from lifting what the guest returned.
        None => FailureKind::Violation,
    }
}

/// Per-store data: the resource limiter and the deadline's bookkeeping.
#[derive(Debug)]
pub(crate) struct StoreData {
    pub(crate) limiter: Limiter,
    pub(crate) clock: CallClock,
}

/// The epoch deadline is wall-clock time: a worker preempted by the kernel in the middle of a
/// call would see its guest "time out" without having run. So when the deadline is reached the
/// host looks at the thread's CPU time: the guest gets one more deadline, and is interrupted at
/// the next one only if it actually ran (used at least 90 % of a deadline of CPU) in between.
/// A guest that spins is therefore stopped after about two deadlines; a preempted one is not.
#[derive(Debug, Default)]
pub(crate) struct CallClock {
    ticks: u64,
    budget_ns: u64,
    /// (thread CPU time when the deadline was first reached, extensions so far).
    pub(crate) overtime: Option<(u64, u32)>,
}

impl StoreData {
    fn new(limits: &Limits) -> Self {
        StoreData {
            limiter: Limiter { memory: limits.memory_bytes, tables: limits.table_elements, refused: false },
            clock: CallClock::default(),
        }
    }

    fn deadline_reached(mut ctx: wasmtime::StoreContextMut<'_, StoreData>) -> wasmtime::Result<UpdateDeadline> {
        let clock = &mut ctx.data_mut().clock;
        let Some(now) = thread_cpu_nanos() else { return Ok(UpdateDeadline::Interrupt) };
        match clock.overtime {
            None => {
                clock.overtime = Some((now, 1));
                Ok(UpdateDeadline::Continue(clock.ticks))
            }
            Some((start, n)) if now.saturating_sub(start) < clock.budget_ns / 10 * 9 && n < 100 => {
                clock.overtime = Some((start, n + 1));
                Ok(UpdateDeadline::Continue(clock.ticks))
            }
            Some(_) => Ok(UpdateDeadline::Interrupt),
        }
    }
}

/// The calling thread's CPU time.
#[allow(unsafe_code, reason = "one clock_gettime call; std has no thread CPU clock")]
fn thread_cpu_nanos() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes to it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()?.saturating_mul(1_000_000_000).saturating_add(u64::try_from(ts.tv_nsec).ok()?))
}

/// Caps memory and tables; remembers a refusal to tell a memory failure from a plain trap.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory: usize,
    tables: usize,
    pub(crate) refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.tables {
            self.refused = true;
            return Ok(false);
        }
        Ok(true)
    }
}
