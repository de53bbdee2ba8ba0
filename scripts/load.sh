#!/usr/bin/env bash
# Load measurement (not a test): a release server on a temp dir, then signed DescribeDisks and
# ResetDisk DryRun requests from loopback threads. Usage: scripts/load.sh [seconds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; threads=${2:-8}
cargo build --release --quiet --bin snapdisk --bin snapdisk-load
dir=$(mktemp -d)
export SNAPDISK_ACCESS_KEY_ID=LTAIloadtest SNAPDISK_ACCESS_KEY_SECRET=loadtestsecret SNAPDISK_LOG=warn
target/release/snapdisk serve --vms none --data-dir "$dir" --listen 127.0.0.1:0 --transition-ms 20 --account-requests-per-second 0 > "$dir/out" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q '^api listening' "$dir/out" 2>/dev/null && break; sleep 0.1; done
ep=$(sed -n 's/^api listening on //p' "$dir/out")
echo "server $ep, $(nproc) cores, client and server on the same machine"
target/release/snapdisk-load --endpoint "$ep" --action reset-dry-run --seconds "$secs" --threads "$threads"
target/release/snapdisk-load --endpoint "$ep" --action describe-disks --seconds "$secs" --threads "$threads"
