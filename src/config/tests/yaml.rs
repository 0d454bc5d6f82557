//! YAML syntax errors: one readable line at the right position.

use super::*;

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let e = expect_only_error(
        "programs:\n  - name: a\n     usdt: x\n",
        3,
        &["YAML syntax error", "mapping values are not allowed"],
    );
    assert_eq!(e.column, 10);
    assert_eq!(
        e.to_string(),
        "test.yaml:3:10: mapping values are not allowed in this context (YAML syntax error)"
    );
    assert!(!e.message.contains('\n'), "one line: {:?}", e.message);
    assert!(
        !e.message.contains("line 3"),
        "no second location: {:?}",
        e.message
    );
}

#[test]
fn bad_indentation_is_one_readable_line() {
    let e = expect_only_error(
        "programs:\n  - name: a\n  usdt: x\n",
        3,
        &["YAML syntax error", "expected '-'"],
    );
    assert_eq!(e.column, 3);
    assert!(!e.message.contains('\n'));
    let e = expect_only_error("programs:\n\t- name: a\n", 2, &["tabs"]);
    assert!(!e.message.contains('\n'));
}

#[test]
fn unclosed_quote_and_bracket_are_syntax_errors() {
    expect_only_error(
        "programs:\n  - name: 'a\n",
        2,
        &["YAML syntax error", "unclosed quote"],
    );
    expect_only_error(
        "programs:\n  - name: a\n    usdt: {a: 1\n",
        3,
        &["YAML syntax error", "unclosed bracket"],
    );
}

#[test]
fn unclosed_flow_sequence() {
    let e = expect_only_error("programs: [\n", 1, &["unclosed bracket"]);
    assert!(
        e.to_string()
            .starts_with("test.yaml:1:11: unclosed bracket"),
        "{e}"
    );
}

#[test]
fn unknown_anchor() {
    let e = expect_only_error("programs: *nowhere\n", 1, &["unknown anchor"]);
    assert!(!e.message.contains("syntax"), "{e}");
}

#[test]
fn empty_file_is_reported() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let e = &errors(text)[0];
        assert!(e.message.contains("empty"), "{e}");
        assert!(e.message.contains("programs"), "{e}");
    }
}

/// An error placed just after a non-ASCII character and a colon (found by
/// fuzzing: looking for the key before the error sliced inside `é`).
#[test]
fn non_ascii_before_a_colon_at_the_error() {
    let e = expect_only_error("# café:", 1, &["empty"]);
    assert_eq!(e.column, 8);
}
