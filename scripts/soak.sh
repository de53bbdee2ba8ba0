#!/usr/bin/env bash
# Soak under abuse (not a timed test): slowloris HTTP, idle NBD, NBD clients that never read
# their replies and a greedy tenant, all at once against one release server, while another
# tenant's DescribeDisks latency is recorded; reports its p99, the server's peak RSS and open
# descriptors, and PASS/FAIL per goal (exit status 1 on a FAIL). See scripts/soak.py.
# Usage: scripts/soak.sh [--minutes 5] [--quick] [--insecure-nbd] [--serve-arg=--flag=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin snapdisk --bin snapdisk-load
exec python3 scripts/soak.py "$@"
