//! Compiling inline `code:` with clang against the embedded headers, once:
//! objects are cached on disk under a key of everything that affects them.

use super::bcc::{self, ProbeSection};
use super::bpf_flags::{self, BpfArch, UnsupportedArch};
use super::vmlinux;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The bcc compatibility header and the stub headers bcc programs include.
const COMPAT_HEADERS: &[(&str, &str)] = &[
    ("bcc_compat.h", include_str!("include/bcc_compat.h")),
    (
        "uapi/linux/ptrace.h",
        include_str!("include/stubs/uapi/linux/ptrace.h"),
    ),
    (
        "uapi/linux/bpf_perf_event.h",
        include_str!("include/stubs/uapi/linux/bpf_perf_event.h"),
    ),
    ("linux/sched.h", include_str!("include/stubs/linux/sched.h")),
    (
        "linux/ptrace.h",
        include_str!("include/stubs/linux/ptrace.h"),
    ),
    ("linux/types.h", include_str!("include/stubs/linux/types.h")),
    ("linux/bpf.h", include_str!("include/stubs/linux/bpf.h")),
    (
        "linux/blkdev.h",
        include_str!("include/stubs/linux/blkdev.h"),
    ),
    ("linux/fs.h", include_str!("include/stubs/linux/fs.h")),
    ("linux/mm.h", include_str!("include/stubs/linux/mm.h")),
    ("linux/errno.h", include_str!("include/stubs/linux/errno.h")),
    (
        "linux/version.h",
        include_str!("include/stubs/linux/version.h"),
    ),
    ("net/sock.h", include_str!("include/stubs/net/sock.h")),
    ("bcc/proto.h", include_str!("include/stubs/bcc/proto.h")),
];

/// Flags only inline code gets, after the shared [`bpf_flags::cflags`] (the
/// default pack's objects are built without them).
const INLINE_CODE_CFLAGS: &[&str] = &[
    "-Wno-unused-value",
    "-Wno-pointer-sign",
    "-Wno-compare-distinct-pointer-types",
    "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wno-address-of-packed-member",
    "-fno-stack-protector",
];

/// USDT spec slots of a shared instance's object (libbpf's default is 256).
pub const SHARED_USDT_SPECS: u32 = 8192;

/// Why inline code did not become an object.
#[derive(Debug, thiserror::Error)]
pub enum ClangError {
    /// No clang to run.
    #[error("clang not found ({0}); install it (Debian: `apt-get install clang`), pass --clang PATH, or build objects ahead of time with `ebpf-userspace-exporter compile -c CONFIG -o DIR`")]
    NotFound(String),
    /// The bcc dialect pass refused the code.
    #[error("{file}:{line}: {message}")]
    Dialect {
        /// Config file.
        file: String,
        /// Config line.
        line: u64,
        /// What is unsupported.
        message: String,
    },
    /// clang reported errors (with config file lines).
    #[error("clang failed:\n{0}")]
    Failed(String),
    /// clang ended on a signal (a crash, the OOM killer) or failed without saying why.
    #[error("clang {how}{}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Died {
        /// `was killed by signal 9 (SIGKILL)`, or `exited with status 1 and printed nothing`.
        how: String,
        /// What it printed before, if anything.
        stderr: String,
    },
    /// Headers, cache or temp files.
    #[error("{0}")]
    Io(String),
    /// vmlinux.h could not be made.
    #[error(transparent)]
    Vmlinux(#[from] vmlinux::VmlinuxError),
    /// This exporter was built for an architecture the BPF flags do not know.
    #[error(transparent)]
    UnsupportedArch(#[from] UnsupportedArch),
}

/// What to compile.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The C source as written in the config.
    pub code: &'a str,
    /// The user's extra flags.
    pub cflags: &'a [String],
    /// Functions named by probes, and the kind of program each must be.
    pub probes: &'a [(String, ProbeSection)],
    /// The config file (diagnostics name it).
    pub config_path: &'a Path,
    /// Config line of the first line of code.
    pub first_line: u64,
    /// Columns YAML stripped from each line of a block scalar (added back to clang's columns).
    pub indent: u64,
    /// The program is one instance shared by every process (`instances: shared`).
    pub shared: bool,
}

/// clang plus a cache directory; finds clang and lays out headers on first use.
#[derive(Debug)]
pub struct Compiler {
    clang: Option<PathBuf>,
    cache_dir: PathBuf,
    toolchain: OnceLock<Result<(PathBuf, String), String>>,
    include_dir: OnceLock<Result<PathBuf, String>>,
    /// The headers' directory when the cache cannot hold them (removed on drop).
    scratch: OnceLock<tempfile::TempDir>,
    /// Whether the cache was found unwritable (said once).
    unwritable: std::sync::atomic::AtomicBool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(what: &str, path: &Path, e: std::io::Error) -> ClangError {
    ClangError::Io(format!("{what} {}: {e}", path.display()))
}

/// The default cache: `$XDG_CACHE_HOME` or `~/.cache`, else the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ebpf-userspace-exporter")
}

impl Compiler {
    /// A compiler using `clang` (or the first clang on PATH) and caching under `cache_dir`.
    pub fn new(clang: Option<PathBuf>, cache_dir: PathBuf) -> Compiler {
        Compiler {
            clang,
            cache_dir,
            toolchain: OnceLock::new(),
            include_dir: OnceLock::new(),
            scratch: OnceLock::new(),
            unwritable: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Says once that the cache cannot be written: compiling goes on without it.
    fn cache_unwritable(&self, error: &std::io::Error) {
        if !self
            .unwritable
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "cache directory {} cannot be written ({error}): compiling without caching",
                self.cache_dir.display()
            );
        }
    }

    /// The clang binary and its `--version` first line.
    fn toolchain(&self) -> Result<&(PathBuf, String), ClangError> {
        self.toolchain
            .get_or_init(|| {
                let candidates: Vec<PathBuf> = match &self.clang {
                    Some(path) => vec![path.clone()],
                    None => std::iter::once("clang".to_string())
                        .chain((14..=21).rev().map(|v| format!("clang-{v}")))
                        .map(PathBuf::from)
                        .collect(),
                };
                for candidate in &candidates {
                    if let Ok(out) = Command::new(candidate).arg("--version").output() {
                        if out.status.success() {
                            let version = String::from_utf8_lossy(&out.stdout)
                                .lines()
                                .next()
                                .unwrap_or("")
                                .to_string();
                            return Ok((candidate.clone(), version));
                        }
                    }
                }
                Err(candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
                    + " not runnable")
            })
            .as_ref()
            .map_err(|e| ClangError::NotFound(e.clone()))
    }

    /// The include directory: libbpf headers, bcc compatibility headers and this
    /// kernel's vmlinux.h, laid out once under a name that hashes their contents.
    pub fn include_dir(&self) -> Result<&Path, ClangError> {
        self.include_dir
            .get_or_init(|| self.make_include_dir().map_err(|e| e.to_string()))
            .as_deref()
            .map_err(|e| ClangError::Io(e.clone()))
    }

    fn make_include_dir(&self) -> Result<PathBuf, ClangError> {
        let mut hash = Sha256::new();
        for (name, contents) in super::LIBBPF_HEADERS {
            hash.update(name.as_bytes());
            hash.update(contents);
        }
        for (name, contents) in COMPAT_HEADERS.iter().chain([&super::PID_KEYED_HEADER]) {
            hash.update(name.as_bytes());
            hash.update(contents.as_bytes());
        }
        let btf = Path::new(vmlinux::KERNEL_BTF);
        let btf_bytes = std::fs::read(btf).map_err(|source| vmlinux::VmlinuxError::NoBtf {
            path: btf.display().to_string(),
            source,
        })?;
        hash.update(&btf_bytes);
        let dir = self
            .cache_dir
            .join(format!("include-{}", &hex(&hash.finalize())[..16]));
        if headers_whole(&dir) {
            return Ok(dir);
        }
        if dir.exists() {
            tracing::warn!(
                "compile cache headers {} are incomplete or damaged: laying them out again",
                dir.display()
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        // Build beside, then rename: a concurrent or interrupted run never sees half a directory.
        let tmp = match std::fs::create_dir_all(&self.cache_dir).and_then(|()| {
            tempfile::Builder::new()
                .prefix(".include-")
                .tempdir_in(&self.cache_dir)
        }) {
            Ok(tmp) => tmp,
            Err(e) => {
                // A read-only cache, or a file where it should be: headers in a
                // private temp dir for this run.
                self.cache_unwritable(&e);
                let tmp = tempfile::Builder::new()
                    .prefix("ebpf-userspace-exporter-include-")
                    .tempdir()
                    .map_err(|e| ClangError::Io(format!("cannot create a temp dir: {e}")))?;
                lay_out_headers(tmp.path(), btf)?;
                return Ok(self.scratch.get_or_init(|| tmp).path().to_path_buf());
            }
        };
        lay_out_headers(tmp.path(), btf)?;
        if std::fs::rename(tmp.path(), &dir).is_ok() {
            let _ = tmp.keep();
            return Ok(dir);
        }
        if headers_whole(&dir) {
            // Someone else finished first (ours is removed with `tmp`).
            return Ok(dir);
        }
        // A damaged directory that cannot be replaced: ours, for this run.
        Ok(self.scratch.get_or_init(|| tmp).path().to_path_buf())
    }

    /// Compiles one program's inline code to BPF object bytes, from the cache when possible.
    /// Returns the bytes and whether they came from the cache.
    pub fn compile(&self, request: &Request) -> Result<(Vec<u8>, bool), ClangError> {
        let (clang, version) = self.toolchain()?;
        let include = self.include_dir()?;
        // A program that includes libbpf's headers itself is libbpf-style; anything else
        // gets bcc's dialect (tables, methods, helpers) through the compat header.
        let uses_bcc =
            bcc::uses_bcc_dialect(request.code) || !request.code.contains("bpf/bpf_helpers.h");
        let body = if uses_bcc {
            bcc::translate(request.code, request.probes)
                .map_err(|e| ClangError::Dialect {
                    file: request.config_path.display().to_string(),
                    line: request.first_line + u64::from(e.line()) - 1,
                    message: e.to_string(),
                })?
                .code
        } else {
            // A libbpf-style program may still leave out SEC() on its probe functions.
            bcc::translate(request.code, request.probes)
                .map(|t| t.code)
                .unwrap_or_else(|_| request.code.to_string())
        };
        // clang reports every line of the code as the config file's own line. Only the
        // file name goes into the source (and the object's line info), so the same
        // config in another directory still hits the cache.
        let file_name = request
            .config_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".into());
        let source = format!("#line {} \"{file_name}\"\n{body}", request.first_line);
        // The probes read the registers of this machine's processes.
        let mut args = bpf_flags::cflags(BpfArch::of(std::env::consts::ARCH)?);
        args.extend(INLINE_CODE_CFLAGS.iter().map(|f| f.to_string()));
        args.push(format!("-I{}", include.display()));
        if request.shared {
            // Each process's USDT attach takes specs in the object's spec map; libbpf's
            // default of 256 would cap a shared instance at about 256 processes.
            args.push(format!("-DBPF_USDT_MAX_SPEC_CNT={SHARED_USDT_SPECS}"));
        }
        if uses_bcc {
            args.push("-include".into());
            args.push("bcc_compat.h".into());
        }
        args.extend(request.cflags.iter().cloned());
        let mut key = Sha256::new();
        for part in [
            env!("CARGO_PKG_VERSION"),
            version.as_str(),
            &include.display().to_string(),
            &args.join("\u{0}"),
            &source,
        ] {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let object = self
            .cache_dir
            .join("objects")
            .join(format!("{}.bpf.o", hex(&key.finalize())));
        if let Ok(entry) = std::fs::read(&object) {
            match verified_entry(&entry) {
                Some(bytes) => return Ok((bytes.to_vec(), true)),
                None => tracing::warn!(
                    "compile cache entry {} is damaged (truncated or corrupt): compiling again",
                    object.display()
                ),
            }
        }
        let work = tempfile::tempdir()
            .map_err(|e| ClangError::Io(format!("cannot create a temp dir: {e}")))?;
        let src = work.path().join("program.bpf.c");
        std::fs::write(&src, &source).map_err(|e| io("cannot write", &src, e))?;
        let out = work.path().join("program.bpf.o");
        let result = Command::new(clang)
            .args(&args)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .output()
            .map_err(|e| ClangError::NotFound(format!("{}: {e}", clang.display())))?;
        if !result.status.success() {
            if let Some(how) = died(&result.status, &result.stderr) {
                let stderr = String::from_utf8_lossy(&result.stderr).trim().to_string();
                return Err(ClangError::Died {
                    how,
                    stderr: trim_diagnostics(&stderr, work.path()),
                });
            }
            let stderr = String::from_utf8_lossy(&result.stderr);
            let stderr = stderr
                .lines()
                .map(|l| match l.strip_prefix(&format!("{file_name}:")) {
                    Some(rest) => format!(
                        "{}:{}",
                        request.config_path.display(),
                        shift_column(rest, request.indent)
                    ),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ClangError::Failed(trim_diagnostics(&stderr, work.path())));
        }
        let bytes = std::fs::read(&out).map_err(|e| io("cannot read", &out, e))?;
        if let Err(e) = store_entry(&object, &bytes) {
            self.cache_unwritable(&e);
        }
        Ok((bytes, false))
    }
}

/// Writes the libbpf headers, the bcc compatibility headers and this
/// kernel's vmlinux.h (from `btf`) into `dir`.
fn lay_out_headers(dir: &Path, btf: &Path) -> Result<(), ClangError> {
    super::write_headers(dir).map_err(|e| io("cannot write headers to", dir, e))?;
    for (name, contents) in COMPAT_HEADERS {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("header has a parent"))
            .map_err(|e| io("cannot create", &path, e))?;
        std::fs::write(&path, contents).map_err(|e| io("cannot write", &path, e))?;
    }
    let vmlinux_h = dir.join("vmlinux.h");
    vmlinux::write_vmlinux_h(btf, &vmlinux_h)?;
    let written = std::fs::read(&vmlinux_h).map_err(|e| io("cannot read", &vmlinux_h, e))?;
    let sum = dir.join(VMLINUX_SUM);
    std::fs::write(&sum, hex(&Sha256::digest(&written)))
        .map_err(|e| io("cannot write", &sum, e))?;
    Ok(())
}

/// The SHA-256 of vmlinux.h, beside it: a cached include directory is used
/// only when every header in it is whole.
const VMLINUX_SUM: &str = "vmlinux.h.sha256";

/// Whether `dir` holds every header as [`lay_out_headers`] wrote them.
fn headers_whole(dir: &Path) -> bool {
    let same = |path: PathBuf, contents: &[u8]| std::fs::read(path).is_ok_and(|b| b == contents);
    super::LIBBPF_HEADERS
        .iter()
        .all(|(name, contents)| same(dir.join("bpf").join(name), contents))
        && COMPAT_HEADERS
            .iter()
            .chain([&super::PID_KEYED_HEADER])
            .all(|(name, contents)| same(dir.join(name), contents.as_bytes()))
        && match (
            std::fs::read(dir.join("vmlinux.h")),
            std::fs::read_to_string(dir.join(VMLINUX_SUM)),
        ) {
            (Ok(header), Ok(sum)) => hex(&Sha256::digest(&header)) == sum.trim(),
            _ => false,
        }
}

/// What a compile cache entry starts with: this tag, then the SHA-256 of the
/// object bytes that follow. An entry that does not check out (a write cut
/// short, a damaged disk, an older exporter's bare object) is compiled again.
const ENTRY_TAG: &[u8] = b"ebpf-userspace-exporter object v1\n";

/// The object bytes of a cache entry, if it is whole.
fn verified_entry(entry: &[u8]) -> Option<&[u8]> {
    let rest = entry.strip_prefix(ENTRY_TAG)?;
    let digest_len = <Sha256 as Digest>::output_size();
    if rest.len() < digest_len {
        return None;
    }
    let (digest, object) = rest.split_at(digest_len);
    (Sha256::digest(object).as_slice() == digest).then_some(object)
}

/// Writes a cache entry beside its final name, then renames it there: a
/// reader sees the whole entry or none (a crash may leave a stray temp file).
fn store_entry(path: &Path, object: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().expect("an entry is inside objects/");
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".entry-")
        .tempfile_in(parent)?;
    tmp.write_all(ENTRY_TAG)?;
    tmp.write_all(&Sha256::digest(object))?;
    tmp.write_all(object)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// How a clang that failed ended, when its output does not say: killed by a
/// signal, or a failure status with nothing printed.
fn died(status: &std::process::ExitStatus, stderr: &[u8]) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGTERM => " (SIGTERM)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGINT => " (SIGINT)",
            _ => "",
        };
        return Some(format!("was killed by signal {signal}{name}"));
    }
    if stderr.iter().all(u8::is_ascii_whitespace) {
        return Some(match status.code() {
            Some(code) => format!("exited with status {code} and printed nothing"),
            None => "failed and printed nothing".to_string(),
        });
    }
    None
}

/// `LINE:COL: rest` with COL moved right by `indent`.
fn shift_column(rest: &str, indent: u64) -> String {
    let mut parts = rest.splitn(3, ':');
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u64>().ok()),
        parts.next(),
    ) {
        (Some(line), Some(col), Some(tail)) => format!("{line}:{}:{tail}", col + indent),
        _ => rest.to_string(),
    }
}

/// Keeps clang's errors readable: drops the temp dir from paths and caps the length.
fn trim_diagnostics(stderr: &str, work: &Path) -> String {
    let text = stderr.replace(&format!("{}/", work.display()), "");
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[..lines.len().min(60)];
    let mut out = shown.join("\n");
    if lines.len() > shown.len() {
        out.push_str(&format!("\n... {} more lines", lines.len() - shown.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_cache_entries_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects").join("key.bpf.o");
        let object = b"\x7fELF pretend object bytes".repeat(40);
        store_entry(&path, &object).unwrap();
        let entry = std::fs::read(&path).unwrap();
        assert_eq!(verified_entry(&entry), Some(&object[..]));
        // Cut short anywhere, a byte changed anywhere, empty, or a bare object.
        for cut in [0, 1, ENTRY_TAG.len(), ENTRY_TAG.len() + 31, entry.len() - 1] {
            assert_eq!(verified_entry(&entry[..cut]), None, "cut at {cut}");
        }
        for at in [0, ENTRY_TAG.len() + 3, entry.len() / 2, entry.len() - 1] {
            let mut damaged = entry.clone();
            damaged[at] ^= 1;
            assert_eq!(verified_entry(&damaged), None, "byte {at} flipped");
        }
        assert_eq!(verified_entry(&object), None);
        // Only the entry is left in the directory.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
