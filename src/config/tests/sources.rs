//! `sources:`: a feature's probe sets, best first, and the metrics they feed.

use super::*;

/// GUNICORN with its `usdt:` replaced by a source of two probe sets.
fn with_sources(sources: &str) -> String {
    gunicorn_with("    usdt:\n      gc__start: trace_gc__start\n", sources)
}

const TWO_SETS: &str = r#"    sources:
      gc:
        metrics: [gc_total]
        from:
          - name: usdt
            usdt:
              gc__start: trace_gc__start
          - uprobes:
              gc_collect_main: on_gc_collect
"#;

#[test]
fn a_source_lists_probe_sets_best_first() {
    let config = parse(&with_sources(TWO_SETS)).unwrap();
    let program = &config.programs[0].value;
    let probes = program.probes();
    assert_eq!(probes.len(), 2);
    assert_eq!(
        (
            probes[0].spec.as_str(),
            probes[0].source.as_ref().map(|s| s.rank)
        ),
        ("gc__start", Some(0))
    );
    assert_eq!(
        (
            probes[1].spec.as_str(),
            probes[1].source.as_ref().map(|s| s.rank)
        ),
        ("gc_collect_main", Some(1))
    );
    let sources = &program.sources.as_ref().unwrap().value;
    let gc = &sources["gc"].value;
    assert_eq!(gc.from[0].value.label(), "usdt");
    assert_eq!(gc.from[1].value.label(), "uprobes");
    assert_eq!(program.source_metrics()["gc"], ["gc_total".to_string()]);
}

#[test]
fn a_metric_a_source_names_must_exist() {
    expect_only_error(
        &with_sources(&TWO_SETS.replace("[gc_total]", "[gc_totl]")),
        15,
        &[
            "source \"gc\" names metric \"gc_totl\"",
            "its metrics: gc_total",
        ],
    );
}

#[test]
fn a_metric_has_one_source() {
    let two = format!(
        "{TWO_SETS}      gc_again:\n        metrics: [gc_total]\n        from:\n          - usdt: {{gc__done: trace_gc__start}}\n"
    );
    expect_only_error(
        &with_sources(&two),
        23,
        &[
            "source \"gc_again\" names metric \"gc_total\"",
            "already feeds",
        ],
    );
}

#[test]
fn a_probe_set_without_probes_and_a_source_without_sets_are_refused() {
    expect_only_error(
        &with_sources(&TWO_SETS.replace(
            "          - uprobes:\n              gc_collect_main: on_gc_collect\n",
            "          - name: empty\n",
        )),
        20,
        &["probe set 2 has no probes"],
    );
    let e = errors(&with_sources(
        "    sources:\n      gc:\n        metrics: [gc_total]\n        from: []\n",
    ));
    assert!(
        e.iter()
            .any(|e| e.line == 15 && e.message.contains("source \"gc\" has no probe sets")),
        "{}",
        ConfigErrors(e)
    );
}

#[test]
fn probe_specs_and_functions_in_sets_are_checked_as_elsewhere() {
    expect_only_error(
        &with_sources(&TWO_SETS.replace("on_gc_collect", "on-gc")),
        21,
        &[
            "source \"gc\": uprobes probe \"gc_collect_main\"",
            "not a C identifier",
        ],
    );
}
