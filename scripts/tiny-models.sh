#!/usr/bin/env bash
# Writes the web app's embedded default models: tiny random checkpoints (`bca tiny`, Instruct and
# Base) converted to the web format (`bca convert --quant f16`) in www/models/. They prove the
# pipeline with random weights; a real converted model is loaded the same way from its URL.
# Usage: scripts/tiny-models.sh [path/to/bca]   (default target/release/bca)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
BCA="${1:-target/release/bca}"
bash scripts/fetch-assets.sh >/dev/null
for v in instruct base; do
  hf=".cache/tiny-$v-hf"
  out="www/models/tiny-$v"
  if [ -f "$out/manifest.json" ] && [ "$out/manifest.json" -nt "$BCA" ]; then continue; fi
  step "tiny $v model → $out"
  rm -rf "$hf" "$out"
  "$BCA" tiny "$hf" --variant "$v" --seed 0 >/dev/null
  "$BCA" convert "$hf" "$out" --quant f16 >/dev/null
done
