//! The soak in two minutes (scripts/soak.py, which `scripts/soak.sh` runs for
//! 30 by default, 240 for the memory verdict): the exporter under Debian's
//! Prometheus (a scrape a second), 10 short-lived matching processes a
//! second, long-lived targets hitting their probes at known rates and a
//! config reload every 20 s. It must end with no failed scrape, exact counts,
//! its fds and the BPF objects it holds (its own, by id: `kernel_objects`)
//! back to where they were, every object it held freed after it exits, and at most
//! the instances the churn detaches in 2 s waiting to be freed at any sample
//! (one thread freeing them let that backlog grow by 1.5 a second).
//!
//! What two minutes cannot judge: the soak's memory rule is the RSS and fd
//! slope per hour over the final window (the last hour of a 4-hour run), and
//! a final window of 30 s says nothing per hour, so soak.py reports those two
//! checks as not judged, which is asserted here. What it keeps instead is a
//! gross bound, RSS growing by less than 16 MiB after the first 30 s.
//! Exclusive: it asserts that no scrape (one a second) is missed.

use crate::common::{self, fixtures, require_bpf, EXPORTER};
use std::process::Command;

/// Whether `tool` runs here: a failure when CI=true, a skip otherwise.
fn require(tool: &str) -> bool {
    common::require_command(tool, &["--version"], "scripts/setup.sh installs it")
}

#[test]
fn two_minutes_of_churn_scrapes_and_reloads_fail_no_scrape_count_exactly_and_leak_nothing() {
    let _machine = common::exclusive();
    if !require_bpf() || !require("prometheus") || !require("python3") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak.py");
    let run = Command::new("python3")
        .arg(driver)
        .arg("--exporter")
        .arg(EXPORTER)
        .arg("--target")
        .arg(&fixtures().target)
        .arg("--usdt-object")
        .arg(fixtures().object("usdt_counts"))
        .arg("--uprobe-object")
        .arg(fixtures().object("uprobe_counts"))
        .args(["--minutes", "2", "--reload-every", "20", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stderr),
        String::from_utf8_lossy(&run.stdout)
    );
    let summary = std::fs::read_to_string(out.path().join("soak.json"))
        .unwrap_or_else(|e| panic!("no soak.json ({e}):\n{said}"));
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let log = std::fs::read_to_string(out.path().join("soak-exporter.log")).unwrap_or_default();
    let context = format!("{said}\nexporter log (tail):\n{}", tail(&log, 40));

    let scrape = &s["scrape"];
    assert_eq!(scrape["failed"], 0, "failed scrapes\n{context}");
    assert!(
        scrape["scrapes"].as_u64().unwrap() >= 110,
        "too few scrapes\n{context}"
    );
    assert!(
        scrape["missing"].as_u64().unwrap() <= 2,
        "missing scrapes\n{context}"
    );
    for check in [
        "long-lived targets counted exactly",
        "replaced program exact in every reload epoch",
        "every reload succeeded",
        "Prometheus saw the exact counts, never reset",
        "exporter exited cleanly on SIGTERM",
        "no panic, no error logged",
        "BPF objects held back to the quiet level",
        "every BPF object held was freed after exit",
        "detach backlog bounded",
    ] {
        assert_eq!(
            s["checks"][check]["passed"], true,
            "{check}: {}\n{context}",
            s["checks"][check]["detail"]
        );
    }
    assert_eq!(
        s["reloads"].as_array().unwrap().len(),
        5,
        "a reload every 20 s\n{context}"
    );
    assert!(
        s["churn_started"].as_u64().unwrap() >= 1000,
        "10 churn processes a second\n{context}"
    );
    // Leaks: the exporter's fds and the BPF objects it holds, once churn
    // stopped, equal those before it began; after exit, none of the objects
    // it was seen holding is left.
    assert_eq!(
        s["fds"]["quiet_after"], s["fds"]["quiet_before"],
        "fds\n{context}"
    );
    let held = &s["exporter_objects"];
    assert_eq!(
        held["quiet_after"], held["quiet_before"],
        "BPF objects held\n{context}"
    );
    // The long-lived targets: 4 instances of each of the three programs.
    assert_eq!(held["quiet_before"]["progs"], 12, "{context}");
    assert_eq!(held["quiet_before"]["links"], 12, "{context}");
    for kind in ["progs", "maps", "links", "btf"] {
        assert_eq!(held["left_after_exit"][kind], 0, "{kind}\n{context}");
    }
    // The watch saw the churn: far more programs than the quiet 12.
    let seen = held["seen"]["progs"].as_u64().unwrap();
    assert!(seen > 100, "{seen} programs seen\n{context}");
    // Memory: two minutes judge no slope per hour; a gross bound instead.
    for check in ["RSS flat at the end", "fds flat at the end"] {
        assert!(
            s["checks"][check]["passed"].is_null(),
            "{check} judged in 2 minutes: {}\n{context}",
            s["checks"][check]["detail"]
        );
    }
    let growth = s["rss_mib"]["growth_after_warmup"].as_f64().unwrap();
    assert!(growth < 16.0, "RSS grew {growth} MiB\n{context}");
    assert_eq!(s["passed"], true, "{context}");
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
