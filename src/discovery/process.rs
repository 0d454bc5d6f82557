//! What we know about a process, read from `/proc`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Identifies one process incarnation: a pid plus its start time, so a reused
/// pid is never mistaken for the process that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    /// Process id (thread group id) in the exporter's PID namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// Identifies a file on disk (device and inode): what the kernel's uprobes are
/// keyed by, so two paths to one file are one binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The file at `path` (symlinks followed), if it exists.
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Most ancestors [`ProcessInfo::ancestor_comms`] walks up (parent first).
pub const MAX_ANCESTORS: usize = 64;

/// How old a process must be before the files it maps are kept as read: at its
/// exec (when the exporter hears of it) the dynamic loader has not mapped its
/// libraries yet, so a younger process's maps are read again when asked for.
pub const MAPS_SETTLE_NS: u64 = 1_000_000_000;

/// A running process, as far as selectors and attach need to know.
///
/// [`ProcessInfo::read`] reads only `/proc/PID/stat` and `/proc/PID/exe`; the
/// command line, cgroups and ancestors are read the first time a selector or a
/// label asks for them, then kept (clones made after that share nothing but the
/// values).
/// Equality compares the eagerly read facts only.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// pid and start time.
    pub key: ProcessKey,
    /// `/proc/PID/comm`: the binary name, truncated by the kernel to 15 bytes.
    pub comm: String,
    /// The executable path as the process sees it (inside its own mount namespace).
    pub exe: PathBuf,
    /// The parent's pid (`/proc/PID/stat` field 4); 0 for pid 1.
    pub ppid: i32,
    /// `/proc/PID/cmdline`, arguments joined by single spaces.
    cmdline: OnceLock<Option<String>>,
    /// The cgroup v2 path from `/proc/PID/cgroup`.
    cgroup: OnceLock<Option<String>>,
    /// The whole `/proc/PID/cgroup` text (v1 and v2 lines).
    cgroup_text: OnceLock<Option<String>>,
    /// `/proc/PPID/comm`.
    parent_comm: OnceLock<Option<String>>,
    /// The comms of the parent, grandparent, ... up to pid 1.
    ancestors: OnceLock<Vec<String>>,
    /// The executable's identity on disk.
    exe_id: OnceLock<Option<FileId>>,
    /// The paths of the files it maps, once it is old enough for them to
    /// have settled ([`MAPS_SETTLE_NS`]).
    maps: OnceLock<Vec<PathBuf>>,
}

impl PartialEq for ProcessInfo {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.comm == other.comm
            && self.exe == other.exe
            && self.ppid == other.ppid
    }
}

impl Eq for ProcessInfo {}

/// A cell already holding `value`.
fn filled<T>(value: T) -> OnceLock<T> {
    let cell = OnceLock::new();
    let _ = cell.set(value);
    cell
}

impl ProcessInfo {
    /// A process known by its eagerly read facts; the lazy ones (command line,
    /// cgroup, ancestors) will be read from `/proc/PID` when first asked for,
    /// unless given with the `with_*` methods.
    pub fn new(key: ProcessKey, comm: String, exe: PathBuf, ppid: i32) -> ProcessInfo {
        ProcessInfo {
            key,
            comm,
            exe,
            ppid,
            cmdline: OnceLock::new(),
            cgroup: OnceLock::new(),
            cgroup_text: OnceLock::new(),
            parent_comm: OnceLock::new(),
            ancestors: OnceLock::new(),
            exe_id: OnceLock::new(),
            maps: OnceLock::new(),
        }
    }

    /// The same process with the paths of the files it maps known.
    pub fn with_mapped_paths(mut self, paths: Vec<PathBuf>) -> ProcessInfo {
        self.maps = filled(paths);
        self
    }

    /// The same process with its command line (arguments joined by spaces) known.
    pub fn with_cmdline(mut self, cmdline: Option<String>) -> ProcessInfo {
        self.cmdline = filled(cmdline);
        self
    }

    /// The same process with its cgroup v2 path known, on a pure cgroup v2 host:
    /// its `/proc/PID/cgroup` is taken to be that one `0::` line (none at all for
    /// `None`). See [`ProcessInfo::with_cgroup_text`] for v1 or hybrid hosts.
    pub fn with_cgroup(mut self, cgroup: Option<String>) -> ProcessInfo {
        self.cgroup_text = filled(cgroup.as_ref().map(|path| format!("0::{path}\n")));
        self.cgroup = filled(cgroup);
        self
    }

    /// The same process with its whole `/proc/PID/cgroup` text known (v1 and v2
    /// lines); its cgroup v2 path is that text's `0::` line.
    pub fn with_cgroup_text(mut self, text: Option<String>) -> ProcessInfo {
        self.cgroup = filled(text.as_deref().and_then(cgroup_v2_path).map(str::to_string));
        self.cgroup_text = filled(text);
        self
    }

    /// The same process with its executable's identity known instead of read
    /// from `/proc` on first use.
    pub fn with_exe_id(mut self, id: Option<FileId>) -> ProcessInfo {
        self.exe_id = filled(id);
        self
    }

    /// The same process with its ancestors' comms known, parent first.
    pub fn with_ancestors(mut self, mut comms: Vec<String>) -> ProcessInfo {
        comms.truncate(MAX_ANCESTORS);
        self.parent_comm = filled(comms.first().cloned());
        self.ancestors = filled(comms);
        self
    }

    /// Reads one process; `None` for kernel threads, zombies and processes that vanished.
    /// A process whose executable the exporter may not read (another user's, without
    /// CAP_SYS_PTRACE) is returned with an empty `exe`, so that a selector on its
    /// name still matches it and the attach failure is reported and counted.
    pub fn read(pid: i32) -> Option<ProcessInfo> {
        const PF_KTHREAD: u32 = 0x0020_0000;
        let process = procfs::process::Process::new(pid).ok()?;
        let stat = process.stat().ok()?;
        // Kernel threads and zombies have no executable: nothing to probe.
        let exe = match process.exe() {
            Ok(exe) => exe,
            Err(procfs::ProcError::PermissionDenied(_))
                if stat.flags & PF_KTHREAD == 0 && stat.state != 'Z' =>
            {
                PathBuf::new()
            }
            Err(_) => return None,
        };
        Some(ProcessInfo::new(
            ProcessKey {
                pid,
                start_time: stat.starttime,
            },
            stat.comm,
            exe,
            stat.ppid,
        ))
    }

    /// The executable's device and inode (through `/proc/PID/exe`, so across
    /// mount namespaces); none once the process is gone.
    pub fn exe_id(&self) -> Option<FileId> {
        *self
            .exe_id
            .get_or_init(|| FileId::of(&self.exe_host_path()))
    }

    /// Whether this very process (same pid and start time) still runs: not a
    /// zombie, and not past the point of its exit where its memory is gone
    /// (its maps are empty then, and `/proc/PID/exe` says ENOENT).
    pub fn is_alive(&self) -> bool {
        let running = procfs::process::Process::new(self.key.pid)
            .and_then(|p| p.stat())
            .is_ok_and(|stat| stat.starttime == self.key.start_time && stat.state != 'Z');
        running
            && !std::fs::read_link(format!("/proc/{}/exe", self.key.pid))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    }

    /// Whether the process now runs another executable than the one it was
    /// read with: it exec'd since (a forked child of one program becoming
    /// another), and its exec event will have it judged again.
    pub fn image_replaced(&self) -> bool {
        if self.exe.as_os_str().is_empty() {
            return false;
        }
        let live = |p: &Path| {
            let text = p.to_string_lossy();
            text.strip_suffix(" (deleted)").unwrap_or(&text).to_string()
        };
        std::fs::read_link(self.exe_host_path()).is_ok_and(|now| live(&now) != live(&self.exe))
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.key.pid
    }

    /// The command line: the arguments of `/proc/PID/cmdline` joined by single
    /// spaces (read on first use); `None` when it cannot be read.
    pub fn cmdline(&self) -> Option<&str> {
        self.cmdline
            .get_or_init(|| read_cmdline(self.key.pid))
            .as_deref()
    }

    /// The cgroup v2 path (the `0::/path` line of `/proc/PID/cgroup`, read on
    /// first use); `None` when unreadable or on a cgroup v1-only system.
    pub fn cgroup(&self) -> Option<&str> {
        self.cgroup
            .get_or_init(|| {
                self.cgroup_text()
                    .and_then(cgroup_v2_path)
                    .map(str::to_string)
            })
            .as_deref()
    }

    /// The whole `/proc/PID/cgroup` text, read on first use.
    fn cgroup_text(&self) -> Option<&str> {
        self.cgroup_text
            .get_or_init(|| read_cgroup_text(self.key.pid))
            .as_deref()
    }

    /// The container id in `/proc/PID/cgroup` (read on first use), from the
    /// cgroup v2 path or, when that has none (a cgroup v1 or hybrid host), from
    /// the v1 hierarchies: see [`proc_cgroup_container_id`].
    pub fn container_id(&self) -> Option<&str> {
        proc_cgroup_container_id(self.cgroup_text()?)
    }

    /// The Kubernetes pod UID in `/proc/PID/cgroup` (read on first use), dashed,
    /// from the cgroup v2 path or else the v1 hierarchies: see [`proc_cgroup_pod_uid`].
    pub fn pod_uid(&self) -> Option<String> {
        proc_cgroup_pod_uid(self.cgroup_text()?)
    }

    /// The parent's comm (read on first use); `None` for pid 1 or when the
    /// parent is gone.
    pub fn parent_comm(&self) -> Option<&str> {
        self.parent_comm
            .get_or_init(|| {
                if let Some(ancestors) = self.ancestors.get() {
                    return ancestors.first().cloned();
                }
                (self.ppid > 0).then(|| read_comm(self.ppid)).flatten()
            })
            .as_deref()
    }

    /// The comms of the parent, grandparent, ... up to pid 1 (included), at
    /// most [`MAX_ANCESTORS`], read on first use.
    pub fn ancestor_comms(&self) -> &[String] {
        self.ancestors.get_or_init(|| read_ancestors(self.ppid))
    }

    /// The paths of the files the process maps (its executable and libraries;
    /// none when `/proc/PID/maps` cannot be read), in address order. Kept
    /// once the process is [`MAPS_SETTLE_NS`] old; read again while it is
    /// younger, since its loader may still be mapping libraries. A library
    /// loaded later (`dlopen`) shows in the next full rescan's reading.
    pub fn mapped_paths(&self) -> std::borrow::Cow<'_, [PathBuf]> {
        if let Some(paths) = self.maps.get() {
            return std::borrow::Cow::Borrowed(paths);
        }
        let paths: Vec<PathBuf> = mapped_files(self.key.pid)
            .map(|files| files.into_iter().map(|f| f.path).collect())
            .unwrap_or_default();
        if age_ns(self.key.start_time).is_some_and(|age| age >= MAPS_SETTLE_NS) {
            std::borrow::Cow::Borrowed(self.maps.get_or_init(|| paths))
        } else {
            std::borrow::Cow::Owned(paths)
        }
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

/// The value of environment variable `name` in `/proc/PID/environ` (the
/// environment the process started with); `None` if unset or unreadable.
pub fn environment_variable(pid: i32, name: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// `/proc/PID/cmdline`: NUL-terminated arguments, joined here by single spaces.
fn read_cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(join_cmdline(&raw))
}

/// NUL-separated (and usually NUL-terminated) arguments, joined by spaces.
fn join_cmdline(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    raw.split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole `/proc/PID/cgroup` text.
fn read_cgroup_text(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()
}

/// The path of the `0::` line of a `/proc/PID/cgroup` text.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// `/proc/PID/comm`, without its newline.
fn read_comm(pid: i32) -> Option<String> {
    let mut comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.ends_with('\n') {
        comm.pop();
    }
    Some(comm)
}

/// Comm and ppid of `/proc/PID/stat` (`pid (comm) state ppid ...`; the comm
/// may itself hold spaces and parentheses, so it ends at the last `)`).
fn read_comm_and_ppid(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<(String, i32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, ppid))
}

/// The comms of `ppid` and its ancestors, up to pid 1, at most [`MAX_ANCESTORS`].
fn read_ancestors(ppid: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut pid = ppid;
    while pid > 0 && out.len() < MAX_ANCESTORS {
        let Some((comm, parent)) = read_comm_and_ppid(pid) else {
            break;
        };
        out.push(comm);
        if pid == 1 {
            break;
        }
        pid = parent;
    }
    out
}

/// The exporter's own pid, asked of the kernel once: selectors compare every
/// process with it on every rescan.
pub fn own_pid() -> i32 {
    static PID: OnceLock<i32> = OnceLock::new();
    *PID.get_or_init(|| std::process::id() as i32)
}

/// How long ago a process that started `start_time` clock ticks after boot
/// (`/proc/PID/stat` field 22) started; `None` when the clocks cannot be read.
pub fn age_ns(start_time: u64) -> Option<u64> {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    let now_ns =
        u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    let started_ns = start_time.checked_mul(1_000_000_000)? / ticks;
    Some(now_ns.saturating_sub(started_ns))
}

/// The pids `/proc` lists (thread group leaders), except the exporter's own.
pub fn list_pids() -> std::collections::BTreeSet<i32> {
    let me = own_pid();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .collect()
}

/// The files a process maps (its executable and libraries), deduplicated, in
/// address order, each with a way to open it. A file deleted or replaced on disk
/// since it was mapped is listed under its old path: its map_files link still
/// opens the mapped inode.
pub fn mapped_files(pid: i32) -> std::io::Result<Vec<MappedFile>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut out: Vec<MappedFile> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let mut fields = line.splitn(6, ' ');
        let range = fields.next().unwrap_or("");
        let inode = fields.nth(3).unwrap_or("0");
        let path = fields.next().unwrap_or("").trim_start();
        if inode == "0" || !path.starts_with('/') {
            continue;
        }
        let path = PathBuf::from(path.strip_suffix(" (deleted)").unwrap_or(path));
        if !out.iter().any(|m| m.path == path) {
            out.push(MappedFile {
                map_file: PathBuf::from(format!("/proc/{pid}/map_files/{range}")),
                path,
            });
        }
    }
    Ok(out)
}

/// A file a process maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    /// The path `/proc/PID/maps` shows. Relative to the reader's root when the file is
    /// reachable from it (a chroot shows host paths), else to the file's mount.
    pub path: PathBuf,
    /// `/proc/PID/map_files/START-END`: opens exactly the mapped file, whatever the
    /// namespaces (needs CAP_SYS_ADMIN).
    pub map_file: PathBuf,
}

impl MappedFile {
    /// The path through which the exporter and the kernel open this file: the
    /// map_files link when usable, else the path under the process's root, else
    /// the path itself.
    pub fn host_path(&self, process: &ProcessInfo) -> PathBuf {
        if std::fs::metadata(&self.map_file).is_ok() {
            return self.map_file.clone();
        }
        let under_root = process.host_path(&self.path);
        if under_root.exists() {
            under_root
        } else {
            self.path.clone()
        }
    }
}

/// The container id in a cgroup path: the last 64-hex-digit run of the last path
/// part that has one. Covers docker (`/docker/ID`, `docker-ID.scope`), containerd
/// (`/kubepods/.../ID`, `cri-containerd-ID.scope`, and `...slice:cri-containerd:ID`
/// on cgroup v1), cri-o (`crio-ID.scope`, nested `crio-ID.scope/container`) and
/// podman (`libpod-ID.scope`, and `/libpod_parent/libpod-ID` or
/// `/libpod_parent/POD/libpod-ID` with its cgroupfs manager).
///
/// A podman pod's own id (a bare id right under `libpod_parent`) is not a
/// container's: a process directly in the pod's cgroup (the conmons of its
/// containers with cgroupfs) gets the id of an enclosing container, if any.
/// The conmon of a container under systemd (`libpod-conmon-ID.scope`,
/// `crio-conmon-ID.scope`) gets the id of the container it monitors.
pub fn container_id(cgroup: &str) -> Option<&str> {
    let mut parts = cgroup.rsplit('/').peekable();
    while let Some(part) = parts.next() {
        let Some(id) = last_id_run(part) else {
            continue;
        };
        if id.len() == part.len() && parts.peek() == Some(&"libpod_parent") {
            continue;
        }
        return Some(id);
    }
    None
}

/// The last run of exactly 64 lowercase hex digits in `part`.
fn last_id_run(part: &str) -> Option<&str> {
    let bytes = part.as_bytes();
    let mut run_end = None;
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_hexdigit() && !b.is_ascii_uppercase() {
            run += 1;
            if run == 64 && bytes.get(i + 1).is_none_or(|n| !n.is_ascii_hexdigit()) {
                run_end = Some(i + 1);
            }
        } else {
            run = 0;
        }
    }
    run_end.map(|end| &part[end - 64..end])
}

/// The Kubernetes pod UID in a cgroup path, dashed
/// (`0f1e2d3c-aaaa-bbbb-cccc-1234567890ab`), from the kubelet's pod cgroup:
/// `pod<UID>` in a path part after a `kubepods` one (cgroupfs driver:
/// `/kubepods/pod<UID>`, `/kubepods/burstable/pod<UID>`), or a slice named
/// `...kubepods-...-pod<UID_WITH_UNDERSCORES>.slice` (systemd driver:
/// `kubepods-pod<UID>.slice`, `kubepods-besteffort-pod<UID>.slice`, also as the
/// `<slice>:cri-containerd:<ID>` part containerd makes on cgroup v1). The pod's
/// containers (sandbox included) and their sub-cgroups all give it; kubepods may
/// sit under another root (`/kubelet/kubepods/...`,
/// `/kubelet.slice/kubelet-kubepods.slice/...`). When pods nest, the innermost
/// wins. Only UIDs of 8-4-4-4-12 lowercase hex digits are taken.
pub fn pod_uid(cgroup: &str) -> Option<String> {
    let mut under_kubepods = false;
    let mut uid = None;
    for part in cgroup.split('/') {
        let unit = part.split(':').next().unwrap_or(part);
        if let Some(slice) = unit.strip_suffix(".slice") {
            if slice.split('-').any(|w| w == "kubepods") {
                under_kubepods = true;
                let last = slice.rsplit('-').next().unwrap_or(slice);
                if let Some(found) = last.strip_prefix("pod").and_then(|u| dashed_uid(u, b'_')) {
                    uid = Some(found);
                }
                continue;
            }
        }
        if under_kubepods {
            if let Some(found) = part.strip_prefix("pod").and_then(|u| dashed_uid(u, b'-')) {
                uid = Some(found);
            }
        }
        if part == "kubepods" {
            under_kubepods = true;
        }
    }
    uid
}

/// `raw` as a dashed UID when it is 8-4-4-4-12 lowercase hex digits separated by `sep`.
fn dashed_uid(raw: &str, sep: u8) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| match i {
        8 | 13 | 18 | 23 => b == sep,
        _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
    });
    well_formed.then(|| raw.replace(sep as char, "-"))
}

/// The paths of a `/proc/PID/cgroup` text in the order ids are looked for: the
/// cgroup v2 (`0::`) one, then the v1 `name=systemd` one, then the other v1
/// hierarchies in file order. A path may itself hold colons.
fn proc_cgroup_paths(text: &str) -> impl Iterator<Item = &str> {
    let lines = move || {
        text.lines().filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let hierarchy = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            let systemd = controllers.split(',').any(|c| c == "name=systemd");
            let rank = match (hierarchy, controllers) {
                ("0", "") => 0,
                (_, "") => return None,
                _ if systemd => 1,
                _ => 2,
            };
            Some((rank, path))
        })
    };
    (0..3).flat_map(move |wanted| {
        lines()
            .filter(move |&(rank, _)| rank == wanted)
            .map(|(_, path)| path)
    })
}

/// The container id in a `/proc/PID/cgroup` text: [`container_id`] of the cgroup
/// v2 path when it has one, else of the first cgroup v1 hierarchy that has one
/// (`name=systemd` first, then the others in file order). On a cgroup v1 or
/// hybrid host the v2 line is often just `0::/` while the v1 controllers hold
/// the container's cgroup (podman's and runc's cgroupfs managers).
pub fn proc_cgroup_container_id(text: &str) -> Option<&str> {
    proc_cgroup_paths(text).find_map(container_id)
}

/// The Kubernetes pod UID in a `/proc/PID/cgroup` text: [`pod_uid`] of the cgroup
/// v2 path when it has one, else of the first cgroup v1 hierarchy that has one
/// (`name=systemd` first, then the others in file order).
pub fn proc_cgroup_pod_uid(text: &str) -> Option<String> {
    proc_cgroup_paths(text).find_map(pod_uid)
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

#[cfg(test)]
mod container_id_tests {
    use super::{container_id, pod_uid, proc_cgroup_container_id, proc_cgroup_pod_uid};

    const ID: &str = "3f4b1c2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
    /// A podman pod's id: 64 hex digits too.
    const POD: &str = "aa0bb1cc2dd3ee4ff5aa6bb7cc8dd9ee0ff1aa2bb3cc4dd5ee6ff7aa8bb9cc0d";
    const UID: &str = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab";
    const UID_: &str = "0f1e2d3c_aaaa_bbbb_cccc_1234567890ab";

    #[test]
    fn container_ids_of_the_common_layouts() {
        let id = ID;
        for cgroup in [
            format!("/docker/{id}"),
            format!("/system.slice/docker-{id}.scope"),
            format!("/kubepods/burstable/pod0f1e2d3c-aaaa-bbbb-cccc-1234567890ab/{id}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-{id}.scope"),
            format!("/kubepods.slice/kubepods-pod1.slice/crio-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope/container"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope"),
        ] {
            assert_eq!(container_id(&cgroup), Some(id), "{cgroup}");
        }
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
        assert_eq!(container_id("/"), None);
        // 65 hex digits is not an id.
        assert_eq!(container_id(&format!("/docker/{id}a")), None);
    }

    #[test]
    fn podman_cgroupfs_layouts_name_the_container_not_the_pod() {
        for cgroup in [
            format!("/libpod_parent/libpod-{ID}"),
            format!("/libpod_parent/{POD}/libpod-{ID}"),
            format!("/libpod_parent/{POD}/libpod-{ID}/ctr"),
            // systemd manager: the pod is a slice, its containers scopes.
            format!("/machine.slice/machine-libpod_pod_{POD}.slice/libpod-{ID}.scope"),
        ] {
            assert_eq!(container_id(&cgroup), Some(ID), "{cgroup}");
        }
        // conmon with cgroupfs sits beside the containers, in no container.
        assert_eq!(container_id("/libpod_parent/conmon"), None);
        assert_eq!(container_id(&format!("/libpod_parent/{POD}/conmon")), None);
        assert_eq!(container_id(&format!("/libpod_parent/{POD}")), None);
        // ... unless the whole engine runs in a container.
        assert_eq!(
            container_id(&format!("/docker/{ID}/libpod_parent/{POD}/conmon")),
            Some(ID)
        );
    }

    #[test]
    fn container_ids_of_the_systemd_driver_layouts() {
        for cgroup in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            // containerd's systemd driver on some cgroup v1 hosts.
            format!("/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"),
            // cri-o's nested layout on cgroup v2.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope/container"),
            // conmon is its own process, labelled with the container it monitors.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
        ] {
            assert_eq!(container_id(&cgroup), Some(ID), "{cgroup}");
        }
    }

    #[test]
    fn pod_uids_of_the_cgroupfs_driver() {
        for cgroup in [
            format!("/kubepods/pod{UID}/{ID}"),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            // The pod cgroup itself (v1 allows processes there).
            format!("/kubepods/besteffort/pod{UID}"),
            // kind / minikube: kubepods under another root.
            format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"),
            format!("/docker/{ID}/kubepods/besteffort/pod{UID}/{ID}"),
        ] {
            assert_eq!(pod_uid(&cgroup).as_deref(), Some(UID), "{cgroup}");
        }
    }

    #[test]
    fn pod_uids_of_the_systemd_driver() {
        for cgroup in [
            format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"),
            // cri-o's nested layout on cgroup v2.
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope/container"),
            // containerd on cgroup v1, under its own service.
            format!("/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"),
            format!("/system.slice/containerd.service/kubepods-pod{UID_}.slice:cri-containerd:{ID}"),
            // kind's nested kubelet.
            format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
            format!("/system.slice/docker-{ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        ] {
            assert_eq!(pod_uid(&cgroup).as_deref(), Some(UID), "{cgroup}");
        }
    }

    #[test]
    fn pod_uid_takes_only_well_formed_uids_under_kubepods() {
        let other = "11111111-2222-3333-4444-555555555555";
        for cgroup in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            "/".to_string(),
            // Not under kubepods.
            format!("/pod{UID}/{ID}"),
            format!("/system.slice/pod{UID}/{ID}"),
            format!("/machine.slice/machine-pod{UID_}.slice/libpod-{ID}.scope"),
            // Malformed: uppercase, short, long, wrong separators or grouping.
            format!("/kubepods/burstable/pod{}/{ID}", UID.to_uppercase()),
            format!("/kubepods/burstable/pod{}/{ID}", &UID[..35]),
            format!("/kubepods/burstable/pod{UID}0/{ID}"),
            format!("/kubepods/burstable/pod{UID_}/{ID}"),
            "/kubepods/burstable/pod0f1e2d3caaaa-bbbb-cccc-1234567890ab-/x".to_string(),
            "/kubepods/burstable/pod0f1e2d3g-aaaa-bbbb-cccc-1234567890ab/x".to_string(),
            format!("/kubepods.slice/kubepods-pod{UID}.slice/crio-{ID}.scope"),
            // A static pod's 32-hex-digit UID is not a UUID.
            format!("/kubepods/burstable/pod{}/{ID}", &ID[..32]),
        ] {
            assert_eq!(pod_uid(&cgroup), None, "{cgroup}");
        }
        // Nested pods: the innermost.
        assert_eq!(
            pod_uid(&format!(
                "/kubepods/pod{other}/{ID}/kubepods/besteffort/pod{UID}/{ID}"
            ))
            .as_deref(),
            Some(UID)
        );
    }

    #[test]
    fn whole_proc_cgroup_texts() {
        // Hybrid host, podman cgroupfs: the v2 line is just `/`.
        let hybrid = format!(
            "12:cpuset:/libpod_parent/{POD}/libpod-{ID}\n9:name=systemd:/\n8:pids:/libpod_parent/{POD}/libpod-{ID}\n4:memory:/libpod_parent/{POD}/libpod-{ID}\n0::/\n"
        );
        assert_eq!(proc_cgroup_container_id(&hybrid), Some(ID));
        assert_eq!(proc_cgroup_pod_uid(&hybrid), None);

        // cgroup v1 only, kubelet with cgroupfs: no v2 line at all.
        let v1 = format!(
            "11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(proc_cgroup_container_id(&v1), Some(ID));
        assert_eq!(proc_cgroup_pod_uid(&v1).as_deref(), Some(UID));

        // containerd's colon form: the path itself holds colons.
        let colon = format!(
            "3:memory:/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}\n0::/\n"
        );
        assert_eq!(proc_cgroup_container_id(&colon), Some(ID));
        assert_eq!(proc_cgroup_pod_uid(&colon).as_deref(), Some(UID));

        // Pure v2.
        let v2 = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(proc_cgroup_container_id(&v2), Some(ID));
        assert_eq!(proc_cgroup_pod_uid(&v2).as_deref(), Some(UID));

        // The v2 path wins when it has an id, then name=systemd, then file order.
        let other = "b".repeat(64);
        let third = "c".repeat(64);
        let mixed = format!(
            "5:pids:/docker/{third}\n1:name=systemd:/docker/{other}\n0::/system.slice/docker-{ID}.scope\n"
        );
        assert_eq!(proc_cgroup_container_id(&mixed), Some(ID));
        let mixed = format!("5:pids:/docker/{third}\n1:name=systemd:/docker/{other}\n0::/\n");
        assert_eq!(proc_cgroup_container_id(&mixed), Some(other.as_str()));
        let mixed = format!("5:pids:/docker/{third}\n1:name=systemd:/\n4:memory:/docker/{ID}\n");
        assert_eq!(proc_cgroup_container_id(&mixed), Some(third.as_str()));

        // Outside containers.
        let host = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/74348c60844172b3a197c6eb20d6bf76\n0::/\n";
        assert_eq!(proc_cgroup_container_id(host), None);
        assert_eq!(proc_cgroup_pod_uid(host), None);
        assert_eq!(proc_cgroup_container_id(""), None);
        // Lines without a path are skipped.
        assert_eq!(proc_cgroup_container_id("garbage\n1:x\n"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_arguments_are_joined_by_single_spaces() {
        assert_eq!(join_cmdline(b"sleep\x0030\x00"), "sleep 30");
        assert_eq!(join_cmdline(b"a\x00\x00b\x00"), "a  b");
        assert_eq!(
            join_cmdline(b"nginx: master process\x00"),
            "nginx: master process"
        );
        assert_eq!(join_cmdline(b"no-terminator"), "no-terminator");
        assert_eq!(join_cmdline(b""), "");
    }

    #[test]
    fn cgroup_v2_line_is_found() {
        assert_eq!(
            cgroup_v2_path("0::/system.slice/nginx.service\n"),
            Some("/system.slice/nginx.service")
        );
        // Hybrid hierarchy: v1 lines first.
        assert_eq!(
            cgroup_v2_path("12:cpu,cpuacct:/x\n1:name=systemd:/y\n0::/user.slice\n"),
            Some("/user.slice")
        );
        assert_eq!(cgroup_v2_path("12:memory:/x\n"), None);
    }

    #[test]
    fn stat_comm_may_hold_spaces_and_parentheses() {
        assert_eq!(
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1"),
            Some(("a) b (c)".to_string(), 7))
        );
        assert_eq!(
            parse_stat("1 (systemd) S 0 1 1"),
            Some(("systemd".into(), 0))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn an_image_replaced_is_told_by_the_executable_now_running() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        assert!(!me.image_replaced());
        let before_exec =
            ProcessInfo::new(me.key, me.comm.clone(), "/usr/bin/python3.11".into(), 1);
        assert!(before_exec.image_replaced());
        // Unreadable: nothing to compare.
        assert!(!ProcessInfo::new(me.key, me.comm.clone(), PathBuf::new(), 1).image_replaced());
    }

    #[test]
    fn mapped_paths_are_kept_only_once_a_process_is_old_enough() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let young = ProcessInfo::read(child.id() as i32).unwrap();
        // Right after its exec, the kernel may still be mapping the new image:
        // each reading is a fresh one until the process has settled.
        let mut seen = false;
        for _ in 0..50 {
            let age = age_ns(young.key.start_time).unwrap();
            let paths = young.mapped_paths().into_owned();
            if age < MAPS_SETTLE_NS / 2 {
                assert!(young.maps.get().is_none());
            }
            if paths.iter().any(|p| p.ends_with("sleep")) {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(seen);
        // This test process has long settled: its reading is kept.
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        if age_ns(me.key.start_time).unwrap() > MAPS_SETTLE_NS {
            let exe = std::env::current_exe().unwrap();
            assert!(me.mapped_paths().contains(&exe));
            assert!(me.maps.get().is_some());
        }
    }

    #[test]
    fn read_fills_ppid_and_lazy_facts_of_this_process() {
        let me = std::process::id() as i32;
        let info = ProcessInfo::read(me).unwrap();
        assert_eq!(info.ppid, std::os::unix::process::parent_id() as i32);
        let cmdline = info.cmdline().unwrap();
        let arg0 = std::env::args().next().unwrap();
        assert!(cmdline.starts_with(&arg0), "{cmdline:?} vs {arg0:?}");
        let ancestors = info.ancestor_comms();
        assert!(!ancestors.is_empty());
        assert_eq!(info.parent_comm(), Some(ancestors[0].as_str()));
        assert!(ancestors.len() <= MAX_ANCESTORS);
        // Equality ignores which lazy facts were read.
        assert_eq!(info, ProcessInfo::read(me).unwrap());
    }

    #[test]
    fn given_lazy_facts_are_not_read_from_proc() {
        let key = ProcessKey {
            pid: i32::MAX,
            start_time: 1,
        };
        let bare = ProcessInfo::new(key, "x".into(), "/x".into(), 0);
        assert_eq!(bare.cmdline(), None);
        assert_eq!(bare.cgroup(), None);
        assert_eq!(bare.parent_comm(), None);
        assert!(bare.ancestor_comms().is_empty());
        let given = ProcessInfo::new(key, "x".into(), "/x".into(), 0)
            .with_cmdline(Some("x --flag".into()))
            .with_cgroup(Some("/a/b".into()))
            .with_ancestors(vec!["bash".into(), "systemd".into()]);
        assert_eq!(given.cmdline(), Some("x --flag"));
        assert_eq!(given.cgroup(), Some("/a/b"));
        assert_eq!(given.parent_comm(), Some("bash"));
        assert_eq!(given.ancestor_comms(), ["bash", "systemd"]);
        assert_eq!(given.clone().cmdline(), Some("x --flag"));
        assert_eq!(bare.container_id(), None);
        assert_eq!(bare.pod_uid(), None);
    }

    #[test]
    fn container_id_and_pod_uid_come_from_the_whole_cgroup_text() {
        let key = ProcessKey {
            pid: i32::MAX,
            start_time: 1,
        };
        let id = "3f4b1c2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
        let uid = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab";
        let p = || ProcessInfo::new(key, "x".into(), "/x".into(), 0);

        // Hybrid host: the v2 path stays `/`, the id comes from a v1 line.
        let hybrid = p().with_cgroup_text(Some(format!(
            "9:name=systemd:/\n8:pids:/kubepods/besteffort/pod{uid}/{id}\n0::/\n"
        )));
        assert_eq!(hybrid.cgroup(), Some("/"));
        assert_eq!(hybrid.container_id(), Some(id));
        assert_eq!(hybrid.pod_uid().as_deref(), Some(uid));

        // v1 only: no v2 path.
        let v1 = p().with_cgroup_text(Some(format!("4:memory:/docker/{id}\n")));
        assert_eq!(v1.cgroup(), None);
        assert_eq!(v1.container_id(), Some(id));
        assert_eq!(v1.pod_uid(), None);

        // with_cgroup describes a pure v2 host.
        let v2 = p().with_cgroup(Some(format!("/kubepods/pod{uid}/{id}")));
        assert_eq!(
            v2.cgroup(),
            Some(format!("/kubepods/pod{uid}/{id}").as_str())
        );
        assert_eq!(v2.container_id(), Some(id));
        assert_eq!(v2.pod_uid().as_deref(), Some(uid));
        let none = p().with_cgroup_text(None);
        assert_eq!(
            (none.cgroup(), none.container_id(), none.pod_uid()),
            (None, None, None)
        );
    }

    #[test]
    fn cgroup_text_of_this_process_agrees_with_its_v2_path() {
        let me = ProcessInfo::read(std::process::id() as i32).unwrap();
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(me.cgroup(), cgroup_v2_path(&text));
        assert_eq!(me.container_id(), proc_cgroup_container_id(&text));
    }
}
