//! Reading the kernel's answers to the feature probes: pure functions from
//! what each system call returned to a [`Detection`], so that the answers of
//! kernels this machine does not run (an errno older kernels give) are
//! tested too.
//!
//! The rule throughout: an answer that only an older kernel gives is
//! "missing"; a refusal for privileges, or an answer no kernel should give,
//! is "unknown" (the exporter then uses the feature and lets the attach say
//! what fails).

use super::Detection;

/// `ENOTSUPP`: the kernel-internal "not supported" some BPF commands leak
/// to userspace (524), distinct from `EOPNOTSUPP` (95).
pub const ENOTSUPP: i32 = 524;

/// `EPERM`/`EACCES`: refused for privileges.
fn refused(errno: i32) -> bool {
    errno == libc::EPERM || errno == libc::EACCES
}

/// `ENAME (text)` for messages.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EINVAL => "EINVAL",
        libc::E2BIG => "E2BIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        ENOTSUPP => "ENOTSUPP",
        _ => return format!("errno {errno}"),
    };
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // Without std's " (os error N)": the name says it.
    let text = text.split(" (os error").next().unwrap_or(&text);
    format!("{name}: {text}")
}

fn unknown(step: &str, errno: i32) -> Detection {
    if refused(errno) {
        Detection::Unknown(format!(
            "{step} was refused ({}): the exporter lacks the capabilities to probe it",
            errno_name(errno)
        ))
    } else {
        Detection::Unknown(format!("{step} answered {}", errno_name(errno)))
    }
}

/// How far the uprobe_multi probe got: a trivial kprobe-type program loaded
/// plainly, then for the uprobe_multi attach type, a link of it to one
/// function of the exporter's own executable for the exporter's pid, then
/// the same link for pid -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UprobeMultiTrial {
    /// Even the plain program did not load (errno).
    PlainLoadFailed(i32),
    /// The program did not load for the uprobe_multi attach type (errno).
    MultiLoadFailed(i32),
    /// `BPF_LINK_CREATE` of a uprobe_multi link failed (errno).
    LinkFailed(i32),
    /// The link was made; what a link for pid -1 answered.
    Linked {
        /// Errno of the pid -1 link, or `None` if the kernel made it.
        negative_pid: Option<i32>,
    },
}

/// What the uprobe_multi trial says.
///
/// Kernels before 6.6 do not know the attach type: `BPF_LINK_CREATE`
/// rejects it with EINVAL (its attribute check fails on fields past what
/// the kernel knows, or the program type does not match the attach type);
/// a kernel built without uprobes answers EOPNOTSUPP. 6.6 to 6.9 make the
/// link but filter its pid by thread, so calls from a process's other
/// threads are missed: the fix (46ba0e49b642, in 6.10) also made the kernel
/// reject a negative pid with EINVAL before anything else, where older
/// ones look the pid up and answer ESRCH.
pub fn uprobe_multi(trial: UprobeMultiTrial) -> Detection {
    match trial {
        UprobeMultiTrial::PlainLoadFailed(errno) => unknown("loading a BPF program", errno),
        UprobeMultiTrial::MultiLoadFailed(errno)
            if errno == libc::EINVAL || errno == libc::E2BIG =>
        {
            Detection::Missing(format!(
                "the kernel refused a program of the uprobe_multi attach type ({})",
                errno_name(errno)
            ))
        }
        UprobeMultiTrial::MultiLoadFailed(errno) => {
            unknown("loading a program for uprobe_multi links", errno)
        }
        UprobeMultiTrial::LinkFailed(errno) if errno == libc::EINVAL || errno == libc::E2BIG => {
            Detection::Missing(format!(
                "the kernel has no uprobe_multi links (BPF_LINK_CREATE answered {})",
                errno_name(errno)
            ))
        }
        UprobeMultiTrial::LinkFailed(errno) if errno == libc::EOPNOTSUPP || errno == ENOTSUPP => {
            Detection::Missing(format!(
                "the kernel was built without uprobe_multi links ({})",
                errno_name(errno)
            ))
        }
        UprobeMultiTrial::LinkFailed(errno) => unknown("creating a uprobe_multi link", errno),
        UprobeMultiTrial::Linked {
            negative_pid: Some(libc::EINVAL),
        } => Detection::Present,
        UprobeMultiTrial::Linked {
            negative_pid: Some(libc::ESRCH),
        } => Detection::Missing(
            "its uprobe_multi links filter by thread, not by process (6.6 to 6.9 without fix 46ba0e49b642, which 6.10, 6.6.35 and 6.9.5 have): they would miss calls from a process's other threads"
                .to_string(),
        ),
        UprobeMultiTrial::Linked {
            negative_pid: Some(errno),
        } => unknown("a uprobe_multi link for pid -1", errno),
        UprobeMultiTrial::Linked { negative_pid: None } => Detection::Unknown(
            "the kernel made a uprobe_multi link for pid -1, which no kernel should".to_string(),
        ),
    }
}

/// How far the bpf_get_func_ip probe got: a kprobe-type program storing the
/// helper's result in a map, attached as a uprobe to one function of the
/// exporter's own executable, which is then called once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncIpTrial {
    /// Its map could not be made (errno).
    MapFailed(i32),
    /// The program did not load (errno, end of the verifier's log).
    LoadFailed(i32, String),
    /// It could not be attached as a uprobe (errno).
    AttachFailed(i32),
    /// The function ran: what the helper returned, and the function's address.
    Ran {
        /// What the program stored.
        got: u64,
        /// The address of the probed function in the exporter.
        expected: u64,
    },
    /// The function ran and the program did not.
    NotFired,
}

/// What the bpf_get_func_ip trial says.
///
/// Before 5.15 kprobe-type programs may not call the helper: the verifier
/// refuses the program (EINVAL, "unknown func"). From 5.15 to 6.5 the helper
/// reads the running kprobe, and a uprobe has none: it returns 0. Since 6.6
/// (a3c485a5d8d4) it returns the probed address in uprobes and uretprobes.
pub fn func_ip_in_uprobes(trial: &FuncIpTrial) -> Detection {
    match trial {
        FuncIpTrial::MapFailed(errno) => unknown("creating a BPF map", *errno),
        FuncIpTrial::LoadFailed(errno, log)
            if *errno == libc::EINVAL
                && (log.contains("unknown func") || log.contains("invalid func")) =>
        {
            Detection::Missing(
                "the verifier does not know bpf_get_func_ip in kprobe-type programs (added in 5.15)"
                    .to_string(),
            )
        }
        FuncIpTrial::LoadFailed(errno, log) => {
            let mut detection =
                unknown("loading a program calling bpf_get_func_ip", *errno);
            if let (Detection::Unknown(why), Some(last)) = (&mut detection, log.lines().last()) {
                why.push_str(&format!("; verifier: {}", last.trim()));
            }
            detection
        }
        FuncIpTrial::AttachFailed(errno) => unknown("attaching a uprobe", *errno),
        FuncIpTrial::Ran { got, expected } if got == expected => Detection::Present,
        FuncIpTrial::Ran { got: 0, .. } => Detection::Missing(
            "bpf_get_func_ip returned 0 in a uprobe (5.15 to 6.5 answer only for kprobes)"
                .to_string(),
        ),
        FuncIpTrial::Ran { got, expected } => Detection::Unknown(format!(
            "bpf_get_func_ip returned {got:#x} in a uprobe on {expected:#x}"
        )),
        FuncIpTrial::NotFired => {
            Detection::Unknown("the probe uprobe did not fire".to_string())
        }
    }
}

/// How far the uretprobe filter probe got: two perf-event uretprobes on one
/// function of the exporter's own executable, one for the exporter's pid
/// and one for a child it forked, each running a program that marks its own
/// key of a map; then the child alone calls the function once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UretprobeFilterTrial {
    /// Its map could not be made (errno).
    MapFailed(i32),
    /// A marking program did not load (errno, end of the verifier's log).
    LoadFailed(i32, String),
    /// The child could not be forked (errno).
    ForkFailed(i32),
    /// A uretprobe could not be attached (errno).
    AttachFailed(i32),
    /// The child did not exit normally (how it ended).
    ChildFailed(String),
    /// The child returned from the function: whether its own uretprobe ran,
    /// and whether the one attached for the exporter ran too.
    Ran {
        /// The uretprobe attached for the child ran.
        child: bool,
        /// The uretprobe attached for the exporter's pid ran (in the child:
        /// the exporter never calls the function).
        exporter: bool,
    },
}

/// What the uretprobe filter trial says.
///
/// A perf-event uprobe checks its process filter in its entry handler; its
/// return handler ran for every process that hit the breakpoint until the
/// uprobe session rework in 6.13 ("uprobe: Add support for session
/// consumer"), which runs it only where the entry handler accepted the
/// process. So on older kernels the exporter's uretprobe runs in the child,
/// whose breakpoint the child's own uretprobe put there.
pub fn uretprobe_pid_filter(trial: &UretprobeFilterTrial) -> Detection {
    match trial {
        UretprobeFilterTrial::MapFailed(errno) => unknown("creating a BPF map", *errno),
        UretprobeFilterTrial::LoadFailed(errno, log) => {
            let mut detection = unknown("loading a uretprobe program", *errno);
            if let (Detection::Unknown(why), Some(last)) = (&mut detection, log.lines().last()) {
                why.push_str(&format!("; verifier: {}", last.trim()));
            }
            detection
        }
        UretprobeFilterTrial::ForkFailed(errno) => unknown("forking a child process", *errno),
        UretprobeFilterTrial::AttachFailed(errno) => unknown("attaching a perf-event uretprobe", *errno),
        UretprobeFilterTrial::ChildFailed(how) => {
            Detection::Unknown(format!("the probe's child process {how}"))
        }
        UretprobeFilterTrial::Ran {
            child: true,
            exporter: false,
        } => Detection::Present,
        UretprobeFilterTrial::Ran {
            child: true,
            exporter: true,
        } => Detection::Missing(
            "a uretprobe attached for the exporter's pid also ran when a child process returned from the function (before 6.13 every perf-event uretprobe of a function runs in each process that has it probed)"
                .to_string(),
        ),
        UretprobeFilterTrial::Ran { child: false, .. } => Detection::Unknown(
            "the child's own uretprobe did not fire when it returned from the function".to_string(),
        ),
    }
}

/// What a batch lookup on an empty hash map answered: `Ok(())` for
/// success (no kernel returns it for an empty map), else its errno.
///
/// Kernels before 5.6 do not know `BPF_MAP_LOOKUP_BATCH` (EINVAL); a map
/// type without batch support answers ENOTSUPP; a kernel that has it
/// reports the end of an empty map with ENOENT.
pub fn batch_lookup(map_create: Result<(), i32>, lookup: Result<(), i32>) -> Detection {
    if let Err(errno) = map_create {
        return unknown("creating a BPF map", errno);
    }
    match lookup {
        Err(libc::ENOENT) => Detection::Present,
        Err(errno) if errno == libc::EINVAL => Detection::Missing(format!(
            "the kernel does not know BPF_MAP_LOOKUP_BATCH ({})",
            errno_name(errno)
        )),
        Err(errno) if errno == ENOTSUPP || errno == libc::EOPNOTSUPP => {
            Detection::Missing(format!(
                "hash maps have no batch lookup here ({})",
                errno_name(errno)
            ))
        }
        Err(errno) => unknown("a batch lookup", errno),
        Ok(()) => Detection::Unknown("a batch lookup of an empty map succeeded".to_string()),
    }
}

/// What a helper probe (libbpf's `libbpf_probe_bpf_helper`) answered:
/// 1 supported, 0 not, negative errno when it could not tell.
pub fn helper(what: &str, answer: i32, added_in: &str) -> Detection {
    match answer {
        1.. => Detection::Present,
        0 => Detection::Missing(format!(
            "the verifier does not know {what} in kprobe-type programs (added in {added_in})"
        )),
        _ => unknown(&format!("probing {what}"), -answer),
    }
}

/// What loading the kernel's BTF answered (errno of libbpf's search of
/// `/sys/kernel/btf/vmlinux` and the usual files under /boot).
pub fn kernel_btf(load: Result<(), i32>) -> Detection {
    match load {
        Ok(()) => Detection::Present,
        Err(errno) if errno == libc::ENOENT || errno == libc::ESRCH => Detection::Missing(
            "no kernel BTF at /sys/kernel/btf/vmlinux or under /boot: the kernel was built without CONFIG_DEBUG_INFO_BTF"
                .to_string(),
        ),
        Err(errno) => unknown("reading the kernel's BTF", errno),
    }
}

/// Whether the kernel's `enum bpf_cmd` (from its BTF) has `BPF_ENABLE_STATS`:
/// the command is looked up rather than issued, since issuing it times every
/// BPF program on the host while the descriptor is open.
pub fn bpf_stats(has_command: Option<bool>) -> Detection {
    match has_command {
        Some(true) => Detection::Present,
        Some(false) => {
            Detection::Missing("the kernel's bpf_cmd has no BPF_ENABLE_STATS".to_string())
        }
        None => {
            Detection::Unknown("without kernel BTF the command cannot be looked up".to_string())
        }
    }
}

/// Whether the uprobe PMU has a `ref_ctr_offset` format (the file libbpf
/// checks before attaching a semaphore-guarded USDT probe).
pub fn usdt_semaphores(format_file: Result<(), i32>) -> Detection {
    match format_file {
        Ok(()) => Detection::Present,
        Err(libc::ENOENT) => Detection::Missing(
            "the uprobe PMU has no ref_ctr_offset (/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset)"
                .to_string(),
        ),
        Err(errno) => unknown("reading the uprobe PMU's formats", errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(d: &Detection) -> bool {
        matches!(d, Detection::Missing(_))
    }

    fn unknown(d: &Detection) -> bool {
        matches!(d, Detection::Unknown(_))
    }

    #[test]
    fn uprobe_multi_answers_of_each_kernel_generation() {
        use UprobeMultiTrial::*;
        // 6.10+ (and fixed 6.6.y/6.9.y): the link is made, pid -1 is EINVAL.
        assert_eq!(
            uprobe_multi(Linked {
                negative_pid: Some(libc::EINVAL)
            }),
            Detection::Present
        );
        // 6.6 to 6.9 unfixed: pid -1 is looked up (ESRCH): thread filtering.
        let unfixed = uprobe_multi(Linked {
            negative_pid: Some(libc::ESRCH),
        });
        assert!(missing(&unfixed), "{unfixed:?}");
        assert!(unfixed.describe().contains("filter by thread"));
        // 5.x and 6.1: the attach type is unknown to BPF_LINK_CREATE.
        assert!(missing(&uprobe_multi(LinkFailed(libc::EINVAL))));
        assert!(missing(&uprobe_multi(MultiLoadFailed(libc::EINVAL))));
        assert!(missing(&uprobe_multi(LinkFailed(libc::E2BIG))));
        // Built without uprobes, or a 32-bit kernel.
        assert!(missing(&uprobe_multi(LinkFailed(libc::EOPNOTSUPP))));
        assert!(missing(&uprobe_multi(LinkFailed(ENOTSUPP))));
        // Privileges say nothing about the kernel.
        for trial in [
            PlainLoadFailed(libc::EPERM),
            MultiLoadFailed(libc::EPERM),
            LinkFailed(libc::EACCES),
        ] {
            let d = uprobe_multi(trial);
            assert!(unknown(&d) && d.usable(), "{trial:?}: {d:?}");
            assert!(d.describe().contains("refused"), "{d:?}");
        }
        // Answers no kernel should give are not read as absence either.
        assert!(unknown(&uprobe_multi(LinkFailed(libc::ENOENT))));
        assert!(unknown(&uprobe_multi(Linked { negative_pid: None })));
        assert!(unknown(&uprobe_multi(Linked {
            negative_pid: Some(libc::EBADF)
        })));
    }

    #[test]
    fn func_ip_answers_of_each_kernel_generation() {
        let log =
            "0: R1=ctx() R10=fp0\n0: (85) call unknown#173\nunknown func bpf_get_func_ip#173\n";
        let old = func_ip_in_uprobes(&FuncIpTrial::LoadFailed(libc::EINVAL, log.into()));
        assert!(missing(&old) && old.describe().contains("5.15"), "{old:?}");
        let zero = func_ip_in_uprobes(&FuncIpTrial::Ran {
            got: 0,
            expected: 0x5555_1234,
        });
        assert!(
            missing(&zero) && zero.describe().contains("returned 0"),
            "{zero:?}"
        );
        assert_eq!(
            func_ip_in_uprobes(&FuncIpTrial::Ran {
                got: 0x5555_1234,
                expected: 0x5555_1234
            }),
            Detection::Present
        );
        assert!(unknown(&func_ip_in_uprobes(&FuncIpTrial::Ran {
            got: 8,
            expected: 9
        })));
        assert!(unknown(&func_ip_in_uprobes(&FuncIpTrial::NotFired)));
        let refused = func_ip_in_uprobes(&FuncIpTrial::AttachFailed(libc::EACCES));
        assert!(
            unknown(&refused) && refused.describe().contains("EACCES"),
            "{refused:?}"
        );
        // A verifier rejection for another reason names the verifier's line.
        let other = func_ip_in_uprobes(&FuncIpTrial::LoadFailed(
            libc::EACCES,
            "R0 !read_ok\n".into(),
        ));
        assert!(
            unknown(&other) && other.describe().contains("R0 !read_ok"),
            "{other:?}"
        );
    }

    #[test]
    fn uretprobe_filter_answers_of_each_kernel_generation() {
        use UretprobeFilterTrial::*;
        // 6.13+: only the child's own uretprobe runs in the child.
        assert_eq!(
            uretprobe_pid_filter(&Ran {
                child: true,
                exporter: false
            }),
            Detection::Present
        );
        // Before: the exporter's ran there too.
        let old = uretprobe_pid_filter(&Ran {
            child: true,
            exporter: true,
        });
        assert!(missing(&old) && old.describe().contains("6.13"), "{old:?}");
        // Nothing fired: no conclusion either way.
        for trial in [
            Ran {
                child: false,
                exporter: false,
            },
            Ran {
                child: false,
                exporter: true,
            },
        ] {
            let d = uretprobe_pid_filter(&trial);
            assert!(unknown(&d) && d.usable(), "{trial:?}: {d:?}");
        }
        // Privileges and broken steps say nothing about the kernel.
        let refused = uretprobe_pid_filter(&AttachFailed(libc::EACCES));
        assert!(
            unknown(&refused) && refused.describe().contains("capabilities"),
            "{refused:?}"
        );
        assert!(unknown(&uretprobe_pid_filter(&ForkFailed(libc::EAGAIN))));
        assert!(unknown(&uretprobe_pid_filter(&MapFailed(libc::EPERM))));
        assert!(unknown(&uretprobe_pid_filter(&ChildFailed(
            "was killed by signal 5".into()
        ))));
        let log = uretprobe_pid_filter(&LoadFailed(libc::EINVAL, "R1 !read_ok\n".into()));
        assert!(
            unknown(&log) && log.describe().contains("R1 !read_ok"),
            "{log:?}"
        );
    }

    #[test]
    fn batch_btf_stats_semaphore_and_helper_answers() {
        assert_eq!(batch_lookup(Ok(()), Err(libc::ENOENT)), Detection::Present);
        assert!(missing(&batch_lookup(Ok(()), Err(libc::EINVAL))));
        assert!(missing(&batch_lookup(Ok(()), Err(ENOTSUPP))));
        assert!(unknown(&batch_lookup(Err(libc::EPERM), Err(libc::EINVAL))));
        assert!(unknown(&batch_lookup(Ok(()), Ok(()))));
        assert_eq!(kernel_btf(Ok(())), Detection::Present);
        assert!(missing(&kernel_btf(Err(libc::ENOENT))));
        assert!(unknown(&kernel_btf(Err(libc::EACCES))));
        assert_eq!(bpf_stats(Some(true)), Detection::Present);
        assert!(missing(&bpf_stats(Some(false))));
        assert!(unknown(&bpf_stats(None)));
        assert_eq!(usdt_semaphores(Ok(())), Detection::Present);
        assert!(missing(&usdt_semaphores(Err(libc::ENOENT))));
        assert_eq!(
            helper("bpf_get_attach_cookie", 1, "5.15"),
            Detection::Present
        );
        assert!(missing(&helper("bpf_get_attach_cookie", 0, "5.15")));
        assert!(unknown(&helper(
            "bpf_get_attach_cookie",
            -libc::EPERM,
            "5.15"
        )));
    }
}
