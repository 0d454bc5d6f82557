//! `cgroup`: a cgroup v2 id (`bpf_get_current_cgroup_id()`) as the cgroup's
//! path, as `/proc/PID/cgroup` shows it (`/system.slice/nginx.service`).
//!
//! A cgroup's id is the inode number of its directory in the cgroup2 file
//! system, so the ids are learned by walking that tree; the walk is repeated
//! for an unknown id at most once a second (a cgroup made since).

use super::{read_unsigned, DecodeError, Decoder};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often an unknown id may cause a new walk of the tree.
const REWALK: Duration = Duration::from_secs(1);

/// Cgroups kept; a bigger tree is walked but only this many are remembered.
const MAX_CGROUPS: usize = 100_000;

/// Decodes an 8-byte cgroup id to its path; an id no cgroup has (one removed
/// since) as its decimal number.
#[derive(Debug)]
pub struct CgroupDecoder {
    state: Mutex<CgroupPaths>,
}

impl Default for CgroupDecoder {
    fn default() -> Self {
        CgroupDecoder {
            state: Mutex::new(CgroupPaths {
                root: cgroup2_root(),
                paths: HashMap::new(),
                walked: None,
            }),
        }
    }
}

impl CgroupDecoder {
    /// A decoder reading the cgroup2 tree mounted at `root` (for tests).
    pub fn with_root(root: PathBuf) -> Self {
        CgroupDecoder {
            state: Mutex::new(CgroupPaths {
                root: Some(root),
                paths: HashMap::new(),
                walked: None,
            }),
        }
    }
}

impl Decoder for CgroupDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let id = match input.len() {
            8 => read_unsigned(input).unwrap_or(0),
            _ => {
                return Err(DecodeError::bad_input(
                    "cgroup",
                    input,
                    "a cgroup id is 8 bytes (size: 8)",
                ))
            }
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(Some(state.path(id).into_bytes()))
    }

    fn is_injective(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    walked: Option<Instant>,
}

impl CgroupPaths {
    fn path(&mut self, id: u64) -> String {
        if let Some(path) = self.paths.get(&id) {
            return path.clone();
        }
        if self.walked.is_none_or(|at| at.elapsed() >= REWALK) {
            self.walk();
            if let Some(path) = self.paths.get(&id) {
                return path.clone();
            }
        }
        id.to_string()
    }

    fn walk(&mut self) {
        self.walked = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        self.paths.clear();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(metadata) = std::fs::metadata(&dir) else {
                continue;
            };
            if self.paths.len() < MAX_CGROUPS {
                let relative = dir.strip_prefix(&root).unwrap_or(Path::new(""));
                self.paths
                    .insert(metadata.ino(), format!("/{}", relative.display()));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}

/// Where the cgroup2 file system is mounted for this process (`/sys/fs/cgroup`
/// on a unified host, `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // ... mount_point ... - fstype source options
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        before.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree stands in for the cgroup file system: its inodes are the ids.
    #[test]
    fn ids_are_the_inodes_of_the_tree_and_new_ones_are_found() {
        let root = tempfile::tempdir().unwrap();
        let service = root.path().join("system.slice/nginx.service");
        std::fs::create_dir_all(&service).unwrap();
        let decoder = CgroupDecoder::with_root(root.path().to_path_buf());
        let decode = |id: u64| {
            String::from_utf8(decoder.decode(&id.to_ne_bytes()).unwrap().unwrap()).unwrap()
        };
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(decode(ino(&service)), "/system.slice/nginx.service");
        assert_eq!(decode(ino(root.path())), "/");
        // Made after the first walk: found by the next one, a second later.
        let late = root.path().join("late.slice");
        std::fs::create_dir(&late).unwrap();
        std::thread::sleep(REWALK);
        assert_eq!(decode(ino(&late)), "/late.slice");
        assert_eq!(decode(1), "1");
        assert!(decoder.decode(&[1, 2, 3, 4]).is_err());
    }

    #[test]
    fn this_process_cgroup_is_named_as_proc_shows_it() {
        let Some(root) = cgroup2_root() else {
            panic!("no cgroup2 mount on this machine");
        };
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            panic!("no cgroup v2 line in /proc/self/cgroup: {own}");
        };
        let dir = root.join(path.trim_start_matches('/'));
        let id = std::fs::metadata(&dir).unwrap().ino();
        let decoder = CgroupDecoder::default();
        let name = decoder.decode(&id.to_ne_bytes()).unwrap().unwrap();
        assert_eq!(String::from_utf8(name).unwrap(), path);
    }
}
