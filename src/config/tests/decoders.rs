//! Label decoders as configured: names and parameters.

use super::*;

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
