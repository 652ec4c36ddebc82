#!/usr/bin/env bash
# Set up and run the whole test suite, lint included. What it needs beyond Python it installs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# System packages the tests use for real: Debian's Chromium (the browser tests; Playwright's own browser
# download is never used) and a Redis server (the broker tests). Installed with apt when missing.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]} (apt)"
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "The tests need these Debian packages: ${missing[*]}. Install them as root." >&2
    exit 1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a system Redis; the tests start their own on free ports.
fi

# Tests never touch the developer's own data or keys.
HEALTH_PLATFORM_VAR_DIR="$(mktemp -d)"
export HEALTH_PLATFORM_VAR_DIR
trap 'rm -rf "$HEALTH_PLATFORM_VAR_DIR"' EXIT

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy

echo "==> pytest"
.venv/bin/pytest "$@"
