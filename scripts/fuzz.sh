#!/usr/bin/env bash
# Fuzzing (not a test): run every cargo-fuzz target in fuzz/ for SECONDS each (default 60).
# A crash is copied into fuzz/corpus/<target>/, where crates/fuzz-targets/tests/corpus.rs
# replays it in every `cargo test`: fix the code, keep the file. Needs cargo-fuzz (installed
# here if missing) and libFuzzer's sanitizer flags, which stable Rust allows with
# RUSTC_BOOTSTRAP=1.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(params sign_v1 sign_v3 nbd_frames render)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
found=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/new/$t"
  echo "== $t for ${secs}s"
  # New inputs go to fuzz/new (not committed); the committed corpus only seeds and replays.
  if ! cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/new/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -max_len=4096 -print_final_stats=1 2>"fuzz/new/$t.log"; then
    tail -30 "fuzz/new/$t.log"
  fi
  for crash in fuzz/artifacts/"$t"/*; do
    [ -e "$crash" ] || continue
    cp "$crash" "fuzz/corpus/$t/regression-$(basename "$crash")"
    echo "FINDING: $crash (copied into fuzz/corpus/$t/)"
    found=1
  done
  grep -E "stat::number_of_executed_units|cov:" "fuzz/new/$t.log" | tail -2 || true
done
exit $found
