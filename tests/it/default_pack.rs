//! The embedded default pack: run with no --probe-config, the exporter loads
//! the programs compiled into it (no clang needed) and attaches to the
//! runtimes' processes on the machine as they come and go.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Python};
use crate::nodejs::Node;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::PYTHON;

#[test]
fn with_no_config_the_default_pack_follows_python_processes_started_later() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    if !common::require_python() {
        return;
    }
    // No clang on PATH: the default pack was compiled when the exporter was built.
    let exporter = Exporter::start_default(&[
        "--discovery.interval",
        "100ms",
        "--clang",
        "/nonexistent/clang",
    ]);
    assert!(
        exporter.logs().contains("embedded default pack"),
        "{}",
        exporter.logs()
    );
    // Started after the exporter, under Debian's own path.
    let mut python = Python::start_binary(Path::new(PYTHON));
    let pid = python.pid().to_string();
    wait_for(Duration::from_secs(10), || {
        exporter.samples().get(
            "userspace_exporter_enabled_programs",
            &[("name", "python"), ("pid", &pid)],
        )
    })
    .unwrap_or_else(|| panic!("python not attached:\n{}", exporter.logs()));
    let s0 = exporter.samples();
    let before = python.gc_collections();
    assert_eq!(python.ask("work 12"), "ok");
    let after = python.gc_collections();
    let s1 = exporter.samples();
    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let (e0, e1) = (s0.python_collections(&pid), s1.python_collections(&pid));
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    assert!(reported.iter().all(|&n| n >= 4.0), "{reported:?}");
    assert_eq!(
        counted, reported,
        "exported deltas vs gc.get_stats() deltas"
    );

    // PostgreSQL's server binary is attached at startup for every backend to come
    // (per_binary), before any process runs it.
    if Path::new("/usr/lib/postgresql/15/bin/postgres").exists() {
        assert_eq!(
            exporter.samples().value(
                "userspace_exporter_attached_binaries",
                &[("name", "postgresql")]
            ),
            1.0,
            "{}",
            exporter.logs()
        );
    }
    // A Ruby process started later is attached too (its probes are in libruby).
    if Path::new("/usr/bin/ruby3.1").exists() {
        let mut ruby = common::spawn(
            Command::new("/usr/bin/ruby3.1")
                .args(["-e", "STDIN.read"])
                .stdin(std::process::Stdio::piped()),
        );
        let ruby_pid = ruby.id().to_string();
        let attached = wait_for(Duration::from_secs(10), || {
            exporter.samples().get(
                "userspace_exporter_enabled_programs",
                &[("name", "ruby"), ("pid", &ruby_pid)],
            )
        });
        let _ = ruby.kill();
        let _ = ruby.wait();
        attached.unwrap_or_else(|| panic!("ruby not attached:\n{}", exporter.logs()));
    }
    // A Node.js process started later, wherever its build put `bin/node`
    // (/usr/bin/node on the project's machines): exact collections by kind.
    let node = Path::new("/usr/bin/node");
    if common::require_path(node, "the machine image has node") {
        let mut node = Node::start(node, None, "uexp-default-pack");
        let node_pid = node.pid().to_string();
        wait_for(Duration::from_secs(10), || {
            exporter.samples().get(
                "userspace_exporter_enabled_programs",
                &[("name", "nodejs"), ("pid", &node_pid)],
            )
        })
        .unwrap_or_else(|| panic!("node not attached:\n{}", exporter.logs()));
        let collections = |s: &common::Samples, kind: &str| {
            s.get(
                "userspace_exporter_nodejs_gc_collections_total",
                &[("kind", kind), ("pid", &node_pid)],
            )
            .unwrap_or(0.0)
        };
        let (o0, s0) = node.snapshot(&exporter);
        node.run("minor 6");
        node.run("major 3");
        let (o1, s1) = node.snapshot(&exporter);
        assert!(o1.minor - o0.minor >= 6.0 && o1.major - o0.major >= 3.0);
        assert_eq!(
            collections(&s1, "scavenge") - collections(&s0, "scavenge"),
            o1.minor - o0.minor
        );
        assert_eq!(
            collections(&s1, "mark_compact") - collections(&s0, "mark_compact"),
            o1.major - o0.major
        );
    }
    // A `bin/node` without V8 (a copy of sleep): the program's one source
    // is unavailable there, which the landing page says, and no error.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("bin/node");
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::copy("/usr/bin/sleep", &fake).unwrap();
    let fake = KillOnDrop(common::spawn(Command::new(&fake).arg("600")));
    let line = format!(
        "pid {} (node)</td><td>nothing</td><td class=\"msg\">source gc unavailable, so no nodejs_gc_collections_total, nodejs_gc_pause_seconds: symbols: symbol &quot;v8::internal::Heap::PerformGarbageCollection&quot; not found in {}",
        fake.0.id(),
        dir.path().join("bin/node").display()
    );
    wait_for(Duration::from_secs(10), || {
        exporter.page("/").contains(&line).then_some(())
    })
    .unwrap_or_else(|| panic!("no {line:?} on the page:\n{}", exporter.page("/")));
    let s = exporter.samples();
    assert_eq!(
        s.sum(
            "userspace_exporter_attach_errors_total",
            &[("name", "nodejs")]
        ),
        0.0,
        "{}",
        exporter.logs()
    );
    assert!(
        s.value(
            "userspace_exporter_source_unavailable_processes",
            &[
                ("name", "nodejs"),
                ("source", "gc"),
                ("reason", "no_symtab")
            ]
        ) >= 1.0
    );
}

/// A child killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_default_pack_can_be_written_out_and_checked() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::EXPORTER)
        .args(["defaults", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let config = dir.path().join("default.yaml");
    assert!(config.exists());
    for program in ["python", "jvm", "ruby", "postgresql", "nodejs", "php"] {
        assert!(dir.path().join(format!("{program}.bpf.o")).exists());
    }
    let out = Command::new(common::EXPORTER)
        .args(["--clang", "/nonexistent/clang", "check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for program in ["python", "jvm", "ruby", "postgresql", "nodejs", "php"] {
        assert!(
            text.contains(&format!("ok: program \"{program}\"")),
            "{text}"
        );
    }
    // The same as checking the embedded pack itself.
    let out = Command::new(common::EXPORTER)
        .arg("check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Metric families in an exposition, with their kind (`# TYPE name kind`).
fn families(exposition: &str) -> std::collections::BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The examples the dashboard shows beyond the default pack: each example's
/// name (examples/NAME.yaml) and the `binary_name` it selects.
const DASHBOARD_EXAMPLES: [(&str, &str); 2] = [("nginx", "nginx"), ("mariadb", "mariadbd")];

/// The `userspace_exporter_*` metric names of a query, each with its family
/// (a histogram's `_bucket`, `_sum` or `_count` series named by its family's
/// name, per `exported`, the families known and their kinds).
fn query_metrics<'a>(
    expr: &'a str,
    exported: &std::collections::BTreeMap<String, String>,
) -> Vec<(&'a str, &'a str)> {
    let name = regex::Regex::new(r"userspace_exporter_[a-zA-Z0-9_]+").unwrap();
    name.find_iter(expr)
        .map(|m| {
            let metric = m.as_str();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let base = metric.strip_suffix(suffix)?;
                    (exported.get(base).map(String::as_str) == Some("histogram")).then_some(base)
                })
                .unwrap_or(metric);
            (metric, family)
        })
        .collect()
}

#[test]
fn the_dashboard_queries_exactly_what_the_default_pack_and_its_examples_export() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());

    // Panels have distinct ids and do not overlap on Grafana's 24-column grid.
    let mut ids = std::collections::BTreeSet::new();
    let mut cells = std::collections::BTreeMap::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "id of {title} reused"
        );
        let g = |k: &str| p["gridPos"][k].as_u64().unwrap();
        assert!(g("x") + g("w") <= 24, "{title} is wider than the grid");
        for x in g("x")..g("x") + g("w") {
            for y in g("y")..g("y") + g("h") {
                if let Some(other) = cells.insert((x, y), title) {
                    panic!("{title} overlaps {other} at x={x} y={y}");
                }
            }
        }
    }

    // What the exporter running the default pack really exports (every family
    // is declared even before a process of it is attached).
    let exporter = Exporter::start_default(&["--discovery.interval", "0"]);
    let mut exported = families(&exporter.scrape());
    drop(exporter);
    // And what each example the dashboard shows exports, run by the exporter
    // (selecting a name no process has): its families beyond the pack's.
    let mut from_examples = std::collections::BTreeSet::new();
    for (example, binary) in DASHBOARD_EXAMPLES {
        let config = fixtures().example_config(example, binary, "uexp-dashboard");
        let exporter = Exporter::start_with(&config, &["--discovery.interval", "0"]);
        for (family, kind) in families(&exporter.scrape()) {
            if let std::collections::btree_map::Entry::Vacant(entry) = exported.entry(family) {
                from_examples.insert(entry.key().clone());
                entry.insert(kind);
            }
        }
    }
    assert!(
        from_examples.len() >= 2 * DASHBOARD_EXAMPLES.len(),
        "{from_examples:?}"
    );
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        for (metric, family) in query_metrics(expr, &exported) {
            assert!(
                exported.contains_key(family),
                "dashboard query uses {metric}, which neither the default pack nor the examples \
                 {DASHBOARD_EXAMPLES:?} export: {expr}"
            );
            used.insert(family.to_string());
        }
    }
    // Every runtime metric of the pack, and every metric of the examples, has a panel.
    for family in exported.keys() {
        let runtime = ["python_", "jvm_", "ruby_", "postgresql_", "nodejs_", "php_"]
            .iter()
            .any(|p| family.starts_with(&format!("userspace_exporter_{p}")));
        if runtime || from_examples.contains(family) {
            assert!(used.contains(family), "no dashboard panel shows {family}");
        }
    }

    // Every query is valid PromQL: promtool checks them as recording rules
    // (Grafana's $__rate_interval replaced by a fixed range).
    let dir = tempfile::tempdir().unwrap();
    let rules: String = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:query{i}\n        expr: {}\n",
                serde_json::to_string(&e.replace("$__rate_interval", "5m")).unwrap()
            )
        })
        .collect();
    let rules_path = dir.path().join("rules.yml");
    std::fs::write(
        &rules_path,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_path)
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(root.join("deploy/prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GC per generation of `python` over `work 6`, exported against gc.get_stats().
fn gc_counted_exactly(exporter: &Exporter, python: &mut Python, what: &str) {
    let pid = python.pid().to_string();
    let s0 = exporter.samples();
    let before = python.gc_collections();
    assert_eq!(python.ask("work 6"), "ok");
    let after = python.gc_collections();
    let s1 = exporter.samples();
    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let (e0, e1) = (s0.python_collections(&pid), s1.python_collections(&pid));
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    assert!(reported.iter().all(|&n| n >= 2.0), "{what}: {reported:?}");
    assert_eq!(counted, reported, "{what}:\n{}", exporter.logs());
}

#[test]
fn the_default_pack_selects_any_cpython_by_its_name_or_the_libpython_it_maps() {
    let _machine = common::exclusive();
    if !require_bpf() {
        return;
    }
    let (Some(named), Some(embedded)) = (
        crate::python_builds::pyenv_build("3.12"),
        crate::python_builds::pyenv_build("3.13"),
    ) else {
        return;
    };
    let exporter =
        Exporter::start_default(&["--discovery.interval", "100ms", "--web.enable-explain"]);
    // Started after the exporter: pyenv's python3.12 under its own path (an
    // executable named python3*), and pyenv's 3.13 launcher under another
    // name, as an application embedding libpython would be.
    let mut by_name = Python::start_command(&mut Command::new(&named.launcher));
    let mut by_library = crate::python_builds::start(&embedded, "uexp-embed", None);
    for (python, what) in [(&by_name, "python3.12"), (&by_library, "uexp-embed")] {
        let pid = python.pid().to_string();
        wait_for(Duration::from_secs(10), || {
            exporter.samples().get(
                "userspace_exporter_enabled_programs",
                &[("name", "python"), ("pid", &pid)],
            )
        })
        .unwrap_or_else(|| panic!("{what} not attached:\n{}", exporter.logs()));
    }
    gc_counted_exactly(&exporter, &mut by_name, "pyenv python3.12 by name");
    gc_counted_exactly(&exporter, &mut by_library, "pyenv 3.13 by its libpython");
    let page = exporter.page(&format!("/?pid={}", by_library.pid()));
    assert!(
        page.contains("exe_path does not match")
            && page.contains("maps matches: it maps /root/.pyenv/versions/3.13")
            && page.contains("source gc: from symtab_libpython"),
        "{page}"
    );
}
