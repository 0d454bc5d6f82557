//! A single-function uprobe as a perf-event uprobe (what libbpf's
//! `attach_uprobe_with_opts` makes: perf_event_open, then a BPF perf link or
//! PERF_EVENT_IOC_SET_BPF) against a uprobe_multi link to one function
//! (`attach_uprobe_multi_with_opts`: one BPF_LINK_CREATE), side by side,
//! conditions interleaved in every round:
//!
//! - `attach`/`detach`: the wall time of one attach call and of dropping the
//!   link (the kernel unregisters the uprobe in close()), for this process's
//!   pid, as the exporter's per-process instances attach;
//! - `detach_parallel`: PAR links dropped at once by PAR threads: perf-event
//!   uprobes are freed one after another under the kernel's `event_mutex`,
//!   uprobe_multi links without it;
//! - `attach_under_detach`: an attach while another thread keeps detaching
//!   links of the same kind (an exec attached while exits are reaped);
//! - `hit`: CPU time per call of a probed function in a hot loop (the
//!   thread's CPU clock: the kernel's breakpoint handling is charged to it),
//!   the loop without a probe subtracted; on a function whose first
//!   instruction the kernel emulates (`push %rbp`) and on one it must
//!   single-step (`lea`).
//!
//! Each BPF program adds one to a per-CPU counter (bench/bpf/probe_cost.bpf.c)
//! and every count is checked against the calls made.
//!
//! Prints one JSON line per (measure, kind, mode) with its samples, then a
//! table. x86-64 only (the probed functions are written in assembly).
//! Usage: uprobe_links OBJECT   (ROUNDS, HITS, PAR in the environment)

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".globl uexp_bench_push",
    ".type uexp_bench_push, @function",
    "uexp_bench_push:",
    "push rbp",
    "mov rbp, rsp",
    "lea rax, [rdi + 1]",
    "pop rbp",
    "ret",
    ".size uexp_bench_push, . - uexp_bench_push",
    ".globl uexp_bench_lea",
    ".type uexp_bench_lea, @function",
    "uexp_bench_lea:",
    "lea rax, [rdi + 1]",
    "ret",
    ".size uexp_bench_lea, . - uexp_bench_lea",
    // A run of nops: a uprobe at each is a uprobe the kernel has never seen
    // (nop is emulated, not single-stepped).
    ".globl uexp_bench_sled",
    ".type uexp_bench_sled, @function",
    "uexp_bench_sled:",
    ".rept 4096",
    "nop",
    ".endr",
    "ret",
    ".size uexp_bench_sled, . - uexp_bench_sled",
);

extern "C" {
    fn uexp_bench_push(x: u64) -> u64;
    fn uexp_bench_lea(x: u64) -> u64;
    fn uexp_bench_sled();
}

/// How a uprobe is made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Perf,
    Multi,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Perf => "perf_event",
            Mode::Multi => "uprobe_multi",
        }
    }
}

/// The file and file offset of a function of this executable, from /proc/self/maps.
fn locate(address: usize) -> (PathBuf, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        if (start..end).contains(&address) && fields.len() >= 6 {
            let offset = usize::from_str_radix(fields[2], 16).unwrap();
            return (PathBuf::from(fields[5]), address - start + offset);
        }
    }
    panic!("no mapping holds {address:#x}");
}

/// The bench's two objects: the same programs loaded plainly (for
/// perf-event uprobes) and for uprobe_multi links.
struct Programs {
    perf: Object,
    multi: Object,
}

impl Programs {
    fn load(path: &str) -> Programs {
        let open = |multi: bool| {
            let mut open = ObjectBuilder::default()
                .open_file(path)
                .expect("open object");
            for mut prog in open.progs_mut() {
                let name = prog.name().to_string_lossy().into_owned();
                prog.set_autoload(name == "on_uprobe" || name == "on_uretprobe");
                if multi {
                    prog.set_attach_type(libbpf_rs::ProgramAttachType::TraceUprobeMulti);
                }
            }
            open.load().expect("load object")
        };
        Programs {
            perf: open(false),
            multi: open(true),
        }
    }

    fn object(&self, mode: Mode) -> &Object {
        match mode {
            Mode::Perf => &self.perf,
            Mode::Multi => &self.multi,
        }
    }

    /// Attaches `mode`'s entry or return program to the function at `target`
    /// for this process.
    fn attach(&self, mode: Mode, retprobe: bool, target: &(PathBuf, usize)) -> Link {
        let name = if retprobe {
            "on_uretprobe"
        } else {
            "on_uprobe"
        };
        let object = self.object(mode);
        let prog = object
            .progs()
            .find(|p| p.name().to_string_lossy() == name)
            .unwrap();
        let pid = std::process::id() as i32;
        let path = std::ffi::CString::new(target.0.as_os_str().as_encoded_bytes()).unwrap();
        // libbpf itself: libbpf-rs attaches only through `ProgramMut`, which
        // one thread at a time may hold, and the bench attaches from two.
        let prog = libbpf_rs::AsRawLibbpf::as_libbpf_object(&prog).as_ptr();
        let offsets = [target.1 as libc::c_ulong];
        // SAFETY: a loaded program; path and offsets outlive the calls.
        let link = unsafe {
            match mode {
                Mode::Perf => {
                    let opts = libbpf_sys::bpf_uprobe_opts {
                        sz: std::mem::size_of::<libbpf_sys::bpf_uprobe_opts>() as _,
                        retprobe,
                        ..Default::default()
                    };
                    libbpf_sys::bpf_program__attach_uprobe_opts(
                        prog,
                        pid,
                        path.as_ptr(),
                        target.1 as _,
                        &opts,
                    )
                }
                Mode::Multi => {
                    let opts = libbpf_sys::bpf_uprobe_multi_opts {
                        sz: std::mem::size_of::<libbpf_sys::bpf_uprobe_multi_opts>() as _,
                        offsets: offsets.as_ptr(),
                        cnt: 1,
                        retprobe,
                        ..Default::default()
                    };
                    libbpf_sys::bpf_program__attach_uprobe_multi(
                        prog,
                        pid,
                        path.as_ptr(),
                        std::ptr::null(),
                        &opts,
                    )
                }
            }
        };
        let link = std::ptr::NonNull::new(link).unwrap_or_else(|| {
            panic!(
                "{} {name}: {}",
                mode.name(),
                std::io::Error::last_os_error()
            )
        });
        // SAFETY: a link libbpf just made, owned by nothing else.
        unsafe { Link::from_ptr(link) }
    }

    /// The per-CPU counter of `mode`'s object, summed, then zeroed.
    fn take_hits(&self, mode: Mode) -> u64 {
        let object = self.object(mode);
        let map = object
            .maps()
            .find(|m| m.name().to_string_lossy() == "hits")
            .unwrap();
        let key = 0u32.to_ne_bytes();
        let values = map
            .lookup_percpu(&key, MapFlags::ANY)
            .unwrap()
            .unwrap_or_default();
        let total = values
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
            .sum();
        let zeros: Vec<Vec<u8>> = values.iter().map(|_| vec![0u8; 8]).collect();
        map.update_percpu(&key, &zeros, MapFlags::ANY).unwrap();
        total
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU ns per call of `f`, over `n` calls.
fn per_call(f: unsafe extern "C" fn(u64) -> u64, n: u64) -> f64 {
    let started = thread_cpu();
    let mut sum = 0u64;
    for i in 0..n {
        // SAFETY: the assembly functions read rdi and return rdi + 1.
        sum = sum.wrapping_add(unsafe { std::hint::black_box(f)(i) });
    }
    std::hint::black_box(sum);
    (thread_cpu() - started).as_nanos() as f64 / n as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// One measure's samples, printed as a JSON line.
struct Row {
    measure: &'static str,
    kind: &'static str,
    mode: Mode,
    unit: &'static str,
    samples: Vec<f64>,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let object = std::env::args()
        .nth(1)
        .expect("usage: uprobe_links OBJECT (bench/bpf/probe_cost.bpf.c compiled)");
    let rounds = env("ROUNDS", 20) as usize;
    let hits = env("HITS", 100_000);
    let par = env("PAR", 8) as usize;
    let programs = Programs::load(&object);
    let push = locate(uexp_bench_push as *const () as usize);
    let lea = locate(uexp_bench_lea as *const () as usize);
    let modes = [Mode::Perf, Mode::Multi];
    let kinds = [("uprobe", false), ("uretprobe", true)];
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |measure: &'static str, kind: &'static str, mode: Mode, unit, x: f64| match rows
        .iter_mut()
        .find(|r| r.measure == measure && r.kind == kind && r.mode == mode)
    {
        Some(r) => r.samples.push(x),
        None => rows.push(Row {
            measure,
            kind,
            mode,
            unit,
            samples: vec![x],
        }),
    };

    // Warm up: the first uprobe on a file costs more.
    for mode in modes {
        drop(programs.attach(mode, false, &push));
    }

    // Attach and detach: at an offset never probed before (`fresh`), right
    // after the link at the same offset was dropped (`again`), and while
    // another link holds the same offset (`shared`: a second process's
    // instance on the same function).
    let sled = locate(uexp_bench_sled as *const () as usize);
    let mut next_nop = 0usize;
    for round in 0..rounds {
        // Alternate which mode goes first.
        let order = if round % 2 == 0 {
            modes
        } else {
            [modes[1], modes[0]]
        };
        for (kind, retprobe) in kinds {
            for mode in order {
                assert!(next_nop < 4096, "ROUNDS too large for the nop sled");
                let fresh = (sled.0.clone(), sled.1 + next_nop);
                next_nop += 1;
                let started = Instant::now();
                let link = programs.attach(mode, retprobe, &fresh);
                row("attach_fresh", kind, mode, "ms", ms(started.elapsed()));
                let started = Instant::now();
                drop(link);
                row("detach", kind, mode, "ms", ms(started.elapsed()));
                let started = Instant::now();
                let link = programs.attach(mode, retprobe, &fresh);
                row("attach_again", kind, mode, "ms", ms(started.elapsed()));
                let started = Instant::now();
                let second = programs.attach(mode, retprobe, &fresh);
                row("attach_shared", kind, mode, "ms", ms(started.elapsed()));
                let started = Instant::now();
                drop(second);
                row("detach_shared", kind, mode, "ms", ms(started.elapsed()));
                drop(link);
            }
        }
    }

    // PAR links dropped at once, by PAR threads.
    for round in 0..rounds.div_ceil(4) {
        let order = if round % 2 == 0 {
            modes
        } else {
            [modes[1], modes[0]]
        };
        for mode in order {
            let links: Vec<Link> = (0..par)
                .map(|_| programs.attach(mode, false, &push))
                .collect();
            let barrier = std::sync::Barrier::new(par + 1);
            let started = std::thread::scope(|s| {
                for link in links {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        drop(link);
                    });
                }
                barrier.wait();
                Instant::now()
            });
            row(
                "detach_parallel",
                "uprobe",
                mode,
                "ms",
                ms(started.elapsed()),
            );
        }
    }

    // Attach while another thread detaches links of the same mode.
    for mode in modes {
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    drop(programs.attach(mode, false, &lea));
                }
            });
            for _ in 0..rounds {
                std::thread::sleep(Duration::from_millis(7));
                let started = Instant::now();
                let link = programs.attach(mode, false, &push);
                row(
                    "attach_under_detach",
                    "uprobe",
                    mode,
                    "ms",
                    ms(started.elapsed()),
                );
                // Dropped by the other thread's kind of work: off this clock.
                s.spawn(move || drop(link));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    programs.take_hits(Mode::Perf);
    programs.take_hits(Mode::Multi);

    // Per-hit cost.
    let functions: [(
        &'static str,
        unsafe extern "C" fn(u64) -> u64,
        &(PathBuf, usize),
    ); 2] = [
        ("push", uexp_bench_push, &push),
        ("lea", uexp_bench_lea, &lea),
    ];
    for round in 0..rounds.div_ceil(4) {
        let order = if round % 2 == 0 {
            modes
        } else {
            [modes[1], modes[0]]
        };
        for (first, f, target) in functions {
            // The lea function is single-stepped: a tenth of the calls.
            let n = if first == "lea" { hits / 10 } else { hits };
            let bare = per_call(f, n);
            for (kind, retprobe) in kinds {
                for mode in order {
                    let link = programs.attach(mode, retprobe, target);
                    let ns = per_call(f, n);
                    drop(link);
                    let counted = programs.take_hits(mode);
                    assert_eq!(counted, n, "{} {kind} on {first}", mode.name());
                    let measure = if first == "push" {
                        "hit_emulated"
                    } else {
                        "hit_single_stepped"
                    };
                    row(measure, kind, mode, "ns", ns - bare);
                }
            }
        }
    }

    for r in &rows {
        println!(
            "{}",
            serde_json::json!({
                "measure": r.measure, "kind": r.kind, "mode": r.mode.name(),
                "unit": r.unit, "samples": r.samples,
            })
        );
    }
    println!();
    println!("| measure | kind | perf_event p50 (p90) | uprobe_multi p50 (p90) | multi / perf |");
    println!("|---|---|---|---|---|");
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in &rows {
        if seen.contains(&(r.measure, r.kind)) {
            continue;
        }
        seen.push((r.measure, r.kind));
        let get = |mode| {
            rows.iter()
                .find(|x| x.measure == r.measure && x.kind == r.kind && x.mode == mode)
                .map(|x| (median(&x.samples), quantile(&x.samples, 0.9)))
                .unwrap()
        };
        let (p, p90) = get(Mode::Perf);
        let (m, m90) = get(Mode::Multi);
        let digits = if r.unit == "ns" { 0 } else { 2 };
        println!(
            "| {} | {} | {p:.digits$} {u} ({p90:.digits$}) | {m:.digits$} {u} ({m90:.digits$}) | {:.2} |",
            r.measure,
            r.kind,
            m / p,
            u = r.unit,
        );
    }
}
