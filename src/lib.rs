//! ebpf-userspace-exporter: userspace eBPF probes (USDT, uprobes, uretprobes)
//! attached to running processes, exported as Prometheus metrics.
//!
//! The data flows through one module per stage:
//! [`config`] -> [`compile`] -> [`discovery`] -> [`attach`] -> [`metrics`] -> [`http`],
//! with [`exporter`] holding the live state that ties them together, and
//! [`builtin`] the default pack used when no config is given. [`kernel`] says
//! which BPF features the running kernel has, and what runs without them
//! ([`privileges`], which capabilities). [`probes`] lists
//! what a process or binary offers to probe (the `probes` subcommand), from
//! [`elf`] and [`discovery`].

pub mod attach;
pub mod builtin;
pub mod cli;
pub mod compile;
pub mod config;
pub mod discovery;
pub mod elf;
pub mod exporter;
pub mod http;
pub mod kernel;
pub mod metrics;
pub mod privileges;
pub mod probes;
#[doc(hidden)]
pub mod testing;
