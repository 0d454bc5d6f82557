//! The original project's redis example (uprobe + uretprobe on the allocator,
//! latency slots from `bpf_log2l` in a 33-slot `BPF_HISTOGRAM` whose last slot
//! holds the sum) on Debian's real redis-server, loaded with writes.

use crate::common::{self, fixtures, free_port, require_bpf, Exporter, Samples};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const REDIS: &str = "/usr/bin/redis-server";

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(comm: &str) -> Option<Redis> {
        if !common::require_path(REDIS, "scripts/setup.sh installs redis-server") {
            return None;
        }
        // A copy with its own comm, so only this test's exporter selects it.
        let binary = common::named_copy(Path::new(REDIS), comm);
        let port = free_port();
        let child = common::spawn(
            Command::new(&binary)
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ])
                .stdout(Stdio::null()),
        );
        let redis = Redis { child, port };
        common::wait_for(Duration::from_secs(10), || {
            (redis.cli(&["PING"]) == "PONG").then_some(())
        })
        .expect("redis did not start");
        Some(redis)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_counter(example: String) -> String {
    // A second, independent program: a plain counter on the same returns.
    example
        + r#"
  - name: malloc_returns
    metrics:
      counters:
        - name: malloc_returns_total
          help: allocator returns
          table: returns
          labels:
            - name: one
              size: 4
              decoders: [{name: uint}]
    uretprobes:
      libjemalloc.so.2:malloc: count_return
    attachment:
      binary_name: "uexp-redis"
    code: |
      BPF_ARRAY(returns, u64, 1);
      int count_return(struct pt_regs *ctx) {
          returns.increment(0);
          return 0;
      }
"#
}

#[test]
fn redis_allocation_latency_histogram_is_well_formed_and_counts_every_call() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(redis) = Redis::start("uexp-redis") else {
        return;
    };
    let config = with_counter(fixtures().example_config_code(
        "redis_alloc_latency_debian",
        "redis-server",
        "uexp-redis",
    ));
    let exporter = Exporter::start(&config);
    let pid = redis.child.id().to_string();
    let status = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &redis.port.to_string(),
            "-n",
            "5000",
            "-c",
            "4",
            "-t",
            "set,lpush",
            "-q",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // Frozen, redis returns from no allocation while the two maps are read.
    redis.signal(libc::SIGSTOP);
    let s: Samples = exporter.samples();
    redis.signal(libc::SIGCONT);

    let h = "userspace_exporter_malloc_latency_nanoseconds";
    let count = s.value(&format!("{h}_count"), &[("pid", &pid)]);
    let inf = s.value(&format!("{h}_bucket"), &[("le", "+Inf"), ("pid", &pid)]);
    let sum = s.value(&format!("{h}_sum"), &[("pid", &pid)]);
    let calls = s.value(
        "userspace_exporter_malloc_returns_total",
        &[("one", "0"), ("pid", &pid)],
    );
    eprintln!("malloc returns: histogram count {count}, independent counter {calls}, sum {sum} ns");
    assert!(
        count >= 10_000.0,
        "5000 SETs and 5000 LPUSHes allocate: count {count}"
    );
    assert_eq!(inf, count);
    assert_eq!(
        count, calls,
        "histogram count vs an independent uretprobe counter"
    );
    assert!(sum > 0.0);
    let buckets = s.series(&format!("{h}_bucket"));
    assert_eq!(buckets.len(), 33, "32 slots (2^0..2^31) and +Inf");
    let mut previous = 0.0;
    for k in 0..32 {
        let le = format!("{}", 1u64 << k);
        let v = s.value(&format!("{h}_bucket"), &[("le", &le), ("pid", &pid)]);
        assert!(
            v >= previous,
            "buckets must be cumulative: le={le} {v} < {previous}"
        );
        previous = v;
    }
    assert_eq!(previous, count);
}

#[test]
fn the_original_redis_example_names_the_missing_symbol_and_similar_ones() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(_redis) = Redis::start("uexp-redis-orig") else {
        return;
    };
    let config =
        fixtures().example_config_code("redis_alloc_latency", "redis-server", "uexp-redis-orig");
    let exporter = Exporter::start(&config);
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[("name", "malloc_latency"), ("probe", "je_malloc")]
        ),
        2.0
    );
    let page = exporter.page("/");
    assert!(
        page.contains("symbol &quot;je_malloc&quot; not found in /work")
            || page.contains("symbol &quot;je_malloc&quot; not found"),
        "{page}"
    );
    assert!(page.contains("similar symbols: "), "{page}");
}

/// `INFO commandstats` as command -> calls.
fn commandstats(redis: &Redis) -> std::collections::BTreeMap<String, f64> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

#[test]
fn redis_commands_example_matches_info_commandstats() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(redis) = Redis::start("uexp-redis-cmd") else {
        return;
    };
    let exporter = Exporter::start(&fixtures().example_config(
        "redis_commands",
        "redis-server",
        "uexp-redis-cmd",
    ));
    let pid = redis.child.id().to_string();
    let executed = |s: &Samples, nesting: &str| {
        s.get(
            "userspace_exporter_redis_commands_total",
            &[("nesting", nesting), ("pid", &pid)],
        )
        .unwrap_or(0.0)
    };
    let received = |s: &Samples, command: &str| {
        s.get(
            "userspace_exporter_redis_commands_received_total",
            &[("command", command), ("pid", &pid)],
        )
        .unwrap_or(0.0)
    };

    let s0 = exporter.samples();
    let before = commandstats(&redis);
    let status = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(["-n", "1000", "-c", "2", "-t", "set,get,incr,lpush", "-q"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // A transaction: EXEC runs the three queued INCRs from inside itself.
    let mut cli = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        cli.stdin.as_mut().unwrap(),
        b"MULTI\nINCR t\nINCR t\nINCR t\nEXEC\n",
    )
    .unwrap();
    drop(cli.stdin.take());
    assert!(cli.wait().unwrap().success());
    let after = commandstats(&redis);
    let s1 = exporter.samples();

    let delta = |name: &str| after.get(name).unwrap_or(&0.0) - before.get(name).unwrap_or(&0.0);
    let reported: f64 = after.keys().map(|name| delta(name)).sum();
    let counted = (executed(&s1, "client") + executed(&s1, "nested"))
        - (executed(&s0, "client") + executed(&s0, "nested"));
    eprintln!("commands: commandstats delta {reported}, exported delta {counted}");
    // The second INFO runs after the exporter's first scrape and before its own
    // reply is built, so commandstats has not counted it yet: exactly one more.
    assert!(reported >= 4003.0, "{reported}");
    assert_eq!(counted, reported + 1.0, "exported vs commandstats calls");
    assert_eq!(executed(&s1, "nested") - executed(&s0, "nested"), 3.0);
    for command in ["set", "get", "incr", "lpush", "multi", "exec"] {
        assert_eq!(
            received(&s1, command) - received(&s0, command),
            delta(command),
            "{command}: received vs commandstats calls"
        );
    }
    assert_eq!(delta("incr"), 1003.0);
    assert_eq!(
        received(&s1, "info") - received(&s0, "info"),
        delta("info") + 1.0
    );
    let latency = "userspace_exporter_redis_command_duration_seconds_count";
    assert_eq!(
        s1.value(latency, &[("pid", &pid)]) - s0.get(latency, &[("pid", &pid)]).unwrap_or(0.0),
        counted,
        "one latency observation per executed command"
    );
}
