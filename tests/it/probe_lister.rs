//! The `probes` subcommand against the truth: the USDT notes it lists for real
//! runtimes (CPython 3.11, OpenJDK 17's libjvm.so, Ruby 3.1's libruby,
//! PostgreSQL 15) and for every file real processes map are exactly what
//! binutils' `readelf -n` reads from the same files, its functions exactly
//! what `readelf -s` lists; its starter config passes `check` and counts a
//! fixture's probe firings exactly; a config's programs show the processes
//! they select, and none; bad pids and files are named in clear errors.

use crate::common::{self, fixtures, require_bpf, Exporter, Target, EXPORTER};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One probe site as both sides see it: provider, name, address, arguments,
/// semaphore address (0 for none).
type SiteTuple = (String, String, u64, String, u64);

/// Runs `ebpf-userspace-exporter probes ARGS`.
fn probes(args: &[&str]) -> Output {
    Command::new(EXPORTER)
        .arg("probes")
        .args(args)
        .output()
        .expect("run the exporter")
}

/// `probes ARGS --output json`, which must succeed, parsed.
fn probes_json(args: &[&str]) -> Value {
    let out = probes(&[args, &["--output", "json"]].concat());
    assert!(
        out.status.success(),
        "probes {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `probes ARGS` as text, which must succeed.
fn probes_text(args: &[&str]) -> String {
    let out = probes(args);
    assert!(
        out.status.success(),
        "probes {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// stderr of `probes ARGS`, which must fail with exit code 1 and no panic.
fn probes_error(args: &[&str]) -> String {
    let out = probes(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "probes {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn require_readelf() -> bool {
    common::require_command("readelf", &["--version"], "apt-get install binutils")
}

/// Every USDT probe site of `file`, as `readelf -n --wide` prints its
/// `stapsdt` notes, sorted.
fn readelf_sites(file: &Path) -> Vec<SiteTuple> {
    let out = Command::new("readelf")
        .args(["-n", "--wide"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -n {}", file.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap();
    let mut sites = Vec::new();
    let mut current: Option<SiteTuple> = None;
    for line in text.lines() {
        // `  stapsdt  0x00000033  NT_STAPSDT (...)  Provider: python` (--wide: one line).
        if let Some((_, provider)) = line.split_once("Provider: ") {
            sites.extend(current.take());
            current = Some((provider.trim().into(), String::new(), 0, String::new(), 0));
            continue;
        }
        let Some(site) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if let Some(name) = line.strip_prefix("Name: ") {
            site.1 = name.to_string();
        } else if let Some(rest) = line.strip_prefix("Location: ") {
            // `Location: 0x..., Base: 0x..., Semaphore: 0x...`
            let fields: Vec<&str> = rest.split(", ").collect();
            site.2 = hex(fields[0]);
            site.4 = hex(fields[2].strip_prefix("Semaphore: ").unwrap());
        } else if let Some(args) = line.strip_prefix("Arguments:") {
            site.3 = args.trim().to_string();
        } else if !line.is_empty() && !line.starts_with("Owner") {
            // Another note type: the stapsdt note is complete.
            sites.extend(current.take());
        }
    }
    sites.extend(current);
    sites.sort();
    sites
}

/// Every USDT probe site of one file of the lister's JSON, sorted.
fn listed_sites(file: &Value) -> Vec<SiteTuple> {
    let mut sites = Vec::new();
    for probe in file["usdt"].as_array().unwrap() {
        for site in probe["sites"].as_array().unwrap() {
            sites.push((
                probe["provider"].as_str().unwrap().to_string(),
                probe["name"].as_str().unwrap().to_string(),
                site["address"].as_u64().unwrap(),
                site["args"].as_str().unwrap().to_string(),
                probe["semaphore"].as_u64().unwrap_or(0),
            ));
        }
    }
    sites.sort();
    sites
}

/// (provider, name, args, semaphore) of each site: what the brief compares.
fn specs(sites: &[SiteTuple]) -> BTreeSet<(String, String, String, u64)> {
    sites
        .iter()
        .map(|(p, n, _, a, s)| (p.clone(), n.clone(), a.clone(), *s))
        .collect()
}

/// Asserts that `probes --binary FILE` lists exactly readelf's notes, each
/// probe once; returns (distinct probes, sites).
fn assert_binary_matches_readelf(file: &Path) -> (usize, usize) {
    let json = probes_json(&["--binary", file.to_str().unwrap()]);
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["pid"], Value::Null);
    let files = targets[0]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["path"], file.to_str().unwrap());
    let listed = listed_sites(&files[0]);
    let truth = readelf_sites(file);
    assert!(
        !truth.is_empty(),
        "readelf found no notes in {}",
        file.display()
    );
    assert_eq!(specs(&listed), specs(&truth), "{}", file.display());
    // Addresses too, site for site.
    assert_eq!(listed, truth, "{}", file.display());
    // Each probe once, with all its sites.
    let probes: Vec<(&str, &str)> = files[0]["usdt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["provider"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let distinct: BTreeSet<_> = probes.iter().collect();
    assert_eq!(distinct.len(), probes.len(), "a probe listed twice");
    let distinct_truth: BTreeSet<(&str, &str)> =
        truth.iter().map(|s| (s.0.as_str(), s.1.as_str())).collect();
    assert_eq!(probes.len(), distinct_truth.len());
    eprintln!(
        "{}: {} probes, {} sites",
        file.display(),
        probes.len(),
        truth.len()
    );
    (probes.len(), truth.len())
}

/// Files of `dir`'s subdirectories at `relative` (`/usr/lib/jvm/*/lib/server/libjvm.so`),
/// whose subdirectory name passes `keep`, each real file once.
fn files_under(dir: &str, keep: impl Fn(&str) -> bool, relative: &str) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path().join(relative);
        if keep(&name) && path.is_file() {
            out.insert(std::fs::canonicalize(&path).unwrap());
        }
    }
    out.into_iter().collect()
}

#[test]
fn python311_probes_equal_readelf() {
    let _machine = common::shared();
    let python = Path::new(common::PYTHON);
    if !require_readelf() || !common::require_python() {
        return;
    }
    let (probes, sites) = assert_binary_matches_readelf(python);
    // Debian's 3.11.2: gc__start/done, import, function entry/return, line, audit.
    assert_eq!((probes, sites), (8, 8));
}

#[test]
fn libjvm_probes_equal_readelf() {
    let _machine = common::shared();
    let found = files_under(
        "/usr/lib/jvm",
        |name| name.starts_with("java-17-openjdk"),
        "lib/server/libjvm.so",
    );
    if !require_readelf()
        || !common::require(
            "OpenJDK 17's libjvm.so",
            common::found(!found.is_empty(), "apt-get install openjdk-17-jdk-headless"),
        )
    {
        return;
    }
    for libjvm in found {
        let (probes, sites) = assert_binary_matches_readelf(&libjvm);
        assert!(
            probes > 400 && sites >= probes,
            "{probes} probes, {sites} sites"
        );
    }
}

#[test]
fn libruby_probes_equal_readelf() {
    let _machine = common::shared();
    let found: BTreeSet<PathBuf> = std::fs::read_dir("/usr/lib/x86_64-linux-gnu")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("libruby-3.1.so")
        })
        .map(|e| std::fs::canonicalize(e.path()).unwrap())
        .collect();
    if !require_readelf()
        || !common::require(
            "libruby-3.1.so",
            common::found(!found.is_empty(), "apt-get install ruby"),
        )
    {
        return;
    }
    for libruby in found {
        let (probes, sites) = assert_binary_matches_readelf(&libruby);
        // Several probes have several sites (array__create has 4 here).
        assert!(sites > probes, "{probes} probes, {sites} sites");
    }
}

#[test]
fn postgres_probes_equal_readelf() {
    let _machine = common::shared();
    let found = files_under("/usr/lib/postgresql", |_| true, "bin/postgres");
    if !require_readelf()
        || !common::require(
            "postgres",
            common::found(!found.is_empty(), "apt-get install postgresql"),
        )
    {
        return;
    }
    for postgres in found {
        let (probes, _) = assert_binary_matches_readelf(&postgres);
        assert!(probes > 40, "{probes} probes");
    }
}

/// The ELF files `/proc/PID/maps` lists (first mapping order, each once).
fn mapped_elf_files(pid: u32) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[4] == "0" || !fields[5].starts_with('/') {
            continue;
        }
        let path = PathBuf::from(fields[5..].join(" "));
        let mut magic = [0u8; 4];
        let elf = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && magic == *b"\x7fELF";
        if elf && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Asserts that `probes --pid PID` lists every ELF file the process maps, in
/// map order, each with exactly readelf's notes; returns the listed files.
fn assert_process_matches_readelf(pid: u32) -> Vec<Value> {
    let json = probes_json(&["--pid", &pid.to_string()]);
    let target = &json["targets"][0];
    assert_eq!(target["pid"], pid);
    let files = target["files"].as_array().unwrap().clone();
    let listed: Vec<PathBuf> = files
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect();
    let mapped = mapped_elf_files(pid);
    assert_eq!(listed, mapped, "files of process {pid}");
    for (file, path) in files.iter().zip(&mapped) {
        assert_eq!(file.get("error"), None, "{}", path.display());
        assert_eq!(
            listed_sites(file),
            readelf_sites(path),
            "{}",
            path.display()
        );
    }
    files
}

#[test]
fn python311_process_probes_equal_readelf_of_every_mapped_file() {
    let _machine = common::shared();
    if !require_readelf() || !common::require_python() {
        return;
    }
    let python = Target::spawn(Command::new(common::PYTHON).args([
        "-c",
        "import time\nprint('ready', flush=True)\nwhile True: time.sleep(1)",
    ]));
    let files = assert_process_matches_readelf(python.pid());
    let with_probes: Vec<&str> = files
        .iter()
        .filter(|f| !f["usdt"].as_array().unwrap().is_empty())
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    // Debian's python3.11 holds its interpreter (and probes) in the executable.
    assert_eq!(with_probes, [common::PYTHON]);
    assert!(files.len() >= 4, "{files:?}");
}

#[test]
fn fixture_process_lists_the_probes_of_its_executable_and_library() {
    let _machine = common::shared();
    if !require_readelf() {
        return;
    }
    let target = Target::start("uexp-lister");
    let files = assert_process_matches_readelf(target.pid());
    let exe = fixtures().dir.join("uexp-lister");
    let by_path: BTreeMap<&str, &Value> = files
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f))
        .collect();
    let probes_of = |path: &Path| -> Vec<(String, bool)> {
        by_path[path.to_str().unwrap()]["usdt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    format!(
                        "{}:{}",
                        p["provider"].as_str().unwrap(),
                        p["name"].as_str().unwrap()
                    ),
                    !p["semaphore"].is_null(),
                )
            })
            .collect()
    };
    assert_eq!(
        probes_of(&exe),
        [
            ("fixture:guarded".to_string(), true),
            ("fixture:hit".to_string(), false),
            ("fixture:tagged".to_string(), false),
        ]
    );
    assert_eq!(
        probes_of(&fixtures().library),
        [("fixturelib:event".to_string(), false)]
    );
    // The text shows the same, grouped by file.
    let text = probes_text(&["--pid", &target.pid().to_string()]);
    let heading = format!("process {} (uexp-lister) {}\n", target.pid(), exe.display());
    assert!(text.starts_with(&heading), "{text}");
    let library = format!("\n  {}\n    USDT PROBE        SITES  SEMAPHORE  ARGUMENTS\n    fixturelib:event      1  -          ", fixtures().library.display());
    assert!(text.contains(&library), "{text}");
}

/// `(name, address)` of every function readelf -s lists in `file` (defined,
/// non-zero), versions cut off.
fn readelf_functions(file: &Path) -> BTreeSet<(String, u64)> {
    let out = Command::new("readelf")
        .args(["-s", "--wide"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut functions = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // Num: Value Size Type Bind Vis Ndx Name
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[0].ends_with(':') {
            continue;
        }
        let Ok(value) = u64::from_str_radix(fields[1], 16) else {
            continue;
        };
        if !matches!(fields[3], "FUNC" | "IFUNC") || fields[6] == "UND" || value == 0 {
            continue;
        }
        let name = fields[7].split('@').next().unwrap();
        functions.insert((name.to_string(), value));
    }
    functions
}

fn listed_functions(file: &Value) -> BTreeSet<(String, u64)> {
    file["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["address"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn functions_glob_lists_exactly_the_matching_functions() {
    let _machine = common::shared();
    if !require_readelf() {
        return;
    }
    let f = fixtures();
    let binary = f.target.to_str().unwrap();
    let json = probes_json(&["--binary", binary, "--functions", "*guarded*"]);
    let file = &json["targets"][0]["files"][0];
    let names: Vec<&str> = file["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["guarded_probe", "guarded_semaphore_value"]);
    // Addresses are readelf's.
    let all = readelf_functions(&f.target);
    assert!(listed_functions(file).is_subset(&all));

    // `*`: every function readelf lists, no more.
    let json = probes_json(&["--binary", binary, "--functions", "*"]);
    assert_eq!(listed_functions(&json["targets"][0]["files"][0]), all);
    // Without --functions there is no list at all.
    let json = probes_json(&["--binary", binary]);
    assert_eq!(json["targets"][0]["files"][0].get("functions"), None);

    // In a process, every mapped file is searched: lib_event is in the library only.
    let target = Target::start("uexp-lister-fn");
    let json = probes_json(&[
        "--pid",
        &target.pid().to_string(),
        "--functions",
        "lib_event",
    ]);
    let found: Vec<(&str, BTreeSet<(String, u64)>)> = json["targets"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| (file["path"].as_str().unwrap(), listed_functions(file)))
        .filter(|(_, functions)| !functions.is_empty())
        .collect();
    let in_library: BTreeSet<_> = readelf_functions(&f.library)
        .into_iter()
        .filter(|(name, _)| name == "lib_event")
        .collect();
    assert_eq!(in_library.len(), 1);
    assert_eq!(found, [(f.library.to_str().unwrap(), in_library)]);
}

#[test]
fn starter_config_passes_check_and_counts_every_probe_exactly() {
    let _machine = common::shared();
    if !require_bpf() {
        return;
    }
    let mut target = Target::start("uexp-starter");
    let pid = target.pid().to_string();
    let out = probes(&["--pid", &pid, "--starter-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = String::from_utf8(out.stdout).unwrap();
    let exe = fixtures().dir.join("uexp-starter");
    assert!(
        config.contains(&format!("      exe_path: \"{}\"\n", exe.display())),
        "{config}"
    );
    // Only the header comment names the pid it was listed from.
    assert!(
        config
            .lines()
            .all(|line| line.trim_start().starts_with('#') || !line.contains(&pid)),
        "the config must not depend on the pid:\n{config}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starter.yaml");
    std::fs::write(&path, &config).unwrap();
    let check = Command::new(EXPORTER)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(
        report,
        format!(
            "ok: program \"uexp-starter\": 4 probe(s), 4 counter(s), 0 histogram(s); loads through the verifier\nkernel {} ({}): 1 program(s) would run in full, 0 degraded, 0 not at all\n",
            kernel.trim(),
            std::env::consts::ARCH
        )
    );

    let exporter = Exporter::start(&config);
    for command in ["usdt 5 1", "guarded 3 7", "lib 4 2", "comm 2 9"] {
        target.fire(command);
    }
    let samples = exporter.samples();
    for (metric, fired) in [
        ("fixture_hit_total", 5.0),
        ("fixture_guarded_total", 3.0),
        ("fixturelib_event_total", 4.0),
        ("fixture_tagged_total", 2.0),
    ] {
        let name = format!("userspace_exporter_{metric}");
        assert_eq!(
            samples.series(&name),
            [(format!("{name}{{pid={pid:?}}}"), fired)],
            "{}",
            exporter.logs()
        );
    }
}

#[test]
fn a_config_shows_each_program_with_the_processes_it_selects() {
    let _machine = common::shared();
    let target = Target::start("uexp-lister-c");
    let pid = target.pid();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.yaml");
    let program = |name: &str, comm: &str| {
        format!(
            r#"  - name: {name}
    metrics:
      counters:
        - {{name: {name}_hits_total, help: fixture hits, table: hits}}
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
    code: |
      BPF_ARRAY(hits, u64, 1);
      int on_hit(struct pt_regs *ctx) {{ hits.increment(0); return 0; }}
"#
        )
    };
    let config = format!(
        "programs:\n{}{}",
        program("seen", "uexp-lister-c"),
        program("unseen", "uexp-nobody")
    );
    std::fs::write(&path, config).unwrap();
    let config_arg = path.to_str().unwrap();

    let json = probes_json(&["-c", config_arg]);
    assert_eq!(
        json["programs"],
        serde_json::json!([
            {"name": "seen", "selector": "binary_name=uexp-lister-c", "pids": [pid]},
            {"name": "unseen", "selector": "binary_name=uexp-nobody", "pids": []},
        ])
    );
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["pid"], pid);
    assert_eq!(targets[0]["comm"], "uexp-lister-c");
    let exe = fixtures().dir.join("uexp-lister-c");
    let exe_file = targets[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == exe.to_str().unwrap())
        .expect("the executable is listed");
    assert_eq!(listed_sites(exe_file), readelf_sites(&exe));

    let text = probes_text(&["-c", config_arg, "--usdt", "fixture:hit"]);
    let expected_start = format!(
        "program \"seen\" (binary_name=uexp-lister-c): 1 process: {pid}\n\
         program \"unseen\" (binary_name=uexp-nobody): no process selected now\n\
         \n\
         process {pid} (uexp-lister-c) {exe}\n  {exe}\n    USDT PROBE   SITES  SEMAPHORE  ARGUMENTS\n    fixture:hit      1  -          ",
        exe = exe.display()
    );
    assert!(text.starts_with(&expected_start), "{text}");
}

#[test]
fn errors_name_the_pid_or_the_file() {
    let _machine = common::shared();
    // A pid beyond pid_max is never in use.
    let pid_max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let missing = (pid_max + 1).to_string();
    assert_eq!(
        probes_error(&["--pid", &missing]),
        format!("error: no process with pid {missing} (in the PID namespace of this command)\n")
    );

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    assert_eq!(
        probes_error(&["--binary", script.to_str().unwrap()]),
        format!(
            "error: {} is not an ELF file: no ELF magic number\n",
            script.display()
        )
    );
    let absent = dir.path().join("absent");
    assert_eq!(
        probes_error(&["--binary", absent.to_str().unwrap()]),
        format!("error: {}: no such file\n", absent.display())
    );
    assert_eq!(
        probes_error(&["--binary", "/bin/true", "--functions", "a{b"]),
        "error: --functions glob \"a{b\" does not compile: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)\n"
    );
    // A library names no process to select.
    let library = fixtures().library.to_str().unwrap();
    assert_eq!(
        probes_error(&["--binary", library, "--starter-config"]),
        format!("error: {library} is a shared library: a starter config selects the processes running an executable; give the executable with --binary, or --pid of a process that maps the library\n")
    );

    // Another user's process, without CAP_SYS_PTRACE: the capability is named.
    let target = Target::start("uexp-lister-e");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65532",
            "--regid=65532",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            EXPORTER,
            "probes",
            "--pid",
            &target.pid().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("error: cannot read the files of process {} (uexp-lister-e): permission denied; the exporter needs CAP_SYS_PTRACE (and CAP_DAC_READ_SEARCH) to probe another user's processes\n", target.pid())
    );
}
