#!/usr/bin/env bash
# The web server as `make run` starts it (scripts/run.sh), and as the load test and the tests start it:
# gunicorn, not the development server (whitenoise serves the static files), on 127.0.0.1:$PORT with
# $WEB_WORKERS workers. Everything else it is told is in its configuration, health_platform/gunicorn_config.py:
# the access log (stdout, no query strings), its error answers, its limits and its control socket (in the
# var folder). Extra arguments go to gunicorn.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/gunicorn --config python:health_platform.gunicorn_config health_platform.wsgi \
  --bind "127.0.0.1:${PORT:-8000}" --workers "${WEB_WORKERS:-2}" "$@"
