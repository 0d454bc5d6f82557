//! Config parsing and validation: every error names `test.yaml:LINE:` of the
//! node at fault and says what is wrong. One file per concern; the configs
//! and helpers they share are here.

use super::*;

mod attachment;
mod code;
mod decoders;
mod errors;
mod histograms;
mod labels;
mod names;
mod probes;
mod program_api;
mod selectors;
mod shape;
mod sources;
mod valid;
mod warnings;
mod yaml;

/// The original project's README gunicorn example, with `object:` instead of
/// `code:`. Line numbers are asserted in the tests; keep them stable.
const GUNICORN: &str = r#"programs:
  - name: gc_total
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 8
              decoders:
                - name: uint
    usdt:
      gc__start: trace_gc__start
    attachment:
      binary_name: "gunicorn"
    object: gc.bpf.o
"#;

/// A config that uses every feature: histograms of each bucket type, every
/// decoder, all probe kinds, inline code with cflags, `attachments`.
const FULL: &str = r#"programs:
  - name: python_gc
    metrics:
      counters:
        - name: gc_total
          help: Total number of gc events
          table: gc_counts
          labels:
            - name: gen
              size: 4
              padding: 4
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    "0": young
                    "1": middle
                  allow_unknown: true
            - name: comm
              size: 16
              decoders:
                - name: string
                - name: regexp
                  regexps:
                    - ^gunicorn
                    - ^python[0-9.]*$
      histograms:
        - name: gc_latency_seconds
          help: GC latency
          table: gc_latency
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 26
          bucket_multiplier: 0.000001
          labels:
            - name: bucket
              size: 8
              decoders:
                - name: uint
        - name: alloc_bytes
          help: ""
          table: alloc_sizes
          bucket_type: linear
          bucket_min: 1
          bucket_max: 100
          labels:
            - name: kind
              size: 8
              decoders:
                - name: hex
            - name: bucket
              size: 8
              decoders:
                - name: uint
        - name: queue_depth
          help:
          table: depths
          bucket_type: fixed
          bucket_keys: [1, 5, 10, 50]
          labels:
            - name: bucket
              size: 8
              decoders:
                - name: int
    usdt:
      python:gc__start: trace_gc_start
      gc__done: trace_gc_done
      /usr/lib/libpython3.11.so:python:function__entry: trace_entry
    uprobes:
      c:malloc: trace_malloc
    uretprobes:
      PyObject_GC_Collect: trace_collect_return
    attachments:
      binary_name: python3.11
    cflags:
      - -DDEPTH=4
    code: |
      int trace_gc_start(void *ctx) { return 0; }
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(Path::new("test.yaml"), text)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(_) => panic!("config was accepted, expected errors:\n{text}"),
        Err(e) => e.0,
    }
}

/// Asserts that some error is at `line` and mentions every one of `needles`;
/// returns it. On failure, shows all errors.
#[track_caller]
fn expect_error(text: &str, line: u64, needles: &[&str]) -> ConfigError {
    let errors = errors(text);
    let found = errors.iter().find(|e| {
        e.line == line
            && e.to_string().starts_with(&format!("test.yaml:{line}:"))
            && needles.iter().all(|n| e.message.contains(n))
    });
    match found {
        Some(e) => e.clone(),
        None => panic!(
            "no error at line {line} mentioning {needles:?}; got:\n{}",
            ConfigErrors(errors)
        ),
    }
}

/// Like [`expect_error`], and the config has exactly this one problem.
#[track_caller]
fn expect_only_error(text: &str, line: u64, needles: &[&str]) -> ConfigError {
    let all = errors(text);
    assert_eq!(
        all.len(),
        1,
        "expected one error, got:\n{}",
        ConfigErrors(all)
    );
    expect_error(text, line, needles)
}

/// `GUNICORN` with `from` replaced by `to` (which must occur exactly once).
fn gunicorn_with(from: &str, to: &str) -> String {
    assert_eq!(
        GUNICORN.matches(from).count(),
        1,
        "{from:?} must occur once"
    );
    GUNICORN.replace(from, to)
}
