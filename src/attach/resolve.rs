//! Finding where a probe lives in one process: its executable or one of the
//! libraries it maps, opened through `/proc/PID/exe` or `/proc/PID/root`.

use super::library_search;
use crate::config::{UprobeSpec, UsdtSpec};
use crate::discovery::{MappedFile, ProcessInfo};
use crate::elf::ElfCache;
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
}

impl ResolveError {
    /// A few words for the self-metrics, the same for every process that
    /// fails this way (`no_usdt`: the build has no such USDT probe;
    /// `no_symbol`: no such function in the symbol tables; `no_symtab`: not
    /// among the exported functions of a file stripped of `.symtab`).
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
            ResolveError::TooManySymbols { .. } => "too_many_symbols",
            ResolveError::Elf(_) => "unreadable_file",
        }
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
    /// A process: files are opened through `/proc/PID/...`.
    Process(&'a ProcessInfo),
    /// An executable file in the exporter's own mount namespace.
    Binary(&'a Path),
}

impl Origin<'_> {
    /// The executable, as the process sees it.
    pub fn exe(&self) -> &Path {
        match self {
            Origin::Process(process) => &process.exe,
            Origin::Binary(path) => path,
        }
    }

    /// The executable, as the exporter opens it.
    fn exe_host_path(&self) -> PathBuf {
        match self {
            Origin::Process(process) => process.exe_host_path(),
            Origin::Binary(path) => path.to_path_buf(),
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Origin::Process(process) => format!("process {} ({})", process.pid(), process.comm),
            Origin::Binary(path) => format!("binary {}", path.display()),
        }
    }

    /// A variable of the process's environment (none for a binary).
    fn environment_variable(&self, name: &str) -> Option<String> {
        match self {
            Origin::Process(process) => crate::discovery::environment_variable(process.pid(), name),
            Origin::Binary(_) => None,
        }
    }

    /// The files to search; an exited process is reported as such. A binary
    /// that no process runs yet maps nothing but itself.
    pub fn files(&self) -> Result<Vec<MappedFile>, ResolveError> {
        match self {
            Origin::Process(process) => {
                crate::discovery::mapped_files(process.pid()).map_err(|e| match e.kind() {
                    std::io::ErrorKind::PermissionDenied => no_access(process),
                    _ => ResolveError::ProcessGone { pid: process.pid() },
                })
            }
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
            Origin::Process(process) if process.exe.as_os_str().is_empty() => {
                Some(no_access(process))
            }
            _ => None,
        }
    }

    /// How the exporter opens `path` as the origin sees it.
    fn under_root(&self, path: &Path) -> PathBuf {
        match self {
            Origin::Process(process) => process.host_path(path),
            Origin::Binary(_) => path.to_path_buf(),
        }
    }

    /// How the exporter opens a file of the origin: a process's executable
    /// through `/proc/PID/exe`, libraries through their mapping (see
    /// [`MappedFile::host_path`]).
    pub fn host_path_of(&self, file: &MappedFile) -> PathBuf {
        match self {
            Origin::Process(process) if file.path != process.exe => file.host_path(process),
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
            Err(e) => return Err(e.into()),
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
    let similar = symbols.similar(name, 5);
    if similar.is_empty() {
        String::new()
    } else {
        format!("; similar symbols: {}", similar.join(", "))
    }
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
    let (file, not_mapped_yet) = match &spec.library {
        None => (
            MappedFile {
                path: origin.exe().to_path_buf(),
                map_file: origin.exe_host_path(),
            },
            None,
        ),
        Some(lib) => find_library(origin, &origin.files()?, lib, cache)?,
    };
    let host_path = origin.host_path_of(&file);
    let path = file.path;
    let info = cache.get(&host_path)?;
    if let Some(matcher) = spec.matcher() {
        let functions = info.functions.matching(|name| matcher.is_match(name));
        if functions.is_empty() {
            let prefix: String = spec
                .symbol
                .chars()
                .take_while(|c| !"*?[".contains(*c))
                .collect();
            return Err(ResolveError::NoSymbolMatches {
                pattern: spec.symbol.clone(),
                path,
                origin: origin.describe(),
                similar: similar_symbols(&info.symbols, &prefix),
                stripped: !info.has_symtab,
            });
        }
        if functions.len() > MAX_WILDCARD_SYMBOLS {
            return Err(ResolveError::TooManySymbols {
                pattern: spec.symbol.clone(),
                count: functions.len(),
                limit: MAX_WILDCARD_SYMBOLS,
                path,
                origin: origin.describe(),
                first: functions
                    .iter()
                    .take(5)
                    .map(|f| &*f.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let symbols = functions
            .iter()
            .filter_map(|f| Some((f.name.to_string(), info.functions.file_offset(f.address)?)))
            .collect();
        return Ok((
            Target {
                path,
                host_path,
                provider: String::new(),
                name: spec.symbol,
                not_mapped_yet,
                symbols,
            },
            info.is_go,
        ));
    }
    if !info.symbols.contains(&spec.symbol) {
        return Err(ResolveError::SymbolNotFound {
            symbol: spec.symbol.clone(),
            similar: clones_note(&info.functions, &spec.symbol, &path)
                .unwrap_or_else(|| similar_symbols(&info.symbols, &spec.symbol)),
            path,
            origin: origin.describe(),
            stripped: !info.has_symtab,
        });
    }
    Ok((
        Target {
            path,
            host_path,
            provider: String::new(),
            name: spec.symbol,
            not_mapped_yet,
            symbols: Vec::new(),
        },
        info.is_go,
    ))
}

#[cfg(test)]
mod tests {
    use super::{library_matches, ResolveError};
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
