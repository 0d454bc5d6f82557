//! The file offset of a function for a uprobe, found as libbpf 1.7 finds it
//! for `bpf_uprobe_opts.func_name` (`elf_find_func_offset` in its `elf.c`),
//! so that the exporter can hand libbpf the offset instead of the name:
//! libbpf parses the file through libelf's `ELF_C_READ_MMAP`, which faults
//! the exporter (SIGBUS) when another process truncates the file meanwhile.
//!
//! The rule, kept exactly: `.dynsym` is searched first, `.symtab` only when
//! `.dynsym` has no match; only `STT_FUNC` symbols count (an `STT_GNU_IFUNC`
//! does not), in any section that exists, section 0 included: an undefined
//! symbol matches at its value (0, which is no match, or in a non-PIE
//! executable the address of its PLT entry, which libbpf takes for an
//! offset; the exporter asks only for the functions a file defines);
//! `name` matches a symbol named `name` or
//! `name@...`, and `name@VER` or `name@@VER` matches, in `.dynsym`, a symbol
//! whose version (from `SHT_GNU_verdef`) is `VER`, in `.symtab` only the
//! symbol spelled exactly so. Several matches at one offset are one; at
//! different offsets, a non-weak symbol wins over weak ones, the first weak
//! one over later weak ones, and two non-weak ones are ambiguous. The offset
//! is `st_value - sh_addr + sh_offset` of the symbol's section (the section
//! headers, not the program headers).

use super::ElfError;
use object::elf;
use object::read::elf::{FileHeader, SectionHeader, SectionTable, Sym};
use object::read::SectionIndex;
use object::{Endian, Endianness};
use std::path::{Path, PathBuf};

/// Why a function has no offset to attach a uprobe at.
#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    /// The file could not be read.
    #[error("{0}")]
    Elf(#[from] ElfError),
    /// No `STT_FUNC` symbol of that name is defined.
    #[error("no function symbol {name:?} in {} that libbpf would attach to (an STT_FUNC symbol of .dynsym, else of .symtab; an indirect function, STT_GNU_IFUNC, is not one)", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
        /// The name as given.
        name: String,
    },
    /// Two non-weak symbols of that name are different functions.
    #[error("{name:?} names two functions in {}, at file offsets {first:#x} and {second:#x} (two non-weak symbols of one name, as static functions of different files are); name the one meant with a wildcard probe on its address's symbol, or by its version (name@VERSION)", path.display())]
    Ambiguous {
        /// The file.
        path: PathBuf,
        /// The name as given.
        name: String,
        /// The offset of the first match.
        first: u64,
        /// The offset of the one that disagrees.
        second: u64,
    },
}

impl OffsetError {
    /// A few words for the self-metrics (`ambiguous_symbol`: two functions
    /// of the name; the other reasons as in `ResolveError::reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            OffsetError::Elf(_) => "unreadable_file",
            OffsetError::NotFound { .. } => "no_symbol",
            OffsetError::Ambiguous { .. } => "ambiguous_symbol",
        }
    }
}

/// The file offset libbpf would attach a uprobe on `name` at, in the ELF
/// image `data` of `path` (see the module documentation for the rule).
pub(super) fn function_offset(path: &Path, data: &[u8], name: &str) -> Result<u64, OffsetError> {
    match super::class(path, data)? {
        elf::ELFCLASS32 => find::<elf::FileHeader32<Endianness>>(path, data, name),
        _ => find::<elf::FileHeader64<Endianness>>(path, data, name),
    }
}

/// What libbpf's search holds between symbols.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// libbpf's `long ret`: 0 until a symbol at a non-zero offset matched.
    offset: i64,
    /// The binding of the symbol that set it.
    bind: u8,
}

fn find<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    data: &[u8],
    name: &str,
) -> Result<u64, OffsetError> {
    let bad = |e: object::read::Error| ElfError::malformed(path, e);
    let header = Elf::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, data).map_err(bad)?;
    let headers = sections.iter().as_slice();
    let (base, version) = match name.split_once('@') {
        Some((base, rest)) => (base, Some(rest.strip_prefix('@').unwrap_or(rest))),
        None => (name, None),
    };
    for sh_type in [elf::SHT_DYNSYM, elf::SHT_SYMTAB] {
        let Some((_, table)) = sections
            .enumerate()
            .find(|(_, s)| s.sh_type(endian) == sh_type)
        else {
            continue;
        };
        let symbols: &[Elf::Sym] = table
            .data_as_array(endian, data)
            .map_err(|_| ElfError::malformed(path, "its symbol table lies outside the file"))?;
        // A link to no string table makes every name unreadable, as libelf's
        // elf_strptr refuses it.
        let strings = sections
            .strings(endian, data, SectionIndex(table.sh_link(endian) as usize))
            .ok();
        let versions = if sh_type == elf::SHT_DYNSYM {
            Versions::of(&sections, endian, data)
        } else {
            Versions::default()
        };
        let mut found: Option<Found> = None;
        for (index, sym) in symbols.iter().enumerate() {
            if sym.st_type() != elf::STT_FUNC {
                continue;
            }
            let Some(sym_name) = strings.and_then(|s| s.get(sym.st_name(endian)).ok()) else {
                continue;
            };
            // Section 0 too (libelf's elf_getscn gives it): an undefined
            // symbol matches, at its value.
            let Some(section) = headers.get(usize::from(sym.st_shndx(endian))) else {
                continue;
            };
            let ver = match versions.versym {
                Some(versym) => match versym.get(index * 2..index * 2 + 2) {
                    Some(raw) => endian.read_u16_bytes([raw[0], raw[1]]) & elf::VERSYM_VERSION,
                    None => continue,
                },
                None => 0,
            };
            let matches = sym_name.starts_with(base.as_bytes())
                && matches!(sym_name.get(base.len()), None | Some(b'@'))
                && match version {
                    None => true,
                    Some(wanted) if sh_type == elf::SHT_DYNSYM => versions
                        .name(&sections, endian, data, ver)
                        .is_some_and(|v| v == wanted.as_bytes()),
                    Some(_) => sym_name == name.as_bytes(),
                };
            if !matches {
                continue;
            }
            let value: u64 = sym.st_value(endian).into();
            let sh_addr: u64 = section.sh_addr(endian).into();
            let sh_offset: u64 = section.sh_offset(endian).into();
            // libbpf computes in unsigned long and keeps it in a long.
            let offset = value.wrapping_sub(sh_addr).wrapping_add(sh_offset) as i64;
            let bind = sym.st_bind();
            if let Some(last) = found.filter(|f| f.offset > 0) {
                if offset == last.offset {
                    continue;
                }
                if last.bind != elf::STB_WEAK && bind != elf::STB_WEAK {
                    return Err(OffsetError::Ambiguous {
                        path: path.to_path_buf(),
                        name: name.to_string(),
                        first: last.offset as u64,
                        second: offset as u64,
                    });
                }
                if bind == elf::STB_WEAK {
                    continue;
                }
            }
            found = Some(Found { offset, bind });
        }
        if let Some(found) = found.filter(|f| f.offset > 0) {
            return Ok(found.offset as u64);
        }
    }
    Err(OffsetError::NotFound {
        path: path.to_path_buf(),
        name: name.to_string(),
    })
}

/// The first `SHT_GNU_versym` and `SHT_GNU_verdef` sections, as libbpf
/// takes them (no verdef: no version names, and a versioned name matches no
/// `.dynsym` symbol).
#[derive(Default)]
struct Versions<'data> {
    versym: Option<&'data [u8]>,
    /// The verdef section's bytes and its string table's index.
    verdef: Option<(&'data [u8], SectionIndex)>,
}

impl<'data> Versions<'data> {
    fn of<Elf: FileHeader<Endian = Endianness>>(
        sections: &SectionTable<'data, Elf>,
        endian: Endianness,
        data: &'data [u8],
    ) -> Versions<'data> {
        let first = |sh_type: u32| sections.iter().find(|s| s.sh_type(endian) == sh_type);
        let Some(versym) = first(elf::SHT_GNU_VERSYM) else {
            return Versions::default();
        };
        let versym = versym.data(endian, data).ok();
        let verdef = first(elf::SHT_GNU_VERDEF).and_then(|s| {
            let bytes = s.data(endian, data).ok()?;
            Some((bytes, SectionIndex(s.sh_link(endian) as usize)))
        });
        Versions { versym, verdef }
    }

    /// The name of version `index`: the first name of the verdef entry with
    /// that index, found by walking the entries from the first.
    fn name<Elf: FileHeader<Endian = Endianness>>(
        &self,
        sections: &SectionTable<'data, Elf>,
        endian: Endianness,
        data: &'data [u8],
        index: u16,
    ) -> Option<&'data [u8]> {
        let (verdefs, strings) = self.verdef?;
        let u16_at = |at: usize| -> Option<u16> {
            let raw: [u8; 2] = verdefs.get(at..at.checked_add(2)?)?.try_into().ok()?;
            Some(endian.read_u16_bytes(raw))
        };
        let u32_at = |at: usize| -> Option<u32> {
            let raw: [u8; 4] = verdefs.get(at..at.checked_add(4)?)?.try_into().ok()?;
            Some(endian.read_u32_bytes(raw))
        };
        // Elf_Verdef: vd_version, vd_flags, vd_ndx (u16 at 4), vd_cnt,
        // vd_hash, vd_aux (u32 at 12), vd_next (u32 at 16); 20 bytes.
        let mut at = 0usize;
        loop {
            if at.checked_add(20)? > verdefs.len() {
                return None;
            }
            if u16_at(at + 4)? == index {
                let aux = at.checked_add(u32_at(at + 12)? as usize)?;
                // Elf_Verdaux: vda_name (u32 at 0), vda_next; 8 bytes.
                if aux.checked_add(8)? > verdefs.len() {
                    return None;
                }
                let name = u32_at(aux)?;
                return sections.strings(endian, data, strings).ok()?.get(name).ok();
            }
            let next = u32_at(at + 16)?;
            if next == 0 {
                return None;
            }
            at = at.checked_add(next as usize)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::FileHeader;
    use std::ffi::CString;
    use std::process::Command;

    extern "C" {
        /// libbpf's own search (libbpf/src/elf.c, linked in statically):
        /// the offset, or a negative errno.
        fn elf_find_func_offset_from_file(
            binary_path: *const std::ffi::c_char,
            name: *const std::ffi::c_char,
        ) -> std::ffi::c_long;
    }

    /// What libbpf answers for `name` in `path`, in our terms.
    fn libbpf(path: &Path, name: &str) -> Result<u64, &'static str> {
        let path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let name = CString::new(name).unwrap();
        // SAFETY: two NUL-terminated strings that outlive the call.
        let found = unsafe { elf_find_func_offset_from_file(path.as_ptr(), name.as_ptr()) };
        match found {
            n if n > 0 => Ok(n as u64),
            n if n == -(libc::ENOENT as std::ffi::c_long) => Err("not found"),
            // LIBBPF_ERRNO__FORMAT
            -4001 => Err("ambiguous"),
            _ => Err("other"),
        }
    }

    fn ours(path: &Path, data: &[u8], name: &str) -> Result<u64, &'static str> {
        match function_offset(path, data, name) {
            Ok(offset) => Ok(offset),
            Err(OffsetError::NotFound { .. }) => Err("not found"),
            Err(OffsetError::Ambiguous { .. }) => Err("ambiguous"),
            Err(OffsetError::Elf(_)) => Err("other"),
        }
    }

    /// The function names of a 64-bit file as a uprobe spec may write them:
    /// as the symbol tables spell them, without their version, with each
    /// `.dynsym` version after `@` and `@@`, and a few near misses.
    fn names(data: &[u8]) -> Vec<String> {
        let header = elf::FileHeader64::<Endianness>::parse(data).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, data).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for sh_type in [elf::SHT_DYNSYM, elf::SHT_SYMTAB] {
            let table = sections.symbols(endian, data, sh_type).unwrap();
            let versions = if sh_type == elf::SHT_DYNSYM {
                sections.versions(endian, data).unwrap()
            } else {
                None
            };
            for (index, sym) in table.enumerate() {
                if !matches!(sym.st_type(), elf::STT_FUNC | elf::STT_GNU_IFUNC) {
                    continue;
                }
                let Ok(raw) = sym.name(endian, table.strings()) else {
                    continue;
                };
                let name = String::from_utf8_lossy(raw).into_owned();
                let base = name.split('@').next().unwrap().to_string();
                if let Some(v) = versions
                    .as_ref()
                    .and_then(|v| v.version(v.version_index(endian, index)).ok().flatten())
                {
                    let v = String::from_utf8_lossy(v.name());
                    names.insert(format!("{base}@{v}"));
                    names.insert(format!("{base}@@{v}"));
                }
                if !base.is_empty() {
                    names.insert(format!("{}X", base));
                    names.insert(base[..base.len() - 1].to_string());
                }
                names.insert(base);
                names.insert(name);
            }
        }
        names.into_iter().filter(|n| !n.is_empty()).collect()
    }

    /// Our offsets are libbpf's, name by name, or both fail alike.
    fn agree(path: &Path, every: usize) -> usize {
        let data = std::fs::read(path).unwrap();
        let names = names(&data);
        let mut checked = 0;
        for name in names.iter().step_by(every) {
            assert_eq!(
                ours(path, &data, name),
                libbpf(path, name),
                "{name:?} in {}",
                path.display()
            );
            checked += 1;
        }
        checked
    }

    const A_C: &str = r#"
static __attribute__((noinline)) int twin(int x) { return x + 1; }
int a_calls(int x) { return twin(x); }
__attribute__((weak)) int soft(int x) { return x + 5; }
int old_impl(int x) { return x + 2; }
int new_impl(int x) { return x + 3; }
__asm__(".symver old_impl, api@VERS_1");
__asm__(".symver new_impl, api@@VERS_2");
static int pick_a(int x) { return x; }
static void *resolve_picked(void) { return (void *)pick_a; }
int picked(int x) __attribute__((ifunc("resolve_picked")));
"#;
    const B_C: &str = r#"
static __attribute__((noinline)) int twin(int x) { return x * 2; }
int b_calls(int x) { return twin(x); }
"#;
    const MAP: &str = "VERS_1 { global: api; a_calls; b_calls; soft; picked; local: *; };\nVERS_2 { global: api; } VERS_1;\n";

    fn build(dir: &Path, out: &str, extra: &[&str]) -> PathBuf {
        for (name, text) in [("a.c", A_C), ("b.c", B_C), ("vers.map", MAP)] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let output = Command::new("cc")
            .current_dir(dir)
            .args(["-O2", "-shared", "-fPIC", "-Wl,--version-script=vers.map"])
            .args(extra)
            .args(["-o", out, "a.c", "b.c"])
            .output()
            .expect("running cc");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        dir.join(out)
    }

    #[test]
    fn libbpf_rule_on_versions_weak_static_twins_and_ifuncs() {
        // SAFETY: turning libbpf's logging off (its misses would flood the output).
        unsafe { libbpf_sys::libbpf_set_print(None) };
        let dir = tempfile::TempDir::new().unwrap();
        let lib = build(dir.path(), "libvers.so", &[]);
        let data = std::fs::read(&lib).unwrap();
        // The cases, as libbpf decides them.
        assert!(ours(&lib, &data, "api@VERS_1").is_ok());
        assert!(ours(&lib, &data, "api@@VERS_2").is_ok());
        assert_ne!(
            ours(&lib, &data, "api@VERS_1"),
            ours(&lib, &data, "api@VERS_2")
        );
        // Two versions of one name are two non-weak symbols.
        assert_eq!(ours(&lib, &data, "api"), Err("ambiguous"));
        // Static functions of two files: .symtab only, ambiguous.
        assert_eq!(ours(&lib, &data, "twin"), Err("ambiguous"));
        let err = function_offset(&lib, &data, "twin")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"twin\" names two functions in "), "{err}");
        // An indirect function is not STT_FUNC.
        assert_eq!(ours(&lib, &data, "picked"), Err("not found"));
        assert!(ours(&lib, &data, "soft").is_ok());
        assert_eq!(ours(&lib, &data, "sof"), Err("not found"));
        assert_eq!(ours(&lib, &data, "api@VERS_3"), Err("not found"));
        let checked = agree(&lib, 1);
        assert!(checked > 20, "{checked}");
        // Stripped: .dynsym only.
        let stripped = build(dir.path(), "libvers-stripped.so", &["-s"]);
        agree(&stripped, 1);
    }

    /// The system's libraries and runtimes: every name of CPython, every
    /// other of libc, a sample of libjvm's 48,000.
    #[test]
    fn libbpf_rule_on_system_binaries() {
        // SAFETY: as above.
        unsafe { libbpf_sys::libbpf_set_print(None) };
        let mut checked = 0;
        for (path, every) in [
            ("/lib/x86_64-linux-gnu/libc.so.6", 2),
            ("/usr/bin/python3.11", 1),
            (
                "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
                499,
            ),
        ] {
            let path = Path::new(path);
            if path.exists() {
                checked += agree(path, every);
            } else {
                eprintln!("skipping {}: not installed", path.display());
            }
        }
        eprintln!("{checked} names checked against libbpf");
    }
}
