#!/usr/bin/env bash
# NBD over TLS beside plain NBD, same run (not a test): fio 4 KiB random (QD1, QD32) and 1 MiB
# sequential on two release servers, one TLS-only with a client certificate, one --nbd-insecure;
# prints each metric with TLS / plain. See scripts/bench_nbd_tls.py.
# Usage: scripts/bench-nbd-tls.sh [--quick] [--rounds N] [--runtime S] [--size 1G]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in fio nbdinfo setpriv; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install fio libnbd-bin util-linux)"; exit 1; }
done
cargo build --release --quiet --bin snapdisk --bin snapdisk-load
exec python3 scripts/bench_nbd_tls.py "$@"
