#!/usr/bin/env bash
# Self-test of the e2e test guest (tests/vm/build_image.py, protocol in tests/vm/guest/init):
# builds the image (or takes it from the cache), boots a copy of it under
# qemu-system-x86_64 -accel tcg with a 64 MiB raw data disk, both virtio-blk:
#   1. from the file, user data "pattern=hello": boot=1, data-before empty, powerdown;
#   2. again: boot=2, data-before shows boot 1's pattern line, powerdown;
#   3. from the same file served by qemu-nbd on a unix socket: boot=3, then system_reset:
#      boot=4, powerdown;
#   4. user data "mode=writer": SIGKILL after a few flushed=<k> lines; every record up to the
#      last flushed=<k> printed must be on the data disk file.
# Each powerdown must end qemu within 20 s. Prints the time from qemu's start to the first
# console byte and to "ready" for each boot. Needs root (apt-get, on first use).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
VM="python3 $HERE/vm.py"
W=$(mktemp -d /tmp/snapdisk-vm-selftest.XXXXXX)
NBD_PID=
passed=0
failed=0

cleanup() {
    if [ -n "$NBD_PID" ]; then kill "$NBD_PID" 2> /dev/null || true; fi
    if [ "$failed" -eq 0 ]; then rm -rf "$W"; else echo "logs kept in $W" >&2; fi
}
trap cleanup EXIT

# guest_lines LOG: the guest's lines without the prefix and the tty's "\r".
guest_lines() { tr -d '\r' < "$1" | sed -n 's/^SNAPDISK-GUEST //p'; }

# expect NAME LOG LINE...: each LINE appears, in that order, among LOG's guest lines.
expect() {
    local name=$1 log=$2
    shift 2
    if python3 - "$log" "$@" << 'EOF'; then
import sys
lines = [l.rstrip("\r\n")[len("SNAPDISK-GUEST "):]
         for l in open(sys.argv[1], errors="replace") if l.startswith("SNAPDISK-GUEST ")]
i = 0
for want in sys.argv[2:]:
    while i < len(lines) and lines[i] != want:
        i += 1
    if i == len(lines):
        sys.exit(f"missing (in order): {want!r}")
    i += 1
EOF
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name; guest lines:"
        guest_lines "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

# boot NAME ARGS...: one boot with vm.py; prints its timings.
boot() {
    local name=$1
    shift
    local out
    if out=$($VM boot --log "$W/$name.log" "$@"); then
        echo "     $name: $out" | tr '\n' ' '
        echo
    else
        echo "FAIL $name: vm.py boot failed"
        failed=$((failed + 1))
        return 1
    fi
}

echo "building the image (or using the cache)..."
t=$(date +%s.%N)
IMG=$(python3 "$HERE/build_image.py" | tail -n 1)
echo "     image: $IMG ($(python3 -c "print(f'{$(date +%s.%N) - $t:.1f}')") s)"
cp --sparse=always "$IMG" "$W/sys.img"
truncate -s 64M "$W/data.img"
printf 'pattern=hello\n' > "$W/ud-hello.txt"
printf 'mode=writer\npattern=w\n' > "$W/ud-writer.txt"

boot boot1 --system "$W/sys.img" --data "$W/data.img" --user-data "$W/ud-hello.txt" --powerdown || true
expect boot1 "$W/boot1.log" "boot=1" "userdata=pattern=hello" "data-before=" "data-written" \
    "ready" "poweroff"

boot boot2 --system "$W/sys.img" --data "$W/data.img" --user-data "$W/ud-hello.txt" --powerdown || true
expect boot2 "$W/boot2.log" "boot=2" "userdata=pattern=hello" \
    "data-before=SNAPDISK-PATTERN boot=1 pattern=hello" "data-written" "ready" "poweroff"

# The system disk over NBD (qemu-nbd exits after its one client; --persistent for the reset).
qemu-nbd --persistent --format=raw --cache=none --export-name=sys --socket="$W/nbd.sock" \
    "$W/sys.img" 2> "$W/qemu-nbd.err" &
NBD_PID=$!
for _ in $(seq 100); do [ -S "$W/nbd.sock" ] && break; sleep 0.05; done
boot boot3-nbd --system-nbd "$W/nbd.sock:sys" --data "$W/data.img" \
    --user-data "$W/ud-hello.txt" --reset-once --powerdown || true
kill "$NBD_PID" && wait "$NBD_PID" 2> /dev/null || true
NBD_PID=
expect boot3-nbd "$W/boot3-nbd.log" "boot=3" "data-before=SNAPDISK-PATTERN boot=2 pattern=hello" \
    "ready" "boot=4" "data-before=SNAPDISK-PATTERN boot=3 pattern=hello" "ready" "poweroff"

boot writer --system "$W/sys.img" --data "$W/data.img" --user-data "$W/ud-writer.txt" \
    --kill-after-flushed 20 || true
expect writer "$W/writer.log" "boot=5" "userdata=mode=writer" \
    "data-before=SNAPDISK-PATTERN boot=4 pattern=hello" "data-written" "flushed=1" "flushed=20"
if python3 - "$W/writer.log" "$W/data.img" << 'EOF'; then
import re, sys
log, disk = sys.argv[1], sys.argv[2]
text = open(log, errors="replace").read()
text = text[:text.rfind("\n") + 1]  # a line cut by the SIGKILL does not count
ks = [int(m.group(1)) for m in re.finditer(r"^SNAPDISK-GUEST flushed=(\d+)\r?$", text, re.M)]
assert ks == list(range(1, len(ks) + 1)), f"flushed lines out of order: {ks[:5]}..."
last = ks[-1]
with open(disk, "rb") as f:
    for k in range(1, last + 1):
        f.seek((1 << 20) + k * 4096)
        rec = f.read(4096)
        want = f"SEQ {k}\n".encode()
        if rec != want + b"\0" * (4096 - len(want)):
            sys.exit(f"record {k} of {last} not on disk: {rec[:16]!r}")
    f.seek(0)
    first = f.read(512)
    assert first.startswith(b"SNAPDISK-PATTERN boot=5 pattern=w\n"), first[:40]
print(f"     writer: records 1..{last} on the data disk (SIGKILL after flushed={last})")
EOF
    echo "ok   writer-records"
    passed=$((passed + 1))
else
    echo "FAIL writer-records"
    failed=$((failed + 1))
fi

if python3 - "$W/sys.img" << 'EOF'; then
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1048064)
    sector = f.read(512)
want = b"SNAPDISK-BOOTS 5\n"
assert sector == want + b"\0" * (512 - len(want)), sector[:32]
EOF
    echo "ok   boot-counter-sector"
    passed=$((passed + 1))
else
    echo "FAIL boot-counter-sector"
    failed=$((failed + 1))
fi

echo "vm selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
