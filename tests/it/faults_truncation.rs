//! A tenant's library rewritten in place, cut short and put back, over and
//! over, while processes that map it start and the exporter attaches to
//! them. A mapped file faults its reader (SIGBUS) when it is truncated
//! under it: the exporter must not map it. It keeps serving, says what is
//! wrong with the broken file, and counts a healthy process, whose library
//! is another file, exactly all along.

use crate::common::{self, fixtures, require_bpf, Exporter, Samples, Target};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Uprobe (and USDT) counters on libfixture.so, for the victims and the
/// healthy process.
fn config(usdt: bool, victim: &str, healthy: &str) -> String {
    let f = fixtures();
    let attachment = format!("\n      - binary_name: {victim}\n      - binary_name: {healthy}");
    let usdt_program = if usdt {
        format!(
            r#"
  - name: trunc_usdt
    object: {object}
    metrics:
      counters:
        - name: trunc_lib_events_total
          help: USDT fixturelib:event hits
          table: lib_hits
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
    usdt:
      fixturelib:event: on_lib_event
    attachment:{attachment}"#,
            object = f.object("usdt_counts").display()
        )
    } else {
        String::new()
    };
    format!(
        r#"
programs:{usdt_program}
  - name: trunc_uprobes
    object: {object}
    metrics:
      counters:
        - name: trunc_lib_calls_total
          help: lib_event calls
          table: lib_calls
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
    uprobes:
      fixture:lib_event: on_lib_entry
    attachment:{attachment}
"#,
        object = f.object("uprobe_counts").display()
    )
}

/// A directory of its own holding a copy of the fixture target named `comm`
/// and of the library it loads (through its `$ORIGIN` RUNPATH).
fn install(comm: &str) -> (PathBuf, PathBuf) {
    let f = fixtures();
    let dir = f.dir.join(format!("truncation-{comm}"));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(comm);
    let library = dir.join("libfixture.so");
    for (from, to) in [(&f.target, &binary), (&f.library, &library)] {
        let tmp = dir.join(".copy");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    (binary, library)
}

/// Rewrites `path` in place (same inode) to `len` bytes of `bytes`.
fn rewrite(path: &Path, bytes: &[u8], len: usize) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len as u64).unwrap();
    file.write_all_at(&bytes[..len], 0).unwrap();
}

/// The exporter is still running (not exited, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// Runs the loop with or without the USDT program, victims named `victim`
/// (their library is rewritten) and a process named `healthy` (its own copy
/// is not); see the tests.
fn truncated_in_a_loop(usdt: bool, seconds: u64, victim_comm: &str, healthy_comm: &str) {
    let (victim, library) = install(victim_comm);
    let (healthy_binary, _) = install(healthy_comm);
    let bytes = std::fs::read(&library).unwrap();

    // A victim that loaded the library, which is then cut short before the
    // exporter starts: the exporter meets a broken file at once.
    let mut healthy = Target::start_binary(&healthy_binary);
    // Bound at startup and through its loop once, it then waits on stdin
    // without touching the library: cut, it would die of SIGBUS the moment
    // it did (a lazy symbol lookup reads every library's tables), as a
    // tenant's process may.
    let mut early = Target::spawn(Command::new(&victim).env("LD_BIND_NOW", "1"));
    early.fire("lib 1 0");
    rewrite(&library, &bytes, 4096);
    let exporter = Exporter::start(&config(usdt, victim_comm, healthy_comm));
    let errors = |exporter: &Exporter| {
        Samples::parse(&exporter.scrape())
            .get(
                "userspace_exporter_attach_errors_total",
                &[("name", "trunc_uprobes"), ("probe", "fixture:lib_event")],
            )
            .unwrap_or(0.0)
    };
    assert!(
        common::wait_for(Duration::from_secs(10), || (errors(&exporter) >= 1.0)
            .then_some(()))
        .is_some(),
        "no attach error for the truncated library; the early victim: {:?}, maps: {:?}\n{}",
        std::fs::read_to_string(format!("/proc/{}/stat", early.pid())),
        std::fs::read_to_string(format!("/proc/{}/maps", early.pid()))
            .map(|m| m.lines().filter(|l| l.contains("libfixture")).count()),
        exporter.logs()
    );
    let logs = exporter.logs();
    let shown = format!(
        "{} of process {} ({victim_comm}): malformed ELF file /proc/{}/map_files/",
        library.display(),
        early.pid(),
        early.pid()
    );
    assert!(logs.contains(&shown), "no {shown:?} in:\n{logs}");
    let page = exporter.page("/");
    assert!(
        page.contains(&shown),
        "the landing page does not say {shown:?}"
    );
    // Put back before the early victim runs its exit path through it.
    rewrite(&library, &bytes, bytes.len());
    drop(early.cmd("exit"));

    // The loop: the library cut to a few lengths and put back, while victims
    // start, map it (or fail to) and call into it, and the exporter attaches.
    let stop = Arc::new(AtomicBool::new(false));
    let rewrites = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, rewrites, library, bytes) = (
            stop.clone(),
            rewrites.clone(),
            library.clone(),
            bytes.clone(),
        );
        std::thread::spawn(move || {
            let cuts = [0, 64, 4096, bytes.len() / 2, bytes.len() - 1];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                rewrite(&library, &bytes, cuts[i % cuts.len()]);
                std::thread::sleep(Duration::from_micros(300 + (i % 7) as u64 * 200));
                rewrite(&library, &bytes, bytes.len());
                std::thread::sleep(Duration::from_micros(500 + (i % 5) as u64 * 300));
                rewrites.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            rewrite(&library, &bytes, bytes.len());
        })
    };
    let started = Arc::new(AtomicUsize::new(0));
    let starter = {
        let (stop, started, victim) = (stop.clone(), started.clone(), victim.clone());
        std::thread::spawn(move || {
            let mut running: std::collections::VecDeque<(Child, Instant)> = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let child = Command::new(&victim)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                if let Ok(mut child) = child {
                    if let Some(stdin) = child.stdin.as_mut() {
                        let _ = stdin.write_all(b"lib 3 1\n");
                    }
                    running.push_back((child, Instant::now()));
                    started.fetch_add(1, Ordering::Relaxed);
                }
                while running.len() > 6
                    || running
                        .front()
                        .is_some_and(|(_, at)| at.elapsed() > Duration::from_millis(300))
                {
                    let (mut child, _) = running.pop_front().unwrap();
                    let _ = child.kill();
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for (mut child, _) in running {
                let _ = child.kill();
                let _ = child.wait();
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut fires = 0u64;
    let mut scrapes = 0;
    while Instant::now() < deadline {
        healthy.fire("lib 10 7");
        fires += 1;
        assert!(
            alive(exporter.pid()),
            "the exporter died:\n{}",
            exporter.logs()
        );
        let text = exporter.scrape();
        assert!(text.contains("userspace_exporter_"), "{text}");
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    starter.join().unwrap();

    assert!(
        alive(exporter.pid()),
        "the exporter died:\n{}",
        exporter.logs()
    );
    assert_eq!(
        ureq::get(&exporter.url("/-/healthy"))
            .call()
            .unwrap()
            .status(),
        200
    );
    // The healthy process: every call, once, by each program.
    let pid = healthy.pid().to_string();
    let samples = exporter.samples();
    let want = (10 * fires) as f64;
    assert_eq!(
        samples.get(
            "userspace_exporter_trunc_lib_calls_total",
            &[("arg", "7"), ("pid", &pid)]
        ),
        Some(want),
        "uprobe counts of the healthy process"
    );
    if usdt {
        assert_eq!(
            samples.get(
                "userspace_exporter_trunc_lib_events_total",
                &[("arg", "7"), ("pid", &pid)]
            ),
            Some(want),
            "USDT counts of the healthy process"
        );
    }
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    let count = |what: &str| logs.matches(what).count();
    let victim_lib = library.display().to_string();
    eprintln!(
        "attached to victims: {} uprobes, {} USDT probes; libbpf failed {} USDT attaches",
        count(&format!("attached: uprobe lib_event in {victim_lib}")),
        count(&format!("attached: usdt fixturelib:event in {victim_lib}")),
        count("attaching usdt fixturelib:event"),
    );
    eprintln!(
        "truncation loop ({}s, usdt {usdt}): {} rewrites, {} victims started, {fires} fires and {scrapes} scrapes; \
         errors logged: {} changed while read, {} malformed, {} not ELF, {} exited while attached, {} attach errors in all",
        seconds,
        rewrites.load(Ordering::Relaxed),
        started.load(Ordering::Relaxed),
        count("changed while it was read"),
        count("malformed ELF file"),
        count("is not an ELF file"),
        count("exited while being attached"),
        errors(&exporter),
    );
    assert!(started.load(Ordering::Relaxed) >= 10 * seconds as usize);
}

/// Fault: a tenant's library is cut short in place (to 0, 64, 4096 bytes,
/// half, all but a byte) and put back, about 400 times a second for 10 s,
/// while processes that map it start every 20 ms and the exporter attaches
/// a uprobe on a function of it to each; one process had it mapped when it
/// was cut before the exporter started. Expected: the exporter does not
/// fault (it reads ELF files, never maps them, and hands libbpf the
/// function's offset, not its name) and serves every scrape; the cut file is
/// an attach error naming it as the process sees it ("PATH of process N
/// (comm): malformed ELF file ..."), on the landing page too; a healthy
/// process mapping another copy is counted exactly all along.
///
/// What it catches: with the ELF files mapped instead of read, it failed
/// within a second (the exporter died of SIGBUS). With a uprobe handed to
/// libbpf by name it passed (libbpf maps the file for microseconds): the
/// offset closes that window by design, this test does not show it.
#[test]
fn a_library_truncated_in_a_loop_faults_nothing_and_a_healthy_process_counts_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    truncated_in_a_loop(false, 10, "uexp-trunc", "uexp-trunc-ok");
}

/// The same for 30 s with a USDT probe in the library too. libbpf attaches
/// it by parsing the file itself, mapped (libelf's `ELF_C_READ_MMAP`), from
/// its open to its last look at the notes: a cut in those microseconds
/// faults the exporter. Not run by default, for that is not fixed yet; it
/// passed in each of its runs here (four runs on 2026-12-07: 169, 146, 151
/// and 196 USDT attaches to the victims, and 69, 70, 42 and 38 attaches
/// libbpf refused, the file having changed under it: 238, 216, 193 and 234
/// times libbpf opened the file).
#[test]
#[ignore]
fn with_usdt() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    truncated_in_a_loop(true, 30, "uexp-truncu", "uexp-truncu-ok");
}
