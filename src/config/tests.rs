//! Config parsing and validation: every error names `test.yaml:LINE:` of the
//! node at fault and says what is wrong.

use super::*;

/// The seed README's gunicorn example, with `object:` instead of `code:`.
/// Line numbers are asserted below; keep them stable.
const GUNICORN: &str = r#"programs:
  - name: gc_total
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 8
              decoders:
                - name: uint
    usdt:
      gc__start: trace_gc__start
    attachment:
      binary_name: "gunicorn"
    object: gc.bpf.o
"#;

/// A config that uses every feature: histograms of each bucket type, every
/// decoder, all probe kinds, inline code with cflags, `attachments`.
const FULL: &str = r#"programs:
  - name: python_gc
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 4
              padding: 4
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    "0": young
                    "1": middle
                  allow_unknown: true
            - name: comm
              size: 16
              decoders:
                - name: string
                - name: regexp
                  regexps:
                    - ^gunicorn
                    - ^python[0-9.]*$
      histograms:
        - name: gc_latency_seconds
          help: GC latency
          table: gc_latency
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 26
          bucket_multiplier: 0.000001
          labels:
            - name: bucket
              size: 8
              decoders:
                - name: uint
        - name: alloc_bytes
          help: ""
          table: alloc_sizes
          bucket_type: linear
          bucket_min: 1
          bucket_max: 100
          labels:
            - name: kind
              size: 8
              decoders:
                - name: hex
            - name: bucket
              size: 8
              decoders:
                - name: uint
        - name: queue_depth
          help:
          table: depths
          bucket_type: fixed
          bucket_keys: [1, 5, 10, 50]
          labels:
            - name: bucket
              size: 8
              decoders:
                - name: int
    usdt:
      python:gc__start: trace_gc_start
      gc__done: trace_gc_done
      /usr/lib/libpython3.11.so:python:function__entry: trace_entry
    uprobes:
      c:malloc: trace_malloc
    uretprobes:
      PyObject_GC_Collect: trace_collect_return
    attachments:
      binary_name: python3.11
    cflags:
      - -DDEPTH=4
    code: |
      int trace_gc_start(void *ctx) { return 0; }
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("test.yaml"), text)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(_) => panic!("config was accepted, expected errors:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts that some error is at `line` and mentions every one of `needles`;
/// returns it. On failure, shows all errors.
#[track_caller]
fn expect_error(text: &str, line: u64, needles: &[&str]) -> ConfigError {
    let errors = errors(text);
    let found = errors.iter().find(|e| {
        e.line == line
            && e.to_string().starts_with(&format!("test.yaml:{line}:"))
            && needles.iter().all(|n| e.message.contains(n))
    });
    match found {
        Some(e) => e.clone(),
        None => panic!(
            "no error at line {line} mentioning {needles:?}; got:\n{}",
            ConfigErrors(errors)
        ),
    }
}

/// Like [`expect_error`], and the config has exactly this one problem.
#[track_caller]
fn expect_only_error(text: &str, line: u64, needles: &[&str]) -> ConfigError {
    let all = errors(text);
    assert_eq!(
        all.len(),
        1,
        "expected one error, got:\n{}",
        ConfigErrors(all)
    );
    expect_error(text, line, needles)
}

/// `GUNICORN` with `from` replaced by `to` (which must occur exactly once).
fn gunicorn_with(from: &str, to: &str) -> String {
    assert_eq!(
        GUNICORN.matches(from).count(),
        1,
        "{from:?} must occur once"
    );
    GUNICORN.replace(from, to)
}

// ---------------------------------------------------------------- valid configs

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

// ---------------------------------------------------------------- YAML syntax

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = expect_only_error(
        "programs:\n  - name: a\n     usdt: x\n",
        3,
        &["YAML syntax error", "mapping values are not allowed"],
    );
    assert_eq!(e.column, 10);
    assert_eq!(
        e.to_string(),
        "test.yaml:3:10: mapping values are not allowed in this context (YAML syntax error)"
    );
    assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    assert!(
        !e.message.contains("line 3"),
        "no second location: {:?}",
        e.message
    );
}

#[test]
fn bad_indentation_is_one_readable_line() {
    let e = expect_only_error(
        "programs:\n  - name: a\n  usdt: x\n",
        3,
        &["YAML syntax error", "expected '-'"],
    );
    assert_eq!(e.column, 3);
    assert!(!e.message.contains('\n'));
    let e = expect_only_error("programs:\n\t- name: a\n", 2, &["tabs"]);
    assert!(!e.message.contains('\n'));
}

#[test]
fn unclosed_quote_and_bracket_are_syntax_errors() {
    expect_only_error(
        "programs:\n  - name: 'a\n",
        2,
        &["YAML syntax error", "unclosed quote"],
    );
    expect_only_error(
        "programs:\n  - name: a\n    usdt: {a: 1\n",
        3,
        &["YAML syntax error", "unclosed bracket"],
    );
}

#[test]
fn unclosed_flow_sequence() {
    let e = expect_only_error("programs: [\n", 1, &["unclosed bracket"]);
    assert!(
        e.to_string()
            .starts_with("test.yaml:1:11: unclosed bracket"),
        "{e}"
    );
}

#[test]
fn unknown_anchor() {
    let e = expect_only_error("programs: *nowhere\n", 1, &["unknown anchor"]);
    assert!(!e.message.contains("syntax"), "{e}");
}

#[test]
fn empty_file_is_reported() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let e = &errors(text)[0];
        assert!(e.message.contains("empty"), "{e}");
        assert!(e.message.contains("programs"), "{e}");
    }
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_key_at_top_level() {
    let e = expect_only_error(
        &format!("{GUNICORN}prgrams: []\n"),
        18,
        &["unknown field `prgrams`", "expected `programs`"],
    );
    assert_eq!(e.column, 1);
}

#[test]
fn unknown_key_in_program() {
    let e = expect_only_error(
        &gunicorn_with(
            "    object: gc.bpf.o\n",
            "    object: gc.bpf.o\n    atachment: {}\n",
        ),
        18,
        &["unknown field `atachment`", "`attachment`", "`usdt`"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn unknown_key_in_metrics() {
    expect_only_error(
        &gunicorn_with("      counters:\n", "      gauges: []\n      counters:\n"),
        4,
        &[
            "unknown field `gauges`",
            "expected one of `counters`, `histograms`",
        ],
    );
}

#[test]
fn unknown_key_in_metric() {
    let e = expect_only_error(
        &gunicorn_with("table: gc_counts", "tabel: gc_counts"),
        7,
        &["unknown field `tabel`"],
    );
    assert_eq!(
        e.message,
        "unknown field `tabel`, expected one of `name`, `help`, `table`, `labels`"
    );
    assert_eq!(
        e.to_string(),
        "test.yaml:7:11: unknown field `tabel`, expected one of `name`, `help`, `table`, `labels`"
    );
}

#[test]
fn unknown_key_in_histogram() {
    let text = "programs:\n  - name: p\n    metrics:\n      histograms:\n        - name: h\n          help: h\n          table: t\n          bucket_type: exp2\n          bucket_maximum: 3\n";
    expect_only_error(text, 9, &["unknown field `bucket_maximum`", "`bucket_max`"]);
}

#[test]
fn unknown_key_in_label() {
    expect_only_error(
        &gunicorn_with("size: 8", "sise: 8"),
        10,
        &[
            "unknown field `sise`",
            "expected one of `name`, `size`, `padding`, `decoders`",
        ],
    );
}

#[test]
fn unknown_key_in_decoder() {
    expect_only_error(
        &gunicorn_with(
            "                - name: uint\n",
            "                - name: uint\n                  mapping: {}\n",
        ),
        13,
        &[
            "unknown field `mapping`",
            "`static_map`",
            "`allow_unknown`",
            "`regexps`",
        ],
    );
}

#[test]
fn unknown_key_in_decoder_flow_style() {
    let text = "programs:\n  - name: a\n    metrics:\n      counters:\n        - {name: x, help: h, table: t, labels: [{name: l, size: 8, decoders: [{name: uint, bogus: 1}]}]}\n";
    expect_only_error(text, 5, &["unknown field `bogus`"]);
}

#[test]
fn unknown_key_in_attachment() {
    let e = expect_only_error(
        &gunicorn_with("binary_name: \"gunicorn\"", "binary: \"gunicorn\""),
        16,
        &[
            "unknown field `binary`",
            "expected one of `binary_name`, `exe_path`, `cmdline`, `parent_binary_name`, `any_ancestor`, `pid`, `pid_file`, `cgroup`, `exclude`",
        ],
    );
    assert_eq!(e.column, 7);
}

// ---------------------------------------------------------------- wrong types

#[test]
fn wrong_type_names_the_key_and_what_is_expected() {
    let e = expect_only_error(
        &gunicorn_with("size: 8", "size: \"abc\""),
        10,
        &["`size`", "expected a non-negative integer", "found `abc`"],
    );
    assert_eq!(e.column, 21);
    assert!(!e.message.contains('\n'));
    expect_only_error(
        &gunicorn_with("size: 8", "size: abc"),
        10,
        &["`size`", "non-negative integer", "`abc`"],
    );
    expect_only_error(
        &gunicorn_with("size: 8", "size: -1"),
        10,
        &["`size`", "non-negative integer", "`-1`"],
    );
}

#[test]
fn wrong_container_type_names_the_key() {
    expect_only_error(
        &gunicorn_with(
            "      counters:\n",
            "      counters: {}\n      histograms:\n",
        ),
        4,
        &["`counters`", "expected a list", "found a mapping"],
    );
    expect_only_error(
        &gunicorn_with("      gc__start: trace_gc__start", "      gc__start: [a]"),
        14,
        &["`gc__start`", "expected a string", "found a list"],
    );
    expect_only_error(
        &gunicorn_with("object: gc.bpf.o", "object: gc.bpf.o\n    cflags: -O2"),
        18,
        &["`cflags`", "expected a list", "`-O2`"],
    );
    expect_only_error(
        "programs:\n",
        1,
        &["`programs`", "expected a list", "nothing"],
    );
}

#[test]
fn wrong_bool_and_enum_values() {
    expect_only_error(
        &gunicorn_with(
            "                - name: uint\n",
            "                - name: uint\n                  allow_unknown: maybe\n",
        ),
        13,
        &["`allow_unknown`", "`maybe`"],
    );
    let text = "programs:\n  - name: p\n    metrics:\n      histograms:\n        - name: h\n          help: h\n          table: t\n          bucket_type: log10\n";
    expect_only_error(
        text,
        8,
        &[
            "`bucket_type`",
            "unknown value `log10`",
            "`exp2`, `exp2zero`, `linear`, `fixed`",
        ],
    );
}

#[test]
fn duplicate_key_is_reported() {
    expect_only_error(
        &gunicorn_with("object: gc.bpf.o", "object: gc.bpf.o\n    name: again"),
        18,
        &["duplicate key `name`"],
    );
}

// ---------------------------------------------------------------- missing fields

#[test]
fn missing_help_points_at_the_counter() {
    let e = expect_only_error(
        &gunicorn_with("          help: Total number of gc events\n", ""),
        5,
        &["counter \"gc_total\"", "missing required field `help`"],
    );
    assert_eq!(e.column, 11);
}

#[test]
fn missing_table_points_at_the_counter() {
    expect_only_error(
        &gunicorn_with("          table: gc_counts\n", ""),
        5,
        &["missing required field `table`"],
    );
}

#[test]
fn missing_program_name_points_at_the_program() {
    expect_only_error(
        &gunicorn_with("  - name: gc_total\n    metrics:", "  - metrics:"),
        2,
        &["program", "missing required field `name`"],
    );
}

#[test]
fn missing_label_size_points_at_the_label() {
    expect_only_error(
        &gunicorn_with("              size: 8\n", ""),
        9,
        &["label \"gen\"", "missing required field `size`"],
    );
}

#[test]
fn missing_field_in_a_later_metric_points_at_that_metric() {
    // The first counter is complete (and ends with nested labels); the second lacks `help`.
    let text = gunicorn_with(
        "    usdt:\n",
        "        - name: second\n          table: t2\n    usdt:\n",
    );
    expect_only_error(
        &text,
        13,
        &["counter \"second\"", "missing required field `help`"],
    );
}

#[test]
fn missing_histogram_bucket_type() {
    let text = "programs:\n  - name: p\n    metrics:\n      histograms:\n        - name: h\n          help: h\n          table: t\n          labels:\n            - name: b\n              size: 8\n              decoders: [{name: uint}]\n";
    expect_only_error(
        text,
        5,
        &["histogram \"h\"", "missing required field `bucket_type`"],
    );
}

// ---------------------------------------------------------------- programs and names

#[test]
fn empty_programs() {
    let e = expect_only_error("programs: []\n", 1, &["no programs"]);
    assert_eq!(e.column, 1);
}

#[test]
fn empty_program_name() {
    expect_error(
        &gunicorn_with(
            "  - name: gc_total\n    metrics",
            "  - name: \"\"\n    metrics",
        ),
        2,
        &["non-empty `name`"],
    );
}

#[test]
fn duplicate_program_names() {
    let second = GUNICORN.replace("programs:\n", "").replace(
        "name: gc_total\n          help",
        "name: other\n          help",
    );
    let text = format!("{GUNICORN}{second}");
    expect_only_error(&text, 18, &["\"gc_total\"", "used twice"]);
}

#[test]
fn duplicate_metric_names_within_a_program() {
    let text = gunicorn_with(
        "    usdt:\n",
        "        - name: gc_total\n          help: again\n          table: t2\n          labels: [{name: gen, size: 8, decoders: [{name: uint}]}]\n    usdt:\n",
    );
    expect_only_error(&text, 13, &["metric \"gc_total\"", "defined twice"]);
}

#[test]
fn duplicate_metric_names_across_programs() {
    let second = GUNICORN.replace("programs:\n", "").replace(
        "  - name: gc_total\n    metrics",
        "  - name: other\n    metrics",
    );
    let text = format!("{GUNICORN}{second}");
    // Second program starts at line 18; its counter's name is on line 21.
    expect_only_error(&text, 21, &["\"gc_total\"", "defined twice"]);
}

#[test]
fn invalid_metric_name() {
    let e = expect_only_error(
        &gunicorn_with("        - name: gc_total\n", "        - name: gc-total\n"),
        5,
        &["\"gc-total\"", "not a valid Prometheus name"],
    );
    assert_eq!(e.column, 17);
}

// ---------------------------------------------------------------- labels

#[test]
fn invalid_label_name() {
    expect_only_error(
        &gunicorn_with("- name: gen", "- name: 1gen"),
        9,
        &["\"1gen\"", "not a valid Prometheus label name"],
    );
    expect_only_error(
        &gunicorn_with("- name: gen", "- name: __gen"),
        9,
        &["\"__gen\"", "not a valid Prometheus label name"],
    );
}

#[test]
fn reserved_label_name() {
    expect_only_error(
        &gunicorn_with("- name: gen", "- name: pid"),
        9,
        &["\"pid\"", "added by the exporter"],
    );
}

#[test]
fn duplicate_label_names() {
    let text = gunicorn_with(
        "    usdt:\n",
        "            - name: gen\n              size: 8\n              decoders: [{name: uint}]\n    usdt:\n",
    );
    expect_only_error(&text, 13, &["label \"gen\"", "appears twice"]);
}

#[test]
fn label_size_zero() {
    let e = expect_only_error(
        &gunicorn_with("size: 8", "size: 0"),
        10,
        &["\"gen\"", "size 0"],
    );
    assert_eq!(e.column, 21);
}

#[test]
fn label_without_decoders() {
    // An empty list: at the `decoders` key.
    expect_only_error(
        &gunicorn_with(
            "              decoders:\n                - name: uint\n",
            "              decoders: []\n",
        ),
        11,
        &["\"gen\"", "no decoders"],
    );
    // No key at all: at the label.
    expect_only_error(
        &gunicorn_with(
            "              decoders:\n                - name: uint\n",
            "",
        ),
        9,
        &["\"gen\"", "no decoders"],
    );
}

#[test]
fn le_is_reserved_for_histogram_labels_but_the_slot() {
    let text = "programs:\n  - name: p\n    metrics:\n      histograms:\n        - name: h\n          help: h\n          table: t\n          bucket_type: exp2\n          bucket_max: 3\n          labels:\n            - name: le\n              size: 8\n              decoders: [{name: uint}]\n            - name: bucket\n              size: 8\n              decoders: [{name: uint}]\n    usdt: {a: f}\n    attachment: {binary_name: x}\n    object: p.o\n";
    expect_only_error(text, 11, &["`le` is reserved"]);
}

// ---------------------------------------------------------------- decoders

#[test]
fn unknown_decoder_name() {
    let e = expect_only_error(
        &gunicorn_with("- name: uint", "- name: unit"),
        12,
        &["\"unit\"", "unknown decoder", "static_map"],
    );
    assert_eq!(e.column, 25);
}

#[test]
fn static_map_without_map() {
    expect_only_error(
        &gunicorn_with("- name: uint", "- name: static_map"),
        12,
        &["static_map", "non-empty"],
    );
    expect_only_error(
        &gunicorn_with(
            "- name: uint\n",
            "- name: static_map\n                  static_map: {}\n",
        ),
        13,
        &["static_map", "non-empty"],
    );
}

#[test]
fn regexp_without_regexps() {
    expect_only_error(
        &gunicorn_with("- name: uint", "- name: regexp"),
        12,
        &["regexp", "`regexps`"],
    );
}

#[test]
fn regexp_that_does_not_compile_points_at_the_pattern() {
    let e = expect_only_error(
        &gunicorn_with(
            "- name: uint\n",
            "- name: uint\n                - name: regexp\n                  regexps:\n                    - ^ok$\n                    - \"(unclosed\"\n",
        ),
        16,
        &["\"(unclosed\"", "does not compile"],
    );
    assert_eq!(e.column, 23);
}

// ---------------------------------------------------------------- histograms

const HISTOGRAM_HEAD: &str = "programs:\n  - name: p\n    metrics:\n      histograms:\n        - name: h\n          help: h\n          table: t\n";
const HISTOGRAM_TAIL: &str =
    "    usdt: {a: f}\n    attachment: {binary_name: x}\n    object: p.o\n";
const SLOT_LABEL: &str = "          labels:\n            - name: bucket\n              size: 8\n              decoders: [{name: uint}]\n";

/// A one-histogram program; `fields` start at line 8.
fn histogram(fields: &str) -> String {
    format!("{HISTOGRAM_HEAD}{fields}{HISTOGRAM_TAIL}")
}

#[test]
fn histogram_without_labels() {
    expect_only_error(
        &histogram("          bucket_type: exp2\n          bucket_max: 3\n"),
        5,
        &["\"h\"", "at least one label"],
    );
    expect_only_error(
        &histogram("          bucket_type: exp2\n          bucket_max: 3\n          labels: []\n"),
        10,
        &["\"h\"", "at least one label"],
    );
}

#[test]
fn bucket_min_greater_than_bucket_max() {
    let e = expect_only_error(
        &histogram(&format!(
            "          bucket_type: linear\n          bucket_min: 10\n          bucket_max: 5\n{SLOT_LABEL}"
        )),
        9,
        &["bucket_min (10) is greater than bucket_max (5)"],
    );
    assert_eq!(e.column, 23);
}

#[test]
fn exp2_bucket_max_too_large() {
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: exp2zero\n          bucket_max: 1024\n{SLOT_LABEL}"
        )),
        9,
        &["bucket_max 1024", "too large"],
    );
    parse(&histogram(&format!(
        "          bucket_type: exp2\n          bucket_max: 1023\n{SLOT_LABEL}"
    )))
    .unwrap();
}

#[test]
fn linear_bucket_count_is_capped() {
    parse(&histogram(&format!(
        "          bucket_type: linear\n          bucket_min: 1\n          bucket_max: 10000\n{SLOT_LABEL}"
    )))
    .unwrap();
    let e = expect_only_error(
        &histogram(&format!(
            "          bucket_type: linear\n          bucket_min: 0\n          bucket_max: 10000\n{SLOT_LABEL}"
        )),
        10,
        &["10001 buckets", "at most 10000"],
    );
    assert_eq!(e.column, 23);
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: linear\n          bucket_max: 18446744073709551615\n{SLOT_LABEL}"
        )),
        9,
        &["at most 10000"],
    );
}

#[test]
fn fixed_without_bucket_keys() {
    expect_only_error(
        &histogram(&format!("          bucket_type: fixed\n{SLOT_LABEL}")),
        8,
        &["fixed needs `bucket_keys`"],
    );
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: fixed\n          bucket_keys: []\n{SLOT_LABEL}"
        )),
        9,
        &["fixed needs `bucket_keys`"],
    );
}

#[test]
fn fixed_bucket_keys_must_increase() {
    let e = expect_only_error(
        &histogram(&format!(
            "          bucket_type: fixed\n          bucket_keys:\n            - 1\n            - 5\n            - 5\n            - 9\n{SLOT_LABEL}"
        )),
        12,
        &["strictly increasing", "5 follows 5"],
    );
    assert_eq!(e.column, 15);
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: fixed\n          bucket_keys: [10, 2]\n{SLOT_LABEL}"
        )),
        9,
        &["strictly increasing", "2 follows 10"],
    );
}

#[test]
fn fixed_bucket_keys_are_capped() {
    let keys = |n: u64| (0..n).map(|k| k.to_string()).collect::<Vec<_>>().join(", ");
    parse(&histogram(&format!(
        "          bucket_type: fixed\n          bucket_keys: [{}]\n{SLOT_LABEL}",
        keys(10_000)
    )))
    .unwrap();
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: fixed\n          bucket_keys: [{}]\n{SLOT_LABEL}",
            keys(10_001)
        )),
        9,
        &["10001 bucket_keys", "at most 10000"],
    );
}

#[test]
fn non_positive_multiplier() {
    for bad in ["0", "-1.5", ".nan"] {
        expect_only_error(
            &histogram(&format!(
                "          bucket_type: exp2\n          bucket_max: 3\n          bucket_multiplier: {bad}\n{SLOT_LABEL}"
            )),
            10,
            &["bucket_multiplier must be a positive number"],
        );
    }
}

// ---------------------------------------------------------------- probes

#[test]
fn no_probes() {
    expect_only_error(
        &gunicorn_with("    usdt:\n      gc__start: trace_gc__start\n", ""),
        2,
        &["\"gc_total\" has no probes"],
    );
    expect_only_error(
        &gunicorn_with(
            "    usdt:\n      gc__start: trace_gc__start\n",
            "    usdt: {}\n",
        ),
        13,
        &["has no probes"],
    );
}

#[test]
fn probe_spec_with_an_empty_part() {
    let e = expect_only_error(
        &gunicorn_with("gc__start: trace", "python:: trace"),
        14,
        &["\"python:\"", "empty part"],
    );
    assert_eq!(e.column, 7);
    expect_only_error(
        &gunicorn_with("gc__start: trace", "\"a::b\": trace"),
        14,
        &["\"a::b\"", "empty part"],
    );
    expect_only_error(
        &gunicorn_with(
            "    usdt:\n      gc__start: trace_gc__start\n",
            "    uprobes:\n      \"libc.so.6:\": trace_gc__start\n",
        ),
        14,
        &["uprobes probe", "empty part"],
    );
}

#[test]
fn usdt_spec_with_more_than_three_parts() {
    expect_only_error(
        &gunicorn_with("gc__start: trace", "a.so:b:c:gc__start: trace"),
        14,
        &["4 `:`-separated parts", "module:provider:name"],
    );
    parse(&gunicorn_with(
        "gc__start: trace",
        "a.so:python:gc__start: trace",
    ))
    .unwrap();
}

#[test]
fn uprobe_library_may_contain_colons() {
    parse(&gunicorn_with(
        "    usdt:\n      gc__start: trace_gc__start\n",
        "    uprobes:\n      /opt/a:b/libx.so:malloc: trace_gc__start\n",
    ))
    .unwrap();
}

#[test]
fn bpf_function_not_a_c_identifier() {
    let e = expect_only_error(
        &gunicorn_with("gc__start: trace_gc__start", "gc__start: trace-gc-start"),
        14,
        &["\"trace-gc-start\"", "not a C identifier"],
    );
    assert_eq!(e.column, 18);
}

// ---------------------------------------------------------------- code

#[test]
fn both_object_and_code() {
    let e = expect_only_error(
        &gunicorn_with(
            "    object: gc.bpf.o\n",
            "    object: gc.bpf.o\n    code: |\n      int x;\n",
        ),
        18,
        &["either `object:` or `code:`, not both"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn neither_object_nor_code() {
    expect_only_error(
        &gunicorn_with("    object: gc.bpf.o\n", ""),
        2,
        &["has no BPF code", "object:", "code:"],
    );
}

#[test]
fn empty_object() {
    expect_only_error(
        &gunicorn_with("object: gc.bpf.o", "object: \"\""),
        17,
        &["`object:` is empty"],
    );
}

#[test]
fn cflags_without_code() {
    expect_only_error(
        &gunicorn_with(
            "    object: gc.bpf.o\n",
            "    object: gc.bpf.o\n    cflags:\n      - -DX=1\n",
        ),
        18,
        &["`cflags:` only applies to inline `code:`"],
    );
}

// ---------------------------------------------------------------- attachment

#[test]
fn attachment_missing() {
    expect_only_error(
        &gunicorn_with("    attachment:\n      binary_name: \"gunicorn\"\n", ""),
        2,
        &["has no `attachment:`", "binary_name"],
    );
}

#[test]
fn attachment_without_value_or_binary_name() {
    expect_only_error(
        &gunicorn_with("      binary_name: \"gunicorn\"\n", ""),
        15,
        &["`attachment` is empty"],
    );
    expect_only_error(
        &gunicorn_with(
            "    attachment:\n      binary_name: \"gunicorn\"\n",
            "    attachment: {}\n",
        ),
        15,
        &["attachment needs at least one of binary_name, exe_path, cmdline"],
    );
}

#[test]
fn both_attachment_and_attachments() {
    let e = expect_only_error(
        &gunicorn_with(
            "    object: gc.bpf.o\n",
            "    object: gc.bpf.o\n    attachments:\n      binary_name: other\n",
        ),
        18,
        &["`attachment:` or `attachments:`, not both"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn attachments_spelling_is_accepted() {
    let config = parse(&gunicorn_with("    attachment:\n", "    attachments:\n")).unwrap();
    let p = &config.programs[0].value;
    assert!(p.attachment.is_none());
    assert_eq!(
        p.attachment().unwrap().value.alternatives[0]
            .binary_name
            .as_deref(),
        Some("gunicorn")
    );
}

#[test]
fn empty_binary_name() {
    let e = expect_only_error(
        &gunicorn_with("binary_name: \"gunicorn\"", "binary_name: \"\""),
        16,
        &["`binary_name` is empty"],
    );
    assert_eq!(e.column, 20);
}

#[test]
fn long_binary_name_is_a_warning_not_an_error() {
    let config = parse(&gunicorn_with("\"gunicorn\"", "gunicorn-worker-pool")).unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert_eq!((w.line, w.column), (16, 20));
    assert!(w.message.contains("20 bytes"), "{w}");
    assert!(w.message.contains("15 bytes"), "{w}");
    assert!(w.message.contains("\"gunicorn-worker\""), "{w}");
    assert!(w.to_string().starts_with("test.yaml:16:20: "));

    // Exactly 15 bytes is what the kernel keeps: no warning.
    let config = parse(&gunicorn_with("\"gunicorn\"", "gunicorn-worker")).unwrap();
    assert!(config.warnings().is_empty());

    // The truncation shown never splits a UTF-8 character.
    let config = parse(&gunicorn_with(
        "\"gunicorn\"",
        "\"gunicorn-work\u{e9}\u{e9}\"",
    ))
    .unwrap();
    let w = &config.warnings()[0];
    assert!(w.message.contains("\"gunicorn-work\u{e9}\""), "{w}");
}

// ---------------------------------------------------------------- many errors

#[test]
fn every_error_is_reported_in_file_order() {
    let text = r#"programs:
  - name: first
    metrics:
      counters:
        - name: bad-name
          help: h
          table: t
          labels:
            - name: pid
              size: 0
              decoders:
                - name: nope
    usdt:
      "a:b:c:d": 1fn
    attachment:
      binary_name: ""
    object: a.o
    cflags: [-O2]
  - name: first
"#;
    let errors = errors(text);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [5, 9, 10, 12, 14, 14, 16, 18, 19, 19, 19, 19],
        "{}",
        ConfigErrors(errors.clone())
    );
    let all = ConfigErrors(errors).to_string();
    for needle in [
        "\"bad-name\"",
        "\"pid\"",
        "size 0",
        "unknown decoder",
        "4 `:`-separated parts",
        "not a C identifier",
        "`binary_name` is empty",
        "`cflags:`",
        "used twice",
        "has no BPF code",
        "has no probes",
        "has no `attachment:`",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // One error per line of the Display.
    assert_eq!(all.lines().count(), 12);
    assert!(all.lines().all(|l| l.starts_with("test.yaml:")));
}

// ---------------------------------------------------------------- warnings

#[test]
fn each_ignored_kernel_probe_key_warns_once_with_its_line() {
    let text = gunicorn_with(
        "    object: gc.bpf.o\n",
        "    object: gc.bpf.o\n    kprobes:\n      tcp_v4_connect: trace_connect\n    kretprobes: {tcp_v4_connect: trace_ret}\n    tracepoints:\n      - sched:sched_switch\n    raw_tracepoints:\n    perf_events:\n      - type: 1\n",
    );
    let config = parse(&text).unwrap();
    let warnings = config.warnings();
    let got: Vec<(u64, &str)> = warnings
        .iter()
        .map(|w| {
            let key = [
                "kretprobes",
                "kprobes",
                "raw_tracepoints",
                "tracepoints",
                "perf_events",
            ]
            .into_iter()
            .find(|k| w.message.contains(&format!("`{k}`")))
            .unwrap();
            (w.line, key)
        })
        .collect();
    assert_eq!(
        got,
        [
            (18, "kprobes"),
            (20, "kretprobes"),
            (21, "tracepoints"),
            (23, "raw_tracepoints"),
            (24, "perf_events"),
        ]
    );
    for w in &warnings {
        assert_eq!(w.column, 5);
        assert!(w.message.contains("\"gc_total\""));
        assert!(w.message.contains("ignored"));
        assert!(w.message.contains("userspace probes"));
    }
}

// ---------------------------------------------------------------- Program API

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

// ---------------------------------------------------------------- attachment selectors

/// A one-program config whose attachment block (`block`, with its key, lines
/// indented 4) starts on line 5.
fn with_attachment(block: &str) -> String {
    format!("programs:\n  - name: x\n    object: x.o\n    usdt: {{a: f}}\n{block}")
}

/// The alternatives of the only program's attachment.
fn alternatives(config: &Config) -> (Vec<AttachmentSelector>, bool) {
    let a = &config.programs[0].value.attachment().unwrap().value;
    (a.alternatives.clone(), a.is_list)
}

#[test]
fn every_selector_field_parses() {
    let text = with_attachment(
        r#"    attachment:
      binary_name: gunicorn
      exe_path: "/usr/bin/python3*"
      cmdline: "--workers \\d+"
      parent_binary_name: bash
      any_ancestor: true
      pid: 1234
      pid_file: /run/app.pid
      cgroup: "/kubepods/**/pod1234*/**"
      exclude: {exe_path: /usr/bin/foo}
"#,
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(!is_list);
    assert_eq!(
        alts,
        [AttachmentSelector {
            binary_name: Some("gunicorn".into()),
            exe_path: Some("/usr/bin/python3*".into()),
            cmdline: Some(r"--workers \d+".into()),
            parent_binary_name: Some("bash".into()),
            any_ancestor: true,
            pid: Some(1234),
            pid_file: Some(PathBuf::from("/run/app.pid")),
            cgroup: Some("/kubepods/**/pod1234*/**".into()),
            exclude: Some(Exclusions {
                selectors: vec![AttachmentSelector {
                    exe_path: Some("/usr/bin/foo".into()),
                    ..Default::default()
                }],
                is_list: false,
            }),
        }]
    );
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn each_selector_field_alone_is_enough() {
    for field in [
        "binary_name: gunicorn",
        "exe_path: /usr/bin/python3",
        "cmdline: gunicorn",
        "parent_binary_name: bash",
        "pid: 1",
        "pid_file: /run/a.pid",
        "cgroup: /system.slice/nginx.service",
    ] {
        let config = parse(&with_attachment(&format!("    attachment: {{{field}}}\n")))
            .unwrap_or_else(|e| panic!("{field}: {e}"));
        let (alts, _) = alternatives(&config);
        assert_eq!(alts.len(), 1);
        assert!(!alts[0].is_empty(), "{field}");
    }
}

#[test]
fn binary_name_only_form_is_unchanged() {
    let config = parse(GUNICORN).unwrap();
    let a = &config.programs[0].value.attachment().unwrap().value;
    assert_eq!(
        *a,
        Attachment::single(AttachmentSelector {
            binary_name: Some("gunicorn".into()),
            ..Default::default()
        })
    );
    let config = parse(&gunicorn_with("    attachment:\n", "    attachments:\n")).unwrap();
    let a = &config.programs[0].value.attachment().unwrap().value;
    assert_eq!(a.alternatives[0].binary_name.as_deref(), Some("gunicorn"));
    assert!(!a.is_list);
}

#[test]
fn attachment_may_be_a_list_of_alternatives() {
    let config = parse(&with_attachment(
        "    attachment: [{binary_name: python3.11}, {exe_path: \"/opt/*/bin/python3\"}]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(is_list);
    assert_eq!(alts.len(), 2);
    assert_eq!(alts[0].binary_name.as_deref(), Some("python3.11"));
    assert_eq!(alts[1].exe_path.as_deref(), Some("/opt/*/bin/python3"));

    // Block style, under the other spelling, with exclusions per alternative.
    let config = parse(&with_attachment(
        r#"    attachments:
      - binary_name: gunicorn
        exclude:
          - cmdline: "--check-config"
          - parent_binary_name: cron
      - cgroup: /system.slice/app.service
        exclude: {binary_name: sh}
"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(is_list);
    assert_eq!(alts.len(), 2);
    let ex0 = alts[0].exclude.as_ref().unwrap();
    assert!(ex0.is_list);
    assert_eq!(ex0.selectors.len(), 2);
    assert_eq!(ex0.selectors[0].cmdline.as_deref(), Some("--check-config"));
    assert_eq!(ex0.selectors[1].parent_binary_name.as_deref(), Some("cron"));
    let ex1 = alts[1].exclude.as_ref().unwrap();
    assert!(!ex1.is_list);
    assert_eq!(alts[1].exclusions()[0].binary_name.as_deref(), Some("sh"));
    assert!(!alts[1].is_empty());
}

#[test]
fn relative_pid_file_resolves_against_the_config_directory() {
    let text = with_attachment(
        "    attachment:\n      - pid_file: run/app.pid\n      - pid_file: /run/abs.pid\n        exclude: {pid_file: other.pid}\n",
    );
    let config = Config::parse(Path::new("/etc/exporter/config.yaml"), &text).unwrap();
    let (alts, _) = alternatives(&config);
    assert_eq!(
        alts[0].pid_file.as_deref(),
        Some(Path::new("/etc/exporter/run/app.pid"))
    );
    assert_eq!(alts[1].pid_file.as_deref(), Some(Path::new("/run/abs.pid")));
    assert_eq!(
        alts[1].exclusions()[0].pid_file.as_deref(),
        Some(Path::new("/etc/exporter/other.pid"))
    );
}

#[test]
fn selector_without_fields_is_an_error_at_its_mapping() {
    // Only `any_ancestor`/`exclude`: they select nothing by themselves.
    let e = expect_error(
        &with_attachment("    attachment:\n      exclude: {pid: 3}\n"),
        6,
        &["program \"x\": attachment needs at least one of binary_name, exe_path, cmdline, parent_binary_name, pid, pid_file, cgroup"],
    );
    assert_eq!(e.column, 7);
    // The second alternative of a flow list.
    let e = expect_only_error(
        &with_attachment("    attachment: [{binary_name: a}, {}]\n"),
        5,
        &["attachment #2 needs at least one of"],
    );
    assert_eq!(e.column, 36);
    // An exclusion.
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      exclude:\n        - {pid: 4}\n        - {}\n"),
        9,
        &["attachment exclude #2 needs at least one of"],
    );
    assert_eq!(e.column, 11);
}

#[test]
fn empty_attachment_list_is_an_error() {
    let e = expect_only_error(
        &with_attachment("    attachments: []\n"),
        5,
        &["`attachments` is an empty list"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn attachment_of_the_wrong_shape_is_an_error() {
    let e = expect_only_error(
        &with_attachment("    attachment: gunicorn\n"),
        5,
        &[
            "`attachment`: expected a selector mapping",
            "list",
            "found string \"gunicorn\"",
        ],
    );
    assert_eq!(e.column, 17);
    assert!(!e.message.contains('\n'));
    expect_only_error(
        &with_attachment("    attachment: [gunicorn]\n"),
        5,
        &["expected a mapping", "found `gunicorn`"],
    );
    expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      exclude: 3\n"),
        7,
        &["`exclude`", "selector mapping"],
    );
}

#[test]
fn unknown_keys_in_alternatives_and_exclusions_are_errors() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      - binary_name: a\n      - exe: /bin/a\n"),
        7,
        &["unknown field `exe`", "`exe_path`"],
    );
    assert_eq!(e.column, 9);
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      binary_name: a\n      exclude:\n        comm: b\n",
        ),
        8,
        &["unknown field `comm`", "`binary_name`"],
    );
    assert_eq!(e.column, 9);
}

#[test]
fn cmdline_regex_that_does_not_compile_is_an_error_at_its_value() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      cmdline: \"(\"\n"),
        7,
        &["cmdline regex"],
    );
    assert_eq!(
        e.to_string(),
        "test.yaml:7:16: program \"x\": attachment cmdline regex \"(\" does not compile: unclosed group"
    );
}

#[test]
fn globs_that_do_not_compile_are_errors_at_their_values() {
    let e = expect_only_error(
        &with_attachment("    attachment: {exe_path: \"/usr/bin/[\"}\n"),
        5,
        &[
            "attachment exe_path glob \"/usr/bin/[\" does not compile",
            "unclosed character class",
        ],
    );
    assert_eq!(e.column, 28);
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      - binary_name: a\n      - binary_name: b\n        exclude:\n          - cgroup: /a\n          - cgroup: \"/{a,b\"\n",
        ),
        10,
        &["attachment #2 exclude #2 cgroup glob \"/{a,b\" does not compile", "unclosed alternate group"],
    );
    assert_eq!(e.column, 21);
}

#[test]
fn relative_globs_never_match_and_are_errors() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      exe_path: python3*\n"),
        6,
        &[
            "exe_path glob \"python3*\" never matches",
            "absolute",
            "\"**/python3*\"",
        ],
    );
    assert_eq!(e.column, 17);
    expect_only_error(
        &with_attachment("    attachment:\n      cgroup: system.slice/nginx.service\n"),
        6,
        &["cgroup glob", "never matches"],
    );
    // Leading `**`, `*`, `{`, `?`, `[` may match absolute paths: fine.
    for glob in [
        "**/bin/java",
        "*/python3",
        "{/usr,/opt}/bin/x",
        "?usr/bin/x",
        "[/]usr/x",
    ] {
        parse(&with_attachment(&format!(
            "    attachment: {{exe_path: \"{glob}\"}}\n"
        )))
        .unwrap_or_else(|e| panic!("{glob}: {e}"));
    }
}

#[test]
fn pid_must_be_a_positive_process_id() {
    for (pid, column) in [("0", 12), ("-5", 12), ("4294967296", 12)] {
        let e = expect_only_error(
            &with_attachment(&format!("    attachment:\n      pid: {pid}\n")),
            6,
            &[&format!("attachment pid {pid} is not a process id")],
        );
        assert_eq!(e.column, column);
    }
    expect_only_error(
        &with_attachment("    attachment:\n      pid: abc\n"),
        6,
        &["`pid`", "integer"],
    );
}

#[test]
fn empty_selector_fields_are_errors() {
    for field in [
        "binary_name",
        "exe_path",
        "cmdline",
        "parent_binary_name",
        "pid_file",
        "cgroup",
    ] {
        let e = expect_only_error(
            &with_attachment(&format!(
                "    attachment:\n      pid: 1\n      {field}: \"\"\n"
            )),
            7,
            &[&format!("attachment `{field}` is empty")],
        );
        assert_eq!(e.column, field.len() as u64 + 9, "{field}");
    }
}

#[test]
fn any_ancestor_needs_parent_binary_name() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      any_ancestor: true\n"),
        7,
        &["`any_ancestor` applies to `parent_binary_name`"],
    );
    assert_eq!(e.column, 7);
    // `any_ancestor: false` says nothing: fine.
    parse(&with_attachment(
        "    attachment:\n      binary_name: a\n      any_ancestor: false\n",
    ))
    .unwrap();
}

#[test]
fn exclusions_cannot_be_nested() {
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      binary_name: a\n      exclude:\n        pid: 3\n        exclude: {pid: 4}\n",
        ),
        9,
        &["attachment exclude has its own `exclude`"],
    );
    assert_eq!(e.column, 9);
}

#[test]
fn every_attachment_error_is_reported_in_file_order() {
    let text = with_attachment(
        r#"    attachment:
      - cmdline: "a("
        exe_path: bin/x
        pid: 0
        exclude:
          - {}
          - cgroup: "["
      - {}
      - any_ancestor: true
"#,
    );
    let errors = errors(&text);
    let got: Vec<(u64, u64)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        [
            (6, 18),
            (7, 19),
            (8, 14),
            (10, 13),
            (11, 21),
            (12, 9),
            (13, 9),
            (13, 9)
        ],
        "{}",
        ConfigErrors(errors.clone())
    );
}

#[test]
fn long_names_warn_wherever_they_are() {
    let config = parse(&with_attachment(
        "    attachment:\n      - binary_name: a\n      - parent_binary_name: gunicorn-worker-pool\n        exclude: {binary_name: another-very-long-name}\n",
    ))
    .unwrap();
    let warnings = config.warnings();
    let got: Vec<(u64, u64)> = warnings.iter().map(|w| (w.line, w.column)).collect();
    assert_eq!(got, [(7, 29), (8, 32)], "{warnings:?}");
    assert!(warnings[0]
        .message
        .contains("parent_binary_name \"gunicorn-worker-pool\""));
    assert!(warnings[0].message.contains("\"gunicorn-worker\""));
    assert!(warnings[1]
        .message
        .contains("binary_name \"another-very-long-name\""));
}

#[test]
fn process_labels_parse_and_may_not_collide_with_metric_labels() {
    let base = "programs:\n  - name: p\n    object: p.bpf.o\n    usdt: {gc__start: f}\n    attachment: {binary_name: x}\n";
    let config = parse(&format!("{base}    process_labels: [comm, container_id]\n")).unwrap();
    let labels: Vec<&str> = config.programs[0]
        .value
        .process_labels
        .as_ref()
        .unwrap()
        .value
        .iter()
        .map(|l| l.name())
        .collect();
    assert_eq!(labels, ["comm", "container_id"]);

    let e = errors(&format!("{base}    process_labels: [comm, hostname]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 6, "{}", e[0]);
    assert!(e[0].message.contains("hostname"), "{}", e[0]);

    let e = errors(&format!(
        "{base}    process_labels: [comm]\n    metrics:\n      counters:\n        - name: c_total\n          help: h\n          table: t\n          labels: [{{name: comm, size: 8, decoders: [{{name: uint}}]}}]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 12, "{}", e[0]);
    assert!(
        e[0].message
            .contains("label \"comm\" is also in this program's `process_labels`"),
        "{}",
        e[0]
    );
}

#[test]
fn pod_uid_is_a_process_label_no_metric_label_may_take() {
    let base = "programs:\n  - name: p\n    object: p.bpf.o\n    usdt: {gc__start: f}\n    attachment: {binary_name: x}\n";
    let config = parse(&format!(
        "{base}    process_labels: [comm, exe, cgroup, container_id, pod_uid]\n"
    ))
    .unwrap();
    let labels: Vec<crate::config::ProcessLabel> = config.programs[0]
        .value
        .process_labels
        .as_ref()
        .unwrap()
        .value
        .clone();
    assert_eq!(
        labels.iter().map(|l| l.name()).collect::<Vec<_>>(),
        ["comm", "exe", "cgroup", "container_id", "pod_uid"]
    );
    assert_eq!(labels[4], crate::config::ProcessLabel::PodUid);

    // The YAML name is pod_uid, nothing else.
    let e = errors(&format!("{base}    process_labels: [podUid]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 6, "{}", e[0]);
    assert!(e[0].message.contains("podUid"), "{}", e[0]);

    let e = errors(&format!(
        "{base}    process_labels: [pod_uid]\n    metrics:\n      counters:\n        - name: c_total\n          help: h\n          table: t\n          labels: [{{name: pod_uid, size: 8, decoders: [{{name: uint}}]}}]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 12, "{}", e[0]);
    assert!(
        e[0].message
            .contains("label \"pod_uid\" is also in this program's `process_labels`"),
        "{}",
        e[0]
    );

    // per_binary instances take no process labels, pod_uid included.
    let e = errors(&format!(
        "{base}    instances: per_binary\n    process_labels: [pod_uid]\n"
    ));
    assert!(e.iter().any(|e| e.message.contains("per_binary")), "{e:?}");
}

#[test]
fn per_binary_instances_take_no_process_labels_and_reserve_exe() {
    let base = "programs:\n  - name: p\n    object: p.bpf.o\n    usdt: {gc__start: f}\n    attachment: {exe_path: /usr/bin/x}\n    instances: per_binary\n";
    let config = parse(base).unwrap();
    assert_eq!(
        config.programs[0].value.instances.as_ref().unwrap().value,
        crate::config::InstanceMode::PerBinary
    );

    let e = errors(&format!("{base}    process_labels: [comm]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 7, "{}", e[0]);
    assert!(e[0].message.contains("per_binary"), "{}", e[0]);

    let e = errors(&format!(
        "{base}    metrics:\n      counters:\n        - name: c_total\n          help: h\n          table: t\n          labels: [{{name: exe, size: 8, decoders: [{{name: uint}}]}}]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 12, "{}", e[0]);
    assert!(e[0].message.contains("label \"exe\""), "{}", e[0]);
}
