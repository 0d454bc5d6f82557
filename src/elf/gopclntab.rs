//! Go's function table (`.gopclntab`): the name, entry address and extent of
//! every function of a Go binary. The Go runtime needs it for tracebacks and
//! garbage collection, so it survives stripping (`-ldflags='-s -w'`,
//! `strip`), which removes `.symtab`: in a stripped Go binary it is the only
//! place that names the functions.
//!
//! The layout, as Go 1.16 and later write it (learnt from Go's
//! `runtime/symtab.go` and `debug/gosym`), offsets counted from the table's
//! first byte:
//!
//! - a header: a magic number in the file's byte order (`0xfffffffa` for Go
//!   1.16 and 1.17, `0xfffffff0` for 1.18 and 1.19, `0xfffffff1` from 1.20),
//!   two zero bytes, the instruction size quantum (1, 2 or 4), the pointer
//!   size (4 or 8), then pointer-sized words: the number of functions, the
//!   number of files, from 1.18 the address of the start of the text
//!   (`runtime.text`), then the offsets of the function name table, the
//!   compilation unit table, the file table, the pc-value tables and the
//!   function table;
//! - the function table: for each function, its entry and the offset of its
//!   record (from the function table's start), then the end of the last
//!   function; entries are addresses (pointer-sized) before Go 1.18 and
//!   32-bit offsets from the start of the text since;
//! - each record starts with the entry again, then the offset of the
//!   function's NUL-terminated name in the name table (a signed 32-bit
//!   number).
//!
//! Where the text starts is not always in the header: Go 1.26 leaves the
//! field zero (it needed a relocation). It is then read from the runtime's
//! module data (`runtime.firstmoduledata`, which points at the table and
//! holds the text's start), or else from the ELF entry point, which a Go
//! linker sets to the runtime's `_rt0_<arch>_linux`. Whichever gives it, every
//! function must then lie in an executable segment, or the table is not used.
//!
//! Nothing here trusts the file: every count, offset and name is checked
//! against the table's bounds, and the bytes looked at are bounded by the
//! table's size (a name table without its NULs would otherwise cost a scan
//! of the table per function).

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, SectionTable};
use object::Endianness;
use std::collections::HashMap;

/// The magic number of Go 1.16 and 1.17 tables.
const MAGIC_GO116: u32 = 0xffff_fffa;
/// The magic number of Go 1.18 and 1.19 tables.
const MAGIC_GO118: u32 = 0xffff_fff0;
/// The magic number of tables from Go 1.20 on.
const MAGIC_GO120: u32 = 0xffff_fff1;
/// The magic number of Go 1.2 to 1.15 tables, which are not read.
const MAGIC_GO12: u32 = 0xffff_fffb;

/// The sections holding the table, by the name the Go linker gives them
/// (`.data.rel.ro.gopclntab` in a position-independent executable).
const TABLE_SECTIONS: &[&[u8]] = &[b".gopclntab", b".data.rel.ro.gopclntab"];
/// Where an external linker merges the table (cgo binaries built as PIE).
const MERGED_SECTIONS: &[&[u8]] = &[b".data.rel.ro"];
/// Where the runtime's module data lives.
const MODULEDATA_SECTIONS: &[&[u8]] = &[b".noptrdata", b".data"];
/// Sections only a Go binary has (besides the table).
const GO_MARKERS: &[&[u8]] = &[b".go.buildinfo", b".note.go.buildid"];

/// Header candidates tried when the table must be searched for in a merged
/// section: real files have one; a hostile file could have thousands.
const MAX_CANDIDATES: usize = 8;

/// The word of the module data holding the text's start, counted in
/// pointers: after the table pointer (1 word), six slices (3 words each), the
/// find-function table (1) and the lowest and highest pc (2).
const MODULEDATA_TEXT_WORD: usize = 22;

/// Whether the Go reader looks into the section named `name`: the table, the
/// section an external linker merges it into, and those holding the
/// runtime's module data. A reader that loads only some sections of a file
/// must load these for the Go functions of stripped binaries to be found.
pub(super) fn wanted_section(name: &[u8]) -> bool {
    TABLE_SECTIONS.contains(&name)
        || MERGED_SECTIONS.contains(&name)
        || MODULEDATA_SECTIONS.contains(&name)
}

/// Whether a section named `name` marks a file as Go's, so that the reader
/// looks into the sections [`wanted_section`] names.
pub(super) fn marks_go(name: &[u8]) -> bool {
    TABLE_SECTIONS.contains(&name) || GO_MARKERS.contains(&name)
}

/// Which Go releases wrote a table: its layout changed in 1.16, 1.18 and 1.20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PclntabVersion {
    /// Go 1.16 and 1.17: function entries are addresses.
    Go116,
    /// Go 1.18 and 1.19: entries are 32-bit offsets from the start of the text.
    Go118,
    /// Go 1.20 and later: entries as in 1.18 (the records changed after the name).
    Go120,
}

/// Why a Go function table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PclntabError {
    reason: String,
}

fn error(reason: impl Into<String>) -> PclntabError {
    PclntabError {
        reason: reason.into(),
    }
}

/// One function of a Go function table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    /// Its name, as Go spells it: `main.work`, `net/http.(*conn).serve`.
    pub name: String,
    /// Its entry: the link-time address, once placed by [`Pclntab::functions`].
    pub entry: u64,
    /// Bytes up to the next function's entry (alignment padding included).
    pub size: u64,
}

/// A parsed Go function table header, over the table's bytes.
#[derive(Debug, Clone)]
pub struct Pclntab<'a> {
    table: &'a [u8],
    version: PclntabVersion,
    big_endian: bool,
    ptr_size: usize,
    nfunc: usize,
    /// The header's start of the text (Go 1.18 and later; 0 when absent).
    text_start: u64,
    /// Offset of the function name table.
    funcnametab: usize,
    /// Offset of the function table.
    functab: usize,
}

impl<'a> Pclntab<'a> {
    /// Reads the header of the table starting at `table[0]`; `table` may run
    /// past the table's end (the rest of its section).
    ///
    /// # Errors
    ///
    /// When the header is not one of Go 1.16 or later (a Go 1.2 to 1.15 table
    /// is refused by name), or its offsets lie outside `table`.
    pub fn parse(table: &'a [u8]) -> Result<Pclntab<'a>, PclntabError> {
        let head = table
            .get(..8)
            .ok_or_else(|| error(format!("{} bytes, less than a header", table.len())))?;
        let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let be = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let (version, big_endian) = match (le, be) {
            (MAGIC_GO116, _) => (PclntabVersion::Go116, false),
            (_, MAGIC_GO116) => (PclntabVersion::Go116, true),
            (MAGIC_GO118, _) => (PclntabVersion::Go118, false),
            (_, MAGIC_GO118) => (PclntabVersion::Go118, true),
            (MAGIC_GO120, _) => (PclntabVersion::Go120, false),
            (_, MAGIC_GO120) => (PclntabVersion::Go120, true),
            (MAGIC_GO12, _) | (_, MAGIC_GO12) => {
                return Err(error(
                    "a Go 1.2 to 1.15 table (magic 0xfffffffb): only those of Go 1.16 and later are read",
                ))
            }
            _ => return Err(error(format!("unknown magic number {le:#010x}"))),
        };
        if head[4] != 0 || head[5] != 0 || !matches!(head[6], 1 | 2 | 4) {
            return Err(error(format!(
                "header bytes 4 to 6 are {:?}, not two zeros and an instruction size of 1, 2 or 4",
                &head[4..7]
            )));
        }
        let ptr_size = usize::from(head[7]);
        if ptr_size != 4 && ptr_size != 8 {
            return Err(error(format!("pointer size {ptr_size}, not 4 or 8")));
        }
        let mut pcln = Pclntab {
            table,
            version,
            big_endian,
            ptr_size,
            nfunc: 0,
            text_start: 0,
            funcnametab: 0,
            functab: 0,
        };
        // Word indexes of the header fields read.
        let (text, names, functab) = match version {
            PclntabVersion::Go116 => (None, 2, 6),
            PclntabVersion::Go118 | PclntabVersion::Go120 => (Some(2), 3, 7),
        };
        let offset = |index: usize, what: &str| -> Result<usize, PclntabError> {
            let value = pcln.word(index)?;
            usize::try_from(value)
                .ok()
                .filter(|v| *v <= table.len())
                .ok_or_else(|| {
                    error(format!(
                        "the {what} offset {value:#x} lies past the end of the table's {} bytes",
                        table.len()
                    ))
                })
        };
        let nfunc = pcln.word(0)?;
        let funcnametab = offset(names, "name table")?;
        let functab_at = offset(functab, "function table")?;
        pcln.nfunc = usize::try_from(nfunc)
            .map_err(|_| error(format!("{nfunc} functions: more than can be addressed")))?;
        pcln.text_start = match text {
            Some(index) => pcln.word(index)?,
            None => 0,
        };
        pcln.funcnametab = funcnametab;
        pcln.functab = functab_at;
        Ok(pcln)
    }

    /// Which Go releases wrote the table.
    pub fn version(&self) -> PclntabVersion {
        self.version
    }

    /// The number of functions the header declares.
    pub fn function_count(&self) -> usize {
        self.nfunc
    }

    /// Whether entries are offsets from the start of the text (Go 1.18 and
    /// later), which must be known to place them.
    pub fn entries_are_offsets(&self) -> bool {
        self.version >= PclntabVersion::Go118
    }

    /// The start of the text as the header gives it, if it does (Go 1.18 to
    /// 1.25; Go 1.26 leaves it zero, older tables have no such field).
    pub fn header_text_start(&self) -> Option<u64> {
        (self.entries_are_offsets() && self.text_start != 0).then_some(self.text_start)
    }

    /// Pointer size of the binary: 4 or 8.
    pub fn pointer_size(&self) -> usize {
        self.ptr_size
    }

    /// Whether the table is big-endian.
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// The offset of the function name table from the table's start.
    pub fn name_table_offset(&self) -> usize {
        self.funcnametab
    }

    /// An unsigned number of `width` (4 or 8) bytes in the table's byte order.
    fn uint(&self, bytes: &[u8]) -> u64 {
        read_uint(bytes, self.big_endian)
    }

    /// Header word `index` (pointer-sized, after the first 8 bytes).
    fn word(&self, index: usize) -> Result<u64, PclntabError> {
        let at = 8 + index * self.ptr_size;
        self.table
            .get(at..at + self.ptr_size)
            .map(|bytes| self.uint(bytes))
            .ok_or_else(|| {
                error(format!(
                    "{} bytes, too short for its header",
                    self.table.len()
                ))
            })
    }

    /// Every named function, in table order (by entry), placed: entries
    /// that are offsets (Go 1.18 and later) are added to `text_start`; older
    /// tables hold addresses, and `text_start` is not used.
    ///
    /// # Errors
    ///
    /// When the function table or a record lies outside the table, entries
    /// are out of order or disagree with their records, a name lies outside
    /// the table or is not NUL-terminated, names add up to more bytes than
    /// the table (a name table without its NULs), or an entry placed past
    /// `u64::MAX`.
    pub fn functions(&self, text_start: u64) -> Result<Vec<GoFunction>, PclntabError> {
        let field = if self.entries_are_offsets() {
            4
        } else {
            self.ptr_size
        };
        let functab_len = self
            .nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(field));
        let functab = functab_len
            .and_then(|len| self.table.get(self.functab..)?.get(..len))
            .ok_or_else(|| {
                error(format!(
                    "its {} functions do not fit in the function table at {:#x} of a {}-byte table",
                    self.nfunc,
                    self.functab,
                    self.table.len()
                ))
            })?;
        let at = |i: usize| self.uint(&functab[i * field..(i + 1) * field]);
        let names = self.table.get(self.funcnametab..).unwrap_or_default();
        // Bytes of names scanned or copied; real tables stay far below.
        let mut budget = self.table.len().saturating_mul(2).saturating_add(1 << 16);
        let mut seen: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut out = Vec::with_capacity(self.nfunc);
        for i in 0..self.nfunc {
            let entry = at(2 * i);
            let record_at = at(2 * i + 1);
            let next = at(2 * i + 2);
            if next < entry {
                return Err(error(format!(
                    "function #{i} ends at {next:#x}, before its entry {entry:#x}: the table is not sorted"
                )));
            }
            let record = usize::try_from(record_at)
                .ok()
                .and_then(|r| r.checked_add(self.functab))
                .and_then(|r| self.table.get(r..)?.get(..field + 4))
                .ok_or_else(|| {
                    error(format!(
                        "the record of function #{i} at {record_at:#x} lies outside the table"
                    ))
                })?;
            let own_entry = self.uint(&record[..field]);
            if own_entry != entry {
                return Err(error(format!(
                    "function #{i}: its record says entry {own_entry:#x}, the function table {entry:#x}"
                )));
            }
            let name_bytes = &record[field..field + 4];
            let name_off = if self.big_endian {
                i32::from_be_bytes([name_bytes[0], name_bytes[1], name_bytes[2], name_bytes[3]])
            } else {
                i32::from_le_bytes([name_bytes[0], name_bytes[1], name_bytes[2], name_bytes[3]])
            };
            let name_at = usize::try_from(name_off)
                .map_err(|_| error(format!("function #{i}: negative name offset {name_off}")))?;
            let (start, end) = match seen.get(&name_at) {
                Some(range) => *range,
                None => {
                    let tail = names.get(name_at..).ok_or_else(|| {
                        error(format!(
                            "function #{i}: its name at {name_at:#x} lies past the name table's end"
                        ))
                    })?;
                    let len = tail.iter().position(|b| *b == 0);
                    let scanned = len.map_or(tail.len(), |n| n + 1);
                    budget = budget.checked_sub(scanned).ok_or_else(too_long)?;
                    let len = len.ok_or_else(|| {
                        error(format!(
                            "function #{i}: its name at {name_at:#x} is not NUL-terminated"
                        ))
                    })?;
                    seen.insert(name_at, (name_at, name_at + len));
                    (name_at, name_at + len)
                }
            };
            if start == end {
                continue;
            }
            // Counted as copied: bytes that are not UTF-8 grow to three.
            let name = String::from_utf8_lossy(&names[start..end]).into_owned();
            budget = budget.checked_sub(name.len()).ok_or_else(too_long)?;
            let address = if self.entries_are_offsets() {
                text_start.checked_add(entry).ok_or_else(|| {
                    error(format!(
                        "function #{i}: entry {entry:#x} past a text start of {text_start:#x} overflows"
                    ))
                })?
            } else {
                entry
            };
            out.push(GoFunction {
                name,
                entry: address,
                size: next - entry,
            });
        }
        Ok(out)
    }
}

fn too_long() -> PclntabError {
    error(
        "function names add up to more bytes than the table holds (a name table without its NULs?)",
    )
}

/// An unsigned number of 4 or 8 bytes.
fn read_uint(bytes: &[u8], big_endian: bool) -> u64 {
    match (bytes.len(), big_endian) {
        (4, false) => u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        (4, true) => u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        (_, false) => u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8])),
        (_, true) => u64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8])),
    }
}

/// How the start of the text was found, for messages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextSource {
    /// The table holds addresses (Go 1.16, 1.17): no start needed.
    Addresses,
    /// The table's header (Go 1.18 to 1.25).
    Header,
    /// The runtime's module data.
    ModuleData,
    /// The ELF entry point, at the runtime's `_rt0_*` function.
    EntryPoint,
}

/// Where the table is: its bytes (to the end of its section) and its
/// link-time address.
struct Located<'a> {
    bytes: &'a [u8],
    address: u64,
}

/// The functions of the Go function table of an ELF file, placed at their
/// link-time addresses, and how the text's start was found. A file with
/// neither a table nor a Go section gives none.
///
/// # Errors
///
/// Why a Go binary's table could not be found or read, or its functions
/// placed (the text's start is unknown or puts them outside the executable
/// segments).
pub(super) fn read<Elf: FileHeader<Endian = Endianness>>(
    header: &Elf,
    endian: Endianness,
    data: &[u8],
    sections: &SectionTable<'_, Elf>,
) -> Result<(Vec<GoFunction>, Option<TextSource>), String> {
    // The few sections looked into, by name, in section order.
    let relevant: Vec<(&[u8], &Elf::SectionHeader)> = sections
        .iter()
        .filter_map(|s| {
            let name = sections.section_name(endian, s).ok()?;
            (wanted_section(name) || GO_MARKERS.contains(&name)).then_some((name, s))
        })
        .collect();
    let named = |wanted: &'static [&'static [u8]]| {
        relevant
            .iter()
            .filter(move |(name, _)| wanted.contains(name))
            .map(|(_, s)| *s)
    };
    let go = relevant.iter().any(|(name, _)| marks_go(name));
    if !go {
        return Ok((Vec::new(), None));
    }
    let located = match named(TABLE_SECTIONS).next() {
        Some(section) => {
            let bytes = section
                .data(endian, data)
                .map_err(|_| "its section lies outside the file".to_string())?;
            Located {
                bytes,
                address: section.sh_addr(endian).into(),
            }
        }
        None => named(MERGED_SECTIONS)
            .filter(|s| s.sh_type(endian) == elf::SHT_PROGBITS)
            .find_map(|s| search(s.data(endian, data).ok()?, s.sh_addr(endian).into()))
            .ok_or_else(|| {
                "a Go binary without a .gopclntab section, and no Go function table found in .data.rel.ro"
                    .to_string()
            })?,
    };
    let table = Pclntab::parse(located.bytes).map_err(|e| e.to_string())?;
    let executable: Vec<(u64, u64)> = header
        .program_headers(endian, data)
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD && p.p_flags(endian) & elf::PF_X != 0)
        .map(|p| (p.p_vaddr(endian).into(), p.p_memsz(endian).into()))
        .collect();
    let (text, source) = if !table.entries_are_offsets() {
        (0, TextSource::Addresses)
    } else if let Some(text) = table.header_text_start() {
        (text, TextSource::Header)
    } else {
        let from_moduledata = named(MODULEDATA_SECTIONS).find_map(|s| {
            text_from_moduledata(&table, located.address, s.data(endian, data).ok()?)
        });
        match from_moduledata {
            Some(text) => (text, TextSource::ModuleData),
            None => {
                let entry: u64 = header.e_entry(endian).into();
                let text = text_from_entry(&table, entry).map_err(|e| e.to_string())?;
                // The Go linker starts .text with the runtime's text; an
                // external linker puts its own start code (the entry) first.
                if let Some((_, section)) = sections.section_by_name(endian, b".text") {
                    let start: u64 = section.sh_addr(endian).into();
                    if start != text {
                        return Err(format!(
                            "the table does not say where the text starts, the runtime's module data was not found, and the entry point {entry:#x} is not the runtime's _rt0_ function (it would put the text at {text:#x}, .text starts at {start:#x}: an external linker's entry point?)"
                        ));
                    }
                }
                (text, TextSource::EntryPoint)
            }
        }
    };
    let functions = table.functions(text).map_err(|e| e.to_string())?;
    if let Some(outside) = functions.iter().find(|f| {
        !executable
            .iter()
            .any(|(start, size)| f.entry >= *start && f.entry - start < *size)
    }) {
        return Err(format!(
            "{} at {:#x} lies outside the executable segments (the text start {text:#x} came from {}): the table does not match this file",
            outside.name,
            outside.entry,
            match source {
                TextSource::Addresses => "the entries themselves",
                TextSource::Header => "the table's header",
                TextSource::ModuleData => "the runtime's module data",
                TextSource::EntryPoint => "the entry point",
            }
        ));
    }
    Ok((functions, Some(source)))
}

/// The first Go function table in a section an external linker merged it
/// into (starting at `address`), by its header: a table that reads whole.
fn search(section: &[u8], address: u64) -> Option<Located<'_>> {
    let mut tried = 0;
    let mut at = 0;
    while at + 8 <= section.len() && tried < MAX_CANDIDATES {
        let b = &section[at..at + 8];
        let magic_le = b[1..4] == [0xff; 3] && matches!(b[0], 0xf0 | 0xf1 | 0xfa);
        let magic_be = b[..3] == [0xff; 3] && matches!(b[3], 0xf0 | 0xf1 | 0xfa);
        if (magic_le || magic_be) && b[4] == 0 && b[5] == 0 {
            tried += 1;
            let bytes = &section[at..];
            // A header of zeros after the magic reads as a table of nothing.
            let whole =
                Pclntab::parse(bytes).is_ok_and(|t| t.functions(0).is_ok_and(|f| !f.is_empty()));
            if whole {
                return Some(Located {
                    bytes,
                    address: address.checked_add(at as u64)?,
                });
            }
        }
        at += 4;
    }
    None
}

/// The start of the text from the runtime's module data in `section`: the
/// structure whose first word is the table's address and whose second (the
/// name table's address) agrees with the header.
fn text_from_moduledata(table: &Pclntab<'_>, table_address: u64, section: &[u8]) -> Option<u64> {
    let ptr = table.ptr_size;
    let names = table_address.checked_add(table.funcnametab as u64)?;
    let words = section.chunks_exact(ptr);
    let count = words.len();
    let word = |i: usize| read_uint(&section[i * ptr..(i + 1) * ptr], table.big_endian);
    (0..count.saturating_sub(MODULEDATA_TEXT_WORD)).find_map(|i| {
        (word(i) == table_address && word(i + 1) == names)
            .then(|| word(i + MODULEDATA_TEXT_WORD))
            .filter(|text| *text != 0)
    })
}

/// Whether `name` is the runtime's entry for an executable:
/// `_rt0_<arch>_<os>` (not `_rt0_<arch>`, which it jumps to, nor the
/// `_rt0_<arch>_<os>_lib` of a shared library).
fn is_entry_function(name: &str) -> bool {
    name.strip_prefix("_rt0_")
        .is_some_and(|rest| rest.matches('_').count() == 1 && !rest.ends_with("_lib"))
}

/// The start of the text from the ELF entry point, which the Go linker sets
/// to the runtime's `_rt0_<arch>_<os>` (not so when an external linker
/// links the program: the check of the caller then refuses the result).
fn text_from_entry(table: &Pclntab<'_>, entry: u64) -> Result<u64, PclntabError> {
    let relative = table.functions(0)?;
    let rt0 = relative
        .iter()
        .find(|f| is_entry_function(&f.name))
        .ok_or_else(|| {
            error("the table does not say where the text starts, the module data was not found, and no _rt0_ function marks the entry point")
        })?;
    entry.checked_sub(rt0.entry).ok_or_else(|| {
        error(format!(
            "the entry point {entry:#x} lies before {}'s offset {:#x}: it is not the Go runtime's",
            rt0.name, rt0.entry
        ))
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A table of `functions` (name, entry: an address for Go 1.16, an
    /// offset otherwise, size) as Go `version` writes it.
    pub(crate) fn craft(
        version: PclntabVersion,
        big_endian: bool,
        ptr_size: usize,
        text_start: u64,
        functions: &[(&str, u64, u64)],
    ) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, value: u64, width: usize| match (width, big_endian) {
            (4, false) => out.extend_from_slice(&(value as u32).to_le_bytes()),
            (4, true) => out.extend_from_slice(&(value as u32).to_be_bytes()),
            (_, false) => out.extend_from_slice(&value.to_le_bytes()),
            (_, true) => out.extend_from_slice(&value.to_be_bytes()),
        };
        let magic = match version {
            PclntabVersion::Go116 => MAGIC_GO116,
            PclntabVersion::Go118 => MAGIC_GO118,
            PclntabVersion::Go120 => MAGIC_GO120,
        };
        let field = if version == PclntabVersion::Go116 {
            ptr_size
        } else {
            4
        };
        let words = if version == PclntabVersion::Go116 {
            7
        } else {
            8
        };
        let header_len = 8 + words * ptr_size;
        // The function table, its records, then the name table (Go puts the
        // names first; the order is the header's to tell): names last, so
        // that a cut inside them leaves a name without its NUL.
        let mut names = Vec::new();
        let mut name_offsets = Vec::new();
        for (name, _, _) in functions {
            name_offsets.push(names.len());
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let functab_at = header_len;
        let functab_len = (functions.len() * 2 + 1) * field;
        let records_at = functab_len.next_multiple_of(8);
        let record_len = field + 4;
        let mut functab = Vec::new();
        for (i, (_, entry, _)) in functions.iter().enumerate() {
            put(&mut functab, *entry, field);
            put(&mut functab, (records_at + i * record_len) as u64, field);
        }
        let end = functions.last().map_or(0, |(_, e, s)| e + s);
        put(&mut functab, end, field);
        functab.resize(records_at, 0);
        for (i, (_, entry, _)) in functions.iter().enumerate() {
            put(&mut functab, *entry, field);
            put(&mut functab, name_offsets[i] as u64, 4);
        }
        let names_at = functab_at + functab.len();

        let mut out = Vec::new();
        put(&mut out, u64::from(magic), 4);
        out.extend_from_slice(&[0, 0, 1, ptr_size as u8]);
        let mut header_words = vec![functions.len() as u64, 1];
        if version != PclntabVersion::Go116 {
            header_words.push(text_start);
        }
        // Names, cu table, file table, pc tables (all empty here), functions.
        header_words.extend([
            names_at as u64,
            functab_at as u64,
            functab_at as u64,
            functab_at as u64,
            functab_at as u64,
        ]);
        for w in header_words {
            put(&mut out, w, ptr_size);
        }
        assert_eq!(out.len(), header_len);
        out.extend_from_slice(&functab);
        out.extend_from_slice(&names);
        out
    }

    const FUNCTIONS: &[(&str, u64, u64)] = &[
        ("internal/cpu.Initialize", 0x0, 0x40),
        ("main.work", 0x40, 0x20),
        ("uexp.example/fixture/tally.(*Tally).Add", 0x60, 0x20),
        ("net/http.(*conn).serve", 0x80, 0x1000),
    ];

    #[test]
    fn every_version_byte_order_and_pointer_size() {
        for version in [
            PclntabVersion::Go116,
            PclntabVersion::Go118,
            PclntabVersion::Go120,
        ] {
            for big_endian in [false, true] {
                for ptr_size in [4, 8] {
                    let base = 0x40_1000;
                    // Go 1.16 entries are addresses.
                    let shifted: Vec<(&str, u64, u64)> = FUNCTIONS
                        .iter()
                        .map(|(n, e, s)| {
                            (
                                *n,
                                if version == PclntabVersion::Go116 {
                                    e + base
                                } else {
                                    *e
                                },
                                *s,
                            )
                        })
                        .collect();
                    let bytes = craft(version, big_endian, ptr_size, base, &shifted);
                    let table = Pclntab::parse(&bytes).unwrap();
                    let case = format!("{version:?} big endian {big_endian} ptr {ptr_size}");
                    assert_eq!(table.version(), version, "{case}");
                    assert_eq!(table.function_count(), 4, "{case}");
                    assert_eq!(table.pointer_size(), ptr_size, "{case}");
                    assert_eq!(table.big_endian(), big_endian, "{case}");
                    let expected_start = (version != PclntabVersion::Go116).then_some(base);
                    assert_eq!(table.header_text_start(), expected_start, "{case}");
                    let got = table.functions(base).unwrap();
                    let want: Vec<GoFunction> = FUNCTIONS
                        .iter()
                        .map(|(n, e, s)| GoFunction {
                            name: n.to_string(),
                            entry: base + e,
                            size: *s,
                        })
                        .collect();
                    assert_eq!(got, want, "{case}");
                }
            }
        }
    }

    #[test]
    fn a_zero_text_start_is_no_text_start() {
        let bytes = craft(PclntabVersion::Go120, false, 8, 0, FUNCTIONS);
        let table = Pclntab::parse(&bytes).unwrap();
        assert_eq!(table.header_text_start(), None);
        assert!(table.entries_are_offsets());
        assert_eq!(table.functions(0x1000).unwrap()[1].entry, 0x1040);
    }

    /// Replaces the 4 bytes at `at`.
    fn patch(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn reason(bytes: &[u8]) -> String {
        match Pclntab::parse(bytes) {
            Err(e) => e.to_string(),
            Ok(table) => table.functions(0x1000).unwrap_err().to_string(),
        }
    }

    #[test]
    fn broken_tables_are_errors_that_say_what_is_broken() {
        let good = craft(PclntabVersion::Go118, false, 8, 0x1000, FUNCTIONS);
        assert!(reason(&good[..5]).contains("less than a header"));
        assert!(reason(&good[..20]).contains("too short for its header"));

        let mut old = good.clone();
        patch(&mut old, 0, MAGIC_GO12);
        assert!(reason(&old).contains("only those of Go 1.16 and later"));
        let mut unknown = good.clone();
        patch(&mut unknown, 0, 0x1234_5678);
        assert!(reason(&unknown).contains("unknown magic number 0x12345678"));
        let mut quantum = good.clone();
        quantum[6] = 3;
        assert!(reason(&quantum).contains("instruction size"));
        let mut pointer = good.clone();
        pointer[7] = 2;
        assert!(reason(&pointer).contains("pointer size 2"));

        // Header words: nfunc at 8, names at 32, functab at 64.
        let mut many = good.clone();
        many[8..16].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(reason(&many).contains("do not fit in the function table"));
        let mut names = good.clone();
        names[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(reason(&names).contains("name table offset"));

        // The function table: entries and record offsets, 4 bytes each.
        let functab = u64::from_le_bytes(good[64..72].try_into().unwrap()) as usize;
        let mut unsorted = good.clone();
        patch(&mut unsorted, functab + 16, 0x10);
        let msg = reason(&unsorted);
        assert!(msg.contains("the table is not sorted"), "{msg}");
        let mut record = good.clone();
        patch(&mut record, functab + 4, 0xffff_fff0);
        assert!(reason(&record).contains("lies outside the table"));
        let mut entry = good.clone();
        patch(&mut entry, functab + 8, 0x41);
        let msg = reason(&entry);
        assert!(msg.contains("its record says entry 0x40"), "{msg}");

        // The first record: entry, then name offset.
        let first = functab
            + u32::from_le_bytes(good[functab + 4..functab + 8].try_into().unwrap()) as usize;
        let mut negative = good.clone();
        patch(&mut negative, first + 4, u32::MAX);
        assert!(reason(&negative).contains("negative name offset -1"));
        let mut past = good.clone();
        patch(&mut past, first + 4, 0x10_0000);
        assert!(reason(&past).contains("past the name table's end"));

        // A name table without its NULs (it is last here): names run to the end.
        let names_at = u64::from_le_bytes(good[32..40].try_into().unwrap()) as usize;
        let mut unterminated = good.clone();
        unterminated[names_at..].fill(b'A');
        let msg = reason(&unterminated);
        assert!(msg.contains("is not NUL-terminated"), "{msg}");
        let msg = reason(&good[..good.len() - 1]);
        assert!(msg.contains("function #3: its name at"), "{msg}");
    }

    /// Every record naming one long name: copying it per function would take
    /// the name's length times the functions, far more than the table.
    #[test]
    fn names_copied_are_bounded_by_the_table() {
        let long = "x".repeat(4000);
        let mut functions: Vec<(&str, u64, u64)> = vec![(long.as_str(), 0, 16)];
        functions.extend((1..64).map(|i| ("y", i * 16, 16)));
        let mut bytes = craft(PclntabVersion::Go118, false, 8, 0x1000, &functions);
        let functab = u64::from_le_bytes(bytes[64..72].try_into().unwrap()) as usize;
        let record = |bytes: &[u8], i: usize| {
            functab
                + u32::from_le_bytes(
                    bytes[functab + 8 * i + 4..functab + 8 * i + 8]
                        .try_into()
                        .unwrap(),
                ) as usize
        };
        // Two functions of one name (a Go function and its ABI wrapper) are fine.
        let at = record(&bytes, 1);
        patch(&mut bytes, at + 4, 0);
        let two = Pclntab::parse(&bytes).unwrap().functions(0).unwrap();
        assert_eq!(two[0].name, two[1].name);
        for i in 2..64 {
            let at = record(&bytes, i);
            patch(&mut bytes, at + 4, 0);
        }
        let msg = reason(&bytes);
        assert!(
            msg.contains("names add up to more bytes than the table"),
            "{msg}"
        );
    }

    #[test]
    fn unnamed_functions_are_left_out_and_sizes_reach_the_next_entry() {
        let bytes = craft(
            PclntabVersion::Go120,
            false,
            8,
            0x1000,
            &[("a", 0, 0x10), ("", 0x10, 0x10), ("b", 0x20, 0x8)],
        );
        let functions = Pclntab::parse(&bytes).unwrap().functions(0x1000).unwrap();
        let got: Vec<(&str, u64, u64)> = functions
            .iter()
            .map(|f| (f.name.as_str(), f.entry, f.size))
            .collect();
        assert_eq!(got, [("a", 0x1000, 0x10), ("b", 0x1020, 0x8)]);
    }

    #[test]
    fn the_entry_point_places_the_text_at_rt0() {
        let bytes = craft(
            PclntabVersion::Go120,
            false,
            8,
            0,
            &[
                ("main.main", 0, 0x40),
                ("_rt0_amd64", 0x40, 0x20),
                ("_rt0_amd64_linux", 0x60, 0x20),
                ("_rt0_amd64_linux_lib", 0x80, 0x20),
            ],
        );
        let table = Pclntab::parse(&bytes).unwrap();
        assert_eq!(text_from_entry(&table, 0x40_1060).unwrap(), 0x40_1000);
        let msg = text_from_entry(&table, 0x10).unwrap_err().to_string();
        assert!(msg.contains("not the Go runtime's"), "{msg}");
        let none = craft(
            PclntabVersion::Go120,
            false,
            8,
            0,
            &[("main.main", 0, 0x40)],
        );
        let table = Pclntab::parse(&none).unwrap();
        let msg = text_from_entry(&table, 0x40_1040).unwrap_err().to_string();
        assert!(msg.contains("no _rt0_ function"), "{msg}");
    }

    #[test]
    fn module_data_gives_the_text_start() {
        let bytes = craft(PclntabVersion::Go120, false, 8, 0, FUNCTIONS);
        let table = Pclntab::parse(&bytes).unwrap();
        let table_address = 0x4c_0000u64;
        let mut section = vec![0u8; 16];
        let mut words = vec![0u64; 30];
        words[0] = table_address;
        words[1] = table_address + table.name_table_offset() as u64;
        words[MODULEDATA_TEXT_WORD] = 0x40_1000;
        for w in &words {
            section.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(
            text_from_moduledata(&table, table_address, &section),
            Some(0x40_1000)
        );
        // The name table's address must agree.
        section[24..32].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(text_from_moduledata(&table, table_address, &section), None);
        assert_eq!(text_from_moduledata(&table, table_address, &[]), None);
    }

    #[test]
    fn a_table_is_found_by_its_header_in_a_merged_section() {
        let table = craft(PclntabVersion::Go118, false, 8, 0x1000, FUNCTIONS);
        let mut section = vec![0u8; 64];
        // A false start: the magic number without a table after it.
        section[8..16].copy_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
        section.extend_from_slice(&table);
        let found = search(&section, 0x10_0000).unwrap();
        assert_eq!(found.address, 0x10_0040);
        assert_eq!(found.bytes.len(), table.len());
        assert!(search(&section[..64], 0).is_none());
    }

    use crate::testing::go_build;

    /// What [`read`] finds in the 64-bit ELF file `bytes`.
    fn read_bytes(bytes: &[u8]) -> Result<(Vec<GoFunction>, Option<TextSource>), String> {
        let header = elf::FileHeader64::<Endianness>::parse(bytes).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, bytes).unwrap();
        read(header, endian, bytes, &sections)
    }

    /// Function symbols of `.symtab`, by address.
    fn symtab(bytes: &[u8]) -> HashMap<u64, Vec<String>> {
        use object::read::elf::Sym;
        let header = elf::FileHeader64::<Endianness>::parse(bytes).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, bytes).unwrap();
        let table = sections.symbols(endian, bytes, elf::SHT_SYMTAB).unwrap();
        let mut out: HashMap<u64, Vec<String>> = HashMap::new();
        for sym in table.iter() {
            if sym.st_type() == elf::STT_FUNC {
                let name = String::from_utf8_lossy(sym.name(endian, table.strings()).unwrap());
                out.entry(sym.st_value(endian))
                    .or_default()
                    .push(name.into_owned());
            }
        }
        out
    }

    /// Whether `.symtab`'s `symbol` is Go's `name`: the same, or the
    /// symbol of the assembly (ABI0) side (`name.abi0`), or `name` with the
    /// table's abbreviations: `[...]` for a type's brackets, `·` for `.`.
    fn same_function(name: &str, symbol: &str) -> bool {
        if symbol == name || symbol.strip_suffix(".abi0") == Some(name) {
            return true;
        }
        let pattern = regex::escape(name)
            .replace(r"\[\.\.\.\]", r"\[[^\]]*\]")
            .replace('·', "[.·]");
        regex::Regex::new(&format!("^{pattern}$"))
            .unwrap()
            .is_match(symbol)
    }

    /// Stripped builds as users make them (plain, position-independent,
    /// externally linked, both) name every Go function at the address the
    /// unstripped build's `.symtab` gives it, the text's start read from the
    /// table's header (Go 1.19).
    #[test]
    fn stripped_builds_name_every_function_at_its_symbols_address() {
        let dir = tempfile::TempDir::new().unwrap();
        let variants: [(&str, &[&str]); 4] = [
            ("exe", &[]),
            ("pie", &["-buildmode=pie"]),
            ("external", &["-linkmode=external"]),
            ("external-pie", &["-buildmode=pie", "-linkmode=external"]),
        ];
        for (name, flags) in variants {
            let (build, link): (Vec<&str>, Vec<&str>) =
                flags.iter().partition(|f| f.starts_with("-buildmode"));
            let mut full_args = build.clone();
            let full_ldflags = format!("-ldflags={}", link.join(" "));
            full_args.push(&full_ldflags);
            let Some(full) = go_build(dir.path(), &format!("{name}-full"), &full_args) else {
                return;
            };
            let mut stripped_args = build.clone();
            let stripped_ldflags = format!("-ldflags=-s -w {}", link.join(" "));
            stripped_args.push(&stripped_ldflags);
            let stripped =
                go_build(dir.path(), &format!("{name}-stripped"), &stripped_args).unwrap();
            let full_bytes = std::fs::read(&full).unwrap();
            let stripped_bytes = std::fs::read(&stripped).unwrap();
            let symbols = symtab(&full_bytes);
            assert!(symtab(&stripped_bytes).is_empty(), "{name}: not stripped");
            let (functions, source) = read_bytes(&stripped_bytes).unwrap();
            assert_eq!(source, Some(TextSource::Header), "{name}");
            assert!(
                functions.len() > 4000,
                "{name}: {} functions",
                functions.len()
            );
            for f in &functions {
                let at = symbols.get(&f.entry).map(Vec::as_slice).unwrap_or_default();
                assert!(
                    at.iter().any(|s| same_function(&f.name, s)),
                    "{name}: {} at {:#x}, where .symtab has {at:?}",
                    f.name,
                    f.entry
                );
            }
            // The unstripped build's table is the same.
            assert_eq!(read_bytes(&full_bytes).unwrap().0, functions, "{name}");
            for wanted in [
                "main.work",
                "uexp.example/fixture/tally.(*Tally).Add",
                "net/http.(*conn).serve",
            ] {
                assert_eq!(
                    functions.iter().filter(|f| f.name == wanted).count(),
                    1,
                    "{name}: {wanted}"
                );
            }
        }
    }

    /// The `i`-th pointer-sized header word of the table in `bytes` (a Go
    /// binary with a `.gopclntab` section): its file offset.
    fn header_word(bytes: &[u8], i: usize) -> usize {
        let header = elf::FileHeader64::<Endianness>::parse(bytes).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, bytes).unwrap();
        let (_, table) = sections.section_by_name(endian, b".gopclntab").unwrap();
        table.sh_offset(endian) as usize + 8 + 8 * i
    }

    /// Without the header's text start (Go 1.26 leaves it zero), the module
    /// data gives it; without module data either, the entry point, for the
    /// Go linker's binaries; an external linker's entry point is refused
    /// rather than trusted.
    #[test]
    fn without_the_headers_text_start_module_data_then_the_entry_point_place_functions() {
        let dir = tempfile::TempDir::new().unwrap();
        let Some(exe) = go_build(dir.path(), "exe", &["-ldflags=-s -w"]) else {
            return;
        };
        let external = go_build(
            dir.path(),
            "external",
            &["-ldflags=-s -w -linkmode=external"],
        )
        .unwrap();
        for (path, linker_entry) in [(exe, true), (external, false)] {
            let mut bytes = std::fs::read(&path).unwrap();
            let (expected, _) = read_bytes(&bytes).unwrap();
            let text = header_word(&bytes, 2);
            let table_address = {
                let header = elf::FileHeader64::<Endianness>::parse(&*bytes).unwrap();
                let endian = header.endian().unwrap();
                let sections = header.sections(endian, &*bytes).unwrap();
                sections
                    .section_by_name(endian, b".gopclntab")
                    .unwrap()
                    .1
                    .sh_addr(endian)
            };
            bytes[text..text + 8].fill(0);
            let (functions, source) = read_bytes(&bytes).unwrap();
            assert_eq!(source, Some(TextSource::ModuleData), "{}", path.display());
            assert_eq!(functions, expected);

            // Every pointer to the table gone: the module data is not found.
            let needle = table_address.to_le_bytes();
            let mut at = 0;
            while let Some(found) = bytes[at..].windows(8).position(|w| w == needle) {
                bytes[at + found..at + found + 8].fill(0);
                at += found + 8;
            }
            match read_bytes(&bytes) {
                Ok((functions, source)) => {
                    assert!(linker_entry, "{}: {source:?}", path.display());
                    assert_eq!(source, Some(TextSource::EntryPoint));
                    assert_eq!(functions, expected);
                }
                Err(e) => {
                    assert!(!linker_entry, "{}: {e}", path.display());
                    assert!(e.contains("entry point"), "{e}");
                }
            }
        }
    }

    /// `read_elf` and `read_functions` name the Go functions of a stripped
    /// binary; in an unstripped one `.symtab` names them, and the table adds
    /// only the names it lacks.
    #[test]
    fn read_elf_prefers_the_symbol_tables_and_adds_the_go_names_they_lack() {
        use crate::elf::{read_elf, read_functions};
        let dir = tempfile::TempDir::new().unwrap();
        let Some(full) = go_build(dir.path(), "full", &[]) else {
            return;
        };
        let stripped = go_build(dir.path(), "stripped", &["-ldflags=-s -w"]).unwrap();
        let add = "uexp.example/fixture/tally.(*Tally).Add";
        let full_info = read_elf(&full).unwrap();
        let stripped_info = read_elf(&stripped).unwrap();
        assert!(full_info.is_go && stripped_info.is_go);
        assert_eq!(full_info.go_table_error, None);
        assert_eq!(stripped_info.go_table_error, None);
        for name in ["main.work", add, "net/http.(*conn).serve"] {
            assert!(full_info.symbols.contains(name), "{name}");
            assert!(stripped_info.symbols.contains(name), "{name}");
            // .symtab names it in the full build: not Go's table's to place.
            assert!(full_info.functions.go_function(name).is_none(), "{name}");
            let (chosen, others) = stripped_info.functions.go_function(name).unwrap();
            assert!(others.is_empty(), "{name}");
            let listed = read_functions(&full, |n| n == name).unwrap();
            assert_eq!(listed.len(), 1, "{name}");
            assert_eq!(chosen.address, listed[0].address, "{name}");
            assert_eq!(read_functions(&stripped, |n| n == name).unwrap(), listed);
        }
        // An assembly function: .symtab says runtime.rt0_go.abi0, the table runtime.rt0_go.
        assert!(full_info.functions.go_function("runtime.rt0_go").is_some());
        // A Go function and its ABI wrapper: the function is chosen.
        let (chosen, others) = stripped_info.functions.go_function("runtime.args").unwrap();
        let symtab =
            read_functions(&full, |n| n == "runtime.args" || n == "runtime.args.abi0").unwrap();
        let by_name = |n: &str| symtab.iter().find(|f| f.name == n).unwrap().address;
        assert_eq!(chosen.address, by_name("runtime.args"));
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].address, by_name("runtime.args.abi0"));
        assert!(stripped_info.symbols.len() > 4000);
        assert_eq!(stripped_info.symbols.similar("main.wrok", 1), ["main.work"]);
    }
}
