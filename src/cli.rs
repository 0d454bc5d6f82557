//! Command line: run the exporter (default), `check` a config, or write the
//! `headers` to build BPF objects against.

use crate::attach::PreparedProgram;
use crate::config::Config;
use crate::exporter::Exporter;
use crate::http::{self, ServerOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

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
        /// The YAML config to check.
        #[arg(
            short = 'c',
            long = "probe-config",
            visible_alias = "config.file",
            value_name = "FILE"
        )]
        probe_config: PathBuf,
    },
    /// Write the libbpf headers matching this exporter's loader to DIR/bpf/, so
    /// `clang -target bpf -I DIR` builds objects whose USDT arguments read correctly.
    Headers {
        /// Output directory.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: PathBuf,
    },
}

/// Parses arguments and runs; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    crate::attach::install_libbpf_logger();
    let result = match &cli.command {
        None => run(&cli),
        Some(Command::Check { probe_config }) => return check(probe_config),
        Some(Command::Headers { output }) => headers(output),
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

fn headers(output: &std::path::Path) -> anyhow::Result<()> {
    let written = crate::compile::write_headers(output)
        .map_err(|e| anyhow::anyhow!("cannot write headers to {}: {e}", output.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let config =
        Config::load(path).map_err(|errors| anyhow::anyhow!("invalid config:\n{errors}"))?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                println!("error: {e}");
            }
            println!("{}: {} error(s)", path.display(), errors.0.len());
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let mut failures = 0;
    for program in &config.programs {
        let name = &program.value.name;
        let source = match program.value.source(&config.dir()) {
            Some(s) => s,
            None => continue,
        };
        let prepared = crate::compile::object_bytes(name, &source)
            .map_err(|e| {
                vec![format!(
                    "{}:{}: {e}",
                    config.path.display(),
                    program.referenced.line()
                )]
            })
            .and_then(|object| {
                PreparedProgram::prepare(&config, program, object)
                    .map_err(|es| es.iter().map(ToString::to_string).collect())
            })
            .and_then(|prepared| {
                crate::metrics::ProgramMetrics::new(&prepared)
                    .map(|_| prepared)
                    .map_err(|e| vec![e])
            });
        match prepared {
            Err(errors) => {
                failures += errors.len();
                for e in errors {
                    println!("error: {e}");
                }
            }
            Ok(prepared) => match prepared.verify() {
                Ok(()) => println!(
                    "ok: program {name:?}: {} probe(s), {} counter(s), {} histogram(s); loads through the verifier",
                    prepared.probes.len(),
                    prepared.config.metrics.counters.len(),
                    prepared.config.metrics.histograms.len()
                ),
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
    if failures > 0 {
        println!("{}: {failures} error(s)", path.display());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let Some(path) = &cli.probe_config else {
        anyhow::bail!("no --probe-config given: pass -c FILE (see examples/ and the README)");
    };
    if !cli.metrics_path.starts_with('/') {
        anyhow::bail!(
            "--metrics-path must start with '/', got {:?}",
            cli.metrics_path
        );
    }
    let config = load_config(path)?;
    let mut exporter = Exporter::new(&config);
    if exporter.programs.is_empty() {
        anyhow::bail!(
            "no program of {} could be loaded (errors above)",
            path.display()
        );
    }
    let processes = crate::discovery::scan();
    exporter.reconcile(&processes);
    for state in &exporter.programs {
        if state.instances.is_empty() {
            tracing::warn!(
                program = state.prepared.name(),
                "no process attached yet ({})",
                state.prepared.selector.describe()
            );
        }
    }
    let exporter = Arc::new(Mutex::new(exporter));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = http::bind(&cli.listen_address).await?;
        tracing::info!(address = %listener.local_addr()?, path = %cli.metrics_path, "serving metrics");
        let options = ServerOptions { listen_address: cli.listen_address.clone(), metrics_path: cli.metrics_path.clone() };
        http::serve(listener, exporter.clone(), &options, shutdown_signal()).await
    })?;
    tracing::info!("shutting down: detaching all probes");
    drop(exporter);
    Ok(())
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
}
