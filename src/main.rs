//! The `ebpf-userspace-exporter` binary: all logic lives in the library.

fn main() -> std::process::ExitCode {
    userspace_exporter::cli::main()
}
