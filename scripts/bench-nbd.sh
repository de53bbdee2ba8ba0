#!/usr/bin/env bash
# NBD benchmark (not a test): Snapdisk against qemu-nbd --cache=none (raw and qcow2), same run.
# Usage: scripts/bench-nbd.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in fio qemu-nbd nbdcopy; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install fio qemu-utils libnbd-bin)"; exit 1; }
done
cargo build --release --quiet --bin snapdisk --bin snapdisk-load
exec python3 scripts/bench_nbd.py "$@"
