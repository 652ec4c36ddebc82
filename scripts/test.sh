#!/usr/bin/env bash
# Set up and run the whole test suite, lint included. What it needs beyond Python it installs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

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
