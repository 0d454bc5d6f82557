//! Reading what the exporter needs from an ELF executable or shared library:
//! its USDT probes (`.note.stapsdt`), its function symbols (`.symtab` and
//! `.dynsym`), and whether it is a Go binary.
//!
//! [`read_elf`] parses one file; [`ElfCache`] remembers the results by file
//! identity, so that a library mapped by hundreds of processes (each seen
//! through its own `/proc/PID/root/...` path) is parsed once.
//! [`read_functions`] lists function symbols with their addresses, for the
//! `probes` subcommand (the cached [`SymbolTable`] keeps names only).

pub mod demangle;
mod functions;
mod gopclntab;
mod image;
mod offset;
mod symbols;
mod usdt;

pub use functions::{Binding, Function, FunctionTable, LoadSegment};
pub use gopclntab::{GoFunction, Pclntab, PclntabError, PclntabVersion};
pub use offset::OffsetError;
pub use symbols::SymbolTable;
pub use usdt::UsdtNote;

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader, Sym};
use object::Endianness;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::Image;
use symbols::SymbolTableBuilder;
use usdt::NoteLayout;

/// Sections whose presence marks a Go binary.
const GO_SECTIONS: &[&[u8]] = &[b".go.buildinfo", b".gopclntab", b".note.go.buildid"];

/// The number of files an [`ElfCache`] made with `Default` remembers.
pub const DEFAULT_CACHE_CAPACITY: usize = 512;

/// Why an ELF file could not be read. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file does not exist (for example the process exited and its
    /// `/proc/PID/root` vanished, or the library was removed).
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be opened or read.
    #[error("cannot read {}: {error}{}", path.display(), crate::privileges::read_hint(error))]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The underlying I/O error (part of the message, not a `source`).
        error: io::Error,
    },
    /// The file is not an ELF file (bad magic or class, empty, not a regular
    /// file).
    #[error("{} is not an ELF file: {reason}", path.display())]
    NotElf {
        /// The path as given.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The file starts like an ELF file but its headers, sections or symbol
    /// tables are broken or truncated.
    #[error("malformed ELF file {}: {reason}", path.display())]
    Malformed {
        /// The path as given.
        path: PathBuf,
        /// What is broken.
        reason: String,
    },
    /// The file changed while it was read: truncated, or rewritten in place
    /// (packages and deployments rename a new file into place instead, which
    /// is safe). What was read is not one version of the file.
    #[error("{} changed while it was read ({reason}); it is read again at the next attempt", path.display())]
    Changed {
        /// The path as given.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },
    /// The tables the exporter reads (symbols, strings, notes) are larger
    /// than it reads from one file.
    #[error("{}: its symbol, string and note tables add up to {} MiB, more than the {} MiB the exporter reads from one file", path.display(), bytes >> 20, limit >> 20)]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// The bytes the tables take (at least).
        bytes: u64,
        /// The most read from one file.
        limit: u64,
    },
    /// A note in `.note.stapsdt` is broken.
    #[error("malformed USDT note #{index} in {}: {reason}", path.display())]
    MalformedNote {
        /// The path as given.
        path: PathBuf,
        /// 0-based position of the note in the `.note.stapsdt` section.
        index: usize,
        /// What is broken.
        reason: String,
    },
}

impl ElfError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ElfError::NotFound { path }
            | ElfError::Unreadable { path, .. }
            | ElfError::NotElf { path, .. }
            | ElfError::Malformed { path, .. }
            | ElfError::Changed { path, .. }
            | ElfError::TooLarge { path, .. }
            | ElfError::MalformedNote { path, .. } => path,
        }
    }

    /// Whether the exporter was refused the file for lack of a capability.
    pub fn denied(&self) -> bool {
        matches!(self, ElfError::Unreadable { error, .. } if error.kind() == io::ErrorKind::PermissionDenied)
    }

    fn io(path: &Path, error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::NotFound {
            ElfError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ElfError::Unreadable {
                path: path.to_path_buf(),
                error,
            }
        }
    }

    fn not_elf(path: &Path, reason: impl Into<String>) -> Self {
        ElfError::NotElf {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn malformed(path: &Path, reason: impl std::fmt::Display) -> Self {
        ElfError::Malformed {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// What an ELF file is, from its header and program headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElfKind {
    /// An executable: `ET_EXEC`, or `ET_DYN` with an interpreter (`PT_INTERP`),
    /// as position-independent executables are.
    Executable,
    /// A shared library: `ET_DYN` without an interpreter.
    SharedLibrary,
    /// Anything else (relocatable objects, core files).
    #[default]
    Other,
}

/// What the exporter knows about one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// Every USDT probe site, in note order.
    pub usdt: Vec<UsdtNote>,
    /// The defined function symbols.
    pub symbols: SymbolTable,
    /// Whether this is a Go binary (it has a `.go.buildinfo`, `.gopclntab`
    /// or `.note.go.buildid` section, or a `runtime.main` symbol). uretprobes
    /// must not be used on Go code: its stack moves break them.
    pub is_go: bool,
    /// The function symbols with their addresses, and the load segments.
    /// In a Go binary, also the functions of Go's function table
    /// (`.gopclntab`) whose names the symbol tables lack: all of them when
    /// the binary is stripped.
    pub functions: FunctionTable,
    /// Why the Go function table of a Go binary could not be read (its
    /// functions are then known only by the symbol tables, if any).
    pub go_table_error: Option<String>,
    /// `DT_RPATH` directories, as written (`$ORIGIN` unexpanded).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` directories, as written.
    pub runpath: Vec<String>,
    /// Executable or shared library: a starter config selects the processes
    /// running an executable, which a library alone cannot name.
    pub kind: ElfKind,
    /// Results computed from this file, kept with it: see [`ElfInfo::derived`].
    pub derived: Derived,
}

/// The most results [`ElfInfo::derived`] keeps for one file (a config names
/// a few C++ functions, not hundreds).
const MAX_DERIVED: usize = 256;

/// Results computed from a file's contents and kept as long as the file is
/// cached, by key. A clone starts empty.
#[derive(Default)]
pub struct Derived(std::sync::Mutex<HashMap<String, Arc<dyn std::any::Any + Send + Sync>>>);

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

/// A cache of what the contents give, not contents: two files' infos are
/// equal whatever each has computed so far.
impl PartialEq for Derived {
    fn eq(&self, _: &Derived) -> bool {
        true
    }
}

impl Eq for Derived {}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Derived({len} results)")
    }
}

impl ElfInfo {
    /// The result of `compute` on this file under `key`: computed once and
    /// kept while the file is cached (so that the next process mapping a
    /// library does not pay for, say, demangling its symbols again), up to
    /// [`MAX_DERIVED`] results; a key used before with another type is
    /// computed afresh.
    pub fn derived<T: std::any::Any + Send + Sync>(
        &self,
        key: &str,
        compute: impl FnOnce() -> T,
    ) -> Arc<T> {
        fn lock(
            d: &Derived,
        ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn std::any::Any + Send + Sync>>>
        {
            d.0.lock().unwrap_or_else(|p| p.into_inner())
        }
        let known = lock(&self.derived).get(key).cloned();
        if let Some(found) = known {
            if let Ok(found) = found.downcast::<T>() {
                return found;
            }
        }
        // Computed without the lock: two threads may both compute it once.
        let value = Arc::new(compute());
        let mut map = lock(&self.derived);
        if map.len() < MAX_DERIVED {
            map.insert(key.to_string(), value.clone());
        }
        value
    }

    /// The probe sites named `name`, from `provider` if given (any provider
    /// otherwise), in note order. Several sites of one probe are all
    /// returned.
    pub fn find_usdt(&self, provider: Option<&str>, name: &str) -> Vec<&UsdtNote> {
        self.usdt
            .iter()
            .filter(|n| n.matches(provider, name))
            .collect()
    }
}

/// Reads the USDT notes and function symbols of the ELF file at `path`
/// (32- or 64-bit, either byte order).
///
/// `path` may be a `/proc/PID/exe` or `/proc/PID/root/...` path; symbolic
/// links are followed. Only the parts of the file the parsers use are read
/// (see `image`); the file is never mapped, so that another process
/// truncating it cannot fault the exporter.
///
/// # Errors
///
/// [`ElfError::NotFound`] if the file does not exist,
/// [`ElfError::Unreadable`] if it cannot be opened or read,
/// [`ElfError::NotElf`] if it is not a regular ELF file,
/// [`ElfError::Malformed`] if its headers or symbol tables are broken,
/// [`ElfError::MalformedNote`] if a `.note.stapsdt` note is,
/// [`ElfError::Changed`] if the file was truncated or rewritten while it was
/// read, and [`ElfError::TooLarge`] if its tables exceed what is read from
/// one file.
pub fn read_elf(path: &Path) -> Result<ElfInfo, ElfError> {
    let (file, metadata) = open(path)?;
    read_open_elf(path, &file, &metadata)
}

/// Opens `path` for reading and checks that it is a regular file.
fn open(path: &Path) -> Result<(File, std::fs::Metadata), ElfError> {
    // O_NONBLOCK: opening a FIFO must not hang; it changes nothing for
    // regular files.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| ElfError::io(path, e))?;
    let metadata = file.metadata().map_err(|e| ElfError::io(path, e))?;
    if metadata.is_dir() {
        return Err(ElfError::not_elf(path, "it is a directory"));
    }
    if !metadata.is_file() {
        return Err(ElfError::not_elf(path, "not a regular file"));
    }
    Ok((file, metadata))
}

fn read_open_elf(
    path: &Path,
    file: &File,
    metadata: &std::fs::Metadata,
) -> Result<ElfInfo, ElfError> {
    let image = Image::read(path, file, metadata.len())?;
    let parsed = parse(path, image.bytes());
    unchanged(path, file, metadata)?;
    parsed
}

/// An error if the open file's size or modification time are no longer
/// those of `before`: it was written while it was read, and a parse of it
/// (even a successful one) may mix two versions.
fn unchanged(path: &Path, file: &File, before: &std::fs::Metadata) -> Result<(), ElfError> {
    let after = file.metadata().map_err(|e| ElfError::io(path, e))?;
    if FileKey::of(&after) == FileKey::of(before) {
        return Ok(());
    }
    let reason = if after.len() != before.len() {
        format!("it was {} bytes long, now {}", before.len(), after.len())
    } else {
        "its modification time changed".to_string()
    };
    Err(ElfError::Changed {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses an ELF file held in memory as [`read_elf`] parses one it reads;
/// `path` is only named in errors.
///
/// # Errors
///
/// Those of [`read_elf`] about the contents.
pub fn parse_bytes(path: &Path, data: &[u8]) -> Result<ElfInfo, ElfError> {
    parse(path, data)
}

/// Parses an ELF image held in memory; `path` is only used in errors.
fn parse(path: &Path, data: &[u8]) -> Result<ElfInfo, ElfError> {
    match class(path, data)? {
        elf::ELFCLASS32 => parse_class::<elf::FileHeader32<Endianness>>(path, data),
        _ => parse_class::<elf::FileHeader64<Endianness>>(path, data),
    }
}

/// The ELF class (`ELFCLASS32` or `ELFCLASS64`) of an image, or why it is
/// not an ELF image.
fn class(path: &Path, data: &[u8]) -> Result<u8, ElfError> {
    if data.is_empty() {
        return Err(ElfError::not_elf(path, "the file is empty"));
    }
    if data.len() < 16 || data[..4] != elf::ELFMAG {
        return Err(ElfError::not_elf(path, "no ELF magic number"));
    }
    // e_ident[EI_CLASS], the byte after the magic number.
    match data[4] {
        c @ (elf::ELFCLASS32 | elf::ELFCLASS64) => Ok(c),
        other => Err(ElfError::not_elf(
            path,
            format!("unknown ELF class {other}"),
        )),
    }
}

/// Whether the header and program headers make the file an executable or a
/// shared library. Broken program headers only cost the distinction.
fn kind<Elf: FileHeader<Endian = Endianness>>(
    header: &Elf,
    endian: Endianness,
    data: &[u8],
) -> ElfKind {
    match header.e_type(endian) {
        elf::ET_EXEC => ElfKind::Executable,
        elf::ET_DYN => {
            let interp = header
                .program_headers(endian, data)
                .is_ok_and(|headers| headers.iter().any(|h| h.p_type(endian) == elf::PT_INTERP));
            if interp {
                ElfKind::Executable
            } else {
                ElfKind::SharedLibrary
            }
        }
        _ => ElfKind::Other,
    }
}

fn parse_class<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    data: &[u8],
) -> Result<ElfInfo, ElfError> {
    let bad = |e: object::read::Error| ElfError::malformed(path, e);
    let header = Elf::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, data).map_err(bad)?;

    let mut is_go = false;
    let mut base_addr = None;
    let mut note_sections = Vec::new();
    for section in sections.iter() {
        // Sections with unreadable names are simply not the ones we want.
        let Ok(name) = sections.section_name(endian, section) else {
            continue;
        };
        if GO_SECTIONS.contains(&name) {
            is_go = true;
        }
        if name == b".stapsdt.base" {
            base_addr = Some(section.sh_addr(endian).into());
        }
        if name == b".note.stapsdt" && section.sh_type(endian) == elf::SHT_NOTE {
            note_sections.push(section);
        }
    }

    let mut usdt = Vec::new();
    for section in note_sections {
        let bytes = section
            .data(endian, data)
            .map_err(|_| ElfError::malformed(path, ".note.stapsdt lies outside the file"))?;
        let align: u64 = section.sh_addralign(endian).into();
        let layout = NoteLayout {
            big_endian: header.is_big_endian(),
            addr_size: if header.is_type_64() { 8 } else { 4 },
            align: if align == 8 { 8 } else { 4 },
        };
        let notes =
            usdt::parse_stapsdt(bytes, layout, base_addr).map_err(|e| ElfError::MalformedNote {
                path: path.to_path_buf(),
                index: e.index,
                reason: e.reason,
            })?;
        usdt.extend(notes);
    }

    let mut builder = SymbolTableBuilder::default();
    let mut functions = Vec::new();
    for_each_function(path, endian, data, &sections, |symbol| {
        if symbol.name == "runtime.main" {
            is_go = true;
        }
        builder.add(symbol.name, symbol.version);
        let unversioned = symbols::unversioned(symbol.name).to_string();
        functions.push((unversioned, symbol.address, symbol.size, symbol.binding));
    })?;
    let go_table_error = match gopclntab::read(header, endian, data, &sections) {
        Ok((go, _)) => {
            for f in unnamed(go, functions.iter().map(|f| f.0.as_str())) {
                builder.add(&f.name, None);
                functions.push((f.name, f.entry, f.size, Binding::Go));
            }
            None
        }
        Err(reason) => Some(format!("Go function table (.gopclntab): {reason}")),
    };

    // A file without program headers (an object file) has no segments.
    let segments = header
        .program_headers(endian, data)
        .unwrap_or(&[])
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .map(|ph| LoadSegment {
            vaddr: ph.p_vaddr(endian).into(),
            offset: ph.p_offset(endian).into(),
            file_size: ph.p_filesz(endian).into(),
        })
        .collect();
    let (rpath, runpath) = search_paths(&sections, endian, data);
    Ok(ElfInfo {
        usdt,
        symbols: builder.finish(),
        is_go,
        kind: kind(header, endian, data),
        functions: FunctionTable::new(functions, segments),
        go_table_error,
        rpath,
        runpath,
        derived: Derived::default(),
    })
}

/// One defined function symbol as [`for_each_function`] reports it.
struct RawFunction<'a> {
    /// The raw name (it may carry its own `@VER` suffix, as in `.symtab`).
    name: &'a str,
    address: u64,
    size: u64,
    binding: Binding,
    /// The `.gnu.version` version of a `.dynsym` symbol: `(name, hidden)`.
    version: Option<(&'a str, bool)>,
}

/// Calls `f` for every defined function symbol (`STT_FUNC` or
/// `STT_GNU_IFUNC`, non-zero address) of `.symtab`, then of `.dynsym`.
fn for_each_function<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    endian: Endianness,
    data: &[u8],
    sections: &object::read::elf::SectionTable<'_, Elf>,
    mut f: impl FnMut(RawFunction<'_>),
) -> Result<(), ElfError> {
    // A string table without its NULs makes every name run to the table's
    // end: reading the names would take (symbols x table size) time and
    // memory (gigabytes, found by fuzzing). The names and versions of real
    // files add up to less than a quarter of the file (1034 symbol tables
    // measured), so the bytes looked at may add up to the file's size.
    let mut budget = data.len().saturating_add(1 << 20);
    let too_long = || {
        ElfError::malformed(
            path,
            "symbol names add up to more than the file's size (a string table without its NULs?)",
        )
    };
    for sh_type in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
        let table = sections
            .symbols(endian, data, sh_type)
            .map_err(|e| ElfError::malformed(path, format_args!("symbol table: {e}")))?;
        if table.is_empty() {
            continue;
        }
        // Symbol versions only exist for the dynamic symbol table. A broken
        // version table costs the versioned spellings, not the symbols.
        let versions = if sh_type == elf::SHT_DYNSYM {
            sections.versions(endian, data).ok().flatten()
        } else {
            None
        };
        let strings = table.strings();
        let strings_len = sections.section(table.string_section()).map_or(0, |s| {
            usize::try_from(s.sh_size(endian).into()).unwrap_or(usize::MAX)
        });
        for (index, sym) in table.enumerate() {
            let kind = sym.st_type();
            if kind != elf::STT_FUNC && kind != elf::STT_GNU_IFUNC {
                continue;
            }
            let value: u64 = sym.st_value(endian).into();
            if value == 0 || sym.is_undefined(endian) {
                continue;
            }
            let Ok(raw) = sym.name(endian, strings) else {
                // Looked for a NUL up to the table's end.
                let offset = sym.st_name(endian) as usize;
                budget = budget
                    .checked_sub(strings_len.saturating_sub(offset))
                    .ok_or_else(too_long)?;
                continue;
            };
            let name = String::from_utf8_lossy(raw);
            let version = versions.as_ref().and_then(|v| {
                let vi = v.version_index(endian, index);
                let ver = v.version(vi).ok().flatten()?;
                Some((String::from_utf8_lossy(ver.name()), vi.is_hidden()))
            });
            let length = name.len() + version.as_ref().map_or(0, |(v, _)| v.len());
            budget = budget.checked_sub(length).ok_or_else(too_long)?;
            let binding = match sym.st_bind() {
                elf::STB_LOCAL => Binding::Local,
                elf::STB_WEAK => Binding::Weak,
                _ => Binding::Global,
            };
            f(RawFunction {
                name: &name,
                address: value,
                size: sym.st_size(endian).into(),
                binding,
                version: version.as_ref().map(|(n, h)| (n.as_ref(), *h)),
            });
        }
    }
    Ok(())
}

/// The file offset of function `name` in the ELF file at `path`: where
/// libbpf 1.7 would attach a uprobe given `name` as `func_name`, found by its
/// rule (`.dynsym` before `.symtab`, `STT_FUNC` only, weak symbols yield to
/// others; `name@VERSION` or `name@@VERSION` for a versioned symbol) from
/// the section headers. Handing libbpf the offset instead of the name keeps
/// it from mapping the file (a file truncated meanwhile faults a mapping).
///
/// # Errors
///
/// [`OffsetError::Elf`] for those of [`read_elf`] about reading the file,
/// [`OffsetError::NotFound`] and [`OffsetError::Ambiguous`] where libbpf
/// would fail too.
pub fn function_offset(path: &Path, name: &str) -> Result<u64, OffsetError> {
    let (file, metadata) = open(path)?;
    offset_of_open(path, &file, &metadata, name)
}

fn offset_of_open(
    path: &Path,
    file: &File,
    metadata: &std::fs::Metadata,
    name: &str,
) -> Result<u64, OffsetError> {
    let image = Image::read(path, file, metadata.len())?;
    let found = offset::function_offset(path, image.bytes(), name);
    unchanged(path, file, metadata)?;
    found
}

/// A function symbol and where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionSymbol {
    /// The name without a symbol version (`malloc`, not `malloc@@GLIBC_2.2.5`):
    /// what a uprobe spec names.
    pub name: String,
    /// Its link-time virtual address (`st_value`).
    pub address: u64,
}

/// The defined function symbols of the ELF file at `path` whose unversioned
/// name `wanted` accepts, from `.symtab` and `.dynsym`, sorted by name then
/// address; a symbol both tables hold is listed once, two functions of one
/// name (`static` functions of different files) at their own addresses.
///
/// # Errors
///
/// Those of [`read_elf`], except that `.note.stapsdt` is not read.
pub fn read_functions(
    path: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<FunctionSymbol>, ElfError> {
    let (file, metadata) = open(path)?;
    let image = Image::read(path, &file, metadata.len())?;
    let data = image.bytes();
    let parsed = class(path, data).and_then(|class| match class {
        elf::ELFCLASS32 => functions_class::<elf::FileHeader32<Endianness>>(path, data, wanted),
        _ => functions_class::<elf::FileHeader64<Endianness>>(path, data, wanted),
    });
    unchanged(path, &file, &metadata)?;
    parsed
}

fn functions_class<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    data: &[u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<FunctionSymbol>, ElfError> {
    let bad = |e: object::read::Error| ElfError::malformed(path, e);
    let header = Elf::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, data).map_err(bad)?;
    let mut out = std::collections::BTreeSet::new();
    let mut named = std::collections::HashSet::new();
    for_each_function(path, endian, data, &sections, |symbol| {
        let name = symbols::unversioned(symbol.name);
        if !name.is_empty() && wanted(name) {
            out.insert(FunctionSymbol {
                name: name.to_string(),
                address: symbol.address,
            });
        }
        named.insert(name.to_string());
    })?;
    // As read_elf: a table it cannot read costs the Go names only.
    if let Ok((go, _)) = gopclntab::read(header, endian, data, &sections) {
        for f in unnamed(go, named.iter().map(String::as_str)) {
            if wanted(&f.name) {
                out.insert(FunctionSymbol {
                    name: f.name,
                    address: f.entry,
                });
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The Go functions whose names are not among `named` (the symbol tables'):
/// where both name a function, the symbol tables are preferred. A name with
/// an `@` (none of Go's; a broken table's) is left out: in a spec or symbol
/// table lookup, `@` starts a symbol version.
fn unnamed<'a>(go: Vec<GoFunction>, named: impl Iterator<Item = &'a str>) -> Vec<GoFunction> {
    if go.is_empty() {
        return go;
    }
    let named: std::collections::HashSet<&str> = named.collect();
    go.into_iter()
        .filter(|f| !f.name.contains('@') && !named.contains(f.name.as_str()))
        .collect()
}

/// `DT_RPATH` and `DT_RUNPATH`, split at `:`. A broken dynamic section costs
/// the search paths, not the rest of the file.
fn search_paths<Elf: FileHeader<Endian = Endianness>>(
    sections: &object::read::elf::SectionTable<'_, Elf>,
    endian: Endianness,
    data: &[u8],
) -> (Vec<String>, Vec<String>) {
    let (mut rpath, mut runpath) = (Vec::new(), Vec::new());
    let Ok(Some((entries, link))) = sections.dynamic(endian, data) else {
        return (rpath, runpath);
    };
    let Ok(strings) = sections.strings(endian, data, link) else {
        return (rpath, runpath);
    };
    for entry in entries {
        let into = match entry.tag32(endian) {
            Some(elf::DT_RPATH) => &mut rpath,
            Some(elf::DT_RUNPATH) => &mut runpath,
            _ => continue,
        };
        let Ok(offset) = u32::try_from(entry.d_val(endian).into()) else {
            continue;
        };
        if let Ok(text) = strings.get(offset) {
            into.extend(
                String::from_utf8_lossy(text)
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
            );
        }
    }
    (rpath, runpath)
}

/// The identity of a file's contents: device, inode, size and modification
/// time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileKey {
    fn of(metadata: &std::fs::Metadata) -> Self {
        FileKey {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// A bounded cache of parsed ELF files, keyed by file identity (device,
/// inode, size, modification time) rather than by path, so that the same
/// library seen through many `/proc/PID/root/...` paths is parsed once, and a
/// rewritten or replaced file is parsed again.
///
/// When full, the least recently used entry is dropped. Failures are not
/// cached.
#[derive(Debug)]
pub struct ElfCache {
    capacity: usize,
    entries: HashMap<FileKey, Entry>,
    clock: u64,
}

/// One parsed file of an [`ElfCache`].
#[derive(Debug)]
struct Entry {
    info: Arc<ElfInfo>,
    /// The clock when it was last used.
    used: u64,
    /// The function offsets found in it, by name as asked for (as many as
    /// the config names functions in this file).
    offsets: HashMap<Box<str>, u64>,
}

impl Default for ElfCache {
    /// A cache of [`DEFAULT_CACHE_CAPACITY`] files.
    fn default() -> Self {
        ElfCache::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl ElfCache {
    /// A cache remembering up to `capacity` files (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        ElfCache {
            capacity,
            entries: HashMap::new(),
            clock: 0,
        }
    }

    /// The parsed file at `path`, from the cache when a file with the same
    /// identity was parsed before. See [`read_elf`] for what `path` may be.
    ///
    /// # Errors
    ///
    /// Those of [`read_elf`]; a failure is not remembered, so the next call
    /// tries again.
    pub fn get(&mut self, path: &Path) -> Result<Arc<ElfInfo>, ElfError> {
        let (file, metadata) = open(path)?;
        let key = FileKey::of(&metadata);
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.used = self.clock;
            return Ok(Arc::clone(&entry.info));
        }
        let info = Arc::new(read_open_elf(path, &file, &metadata)?);
        if self.capacity > 0 {
            if self.entries.len() >= self.capacity {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.used)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
            self.entries.insert(
                key,
                Entry {
                    info: Arc::clone(&info),
                    used: self.clock,
                    offsets: HashMap::new(),
                },
            );
        }
        Ok(info)
    }

    /// The file offset of function `name` in the file at `path`, found as
    /// libbpf finds it for a uprobe's `func_name` (see [`function_offset`]),
    /// remembered with the file when the cache holds it.
    ///
    /// # Errors
    ///
    /// Those of [`function_offset`]; a failure is not remembered.
    pub fn function_offset(&mut self, path: &Path, name: &str) -> Result<u64, OffsetError> {
        let (file, metadata) = open(path)?;
        let key = FileKey::of(&metadata);
        if let Some(offset) = self.entries.get(&key).and_then(|e| e.offsets.get(name)) {
            return Ok(*offset);
        }
        let offset = offset_of_open(path, &file, &metadata, name)?;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.offsets.insert(name.into(), offset);
        }
        Ok(offset)
    }

    /// The number of files remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no file is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every file.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::usdt::tests::{note_bytes, stapsdt_desc, BE32, LE64};
    use super::*;
    use std::process::Command;
    use tempfile::TempDir;

    const PROG_C: &str = include_str!("../../tests/fixtures/elf/usdt_prog.c");
    const GUARDED_C: &str = include_str!("../../tests/fixtures/elf/usdt_guarded.c");
    const LIB_C: &str = include_str!("../../tests/fixtures/elf/usdt_lib.c");
    const LIB_MAP: &str = include_str!("../../tests/fixtures/elf/usdt_lib.map");
    const GO_MARKER_C: &str = include_str!("../../tests/fixtures/elf/go_marker.c");

    /// Writes `sources` (file name, text) to `dir` and links them with `cc`
    /// into `dir/out`, passing `args` first.
    fn cc(dir: &Path, out: &str, sources: &[(&str, &str)], args: &[&str]) -> PathBuf {
        let mut cmd = Command::new("cc");
        cmd.current_dir(dir).args(args).args(["-O2", "-o", out]);
        for (name, text) in sources {
            std::fs::write(dir.join(name), text).unwrap();
            cmd.arg(name);
        }
        let output = cmd
            .output()
            .expect("running cc (the elf tests need a C compiler)");
        assert!(
            output.status.success(),
            "cc {out} failed (the elf tests need gcc and <sys/sdt.h>: apt-get install -y systemtap-sdt-dev):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        dir.join(out)
    }

    fn build_prog(dir: &Path) -> PathBuf {
        cc(
            dir,
            "prog",
            &[("usdt_prog.c", PROG_C), ("usdt_guarded.c", GUARDED_C)],
            &[],
        )
    }

    fn build_lib(dir: &Path, out: &str, extra: &[&str]) -> PathBuf {
        std::fs::write(dir.join("usdt_lib.map"), LIB_MAP).unwrap();
        let mut args = vec!["-shared", "-fPIC", "-Wl,--version-script=usdt_lib.map"];
        args.extend_from_slice(extra);
        cc(dir, out, &[("usdt_lib.c", LIB_C)], &args)
    }

    /// A minimal ELF file with the given sections (name, type, address,
    /// alignment, contents) followed by a section name table.
    fn craft_elf(
        class64: bool,
        big_endian: bool,
        sections: &[(&str, u32, u64, u64, Vec<u8>)],
    ) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes().to_vec()
            } else {
                v.to_le_bytes().to_vec()
            }
        };
        let word = |v: u64| {
            if class64 {
                if big_endian {
                    v.to_be_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                }
            } else {
                u32b(v as u32)
            }
        };
        let ehsize: usize = if class64 { 64 } else { 52 };
        let shentsize: usize = if class64 { 64 } else { 40 };

        // Section name table: "\0" then each name, then ".shstrtab".
        let mut shstrtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in sections
            .iter()
            .map(|s| s.0)
            .chain(std::iter::once(".shstrtab"))
        {
            name_offsets.push(shstrtab.len() as u32);
            shstrtab.extend_from_slice(name.as_bytes());
            shstrtab.push(0);
        }

        let mut body = vec![0u8; ehsize];
        let mut placed = Vec::new(); // (offset, size)
        let contents = sections
            .iter()
            .map(|s| s.4.clone())
            .chain(std::iter::once(shstrtab));
        for data in contents {
            body.resize(body.len().next_multiple_of(8), 0);
            placed.push((body.len() as u64, data.len() as u64));
            body.extend_from_slice(&data);
        }
        body.resize(body.len().next_multiple_of(8), 0);
        let shoff = body.len() as u64;
        let shnum = sections.len() + 2;

        // Section headers: the null one, the given ones, .shstrtab.
        body.extend(std::iter::repeat_n(0u8, shentsize));
        for (i, &(offset, size)) in placed.iter().enumerate() {
            let (sh_type, addr, align) = match sections.get(i) {
                Some(s) => (s.1, s.2, s.3),
                None => (elf::SHT_STRTAB, 0, 1),
            };
            body.extend(u32b(name_offsets[i]));
            body.extend(u32b(sh_type));
            body.extend(word(0)); // flags
            body.extend(word(addr));
            body.extend(word(offset));
            body.extend(word(size));
            body.extend(u32b(0)); // link
            body.extend(u32b(0)); // info
            body.extend(word(align));
            body.extend(word(0)); // entsize
        }

        let mut header = vec![0x7f, b'E', b'L', b'F'];
        header.push(if class64 {
            elf::ELFCLASS64
        } else {
            elf::ELFCLASS32
        });
        header.push(if big_endian {
            elf::ELFDATA2MSB
        } else {
            elf::ELFDATA2LSB
        });
        header.push(elf::EV_CURRENT);
        header.resize(16, 0);
        header.extend(u16b(elf::ET_DYN));
        header.extend(u16b(if class64 { elf::EM_X86_64 } else { elf::EM_386 }));
        header.extend(u32b(u32::from(elf::EV_CURRENT)));
        header.extend(word(0)); // entry
        header.extend(word(0)); // phoff
        header.extend(word(shoff));
        header.extend(u32b(0)); // flags
        header.extend(u16b(ehsize as u16));
        header.extend(u16b(0)); // phentsize
        header.extend(u16b(0)); // phnum
        header.extend(u16b(shentsize as u16));
        header.extend(u16b(shnum as u16));
        header.extend(u16b((shnum - 1) as u16));
        assert_eq!(header.len(), ehsize);
        body[..ehsize].copy_from_slice(&header);
        body
    }

    #[test]
    fn executable_probes_and_symbols() {
        let dir = TempDir::new().unwrap();
        let prog = build_prog(dir.path());
        let info = read_elf(&prog).unwrap();

        let names: Vec<String> = info.usdt.iter().map(|n| n.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, ["myprov:guarded", "myprov:hit", "myprov:second"]);

        let hit = info.find_usdt(Some("myprov"), "hit");
        assert_eq!(hit.len(), 1);
        let hit = hit[0];
        assert_eq!(hit.provider, "myprov");
        assert_eq!(hit.name, "hit");
        assert_eq!(hit.args, "-4@$42 -4@$7");
        assert_eq!(hit.semaphore, 0);
        assert_ne!(hit.address, 0);
        assert_ne!(hit.base, 0);

        // Register choice is the compiler's; sizes and signs are not.
        let second = info.find_usdt(None, "second");
        assert_eq!(second.len(), 1);
        let spec = regex::Regex::new(r"^-4@\S+ 8@\S+$").unwrap();
        assert!(spec.is_match(&second[0].args), "{:?}", second[0].args);
        assert_eq!(second[0].semaphore, 0);

        let guarded = info.find_usdt(Some("myprov"), "guarded");
        assert_eq!(guarded.len(), 1);
        assert_ne!(guarded[0].semaphore, 0);
        assert!(guarded[0].has_semaphore());
        let spec = regex::Regex::new(r"^-4@\S+$").unwrap();
        assert!(spec.is_match(&guarded[0].args), "{:?}", guarded[0].args);
        // All notes of one file share the .stapsdt.base address.
        assert!(info.usdt.iter().all(|n| n.base == hit.base));

        assert!(info.find_usdt(Some("otherprov"), "hit").is_empty());
        assert!(info.find_usdt(None, "nope").is_empty());

        assert!(info.symbols.contains("target_function"));
        assert!(info.symbols.contains("guarded_call"));
        assert!(info.symbols.contains("main"));
        assert!(!info.symbols.contains("target_functio"));
        // Data symbols are not functions.
        assert!(!info.symbols.contains("myprov_guarded_semaphore"));
        assert_eq!(
            info.symbols
                .similar("target_functoin", 3)
                .first()
                .map(String::as_str),
            Some("target_function")
        );
        assert_eq!(
            info.symbols.similar("je_target_function", 1),
            ["target_function"]
        );
        assert!(info.symbols.len() >= 3);
        assert!(!info.is_go);
        // cc links position-independent executables: ET_DYN with an interpreter.
        assert_eq!(info.kind, ElfKind::Executable);
    }

    #[test]
    fn functions_with_addresses() {
        let dir = TempDir::new().unwrap();
        let prog = build_prog(dir.path());
        let found =
            read_functions(&prog, |n| n.contains("_call") || n == "target_function").unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["guarded_call", "target_function"]);
        assert!(found.iter().all(|f| f.address != 0));
        // The probe site lies inside the function holding it.
        let info = read_elf(&prog).unwrap();
        let site = info.find_usdt(Some("myprov"), "hit")[0].address;
        let target = found.iter().find(|f| f.name == "target_function").unwrap();
        assert!(
            site >= target.address && site - target.address < 64,
            "{site:#x} vs {target:?}"
        );
        assert!(read_functions(&prog, |_| false).unwrap().is_empty());

        // Versioned .dynsym names are listed unversioned, once (stripped: .dynsym only).
        let lib = build_lib(dir.path(), "libstripped.so", &["-s"]);
        let found = read_functions(&lib, |_| true).unwrap();
        assert_eq!(
            found.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["lib_function"]
        );
        assert_eq!(read_elf(&lib).unwrap().kind, ElfKind::SharedLibrary);

        let text = dir.path().join("text");
        std::fs::write(&text, "not elf").unwrap();
        assert!(matches!(
            read_functions(&text, |_| true),
            Err(ElfError::NotElf { .. })
        ));
    }

    #[test]
    fn shared_library_probe_and_versioned_symbol() {
        let dir = TempDir::new().unwrap();
        let lib = build_lib(dir.path(), "libusdt.so", &[]);
        let info = read_elf(&lib).unwrap();
        assert_eq!(
            info.usdt,
            vec![UsdtNote {
                provider: "libprov".into(),
                name: "lib_probe".into(),
                address: info.usdt[0].address,
                base: info.usdt[0].base,
                semaphore: 0,
                args: "-4@$5".into(),
            }]
        );
        assert_ne!(info.usdt[0].address, 0);
        assert!(info.symbols.contains("lib_function"));
        assert!(info.symbols.contains("lib_function@@LIBTEST_1.0"));
        assert!(info.symbols.contains("lib_function@LIBTEST_1.0"));
        assert!(!info.symbols.contains("lib_function@@LIBTEST_2.0"));
        assert!(!info.is_go);

        // Stripped: only .dynsym is left, and it is enough.
        let stripped = build_lib(dir.path(), "libstripped.so", &["-s"]);
        let info = read_elf(&stripped).unwrap();
        assert!(info.symbols.contains("lib_function"));
        assert!(info.symbols.contains("lib_function@@LIBTEST_1.0"));
        assert_eq!(info.find_usdt(Some("libprov"), "lib_probe").len(), 1);
    }

    #[test]
    fn system_libc_dynamic_symbols() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if !libc.exists() {
            eprintln!("skipping: {} does not exist", libc.display());
            return;
        }
        let info = read_elf(libc).unwrap();
        assert!(info.symbols.contains("malloc"));
        assert!(info.symbols.contains("malloc@@GLIBC_2.2.5"));
        assert!(info.symbols.contains("malloc@GLIBC_2.2.5"));
        assert!(info.symbols.contains("free"));
        assert!(!info.symbols.contains("je_malloc"));
        assert!(info.symbols.len() > 1000);
        let similar = info.symbols.similar("je_malloc", 3);
        assert_eq!(similar.first().map(String::as_str), Some("malloc"));
        assert_eq!(similar.len(), 3);
        assert!(!info.is_go);
    }

    #[test]
    fn python_gc_probe() {
        let python = Path::new("/usr/bin/python3.11");
        if !python.exists() {
            eprintln!("skipping: {} does not exist", python.display());
            return;
        }
        let info = read_elf(python).unwrap();
        let gc = info.find_usdt(Some("python"), "gc__start");
        assert!(
            !gc.is_empty(),
            "no python:gc__start in {}",
            python.display()
        );
        assert!(gc[0].has_semaphore());
        assert!(!info.find_usdt(Some("python"), "function__entry").is_empty());
        assert!(!info.is_go);
    }

    #[test]
    fn go_detection() {
        let dir = TempDir::new().unwrap();
        let marker = cc(
            dir.path(),
            "go_marker",
            &[("go_marker.c", GO_MARKER_C)],
            &[],
        );
        assert!(read_elf(&marker).unwrap().is_go);

        let elf = craft_elf(
            true,
            false,
            &[(".gopclntab", elf::SHT_PROGBITS, 0, 8, vec![1; 16])],
        );
        let path = dir.path().join("gopclntab");
        std::fs::write(&path, elf).unwrap();
        assert!(read_elf(&path).unwrap().is_go);

        let elf = craft_elf(
            true,
            false,
            &[(".go.buildinfo", elf::SHT_PROGBITS, 0, 8, vec![1; 16])],
        );
        std::fs::write(&path, elf).unwrap();
        assert!(read_elf(&path).unwrap().is_go);

        let elf = craft_elf(
            true,
            false,
            &[(".text", elf::SHT_PROGBITS, 0, 8, vec![1; 16])],
        );
        std::fs::write(&path, elf).unwrap();
        let info = read_elf(&path).unwrap();
        assert!(!info.is_go);
        assert!(info.usdt.is_empty() && info.symbols.is_empty());
        // ET_DYN without program headers: no interpreter.
        assert_eq!(info.kind, ElfKind::SharedLibrary);
    }

    #[test]
    fn elf32_notes() {
        let dir = TempDir::new().unwrap();
        for big_endian in [false, true] {
            let layout = NoteLayout { big_endian, ..BE32 };
            let mut notes = note_bytes(
                layout,
                b"stapsdt",
                3,
                &stapsdt_desc(layout, 0x1000, 0x3000, 0, &["p32", "first", "-4@%eax"]),
            );
            notes.extend(note_bytes(
                layout,
                b"stapsdt",
                3,
                &stapsdt_desc(layout, 0x1100, 0x3000, 0x4000, &["p32", "second", ""]),
            ));
            let elf = craft_elf(
                false,
                big_endian,
                &[
                    (".stapsdt.base", elf::SHT_PROGBITS, 0x3000, 1, vec![0]),
                    (".note.stapsdt", elf::SHT_NOTE, 0, 4, notes),
                ],
            );
            let path = dir.path().join(format!("elf32-{big_endian}"));
            std::fs::write(&path, elf).unwrap();
            let info = read_elf(&path).unwrap();
            assert_eq!(
                info.usdt,
                vec![
                    UsdtNote {
                        provider: "p32".into(),
                        name: "first".into(),
                        address: 0x1000,
                        base: 0x3000,
                        semaphore: 0,
                        args: "-4@%eax".into(),
                    },
                    UsdtNote {
                        provider: "p32".into(),
                        name: "second".into(),
                        address: 0x1100,
                        base: 0x3000,
                        semaphore: 0x4000,
                        args: String::new(),
                    },
                ],
                "big endian: {big_endian}"
            );
        }
    }

    #[test]
    fn prelinked_addresses_are_corrected() {
        let dir = TempDir::new().unwrap();
        let notes = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 0x1000, 0x3000, 0x5000, &["p", "n", ""]),
        );
        let elf = craft_elf(
            true,
            false,
            &[
                (".note.stapsdt", elf::SHT_NOTE, 0, 4, notes),
                (".stapsdt.base", elf::SHT_PROGBITS, 0x7000_3000, 1, vec![0]),
            ],
        );
        let path = dir.path().join("prelinked");
        std::fs::write(&path, elf).unwrap();
        let info = read_elf(&path).unwrap();
        assert_eq!(info.usdt[0].address, 0x7000_1000);
        assert_eq!(info.usdt[0].semaphore, 0x7000_5000);
        assert_eq!(info.usdt[0].base, 0x3000);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = TempDir::new().unwrap();
        let shown = |e: &ElfError, path: &Path| {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(e.path(), path);
            msg
        };

        let missing = dir.path().join("missing");
        let err = read_elf(&missing).unwrap_err();
        assert!(matches!(err, ElfError::NotFound { .. }), "{err:?}");
        shown(&err, &missing);

        let text = dir.path().join("script.sh");
        std::fs::write(&text, "#!/bin/sh\necho hello\n").unwrap();
        let err = read_elf(&text).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
        assert!(shown(&err, &text).contains("not an ELF file"));

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let err = read_elf(&empty).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
        assert!(shown(&err, &empty).contains("empty"));

        let err = read_elf(dir.path()).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
        shown(&err, dir.path());

        // An ELF header whose section headers lie past the end of the file.
        let prog = build_prog(dir.path());
        let truncated = dir.path().join("truncated");
        std::fs::write(&truncated, &std::fs::read(&prog).unwrap()[..200]).unwrap();
        let err = read_elf(&truncated).unwrap_err();
        assert!(matches!(err, ElfError::Malformed { .. }), "{err:?}");
        assert!(shown(&err, &truncated).starts_with("malformed ELF file"));

        // A stapsdt note whose strings are not terminated.
        let mut desc = stapsdt_desc(LE64, 1, 2, 0, &["p"]);
        desc.extend_from_slice(b"unterminated");
        let elf = craft_elf(
            true,
            false,
            &[(
                ".note.stapsdt",
                elf::SHT_NOTE,
                0,
                4,
                note_bytes(LE64, b"stapsdt", 3, &desc),
            )],
        );
        let bad_note = dir.path().join("bad_note");
        std::fs::write(&bad_note, elf).unwrap();
        let err = read_elf(&bad_note).unwrap_err();
        assert!(
            matches!(err, ElfError::MalformedNote { index: 0, .. }),
            "{err:?}"
        );
        let msg = shown(&err, &bad_note);
        assert!(msg.starts_with("malformed USDT note #0 in "), "{msg}");
        assert!(msg.contains("not NUL-terminated"), "{msg}");
    }

    /// Reading only the tables the parsers use gives what parsing the whole
    /// file gives, on the system's binaries and on the test's own.
    #[test]
    fn reading_the_tables_equals_parsing_the_whole_file() {
        let dir = TempDir::new().unwrap();
        let mut files = vec![
            build_prog(dir.path()),
            build_lib(dir.path(), "libusdt.so", &[]),
            build_lib(dir.path(), "libstripped.so", &["-s"]),
        ];
        files.extend(
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/bin/python3.11",
                "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
            ]
            .map(PathBuf::from)
            .into_iter()
            .filter(|p| p.exists()),
        );
        for path in &files {
            let whole = std::fs::read(path).unwrap();
            let read = read_elf(path).unwrap();
            assert_eq!(
                read,
                parse_bytes(path, &whole).unwrap(),
                "{}",
                path.display()
            );
            assert!(!read.symbols.is_empty(), "{}", path.display());
            let functions = read_functions(path, |_| true).unwrap();
            let class = class(path, &whole).unwrap();
            let expected = if class == elf::ELFCLASS32 {
                functions_class::<elf::FileHeader32<Endianness>>(path, &whole, |_| true)
            } else {
                functions_class::<elf::FileHeader64<Endianness>>(path, &whole, |_| true)
            };
            assert_eq!(functions, expected.unwrap(), "{}", path.display());
        }
    }

    /// A table that claims more than is read from one file (a sparse file
    /// of a few blocks may claim gigabytes) is refused before it is read.
    #[test]
    fn tables_beyond_the_read_limit_are_refused() {
        let dir = TempDir::new().unwrap();
        let lib = build_lib(dir.path(), "libusdt.so", &[]);
        let mut bytes = std::fs::read(&lib).unwrap();
        let header = elf::FileHeader64::<Endianness>::parse(&*bytes).unwrap();
        let endian = header.endian().unwrap();
        let shoff = header.e_shoff(endian) as usize;
        let sections = header.sections(endian, &*bytes).unwrap();
        let (index, _) = sections
            .enumerate()
            .find(|(_, s)| s.sh_type(endian) == elf::SHT_SYMTAB)
            .unwrap();
        // sh_size of .symtab: 8 bytes at 32 in its 64-byte header.
        let at = shoff + index.0 * 64 + 32;
        let claimed = image::MAX_READ_BYTES + (1 << 20);
        bytes[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
        let sparse = dir.path().join("sparse");
        std::fs::write(&sparse, &bytes).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&sparse)
            .unwrap();
        file.set_len(2 * claimed).unwrap();
        let err = read_elf(&sparse).unwrap_err();
        assert!(matches!(err, ElfError::TooLarge { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: its symbol, string and note tables add up to 257 MiB, more than the 256 MiB the exporter reads from one file",
                sparse.display()
            )
        );
    }

    /// A file truncated or rewritten in place while it is read is an error
    /// that says so (a mapped file faulted the exporter with SIGBUS here).
    #[test]
    fn a_file_changed_while_read_is_an_error() {
        let dir = TempDir::new().unwrap();
        let lib = build_lib(dir.path(), "libusdt.so", &[]);
        let bytes = std::fs::read(&lib).unwrap();

        // Truncated after it was opened: the section headers, at its end, are gone.
        let (file, metadata) = open(&lib).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&lib)
            .unwrap()
            .set_len(bytes.len() as u64 / 2)
            .unwrap();
        let err = read_open_elf(&lib, &file, &metadata).unwrap_err();
        assert!(matches!(err, ElfError::Changed { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{} changed while it was read (it was {} bytes long when opened, and reading at byte ", lib.display(), bytes.len())), "{msg}");
        assert!(
            msg.ends_with("found its end: it was truncated); it is read again at the next attempt"),
            "{msg}"
        );

        // Rewritten to its old length: every read succeeds, the size and
        // modification time tell.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (file, metadata) = open(&lib).unwrap();
        std::fs::write(&lib, &bytes).unwrap();
        let err = read_open_elf(&lib, &file, &metadata).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} changed while it was read (it was {} bytes long, now {}); it is read again at the next attempt",
                lib.display(),
                bytes.len() / 2,
                bytes.len()
            )
        );
        let (file, metadata) = open(&lib).unwrap();
        let mut later = bytes.clone();
        later[0x200] ^= 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&lib, &later).unwrap();
        let err = read_open_elf(&lib, &file, &metadata).unwrap_err();
        assert!(
            err.to_string().contains("(its modification time changed)"),
            "{err}"
        );
        assert_eq!(err.path(), lib);

        // Read again once it is still: as good as new.
        assert_eq!(read_elf(&lib).unwrap().usdt.len(), 1);
    }

    /// A string table whose NULs are gone (found by fuzzing: every name ran
    /// to the table's end, gigabytes and seconds for a real binary) makes the
    /// file malformed, quickly and in little memory.
    #[test]
    fn string_table_without_nuls_is_malformed() {
        let dir = TempDir::new().unwrap();
        // 3000 functions: a .strtab of 30 kB in a file of about 100 kB.
        let source: String = (0..3000)
            .map(|i| format!("void function_{i}(void) {{}}\n"))
            .chain(["int main(void) { return 0; }\n".to_string()])
            .collect();
        let prog = cc(dir.path(), "many", &[("many.c", &source)], &[]);
        let mut bytes = std::fs::read(&prog).unwrap();
        let header = elf::FileHeader64::<Endianness>::parse(&*bytes).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, &*bytes).unwrap();
        let strtab = sections.section_by_name(endian, b".strtab").unwrap().1;
        let start = strtab.sh_offset(endian) as usize;
        let end = start + strtab.sh_size(endian) as usize;
        // Names then run into each other up to the last byte, which stays NUL.
        bytes[start + 1..end - 1].fill(b'A');
        let path = dir.path().join("no_nuls");
        std::fs::write(&path, &bytes).unwrap();
        let functions = read_functions(&path, |_| true);
        let err = read_elf(&path).unwrap_err();
        assert!(matches!(err, ElfError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("add up to more than"), "{err}");
        assert!(functions.is_err());
    }

    #[test]
    fn cache_shares_parsed_files() {
        let dir = TempDir::new().unwrap();
        let prog = build_prog(dir.path());
        let lib = build_lib(dir.path(), "libusdt.so", &[]);
        let path = dir.path().join("target");
        std::fs::copy(&prog, &path).unwrap();

        let mut cache = ElfCache::new(8);
        assert!(cache.is_empty());
        let first = cache.get(&path).unwrap();
        let again = cache.get(&path).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Another path to the same file (as /proc/PID/root/... would be).
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(&link).unwrap()));
        assert_eq!(cache.len(), 1);

        // Rewriting the file in place (same inode) makes a new entry.
        std::fs::write(&path, std::fs::read(&lib).unwrap()).unwrap();
        let rewritten = cache.get(&path).unwrap();
        assert!(!Arc::ptr_eq(&first, &rewritten));
        assert_eq!(rewritten.find_usdt(Some("libprov"), "lib_probe").len(), 1);
        assert_eq!(cache.len(), 2);

        // Errors are reported, not cached.
        assert!(cache.get(&dir.path().join("missing")).is_err());
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn cache_evicts_least_recently_used() {
        let dir = TempDir::new().unwrap();
        let prog = build_prog(dir.path());
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| {
                let p = dir.path().join(format!("copy{i}"));
                std::fs::copy(&prog, &p).unwrap();
                p
            })
            .collect();
        let mut cache = ElfCache::new(2);
        let a = cache.get(&paths[0]).unwrap();
        let b = cache.get(&paths[1]).unwrap();
        assert!(Arc::ptr_eq(&a, &cache.get(&paths[0]).unwrap()));
        cache.get(&paths[2]).unwrap(); // evicts copy1, the least recently used
        assert_eq!(cache.len(), 2);
        assert!(Arc::ptr_eq(&a, &cache.get(&paths[0]).unwrap()));
        assert!(!Arc::ptr_eq(&b, &cache.get(&paths[1]).unwrap()));
        assert_eq!(cache.len(), 2);

        let mut none = ElfCache::new(0);
        let x = none.get(&paths[0]).unwrap();
        assert!(!Arc::ptr_eq(&x, &none.get(&paths[0]).unwrap()));
        assert!(none.is_empty());
        assert_eq!(ElfCache::default().capacity, DEFAULT_CACHE_CAPACITY);
    }

    #[test]
    fn thread_safety() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<ElfCache>();
        send_sync::<ElfInfo>();
        send_sync::<ElfError>();
    }
}
