//! What we know about a process, read from `/proc`.

use std::path::{Path, PathBuf};

/// Identifies one process incarnation: a pid plus its start time, so a reused
/// pid is never mistaken for the process that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// Process id (thread group id) in the exporter's PID namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// A running process, as far as selectors and attach need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// pid and start time.
    pub key: ProcessKey,
    /// `/proc/PID/comm`: the binary name, truncated by the kernel to 15 bytes.
    pub comm: String,
    /// The executable path as the process sees it (inside its own mount namespace).
    pub exe: PathBuf,
}

impl ProcessInfo {
    /// Reads one process; `None` for kernel threads, zombies and processes that vanished.
    pub fn read(pid: i32) -> Option<ProcessInfo> {
        let process = procfs::process::Process::new(pid).ok()?;
        let stat = process.stat().ok()?;
        // Kernel threads and zombies have no executable: nothing to probe.
        let exe = process.exe().ok()?;
        Some(ProcessInfo {
            key: ProcessKey {
                pid,
                start_time: stat.starttime,
            },
            comm: stat.comm,
            exe,
        })
    }

    /// Whether this very process (same pid and start time) still runs.
    pub fn is_alive(&self) -> bool {
        procfs::process::Process::new(self.key.pid)
            .and_then(|p| p.stat())
            .is_ok_and(|stat| stat.starttime == self.key.start_time && stat.state != 'Z')
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.key.pid
    }

    /// A path through which the exporter opens a file the process sees at `path`,
    /// even when the process lives in another mount namespace.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.key.pid));
        p.push(path.strip_prefix("/").unwrap_or(path));
        p
    }

    /// The executable, openable from the exporter (`/proc/PID/exe` resolves across namespaces).
    pub fn exe_host_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.key.pid))
    }
}

/// All user processes except the exporter itself, sorted by pid.
pub fn scan() -> Vec<ProcessInfo> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<ProcessInfo> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(ProcessInfo::read)
        .collect();
    out.sort_by_key(|p| p.key);
    out
}

/// The files a process maps (its executable and libraries), as paths in its
/// own mount namespace, deduplicated, in address order. Deleted files are skipped.
pub fn mapped_files(pid: i32) -> std::io::Result<Vec<PathBuf>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let mut fields = line.splitn(6, ' ');
        let inode = fields.nth(4).unwrap_or("0");
        let path = fields.next().unwrap_or("").trim_start();
        if inode == "0" || !path.starts_with('/') || path.ends_with(" (deleted)") {
            continue;
        }
        let path = PathBuf::from(path);
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// CLOCK_MONOTONIC in ns: the clock the kernel stamps process events with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
