#!/usr/bin/env bash
# Every test Snapdisk has: formatting, lints, Rust unit and integration tests, then the
# end-to-end suite that starts the real server and drives it with the official SDKs.
# Installs what it needs first (a local .venv with the pinned SDKs).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: nbdinfo/nbdcopy; qemu-system-x86 for the VM tests with qemu-utils (qemu-img,
# qemu-nbd, qemu-io) installed with it (Debian's qemu-system-x86 replaces a newer qemu-utils);
# what tests/vm/build_image.py needs to make the test guest (busybox-static, syslinux, mtools,
# dosfstools, fdisk).
need=()
for pkg in libnbd-bin qemu-system-x86 qemu-utils busybox-static syslinux syslinux-common mtools dosfstools fdisk; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    libnbd-bin qemu-system-x86 qemu-utils busybox-static syslinux syslinux-common mtools dosfstools fdisk >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== unsafe code only where allowed (the workspace denies it; see Cargo.toml)"
allowed=$(grep -rl --include='*.rs' 'allow(unsafe_code)' crates 2>/dev/null | sort | tr '\n' ' ')
if [ "$allowed" != "crates/store/src/uring.rs " ]; then
  echo "unsafe_code is allowed outside crates/store/src/uring.rs: $allowed"; exit 1
fi
echo "== cargo build"
cargo build --quiet --bin snapdisk
echo "== cargo test"
cargo test --workspace --quiet

echo "== python environment"
req=tests/e2e/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

echo "== official Node SDKs (Tea and pop-core) against target/debug/snapdisk"
if [ ! -d tests/node/node_modules ]; then (cd tests/node && npm ci --no-audit --no-fund --silent); fi
(cd tests/node && SNAPDISK_BIN="$PWD/../../target/debug/snapdisk" node --test --test-reporter=dot)

echo "== end-to-end (official SDKs against target/debug/snapdisk)"
SNAPDISK_BIN="$PWD/target/debug/snapdisk" .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
