#!/usr/bin/env bash
# VM figures (not a test): StartInstance to the guest's first console line, and the guest's
# own 4 KiB random and 1 MiB sequential I/O on a Snapdisk disk beside the same VM on a local
# raw file, in one run. See scripts/bench_vm.py.
# Usage: scripts/bench-vm.sh [--rounds R] [--seconds S] [--boots B] [--accel auto|kvm|tcg]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin snapdisk
exec .venv/bin/python scripts/bench_vm.py "$@"
