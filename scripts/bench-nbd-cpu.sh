#!/usr/bin/env bash
# NBD CPU cost per I/O (not a test): 4 KiB random I/O from fio's nbd engine against Snapdisk
# (--cache none) and against qemu-nbd serving a qcow2 file with --cache=none --aio=native, in
# the same run, with `perf stat` on each server process: IOPS, server CPU time per I/O and
# context switches per I/O. Each target is filled sequentially first; the jobs run back to
# back on every target, ROUNDS times.
#
# Usage: scripts/bench-nbd-cpu.sh [SNAPDISK_BINARY...]
#   (default: target/release/snapdisk; several binaries compare builds, as s0, s1, ...)
#   env: ROUNDS (2), JOBS ("randread:32 randwrite:32 randrw:32 randread:1 randwrite:1"),
#        SIZE (512M), SECS (5)
# Needs fio (with its nbd engine), qemu-nbd, qemu-img and perf.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in fio qemu-nbd qemu-img perf; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install fio qemu-utils linux-perf)"; exit 1; }
done
cargo build --release --quiet --bin snapdisk --bin snapdisk-load
B=target/release
[ $# -gt 0 ] || set -- "$B/snapdisk"
W=$(mktemp -d /tmp/snapdisk-nbd-cpu.XXXX)
export SNAPDISK_ACCESS_KEY_ID=LTAIbench SNAPDISK_ACCESS_KEY_SECRET=benchsecret SNAPDISK_LOG=warn
declare -A URI PID
cleanup() { kill "${PID[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_nbd() { for _ in $(seq 100); do nbdinfo --size "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no NBD at $1"; exit 1; }
i=0
for bin in "$@"; do
  api=$(free_port); nbd=$(free_port)
  "$bin" serve --vms none --data-dir "$W/d$i" --listen "127.0.0.1:$api" --nbd-listen "127.0.0.1:$nbd" \
    --nbd-insecure --transition-ms 10 --cache none >"$W/log$i" 2>&1 &
  PID[s$i]=$!
  for _ in $(seq 100); do grep -q "api listening" "$W/log$i" 2>/dev/null && break; sleep 0.1; done
  disk=$("$B/snapdisk-load" --endpoint "http://127.0.0.1:$api" --action running-disk)
  URI[s$i]="nbd://127.0.0.1:$nbd/$disk"; i=$((i+1))
done
qemu-img create -f qcow2 "$W/ref.qcow2" 40G >/dev/null
qport=$(free_port)
qemu-nbd -f qcow2 --cache=none --aio=native -b 127.0.0.1 -p "$qport" -x bench --persistent --shared=16 "$W/ref.qcow2" 2>/dev/null &
PID[q]=$!; URI[q]="nbd://127.0.0.1:$qport/bench"
wait_nbd "${URI[q]}"
for t in "${!URI[@]}"; do
  wait_nbd "${URI[$t]}"
  fio --name=fill --ioengine=nbd --uri="${URI[$t]}" --rw=write --bs=1M --iodepth=8 --size="${SIZE:-512M}" >/dev/null
done
echo "# q: qemu-nbd qcow2 --cache=none --aio=native; s0..: $*"
echo "# round job target IOPS server-CPU-per-I/O context-switches-per-I/O"
for r in $(seq "${ROUNDS:-2}"); do
  for job in ${JOBS:-randread:32 randwrite:32 randrw:32 randread:1 randwrite:1}; do
    rw=${job%%:*}; qd=${job##*:}
    for t in $(printf '%s\n' "${!URI[@]}" | sort); do
      sync; sleep 0.3
      secs=${SECS:-5}
      perf stat -e task-clock,context-switches -p "${PID[$t]}" -o "$W/ps" -- sleep "$(python3 -c "print($secs - 0.5)")" >/dev/null 2>&1 &
      sp=$!
      fio --name=f --ioengine=nbd --uri="${URI[$t]}" --rw="$rw" --bs=4k --iodepth="$qd" --size="${SIZE:-512M}" \
        --time_based --runtime="$secs" --output-format=json $([ "$rw" = randrw ] && echo --rwmixread=70) \
        >"$W/fio.json" 2>/dev/null
      wait $sp
      python3 - "$W/ps" "$r" "$job" "$t" "$secs" "$W/fio.json" <<'PY'
import json, sys
ps, r, job, t, secs, out = sys.argv[1:]
s = open(out).read()
j = json.loads(s[s.index('{'):])['jobs'][0]
iops = j['read']['iops'] + j['write']['iops']
tc = cs = 0.0
for line in open(ps):
    f = line.split()
    if 'task-clock' in line: tc = float(f[0].replace(',', ''))
    if 'context-switches' in line: cs = float(f[0].replace(',', ''))
n = iops * (float(secs) - 0.5)
print(f"{r} {job:12s} {t:3s} {iops:8.0f} IOPS  {tc * 1000 / n:6.1f} us CPU/I/O  {cs / n:5.2f} cs/I/O")
PY
    done
  done
done
