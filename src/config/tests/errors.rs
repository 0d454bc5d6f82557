//! Many errors in one file: all reported, in file order.

use super::*;

#[test]
fn every_error_is_reported_in_file_order() {
    let text = r#"programs:
  - name: first
    metrics:
      counters:
        - name: bad-name
          help: h
          table: t
          labels:
            - name: pid
              size: 0
              decoders:
                - name: nope
    usdt:
      "a:b:c:d": 1fn
    attachment:
      binary_name: ""
    object: a.o
    cflags: [-O2]
  - name: first
"#;
    let errors = errors(text);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [5, 9, 10, 12, 14, 14, 16, 18, 19, 19, 19, 19],
        "{}",
        ConfigErrors(errors.clone())
    );
    let all = ConfigErrors(errors).to_string();
    for needle in [
        "\"bad-name\"",
        "\"pid\"",
        "size 0",
        "unknown decoder",
        "4 `:`-separated parts",
        "not a C identifier",
        "`binary_name` is empty",
        "`cflags:`",
        "used twice",
        "has no BPF code",
        "has no probes",
        "has no `attachment:`",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    // One error per line of the Display.
    assert_eq!(all.lines().count(), 12);
    assert!(all.lines().all(|l| l.starts_with("test.yaml:")));
}
