//! A real runtime: Debian's ruby3.1, with the shipped example
//! (examples/ruby.yaml, probes in libruby-3.1.so). GC mark phases equal
//! `GC.stat(:count)` over the same interval, each mark and sweep phase has one
//! duration observation, and allocations of arrays, hashes and objects of a
//! class are counted exactly.

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples, Target};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RUBY: &str = "/usr/bin/ruby3.1";

/// ruby3.1 running tests/fixtures/ruby_gc.rb, driven through stdin.
struct Ruby {
    driver: Target,
}

/// `GC.stat` counters read by the driver's `stat` command.
#[derive(Debug, Clone, Copy)]
struct GcStat {
    count: f64,
    major: f64,
    minor: f64,
}

impl Ruby {
    /// Starts the driver with `marker` on its command line; `None` (a skip) when
    /// ruby3.1 is missing outside CI.
    fn start(marker: &str) -> Option<Ruby> {
        if !common::require_path(RUBY, "scripts/setup.sh installs Debian's ruby") {
            return None;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ruby_gc.rb");
        Some(Ruby {
            driver: Target::spawn(Command::new(RUBY).arg(script).arg(marker)),
        })
    }

    fn pid(&self) -> u32 {
        self.driver.pid()
    }

    fn run(&mut self, command: &str) {
        self.driver.run(command);
    }

    fn stat(&mut self) -> GcStat {
        let line = self.driver.cmd("stat");
        let v: Vec<f64> = line
            .split(' ')
            .map(|x| x.parse().unwrap_or_else(|_| panic!("stat: {line:?}")))
            .collect();
        GcStat {
            count: v[0],
            major: v[1],
            minor: v[2],
        }
    }
}

/// examples/ruby.yaml pointed at the built object and at the one process whose
/// command line carries `marker`.
fn config(marker: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ruby.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let object = "object: ruby.bpf.o";
    let attachment = "exe_path: \"/usr/bin/ruby3.1\"";
    assert!(text.contains(object) && text.contains(attachment));
    text.replace(
        object,
        &format!("object: {}", fixtures().object("example:ruby").display()),
    )
    .replace(attachment, &format!("cmdline: \"{marker}\""))
}

#[test]
fn ruby_example_matches_gc_stat_and_counts_allocations_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let marker = format!("uexp-ruby-gc-{}", std::process::id());
    let Some(mut ruby) = Ruby::start(&marker) else {
        return;
    };
    let exporter = Exporter::start(&config(&marker));
    let pid = ruby.pid().to_string();
    wait_for(Duration::from_secs(10), || {
        let s = exporter.samples();
        (s.get("userspace_exporter_attached_processes", &[("name", "ruby")]) == Some(1.0))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("ruby not attached:\n{}", exporter.logs()));

    let p = [("pid", pid.as_str())];
    // Unlabelled counters: one series per process.
    let counter = |s: &Samples, name: &str| s.get(name, &[("pid", &pid)]).unwrap_or(0.0);
    let marks = |s: &Samples| counter(s, "userspace_exporter_ruby_gc_mark_total");
    let sweeps = |s: &Samples| counter(s, "userspace_exporter_ruby_gc_sweep_total");
    let observed = |s: &Samples, h: &str| s.get(&format!("{h}_count"), &p).unwrap_or(0.0);
    let allocs = |s: &Samples, kind: &str, class: &str| {
        s.get(
            "userspace_exporter_ruby_allocations_total",
            &[("class", class), ("pid", &pid), ("type", kind)],
        )
        .unwrap_or(0.0)
    };
    let mark_h = "userspace_exporter_ruby_gc_mark_seconds";
    let sweep_h = "userspace_exporter_ruby_gc_sweep_seconds";

    // GC: `stat` then scrape, work, `stat` then scrape. `stat` runs with GC
    // disabled (no phase in progress, none started after its read), so both
    // sides cover exactly the same collections.
    let st0 = ruby.stat();
    let s0 = exporter.samples();
    ruby.run("gc 20");
    ruby.run("churn 300000");
    ruby.run("gc 5");
    let st1 = ruby.stat();
    let s1 = exporter.samples();

    let count = st1.count - st0.count;
    let (major, minor) = (st1.major - st0.major, st1.minor - st0.minor);
    let mark = marks(&s1) - marks(&s0);
    let sweep = sweeps(&s1) - sweeps(&s0);
    eprintln!(
        "GC.stat deltas: count {count}, major {major}, minor {minor}; exported: marks {mark}, sweeps {sweep}"
    );
    assert!(major >= 25.0, "25 GC.start are major collections: {major}");
    assert!(
        minor >= 1.0,
        "churn must trigger minor collections: {minor}"
    );
    assert_eq!(count, major + minor);
    assert_eq!(mark, count, "gc__mark__begin vs GC.stat(:count)");
    assert_eq!(observed(&s1, mark_h) - observed(&s0, mark_h), mark);
    // Lazy sweeping: a collection sweeps in one or more steps, each with its own
    // gc__sweep__begin/end, so sweeps are at least the collections, not equal.
    assert!(sweep >= count, "sweep steps {sweep} < collections {count}");
    assert_eq!(observed(&s1, sweep_h) - observed(&s0, sweep_h), sweep);
    for h in [mark_h, sweep_h] {
        let sum = s1.value(&format!("{h}_sum"), &p);
        assert!(sum > 0.0 && sum < 60.0, "{h}_sum {sum} s");
        let inf = s1.value(&format!("{h}_bucket"), &[("le", "+Inf"), ("pid", &pid)]);
        assert_eq!(inf, observed(&s1, h));
    }

    // Allocations: each command creates exactly N of one kind, and the command
    // loop itself creates no arrays, hashes or objects.
    let n = 1234.0;
    for (command, kind, class) in [
        ("arrays", "array", ""),
        ("hashes", "hash", ""),
        ("objects", "object", "UexpRubyProbe"),
        // String.new goes through object__create (class String), not string__create.
        ("strings", "object", "String"),
    ] {
        let before = exporter.samples();
        ruby.run(&format!("{command} {n}"));
        let after = exporter.samples();
        let delta = allocs(&after, kind, class) - allocs(&before, kind, class);
        assert_eq!(delta, n, "{command}: type={kind} class={class:?}");
        for (other, other_class) in [("array", ""), ("hash", "")] {
            if other != kind {
                assert_eq!(
                    allocs(&after, other, other_class),
                    allocs(&before, other, other_class),
                    "{command} created a {other}"
                );
            }
        }
    }
    // string__create fires for every String the VM builds ("churn #{i}" and
    // its parts, and the lines read): at least one per iteration.
    let before = exporter.samples();
    ruby.run("churn 10000");
    let after = exporter.samples();
    let strings = allocs(&after, "string", "") - allocs(&before, "string", "");
    assert!(strings >= 10_000.0, "string__create: {strings}");
}
