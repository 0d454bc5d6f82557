//! The `Program` and `Config` API: probes, sources, loading files, error display.

use super::*;

#[test]
fn probes_are_ordered_by_kind_then_spec() {
    let config = parse(FULL).unwrap();
    let probes = config.programs[0].value.probes();
    let got: Vec<(ProbeKind, &str, &str)> = probes
        .iter()
        .map(|p| (p.kind, p.spec.as_str(), p.function.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                ProbeKind::Usdt,
                "/usr/lib/libpython3.11.so:python:function__entry",
                "trace_entry"
            ),
            (ProbeKind::Usdt, "gc__done", "trace_gc_done"),
            (ProbeKind::Usdt, "python:gc__start", "trace_gc_start"),
            (ProbeKind::Uprobe, "c:malloc", "trace_malloc"),
            (
                ProbeKind::Uretprobe,
                "PyObject_GC_Collect",
                "trace_collect_return"
            ),
        ]
    );
    assert_eq!(ProbeKind::Usdt.config_key(), "usdt");
    assert_eq!(ProbeKind::Uprobe.config_key(), "uprobes");
    assert_eq!(ProbeKind::Uretprobe.config_key(), "uretprobes");
}

#[test]
fn source_resolves_relative_object_against_the_config_dir() {
    let config = Config::parse(Path::new("/etc/exporter/config.yaml"), GUNICORN).unwrap();
    assert_eq!(config.dir(), Path::new("/etc/exporter"));
    let p = &config.programs[0].value;
    assert_eq!(
        p.source(&config.dir()),
        Some(ProgramSource::Object(PathBuf::from(
            "/etc/exporter/gc.bpf.o"
        )))
    );
    let config = parse(&gunicorn_with(
        "object: gc.bpf.o",
        "object: /opt/bpf/gc.bpf.o",
    ))
    .unwrap();
    assert_eq!(
        config.programs[0].value.source(Path::new("/etc/exporter")),
        Some(ProgramSource::Object(PathBuf::from("/opt/bpf/gc.bpf.o")))
    );
    // A bare file name resolves against the current directory.
    assert_eq!(parse(GUNICORN).unwrap().dir(), Path::new("."));
}

#[test]
fn load_reads_a_file_and_resolves_against_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    std::fs::write(&path, GUNICORN).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.path, path);
    assert_eq!(
        config.programs[0].value.source(&config.dir()),
        Some(ProgramSource::Object(dir.path().join("gc.bpf.o")))
    );
    // Errors from a loaded file name that file.
    std::fs::write(&path, gunicorn_with("size: 8", "size: 0")).unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:10:21: ", path.display())),
        "{e}"
    );
}

#[test]
fn load_missing_file_says_cannot_read_and_names_the_path() {
    let path = Path::new("/nonexistent/dir/exporter.yaml");
    let e = Config::load(path).unwrap_err();
    assert_eq!(e.0.len(), 1);
    let text = e.to_string();
    assert!(text.contains("cannot read"), "{text}");
    assert!(text.contains("/nonexistent/dir/exporter.yaml"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn error_display_formats() {
    let p = Path::new("c.yaml");
    assert_eq!(ConfigError::new(p, 0, 0, "m").to_string(), "c.yaml: m");
    assert_eq!(ConfigError::new(p, 3, 0, "m").to_string(), "c.yaml:3: m");
    assert_eq!(ConfigError::new(p, 3, 7, "m").to_string(), "c.yaml:3:7: m");
    let two = ConfigErrors(vec![
        ConfigError::new(p, 1, 1, "a"),
        ConfigError::new(p, 2, 1, "b"),
    ]);
    assert_eq!(two.to_string(), "c.yaml:1:1: a\nc.yaml:2:1: b");
}

#[test]
fn anchors_and_merges_parse_and_errors_still_have_lines() {
    let text = r#"programs:
  - &base
    name: first
    metrics:
      counters:
        - name: first_total
          help: h
          table: t
          labels: &labels
            - name: gen
              size: 8
              decoders: [{name: uint}]
    usdt: {gc__start: trace}
    attachment: {binary_name: x}
    object: a.o
  - <<: *base
    name: second
    metrics:
      counters:
        - name: second_total
          help: h
          table: t
          labels: *labels
"#;
    let config = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let second = &config.programs[1].value;
    assert_eq!(second.name, "second");
    assert_eq!(second.metrics.counters[0].value.labels[0].name, "gen");
    assert_eq!(second.probes().len(), 1);

    // The merged-in probes are checked too: at the definition for the first
    // program, at the `<<: *base` that brings them into the second.
    let bad = text.replace("trace}", "bad-fn}");
    let errors = errors(&bad);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [13, 16], "{}", ConfigErrors(errors.clone()));
    assert!(errors[1].message.contains("program \"second\""));
}

#[test]
fn a_fingerprint_ignores_layout_and_comments_but_not_meaning() {
    let fingerprint = |text: &str| parse(text).unwrap().programs[0].value.fingerprint();
    let original = fingerprint(GUNICORN);
    // Moved down two lines, with a comment, keys reordered: the same program.
    let moved = format!(
        "# a comment\n\n{}",
        GUNICORN.replace(
            "    usdt:\n      gc__start: trace_gc__start\n    attachment:\n      binary_name: \"gunicorn\"\n",
            "    attachment:\n      binary_name: gunicorn   # the workers\n    usdt:\n      gc__start: trace_gc__start\n",
        )
    );
    assert_ne!(moved, GUNICORN);
    assert_eq!(fingerprint(&moved), original);
    // Each of these changes what the program does.
    for (from, to) in [
        ("help: Total number of gc events", "help: GC events"),
        ("gc__start: trace_gc__start", "gc__done: trace_gc__start"),
        ("binary_name: \"gunicorn\"", "binary_name: \"python3\""),
        ("object: gc.bpf.o", "object: gc2.bpf.o"),
        (
            "object: gc.bpf.o",
            "object: gc.bpf.o\n    instances: shared",
        ),
        (
            "object: gc.bpf.o",
            "object: gc.bpf.o\n    process_labels: [comm]",
        ),
    ] {
        assert!(GUNICORN.contains(from), "{from}");
        let changed = GUNICORN.replace(from, to);
        assert_ne!(fingerprint(&changed), original, "{to}");
    }
    // A default written out is no change.
    let padded = GUNICORN.replace("size: 8", "size: 8\n              padding: 0");
    assert_eq!(fingerprint(&padded), original);
}
