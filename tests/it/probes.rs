//! End to end on real probes: the exporter binary attaches USDT probes (plain,
//! semaphore-guarded, in a library), uprobes and uretprobes to running fixture
//! targets, and every count and argument it exports is what the targets did.

use crate::common::{self, fixtures, require_bpf, Exporter, Samples, Target};

fn config(comm: &str) -> String {
    let f = fixtures();
    format!(
        r#"
programs:
  - name: fixture_usdt
    object: {usdt}
    metrics:
      counters:
        - name: fixture_hits_total
          help: fixture:hit probes by first argument
          table: hits
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: fixture_hits_percpu_total
          help: the same, from a per-CPU hash
          table: hits_percpu
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: fixture_hits_mod4_total
          help: the same, by argument mod 4, from an array
          table: hits_mod4
          labels:
            - name: slot
              size: 4
              decoders: [{{name: uint}}]
        - name: fixture_hits_mod4_percpu_total
          help: the same, from a per-CPU array
          table: hits_mod4_percpu
          labels:
            - name: slot
              size: 4
              decoders: [{{name: uint}}]
        - name: fixture_guarded_total
          help: semaphore-guarded probe hits
          table: guarded_hits
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: fixture_lib_events_total
          help: USDT probe hits in libfixture.so
          table: lib_hits
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: fixture_tagged_total
          help: tagged probe hits by argument and string argument
          table: tagged
          labels:
            - name: arg
              size: 4
              padding: 4
              decoders: [{{name: uint}}]
            - name: text
              size: 16
              decoders: [{{name: string}}]
        - name: fixture_tagged_named_total
          help: the same keys through static_map and regexp decoders
          table: tagged
          labels:
            - name: arg
              size: 4
              padding: 4
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    "1": one
                    "2": two
            - name: text
              size: 16
              decoders:
                - name: string
                - name: regexp
                  regexps: ["^name-[123]$"]
        - name: fixture_tagged_merged_total
          help: the same keys by argument class, where several keys share a class
          table: tagged
          labels:
            - name: class
              size: 4
              padding: 4
              decoders:
                - name: uint
                - name: static_map
                  static_map:
                    "1": low
                    "2": low
                    "3": high
            - name: text
              size: 16
              decoders:
                - name: string
                - name: static_map
                  static_map:
                    name-1: known
                    name-2: known
                    name-3: known
    usdt:
      fixture:hit: on_hit
      guarded: on_guarded
      fixturelib:event: on_lib_event
      {comm}:fixture:tagged: on_tagged
    attachment:
      binary_name: {comm}
  - name: fixture_uprobes
    object: {uprobe}
    metrics:
      counters:
        - name: fixture_calls_total
          help: target_add calls by first argument
          table: calls
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
        - name: fixture_lib_calls_total
          help: lib_event calls by argument
          table: lib_calls
          labels:
            - name: arg
              size: 8
              decoders: [{{name: uint}}]
      histograms:
        - name: fixture_return_value
          help: target_add return values
          table: return_values
          bucket_type: exp2
          bucket_min: 0
          bucket_max: 15
          labels:
            - name: bucket
              size: 8
              decoders: [{{name: uint}}]
    uprobes:
      target_add: on_add_entry
      fixture:lib_event: on_lib_entry
    uretprobes:
      target_add: on_add_return
    attachment:
      binary_name: {comm}
"#,
        usdt = f.object("usdt_counts").display(),
        uprobe = f.object("uprobe_counts").display(),
    )
}

#[test]
fn counts_and_arguments_are_exact_per_process() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-exact");
    let mut b = Target::start("uexp-exact");
    let exporter = Exporter::start(&config("uexp-exact"));
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());

    // The guarded probe's semaphore is raised by the kernel on attach.
    assert_ne!(
        a.cmd("sem"),
        "sem 0",
        "semaphore not raised: {}",
        exporter.logs()
    );
    for cmd in [
        "usdt 5 7",
        "usdt 3 9",
        "guarded 4 2",
        "lib 6 11",
        "call 10 0",
        "comm 2 1",
        "comm 3 3",
        "comm 1 4",
    ] {
        a.cmd(cmd);
    }
    for cmd in ["usdt 2 7", "call 3 100"] {
        b.cmd(cmd);
    }
    let s = exporter.samples();
    let v = |name: &str, labels: &[(&str, &str)]| s.value(name, labels);

    // Plain USDT with arguments, four map types, per process.
    for name in [
        "userspace_exporter_fixture_hits_total",
        "userspace_exporter_fixture_hits_percpu_total",
    ] {
        assert_eq!(v(name, &[("arg", "7"), ("pid", &pa)]), 5.0);
        assert_eq!(v(name, &[("arg", "9"), ("pid", &pa)]), 3.0);
        assert_eq!(v(name, &[("arg", "7"), ("pid", &pb)]), 2.0);
        assert_eq!(s.get(name, &[("arg", "9"), ("pid", &pb)]), None);
    }
    for name in [
        "userspace_exporter_fixture_hits_mod4_total",
        "userspace_exporter_fixture_hits_mod4_percpu_total",
    ] {
        // Arrays export every slot, zeros included.
        assert_eq!(v(name, &[("slot", "0"), ("pid", &pa)]), 0.0);
        assert_eq!(v(name, &[("slot", "1"), ("pid", &pa)]), 3.0);
        assert_eq!(v(name, &[("slot", "2"), ("pid", &pa)]), 0.0);
        assert_eq!(v(name, &[("slot", "3"), ("pid", &pa)]), 5.0);
        assert_eq!(v(name, &[("slot", "3"), ("pid", &pb)]), 2.0);
        assert_eq!(s.series(name).len(), 8);
    }
    // Semaphore-guarded USDT, USDT in a shared library, uprobe in a shared library.
    assert_eq!(
        v(
            "userspace_exporter_fixture_guarded_total",
            &[("arg", "2"), ("pid", &pa)]
        ),
        4.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_lib_events_total",
            &[("arg", "11"), ("pid", &pa)]
        ),
        6.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_lib_calls_total",
            &[("arg", "11"), ("pid", &pa)]
        ),
        6.0
    );
    // String arguments and decoder chains.
    assert_eq!(
        v(
            "userspace_exporter_fixture_tagged_total",
            &[("arg", "1"), ("text", "name-1"), ("pid", &pa)]
        ),
        2.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_tagged_total",
            &[("arg", "3"), ("text", "name-3"), ("pid", &pa)]
        ),
        3.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_tagged_total",
            &[("arg", "4"), ("text", "name-4"), ("pid", &pa)]
        ),
        1.0
    );
    let named = s.series("userspace_exporter_fixture_tagged_named_total");
    assert_eq!(named.len(), 2, "regexp must drop name-4: {named:?}");
    assert_eq!(
        v(
            "userspace_exporter_fixture_tagged_named_total",
            &[("arg", "one"), ("text", "name-1"), ("pid", &pa)]
        ),
        2.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_tagged_named_total",
            &[("arg", "unknown:3"), ("text", "name-3"), ("pid", &pa)]
        ),
        3.0
    );

    // uprobe: calls by argument; uretprobe: histogram of return values 0..9 and 100..102.
    assert_eq!(
        v(
            "userspace_exporter_fixture_calls_total",
            &[("arg", "0"), ("pid", &pa)]
        ),
        10.0
    );
    assert_eq!(
        v(
            "userspace_exporter_fixture_calls_total",
            &[("arg", "100"), ("pid", &pb)]
        ),
        3.0
    );
    let h = "userspace_exporter_fixture_return_value";
    // slots: 0,1 -> 0; 2 -> 1; 3,4 -> 2; 5..8 -> 3; 9 -> 4
    let expected_a = [
        ("1", 2.0),
        ("2", 3.0),
        ("4", 5.0),
        ("8", 9.0),
        ("16", 10.0),
        ("32768", 10.0),
        ("+Inf", 10.0),
    ];
    for (le, count) in expected_a {
        assert_eq!(
            v(&format!("{h}_bucket"), &[("le", le), ("pid", &pa)]),
            count,
            "le={le}"
        );
    }
    assert_eq!(v(&format!("{h}_count"), &[("pid", &pa)]), 10.0);
    assert_eq!(v(&format!("{h}_sum"), &[("pid", &pa)]), 45.0);
    assert_eq!(
        v(&format!("{h}_bucket"), &[("le", "64"), ("pid", &pb)]),
        0.0
    );
    assert_eq!(
        v(&format!("{h}_bucket"), &[("le", "128"), ("pid", &pb)]),
        3.0
    );
    assert_eq!(v(&format!("{h}_sum"), &[("pid", &pb)]), 303.0);
    assert_eq!(s.series(&format!("{h}_bucket")).len(), 2 * 17);

    // Self-metrics: one enabled program per (program, process), with kernel tags.
    for pid in [&pa, &pb] {
        for name in ["fixture_usdt", "fixture_uprobes"] {
            assert_eq!(
                v(
                    "userspace_exporter_enabled_programs",
                    &[("name", name), ("pid", pid)]
                ),
                1.0
            );
        }
    }
    let progs = s.series("userspace_exporter_ebpf_programs");
    assert_eq!(progs.len(), 2 * (4 + 3), "{progs:#?}");
    assert!(
        progs
            .iter()
            .all(|(k, _)| regex::Regex::new(r#"tag="[0-9a-f]{16}""#)
                .unwrap()
                .is_match(k)),
        "{progs:#?}"
    );
    assert!(s
        .series("userspace_exporter_attach_errors_total")
        .is_empty());
}

/// Keys that decode to one label set are summed, scrape after scrape, from the
/// decoded-label cache (its memo of each process's keys, and past its bound).
#[test]
fn merged_label_sets_stay_exact_across_scrapes_and_past_the_cache_bound() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    for cache_keys in ["131072", "1", "0"] {
        let mut a = Target::start("uexp-merged");
        let mut b = Target::start("uexp-merged");
        let exporter = Exporter::start_with(
            &config("uexp-merged"),
            &["--scrape.label-cache-keys", cache_keys],
        );
        let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
        let merged = "userspace_exporter_fixture_tagged_merged_total";
        let hist = "userspace_exporter_fixture_return_value";
        for cmd in ["comm 2 1", "comm 3 2", "comm 4 3", "call 3 1"] {
            a.cmd(cmd);
        }
        b.cmd("comm 5 2");
        let s = exporter.samples();
        let at = |s: &Samples, class: &str, pid: &str| {
            let text = if class.starts_with("unknown") {
                "unknown:name-4"
            } else {
                "known"
            };
            s.get(merged, &[("class", class), ("text", text), ("pid", pid)])
        };
        assert_eq!(at(&s, "low", &pa), Some(5.0), "cache {cache_keys}");
        assert_eq!(at(&s, "high", &pa), Some(4.0), "cache {cache_keys}");
        assert_eq!(at(&s, "low", &pb), Some(5.0), "cache {cache_keys}");
        assert_eq!(s.series(merged).len(), 3, "cache {cache_keys}");
        // Old keys again, and keys new to the cache, in both processes.
        for cmd in ["comm 1 1", "comm 6 4", "call 2 1", "call 1 5"] {
            a.cmd(cmd);
        }
        for cmd in ["comm 2 3", "comm 1 2"] {
            b.cmd(cmd);
        }
        let s = exporter.samples();
        assert_eq!(at(&s, "low", &pa), Some(6.0), "cache {cache_keys}");
        assert_eq!(at(&s, "high", &pa), Some(4.0), "cache {cache_keys}");
        assert_eq!(at(&s, "unknown:4", &pa), Some(6.0), "cache {cache_keys}");
        assert_eq!(at(&s, "low", &pb), Some(6.0), "cache {cache_keys}");
        assert_eq!(at(&s, "high", &pb), Some(2.0), "cache {cache_keys}");
        assert_eq!(s.series(merged).len(), 5, "cache {cache_keys}");
        // Return values 1,2,3 (3 calls), 1,2 (2 calls) and 5 (1 call): exp2
        // slots 0,1,2,0,1,3 -> buckets le=1: 2, le=2: 4, le=4: 5, le=8: 6.
        for (le, count) in [
            ("1", 2.0),
            ("2", 4.0),
            ("4", 5.0),
            ("8", 6.0),
            ("+Inf", 6.0),
        ] {
            assert_eq!(
                s.get(&format!("{hist}_bucket"), &[("le", le), ("pid", &pa)]),
                Some(count),
                "cache {cache_keys} le={le}"
            );
        }
        assert_eq!(s.get(&format!("{hist}_sum"), &[("pid", &pa)]), Some(14.0));
        assert!(s
            .series("userspace_exporter_decoder_errors_total")
            .is_empty());
    }
}

#[test]
fn scraping_twice_reads_live_values() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut a = Target::start("uexp-live");
    let exporter = Exporter::start(&config("uexp-live"));
    let pa = a.pid().to_string();
    a.cmd("usdt 1 5");
    let first = exporter.samples().value(
        "userspace_exporter_fixture_hits_total",
        &[("arg", "5"), ("pid", &pa)],
    );
    a.cmd("usdt 41 5");
    let second = exporter.samples().value(
        "userspace_exporter_fixture_hits_total",
        &[("arg", "5"), ("pid", &pa)],
    );
    assert_eq!((first, second), (1.0, 42.0));
}

#[test]
fn a_missing_probe_is_counted_and_the_rest_keeps_working() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-missing";
    let mut a = Target::start(comm);
    let f = fixtures();
    let config = format!(
        r#"
programs:
  - name: partly_missing
    object: {usdt}
    metrics:
      counters:
        - name: hits_total
          help: hits
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
      fixture:no_such_probe: on_guarded
    attachment: {{binary_name: {comm}}}
  - name: all_missing
    object: {uprobe}
    metrics:
      counters:
        - name: calls_total
          help: calls
          table: calls
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    uprobes:
      target_ad: on_add_entry
    attachment: {{binary_name: {comm}}}
"#,
        usdt = f.object("usdt_counts").display(),
        uprobe = f.object("uprobe_counts").display(),
    );
    let exporter = Exporter::start(&config);
    let pa = a.pid().to_string();
    a.cmd("usdt 3 1");
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_hits_total",
            &[("arg", "1"), ("pid", &pa)]
        ),
        3.0
    );
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[
                ("name", "partly_missing"),
                ("probe", "fixture:no_such_probe")
            ]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[("name", "all_missing"), ("probe", "target_ad")]
        ),
        1.0
    );
    assert_eq!(
        s.get(
            "userspace_exporter_enabled_programs",
            &[("name", "all_missing"), ("pid", &pa)]
        ),
        None
    );
    let page = exporter.page("/");
    assert!(page.contains("no_such_probe"), "{page}");
    // The missing symbol's error suggests the one that exists.
    assert!(page.contains("similar symbols: target_add"), "{page}");
    assert!(page.contains("href=\"/metrics\""));
}

#[test]
fn samples_parser_reads_escapes() {
    let _machine = common::shared();
    let s = Samples::parse("m{a=\"x\\\"y\",b=\"1\"} 2\n");
    assert_eq!(s.value("m", &[("b", "1"), ("a", "x\"y")]), 2.0);
}

#[test]
fn keys_a_decoder_rejects_are_counted_not_exported() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-decoder";
    let mut a = Target::start(comm);
    let config = format!(
        r#"
programs:
  - name: decode
    object: {usdt}
    metrics:
      counters:
        - name: tagged_total
          help: a string label decoded as a number fails for every key
          table: tagged
          labels:
            - {{name: arg, size: 4, padding: 4, decoders: [{{name: uint}}]}}
            - {{name: text, size: 16, decoders: [{{name: string}}, {{name: uint}}]}}
    usdt:
      fixture:tagged: on_tagged
    attachment: {{binary_name: {comm}}}
"#,
        usdt = fixtures().object("usdt_counts").display(),
    );
    let exporter = Exporter::start(&config);
    a.cmd("comm 2 1");
    a.cmd("comm 1 3");
    let s = exporter.samples();
    assert!(s.series("userspace_exporter_tagged_total").is_empty());
    // Two keys, each rejected once per scrape.
    assert_eq!(
        s.value(
            "userspace_exporter_decoder_errors_total",
            &[("name", "decode"), ("metric", "tagged_total")]
        ),
        2.0
    );
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_decoder_errors_total",
            &[("name", "decode"), ("metric", "tagged_total")]
        ),
        4.0
    );
}
