//! Probes in libraries a process loads long after it started (dlopen): the
//! exporter finds the file the process's loader would load (RUNPATH,
//! LD_LIBRARY_PATH, ld.so.cache, default directories) and attaches to it up
//! front; the kernel arms the probes when the library is mapped. Every call
//! from the first one is counted, however late the library comes, through
//! dlclose and a second dlopen, with no rescans involved.

use crate::common::{self, fixtures, named_copy, require_bpf, Exporter, Target, PYTHON};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Counts plugin_work calls (uprobe) and plugin:work firings (guarded USDT)
/// in libuexp_plugin.so, named by file name only, in processes named `comm`.
pub(crate) fn plugin_config(comm: &str) -> String {
    format!(
        r#"
programs:
  - name: late
    object: {object}
    metrics:
      counters:
        - name: plugin_work_calls_total
          help: plugin_work calls by argument (uprobe)
          table: work_calls
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: plugin_work_probes_total
          help: plugin:work firings by argument (semaphore-guarded USDT)
          table: work_probes
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
    uprobes:
      libuexp_plugin.so:plugin_work: on_work
    usdt:
      libuexp_plugin.so:plugin:work: on_work_probe
    attachment:
      binary_name: {comm}
"#,
        object = fixtures().object("plugin_counts").display()
    )
}

/// Waits out every rescan retry an attach failure would get (5 rescans at
/// the 200 ms interval the tests use), and then some.
const PAST_THE_RETRY_WINDOW: Duration = Duration::from_secs(3);

fn counts(exporter: &Exporter, pid: u32, arg: &str) -> (f64, f64) {
    let s = exporter.samples();
    let pid = pid.to_string();
    let get = |name: &str| s.get(name, &[("pid", &pid), ("arg", arg)]).unwrap_or(0.0);
    (
        get("userspace_exporter_plugin_work_calls_total"),
        get("userspace_exporter_plugin_work_probes_total"),
    )
}

#[test]
fn a_library_dlopened_late_is_counted_from_its_first_call_through_close_and_reopen() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-late-c";
    // Found through the loader's RUNPATH, $ORIGIN/plugins.
    let mut loader = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let exporter = Exporter::start_with(&plugin_config(comm), &["--discovery.interval", "200ms"]);
    std::thread::sleep(PAST_THE_RETRY_WINDOW);
    let page = exporter.page("/");
    assert!(
        page.contains("libuexp_plugin.so (not loaded yet, found through RUNPATH"),
        "{page}\n{}",
        exporter.logs()
    );
    assert_eq!(counts(&exporter, loader.pid(), "3"), (0.0, 0.0));

    assert_eq!(loader.cmd("open"), "ok 0");
    // The kernel raised the guarded probe's semaphore when the library was mapped.
    assert_eq!(loader.cmd("sem"), "sem 1");
    assert_eq!(loader.cmd("work 7 3"), "ok 28");
    assert_eq!(loader.cmd("close"), "ok 28");
    assert_eq!(loader.cmd("open"), "ok 28");
    assert_eq!(loader.cmd("sem"), "sem 1");
    assert_eq!(loader.cmd("work 5 3"), "ok 48");
    assert_eq!(loader.cmd("work 2 9"), "ok 68");
    assert_eq!(
        counts(&exporter, loader.pid(), "3"),
        (12.0, 12.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(counts(&exporter, loader.pid(), "9"), (2.0, 2.0));
    let s = exporter.samples();
    assert_eq!(
        s.sum("userspace_exporter_attach_errors_total", &[]),
        0.0,
        "{}",
        exporter.logs()
    );
}

#[test]
fn a_python_process_loading_a_c_library_at_first_use_is_counted_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_python() {
        return;
    }
    let comm = "uexp-late-py";
    let python = named_copy(Path::new(PYTHON), comm);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/python_plugin.py"
    );
    // Found through the process's LD_LIBRARY_PATH (python3.11 has no RUNPATH).
    let mut driver = Target::spawn(
        Command::new(python)
            .arg(script)
            .env("LD_LIBRARY_PATH", &fixtures().plugins),
    );
    let exporter = Exporter::start_with(&plugin_config(comm), &["--discovery.interval", "200ms"]);
    std::thread::sleep(PAST_THE_RETRY_WINDOW);
    assert!(
        exporter
            .page("/")
            .contains("(not loaded yet, found through LD_LIBRARY_PATH"),
        "{}",
        exporter.logs()
    );
    assert_eq!(driver.cmd("load"), "ok");
    assert_eq!(driver.cmd("sem"), "sem 1");
    assert_eq!(driver.cmd("work 9 4"), "ok 45");
    assert_eq!(
        counts(&exporter, driver.pid(), "4"),
        (9.0, 9.0),
        "{}",
        exporter.logs()
    );
}

#[test]
fn a_library_no_search_path_finds_is_reported_with_where_it_was_looked_for() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-late-none";
    let _loader = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let config = plugin_config(comm).replace(
        "libuexp_plugin.so:plugin_work: on_work",
        "libuexp_nothing.so:plugin_work: on_work",
    );
    let exporter = Exporter::start_with(&config, &[]);
    let logs = exporter.logs();
    assert!(
        logs.contains("library \"libuexp_nothing.so\" is not mapped by process")
            && logs.contains("its loader would not find it: searched ")
            && logs.contains(&format!("RUNPATH ({})", fixtures().plugins.display()))
            && logs.contains("ld.so.cache, default directories ("),
        "{logs}"
    );
    // The USDT probe of the same program still attached.
    assert!(exporter.page("/").contains("usdt plugin:work in"), "{logs}");
}

/// Calls and returns of every `plugin_op_*` function, by function name: one
/// wildcard uprobe and one wildcard uretprobe, named by the `usym` decoder.
pub(crate) fn wildcard_config(comm: &str, glob: &str) -> String {
    format!(
        r#"
programs:
  - name: ops
    object: {object}
    metrics:
      counters:
        - name: plugin_op_calls_total
          help: plugin_op_* calls by function (PT_REGS_IP at entry)
          table: op_calls
          labels:
            - name: function
              size: 8
              decoders: [{{name: usym}}]
        - name: plugin_op_returns_total
          help: plugin_op_* returns by function (bpf_get_func_ip)
          table: op_returns
          labels:
            - name: function
              size: 8
              decoders: [{{name: usym}}]
    uprobes:
      {glob}: on_op
    uretprobes:
      {glob}: on_op_return
    attachment:
      binary_name: {comm}
"#,
        object = fixtures().object("plugin_counts").display()
    )
}

#[test]
fn a_wildcard_uprobe_counts_each_matching_function_by_name() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-wildcard";
    let mut a = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let mut b = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let exporter = Exporter::start_with(
        &wildcard_config(comm, "libuexp_plugin.so:plugin_op_*"),
        &["--discovery.interval", "200ms"],
    );
    for target in [&mut a, &mut b] {
        assert_eq!(target.cmd("open"), "ok 0");
    }
    a.cmd("op alpha 3");
    a.cmd("op beta 5");
    a.cmd("op gamma 7");
    a.cmd("work 4 1"); // plugin_work does not match the glob
    b.cmd("op beta 2");
    let s = exporter.samples();
    for (target, expected) in [
        (
            &a,
            [
                ("plugin_op_alpha", 3.0),
                ("plugin_op_beta", 5.0),
                ("plugin_op_gamma", 7.0),
            ]
            .as_slice(),
        ),
        (&b, [("plugin_op_beta", 2.0)].as_slice()),
    ] {
        let pid = target.pid().to_string();
        for name in [
            "userspace_exporter_plugin_op_calls_total",
            "userspace_exporter_plugin_op_returns_total",
        ] {
            let got: Vec<f64> = expected
                .iter()
                .map(|(f, _)| {
                    s.get(name, &[("pid", &pid), ("function", f)])
                        .unwrap_or(-1.0)
                })
                .collect();
            let want: Vec<f64> = expected.iter().map(|(_, n)| *n).collect();
            let pid_label = format!("pid=\"{pid}\"");
            let series = s
                .series(name)
                .into_iter()
                .filter(|(k, _)| k.contains(&pid_label))
                .count();
            assert_eq!(
                series,
                expected.len(),
                "{name} of pid {pid}\n{}",
                exporter.logs()
            );
            assert_eq!(got, want, "{name} of pid {pid}\n{}", exporter.logs());
        }
    }
    let page = exporter.page("/");
    assert!(
        page.contains(
            "plugin_op_* (3 functions: plugin_op_alpha, plugin_op_beta, plugin_op_gamma)"
        ),
        "{page}"
    );
}

#[test]
fn a_glob_matching_too_many_or_no_functions_is_a_clear_error() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-wild-bad";
    let _target = Target::start_binary(&named_copy(&fixtures().loader, comm));
    let config = wildcard_config(comm, "c:*").replace(
        "      c:*: on_op_return",
        "      libuexp_plugin.so:nothing_*: on_op_return",
    );
    let exporter = Exporter::start_with(&config, &[]);
    let logs = exporter.logs();
    assert!(
        logs.contains("\"*\" matches ")
            && logs.contains("functions in /usr/lib/x86_64-linux-gnu/libc.so.6 of process ")
            && logs.contains("more than the 1024 one wildcard probe may attach to"),
        "{logs}"
    );
    assert!(
        logs.contains("no function symbol in ") && logs.contains("matches \"nothing_*\""),
        "{logs}"
    );
}
