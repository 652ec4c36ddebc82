#!/usr/bin/env bash
# Set up and run the platform on its embedded defaults: SQLite, the embedded ledger, a local Celery
# worker on a broker that needs no server, demo data, the portal and API on http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export DJANGO_SETTINGS_MODULE=health_platform.settings
PORT="${PORT:-8000}"
py=.venv/bin/python
# The workers' logs and the beat schedule go where the settings keep everything else.
var_dir="${HEALTH_PLATFORM_VAR_DIR:-$PWD/var}"
mkdir -p "$var_dir"

$py manage.py migrate --no-input
$py manage.py collectstatic --no-input --verbosity 0
$py manage.py register_models
$py manage.py seed_demo --patients "${DEMO_PATIENTS:-200}"

# Custodian work (gate, log, encrypt: database, record keys) and compute work (ciphertexts only: no
# database, no keys) run in separate workers, as they would on separately trusted machines.
echo "==> starting the custodian worker (queue custodian, with the beat schedule) and the compute worker (queue compute)"
.venv/bin/celery -A health_platform worker --queues custodian --concurrency 2 --loglevel INFO \
  --hostname custodian@%h --beat --schedule "$var_dir/celerybeat-schedule" >"$var_dir/celery-custodian.log" 2>&1 &
custodian=$!
env -i PATH="$PATH" HOME="${HOME:-/tmp}" PYTHONPATH="$PWD" HEALTH_PLATFORM_VAR_DIR="$var_dir" \
  ${CELERY_BROKER_URL:+CELERY_BROKER_URL="$CELERY_BROKER_URL"} \
  .venv/bin/celery -A analytics.compute_app worker --queues compute --concurrency 2 --loglevel INFO \
  --hostname compute@%h >"$var_dir/celery-compute.log" 2>&1 &
compute=$!
trap 'kill "$custodian" "$compute" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

echo "==> portal: http://127.0.0.1:${PORT}/   API docs: http://127.0.0.1:${PORT}/api/docs/   (Ctrl-C stops)"
# gunicorn, not the development server; whitenoise serves the static files.
.venv/bin/gunicorn health_platform.wsgi --bind "127.0.0.1:${PORT}" --workers "${WEB_WORKERS:-2}" \
  --access-logfile - --graceful-timeout 10
