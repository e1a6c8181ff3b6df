#!/usr/bin/env bash
# Builds every fuzz target and runs each, one at a time, for SECONDS
# (default 30). Exits 1 if any target crashed (panic, failed property,
# sanitizer report, timeout or out-of-memory); the input that did it is in
# fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# Env: FUZZ_TOOLCHAIN (default nightly), FUZZ_TIMEOUT (seconds one input may
# take, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
export CARGO_INCREMENTAL=0

# cargo-fuzz needs a nightly compiler (sanitizers, coverage instrumentation).
rustup run "$toolchain" rustc --version >/dev/null 2>&1 || rustup toolchain install "$toolchain" --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cargo "+$toolchain" fuzz build
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo "+$toolchain" fuzz list)

failed=()
for target in "${targets[@]}"; do
  # New inputs go to fuzz/work/ (not committed); the seeds in fuzz/corpus/ stay as they are.
  mkdir -p "fuzz/work/$target"
  log="fuzz/work/$target.log"
  printf '\n=== %s: %ss ===\n' "$target" "$secs"
  if cargo "+$toolchain" fuzz run "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$log" || true
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  else
    failed+=("$target")
    # The panic or sanitizer report, and where the input was written.
    grep -E -A12 "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | head -40 || true
    grep -E "Test unit written to|^Base64:" "$log" || true
    echo "$target: CRASH (full log: $log)"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashed: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
