//! USDT (SystemTap SDT, "stapsdt") probe notes.
//!
//! `<sys/sdt.h>` records every probe site as an ELF note in the
//! `.note.stapsdt` section: owner `"stapsdt"`, type 3, and a descriptor laid
//! out as
//!
//! ```text
//! pc         address-sized (4 bytes in ELFCLASS32, 8 in ELFCLASS64)
//! base       link-time address of the .stapsdt.base section
//! semaphore  address of the probe's semaphore, 0 when it has none
//! provider\0 name\0 args\0
//! ```
//!
//! All integers are in the file's byte order. Notes are padded to 4 bytes
//! (8 when the section asks for 8-byte alignment). When a tool such as
//! prelink moved the file after linking, the difference between the real
//! address of `.stapsdt.base` and the recorded `base` must be added to `pc`
//! and `semaphore`; [`parse_stapsdt`] does that.

use std::fmt;

/// The ELF note type of a SystemTap SDT probe (`NT_STAPSDT`).
const NT_STAPSDT: u32 = 3;

/// The owner name of SystemTap SDT probe notes.
const STAPSDT_OWNER: &[u8] = b"stapsdt";

/// One USDT probe site, as recorded in a `.note.stapsdt` note.
///
/// A probe that the compiler emitted at several places (for example because
/// the function holding it was inlined) has one note per site, so a binary
/// may hold several `UsdtNote`s with the same provider and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsdtNote {
    /// The provider, the first argument of `DTRACE_PROBE*` / `STAP_PROBE*`
    /// (for example `python`).
    pub provider: String,
    /// The probe name (for example `gc__start`).
    pub name: String,
    /// Link-time virtual address of the probe site (the `nop` instruction),
    /// already corrected for prelinking using the `.stapsdt.base` section.
    pub address: u64,
    /// The `.stapsdt.base` address recorded in the note (not corrected).
    pub base: u64,
    /// Link-time virtual address of the probe's 16-bit semaphore counter,
    /// corrected like `address`; 0 when the probe has no semaphore.
    pub semaphore: u64,
    /// The argument specification, for example `-4@%edx 8@-16(%rbp)`
    /// (space-separated `[-]SIZE@OPERAND`); empty for a probe with no
    /// arguments.
    pub args: String,
}

impl UsdtNote {
    /// Whether this note is the probe `name`, from `provider` if one is given
    /// (any provider otherwise).
    pub fn matches(&self, provider: Option<&str>, name: &str) -> bool {
        self.name == name && provider.is_none_or(|p| self.provider == p)
    }

    /// Whether the probe is guarded by a semaphore that a tracer must
    /// increment before the probe fires.
    pub fn has_semaphore(&self) -> bool {
        self.semaphore != 0
    }
}

impl fmt::Display for UsdtNote {
    /// Formats the probe as `provider:name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.name)
    }
}

/// How to read the notes of one file: byte order and address size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoteLayout {
    /// Whether integers are big-endian (ELFDATA2MSB).
    pub big_endian: bool,
    /// 4 for ELFCLASS32, 8 for ELFCLASS64.
    pub addr_size: usize,
    /// Padding of the note header fields: 4, or 8 if `sh_addralign` is 8.
    pub align: usize,
}

impl NoteLayout {
    fn u32_at(&self, bytes: &[u8], offset: usize) -> Option<u32> {
        let raw: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    fn addr_at(&self, bytes: &[u8], offset: usize) -> Option<u64> {
        if self.addr_size == 4 {
            return self.u32_at(bytes, offset).map(u64::from);
        }
        let raw: [u8; 8] = bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        })
    }
}

/// Why a note could not be parsed: which note (0-based, counting every note
/// of the section) and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoteError {
    pub index: usize,
    pub reason: String,
}

fn align_up(value: usize, align: usize) -> Option<usize> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Parses the contents of a `.note.stapsdt` section.
///
/// Notes of other owners or types are skipped. `base_section_addr` is the
/// `sh_addr` of the file's `.stapsdt.base` section, if it has one; it is used
/// to correct the probe and semaphore addresses of prelinked files.
pub(crate) fn parse_stapsdt(
    data: &[u8],
    layout: NoteLayout,
    base_section_addr: Option<u64>,
) -> Result<Vec<UsdtNote>, NoteError> {
    let mut notes = Vec::new();
    let mut offset = 0usize;
    let mut index = 0usize;
    while offset < data.len() {
        let rest = &data[offset..];
        // Zero padding at the end of the section is not a note.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let err = |reason: String| NoteError { index, reason };
        if rest.len() < 12 {
            return Err(err(format!(
                "note header at section offset {offset:#x} is truncated ({} of 12 bytes)",
                rest.len()
            )));
        }
        let namesz = layout.u32_at(rest, 0).unwrap() as usize;
        let descsz = layout.u32_at(rest, 4).unwrap() as usize;
        let n_type = layout.u32_at(rest, 8).unwrap();
        let name_end = 12usize
            .checked_add(namesz)
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| {
                err(format!(
                    "name size {namesz} at section offset {offset:#x} runs past the section end"
                ))
            })?;
        let desc_start = align_up(name_end, layout.align)
            .ok_or_else(|| err("note size overflows".to_string()))?;
        let desc_end = desc_start
            .checked_add(descsz)
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| {
                err(format!(
                    "descriptor size {descsz} at section offset {offset:#x} runs past the section end"
                ))
            })?;
        let mut owner = &rest[12..name_end];
        while let [head @ .., 0] = owner {
            owner = head;
        }
        if owner == STAPSDT_OWNER && n_type == NT_STAPSDT {
            let note =
                parse_desc(&rest[desc_start..desc_end], layout, base_section_addr).map_err(err)?;
            notes.push(note);
        }
        // The last note may omit its trailing padding.
        let next = align_up(desc_end, layout.align).unwrap_or(usize::MAX);
        offset = offset.saturating_add(next.min(rest.len()));
        index += 1;
    }
    Ok(notes)
}

/// Parses one stapsdt descriptor: three addresses and three strings.
fn parse_desc(
    desc: &[u8],
    layout: NoteLayout,
    base_section_addr: Option<u64>,
) -> Result<UsdtNote, String> {
    let a = layout.addr_size;
    let (Some(pc), Some(base), Some(semaphore)) = (
        layout.addr_at(desc, 0),
        layout.addr_at(desc, a),
        layout.addr_at(desc, 2 * a),
    ) else {
        return Err(format!(
            "descriptor is {} bytes, too short for 3 {a}-byte addresses",
            desc.len()
        ));
    };
    let mut strings = &desc[3 * a..];
    let provider = take_string(&mut strings, "provider")?;
    let name = take_string(&mut strings, "probe name")?;
    // Some producers omit the argument string entirely for probes
    // without arguments.
    let args = if strings.is_empty() {
        String::new()
    } else {
        take_string(&mut strings, "argument")?
    };
    if provider.is_empty() || name.is_empty() {
        return Err(format!(
            "empty provider or probe name (provider {provider:?}, name {name:?})"
        ));
    }

    // Undo prelink's relocation: the note still holds link-time addresses,
    // while .stapsdt.base's section header was updated.
    let (address, semaphore) = match base_section_addr {
        Some(actual) if base != 0 && actual != base => {
            let delta = actual.wrapping_sub(base);
            let mask = if a == 4 {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            let adjust = |addr: u64| addr.wrapping_add(delta) & mask;
            let semaphore = if semaphore == 0 { 0 } else { adjust(semaphore) };
            (adjust(pc), semaphore)
        }
        _ => (pc, semaphore),
    };
    Ok(UsdtNote {
        provider,
        name,
        address,
        base,
        semaphore,
        args,
    })
}

/// Takes the NUL-terminated string at the start of `bytes` and advances
/// `bytes` past it.
fn take_string(bytes: &mut &[u8], what: &str) -> Result<String, String> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("{what} string is not NUL-terminated"))?;
    let s = String::from_utf8_lossy(&bytes[..end]).into_owned();
    *bytes = &bytes[end + 1..];
    Ok(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds one note (header, padded owner, padded descriptor).
    pub(crate) fn note_bytes(
        layout: NoteLayout,
        owner: &[u8],
        n_type: u32,
        desc: &[u8],
    ) -> Vec<u8> {
        let u32b = |v: u32| {
            if layout.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(&u32b(owner.len() as u32 + 1));
        out.extend_from_slice(&u32b(desc.len() as u32));
        out.extend_from_slice(&u32b(n_type));
        out.extend_from_slice(owner);
        out.push(0);
        out.resize(out.len().next_multiple_of(layout.align), 0);
        out.extend_from_slice(desc);
        out.resize(out.len().next_multiple_of(layout.align), 0);
        out
    }

    /// Builds a stapsdt descriptor: three addresses, then the strings.
    pub(crate) fn stapsdt_desc(
        layout: NoteLayout,
        pc: u64,
        base: u64,
        sem: u64,
        strings: &[&str],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [pc, base, sem] {
            match (layout.addr_size, layout.big_endian) {
                (4, false) => out.extend_from_slice(&(v as u32).to_le_bytes()),
                (4, true) => out.extend_from_slice(&(v as u32).to_be_bytes()),
                (_, false) => out.extend_from_slice(&v.to_le_bytes()),
                (_, true) => out.extend_from_slice(&v.to_be_bytes()),
            }
        }
        for s in strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        out
    }

    pub(crate) const LE64: NoteLayout = NoteLayout {
        big_endian: false,
        addr_size: 8,
        align: 4,
    };
    pub(crate) const BE32: NoteLayout = NoteLayout {
        big_endian: true,
        addr_size: 4,
        align: 4,
    };

    #[test]
    fn parses_64bit_little_endian() {
        let mut data = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(
                LE64,
                0x1234,
                0x4000,
                0,
                &["prov", "probe", "-4@%eax 8@%rdx"],
            ),
        );
        // A foreign note in between is skipped.
        data.extend(note_bytes(LE64, b"GNU", 3, &[1, 2, 3, 4]));
        data.extend(note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 0x2000, 0x4000, 0x6000, &["prov", "other", ""]),
        ));
        let notes = parse_stapsdt(&data, LE64, Some(0x4000)).unwrap();
        assert_eq!(
            notes,
            vec![
                UsdtNote {
                    provider: "prov".into(),
                    name: "probe".into(),
                    address: 0x1234,
                    base: 0x4000,
                    semaphore: 0,
                    args: "-4@%eax 8@%rdx".into(),
                },
                UsdtNote {
                    provider: "prov".into(),
                    name: "other".into(),
                    address: 0x2000,
                    base: 0x4000,
                    semaphore: 0x6000,
                    args: String::new(),
                },
            ]
        );
        assert_eq!(notes[0].to_string(), "prov:probe");
        assert!(notes[1].matches(Some("prov"), "other"));
        assert!(notes[1].matches(None, "other"));
        assert!(!notes[1].matches(Some("x"), "other"));
        assert!(notes[1].has_semaphore() && !notes[0].has_semaphore());
    }

    #[test]
    fn parses_32bit_big_endian_and_corrects_prelink() {
        let data = note_bytes(
            BE32,
            b"stapsdt",
            3,
            &stapsdt_desc(
                BE32,
                0x8000_1000,
                0x8000_4000,
                0x8000_5000,
                &["p", "n", "4@r3"],
            ),
        );
        // .stapsdt.base moved down by 0x1000 after linking.
        let notes = parse_stapsdt(&data, BE32, Some(0x8000_3000)).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].address, 0x8000_0000);
        assert_eq!(notes[0].semaphore, 0x8000_4000);
        assert_eq!(notes[0].base, 0x8000_4000);
        assert_eq!(notes[0].args, "4@r3");
        // No correction without the section.
        let notes = parse_stapsdt(&data, BE32, None).unwrap();
        assert_eq!(notes[0].address, 0x8000_1000);
    }

    #[test]
    fn missing_args_string_is_empty_args() {
        let data = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 1, 2, 0, &["p", "n"]),
        );
        let notes = parse_stapsdt(&data, LE64, None).unwrap();
        assert_eq!(notes[0].args, "");
    }

    #[test]
    fn malformed_notes_are_reported() {
        // Descriptor too short for the addresses.
        let data = note_bytes(LE64, b"stapsdt", 3, &[0; 20]);
        let err = parse_stapsdt(&data, LE64, None).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(err.reason.contains("too short"), "{}", err.reason);

        // Strings not terminated.
        let mut desc = stapsdt_desc(LE64, 1, 2, 0, &["p"]);
        desc.extend_from_slice(b"name-without-nul");
        let mut data = note_bytes(LE64, b"GNU", 1, &[0; 4]);
        data.extend(note_bytes(LE64, b"stapsdt", 3, &desc));
        let err = parse_stapsdt(&data, LE64, None).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.reason.contains("not NUL-terminated"), "{}", err.reason);

        // Descriptor size past the end of the section.
        let mut data = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 1, 2, 0, &["p", "n", ""]),
        );
        data[4] = 0xff;
        let err = parse_stapsdt(&data, LE64, None).unwrap_err();
        assert!(
            err.reason.contains("past the section end"),
            "{}",
            err.reason
        );

        // Truncated header.
        let err = parse_stapsdt(&[1, 0, 0, 0, 0], LE64, None).unwrap_err();
        assert!(err.reason.contains("truncated"), "{}", err.reason);

        // Empty provider.
        let data = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 1, 2, 0, &["", "n", ""]),
        );
        assert!(parse_stapsdt(&data, LE64, None).is_err());
    }

    #[test]
    fn trailing_zero_padding_is_ignored() {
        let mut data = note_bytes(
            LE64,
            b"stapsdt",
            3,
            &stapsdt_desc(LE64, 1, 2, 0, &["p", "n", ""]),
        );
        data.extend_from_slice(&[0; 8]);
        assert_eq!(parse_stapsdt(&data, LE64, None).unwrap().len(), 1);
        assert!(parse_stapsdt(&[], LE64, None).unwrap().is_empty());
    }
}
