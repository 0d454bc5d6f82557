#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: formatting, clippy, and
# all unit and integration tests (which load real BPF programs as root).
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
