//! Metric labels and process labels.

use super::*;

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

// ---------------------------------------------------------------- process labels

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

#[test]
fn pid_keyed_metrics_each_name_the_pid_their_keys_hold() {
    let base = "programs:\n  - name: p\n    object: p.bpf.o\n    usdt: {gc__start: f}\n    attachment: {binary_name: x}\n    instances: pid_keyed\n    process_labels: [comm]\n    metrics:\n      counters:\n        - name: c_total\n          help: h\n          table: t\n";
    let pid = "{name: pid, size: 8, decoders: [{name: pid}]}";
    let arg = "{name: arg, size: 8, decoders: [{name: uint}]}";
    let config = parse(&format!("{base}          labels: [{pid}, {arg}]\n")).unwrap();
    let program = &config.programs[0].value;
    assert_eq!(
        program.instances.as_ref().unwrap().value,
        crate::config::InstanceMode::PidKeyed
    );
    let labels = &program.metrics.counters[0].value.labels;
    assert_eq!(
        crate::config::PidKey::of(labels),
        Some(crate::config::PidKey { offset: 0, size: 8 })
    );
    // After an 8-byte label and its padding.
    let config = parse(&format!(
        "{base}          labels: [{{name: arg, size: 4, padding: 4, decoders: [{{name: uint}}]}}, {{name: pid, size: 4, decoders: [{{name: pid}}]}}]\n"
    ))
    .unwrap();
    let labels = &config.programs[0].value.metrics.counters[0].value.labels;
    let key = crate::config::PidKey::of(labels).unwrap();
    assert_eq!(key, crate::config::PidKey { offset: 8, size: 4 });
    let mut raw = [0u8; 12];
    raw[8..].copy_from_slice(&4242u32.to_ne_bytes());
    assert_eq!(key.read(&raw), Some(4242));
    assert_eq!(key.read(&raw[..10]), None);

    // Without a pid label: said at the metric, with the label to add.
    let e = errors(&format!("{base}          labels: [{arg}]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 13, "{}", e[0]);
    assert!(e[0].message.contains("pid_keyed"), "{}", e[0]);
    assert!(
        e[0].message
            .contains("{name: pid, size: 8, decoders: [{name: pid}]}"),
        "{}",
        e[0]
    );

    // Two, a bad size, another name, another decoder in the chain.
    let e = errors(&format!("{base}          labels: [{pid}, {pid}]\n"));
    assert!(
        e.iter().any(|e| e.message.contains("a key holds one pid")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{base}          labels: [{{name: pid, size: 2, decoders: [{{name: pid}}]}}]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("a pid is 4 or 8 bytes"), "{}", e[0]);
    let e = errors(&format!(
        "{base}          labels: [{{name: process, size: 8, decoders: [{{name: pid}}]}}]\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("is named `pid`"), "{}", e[0]);
    let e = errors(&format!(
        "{base}          labels: [{{name: pid, size: 8, decoders: [{{name: pid}}, {{name: hex}}]}}]\n"
    ));
    assert!(
        e.iter().any(|e| e.message.contains("stands alone")),
        "{e:?}"
    );

    // The pid decoder outside pid_keyed: one error, at the decoder.
    let shared = base.replace("pid_keyed", "shared");
    let e = errors(&format!("{shared}          labels: [{pid}]\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].line, e[0].column), (13, 52), "{}", e[0]);
    assert!(e[0].message.contains("is not one"), "{}", e[0]);
}
