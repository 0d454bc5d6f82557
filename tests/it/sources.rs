//! `sources:`: one metric fed, per process, by the best probe set its build
//! offers. The fixture target has both a USDT probe (fixture:hit) and a
//! function (target_add) that count the same thing; copies of it lose the
//! USDT note (`objcopy -R .note.stapsdt`, as a build without dtrace), the
//! symbol table (`strip --strip-all`, as a slim image), or both.

use crate::common::{self, fixtures, require_bpf, Exporter, Samples, Target};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the fixture target named `comm` (beside its library), made by
/// running `tool args... COPY` on it before it is renamed into place.
fn altered_copy(comm: &str, steps: &[&[&str]]) -> PathBuf {
    let dir = &fixtures().dir;
    let path = dir.join(comm);
    let tmp = dir.join(format!(".{comm}.tmp"));
    std::fs::copy(&fixtures().target, &tmp).unwrap();
    for step in steps {
        let out = Command::new(step[0])
            .args(&step[1..])
            .arg(&tmp)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::rename(&tmp, &path).unwrap();
    path
}

const NO_USDT: &[&str] = &["objcopy", "--remove-section", ".note.stapsdt"];
const NO_SYMTAB: &[&str] = &["strip", "--strip-all"];

fn config(comms: &[&str]) -> String {
    format!(
        r#"programs:
  - name: sourced
    object: {object}
    metrics:
      counters:
        - name: sourced_events_total
          help: fixture:hit or target_add calls, by first argument
          table: events
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
        - name: sourced_tags_total
          help: fixture:tagged hits, by first argument modulo 4 (an array)
          table: tags
          labels: [{{name: slot, size: 4, decoders: [{{name: uint}}]}}]
    sources:
      tags:
        metrics: [sourced_tags_total]
        from:
          - name: usdt
            usdt: {{fixture:tagged: on_tagged}}
      events:
        metrics: [sourced_events_total]
        from:
          - name: usdt
            usdt: {{fixture:hit: on_hit}}
          - name: symbols
            uprobes: {{target_add: on_add}}
    attachment:
      - {{binary_name: {}}}
      - {{binary_name: {}}}
      - {{binary_name: {}}}
"#,
        comms[0],
        comms[1],
        comms[2],
        object = fixtures().object("sources").display()
    )
}

fn events(s: &Samples, t: &Target, arg: &str) -> Option<f64> {
    s.get(
        "userspace_exporter_sourced_events_total",
        &[("arg", arg), ("pid", &t.pid().to_string())],
    )
}

#[test]
fn each_process_is_fed_by_the_best_probe_set_its_build_offers() {
    let _machine = common::shared();
    if !require_bpf()
        || !common::require_command("objcopy", &["--version"], "apt-get install binutils")
    {
        return;
    }
    let (usdt, symbols, neither) = ("uexp-src-usdt", "uexp-src-sym", "uexp-src-none");
    let full = Target::start_binary(&common::named_copy(&fixtures().target, usdt));
    let no_usdt = altered_copy(symbols, &[NO_USDT]);
    let bare = altered_copy(neither, &[NO_USDT, NO_SYMTAB]);
    let mut full = full;
    let mut no_usdt = Target::start_binary(&no_usdt);
    let bare = Target::start_binary(&bare);
    let exporter = Exporter::start(&config(&[usdt, symbols, neither]));
    for t in [&mut full, &mut no_usdt] {
        t.fire("usdt 5 7");
        t.fire("call 3 9");
        t.fire("comm 2 6");
    }
    let s = exporter.samples();
    let logs = exporter.logs();
    // USDT where the build has it, and then not the function too.
    assert_eq!(events(&s, &full, "7"), Some(5.0), "{logs}");
    assert_eq!(events(&s, &full, "9"), None, "{logs}");
    // The function where the USDT note is gone.
    assert_eq!(events(&s, &no_usdt, "7"), None, "{logs}");
    assert_eq!(events(&s, &no_usdt, "9"), Some(3.0), "{logs}");
    // A source the build lacks gives the process no series, not its array's
    // zeros; the one that has it, every slot.
    let tags = |t: &Target, slot: &str| {
        s.get(
            "userspace_exporter_sourced_tags_total",
            &[("pid", &t.pid().to_string()), ("slot", slot)],
        )
    };
    for (slot, hits) in [("0", 0.0), ("1", 0.0), ("2", 2.0), ("3", 0.0)] {
        assert_eq!(tags(&full, slot), Some(hits), "slot {slot}: {logs}");
    }
    let pid = format!("pid=\"{}\"", no_usdt.pid());
    assert_eq!(
        s.series("userspace_exporter_sourced_tags_total")
            .iter()
            .filter(|(key, _)| key.contains(&pid))
            .count(),
        0,
        "{logs}"
    );
    // Neither: nothing loaded, no error, counted by reason.
    for (set, count) in [("usdt", 1.0), ("symbols", 1.0)] {
        assert_eq!(
            s.value(
                "userspace_exporter_source_processes",
                &[("name", "sourced"), ("source", "events"), ("set", set)]
            ),
            count,
            "{set}"
        );
    }
    assert_eq!(
        s.value(
            "userspace_exporter_source_unavailable_processes",
            &[
                ("name", "sourced"),
                ("source", "events"),
                ("reason", "no_symbol")
            ]
        ),
        1.0
    );
    for (state, count) in [("attached", 2.0), ("failed", 0.0), ("no_source", 1.0)] {
        assert_eq!(
            s.value(
                "userspace_exporter_processes",
                &[("name", "sourced"), ("state", state)]
            ),
            count,
            "{state}"
        );
    }
    assert_eq!(
        s.series("userspace_exporter_attach_errors_total").len(),
        0,
        "{logs}"
    );
    assert!(
        !logs.contains(" WARN ") && !logs.contains(" ERROR "),
        "{logs}"
    );
    // The landing page says which set feeds each process and why the bare
    // one gets nothing.
    let page = exporter.page("/");
    assert!(
        page.contains("source events: from usdt")
            && page.contains("source events: from symbols (passed over usdt: USDT probe fixture:hit not found")
            && page.contains(&format!(
                "pid {} ({neither})</td><td>nothing</td><td class=\"msg\">source events unavailable, so no sourced_events_total: usdt: USDT probe fixture:hit not found",
                bare.pid()
            ))
            && page.contains("symbols: symbol &quot;target_add&quot; not found"),
        "{page}"
    );
    assert!(
        page.contains("1 whose build offers none of its sources"),
        "{page}"
    );
}

#[test]
fn check_pid_says_which_set_would_feed_each_source() {
    let _machine = common::shared();
    if !require_bpf()
        || !common::require_command("objcopy", &["--version"], "apt-get install binutils")
    {
        return;
    }
    let comm = "uexp-src-check";
    let target = Target::start_binary(&altered_copy(comm, &[NO_USDT]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&[comm, "uexp-src-x", "uexp-src-y"])).unwrap();
    let out = Command::new(common::EXPORTER)
        .args(["check", "-c"])
        .arg(&path)
        .arg("--pid")
        .arg(target.pid().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            l.starts_with(
                "  source events: from symbols (passed over usdt: USDT probe fixture:hit not found",
            )
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lines[at + 1].starts_with(
            "    usdt fixture:hit -> on_hit: does not resolve: USDT probe fixture:hit not found"
        ) && lines[at + 2].starts_with(&format!(
            "    uprobe target_add -> on_add: found target_add in {}",
            Path::new(&fixtures().dir).join(comm).display()
        )),
        "{text}"
    );
}
