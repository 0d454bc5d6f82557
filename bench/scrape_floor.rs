//! The floor of a scrape: read every map named NAME in the kernel with
//! `bpf_map_lookup_batch` (u64 keys and values) and write the same text the
//! exporter writes for them, nothing else. Prints, as JSON, the median time
//! of REPS rounds and the bytes written.
//! Usage: scrape_floor NAME METRIC REPS

use std::ffi::CStr;
use std::io::Write;
use std::time::Instant;

fn map_fds(name: &str) -> Vec<i32> {
    let mut fds = Vec::new();
    let mut id = 0u32;
    // SAFETY: plain bpf(2) wrappers on ids and fds we own.
    unsafe {
        while libbpf_sys::bpf_map_get_next_id(id, &mut id) == 0 {
            let fd = libbpf_sys::bpf_map_get_fd_by_id(id);
            if fd < 0 {
                continue;
            }
            let mut info = libbpf_sys::bpf_map_info::default();
            let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
            if libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) == 0
                && CStr::from_ptr(info.name.as_ptr()).to_bytes() == name.as_bytes()
                && info.key_size == 8
                && info.value_size == 8
            {
                fds.push(fd);
            } else {
                libc::close(fd);
            }
        }
    }
    fds
}

fn read_all(fd: i32, keys: &mut Vec<u64>, values: &mut Vec<u64>) {
    keys.clear();
    values.clear();
    let batch = 8192usize;
    let mut in_batch = 0u64;
    let mut out_batch = 0u64;
    let mut first = true;
    loop {
        let start = keys.len();
        keys.resize(start + batch, 0);
        values.resize(start + batch, 0);
        let mut count = batch as u32;
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: buffers hold `count` keys and values of 8 bytes.
        let rc = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                if first {
                    std::ptr::null_mut()
                } else {
                    (&mut in_batch as *mut u64).cast()
                },
                (&mut out_batch as *mut u64).cast(),
                keys[start..].as_mut_ptr().cast(),
                values[start..].as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        keys.truncate(start + count as usize);
        values.truncate(start + count as usize);
        if rc != 0 {
            break; // ENOENT: that was the last batch
        }
        first = false;
        in_batch = out_batch;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (name, metric, reps) = (&args[1], &args[2], args[3].parse::<usize>().unwrap());
    let fds = map_fds(name);
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let mut out = Vec::with_capacity(1 << 20);
    let mut times = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        out.clear();
        for (i, &fd) in fds.iter().enumerate() {
            read_all(fd, &mut keys, &mut values);
            for (k, v) in keys.iter().zip(&values) {
                // `pid` stands in for the instance's process: same width as a 5-digit pid.
                let _ = writeln!(out, "{metric}{{key=\"{k}\",pid=\"{}\"}} {v}", 10000 + i);
            }
        }
        std::hint::black_box(&out);
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"maps\": {}, \"floor_ms\": {:.3}, \"floor_bytes\": {}}}",
        fds.len(),
        times[times.len() / 2],
        out.len()
    );
}
