//! Map reading against real kernel maps: every entry of maps larger than one
//! batch, per-CPU values summed, and arrays.

use crate::common::{self, require_bpf};
use libbpf_rs::MapType;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use userspace_exporter::attach::TableLayout;
use userspace_exporter::attach::ValueLayout;
use userspace_exporter::metrics::maps::{read_map_via, read_u64_map, MapEntries, ReadPath};

fn create(map_type: MapType, key_size: u32, entries: u32) -> OwnedFd {
    create_sized(map_type, key_size, 8, entries)
}

fn create_sized(map_type: MapType, key_size: u32, value_size: u32, entries: u32) -> OwnedFd {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            map_type as u32,
            std::ptr::null(),
            key_size,
            value_size,
            entries,
            &opts,
        )
    };
    assert!(
        fd >= 0,
        "bpf_map_create: {}",
        std::io::Error::from_raw_os_error(-fd)
    );
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn cpus() -> usize {
    unsafe { libbpf_sys::libbpf_num_possible_cpus() as usize }
}

fn fill(fd: BorrowedFd<'_>, n: u64, percpu: bool) {
    use std::os::fd::AsRawFd;
    for key in 0..n {
        let values: Vec<u64> = if percpu {
            (0..cpus() as u64).map(|c| key + c).collect()
        } else {
            vec![key * 3]
        };
        let rc = unsafe {
            libbpf_sys::bpf_map_update_elem(
                fd.as_raw_fd(),
                (&key as *const u64).cast(),
                values.as_ptr().cast(),
                0,
            )
        };
        assert_eq!(rc, 0);
    }
}

fn layout(map_type: MapType) -> TableLayout {
    TableLayout {
        map_type,
        key_size: 8,
        value_size: 8,
    }
}

#[test]
fn a_hash_map_larger_than_many_batches_is_read_whole() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    use std::os::fd::AsFd;
    let n = 100_000u64;
    let map = create(MapType::Hash, 8, n as u32);
    fill(map.as_fd(), n, false);
    let entries = read_u64_map(map.as_fd(), &layout(MapType::Hash)).unwrap();
    assert_eq!(entries.len(), n as usize);
    let mut keys: Vec<u64> = entries
        .iter()
        .map(|(k, v)| {
            let key = u64::from_ne_bytes(k.try_into().unwrap());
            assert_eq!(v, key * 3);
            key
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), n as usize);
}

#[test]
fn per_cpu_values_are_summed() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    use std::os::fd::AsFd;
    let n = 20_000u64;
    let map = create(MapType::PercpuHash, 8, n as u32);
    fill(map.as_fd(), n, true);
    let entries = read_u64_map(map.as_fd(), &layout(MapType::PercpuHash)).unwrap();
    assert_eq!(entries.len(), n as usize);
    let c = cpus() as u64;
    for (k, v) in entries.iter() {
        let key = u64::from_ne_bytes(k.try_into().unwrap());
        // sum over cpus of (key + cpu)
        assert_eq!(v, key * c + c * (c - 1) / 2);
    }
}

#[test]
fn arrays_return_every_slot() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    use std::os::fd::AsFd;
    let map = create(MapType::Array, 4, 10_000);
    let entries = read_u64_map(
        map.as_fd(),
        &TableLayout {
            key_size: 4,
            ..layout(MapType::Array)
        },
    )
    .unwrap();
    assert_eq!(entries.len(), 10_000);
    assert!(entries.iter().all(|(_, v)| v == 0));
}

/// What member `member` of key `key`'s value holds on CPU `cpu` in
/// [`values_of_every_size_read_exactly_by_both_paths`].
fn member_value(key: u32, member: usize, cpu: usize) -> u64 {
    10 * u64::from(key) + member as u64 + cpu as u64
}

#[test]
fn values_of_every_size_read_exactly_by_both_paths() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    use crate::value_layouts::{MAP_KINDS, VALUE_SIZES};
    use std::os::fd::{AsFd, AsRawFd};
    let mut checked = 0;
    for (kind, array) in MAP_KINDS {
        let map_type = match kind {
            "hash" => MapType::Hash,
            "lru_hash" => MapType::LruHash,
            "array" => MapType::Array,
            "percpu_hash" => MapType::PercpuHash,
            "lru_percpu_hash" => MapType::LruPercpuHash,
            "percpu_array" => MapType::PercpuArray,
            other => panic!("unknown kind {other}"),
        };
        let percpu = kind.starts_with("percpu") || kind.starts_with("lru_percpu");
        for (size, members) in VALUE_SIZES {
            let entries = if array { 8 } else { 64 };
            let map = create_sized(map_type, 4, size, entries);
            // What userspace hands the kernel: one copy per possible CPU,
            // each rounded up to 8 bytes, for per-CPU maps; one packed value
            // otherwise.
            let (stride, copies) = if percpu {
                (size.div_ceil(8) as usize * 8, cpus())
            } else {
                (size as usize, 1)
            };
            for key in 1..=6u32 {
                let mut value = vec![0u8; stride * copies];
                for cpu in 0..copies {
                    for (j, &(offset, bytes, _)) in members.iter().enumerate() {
                        let at = cpu * stride + offset;
                        value[at..at + bytes]
                            .copy_from_slice(&member_value(key, j, cpu).to_ne_bytes()[..bytes]);
                    }
                }
                let rc = unsafe {
                    libbpf_sys::bpf_map_update_elem(
                        map.as_raw_fd(),
                        (&key as *const u32).cast(),
                        value.as_ptr().cast(),
                        0,
                    )
                };
                assert_eq!(rc, 0, "{kind} {size}: update key {key}");
            }
            let layout = TableLayout {
                map_type,
                key_size: 4,
                value_size: size,
            };
            for (j, &(offset, bytes, _)) in members.iter().enumerate() {
                let field = ValueLayout {
                    offset,
                    size: bytes,
                    signed: false,
                    multiplier: 1.0,
                };
                for path in [ReadPath::Batched, ReadPath::KeyByKey] {
                    let mut all = MapEntries {
                        key_size: 4,
                        ..MapEntries::default()
                    };
                    read_map_via(map.as_fd(), &layout, &field, path, |batch| {
                        all.keys.extend_from_slice(&batch.keys);
                        all.values.extend_from_slice(&batch.values);
                        std::ops::ControlFlow::Continue(())
                    })
                    .unwrap_or_else(|e| panic!("{kind} {size} {path:?}: {e}"));
                    let mut got: Vec<(u32, u64)> = all
                        .iter()
                        .map(|(k, v)| (u32::from_ne_bytes(k.try_into().unwrap()), v))
                        .collect();
                    got.sort_unstable();
                    let want: Vec<(u32, u64)> = (if array { 0..=7 } else { 1..=6 })
                        .map(|key| {
                            let sum = if (1..=6).contains(&key) {
                                (0..copies).map(|cpu| member_value(key, j, cpu)).sum()
                            } else {
                                0
                            };
                            (key, sum)
                        })
                        .collect();
                    assert_eq!(
                        got, want,
                        "{kind} map, {size}-byte values, member at {offset} ({bytes} bytes), {path:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    // 6 kinds x 17 members x 2 paths.
    assert_eq!(checked, 6 * 17 * 2);
}
