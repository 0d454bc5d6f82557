//! Fuzzing of every parser of untrusted or semi-trusted bytes: the config
//! parser, the bcc rewriter, the ELF symbol and USDT-note readers, Go's
//! function table reader, the label decoders, HTTP content negotiation, what
//! a client sends to be let in (the Basic auth header, the client
//! certificate) and the process connector's netlink datagrams.
//!
//! Each `#[test]` replays its seeds and the committed regressions of
//! `tests/fuzz_corpus/<target>/`, then runs a fixed number of generated
//! inputs from a fixed seed (a few seconds). `scripts/fuzz.sh` runs the same
//! tests for a number of seconds each, from a random seed (see `engine`).
//!
//! Why a hand-written fuzzer rather than `proptest`: the long run needs a
//! wall-clock budget and an execution count per target, which proptest's
//! case counts do not give; the ELF targets patch a real binary in place
//! (field-aware changes to its headers and tables, undone after each run) at
//! a few hundred to a few thousand runs a second, where generating and
//! shrinking whole files through strategies would not fit; and the engine is
//! about 900 lines with no new dependency. It keeps what proptest would add
//! here: fixed seeds under `cargo test`, and shrinking of what fails. It
//! runs 130,000 Basic auth headers and 2,900 client certificates a second
//! (`FUZZ_SECONDS=30`, 2026-12-07), 50,000 to 65,000 header values a second, 11,000 C sources, 850
//! configs, 360 decoder cases and 5 (libjvm.so) to 150 (python3.11) ELF
//! mutants (a debug build on a shared 2-core machine, `scripts/fuzz.sh 120`).

mod bcc;
mod client_auth;
mod config;
mod decoders;
mod elf;
mod engine;
mod gopclntab;
mod http;
mod netlink;
mod seeds;

#[global_allocator]
static ALLOC: engine::CountingAlloc = engine::CountingAlloc;

#[test]
fn config() {
    engine::fuzz(config::ConfigTarget::new());
}

#[test]
fn bcc() {
    engine::fuzz(bcc::BccTarget::new());
}

#[test]
fn elf_python() {
    elf::fuzz("elf_python");
}

#[test]
fn elf_libjvm() {
    elf::fuzz("elf_libjvm");
}

#[test]
fn elf_postgres() {
    elf::fuzz("elf_postgres");
}

#[test]
fn elf_go() {
    elf::fuzz("elf_go");
}

#[test]
fn gopclntab() {
    gopclntab::fuzz();
}

#[test]
fn decoders() {
    engine::fuzz(decoders::DecodersTarget::new());
}

#[test]
fn accept() {
    engine::fuzz(http::Negotiation::accept());
}

#[test]
fn accept_encoding() {
    engine::fuzz(http::Negotiation::accept_encoding());
}

#[test]
fn basic_auth() {
    engine::fuzz(client_auth::BasicAuthTarget);
}

#[test]
fn client_cert() {
    engine::fuzz(client_auth::ClientCertTarget::new());
}

#[test]
fn proc_connector() {
    engine::fuzz(netlink::NetlinkTarget::new());
}
