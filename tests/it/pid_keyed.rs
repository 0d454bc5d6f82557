//! `instances: pid_keyed`: one loaded object for every process, its probes
//! placed once per file, its maps keyed by pid, and the processes the
//! exporter selected written into the object's `exporter_pids` map.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples, Target};
use crate::kernel_objects::{Kind, Objects};
use std::process::Command;
use std::time::Duration;

/// tests/fixtures/bpf/pid_counts.bpf.c over the processes named `comm`,
/// leaving out those started with the argument `skip`.
fn config(comm: &str) -> String {
    format!(
        r#"
programs:
  - name: pidk
    object: {object}
    instances: pid_keyed
    process_labels: [comm]
    metrics:
      counters:
        - name: pidk_hits_total
          help: fixture:hit by pid and argument
          table: hits
          labels:
            - {{name: pid, size: 8, decoders: [{{name: pid}}]}}
            - {{name: arg, size: 8, decoders: [{{name: uint}}]}}
        - name: pidk_calls_total
          help: target_add calls by pid
          table: calls
          labels: [{{name: pid, size: 8, decoders: [{{name: pid}}]}}]
        - name: pidk_returns_total
          help: target_add returns by pid
          table: returns
          labels: [{{name: pid, size: 8, decoders: [{{name: pid}}]}}]
    usdt:
      fixture:hit: on_hit
    uprobes:
      target_add: on_call
    uretprobes:
      target_add: on_return
    attachment: {{binary_name: {comm}, exclude: {{cmdline: skip}}}}
"#,
        object = fixtures().object("pid_counts").display()
    )
}

fn attached(s: &Samples) -> Option<f64> {
    s.get("userspace_exporter_attached_processes", &[("name", "pidk")])
}

/// The kernel links the exporter holds.
fn links(exporter: &Exporter) -> usize {
    Objects::held_by(exporter.pid())
        .expect("exporter running")
        .alive()
        .counts()
        .of(Kind::Link)
}

#[test]
fn each_selected_process_is_counted_by_pid_through_one_link_per_probe_and_file() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-pidk";
    let binary = fixtures().target_named(comm);
    let exporter = Exporter::start_with(
        &config(comm),
        &["--discovery.interval", "100ms", "--attach.linger", "5s"],
    );
    let mut first = Target::start_binary(&binary);
    let mut second = Target::start_binary(&binary);
    // The same file, left out by the selector: the probes fire in it too
    // (they are placed for every process of the file), and count nothing.
    let mut skipped = Target::spawn(Command::new(&binary).arg("skip"));
    wait_for(Duration::from_secs(10), || {
        (attached(&exporter.samples())? == 2.0).then_some(())
    })
    .unwrap_or_else(|| panic!("not attached:\n{}", exporter.logs()));
    // One USDT site, one uprobe and one uretprobe in one file: 3 links,
    // whatever the number of processes.
    assert_eq!(links(&exporter), 3, "{}", exporter.logs());

    first.fire("usdt 5 7");
    first.fire("call 6 1");
    second.fire("usdt 3 7");
    second.fire("usdt 2 9");
    skipped.fire("usdt 4 7");
    skipped.fire("call 2 1");
    let (p1, p2, skip) = (
        first.pid().to_string(),
        second.pid().to_string(),
        skipped.pid().to_string(),
    );
    let s = exporter.samples();
    let hits = |pid: &str, arg: &str| {
        s.get(
            "userspace_exporter_pidk_hits_total",
            &[("pid", pid), ("arg", arg), ("comm", comm)],
        )
    };
    assert_eq!(hits(&p1, "7"), Some(5.0), "{}", exporter.scrape());
    assert_eq!(hits(&p2, "7"), Some(3.0));
    assert_eq!(hits(&p2, "9"), Some(2.0));
    assert_eq!(
        s.series("userspace_exporter_pidk_hits_total").len(),
        3,
        "{}",
        exporter.scrape()
    );
    let calls = |name: &str, pid: &str| s.get(name, &[("pid", pid), ("comm", comm)]);
    assert_eq!(calls("userspace_exporter_pidk_calls_total", &p1), Some(6.0));
    assert_eq!(
        calls("userspace_exporter_pidk_returns_total", &p1),
        Some(6.0)
    );
    assert_eq!(calls("userspace_exporter_pidk_calls_total", &p2), None);
    assert_eq!(calls("userspace_exporter_pidk_calls_total", &skip), None);
    assert!(!exporter.scrape().contains(&format!("pid=\"{skip}\"")));

    // A later process of the file is selected with no new link.
    let mut third = Target::start_binary(&binary);
    wait_for(Duration::from_secs(10), || {
        (attached(&exporter.samples())? == 3.0).then_some(())
    })
    .unwrap_or_else(|| panic!("third not attached:\n{}", exporter.logs()));
    assert_eq!(links(&exporter), 3);
    third.fire("usdt 4 7");
    let p3 = third.pid().to_string();
    assert_eq!(
        exporter.samples().get(
            "userspace_exporter_pidk_hits_total",
            &[("pid", &p3), ("arg", "7"), ("comm", comm)]
        ),
        Some(4.0)
    );

    // An exit takes the process's series and its map entries with it.
    drop(first);
    let s = wait_for(Duration::from_secs(10), || {
        let s = exporter.samples();
        (attached(&s)? == 2.0).then_some(s)
    })
    .unwrap_or_else(|| panic!("exit not seen:\n{}", exporter.logs()));
    assert_eq!(
        s.get(
            "userspace_exporter_pidk_hits_total",
            &[("pid", &p1), ("arg", "7"), ("comm", comm)]
        ),
        None
    );
    let entries = |s: &Samples, table: &str| {
        s.get(
            "userspace_exporter_table_entries",
            &[("name", "pidk"), ("table", table)],
        )
    };
    // p2's two keys and p3's one; p1's key and its call count are deleted
    // (the first exit is swept at once).
    assert_eq!(entries(&s, "hits"), Some(3.0), "{}", exporter.scrape());
    assert_eq!(entries(&s, "calls"), Some(0.0), "{}", exporter.scrape());
    assert_eq!(links(&exporter), 3);

    // The last process of the file gone, its links stay a while
    // (--attach.linger): a process started meanwhile needs none made.
    drop((second, third));
    wait_for(Duration::from_secs(5), || {
        (attached(&exporter.samples())? == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("exits not seen:\n{}", exporter.logs()));
    assert_eq!(links(&exporter), 3);
    let mut fourth = Target::start_binary(&binary);
    wait_for(Duration::from_secs(5), || {
        (attached(&exporter.samples())? == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("fourth not attached:\n{}", exporter.logs()));
    assert_eq!(links(&exporter), 3);
    fourth.fire("call 2 1");
    let p4 = fourth.pid().to_string();
    assert_eq!(
        exporter.samples().get(
            "userspace_exporter_pidk_returns_total",
            &[("pid", &p4), ("comm", comm)]
        ),
        Some(2.0)
    );
    // Unused for the linger, they are detached.
    drop(fourth);
    wait_for(Duration::from_secs(20), || {
        (links(&exporter) == 0).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "links kept: {} after the processes went:\n{}",
            links(&exporter),
            exporter.logs()
        )
    });
    // Their entries are deleted within a second of the exits (exits are
    // swept together, at most once a second), with no further event.
    wait_for(Duration::from_secs(5), || {
        (entries(&exporter.samples(), "hits")? == 0.0).then_some(())
    })
    .unwrap_or_else(|| panic!("entries kept:\n{}", exporter.scrape()));
    drop(skipped);
}

#[test]
fn without_bpf_cookies_usdt_probes_are_placed_per_process_and_go_with_it() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-pidk-old";
    let binary = fixtures().target_named(comm);
    // As on a kernel before 5.15 (cookies) and 6.6 (uprobe_multi links):
    // perf-event uprobes, USDT probes by libbpf's address lookup.
    let exporter = Exporter::start_with(
        &config(comm),
        &[
            "--discovery.interval",
            "100ms",
            "--kernel.assume-missing",
            "bpf_cookie,uprobe_multi",
        ],
    );
    let mut first = Target::start_binary(&binary);
    let mut second = Target::start_binary(&binary);
    wait_for(Duration::from_secs(10), || {
        (attached(&exporter.samples())? == 2.0).then_some(())
    })
    .unwrap_or_else(|| panic!("not attached:\n{}", exporter.logs()));
    // A USDT link per process; the uprobe and uretprobe once for the file.
    assert_eq!(links(&exporter), 4, "{}", exporter.logs());
    first.fire("usdt 5 7");
    second.fire("usdt 3 7");
    first.fire("call 4 1");
    second.fire("call 2 1");
    let s = exporter.samples();
    let (p1, p2) = (first.pid().to_string(), second.pid().to_string());
    let value = |name: &str, labels: &[(&str, &str)]| s.get(name, labels);
    assert_eq!(
        value(
            "userspace_exporter_pidk_hits_total",
            &[("pid", &p1), ("arg", "7"), ("comm", comm)]
        ),
        Some(5.0),
        "{}",
        exporter.scrape()
    );
    assert_eq!(
        value(
            "userspace_exporter_pidk_hits_total",
            &[("pid", &p2), ("arg", "7"), ("comm", comm)]
        ),
        Some(3.0)
    );
    // Perf-event uretprobes run for every process hitting the function on
    // these kernels; the program's own pid check keeps each count exact.
    for (pid, calls) in [(&p1, 4.0), (&p2, 2.0)] {
        for metric in ["calls", "returns"] {
            assert_eq!(
                value(
                    &format!("userspace_exporter_pidk_{metric}_total"),
                    &[("pid", pid), ("comm", comm)]
                ),
                Some(calls),
                "{metric} of {pid}"
            );
        }
    }
    assert!(
        !exporter
            .logs()
            .contains("degraded: other attached processes' returns"),
        "{}",
        exporter.logs()
    );
    drop(first);
    wait_for(Duration::from_secs(10), || {
        (attached(&exporter.samples())? == 1.0 && links(&exporter) == 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the exited process's USDT link kept ({} links):\n{}",
            links(&exporter),
            exporter.logs()
        )
    });
}
