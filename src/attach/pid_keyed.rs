//! `instances: pid_keyed`: one loaded object for every matching process, its
//! probes placed once per file (libbpf's pid -1) and shared by the processes
//! that map it, and the processes the exporter selected written into the
//! object's `exporter_pids` map, which the program consults
//! (`exporter_pids.bpf.h`).
//!
//! So a process whose files are already probed costs one map update to
//! select, not a load and a link: no verifier run, no `BPF_LINK_CREATE`
//! and its RCU wait, and kernel memory that does not grow with the
//! processes. The price: the probes fire (a breakpoint each) in every
//! process that maps the file, selected or not; the program returns at once
//! in the others.

use crate::config::PidKey;
use libbpf_rs::{Link, MapCore, MapFlags, Object};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The map of selected pids every pid-keyed object holds.
pub const PIDS_MAP: &str = "exporter_pids";
/// The map holding the exporter's PID namespace.
pub const PIDNS_MAP: &str = "exporter_pidns";
/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INIT_PIDNS_INO: u64 = 0xEFFF_FFFC;

/// How long a file's links stay after the last process using them left,
/// by default: a process of the file started meanwhile is selected with no
/// link to make (no `BPF_LINK_CREATE`, no wait for the kernel).
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// [`DEFAULT_LINGER`] unless `--attach.linger` says otherwise, in ms.
static LINGER_MS: AtomicU64 = AtomicU64::new(DEFAULT_LINGER.as_millis() as u64);

/// Sets how long unused links stay (`--attach.linger`), before any program is set up.
pub fn set_linger(linger: Duration) {
    LINGER_MS.store(linger.as_millis() as u64, Ordering::Relaxed);
}

fn linger() -> Duration {
    Duration::from_millis(LINGER_MS.load(Ordering::Relaxed))
}

/// The links of one probe in one file, for every process.
#[derive(Debug)]
pub struct FileLink {
    links: Vec<Link>,
    /// What is attached, for the landing page.
    pub what: Vec<String>,
}

/// One instance's use of a [`FileLink`]; the link is detached [`linger()`]
/// after its last use is dropped, unless a process uses it again.
#[derive(Debug)]
pub struct LinkUse {
    pid_keyed: Arc<PidKeyed>,
    key: String,
    link: Arc<FileLink>,
}

impl LinkUse {
    /// Number of kernel links.
    pub fn link_count(&self) -> usize {
        self.link.links.len()
    }

    /// What is attached, for the landing page.
    pub fn what(&self) -> &[String] {
        &self.link.what
    }
}

impl Drop for LinkUse {
    fn drop(&mut self) {
        self.pid_keyed.release(&self.key);
    }
}

/// A file's links and the instances using them.
#[derive(Debug)]
struct LinkEntry {
    link: Arc<FileLink>,
    users: usize,
    /// When the last user left.
    idle_since: Option<Instant>,
    /// Placed for one process only: of no use once it left.
    one_process: bool,
}

/// A metric map of the program and where its keys hold the pid.
#[derive(Debug, Clone)]
struct PidMap {
    table: String,
    pid_key: PidKey,
}

/// Longest an exited process's entries wait to be deleted (see
/// [`PidKeyed::deselect`]).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The one object of a pid-keyed program and what is attached of it.
#[derive(Debug)]
pub struct PidKeyed {
    object: Arc<Object>,
    /// Links by probe and file (see [`PidKeyed::link`]).
    links: Mutex<HashMap<String, LinkEntry>>,
    maps: Vec<PidMap>,
    /// Deselected pids whose entries are still in the maps.
    exited: Mutex<Exited>,
}

/// Exited processes whose entries wait to be deleted.
#[derive(Debug, Default)]
struct Exited {
    pids: HashSet<u32>,
    /// When the maps were last swept.
    swept: Option<Instant>,
    /// Whether a thread waits to sweep (and to detach links unused for
    /// [`linger()`]).
    scheduled: bool,
}

/// Why a pid-keyed object cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PidKeyedError {
    /// The object lacks a map the header declares.
    #[error("`instances: pid_keyed` needs the maps of exporter_pids.bpf.h, and the object has no {0:?}: #include \"exporter_pids.bpf.h\" (written by `ebpf-userspace-exporter headers -o DIR`), return early from each probe unless exporter_selected(), and key the metric maps by exporter_pid()")]
    MissingMap(&'static str),
    /// The object could not be opened.
    #[error("{0}")]
    Open(String),
    /// The PID namespace could not be written into the object.
    #[error("cannot tell the object the exporter's PID namespace: {0}")]
    PidNamespace(String),
}

impl PidKeyed {
    /// Takes the program's loaded object; `tables` are its metric maps, each
    /// with where its keys hold the pid.
    pub fn new(
        object: Arc<Object>,
        tables: impl IntoIterator<Item = (String, PidKey)>,
    ) -> Result<PidKeyed, PidKeyedError> {
        let find = |name: &'static str| {
            object
                .maps()
                .find(|m| m.name().to_string_lossy() == name)
                .ok_or(PidKeyedError::MissingMap(name))
        };
        find(PIDS_MAP)?;
        let pidns = find(PIDNS_MAP)?;
        let (dev, ino) = own_pid_namespace().map_err(PidKeyedError::PidNamespace)?;
        if ino != INIT_PIDNS_INO {
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&dev.to_ne_bytes());
            value[8..].copy_from_slice(&ino.to_ne_bytes());
            pidns
                .update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
                .map_err(|e| PidKeyedError::PidNamespace(e.to_string()))?;
        }
        let maps = tables
            .into_iter()
            .map(|(table, pid_key)| PidMap { table, pid_key })
            .collect();
        Ok(PidKeyed {
            object,
            links: Mutex::new(HashMap::new()),
            maps,
            exited: Mutex::new(Exited::default()),
        })
    }

    /// The loaded object.
    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    /// The links of the probe `key` names (a probe and the file it is in),
    /// made by `make` unless a process attached earlier made them; links
    /// `one_process` attached to one process (see
    /// [`PreparedProgram::usdt_per_file`](super::PreparedProgram)) go with it.
    pub fn link(
        self: &Arc<Self>,
        key: String,
        one_process: bool,
        make: impl FnOnce() -> Result<(Vec<Link>, Vec<String>), String>,
    ) -> Result<LinkUse, String> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let link = match links.get_mut(&key) {
            Some(entry) => {
                entry.users += 1;
                entry.idle_since = None;
                entry.link.clone()
            }
            None => {
                let (made, what) = make()?;
                let link = Arc::new(FileLink { links: made, what });
                links.insert(
                    key.clone(),
                    LinkEntry {
                        link: link.clone(),
                        users: 1,
                        idle_since: None,
                        one_process,
                    },
                );
                link
            }
        };
        Ok(LinkUse {
            pid_keyed: self.clone(),
            key,
            link,
        })
    }

    /// One use of `key`'s links is over: unused, they wait [`linger()`].
    fn release(self: &Arc<Self>, key: &str) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = links.get_mut(key) else {
            return;
        };
        entry.users = entry.users.saturating_sub(1);
        if entry.users > 0 {
            return;
        }
        if entry.one_process {
            let gone = links.remove(key);
            drop(links);
            drop(gone);
            return;
        }
        entry.idle_since = Some(Instant::now());
        drop(links);
        if linger().is_zero() {
            self.detach_unused();
        } else {
            self.schedule(linger());
        }
    }

    /// Detaches the links unused for [`linger()`]; how long until the next
    /// unused one is due, if any.
    fn detach_unused(&self) -> Option<Duration> {
        let linger = linger();
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        links.retain(|key, entry| match entry.idle_since {
            Some(since) if since.elapsed() >= linger => {
                gone.push((key.clone(), entry.link.clone()));
                false
            }
            _ => true,
        });
        let next = links
            .values()
            .filter_map(|e| e.idle_since)
            .map(|since| linger.saturating_sub(since.elapsed()))
            .min();
        drop(links);
        for (key, link) in gone {
            tracing::debug!(probe = %key, "links detached: no selected process has used them for {linger:?}");
            drop(link);
        }
        next
    }

    /// Runs [`PidKeyed::maintain`] on a thread of its own `wait` from now,
    /// unless one is waiting already.
    fn schedule(self: &Arc<Self>, wait: Duration) {
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        if exited.scheduled {
            return;
        }
        exited.scheduled = true;
        drop(exited);
        let later = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("pid-keyed".into())
            .spawn(move || {
                let mut wait = wait;
                loop {
                    std::thread::sleep(wait);
                    let Some(pid_keyed) = later.upgrade() else {
                        return;
                    };
                    match pid_keyed.maintain() {
                        Some(next) => wait = next.max(Duration::from_millis(10)),
                        None => return,
                    }
                }
            });
        if spawned.is_err() {
            self.exited
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .scheduled = false;
            self.maintain();
        }
    }

    /// Deletes the exited processes' entries when due and detaches unused
    /// links; how long until more is due (the thread waits that long), or
    /// none (the thread ends).
    fn maintain(&self) -> Option<Duration> {
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        let sweep_in = if exited.pids.is_empty() {
            None
        } else {
            let wait = exited.swept.map_or(Duration::ZERO, |last| {
                SWEEP_EVERY.saturating_sub(last.elapsed())
            });
            if wait.is_zero() {
                self.sweep(&mut exited);
                None
            } else {
                Some(wait)
            }
        };
        let next = [sweep_in, self.detach_unused()].into_iter().flatten().min();
        if next.is_none() {
            exited.scheduled = false;
        }
        next
    }

    /// Lets the program count process `pid`. A pid whose earlier process's
    /// entries are still in the maps has them deleted first.
    pub fn select(&self, pid: u32) -> Result<(), String> {
        {
            let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
            if exited.pids.contains(&pid) {
                self.sweep(&mut exited);
            }
        }
        self.pids_map()
            .and_then(|map| {
                map.update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("selecting pid {pid} in map {PIDS_MAP}: {e}"))
    }

    /// Stops counting process `pid` at once; what it counted is deleted with
    /// the entries of other exited processes, at most [`SWEEP_EVERY`] later
    /// (one walk of each map for all of them: a walk per exit would cost
    /// each exit the size of the maps), or before its pid is selected again.
    /// Scrapes show no series of a pid that is not selected meanwhile.
    pub fn deselect(self: &Arc<Self>, pid: u32) {
        if let Ok(map) = self.pids_map() {
            // ENOENT: never selected (its attach failed midway).
            let _ = map.delete(&pid.to_ne_bytes());
        }
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        exited.pids.insert(pid);
        let wait = exited.swept.map_or(Duration::ZERO, |last| {
            SWEEP_EVERY.saturating_sub(last.elapsed())
        });
        if wait.is_zero() {
            self.sweep(&mut exited);
        } else {
            drop(exited);
            self.schedule(wait);
        }
    }

    /// Deletes the entries of every exited pid from the metric maps.
    fn sweep(&self, exited: &mut Exited) {
        let started = Instant::now();
        let mut deleted = 0usize;
        for pid_map in &self.maps {
            let Some(map) = self
                .object
                .maps()
                .find(|m| m.name().to_string_lossy() == pid_map.table)
            else {
                continue;
            };
            // Keys first, then deletes: deleting while walking a hash map
            // makes the walk start over.
            let doomed: Vec<Vec<u8>> = map
                .keys()
                .filter(|key| {
                    pid_map
                        .pid_key
                        .read(key)
                        .is_some_and(|pid| exited.pids.contains(&pid))
                })
                .collect();
            for key in doomed {
                match map.delete(&key) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::debug!(table = %pid_map.table, "deleting an exited process's entry: {e}")
                    }
                }
            }
        }
        tracing::debug!(
            processes = exited.pids.len(),
            deleted,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "exited processes' entries deleted"
        );
        exited.pids.clear();
        exited.swept = Some(Instant::now());
    }

    fn pids_map(&self) -> Result<libbpf_rs::Map<'_>, String> {
        self.object
            .maps()
            .find(|m| m.name().to_string_lossy() == PIDS_MAP)
            .ok_or_else(|| format!("map {PIDS_MAP} missing"))
    }
}

/// A pid-keyed program's object, loaded at the first attach (as a
/// per-process program's would be: a kernel that refuses the load refuses
/// each process's attach, with the reason, and the exporter runs on) and
/// kept for the processes after it.
#[derive(Debug)]
pub struct PidKeyedSlot {
    tables: Vec<(String, PidKey)>,
    loaded: Mutex<Option<Arc<PidKeyed>>>,
}

impl PidKeyedSlot {
    /// A slot for `program`, whose metric maps `tables` are keyed by pid
    /// where each says; the object must hold the header's maps (checked
    /// here, without loading it).
    pub fn new(
        program: &super::PreparedProgram,
        tables: Vec<(String, PidKey)>,
    ) -> Result<PidKeyedSlot, PidKeyedError> {
        let open = program
            .open()
            .map_err(|e| PidKeyedError::Open(e.to_string()))?;
        for name in [PIDS_MAP, PIDNS_MAP] {
            if !open.maps().any(|m| m.name().to_string_lossy() == name) {
                return Err(PidKeyedError::MissingMap(name));
            }
        }
        Ok(PidKeyedSlot {
            tables,
            loaded: Mutex::new(None),
        })
    }

    /// The loaded object, loading it now if no attach has yet.
    pub fn load(
        &self,
        program: &super::PreparedProgram,
    ) -> Result<Arc<PidKeyed>, super::InstanceError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid_keyed) = loaded.as_ref() {
            return Ok(pid_keyed.clone());
        }
        let object = Arc::new(program.load()?);
        let pid_keyed = Arc::new(PidKeyed::new(object, self.tables.clone()).map_err(|e| {
            super::InstanceError::Load {
                message: e.to_string(),
            }
        })?);
        *loaded = Some(pid_keyed.clone());
        Ok(pid_keyed)
    }

    /// The loaded object, if an attach loaded it.
    pub fn loaded(&self) -> Option<Arc<PidKeyed>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The device and inode of the exporter's PID namespace.
fn own_pid_namespace() -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| format!("reading /proc/self/ns/pid: {e}"))?;
    Ok((meta.dev(), meta.ino()))
}

/// A process selected in a pid-keyed object, deselected once when its
/// instance is detached ([`Selection::end`]; dropping it does not: by then
/// its pid may be another process's).
#[derive(Debug)]
pub struct Selection {
    pid_keyed: Arc<PidKeyed>,
    pid: u32,
    done: std::sync::atomic::AtomicBool,
}

impl Selection {
    /// `pid` selected in `pid_keyed`.
    pub fn new(pid_keyed: Arc<PidKeyed>, pid: u32) -> Selection {
        Selection {
            pid_keyed,
            pid,
            done: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Deselects the process (see [`PidKeyed::deselect`]); later calls do nothing.
    pub fn end(&self) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.pid_keyed.deselect(self.pid);
        }
    }
}
