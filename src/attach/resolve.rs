//! Finding where a probe lives in one process: its executable or one of the
//! libraries it maps, opened through `/proc/PID/exe` or `/proc/PID/root`.

use super::cpp_functions;
use super::library_search;
use crate::config::{CppName, SymbolPattern, UprobeSpec, UsdtSpec};
use crate::discovery::{MappedFile, ProcessInfo};
use crate::elf::{ElfCache, ElfInfo};
use std::path::{Path, PathBuf};

/// A file of the target process, as the process sees it and as we open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Path inside the process's mount namespace (for messages).
    pub path: PathBuf,
    /// Path the exporter and the kernel open (`/proc/PID/exe` or `/proc/PID/root/...`).
    pub host_path: PathBuf,
    /// USDT provider (empty for uprobes).
    pub provider: String,
    /// USDT probe name or function symbol.
    pub name: String,
    /// How a library the process has not mapped yet was found (`RUNPATH`,
    /// `ld.so.cache`, ...): the probe is armed for when the process loads it.
    pub not_mapped_yet: Option<&'static str>,
    /// For a wildcard uprobe: every matching function and its file offset
    /// (one per address; empty otherwise).
    pub symbols: Vec<(String, u64)>,
    /// For a uprobe on one function: its file offset, where the probe is
    /// attached. Found as libbpf would find it for the name (which it would
    /// look up through a mapping of the file), or, for a function that only
    /// Go's function table names (a stripped Go binary, whose symbol tables
    /// libbpf would search in vain), from that table. None otherwise.
    pub offset: Option<u64>,
    /// How a name with several functions was resolved, and why (a Go
    /// function and its ABI wrapper share a name in Go's function table).
    pub choice: Option<String>,
    /// For a C++ name without wildcards: each function it names (overloads,
    /// or same-named functions of several source files) by its demangled
    /// name and file offset, each attached by a uprobe of its own; empty
    /// otherwise.
    pub each: Vec<(String, u64)>,
    /// Something the user should know about what was chosen (clones of the
    /// function that the spec does not name).
    pub note: Option<String>,
}

/// Why a probe could not be placed in a process.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Probe spec syntax.
    #[error("{0:?} is not a valid probe spec")]
    BadSpec(String),
    /// The process is gone.
    #[error("process {pid} exited")]
    ProcessGone {
        /// pid
        pid: i32,
    },
    /// The exporter may not read the process's files.
    #[error("cannot read the files of process {pid} ({comm}): permission denied; the exporter needs CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH) to probe another user's processes")]
    NoAccess {
        /// pid
        pid: i32,
        /// comm
        comm: String,
    },
    /// A library named in the spec is neither mapped nor on the loader's path.
    #[error("library {library:?} is not mapped by {origin} and its loader would not find it: searched {searched}; mapped: {mapped}. Name the library by its absolute path if the process loads it from elsewhere")]
    LibraryNotMapped {
        /// Library as written.
        library: String,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// Where the loader's search looked.
        searched: String,
        /// Short list of mapped files.
        mapped: String,
    },
    /// No mapped file has the USDT probe.
    #[error("USDT probe {spec} not found in {origin}: searched {searched} file(s){hint}")]
    UsdtNotFound {
        /// Spec as written.
        spec: String,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// How many files were searched.
        searched: usize,
        /// Probes that exist, when the search was restricted to one file.
        hint: String,
    },
    /// The file lacks the symbol.
    #[error("symbol {symbol:?} not found in {} of {origin}{}{similar}", path.display(), stripped_note(*.stripped))]
    SymbolNotFound {
        /// Symbol.
        symbol: String,
        /// File searched (process view).
        path: PathBuf,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// "; similar symbols: ..." (and the compiler's copies of it), or empty.
        similar: String,
        /// The file has no `.symtab`: only exported functions are left.
        stripped: bool,
    },
    /// A C++ name names only compiler clones, none of which it names itself.
    #[error("{name:?} names no function in {} of {origin}, only compiler clones of it: {clones}; `.constprop` and `.isra` clones take other arguments than the function, `.part` and `.cold` are pieces of it (not its entry): to probe a clone, name it with its suffix ({example:?})", path.display())]
    OnlyClones {
        /// The name as written.
        name: String,
        /// File searched (process view).
        path: PathBuf,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// The clones, by demangled name.
        clones: String,
        /// The spec of the first clone.
        example: String,
    },
    /// A symbol glob matched no function.
    #[error("no function symbol in {} of {origin} matches {pattern:?}{}{similar}", path.display(), stripped_note(*.stripped))]
    NoSymbolMatches {
        /// The glob.
        pattern: String,
        /// File searched (process view).
        path: PathBuf,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// "; similar symbols: ..." or empty.
        similar: String,
        /// The file has no `.symtab`: only exported functions are left.
        stripped: bool,
    },
    /// A symbol glob matched more functions than one probe may attach to.
    #[error("{pattern:?} matches {count} functions in {} of {origin}, more than the {limit} one wildcard probe may attach to (each is a breakpoint that every call pays for); narrow the glob. First matches: {first}", path.display())]
    TooManySymbols {
        /// The glob.
        pattern: String,
        /// How many functions matched.
        count: usize,
        /// The limit.
        limit: usize,
        /// File searched (process view).
        path: PathBuf,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// A few of the matches.
        first: String,
    },
    /// The ELF file could not be read.
    #[error("{0}")]
    Elf(#[from] crate::elf::ElfError),
    /// Go's function table places the function where no segment of the file
    /// is loaded from.
    #[error("Go function {symbol:?} of {} is at {address:#x} in Go's function table, which no loadable segment of the file holds: the table does not match the file", path.display())]
    GoFunctionNotLoaded {
        /// Symbol.
        symbol: String,
        /// Its link-time address.
        address: u64,
        /// File (process view).
        path: PathBuf,
    },
    /// A file of the process could not be read as ELF (it may be truncated,
    /// or changing), or has no function libbpf would attach to by the name.
    #[error("{} of {origin}: {error}", path.display())]
    InFile {
        /// The file, as the process sees it.
        path: PathBuf,
        /// "process PID (comm)" or "binary PATH".
        origin: String,
        /// What is wrong (naming the path the exporter opened it by).
        error: String,
        /// The error's [`ResolveError::reason`].
        reason: &'static str,
    },
}

impl ResolveError {
    /// `error` about `path` of `origin`, which could not be read.
    fn unreadable(origin: Origin<'_>, path: &Path, error: &crate::elf::ElfError) -> ResolveError {
        ResolveError::in_file(origin, path, error, "unreadable_file")
    }

    /// `error`, for `reason`, about `path` of `origin`.
    fn in_file(
        origin: Origin<'_>,
        path: &Path,
        error: impl std::fmt::Display,
        reason: &'static str,
    ) -> ResolveError {
        ResolveError::InFile {
            path: path.to_path_buf(),
            origin: origin.describe(),
            error: error.to_string(),
            reason,
        }
    }

    /// A few words for the self-metrics, the same for every process that
    /// fails this way (`no_usdt`: the build has no such USDT probe;
    /// `no_symbol`: no such function in the symbol tables, nor in Go's
    /// function table; `no_symtab`: not among the exported functions of a
    /// file stripped of `.symtab`; `only_clones`: a C++ name found only the
    /// compiler's clones of its function).
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::BadSpec(_) => "bad_spec",
            ResolveError::ProcessGone { .. } => "process_gone",
            ResolveError::NoAccess { .. } => "no_access",
            ResolveError::LibraryNotMapped { .. } => "no_library",
            ResolveError::UsdtNotFound { .. } => "no_usdt",
            ResolveError::SymbolNotFound { stripped: true, .. }
            | ResolveError::NoSymbolMatches { stripped: true, .. } => "no_symtab",
            ResolveError::SymbolNotFound { .. } | ResolveError::NoSymbolMatches { .. } => {
                "no_symbol"
            }
            ResolveError::OnlyClones { .. } => "only_clones",
            ResolveError::TooManySymbols { .. } => "too_many_symbols",
            ResolveError::Elf(_) => "unreadable_file",
            ResolveError::GoFunctionNotLoaded { .. } => "go_table_mismatch",
            ResolveError::InFile { reason, .. } => reason,
        }
    }

    /// Whether the file was read but lacks the symbol (another file may
    /// have it).
    fn is_not_found(&self) -> bool {
        matches!(
            self,
            ResolveError::SymbolNotFound { .. }
                | ResolveError::NoSymbolMatches { .. }
                | ResolveError::OnlyClones { .. }
                | ResolveError::InFile {
                    reason: "no_symbol",
                    ..
                }
        )
    }
}

/// The most functions one wildcard uprobe attaches to. Every match is a
/// breakpoint that each call of that function pays for (about a microsecond
/// here, see BENCHMARKS.md), and a broad glob in a big library (libjvm.so has
/// tens of thousands of functions) would slow the process down badly.
pub const MAX_WILDCARD_SYMBOLS: usize = 1024;

/// Where probes are looked up: a running process (its executable and every
/// file it maps), or an executable on disk before any process runs it.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A process: files are opened through `/proc/PID/...`; with the files
    /// it maps when they were read already (one attach resolves every probe
    /// in one reading of `/proc/PID/maps`).
    Process(&'a ProcessInfo, Option<&'a [MappedFile]>),
    /// An executable file in the exporter's own mount namespace.
    Binary(&'a Path),
}

impl Origin<'_> {
    /// The executable, as the process sees it.
    pub fn exe(&self) -> &Path {
        match self {
            Origin::Process(process, _) => &process.exe,
            Origin::Binary(path) => path,
        }
    }

    /// The executable, as the exporter opens it.
    fn exe_host_path(&self) -> PathBuf {
        match self {
            Origin::Process(process, _) => process.exe_host_path(),
            Origin::Binary(path) => path.to_path_buf(),
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::Process(process, _) => format!("process {} ({})", process.pid(), process.comm),
            Origin::Binary(path) => format!("binary {}", path.display()),
        }
    }

    /// A variable of the process's environment (none for a binary).
    fn environment_variable(&self, name: &str) -> Option<String> {
        match self {
            Origin::Process(process, _) => {
                crate::discovery::environment_variable(process.pid(), name)
            }
            Origin::Binary(_) => None,
        }
    }

    /// The files to search; an exited process is reported as such. A binary
    /// that no process runs yet maps nothing but itself.
    pub fn files(&self) -> Result<Vec<MappedFile>, ResolveError> {
        match self {
            Origin::Process(_, Some(files)) => Ok(files.to_vec()),
            Origin::Process(process, None) => crate::discovery::mapped_files(process.pid())
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::PermissionDenied => no_access(process),
                    _ => ResolveError::ProcessGone { pid: process.pid() },
                }),
            Origin::Binary(path) => Ok(vec![MappedFile {
                path: path.to_path_buf(),
                map_file: path.to_path_buf(),
            }]),
        }
    }

    /// The permission error of a process whose executable the exporter may not
    /// read ([`ProcessInfo::read`] leaves its `exe` empty).
    pub fn unreadable(&self) -> Option<ResolveError> {
        match self {
            Origin::Process(process, _) if process.exe.as_os_str().is_empty() => {
                Some(no_access(process))
            }
            _ => None,
        }
    }

    /// How the exporter opens `path` as the origin sees it.
    fn under_root(&self, path: &Path) -> PathBuf {
        match self {
            Origin::Process(process, _) => process.host_path(path),
            Origin::Binary(_) => path.to_path_buf(),
        }
    }

    /// How the exporter opens a file of the origin: a process's executable
    /// through `/proc/PID/exe`, libraries through their mapping (see
    /// [`MappedFile::host_path`]).
    pub fn host_path_of(&self, file: &MappedFile) -> PathBuf {
        match self {
            Origin::Process(process, _) if file.path != process.exe => file.host_path(process),
            _ if file.path == self.exe() => self.exe_host_path(),
            _ => file.map_file.clone(),
        }
    }
}

/// What a missing symbol's message adds when the file has no `.symtab`.
fn stripped_note(stripped: bool) -> &'static str {
    if stripped {
        " (the file has no .symtab, as a stripped build or a slim image: only its exported functions can be probed)"
    } else {
        ""
    }
}

/// The process's files may not be read by the exporter.
fn no_access(process: &ProcessInfo) -> ResolveError {
    ResolveError::NoAccess {
        pid: process.pid(),
        comm: process.comm.clone(),
    }
}

/// Whether a library name is a glob (`libpython3.*.so*`).
fn is_glob(wanted: &str) -> bool {
    wanted.contains(['*', '?', '['])
}

/// Whether `path` matches library glob `wanted`: the whole path when the glob
/// is absolute, else the file name. A glob that does not compile matches
/// nothing (the config's validation reports it).
fn library_glob_matches(path: &Path, wanted: &str) -> bool {
    let Ok(glob) = crate::config::compile_glob(wanted) else {
        return false;
    };
    if wanted.starts_with('/') {
        return glob.is_match(path);
    }
    path.file_name().is_some_and(|base| glob.is_match(base))
}

/// Whether mapped file `path` is the library `wanted` names: an absolute path,
/// an exact file name, a short name (`c` -> `libc.so.6`, `libruby` ->
/// `libruby-3.1.so`), or a glob over file names (`libpython3.*.so*`).
fn library_matches(path: &Path, wanted: &str) -> bool {
    if is_glob(wanted) {
        return library_glob_matches(path, wanted);
    }
    if wanted.starts_with('/') {
        return path == Path::new(wanted);
    }
    let Some(base) = path.file_name().and_then(|b| b.to_str()) else {
        return false;
    };
    if base == wanted {
        return true;
    }
    let with_lib = if wanted.starts_with("lib") {
        wanted.to_string()
    } else {
        format!("lib{wanted}")
    };
    [wanted.to_string(), with_lib].iter().any(|stem| {
        base.strip_prefix(stem.as_str()).is_some_and(|rest| {
            rest.starts_with(".so") || rest.starts_with('-') || rest.starts_with('.')
        })
    })
}

/// The library `wanted` names: a file the origin maps, or else the file its
/// dynamic loader would load (see [`library_search`]), with how it was found.
fn find_library(
    origin: Origin<'_>,
    files: &[MappedFile],
    wanted: &str,
    cache: &mut ElfCache,
) -> Result<(MappedFile, Option<&'static str>), ResolveError> {
    if let Some(found) = files.iter().find(|f| library_matches(&f.path, wanted)) {
        return Ok((found.clone(), None));
    }
    find_unmapped_library(origin, files, wanted, cache)
}

/// The library `wanted` names among the files the origin does not map: an
/// absolute path in its root, or the file its dynamic loader would load.
fn find_unmapped_library(
    origin: Origin<'_>,
    files: &[MappedFile],
    wanted: &str,
    cache: &mut ElfCache,
) -> Result<(MappedFile, Option<&'static str>), ResolveError> {
    // A glob names files the process maps; the loader's path is not searched
    // for one: a matching library installed beside a program that never
    // loads it (Debian's libpython3.11 beside its static python3.11) must not
    // be taken for the process's own.
    let searched = if is_glob(wanted) {
        vec!["the mapped files only (a glob is not looked up on the loader's path)".to_string()]
    } else {
        match search_unmapped(origin, wanted, cache) {
            Ok((file, via)) => return Ok((file, Some(via))),
            Err(searched) => searched,
        }
    };
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.path.file_name()?.to_str().map(str::to_string))
        .take(12)
        .collect();
    Err(ResolveError::LibraryNotMapped {
        library: wanted.to_string(),
        origin: origin.describe(),
        searched: searched.join(", "),
        mapped: names.join(", "),
    })
}

/// The library `wanted` (not a glob) names, though the origin has not mapped
/// it: an absolute path in its root, or the file its loader would load, with
/// how it was found; else the places searched.
fn search_unmapped(
    origin: Origin<'_>,
    wanted: &str,
    cache: &mut ElfCache,
) -> Result<(MappedFile, &'static str), Vec<String>> {
    let under_root = origin.under_root(Path::new(wanted));
    if wanted.starts_with('/') {
        return if under_root.exists() {
            Ok((
                MappedFile {
                    path: PathBuf::from(wanted),
                    map_file: under_root,
                },
                "its absolute path",
            ))
        } else {
            Err(vec![format!("{wanted} does not exist in its root")])
        };
    }
    let exe_info = cache.get(&origin.exe_host_path()).ok();
    let host_path = |path: &Path| origin.under_root(path);
    let view = library_search::LoaderView {
        exe: origin.exe(),
        exe_info: exe_info.as_deref(),
        ld_library_path: origin.environment_variable("LD_LIBRARY_PATH"),
        host_path: &host_path,
    };
    library_search::find(&view, wanted, &library_matches, cache).map(|found| {
        (
            MappedFile {
                path: found.path,
                map_file: found.host_path,
            },
            found.via,
        )
    })
}

/// Every place the USDT probe lives in the process or binary (usually one).
pub fn resolve_usdt(
    origin: Origin<'_>,
    spec_text: &str,
    cache: &mut ElfCache,
) -> Result<Vec<Target>, ResolveError> {
    let spec =
        UsdtSpec::parse(spec_text).ok_or_else(|| ResolveError::BadSpec(spec_text.to_string()))?;
    let files = origin.files()?;
    let (candidates, not_mapped_yet): (Vec<MappedFile>, _) = match &spec.module {
        Some(module) => {
            let (file, how) = find_library(origin, &files, module, cache)?;
            (vec![file], how)
        }
        None => (files, None),
    };
    let mut targets = Vec::new();
    let mut searched = 0;
    let mut last_probes = Vec::new();
    // A file the exporter was refused may hold the probe: reported if none is found.
    let mut refused = None;
    for file in &candidates {
        let path = &file.path;
        let host_path = origin.host_path_of(file);
        let info = match cache.get(&host_path) {
            Ok(info) => info,
            // Unreadable or non-ELF mappings (fonts, locale archives) are simply not candidates.
            Err(e) if spec.module.is_none() => {
                tracing::trace!(origin = %origin.describe(), file = %path.display(), "skipping mapped file: {e}");
                if e.denied() && refused.is_none() {
                    refused = Some(e);
                }
                continue;
            }
            Err(e) => return Err(ResolveError::unreadable(origin, path, &e)),
        };
        searched += 1;
        let mut seen = std::collections::HashSet::new();
        for note in info.find_usdt(spec.provider.as_deref(), &spec.name) {
            // One attach per (provider, name) per file: libbpf attaches every site of it.
            if seen.insert((note.provider.clone(), note.name.clone())) {
                targets.push(Target {
                    path: path.clone(),
                    host_path: host_path.clone(),
                    provider: note.provider.clone(),
                    name: note.name.clone(),
                    not_mapped_yet,
                    symbols: Vec::new(),
                    offset: None,
                    choice: None,
                    each: Vec::new(),
                    note: None,
                });
            }
        }
        if spec.module.is_some() {
            last_probes = info
                .usdt
                .iter()
                .map(|n| format!("{}:{}", n.provider, n.name))
                .collect();
        }
    }
    if targets.is_empty() {
        // In a process whose executable we may not read, the files that could
        // not be opened are the likely home of the probe: say so.
        if let Some(e) = origin.unreadable() {
            return Err(e);
        }
        if let Some(e) = refused {
            return Err(e.into());
        }
        last_probes.sort();
        last_probes.dedup();
        let hint = if last_probes.is_empty() {
            String::new()
        } else {
            format!(
                "; that file has: {}",
                last_probes
                    .into_iter()
                    .take(10)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(ResolveError::UsdtNotFound {
            spec: spec.to_string(),
            origin: origin.describe(),
            searched,
            hint,
        });
    }
    Ok(targets)
}

/// `; similar symbols: a, b` for a name the file lacks, or nothing.
fn similar_symbols(symbols: &crate::elf::SymbolTable, name: &str) -> String {
    suggestions(&symbols.similar(name, 5))
}

/// For a function the file has only as the compiler's copies
/// (`collect.constprop.0`, `collect.constprop.1`): which they are, and that
/// one must be named, since a copy's arguments may differ from the source's
/// (a constant folded in is no longer passed; parts of a struct are passed
/// instead of it), so a probe reading arguments cannot serve them all.
fn clones_note(functions: &crate::elf::FunctionTable, symbol: &str, path: &Path) -> Option<String> {
    let clones = functions.clones_of(symbol);
    let first = clones.first()?;
    let names: Vec<&str> = clones.iter().map(|f| &*f.name).collect();
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Some(format!(
        "; the compiler made {} of it: {} (a copy's arguments may differ from the source's: name the one to probe, e.g. {file}:{}, and read its arguments as that copy passes them)",
        if clones.len() == 1 { "a copy" } else { "copies" },
        names.join(", "),
        first.name
    ))
}

/// The file and symbol a uprobe/uretprobe attaches to in the process or binary.
pub fn resolve_uprobe(
    origin: Origin<'_>,
    spec_text: &str,
    cache: &mut ElfCache,
) -> Result<(Target, bool), ResolveError> {
    let spec =
        UprobeSpec::parse(spec_text).ok_or_else(|| ResolveError::BadSpec(spec_text.to_string()))?;
    if let Some(e) = origin.unreadable() {
        return Err(e);
    }
    let pattern = spec
        .pattern()
        .map_err(|_| ResolveError::BadSpec(spec_text.to_string()))?;
    let Some(lib) = &spec.library else {
        let exe = MappedFile {
            path: origin.exe().to_path_buf(),
            map_file: origin.exe_host_path(),
        };
        return resolve_uprobe_in(origin, exe, None, &spec, pattern, cache);
    };
    // Several mapped files may answer to the name (`node` is both the
    // executable /usr/bin/node and libnode.so.108): the first that defines
    // the symbol is the one, then the loader's file if none does (a process
    // seen right after exec has not mapped its libraries yet).
    let files = origin.files()?;
    let mapped: Vec<&MappedFile> = files
        .iter()
        .filter(|f| library_matches(&f.path, lib))
        .collect();
    if mapped.is_empty() {
        let (file, how) = find_unmapped_library(origin, &files, lib, cache)?;
        return resolve_uprobe_in(origin, file, how, &spec, pattern, cache);
    }
    let mut first_error = None;
    for file in &mapped {
        match resolve_uprobe_in(origin, (*file).clone(), None, &spec, pattern.clone(), cache) {
            Ok(found) => return Ok(found),
            Err(e) if e.is_not_found() => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    let unmapped: Vec<MappedFile> = files
        .iter()
        .filter(|f| !library_matches(&f.path, lib))
        .cloned()
        .collect();
    if let Ok((file, how)) = find_unmapped_library(origin, &unmapped, lib, cache) {
        if !mapped.iter().any(|m| m.path == file.path) {
            if let Ok(found) = resolve_uprobe_in(origin, file, how, &spec, pattern, cache) {
                return Ok(found);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| ResolveError::BadSpec(spec_text.to_string())))
}

/// The uprobe target of `spec`'s symbol in one file.
fn resolve_uprobe_in(
    origin: Origin<'_>,
    file: MappedFile,
    not_mapped_yet: Option<&'static str>,
    spec: &UprobeSpec,
    pattern: SymbolPattern,
    cache: &mut ElfCache,
) -> Result<(Target, bool), ResolveError> {
    let host_path = origin.host_path_of(&file);
    let path = file.path;
    let info = cache
        .get(&host_path)
        .map_err(|e| ResolveError::unreadable(origin, &path, &e))?;
    let place = Place {
        path,
        host_path,
        origin,
        not_mapped_yet,
    };
    let target = match pattern {
        SymbolPattern::Symbol(symbol) => place.symbol(&info, cache, symbol)?,
        SymbolPattern::Glob(matcher) => {
            let functions = info.functions.matching(|name| matcher.is_match(name));
            let named = functions
                .into_iter()
                .map(|f| (f.name.to_string(), f.address))
                .collect();
            place.glob(&info, &spec.symbol, named)?
        }
        SymbolPattern::Cpp(name) if name.is_glob() => {
            let found = cpp_functions::search(&info, &name);
            let named = found
                .matches
                .iter()
                .map(|m| (m.demangled.clone(), m.address))
                .collect();
            place.glob(&info, &spec.symbol, named)?
        }
        SymbolPattern::Cpp(name) => place.cpp(&info, &name)?,
    };
    Ok((target, info.is_go))
}

/// The file a uprobe spec's symbol is looked up in.
struct Place<'a> {
    path: PathBuf,
    host_path: PathBuf,
    origin: Origin<'a>,
    not_mapped_yet: Option<&'static str>,
}

impl Place<'_> {
    fn target(self, name: String) -> Target {
        Target {
            path: self.path,
            host_path: self.host_path,
            provider: String::new(),
            name,
            not_mapped_yet: self.not_mapped_yet,
            symbols: Vec::new(),
            offset: None,
            choice: None,
            each: Vec::new(),
            note: None,
        }
    }

    /// A symbol by its name, attached at its file offset: found by libbpf's
    /// rule for a name (given the name, libbpf would parse the file again,
    /// through a mapping that a truncation of the file faults with SIGBUS),
    /// or from Go's function table when only that names it.
    fn symbol(
        self,
        info: &ElfInfo,
        cache: &mut ElfCache,
        symbol: String,
    ) -> Result<Target, ResolveError> {
        if !info.symbols.contains(&symbol) {
            let mut similar = clones_note(&info.functions, &symbol, &self.path)
                .unwrap_or_else(|| similar_symbols(&info.symbols, &symbol));
            if let Some(reason) = &info.go_table_error {
                similar.push_str(&format!("; {reason}"));
            }
            return Err(ResolveError::SymbolNotFound {
                similar,
                symbol,
                path: self.path,
                origin: self.origin.describe(),
                stripped: only_exports(info),
            });
        }
        let (offset, choice) = match info.functions.go_function(&symbol) {
            None => (
                cache
                    .function_offset(&self.host_path, &symbol)
                    .map_err(|e| ResolveError::in_file(self.origin, &self.path, &e, e.reason()))?,
                None,
            ),
            Some((function, others)) => {
                let offset = info
                    .functions
                    .file_offset(function.address)
                    .ok_or_else(|| ResolveError::GoFunctionNotLoaded {
                        symbol: symbol.clone(),
                        address: function.address,
                        path: self.path.clone(),
                    })?;
                (offset, go_choice(&symbol, function, &others))
            }
        };
        // Compiler clones (`f.constprop.0`); in Go, `.` separates names
        // (`main.work.func1` is a closure of `main.work`, not a clone).
        let prefix = format!("{symbol}.");
        let clones: Vec<&str> = if info.is_go {
            Vec::new()
        } else {
            info.symbols.with_prefix(&prefix).collect()
        };
        let note = clones.first().map(|first| clone_note(&clones, first));
        let mut target = self.target(symbol);
        target.offset = Some(offset);
        target.choice = choice;
        target.note = note;
        Ok(target)
    }

    /// Every function a glob matched (`named`: by the name shown for it),
    /// through one multi-uprobe link.
    fn glob(
        self,
        info: &ElfInfo,
        pattern: &str,
        named: Vec<(String, u64)>,
    ) -> Result<Target, ResolveError> {
        if named.is_empty() {
            let prefix: String = pattern
                .chars()
                .take_while(|c| !"*?[".contains(*c))
                .collect();
            let similar = if crate::config::is_cpp_name(pattern) {
                let prefix = prefix.trim_end_matches(':');
                suggestions(&cpp_functions::similar_cached(info, prefix, 5))
            } else {
                similar_symbols(&info.symbols, &prefix)
            };
            return Err(ResolveError::NoSymbolMatches {
                pattern: pattern.to_string(),
                path: self.path,
                origin: self.origin.describe(),
                similar,
                stripped: only_exports(info),
            });
        }
        if named.len() > MAX_WILDCARD_SYMBOLS {
            return Err(ResolveError::TooManySymbols {
                pattern: pattern.to_string(),
                count: named.len(),
                limit: MAX_WILDCARD_SYMBOLS,
                path: self.path,
                origin: self.origin.describe(),
                first: named
                    .iter()
                    .take(5)
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let symbols = offsets(info, named);
        let mut target = self.target(pattern.to_string());
        target.symbols = symbols;
        Ok(target)
    }

    /// The functions a C++ name without wildcards names, each attached by
    /// its own uprobe at its file offset.
    fn cpp(self, info: &ElfInfo, name: &CppName) -> Result<Target, ResolveError> {
        let found = cpp_functions::search(info, name);
        let clones: Vec<&str> = found.clones.iter().map(|c| c.demangled.as_str()).collect();
        // How to name the first clone: the spec with its suffix.
        let example = found.clones.first().map(|c| {
            let suffix = crate::elf::demangle::split_clone_suffix(&c.symbol).1;
            format!("{}{suffix}", name.text())
        });
        if let (true, Some(example)) = (found.matches.is_empty(), &example) {
            return Err(ResolveError::OnlyClones {
                name: name.text().to_string(),
                path: self.path,
                origin: self.origin.describe(),
                clones: clones.join(", "),
                example: example.clone(),
            });
        }
        if found.matches.is_empty() {
            return Err(ResolveError::SymbolNotFound {
                symbol: name.text().to_string(),
                path: self.path,
                origin: self.origin.describe(),
                similar: suggestions(&cpp_functions::similar_cached(info, name.name(), 5)),
                stripped: only_exports(info),
            });
        }
        if found.matches.len() > MAX_WILDCARD_SYMBOLS {
            return Err(ResolveError::TooManySymbols {
                pattern: name.text().to_string(),
                count: found.matches.len(),
                limit: MAX_WILDCARD_SYMBOLS,
                path: self.path,
                origin: self.origin.describe(),
                first: found
                    .matches
                    .iter()
                    .take(5)
                    .map(|m| m.demangled.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let note = example.map(|example| clone_note(&clones, &example));
        let each = offsets(
            info,
            found
                .matches
                .iter()
                .map(|m| (m.demangled.clone(), m.address))
                .collect(),
        );
        let mut target = self.target(name.text().to_string());
        target.each = each;
        target.note = note;
        Ok(target)
    }
}

/// Whether `info` names only the functions it exports: no `.symtab`, and
/// not Go, whose function table names every function of a stripped build
/// (so a name missing there is missing, not stripped).
fn only_exports(info: &ElfInfo) -> bool {
    !info.has_symtab && !info.is_go
}

/// Each function's name and file offset, from its address (a function
/// outside every loaded segment cannot be probed and is left out).
fn offsets(info: &ElfInfo, named: Vec<(String, u64)>) -> Vec<(String, u64)> {
    named
        .into_iter()
        .filter_map(|(name, address)| Some((name, info.functions.file_offset(address)?)))
        .collect()
}

/// What a spec chose when its function also exists as compiler clones,
/// and how to name one (`example`).
fn clone_note(clones: &[&str], example: &str) -> String {
    format!(
        "not attached to its compiler clones {} (`.constprop` and `.isra` clones take other arguments, `.part` and `.cold` are pieces of the function): calls the compiler sent to a clone are not counted; name a clone to probe it ({example:?})",
        clones.join(", ")
    )
}

/// `; similar symbols: a, b`, or nothing.
fn suggestions(similar: &[String]) -> String {
    if similar.is_empty() {
        String::new()
    } else {
        format!("; similar symbols: {}", similar.join(", "))
    }
}

/// Why `chosen` of the functions named `name` in Go's function table is the
/// one probed (none when it is the only one).
fn go_choice(
    name: &str,
    chosen: &crate::elf::Function,
    others: &[&crate::elf::Function],
) -> Option<String> {
    if others.is_empty() {
        return None;
    }
    let at = |f: &crate::elf::Function| format!("{:#x} ({} bytes)", f.address, f.size);
    Some(format!(
        "{name:?} is at {} addresses in Go's function table: {} and {}; attached at {:#x}, the largest: the others are the wrappers Go generates between its two calling conventions, which call it (a probe on them too would count those calls twice)",
        others.len() + 1,
        at(chosen),
        others.iter().map(|f| at(f)).collect::<Vec<_>>().join(", "),
        chosen.address
    ))
}

#[cfg(test)]
mod tests {
    use super::{library_matches, resolve_uprobe, Origin, ResolveError};
    use crate::elf::ElfCache;
    use std::path::{Path, PathBuf};

    #[test]
    fn library_globs_match_file_names_or_whole_paths() {
        let lib = Path::new("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0");
        assert!(library_matches(lib, "libpython3.*.so*"));
        assert!(library_matches(
            Path::new("/usr/local/lib/libpython3.8.so.1.0"),
            "libpython3.*.so*"
        ));
        // The stable-ABI stub library is not an interpreter.
        assert!(!library_matches(
            Path::new("/usr/local/lib/libpython3.so"),
            "libpython3.*.so*"
        ));
        assert!(library_matches(lib, "/root/.pyenv/**/libpython3.1?.so*"));
        assert!(!library_matches(lib, "/usr/**/libpython3.*.so*"));
        assert!(!library_matches(lib, "libpython3.[ab"));
    }

    #[test]
    fn a_symbol_missing_from_a_stripped_file_is_told_apart() {
        let missing = |stripped| ResolveError::SymbolNotFound {
            symbol: "gc_collect_main".into(),
            path: PathBuf::from("/usr/lib/libpython3.11.so.1.0"),
            origin: "process 7 (python3)".into(),
            similar: String::new(),
            stripped,
        };
        assert_eq!(missing(false).reason(), "no_symbol");
        assert_eq!(missing(true).reason(), "no_symtab");
        assert_eq!(
            missing(true).to_string(),
            "symbol \"gc_collect_main\" not found in /usr/lib/libpython3.11.so.1.0 of process 7 (python3) (the file has no .symtab, as a stripped build or a slim image: only its exported functions can be probed)"
        );
    }

    /// A file that cannot be read as ELF is named as the process or binary
    /// sees it, and counted as an unreadable file.
    #[test]
    fn an_unreadable_file_is_named_and_counted_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app");
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        let mut cache = ElfCache::new(4);
        let Err(e) = resolve_uprobe(Origin::Binary(&path), "main", &mut cache) else {
            panic!("a shell script resolved");
        };
        assert!(matches!(e, ResolveError::InFile { .. }), "{e:?}");
        assert_eq!(e.reason(), "unreadable_file");
        let shown = path.display();
        assert!(
            e.to_string().starts_with(&format!(
                "{shown} of binary {shown}: {shown} is not an ELF file"
            )),
            "{e}"
        );
    }

    #[test]
    fn library_names() {
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert!(library_matches(libc, "c"));
        assert!(library_matches(libc, "libc.so.6"));
        assert!(library_matches(libc, "libc"));
        assert!(library_matches(libc, "/usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!library_matches(libc, "/lib/libc.so.6"));
        assert!(!library_matches(Path::new("/usr/lib/libcrypt.so.1"), "c"));
        assert!(library_matches(
            Path::new("/usr/lib/libruby-3.1.so.3.1"),
            "libruby"
        ));
        assert!(library_matches(
            Path::new("/usr/lib/libruby-3.1.so.3.1"),
            "ruby"
        ));
        assert!(library_matches(
            Path::new("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
            "jemalloc"
        ));
    }
}
