#!/usr/bin/env bash
# Writes the web app's embedded default models: tiny random checkpoints (`bca tiny`, Instruct and
# Base) converted to the web format (`bca convert --quant f16`) in www/models/. They prove the
# pipeline with random weights; a real converted model is loaded the same way from its URL.
# Also the Instruct model in q8 (4 MiB shards, so the loader tests see several shards, split
# parts, resume) and q4, for the browser loader's round trips (tests/browser/suites/05-loader.mjs),
# and in f16 with 12 KiB bindings (layer matrices in row parts, joined at load: 40-chat.mjs).
# Usage: scripts/tiny-models.sh [path/to/bca]   (default target/release/bca)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
BCA="${1:-target/release/bca}"
bash scripts/fetch-assets.sh >/dev/null
# name  variant  convert arguments
while read -r name v args; do
  hf=".cache/tiny-$v-hf"
  out="www/models/$name"
  if [ -f "$out/manifest.json" ] && [ "$out/manifest.json" -nt "$BCA" ]; then continue; fi
  step "tiny $v model ($args) → $out"
  rm -rf "$out"
  if [ ! -f "$hf/config.json" ] || [ "$BCA" -nt "$hf/config.json" ]; then
    rm -rf "$hf"
    "$BCA" tiny "$hf" --variant "$v" --seed 0 >/dev/null
  fi
  # shellcheck disable=SC2086
  "$BCA" convert "$hf" "$out" $args >/dev/null
done <<'EOF2'
tiny-instruct instruct --quant f16
tiny-base base --quant f16
tiny-instruct-q8 instruct --quant q8 --max-binding 1048576 --max-shard 4194304
tiny-instruct-q4 instruct --quant q4
tiny-instruct-f16-12k instruct --quant f16 --max-binding 12288 --max-shard 8388608
EOF2
