//! Go programs built with Debian 12's Go toolchain (Go 1.19,
//! `testing::GO_TOOLCHAIN`) as users build them, plain and stripped (`-ldflags='-s -w'`: no `.symtab`),
//! from tests/fixtures/go:
//!
//! - plain (examples/go_function.yaml): a uprobe on a Go function counts
//!   every call with its register-passed argument;
//! - stripped (examples/go_stripped.yaml): count-only uprobes on Go functions
//!   found by name in Go's function table (`.gopclntab`): a function of
//!   package main, a method with a pointer receiver in a package of its own,
//!   and net/http's connection server, equal the program's own counts;
//! - a uretprobe on a Go function is refused with the reason, stripped or
//!   not, and a name Go's table holds twice (a function and its ABI wrapper)
//!   is attached once, the log saying which and why;
//! - `probes --functions` lists a stripped binary's Go functions at the
//!   addresses the unstripped build's `.symtab` gives them;
//! - `sources:` chooses a set of Go functions on the stripped build, where
//!   only Go's table names them, as on the plain one, and passes over a set
//!   with a uretprobe on both.

use crate::common::{self, fixtures, require_bpf, Exporter, Target, EXPORTER};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The method with a pointer receiver, in package tally of the fixture's module.
const ADD: &str = "uexp.example/fixture/tally.(*Tally).Add";

/// tests/fixtures/go built by Debian 12's Go 1.19 into
/// `fixtures().dir/go/NAME` with `args` (to `go build`); `None` when that Go
/// is missing outside CI.
fn build(name: &str, args: &[&str]) -> Option<PathBuf> {
    let dir = fixtures().dir.join("go");
    std::fs::create_dir_all(&dir).unwrap();
    userspace_exporter::testing::go_build(&dir, name, args)
}

/// The fixture built plainly, named `uexp-go`.
fn go_program() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| build("uexp-go", &[])).as_deref()
}

/// The fixture built stripped, as release builds often are, named `uexp-go-s`.
fn stripped_go_program() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| build("uexp-go-s", &["-ldflags=-s -w"]))
        .as_deref()
}

/// examples/go_stripped.yaml on processes named `comm`, counting calls of
/// (*Tally).Add too.
fn stripped_config(comm: &str) -> String {
    let config = fixtures().example_config_code("go_stripped", "goapp", comm);
    let edits = [
        (
            "          table: work_calls\n",
            "          table: work_calls\n        - name: go_tally_adds_total\n          help: Calls of (*Tally).Add\n          table: tally_adds\n",
        ),
        (
            "      main.work: on_work\n",
            "      main.work: on_work\n      \"uexp.example/fixture/tally.(*Tally).Add\": on_add\n",
        ),
        (
            "      BPF_ARRAY(work_calls, u64, 1);\n",
            "      BPF_ARRAY(work_calls, u64, 1);\n      BPF_ARRAY(tally_adds, u64, 1);\n\n      int on_add(struct pt_regs *ctx) {\n          tally_adds.increment(0);\n          return 0;\n      }\n",
        ),
    ];
    let mut config = config;
    for (from, to) in edits {
        assert!(
            config.contains(from),
            "examples/go_stripped.yaml lacks {from:?}"
        );
        config = config.replace(from, to);
    }
    config
}

#[test]
fn a_uprobe_on_a_go_function_counts_every_call_with_its_argument() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(binary) = go_program() else { return };
    let mut program = Target::start_binary(binary);
    let exporter = Exporter::start(&fixtures().example_config("go_function", "goapp", "uexp-go"));
    assert_eq!(program.cmd("work 12 5"), "ok 120");
    assert_eq!(program.cmd("work 3 -4"), "ok 96");
    let s = exporter.samples();
    let pid = program.pid().to_string();
    let calls = |argument: &str| {
        s.value(
            "userspace_exporter_go_work_calls_total",
            &[("argument", argument), ("pid", &pid)],
        )
    };
    assert_eq!(calls("5"), 12.0, "{}", exporter.scrape());
    assert_eq!(calls("-4"), 3.0);
}

#[test]
fn count_only_uprobes_on_a_stripped_go_binary_equal_the_programs_own_counts() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(binary) = stripped_go_program() else {
        return;
    };
    let mut program = Target::start_binary(binary);
    let exporter = Exporter::start(&stripped_config("uexp-go-s"));
    assert_eq!(program.cmd("work 12 5"), "ok 120");
    assert_eq!(program.cmd("tally 7"), "ok 7");
    assert_eq!(program.cmd("http 4"), "ok 4");
    assert_eq!(program.cmd("work 3 -4"), "ok 96");
    assert_eq!(program.cmd("tally 2"), "ok 9");
    assert_eq!(program.cmd("http 1"), "ok 5");
    // The program's own counts: calls of main.work and of (*Tally).Add, and
    // the connections its server accepted.
    assert_eq!(program.cmd("counts"), "counts 15 9 5");
    let s = exporter.samples();
    let pid = program.pid().to_string();
    let value = |name: &str| s.value(name, &[("pid", &pid)]);
    assert_eq!(
        value("userspace_exporter_go_work_calls_total"),
        15.0,
        "{}",
        exporter.scrape()
    );
    assert_eq!(value("userspace_exporter_go_tally_adds_total"), 9.0);
    assert_eq!(value("userspace_exporter_go_http_connections_total"), 5.0);
    let logs = exporter.logs();
    for probe in ["main.work", ADD, "net/http.(*conn).serve"] {
        assert!(
            logs.contains(&format!("uprobe {probe} in {}", binary.display())),
            "{probe}: {logs}"
        );
    }
}

/// examples/go_stripped.yaml, or go_function.yaml, with a uretprobe on
/// main.main and a uprobe on runtime.args (a function Go's table holds twice
/// in a stripped binary: the function and its ABI wrapper).
#[test]
fn a_uretprobe_on_a_go_binary_is_refused_with_the_reason_stripped_or_not() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (Some(plain), Some(stripped)) = (go_program(), stripped_go_program()) else {
        return;
    };
    for (binary, comm) in [(plain, "uexp-go-ret"), (stripped, "uexp-go-s-ret")] {
        // Its own name, so that the other tests' processes are not selected here.
        let mut program = Target::start_binary(&common::named_copy(binary, comm));
        let config = stripped_config(comm)
            .replace(
                "\": on_add\n",
                "\": on_add\n      runtime.args: on_args\n    uretprobes:\n      main.main: on_main_return\n",
            )
            .replace(
                "      BPF_ARRAY(work_calls, u64, 1);\n",
                "      BPF_ARRAY(work_calls, u64, 1);\n\n      int on_args(struct pt_regs *ctx) { return 0; }\n      int on_main_return(struct pt_regs *ctx) { return 0; }\n",
            );
        assert!(config.contains("uretprobes") && config.contains("on_args(struct"));
        let exporter = Exporter::start(&config);
        let s = exporter.samples();
        assert_eq!(
            s.value(
                "userspace_exporter_attach_errors_total",
                &[("name", "go_calls"), ("probe", "main.main")]
            ),
            1.0,
            "{comm}: {}",
            exporter.scrape()
        );
        // The only probe refused.
        assert_eq!(
            s.series("userspace_exporter_attach_errors_total").len(),
            1,
            "{comm}: {}",
            exporter.scrape()
        );
        let logs = exporter.logs();
        assert!(
            logs.contains("refusing uretprobe \"main.main\" on Go binary")
                && logs.contains("corrupts Go's moving stacks")
                && logs.contains("use a uprobe"),
            "{comm}: {logs}"
        );
        // The uprobes on the same program still count, and the program still runs.
        assert_eq!(program.cmd("work 2 9"), "ok 36");
        assert_eq!(program.cmd("tally 3"), "ok 3");
        let pid = program.pid().to_string();
        let s = exporter.samples();
        assert_eq!(
            s.value("userspace_exporter_go_work_calls_total", &[("pid", &pid)]),
            2.0,
            "{comm}"
        );
        assert_eq!(
            s.value("userspace_exporter_go_tally_adds_total", &[("pid", &pid)]),
            3.0,
            "{comm}"
        );
        // runtime.args: .symtab names the function in the plain build; the
        // stripped build's table has it twice, and the log says which is
        // probed: the function, where the plain build's .symtab has it.
        let args = symbol_addresses(plain)["runtime.args"];
        let wrapper = symbol_addresses(plain)["runtime.args.abi0"];
        let choice =
            format!("\"runtime.args\" is at 2 addresses in Go's function table: {args:#x} ");
        if binary == stripped {
            assert!(logs.contains(&choice), "{logs}");
            assert!(
                logs.contains(&format!("and {wrapper:#x} ("))
                    && logs.contains(&format!("attached at {args:#x}, the largest")),
                "{logs}"
            );
        } else {
            assert!(!logs.contains("addresses in Go's function table"), "{logs}");
        }
        assert!(
            logs.contains(&format!(
                "uprobe runtime.args in {}",
                program_path(comm).display()
            )),
            "{logs}"
        );
        // In Go, `.` separates names: runtime.args.abi0 (its wrapper) and
        // main.main.func1 (a closure) are no compiler clones of
        // runtime.args and main.main, as they would be in C.
        assert!(!logs.contains("compiler clones"), "{logs}");
    }
}

/// `sources:` over Go programs: a probe set of functions is chosen where Go's
/// function table alone names them (the stripped build) as where `.symtab`
/// does (the plain one), a set with a uretprobe is passed over on both (a
/// source with no other set is unavailable for it), and a function neither
/// has leaves its source unavailable for want of the symbol.
fn sources_config(comms: [&str; 2]) -> String {
    format!(
        r#"programs:
  - name: go_sourced
    metrics:
      counters:
        - {{name: go_src_work_calls_total, help: Calls of main.work, table: work_calls}}
        - {{name: go_src_tally_adds_total, help: Calls of (*Tally).Add, table: tally_adds}}
        - name: go_src_missing_total
          help: Calls of a function the program lacks (a hash, so that no count is no series)
          table: missing
          labels: [{{name: key, size: 8, decoders: [{{name: uint}}]}}]
    sources:
      work:
        metrics: [go_src_work_calls_total]
        from:
          - name: usdt
            usdt: {{"goapp:work": on_work_usdt}}
          - name: symbols
            uprobes: {{main.work: on_work}}
      adds:
        metrics: [go_src_tally_adds_total]
        from:
          - name: timed
            uprobes: {{"{ADD}": on_add_entry}}
            uretprobes: {{"{ADD}": on_add_return}}
          - name: symbols
            uprobes: {{"{ADD}": on_add}}
      missing:
        metrics: [go_src_missing_total]
        from:
          - name: symbols
            uprobes: {{main.nosuch: on_missing}}
      returns:
        from:
          - name: returns
            uretprobes: {{main.work: on_work_return}}
    attachment:
      - {{binary_name: {}}}
      - {{binary_name: {}}}
    code: |
      BPF_ARRAY(work_calls, u64, 1);
      BPF_ARRAY(tally_adds, u64, 1);
      BPF_HASH(missing, u64, u64);

      int on_work_usdt(struct pt_regs *ctx) {{ work_calls.increment(0); return 0; }}
      int on_work(struct pt_regs *ctx) {{ work_calls.increment(0); return 0; }}
      int on_add_entry(struct pt_regs *ctx) {{ tally_adds.increment(0); return 0; }}
      int on_add_return(struct pt_regs *ctx) {{ return 0; }}
      int on_work_return(struct pt_regs *ctx) {{ return 0; }}
      int on_add(struct pt_regs *ctx) {{ tally_adds.increment(0); return 0; }}
      int on_missing(struct pt_regs *ctx) {{ missing.increment(0); return 0; }}
"#,
        comms[0], comms[1]
    )
}

#[test]
fn sources_choose_the_functions_go_s_table_alone_names_as_those_of_symtab() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let (Some(plain), Some(stripped)) = (go_program(), stripped_go_program()) else {
        return;
    };
    let comms = ["uexp-go-src", "uexp-go-s-src"];
    let mut programs = [
        Target::start_binary(&common::named_copy(plain, comms[0])),
        Target::start_binary(&common::named_copy(stripped, comms[1])),
    ];
    let exporter = Exporter::start(&sources_config(comms));
    let calls = [(4, 3), (9, 6)];
    for (program, (works, adds)) in programs.iter_mut().zip(calls) {
        program.fire(&format!("work {works} 1"));
        program.fire(&format!("tally {adds}"));
        // The program's own counts.
        assert_eq!(program.cmd("counts"), format!("counts {works} {adds} 0"));
    }
    let s = exporter.samples();
    let logs = exporter.logs();
    for (program, (works, adds)) in programs.iter().zip(calls) {
        let pid = program.pid().to_string();
        let get = |name: &str| s.get(name, &[("pid", &pid)]);
        assert_eq!(
            get("userspace_exporter_go_src_work_calls_total"),
            Some(works as f64),
            "{pid}: {}",
            exporter.scrape()
        );
        // Counted once a call: by the chosen set only, not also the timed one.
        assert_eq!(
            get("userspace_exporter_go_src_tally_adds_total"),
            Some(adds as f64),
            "{pid}"
        );
    }
    assert_eq!(s.series("userspace_exporter_go_src_missing_total"), []);
    for (source, set) in [("work", "symbols"), ("adds", "symbols")] {
        assert_eq!(
            s.value(
                "userspace_exporter_source_processes",
                &[("name", "go_sourced"), ("source", source), ("set", set)]
            ),
            2.0,
            "{source}: {}",
            exporter.scrape()
        );
    }
    for (source, reason) in [("missing", "no_symbol"), ("returns", "go_uretprobe")] {
        assert_eq!(
            s.value(
                "userspace_exporter_source_unavailable_processes",
                &[
                    ("name", "go_sourced"),
                    ("source", source),
                    ("reason", reason)
                ]
            ),
            2.0,
            "{source}"
        );
    }
    assert_eq!(
        s.series("userspace_exporter_source_unavailable_processes")
            .len(),
        2,
        "{}",
        exporter.scrape()
    );
    assert_eq!(
        s.value(
            "userspace_exporter_processes",
            &[("name", "go_sourced"), ("state", "attached")]
        ),
        2.0
    );
    // The uretprobe was never tried: no attach error, nothing refused in the log.
    assert_eq!(
        s.series("userspace_exporter_attach_errors_total").len(),
        0,
        "{logs}"
    );
    assert!(!logs.contains("refusing uretprobe"), "{logs}");
    // The landing page says, per process, which set feeds each source and why
    // the others were passed over.
    let page = exporter.page("/");
    for comm in comms {
        let path = program_path(comm);
        let path = path.display();
        for line in [
            "source work: from symbols (passed over usdt: USDT probe goapp:work not found".to_string(),
            format!("source adds: from symbols (passed over timed: {path} is a Go binary: uretprobes are refused on Go binaries"),
            format!("source missing unavailable, so no go_src_missing_total: symbols: symbol &quot;main.nosuch&quot; not found in {path}"),
        ] {
            assert!(page.contains(&line), "{comm}: {line}\n{page}");
        }
    }
}

/// Where `named_copy` put the copy named `comm`.
fn program_path(comm: &str) -> PathBuf {
    fixtures().dir.join(comm)
}

/// The function symbols of `binary`'s `.symtab` by name, from binutils'
/// `readelf` (unique names only; the fixture's are).
fn symbol_addresses(binary: &Path) -> BTreeMap<String, u64> {
    let out = Command::new("readelf")
        .args(["-sW"])
        .arg(binary)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success());
    let mut symbols = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // Num: Value Size Type Bind Vis Ndx Name (names may hold spaces).
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 8 && fields[3] == "FUNC" {
            let address = u64::from_str_radix(fields[1], 16).unwrap();
            symbols.insert(fields[7..].join(" "), address);
        }
    }
    symbols
}

#[test]
fn probes_lists_the_go_functions_of_a_stripped_binary_where_symtab_has_them() {
    let _machine = common::shared();
    let (Some(plain), Some(stripped)) = (go_program(), stripped_go_program()) else {
        return;
    };
    if !common::require_command("readelf", &["--version"], "binutils") {
        return;
    }
    let symbols = symbol_addresses(plain);
    let out = Command::new(EXPORTER)
        .args(["probes", "--binary"])
        .arg(stripped)
        .args(["--functions", "*", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let functions = listing["targets"][0]["files"][0]["functions"]
        .as_array()
        .unwrap();
    let addresses: std::collections::BTreeSet<u64> = symbols.values().copied().collect();
    let listed: Vec<(&str, u64)> = functions
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["address"].as_u64().unwrap()))
        .collect();
    assert!(listed.len() > 4000, "{} functions", listed.len());
    // Every one where the plain build's .symtab has a function (its name
    // there may carry `.abi0` or spell out what the table abbreviates as `[...]`).
    for (name, address) in &listed {
        assert!(addresses.contains(address), "{name} at {address:#x}");
    }
    for name in ["main.work", ADD, "net/http.(*conn).serve"] {
        assert_eq!(
            listed
                .iter()
                .filter(|(n, _)| n == &name)
                .map(|(_, a)| *a)
                .collect::<Vec<_>>(),
            [symbols[name]],
            "{name}"
        );
    }
    // The text listing, filtered: the method and its address.
    let out = Command::new(EXPORTER)
        .args(["probes", "--binary"])
        .arg(stripped)
        .args(["--functions", "uexp.example/*"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = regex::Regex::new(&format!(
        r"(?m)^    {}\s+{:#x}$",
        regex::escape(ADD),
        symbols[ADD]
    ))
    .unwrap();
    assert!(row.is_match(&text), "{text}");
}
