//! One loaded copy of a program attached to one process.

use super::libbpf_log;
use super::pid_keyed::{LinkUse, PidKeyedSlot, Selection};
use super::program::PreparedProgram;
use super::resolve::{self, Origin, ResolveError};
use super::sources::SourceOutcome;
use crate::config::ProbeKind;
use crate::discovery::ProcessInfo;
use crate::elf::ElfCache;
use libbpf_rs::{Link, MapCore, Object, UprobeOpts};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A probe that could not be attached in a process, kept for logs, metrics and the landing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachFailure {
    /// Probe kind.
    pub kind: ProbeKind,
    /// Probe spec as written (empty for failures of the whole instance).
    pub probe: String,
    /// What went wrong and where.
    pub message: String,
    /// The attach was cut short by no fault (the process exited while being
    /// attached, or the exporter is stopping): not reported as an error, not
    /// retried.
    pub cancelled: bool,
    /// Not a fault either: the process's build offers none of the probe sets
    /// of this source (its name and the reason, as the self-metrics say it).
    /// Said once, not counted as an attach error.
    pub unavailable: Option<(String, &'static str)>,
}

/// A BPF program of a loaded instance, as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgramInfo {
    /// Function name.
    pub name: String,
    /// Kernel tag (hash of the instructions), hex.
    pub tag: String,
    /// Kernel program id.
    pub id: u32,
}

/// Why no instance could be made for a process.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// The object could not be opened or loaded (verifier rejection included).
    #[error("loading the BPF object failed: {message}")]
    Load {
        /// Error and the end of the verifier log.
        message: String,
    },
    /// Not a single probe attached.
    #[error("no probe attached: {}", .failures.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; "))]
    NothingAttached {
        /// One entry per probe.
        failures: Vec<AttachFailure>,
    },
    /// The program has only `sources:`, and the process's build offers none
    /// of their probe sets: nothing was loaded.
    #[error("none of the program's sources is available: {}", .sources.iter().map(|s| s.describe()).collect::<Vec<_>>().join("; "))]
    NoSource {
        /// How each source fared.
        sources: Vec<SourceOutcome>,
    },
}

impl InstanceError {
    /// A load failure with the last lines of libbpf's log (the verifier's verdict is there).
    pub(crate) fn load_failed(e: libbpf_rs::Error, log: &str) -> InstanceError {
        let tail = libbpf_log::tail(log, 20);
        let error = crate::privileges::explain(&e, crate::privileges::LOAD);
        InstanceError::Load {
            message: if tail.is_empty() {
                error
            } else {
                format!("{error}\n--- end of the libbpf/verifier log ---\n{tail}")
            },
        }
    }

    /// The failures to count and show, one per probe (or one for the whole instance).
    pub fn failures(&self) -> Vec<AttachFailure> {
        match self {
            InstanceError::NothingAttached { failures } => failures.clone(),
            InstanceError::Load { message } => vec![AttachFailure {
                kind: ProbeKind::Usdt,
                probe: String::new(),
                message: message.clone(),
                cancelled: false,
                unavailable: None,
            }],
            InstanceError::NoSource { sources } => sources
                .iter()
                .filter_map(|outcome| {
                    Some(AttachFailure {
                        kind: ProbeKind::Usdt,
                        probe: format!("source {}", outcome.source),
                        message: outcome.describe(),
                        cancelled: false,
                        unavailable: Some((outcome.source.clone(), outcome.reason()?)),
                    })
                })
                .collect(),
        }
    }
}

/// Why a USDT attach to a shared instance may fail when others succeeded.
const SHARED_USDT_HINT: &str = " (a shared instance's object holds at most BPF_USDT_MAX_SPEC_CNT USDT attachments: 256 unless it is built with a larger -DBPF_USDT_MAX_SPEC_CNT; inline code gets 8192)";

/// The object an instance's links belong to: its own, or the program's shared one.
enum ObjectRef {
    Owned(Object),
    Shared(Arc<Object>),
}

impl std::ops::Deref for ObjectRef {
    type Target = Object;
    fn deref(&self) -> &Object {
        match self {
            ObjectRef::Owned(object) => object,
            ObjectRef::Shared(object) => object,
        }
    }
}

/// What an instance's probes are attached to.
#[derive(Debug, Clone)]
pub enum AttachTarget {
    /// One process: the probes fire only in it (libbpf's pid filter).
    Process(ProcessInfo),
    /// Every process that runs an executable, from its first instruction
    /// (libbpf's pid -1): `instances: per_binary`.
    Binary {
        /// The executable, as the process it was found through sees it (or as
        /// named in the config).
        exe: PathBuf,
        /// The process the binary was found through; none for a path named in
        /// the config, which is attached before any process runs it.
        found_in: Option<ProcessInfo>,
    },
}

impl AttachTarget {
    /// The process, if the target is one (or was found through one).
    pub fn process(&self) -> Option<&ProcessInfo> {
        match self {
            AttachTarget::Process(process) => Some(process),
            AttachTarget::Binary { found_in, .. } => found_in.as_ref(),
        }
    }

    /// The pid a per-process instance is attached to; none for a binary.
    pub fn pid(&self) -> Option<i32> {
        match self {
            AttachTarget::Process(process) => Some(process.pid()),
            AttachTarget::Binary { .. } => None,
        }
    }

    /// libbpf's pid filter: the process, or -1 for every process.
    fn pid_filter(&self) -> i32 {
        self.pid().unwrap_or(-1)
    }

    /// Where the probes are looked up, in `files` when they were read.
    fn origin<'a>(&'a self, files: Option<&'a [crate::discovery::MappedFile]>) -> Origin<'a> {
        match self {
            AttachTarget::Process(process) => Origin::Process(process, files),
            AttachTarget::Binary {
                found_in: Some(process),
                ..
            } => Origin::Process(process, files),
            AttachTarget::Binary {
                exe,
                found_in: None,
            } => Origin::Binary(exe),
        }
    }

    /// For logs and the landing page: `pid 42 (comm)` or `every process of /usr/bin/x`.
    pub fn describe(&self) -> String {
        match self {
            AttachTarget::Process(process) => format!("pid {} ({})", process.pid(), process.comm),
            AttachTarget::Binary { exe, .. } => format!("every process of {}", exe.display()),
        }
    }
}

/// A program loaded for one process (or one binary), with its probes attached.
/// Dropping it detaches them.
pub struct Instance {
    /// What the probes are attached to.
    pub target: AttachTarget,
    // Field order is drop order: links must be destroyed before the object they
    // belong to (a USDT link's detach uses the object's USDT manager).
    links: Vec<Link>,
    /// A pid-keyed program's links, shared with the other processes that
    /// map the same files.
    file_links: Vec<LinkUse>,
    /// A pid-keyed program's selection of this process, ended at detach.
    selection: Option<Selection>,
    object: ObjectRef,
    /// Human descriptions of what is attached.
    pub attached: Vec<String>,
    /// Probes that did not attach (the others still count).
    pub failures: Vec<AttachFailure>,
    /// Kernel identity of each loaded BPF program.
    pub programs: Vec<BpfProgramInfo>,
    /// How long load + attach took.
    pub attach_duration: Duration,
    /// CLOCK_MONOTONIC ns when the attach began (files were resolved after this).
    pub started_ns: u64,
    /// Labels every series of this instance carries: `pid`, then the program's
    /// `process_labels`.
    pub series_labels: Vec<(&'static str, String)>,
    /// How each of the program's sources fared here (which probe set feeds
    /// it, or why none can).
    pub sources: Vec<SourceOutcome>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("target", &self.target.describe())
            .field("links", &self.links.len())
            .field("failures", &self.failures)
            .finish()
    }
}

impl Instance {
    pub(super) fn attach(
        program: &PreparedProgram,
        target: AttachTarget,
        cache: &mut ElfCache,
        shared: Option<&Arc<Object>>,
        pid_keyed: Option<&PidKeyedSlot>,
    ) -> Result<Instance, InstanceError> {
        let started = Instant::now();
        let started_ns = crate::discovery::monotonic_ns();
        // The process's files, read once for every probe (an error is met
        // again, and reported, where a probe reads them).
        let files = target
            .process()
            .and_then(|p| crate::discovery::mapped_files(p.pid()).ok());
        // Which probe set feeds each source here: decided before loading, so
        // that a process whose build offers none costs no load.
        let choice = super::sources::choose(&program.config, &program.probes, |i| {
            super::resolution::resolve_probe(
                target.origin(files.as_deref()),
                &program.probes[i],
                cache,
            )
            .map(|_| ())
        });
        if !choice.attach.iter().any(|&a| a) {
            return Err(InstanceError::NoSource {
                sources: choice.sources,
            });
        }
        let pid_keyed = match pid_keyed {
            Some(slot) => Some(slot.load(program)?),
            None => None,
        };
        let pid_keyed = pid_keyed.as_ref();
        let object = match (pid_keyed, shared) {
            (Some(pid_keyed), _) => ObjectRef::Shared(pid_keyed.object().clone()),
            (None, Some(object)) => ObjectRef::Shared(object.clone()),
            (None, None) => ObjectRef::Owned(program.load()?),
        };
        let load_duration = started.elapsed();
        // A pid-keyed program's probes are placed for every process that
        // maps the file; the program itself counts only the selected ones.
        let pid = if pid_keyed.is_some() {
            -1
        } else {
            target.pid_filter()
        };
        // Without BPF cookies, a pid-keyed program's USDT probes go into its
        // object once per process (libbpf cannot place them for every
        // process of a position-independent file); its uprobes stay per file.
        let usdt_pid = if pid_keyed.is_some() && !program.usdt_per_file {
            target.pid_filter()
        } else {
            pid
        };
        let mut file_links: Vec<LinkUse> = Vec::new();
        // Makes one probe's links in one file (`key`), or, for a pid-keyed
        // program, takes those another process made.
        let mut place = |key: String,
                         one_process: bool,
                         make: &mut dyn FnMut() -> Result<(Vec<Link>, Vec<String>), String>|
         -> Result<(Vec<Link>, Vec<String>), String> {
            match pid_keyed {
                Some(pid_keyed) => {
                    let link = pid_keyed.link(key, one_process, make)?;
                    let what = link.what().to_vec();
                    file_links.push(link);
                    Ok((Vec::new(), what))
                }
                None => make(),
            }
        };
        let origin = target.origin(files.as_deref());
        // For messages: "of pid 42", or nothing for a binary's every process.
        let of_pid = target
            .pid()
            .map(|p| format!(" of pid {p}"))
            .unwrap_or_default();
        let mut links = Vec::new();
        let mut attached = Vec::new();
        let mut failures = Vec::new();
        for (index, (probe, _)) in program
            .probes
            .iter()
            .zip(&choice.attach)
            .enumerate()
            .filter(|(_, (_, &attach))| attach)
        {
            let fail = |message: String| AttachFailure {
                kind: probe.kind,
                probe: probe.spec.clone(),
                message,
                cancelled: false,
                unavailable: None,
            };
            let Some(bpf_prog) = object
                .progs_mut()
                .find(|p| p.name().to_string_lossy() == probe.function)
            else {
                failures.push(fail(format!(
                    "BPF function {:?} missing after load",
                    probe.function
                )));
                continue;
            };
            let result: Result<(Vec<Link>, Vec<String>), String> = match probe.kind {
                ProbeKind::Usdt => resolve::resolve_usdt(origin, &probe.spec, cache)
                    .map_err(|e| describe(&probe.spec, probe.kind, &e))
                    .and_then(|targets| {
                        let mut links = Vec::new();
                        let mut what = Vec::new();
                        for t in targets {
                            let mut key = link_key(index, &t);
                            if usdt_pid != -1 {
                                key.push_str(&format!("|pid {usdt_pid}"));
                            }
                            let (made, said) = place(key, usdt_pid != -1, &mut || {
                                bpf_prog
                                    .attach_usdt(usdt_pid, &t.host_path, &t.provider, &t.name)
                                    .map(|link| {
                                        (
                                            vec![link],
                                            vec![format!(
                                                "usdt {}:{} in {}{}",
                                                t.provider,
                                                t.name,
                                                t.path.display(),
                                                armed(&t)
                                            )],
                                        )
                                    })
                                    .map_err(|e| {
                                        format!(
                                            "attaching usdt {}:{} in {}{of_pid}: {}{}{}",
                                            t.provider,
                                            t.name,
                                            t.path.display(),
                                            crate::privileges::explain(&e, crate::privileges::USDT),
                                            unsupported_hint(&e),
                                            if shared.is_some() {
                                                SHARED_USDT_HINT
                                            } else {
                                                ""
                                            }
                                        )
                                    })
                            })?;
                            links.extend(made);
                            what.extend(said);
                        }
                        Ok((links, what))
                    }),
                ProbeKind::Uprobe | ProbeKind::Uretprobe => {
                    let retprobe = probe.kind == ProbeKind::Uretprobe;
                    resolve::resolve_uprobe(origin, &probe.spec, cache)
                        .map_err(|e| describe(&probe.spec, probe.kind, &e))
                        .and_then(|(t, is_go)| {
                            if retprobe && is_go {
                                return Err(format!(
                                    "refusing uretprobe {:?} on Go binary {}: uretprobes rewrite return addresses, which corrupts Go's moving stacks and crashes the program; use a uprobe on the function's return instructions or time it with uprobes on entry and on the caller instead",
                                    probe.spec,
                                    t.path.display()
                                ));
                            }
                            let multi = program.uprobe_multi;
                            place(link_key(index, &t), false, &mut || {
                                attach_uprobe(&bpf_prog, (pid, &of_pid), &t, retprobe, multi)
                            })
                        })
                }
            };
            match result {
                Ok((made, what)) => {
                    links.extend(made);
                    attached.extend(
                        what.into_iter()
                            .map(|w| format!("{w} -> {}", probe.function)),
                    );
                }
                Err(message) => failures.push(fail(message)),
            }
        }
        // A process that exits mid-attach leaves failures that only say "no such file":
        // say what happened instead, and keep nothing of it.
        if let Some(process) = target
            .process()
            .filter(|p| !failures.is_empty() && !p.is_alive())
        {
            return Err(InstanceError::NothingAttached {
                failures: vec![AttachFailure {
                    kind: failures[0].kind,
                    probe: String::new(),
                    message: format!(
                        "process {} ({}) exited while being attached",
                        process.pid(),
                        process.comm
                    ),
                    cancelled: true,
                    unavailable: None,
                }],
            });
        }
        // A forked child that exec'd mid-attach (a Python program starting a
        // subprocess) no longer has the files the probes were chosen from:
        // nothing of it is kept, and its exec event judges it again.
        if let Some(process) = target
            .process()
            .filter(|p| !failures.is_empty() && p.image_replaced())
        {
            return Err(InstanceError::NothingAttached {
                failures: vec![AttachFailure {
                    kind: failures[0].kind,
                    probe: String::new(),
                    message: format!(
                        "process {} ({}) replaced its executable {} (exec) while being attached: it is judged again as what it runs now",
                        process.pid(),
                        process.comm,
                        process.exe.display()
                    ),
                    cancelled: true,
                    unavailable: None,
                }],
            });
        }
        if links.is_empty() && file_links.is_empty() {
            return Err(InstanceError::NothingAttached { failures });
        }
        let selection = match (pid_keyed, target.pid()) {
            (Some(pid_keyed), Some(process)) => {
                let selection = Selection::new(pid_keyed.clone(), process as u32);
                if let Err(message) = pid_keyed.select(process as u32) {
                    return Err(InstanceError::NothingAttached {
                        failures: vec![AttachFailure {
                            kind: ProbeKind::Usdt,
                            probe: String::new(),
                            message,
                            cancelled: false,
                            unavailable: None,
                        }],
                    });
                }
                Some(selection)
            }
            _ => None,
        };
        let programs = object
            .progs()
            .filter(|p| {
                program
                    .probes
                    .iter()
                    .any(|probe| p.name().to_string_lossy() == probe.function)
            })
            .map(|p| program_info(p.name().to_string_lossy().into_owned(), p.as_fd()))
            .collect();
        tracing::debug!(
            target = %target.describe(),
            load_ms = load_duration.as_secs_f64() * 1e3,
            attach_ms = (started.elapsed() - load_duration).as_secs_f64() * 1e3,
            "instance ready"
        );
        let series_labels = series_labels(program, &target);
        Ok(Instance {
            target,
            object,
            links,
            file_links,
            selection,
            attached,
            failures,
            programs,
            attach_duration: started.elapsed(),
            started_ns,
            series_labels,
            sources: choice.sources,
        })
    }

    /// The loaded object the links belong to (shared between processes in shared mode).
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// A map of this instance, by name.
    pub fn map(&self, table: &str) -> Option<libbpf_rs::Map<'_>> {
        self.object
            .maps()
            .find(|m| m.name().to_string_lossy() == table)
    }

    /// Number of attached links (a pid-keyed program's, shared with other
    /// processes, included).
    pub fn link_count(&self) -> usize {
        self.links.len()
            + self
                .file_links
                .iter()
                .map(|l| l.link_count())
                .sum::<usize>()
    }

    /// For a pid-keyed program: stops counting the process, at once (before
    /// a process given its pid can be selected), and has what it counted
    /// deleted; nothing otherwise.
    pub fn deselect(&self) {
        if let Some(selection) = &self.selection {
            selection.end();
        }
    }
}

/// What identifies one probe's links in one file, for a pid-keyed program
/// whose processes share them: the probe, the file, and what in it is
/// probed.
fn link_key(probe: usize, t: &resolve::Target) -> String {
    format!(
        "{probe}|{}|{}:{}|{:?}|{:?}|{:?}",
        file_identity(&t.host_path),
        t.provider,
        t.name,
        t.offset,
        t.symbols,
        t.each
    )
}

/// A file as the kernel places uprobes in it, from `stat`: its inode number,
/// size and times, not its device. Through overlayfs (a container's image)
/// each container's mount has a device of its own while the kernel probes
/// the layer's file, the same for every container of the image, whose
/// inode number and times overlayfs passes through; a device in the key
/// would place the probe once per container, and count each hit as often.
/// Two distinct files agreeing on all four (nanosecond times included) are
/// not expected.
fn file_identity(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "ino {} size {} mtime {}.{} ctime {}.{}",
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
        Err(_) => path.display().to_string(),
    }
}

/// Attaches `prog` to the function(s) `target` resolved for a uprobe or
/// uretprobe: the links, and what each attached function is, for the
/// landing page. `pid` is libbpf's pid filter and how messages name it
/// (` of pid 42`, or nothing for every process).
///
/// Where the kernel has uprobe_multi links (`multi`), every spec attaches
/// through one such link (the program was loaded for them, see
/// PreparedProgram::open): it needs only CAP_BPF and CAP_PERFMON, and the
/// kernel frees it without the global lock a perf-event uprobe's detach holds
/// (bench/uprobe_links.rs: 8 detached at once took 754 ms, one after
/// another, against 28 ms; README, "Stopping"). Elsewhere, a perf-event
/// uprobe per function.
fn attach_uprobe(
    prog: &libbpf_rs::ProgramMut<'_>,
    (pid, of_pid): (i32, &str),
    t: &resolve::Target,
    retprobe: bool,
    multi: bool,
) -> Result<(Vec<Link>, Vec<String>), String> {
    use crate::privileges::{explain, UPROBE, UPROBE_MULTI};
    let kind = if retprobe { "uretprobe" } else { "uprobe" };
    let path = t.path.display();
    if !t.symbols.is_empty() {
        if multi {
            let link = attach_multi(prog, pid, t, &t.symbols, retprobe).map_err(|e| {
                format!(
                    "attaching {kind} {} ({} functions) in {path}{of_pid}: {}",
                    t.name,
                    t.symbols.len(),
                    explain(&e, UPROBE_MULTI)
                )
            })?;
            let what = format!(
                "{kind} {} ({} functions: {}) in {path}{}",
                t.name,
                t.symbols.len(),
                matched_names(t),
                armed(t)
            );
            return Ok((vec![link], vec![what]));
        }
        // The same program on each function, by a uprobe of its own.
        return attach_each(prog, pid, t, &t.symbols, retprobe, Some(ONE_PER_FUNCTION)).map_err(
            |e| {
                format!(
                    "attaching {kind} {} ({} functions, one uprobe each: no uprobe_multi links on this kernel) in {path}{of_pid}: {}",
                    t.name,
                    t.symbols.len(),
                    explain(&e, UPROBE)
                )
            },
        );
    }
    if !t.each.is_empty() {
        if multi {
            // One link for every function the name names; each is still
            // listed on its own.
            let link = attach_multi(prog, pid, t, &t.each, retprobe).map_err(|e| {
                format!(
                    "attaching {kind} {} in {path}{of_pid}: {}",
                    t.name,
                    explain(&e, UPROBE_MULTI)
                )
            })?;
            return Ok((vec![link], each_described(t, &t.each, retprobe, None)));
        }
        return attach_each(prog, pid, t, &t.each, retprobe, None).map_err(|e| {
            format!(
                "attaching {kind} {} in {path}{of_pid}: {}",
                t.name,
                explain(&e, UPROBE)
            )
        });
    }
    // By offset, not func_name: libbpf would map the file to find the
    // name, and a file truncated meanwhile faults a mapping (and it
    // looks in the symbol tables only, not in Go's function table).
    let Some(offset) = t.offset else {
        return Err(format!(
            "{kind} {} in {path}: no offset was resolved (a bug: please report it)",
            t.name
        ));
    };
    let chosen = t
        .choice
        .as_ref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let note = t
        .note
        .as_ref()
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    let what = format!("{kind} {} in {path}{}{chosen}{note}", t.name, armed(t));
    let link = if multi {
        attach_multi(prog, pid, t, &[(t.name.clone(), offset)], retprobe)
            .map_err(|e| explain(&e, UPROBE_MULTI))
    } else {
        let opts = UprobeOpts {
            retprobe,
            ..Default::default()
        };
        prog.attach_uprobe_with_opts(pid, &t.host_path, offset as usize, opts)
            .map_err(|e| explain(&e, UPROBE))
    }
    .map_err(|e| format!("attaching {kind} {} in {path}{of_pid}: {e}", t.name))?;
    Ok((vec![link], vec![what]))
}

/// One uprobe_multi link to `functions` (file offsets) of `target`.
fn attach_multi(
    prog: &libbpf_rs::ProgramMut<'_>,
    pid: i32,
    target: &resolve::Target,
    functions: &[(String, u64)],
    retprobe: bool,
) -> libbpf_rs::Result<Link> {
    let opts = libbpf_rs::UprobeMultiOpts {
        offsets: functions
            .iter()
            .map(|(_, offset)| *offset as usize)
            .collect(),
        retprobe,
        ..Default::default()
    };
    prog.attach_uprobe_multi_with_opts(pid, &target.host_path, "", opts)
}

/// How a wildcard's functions are attached where the kernel has no
/// uprobe_multi links, for the landing page.
const ONE_PER_FUNCTION: &str = "one uprobe per function: no uprobe_multi links on this kernel";

/// One perf-event uprobe per function (by file offset): the functions a
/// C++ name named, or a wildcard's where the kernel has no uprobe_multi
/// links. All of them or none (links made before a failure are dropped, so
/// detached). `why` is said of each.
fn attach_each(
    prog: &libbpf_rs::ProgramMut<'_>,
    pid: i32,
    target: &resolve::Target,
    functions: &[(String, u64)],
    retprobe: bool,
    why: Option<&str>,
) -> libbpf_rs::Result<(Vec<Link>, Vec<String>)> {
    let links = functions
        .iter()
        .map(|(_, offset)| {
            let opts = UprobeOpts {
                retprobe,
                ..Default::default()
            };
            prog.attach_uprobe_with_opts(pid, &target.host_path, *offset as usize, opts)
        })
        .collect::<libbpf_rs::Result<Vec<Link>>>()?;
    Ok((links, each_described(target, functions, retprobe, why)))
}

/// Each of `functions` as the landing page lists it: by the name as
/// shown, with `why` said of each.
fn each_described(
    target: &resolve::Target,
    functions: &[(String, u64)],
    retprobe: bool,
    why: Option<&str>,
) -> Vec<String> {
    let kind = if retprobe { "uretprobe" } else { "uprobe" };
    let note: String = target
        .note
        .iter()
        .map(String::as_str)
        .chain(why)
        .map(|n| format!("; {n}"))
        .collect();
    functions
        .iter()
        .map(|(demangled, _)| {
            format!(
                "{kind} {} ({demangled}) in {}{}{note}",
                target.name,
                target.path.display(),
                armed(target)
            )
        })
        .collect()
}

/// For a USDT attach libbpf refused as unsupported (ENOTSUP): the kernel
/// feature it lacks, where one is known missing (libbpf refuses a
/// semaphore-guarded probe without `ref_ctr_offset`, and a per-binary probe
/// in a position-independent file without BPF cookies).
fn unsupported_hint(e: &libbpf_rs::Error) -> String {
    use crate::kernel::Feature;
    if e.kind() != libbpf_rs::ErrorKind::Unsupported {
        return String::new();
    }
    let kernel = crate::kernel::features();
    [Feature::UsdtSemaphores, Feature::BpfCookie]
        .into_iter()
        .filter(|f| !kernel.usable(*f))
        .map(|f| format!(" ({}: without it {})", kernel.needs(f), f.without()))
        .collect()
}

/// The functions a wildcard matched, for the landing page (the first ten).
fn matched_names(target: &resolve::Target) -> String {
    let mut names: Vec<&str> = target.symbols.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let more = names.len().saturating_sub(10);
    names.truncate(10);
    let mut text = names.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// For a library the process has not mapped yet: how it was found, and that
/// the probe fires once the process loads it.
fn armed(target: &resolve::Target) -> String {
    target
        .not_mapped_yet
        .map(|via| format!(" (not loaded yet, found through {via}: counts from when it loads)"))
        .unwrap_or_default()
}

fn describe(spec: &str, kind: ProbeKind, e: &ResolveError) -> String {
    format!("{} {spec:?}: {e}", kind.config_key())
}

fn program_info(name: String, fd: BorrowedFd<'_>) -> BpfProgramInfo {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a properly sized, zeroed bpf_prog_info and len says so.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return BpfProgramInfo {
            name,
            tag: String::new(),
            id: 0,
        };
    }
    let tag = info.tag.iter().map(|b| format!("{b:02x}")).collect();
    BpfProgramInfo {
        name,
        tag,
        id: info.id,
    }
}

/// `pid` and the program's `process_labels`, read once when the instance is made
/// (a comm change or an exec makes a new instance). A binary's instance counts
/// for every process of it: its series carry `exe` instead.
fn series_labels(program: &PreparedProgram, target: &AttachTarget) -> Vec<(&'static str, String)> {
    let process = match target {
        AttachTarget::Process(process) => process,
        AttachTarget::Binary { exe, .. } => return vec![("exe", exe.display().to_string())],
    };
    // A pid-keyed program's `pid` label is decoded from its keys.
    let mut labels = if program.is_pid_keyed() {
        Vec::new()
    } else {
        vec![("pid", process.pid().to_string())]
    };
    for label in program
        .config
        .process_labels
        .iter()
        .flat_map(|l| l.value.iter())
    {
        labels.push((label.name(), process_label_value(*label, process)));
    }
    labels
}

/// The value of one process label; empty when the process does not have the fact
/// (no cgroup v2 path, not in a container, not in a Kubernetes pod).
fn process_label_value(label: crate::config::ProcessLabel, process: &ProcessInfo) -> String {
    use crate::config::ProcessLabel;
    match label {
        ProcessLabel::Comm => process.comm.clone(),
        ProcessLabel::Exe => process.exe.display().to_string(),
        ProcessLabel::Cgroup => process.cgroup().unwrap_or_default().to_string(),
        ProcessLabel::ContainerId => process.container_id().unwrap_or_default().to_string(),
        ProcessLabel::PodUid => process.pod_uid().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::process_label_value;
    use crate::config::ProcessLabel;
    use crate::discovery::{ProcessInfo, ProcessKey};

    fn process() -> ProcessInfo {
        let key = ProcessKey {
            pid: i32::MAX,
            start_time: 1,
        };
        ProcessInfo::new(key, "java".into(), "/usr/bin/java".into(), 1)
    }

    #[test]
    fn container_id_and_pod_uid_labels_read_cgroup_v1_lines() {
        let id = "3f4b1c2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
        let pod = "aa0bb1cc2dd3ee4ff5aa6bb7cc8dd9ee0ff1aa2bb3cc4dd5ee6ff7aa8bb9cc0d";
        let uid = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab";
        // A podman pod member on a hybrid host: the v2 line is just `/`.
        let p = process().with_cgroup_text(Some(format!(
            "9:name=systemd:/\n8:pids:/libpod_parent/{pod}/libpod-{id}\n0::/\n"
        )));
        assert_eq!(process_label_value(ProcessLabel::Cgroup, &p), "/");
        assert_eq!(process_label_value(ProcessLabel::ContainerId, &p), id);
        assert_eq!(process_label_value(ProcessLabel::PodUid, &p), "");
        // A Kubernetes pod on a pure v2 host, systemd driver.
        let uid_ = uid.replace('-', "_");
        let p = process().with_cgroup(Some(format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{id}.scope"
        )));
        assert_eq!(process_label_value(ProcessLabel::ContainerId, &p), id);
        assert_eq!(process_label_value(ProcessLabel::PodUid, &p), uid);
        assert_eq!(process_label_value(ProcessLabel::Comm, &p), "java");
        assert_eq!(process_label_value(ProcessLabel::Exe, &p), "/usr/bin/java");
        // Outside any container.
        let p = process().with_cgroup(None);
        assert_eq!(process_label_value(ProcessLabel::Cgroup, &p), "");
        assert_eq!(process_label_value(ProcessLabel::ContainerId, &p), "");
        assert_eq!(process_label_value(ProcessLabel::PodUid, &p), "");
    }
}
