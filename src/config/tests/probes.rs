//! Probes: specs and the BPF functions they run.

use super::*;

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

#[test]
fn cpp_names_in_uprobe_specs() {
    let uprobes = |spec: &str| {
        gunicorn_with(
            "    usdt:\n      gc__start: trace_gc__start\n",
            &format!("    uprobes:\n      {spec}: trace_gc__start\n"),
        )
    };
    parse(&uprobes("node:v8::internal::Heap::Scavenge")).unwrap();
    parse(&uprobes(
        "node:v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)",
    ))
    .unwrap();
    parse(&uprobes("v8::internal::Heap::*")).unwrap();
    let e = expect_only_error(
        &uprobes("node:v8::internal::Heap::CollectGarbage(int"),
        14,
        &[
            "uprobes probe \"node:v8::internal::Heap::CollectGarbage(int\"",
            "has an unclosed `(` in its C++ name",
        ],
    );
    assert_eq!(e.column, 7);
    expect_only_error(
        &uprobes("node:v8::internal::Heap::"),
        14,
        &["ends with `::`: name the function after it"],
    );
}
