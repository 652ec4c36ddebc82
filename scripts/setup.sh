#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the locked dependencies (idempotent, fast when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."

python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    python="$candidate"; break
  fi
done
if [ -z "$python" ]; then
  echo "health_platform needs Python 3.11 (python3.11 or python3 on PATH)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
fi
echo "==> installing locked dependencies (requirements.lock)"
.venv/bin/uv pip sync --quiet --python .venv/bin/python requirements.lock
