//! Histograms: bucket types, bounds and their limits.

use super::*;

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

#[test]
fn native_modes() {
    for (kind, mode, want) in [
        ("exp2", "both", NativeHistogram::Both),
        ("exp2zero", "only", NativeHistogram::Only),
        ("linear", "none", NativeHistogram::Classic),
        // `both` is the default for every type; linear and fixed just stay classic.
        ("linear", "both", NativeHistogram::Both),
    ] {
        let config = parse(&histogram(&format!(
            "          bucket_type: {kind}\n          bucket_max: 3\n          native: {mode}\n{SLOT_LABEL}"
        )))
        .unwrap();
        let h = &config.programs[0].value.metrics.histograms[0].value;
        assert_eq!(h.native, want, "{kind} {mode}");
    }
    let config = parse(&histogram(&format!(
        "          bucket_type: exp2\n          bucket_max: 3\n{SLOT_LABEL}"
    )))
    .unwrap();
    assert_eq!(
        config.programs[0].value.metrics.histograms[0].value.native,
        NativeHistogram::Both
    );
}

#[test]
fn native_only_needs_an_exp2_type() {
    let e = expect_only_error(
        &histogram(&format!(
            "          bucket_type: linear\n          bucket_max: 3\n          native: only\n{SLOT_LABEL}"
        )),
        10,
        &["\"h\"", "`native: only` needs bucket_type exp2 or exp2zero"],
    );
    assert_eq!(e.column, 19);
    expect_only_error(
        &histogram(&format!(
            "          bucket_type: exp2\n          bucket_max: 3\n          native: sometimes\n{SLOT_LABEL}"
        )),
        10,
        &["sometimes"],
    );
}
