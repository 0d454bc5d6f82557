//! Programs and names: the list of programs, program and metric names.

use super::*;

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
