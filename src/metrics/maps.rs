//! Reading a whole BPF map of u64 values at scrape time, in batches.
//!
//! libbpf-rs 0.27's batch iterator stops early on hash maps (the kernel may
//! return a short batch that is not the last), so we call
//! `bpf_map_lookup_batch` ourselves until it reports ENOENT, keeping the
//! entries that come with that last call. Map types or kernels without batch
//! support fall back to `get_next_key` + lookup.

use crate::attach::TableLayout;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Entries asked for per batch call.
const BATCH: u32 = 8192;

/// The entries of one map: keys laid end to end, values summed over CPUs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MapEntries {
    /// Key size in bytes.
    pub key_size: usize,
    /// `len() * key_size` bytes of keys.
    pub keys: Vec<u8>,
    /// One value per key.
    pub values: Vec<u64>,
}

impl MapEntries {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Iterates (key bytes, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.keys
            .chunks_exact(self.key_size.max(1))
            .zip(self.values.iter().copied())
    }
}

fn possible_cpus() -> usize {
    // SAFETY: plain libbpf query without arguments.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    n.max(1) as usize
}

/// Reads every entry of a map whose values are u64 (per CPU for per-CPU maps).
pub fn read_u64_map(fd: BorrowedFd<'_>, layout: &TableLayout) -> std::io::Result<MapEntries> {
    let key_size = layout.key_size as usize;
    let cpus = if layout.is_percpu() {
        possible_cpus()
    } else {
        1
    };
    // Per-CPU values are laid out 8-byte aligned per CPU.
    let value_stride = (layout.value_size as usize).div_ceil(8) * 8;
    let mut out = MapEntries {
        key_size,
        keys: Vec::new(),
        values: Vec::new(),
    };
    match read_batched(fd, key_size, value_stride, cpus, &mut out) {
        Ok(()) => Ok(out),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524 /* ENOTSUPP */)
            ) && out.is_empty() =>
        {
            read_key_by_key(fd, key_size, value_stride, cpus, &mut out)?;
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

fn add_values(out: &mut MapEntries, raw: &[u8], value_stride: usize, cpus: usize) {
    for entry in raw.chunks_exact(value_stride * cpus) {
        let sum = entry
            .chunks_exact(value_stride)
            .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8-byte value")))
            .fold(0u64, u64::wrapping_add);
        out.values.push(sum);
    }
}

fn read_batched(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_stride: usize,
    cpus: usize,
    out: &mut MapEntries,
) -> std::io::Result<()> {
    let mut batch = BATCH;
    // Batch tokens: the kernel writes a bucket index (hash) or a key (array).
    let token_size = key_size.max(8);
    let mut in_token = vec![0u8; token_size];
    let mut out_token = vec![0u8; token_size];
    let mut keys = vec![0u8; key_size * batch as usize];
    let mut values = vec![0u8; value_stride * cpus * batch as usize];
    let mut first = true;
    loop {
        let mut count = batch;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: buffers hold `count` keys and values and tokens of at least key size.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd.as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    in_token.as_mut_ptr().cast()
                },
                out_token.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if rc < 0 {
            Some(std::io::Error::from_raw_os_error(-rc))
        } else {
            None
        };
        let done = matches!(&err, Some(e) if e.raw_os_error() == Some(libc::ENOENT));
        match err {
            Some(e) if !done => {
                if e.raw_os_error() == Some(libc::ENOSPC) && batch < (1 << 20) {
                    // A hash bucket larger than the batch: retry with room for it.
                    batch *= 2;
                    keys.resize(key_size * batch as usize, 0);
                    values.resize(value_stride * cpus * batch as usize, 0);
                    continue;
                }
                return Err(e);
            }
            _ => {}
        }
        let n = count as usize;
        out.keys.extend_from_slice(&keys[..n * key_size]);
        add_values(out, &values[..n * value_stride * cpus], value_stride, cpus);
        if done {
            return Ok(());
        }
        std::mem::swap(&mut in_token, &mut out_token);
        first = false;
    }
}

fn read_key_by_key(
    fd: BorrowedFd<'_>,
    key_size: usize,
    value_stride: usize,
    cpus: usize,
    out: &mut MapEntries,
) -> std::io::Result<()> {
    let mut key = vec![0u8; key_size];
    let mut next = vec![0u8; key_size];
    let mut value = vec![0u8; value_stride * cpus];
    let mut first = true;
    loop {
        // SAFETY: key buffers are key_size bytes.
        let rc = unsafe {
            libbpf_sys::bpf_map_get_next_key(
                fd.as_raw_fd(),
                if first {
                    std::ptr::null()
                } else {
                    key.as_ptr().cast()
                },
                next.as_mut_ptr().cast(),
            )
        };
        if rc < 0 {
            let e = std::io::Error::from_raw_os_error(-rc);
            return if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(())
            } else {
                Err(e)
            };
        }
        first = false;
        // SAFETY: value buffer holds one value per possible CPU.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                fd.as_raw_fd(),
                next.as_ptr().cast(),
                value.as_mut_ptr().cast(),
            )
        };
        if rc == 0 {
            out.keys.extend_from_slice(&next);
            add_values(out, &value, value_stride, cpus);
        } // ENOENT: deleted between the two calls; skip it.
        std::mem::swap(&mut key, &mut next);
    }
}
