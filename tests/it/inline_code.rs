//! Inline `code:` in bcc's dialect, compiled at startup with no kernel
//! headers: the original project's README example (gunicorn) runs verbatim,
//! the compile cache skips clang, `compile` writes objects for clang-less
//! production, and clang's errors point at config lines.

use crate::common::{self, fixtures, require_bpf, Exporter, Python, EXPORTER};
use std::process::Command;

/// The original project's README example as shipped in examples/ (verbatim),
/// selecting `comm`.
fn original_gunicorn_config(comm: &str) -> String {
    fixtures().example_config_code("gunicorn_gc_count", "gunicorn", comm)
}

fn gc_counts(exporter: &Exporter, pid: &str) -> [f64; 3] {
    let s = exporter.samples();
    [0, 1, 2].map(|g| {
        s.get(
            "userspace_exporter_gc_total",
            &[("gen", &g.to_string()), ("pid", pid)],
        )
        .unwrap_or(0.0)
    })
}

#[test]
fn the_original_gunicorn_example_counts_what_gc_get_stats_reports() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut python) = Python::start("uexp-orig-gc") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let exporter = Exporter::start_with(
        &original_gunicorn_config("uexp-orig-gc"),
        &["--cache-dir", cache_arg],
    );
    assert!(
        exporter
            .logs()
            .contains("compiled inline code program=gc_total cached=false"),
        "{}",
        exporter.logs()
    );
    let pid = python.pid().to_string();
    let e0 = gc_counts(&exporter, &pid);
    let g0 = python.gc_collections();
    assert_eq!(python.ask("work 12"), "ok");
    let g1 = python.gc_collections();
    let e1 = gc_counts(&exporter, &pid);
    let reported: Vec<f64> = (0..3).map(|g| g1[g] - g0[g]).collect();
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    assert!(reported.iter().all(|&n| n >= 4.0), "{reported:?}");
    assert_eq!(counted, reported);
    drop(exporter);

    // Second start: same code, same clang, same kernel: no clang run.
    let exporter = Exporter::start_with(
        &original_gunicorn_config("uexp-orig-gc"),
        &["--cache-dir", cache_arg],
    );
    assert!(
        exporter
            .logs()
            .contains("compiled inline code program=gc_total cached=true"),
        "{}",
        exporter.logs()
    );
    python.ask("work 3");
    assert!(gc_counts(&exporter, &pid).iter().sum::<f64>() >= 3.0);
}

#[test]
fn compile_writes_objects_and_a_config_that_needs_no_clang() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gunicorn.yaml");
    std::fs::write(&config, original_gunicorn_config("gunicorn")).unwrap();
    let out = dir.path().join("out");
    let status = Command::new(EXPORTER)
        .args(["compile", "-c"])
        .arg(&config)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let compiled = std::fs::read_to_string(out.join("gunicorn.yaml")).unwrap();
    assert!(
        compiled.contains("    object: gc_total.bpf.o\n"),
        "{compiled}"
    );
    assert!(
        !compiled.contains("code:") && !compiled.contains("bpf_usdt_readarg"),
        "{compiled}"
    );
    // clang is not reachable now: check must load the object as it is.
    let result = Command::new(EXPORTER)
        .args(["--clang", "/nonexistent/clang", "check", "-c"])
        .arg(out.join("gunicorn.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{text}");
    assert!(
        text.contains("ok: program \"gc_total\": 1 probe(s), 1 counter(s)"),
        "{text}"
    );
}

#[test]
fn clang_errors_and_unsupported_features_point_at_config_lines() {
    let _machine = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    let mut text = original_gunicorn_config("gunicorn");
    // Line 29 of the config: `e.gen = gen;` becomes an undeclared name.
    text = text.replace("e.gen = gen;", "e.gen = generation;");
    std::fs::write(&config, &text).unwrap();
    assert_eq!(text.lines().nth(28).unwrap().trim(), "e.gen = generation;");
    let out = Command::new(EXPORTER)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{}:29:19: error: use of undeclared identifier 'generation'",
            config.display()
        )),
        "{stdout}"
    );

    let text = original_gunicorn_config("gunicorn").replace(
        "BPF_HASH(gc_counts, struct gc_event_t);",
        "BPF_STACK_TRACE(stacks, 128);",
    );
    std::fs::write(&config, &text).unwrap();
    let out = Command::new(EXPORTER)
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!("{}:23: ", config.display()))
            && stdout.contains("BPF_STACK_TRACE"),
        "{stdout}"
    );
}

#[test]
fn a_missing_clang_names_the_package_and_the_compile_subcommand() {
    let _machine = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gunicorn.yaml");
    std::fs::write(&config, original_gunicorn_config("gunicorn")).unwrap();
    let out = Command::new(EXPORTER)
        .args(["--clang", "/nonexistent/clang", "check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("clang not found")
            && stdout.contains("apt-get install clang")
            && stdout.contains("ebpf-userspace-exporter compile"),
        "{stdout}"
    );
}

/// The status of GET `url`, 503 included (ureq reports it as an error).
fn status(url: &str) -> Option<u16> {
    match ureq::get(url).call() {
        Ok(response) => Some(response.status().as_u16()),
        Err(ureq::Error::StatusCode(code)) => Some(code),
        Err(_) => None,
    }
}

#[test]
fn healthy_answers_while_programs_compile_and_ready_once_they_are_attached() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gunicorn.yaml");
    std::fs::write(&config, original_gunicorn_config("uexp-nothing")).unwrap();
    // A clang that compiles only once the gate file exists: the exporter is
    // held in its startup for as long as the test needs.
    let gate = dir.path().join("gate");
    let clang = dir.path().join("clang");
    std::fs::write(
        &clang,
        format!(
            "#!/bin/sh\nif [ \"$1\" != --version ]; then\n  while [ ! -e {} ]; do sleep 0.05; done\nfi\nexec clang \"$@\"\n",
            gate.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&clang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = common::free_port();
    let mut child = common::spawn(
        Command::new(EXPORTER)
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--clang")
            .arg(&clang)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("-c")
            .arg(&config)
            .stderr(std::process::Stdio::null()),
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let healthy = common::wait_for(std::time::Duration::from_secs(30), || {
        (status(&url("/-/healthy")) == Some(200)).then_some(())
    });
    assert!(healthy.is_some(), "/-/healthy never answered 200");
    assert_eq!(status(&url("/-/ready")), Some(503));
    assert_eq!(status(&url("/metrics")), Some(503));
    assert_eq!(status(&url("/")), Some(503));
    std::fs::write(&gate, "").unwrap();
    let ready = common::wait_for(std::time::Duration::from_secs(60), || {
        (status(&url("/-/ready")) == Some(200)).then_some(())
    });
    assert!(ready.is_some(), "/-/ready never answered 200");
    assert_eq!(status(&url("/-/healthy")), Some(200));
    let metrics = ureq::get(&url("/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("userspace_exporter_attached_processes{name=\"gc_total\"} 0"),
        "{metrics}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
