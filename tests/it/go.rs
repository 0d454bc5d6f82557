//! The Go example (examples/go_function.yaml) on a real Go program built with
//! Debian's Go toolchain: a uprobe on a Go function counts every call with its
//! register-passed argument; a uretprobe on the same function is refused with
//! an error that says why and what to do instead.

use crate::common::{self, fixtures, require_bpf, Exporter, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// tests/fixtures/go/main.go built once, named `uexp-go`.
fn go_program() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = fixtures().dir.join("go");
            std::fs::create_dir_all(&dir).unwrap();
            let binary = dir.join("uexp-go");
            let built = Command::new("go")
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go"))
                .args(["build", "-o"])
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
                Ok(out) => panic!("go build failed: {}", String::from_utf8_lossy(&out.stderr)),
                Err(e) => {
                    common::require(
                        "go",
                        Err(format!("{e}; scripts/setup.sh installs golang-go")),
                    );
                    None
                }
            }
        })
        .as_deref()
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
fn a_uretprobe_on_a_go_binary_is_refused_with_the_reason() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let Some(binary) = go_program() else { return };
    // Its own name, so that the other test's process is not selected here.
    let mut program = Target::start_binary(&common::named_copy(binary, "uexp-go-ret"));
    let config = fixtures()
        .example_config("go_function", "goapp", "uexp-go-ret")
        .replace(
            "    uprobes:\n      main.work: on_work\n",
            "    uprobes:\n      main.work: on_work\n    uretprobes:\n      main.main: on_work\n",
        );
    assert!(config.contains("uretprobes"));
    let exporter = Exporter::start(&config);
    let s = exporter.samples();
    assert_eq!(
        s.value(
            "userspace_exporter_attach_errors_total",
            &[("name", "go_work"), ("probe", "main.main")]
        ),
        1.0,
        "{}",
        exporter.scrape()
    );
    let logs = exporter.logs();
    assert!(
        logs.contains("refusing uretprobe \"main.main\" on Go binary")
            && logs.contains("corrupts Go's moving stacks")
            && logs.contains("use a uprobe"),
        "{logs}"
    );
    // The uprobe on the same program still counts, and the program still runs.
    assert_eq!(program.cmd("work 2 9"), "ok 36");
    let pid = program.pid().to_string();
    assert_eq!(
        exporter.samples().value(
            "userspace_exporter_go_work_calls_total",
            &[("argument", "9"), ("pid", &pid)]
        ),
        2.0
    );
}
