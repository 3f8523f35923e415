#!/usr/bin/env bash
# Builds the wasm app into the folder wasm-pack.toml names (default www/pkg).
# Installs what it needs when missing: the wasm32 target and wasm-bindgen-cli pinned to the
# exact wasm-bindgen version in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

read_cfg() { python3 - "$1" <<'PY'
import sys, tomllib
cfg = tomllib.load(open("wasm-pack.toml", "rb"))["build"]
v = cfg[sys.argv[1]]
print(",".join(v) if isinstance(v, list) else v)
PY
}
TARGET=$(read_cfg target); OUT=$(read_cfg out-dir); NAME=$(read_cfg out-name)
PROFILE=$(read_cfg profile); FEATURES=$(read_cfg features)

ensure_wasm_toolchain

step "cargo build --target wasm32-unknown-unknown --profile $PROFILE"
cargo build --lib --target wasm32-unknown-unknown --profile "$PROFILE" ${FEATURES:+--features "$FEATURES"}
step "wasm-bindgen --target $TARGET --out-dir $OUT"
wasm-bindgen --target "$TARGET" --out-dir "$OUT" --out-name "$NAME" --no-typescript \
  "target/wasm32-unknown-unknown/$PROFILE/bca.wasm"
ls -l "$OUT"
