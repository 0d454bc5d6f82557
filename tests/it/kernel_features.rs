//! Kernel features probed at startup, and the exporter on a kernel without
//! them: `--kernel.assume-missing` makes it take the fallback a kernel
//! lacking the feature gets (a wildcard uprobe becomes one uprobe per
//! function; maps are read key by key), and refuse what cannot run without
//! it. The counts must not change, and `check`, the metrics and the kernel's
//! own link table must say which path was taken.

use crate::common::{self, fixtures, named_copy, require_bpf, Exporter, Target, EXPORTER};
use crate::late_libraries::{plugin_config, wildcard_config};
use std::collections::BTreeMap;
use std::process::Command;

/// The BPF links the process `pid` holds, counted by the kernel's link type
/// (`uprobe_multi`, `uretprobe_multi`, `perf`, ...), from its
/// descriptors' fdinfo.
fn link_types(pid: u32) -> BTreeMap<String, usize> {
    let mut types = BTreeMap::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return types;
    };
    for fd in fds.flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if let Some(kind) = info
            .lines()
            .find_map(|l| l.strip_prefix("link_type:"))
            .map(str::trim)
        {
            *types.entry(kind.to_string()).or_default() += 1;
        }
    }
    types
}

/// Runs `check` on `config` with `args` before the subcommand; (success, stdout).
fn check(config: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(EXPORTER)
        .args(args)
        .arg("check")
        .arg("-c")
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The wildcard program's counts in processes driven the same way, with
/// the kernel's uprobe_multi links and without: calls and returns of every
/// `plugin_op_*` function, exactly as many as were made.
#[test]
fn a_wildcard_uprobe_counts_the_same_with_one_uprobe_per_function_as_with_uprobe_multi() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    const GLOB: &str = "libuexp_plugin.so:plugin_op_*";
    // (mode, --kernel.assume-missing)
    for (mode, assumed) in [
        ("multi", None),
        ("each", Some("uprobe_multi")),
        ("keys", Some("uprobe_multi,batch_lookup")),
    ] {
        let comm = format!("uexp-kf-{mode}");
        let mut a = Target::start_binary(&named_copy(&fixtures().loader, &comm));
        let mut b = Target::start_binary(&named_copy(&fixtures().loader, &comm));
        let mut args = vec!["--discovery.interval", "200ms"];
        if let Some(features) = assumed {
            args.extend(["--kernel.assume-missing", features]);
        }
        let exporter = Exporter::start_with(&wildcard_config(&comm, GLOB), &args);
        for target in [&mut a, &mut b] {
            assert_eq!(target.cmd("open"), "ok 0");
        }
        a.cmd("op alpha 3");
        a.cmd("op beta 5");
        a.cmd("op gamma 7");
        a.cmd("work 4 1"); // plugin_work does not match the glob
        b.cmd("op beta 2");
        let s = exporter.samples();
        let logs = exporter.logs();
        for (target, expected) in [
            (
                &a,
                vec![
                    ("plugin_op_alpha", 3.0),
                    ("plugin_op_beta", 5.0),
                    ("plugin_op_gamma", 7.0),
                ],
            ),
            (&b, vec![("plugin_op_beta", 2.0)]),
        ] {
            let pid = target.pid().to_string();
            for name in [
                "userspace_exporter_plugin_op_calls_total",
                "userspace_exporter_plugin_op_returns_total",
            ] {
                let pid_label = format!("pid=\"{pid}\"");
                let series: Vec<(String, f64)> = s
                    .series(name)
                    .into_iter()
                    .filter(|(k, _)| k.contains(&pid_label))
                    .collect();
                let mut want: Vec<(String, f64)> = expected
                    .iter()
                    .map(|(f, n)| (format!("{name}{{function=\"{f}\",pid=\"{pid}\"}}"), *n))
                    .collect();
                want.sort_by(|x, y| x.0.cmp(&y.0));
                assert_eq!(series, want, "{mode}: {name} of pid {pid}\n{logs}");
            }
        }
        assert_eq!(
            s.sum("userspace_exporter_attach_errors_total", &[]),
            0.0,
            "{mode}\n{logs}"
        );
        // The kernel's own account of what was attached: per process, one
        // uprobe_multi link per wildcard, or a perf-event link per function.
        let links = link_types(exporter.pid());
        let count = |kinds: &[&str]| -> usize {
            kinds
                .iter()
                .map(|k| links.get(*k).copied().unwrap_or(0))
                .sum()
        };
        let multi = count(&["uprobe_multi", "uretprobe_multi"]);
        let perf = count(&["perf"]);
        assert_eq!(
            multi + perf,
            links.values().sum::<usize>(),
            "{mode}: {links:?}"
        );
        let page = exporter.page("/");
        let feature = |name: &str| {
            s.get(
                "userspace_exporter_kernel_feature",
                &[
                    ("feature", name),
                    (
                        "min_kernel",
                        if name == "uprobe_multi" {
                            "6.10"
                        } else {
                            "5.6"
                        },
                    ),
                ],
            )
        };
        match assumed {
            None => {
                assert_eq!((multi, perf), (4, 0), "{mode}: {links:?}\n{logs}");
                assert_eq!(feature("uprobe_multi"), Some(1.0), "{mode}");
                assert!(
                    page.contains("plugin_op_* (3 functions: plugin_op_alpha, plugin_op_beta, plugin_op_gamma)"),
                    "{page}"
                );
            }
            Some(features) => {
                // 2 wildcards x (3 functions in a, 3 in b).
                assert_eq!((multi, perf), (0, 12), "{mode}: {links:?}\n{logs}");
                assert_eq!(feature("uprobe_multi"), Some(0.0), "{mode}");
                assert_eq!(
                    feature("batch_lookup"),
                    Some(if features.contains("batch_lookup") {
                        0.0
                    } else {
                        1.0
                    }),
                    "{mode}"
                );
                for function in ["plugin_op_alpha", "plugin_op_beta", "plugin_op_gamma"] {
                    assert!(
                        page.contains(&format!(
                            "uprobe plugin_op_* ({function}) in {}/libuexp_plugin.so (not loaded yet, found through RUNPATH: counts from when it loads); one uprobe per function: no uprobe_multi links on this kernel -&gt; on_op",
                            fixtures().plugins.display()
                        )),
                        "{function}: {page}"
                    );
                }
                assert!(
                    logs.contains("degraded on this kernel: one uprobe per function for uprobe \"libuexp_plugin.so:plugin_op_*\", uretprobe \"libuexp_plugin.so:plugin_op_*\" (uprobe_multi links filtering by process needs Linux 6.10+; this kernel is "),
                    "{logs}"
                );
            }
        }
    }
}

/// The perf-event fds the process `pid` holds (a perf-event uprobe is one,
/// with or without a BPF link around it).
fn perf_events(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.to_str() == Some("anon_inode:[perf_event]"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Single-function uprobes and uretprobes go through uprobe_multi links
/// where the kernel has them (here, on 6.10+ kernels), and through
/// perf-event uprobes with the links assumed missing, counting the same:
/// the kernel's link table says which, one link per probe and process
/// either way.
#[test]
fn single_function_uprobes_are_uprobe_multi_links_where_the_kernel_has_them_and_perf_links_without()
{
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    for (mode, assumed) in [("multi", false), ("perf", true)] {
        let comm = format!("uexp-kf1-{mode}");
        let mut a = Target::start(&comm);
        let mut b = Target::start(&comm);
        let config = format!(
            r#"
programs:
  - name: one
    object: {uprobe}
    metrics:
      counters:
        - name: kf_calls_total
          help: target_add calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
      histograms:
        - name: kf_return_value
          help: target_add return values
          table: return_values
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
          labels: [{{name: bucket, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_entry
    uretprobes:
      target_add: on_add_return
    attachment: {{binary_name: {comm}}}
"#,
            uprobe = fixtures().object("uprobe_counts").display()
        );
        let args: &[&str] = if assumed {
            &["--kernel.assume-missing", "uprobe_multi"]
        } else {
            &[]
        };
        let exporter = Exporter::start_with(&config, args);
        a.fire("call 5 3");
        b.fire("call 2 3");
        a.fire("call 1 4");
        let s = exporter.samples();
        let logs = exporter.logs();
        for (target, arg, calls) in [(&a, "3", 5.0), (&b, "3", 2.0), (&a, "4", 1.0)] {
            let pid = target.pid().to_string();
            assert_eq!(
                s.get(
                    "userspace_exporter_kf_calls_total",
                    &[("pid", &pid), ("arg", arg)]
                ),
                Some(calls),
                "{mode}: pid {pid} arg {arg}\n{logs}"
            );
        }
        for (target, returns) in [(&a, 6.0), (&b, 2.0)] {
            let pid = target.pid().to_string();
            assert_eq!(
                s.get("userspace_exporter_kf_return_value_count", &[("pid", &pid)]),
                Some(returns),
                "{mode}: pid {pid}\n{logs}"
            );
        }
        assert_eq!(
            s.sum("userspace_exporter_attach_errors_total", &[]),
            0.0,
            "{mode}\n{logs}"
        );
        let has_links = s.get(
            "userspace_exporter_kernel_feature",
            &[("feature", "uprobe_multi"), ("min_kernel", "6.10")],
        ) == Some(1.0);
        if !assumed && !has_links {
            // A kernel without the links takes the other path by itself.
            assert!(
                common::kernel_allows(&[])["uprobe-multi"].is_err(),
                "the exporter found no uprobe_multi links where the kernel makes them\n{logs}"
            );
        }
        // Two processes, an entry and a return probe each (the kernel names
        // a uprobe_multi link of return probes `uretprobe_multi`).
        let links = link_types(exporter.pid());
        let expected = if has_links {
            BTreeMap::from([
                ("uprobe_multi".to_string(), 2),
                ("uretprobe_multi".to_string(), 2),
            ])
        } else {
            BTreeMap::from([("perf".to_string(), 4)])
        };
        assert_eq!(links, expected, "{mode}\n{logs}");
        assert_eq!(
            perf_events(exporter.pid()),
            if has_links { 0 } else { 4 },
            "{mode}: {links:?}"
        );
    }
}

/// One BPF function serving a wildcard uprobe and a plain one (a config
/// error before every uprobe took the same path): both count exactly, with
/// uprobe_multi links and with perf-event uprobes.
#[test]
fn one_bpf_function_serves_a_wildcard_and_a_plain_uprobe_on_either_path() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    for (mode, assumed) in [("multi", false), ("perf", true)] {
        let comm = format!("uexp-kf2-{mode}");
        let mut target = Target::start(&comm);
        // target_add(ARG, i) and lib_event(ARG) both land in `calls` by ARG.
        let config = format!(
            r#"
programs:
  - name: both
    object: {uprobe}
    metrics:
      counters:
        - name: kf_both_calls_total
          help: target_add and lib_event calls by first argument
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_ad?: on_add_entry
      fixture:lib_event: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
            uprobe = fixtures().object("uprobe_counts").display()
        );
        let args: &[&str] = if assumed {
            &["--kernel.assume-missing", "uprobe_multi"]
        } else {
            &[]
        };
        let exporter = Exporter::start_with(&config, args);
        target.fire("call 3 5");
        target.fire("lib 4 6");
        let s = exporter.samples();
        let logs = exporter.logs();
        let pid = target.pid().to_string();
        for (arg, calls) in [("5", 3.0), ("6", 4.0)] {
            assert_eq!(
                s.get(
                    "userspace_exporter_kf_both_calls_total",
                    &[("pid", &pid), ("arg", arg)]
                ),
                Some(calls),
                "{mode}: arg {arg}\n{logs}"
            );
        }
        assert_eq!(
            s.sum("userspace_exporter_attach_errors_total", &[]),
            0.0,
            "{mode}\n{logs}"
        );
        let links = link_types(exporter.pid());
        assert_eq!(links.values().sum::<usize>(), 2, "{mode}: {links:?}");
    }
}

/// libbpf decides by itself how USDT probes attach (it probes the kernel
/// for uprobe_multi links on its own): assuming them missing must not
/// change what a USDT program counts, nor a plain uprobe's.
#[test]
fn usdt_and_plain_uprobes_count_exactly_with_uprobe_multi_assumed_missing() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-kf-usdt";
    let mut loader = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let exporter = Exporter::start_with(
        &plugin_config(comm),
        &[
            "--discovery.interval",
            "200ms",
            "--kernel.assume-missing",
            "uprobe_multi",
        ],
    );
    assert_eq!(loader.cmd("open"), "ok 0");
    assert_eq!(loader.cmd("sem"), "sem 1");
    assert_eq!(loader.cmd("work 7 3"), "ok 28");
    assert_eq!(loader.cmd("work 2 9"), "ok 48");
    let s = exporter.samples();
    let pid = loader.pid().to_string();
    for (arg, calls) in [("3", 7.0), ("9", 2.0)] {
        for metric in [
            "userspace_exporter_plugin_work_calls_total",
            "userspace_exporter_plugin_work_probes_total",
        ] {
            assert_eq!(
                s.get(metric, &[("pid", &pid), ("arg", arg)]),
                Some(calls),
                "{metric} arg {arg}\n{}",
                exporter.logs()
            );
        }
    }
    assert_eq!(s.sum("userspace_exporter_attach_errors_total", &[]), 0.0);
}

#[test]
fn check_says_which_programs_run_degraded_or_not_at_all_on_this_kernel() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let config = wildcard_config("uexp-kf-check", "libuexp_plugin.so:plugin_op_*");
    let (ok, full) = check(&config, &[], &[]);
    assert!(ok, "{full}");
    assert!(
        full.contains("program(s) would run in full, 0 degraded, 0 not at all")
            && full.contains(": 1 program(s) would run in full"),
        "{full}"
    );
    assert!(!full.contains("degraded:"), "{full}");

    // The flag and its environment variable alike.
    for (args, env) in [
        (vec!["--kernel.assume-missing", "uprobe_multi"], vec![]),
        (
            vec![],
            vec![("EXPORTER_KERNEL_ASSUME_MISSING", "uprobe_multi")],
        ),
    ] {
        let (ok, degraded) = check(&config, &args, &env);
        assert!(ok, "{degraded}");
        assert!(
            degraded.contains(
                "\n  on this kernel: degraded: one uprobe per function for uprobe \"libuexp_plugin.so:plugin_op_*\", uretprobe \"libuexp_plugin.so:plugin_op_*\" (uprobe_multi links filtering by process needs Linux 6.10+; this kernel is "
            ) && degraded.contains(", assumed missing by --kernel.assume-missing; perf-event uprobes: CAP_SYS_ADMIN where the kernel requires it)\n"),
            "{degraded}"
        );
        assert!(
            degraded.contains("warning: kernel feature uprobe_multi: no (assumed missing: --kernel.assume-missing); without it a wildcard uprobe becomes one uprobe per matched function"),
            "{degraded}"
        );
        assert!(
            degraded.contains("): 0 program(s) would run in full, 1 degraded, 0 not at all"),
            "{degraded}"
        );
    }

    // on_op_return keys its counts by bpf_get_func_ip: without the helper
    // in uprobes the program cannot run at all, and says what to do.
    let (ok, refused) = check(
        &config,
        &["--kernel.assume-missing", "bpf_get_func_ip_uprobe"],
        &[],
    );
    assert!(!ok, "{refused}");
    assert!(
        refused.contains(
            "program \"ops\": bpf_get_func_ip in uprobes needs Linux 6.6+; this kernel is "
        ) && refused.contains(
            ", assumed missing by --kernel.assume-missing: BPF function \"on_op_return\" calls it; at a function's entry use PT_REGS_IP(ctx) instead"
        ),
        "{refused}"
    );
    assert!(
        refused.contains("): 0 program(s) would run in full, 0 degraded, 1 not at all"),
        "{refused}"
    );
    let (ok, unknown) = check(&config, &["--kernel.assume-missing", "uprobe-multi"], &[]);
    assert!(!ok);
    assert!(
        unknown.contains("unknown kernel feature \"uprobe-multi\"; known: uprobe_multi, bpf_get_func_ip_uprobe, batch_lookup, bpf_stats, kernel_btf, bpf_cookie, usdt_semaphores, uretprobe_pid_filter"),
        "{unknown}"
    );
}

/// On this machine's kernel the probe must find what the kernel has: an
/// independent probe (tests/fixtures/kernel_features.c, raw syscalls) says
/// whether uprobe_multi links can be made; and from 6.10 on, every feature
/// the exporter probes is in mainline.
#[test]
fn the_features_found_match_the_kernel() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-kf-metrics";
    let _target = Target::start(comm);
    let exporter = Exporter::start(&common::hits_config(comm));
    let s = exporter.samples();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim();
    assert_eq!(
        s.get(
            "userspace_exporter_kernel_info",
            &[("release", release), ("machine", std::env::consts::ARCH)]
        ),
        Some(1.0)
    );
    let features: BTreeMap<String, f64> = s
        .series("userspace_exporter_kernel_feature")
        .into_iter()
        .map(|(k, v)| {
            let name = k
                .split("feature=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (name.to_string(), v)
        })
        .collect();
    let kernel = common::kernel_allows(&[]);
    if kernel["uprobe-multi"].is_err() {
        assert_eq!(features.get("uprobe_multi"), Some(&0.0), "{features:?}");
    }
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    if version >= vec![6, 10] {
        let mut all: BTreeMap<String, f64> = [
            "uprobe_multi",
            "bpf_get_func_ip_uprobe",
            "batch_lookup",
            "bpf_stats",
            "kernel_btf",
            "bpf_cookie",
            "usdt_semaphores",
        ]
        .into_iter()
        .chain((version >= vec![6, 13]).then_some("uretprobe_pid_filter"))
        .map(|f| (f.to_string(), 1.0))
        .collect();
        // 6.10 to 6.12 run uretprobes for other processes too.
        if version < vec![6, 13] {
            all.insert("uretprobe_pid_filter".to_string(), 0.0);
        }
        assert_eq!(features, all, "{}", exporter.logs());
    }
    assert!(
        exporter.logs().contains("kernel features probed"),
        "{}",
        exporter.logs()
    );
}

/// `code` indented under a config's `code: |`.
fn indent(code: &str) -> String {
    code.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A program whose object has CO-RE relocations (a kernel struct read
/// through BPF_CORE_READ) cannot run without the kernel's BTF, and says so;
/// a USDT program needs none (libbpf's usdt.bpf.h has no relocations).
#[test]
fn without_kernel_btf_only_programs_with_core_relocations_are_refused() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let code = r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/usdt.bpf.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u64);
    __type(value, u64);
} hits SEC(".maps");

SEC("usdt")
int BPF_USDT(on_hit, long arg, long i) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    u64 key = BPF_CORE_READ(task, tgid), one = 1;
    u64 *v = bpf_map_lookup_elem(&hits, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&hits, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";"#;
    let config = format!(
        "programs:\n  - name: core\n    metrics:\n      counters:\n        - name: hits_total\n          help: h\n          table: hits\n          labels: [{{name: tgid, size: 8, decoders: [{{name: uint}}]}}]\n    usdt:\n      fixture:hit: on_hit\n    attachment: {{binary_name: uexp-kf-core}}\n    code: |\n{}\n",
        indent(code)
    );
    let (ok, out) = check(&config, &[], &[]);
    assert!(ok, "{out}");
    assert!(out.contains(": 1 program(s) would run in full"), "{out}");
    let (ok, refused) = check(&config, &["--kernel.assume-missing", "kernel_btf"], &[]);
    assert!(!ok, "{refused}");
    assert!(
        refused.contains("program \"core\": kernel BTF (CONFIG_DEBUG_INFO_BTF) needs Linux 5.4+; this kernel is ")
            && refused.contains(", assumed missing by --kernel.assume-missing: the object has CO-RE relocations (BPF_CORE_READ, or kernel structs from a generated vmlinux.h), which libbpf resolves against the kernel's BTF; run on a kernel built with CONFIG_DEBUG_INFO_BTF"),
        "{refused}"
    );
    assert!(
        refused.contains("): 0 program(s) would run in full, 0 degraded, 1 not at all"),
        "{refused}"
    );
    // The same probe from an object without relocations runs.
    let (ok, usdt) = check(
        &common::hits_config("uexp-kf-core"),
        &["--kernel.assume-missing", "kernel_btf"],
        &[],
    );
    assert!(ok, "{usdt}");
    assert!(
        usdt.contains("): 1 program(s) would run in full, 0 degraded, 0 not at all"),
        "{usdt}"
    );
}

/// Two programs on target_add's returns (tests/fixtures/bpf/return_pairs.bpf.c),
/// per process: `return_only` counts returns by value from the return
/// alone; `paired` counts them by the call's first argument, saved at entry.
fn return_pairs_config(comm: &str) -> String {
    format!(
        r#"programs:
  - name: return_only
    object: {object}
    metrics:
      counters:
        - name: fixture_returns_total
          help: target_add returns by value, from the return alone
          table: returns
          labels: [{{name: value, size: 8, decoders: [{{name: uint}}]}}]
    uretprobes:
      target_add: on_add_return_only
    attachment: {{binary_name: {comm}}}
  - name: paired
    object: {object}
    metrics:
      counters:
        - name: fixture_paired_returns_total
          help: target_add returns by the call's first argument, paired with their entry
          table: paired_returns
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_add: on_add_enter
    uretprobes:
      target_add: on_add_return_paired
    attachment: {{binary_name: {comm}}}
"#,
        object = fixtures().object("return_pairs").display()
    )
}

/// Starts two targets named `comm` and an exporter on
/// [`return_pairs_config`] with `args`; `a` calls target_add(0, i) 10 times
/// (returning 0..9), `b` target_add(100, i) 3 times (100..102). Returns
/// the exporter and the targets (still running: the exporter keeps their
/// instances while they live), the samples, and the pids.
fn drive_return_pairs(
    comm: &str,
    args: &[&str],
) -> (Exporter, [Target; 2], common::Samples, [String; 2]) {
    let mut a = Target::start(comm);
    let mut b = Target::start(comm);
    let exporter = Exporter::start_with(&return_pairs_config(comm), args);
    a.fire("call 10 0");
    b.fire("call 3 100");
    let s = exporter.samples();
    let pids = [a.pid().to_string(), b.pid().to_string()];
    (exporter, [a, b], s, pids)
}

/// Each pid's returns as counted from the return alone: (value, count).
fn returns_of(s: &common::Samples, pid: &str) -> Vec<(u64, f64)> {
    let mut found: Vec<(u64, f64)> = s
        .series("userspace_exporter_fixture_returns_total")
        .into_iter()
        .filter(|(k, _)| k.contains(&format!("pid=\"{pid}\"")))
        .map(|(k, v)| {
            let value = k
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (value.parse().unwrap(), v)
        })
        .collect();
    found.sort_by_key(|(value, _)| *value);
    found
}

/// The exact counts [`drive_return_pairs`] makes: `a` returned 0..9 after
/// calls with 0, `b` 100..102 after calls with 100.
fn assert_exact_returns(s: &common::Samples, [a, b]: &[String; 2], context: &str) {
    let ones = |values: std::ops::Range<u64>| values.map(|v| (v, 1.0)).collect::<Vec<_>>();
    assert_eq!(returns_of(s, a), ones(0..10), "{context}");
    assert_eq!(returns_of(s, b), ones(100..103), "{context}");
    for (pid, arg, n) in [(a, "0", 10.0), (b, "100", 3.0)] {
        assert_eq!(
            s.get(
                "userspace_exporter_fixture_paired_returns_total",
                &[("pid", pid), ("arg", arg)]
            ),
            Some(n),
            "{context}"
        );
    }
    assert_eq!(
        s.sum("userspace_exporter_fixture_paired_returns_total", &[]),
        13.0,
        "{context}"
    );
}

/// The probe agrees with what the kernel does: two per-process instances
/// of a return-only program on the same function, each counting its own
/// process's returns exactly (the kernel filters uretprobes by process:
/// the feature is present), or also the other's (it does not: missing).
/// This machine's 6.18 filters.
#[test]
fn uretprobe_pid_filter_is_found_as_the_kernel_filters_returns() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (exporter, _targets, s, pids) = drive_return_pairs("uexp-kf-ret", &[]);
    let logs = exporter.logs();
    let gauge = s.get(
        "userspace_exporter_kernel_feature",
        &[("feature", "uretprobe_pid_filter"), ("min_kernel", "6.13")],
    );
    // Directly: did pid a's instance count b's returns (100..102)?
    let leaked = returns_of(&s, &pids[0]).iter().any(|(v, _)| *v >= 100);
    assert_eq!(gauge, Some(if leaked { 0.0 } else { 1.0 }), "{logs}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let version: Vec<u32> = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    if version >= vec![6, 13] {
        assert_exact_returns(&s, &pids, &logs);
        assert!(
            logs.contains("kernel feature present feature=\"uretprobe_pid_filter\""),
            "{logs}"
        );
        assert!(!logs.contains("degraded on this kernel"), "{logs}");
    }
}

/// Without filtered uretprobes and without uprobe_multi links (as on 6.1),
/// a return probe that counts without state from its entry is named
/// degraded in `check`, the log and the gauge; the paired one runs in full.
/// With uprobe_multi links (6.10 to 6.12), the return-only probe is
/// attached through one, which filters: in full, and the kernel's link
/// table shows it. The counts stay exact here either way (the kernel does
/// filter; only the exporter's choices are assumed).
#[test]
fn without_filtered_uretprobes_return_only_programs_are_named_degraded_and_paired_ones_full() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let config = return_pairs_config("uexp-kf-rdeg");
    let (ok, out) = check(
        &config,
        &[
            "--kernel.assume-missing",
            "uretprobe_pid_filter,uprobe_multi",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: kernel feature uretprobe_pid_filter: no (assumed missing: --kernel.assume-missing); without it a uretprobe attached for one process also runs when another process returns from the same function"),
        "{out}"
    );
    // return_only comes first in the config, paired second.
    let (return_only, paired) = out
        .split_once("ok: program \"paired\"")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        return_only.contains("ok: program \"return_only\"")
            && return_only.contains("\n  on this kernel: degraded: other attached processes' returns of the same function also counted for uretprobe \"target_add\" (table returns) (uretprobes filtered by process needs Linux 6.13+; this kernel is ")
            && return_only.contains(", assumed missing by --kernel.assume-missing; a return probe that counts only after finding state its entry probe saved stays exact)"),
        "{out}"
    );
    assert!(!paired.contains("on this kernel:"), "{out}");
    assert!(
        out.contains("): 1 program(s) would run in full, 1 degraded, 0 not at all"),
        "{out}"
    );

    let (exporter, targets, s, pids) = drive_return_pairs(
        "uexp-kf-rdeg",
        &[
            "--kernel.assume-missing",
            "uretprobe_pid_filter,uprobe_multi",
        ],
    );
    let logs = exporter.logs();
    assert_eq!(
        s.get(
            "userspace_exporter_kernel_feature",
            &[("feature", "uretprobe_pid_filter"), ("min_kernel", "6.13")],
        ),
        Some(0.0)
    );
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("degraded on this kernel: other attached processes' returns"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("for uretprobe \"target_add\" (table returns)")
            && warnings[0].contains("program=return_only"),
        "{logs}"
    );
    assert_exact_returns(&s, &pids, &logs);
    // Perf-event links only: 2 instances x (1 + 2) probes.
    assert_eq!(
        link_types(exporter.pid()),
        BTreeMap::from([("perf".to_string(), 6)]),
        "{logs}"
    );
    drop((exporter, targets));

    // uprobe_multi links at hand: the return-only probe goes through one.
    let (ok, out) = check(
        &config,
        &["--kernel.assume-missing", "uretprobe_pid_filter"],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("): 2 program(s) would run in full, 0 degraded, 0 not at all"),
        "{out}"
    );
    let (exporter, _targets, s, pids) = drive_return_pairs(
        "uexp-kf-rmul",
        &["--kernel.assume-missing", "uretprobe_pid_filter"],
    );
    let logs = exporter.logs();
    assert_exact_returns(&s, &pids, &logs);
    assert_eq!(
        link_types(exporter.pid()),
        // With the links at hand every uprobe and uretprobe goes through
        // one (the paired program's entries and returns too).
        BTreeMap::from([
            ("uprobe_multi".to_string(), 2),
            ("uretprobe_multi".to_string(), 4)
        ]),
        "{logs}"
    );
    assert!(!logs.contains("degraded on this kernel"), "{logs}");
}
