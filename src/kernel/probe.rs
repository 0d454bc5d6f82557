//! The system calls that probe the kernel, one trial per feature, each
//! undone (programs and maps closed at once, the trials' uprobes all
//! together once every trial is done). What the answers mean is [`super::classify`]'s
//! business.
//!
//! Two trials need a function to probe: [`probe_target`], a function of the
//! exporter's own executable, attached for the exporter's own pid only. The
//! uretprobe filter trial probes another one, [`uretprobe_target`], in the
//! exporter and in a child it forks, which calls it once.

use super::classify::{self, FuncIpTrial, UprobeMultiTrial, UretprobeFilterTrial};
use super::{Detection, Feature, KernelFeatures};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Probes every feature not in `assumed` (those are reported missing
/// without asking the kernel).
pub(super) fn detect(assumed: &BTreeSet<Feature>) -> KernelFeatures {
    let (release, machine) = uname();
    let started = std::time::Instant::now();
    let btf = VmlinuxBtf::load();
    let mut closer = Closer::default();
    let mut detected = BTreeMap::new();
    let mut uprobe_multi_usable = false;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "read the kernel's BTF"
    );
    for feature in super::Feature::ALL {
        let began = std::time::Instant::now();
        let detection = if assumed.contains(&feature) {
            Detection::AssumedMissing
        } else {
            match feature {
                Feature::UprobeMulti => classify::uprobe_multi(try_uprobe_multi(&mut closer)),
                Feature::FuncIpInUprobes => {
                    classify::func_ip_in_uprobes(&try_func_ip(uprobe_multi_usable, &mut closer))
                }
                Feature::BatchLookup => try_batch_lookup(),
                Feature::BpfStats => classify::bpf_stats(
                    btf.as_ref()
                        .ok()
                        .map(|btf| btf.enum_has("bpf_cmd", "BPF_ENABLE_STATS")),
                ),
                Feature::KernelBtf => {
                    classify::kernel_btf(btf.as_ref().map(|_| ()).map_err(|e| *e))
                }
                Feature::BpfCookie => classify::helper(
                    "bpf_get_attach_cookie",
                    // SAFETY: a plain libbpf probe without options.
                    unsafe {
                        libbpf_sys::libbpf_probe_bpf_helper(
                            libbpf_sys::BPF_PROG_TYPE_KPROBE,
                            libbpf_sys::BPF_FUNC_get_attach_cookie,
                            std::ptr::null(),
                        )
                    },
                    "5.15",
                ),
                Feature::UretprobePidFilter => classify::uretprobe_pid_filter(
                    &try_uretprobe_filter(uprobe_multi_usable, &mut closer),
                ),
                Feature::UsdtSemaphores => classify::usdt_semaphores(
                    std::fs::metadata("/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset")
                        .map(drop)
                        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)),
                ),
            }
        };
        if feature == Feature::UprobeMulti {
            uprobe_multi_usable = detection == Detection::Present;
        }
        tracing::debug!(
            feature = feature.name(),
            elapsed_ms = began.elapsed().as_secs_f64() * 1e3,
            "probed"
        );
        detected.insert(feature, detection);
    }
    closer.close_all();
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "probed the kernel's features"
    );
    KernelFeatures {
        release,
        machine,
        detected,
    }
}

/// Descriptors of the trials' uprobes, kept open until every trial is done
/// and then let go of before probing returns. Closing a uprobe waits for RCU
/// grace periods, and closing a perf-event uprobe also for a lock the kernel
/// takes for each (about 90 ms each here): closed one after another, the
/// five trial uprobes held startup up by 342 ms. Closed by a thread of the
/// exporter in the background, they were still open when the first instances
/// attached, and leak checks counted them as the exporter's (CI, under load).
/// So a child forked for the purpose holds the last references: the
/// exporter's own descriptors close at once, and the kernel frees the
/// uprobes while the child exits, which nobody waits for but a thread that
/// reaps it. The uprobes are on [`probe_target`] and [`uretprobe_target`],
/// which nothing calls after the trials.
#[derive(Default)]
struct Closer(Vec<OwnedFd>);

impl Closer {
    fn later(&mut self, fd: OwnedFd) {
        self.0.push(fd);
    }

    /// Closes the exporter's descriptors, leaving the kernel's teardown to
    /// a child that exits at once; without a child, closes them all at
    /// once on threads of their own and waits for them.
    fn close_all(self) {
        if self.0.is_empty() {
            return;
        }
        // SAFETY: the child only calls _exit, which is async-signal-safe:
        // it touches none of the locks other threads may hold.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: see above.
            unsafe { libc::_exit(0) };
        }
        if child > 0 {
            drop(self.0);
            let reaped = std::thread::Builder::new()
                .name("uexp-probe-reap".into())
                .spawn(move || reap(child));
            if reaped.is_err() {
                reap(child);
            }
            return;
        }
        tracing::debug!(
            errno = last_errno(),
            "no child to close the trial uprobes: closing them here"
        );
        std::thread::scope(|scope| {
            for fd in self.0 {
                // A thread that cannot start leaves its fd to this one.
                let _ = std::thread::Builder::new()
                    .name("uexp-probe-close".into())
                    .spawn_scoped(scope, move || drop(fd));
            }
        });
    }
}

/// Waits for child `pid` to end (EINTR retried; ECHILD: reaped already).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our own child, waited for once.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && last_errno() == libc::EINTR {}
}

/// `uname -r` and `uname -m`.
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid utsname to fill.
    if unsafe { libc::uname(&mut names) } != 0 {
        return ("unknown".to_string(), std::env::consts::ARCH.to_string());
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (text(&names.release), text(&names.machine))
}

/// The function the uprobe trials attach to. Never inlined, so that it has
/// an address of its own; `black_box` keeps its body.
#[inline(never)]
pub extern "C" fn probe_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3).wrapping_add(1)
}

/// The function the uretprobe filter trial attaches to: apart from
/// [`probe_target`], whose trial uprobes may still be installed when the
/// child is forked (they are closed once all the trials are done).
#[inline(never)]
pub extern "C" fn uretprobe_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(5).wrapping_add(3)
}

/// Where [`probe_target`] lies: its address in this process, and the file
/// and file offset a uprobe on it names.
struct Target {
    address: u64,
    path: CString,
    offset: u64,
}

impl Target {
    /// Finds the mapping of this process that holds [`probe_target`].
    fn find() -> Option<Target> {
        Target::of(probe_target as *const () as usize as u64)
    }

    /// Finds the mapping of this process that holds the code at `address`.
    fn of(address: u64) -> Option<Target> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let _perms = fields.next()?;
            let file_offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let (start, end) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            if (start..end).contains(&address) {
                return Some(Target {
                    address,
                    // The kernel resolves the executable through this link
                    // even if the file was replaced since.
                    path: CString::new("/proc/self/exe").ok()?,
                    offset: address - start + file_offset,
                });
            }
        }
        None
    }
}

/// `BPF_JMP | BPF_CALL` and friends, as the trials' programs use them.
mod insn {
    use libbpf_sys::bpf_insn;

    pub fn raw(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> bpf_insn {
        let mut insn = bpf_insn {
            code,
            off,
            imm,
            ..Default::default()
        };
        insn.set_dst_reg(dst);
        insn.set_src_reg(src);
        insn
    }
    /// `r0 = 0; exit`
    pub fn return_zero() -> [bpf_insn; 2] {
        [raw(0xb7, 0, 0, 0, 0), raw(0x95, 0, 0, 0, 0)]
    }
}

/// Loads a kprobe-type program; its fd, or the errno and the verifier's log.
fn load(
    insns: &[libbpf_sys::bpf_insn],
    attach_type: Option<libbpf_sys::bpf_attach_type>,
) -> Result<OwnedFd, (i32, String)> {
    let mut log = vec![0u8; 64 * 1024];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: attach_type.unwrap_or(0),
        // 0 with a buffer: libbpf loads without a log and, on failure,
        // again with one, so the log is there when it matters.
        log_level: 0,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr().cast(),
        ..Default::default()
    };
    // SAFETY: valid instructions, a NUL-terminated license, and a log
    // buffer of the size given, all alive for the call.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_KPROBE,
            c"uexp_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        return Err((-fd, String::from_utf8_lossy(&log[..end]).into_owned()));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A uprobe_multi link of `prog` to `target` for `pid`: an entry probe,
/// or with `retprobe` a return probe.
fn link_uprobe_multi(
    prog: &OwnedFd,
    target: &Target,
    pid: i32,
    retprobe: bool,
) -> Result<OwnedFd, i32> {
    let offsets = [target.offset as libc::c_ulong];
    let mut opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    opts.__bindgen_anon_1.uprobe_multi =
        libbpf_sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_3 {
            cnt: 1,
            path: target.path.as_ptr(),
            offsets: offsets.as_ptr(),
            pid: pid as u32,
            flags: if retprobe {
                libbpf_sys::BPF_F_UPROBE_MULTI_RETURN
            } else {
                0
            },
            ..Default::default()
        };
    // SAFETY: the path and offsets outlive the call; opts says its size.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            0,
            libbpf_sys::BPF_TRACE_UPROBE_MULTI,
            &opts,
        )
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads a trivial program plainly and for uprobe_multi links, links it to
/// [`probe_target`] for this process, then tries pid -1.
fn try_uprobe_multi(closer: &mut Closer) -> UprobeMultiTrial {
    let Some(target) = Target::find() else {
        // Without a target the link step cannot be tried: say the load's answer.
        return UprobeMultiTrial::LinkFailed(libc::ENOENT);
    };
    if let Err((errno, _)) = load(&insn::return_zero(), None) {
        return UprobeMultiTrial::PlainLoadFailed(errno);
    }
    let prog = match load(
        &insn::return_zero(),
        Some(libbpf_sys::BPF_TRACE_UPROBE_MULTI),
    ) {
        Ok(prog) => prog,
        Err((errno, _)) => return UprobeMultiTrial::MultiLoadFailed(errno),
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    match link_uprobe_multi(&prog, &target, pid, false) {
        Err(errno) => UprobeMultiTrial::LinkFailed(errno),
        Ok(link) => {
            closer.later(link);
            let negative_pid = match link_uprobe_multi(&prog, &target, -1, false) {
                Ok(link) => {
                    closer.later(link);
                    None
                }
                Err(errno) => Some(errno),
            };
            UprobeMultiTrial::Linked { negative_pid }
        }
    }
}

/// A hash map of u64 values with `entries` u32 keys: empty until a program
/// stores its value, so that "did not fire" and "returned 0" differ.
fn result_map(entries: u32) -> Result<OwnedFd, i32> {
    // SAFETY: a plain map creation without options.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_HASH,
            c"uexp_probe".as_ptr(),
            4,
            8,
            entries,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A program storing `bpf_get_func_ip(ctx)` at key 0 of `map`.
fn func_ip_program(map: &OwnedFd) -> Vec<libbpf_sys::bpf_insn> {
    use insn::raw;
    let mut program = vec![
        raw(0x85, 0, 0, 0, libbpf_sys::BPF_FUNC_get_func_ip as i32), // r0 = get_func_ip(ctx)
        raw(0x7b, 10, 0, -8, 0),                                     // *(u64 *)(r10 - 8) = r0
        raw(0x62, 10, 0, -12, 0),                                    // *(u32 *)(r10 - 12) = 0
    ];
    program.extend(store_and_exit(map));
    program
}

/// The end both trial programs share: `map[*(u32 *)(r10 - 12)] = *(u64
/// *)(r10 - 8)`, then return 0.
fn store_and_exit(map: &OwnedFd) -> [libbpf_sys::bpf_insn; 10] {
    use insn::raw;
    [
        raw(0x18, 1, 1, 0, map.as_raw_fd()), // r1 = map (ld_imm64, pseudo map fd)
        raw(0, 0, 0, 0, 0),
        raw(0xbf, 2, 10, 0, 0),  // r2 = r10
        raw(0x07, 2, 0, 0, -12), // r2 += -12
        raw(0xbf, 3, 10, 0, 0),  // r3 = r10
        raw(0x07, 3, 0, 0, -8),  // r3 += -8
        raw(0xb7, 4, 0, 0, 0),   // r4 = 0
        raw(0x85, 0, 0, 0, libbpf_sys::BPF_FUNC_map_update_elem as i32),
        raw(0xb7, 0, 0, 0, 0), // r0 = 0
        raw(0x95, 0, 0, 0, 0), // exit
    ]
}

/// perf_event_open's flag for a close-on-exec descriptor.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// The uprobe PMU's number and, for a uretprobe, the `config` bit that
/// asks for one (its `format/retprobe`, `config:0` on every kernel so far).
fn uprobe_pmu(retprobe: bool) -> Result<(u32, u64), i32> {
    let read = |file: &str| {
        std::fs::read_to_string(format!("/sys/bus/event_source/devices/uprobe/{file}"))
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    };
    let pmu = read("type")?.trim().parse().map_err(|_| libc::EINVAL)?;
    if !retprobe {
        return Ok((pmu, 0));
    }
    let bit: u32 = read("format/retprobe")?
        .trim()
        .strip_prefix("config:")
        .and_then(|b| b.parse().ok())
        .filter(|&b| b < 64)
        .ok_or(libc::EINVAL)?;
    Ok((pmu, 1 << bit))
}

/// A perf-event uprobe (or uretprobe) on `target` for process `pid` (0:
/// this one), running `prog`.
fn perf_uprobe(
    prog: &OwnedFd,
    target: &Target,
    retprobe: bool,
    pid: libc::pid_t,
) -> Result<OwnedFd, i32> {
    let (pmu, config) = uprobe_pmu(retprobe)?;
    // SAFETY: perf_event_attr is plain data; zero is its default.
    let mut attr: libbpf_sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = pmu;
    attr.size = std::mem::size_of::<libbpf_sys::perf_event_attr>() as u32;
    attr.config = config;
    attr.__bindgen_anon_3.config1 = target.path.as_ptr() as u64;
    attr.__bindgen_anon_4.config2 = target.offset;
    // SAFETY: attr is valid and its path outlives the call; cpu -1 is any.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const libbpf_sys::perf_event_attr,
            pid,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    for (request, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd() as libc::c_ulong),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: both ioctls take an integer argument.
        if unsafe { libc::ioctl(event.as_raw_fd(), request as _, arg) } != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
    }
    Ok(event)
}

/// Loads a program calling bpf_get_func_ip, attaches it to
/// [`probe_target`] through a uprobe_multi link where those work (else, or
/// where the link is refused, as a perf-event uprobe), calls the target once
/// and reads what the helper returned.
fn try_func_ip(uprobe_multi: bool, closer: &mut Closer) -> FuncIpTrial {
    let Some(target) = Target::find() else {
        return FuncIpTrial::AttachFailed(libc::ENOENT);
    };
    let map = match result_map(1) {
        Ok(map) => map,
        Err(errno) => return FuncIpTrial::MapFailed(errno),
    };
    let program = func_ip_program(&map);
    let prog = match load(&program, None) {
        Ok(prog) => prog,
        Err((errno, log)) => return FuncIpTrial::LoadFailed(errno, log),
    };
    // Where the kernel has uprobe_multi links every uprobe is one, so the
    // helper is tried there (and closing a link does not wait on the lock
    // that closing a perf-event uprobe waits on: about 90 ms here).
    let through_link = || match load(&program, Some(libbpf_sys::BPF_TRACE_UPROBE_MULTI)) {
        // SAFETY: getpid cannot fail.
        Ok(multi) => link_uprobe_multi(&multi, &target, unsafe { libc::getpid() }, false),
        Err((errno, _)) => Err(errno),
    };
    let attached: Result<OwnedFd, i32> = if uprobe_multi {
        through_link().or_else(|errno| perf_uprobe(&prog, &target, false, 0).map_err(|_| errno))
    } else {
        perf_uprobe(&prog, &target, false, 0)
    };
    let attachment = match attached {
        Ok(fd) => fd,
        Err(errno) => return FuncIpTrial::AttachFailed(errno),
    };
    std::hint::black_box(std::hint::black_box(
        probe_target as extern "C" fn(u64) -> u64,
    )(1));
    closer.later(attachment);
    let key = 0u32;
    let mut value = 0u64;
    // SAFETY: key and value are the map's key and value sizes.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            (&mut value as *mut u64).cast(),
        )
    };
    if rc != 0 {
        return FuncIpTrial::NotFired;
    }
    FuncIpTrial::Ran {
        got: value,
        expected: target.address,
    }
}

/// A program storing 1 at key `key` of `map`: it ran.
fn mark_program(map: &OwnedFd, key: i32) -> Vec<libbpf_sys::bpf_insn> {
    use insn::raw;
    let mut program = vec![
        raw(0x7a, 10, 0, -8, 1),    // *(u64 *)(r10 - 8) = 1
        raw(0x62, 10, 0, -12, key), // *(u32 *)(r10 - 12) = key
    ];
    program.extend(store_and_exit(map));
    program
}

/// Whether key `key` of `map` holds a value.
fn marked(map: &OwnedFd, key: u32) -> bool {
    let mut value = 0u64;
    // SAFETY: key and value are the map's key and value sizes.
    unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            (&mut value as *mut u64).cast(),
        ) == 0
    }
}

/// Forks a child that waits on a pipe, attaches a uretprobe on
/// [`uretprobe_target`] for the child (marking key 1; a uprobe_multi link
/// where `uprobe_multi` says the kernel has them, else a perf-event
/// uretprobe) and a perf-event uretprobe for this process (marking key 0),
/// lets the child call the function once and
/// exit, and reads which uretprobes ran. The exporter never calls the
/// function itself, so a mark at key 0 was made in the child.
fn try_uretprobe_filter(uprobe_multi: bool, closer: &mut Closer) -> UretprobeFilterTrial {
    let Some(target) = Target::of(uretprobe_target as *const () as usize as u64) else {
        return UretprobeFilterTrial::AttachFailed(libc::ENOENT);
    };
    let map = match result_map(2) {
        Ok(map) => map,
        Err(errno) => return UretprobeFilterTrial::MapFailed(errno),
    };
    // The exporter's own uretprobe (key 0); the child's is loaded below, in
    // the form its link takes.
    let ours = match load(&mark_program(&map, 0), None) {
        Ok(prog) => prog,
        Err((errno, log)) => return UretprobeFilterTrial::LoadFailed(errno, log),
    };
    let attach_type = uprobe_multi.then_some(libbpf_sys::BPF_TRACE_UPROBE_MULTI);
    let theirs_prog = match load(&mark_program(&map, 1), attach_type) {
        Ok(prog) => prog,
        Err((errno, log)) => return UretprobeFilterTrial::LoadFailed(errno, log),
    };
    let mut pipe = [0; 2];
    // SAFETY: a two-int array for the pipe's ends.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return UretprobeFilterTrial::ForkFailed(last_errno());
    }
    // SAFETY: both ends were just made, for us alone.
    let (reader, writer) =
        unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    // SAFETY: the child only makes async-signal-safe calls (close, read,
    // _exit) and runs uretprobe_target, which touches no lock or allocator:
    // the exporter may have threads, whose locks the child must not touch.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return UretprobeFilterTrial::ForkFailed(last_errno());
    }
    if child == 0 {
        // SAFETY: see above; _exit skips Rust's and libc's exit handlers.
        unsafe {
            libc::close(writer.as_raw_fd());
            let mut go = 0u8;
            if libc::read(reader.as_raw_fd(), (&mut go as *mut u8).cast(), 1) == 1 {
                std::hint::black_box(std::hint::black_box(
                    uretprobe_target as extern "C" fn(u64) -> u64,
                )(2));
            }
            libc::_exit(0);
        }
    }
    drop(reader);
    // SAFETY: getpid cannot fail.
    let own_pid = unsafe { libc::getpid() };
    // The child's uretprobe only puts the breakpoint into the child: where
    // the kernel has uprobe_multi links it is one (closing a perf-event
    // uprobe waits on a lock, about 90 ms each here). The exporter's is the
    // perf-event uretprobe whose filter is in question.
    let theirs = if uprobe_multi {
        link_uprobe_multi(&theirs_prog, &target, child, true)
    } else {
        perf_uprobe(&theirs_prog, &target, true, child)
    };
    let attached = theirs.and_then(|theirs| {
        closer.later(theirs);
        perf_uprobe(&ours, &target, true, own_pid).map(|ours| closer.later(ours))
    });
    if attached.is_ok() {
        // SAFETY: one byte from a live buffer; a failed write only leaves
        // the child without the go-ahead, which the marks then show.
        unsafe { libc::write(writer.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }
    // Closing our end also releases a child that got no go-ahead.
    drop(writer);
    let mut status = 0;
    let waited = loop {
        // SAFETY: our own child, waited for once.
        let waited = unsafe { libc::waitpid(child, &mut status, 0) };
        if waited == child || last_errno() != libc::EINTR {
            break waited;
        }
    };
    if let Err(errno) = attached {
        return UretprobeFilterTrial::AttachFailed(errno);
    }
    // ECHILD: reaped already (SIGCHLD ignored); the marks still tell.
    if waited != child && last_errno() != libc::ECHILD {
        return UretprobeFilterTrial::ChildFailed(format!(
            "could not be waited for ({})",
            classify::errno_name(last_errno())
        ));
    }
    if waited == child && (!libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0) {
        return UretprobeFilterTrial::ChildFailed(if libc::WIFSIGNALED(status) {
            format!("was killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exited with status {}", libc::WEXITSTATUS(status))
        });
    }
    UretprobeFilterTrial::Ran {
        child: marked(&map, 1),
        exporter: marked(&map, 0),
    }
}

/// The calling thread's errno.
fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A batch lookup on an empty one-entry hash map.
fn try_batch_lookup() -> Detection {
    // SAFETY: a plain map creation without options.
    let fd = unsafe {
        libbpf_sys::bpf_map_create(
            libbpf_sys::BPF_MAP_TYPE_HASH,
            c"uexp_probe".as_ptr(),
            4,
            8,
            1,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return classify::batch_lookup(Err(-fd), Err(libc::EINVAL));
    }
    // SAFETY: the kernel just returned this descriptor to us alone.
    let map = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut keys = [0u32; 1];
    let mut values = [0u64; 1];
    let mut out_batch = [0u64; 1];
    let mut count = 1u32;
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    // SAFETY: buffers for one key, one value and an 8-byte batch token.
    let rc = unsafe {
        libbpf_sys::bpf_map_lookup_batch(
            map.as_raw_fd(),
            std::ptr::null_mut(),
            out_batch.as_mut_ptr().cast(),
            keys.as_mut_ptr().cast(),
            values.as_mut_ptr().cast(),
            &mut count,
            &opts,
        )
    };
    classify::batch_lookup(Ok(()), if rc < 0 { Err(-rc) } else { Ok(()) })
}

/// The kernel's BTF, as libbpf finds it.
struct VmlinuxBtf(*mut libbpf_sys::btf);

impl VmlinuxBtf {
    /// Loads it; the errno when libbpf finds none.
    fn load() -> Result<VmlinuxBtf, i32> {
        // SAFETY: no arguments; a null result sets errno.
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        if btf.is_null() {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::ENOENT));
        }
        Ok(VmlinuxBtf(btf))
    }

    /// Whether enum `name` has a value named `value`.
    fn enum_has(&self, name: &str, value: &str) -> bool {
        let Ok(c_name) = CString::new(name) else {
            return false;
        };
        // SAFETY: a valid BTF and a NUL-terminated name.
        let id = unsafe {
            libbpf_sys::btf__find_by_name_kind(self.0, c_name.as_ptr(), libbpf_sys::BTF_KIND_ENUM)
        };
        if id <= 0 {
            return false;
        }
        // SAFETY: id is a type of this BTF.
        let ty = unsafe { libbpf_sys::btf__type_by_id(self.0, id as u32) };
        if ty.is_null() {
            return false;
        }
        // SAFETY: ty points at a BTF type record; an enum's values follow it.
        let (info, first) = unsafe { ((*ty).info, ty.add(1).cast::<libbpf_sys::btf_enum>()) };
        let count = (info & 0xffff) as usize;
        (0..count).any(|i| {
            // SAFETY: an enum record is followed by `count` btf_enum entries.
            let entry = unsafe { *first.add(i) };
            // SAFETY: name offsets of this BTF's records are valid.
            let text = unsafe { libbpf_sys::btf__name_by_offset(self.0, entry.name_off) };
            // SAFETY: a NUL-terminated string of the BTF's string section.
            !text.is_null()
                && unsafe { std::ffi::CStr::from_ptr(text) }.to_bytes() == value.as_bytes()
        })
    }
}

impl Drop for VmlinuxBtf {
    fn drop(&mut self) {
        // SAFETY: loaded by btf__load_vmlinux_btf, freed once.
        unsafe { libbpf_sys::btf__free(self.0) }
    }
}
