#!/usr/bin/env bash
# Set up and run the whole test suite, lint included. What it needs beyond Python it installs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The browser tests (tests/e2e) drive Debian's Chromium package; Playwright's own browser download is never used.
if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing chromium (apt)"
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "The browser tests need /usr/bin/chromium: install Debian's chromium package (as root)." >&2
    exit 1
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
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
