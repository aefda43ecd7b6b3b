#!/usr/bin/env bash
# A short run of every fuzz target, as CI does it: builds the fuzz crate (so a
# change to vapi-edge-core that breaks a target fails here, not months later),
# re-runs every committed regression, then fuzzes each target for a few
# seconds from its seeds. Fails on any crash (the input is in fuzz/artifacts/).
#
#   fuzz/smoke.sh            # 20 s per target
#   FUZZ_SECONDS=300 fuzz/smoke.sh
#
# Needs a nightly toolchain and cargo-fuzz; installs cargo-fuzz when missing.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$fuzz_dir/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-/var/tmp/vapi-edge-fuzz-target}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd "$fuzz_dir"
cargo +nightly fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in verify payload phone; do
  corpora=("$fuzz_dir/seeds/$target")
  [[ $target == payload ]] && corpora+=("$repo_root/examples/vapi")
  if [[ -d $fuzz_dir/regressions/$target ]]; then
    cargo +nightly fuzz run -O "$target" "$fuzz_dir/regressions/$target"/* -- -runs=0
    echo "fuzz: $target: $(ls "$fuzz_dir/regressions/$target" | wc -l) regression(s) pass"
  fi
  # New inputs go to a scratch corpus (the first directory); seeds stay as committed.
  mkdir -p "$work/$target"
  cargo +nightly fuzz run -O "$target" "$work/$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>"$work/$target.log" || {
    grep -v '^INFO' "$work/$target.log" | tail -40
    echo "fuzz: $target: FAILED (the input is in fuzz/artifacts/$target/)"
    exit 1
  }
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
  echo "fuzz: $target: ${runs:-?} inputs in ${seconds} s, no failure"
done
