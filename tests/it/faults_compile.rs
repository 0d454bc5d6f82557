//! Faults of the compile stage: clang missing, failing or killed mid-compile,
//! a compile cache entry that is corrupt or truncated, a cache directory that
//! cannot be written. Each breaks at most the program concerned, says which,
//! and panics nowhere; the other programs run and count exactly.

use crate::common::{self, require_bpf, Exporter, Target};
use std::path::{Path, PathBuf};

/// An inline-code program `name` counting fixture:hit by argument into
/// `userspace_exporter_<name>_total`, selecting processes named `comm`. `marker`
/// goes into the code as a comment (a fake clang can tell programs apart by it).
fn inline_program(name: &str, comm: &str, marker: &str) -> String {
    format!(
        r#"
  - name: {name}
    code: |
      // {marker}
      BPF_HASH({name}_hits, u64);
      int on_hit(struct pt_regs *ctx) {{
          u64 arg = 0;
          bpf_usdt_readarg(1, ctx, &arg);
          {name}_hits.increment(arg);
          return 0;
      }}
    metrics:
      counters:
        - name: {name}_total
          help: fixture:hit by argument, from inline code
          table: {name}_hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"#
    )
}

/// A program `object` from the prebuilt fixture object, counting fixture:hit
/// into `userspace_exporter_object_total`.
fn object_program(comm: &str) -> String {
    common::hits_program("object", "object_total", comm)
}

fn hits(exporter: &Exporter, metric: &str, pid: u32, arg: &str) -> Option<f64> {
    exporter.samples().get(
        &format!("userspace_exporter_{metric}"),
        &[("arg", arg), ("pid", &pid.to_string())],
    )
}

fn assert_no_panic(exporter: &Exporter) {
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// Fault: clang is missing (`--clang /nonexistent/clang`) at startup. Expected:
/// the inline program is reported broken, naming it and clang; the object
/// program still counts exactly; no panic.
#[test]
fn a_missing_clang_breaks_only_the_inline_program() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-noclang";
    let mut target = Target::start(comm);
    let config = format!(
        "programs:{}{}",
        inline_program("inline", comm, "inline"),
        object_program(comm)
    );
    let exporter = Exporter::start_with(&config, &["--clang", "/nonexistent/clang"]);
    target.fire("usdt 5 1");
    assert_eq!(
        hits(&exporter, "object_total", target.pid(), "1"),
        Some(5.0)
    );
    assert!(exporter
        .samples()
        .series("userspace_exporter_inline_total")
        .is_empty());
    let logs = exporter.logs();
    assert!(
        logs.lines().any(|l| l.contains("ERROR")
            && l.contains("program \"inline\"")
            && l.contains("clang not found (/nonexistent/clang not runnable)")),
        "{logs}"
    );
    let page = exporter.page("/");
    assert!(page.contains("clang not found"), "{page}");
    assert_no_panic(&exporter);
}

/// Fault: clang fails mid-compile: it exits 1 with an internal error, or it is
/// killed (SIGKILL) after writing half its output. Expected: the program it was
/// compiling is reported broken with clang's message or the signal, the other
/// inline program and the object program count exactly, no panic, and nothing
/// of the failed compile is cached (a later start with a working clang
/// compiles it afresh and counts).
#[test]
fn a_clang_that_fails_or_is_killed_mid_compile_breaks_only_its_program() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-badclang";
    let mut target = Target::start(comm);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "programs:{}{}{}",
        inline_program("good", comm, "compiles"),
        inline_program("bad", comm, "CRASH-HERE"),
        object_program(comm)
    );
    // Both fakes run the real clang for `--version` and for the good program.
    let prelude = r#"[ "$1" = --version ] && exec clang "$@"
out=""; src=""; prev=""
for a in "$@"; do
  [ "$prev" = -o ] && out="$a"
  [ "$prev" = -c ] && src="$a"
  prev="$a"
done
grep -q CRASH-HERE "$src" || exec clang "$@"
"#;
    let exits = script(
        &dir.path().join("clang-exit1"),
        &format!(
            "{prelude}echo 'clang: error: unable to execute command: Segmentation fault (core dumped)' >&2\nexit 1\n"
        ),
    );
    let killed = script(
        &dir.path().join("clang-killed"),
        &format!("{prelude}clang \"$@\" || exit 3\nhead -c 100 \"$out\" > \"$out.half\" && mv \"$out.half\" \"$out\"\nkill -9 $$\n"),
    );
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().unwrap();
    for (clang, expected) in [
        (
            &exits,
            "clang failed:\nclang: error: unable to execute command: Segmentation fault (core dumped)",
        ),
        (&killed, "clang was killed by signal 9 (SIGKILL)"),
    ] {
        let exporter = Exporter::start_with(
            &config,
            &["--clang", clang.to_str().unwrap(), "--cache-dir", cache_arg],
        );
        target.fire("usdt 4 2");
        assert_eq!(
            hits(&exporter, "good_total", target.pid(), "2"),
            Some(4.0),
            "{}",
            exporter.logs()
        );
        assert_eq!(
            hits(&exporter, "object_total", target.pid(), "2"),
            Some(4.0)
        );
        assert!(exporter
            .samples()
            .series("userspace_exporter_bad_total")
            .is_empty());
        let logs = exporter.logs();
        assert!(
            logs.contains(&format!("program \"bad\": {expected}")),
            "expected {expected:?} in:\n{logs}"
        );
        assert_no_panic(&exporter);
    }
    // The real clang: the bad program was never cached, so it is compiled now.
    let exporter = Exporter::start_with(&config, &["--cache-dir", cache_arg]);
    let logs = exporter.logs();
    assert!(
        logs.contains("compiled inline code program=bad cached=false")
            && logs.contains("compiled inline code program=good cached=true"),
        "{logs}"
    );
    target.fire("usdt 3 7");
    assert_eq!(
        hits(&exporter, "bad_total", target.pid(), "7"),
        Some(3.0),
        "{logs}"
    );
}

/// The one object file in the cache's `objects/`.
fn cached_object(cache: &Path) -> PathBuf {
    let objects: Vec<PathBuf> = std::fs::read_dir(cache.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    assert_eq!(objects.len(), 1, "{objects:?}");
    objects.into_iter().next().unwrap()
}

/// Fault: a compile cache entry is truncated (half its bytes), corrupt
/// (bytes flipped in the middle, same length) or empty; the cached headers'
/// vmlinux.h is cut short. Expected: nothing damaged is used: the program is
/// compiled again (`cached=false`), the entry (or the headers) rewritten, and
/// the program counts exactly; the next start uses the cache.
#[test]
fn a_truncated_or_corrupt_cache_entry_is_recompiled_never_loaded() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-badcache";
    let mut target = Target::start(comm);
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().to_str().unwrap();
    let config = format!("programs:{}", inline_program("cached", comm, "cached"));
    let start = || Exporter::start_with(&config, &["--cache-dir", cache_arg]);
    let exporter = start();
    assert!(exporter
        .logs()
        .contains("compiled inline code program=cached cached=false"));
    drop(exporter);
    let entry = cached_object(cache.path());
    let good = std::fs::read(&entry).unwrap();
    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let damaged: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("corrupt", corrupt),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&entry, &bytes).unwrap();
        let exporter = start();
        let logs = exporter.logs();
        assert!(
            logs.contains("compiled inline code program=cached cached=false"),
            "{what} entry loaded:\n{logs}"
        );
        target.fire("usdt 6 3");
        assert_eq!(
            hits(&exporter, "cached_total", target.pid(), "3"),
            Some(6.0),
            "{what}:\n{logs}"
        );
        assert_no_panic(&exporter);
        drop(exporter);
        assert_ne!(
            std::fs::read(cached_object(cache.path())).unwrap(),
            bytes,
            "{what}: the entry was not rewritten"
        );
    }
    let exporter = start();
    assert!(exporter
        .logs()
        .contains("compiled inline code program=cached cached=true"));
    target.fire("usdt 2 3");
    assert_eq!(
        hits(&exporter, "cached_total", target.pid(), "3"),
        Some(2.0)
    );
    drop(exporter);
    // The cached headers damaged (vmlinux.h cut short) and the object gone:
    // the headers are laid out again and the program compiles.
    let include = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("include-")
        })
        .expect("an include directory in the cache");
    let vmlinux_h = include.join("vmlinux.h");
    let header = std::fs::read(&vmlinux_h).unwrap();
    std::fs::write(&vmlinux_h, &header[..header.len() / 3]).unwrap();
    std::fs::remove_dir_all(cache.path().join("objects")).unwrap();
    let exporter = start();
    let logs = exporter.logs();
    assert!(
        logs.contains("are incomplete or damaged: laying them out again")
            && logs.contains("compiled inline code program=cached cached=false"),
        "{logs}"
    );
    target.fire("usdt 4 3");
    assert_eq!(
        hits(&exporter, "cached_total", target.pid(), "3"),
        Some(4.0),
        "{logs}"
    );
    assert_eq!(std::fs::read(&vmlinux_h).unwrap(), header);
}

/// Fault: the cache directory cannot be written: a read-only mount, or a file
/// where the directory should be. Expected: the program is compiled without
/// caching (`cached=false` at every start), a warning names the directory, and
/// the program counts exactly.
#[test]
fn an_unwritable_cache_directory_compiles_without_caching_and_warns() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let comm = "uexp-rocache";
    let mut target = Target::start(comm);
    let config = format!("programs:{}", inline_program("uncached", comm, "uncached"));
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    // A read-only mount, in a mount namespace of the exporter's own (root
    // writes through permission bits, not through a read-only mount).
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    let remount = format!(
        "mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && exec \"$0\" \"$@\"",
        ro = read_only.display()
    );
    let unshare = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        remount.as_str(),
    ];
    for (cache, wrapper) in [(&file, &[][..]), (&read_only, &unshare[..])] {
        for round in 0..2 {
            let exporter = Exporter::start_with_command(
                &config,
                &["--cache-dir", cache.to_str().unwrap()],
                wrapper,
            );
            let logs = exporter.logs();
            assert!(
                logs.contains("compiled inline code program=uncached cached=false"),
                "{}, round {round}:\n{logs}",
                cache.display()
            );
            assert!(
                logs.lines().any(|l| l.contains("WARN")
                    && l.contains(&format!("cache directory {}", cache.display()))
                    && l.contains("without caching")),
                "{}:\n{logs}",
                cache.display()
            );
            target.fire("usdt 5 4");
            assert_eq!(
                hits(&exporter, "uncached_total", target.pid(), "4"),
                Some(5.0),
                "{logs}"
            );
            assert_no_panic(&exporter);
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"");
    assert_eq!(std::fs::read_dir(&read_only).unwrap().count(), 0);
}
