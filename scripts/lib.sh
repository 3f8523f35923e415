# Shared helpers for the scripts (sourced).
# Each step prints the seconds since the first script started (CI keeps the log, not timings).
export BCA_T0="${BCA_T0:-$(date +%s)}"
step() { printf '\n==> [%4ds] %s\n' "$(( $(date +%s) - BCA_T0 ))" "$*"; }

# Runs apt-get install only for packages that are missing.
apt_ensure() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# wasm32 target + wasm-bindgen-cli pinned to Cargo.lock's wasm-bindgen.
ensure_wasm_toolchain() {
  if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
    step "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  local want
  want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    step "cargo install wasm-bindgen-cli --version $want (a minute or two, once)"
    # not --locked: its lockfile pins a crate version the registry mirror may lack.
    # --debug --bin wasm-bindgen: on two cores the unoptimised build of the one tool we run
    # takes 1.6 min instead of 3.7, and writes the same bytes (3 s a run instead of 0.7)
    cargo install wasm-bindgen-cli --version "$want" --debug --bin wasm-bindgen
  fi
}
