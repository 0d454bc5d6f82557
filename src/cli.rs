//! Command line: run the exporter (default), `check` a config, write the
//! `headers` to build BPF objects against, or list the `probes` of a process.

use crate::compile::clang::Compiler;
use crate::config::Config;
use crate::exporter::Exporter;
use crate::http::{self, ServerOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Prometheus exporter for userspace eBPF probes (USDT, uprobes, uretprobes)
/// attached to running processes.
#[derive(Debug, Parser)]
#[command(name = "ebpf-userspace-exporter", version, about, long_about = None)]
pub struct Cli {
    /// Address to serve on (`host:port`, or `:port` for every interface).
    #[arg(
        long = "listen-address",
        visible_alias = "web.listen-address",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen_address: String,

    /// Path under which metrics are served.
    #[arg(
        long = "metrics-path",
        visible_alias = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    pub metrics_path: String,

    /// The web config: TLS, client certificates, basic auth and response
    /// headers, in the Prometheus exporter toolkit's format (README, "Securing
    /// the endpoint"). Re-read when it or a file it names changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// A connection must finish its TLS handshake and its request headers
    /// within this of being accepted (and a later request on it, within this
    /// of its first byte).
    #[arg(long = "web.read-header-timeout", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub read_header_timeout: std::time::Duration,

    /// A connection with no request in progress is closed this long after
    /// its last request ended.
    #[arg(long = "web.idle-timeout", default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: std::time::Duration,

    /// Largest request line and headers, in bytes; larger gets 431.
    #[arg(long = "web.max-header-bytes", default_value_t = http::limits::DEFAULT_MAX_HEADER_BYTES, value_name = "BYTES")]
    pub max_header_bytes: usize,

    /// Scrapes (metrics path and landing page) served at once; one more is
    /// answered 503 at once. `0`: no limit.
    #[arg(long = "web.max-requests", visible_alias = "web.max-concurrent-scrapes", default_value_t = http::limits::DEFAULT_MAX_REQUESTS, value_name = "N")]
    pub max_requests: usize,

    /// Open connections at once; one more is closed when accepted. `0`: no limit.
    #[arg(long = "web.max-connections", default_value_t = http::limits::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    /// How often /proc is rescanned to attach to new processes and drop exited
    /// ones (e.g. `1s`, `500ms`; `0` scans only at startup). While process
    /// events flow, a rescan reads only pids it has not seen before.
    #[arg(long = "discovery.interval", default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub discovery_interval: std::time::Duration,

    /// How often a rescan reads every process again, for changes no process
    /// event reported (a rescan after lost events, or without events, always does).
    #[arg(long = "discovery.full-interval", default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub full_rescan_interval: std::time::Duration,

    /// Raw map keys whose decoded labels each metric keeps between scrapes, for
    /// labels that are not all integers (string, static_map, regexp): about 250
    /// bytes a key. Keys beyond it are decoded on every scrape. `0`: no cache.
    #[arg(long = "scrape.label-cache-keys", default_value_t = crate::metrics::label_cache::DEFAULT_CAPACITY, value_name = "KEYS")]
    pub label_cache_keys: usize,

    /// Expedite the kernel's RCU grace periods (`/sys/kernel/rcu_expedited`) for
    /// the moment each process is attached: a uprobe's registration can wait for
    /// a grace period, 10-20 ms. Cuts exec-to-attach p99 to a few ms; costs IPIs
    /// to every CPU for grace periods started meanwhile.
    #[arg(long = "attach.expedited-rcu")]
    pub expedited_rcu: bool,

    /// How long an `instances: pid_keyed` program keeps a file's probes after
    /// the last process it selected there left: a process of the file started
    /// meanwhile needs no new attach. `0`: detached at once.
    #[arg(long = "attach.linger", default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub linger: std::time::Duration,

    /// Turn the kernel's BPF statistics on while the exporter runs and export
    /// each program's run count and run time (`bpf_program_runs_total`,
    /// `bpf_program_run_seconds_total`). Off by default: while they are on, the
    /// kernel times every BPF program on the host, networking and security
    /// agents' too (two clock reads per run; +84 ns per USDT hit measured here). Needs
    /// CAP_SYS_ADMIN. Without it the figures are exported while an
    /// administrator has the `kernel.bpf_stats_enabled` sysctl on.
    #[arg(long = "bpf.stats", default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub bpf_stats: bool,

    /// Enable `POST /-/reload` (a config reload, as SIGHUP does), as Prometheus'
    /// flag of the same name does.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Serve the landing page's process explainer (`/?pid=N`): why any
    /// process on the host is (not) selected, with its executable, parent,
    /// cgroup, container and pod, to every client the web config admits (on
    /// plain HTTP without auth: anyone who reaches the port). Off, the form
    /// is not shown and `/?pid=N` answers 403; `check --pid N` on the host
    /// needs no flag.
    #[arg(long = "web.enable-explain")]
    pub enable_explain: bool,

    /// Reload the config when its file changes (a Kubernetes ConfigMap update
    /// swaps it through a symlink), so that no reloader sidecar is needed.
    #[arg(long = "config.watch")]
    pub watch_config: bool,

    /// The YAML config listing the programs to load.
    #[arg(
        short = 'c',
        long = "probe-config",
        visible_alias = "config.file",
        value_name = "FILE"
    )]
    pub probe_config: Option<PathBuf>,

    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter such as
    /// `info,libbpf=debug`).
    #[arg(
        long = "log-level",
        visible_alias = "log.level",
        default_value = "info",
        env = "EXPORTER_LOG",
        global = true
    )]
    pub log_level: String,

    /// clang for inline `code:` (default: `clang`, then `clang-21` .. `clang-14` on PATH).
    #[arg(long = "clang", value_name = "PATH", global = true)]
    pub clang: Option<PathBuf>,

    /// Where compiled objects and generated headers are cached
    /// (default: $XDG_CACHE_HOME or ~/.cache, then /ebpf-userspace-exporter).
    #[arg(long = "cache-dir", value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// For testing and diagnostics: behave as if the kernel lacked these
    /// features (comma-separated: uprobe_multi, bpf_get_func_ip_uprobe,
    /// batch_lookup, bpf_stats, kernel_btf, bpf_cookie, usdt_semaphores),
    /// taking the fallback each has or refusing what cannot run without it,
    /// as on a kernel without them (README, "Kernel features"). The kernel
    /// is not asked about these.
    #[arg(
        long = "kernel.assume-missing",
        value_name = "FEATURE,...",
        value_delimiter = ',',
        value_parser = parse_feature,
        env = "EXPORTER_KERNEL_ASSUME_MISSING",
        global = true
    )]
    pub assume_missing: Vec<String>,

    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config and load every program through the kernel verifier,
    /// without attaching; lists every problem and exits non-zero on any.
    Check {
        /// The YAML config to check (default: the embedded default pack).
        #[arg(
            short = 'c',
            long = "probe-config",
            visible_alias = "config.file",
            value_name = "FILE"
        )]
        probe_config: Option<PathBuf>,
        /// Also explain why this running process is (not) selected by each
        /// program: every selector field's verdict, and where each probe of the
        /// programs that select it resolves. Nothing is attached.
        #[arg(long = "pid", value_name = "PID", value_parser = parse_pid)]
        pid: Option<i32>,
    },
    /// Compile every program's inline `code:` to DIR/NAME.bpf.o and write DIR/CONFIG
    /// referencing them through `object:`, so production can run without clang.
    Compile {
        /// The YAML config to compile.
        #[arg(
            short = 'c',
            long = "probe-config",
            visible_alias = "config.file",
            value_name = "FILE"
        )]
        probe_config: PathBuf,
        /// Output directory (created if missing).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
    /// Write the libbpf headers matching this exporter's loader to DIR/bpf/, so
    /// `clang -target bpf -I DIR` builds objects whose USDT arguments read correctly.
    Headers {
        /// Output directory.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
    /// Write the embedded default pack (the config used when no --probe-config is
    /// given, and its BPF objects) to DIR, to start a config of your own.
    Defaults {
        /// Output directory.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
    /// List the USDT probes (and, with --functions, the functions) of a
    /// process's executable and every ELF file it maps, of a binary, or of the
    /// processes a config's programs select now; or write a starter config
    /// counting them.
    Probes(ProbesArgs),
}

/// The arguments of `probes`: one target, filters, and what to print.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pid", "binary", "probe_config"])))]
pub struct ProbesArgs {
    /// A running process: its executable and every ELF file it maps.
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
    /// An executable or shared library on disk (that file only).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Every process each program of this config selects now.
    #[arg(
        short = 'c',
        long = "probe-config",
        visible_alias = "config.file",
        value_name = "FILE"
    )]
    pub probe_config: Option<PathBuf>,
    /// Only USDT probes whose `provider:name` matches this glob (`python:gc__*`).
    #[arg(long, value_name = "GLOB")]
    pub usdt: Option<String>,
    /// Also list the function symbols whose name matches this glob (`Py*Import*`),
    /// or C++ functions by demangled name (`v8::internal::Heap::*`).
    #[arg(long, value_name = "GLOB")]
    pub functions: Option<String>,
    /// Show each listed C++ function's demangled name (what a uprobe spec may
    /// name instead of its symbol).
    #[arg(long, requires = "functions")]
    pub demangle: bool,
    /// `text` for people, `json` for tools (README, "The probes subcommand").
    #[arg(long, value_enum, default_value_t = ProbesOutput::Text)]
    pub output: ProbesOutput,
    /// Print a config counting every listed USDT probe (those --usdt picks),
    /// selecting the process's executable, instead of the listing.
    #[arg(long = "starter-config", conflicts_with_all = ["probe_config", "output", "functions"])]
    pub starter_config: bool,
}

/// The output formats of `probes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbesOutput {
    /// Aligned tables, grouped by file.
    Text,
    /// One JSON document.
    Json,
}

/// Parses arguments and runs; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    if let Err(e) = crate::kernel::assume_missing(&cli.assume_missing) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // Before any thread starts: capabilities are per thread.
    let capabilities = crate::privileges::raise_permitted();
    if cli.command.is_none() {
        log_capabilities(capabilities);
        crate::metrics::tune_allocator();
    }
    crate::attach::install_libbpf_logger();
    let compiler = Arc::new(Compiler::new(
        cli.clang.clone(),
        cli.cache_dir
            .clone()
            .unwrap_or_else(crate::compile::clang::default_cache_dir),
    ));
    let result = match &cli.command {
        None => run(&cli, compiler.clone()),
        Some(Command::Check { probe_config, pid }) => {
            return check(probe_config.as_deref(), *pid, &compiler)
        }
        Some(Command::Compile {
            probe_config,
            output,
        }) => compile(probe_config, output, &compiler),
        Some(Command::Headers { output }) => headers(output),
        Some(Command::Defaults { output }) => defaults(output),
        Some(Command::Probes(args)) => probes(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| {
        eprintln!("warning: --log-level {level:?} is not a valid filter; using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn defaults(output: &std::path::Path) -> anyhow::Result<()> {
    let written = crate::builtin::write_default_pack(output).map_err(|e| {
        anyhow::anyhow!("cannot write the default pack to {}: {e}", output.display())
    })?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn probes(args: &ProbesArgs) -> anyhow::Result<()> {
    use crate::probes::{self, starter, text, Listing};
    let usdt = args.usdt.as_deref();
    let functions = args.functions.as_deref();
    let filters = probes::Filters::new(usdt, functions)?.with_demangled(args.demangle);
    let mut cache = crate::elf::ElfCache::default();
    let listing = match (args.pid, &args.binary, &args.probe_config) {
        (Some(pid), _, _) => Listing {
            targets: vec![probes::list_process(pid, &filters, &mut cache)?],
            programs: None,
        },
        (_, Some(binary), _) => Listing {
            targets: vec![probes::list_binary(binary, &filters)?],
            programs: None,
        },
        (_, _, Some(path)) => probes::list_config(&load_config(Some(path))?, &filters, &mut cache),
        // clap requires one of the three.
        (None, None, None) => anyhow::bail!("give --pid, --binary or --probe-config"),
    };
    let out = if args.starter_config {
        let words: Vec<String> = std::env::args().skip(1).collect();
        let command_line = format!("ebpf-userspace-exporter {}", starter::shell_words(&words));
        let config = starter::starter_config(&listing.targets[0], &command_line, usdt)?;
        if config.probes > 50 {
            tracing::warn!(
                "the starter config counts {} probes, each a BPF program attached to every process selected; --usdt GLOB picks fewer",
                config.probes
            );
        }
        config.yaml
    } else {
        match args.output {
            ProbesOutput::Json => serde_json::to_string_pretty(&listing)? + "\n",
            ProbesOutput::Text => text::render(&listing, text::Shown { usdt, functions }),
        }
    };
    print_out(&out)
}

/// Writes `text` to stdout; a reader that went away (`probes | head`) is not
/// an error.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

fn headers(output: &std::path::Path) -> anyhow::Result<()> {
    let written = crate::compile::write_headers(output)
        .map_err(|e| anyhow::anyhow!("cannot write headers to {}: {e}", output.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn compile(
    path: &std::path::Path,
    output: &std::path::Path,
    compiler: &Compiler,
) -> anyhow::Result<()> {
    let config = load_config(Some(path))?;
    std::fs::create_dir_all(output)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", output.display()))?;
    let mut text = std::fs::read_to_string(path)?;
    // Rewrite bottom-up so earlier line numbers stay valid.
    let mut programs: Vec<_> = config.programs.iter().collect();
    programs.sort_by_key(|p| std::cmp::Reverse(p.referenced.line()));
    let mut failed = 0;
    for program in programs {
        let p = &program.value;
        let object_name = format!("{}.bpf.o", p.name);
        if p.code.is_none() {
            // An `object:` program keeps working if its path is absolute; make it so.
            if let Some(crate::config::ProgramSource::Object(abs)) = p.source(&config.dir()) {
                if let Some(object) = &p.object {
                    text = crate::config::rewrite::replace_value(
                        &text,
                        object,
                        &abs.display().to_string(),
                    );
                }
            }
            continue;
        }
        match crate::compile::object_bytes(&config, p, compiler) {
            Ok((bytes, _)) => {
                let dest = output.join(&object_name);
                std::fs::write(&dest, bytes)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
                println!("wrote {}", dest.display());
                text = crate::config::rewrite::code_to_object(&text, p, &object_name);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} program(s) did not compile");
    }
    let name = path
        .file_name()
        .unwrap_or_else(|| std::ffi::OsStr::new("config.yaml"));
    let dest = output.join(name);
    std::fs::write(&dest, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
    println!("wrote {}", dest.display());
    Ok(())
}

/// Parses `1s`, `500ms`, `2m` or a plain number of seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 1s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} must be zero or positive"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// The config at `path`, or the embedded default pack without one.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = match path {
        Some(path) => Config::load(path),
        None => crate::builtin::default_config(),
    }
    .map_err(|errors| anyhow::anyhow!("invalid config:\n{errors}"))?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// A `--kernel.assume-missing` feature: one of the names the README lists.
fn parse_feature(text: &str) -> Result<String, String> {
    match crate::kernel::Feature::from_name(text.trim()) {
        Some(feature) => Ok(feature.name().to_string()),
        None => Err(format!(
            "unknown kernel feature {text:?}; known: {}",
            crate::kernel::Feature::ALL.map(|f| f.name()).join(", ")
        )),
    }
}

/// A `--pid`: a positive integer.
fn parse_pid(text: &str) -> Result<i32, String> {
    crate::exporter::parse_pid(text).map_err(|e| e.to_string())
}

fn check(path: Option<&std::path::Path>, pid: Option<i32>, compiler: &Compiler) -> ExitCode {
    let loaded = match path {
        Some(path) => Config::load(path),
        None => crate::builtin::default_config(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            println!(
                "{}: {} error(s)",
                path.unwrap_or(std::path::Path::new(crate::builtin::DEFAULT_CONFIG_NAME))
                    .display(),
                errors.0.len()
            );
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let kernel = crate::kernel::features();
    for (feature, detection) in &kernel.detected {
        if *detection != crate::kernel::Detection::Present {
            println!(
                "warning: kernel feature {feature}: {}; without it {}",
                detection.describe(),
                feature.without()
            );
        }
    }
    let mut failures = 0;
    // Programs that would run in full, degraded, or not at all on this kernel.
    let mut tally = [0usize; 3];
    for program in &config.programs {
        let name = &program.value.name;
        let prepared = crate::exporter::object_and_fingerprint(&config, program, compiler)
            .and_then(|(object, fingerprint)| {
                let prepared = crate::attach::PreparedProgram::prepare(&config, program, object)
                    .map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
                if !prepared.support.refusals.is_empty() {
                    tally[2] += 1;
                }
                let support = prepared.support.clone();
                crate::exporter::finish_set_up(&config, program, prepared, fingerprint, 0)
                    .map(|p| (p.prepared, support))
            });
        match prepared {
            Err(errors) => {
                failures += errors.len();
                for e in errors {
                    println!("error: {e}");
                }
            }
            Ok((prepared, support)) => match prepared.verify() {
                Ok(()) => {
                    let metrics = &prepared.config.metrics;
                    // Gauges are named only where a program has some.
                    let gauges = match metrics.gauges.len() {
                        0 => String::new(),
                        n => format!(" {n} gauge(s),"),
                    };
                    println!(
                        "ok: program {name:?}: {} probe(s), {} counter(s),{gauges} {} histogram(s); loads through the verifier",
                        prepared.probes.len(),
                        metrics.counters.len(),
                        metrics.histograms.len()
                    );
                    if support.fallbacks.is_empty() {
                        tally[0] += 1;
                    } else {
                        tally[1] += 1;
                        println!("  on this kernel: {}", support.summary(kernel));
                    }
                }
                Err(e) => {
                    failures += 1;
                    println!(
                        "error: {}:{}:{}: program {name:?}: {e}",
                        config.path.display(),
                        program.referenced.line(),
                        program.referenced.column()
                    );
                }
            },
        }
    }
    println!(
        "kernel {} ({}): {} program(s) would run in full, {} degraded, {} not at all",
        kernel.release, kernel.machine, tally[0], tally[1], tally[2]
    );
    if let Some(pid) = pid {
        if let Err(e) = explain(&config, pid) {
            println!("error: {e}");
            failures += 1;
        }
    }
    if failures > 0 {
        println!("{}: {failures} error(s)", config.path.display());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints why process `pid` is (not) selected by each program of `config`
/// (built from the config alone, so programs that failed to load are
/// explained too), and where the probes of the selecting ones resolve.
fn explain(config: &Config, pid: i32) -> Result<(), crate::exporter::ExplainError> {
    let programs: Vec<_> = config
        .programs
        .iter()
        .map(|program| {
            let p = &program.value;
            let attachment = p.attachment().map(|a| a.value.clone()).unwrap_or_default();
            (p, crate::discovery::Selector::new(&attachment), p.probes())
        })
        .collect();
    let programs: Vec<_> = programs
        .iter()
        .map(|(p, selector, probes)| crate::exporter::ExplainProgram {
            config: p,
            selector,
            probes,
        })
        .collect();
    let explained =
        crate::exporter::explain_pid(pid, &programs, crate::discovery::CommandLines::Shown)?;
    println!();
    print!("{}", explained.text());
    Ok(())
}

fn run(cli: &Cli, compiler: Arc<Compiler>) -> anyhow::Result<()> {
    if !cli.metrics_path.starts_with('/') {
        anyhow::bail!(
            "--metrics-path must start with '/', got {:?}",
            cli.metrics_path
        );
    }
    let config = load_config(cli.probe_config.as_deref())?;
    let options = ServerOptions {
        listen_address: cli.listen_address.clone(),
        metrics_path: cli.metrics_path.clone(),
        web_config_file: cli.web_config_file.clone(),
        enable_lifecycle: cli.enable_lifecycle,
        enable_explain: cli.enable_explain,
        limits: http::Limits {
            read_header_timeout: cli.read_header_timeout,
            idle_timeout: cli.idle_timeout,
            max_header_bytes: cli.max_header_bytes,
            max_requests: cli.max_requests,
            max_connections: cli.max_connections,
        },
    };
    let web = http::load_web_config(&options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Listen first: a port in use fails at once, and `/-/healthy` answers while
    // the programs compile and attach (`/-/ready` says when they are done).
    let listener = runtime.block_on(http::bind(&cli.listen_address))?;
    tracing::info!(address = %listener.local_addr()?, path = %cli.metrics_path, "serving metrics");
    let readiness = http::Readiness::default();
    let server = runtime.spawn({
        let readiness = readiness.clone();
        async move { http::serve(listener, readiness, &options, web, shutdown_signal()).await }
    });
    let source = crate::exporter::ConfigSource {
        path: cli.probe_config.clone(),
        compiler,
    };
    let exporter = Arc::new(start_exporter(cli, &config, source)?);
    let events_live = exporter.process_events_flag();
    if let Err(e) = crate::discovery::spawn_watcher(exporter.clone(), events_live.clone()) {
        let fallback = if cli.discovery_interval.is_zero() {
            "and --discovery.interval=0 turns the /proc rescan off: processes started from now on will not be attached".to_string()
        } else {
            format!(
                "new processes are attached by the /proc rescan, within --discovery.interval ({:?}), instead of within milliseconds of their exec",
                cli.discovery_interval
            )
        };
        tracing::warn!("process events unavailable: {e}; {fallback}");
    }
    if !cli.discovery_interval.is_zero() {
        crate::discovery::spawn_resync(
            exporter.clone(),
            cli.discovery_interval,
            cli.full_rescan_interval,
            events_live,
        );
    }
    let _ = readiness.set(exporter.clone());
    tracing::info!("ready: startup attaches done");
    runtime.spawn(reload_on_sighup(exporter.clone()));
    let _watcher = match (&cli.probe_config, cli.watch_config) {
        (Some(path), true) => Some(crate::exporter::watch_config(exporter.clone(), path)?),
        (None, true) => {
            anyhow::bail!("--config.watch needs --config.file (the default pack never changes)")
        }
        _ => None,
    };
    runtime.block_on(server)??;
    tracing::info!("shutting down: detaching all probes");
    let started = std::time::Instant::now();
    let detached = exporter.detach_all();
    tracing::info!(
        instances = detached,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "detached"
    );
    drop(readiness);
    drop(exporter);
    Ok(())
}

/// Says which of the capabilities the exporter uses are missing from its
/// effective set, and what then fails.
fn log_capabilities(effective: std::io::Result<u64>) {
    match effective {
        Ok(effective) => {
            let missing = crate::privileges::missing(effective);
            // With CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON are implied.
            let admin = effective & (1 << crate::privileges::CAP_SYS_ADMIN) != 0;
            for capability in missing {
                if admin && matches!(capability.name, "CAP_BPF" | "CAP_PERFMON") {
                    continue;
                }
                tracing::warn!(
                    "running without {}: {} will fail (README, \"Privileges\")",
                    capability.name,
                    capability.needed_for
                );
            }
        }
        Err(e) => tracing::warn!("cannot read this process's capabilities: {e}"),
    }
}

/// Prepares every program of `config` and attaches them to the processes
/// running now: what must be done before the exporter is ready.
fn start_exporter(
    cli: &Cli,
    config: &Config,
    source: crate::exporter::ConfigSource,
) -> anyhow::Result<Exporter> {
    if cli.probe_config.is_none() {
        tracing::info!(
            "no --probe-config: running the embedded default pack ({} programs; `defaults -o DIR` writes it out)",
            config.programs.len()
        );
    }
    // Before any program is set up: what the kernel lacks decides fallbacks.
    crate::kernel::log_summary(crate::kernel::features());
    if cli.bpf_stats {
        match crate::metrics::bpf_stats::enable() {
            Ok(()) => tracing::info!("BPF run statistics on while the exporter runs (--bpf.stats)"),
            Err(e) => tracing::warn!(
                "BPF run statistics unavailable: {e}; bpf_program_runs_total is not exported (unless the kernel.bpf_stats_enabled sysctl is on)"
            ),
        }
    }
    crate::attach::pid_keyed::set_linger(cli.linger);
    if cli.expedited_rcu {
        crate::attach::expedited_rcu_available()
            .map_err(|e| anyhow::anyhow!("--attach.expedited-rcu: {e}"))?;
        tracing::info!("RCU grace periods are expedited while each process is attached (--attach.expedited-rcu)");
    }
    let options = crate::exporter::Options {
        label_cache_keys: cli.label_cache_keys,
        expedited_rcu: cli.expedited_rcu,
    };
    let exporter = Exporter::new(config, source, options);
    if exporter.published().programs.is_empty() {
        anyhow::bail!(
            "no program of {} could be loaded (errors above)",
            config.path.display()
        );
    }
    crate::discovery::ProcessSink::rescanned(
        &exporter,
        crate::discovery::ProcSnapshot::take(&Default::default()),
    );
    for program in &exporter.published().programs {
        if program.instances.is_empty() && program.binaries.is_empty() {
            tracing::warn!(
                program = program.prepared.name(),
                "no process attached yet ({})",
                program.prepared.selector.describe()
            );
        }
    }
    Ok(exporter)
}

/// Reloads the config on every SIGHUP, as Prometheus does.
async fn reload_on_sighup(exporter: Arc<Exporter>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot handle SIGHUP: reload with POST /-/reload (--web.enable-lifecycle)");
        return;
    };
    while hangup.recv().await.is_some() {
        let exporter = exporter.clone();
        // Errors are logged and kept for the landing page by the reload itself.
        let _ = tokio::task::spawn_blocking(move || exporter.reload_config()).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // Attaches still under way (the startup's, a burst of new processes) end
    // at once instead of running to the last one.
    crate::exporter::stop_attaching();
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
