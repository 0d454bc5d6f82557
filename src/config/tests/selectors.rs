//! Attachment selectors: their fields, lists of alternatives, exclusions.

use super::*;

/// A one-program config whose attachment block (`block`, with its key, lines
/// indented 4) starts on line 5.
fn with_attachment(block: &str) -> String {
    format!("programs:\n  - name: x\n    object: x.o\n    usdt: {{a: f}}\n{block}")
}

/// The alternatives of the only program's attachment.
fn alternatives(config: &Config) -> (Vec<AttachmentSelector>, bool) {
    let a = &config.programs[0].value.attachment().unwrap().value;
    (a.alternatives.clone(), a.is_list)
}

#[test]
fn every_selector_field_parses() {
    let text = with_attachment(
        r#"    attachment:
      binary_name: gunicorn
      exe_path: "/usr/bin/python3*"
      cmdline: "--workers \\d+"
      parent_binary_name: bash
      any_ancestor: true
      pid: 1234
      pid_file: /run/app.pid
      cgroup: "/kubepods/**/pod1234*/**"
      maps: "**/libpython3.*.so*"
      exclude: {exe_path: /usr/bin/foo}
"#,
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(!is_list);
    assert_eq!(
        alts,
        [AttachmentSelector {
            binary_name: Some("gunicorn".into()),
            exe_path: Some("/usr/bin/python3*".into()),
            cmdline: Some(r"--workers \d+".into()),
            parent_binary_name: Some("bash".into()),
            any_ancestor: true,
            pid: Some(1234),
            pid_file: Some(PathBuf::from("/run/app.pid")),
            cgroup: Some("/kubepods/**/pod1234*/**".into()),
            maps: Some("**/libpython3.*.so*".into()),
            exclude: Some(Exclusions {
                selectors: vec![AttachmentSelector {
                    exe_path: Some("/usr/bin/foo".into()),
                    ..Default::default()
                }],
                is_list: false,
            }),
        }]
    );
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn each_selector_field_alone_is_enough() {
    for field in [
        "binary_name: gunicorn",
        "exe_path: /usr/bin/python3",
        "cmdline: gunicorn",
        "parent_binary_name: bash",
        "pid: 1",
        "pid_file: /run/a.pid",
        "cgroup: /system.slice/nginx.service",
        "maps: \"**/libpython3.*.so*\"",
    ] {
        let config = parse(&with_attachment(&format!("    attachment: {{{field}}}\n")))
            .unwrap_or_else(|e| panic!("{field}: {e}"));
        let (alts, _) = alternatives(&config);
        assert_eq!(alts.len(), 1);
        assert!(!alts[0].is_empty(), "{field}");
    }
}

#[test]
fn binary_name_only_form_is_unchanged() {
    let config = parse(GUNICORN).unwrap();
    let a = &config.programs[0].value.attachment().unwrap().value;
    assert_eq!(
        *a,
        Attachment::single(AttachmentSelector {
            binary_name: Some("gunicorn".into()),
            ..Default::default()
        })
    );
    let config = parse(&gunicorn_with("    attachment:\n", "    attachments:\n")).unwrap();
    let a = &config.programs[0].value.attachment().unwrap().value;
    assert_eq!(a.alternatives[0].binary_name.as_deref(), Some("gunicorn"));
    assert!(!a.is_list);
}

#[test]
fn attachment_may_be_a_list_of_alternatives() {
    let config = parse(&with_attachment(
        "    attachment: [{binary_name: python3.11}, {exe_path: \"/opt/*/bin/python3\"}]\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(is_list);
    assert_eq!(alts.len(), 2);
    assert_eq!(alts[0].binary_name.as_deref(), Some("python3.11"));
    assert_eq!(alts[1].exe_path.as_deref(), Some("/opt/*/bin/python3"));

    // Block style, under the other spelling, with exclusions per alternative.
    let config = parse(&with_attachment(
        r#"    attachments:
      - binary_name: gunicorn
        exclude:
          - cmdline: "--check-config"
          - parent_binary_name: cron
      - cgroup: /system.slice/app.service
        exclude: {binary_name: sh}
"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let (alts, is_list) = alternatives(&config);
    assert!(is_list);
    assert_eq!(alts.len(), 2);
    let ex0 = alts[0].exclude.as_ref().unwrap();
    assert!(ex0.is_list);
    assert_eq!(ex0.selectors.len(), 2);
    assert_eq!(ex0.selectors[0].cmdline.as_deref(), Some("--check-config"));
    assert_eq!(ex0.selectors[1].parent_binary_name.as_deref(), Some("cron"));
    let ex1 = alts[1].exclude.as_ref().unwrap();
    assert!(!ex1.is_list);
    assert_eq!(alts[1].exclusions()[0].binary_name.as_deref(), Some("sh"));
    assert!(!alts[1].is_empty());
}

#[test]
fn relative_pid_file_resolves_against_the_config_directory() {
    let text = with_attachment(
        "    attachment:\n      - pid_file: run/app.pid\n      - pid_file: /run/abs.pid\n        exclude: {pid_file: other.pid}\n",
    );
    let config = Config::parse(Path::new("/etc/exporter/config.yaml"), &text).unwrap();
    let (alts, _) = alternatives(&config);
    assert_eq!(
        alts[0].pid_file.as_deref(),
        Some(Path::new("/etc/exporter/run/app.pid"))
    );
    assert_eq!(alts[1].pid_file.as_deref(), Some(Path::new("/run/abs.pid")));
    assert_eq!(
        alts[1].exclusions()[0].pid_file.as_deref(),
        Some(Path::new("/etc/exporter/other.pid"))
    );
}

#[test]
fn selector_without_fields_is_an_error_at_its_mapping() {
    // Only `any_ancestor`/`exclude`: they select nothing by themselves.
    let e = expect_error(
        &with_attachment("    attachment:\n      exclude: {pid: 3}\n"),
        6,
        &["program \"x\": attachment needs at least one of binary_name, exe_path, cmdline, parent_binary_name, pid, pid_file, cgroup"],
    );
    assert_eq!(e.column, 7);
    // The second alternative of a flow list.
    let e = expect_only_error(
        &with_attachment("    attachment: [{binary_name: a}, {}]\n"),
        5,
        &["attachment #2 needs at least one of"],
    );
    assert_eq!(e.column, 36);
    // An exclusion.
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      exclude:\n        - {pid: 4}\n        - {}\n"),
        9,
        &["attachment exclude #2 needs at least one of"],
    );
    assert_eq!(e.column, 11);
}

#[test]
fn empty_attachment_list_is_an_error() {
    let e = expect_only_error(
        &with_attachment("    attachments: []\n"),
        5,
        &["`attachments` is an empty list"],
    );
    assert_eq!(e.column, 5);
}

#[test]
fn attachment_of_the_wrong_shape_is_an_error() {
    let e = expect_only_error(
        &with_attachment("    attachment: gunicorn\n"),
        5,
        &[
            "`attachment`: expected a selector mapping",
            "list",
            "found string \"gunicorn\"",
        ],
    );
    assert_eq!(e.column, 17);
    assert!(!e.message.contains('\n'));
    expect_only_error(
        &with_attachment("    attachment: [gunicorn]\n"),
        5,
        &["expected a mapping", "found `gunicorn`"],
    );
    expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      exclude: 3\n"),
        7,
        &["`exclude`", "selector mapping"],
    );
}

#[test]
fn unknown_keys_in_alternatives_and_exclusions_are_errors() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      - binary_name: a\n      - exe: /bin/a\n"),
        7,
        &["unknown field `exe`", "`exe_path`"],
    );
    assert_eq!(e.column, 9);
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      binary_name: a\n      exclude:\n        comm: b\n",
        ),
        8,
        &["unknown field `comm`", "`binary_name`"],
    );
    assert_eq!(e.column, 9);
}

#[test]
fn cmdline_regex_that_does_not_compile_is_an_error_at_its_value() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      cmdline: \"(\"\n"),
        7,
        &["cmdline regex"],
    );
    assert_eq!(
        e.to_string(),
        "test.yaml:7:16: program \"x\": attachment cmdline regex \"(\" does not compile: unclosed group"
    );
}

#[test]
fn globs_that_do_not_compile_are_errors_at_their_values() {
    let e = expect_only_error(
        &with_attachment("    attachment: {exe_path: \"/usr/bin/[\"}\n"),
        5,
        &[
            "attachment exe_path glob \"/usr/bin/[\" does not compile",
            "unclosed character class",
        ],
    );
    assert_eq!(e.column, 28);
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      - binary_name: a\n      - binary_name: b\n        exclude:\n          - cgroup: /a\n          - cgroup: \"/{a,b\"\n",
        ),
        10,
        &["attachment #2 exclude #2 cgroup glob \"/{a,b\" does not compile", "unclosed alternate group"],
    );
    assert_eq!(e.column, 21);
}

#[test]
fn relative_globs_never_match_and_are_errors() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      exe_path: python3*\n"),
        6,
        &[
            "exe_path glob \"python3*\" never matches",
            "absolute",
            "\"**/python3*\"",
        ],
    );
    assert_eq!(e.column, 17);
    expect_only_error(
        &with_attachment("    attachment:\n      cgroup: system.slice/nginx.service\n"),
        6,
        &["cgroup glob", "never matches"],
    );
    // Leading `**`, `*`, `{`, `?`, `[` may match absolute paths: fine.
    for glob in [
        "**/bin/java",
        "*/python3",
        "{/usr,/opt}/bin/x",
        "?usr/bin/x",
        "[/]usr/x",
    ] {
        parse(&with_attachment(&format!(
            "    attachment: {{exe_path: \"{glob}\"}}\n"
        )))
        .unwrap_or_else(|e| panic!("{glob}: {e}"));
    }
}

#[test]
fn pid_must_be_a_positive_process_id() {
    for (pid, column) in [("0", 12), ("-5", 12), ("4294967296", 12)] {
        let e = expect_only_error(
            &with_attachment(&format!("    attachment:\n      pid: {pid}\n")),
            6,
            &[&format!("attachment pid {pid} is not a process id")],
        );
        assert_eq!(e.column, column);
    }
    expect_only_error(
        &with_attachment("    attachment:\n      pid: abc\n"),
        6,
        &["`pid`", "integer"],
    );
}

#[test]
fn empty_selector_fields_are_errors() {
    for field in [
        "binary_name",
        "exe_path",
        "cmdline",
        "parent_binary_name",
        "pid_file",
        "cgroup",
    ] {
        let e = expect_only_error(
            &with_attachment(&format!(
                "    attachment:\n      pid: 1\n      {field}: \"\"\n"
            )),
            7,
            &[&format!("attachment `{field}` is empty")],
        );
        assert_eq!(e.column, field.len() as u64 + 9, "{field}");
    }
}

#[test]
fn any_ancestor_needs_parent_binary_name() {
    let e = expect_only_error(
        &with_attachment("    attachment:\n      binary_name: a\n      any_ancestor: true\n"),
        7,
        &["`any_ancestor` applies to `parent_binary_name`"],
    );
    assert_eq!(e.column, 7);
    // `any_ancestor: false` says nothing: fine.
    parse(&with_attachment(
        "    attachment:\n      binary_name: a\n      any_ancestor: false\n",
    ))
    .unwrap();
}

#[test]
fn exclusions_cannot_be_nested() {
    let e = expect_only_error(
        &with_attachment(
            "    attachment:\n      binary_name: a\n      exclude:\n        pid: 3\n        exclude: {pid: 4}\n",
        ),
        9,
        &["attachment exclude has its own `exclude`"],
    );
    assert_eq!(e.column, 9);
}

#[test]
fn every_attachment_error_is_reported_in_file_order() {
    let text = with_attachment(
        r#"    attachment:
      - cmdline: "a("
        exe_path: bin/x
        pid: 0
        exclude:
          - {}
          - cgroup: "["
      - {}
      - any_ancestor: true
"#,
    );
    let errors = errors(&text);
    let got: Vec<(u64, u64)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        [
            (6, 18),
            (7, 19),
            (8, 14),
            (10, 13),
            (11, 21),
            (12, 9),
            (13, 9),
            (13, 9)
        ],
        "{}",
        ConfigErrors(errors.clone())
    );
}

#[test]
fn long_names_warn_wherever_they_are() {
    let config = parse(&with_attachment(
        "    attachment:\n      - binary_name: a\n      - parent_binary_name: gunicorn-worker-pool\n        exclude: {binary_name: another-very-long-name}\n",
    ))
    .unwrap();
    let warnings = config.warnings();
    let got: Vec<(u64, u64)> = warnings.iter().map(|w| (w.line, w.column)).collect();
    assert_eq!(got, [(7, 29), (8, 32)], "{warnings:?}");
    assert!(warnings[0]
        .message
        .contains("parent_binary_name \"gunicorn-worker-pool\""));
    assert!(warnings[0].message.contains("\"gunicorn-worker\""));
    assert!(warnings[1]
        .message
        .contains("binary_name \"another-very-long-name\""));
}
