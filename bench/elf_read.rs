//! What reading one ELF file costs the exporter: for each FILE, the peak
//! resident memory that `read_elf` added (VmHWM, reset before the read, less
//! VmRSS before it; file pages that a mapping touched count, as they do
//! against a container's memory limit) and the median time of REPS reads
//! (page cache warm). Prints one JSON line per file.
//! Usage: elf_read REPS FILE...

use std::path::Path;
use std::time::Instant;
use userspace_exporter::elf::read_elf;

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .expect("usage: elf_read REPS FILE...");
    for file in args {
        let path = Path::new(&file);
        let size = std::fs::metadata(path).unwrap().len();
        // Warm the page cache, so that the first read measures memory, not
        // the disk; in small pieces, which leave the allocator as it was.
        let mut piece = [0u8; 64 << 10];
        let mut reader = std::fs::File::open(path).unwrap();
        while std::io::Read::read(&mut reader, &mut piece).unwrap() > 0 {}
        // Writing 5 to clear_refs resets VmHWM to the current RSS.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = status_kb("VmRSS:");
        let info = read_elf(path).unwrap();
        let peak = status_kb("VmHWM:");
        let mut times: Vec<f64> = (0..reps)
            .map(|_| {
                let started = Instant::now();
                let again = read_elf(path).unwrap();
                let elapsed = started.elapsed().as_secs_f64();
                assert_eq!(again.usdt.len(), info.usdt.len());
                elapsed
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{{\"file\":{file:?},\"bytes\":{size},\"peak_rss_added_kb\":{},\"median_ms\":{:.3},\"usdt\":{},\"functions\":{}}}",
            peak.saturating_sub(before),
            times[times.len() / 2] * 1e3,
            info.usdt.len(),
            info.functions.len()
        );
    }
}
