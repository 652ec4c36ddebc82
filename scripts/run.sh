#!/usr/bin/env bash
# Set up and run the platform on its embedded defaults: SQLite, the embedded ledger, a local Celery
# worker on a broker that needs no server, demo data, the portal and API on http://127.0.0.1:8000/.
#
# Quiet: every program's output (setup, migrations, static files, model registration, seeding, the web server,
# the workers and the beat) goes to a log in the var folder's logs/ (HEALTH_PLATFORM_VAR_DIR, else .env's, else
# var/); the terminal shows one line per step and, once the portal's first page answers, one box: the address,
# each demo user and password, where e-mails and logs are, how to stop. A step that fails shows the end of its
# log and the script exits with its status. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

export DJANGO_SETTINGS_MODULE=health_platform.settings
PORT="${PORT:-8000}"
py=.venv/bin/python
started=$SECONDS
background=()

say() { printf '==> %s\n' "$*"; }
# A step failed: the end of its log, then the exit (with the step's status).
fail() {
  local step=$1 status=$2 log=$3
  printf '\n!! %s failed (exit status %s). The last lines of %s:\n\n' "$step" "$status" "$log" >&2
  tail -n 40 "$log" | sed 's/^/   /' >&2
  exit "$status"
}
# Run a step with its output appended to its log; fail with the log's tail if it fails.
logged() {
  local step=$1 log=$2 status=0
  shift 2
  "$@" >>"$log" 2>&1 || status=$?
  [ "$status" = 0 ] || fail "$step" "$status" "$log"
}
# In a background subshell of steps: run one, and stop it if the subshell is stopped (a subshell killed alone
# would leave its program running).
stoppable() {
  trap 'kill "$child" 2>/dev/null; exit 143' TERM
  "$@" &
  child=$!
  wait "$child"
}
stop_all() {
  trap - EXIT INT TERM
  if [ ${#background[@]} -gt 0 ]; then
    kill "${background[@]}" 2>/dev/null || true
    wait "${background[@]}" 2>/dev/null || true
  fi
}
trap 'status=$?; stop_all; exit "$status"' EXIT
trap 'echo; say "stopping"; stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM

say "setting up .venv (locked dependencies)"
setup_log="$(mktemp "${TMPDIR:-/tmp}/health-platform-setup.XXXXXX")"
logged "setting up" "$setup_log" scripts/setup.sh
# The workers' logs and the beat schedule go where the settings keep everything else (the environment's
# HEALTH_PLATFORM_VAR_DIR, else the one in .env, else var/: health_platform/celery_config.py).
var_dir="$($py -c 'from health_platform.celery_config import var_dir, worker_variables; print(var_dir(worker_variables()).resolve())')"
log_dir="$var_dir/logs"
mkdir -p "$log_dir"
mv "$setup_log" "$log_dir/setup.log"
for step in migrate collectstatic register_models seed_demo compileall; do : >"$log_dir/$step.log"; done
# The installed packages' bytecode, compiled in the background (once: later starts find it up to date). uv installs
# without it, and where PYTHONDONTWRITEBYTECODE is set every program would compile each module it imports at every
# start, the workers and gunicorn's included.
$py -m compileall -q "$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  >>"$log_dir/compileall.log" 2>&1 </dev/null &
background+=($!)

# Static files are collected again only when what they are collected from changed (the locked packages, the
# settings, the project's static/ folders): whitenoise compresses every file at each collectstatic, a minute of
# both cores. They are collected in the background, while the database is migrated and seeded; the web server,
# which reads them when it starts, starts once they are all there.
static_fingerprint="$({
  sha256sum requirements.lock health_platform/settings.py
  find . \( -path ./.venv -o -path ./.git -o -path ./staticfiles \) -prune -o -path '*/static/*' -type f -print0 |
    sort -z | xargs -0 -r sha256sum
} | sha256sum | cut -d' ' -f1)"
collecting=""
if [ "$(cat staticfiles/.collected-from 2>/dev/null || true)" != "$static_fingerprint" ]; then
  say "collecting static files (in the background)"
  rm -f staticfiles/.collected-from
  (stoppable $py manage.py collectstatic --no-input --verbosity 0 && echo "$static_fingerprint" >staticfiles/.collected-from) \
    >>"$log_dir/collectstatic.log" 2>&1 </dev/null &
  collecting=$!
  background+=("$collecting")
fi

say "migrating the database"
logged "migrating" "$log_dir/migrate.log" $py manage.py migrate --no-input
# The models are registered and the demo seeded while the web server and the workers start (they need the
# migrated database only); the box waits for both.
say "registering the diagnostic models and seeding the demo data (users, patients, consents)"
credentials="$var_dir/demo-credentials.json"
(
  stoppable $py manage.py register_models >>"$log_dir/register_models.log" 2>&1 || exit 10
  stoppable $py manage.py seed_demo --patients "${DEMO_PATIENTS:-200}" --credentials-file "$credentials" \
    >>"$log_dir/seed_demo.log" 2>&1 || exit 11
) </dev/null &
seeding=$!
background+=("$seeding")

if [ -n "$collecting" ]; then
  status=0
  wait "$collecting" || status=$?
  [ "$status" = 0 ] || fail "collecting static files" "$status" "$log_dir/collectstatic.log"
fi

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
say "starting the web server, the custodian and compute workers and the beat"
supervise() { name=$1; shift; exec $py -m health_platform.supervise --name "$name" --log "$log_dir/celery-$name.log" -- "$@"; }
supervise custodian .venv/bin/celery -A health_platform worker --queues custodian --concurrency 2 --loglevel INFO \
  --hostname custodian@%h </dev/null &
background+=($!)
supervise beat .venv/bin/celery -A health_platform beat --loglevel INFO --schedule "$var_dir/celerybeat-schedule" \
  </dev/null &
background+=($!)
env -i PATH="$PATH" HOME="${HOME:-/tmp}" PYTHONPATH="$PWD" ${compute_environment[@]+"${compute_environment[@]}"} \
  $py -m health_platform.supervise --name compute --log "$log_dir/celery-compute.log" -- \
  .venv/bin/celery -A analytics.compute_app worker --queues compute --concurrency 2 --loglevel INFO \
  --hostname compute@%h </dev/null &
background+=($!)
# gunicorn, not the development server; whitenoise serves the static files (scripts/web.sh says how). Its access
# log and its own messages go to web.log.
PORT="$PORT" scripts/web.sh >>"$log_dir/web.log" 2>&1 </dev/null &
web=$!
background+=("$web")

status=0
wait "$seeding" || status=$?
case "$status" in
  0) ;;
  10) fail "registering the models" 1 "$log_dir/register_models.log" ;;
  *) fail "seeding" 1 "$log_dir/seed_demo.log" ;;
esac
url="http://127.0.0.1:${PORT}/"
if ! $py -m health_platform.quickstart wait --url "$url" --pid "$web" --timeout "${START_TIMEOUT_SECONDS:-300}"; then
  fail "starting the web server" 1 "$log_dir/web.log"
fi
say "ready in $((SECONDS - started)) s"
echo
$py -m health_platform.quickstart box --url "$url" --credentials "$credentials" --var-dir "$var_dir"

# Until Ctrl-C (or the web server stops: then everything else is stopped with it).
status=0
wait "$web" || status=$?
if [ "$status" != 0 ] && [ "$status" != 130 ]; then fail "the web server" "$status" "$log_dir/web.log"; fi
