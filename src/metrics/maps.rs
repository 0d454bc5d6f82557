//! Reading a whole BPF map at scrape time, in batches: one integer per entry
//! (the whole 8-byte value, or one field of a struct value), summed over CPUs.
//!
//! libbpf-rs 0.27's batch iterator stops early on hash maps (the kernel may
//! return a short batch that is not the last), so we call
//! `bpf_map_lookup_batch` ourselves until it reports ENOENT, keeping the
//! entries that come with that last call. Map types or kernels without batch
//! support fall back to `get_next_key` + lookup.
//!
//! A scrape takes the entries batch by batch ([`read_map_batches`]): a map of a
//! million keys is never held whole (16 MB of keys and values, more with
//! per-CPU copies), only one batch of 8192 entries at a time.

use crate::attach::{TableLayout, ValueLayout};
use std::ops::ControlFlow;
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
    /// One value per key (a signed field sign-extended: its bits as u64).
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
    read_map(fd, layout, &ValueLayout::WHOLE_U64)
}

/// Reads every entry of a map, taking `value`'s field of each value (summed
/// over CPUs for per-CPU maps, with wrapping two's-complement addition, so
/// signed fields sum right too).
pub fn read_map(
    fd: BorrowedFd<'_>,
    layout: &TableLayout,
    value: &ValueLayout,
) -> std::io::Result<MapEntries> {
    let mut out = MapEntries {
        key_size: layout.key_size as usize,
        ..MapEntries::default()
    };
    read_map_batches(fd, layout, value, |batch| {
        out.keys.extend_from_slice(&batch.keys);
        out.values.extend_from_slice(&batch.values);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Reads every entry of a map as [`read_map`] does, but hands the entries to
/// `each` one batch at a time (at most a few thousand entries, the same
/// buffer reused), so that a scrape can encode a map of any size as it reads
/// it. The map is still walked once, from its first entry to its last; `each`
/// may stop the walk early with [`ControlFlow::Break`]. Returns the number of
/// entries read.
pub fn read_map_batches(
    fd: BorrowedFd<'_>,
    layout: &TableLayout,
    value: &ValueLayout,
    mut each: impl FnMut(&MapEntries) -> ControlFlow<()>,
) -> std::io::Result<usize> {
    let key_size = layout.key_size as usize;
    let cpus = if layout.is_percpu() {
        possible_cpus()
    } else {
        1
    };
    // Per-CPU values are laid out 8-byte aligned per CPU.
    let value_stride = (layout.value_size as usize).div_ceil(8) * 8;
    let field = Field {
        stride: value_stride,
        offset: value.offset,
        size: value.size,
        signed: value.signed,
    };
    let mut batch = MapEntries {
        key_size,
        keys: Vec::new(),
        values: Vec::new(),
    };
    let mut read = 0usize;
    let mut deliver = |batch: &mut MapEntries| {
        read += batch.len();
        let flow = if batch.is_empty() {
            ControlFlow::Continue(())
        } else {
            each(batch)
        };
        batch.keys.clear();
        batch.values.clear();
        flow
    };
    match read_batched(fd, key_size, field, cpus, &mut batch, &mut deliver) {
        Ok(()) => {}
        // Nothing delivered yet: the kernel has no batch lookup for this map.
        Err((e, 0))
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(524 /* ENOTSUPP */)
            ) =>
        {
            read_key_by_key(fd, key_size, field, cpus, &mut batch, &mut deliver)?;
        }
        Err((e, _)) => return Err(e),
    }
    Ok(read)
}

/// Where the metric's integer lies in each CPU's copy of a value.
#[derive(Debug, Clone, Copy)]
struct Field {
    /// Bytes per CPU copy (the value size rounded up to 8).
    stride: usize,
    offset: usize,
    size: usize,
    signed: bool,
}

impl Field {
    /// The field of one CPU's copy, widened to 64 bits.
    fn read(&self, value: &[u8]) -> u64 {
        let bytes = &value[self.offset..self.offset + self.size];
        let mut wide = [0u8; 8];
        // Host byte order: on little-endian hosts the low bytes come first.
        if cfg!(target_endian = "little") {
            wide[..self.size].copy_from_slice(bytes);
        } else {
            wide[8 - self.size..].copy_from_slice(bytes);
        }
        let raw = u64::from_ne_bytes(wide);
        if self.signed && self.size < 8 {
            let shift = 64 - 8 * self.size as u32;
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw
        }
    }
}

fn add_values(out: &mut MapEntries, raw: &[u8], field: Field, cpus: usize) {
    for entry in raw.chunks_exact(field.stride * cpus) {
        let sum = entry
            .chunks_exact(field.stride)
            .map(|v| field.read(v))
            .fold(0u64, u64::wrapping_add);
        out.values.push(sum);
    }
}

/// Calls `deliver` with each batch the kernel returns (`out` holds it, and
/// is emptied by `deliver`). An error comes with the number of batches
/// delivered before it.
fn read_batched(
    fd: BorrowedFd<'_>,
    key_size: usize,
    field: Field,
    cpus: usize,
    out: &mut MapEntries,
    deliver: &mut impl FnMut(&mut MapEntries) -> ControlFlow<()>,
) -> Result<(), (std::io::Error, usize)> {
    let value_stride = field.stride;
    let mut batch = BATCH;
    // Batch tokens: the kernel writes a bucket index (hash) or a key (array).
    let token_size = key_size.max(8);
    let mut in_token = vec![0u8; token_size];
    let mut out_token = vec![0u8; token_size];
    let mut keys = vec![0u8; key_size * batch as usize];
    let mut values = vec![0u8; value_stride * cpus * batch as usize];
    let mut first = true;
    let mut delivered = 0usize;
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
                return Err((e, delivered));
            }
            _ => {}
        }
        let n = count as usize;
        out.keys.extend_from_slice(&keys[..n * key_size]);
        add_values(out, &values[..n * value_stride * cpus], field, cpus);
        delivered += 1;
        if deliver(out).is_break() || done {
            return Ok(());
        }
        std::mem::swap(&mut in_token, &mut out_token);
        first = false;
    }
}

fn read_key_by_key(
    fd: BorrowedFd<'_>,
    key_size: usize,
    field: Field,
    cpus: usize,
    out: &mut MapEntries,
    deliver: &mut impl FnMut(&mut MapEntries) -> ControlFlow<()>,
) -> std::io::Result<()> {
    let value_stride = field.stride;
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
                let _ = deliver(out);
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
            add_values(out, &value, field, cpus);
            if out.len() >= BATCH as usize && deliver(out).is_break() {
                return Ok(());
            }
        } // ENOENT: deleted between the two calls; skip it.
        std::mem::swap(&mut key, &mut next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_sign_extended_and_summed_over_cpus() {
        // struct { u64 calls; s32 inflight; u32 pad; } on two CPUs.
        let mut raw = Vec::new();
        for (calls, inflight) in [(5u64, -3i32), (7u64, 1i32)] {
            raw.extend_from_slice(&calls.to_ne_bytes());
            raw.extend_from_slice(&inflight.to_ne_bytes());
            raw.extend_from_slice(&[0; 4]);
        }
        let mut out = MapEntries::default();
        let calls = Field {
            stride: 16,
            offset: 0,
            size: 8,
            signed: false,
        };
        add_values(&mut out, &raw, calls, 2);
        let inflight = Field {
            stride: 16,
            offset: 8,
            size: 4,
            signed: true,
        };
        add_values(&mut out, &raw, inflight, 2);
        let unsigned = Field {
            signed: false,
            ..inflight
        };
        add_values(&mut out, &raw, unsigned, 2);
        assert_eq!(out.values[0], 12);
        assert_eq!(out.values[1] as i64, -2);
        assert_eq!(out.values[2], u64::from((-3i32) as u32) + 1);
        let byte = Field {
            stride: 16,
            offset: 8,
            size: 1,
            signed: true,
        };
        let mut out = MapEntries::default();
        add_values(&mut out, &raw[..16], byte, 1);
        assert_eq!(out.values[0] as i64, -3);
    }
}
