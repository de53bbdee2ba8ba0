#!/usr/bin/env bash
# Control plane at fleet scale (not a test): one run measures the API with one resource of each
# kind, seeds a fleet through the API (10,000 disks, 1,000 instances, 100,000 snapshots by
# default), measures the same requests again, restarts the server on that data dir, and
# measures a fixed-body axum server (the ceiling) with the same client in the same run.
# Usage: scripts/bench-fleet.sh [--disks N] [--instances N] [--snapshots-per-disk N]
#                               [--seconds S] [--rounds R] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin snapdisk --bin snapdisk-load --bin snapdisk-ceiling
exec python3 scripts/bench_fleet.py "$@"
