//! Fuzzing of every parser of untrusted or semi-trusted bytes: the config
//! parser, the bcc rewriter, the ELF symbol and USDT-note readers, the label
//! decoders and HTTP content negotiation.
//!
//! Each `#[test]` replays its seeds and the committed regressions of
//! `tests/fuzz_corpus/<target>/`, then runs a fixed number of generated
//! inputs from a fixed seed (a few seconds). `scripts/fuzz.sh` runs the same
//! tests for a number of seconds each, from a random seed (see `engine`).

mod bcc;
mod config;
mod decoders;
mod elf;
mod engine;
mod http;
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
