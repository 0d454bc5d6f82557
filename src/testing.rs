//! What every test of this crate shares about the machine it runs on: whether
//! this run is CI, where nothing may be skipped, and the record of the tests
//! that did skip, printed as the test binary's closing line. Not part of the
//! exporter; public only so that the integration and fuzz test binaries use
//! the same rules as the unit tests.

use std::fmt::Display;
use std::sync::{Mutex, Once};

/// Whether this run is CI: `CI` set to anything but empty, `0` or `false`
/// (any case). CI sets `CI=true`; `.ci/run` does too.
pub fn in_ci() -> bool {
    means_ci(std::env::var("CI").ok().as_deref())
}

/// Whether a value of `CI` (`None`: unset) means CI.
fn means_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
    })
}

/// The tests skipped so far in this binary: (test, what was missing).
static SKIPPED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static SUMMARY: Once = Once::new();

/// Whether a test may go on: `found` says whether `what` it needs is here
/// (`Err` says why not). In CI a missing need fails the test (panics); in
/// any other run the test is recorded as skipped, its name and reason are
/// printed when the binary exits, and `false` tells it to return.
pub fn require(what: impl Display, found: Result<(), String>) -> bool {
    let Err(why) = found else {
        return true;
    };
    let reason = format!("{what} unavailable ({why})");
    assert!(
        !in_ci(),
        "{reason}: CI=true requires every test to run (scripts/setup.sh installs what the tests need)"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    eprintln!("SKIPPED: {reason}; set CI=true to make this a failure");
    SKIPPED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((test, reason));
    SUMMARY.call_once(|| {
        // SAFETY: registers a plain extern "C" function without arguments.
        unsafe { libc::atexit(print_skipped) };
    });
    false
}

/// Runs at exit, after libtest's own summary (which counts a skipped test as
/// passed): says how many of them tested nothing, and why.
extern "C" fn print_skipped() {
    let skipped = SKIPPED.lock().unwrap_or_else(|p| p.into_inner());
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (test, reason) in skipped.iter() {
        by_reason.entry(reason).or_default().push(test);
    }
    let mut text = String::new();
    for (reason, tests) in &by_reason {
        text.push_str(&format!(
            "  {reason}: {} test(s): {}\n",
            tests.len(),
            tests.join(", ")
        ));
    }
    text.push_str(&format!(
        "test result: SKIPPED {} of the tests counted as passed above: they tested nothing. Run as root on a machine set up by scripts/setup.sh, or set CI=true to make a skip a failure.\n",
        skipped.len()
    ));
    // Straight to the file descriptor: Rust's stdout may be torn down by now.
    // SAFETY: writing a valid buffer of its own length.
    unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
}

/// Debian 12's Go toolchain (Go 1.19, package golang-1.19-go, which
/// golang-go depends on). The Go tests build their fixture with it, not with
/// whatever `go` is first on `PATH`: what they assert (Go's function table
/// layout, the ABI wrappers it lists, the functions' addresses) was measured
/// on that version.
pub const GO_TOOLCHAIN: &str = "/usr/lib/go-1.19/bin/go";

/// [`GO_TOOLCHAIN`], or why it is missing (for [`require`]).
pub fn go_toolchain() -> Result<&'static std::path::Path, String> {
    let go = std::path::Path::new(GO_TOOLCHAIN);
    if go.is_file() {
        Ok(go)
    } else {
        Err(format!(
            "no {GO_TOOLCHAIN}; scripts/setup.sh installs golang-1.19-go (Debian 12's golang-go)"
        ))
    }
}

/// The Go fixture (tests/fixtures/go) built by [`GO_TOOLCHAIN`] with `args`
/// (to `go build`) into `dir/out`, offline, with its caches under `dir`;
/// `None` (the test recorded as skipped, outside CI) without that Go.
pub fn go_build(dir: &std::path::Path, out: &str, args: &[&str]) -> Option<std::path::PathBuf> {
    let go = go_toolchain();
    let Ok(go) = go else {
        require("Go 1.19", go.map(|_| ()));
        return None;
    };
    let binary = dir.join(out);
    let built = std::process::Command::new(go)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go"))
        .arg("build")
        .args(args)
        .arg("-o")
        .arg(&binary)
        .arg(".")
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "on")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output();
    match built {
        Ok(out) if out.status.success() => Some(binary),
        Ok(out) => panic!(
            "go build {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{}: {e}", go.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_read_one_way() {
        for (value, want) in [
            (Some("true"), true),
            (Some("1"), true),
            (Some("yes"), true),
            (Some("TRUE"), true),
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("false"), false),
            (Some("False"), false),
        ] {
            assert_eq!(means_ci(value), want, "CI={value:?}");
        }
    }
}
