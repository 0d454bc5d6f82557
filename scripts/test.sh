#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: formatting, clippy, all
# unit and integration tests (which load real BPF programs as root), and the
# smoke suite on Debian 12's kernel under QEMU (scripts/kernel-matrix.sh 6.1).
# Usage: sudo bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
bash scripts/build-examples.sh
# The image the container tests run (tests/it/podman.rs), from the release build.
bash scripts/build-image.sh --test-app
cargo test --all-targets 2>&1
# The smoke suite on Debian 12's kernel (6.1) under QEMU: the kernel most
# users run, without the newest BPF features (KERNELS.md has the whole matrix).
bash scripts/kernel-matrix.sh 6.1
