//! The live state, in two sides that never wait for each other.
//!
//! - The attach side: the [`rules`] decide, for each process event and
//!   rescan (one at a time, under one lock), what to attach and detach; the
//!   [`KernelAttacher`] does it. After each change the outcome is published.
//! - The read side: scrapes and the landing page read the latest published
//!   [`Published`] snapshot (taken with a pointer copy), and read maps through
//!   it without any lock the attach side takes. An instance detached meanwhile
//!   stays alive until the scrape that holds it is done (see
//!   [`crate::attach::Reaper`]).

mod explain;
mod rules;
mod setup;
mod watch;

pub use explain::{
    explain_pid, explain_process, lines_text, parse_pid, ExplainError, ExplainProgram,
    ProcessExplanation, ProgramExplanation,
};
pub use rules::{
    AttachedInstance, Attacher, FailedBinary, FailedProcess, ProgramState, Reconciler, Reloaded,
    RuledProgram, ATTACH_ATTEMPTS,
};
pub use setup::{
    finish_set_up, object_and_fingerprint, set_up, set_up_all, set_up_object, BrokenProgram,
    SetUpProgram,
};
pub use watch::{watch_config, ConfigWatch};

use crate::attach::{AttachFailure, AttachTarget, Instance, PreparedProgram, Reaper};
use crate::config::Config;
use crate::discovery::{FileId, ProcSnapshot, ProcessInfo, ProcessSink};
use crate::elf::ElfCache;
use crate::metrics::encode::Encoder;
use crate::metrics::{ProgramMetrics, ScrapeProgram, SelfStats};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

/// ELF files parsed and kept (per device + inode + mtime).
const ELF_CACHE_ENTRIES: usize = 512;

/// Threads detaching at once when the exporter stops. The kernel frees a
/// uprobe link after an RCU grace period: at exit it closed them one after
/// another, and 200 instances took 18 s; dropped from many threads at once,
/// their grace periods overlap.
const STOP_DETACH_THREADS: usize = 64;

/// Set once the exporter is stopping: no new attach begins.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops every attach not yet begun (startup, events, rescans, reloads): the
/// exporter is about to detach everything and exit.
pub fn stop_attaching() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Where the config comes from, for reloads: a file, or the embedded default
/// pack; and the clang that compiles its inline code.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The config file (`None`: the embedded default pack).
    pub path: Option<PathBuf>,
    /// Compiles inline `code:`.
    pub compiler: Arc<crate::compile::clang::Compiler>,
}

impl ConfigSource {
    /// Reads and validates the config.
    pub fn load(&self) -> Result<Config, String> {
        let loaded = match &self.path {
            Some(path) => Config::load(path),
            None => crate::builtin::default_config(),
        };
        loaded.map_err(|errors| errors.to_string())
    }
}

/// How the exporter attaches and scrapes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Raw map keys per metric whose decoded labels are kept between scrapes.
    pub label_cache_keys: usize,
    /// Expedite RCU grace periods during each attach (`--attach.expedited-rcu`).
    pub expedited_rcu: bool,
}

/// A program as the kernel attacher loads it, with the readers of its metrics.
#[derive(Debug)]
pub struct KernelProgram {
    /// What it does (see [`SetUpProgram::fingerprint`]).
    pub fingerprint: String,
    /// The checked program.
    pub prepared: Arc<PreparedProgram>,
    /// The one loaded object of an `instances: shared` program.
    pub shared: Option<Arc<libbpf_rs::Object>>,
    /// A `pid_keyed` program's object, loaded at its first attach.
    pub pid_keyed: Option<Arc<crate::attach::pid_keyed::PidKeyedSlot>>,
    /// Decoders and layouts of its metrics.
    pub metrics: Arc<ProgramMetrics>,
}

impl RuledProgram for KernelProgram {
    fn name(&self) -> &str {
        self.prepared.name()
    }

    fn selects(&self, process: &ProcessInfo) -> bool {
        self.prepared.selector.matches(process)
    }

    fn per_binary(&self) -> bool {
        self.prepared.is_per_binary()
    }

    fn named_executables(&self) -> Vec<PathBuf> {
        self.prepared.selector.named_executables()
    }

    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl From<SetUpProgram> for KernelProgram {
    fn from(p: SetUpProgram) -> KernelProgram {
        KernelProgram {
            fingerprint: p.fingerprint,
            prepared: p.prepared,
            shared: p.shared,
            pid_keyed: p.pid_keyed,
            metrics: p.metrics,
        }
    }
}

impl AttachedInstance for Arc<Instance> {
    fn target(&self) -> &AttachTarget {
        &self.target
    }

    fn started_ns(&self) -> u64 {
        self.started_ns
    }

    fn failures(&self) -> &[AttachFailure] {
        &self.failures
    }
}

/// Loads programs into the kernel and attaches them; detaches on the reaper's
/// thread.
#[derive(Debug)]
pub struct KernelAttacher {
    elf_cache: ElfCache,
    reaper: Reaper,
    expedited_rcu: bool,
    stats: Arc<Mutex<SelfStats>>,
}

impl KernelAttacher {
    /// An attacher timing its attaches into `stats`.
    pub fn new(expedited_rcu: bool, stats: Arc<Mutex<SelfStats>>) -> KernelAttacher {
        let detaching = crate::metrics::lock_stats(&stats).detaching.clone();
        KernelAttacher {
            elf_cache: ElfCache::new(ELF_CACHE_ENTRIES),
            reaper: Reaper::new(detaching),
            expedited_rcu,
            stats,
        }
    }
}

impl Attacher for KernelAttacher {
    type Program = KernelProgram;
    type Instance = Arc<Instance>;

    fn attach(
        &mut self,
        program: &KernelProgram,
        target: AttachTarget,
        event_ns: Option<u64>,
    ) -> Result<Arc<Instance>, Vec<AttachFailure>> {
        if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(vec![AttachFailure {
                kind: crate::config::ProbeKind::Usdt,
                probe: String::new(),
                message: format!(
                    "not attached to {}: the exporter is stopping",
                    target.describe()
                ),
                cancelled: true,
                unavailable: None,
            }]);
        }
        let name = program.prepared.name();
        // An executable named in the config, attached before any process runs
        // it: not an attach to a process, so neither timed nor expedited.
        let named_binary = matches!(target, AttachTarget::Binary { found_in: None, .. });
        let described = target.describe();
        let started = Instant::now();
        let expedited =
            (self.expedited_rcu && !named_binary).then(crate::attach::ExpeditedRcu::begin);
        let result = program.prepared.instantiate(
            target,
            &mut self.elf_cache,
            program.shared.as_ref(),
            program.pid_keyed.as_deref(),
        );
        drop(expedited);
        if !named_binary {
            crate::metrics::lock_stats(&self.stats)
                .attach_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let instance = result.map_err(|e| e.failures())?;
        if named_binary {
            tracing::info!(program = %name, binary = %described, "attached for every process: {}", instance.attached.join(", "));
        } else {
            // From the kernel's fork/exec event to attached (-1 when found by a rescan).
            let event_to_attach_ms = event_ns.map_or(-1.0, |event_ns| {
                let latency =
                    crate::discovery::monotonic_ns().saturating_sub(event_ns) as f64 / 1e9;
                crate::metrics::lock_stats(&self.stats)
                    .event_to_attach
                    .observe(latency);
                latency * 1e3
            });
            tracing::info!(
                program = %name, target = %described,
                links = instance.link_count(), elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                event_to_attach_ms,
                "attached: {}", instance.attached.join(", ")
            );
        }
        Ok(Arc::new(instance))
    }

    fn detach(&mut self, instance: Arc<Instance>) {
        // Now, not when a scrape lets the instance go: by then a new process
        // may have been given the pid. Not when the whole object is going.
        if !STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
            instance.deselect();
        }
        self.reaper.drop_later(instance);
    }

    fn file_id(&self, path: &Path) -> Option<FileId> {
        FileId::of(path)
    }
}

/// One program as the read side sees it: a copy of the attach side's outcome
/// at one moment, sharing the instances.
#[derive(Debug)]
pub struct PublishedProgram {
    /// The checked program.
    pub prepared: Arc<PreparedProgram>,
    /// Decoders and layouts of its metrics (and their label caches).
    pub metrics: Arc<ProgramMetrics>,
    /// The one loaded object of an `instances: shared` program.
    pub shared: Option<Arc<libbpf_rs::Object>>,
    /// Instances per process.
    pub instances: Vec<Arc<Instance>>,
    /// Instances per binary.
    pub binaries: Vec<Arc<Instance>>,
    /// Matching processes where nothing attached.
    pub failed: Vec<FailedProcess>,
    /// Executables named in the config where nothing attached.
    pub failed_binaries: Vec<FailedBinary>,
    /// Of `failed`, the processes whose build offers none of the program's
    /// sources, counted by source and reason.
    pub no_source: crate::metrics::NoSourceCounts,
}

/// The processes of `failed` whose build offers none of the sources.
fn no_source_counts<'a>(
    failed: impl Iterator<Item = &'a FailedProcess>,
) -> crate::metrics::NoSourceCounts {
    let mut counts = crate::metrics::NoSourceCounts::default();
    for process in failed.filter(|f| f.unobservable()) {
        counts.processes += 1;
        for key in process
            .failures
            .iter()
            .filter_map(|f| f.unavailable.clone())
        {
            *counts.by_reason.entry(key).or_default() += 1;
        }
    }
    counts
}

impl PublishedProgram {
    fn of(state: &ProgramState<KernelProgram, Arc<Instance>>) -> PublishedProgram {
        PublishedProgram {
            prepared: state.program.prepared.clone(),
            metrics: state.program.metrics.clone(),
            // A pid-keyed program's object once an attach loaded it.
            shared: state.program.shared.clone().or_else(|| {
                let pid_keyed = state.program.pid_keyed.as_ref()?.loaded()?;
                Some(pid_keyed.object().clone())
            }),
            instances: state.instances.values().cloned().collect(),
            binaries: state.binaries.values().cloned().collect(),
            failed: state.failed.values().cloned().collect(),
            failed_binaries: state.failed_binaries.values().cloned().collect(),
            no_source: no_source_counts(state.failed.values()),
        }
    }

    /// What a scrape reads of it.
    pub fn scrape(&self) -> ScrapeProgram<'_> {
        ScrapeProgram {
            name: self.prepared.name(),
            metrics: &self.metrics,
            shared: self.shared.as_deref(),
            instances: &self.instances,
            binaries: &self.binaries,
            failed: self.failed.len() - self.no_source.processes,
            no_source: &self.no_source,
            per_binary: self.prepared.is_per_binary(),
            pid_keyed: self.prepared.is_pid_keyed(),
        }
    }

    /// Every attached instance: per process (or shared) and per binary.
    pub fn attached(&self) -> impl Iterator<Item = &Arc<Instance>> {
        self.instances.iter().chain(&self.binaries)
    }
}

/// What the read side sees: every program's outcome at one moment.
#[derive(Debug, Default)]
pub struct Published {
    /// The programs, in config order.
    pub programs: Vec<PublishedProgram>,
}

/// Everything the exporter runs.
#[derive(Debug)]
pub struct Exporter {
    rules: Mutex<Reconciler<KernelAttacher>>,
    published: RwLock<Arc<Published>>,
    stats: Arc<Mutex<SelfStats>>,
    /// Programs of the config in force that could not be set up.
    broken: Mutex<Vec<BrokenProgram>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    options: Options,
    source: ConfigSource,
}

impl Exporter {
    /// Sets up every program of the config (a program that fails is kept among
    /// the broken ones and logged; the others run). Nothing is attached before
    /// the first rescan ([`ProcessSink::rescanned`]).
    pub fn new(config: &Config, source: ConfigSource, options: Options) -> Exporter {
        let (programs, broken) = set_up_all(config, &source.compiler, options.label_cache_keys);
        let mut stats = SelfStats::default();
        stats.reload.success(unix_now());
        let stats = Arc::new(Mutex::new(stats));
        let programs = programs.into_iter().map(KernelProgram::from).collect();
        let attacher = KernelAttacher::new(options.expedited_rcu, stats.clone());
        let exporter = Exporter {
            rules: Mutex::new(Reconciler::new(attacher, programs, stats.clone())),
            published: RwLock::new(Arc::default()),
            stats,
            broken: Mutex::new(broken),
            reloading: Mutex::new(()),
            options,
            source,
        };
        exporter.change(|_| {});
        exporter
    }

    /// The flag saying whether process events flow: the event watcher sets
    /// it, the rescans and the scrapes read it.
    pub fn process_events_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        crate::metrics::lock_stats(&self.stats)
            .process_events
            .clone()
    }

    /// The programs of the config in force that could not be set up.
    pub fn broken(&self) -> Vec<BrokenProgram> {
        self.broken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The last reload's outcome, for the landing page.
    pub fn reload_status(&self) -> crate::metrics::ReloadStatus {
        crate::metrics::lock_stats(&self.stats).reload.clone()
    }

    /// Reloads the config from where it came from (SIGHUP, `POST /-/reload`,
    /// `--config.watch`); see [`Exporter::reload`].
    pub fn reload_config(&self) -> Result<(), String> {
        let source = self.source.clone();
        self.reload(&source.compiler, || source.load())
    }

    /// Reloads the config `load` returns. Everything is checked first, as
    /// `check` does (inline code compiled, every changed program loaded through
    /// the verifier); if anything fails nothing changes, and the errors are
    /// returned, logged and kept for the landing page and the self-metrics.
    /// Otherwise unchanged programs keep their instances and counts, changed
    /// ones are replaced, removed ones detached, and new ones attached.
    pub fn reload(
        &self,
        compiler: &crate::compile::clang::Compiler,
        load: impl FnOnce() -> Result<Config, String>,
    ) -> Result<(), String> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = load().and_then(|config| self.apply_config(&config, compiler));
        let mut stats = crate::metrics::lock_stats(&self.stats);
        match &result {
            Ok(()) => {
                stats.reload.success(unix_now());
                tracing::info!("config reloaded");
            }
            Err(e) => {
                stats.reload.failure(e.clone());
                tracing::error!("config reload failed, the running programs are unchanged:\n{e}");
            }
        }
        result
    }

    /// Checks every program of `config`, then swaps the program set.
    fn apply_config(
        &self,
        config: &Config,
        compiler: &crate::compile::clang::Compiler,
    ) -> Result<(), String> {
        let running = self.lock_rules().fingerprints();
        let mut next = Vec::new();
        let mut errors = Vec::new();
        for program in &config.programs {
            let checked = object_and_fingerprint(config, program, compiler).and_then(
                |(object, fingerprint)| {
                    if running.contains(&fingerprint) {
                        return Ok(Reloaded::Unchanged(fingerprint));
                    }
                    let set_up = set_up_object(
                        config,
                        program,
                        object,
                        fingerprint,
                        self.options.label_cache_keys,
                    )?;
                    setup::log_fallbacks(&set_up.prepared);
                    if set_up.shared.is_none() {
                        set_up.prepared.verify().map_err(|e| {
                            vec![format!(
                                "{}:{}:{}: program {:?}: {e}",
                                config.path.display(),
                                program.referenced.line(),
                                program.referenced.column(),
                                program.value.name
                            )]
                        })?;
                    }
                    Ok(Reloaded::New(KernelProgram::from(set_up)))
                },
            );
            match checked {
                Ok(item) => next.push(item),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let snapshot = ProcSnapshot::take(&BTreeSet::new());
        let mut outcome = Ok(());
        self.change(|rules| {
            outcome = rules.reload(next);
            if outcome.is_ok() {
                rules.apply_rescan(snapshot);
            }
        });
        if outcome.is_ok() {
            self.broken
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clear();
        }
        outcome
    }

    /// Detaches every instance at once, from [`STOP_DETACH_THREADS`] threads,
    /// and returns how many there were: the exporter is stopping (call
    /// [`stop_attaching`] first). An instance a scrape still reads is freed
    /// when that scrape ends, or at exit.
    pub fn detach_all(&self) -> usize {
        let mut taken = Vec::new();
        self.change(|rules| taken = rules.take_instances());
        let count = taken.len();
        let threads = count.clamp(1, STOP_DETACH_THREADS);
        let mut shares: Vec<Vec<Arc<Instance>>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, instance) in taken.into_iter().enumerate() {
            shares[i % threads].push(instance);
        }
        std::thread::scope(|scope| {
            for share in shares {
                let spawned = std::thread::Builder::new()
                    .name("stop-detach".into())
                    .spawn_scoped(scope, move || drop(share));
                // No thread: the share was dropped with the error, here.
                drop(spawned);
            }
        });
        count
    }

    /// The latest outcome of the attach side: a pointer copy, never waiting for an attach.
    pub fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads every map of the published instances and encodes the exposition
    /// into `enc` (see [`crate::metrics::render`]).
    pub fn scrape(&self, enc: Encoder) -> Vec<u8> {
        let published = self.published();
        let programs: Vec<ScrapeProgram> = published
            .programs
            .iter()
            .map(PublishedProgram::scrape)
            .collect();
        crate::metrics::render(&programs, &self.stats, enc)
    }

    /// Runs one change of the attach side, then publishes its outcome.
    fn change(&self, apply: impl FnOnce(&mut Reconciler<KernelAttacher>)) {
        let mut rules = self.lock_rules();
        apply(&mut rules);
        let published = Arc::new(Published {
            programs: rules.programs.iter().map(PublishedProgram::of).collect(),
        });
        let mut slot = self
            .published
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = std::mem::replace(&mut *slot, published);
        drop(slot);
        // Outside the lock: the last holder of a detached instance frees it.
        drop(previous);
    }

    /// The attach side; a panic elsewhere while it was held leaves state that is
    /// still consistent enough to go on, so poisoning is ignored.
    fn lock_rules(&self) -> MutexGuard<'_, Reconciler<KernelAttacher>> {
        self.rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ProcessSink for Exporter {
    fn process_execed(&self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.change(|rules| rules.process_execed(process, event_ns));
    }

    fn process_started(&self, process: &ProcessInfo, event_ns: Option<u64>) {
        self.change(|rules| rules.process_started(process, event_ns));
    }

    fn process_exited(&self, pid: i32) {
        self.change(|rules| rules.process_exited(pid));
    }

    fn rescanned(&self, snapshot: ProcSnapshot) {
        self.change(|rules| rules.apply_rescan(snapshot));
    }

    fn known_pids(&self) -> BTreeSet<i32> {
        self.lock_rules().known_pids()
    }
}
