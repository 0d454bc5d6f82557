//! Shared harness of the integration tests: builds the C targets and BPF
//! objects, starts targets and the exporter binary, scrapes and parses.
//!
//! # Sharing the machine
//!
//! All the integration tests are in one binary, and libtest runs them in
//! parallel threads (one per core unless `--test-threads` says otherwise),
//! whatever module they are in. Most tests see only what they start: their
//! targets run under a name (comm, copy of a binary, command-line marker) that
//! no other test in any module uses, and their exporter selects only that
//! name. Those take the shared guard. A test that needs the machine to itself
//! takes the exclusive guard instead: no other test runs while it holds it.
//! That is a test that
//!
//! - took it to count BPF objects kernel-wide (`churn_leaks`, `faults`,
//!   `faults_stop`, `reload`, `soak`): they now count only what their
//!   exporter holds (`kernel_objects`), and keep the guard for their load
//!   and timings (`faults_stop` times the exit, `soak` every scrape);
//!   whether the others could share the machine was not tried;
//! - selects processes machine-wide, so that it would attach to other tests'
//!   processes: the embedded default pack (every python3.11, java, ruby and
//!   postgres by path; `default_pack`), an exporter in the host PID namespace
//!   selecting every `python3.11` (`podman`);
//! - changes a setting every process sees: `/sys/kernel/rcu_expedited`
//!   (`churn`, expedited RCU);
//! - asserts a latency another test's load could break: a probe hit 100 ms
//!   after exec is counted (`churn`, exec events and expedited RCU);
//! - runs containers (`podman`): podman, conmon and runc take the machine's
//!   two cores, and these tests always ran alone (the guard replaces the
//!   podman module's own mutex).
//!
//! The rule, without exceptions: a test's first statement is
//! `let _machine = common::shared();` or `let _machine = common::exclusive();`,
//! bound to a name (`let _ = ...` would drop it at once). Locals drop in
//! reverse order, so the guard is released last, after the test's exporters
//! and targets have been stopped. A test that needs none of the above takes
//! the shared guard, even one that starts nothing, so that `grep` can check
//! the rule: as many guards as `#[test]`s.
//!
//! The guard is a read (shared) or write (exclusive) lock of one process-wide
//! [`RwLock`]: it orders the tests of one run of this binary, not two runs at
//! once (scripts run one suite at a time). A test that panics holding the
//! write lock poisons it; the others go on (its failure is reported on its own).

use crate::kernel_objects::Watch;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use userspace_exporter::compile::bpf_flags;

/// The machine, shared by tests or held by one (see the module documentation).
static MACHINE: RwLock<()> = RwLock::new(());

/// For a test that may run alongside other shared tests: it sees only its own
/// processes. Hold it for the whole test (`let _machine = common::shared();`).
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|p| p.into_inner())
}

/// For a test that needs the machine to itself: waits until no other test
/// runs, and keeps them waiting until it is dropped.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|p| p.into_inner())
}

/// The exporter binary under test.
pub const EXPORTER: &str = env!("CARGO_BIN_EXE_ebpf-userspace-exporter");

/// File name of the built fixture target.
const TARGET_FILE: &str = "uexp-target";

/// Whether a test may go on, `found` saying whether `what` it needs is here:
/// a failure under CI, otherwise a skip recorded and printed as the test
/// binary's closing line (see `userspace_exporter::testing`). Every test that
/// needs something the machine may lack asks through this (or the helpers
/// below), never on its own.
pub fn require(what: impl std::fmt::Display, found: Result<(), String>) -> bool {
    userspace_exporter::testing::require(what, found)
}

/// `Ok` when `present`, else `Err` saying how to install what is missing: the
/// `found` argument of [`require`].
pub fn found(present: bool, install: &str) -> Result<(), String> {
    if present {
        Ok(())
    } else {
        Err(format!("missing; {install}"))
    }
}

/// Whether `program args...` runs and exits 0 (a tool's `--version`, say);
/// `install` says how to get it.
pub fn require_command(program: &str, args: &[&str], install: &str) -> bool {
    let found = match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {}` failed ({}); {install}",
            args.join(" "),
            out.status
        )),
        Err(e) => Err(format!("{e}; {install}")),
    };
    require(program, found)
}

/// Whether `path` exists; `install` says how to get it.
pub fn require_path(path: impl AsRef<Path>, install: &str) -> bool {
    let path = path.as_ref();
    let found = if path.exists() {
        Ok(())
    } else {
        Err(format!("no {}; {install}", path.display()))
    };
    require(path.display(), found)
}

/// True when BPF can be used here. In CI a missing BPF is a failure, not a skip.
pub fn require_bpf() -> bool {
    let problem = if unsafe { libc::geteuid() } != 0 {
        Some("not running as root".to_string())
    } else {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let fd = unsafe {
            libbpf_sys::bpf_map_create(
                libbpf_sys::BPF_MAP_TYPE_ARRAY,
                std::ptr::null(),
                4,
                8,
                1,
                &opts,
            )
        };
        if fd < 0 {
            Some(format!(
                "bpf(BPF_MAP_CREATE) failed: {}",
                std::io::Error::from_raw_os_error(-fd)
            ))
        } else {
            unsafe { libc::close(fd) };
            None
        }
    };
    require("BPF", problem.map_or(Ok(()), Err))
}

/// Paths of everything built from tests/fixtures.
pub struct Fixtures {
    /// The driven C target.
    pub target: PathBuf,
    /// Its shared library.
    pub library: PathBuf,
    /// A C program calling libc's getaddrinfo (tests/fixtures/resolver.c).
    pub resolver: PathBuf,
    /// A program that dlopens `libuexp_plugin.so` on command (tests/fixtures/loader.c),
    /// found through its RUNPATH `$ORIGIN/plugins`.
    pub loader: PathBuf,
    /// The directory holding `libuexp_plugin.so` (tests/fixtures/plugin.c).
    pub plugins: PathBuf,
    /// Asks the kernel which steps the caller's credentials allow
    /// (tests/fixtures/kernel_features.c; see [`kernel_allows`]).
    pub kernel_features: PathBuf,
    /// A process holding BPF objects of its own, unrelated to any exporter
    /// (tests/fixtures/bpf_holder.c; see `kernel_objects::Holder`).
    pub bpf_holder: PathBuf,
    /// BPF sources and their objects by stem (`usdt_counts`, or `example:python`
    /// for examples/python.bpf.c); see [`Fixtures::object`].
    objects: BTreeMap<String, (PathBuf, PathBuf)>,
    /// The objects compiled so far.
    compiled: Mutex<BTreeSet<String>>,
    /// The exporter's own libbpf headers (`headers -o`).
    include: PathBuf,
    /// Directory holding it all.
    pub dir: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the fixtures once per run of the test binary.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let library = dir.join("libfixture.so");
        run(Command::new("cc")
            .args(["-O1", "-g", "-shared", "-fPIC", "-o"])
            .arg(&library)
            .arg(src.join("libfixture.c")));
        let target = dir.join(TARGET_FILE);
        run(Command::new("cc")
            .args(["-O1", "-g", "-o"])
            .arg(&target)
            .arg(src.join("target.c"))
            .arg(src.join("guarded.c"))
            .arg(format!("-L{}", dir.display()))
            .args(["-lfixture", "-Wl,-rpath,$ORIGIN"]));
        let resolver = dir.join("uexp-resolver");
        run(Command::new("cc")
            .args(["-O1", "-g", "-o"])
            .arg(&resolver)
            .arg(src.join("resolver.c")));
        // Apart from the target's directory: only a search path finds it.
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        run(Command::new("cc")
            .args(["-O1", "-g", "-shared", "-fPIC", "-o"])
            .arg(plugins.join("libuexp_plugin.so"))
            .arg(src.join("plugin.c")));
        let loader = dir.join("uexp-loader");
        run(Command::new("cc")
            .args(["-O1", "-g", "-o"])
            .arg(&loader)
            .arg(src.join("loader.c"))
            .arg("-Wl,-rpath,$ORIGIN/plugins"));
        let kernel_features = dir.join("uexp-kernel-features");
        run(Command::new("cc")
            .args(["-O1", "-g", "-o"])
            .arg(&kernel_features)
            .arg(src.join("kernel_features.c")));
        let bpf_holder = dir.join("uexp-bpf-holder");
        run(Command::new("cc")
            .args(["-O1", "-g", "-o"])
            .arg(&bpf_holder)
            .arg(src.join("bpf_holder.c")));
        // Headers from the exporter itself: the ones matching its libbpf.
        let include = dir.join("include");
        run(Command::new(EXPORTER).args(["headers", "-o"]).arg(&include));
        // BPF objects are compiled when a test first asks for one, so that a run
        // (of some tests only, say) compiles only the objects its tests use.
        let mut objects = BTreeMap::new();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for (prefix, folder) in [("", src.join("bpf")), ("example:", examples)] {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".bpf.c"))
                else {
                    continue;
                };
                let object = dir.join(format!("{}{name}.bpf.o", prefix.trim_end_matches(':')));
                objects.insert(format!("{prefix}{name}"), (path, object));
            }
        }
        Fixtures {
            target,
            library,
            resolver,
            loader,
            plugins,
            kernel_features,
            bpf_holder,
            objects,
            compiled: Mutex::new(BTreeSet::new()),
            include,
            dir,
        }
    })
}

impl Fixtures {
    /// An inline-code example's config (examples/NAME.yaml) selecting processes named
    /// `comm` instead of `runtime_comm`.
    pub fn example_config_code(&self, name: &str, runtime_comm: &str, comm: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.yaml"));
        let text = std::fs::read_to_string(path).unwrap();
        let binary = format!("binary_name: \"{runtime_comm}\"");
        assert!(
            text.contains(&binary),
            "example {name} does not select {binary}"
        );
        text.replace(&binary, &format!("binary_name: \"{comm}\""))
    }

    /// An example's config (examples/NAME.yaml) pointed at the built object and at
    /// processes named `comm` instead of the runtime's usual name.
    pub fn example_config(&self, name: &str, runtime_comm: &str, comm: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.yaml"));
        let text = std::fs::read_to_string(path).unwrap();
        let object = format!("object: {name}.bpf.o");
        assert!(
            text.contains(&object),
            "example {name} does not use {object}"
        );
        let binary = format!("binary_name: {runtime_comm}");
        assert!(
            text.contains(&binary),
            "example {name} does not select {binary}"
        );
        text.replace(
            &object,
            &format!(
                "object: {}",
                self.object(&format!("example:{name}")).display()
            ),
        )
        .replace(&binary, &format!("binary_name: {comm}"))
    }

    /// A copy of the fixture target named `comm` (at most 15 bytes), beside its library.
    pub fn target_named(&self, comm: &str) -> PathBuf {
        named_copy(&self.target, comm)
    }

    /// A BPF object by stem.
    pub fn object(&self, name: &str) -> &Path {
        let (source, object) = self
            .objects
            .get(name)
            .unwrap_or_else(|| panic!("no fixture object {name}"));
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if !compiled.contains(name) {
            // The flags the exporter builds its own objects with, for this
            // machine's architecture (its registers, its asm/ headers).
            let arch = bpf_flags::BpfArch::of(std::env::consts::ARCH)
                .unwrap_or_else(|e| panic!("compiling fixture object {name}: {e}"));
            run(Command::new("clang")
                .args(bpf_flags::cflags(arch))
                .arg(format!(
                    "-I{}",
                    arch.multiarch_include_dir(cfg!(target_endian = "big"))
                ))
                .arg(format!("-I{}", self.include.display()))
                .arg("-c")
                .arg(source)
                .arg("-o")
                .arg(object));
            compiled.insert(name.to_string());
        }
        object
    }
}

/// A running fixture target driven through stdin.
pub struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    /// Starts the fixture target under its own name (comm), so that tests running
    /// in parallel never select each other's processes.
    pub fn start(comm: &str) -> Target {
        Self::start_binary(&fixtures().target_named(comm))
    }

    /// Starts a target binary that speaks the fixture protocol.
    pub fn start_binary(binary: &Path) -> Target {
        Self::spawn(&mut Command::new(binary))
    }

    /// Starts any program that speaks the protocol (a line per command on stdin,
    /// a reply line on stdout, `ready` first): the fixture target, or a runtime's
    /// driver script. Waits for its `ready`.
    pub fn spawn(command: &mut Command) -> Target {
        let mut child = spawn(command.stdin(Stdio::piped()).stdout(Stdio::piped()));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Target {
            child,
            stdin,
            stdout,
        }
    }

    /// pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command and returns the target's reply line.
    pub fn cmd(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Sends a command to the C fixture target, which answers `ok SUM`.
    pub fn fire(&mut self, command: &str) {
        let reply = self.cmd(command);
        assert!(reply.starts_with("ok"), "{command}: {reply}");
    }

    /// Sends a command that must answer `ok`.
    pub fn run(&mut self, command: &str) {
        assert_eq!(self.cmd(command), "ok", "{command}");
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of `source` named `comm` in the fixtures directory, so that only the test
/// that starts it selects it by binary name.
pub fn named_copy(source: &Path, comm: &str) -> PathBuf {
    assert!(comm.len() <= 15, "comm {comm:?} would be truncated");
    let dir = &fixtures().dir;
    let path = dir.join(comm);
    if !path.exists() {
        let tmp = dir.join(format!(".{comm}.{:?}", std::thread::current().id()));
        std::fs::copy(source, &tmp).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// What the running kernel allows a process started with `wrapper` (a
/// `setpriv ...` prefix, or nothing for this test's own credentials): each
/// step of tests/fixtures/kernel_features.c (`proc-events`, `prog-load`,
/// `perf-uprobe`, `uprobe-multi`, `enable-stats`), `Ok` or the kernel's
/// refusal (`EPERM (Operation not permitted)`). Measured at test time, so that
/// a test expects what this kernel build does, not what another one did.
pub fn kernel_allows(wrapper: &[&str]) -> BTreeMap<String, Result<(), String>> {
    let probe = fixtures().kernel_features.display().to_string();
    let command: Vec<&str> = wrapper.iter().copied().chain([probe.as_str()]).collect();
    let out = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let answers: BTreeMap<String, Result<(), String>> = text
        .lines()
        .filter_map(|line| {
            let (step, answer) = line.split_once(' ')?;
            let answer = match answer.strip_prefix("refused ") {
                Some(why) => Err(why.to_string()),
                None => Ok(()),
            };
            Some((step.to_string(), answer))
        })
        .collect();
    assert_eq!(
        answers.len(),
        5,
        "{command:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
}

/// Spawns, retrying while the binary is busy: a sibling test thread that forks
/// while we copied a binary holds its write fd for a moment (ETXTBSY).
pub fn spawn(command: &mut Command) -> Child {
    for _ in 0..100 {
        match command.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("cannot start {command:?}: {e}"),
        }
    }
    panic!("{command:?}: text file busy for 2 s");
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running exporter binary.
pub struct Exporter {
    child: Child,
    /// Port it serves on (loopback).
    pub port: u16,
    /// Its config file and log live here.
    pub dir: tempfile::TempDir,
}

impl Exporter {
    /// Writes `config` to a file and starts the exporter on it; waits until it serves.
    pub fn start(config: &str) -> Exporter {
        Self::start_with(config, &[])
    }

    /// Like [`Exporter::start`], with extra arguments.
    pub fn start_with(config: &str, args: &[&str]) -> Exporter {
        Self::start_with_command(config, args, &[])
    }

    /// Starts the exporter with no config: it runs its embedded default pack.
    pub fn start_default(args: &[&str]) -> Exporter {
        Self::start_with_command("", args, &[])
    }

    /// Starts the exporter through `wrapper` (a command that execs its
    /// arguments, such as `setpriv ...`), with extra arguments.
    pub fn start_with_command(config: &str, args: &[&str], wrapper: &[&str]) -> Exporter {
        let mut exporter = Self::spawn(config, args, wrapper);
        exporter.wait_ready();
        exporter
    }

    /// Like [`Exporter::start_with`], with a watch of the BPF objects it
    /// holds started as soon as it runs, before its startup attaches.
    pub fn start_watched_with(config: &str, args: &[&str]) -> (Exporter, Watch) {
        let mut exporter = Self::spawn(config, args, &[]);
        let watch = Watch::start(exporter.pid());
        exporter.wait_ready();
        (exporter, watch)
    }

    /// Starts the exporter without waiting for it to serve.
    fn spawn(config: &str, args: &[&str], wrapper: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        if !wrapper.is_empty() {
            // The wrapper may drop to another user, who must read the config.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("exporter.log")).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(EXPORTER);
                c
            }
            None => Command::new(EXPORTER),
        };
        command
            .arg("--listen-address")
            .arg(format!("127.0.0.1:{port}"));
        if !config.is_empty() {
            command.arg("-c").arg(&config_path);
        }
        let child = command
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start exporter");
        Exporter { child, port, dir }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exporter exited early with {status}:\n{}", self.logs());
            }
            // 503 until the startup attaches are done.
            if ureq::get(&self.url("/-/ready")).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("exporter not serving after 30 s:\n{}", self.logs());
    }

    /// The exporter's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The exporter's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    /// GET `path` as text (the landing page, ...); panics on an error status.
    pub fn page(&self, path: &str) -> String {
        ureq::get(&self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}\n{}", self.logs()))
            .into_body()
            .read_to_string()
            .unwrap()
    }

    /// GET /metrics as text.
    pub fn scrape(&self) -> String {
        self.page("/metrics")
    }

    /// GET /metrics parsed into samples.
    pub fn samples(&self) -> Samples {
        Samples::parse(&self.scrape())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples of one exposition: `name{a="x",b="y"}` (labels sorted) -> value.
#[derive(Debug, Default)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// Parses the text format (comments skipped).
    pub fn parse(text: &str) -> Samples {
        let mut out = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, Vec::new()),
            };
            out.insert(
                key(
                    name,
                    &labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect::<Vec<_>>(),
                ),
                value,
            );
        }
        Samples(out)
    }

    /// The value of one series, if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.get(&key(name, labels)).copied()
    }

    /// The value of one series; panics with the family's series when absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let family: Vec<_> = self.0.iter().filter(|(k, _)| k.starts_with(name)).collect();
            panic!("no series {}; have: {family:#?}", key(name, labels))
        })
    }

    /// The python example's collections per generation for `pid` (0 when absent).
    pub fn python_collections(&self, pid: &str) -> [f64; 3] {
        [0, 1, 2].map(|g| {
            self.get(
                "userspace_exporter_python_gc_collections_total",
                &[("generation", &g.to_string()), ("pid", pid)],
            )
            .unwrap_or(0.0)
        })
    }

    /// The sum of every series of `name` that has all of `labels` (and maybe others).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .iter()
            .filter(|(series, _)| {
                let inside = series
                    .split_once('{')
                    .and_then(|(_, rest)| rest.strip_suffix('}'))
                    .unwrap_or("");
                let have = parse_labels(inside);
                labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series of a metric name: (labels, value).
    pub fn series(&self, name: &str) -> Vec<(String, f64)> {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.to_vec();
    labels.sort();
    let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", body.join(","))
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// Polls `f` until it returns Some or the timeout passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's CPython 3.11, which carries the `python:*` USDT probes.
pub const PYTHON: &str = "/usr/bin/python3.11";

/// Whether [`PYTHON`] is installed; a failure under CI=true, a skip otherwise.
pub fn require_python() -> bool {
    require_path(PYTHON, "scripts/setup.sh installs Debian's python3.11")
}

/// A python3.11 process running tests/fixtures/python_gc.py, driven through stdin.
pub struct Python {
    driver: Target,
}

impl Python {
    /// Starts the driver under a copy of python3.11 named `comm`; `None` (a skip) when
    /// python3.11 is missing outside CI.
    pub fn start(comm: &str) -> Option<Python> {
        if !require_python() {
            return None;
        }
        Some(Self::start_binary(&named_copy(Path::new(PYTHON), comm)))
    }

    /// Starts the driver under the given python3.11 binary.
    pub fn start_binary(python: &Path) -> Python {
        Self::start_command(&mut Command::new(python))
    }

    /// Starts the driver with `command` (a CPython 3.8 to 3.13, with its
    /// environment), the script added as its argument.
    pub fn start_command(command: &mut Command) -> Python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python_gc.py");
        Python {
            driver: Target::spawn(command.arg(script)),
        }
    }

    /// Sends a command whose reply is a JSON list of numbers.
    pub fn numbers(&mut self, command: &str) -> Vec<f64> {
        let reply = self.ask(command);
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{command}: {reply:?}: {e}"))
    }

    /// pid.
    pub fn pid(&self) -> u32 {
        self.driver.pid()
    }

    /// Sends a command, returns the reply line.
    pub fn ask(&mut self, command: &str) -> String {
        self.driver.cmd(command)
    }

    /// `gc.get_stats()` collections per generation.
    pub fn gc_collections(&mut self) -> [f64; 3] {
        self.per_generation("stats")
    }

    /// `gc.get_stats()` collected + uncollectable objects per generation.
    pub fn gc_found(&mut self) -> [f64; 3] {
        self.per_generation("found")
    }

    fn per_generation(&mut self, command: &str) -> [f64; 3] {
        let line = self.ask(command);
        let v: Vec<f64> = line
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        [v[0], v[1], v[2]]
    }
}

/// examples/python.yaml (the default pack's python program) pointed at the
/// built object and selecting only processes named `comm`, in place of every
/// CPython of the machine.
pub fn python_config(comm: &str) -> String {
    python_config_with_object(
        comm,
        &fixtures().object("example:python").display().to_string(),
    )
}

/// [`python_config`] with its `object:` set to `object`.
pub fn python_config_with_object(comm: &str, object: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let attachment = text
        .find("    attachment:\n")
        .expect("examples/python.yaml has an attachment");
    format!(
        "{}    attachment: {{binary_name: {comm}}}\n",
        text[..attachment].replace("object: python.bpf.o", &format!("object: {object}"))
    )
}

/// One item of a `programs:` list: program `name` counting `fixture:hit` by
/// argument (the `usdt_counts` fixture object) in
/// `userspace_exporter_{metric}`, on processes named `comm`.
pub fn hits_program(name: &str, metric: &str, comm: &str) -> String {
    format!(
        r#"
  - name: {name}
    object: {usdt}
    metrics:
      counters:
        - name: {metric}
          help: fixture:hit by argument
          table: hits
          labels: [{{name: arg, size: 8, decoders: [{{name: uint}}]}}]
    usdt:
      fixture:hit: on_hit
    attachment: {{binary_name: {comm}}}
"#,
        usdt = fixtures().object("usdt_counts").display()
    )
}

/// A program `churn` counting `fixture:hit` by argument in
/// `userspace_exporter_churn_hits_total`, selecting processes named `comm`.
pub fn hits_config(comm: &str) -> String {
    format!(
        "programs:{}",
        hits_program("churn", "churn_hits_total", comm)
    )
}

/// Debian's Prometheus server on a free loopback port, scraping every second
/// with `scrape_configs` (YAML list items, indented two spaces), its storage in
/// a temporary directory; stopped when dropped.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it; the caller checks first that `prometheus` is installed.
    pub fn start(scrape_configs: &str) -> Prometheus {
        Self::start_with(scrape_configs, &[])
    }

    /// Like [`Prometheus::start`], with extra arguments (`--enable-feature=...`).
    pub fn start_with(scrape_configs: &str, args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n{scrape_configs}"),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of the first sample an instant query returns, as Prometheus
    /// writes it; `None` while there is none (or the server is not up yet).
    pub fn query(&self, promql: &str) -> Option<String> {
        self.query_results(promql)?[0]["value"][1]
            .as_str()
            .map(str::to_string)
    }

    /// Every series an instant query returns (`data.result`, each with its
    /// `metric` labels and a `value` or, for a native histogram, a
    /// `histogram`); `None` while there is none.
    pub fn query_results(&self, promql: &str) -> Option<Vec<serde_json::Value>> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let body = ureq::get(&format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        ))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"]
            .as_array()
            .filter(|results| !results.is_empty())
            .cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPUs online.
pub fn cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// A TCP connection to 127.0.0.1:`port` whose receive and send buffers are
/// `buffer` bytes (set before connecting, so the kernel does not grow them).
pub fn connect_with_small_buffers(port: u16, buffer: libc::c_int) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        for option in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            let set = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&buffer as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(set, 0, "setsockopt: {}", std::io::Error::last_os_error());
        }
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let connected = libc::connect(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

/// A protobuf varint of `bytes` at `at`, which it moves past it.
pub fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut value, mut shift) = (0, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return value;
        }
        shift += 7;
    }
}

/// `promtool check metrics` run on `body` (fed from a thread, so a large body
/// cannot block against promtool's output); its exit status and output.
pub fn promtool_check_metrics(body: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    let mut stdin = promtool.stdin.take().unwrap();
    let input = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = promtool.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// GET `url` with curl, asking for gzip, with `headers` ("Name: value") more:
/// the response's header block, lowercased, and its body as sent. curl, not
/// ureq: ureq decompresses on its own and hides the encoding.
pub fn curl_gzipped(url: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("headers"), dir.path().join("body"));
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "-H", "Accept-Encoding: gzip"]);
    for header in headers {
        curl.args(["-H", header]);
    }
    let status = curl
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .arg(url)
        .status()
        .unwrap();
    assert!(status.success(), "curl {url}: {status}");
    let head = std::fs::read_to_string(head).unwrap().to_ascii_lowercase();
    (head, std::fs::read(body).unwrap())
}

/// The pids of a single-threaded process's children (a server's workers), as
/// strings for `pid` labels; none once it has exited.
pub fn children(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
