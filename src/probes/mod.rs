//! The `probes` subcommand: which USDT probes (and, on request, which
//! functions) a process or an executable offers, as the exporter sees them,
//! as bcc's `tplist` and `bpftrace -l` list them.
//!
//! A process is read the way the attach stage reads it
//! ([`crate::attach::Origin`]): its executable and every ELF file it maps,
//! opened through `/proc/PID/exe` and `/proc/PID/map_files` (or
//! `/proc/PID/root`), so that a process in another mount namespace is listed
//! with the paths it sees. A config's programs select processes with the
//! exporter's own [`Selector`] over the exporter's own `/proc` scan
//! ([`ProcSnapshot`]).
//!
//! This module gathers a [`Listing`] (plain data, serialised as the JSON
//! output); [`text`] renders it for people and [`starter`] turns it into a
//! config that counts every probe.

pub mod starter;
pub mod text;

use crate::attach::{Origin, ResolveError};
use crate::config::{is_cpp_name, normalize_cpp_name, Config, CppName};
use crate::discovery::{ProcSnapshot, ProcessInfo, Selector};
use crate::elf::{demangle, ElfCache, ElfError, ElfInfo, ElfKind, UsdtNote};
use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything one run of the `probes` subcommand found: the JSON output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The processes or the binary listed, each once.
    pub targets: Vec<TargetListing>,
    /// With a config: each program and the pids it selects now (their listings
    /// are in `targets`). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programs: Option<Vec<ProgramMatch>>,
}

/// A process or a binary, and its ELF files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetListing {
    /// The process id (in the exporter's PID namespace); `null` for a binary.
    pub pid: Option<i32>,
    /// The process's comm; `null` for a binary.
    pub comm: Option<String>,
    /// The executable as the process sees it, or the binary as given.
    pub exe: PathBuf,
    /// Why the process could not be listed (it exited, or may not be read);
    /// only with a config, where one process does not stop the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every ELF file the process maps (the executable among them), in address
    /// order, or the binary alone. Mappings that are not ELF files (locale
    /// archives, fonts) are left out.
    pub files: Vec<FileListing>,
}

/// One ELF file and what it offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileListing {
    /// The path as the process sees it (the module of a USDT spec).
    pub path: PathBuf,
    /// Its USDT probes, sorted by provider then name, each once.
    pub usdt: Vec<Probe>,
    /// With `--functions`: the matching function symbols, sorted by name then
    /// address; absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<Function>>,
    /// Why the file could not be read (its probes are then unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Executable or library: a starter config needs an executable to select.
    #[serde(skip)]
    pub kind: ElfKind,
}

/// One USDT probe of a file: every site the compiler emitted for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The provider (`python`).
    pub provider: String,
    /// The probe name (`gc__start`).
    pub name: String,
    /// The link-time address of the semaphore guarding the probe (a tracer
    /// must raise it before the probe fires; the kernel does so on attach), or
    /// `null` for an unguarded probe.
    pub semaphore: Option<u64>,
    /// Each site in note order: where it is and how its arguments are read
    /// (sites of one probe may read them from different registers).
    pub sites: Vec<Site>,
}

impl Probe {
    /// `provider:name`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.provider, self.name)
    }

    /// The distinct argument specs of the sites, in site order.
    pub fn arg_specs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for site in &self.sites {
            if !out.contains(&site.args.as_str()) {
                out.push(&site.args);
            }
        }
        out
    }
}

/// One probe site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// The link-time virtual address of the site's `nop` (as `readelf -n`
    /// shows it as `Location`, corrected for prelinking).
    pub address: u64,
    /// The argument spec as written in the note (`-4@%edi 8@%rsi`); empty for
    /// a probe without arguments.
    pub args: String,
}

/// A function symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Function {
    /// Its name without a symbol version: what a uprobe spec names.
    pub name: String,
    /// Its link-time virtual address.
    pub address: u64,
    /// With `--demangle` (or a C++ `--functions` pattern): its demangled C++
    /// name with parameter list and clone suffix, what a uprobe spec may
    /// name instead (absent for a C function).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demangled: Option<String>,
}

/// A program of a config and the processes it selects now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramMatch {
    /// The program's name.
    pub name: String,
    /// Its selector, described as the landing page does.
    pub selector: String,
    /// The pids it selects, ascending; empty when none runs.
    pub pids: Vec<i32>,
}

/// What to list beside the files: the `--usdt` and `--functions` globs.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Only USDT probes whose `provider:name` matches.
    pub usdt: Option<GlobMatcher>,
    /// List function symbols whose name matches (none without it).
    pub functions: Option<FunctionFilter>,
    /// Show the demangled names of C++ functions.
    pub demangle: bool,
}

/// How `--functions` picks functions: as a uprobe spec's symbol would.
#[derive(Debug, Clone)]
pub enum FunctionFilter {
    /// A glob over symbol names.
    Symbols(GlobMatcher),
    /// A C++ name or glob over demangled names (it has `::` or `(`).
    Cpp(CppName),
}

impl FunctionFilter {
    /// Whether the symbol named `name` is listed.
    fn keeps(&self, name: &str) -> bool {
        match self {
            FunctionFilter::Symbols(glob) => glob.is_match(name),
            FunctionFilter::Cpp(cpp) => {
                demangle::is_mangled(name)
                    && cpp.mangled_hint().is_none_or(|hint| name.contains(hint))
                    && demangle::demangle(name, cpp.has_params())
                        .is_some_and(|d| cpp.matches(&normalize_cpp_name(&d)))
            }
        }
    }
}

impl Filters {
    /// Compiles the `--usdt` and `--functions` globs. `*` matches any run of
    /// characters, `:` included; in `--functions`, what Go names hold
    /// literally (`(*`, `[...]`) is literal, as in uprobe specs. A
    /// `--functions` pattern that is a C++ name (`::`, or a `(` not after a
    /// `.`) is matched against demangled names as in a uprobe spec.
    pub fn new(usdt: Option<&str>, functions: Option<&str>) -> Result<Filters, ListError> {
        let mut filters = Filters {
            usdt: compile_glob("--usdt", usdt)?,
            ..Filters::default()
        };
        filters.functions = match functions {
            Some(pattern) if is_cpp_name(pattern) => Some(FunctionFilter::Cpp(
                CppName::parse(pattern).map_err(|reason| ListError::BadGlob {
                    flag: "--functions",
                    glob: pattern.to_string(),
                    reason: reason.trim_start_matches("has ").to_string(),
                })?,
            )),
            other => compile_glob("--functions", other)?.map(FunctionFilter::Symbols),
        };
        Ok(filters)
    }

    /// Also shows demangled names (`--demangle`).
    pub fn with_demangled(mut self, demangle: bool) -> Filters {
        self.demangle = demangle;
        self
    }

    /// Whether functions get their demangled names: asked for, or implied by
    /// a C++ `--functions` pattern.
    fn demangles(&self) -> bool {
        self.demangle || matches!(self.functions, Some(FunctionFilter::Cpp(_)))
    }

    fn keeps_usdt(&self, note: &UsdtNote) -> bool {
        self.usdt
            .as_ref()
            .is_none_or(|g| g.is_match(format!("{}:{}", note.provider, note.name)))
    }
}

/// Compiles the glob given to `flag`.
fn compile_glob(flag: &'static str, glob: Option<&str>) -> Result<Option<GlobMatcher>, ListError> {
    glob.map(|glob| {
        let source = if flag == "--functions" {
            crate::config::go_literal_glob(glob)
        } else {
            glob.to_string()
        };
        GlobBuilder::new(&source)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map(|g| g.compile_matcher())
            .map_err(|e| ListError::BadGlob {
                flag,
                glob: glob.to_string(),
                reason: e.kind().to_string(),
            })
    })
    .transpose()
}

/// Why a listing could not be made. Every message names the pid or the file.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No process has this pid.
    #[error("no process with pid {pid} (in the PID namespace of this command)")]
    NoProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The process has no executable to read: a kernel thread, or a zombie.
    #[error(
        "process {pid} ({comm}) has no executable to probe: it is a kernel thread or a zombie"
    )]
    NoExecutable {
        /// The pid.
        pid: i32,
        /// Its comm, or `?` when even that could not be read.
        comm: String,
    },
    /// The process's files could not be read (permission, or it exited).
    #[error(transparent)]
    Process(#[from] ResolveError),
    /// The binary could not be read or is not an ELF file.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// A `--usdt` or `--functions` glob does not compile.
    #[error("{flag} glob {glob:?} does not compile: {reason}")]
    BadGlob {
        /// The flag.
        flag: &'static str,
        /// The glob as given.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Lists the process `pid`: every ELF file it maps.
///
/// # Errors
///
/// [`ListError::NoProcess`] when no process has that pid,
/// [`ListError::NoExecutable`] for a kernel thread or a zombie, and
/// [`ListError::Process`] when the process may not be read (the message names
/// the capability) or exits meanwhile.
pub fn list_process(
    pid: i32,
    filters: &Filters,
    cache: &mut ElfCache,
) -> Result<TargetListing, ListError> {
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(ListError::NoProcess { pid });
    }
    let Some(process) = ProcessInfo::read(pid) else {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ListError::NoProcess { pid });
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(ListError::NoExecutable { pid, comm });
    };
    list_read_process(&process, filters, cache)
}

/// Lists a process already read from `/proc`.
fn list_read_process(
    process: &ProcessInfo,
    filters: &Filters,
    cache: &mut ElfCache,
) -> Result<TargetListing, ListError> {
    let origin = Origin::Process(process, None);
    if let Some(e) = origin.unreadable() {
        return Err(e.into());
    }
    let mut files = Vec::new();
    for file in origin.files()? {
        let host_path = origin.host_path_of(&file);
        match list_file(&file.path, &host_path, filters, cache) {
            Ok(listing) => files.push(listing),
            // Data files (locale archives, fonts, caches) are mapped too.
            Err(ElfError::NotElf { .. }) => {}
            Err(e) => files.push(FileListing {
                path: file.path.clone(),
                error: Some(e.to_string()),
                ..Default::default()
            }),
        }
    }
    let exe = process.exe.to_string_lossy();
    Ok(TargetListing {
        pid: Some(process.pid()),
        comm: Some(process.comm.clone()),
        exe: PathBuf::from(exe.strip_suffix(" (deleted)").unwrap_or(&exe)),
        error: None,
        files,
    })
}

/// Lists one ELF file on disk (an executable or a library), as no process
/// maps it yet: only that file.
///
/// # Errors
///
/// [`ListError::Elf`] when it is missing, unreadable, not an ELF file or
/// malformed.
pub fn list_binary(path: &Path, filters: &Filters) -> Result<TargetListing, ListError> {
    // A fresh cache: each file is read once here anyway.
    let file = list_file(path, path, filters, &mut ElfCache::new(0))?;
    Ok(TargetListing {
        pid: None,
        comm: None,
        exe: path.to_path_buf(),
        error: None,
        files: vec![file],
    })
}

/// Lists the processes each program of `config` selects now. A process
/// selected by several programs is listed once; one that cannot be read gets
/// its `error` instead of files.
pub fn list_config(config: &Config, filters: &Filters, cache: &mut ElfCache) -> Listing {
    let snapshot = ProcSnapshot::take(&Default::default());
    let processes: Vec<&ProcessInfo> = snapshot.read.values().flatten().collect();
    let mut programs = Vec::new();
    let mut selected: BTreeMap<i32, &ProcessInfo> = BTreeMap::new();
    for program in &config.programs {
        let p = &program.value;
        let selector = p
            .attachment()
            .and_then(|a| Selector::try_new(&a.value).ok())
            .unwrap_or_default();
        let pids: Vec<i32> = processes
            .iter()
            .filter(|process| selector.matches(process))
            .map(|process| {
                selected.insert(process.pid(), process);
                process.pid()
            })
            .collect();
        programs.push(ProgramMatch {
            name: p.name.clone(),
            selector: selector.describe(),
            pids,
        });
    }
    let targets = selected
        .into_values()
        .map(|process| match list_read_process(process, filters, cache) {
            Ok(listing) => listing,
            Err(e) => TargetListing {
                pid: Some(process.pid()),
                comm: Some(process.comm.clone()),
                exe: process.exe.clone(),
                error: Some(e.to_string()),
                files: Vec::new(),
            },
        })
        .collect();
    Listing {
        targets,
        programs: Some(programs),
    }
}

/// The listing of the ELF file a process sees at `path`, opened at `host_path`.
fn list_file(
    path: &Path,
    host_path: &Path,
    filters: &Filters,
    cache: &mut ElfCache,
) -> Result<FileListing, ElfError> {
    let info = cache.get(host_path)?;
    let functions = match &filters.functions {
        Some(filter) => Some(
            crate::elf::read_functions(host_path, |name| filter.keeps(name))?
                .into_iter()
                .map(|f| Function {
                    demangled: filters
                        .demangles()
                        .then(|| demangle::demangle(&f.name, true))
                        .flatten(),
                    name: f.name,
                    address: f.address,
                })
                .collect(),
        ),
        None => None,
    };
    Ok(FileListing {
        path: path.to_path_buf(),
        usdt: probes_of(&info, filters),
        functions,
        error: None,
        kind: info.kind,
    })
}

/// The file's notes grouped into probes: one per (provider, name, semaphore),
/// its sites in note order, sorted by provider then name.
fn probes_of(info: &ElfInfo, filters: &Filters) -> Vec<Probe> {
    let mut probes: BTreeMap<(&str, &str, u64), Probe> = BTreeMap::new();
    for note in info.usdt.iter().filter(|n| filters.keeps_usdt(n)) {
        probes
            .entry((&note.provider, &note.name, note.semaphore))
            .or_insert_with(|| Probe {
                provider: note.provider.clone(),
                name: note.name.clone(),
                semaphore: note.has_semaphore().then_some(note.semaphore),
                sites: Vec::new(),
            })
            .sites
            .push(Site {
                address: note.address,
                args: note.args.clone(),
            });
    }
    probes.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(provider: &str, name: &str, address: u64, semaphore: u64, args: &str) -> UsdtNote {
        UsdtNote {
            provider: provider.into(),
            name: name.into(),
            address,
            base: 0,
            semaphore,
            args: args.into(),
        }
    }

    fn info(notes: Vec<UsdtNote>) -> ElfInfo {
        ElfInfo {
            usdt: notes,
            ..Default::default()
        }
    }

    #[test]
    fn sites_of_one_probe_are_grouped_in_note_order() {
        let info = info(vec![
            note("p", "b", 0x30, 0, "-4@%eax"),
            note("p", "a", 0x10, 0x900, "8@%rdi"),
            note("p", "b", 0x20, 0, "-4@%ebx"),
            note("p", "b", 0x40, 0, "-4@%eax"),
            note("o", "z", 0x50, 0, ""),
        ]);
        let probes = probes_of(&info, &Filters::default());
        let specs: Vec<String> = probes.iter().map(Probe::spec).collect();
        assert_eq!(specs, ["o:z", "p:a", "p:b"]);
        assert_eq!(probes[1].semaphore, Some(0x900));
        assert_eq!(probes[2].semaphore, None);
        let b = &probes[2];
        assert_eq!(
            b.sites.iter().map(|s| s.address).collect::<Vec<_>>(),
            [0x30, 0x20, 0x40]
        );
        assert_eq!(b.arg_specs(), ["-4@%eax", "-4@%ebx"]);
        assert_eq!(probes[0].arg_specs(), [""]);
    }

    #[test]
    fn usdt_glob_matches_provider_and_name() {
        let info = info(vec![
            note("python", "gc__start", 1, 0, ""),
            note("python", "gc__done", 2, 0, ""),
            note("python", "line", 3, 0, ""),
            note("hotspot", "gc__begin", 4, 0, ""),
        ]);
        let specs = |glob: &str| -> Vec<String> {
            probes_of(&info, &Filters::new(Some(glob), None).unwrap())
                .iter()
                .map(Probe::spec)
                .collect()
        };
        assert_eq!(
            specs("python:gc__*"),
            ["python:gc__done", "python:gc__start"]
        );
        assert_eq!(
            specs("*:gc*"),
            ["hotspot:gc__begin", "python:gc__done", "python:gc__start"]
        );
        assert_eq!(specs("python:line"), ["python:line"]);
        assert!(specs("line").is_empty());
    }

    #[test]
    fn bad_globs_name_the_flag() {
        let e = Filters::new(None, Some("a{b")).unwrap_err().to_string();
        assert!(
            e.starts_with("--functions glob \"a{b\" does not compile: "),
            "{e}"
        );
        let e = Filters::new(Some("[x"), None).unwrap_err().to_string();
        assert!(
            e.starts_with("--usdt glob \"[x\" does not compile: "),
            "{e}"
        );
    }

    #[test]
    fn json_shape() {
        let listing = Listing {
            targets: vec![TargetListing {
                pid: Some(42),
                comm: Some("app".into()),
                exe: "/usr/bin/app".into(),
                error: None,
                files: vec![FileListing {
                    path: "/usr/bin/app".into(),
                    usdt: vec![Probe {
                        provider: "p".into(),
                        name: "n".into(),
                        semaphore: Some(16),
                        sites: vec![Site {
                            address: 4096,
                            args: "-4@%eax".into(),
                        }],
                    }],
                    functions: None,
                    error: None,
                    kind: ElfKind::Executable,
                }],
            }],
            programs: None,
        };
        assert_eq!(
            serde_json::to_string(&listing).unwrap(),
            r#"{"targets":[{"pid":42,"comm":"app","exe":"/usr/bin/app","files":[{"path":"/usr/bin/app","usdt":[{"provider":"p","name":"n","semaphore":16,"sites":[{"address":4096,"args":"-4@%eax"}]}]}]}]}"#
        );
    }

    #[test]
    fn missing_pids_and_kernel_threads_are_named() {
        let mut cache = ElfCache::new(0);
        let none = Filters::default();
        let e = list_process(-1, &none, &mut cache).unwrap_err();
        assert!(matches!(e, ListError::NoProcess { pid: -1 }), "{e}");
        // kthreadd is pid 2 wherever /proc shows the host's kernel threads.
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            let e = list_process(2, &none, &mut cache).unwrap_err().to_string();
            assert_eq!(
                e,
                "process 2 (kthreadd) has no executable to probe: it is a kernel thread or a zombie"
            );
        }
    }
}
