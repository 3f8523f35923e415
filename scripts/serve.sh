#!/usr/bin/env bash
# README command 1: build the web app and serve it on http://127.0.0.1:8080/.
# Installs what it needs when missing (wasm32 target, wasm-bindgen-cli pinned to Cargo.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ADDR="${BCA_ADDR:-127.0.0.1:8080}"
bash scripts/build-web.sh
step "cargo build --release --bin bca"
cargo build --release --bin bca
bash scripts/tiny-models.sh target/release/bca
step "open http://$ADDR/ in a WebGPU browser (Ctrl-C stops)"
exec target/release/bca serve --dir www --addr "$ADDR"
