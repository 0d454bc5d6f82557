//! Where the BPF code comes from: `object:`, `code:`, `cflags:`.

use super::*;

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
