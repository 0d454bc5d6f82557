//! glibc's `/etc/ld.so.cache`: the library names `ldconfig` indexed, and the
//! files they resolve to. The dynamic loader consults it after
//! `LD_LIBRARY_PATH` and `DT_RUNPATH`, so a library a process will `dlopen`
//! by name is often found only here.
//!
//! The format (glibc 2.32 and later write only the "new" one; older caches put
//! an "old" table in front of it):
//!
//! ```text
//! "glibc-ld.so.cache" "1.1"  nlibs:u32  len_strings:u32  flags:u8  pad[3]
//! extension_offset:u32  unused[3]:u32                            (48 bytes)
//! nlibs x { flags:i32  key:u32  value:u32  osversion:u32  hwcap:u64 }
//! strings (key and value are offsets from the start of the new header)
//! ```

use std::path::PathBuf;

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
const OLD_ENTRY: usize = 12;

/// `FLAG_ELF_LIBC6`: a glibc ELF library (the low byte of an entry's flags).
const FLAG_ELF_LIBC6: i32 = 0x0003;

/// The architecture byte of this build's libraries (`FLAG_X8664_LIB64`,
/// `FLAG_AARCH64_LIB64`); other architectures take any.
#[cfg(target_arch = "x86_64")]
const ARCH_FLAG: Option<i32> = Some(0x0300);
#[cfg(target_arch = "aarch64")]
const ARCH_FLAG: Option<i32> = Some(0x0a00);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_FLAG: Option<i32> = None;

/// One library of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLibrary {
    /// The name it is looked up by (its soname, or a file name).
    pub name: String,
    /// The file, as the cache's owner sees it.
    pub path: PathBuf,
}

/// Why a cache could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdCacheError {
    /// Neither magic number.
    #[error("not a glibc ld.so.cache (unknown magic number)")]
    UnknownFormat,
    /// A count or offset points past the end.
    #[error("truncated ld.so.cache: {0}")]
    Truncated(&'static str),
}

/// The libraries of this architecture in a cache's bytes, in cache order
/// (the order the loader prefers), hardware-capability variants left out.
pub fn parse(data: &[u8]) -> Result<Vec<CachedLibrary>, LdCacheError> {
    let start = new_format_start(data)?;
    let new = &data[start..];
    let count = read_u32(new, 20).ok_or(LdCacheError::Truncated("header"))? as usize;
    let entries_end = count
        .checked_mul(NEW_ENTRY)
        .and_then(|n| n.checked_add(NEW_HEADER))
        .filter(|&end| end <= new.len())
        .ok_or(LdCacheError::Truncated("library table"))?;
    let mut out = Vec::with_capacity(count);
    for entry in new[NEW_HEADER..entries_end].chunks_exact(NEW_ENTRY) {
        let flags = read_u32(entry, 0).unwrap_or(0) as i32;
        let hwcap = u64::from_ne_bytes(entry[16..24].try_into().unwrap_or([0; 8]));
        if flags & 0xff != FLAG_ELF_LIBC6
            || ARCH_FLAG.is_some_and(|arch| flags & 0xff00 != arch)
            || hwcap != 0
        {
            continue;
        }
        let (Some(key), Some(value)) = (read_u32(entry, 4), read_u32(entry, 8)) else {
            continue;
        };
        let (Some(name), Some(path)) = (string_at(new, key), string_at(new, value)) else {
            return Err(LdCacheError::Truncated("string table"));
        };
        out.push(CachedLibrary {
            name,
            path: PathBuf::from(path),
        });
    }
    Ok(out)
}

/// Where the new-format header starts: at 0, or after an old-format table.
fn new_format_start(data: &[u8]) -> Result<usize, LdCacheError> {
    if data.starts_with(NEW_MAGIC) {
        return Ok(0);
    }
    if !data.starts_with(OLD_MAGIC) {
        return Err(LdCacheError::UnknownFormat);
    }
    // Old header: magic (11 bytes, padded to 12) and nlibs.
    let count = read_u32(data, 12).ok_or(LdCacheError::Truncated("old header"))? as usize;
    let end = count
        .checked_mul(OLD_ENTRY)
        .and_then(|n| n.checked_add(16))
        .ok_or(LdCacheError::Truncated("old table"))?;
    // The new header follows, aligned like its 8-byte fields.
    let start = end.next_multiple_of(8);
    if data
        .get(start..)
        .is_some_and(|rest| rest.starts_with(NEW_MAGIC))
    {
        Ok(start)
    } else {
        // An old-format-only cache (glibc before 2.32 could write one): its
        // entries lack the architecture flags this reader relies on.
        Err(LdCacheError::UnknownFormat)
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn string_at(data: &[u8], offset: u32) -> Option<String> {
    let rest = data.get(offset as usize..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache image with `entries` (flags, name, path, hwcap), behind an old table of `old` entries.
    fn image(entries: &[(i32, &str, &str, u64)], old: Option<usize>) -> Vec<u8> {
        let mut prefix = Vec::new();
        if let Some(n) = old {
            prefix.extend_from_slice(OLD_MAGIC);
            prefix.push(0);
            prefix.extend_from_slice(&(n as u32).to_ne_bytes());
            prefix.resize(16 + n * OLD_ENTRY, 0);
            prefix.resize(prefix.len().next_multiple_of(8), 0);
        }
        let mut strings = Vec::new();
        let table_end = NEW_HEADER + entries.len() * NEW_ENTRY;
        let mut offsets = Vec::new();
        for (_, name, path, _) in entries {
            let key = table_end + strings.len();
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            let value = table_end + strings.len();
            strings.extend_from_slice(path.as_bytes());
            strings.push(0);
            offsets.push((key as u32, value as u32));
        }
        let mut new = Vec::new();
        new.extend_from_slice(NEW_MAGIC);
        new.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        new.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        new.resize(NEW_HEADER, 0);
        for ((flags, _, _, hwcap), (key, value)) in entries.iter().zip(offsets) {
            new.extend_from_slice(&flags.to_ne_bytes());
            new.extend_from_slice(&key.to_ne_bytes());
            new.extend_from_slice(&value.to_ne_bytes());
            new.extend_from_slice(&0u32.to_ne_bytes());
            new.extend_from_slice(&hwcap.to_ne_bytes());
        }
        new.extend_from_slice(&strings);
        prefix.extend_from_slice(&new);
        prefix
    }

    #[test]
    fn reads_this_architectures_entries_in_order() {
        let arch = ARCH_FLAG.unwrap_or(0);
        let data = image(
            &[
                (FLAG_ELF_LIBC6 | arch, "libz.so.1", "/lib/libz.so.1", 0),
                (FLAG_ELF_LIBC6 | 0x0800, "libz.so.1", "/lib32/libz.so.1", 0),
                (
                    FLAG_ELF_LIBC6 | arch,
                    "libm.so.6",
                    "/lib/haswell/libm.so.6",
                    4,
                ),
                (FLAG_ELF_LIBC6 | arch, "libm.so.6", "/lib/libm.so.6", 0),
            ],
            None,
        );
        let libs = parse(&data).unwrap();
        let names: Vec<(&str, &str)> = libs
            .iter()
            .map(|l| (l.name.as_str(), l.path.to_str().unwrap()))
            .collect();
        if ARCH_FLAG.is_some() {
            assert_eq!(
                names,
                [
                    ("libz.so.1", "/lib/libz.so.1"),
                    ("libm.so.6", "/lib/libm.so.6")
                ]
            );
        }
        let behind_old = image(&[(FLAG_ELF_LIBC6 | arch, "a", "/a", 0)], Some(3));
        assert_eq!(parse(&behind_old).unwrap()[0].path, PathBuf::from("/a"));
    }

    #[test]
    fn bad_caches_are_errors_not_panics() {
        assert_eq!(parse(b"nonsense"), Err(LdCacheError::UnknownFormat));
        assert_eq!(parse(b""), Err(LdCacheError::UnknownFormat));
        let mut data = image(&[(FLAG_ELF_LIBC6, "a", "/a", 0)], None);
        data.truncate(NEW_HEADER + 3);
        assert_eq!(parse(&data), Err(LdCacheError::Truncated("library table")));
        let mut data = image(
            &[(FLAG_ELF_LIBC6 | ARCH_FLAG.unwrap_or(0), "a", "/a", 0)],
            None,
        );
        let len = data.len();
        data.truncate(len - 3);
        assert!(parse(&data).is_err());
        for cut in 0..data.len() {
            let _ = parse(&data[..cut]);
        }
    }

    /// This machine's cache, as `ldconfig -p` prints it.
    #[test]
    fn agrees_with_ldconfig_on_this_machine() {
        let Ok(data) = std::fs::read("/etc/ld.so.cache") else {
            panic!("/etc/ld.so.cache is missing: run ldconfig");
        };
        let printed = std::process::Command::new("ldconfig")
            .arg("-p")
            .output()
            .or_else(|_| {
                std::process::Command::new("/sbin/ldconfig")
                    .arg("-p")
                    .output()
            })
            .expect("ldconfig -p");
        let text = String::from_utf8_lossy(&printed.stdout);
        let arch = if cfg!(target_arch = "x86_64") {
            "x86-64"
        } else {
            "AArch64"
        };
        let mut expected: Vec<(String, String)> = text
            .lines()
            .skip(1)
            .filter(|l| l.contains(arch) && !l.contains("hwcap"))
            .filter_map(|l| {
                let (name, rest) = l.trim().split_once(' ')?;
                let path = rest.split_once(" => ")?.1;
                Some((name.to_string(), path.to_string()))
            })
            .collect();
        let mut parsed: Vec<(String, String)> = parse(&data)
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.path.display().to_string()))
            .collect();
        expected.sort();
        parsed.sort();
        assert!(parsed.len() > 10, "only {} libraries", parsed.len());
        assert_eq!(parsed, expected);
    }
}
