#!/usr/bin/env bash
# Every test Snapdisk has: formatting, lints, Rust unit and integration tests, then the
# end-to-end suite that starts the real server and drives it with the official SDKs.
# Installs what it needs first (a local .venv with the pinned SDKs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nbdinfo >/dev/null || ! command -v nbdcopy >/dev/null; then
  echo "== installing libnbd-bin (nbdinfo, nbdcopy)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libnbd-bin >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq libnbd-bin >/dev/null; fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
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
