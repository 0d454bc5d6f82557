//! A real runtime: Debian's PHP-FPM 8.2, with the embedded default pack's
//! `php` program (USDT php:request__startup/request__shutdown). A private
//! pool on a unix socket in a temp dir serves a script through a FastCGI
//! client written here; the exporter's request count, summed over the pool's
//! workers, equals the status page's `accepted conn` delta exactly, and each
//! request's duration lies between the script's own sleep and what the client
//! measured.

use crate::common::{self, require_bpf, wait_for, Exporter, Samples};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PHP_FPM: &str = "/usr/sbin/php-fpm8.2";

/// What the test script sleeps per request (µs).
const SCRIPT_SLEEP_US: u64 = 20_000;

/// Two workers, forked when the pool starts, serving until it stops.
const STATIC_POOL: &str = "pm = static\npm.max_children = 2\n";

/// Workers forked for requests as they come (at most 4), each exiting after
/// 5 requests or 1 s idle.
const ONDEMAND_POOL: &str =
    "pm = ondemand\npm.max_children = 4\npm.max_requests = 5\npm.process_idle_timeout = 1s\n";

/// A private PHP-FPM pool: master and 2 static workers, in their own process
/// group so that dropping it stops them all.
struct Fpm {
    master: Child,
    dir: tempfile::TempDir,
}

impl Fpm {
    fn start() -> Option<Fpm> {
        if !common::require_path(PHP_FPM, "scripts/setup.sh installs php8.2-fpm") {
            return None;
        }
        Some(Fpm::start_binary(Path::new(PHP_FPM), STATIC_POOL))
    }

    /// A pool served by `binary` (Debian's php-fpm8.2 or a copy of it), its
    /// process manager set by `pm` ([`STATIC_POOL`] or [`ONDEMAND_POOL`]).
    fn start_binary(binary: &Path, pm: &str) -> Fpm {
        let dir = tempfile::Builder::new()
            .prefix("uexp-php")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("fpm.conf"),
            format!(
                "[global]\npid = {d}/fpm.pid\nerror_log = {d}/fpm.log\nlog_level = debug\ndaemonize = no\n\
                 [uexp]\nlisten = {d}/fpm.sock\n{pm}pm.status_path = /status\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("work.php"),
            format!(
                "<?php usleep({SCRIPT_SLEEP_US}); echo 'done ', $_SERVER['REQUEST_METHOD'], \"\\n\";\n"
            ),
        )
        .unwrap();
        // -n: no php.ini (Debian's pools and extensions stay out); -R: as root.
        let master = common::spawn(
            Command::new(binary)
                .args(["-n", "-R", "-y"])
                .arg(dir.path().join("fpm.conf"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let fpm = Fpm { master, dir };
        let prespawned = if pm == STATIC_POOL { 2 } else { 0 };
        wait_for(Duration::from_secs(20), || {
            (fpm.workers().len() == prespawned && fpm.socket().exists()).then_some(())
        })
        .unwrap_or_else(|| panic!("php-fpm did not start:\n{}", fpm.log()));
        fpm
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("fpm.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fpm.log")).unwrap_or_default()
    }

    /// The pool's worker pids (the master's children).
    fn workers(&self) -> Vec<String> {
        common::children(self.master.id())
    }

    /// `accepted conn` from the status page (the status request included).
    fn accepted(&self) -> f64 {
        let page = fastcgi(&self.socket(), "GET", "/status", "/status");
        page.lines()
            .find_map(|l| l.strip_prefix("accepted conn:"))
            .unwrap_or_else(|| panic!("no accepted conn in the status page:\n{page}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        let group = self.master.id() as i32;
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.master.wait();
    }
}

/// A FastCGI record: version 1, `kind`, request id 1.
fn record(kind: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len() as u16;
    let mut out = vec![1, kind, 0, 1, (len >> 8) as u8, len as u8, 0, 0];
    out.extend_from_slice(content);
    out
}

/// One FastCGI name-value pair (lengths below 128: one byte each).
fn pair(name: &str, value: &str) -> Vec<u8> {
    assert!(name.len() < 128 && value.len() < 128);
    let mut out = vec![name.len() as u8, value.len() as u8];
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(value.as_bytes());
    out
}

/// One FastCGI request (role responder, no body); returns what the
/// application wrote to its stdout, read until FCGI_END_REQUEST.
fn fastcgi(socket: &Path, method: &str, script: &str, uri: &str) -> String {
    const BEGIN_REQUEST: u8 = 1;
    const END_REQUEST: u8 = 3;
    const PARAMS: u8 = 4;
    const STDIN: u8 = 5;
    const STDOUT: u8 = 6;
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut request = record(BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
    let params: Vec<u8> = [
        pair("REQUEST_METHOD", method),
        pair("SCRIPT_FILENAME", script),
        pair("SCRIPT_NAME", uri),
        pair("REQUEST_URI", uri),
    ]
    .concat();
    request.extend(record(PARAMS, &params));
    request.extend(record(PARAMS, &[]));
    request.extend(record(STDIN, &[]));
    stream.write_all(&request).unwrap();
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).unwrap();
        let len = u16::from_be_bytes([header[4], header[5]]) as usize + header[6] as usize;
        let mut content = vec![0u8; len];
        stream.read_exact(&mut content).unwrap();
        match header[1] {
            STDOUT => out.extend_from_slice(&content[..len - header[6] as usize]),
            END_REQUEST => break,
            _ => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `php` program's series of `name` summed over `pids` (with `labels`).
fn over(s: &Samples, name: &str, pids: &[String], labels: &[(&str, &str)]) -> f64 {
    pids.iter()
        .map(|pid| {
            let mut l = labels.to_vec();
            l.push(("pid", pid));
            s.sum(name, &l)
        })
        .sum()
}

#[test]
fn the_default_packs_php_program_counts_what_php_fpm_accepted() {
    // The default pack selects every php-fpm on the machine by path.
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    // Started before the pool: its workers are attached as they are forked.
    let exporter = Exporter::start_default(&["--discovery.interval", "100ms"]);
    let Some(fpm) = Fpm::start() else {
        return;
    };
    check_requests(&exporter, &fpm, true);
}

/// The default pack's `php` program alone, selecting processes named `comm`
/// (written out with `defaults -o` to `dir`; its object by absolute path).
fn php_program_selecting(comm: &str, dir: &Path) -> PathBuf {
    let out = Command::new(common::EXPORTER)
        .args(["defaults", "-o"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pack = std::fs::read_to_string(dir.join("default.yaml")).unwrap();
    let mut programs = pack.split("\n  - name: ");
    let _header = programs.next();
    let php = programs
        .find(|p| p.starts_with("php\n"))
        .expect("the default pack has a php program");
    let selector =
        "- exe_path: \"/usr/sbin/php-fpm*\"\n      - exe_path: \"/usr/local/sbin/php-fpm*\"";
    assert!(php.contains(selector), "{php}");
    let config = dir.join("php.yaml");
    std::fs::write(
        &config,
        format!(
            "programs:\n  - name: {}\n",
            php.trim_end()
                .replace(selector, &format!("- binary_name: {comm}"))
                .replace(
                    "object: php.bpf.o",
                    &format!("object: {}", dir.join("php.bpf.o").display())
                )
        ),
    )
    .unwrap();
    config
}

#[test]
fn php_fpm_without_usdt_is_counted_through_its_exported_functions() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_path(PHP_FPM, "scripts/setup.sh installs php8.2-fpm") {
        return;
    }
    // A build without --enable-dtrace: the same binary without its USDT notes.
    let comm = "uexp-php-nodt";
    let binary = common::fixtures().dir.join(comm);
    if !binary.exists() {
        let tmp = common::fixtures().dir.join(format!(".{comm}.tmp"));
        let out = Command::new("objcopy")
            .args(["-R", ".note.stapsdt", PHP_FPM])
            .arg(&tmp)
            .output()
            .unwrap();
        assert!(out.status.success(), "objcopy: {out:?}");
        std::fs::rename(&tmp, &binary).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = php_program_selecting(comm, dir.path());
    let exporter = Exporter::start_with(
        &std::fs::read_to_string(&config).unwrap(),
        &["--discovery.interval", "100ms"],
    );
    let fpm = Fpm::start_binary(&binary, STATIC_POOL);
    check_requests(&exporter, &fpm, false);
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_source_processes",
            &[("name", "php"), ("source", "requests"), ("set", "symbols")]
        ),
        3.0,
        "the master and 2 workers fed from the functions"
    );
}

/// Waits until the pool's workers are attached, drives requests through
/// them and checks the `php` program's series against `accepted conn`.
/// `methods_read`: whether the source reads the method (USDT) or counts
/// every request as `unknown` (the functions).
fn check_requests(exporter: &Exporter, fpm: &Fpm, methods_read: bool) {
    let workers = fpm.workers();
    for pid in &workers {
        wait_for(Duration::from_secs(10), || {
            exporter.samples().get(
                "userspace_exporter_enabled_programs",
                &[("name", "php"), ("pid", pid)],
            )
        })
        .unwrap_or_else(|| panic!("php-fpm worker {pid} not attached:\n{}", exporter.logs()));
    }
    let requests = "userspace_exporter_php_requests_total";
    let hist = "userspace_exporter_php_request_duration_seconds";
    let script = fpm.dir.path().join("work.php");
    let script = script.to_str().unwrap();

    // The first status request is counted by both before the first scrape;
    // the second, by both before the last one. Both scrapes wait until every
    // counted request's duration is in (request__shutdown can fire after the
    // client read the response: CI saw 42 durations for 41 requests when the
    // first scrape came between the status request's two probes).
    let accepted0 = fpm.accepted();
    let s0 = settled(exporter, requests, hist);
    let (gets, posts) = (30, 10);
    let mut client_seconds = 0.0;
    for i in 0..gets + posts {
        let method = if i < gets { "GET" } else { "POST" };
        let t0 = Instant::now();
        let body = fastcgi(&fpm.socket(), method, script, "/work.php");
        client_seconds += t0.elapsed().as_secs_f64();
        assert!(body.contains(&format!("done {method}")), "{body}");
    }
    let t0 = Instant::now();
    let accepted1 = fpm.accepted();
    client_seconds += t0.elapsed().as_secs_f64();
    let s1 = settled(exporter, requests, hist);

    let delta = |name: &str, labels: &[(&str, &str)]| {
        over(&s1, name, &workers, labels) - over(&s0, name, &workers, labels)
    };
    let accepted = accepted1 - accepted0;
    let counted = delta(requests, &[]);
    eprintln!(
        "php-fpm: accepted conn delta {accepted}, exported requests delta {counted}, client time {client_seconds:.3} s, observed {:.3} s",
        delta(&format!("{hist}_sum"), &[])
    );
    assert_eq!(accepted, (gets + posts + 1) as f64);
    assert_eq!(counted, accepted, "exported requests vs accepted conn");
    if methods_read {
        assert_eq!(delta(requests, &[("method", "GET")]), (gets + 1) as f64);
        assert_eq!(delta(requests, &[("method", "POST")]), posts as f64);
    } else {
        assert_eq!(delta(requests, &[("method", "unknown")]), accepted);
    }
    // The master serves no request.
    let master = fpm.master.id().to_string();
    assert_eq!(s1.sum(requests, &[("pid", &master)]), 0.0);

    // One duration per request, each between the script's sleep and the time
    // the client waited for it (the second status request included).
    assert_eq!(delta(&format!("{hist}_count"), &[]), accepted);
    let observed = delta(&format!("{hist}_sum"), &[]);
    let slept = (gets + posts) as f64 * SCRIPT_SLEEP_US as f64 / 1e6;
    assert!(observed >= slept, "observed {observed} s < slept {slept} s");
    // php-fpm may fire request__shutdown after the client has read the end
    // of the response (CI saw the sum 0.23 ms over the client's for 41
    // requests): a slack of 1 ms a request, far under the 20 ms each sleeps.
    let slack = accepted * 0.001;
    assert!(
        observed <= client_seconds + slack,
        "observed {observed} s > client {client_seconds} s + {slack} s"
    );
    // Every scripted request slept 20 ms, over the 2^24 ns (16.8 ms) bucket.
    let short = delta(&format!("{hist}_bucket"), &[("le", "0.016777216")]);
    assert!(short <= 1.0, "{short} requests took under 16.8 ms");
}

#[test]
fn php_example_counts_every_worker_of_an_ondemand_pool() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    if !common::require_path(PHP_FPM, "scripts/setup.sh installs php8.2-fpm") {
        return;
    }
    // per_binary: the executable is attached once the master is found, and
    // every worker forked from it is counted from its first instruction.
    let binary = common::named_copy(Path::new(PHP_FPM), "uexp-php-od");
    let exe = binary.display().to_string();
    let exporter = Exporter::start_with(
        &common::fixtures().example_config("php", "php-fpm8.2", "uexp-php-od"),
        &["--discovery.interval", "100ms"],
    );
    let fpm = Fpm::start_binary(&binary, ONDEMAND_POOL);
    wait_for(Duration::from_secs(10), || {
        let attached = exporter
            .samples()
            .get("userspace_exporter_attached_binaries", &[("name", "php")])?;
        (attached == 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("php-fpm's executable not attached:\n{}", exporter.logs()));
    let requests = "userspace_exporter_php_requests_total";
    let hist = "userspace_exporter_php_request_duration_seconds";
    let script = fpm.dir.path().join("work.php");
    let script = script.to_str().unwrap();

    let accepted0 = fpm.accepted();
    let s0 = settled(&exporter, requests, hist);
    // 4 clients at once, 10 requests each: workers are forked for them, and
    // each exits after 5 requests, so 8 or more are forked in all.
    let client_seconds: f64 = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| {
                            let t0 = Instant::now();
                            let body = fastcgi(&fpm.socket(), "GET", script, "/work.php");
                            assert!(body.contains("done GET"), "{body}");
                            t0.elapsed().as_secs_f64()
                        })
                        .sum::<f64>()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    });
    let t0 = Instant::now();
    let accepted1 = fpm.accepted();
    let client_seconds = client_seconds + t0.elapsed().as_secs_f64();
    let s1 = settled(&exporter, requests, hist);

    let delta = |name: &str, labels: &[(&str, &str)]| {
        let mut l = labels.to_vec();
        l.push(("exe", &exe));
        s1.sum(name, &l) - s0.sum(name, &l)
    };
    let accepted = accepted1 - accepted0;
    let counted = delta(requests, &[]);
    eprintln!(
        "php-fpm ondemand: accepted conn delta {accepted}, exported requests delta {counted}, client time {client_seconds:.3} s, observed {:.3} s, workers forked {}",
        delta(&format!("{hist}_sum"), &[]),
        fpm.log().lines().filter(|l| l.ends_with(" started")).count()
    );
    // (log_level = debug: the master logs each fork.)
    let started = fpm
        .log()
        .lines()
        .filter(|l| l.contains("] child ") && l.ends_with(" started"))
        .count();
    assert!(started >= 8, "{started} workers forked:\n{}", fpm.log());
    assert_eq!(accepted, 41.0);
    assert_eq!(counted, accepted, "exported requests vs accepted conn");
    assert_eq!(delta(requests, &[("method", "GET")]), accepted);
    assert_eq!(delta(&format!("{hist}_count"), &[]), accepted);
    let observed = delta(&format!("{hist}_sum"), &[]);
    let slept = 40.0 * SCRIPT_SLEEP_US as f64 / 1e6;
    assert!(observed >= slept, "observed {observed} s < slept {slept} s");
    // php-fpm may fire request__shutdown after the client has read the end
    // of the response (CI saw the sum 0.23 ms over the client's for 41
    // requests): a slack of 1 ms a request, far under the 20 ms each sleeps.
    let slack = accepted * 0.001;
    assert!(
        observed <= client_seconds + slack,
        "observed {observed} s > client {client_seconds} s + {slack} s"
    );
}

/// The exporter's samples once every request counted at its start has its
/// duration observed too: `request__shutdown` can fire just after the client
/// has read the response (and so after the scrape that follows it). Waits up
/// to 5 s; the exact assertions then judge whatever it saw last.
fn settled(exporter: &Exporter, requests: &str, hist: &str) -> Samples {
    let count = format!("{hist}_count");
    let mut last = exporter.samples();
    wait_for(Duration::from_secs(5), || {
        if last.sum(requests, &[]) == last.sum(&count, &[]) {
            return Some(());
        }
        last = exporter.samples();
        None
    });
    last
}
