//! Map reading against real kernel maps: every entry of maps larger than one
//! batch, per-CPU values summed, and arrays.

use crate::common::{self, require_bpf};
use libbpf_rs::MapType;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use userspace_exporter::attach::TableLayout;
use userspace_exporter::metrics::maps::read_u64_map;

fn create(map_type: MapType, key_size: u32, entries: u32) -> OwnedFd {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            map_type as u32,
            std::ptr::null(),
            key_size,
            8,
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
