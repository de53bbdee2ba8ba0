#!/usr/bin/env bash
# The store at fleet scale (not part of the test run): 10,000 volumes of 40 GiB, 10 snapshots
# each, then restarts from the log, from a checkpoint and from a checkpoint plus a log just
# under the checkpoint threshold. Prints the table in docs/performance.md ("Store at fleet
# scale"). About 1 minute and 2 GiB of disk in the system temp dir.
# Usage: scripts/fleet.sh [volumes] [snapshots per volume]   (extra key=value args pass on)
set -euo pipefail
cd "$(dirname "$0")/.."
volumes=${1:-10000}
snaps=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
cargo build --release -p store --example fleet
exec target/release/examples/fleet volumes="$volumes" snaps="$snaps" blocks=8 reopens=5 log_mib=15 "$@"
