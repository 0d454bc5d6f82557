//! `usym`: an address in a process (an instruction pointer such as
//! `PT_REGS_IP(ctx)` in a uprobe, or `bpf_get_func_ip(ctx)`) as the name of
//! the function holding it, from the process's own symbols.
//!
//! The address goes through the process's executable mappings
//! (`/proc/PID/maps`) to a file offset, through the file's load segments to a
//! link-time address, and to the function symbol covering it. Names are
//! memoized per (pid, address), and the label cache keeps the result, so a key
//! is symbolized once.

use super::{read_unsigned, DecodeError, Decoder};
use crate::elf::ElfCache;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What an address no symbol covers decodes to (bpftrace prints the hex
/// address; one label value for all of them keeps the series bounded).
pub const UNKNOWN: &str = "[unknown]";

/// Processes whose mappings are kept; beyond, the ones that exited are dropped.
const MAX_PROCESSES: usize = 256;

/// Memoized (pid, address) names; beyond, the memo starts over.
const MAX_NAMES: usize = 65_536;

/// A process's mappings are read again for an unknown address when older than this
/// (a library loaded since).
const MAPS_REFRESH: Duration = Duration::from_secs(1);

/// Decodes an 8-byte address of the process the key was read for.
#[derive(Debug, Default)]
pub struct UsymDecoder {
    state: Mutex<Symbolizer>,
}

impl Decoder for UsymDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        self.decode_in(input, None)
    }

    fn decode_in(
        &self,
        input: &[u8],
        process: Option<i32>,
    ) -> Result<Option<Vec<u8>>, DecodeError> {
        if input.len() != 8 {
            return Err(DecodeError::bad_input(
                "usym",
                input,
                "an address is 8 bytes (size: 8)",
            ));
        }
        let address = read_unsigned(input).unwrap_or(0);
        let Some(pid) = process else {
            return Err(DecodeError::NoProcess {
                decoder: "usym",
                reason: "addresses are named in the process the map belongs to; use it in programs with one instance per process (not `instances: shared` or `per_binary`)",
            });
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(Some(state.name(pid, address).into_bytes()))
    }

    fn needs_process(&self) -> bool {
        true
    }
}

/// One executable mapping of a process.
#[derive(Debug, Clone)]
struct Region {
    start: u64,
    end: u64,
    /// File offset of `start`.
    offset: u64,
    /// How the exporter opens the file.
    host_path: PathBuf,
}

#[derive(Debug)]
struct ProcessMaps {
    regions: Vec<Region>,
    read_at: Instant,
}

/// Mappings, parsed files and names found so far.
#[derive(Debug)]
struct Symbolizer {
    elf: ElfCache,
    processes: HashMap<i32, ProcessMaps>,
    names: HashMap<(i32, u64), String>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer {
            elf: ElfCache::new(64),
            processes: HashMap::new(),
            names: HashMap::new(),
        }
    }
}

impl Symbolizer {
    fn name(&mut self, pid: i32, address: u64) -> String {
        if let Some(name) = self.names.get(&(pid, address)) {
            return name.clone();
        }
        let mut name = self.lookup(pid, address);
        let stale = self
            .processes
            .get(&pid)
            .is_none_or(|m| m.read_at.elapsed() > MAPS_REFRESH);
        if name.is_none() && stale {
            self.processes.remove(&pid);
            name = self.lookup(pid, address);
        }
        let name = name.unwrap_or_else(|| UNKNOWN.to_string());
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert((pid, address), name.clone());
        name
    }

    fn lookup(&mut self, pid: i32, address: u64) -> Option<String> {
        if !self.processes.contains_key(&pid) {
            if self.processes.len() >= MAX_PROCESSES {
                self.processes
                    .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
            }
            let regions = read_regions(pid)?;
            self.processes.insert(
                pid,
                ProcessMaps {
                    regions,
                    read_at: Instant::now(),
                },
            );
        }
        let maps = self.processes.get(&pid)?;
        let region = maps
            .regions
            .iter()
            .find(|r| address >= r.start && address < r.end)?;
        let info = self.elf.get(&region.host_path).ok()?;
        let file_offset = address - region.start + region.offset;
        let link_address = info.functions.address_of_offset(file_offset)?;
        Some(info.functions.containing(link_address)?.name.to_string())
    }
}

/// The executable file mappings of process `pid`, from `/proc/PID/maps`.
fn read_regions(pid: i32) -> Option<Vec<Region>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    Some(maps.lines().filter_map(|line| region(pid, line)).collect())
}

/// One `/proc/PID/maps` line (`start-end perms offset dev inode path`) as an
/// executable file region; `None` for anything else.
fn region(pid: i32, line: &str) -> Option<Region> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || inode == "0" || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    // map_files opens exactly the mapped file across mount namespaces; the
    // path under the process's root is the fallback without CAP_SYS_ADMIN.
    let map_file = PathBuf::from(format!("/proc/{pid}/map_files/{range}"));
    let host_path = if std::fs::metadata(&map_file).is_ok() {
        map_file
    } else {
        let path = path.strip_suffix(" (deleted)").unwrap_or(&path);
        PathBuf::from(format!("/proc/{pid}/root{path}"))
    };
    Some(Region {
        start,
        end,
        offset,
        host_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_become_executable_regions() {
        let r = region(
            1,
            "7f12a0028000-7f12a01bd000 r-xp 00028000 fe:01 1835091                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.offset),
            (0x7f12a0028000, 0x7f12a01bd000, 0x28000)
        );
        assert!(region(1, "7f12a0000000-7f12a0028000 r--p 00000000 fe:01 1835091 /usr/lib/x86_64-linux-gnu/libc.so.6").is_none());
        assert!(region(
            1,
            "7ffd5e9f6000-7ffd5e9f8000 r-xp 00000000 00:00 0                          [vdso]"
        )
        .is_none());
        assert!(region(1, "garbage").is_none());
    }

    /// This test binary's own functions, named from its own mappings.
    #[test]
    fn names_a_function_of_this_process() {
        #[inline(never)]
        fn usym_marker_function() -> u64 {
            std::hint::black_box(42)
        }
        let address = usym_marker_function as *const () as usize as u64;
        let decoder = UsymDecoder::default();
        let pid = std::process::id() as i32;
        let name = decoder
            .decode_in(&address.to_ne_bytes(), Some(pid))
            .unwrap()
            .unwrap();
        let name = String::from_utf8(name).unwrap();
        assert!(name.contains("usym_marker_function"), "{name}");
        let inside = decoder
            .decode_in(&(address + 1).to_ne_bytes(), Some(pid))
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8(inside).unwrap(), name);
        assert_eq!(
            decoder.decode_in(&8u64.to_ne_bytes(), Some(pid)).unwrap(),
            Some(UNKNOWN.as_bytes().to_vec())
        );
        assert!(matches!(
            decoder.decode_in(&address.to_ne_bytes(), None),
            Err(DecodeError::NoProcess { .. })
        ));
        assert!(decoder.decode_in(&[1, 2, 3, 4], Some(pid)).is_err());
    }
}
