//! The integration tests: one test binary, one module per area. They run the
//! exporter binary against real processes and load real BPF programs (as
//! root); `common` holds the shared harness.

mod common;

mod bad_input;
mod bcc_dialect;
mod bpf_stats;
mod churn;
mod churn_leaks;
mod containers;
mod decoders;
mod default_pack;
mod deploy;
mod explain;
mod exposition;
mod faults;
mod faults_compile;
mod faults_stop;
mod faults_truncation;
mod go;
mod gunicorn;
mod inline_code;
mod jvm;
mod kernel_features;
mod kernel_objects;
mod late_libraries;
mod libc_getaddrinfo;
mod maps;
mod mariadb;
mod native_histograms;
mod nginx;
mod nodejs;
mod per_binary;
mod php;
mod pid_keyed;
mod podman;
mod postgresql;
mod privileges;
mod probe_lister;
mod probes;
mod python_builds;
mod python_gc;
mod redis;
mod reload;
mod ruby;
mod soak;
mod sources;
mod streaming;
mod value_layouts;
mod web;
