//! A real runtime: Debian's OpenJDK 17 HotSpot, with the shipped example
//! (examples/jvm.yaml). A small Java workload, compiled here with the JDK's
//! javac and driven over stdin, does the work (System.gc(), threads, class
//! definitions, allocation) and reports the JVM's own numbers through
//! java.lang.management; the exported deltas must equal them.
//!
//! The JVM runs with `-XX:+UseSerialGC`: every Serial collection is one
//! stop-the-world VM operation, gc__begin/gc__end bracket it once, and the
//! GarbageCollectorMXBeans ("Copy", "MarkSweepCompact") count exactly those
//! collections. Under G1 (the default) they do not agree in JDK 17: G1's
//! remark and cleanup pauses also fire gc__begin/gc__end but no JDK 17
//! MXBean counts them (5 System.gc() with -XX:+ExplicitGCInvokesConcurrent
//! gave 15 gc__begin and a "G1 Young Generation" delta of 5).

use crate::common::{self, fixtures, require_bpf, wait_for, Exporter, Samples, Target};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Debian's OpenJDK 17 (openjdk-17-jdk-headless), whose libjvm.so carries the probes.
const JDK: &str = "/usr/lib/jvm/java-17-openjdk-amd64";

/// The workload: answers one line per command read from stdin.
const WORKLOAD: &str = r#"
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

public class UexpJvm {
    static volatile Object sink;
    static final List<Class<?>> defined = new ArrayList<>();

    /** Each instance defines its own class UexpPayload: a new class every time. */
    static final class Loader extends ClassLoader {
        Loader() { super(UexpJvm.class.getClassLoader()); }
        Class<?> define(byte[] b) { return defineClass("UexpPayload", b, 0, b.length); }
    }

    static String gcStats() {
        StringBuilder sb = new StringBuilder();
        for (GarbageCollectorMXBean b : ManagementFactory.getGarbageCollectorMXBeans()) {
            sb.append(b.getName().replace(' ', '_')).append('=').append(b.getCollectionCount()).append(' ');
        }
        return sb.toString().trim();
    }

    static String answer(String command, int n, int m, byte[] payload) throws Exception {
        switch (command) {
            case "gc":
                for (int i = 0; i < n; i++) System.gc();
                return "ok";
            case "alloc":
                // n MiB of short-lived garbage: young collections only.
                for (long i = 0; i < (long) n * 1024; i++) sink = new byte[1024];
                return "ok";
            case "threads": {
                Thread[] threads = new Thread[n];
                for (int i = 0; i < n; i++) {
                    threads[i] = new Thread(() -> { sink = new Object(); }, "uexp-worker-" + i);
                    threads[i].setDaemon(m != 0);
                    threads[i].start();
                }
                for (Thread t : threads) t.join();
                return "ok";
            }
            case "classes":
                for (int i = 0; i < n; i++) defined.add(new Loader().define(payload));
                return "ok";
            case "gcstats":
                return gcStats();
            case "classcount":
                return Long.toString(ManagementFactory.getClassLoadingMXBean().getTotalLoadedClassCount());
            case "threadcount":
                return Long.toString(ManagementFactory.getThreadMXBean().getTotalStartedThreadCount());
            case "safepoints":
                return Long.toString(sun.management.ManagementFactoryHelper.getHotspotRuntimeMBean().getSafepointCount());
            default:
                return "unknown command " + command;
        }
    }

    public static void main(String[] args) throws Exception {
        byte[] payload;
        try (var in = UexpJvm.class.getResourceAsStream("/UexpPayload.class")) {
            payload = in.readAllBytes();
        }
        // Load and link everything the commands use before the test starts counting.
        for (String c : new String[] {"gcstats", "classcount", "threadcount", "safepoints", "threads", "classes"}) {
            answer(c, 1, 0, payload);
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println("ready");
        System.out.flush();
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split(" ");
            int n = words.length > 1 ? Integer.parseInt(words[1]) : 0;
            int m = words.length > 2 ? Integer.parseInt(words[2]) : 0;
            System.out.println(answer(words[0], n, m, payload));
            System.out.flush();
        }
    }
}
"#;

/// The class the workload defines again and again.
const PAYLOAD: &str = "public class UexpPayload { public int field; }\n";

/// The example's selector, replaced in the test by a cmdline regex.
const EXAMPLE_SELECTOR: &str = r#"exe_path: "/usr/lib/jvm/*/bin/java""#;

/// The workload's private API use (HotspotRuntimeMBean, for the safepoint count).
const ADD_EXPORTS: &str = "java.management/sun.management=ALL-UNNAMED";

/// A JVM running the workload, driven through stdin.
struct Jvm {
    driver: Target,
    /// The compiled classes; removed on drop.
    _dir: tempfile::TempDir,
}

impl Jvm {
    /// Compiles the workload and starts it with `-Duexp.test=TAG`; `None` (a skip)
    /// when JDK 17 is missing outside CI.
    fn start(tag: &str) -> Option<Jvm> {
        let java = Path::new(JDK).join("bin/java");
        let javac = Path::new(JDK).join("bin/javac");
        let install = "scripts/setup.sh installs openjdk-17-jdk-headless";
        if !common::require_path(&java, install) || !common::require_path(&javac, install) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("UexpJvm.java"), WORKLOAD).unwrap();
        std::fs::write(dir.path().join("UexpPayload.java"), PAYLOAD).unwrap();
        let out = Command::new(&javac)
            .args([
                "-nowarn",
                "-XDignore.symbol.file",
                "--add-exports",
                ADD_EXPORTS,
            ])
            .arg("-d")
            .arg(dir.path())
            .arg(dir.path().join("UexpJvm.java"))
            .arg(dir.path().join("UexpPayload.java"))
            .output()
            .expect("run javac");
        assert!(
            out.status.success(),
            "javac failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let driver = Target::spawn(
            Command::new(&java)
                .args([
                    // See the module comment: Serial makes the GC counts exact.
                    "-XX:+UseSerialGC",
                    // A large old generation: the test's garbage never reaches it, so a
                    // young collection never turns into a full one.
                    "-Xms256m",
                    "-Xmx256m",
                    "-Xmn64m",
                    // All JIT compiler threads (daemon threads) at startup, none later:
                    // thread counts then come from the workload alone.
                    "-XX:-UseDynamicNumberOfCompilerThreads",
                    "--add-exports",
                    ADD_EXPORTS,
                ])
                .arg(format!("-Duexp.test={tag}"))
                .arg("-cp")
                .arg(dir.path())
                .arg("UexpJvm"),
        );
        Some(Jvm { driver, _dir: dir })
    }

    fn pid(&self) -> u32 {
        self.driver.pid()
    }

    /// Sends a command that must succeed.
    fn run(&mut self, command: &str) {
        self.driver.run(command);
    }

    /// A command answering one number.
    fn number(&mut self, command: &str) -> f64 {
        let reply = self.driver.cmd(command);
        reply
            .parse()
            .unwrap_or_else(|_| panic!("{command}: {reply:?}"))
    }

    /// GarbageCollectorMXBean collection counts by collector name.
    fn gc_stats(&mut self) -> BTreeMap<String, f64> {
        let reply = self.driver.cmd("gcstats");
        reply
            .split_whitespace()
            .map(|pair| {
                let (name, count) = pair.split_once('=').unwrap();
                (name.to_string(), count.parse().unwrap())
            })
            .collect()
    }
}

/// The example pointed at the built object and at the JVM whose command line has
/// `-Duexp.test=TAG`.
fn config(tag: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jvm.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("object: jvm.bpf.o"), "{text}");
    assert!(text.contains(EXAMPLE_SELECTOR), "{text}");
    let object: PathBuf = fixtures().object("example:jvm").to_path_buf();
    text.replace(
        "object: jvm.bpf.o",
        &format!("object: {}", object.display()),
    )
    .replace(
        EXAMPLE_SELECTOR,
        &format!("cmdline: '-Duexp\\.test={tag}( |$)'"),
    )
}

/// The exporter on the example, once it has attached to `jvm`.
fn exporter_for(jvm: &Jvm, tag: &str) -> Exporter {
    let exporter = Exporter::start(&config(tag));
    let pid = jvm.pid().to_string();
    wait_for(Duration::from_secs(30), || {
        exporter
            .samples()
            .get(
                "userspace_exporter_enabled_programs",
                &[("name", "jvm"), ("pid", &pid)],
            )
            .filter(|&v| v == 1.0)
    })
    .unwrap_or_else(|| panic!("jvm not attached after 30 s:\n{}", exporter.logs()));
    exporter
}

/// A scrape and a JVM reading that belong together: the reading is taken before
/// and after the scrape and must not have moved (the JVM does some things on its
/// own, e.g. safepoints for its housekeeping), else it is taken again.
fn snapshot<T: PartialEq + std::fmt::Debug>(
    exporter: &Exporter,
    mut read: impl FnMut() -> T,
) -> (Samples, T) {
    let mut last = None;
    for _ in 0..50 {
        let before = read();
        let samples = exporter.samples();
        let after = read();
        if before == after {
            return (samples, after);
        }
        last = Some((before, after));
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the JVM's numbers never held still across a scrape: {last:?}");
}

/// A counter's value for one label value of the JVM's pid (0 when absent).
fn count(s: &Samples, metric: &str, label: &str, value: &str, pid: &str) -> f64 {
    s.get(
        &format!("userspace_exporter_{metric}"),
        &[(label, value), ("pid", pid)],
    )
    .unwrap_or(0.0)
}

/// A histogram's `_count` (or `_sum`) for the JVM's pid (0 when absent).
fn hist(s: &Samples, metric: &str, pid: &str) -> f64 {
    s.get(&format!("userspace_exporter_{metric}"), &[("pid", pid)])
        .unwrap_or(0.0)
}

#[test]
fn gc_collections_and_pauses_match_garbage_collector_mxbeans() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut jvm) = Jvm::start("jvm-gc") else {
        return;
    };
    let exporter = exporter_for(&jvm, "jvm-gc");
    let pid = jvm.pid().to_string();
    let full = |s: &Samples, v: &str| count(s, "jvm_gc_collections_total", "full", v, &pid);
    let pauses = |s: &Samples| hist(s, "jvm_gc_pause_seconds_count", &pid);

    let (s0, m0) = snapshot(&exporter, || jvm.gc_stats());
    assert!(
        m0.contains_key("Copy") && m0.contains_key("MarkSweepCompact"),
        "not the Serial collector: {m0:?}"
    );
    // Under Serial, System.gc() is one full collection: MarkSweepCompact only.
    jvm.run("gc 10");
    let (s1, m1) = snapshot(&exporter, || jvm.gc_stats());
    // Short-lived garbage, 8 times the young generation: young collections only.
    jvm.run("alloc 512");
    let (s2, m2) = snapshot(&exporter, || jvm.gc_stats());

    let delta =
        |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, name: &str| b[name] - a[name];
    for (step, (sa, ma), (sb, mb)) in [
        ("gc 10", (&s0, &m0), (&s1, &m1)),
        ("alloc 512", (&s1, &m1), (&s2, &m2)),
    ] {
        let (young, old) = (delta(ma, mb, "Copy"), delta(ma, mb, "MarkSweepCompact"));
        let (counted_young, counted_full) = (
            full(sb, "false") - full(sa, "false"),
            full(sb, "true") - full(sa, "true"),
        );
        eprintln!(
            "{step}: MXBeans Copy +{young}, MarkSweepCompact +{old}; \
             exported full=false +{counted_young}, full=true +{counted_full}, pauses +{}",
            pauses(sb) - pauses(sa)
        );
        assert_eq!(counted_young, young, "{step}: young collections vs Copy");
        assert_eq!(
            counted_full, old,
            "{step}: full collections vs MarkSweepCompact"
        );
        // Every gc__begin has its gc__end: one pause per collection.
        assert_eq!(pauses(sb) - pauses(sa), young + old, "{step}: pauses");
    }
    assert_eq!(delta(&m0, &m1, "MarkSweepCompact"), 10.0, "{m0:?} {m1:?}");
    assert_eq!(delta(&m0, &m1, "Copy"), 0.0, "{m0:?} {m1:?}");
    assert!(delta(&m1, &m2, "Copy") >= 4.0, "{m1:?} {m2:?}");
    assert_eq!(delta(&m1, &m2, "MarkSweepCompact"), 0.0, "{m1:?} {m2:?}");

    let sum =
        hist(&s2, "jvm_gc_pause_seconds_sum", &pid) - hist(&s0, "jvm_gc_pause_seconds_sum", &pid);
    assert!(sum > 0.0 && sum < 10.0, "pause sum {sum} s");
    let inf = s2.value(
        "userspace_exporter_jvm_gc_pause_seconds_bucket",
        &[("le", "+Inf"), ("pid", &pid)],
    );
    assert_eq!(inf, pauses(&s2));
}

#[test]
fn threads_started_and_stopped_are_counted_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut jvm) = Jvm::start("jvm-threads") else {
        return;
    };
    let exporter = exporter_for(&jvm, "jvm-threads");
    let pid = jvm.pid().to_string();
    let started =
        |s: &Samples, daemon: &str| count(s, "jvm_threads_started_total", "daemon", daemon, &pid);
    let stopped =
        |s: &Samples, daemon: &str| count(s, "jvm_threads_stopped_total", "daemon", daemon, &pid);

    let (s0, t0) = snapshot(&exporter, || jvm.number("threadcount"));
    jvm.run("threads 25 0");
    jvm.run("threads 7 1");
    let (s1, t1) = snapshot(&exporter, || jvm.number("threadcount"));
    // join() returns once HotSpot marks the thread terminated, which need not come
    // after its thread__stop probe: wait for the stops, then require exactly as many.
    let s2 = wait_for(Duration::from_secs(10), || {
        let s = exporter.samples();
        (stopped(&s, "false") - stopped(&s0, "false") >= 25.0
            && stopped(&s, "true") - stopped(&s0, "true") >= 7.0)
            .then_some(s)
    })
    .unwrap_or_else(|| {
        let s = exporter.samples();
        panic!(
            "stops: non-daemon +{}, daemon +{}",
            stopped(&s, "false") - stopped(&s0, "false"),
            stopped(&s, "true") - stopped(&s0, "true")
        )
    });
    eprintln!(
        "ThreadMXBean started +{}; exported started non-daemon +{} daemon +{}, stopped non-daemon +{} daemon +{}",
        t1 - t0,
        started(&s1, "false") - started(&s0, "false"),
        started(&s1, "true") - started(&s0, "true"),
        stopped(&s2, "false") - stopped(&s0, "false"),
        stopped(&s2, "true") - stopped(&s0, "true"),
    );
    // The JVM itself saw exactly the workload's threads start.
    assert_eq!(
        t1 - t0,
        32.0,
        "ThreadMXBean.getTotalStartedThreadCount delta"
    );
    assert_eq!(started(&s1, "false") - started(&s0, "false"), 25.0);
    assert_eq!(started(&s1, "true") - started(&s0, "true"), 7.0);
    assert_eq!(stopped(&s2, "false") - stopped(&s0, "false"), 25.0);
    assert_eq!(stopped(&s2, "true") - stopped(&s0, "true"), 7.0);
}

#[test]
fn classes_loaded_match_class_loading_mxbean() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut jvm) = Jvm::start("jvm-classes") else {
        return;
    };
    let exporter = exporter_for(&jvm, "jvm-classes");
    let pid = jvm.pid().to_string();
    let loaded =
        |s: &Samples, shared: &str| count(s, "jvm_classes_loaded_total", "shared", shared, &pid);
    let total = |s: &Samples| loaded(s, "false") + loaded(s, "true");

    let (s0, c0) = snapshot(&exporter, || jvm.number("classcount"));
    jvm.run("classes 40");
    let (s1, c1) = snapshot(&exporter, || jvm.number("classcount"));
    eprintln!(
        "ClassLoadingMXBean total loaded +{}; exported +{} (shared=false +{})",
        c1 - c0,
        total(&s1) - total(&s0),
        loaded(&s1, "false") - loaded(&s0, "false")
    );
    // 40 classes defined by 40 loaders, none from the CDS archive.
    assert!(c1 - c0 >= 40.0, "ClassLoadingMXBean delta {}", c1 - c0);
    assert!(loaded(&s1, "false") - loaded(&s0, "false") >= 40.0);
    // class__loaded fires where HotSpot counts the class for the MXBean.
    assert_eq!(total(&s1) - total(&s0), c1 - c0);
}

#[test]
fn safepoints_match_hotspot_safepoint_count() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(mut jvm) = Jvm::start("jvm-safepoints") else {
        return;
    };
    let exporter = exporter_for(&jvm, "jvm-safepoints");
    let pid = jvm.pid().to_string();
    let safepoints = |s: &Samples| hist(s, "jvm_safepoint_seconds_count", &pid);

    // HotspotRuntimeMBean.getSafepointCount() is the counter RuntimeService bumps
    // next to the safepoint__begin probe. The JVM also stops for its own reasons
    // at any time; snapshot() retries until no safepoint started across a scrape.
    // Left over: a safepoint's end probe fires a few microseconds after the JVM
    // lets threads run again, against milliseconds from a reading to the scrape.
    let (s0, c0) = snapshot(&exporter, || jvm.number("safepoints"));
    // Each System.gc() under Serial is one safepoint.
    jvm.run("gc 5");
    let (s1, c1) = snapshot(&exporter, || jvm.number("safepoints"));
    eprintln!(
        "safepoint count +{}; exported safepoint_seconds_count +{}",
        c1 - c0,
        safepoints(&s1) - safepoints(&s0)
    );
    assert!(c1 - c0 >= 5.0, "safepoint count delta {}", c1 - c0);
    assert_eq!(safepoints(&s1) - safepoints(&s0), c1 - c0);
    let sum =
        hist(&s1, "jvm_safepoint_seconds_sum", &pid) - hist(&s0, "jvm_safepoint_seconds_sum", &pid);
    assert!(sum > 0.0 && sum < 10.0, "safepoint time {sum} s");
}
