//! Bad input through the binary: every message says what and where, nothing
//! panics, and `check` lists every problem with a non-zero exit.

use crate::common::{self, fixtures, require_bpf, Target, EXPORTER};
use std::process::{Command, Output};

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn exporter(args: &[&str]) -> Output {
    Command::new(EXPORTER).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_panic(out: &Output) {
    let t = text(out);
    assert!(!t.contains("panicked"), "{t}");
}

fn counter_program(
    name: &str,
    object: &std::path::Path,
    table: &str,
    size: usize,
    function: &str,
) -> String {
    format!(
        r#"
  - name: {name}
    object: {object}
    metrics:
      counters:
        - name: {name}_total
          help: hits
          table: {table}
          labels: [{{name: arg, size: {size}, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: {function}
    attachment: {{binary_name: uexp-bad}}
"#,
        object = object.display()
    )
}

#[test]
fn check_accepts_a_good_config_after_loading_it_through_the_verifier() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "programs:{}",
        counter_program(
            "good",
            fixtures().object("usdt_counts"),
            "hits",
            8,
            "on_hit"
        )
    );
    let path = write_config(&dir, &config);
    let out = exporter(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ok: program \"good\": 1 probe(s), 1 counter(s), 0 histogram(s); loads through the verifier"), "{}", text(&out));
}

#[test]
fn check_lists_every_object_mismatch_with_its_line() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let f = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "programs:{}{}{}{}",
        counter_program(
            "no_function",
            f.object("usdt_counts"),
            "hits",
            8,
            "on_nothing"
        ),
        counter_program("no_table", f.object("usdt_counts"), "hitz", 8, "on_hit"),
        counter_program("bad_sizes", f.object("usdt_counts"), "hits", 4, "on_hit"),
        counter_program("rejected", f.object("rejected"), "counts", 8, "unchecked"),
    );
    let path = write_config(&dir, &config);
    let out = exporter(&["check", "-c", path.to_str().unwrap()]);
    let t = text(&out);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let p = path.display();
    // Each program block is 11 lines and a blank one, the first starting at line 2.
    for expected in [
        format!("{p}:11:7: program \"no_function\": usdt probe \"fixture:hit\" names BPF function \"on_nothing\", which the object does not have; its programs: on_guarded, on_hit, on_lib_event, on_tagged"),
        format!("{p}:18:11: counter \"no_table_total\": table \"hitz\" is not a map of the object; its maps: guarded_hits, hits, hits_mod4, hits_mod4_percpu, hits_percpu, lib_hits, tagged"),
        format!("{p}:30:11: counter \"bad_sizes_total\": label sizes plus padding add up to 4 bytes (arg=4+0), but table \"hits\" has 8-byte keys"),
        format!("{p}:38:5: program \"rejected\": loading the BPF object failed"),
        "R0 invalid mem access 'map_value_or_null'".to_string(),
        format!("{p}: 4 error(s)"),
    ] {
        assert!(t.contains(&expected), "missing {expected:?} in:\n{t}");
    }
}

#[test]
fn run_rejects_bad_configs_with_file_line_and_column() {
    let _machine = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let out = exporter(&["-c", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!(
            "{}: cannot read the config file: No such file or directory",
            missing.display()
        )),
        "{}",
        text(&out)
    );

    let path = write_config(&dir, "programs:\n  - name: x\n    tabel: 3\n");
    let out = exporter(&["-c", path.to_str().unwrap()]);
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{}:3:5: ", path.display())),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("tabel"), "{}", text(&out));

    let path = write_config(&dir, "programs: [\n");
    let out = exporter(&["-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{}:1:11: unclosed bracket", path.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let _target = Target::start("uexp-bad");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        &format!(
            "programs:{}",
            counter_program(
                "good",
                fixtures().object("usdt_counts"),
                "hits",
                8,
                "on_hit"
            )
        ),
    );
    let out = exporter(&[
        "--listen-address",
        &format!("127.0.0.1:{port}"),
        "-c",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("error: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98); another process holds that port")),
        "{}",
        text(&out)
    );
}

#[test]
fn ignored_kernel_probe_kinds_warn_once_each() {
    let _machine = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("missing.bpf.o");
    let path = write_config(
        &dir,
        &format!(
            "programs:\n  - name: k\n    object: {}\n    usdt: {{gc__start: trace}}\n    kprobes: {{tcp_v4_connect: x}}\n    tracepoints: {{sched:sched_switch: y}}\n    attachment: {{binary_name: python3.11}}\n",
            object.display()
        ),
    );
    let out = exporter(&["check", "-c", path.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(t.matches("`kprobes` is ignored").count(), 1, "{t}");
    assert_eq!(t.matches("`tracepoints` is ignored").count(), 1, "{t}");
    assert!(
        t.contains(&format!("cannot read BPF object {}", object.display())),
        "{t}"
    );
}

#[test]
fn a_process_that_exits_before_attach_is_reported_as_exited() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    use userspace_exporter::attach::{AttachTarget, PreparedProgram};
    use userspace_exporter::config::Config;
    use userspace_exporter::discovery::ProcessInfo;
    use userspace_exporter::elf::ElfCache;

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "programs:{}",
        counter_program(
            "gone",
            fixtures().object("usdt_counts"),
            "hits",
            8,
            "on_hit"
        )
    );
    let path = write_config(&dir, &config);
    let config = Config::load(&path).unwrap();
    let object = std::fs::read(fixtures().object("usdt_counts")).unwrap();
    let prepared = PreparedProgram::prepare(&config, &config.programs[0], object).unwrap();

    let target = Target::start("uexp-gone");
    let process = ProcessInfo::read(target.pid() as i32).unwrap();
    assert!(process.is_alive());
    drop(target); // killed and reaped
    assert!(!process.is_alive());
    let err = prepared
        .instantiate(
            AttachTarget::Process(process.clone()),
            &mut ElfCache::new(4),
            None,
            None,
        )
        .unwrap_err();
    let failures = err.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        failures[0].message,
        format!(
            "process {} (uexp-gone) exited while being attached",
            process.pid()
        )
    );
}

#[test]
fn usdt_probes_in_an_object_without_libbpf_usdt_support_are_named_at_their_line() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // uprobe_counts.bpf.c does not include <bpf/usdt.bpf.h>.
    let config = format!(
        "programs:{}",
        counter_program(
            "nousdt",
            fixtures().object("uprobe_counts"),
            "calls",
            8,
            "on_add_entry"
        )
    );
    let path = write_config(&dir, &config);
    let out = exporter(&["check", "-c", path.to_str().unwrap()]);
    assert_no_panic(&out);
    assert!(!out.status.success());
    let expected = format!(
        "{}:11:7: program \"nousdt\": the object has USDT probes in the config but was not built with libbpf's USDT support: include <bpf/usdt.bpf.h>",
        path.display()
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));
}

#[test]
fn a_pid_keyed_program_without_the_exporters_maps_is_refused_naming_the_header() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // usdt_counts keys `hits` by a u64, as a pid would be, but has no
    // exporter_pids map: it would count every process of the file.
    let config = format!(
        r#"programs:
  - name: unkeyed
    object: {object}
    instances: pid_keyed
    metrics:
      counters:
        - name: unkeyed_total
          help: hits
          table: hits
          labels: [{{name: pid, size: 8, decoders: [{{name: pid}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: uexp-bad}}
"#,
        object = fixtures().object("usdt_counts").display()
    );
    let path = write_config(&dir, &config);
    let out = exporter(&["check", "-c", path.to_str().unwrap()]);
    assert_no_panic(&out);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("{}:2: program \"unkeyed\"", path.display())),
        "{t}"
    );
    assert!(t.contains("has no \"exporter_pids\""), "{t}");
    assert!(t.contains("#include \"exporter_pids.bpf.h\""), "{t}");
}
