//! Finding where a probe lives in one process: its executable or one of the
//! libraries it maps, opened through `/proc/PID/exe` or `/proc/PID/root`.

use super::probe::{UprobeSpec, UsdtSpec};
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
    /// A library named in the spec is not mapped.
    #[error("library {library:?} is not mapped by process {pid} ({comm}); mapped: {mapped}")]
    LibraryNotMapped {
        /// Library as written.
        library: String,
        /// pid
        pid: i32,
        /// comm
        comm: String,
        /// Short list of mapped files.
        mapped: String,
    },
    /// No mapped file has the USDT probe.
    #[error(
        "USDT probe {spec} not found in process {pid} ({comm}): searched {searched} file(s){hint}"
    )]
    UsdtNotFound {
        /// Spec as written.
        spec: String,
        /// pid
        pid: i32,
        /// comm
        comm: String,
        /// How many files were searched.
        searched: usize,
        /// Probes that exist, when the search was restricted to one file.
        hint: String,
    },
    /// The file lacks the symbol.
    #[error("symbol {symbol:?} not found in {} of process {pid}{similar}", path.display())]
    SymbolNotFound {
        /// Symbol.
        symbol: String,
        /// File searched (process view).
        path: PathBuf,
        /// pid
        pid: i32,
        /// ": similar symbols: ..." or empty.
        similar: String,
    },
    /// The ELF file could not be read.
    #[error("{0}")]
    Elf(#[from] crate::elf::ElfError),
}

/// The process's mapped files (process view); an exited process is reported as such.
fn files_of(process: &ProcessInfo) -> Result<Vec<MappedFile>, ResolveError> {
    crate::discovery::mapped_files(process.pid())
        .map_err(|_| ResolveError::ProcessGone { pid: process.pid() })
}

/// How the exporter opens a file of the process: the executable through
/// `/proc/PID/exe`, libraries through their mapping (see [`MappedFile::host_path`]).
fn host_path_of(process: &ProcessInfo, file: &MappedFile) -> PathBuf {
    if file.path == process.exe {
        process.exe_host_path()
    } else {
        file.host_path(process)
    }
}

/// Whether mapped file `path` is the library `wanted` names: an absolute path,
/// an exact file name, or a short name (`c` -> `libc.so.6`, `libruby` -> `libruby-3.1.so`).
fn library_matches(path: &Path, wanted: &str) -> bool {
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

fn find_library(
    process: &ProcessInfo,
    files: &[MappedFile],
    wanted: &str,
) -> Result<MappedFile, ResolveError> {
    if let Some(found) = files.iter().find(|f| library_matches(&f.path, wanted)) {
        return Ok(found.clone());
    }
    // An absolute path that exists in the process's root can be probed before it is mapped.
    let under_root = process.host_path(Path::new(wanted));
    if wanted.starts_with('/') && under_root.exists() {
        return Ok(MappedFile {
            path: PathBuf::from(wanted),
            map_file: under_root,
        });
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.path.file_name()?.to_str().map(str::to_string))
        .take(12)
        .collect();
    Err(ResolveError::LibraryNotMapped {
        library: wanted.to_string(),
        pid: process.pid(),
        comm: process.comm.clone(),
        mapped: names.join(", "),
    })
}

/// Every place the USDT probe lives in the process (usually one).
pub fn resolve_usdt(
    process: &ProcessInfo,
    spec_text: &str,
    cache: &mut ElfCache,
) -> Result<Vec<Target>, ResolveError> {
    let spec =
        UsdtSpec::parse(spec_text).ok_or_else(|| ResolveError::BadSpec(spec_text.to_string()))?;
    let files = files_of(process)?;
    let candidates: Vec<MappedFile> = match &spec.module {
        Some(module) => vec![find_library(process, &files, module)?],
        None => files,
    };
    let mut targets = Vec::new();
    let mut searched = 0;
    let mut last_probes = Vec::new();
    for file in &candidates {
        let path = &file.path;
        let host_path = host_path_of(process, file);
        let info = match cache.get(&host_path) {
            Ok(info) => info,
            // Unreadable or non-ELF mappings (fonts, locale archives) are simply not candidates.
            Err(e) if spec.module.is_none() => {
                tracing::trace!(pid = process.pid(), file = %path.display(), "skipping mapped file: {e}");
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
            pid: process.pid(),
            comm: process.comm.clone(),
            searched,
            hint,
        });
    }
    Ok(targets)
}

/// The file and symbol a uprobe/uretprobe attaches to in the process.
pub fn resolve_uprobe(
    process: &ProcessInfo,
    spec_text: &str,
    cache: &mut ElfCache,
) -> Result<(Target, bool), ResolveError> {
    let spec =
        UprobeSpec::parse(spec_text).ok_or_else(|| ResolveError::BadSpec(spec_text.to_string()))?;
    let file = match &spec.library {
        None => MappedFile {
            path: process.exe.clone(),
            map_file: process.exe_host_path(),
        },
        Some(lib) => find_library(process, &files_of(process)?, lib)?,
    };
    let host_path = host_path_of(process, &file);
    let path = file.path;
    let info = cache.get(&host_path)?;
    if !info.symbols.contains(&spec.symbol) {
        let similar = info.symbols.similar(&spec.symbol, 5);
        return Err(ResolveError::SymbolNotFound {
            symbol: spec.symbol.clone(),
            path,
            pid: process.pid(),
            similar: if similar.is_empty() {
                String::new()
            } else {
                format!("; similar symbols: {}", similar.join(", "))
            },
        });
    }
    Ok((
        Target {
            path,
            host_path,
            provider: String::new(),
            name: spec.symbol,
        },
        info.is_go,
    ))
}

#[cfg(test)]
mod tests {
    use super::library_matches;
    use std::path::Path;

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
