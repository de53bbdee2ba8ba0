#!/usr/bin/env bash
# Longer crash soak (not part of the test run): the store's kill -9 test with many cycles.
# Usage: scripts/crash-soak.sh [cycles] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_CYCLES=${1:-3000} CRASH_SEED=${2:-$RANDOM} cargo test --release -p store --test crash -- --exact crash_cycles --nocapture
