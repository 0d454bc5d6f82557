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
//!   addresses the unstripped build's `.symtab` gives them.

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
    let go = userspace_exporter::testing::go_toolchain();
    let Ok(go) = go else {
        common::require("Go 1.19", go.map(|_| ()));
        return None;
    };
    let dir = fixtures().dir.join("go");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(name);
    let built = Command::new(go)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go"))
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(&binary)
        .arg(".")
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "on")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output();
    match built {
        Ok(out) if out.status.success() => Some(binary),
        Ok(out) => panic!(
            "go build {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{}: {e}", go.display()),
    }
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
