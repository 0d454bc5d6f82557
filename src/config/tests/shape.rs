//! Shape errors found while reading the YAML into the schema: unknown keys, wrong types, missing fields.

use super::*;

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
        &gunicorn_with(
            "      counters:\n",
            "      summaries: []\n      counters:\n",
        ),
        4,
        &[
            "unknown field `summaries`",
            "expected one of `counters`, `gauges`, `histograms`",
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
        "unknown field `tabel`, expected one of `name`, `help`, `table`, `labels`, `value`"
    );
    assert_eq!(
        e.to_string(),
        "test.yaml:7:11: unknown field `tabel`, expected one of `name`, `help`, `table`, `labels`, `value`"
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
            "expected one of `binary_name`, `exe_path`, `cmdline`, `parent_binary_name`, `any_ancestor`, `pid`, `pid_file`, `cgroup`, `maps`, `exclude`",
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
