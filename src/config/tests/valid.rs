//! Configs that parse, and what they parse into.

use super::*;

#[test]
fn gunicorn_example_parses() {
    let config = parse(GUNICORN).unwrap();
    assert_eq!(config.path, Path::new("test.yaml"));
    assert_eq!(config.programs.len(), 1);
    let program = &config.programs[0];
    assert_eq!(program.referenced.line(), 2);
    let p = &program.value;
    assert_eq!(p.name, "gc_total");
    let counter = &p.metrics.counters[0].value;
    assert_eq!(counter.name, "gc_total");
    assert_eq!(counter.help, "Total number of gc events");
    assert_eq!(counter.table, "gc_counts");
    assert_eq!(counter.labels.len(), 1);
    assert_eq!(counter.labels[0].name, "gen");
    assert_eq!(counter.labels[0].size, 8);
    assert_eq!(counter.labels[0].padding, 0);
    assert_eq!(counter.labels[0].decoders[0].name, "uint");
    assert!(p.metrics.histograms.is_empty());
    assert_eq!(
        p.attachment().unwrap().value.alternatives[0]
            .binary_name
            .as_deref(),
        Some("gunicorn")
    );
    assert_eq!(
        p.probes(),
        vec![ProbeConfig {
            kind: ProbeKind::Usdt,
            spec: "gc__start".into(),
            function: "trace_gc__start".into(),
            source: None,
        }]
    );
    assert_eq!(
        p.source(&config.dir()),
        Some(ProgramSource::Object(PathBuf::from("./gc.bpf.o")))
    );
    assert!(config.warnings().is_empty());
}

#[test]
fn full_config_parses() {
    let config = parse(FULL).unwrap_or_else(|e| panic!("{e}"));
    let p = &config.programs[0].value;
    assert_eq!(p.metrics.counters.len(), 1);
    assert_eq!(p.metrics.histograms.len(), 3);

    let gen = &p.metrics.counters[0].value.labels[0];
    assert_eq!((gen.size, gen.padding), (4, 4));
    assert_eq!(gen.decoders[1].name, "static_map");
    assert_eq!(gen.decoders[1].static_map["1"], "middle");
    assert!(gen.decoders[1].allow_unknown);
    let comm = &p.metrics.counters[0].value.labels[1];
    assert_eq!(comm.decoders[1].regexps, ["^gunicorn", "^python[0-9.]*$"]);

    let exp2 = &p.metrics.histograms[0].value;
    assert_eq!(exp2.bucket_type, BucketType::Exp2);
    assert_eq!((exp2.bucket_min, exp2.bucket_max), (0, 26));
    assert_eq!(exp2.bucket_multiplier, Some(0.000001));
    let linear = &p.metrics.histograms[1].value;
    assert_eq!(linear.bucket_type, BucketType::Linear);
    assert_eq!(linear.help, "");
    let fixed = &p.metrics.histograms[2].value;
    assert_eq!(fixed.bucket_type, BucketType::Fixed);
    assert_eq!(fixed.bucket_keys, [1, 5, 10, 50]);
    assert_eq!(fixed.help, "", "`help:` with no value is an empty HELP");

    assert_eq!(
        p.attachment().unwrap().value.alternatives[0]
            .binary_name
            .as_deref(),
        Some("python3.11")
    );
    match p.source(Path::new("/etc/exporter")).unwrap() {
        ProgramSource::Code {
            code,
            cflags,
            first_line,
            indent,
        } => {
            assert_eq!(code, "int trace_gc_start(void *ctx) { return 0; }\n");
            assert_eq!(cflags, ["-DDEPTH=4"]);
            // `code: |` is on line 77; the code itself starts on line 78, indented 6.
            assert_eq!(first_line, 78);
            assert_eq!(indent, 6);
        }
        other => panic!("expected inline code, got {other:?}"),
    }
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn empty_help_is_fine() {
    let config = parse(&gunicorn_with(
        "help: Total number of gc events",
        r#"help: """#,
    ))
    .unwrap();
    assert_eq!(config.programs[0].value.metrics.counters[0].value.help, "");
    let config = parse(&gunicorn_with("help: Total number of gc events", "help:")).unwrap();
    assert_eq!(config.programs[0].value.metrics.counters[0].value.help, "");
}

#[test]
fn metrics_are_optional() {
    let text = "programs:\n  - name: p\n    usdt: {a: f}\n    attachment: {binary_name: x}\n    object: p.o\n";
    let config = parse(text).unwrap();
    assert!(config.programs[0].value.metrics.counters.is_empty());
}
