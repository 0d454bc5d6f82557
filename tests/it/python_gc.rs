//! A real runtime: Debian's python3.11, with the shipped example
//! (examples/python.yaml). Collections per generation equal what the
//! interpreter reports through `gc.get_stats()` over the same interval; every
//! collection has one pause observation; import calls are counted exactly.

use crate::common::{self, fixtures, require_bpf, Exporter, Python, Samples};

#[test]
fn python_example_matches_gc_get_stats_and_counts_imports() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut python) = Python::start("uexp-py-gc") else {
        return;
    };
    let exporter =
        Exporter::start(&fixtures().example_config("python", "python3.11", "uexp-py-gc"));
    let pid = python.pid().to_string();
    let pauses = |s: &Samples| {
        s.get(
            "userspace_exporter_python_gc_pause_seconds_count",
            &[("pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let imports = |s: &Samples| {
        s.get(
            "userspace_exporter_python_import_duration_seconds_count",
            &[("pid", &pid)],
        )
        .unwrap_or(0.0)
    };

    let s0 = exporter.samples();
    let before = python.gc_collections();
    let found_before = python.gc_found();
    assert_eq!(python.ask("work 30"), "ok");
    assert_eq!(python.ask("import 25"), "ok");
    let after = python.gc_collections();
    let found_after = python.gc_found();
    let s1 = exporter.samples();
    // Objects found unreachable per generation, as gc.get_stats() sums them.
    let found_reported: Vec<f64> = (0..3).map(|g| found_after[g] - found_before[g]).collect();
    let found = |s: &Samples, g: usize| {
        s.get(
            "userspace_exporter_python_gc_objects_collected_total",
            &[("generation", &g.to_string()), ("pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let found_counted: Vec<f64> = (0..3).map(|g| found(&s1, g) - found(&s0, g)).collect();
    assert!(
        found_reported.iter().sum::<f64>() >= 30.0 * 2000.0,
        "30 rounds of 2000 cycles: {found_reported:?}"
    );
    assert_eq!(
        found_counted, found_reported,
        "objects collected per generation"
    );

    let reported: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let (e0, e1) = (s0.python_collections(&pid), s1.python_collections(&pid));
    let counted: Vec<f64> = (0..3).map(|g| e1[g] - e0[g]).collect();
    // 30 explicit collections (10 per generation) plus the automatic ones the allocations trigger.
    assert!(reported.iter().all(|&n| n >= 10.0), "{reported:?}");
    assert_eq!(
        counted, reported,
        "exported deltas vs gc.get_stats() deltas per generation"
    );
    // Every gc__start is followed by a gc__done: one pause observation per collection.
    assert_eq!(pauses(&s1) - pauses(&s0), reported.iter().sum::<f64>());
    let pause_sum = s1.value(
        "userspace_exporter_python_gc_pause_seconds_sum",
        &[("pid", &pid)],
    );
    assert!(
        pause_sum > 0.0 && pause_sum < 10.0,
        "pause sum {pause_sum} s"
    );
    // json is loaded already: each __import__ is exactly one PyImport_ImportModuleLevelObject call.
    assert_eq!(imports(&s1) - imports(&s0), 25.0);
    let inf = s1.value(
        "userspace_exporter_python_import_duration_seconds_bucket",
        &[("le", "+Inf"), ("pid", &pid)],
    );
    assert_eq!(inf, imports(&s1));
}

/// The detailed example (examples/python_gc_detail.yaml): counters and gauges
/// from the members of one struct value per generation, an in-flight gauge
/// and a per-generation pause histogram, against what the interpreter reports
/// (`gc.get_stats()`, and `gc.callbacks` for each generation's latest
/// collection).
#[test]
fn python_gc_detail_example_matches_gc_get_stats_and_gc_callbacks() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut python) = Python::start("uexp-py-detail") else {
        return;
    };
    let exporter = Exporter::start(&fixtures().example_config(
        "python_gc_detail",
        "python3.11",
        "uexp-py-detail",
    ));
    let pid = python.pid().to_string();
    let before = python.gc_collections();
    let found_before = python.gc_found();
    assert_eq!(python.ask("work 30"), "ok");
    let after = python.gc_collections();
    let found_after = python.gc_found();
    let latest: Vec<f64> = serde_json::from_str(&python.ask("last")).unwrap();
    let s = exporter.samples();
    let per_generation = |name: &str| -> Vec<f64> {
        (0..3)
            .map(|g| {
                s.get(
                    &format!("userspace_exporter_{name}"),
                    &[("generation", &g.to_string()), ("pid", &pid)],
                )
                .unwrap_or(-1.0)
            })
            .collect()
    };
    let collections: Vec<f64> = (0..3).map(|g| after[g] - before[g]).collect();
    let found: Vec<f64> = (0..3).map(|g| found_after[g] - found_before[g]).collect();
    assert!(collections.iter().all(|&n| n >= 10.0), "{collections:?}");
    assert_eq!(
        per_generation("python_gc_runs_total"),
        collections,
        "{}",
        exporter.logs()
    );
    assert_eq!(per_generation("python_gc_found_objects_total"), found);
    assert_eq!(per_generation("python_gc_last_found_objects"), latest);
    assert_eq!(
        s.get("userspace_exporter_python_gc_running", &[("pid", &pid)]),
        Some(0.0)
    );
    // One pause observation per collection; the histogram's sum is the
    // counter of the same nanoseconds; the longest pause is within the total.
    assert_eq!(
        per_generation("python_gc_pause_duration_seconds_count"),
        collections
    );
    let totals = per_generation("python_gc_pause_seconds_total");
    let sums = per_generation("python_gc_pause_duration_seconds_sum");
    let longest = per_generation("python_gc_longest_pause_seconds");
    for g in 0..3 {
        assert!(
            (sums[g] - totals[g]).abs() <= 1e-12 * totals[g].max(1.0),
            "generation {g}: {} vs {}",
            sums[g],
            totals[g]
        );
        assert!(
            longest[g] > 0.0 && longest[g] <= totals[g],
            "{longest:?} {totals:?}"
        );
    }
    // The pause histogram as a native histogram: Debian's Prometheus with
    // native histograms on scrapes it over protobuf; its count and sum per
    // generation equal the text scrape's (the interpreter is idle now).
    if !prometheus_installed() {
        return;
    }
    let prometheus = common::Prometheus::start_with(
        &format!(
            "  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            exporter.port
        ),
        &["--enable-feature=native-histograms"],
    );
    for g in 0..3 {
        let series = format!(
            "userspace_exporter_python_gc_pause_duration_seconds{{pid=\"{pid}\",generation=\"{g}\"}}"
        );
        let count = common::wait_for(std::time::Duration::from_secs(30), || {
            prometheus.query(&format!("histogram_count({series})"))
        });
        assert_eq!(
            count.map(|c| c.parse::<f64>().unwrap()),
            Some(collections[g]),
            "generation {g}; up: {:?}",
            prometheus.query("up")
        );
        let sum = prometheus
            .query(&format!("histogram_sum({series})"))
            .map(|v| v.parse::<f64>().unwrap());
        assert_eq!(sum, Some(sums[g]), "generation {g}");
    }
}

/// Whether Debian's Prometheus is installed (a failure under CI=true).
fn prometheus_installed() -> bool {
    common::require_command("prometheus", &["--version"], "scripts/setup.sh installs it")
}
