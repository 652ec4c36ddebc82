#!/usr/bin/env bash
# Set up and run the platform on its embedded defaults: SQLite, the embedded ledger, a local Celery
# worker on a broker that needs no server, demo data, the portal and API on http://127.0.0.1:8000/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export DJANGO_SETTINGS_MODULE=health_platform.settings
PORT="${PORT:-8000}"
py=.venv/bin/python
# The workers' logs and the beat schedule go where the settings keep everything else (the environment's
# HEALTH_PLATFORM_VAR_DIR, else the one in .env, else var/: health_platform/celery_config.py).
var_dir="$($py -c 'from health_platform.celery_config import var_dir, worker_variables; print(var_dir(worker_variables()))')"
mkdir -p "$var_dir"

$py manage.py migrate --no-input
$py manage.py collectstatic --no-input --verbosity 0
$py manage.py register_models
$py manage.py seed_demo --patients "${DEMO_PATIENTS:-200}"

# Custodian work (gate, log, encrypt: database, record keys) and compute work (ciphertexts only: no
# database, no keys) run in separate workers, as they would on separately trusted machines.
# The compute worker starts with an empty environment, so that no database URL and no key reach it.
# Both read their broker, var and blob folders the same way (health_platform/celery_config.py: the
# environment, then .env, of which the compute worker takes those variables only): it is given the
# ones set in this environment, which win over .env for the custodian too.
compute_environment=()
for name in HEALTH_PLATFORM_ENV_FILE $($py -c 'from health_platform.celery_config import VARIABLES; print(*sorted(VARIABLES))'); do
  if [ -n "${!name+set}" ]; then compute_environment+=("$name=${!name}"); fi
done
# Each background program runs under health_platform.supervise, which starts it again within a second if it
# stops (killed, out of memory, crashed): no single process death stalls the work, and the messages it held
# are delivered again by the broker. The beat (the periodic sweeps) is a program of its own.
echo "==> starting the custodian worker (queue custodian), the compute worker (queue compute) and the beat"
supervise() { name=$1; shift; exec $py -m health_platform.supervise --name "$name" --log "$var_dir/celery-$name.log" -- "$@"; }
supervise custodian .venv/bin/celery -A health_platform worker --queues custodian --concurrency 2 --loglevel INFO \
  --hostname custodian@%h &
custodian=$!
supervise beat .venv/bin/celery -A health_platform beat --loglevel INFO --schedule "$var_dir/celerybeat-schedule" &
beat=$!
env -i PATH="$PATH" HOME="${HOME:-/tmp}" PYTHONPATH="$PWD" ${compute_environment[@]+"${compute_environment[@]}"} \
  $py -m health_platform.supervise --name compute --log "$var_dir/celery-compute.log" -- \
  .venv/bin/celery -A analytics.compute_app worker --queues compute --concurrency 2 --loglevel INFO \
  --hostname compute@%h &
compute=$!
trap 'kill "$custodian" "$beat" "$compute" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

echo "==> portal: http://127.0.0.1:${PORT}/   API docs: http://127.0.0.1:${PORT}/api/docs/   (Ctrl-C stops)"
# gunicorn, not the development server; whitenoise serves the static files (scripts/web.sh says how).
PORT="$PORT" scripts/web.sh
