//! Chains of plugins: loading a directory, publishing versions to every consumer, watching.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::host::{Plugin, PluginError, PolicyHost};
use crate::run::{EndpointHooks, InstanceSet, Mailbox, WasmPolicy};

/// One immutable chain version: plugins in file-name order.
#[derive(Clone, Debug)]
pub struct Chain {
    host: PolicyHost,
    version: u64,
    plugins: Vec<Arc<Plugin>>,
}

impl Chain {
    /// The version (1 for the first chain a handle published; 0 when empty).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// The plugin file names, in order.
    pub fn names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name().to_owned()).collect()
    }

    /// A fixed (never reloaded) policy for one worker, with its own instances.
    pub fn policy(&self) -> WasmPolicy {
        WasmPolicy::new(self.host.inner.clone(), InstanceSet::new(self.version, &self.plugins), None)
    }

    /// Fixed endpoint hooks for the control plane, with their own instances.
    pub fn endpoint_hooks(&self) -> EndpointHooks {
        EndpointHooks::new(self.host.inner.clone(), InstanceSet::new(self.version, &self.plugins), None)
    }
}

impl PolicyHost {
    /// Compiles every `*.wasm` in `dir`, in file-name order, with its configuration from
    /// `configs` (by file name; "{}" when absent). Every file must pass.
    pub fn load_dir(&self, dir: &Path, configs: &HashMap<String, String>) -> Result<Chain, Vec<PluginError>> {
        let files =
            scan(dir).map_err(|e| vec![PluginError { file: dir.display().to_string(), reason: e.to_string() }])?;
        let mut plugins = Vec::new();
        let mut errors = Vec::new();
        for (name, (path, _)) in files {
            let config = configs.get(&name).map_or("{}", String::as_str);
            match self.compile_file(&path, config) {
                Ok(p) => plugins.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Chain { host: self.clone(), version: 1, plugins })
    }

    /// A reloadable chain over `dir` for `workers` datapath workers and one control plane,
    /// loaded once now; call [`ChainHandle::reload_now`] to pick up changes.
    pub fn chain_handle(&self, dir: &Path, configs: HashMap<String, String>, workers: usize) -> ChainHandle {
        let shared = Arc::new(Shared {
            host: self.clone(),
            dir: dir.to_owned(),
            configs,
            state: Mutex::new(State { files: BTreeMap::new(), chain: Vec::new(), version: 0 }),
            mailboxes: (0..=workers).map(|_| Arc::new(Mailbox::default())).collect(),
            taken: (0..=workers).map(|_| AtomicBool::new(false)).collect(),
            workers,
        });
        let handle = ChainHandle { shared };
        handle.reload_now();
        handle
    }

    /// [`PolicyHost::chain_handle`] plus a thread polling `dir` every 200 ms.
    pub fn watch(&self, dir: &Path, configs: HashMap<String, String>, workers: usize) -> Watcher {
        Watcher::start(self.chain_handle(dir, configs, workers), Duration::from_millis(200))
    }
}

/// What a file looked like when last loaded: (modified ns, size, inode).
type Fingerprint = (u128, u64, u64);

fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, (PathBuf, Fingerprint)>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".wasm") || name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().ok().and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        files.insert(name, (entry.path(), (modified.map_or(0, |d| d.as_nanos()), meta.len(), inode)));
    }
    Ok(files)
}

struct FileEntry {
    seen: Fingerprint,
    /// The last version of this file that passed validation (kept when a newer one fails).
    good: Option<Arc<Plugin>>,
}

struct State {
    files: BTreeMap<String, FileEntry>,
    chain: Vec<Arc<Plugin>>,
    version: u64,
}

struct Shared {
    host: PolicyHost,
    dir: PathBuf,
    configs: HashMap<String, String>,
    state: Mutex<State>,
    /// One per worker, then one for the control plane.
    mailboxes: Vec<Arc<Mailbox>>,
    taken: Vec<AtomicBool>,
    workers: usize,
}

/// What one reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The chain version serving after the reload.
    pub version: u64,
    /// Whether a new version was published.
    pub published: bool,
    /// Files (new or changed) that were loaded.
    pub loaded: Vec<String>,
    /// Files (new or changed) that were rejected; their last good version, if any, keeps serving.
    pub rejected: Vec<PluginError>,
    /// Files that left the chain.
    pub removed: Vec<String>,
    /// The chain after the reload, in order.
    pub chain: Vec<String>,
}

/// A reloadable plugin chain over a directory, shared by every worker and the control plane.
#[derive(Clone)]
pub struct ChainHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ChainHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainHandle").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

impl ChainHandle {
    /// Rescans the directory now: new or changed files are validated and compiled (here, off
    /// the datapath); if the chain changed, a new version is instantiated for every consumer
    /// and left in its mailbox (workers swap it in between bursts).
    pub fn reload_now(&self) -> ReloadReport {
        let shared = &self.shared;
        let host = &shared.host;
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = ReloadReport::default();
        // Sets swapped out since the last reload are dropped here, not on the datapath.
        for mailbox in &shared.mailboxes {
            let retired = std::mem::take(&mut *mailbox.retired.lock().unwrap_or_else(|e| e.into_inner()));
            drop(retired);
        }
        let files = match scan(&shared.dir) {
            Ok(files) => files,
            Err(e) => {
                host.inner.log(format!(
                    "cannot read the plugins directory {}: {e}; the chain is unchanged",
                    shared.dir.display()
                ));
                report.version = state.version;
                report.chain = state.chain.iter().map(|p| p.name().to_owned()).collect();
                return report;
            }
        };
        let gone: Vec<String> = state.files.keys().filter(|k| !files.contains_key(*k)).cloned().collect();
        for name in gone {
            state.files.remove(&name);
            host.inner.log(format!("plugin {name}: removed from the directory; it leaves the chain"));
            report.removed.push(name);
        }
        for (name, (path, fp)) in &files {
            if state.files.get(name).is_some_and(|e| e.seen == *fp) {
                continue;
            }
            let config = shared.configs.get(name).map_or("{}", String::as_str);
            let result = host.compile_file(path, config);
            let entry = state.files.entry(name.clone()).or_insert(FileEntry { seen: *fp, good: None });
            entry.seen = *fp;
            match result {
                Ok(plugin) => {
                    plugin.counters.reset_health();
                    entry.good = Some(plugin);
                    host.inner.log(format!("plugin {name}: loaded"));
                    report.loaded.push(name.clone());
                }
                Err(e) => {
                    let keeps = if entry.good.is_some() { "the previous version keeps serving" } else { "not loaded" };
                    host.inner.log(format!("plugin {name}: rejected: {}; {keeps}", e.reason));
                    report.rejected.push(e);
                }
            }
        }
        let chain: Vec<Arc<Plugin>> = state.files.values().filter_map(|e| e.good.clone()).collect();
        let same = chain.len() == state.chain.len() && chain.iter().zip(&state.chain).all(|(a, b)| Arc::ptr_eq(a, b));
        if !same || state.version == 0 {
            state.version += 1;
            state.chain = chain;
            let version = state.version;
            for mailbox in &shared.mailboxes {
                let set = InstanceSet::new(version, &state.chain);
                let old = mailbox.pending.lock().unwrap_or_else(|e| e.into_inner()).replace(set);
                mailbox.published.store(version, Ordering::Release);
                drop(old);
            }
            report.published = true;
        }
        report.version = state.version;
        report.chain = state.chain.iter().map(|p| p.name().to_owned()).collect();
        report
    }

    /// The datapath policy of worker `worker` (each can be taken once).
    ///
    /// # Panics
    /// If `worker` is out of range or was already taken (a programming error of the caller).
    pub fn worker_policy(&self, worker: usize) -> WasmPolicy {
        assert!(worker < self.shared.workers, "worker {worker} out of range");
        assert!(!self.shared.taken[worker].swap(true, Ordering::Relaxed), "worker {worker}'s policy was already taken");
        WasmPolicy::new(
            self.shared.host.inner.clone(),
            InstanceSet::new(0, &[]),
            Some(self.shared.mailboxes[worker].clone()),
        )
    }

    /// The control plane's endpoint hooks (can be taken once).
    ///
    /// # Panics
    /// If it was already taken.
    pub fn endpoint_hooks(&self) -> EndpointHooks {
        let i = self.shared.workers;
        assert!(!self.shared.taken[i].swap(true, Ordering::Relaxed), "the endpoint hooks were already taken");
        EndpointHooks::new(
            self.shared.host.inner.clone(),
            InstanceSet::new(0, &[]),
            Some(self.shared.mailboxes[i].clone()),
        )
    }

    /// The current chain version.
    pub fn version(&self) -> u64 {
        self.shared.state.lock().map(|s| s.version).unwrap_or(0)
    }

    /// The current chain.
    pub fn chain(&self) -> Chain {
        let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        Chain { host: self.shared.host.clone(), version: state.version, plugins: state.chain.clone() }
    }

    /// The host.
    pub fn host(&self) -> &PolicyHost {
        &self.shared.host
    }
}

/// A [`ChainHandle`] with a thread that polls the directory; stops when dropped.
#[derive(Debug)]
pub struct Watcher {
    handle: ChainHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(handle: ChainHandle, every: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let handle = handle.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("policy-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(every);
                        if !stop.load(Ordering::Relaxed) {
                            handle.reload_now();
                        }
                    }
                })
                .ok()
        };
        if thread.is_none() {
            handle.host().inner.log("cannot start the directory watcher thread; reload by hand".into());
        }
        Watcher { handle, stop, thread }
    }

    /// The chain it reloads.
    pub fn handle(&self) -> &ChainHandle {
        &self.handle
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
