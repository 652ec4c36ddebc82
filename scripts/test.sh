#!/usr/bin/env bash
# Set up and run the whole test suite, lint included. What it needs beyond Python it installs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The suite runs on each database engine in TEST_DATABASES, in turn (default: both).
TEST_DATABASES="${TEST_DATABASES:-sqlite postgresql}"

# System packages the tests use for real: Debian's Chromium (the browser tests; Playwright's own browser
# download is never used), a Redis server (the broker tests) and a PostgreSQL server (the PostgreSQL
# pass). Installed with apt when missing.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [[ " $TEST_DATABASES " == *" postgresql "* ]] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
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
  # The packages may start a system Redis and PostgreSQL; the tests start their own (Redis on free
  # ports, PostgreSQL on a unix socket in a temporary folder) and never use those.
fi

# Tests never touch the developer's own data, keys or databases.
HEALTH_PLATFORM_VAR_DIR="$(mktemp -d)"
export HEALTH_PLATFORM_VAR_DIR
postgres_dir=""
cleanup() {
  if [ -n "$postgres_dir" ]; then scripts/postgres.sh stop "$postgres_dir"; fi
  rm -rf "$HEALTH_PLATFORM_VAR_DIR"
}
trap cleanup EXIT
unset DATABASE_URL

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> import rules (lint-imports, .importlinter)"
.venv/bin/lint-imports --no-cache

# Each pass runs the tests in parallel worker processes (pytest-xdist), one per CPU unless
# PYTEST_WORKERS says otherwise (a number, or 0 for a single process; "-n N" among the arguments works
# too). Many tests spend their time waiting on real Celery workers, Redis, Chromium or a live server,
# which other tests' work fills: on two cores each pass takes about 4.5 minutes.
# Each worker keeps its own HEALTH_PLATFORM_VAR_DIR (a subfolder of the one above, see
# tests/conftest.py) and its own test database.
workers=(-n "${PYTEST_WORKERS:-auto}")
# Each pass ends with its 30 slowest tests: where the suite's time goes, for whoever keeps it short.
workers+=(--durations=30)

# Every pass runs, whatever the one before it found; the script fails at the end if any failed.
failed_passes=()
for database in $TEST_DATABASES; do
  case "$database" in
    sqlite)
      echo "==> pytest on SQLite (the whole suite)"
      .venv/bin/pytest "${workers[@]}" "$@" || failed_passes+=(sqlite)
      ;;
    postgresql)
      # The PostgreSQL pass runs every test that touches the database: all but the browser tests (e2e:
      # the same views and queries the rest of the suite covers, behind Chromium), the ledger and
      # chaincode tests (free of Django by design: no database engine is involved) and the permission
      # matrix (4,000 requests that check who may do what: each view's rule, the same on either engine;
      # the queries behind each view run on PostgreSQL in the views' own tests). That keeps CI to
      # about twice the SQLite pass's database work, not twice the whole run. Also left out: the quickstart
      # (run.sh always runs on its embedded defaults, SQLite, whichever pass starts it) and the embedded
      # ledger's outages and locks (faults of the ledger's own SQLite file; the pipeline's claims and retries
      # on PostgreSQL are exercised by the worker-fault and duplicate-delivery tests, which stay).
      postgres_dir="$(mktemp -d)"
      DATABASE_URL="$(scripts/postgres.sh start "$postgres_dir")"
      echo "==> pytest on PostgreSQL (private server on ${postgres_dir}; all but e2e, ledger, chaincode, the matrix, the quickstart, ledger faults)"
      status=0
      DATABASE_URL="$DATABASE_URL" .venv/bin/pytest "${workers[@]}" --ignore=tests/e2e \
        --ignore=tests/ledger --ignore=tests/chaincode --ignore=tests/test_permission_matrix.py \
        --ignore=tests/health_platform/test_quickstart.py --ignore=tests/reliability/test_ledger_outage.py \
        --ignore=tests/reliability/test_training_ledger_outage.py --ignore=tests/reliability/test_ledger_locked.py "$@" || status=$?
      scripts/postgres.sh stop "$postgres_dir"
      postgres_dir=""
      # 5: arguments that select only tests this pass leaves out (e.g. scripts/test.sh tests/ledger).
      if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then failed_passes+=(postgresql); fi
      ;;
    *)
      echo "Unknown database engine in TEST_DATABASES: $database (sqlite, postgresql)" >&2
      exit 2
      ;;
  esac
done
if [ "${#failed_passes[@]}" -gt 0 ]; then
  echo "==> tests failed on: ${failed_passes[*]}" >&2
  exit 1
fi
