//! The BPF objects one process holds, by id: what the leak checks count.
//!
//! Counting every BPF program, map, link and BTF object on the host made a
//! leak check fail whenever anything else loaded BPF meanwhile (systemd's
//! cgroup programs, a security agent, another test, a concurrent soak). The
//! checks here count only what the exporter under test holds:
//!
//! - While it runs, [`Objects::held_by`] its pid: the objects in its fd table,
//!   from the `prog_id:`, `map_id:`, `link_id:` and `btf_id:` lines of
//!   `/proc/PID/fdinfo/*`. Measured on Linux 6.18: a program fd shows
//!   `prog_id`, a map fd `map_id`, a BTF fd `btf_id`, a link fd `link_id` and
//!   the `prog_id` of the program it holds (the uprobe_multi links of USDT
//!   instances, and the `perf` links libbpf wraps around a perf-event uprobe
//!   alike). A perf-event fd shows no such line even when a program is
//!   attached to it with `PERF_EVENT_IOC_SET_BPF` (no link; older libbpf, or
//!   `tests/fixtures/bpf_holder.c`): `BPF_TASK_FD_QUERY` on (pid, fd) names
//!   that program, as `bpftool perf` does. The maps and BTF its programs use
//!   are added from each program's info, so that a map whose fd it closed
//!   still counts. Not covered, as the exporter does neither: a program
//!   attached to a socket, a map held only by an mmap whose fd was closed.
//! - "Back to the quiet level" compares two such sets (or their counts, when
//!   a reload replaced programs by equal ones).
//! - After it exits, [`Watch::all_freed`]: every id it was ever seen holding
//!   (the union of the samples, taken every [`Watch::EVERY`] in the background
//!   and at each explicit look) must be gone from the kernel. The kernel hands
//!   out ids cyclically (`idr_alloc_cyclic` up to INT_MAX, for programs, maps,
//!   links and BTF alike), so an id is not reused before the whole space has
//!   been used once: an id still listed is the same object, not a newcomer.
//!   When some are left, the message says who keeps them: a process holding
//!   them in its fd table, or a pin on a bpffs mount.
//!
//! The host-wide counts ([`host`]) stay, as information in failure messages.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kind of BPF object: each has an id space of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prog,
    Map,
    Link,
    Btf,
}

impl Kind {
    /// Every kind, in the order counts are shown.
    pub const ALL: [Kind; 4] = [Kind::Prog, Kind::Map, Kind::Link, Kind::Btf];

    fn name(self) -> &'static str {
        ["prog", "map", "link", "btf"][self as usize]
    }

    /// The fdinfo line naming an object of this kind.
    fn field(self) -> &'static str {
        ["prog_id:", "map_id:", "link_id:", "btf_id:"][self as usize]
    }

    /// The id after `start` the kernel has for this kind, if any.
    fn next_id(self, start: u32) -> Option<u32> {
        let mut next = 0;
        let err = unsafe {
            match self {
                Kind::Prog => libbpf_sys::bpf_prog_get_next_id(start, &mut next),
                Kind::Map => libbpf_sys::bpf_map_get_next_id(start, &mut next),
                Kind::Link => libbpf_sys::bpf_link_get_next_id(start, &mut next),
                Kind::Btf => libbpf_sys::bpf_btf_get_next_id(start, &mut next),
            }
        };
        (err == 0).then_some(next)
    }
}

/// BPF objects by kind and id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects([BTreeSet<u32>; 4]);

/// How many objects of each kind, shown as `2 progs, 20 maps, 2 links, 2 btf`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [usize; 4]);

impl Counts {
    /// The count of one kind.
    pub fn of(&self, kind: Kind) -> usize {
        self.0[kind as usize]
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [p, m, l, b] = self.0;
        write!(f, "{p} progs, {m} maps, {l} links, {b} btf")
    }
}

impl Objects {
    /// What process `pid` holds (see the module documentation); `None` when
    /// it is gone. A process exiting meanwhile yields what was read so far.
    pub fn held_by(pid: u32) -> Option<Objects> {
        let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        let mut held = Objects::default();
        for entry in entries.flatten() {
            if let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                held.add_fd(pid, fd);
            }
        }
        held.add_what_programs_hold();
        Some(held)
    }

    /// The ids of one kind.
    pub fn get(&self, kind: Kind) -> &BTreeSet<u32> {
        &self.0[kind as usize]
    }

    /// Adds one object.
    pub fn insert(&mut self, kind: Kind, id: u32) {
        self.0[kind as usize].insert(id);
    }

    /// Whether it holds this object.
    pub fn contains(&self, kind: Kind, id: u32) -> bool {
        self.get(kind).contains(&id)
    }

    /// Counts by kind.
    pub fn counts(&self) -> Counts {
        Counts(self.0.each_ref().map(BTreeSet::len))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(BTreeSet::is_empty)
    }

    /// Adds every object of `other`.
    pub fn extend(&mut self, other: &Objects) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.extend(theirs);
        }
    }

    /// Those also in `other`.
    pub fn intersection(&self, other: &Objects) -> Objects {
        Objects(std::array::from_fn(|k| {
            self.0[k].intersection(&other.0[k]).copied().collect()
        }))
    }

    /// Those the kernel still has.
    pub fn alive(&self) -> Objects {
        self.intersection(&host())
    }

    /// The objects named by the fdinfo of `fd` in process `pid`: its own id,
    /// and for a link the program it holds; for a perf event, the program
    /// attached to it.
    fn add_fd(&mut self, pid: u32, fd: i32) {
        // Only anonymous inodes are BPF objects or perf events (not files, sockets, pipes).
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            return;
        };
        let Some(name) = target.to_str().and_then(|t| t.strip_prefix("anon_inode:")) else {
            return;
        };
        if name == "[perf_event]" {
            if let Some(prog) = perf_event_program(pid, fd) {
                self.insert(Kind::Prog, prog);
            }
            return;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            return;
        };
        for line in info.lines() {
            for kind in Kind::ALL {
                if let Some(id) = line.strip_prefix(kind.field()) {
                    if let Ok(id) = id.trim().parse() {
                        self.insert(kind, id);
                    }
                }
            }
        }
    }

    /// Adds the maps and BTF that the programs already here use (from each
    /// program's info): they live as long as the program does.
    fn add_what_programs_hold(&mut self) {
        for prog in self.get(Kind::Prog).clone() {
            let Some((maps, btf)) = program_uses(prog) else {
                continue; // freed meanwhile
            };
            for map in maps {
                self.insert(Kind::Map, map);
            }
            if btf != 0 {
                self.insert(Kind::Btf, btf);
            }
        }
    }
}

impl fmt::Display for Objects {
    /// `prog 12, 13; map 4, 5` (at most 10 ids of a kind, then how many more).
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        for kind in Kind::ALL {
            let ids = self.get(kind);
            if ids.is_empty() {
                continue;
            }
            let mut shown: Vec<String> = ids.iter().take(10).map(u32::to_string).collect();
            if ids.len() > 10 {
                shown.push(format!("and {} more", ids.len() - 10));
            }
            parts.push(format!("{} {}", kind.name(), shown.join(", ")));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join("; "))
    }
}

/// The program attached to perf event `fd` of process `pid` (a uprobe with
/// `PERF_EVENT_IOC_SET_BPF`, which no fdinfo line shows), by
/// `BPF_TASK_FD_QUERY`; `None` when no program is attached.
fn perf_event_program(pid: u32, fd: i32) -> Option<u32> {
    let mut buf = [0 as libc::c_char; 256];
    let mut len = buf.len() as u32;
    let (mut prog, mut fd_type, mut offset, mut addr) = (0u32, 0u32, 0u64, 0u64);
    let err = unsafe {
        libbpf_sys::bpf_task_fd_query(
            pid as i32,
            fd,
            0,
            buf.as_mut_ptr(),
            &mut len,
            &mut prog,
            &mut fd_type,
            &mut offset,
            &mut addr,
        )
    };
    (err == 0 && prog != 0).then_some(prog)
}

/// The maps and the BTF object (0: none) program `id` uses; `None` when it is gone.
fn program_uses(id: u32) -> Option<(Vec<u32>, u32)> {
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut maps = vec![0u32; 256];
    let mut info = libbpf_sys::bpf_prog_info {
        nr_map_ids: maps.len() as u32,
        map_ids: maps.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    if unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) } != 0 {
        return None;
    }
    maps.truncate((info.nr_map_ids as usize).min(maps.len()));
    Some((maps, info.btf_id))
}

/// Every BPF object on the host, by id: information only (what a
/// host-wide count would have said), and what [`Objects::alive`] compares to.
pub fn host() -> Objects {
    let mut all = Objects::default();
    for kind in Kind::ALL {
        let mut id = 0;
        while let Some(next) = kind.next_id(id) {
            all.insert(kind, next);
            id = next;
        }
    }
    all
}

/// The start time of process `pid` (in clock ticks since boot) and whether it
/// has exited (a zombie, its files closed); `None` when there is no such
/// process. The start time tells a reused pid from the process watched.
fn process_state(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.first()? == &"Z"))
}

/// The processes (pid and comm) holding any of `objects`, with what each holds of them.
fn holders(objects: &Objects) -> Vec<(u32, String, Objects)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Some(held) = Objects::held_by(pid) else {
            continue;
        };
        let theirs = held.intersection(objects);
        if !theirs.is_empty() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string(), theirs));
        }
    }
    found
}

/// The mount points of bpffs, from this process's mountinfo.
fn bpffs_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            (after.split_whitespace().next()? == "bpf")
                .then(|| before.split_whitespace().nth(4))
                .flatten()
                .map(|point| PathBuf::from(point.replace("\\040", " ")))
        })
        .collect()
}

/// Every object pinned on a bpffs mount, with its path.
pub fn pins() -> Vec<(PathBuf, Objects)> {
    let mut found = Vec::new();
    let mut dirs = bpffs_mounts();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
                continue;
            }
            let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            let fd = unsafe { libbpf_sys::bpf_obj_get(c_path.as_ptr()) };
            if fd < 0 {
                continue;
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut pinned = Objects::default();
            pinned.add_fd(std::process::id(), fd.as_raw_fd());
            found.push((path, pinned));
        }
    }
    found
}

/// Who keeps `left` alive, for a failure message: each holding process, each
/// pin, and the objects nothing in user space holds.
pub fn who_keeps(left: &Objects) -> String {
    let mut lines = Vec::new();
    let mut explained = Objects::default();
    for (pid, comm, theirs) in holders(left) {
        lines.push(format!("  held by pid {pid} ({comm}): {theirs}"));
        explained.extend(&theirs);
    }
    for (path, pinned) in pins() {
        let theirs = pinned.intersection(left);
        if !theirs.is_empty() {
            lines.push(format!("  pinned at {}: {theirs}", path.display()));
            explained.extend(&theirs);
        }
    }
    let mut unexplained = Objects::default();
    for kind in Kind::ALL {
        for &id in left.get(kind).difference(explained.get(kind)) {
            unexplained.insert(kind, id);
        }
    }
    if !unexplained.is_empty() {
        lines.push(format!(
            "  held by no process's fds and by no pin (the kernel, or a program that holds them): {unexplained}"
        ));
    }
    lines.join("\n")
}

/// One process watched: what it holds, sampled in the background every
/// [`Watch::EVERY`] and at each [`Watch::now`], and the union of all samples.
pub struct Watch {
    pid: u32,
    started: u64,
    seen: Arc<Mutex<Objects>>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// How often the background sampler looks.
    pub const EVERY: Duration = Duration::from_millis(50);

    /// Starts watching process `pid` (which must be running).
    pub fn start(pid: u32) -> Watch {
        let (started, _) =
            process_state(pid).unwrap_or_else(|| panic!("no process {pid} to watch"));
        let seen = Arc::new(Mutex::new(Objects::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if sample(pid, started, &seen).is_none() {
                        return; // exited
                    }
                    std::thread::sleep(Watch::EVERY);
                }
            })
        };
        Watch {
            pid,
            started,
            seen,
            stop,
            sampler: Some(sampler),
        }
    }

    /// What the process holds now (added to what it was seen holding).
    /// Panics when it has exited.
    pub fn now(&self) -> Objects {
        sample(self.pid, self.started, &self.seen)
            .unwrap_or_else(|| panic!("process {} has exited", self.pid))
    }

    /// What the process holds once that has held still for half a second (at
    /// most 30 s of waiting): the kernel frees an instance's objects some RCU
    /// grace periods after it is dropped.
    pub fn steady(&self) -> Objects {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut last, mut since) = (self.now(), Instant::now());
        while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.now();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }

    /// Every object the process was seen holding so far.
    pub fn seen(&self) -> Objects {
        self.seen.lock().unwrap().clone()
    }

    /// After the process exited: waits (at most 30 s) until the kernel has
    /// freed every object it was seen holding, and returns those. `Err`
    /// says which are left and who keeps them.
    pub fn all_freed(&mut self) -> Result<Objects, String> {
        self.all_freed_within(Duration::from_secs(30))
    }

    /// [`Watch::all_freed`], waiting at most `timeout`.
    pub fn all_freed_within(&mut self, timeout: Duration) -> Result<Objects, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let pid = self.pid;
        if process_state(pid).is_some_and(|(started, exited)| started == self.started && !exited) {
            return Err(format!("process {pid} still runs: stop it first"));
        }
        let seen = self.seen();
        let deadline = Instant::now() + timeout;
        loop {
            let left = seen.alive();
            if left.is_empty() {
                return Ok(seen);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "leak: {timeout:?} after process {pid} exited, the kernel still has {} of \
                     the {} it was seen holding (sampled every {:?}): {left}\n{}\n\
                     (host-wide now, for information: {})",
                    left.counts(),
                    seen.counts(),
                    Watch::EVERY,
                    who_keeps(&left),
                    host().counts()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
    }
}

/// One sample of process `pid` started at `started`, added to `seen`; `None`
/// when it has exited (or its pid now names another process).
fn sample(pid: u32, started: u64, seen: &Mutex<Objects>) -> Option<Objects> {
    let same = || process_state(pid).is_some_and(|(s, exited)| s == started && !exited);
    if !same() {
        return None;
    }
    let held = Objects::held_by(pid)?;
    // Checked again: the pid may have been reused while its fds were read.
    if !same() {
        return None;
    }
    seen.lock().unwrap().extend(&held);
    Some(held)
}

/// The fixture `uexp-bpf-holder` (tests/fixtures/bpf_holder.c): a process
/// with BPF objects of its own, unrelated to any exporter; stopped when dropped.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The program only its perf event holds (no fdinfo line shows it).
    pub perf_prog: u32,
}

impl Holder {
    /// Starts it; returns once it holds its perf event and program.
    pub fn start() -> Holder {
        let mut child = common::spawn(
            Command::new(&fixtures().bpf_holder)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let perf_prog = line
            .trim()
            .strip_prefix("ready perf-prog ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("uexp-bpf-holder said {line:?}"));
        Holder {
            child,
            stdin,
            stdout,
            perf_prog,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Loads another program and map, held by their fds: their ids.
    pub fn more(&mut self) -> (u32, u32) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "more").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let ids: Vec<u32> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(line.starts_with("ok") && ids.len() == 2, "{line:?}");
        (ids[0], ids[1])
    }

    /// Closes its stdin and waits for it to exit.
    pub fn stop(&mut self) {
        self.stdin = None;
        let status = self.child.wait().unwrap();
        assert!(status.success(), "uexp-bpf-holder: {status}");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the exporter reports `n` processes attached for program `name`.
fn attached(exporter: &Exporter, name: &str, n: f64) {
    let done = wait_for(Duration::from_secs(30), || {
        (exporter.samples().get(
            "userspace_exporter_processes",
            &[("name", name), ("state", "attached")],
        ) == Some(n))
        .then_some(())
    });
    assert!(done.is_some(), "{n} never attached:\n{}", exporter.logs());
}

/// A duplicate, in this process, of fd `fd` of process `pid` (pidfd_getfd):
/// what a child that inherited the exporter's fds would hold.
fn steal_fd(pid: u32, fd: i32) -> OwnedFd {
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open {pid}: {}",
        std::io::Error::last_os_error()
    );
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    assert!(
        dup >= 0,
        "pidfd_getfd {pid} {fd}: {}",
        std::io::Error::last_os_error()
    );
    unsafe { OwnedFd::from_raw_fd(dup as i32) }
}

/// A duplicate, in this process, of the fd by which process `pid` holds an
/// object of `kind` among `steady` (what it held once still), and that
/// object's id. The id is read back from the duplicate: an fd the exporter
/// closed meanwhile, its number reused by a socket or a newer link, is never
/// taken for the object sought (once seen in CI under load).
fn steal_held(pid: u32, kind: Kind, steady: &Objects) -> (OwnedFd, u32) {
    let field = format!("{}_id:", kind.name());
    let id_in = |info: &str| -> Option<u32> {
        info.lines()
            .find_map(|l| l.strip_prefix(field.as_str()))
            .and_then(|id| id.trim().parse().ok())
    };
    for _ in 0..50 {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
            .unwrap()
            .flatten()
        {
            let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let Some(id) = id_in(&info).filter(|id| steady.contains(kind, *id)) else {
                continue;
            };
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            let dup = steal_fd(pid, fd);
            let ours = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", dup.as_raw_fd()))
                .unwrap_or_default();
            if id_in(&ours) == Some(id) {
                return (dup, id);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("process {pid} holds no {kind:?} of {steady} by an fd");
}

/// A program attached to a perf event with PERF_EVENT_IOC_SET_BPF and no
/// link, its own fd closed, shows in no fdinfo line: it is still counted as
/// held by the process whose perf event holds it (BPF_TASK_FD_QUERY), along
/// with the program and map it holds by fd, exactly; once that process exits,
/// the check finds them all freed.
#[test]
fn a_program_held_only_by_a_perf_event_is_counted_as_held_by_its_process() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut holder = Holder::start();
    let (prog, map) = holder.more();
    let mut watch = Watch::start(holder.pid());
    let held = watch.now();
    let mut expected = Objects::default();
    expected.insert(Kind::Prog, holder.perf_prog);
    expected.insert(Kind::Prog, prog);
    expected.insert(Kind::Map, map);
    assert_eq!(held, expected, "{held} vs {expected}");
    assert_eq!(held.alive(), expected, "all of them are in the kernel");
    holder.stop();
    let freed = watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(freed, expected);
}

/// The checks ignore BPF objects that other processes load while they run:
/// an unrelated process holding a perf-event program and loading programs
/// and maps, and a second exporter attaching to a target of its own. The
/// exporter under test is back to exactly its quiet objects while the host
/// holds more, and after it exits every object it held is found freed while
/// the others' objects are still there (a host-wide count would have called
/// that a leak).
#[test]
fn objects_other_processes_load_meanwhile_fail_no_check() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-kobj-ours";
    let mut target = Target::start(comm);
    let exporter = Exporter::start(&common::hits_config(comm));
    let mut watch = Watch::start(exporter.pid());
    attached(&exporter, "churn", 1.0);
    let quiet = watch.steady();
    // One USDT instance: its program, its uprobe_multi link, its maps, its BTF.
    assert_eq!(quiet.counts().of(Kind::Prog), 1, "{quiet}");
    assert_eq!(quiet.counts().of(Kind::Link), 1, "{quiet}");
    assert_eq!(quiet.counts().of(Kind::Btf), 1, "{quiet}");
    assert!(quiet.counts().of(Kind::Map) >= 1, "{quiet}");

    // Others load BPF while the exporter under test runs.
    let mut holder = Holder::start();
    let other_comm = "uexp-kobj-other";
    let _other_target = Target::start(other_comm);
    let other = Exporter::start(&common::hits_config(other_comm));
    attached(&other, "churn", 1.0);
    let others = Watch::start(other.pid());
    let mut theirs = others.now();
    theirs.insert(Kind::Prog, holder.perf_prog);
    for _ in 0..3 {
        let (prog, map) = holder.more();
        theirs.insert(Kind::Prog, prog);
        theirs.insert(Kind::Map, map);
        assert_eq!(watch.now(), quiet, "the exporter under test did not change");
    }
    target.fire("usdt 2 1");
    assert_eq!(watch.steady(), quiet);
    assert_eq!(
        theirs.alive(),
        theirs,
        "the others' objects are on the host"
    );
    assert!(
        theirs.intersection(&watch.seen()).is_empty(),
        "none of theirs was counted as ours: {}",
        theirs.intersection(&watch.seen())
    );

    drop(exporter);
    let freed = watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(freed, quiet, "it held nothing else meanwhile");
    assert_eq!(
        theirs.alive(),
        theirs,
        "the others' objects outlived the exporter under test"
    );
}

/// The check after exit fails when another process keeps one of the
/// exporter's objects (a duplicate of its link fd, as a child that inherited
/// its fds would hold) or when one is pinned on bpffs, and names the holder
/// and the pin; once they let go, the same check passes.
#[test]
fn an_object_kept_by_another_process_or_a_pin_fails_the_check_and_is_named() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-kobj-leak";
    let _target = Target::start(comm);
    let exporter = Exporter::start(&common::hits_config(comm));
    let mut watch = Watch::start(exporter.pid());
    attached(&exporter, "churn", 1.0);
    let held = watch.steady();
    let (kept_link, link) = steal_held(exporter.pid(), Kind::Link, &held);
    let (kept_prog, prog) = steal_held(exporter.pid(), Kind::Prog, &held);
    let pin = bpffs_mounts()
        .first()
        .expect("no bpffs mounted (mount -t bpf bpf /sys/fs/bpf)")
        .join(format!("uexp-kobj-leak-{}", std::process::id()));
    {
        let c_pin = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()).unwrap();
        let err = unsafe { libbpf_sys::bpf_obj_pin(kept_prog.as_raw_fd(), c_pin.as_ptr()) };
        assert_eq!(err, 0, "pin {}: {}", pin.display(), err);
        drop(kept_prog);
    }
    drop(exporter);
    // They cannot be freed while held: the wait only costs time, so keep it short.
    let failed = watch.all_freed_within(Duration::from_secs(2));
    let _ = std::fs::remove_file(&pin);
    let said = failed.expect_err("the check passed with a link held and a program pinned");
    let me = format!("held by pid {} (", std::process::id());
    for expected in [
        format!("link {link}"),
        format!("prog {prog}"),
        me,
        format!("pinned at {}: prog {prog}", pin.display()),
    ] {
        assert!(said.contains(&expected), "{expected:?} not in:\n{said}");
    }
    eprintln!("{said}");
    drop(kept_link);
    let freed = watch.all_freed().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(freed, held);
}

/// What scripts/soak.py's own copy of these checks (Python) says, driven
/// over its stdin: first what each of `pids` holds, then, after a line on
/// stdin, what is left of what it saw the first one hold, and who keeps it.
const SOAK_PY_CHECKER: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import soak
pids = [int(p) for p in sys.argv[2:]]
print(json.dumps({str(p): {k: sorted(v) for k, v in soak.held_by(p).items()} for p in pids}), flush=True)
watch = soak.Watch(pids[0])
watch.now()
sys.stdin.readline()
left, _ = watch.all_freed(timeout=2)
print(json.dumps({"left": {k: sorted(v) for k, v in left.items()}, "who": soak.who_keeps(left)}), flush=True)
"#;

/// The ids of one kind in soak.py's JSON (`{"progs": [..], ...}`).
fn json_ids(objects: &serde_json::Value, kind: Kind) -> BTreeSet<u32> {
    let key = ["progs", "maps", "links", "btf"][kind as usize];
    objects[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {objects}"))
        .iter()
        .map(|id| id.as_u64().unwrap() as u32)
        .collect()
}

/// scripts/soak.py judges leaks with its own copy of these checks: on the
/// same processes it finds exactly what `Objects::held_by` finds (an exporter
/// with a USDT and a perf-event uprobe program, and the holder whose program
/// only a perf event holds), and after the exporter exits with one of its
/// links kept by this process, it reports that link left, names this process,
/// and does not count the holder's objects, alive meanwhile, as the exporter's.
#[test]
fn soak_py_finds_what_these_checks_find() {
    let _machine = common::shared();
    if !require_bpf()
        || !common::require_command("python3", &["--version"], "scripts/setup.sh installs it")
    {
        return;
    }
    let comm = "uexp-kobj-py";
    let _target = Target::start(comm);
    let config = format!(
        r#"programs:{}
  - name: calls
    object: {uprobe}
    metrics:
      counters:
        - name: kobj_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        common::hits_program("hits", "kobj_hits_total", comm),
        uprobe = fixtures().object("uprobe_counts").display(),
    );
    let exporter = Exporter::start(&config);
    attached(&exporter, "calls", 1.0);
    attached(&exporter, "hits", 1.0);
    let watch = Watch::start(exporter.pid());
    let held = watch.steady();
    let holder = Holder::start();
    let mut python = common::spawn(
        Command::new("python3")
            .arg("-c")
            .arg(SOAK_PY_CHECKER)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
            .arg(exporter.pid().to_string())
            .arg(holder.pid().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut said = BufReader::new(python.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    let found: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    for (pid, ours) in [
        (exporter.pid(), held.clone()),
        (holder.pid(), Objects::held_by(holder.pid()).unwrap()),
    ] {
        for kind in Kind::ALL {
            assert_eq!(
                &json_ids(&found[pid.to_string()], kind),
                ours.get(kind),
                "pid {pid}, {kind:?}"
            );
        }
    }
    assert!(found[holder.pid().to_string()]["progs"]
        .as_array()
        .unwrap()
        .contains(&holder.perf_prog.into()));

    let (kept, link) = steal_held(exporter.pid(), Kind::Link, &held);
    drop(exporter);
    let mut stdin = python.stdin.take().unwrap();
    writeln!(stdin, "exited").unwrap();
    stdin.flush().unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    let _ = python.wait();
    drop(kept);
    let report: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let left = &report["left"];
    assert!(json_ids(left, Kind::Link).contains(&link), "{report}");
    let who = report["who"].as_str().unwrap();
    assert!(
        who.contains(&format!("held by pid {} (", std::process::id())),
        "{who}"
    );
    for kind in Kind::ALL {
        assert!(
            json_ids(left, kind).is_subset(held.get(kind)),
            "{kind:?}: only the exporter's objects are reported: {report}"
        );
    }
    assert!(!json_ids(left, Kind::Prog).contains(&holder.perf_prog));
}
