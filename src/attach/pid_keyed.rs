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
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// The map of selected pids every pid-keyed object holds.
pub const PIDS_MAP: &str = "exporter_pids";
/// The map holding the exporter's PID namespace.
pub const PIDNS_MAP: &str = "exporter_pidns";
/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INIT_PIDNS_INO: u64 = 0xEFFF_FFFC;

/// The links of one probe in one file, for every process: shared by the
/// instances of the processes that map the file, detached when the last
/// goes.
#[derive(Debug)]
pub struct FileLink {
    links: Vec<Link>,
    /// What is attached, for the landing page.
    pub what: Vec<String>,
}

impl FileLink {
    /// Number of kernel links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }
}

/// A metric map of the program and where its keys hold the pid.
#[derive(Debug, Clone)]
struct PidMap {
    table: String,
    pid_key: PidKey,
}

/// The one object of a pid-keyed program and what is attached of it.
#[derive(Debug)]
pub struct PidKeyed {
    object: Arc<Object>,
    /// Links by probe and file (see [`PidKeyed::link`]).
    links: Mutex<HashMap<String, Weak<FileLink>>>,
    maps: Vec<PidMap>,
}

/// Why a pid-keyed object cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PidKeyedError {
    /// The object lacks a map the header declares.
    #[error("`instances: pid_keyed` needs the maps of exporter_pids.bpf.h, and the object has no {0:?}: #include \"exporter_pids.bpf.h\" (written by `ebpf-userspace-exporter headers -o DIR`), return early from each probe unless exporter_selected(), and key the metric maps by exporter_pid()")]
    MissingMap(&'static str),
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
        })
    }

    /// The loaded object.
    pub fn object(&self) -> &Arc<Object> {
        &self.object
    }

    /// The links of the probe `key` names (a probe and the file it is in),
    /// made by `make` unless a process attached earlier made them.
    pub fn link(
        &self,
        key: String,
        make: impl FnOnce() -> Result<(Vec<Link>, Vec<String>), String>,
    ) -> Result<Arc<FileLink>, String> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = links.get(&key).and_then(Weak::upgrade) {
            return Ok(live);
        }
        let (made, what) = make()?;
        let link = Arc::new(FileLink { links: made, what });
        // Entries of links gone are dropped as new ones come.
        links.retain(|_, weak| weak.strong_count() > 0);
        links.insert(key, Arc::downgrade(&link));
        Ok(link)
    }

    /// Lets the program count process `pid`.
    pub fn select(&self, pid: u32) -> Result<(), String> {
        self.pids_map()
            .and_then(|map| {
                map.update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| format!("selecting pid {pid} in map {PIDS_MAP}: {e}"))
    }

    /// Stops counting process `pid` and deletes what it counted, so that a
    /// process given the pid later starts from nothing.
    pub fn deselect(&self, pid: u32) {
        if let Ok(map) = self.pids_map() {
            // ENOENT: never selected (its attach failed midway).
            let _ = map.delete(&pid.to_ne_bytes());
        }
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
                .filter(|key| pid_map.pid_key.read(key) == Some(pid))
                .collect();
            for key in doomed {
                if let Err(e) = map.delete(&key) {
                    tracing::debug!(table = %pid_map.table, pid, "deleting an exited process's entry: {e}");
                }
            }
        }
    }

    fn pids_map(&self) -> Result<libbpf_rs::Map<'_>, String> {
        self.object
            .maps()
            .find(|m| m.name().to_string_lossy() == PIDS_MAP)
            .ok_or_else(|| format!("map {PIDS_MAP} missing"))
    }
}

/// The device and inode of the exporter's PID namespace.
fn own_pid_namespace() -> Result<(u64, u64), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| format!("reading /proc/self/ns/pid: {e}"))?;
    Ok((meta.dev(), meta.ino()))
}

/// Deselects a process when its instance is detached, once.
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

impl Drop for Selection {
    fn drop(&mut self) {
        self.end();
    }
}
