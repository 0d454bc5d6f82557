//! Container layouts, made here with unshare(1):
//! - a target in its own mount namespace with its own root filesystem, where
//!   its binary and libraries exist only (the exporter reaches them through
//!   /proc/PID/root: the Kubernetes sidecar with shareProcessNamespace);
//! - the exporter inside a child PID namespace together with its targets.

use crate::common::{self, fixtures, free_port, require_bpf, spawn, wait_for, Exporter, Samples};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn config(comm: &str) -> String {
    format!(
        r#"
programs:
  - name: ns_usdt
    object: {usdt}
    metrics:
      counters:
        - name: ns_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
  - name: ns_uprobes
    object: {uprobe}
    metrics:
      counters:
        - name: ns_lib_calls_total
          help: lib_event calls by argument
          table: lib_calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      fixture:lib_event: on_lib_entry
    attachment: {{binary_name: {comm}}}
  - name: ns_pid_keyed
    object: {pid_counts}
    instances: pid_keyed
    metrics:
      counters:
        - name: ns_pid_keyed_hits_total
          help: fixture:hit by pid (exporter_pid(), in the exporter's PID namespace) and argument
          table: hits
          labels:
            - {{name: pid, size: 8, decoders: [{{name: pid}}]}}
            - {{name: arg, size: 8, decoders: [{{name: uint}}]}}
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"#,
        pid_counts = fixtures().object("pid_counts").display(),
        usdt = fixtures().object("usdt_counts").display(),
        uprobe = fixtures().object("uprobe_counts").display(),
    )
}

/// A root filesystem holding only the target, its library, libc and the loader.
fn rootfs(dir: &Path, comm: &str) {
    let f = fixtures();
    for sub in ["bin", "lib/x86_64-linux-gnu", "lib64"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(&f.target, dir.join("bin").join(comm)).unwrap();
    // Not beside the binary: $ORIGIN needs /proc, which this root lacks.
    std::fs::copy(&f.library, dir.join("lib/x86_64-linux-gnu/libfixture.so")).unwrap();
    std::fs::copy(
        "/lib/x86_64-linux-gnu/libc.so.6",
        dir.join("lib/x86_64-linux-gnu/libc.so.6"),
    )
    .unwrap();
    std::fs::copy(
        "/lib64/ld-linux-x86-64.so.2",
        dir.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
}

#[test]
fn a_target_with_its_own_mount_namespace_and_root_is_probed_through_proc_root() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-mntns";
    let source = tempfile::tempdir().unwrap();
    rootfs(source.path(), comm);
    // The root is a tmpfs mounted only inside the target's mount namespace, as a
    // container's filesystem is: from here, `mountpoint` stays an empty directory.
    let mountpoint = tempfile::tempdir().unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs {mnt} && cp -a {src}/. {mnt}/ && exec chroot {mnt} /bin/{comm}",
        mnt = mountpoint.path().display(),
        src = source.path().display()
    );
    let mut child = spawn(
        Command::new("unshare")
            .args(["--mount", "--fork", "--kill-child", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    std::fs::remove_dir_all(source.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(mountpoint.path()).unwrap().count(),
        0,
        "the target's files must be invisible here"
    );
    let exporter = Exporter::start(&config(comm));
    let mut cmd = |c: &str| {
        writeln!(stdin, "{c}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        stdout.read_line(&mut reply).unwrap();
    };
    cmd("usdt 4 8");
    cmd("lib 3 9");
    let s = exporter.samples();
    let series = s.series("userspace_exporter_ns_hits_total");
    assert_eq!(series.len(), 1, "{series:?}\n{}", exporter.logs());
    assert_eq!(series[0].1, 4.0);
    assert!(series[0].0.contains("arg=\"8\""));
    let calls = s.series("userspace_exporter_ns_lib_calls_total");
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", exporter.logs());
    assert_eq!(calls[0].1, 3.0);
    // Placed for every process of the file, reached through /proc/PID/root.
    let keyed = s.series("userspace_exporter_ns_pid_keyed_hits_total");
    assert_eq!(keyed.len(), 1, "{keyed:?}\n{}", exporter.logs());
    assert_eq!(keyed[0].1, 4.0);
    assert!(keyed[0].0.contains("arg=\"8\""), "{keyed:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_exporter_in_a_child_pid_namespace_sees_its_targets_by_their_namespace_pids() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-pidns";
    let target = fixtures().target_named(comm);
    let dir = tempfile::tempdir().unwrap();
    let (to_target, from_target) = (dir.path().join("in"), dir.path().join("out"));
    for fifo in [&to_target, &from_target] {
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(comm)).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("exporter.log")).unwrap();
    // Inside the namespace: the target first, then the exporter as the shell's successor.
    let script = format!(
        "{target} <{input} >{output} & sleep 0.5; exec {exporter} --listen-address 127.0.0.1:{port} -c {config}",
        target = target.display(),
        input = to_target.display(),
        output = from_target.display(),
        exporter = common::EXPORTER,
        config = config_path.display()
    );
    let mut namespace = spawn(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let mut input = std::fs::OpenOptions::new()
        .write(true)
        .open(&to_target)
        .unwrap();
    let mut output = BufReader::new(std::fs::File::open(&from_target).unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let logs = || std::fs::read_to_string(dir.path().join("exporter.log")).unwrap_or_default();
    let s = wait_for(Duration::from_secs(30), || {
        let body = ureq::get(&url)
            .call()
            .ok()?
            .into_body()
            .read_to_string()
            .ok()?;
        let s = Samples::parse(&body);
        (s.series("userspace_exporter_enabled_programs").len() == 3).then_some(s)
    })
    .unwrap_or_else(|| panic!("exporter in the PID namespace never attached:\n{}", logs()));
    // Pids are the namespace's: the shell (then the exporter it became) is 1, the target 2.
    assert!(
        s.get(
            "userspace_exporter_enabled_programs",
            &[("name", "ns_usdt"), ("pid", "2")]
        )
        .is_some(),
        "{:?}",
        s.series("userspace_exporter_enabled_programs")
    );
    writeln!(input, "usdt 6 5").unwrap();
    input.flush().unwrap();
    line.clear();
    output.read_line(&mut line).unwrap();
    let body = ureq::get(&url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let s = Samples::parse(&body);
    assert_eq!(
        s.value(
            "userspace_exporter_ns_hits_total",
            &[("arg", "5"), ("pid", "2")]
        ),
        6.0,
        "{}",
        logs()
    );
    // A pid-keyed program's keys hold the pid as the namespace sees it
    // (bpf_get_ns_current_pid_tgid with the exporter's namespace).
    assert_eq!(
        s.value(
            "userspace_exporter_ns_pid_keyed_hits_total",
            &[("arg", "5"), ("pid", "2")]
        ),
        6.0,
        "{body}\n{}",
        logs()
    );
    unsafe { libc::kill(namespace.id() as i32, libc::SIGKILL) };
    let _ = namespace.wait();
    drop(input);
}

/// Where cgroup v2 is mounted (mounting it when nothing is).
fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if let Some(line) = mounts
        .lines()
        .find(|l| l.split(' ').nth(2) == Some("cgroup2"))
    {
        return line.split(' ').nth(1).unwrap().into();
    }
    let dir = std::env::temp_dir().join("uexp-cgroup2");
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "cannot mount cgroup2");
    dir
}

#[test]
fn process_labels_and_a_cgroup_selector_name_the_container() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let id = "3f4b1c2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
    let parent = cgroup2_root().join(format!("uexp-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    std::fs::create_dir_all(&scope).unwrap();
    let mut outside = common::Target::start("uexp-labels");
    let mut inside = common::Target::start("uexp-labels");
    std::fs::write(scope.join("cgroup.procs"), inside.pid().to_string()).unwrap();
    let cgroup = format!("/uexp-test-{}/docker-{id}.scope", std::process::id());
    let config = format!(
        r#"
programs:
  - name: labelled
    object: {usdt}
    metrics:
      counters:
        - name: labelled_hits_total
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    process_labels: [comm, exe, cgroup, container_id]
    attachment: {{binary_name: uexp-labels, cgroup: "/uexp-test-*/docker-*.scope"}}
"#,
        usdt = fixtures().object("usdt_counts").display()
    );
    let exporter = Exporter::start(&config);
    inside.cmd("usdt 2 7");
    outside.cmd("usdt 5 7");
    let s = exporter.samples();
    let exe = fixtures().target_named("uexp-labels").display().to_string();
    let pid = inside.pid().to_string();
    let labels = [
        ("arg", "7"),
        ("pid", pid.as_str()),
        ("comm", "uexp-labels"),
        ("exe", exe.as_str()),
        ("cgroup", cgroup.as_str()),
        ("container_id", id),
    ];
    assert_eq!(
        s.value("userspace_exporter_labelled_hits_total", &labels),
        2.0,
        "{}",
        exporter.scrape()
    );
    // The process outside the container's cgroup is not selected.
    assert_eq!(s.series("userspace_exporter_labelled_hits_total").len(), 1);
    drop((inside, outside));
    drop(exporter);
    let _ = std::fs::remove_dir(&scope);
    let _ = std::fs::remove_dir(&parent);
}
