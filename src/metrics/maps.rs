//! Reading a whole BPF map at scrape time, in batches: one integer per entry
//! (the whole 8-byte value, or one field of a struct value), summed over CPUs.
//!
//! libbpf-rs 0.27's batch iterator stops early on hash maps (the kernel may
//! return a short batch that is not the last), so we call
//! `bpf_map_lookup_batch` ourselves until it reports ENOENT, keeping the
//! entries that come with that last call. Map types or kernels without batch
//! support (before 5.6, or `--kernel.assume-missing=batch_lookup`) fall back
//! to `get_next_key` + lookup.
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

/// The number of possible CPUs: how many copies of a value a per-CPU map
/// holds. An error when libbpf cannot tell (it reads
/// `/sys/devices/system/cpu/possible`): guessing too few would hand the
/// kernel buffers smaller than what it writes.
fn possible_cpus() -> std::io::Result<usize> {
    // SAFETY: plain libbpf query without arguments.
    let n = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
    if n <= 0 {
        let e = std::io::Error::from_raw_os_error(-n);
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot tell the number of possible CPUs (/sys/devices/system/cpu/possible): {e}; per-CPU maps cannot be read without it"),
        ));
    }
    Ok(n as usize)
}

/// Bytes between one value and the next in what the kernel writes for a
/// lookup: per-CPU maps round each CPU's copy up to 8 bytes; other maps
/// (hash, LRU hash, array) pack values at exactly their size, in batches too.
fn value_stride(layout: &TableLayout) -> usize {
    if layout.is_percpu() {
        (layout.value_size as usize).div_ceil(8) * 8
    } else {
        layout.value_size as usize
    }
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

/// How a map's entries are fetched from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// `bpf_map_lookup_batch`, falling back to key by key where the kernel
    /// has no batch lookup for the map (what scrapes use).
    Batched,
    /// `get_next_key` + lookup, two syscalls a key (the fallback, chosen
    /// explicitly by tests so that both paths are checked).
    KeyByKey,
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
    each: impl FnMut(&MapEntries) -> ControlFlow<()>,
) -> std::io::Result<usize> {
    read_map_via(fd, layout, value, ReadPath::Batched, each)
}

/// [`read_map_batches`] through the given [`ReadPath`].
pub fn read_map_via(
    fd: BorrowedFd<'_>,
    layout: &TableLayout,
    value: &ValueLayout,
    path: ReadPath,
    mut each: impl FnMut(&MapEntries) -> ControlFlow<()>,
) -> std::io::Result<usize> {
    let key_size = layout.key_size as usize;
    let cpus = if layout.is_percpu() {
        possible_cpus()?
    } else {
        1
    };
    let field = Field {
        stride: value_stride(layout),
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
    // Where the kernel is known to lack batch lookups, every read would
    // start with a call bound to fail.
    let no_batches = crate::kernel::detected()
        .is_some_and(|kernel| !kernel.usable(crate::kernel::Feature::BatchLookup));
    let batched = match path {
        ReadPath::Batched if no_batches => {
            Err((std::io::Error::from_raw_os_error(libc::ENOTSUP), 0))
        }
        ReadPath::Batched => read_batched(fd, key_size, field, cpus, &mut batch, &mut deliver),
        ReadPath::KeyByKey => Err((std::io::Error::from_raw_os_error(libc::ENOTSUP), 0)),
    };
    match batched {
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
    /// Bytes per value, or per CPU copy of a value ([`value_stride`]).
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
    use libbpf_rs::MapType;

    fn layout(map_type: MapType, value_size: u32) -> TableLayout {
        TableLayout {
            map_type,
            key_size: 4,
            value_size,
        }
    }

    #[test]
    fn values_are_packed_at_their_size_except_per_cpu_copies_which_round_to_8() {
        for size in [1u32, 2, 4, 8, 12, 16, 24] {
            for kind in [MapType::Hash, MapType::LruHash, MapType::Array] {
                assert_eq!(value_stride(&layout(kind, size)), size as usize);
            }
            for kind in [
                MapType::PercpuHash,
                MapType::LruPercpuHash,
                MapType::PercpuArray,
            ] {
                assert_eq!(
                    value_stride(&layout(kind, size)),
                    size.div_ceil(8) as usize * 8
                );
            }
        }
    }

    #[test]
    fn packed_u32_values_of_a_batch_are_read_one_by_one() {
        // What a batch lookup of BPF_HASH(counts, u32, u32) writes: six
        // 4-byte values end to end (the example read them at an
        // 8-byte stride: 10, 0, 60, 0, 0, 20).
        let raw: Vec<u8> = [10u32, 20, 30, 40, 50, 60]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let field = Field {
            stride: value_stride(&layout(MapType::Hash, 4)),
            offset: 0,
            size: 4,
            signed: false,
        };
        let mut out = MapEntries::default();
        add_values(&mut out, &raw, field, 1);
        assert_eq!(out.values, [10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn a_12_byte_struct_is_read_at_every_member_packed_and_per_cpu() {
        // struct { u32 a, b, c; }: packed at 12 bytes in a hash map, padded
        // to 16 per CPU in a per-CPU one.
        let values = [[1u32, 2, 3], [4, 5, 6]];
        let packed: Vec<u8> = values
            .iter()
            .flatten()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let per_cpu: Vec<u8> = values
            .iter()
            .flat_map(|v| {
                let mut copy: Vec<u8> = v.iter().flat_map(|m| m.to_ne_bytes()).collect();
                copy.extend_from_slice(&[0xff; 4]); // padding the kernel may leave
                copy
            })
            .collect();
        for (offset, packed_want, per_cpu_want) in [(0, [1, 4], 5), (4, [2, 5], 7), (8, [3, 6], 9)]
        {
            let mut field = Field {
                stride: value_stride(&layout(MapType::Array, 12)),
                offset,
                size: 4,
                signed: false,
            };
            let mut out = MapEntries::default();
            add_values(&mut out, &packed, field, 1);
            assert_eq!(out.values, packed_want, "offset {offset}");
            field.stride = value_stride(&layout(MapType::PercpuArray, 12));
            let mut out = MapEntries::default();
            add_values(&mut out, &per_cpu, field, 2);
            assert_eq!(out.values, [per_cpu_want], "offset {offset}");
        }
    }

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
