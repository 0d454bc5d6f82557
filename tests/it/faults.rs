//! Faults a running exporter meets: a target whose executable was deleted or
//! replaced on disk, and a target it has no right to read. Each is handled
//! without stopping anything else: the first two are still counted exactly,
//! the last is logged once and counted as an attach error.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Target};
use std::process::{Command, Stdio};
use std::time::Duration;

fn hits(exporter: &Exporter, pid: u32, arg: &str) -> Option<f64> {
    exporter.samples().get(
        "userspace_exporter_churn_hits_total",
        &[("arg", arg), ("pid", &pid.to_string())],
    )
}

fn attached(exporter: &Exporter, pid: u32) -> bool {
    exporter
        .samples()
        .get(
            "userspace_exporter_enabled_programs",
            &[("name", "churn"), ("pid", &pid.to_string())],
        )
        .is_some()
}

#[test]
fn targets_whose_executable_was_deleted_or_replaced_are_still_counted() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // Private copies (with the fixture library beside them), removed or replaced
    // while their process runs.
    let deleted_path = common::named_copy(&fixtures().target, "uexp-deleted");
    let replaced_path = common::named_copy(&fixtures().target, "uexp-replaced");
    let mut deleted = Target::start_binary(&deleted_path);
    let mut replaced = Target::start_binary(&replaced_path);
    std::fs::remove_file(&deleted_path).unwrap();
    let fresh = replaced_path.with_extension("new");
    std::fs::copy(&fixtures().target, &fresh).unwrap();
    std::fs::rename(&fresh, &replaced_path).unwrap();

    let config = common::hits_config("uexp-deleted").replace(
        "attachment: {binary_name: uexp-deleted}",
        "attachment: [{binary_name: uexp-deleted}, {binary_name: uexp-replaced}]",
    );
    let exporter = Exporter::start_with(&config, &["--discovery.interval", "100ms"]);
    for target in [&deleted, &replaced] {
        let pid = target.pid();
        wait_for(Duration::from_secs(10), || {
            attached(&exporter, pid).then_some(())
        })
        .unwrap_or_else(|| panic!("pid {pid} not attached:\n{}", exporter.logs()));
    }
    deleted.cmd("usdt 4 1");
    replaced.cmd("usdt 7 2");
    assert_eq!(
        hits(&exporter, deleted.pid(), "1"),
        Some(4.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        hits(&exporter, replaced.pid(), "2"),
        Some(7.0),
        "{}",
        exporter.logs()
    );
    assert_eq!(
        exporter
            .samples()
            .series("userspace_exporter_attach_errors_total")
            .len(),
        0,
        "{}",
        exporter.scrape()
    );
}

#[test]
fn a_target_the_exporter_may_not_read_is_reported_once_and_the_others_still_count() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    // A target of another user (nobody) whose executable exists only in its own
    // mount namespace, and an exporter without CAP_SYS_PTRACE and CAP_SYS_ADMIN:
    // it cannot open that process's files, as with a container it may not enter.
    let root = tempfile::tempdir().unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs {root} && cp {bin} {root}/uexp-noaccess && cp {lib} {root}/ && chmod 755 {root} && exec setpriv --reuid=65534 --regid=65534 --clear-groups {root}/uexp-noaccess",
        root = root.path().display(),
        bin = fixtures().target.display(),
        lib = fixtures().library.display(),
    );
    let mut other_user = common::spawn(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(other_user.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    let mine = Target::start("uexp-noaccess2");
    let config = common::hits_config("uexp-noaccess").replace(
        "attachment: {binary_name: uexp-noaccess}",
        "attachment: [{binary_name: uexp-noaccess}, {binary_name: uexp-noaccess2}]",
    );
    let exporter = Exporter::start_with_command(
        &config,
        &["--discovery.interval", "100ms"],
        &[
            "setpriv",
            "--bounding-set=-sys_ptrace,-dac_read_search,-dac_override,-sys_admin",
        ],
    );
    let mut mine = mine;
    wait_for(Duration::from_secs(10), || {
        attached(&exporter, mine.pid()).then_some(())
    })
    .unwrap_or_else(|| panic!("own target not attached:\n{}", exporter.logs()));
    // Several rescans pass: the failure is logged and counted once.
    std::thread::sleep(Duration::from_millis(600));
    mine.cmd("usdt 3 5");
    let s = exporter.samples();
    assert_eq!(hits(&exporter, mine.pid(), "5"), Some(3.0));
    assert_eq!(
        s.value(
            "userspace_exporter_processes",
            &[("name", "churn"), ("state", "failed")]
        ),
        1.0,
        "{}",
        exporter.scrape()
    );
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[("name", "churn"), ("probe", "fixture:hit")]
        ),
        1.0,
        "{}",
        exporter.scrape()
    );
    let logs = exporter.logs();
    let reported = format!("process {} (uexp-noaccess)", other_user.id());
    assert_eq!(
        logs.matches(&format!(
            "cannot read the files of {reported}: permission denied"
        ))
        .count(),
        1,
        "{logs}"
    );
    let _ = other_user.kill();
    let _ = other_user.wait();
}
