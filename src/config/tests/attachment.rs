//! The `attachment:` key of a program.

use super::*;

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
