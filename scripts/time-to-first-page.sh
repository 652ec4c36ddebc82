#!/usr/bin/env bash
# How long `make run` takes, in a checkout, until the portal's first page answers 200 and until its box is printed
# (the demo users exist: a visitor can sign in) (issue 14's quick start:
# at most 3 minutes from a fresh clone, 30 s once set up). Prints the seconds, the lines `make run` printed by
# then and the machine's load, then stops the platform as Ctrl-C would and waits for it to be gone.
#
#   scripts/time-to-first-page.sh /tmp/fresh [PORT]      # e.g. after git clone . /tmp/fresh
#
# The terminal output of `make run` is kept in $CHECKOUT/make-run.out.
set -euo pipefail
checkout="$(cd "${1:?usage: $0 CHECKOUT [PORT]}" && pwd)"
port="${2:-8000}"
timeout="${TIMEOUT_SECONDS:-600}"
out="$checkout/make-run.out"

echo "load before: $(uptime)"
started=$(date +%s.%N)
# A process group of its own, so that the interrupt reaches every program `make run` started, as Ctrl-C does.
# Job control (set -m) gives the background job that group, and leaves SIGINT to it: without it a script's
# background jobs ignore SIGINT, and the interrupt below would stop nothing.
set -m
env PORT="$port" make -C "$checkout" --no-print-directory run >"$out" 2>&1 </dev/null &
leader=$!
status=""
while [ -z "$status" ] || [ "$status" != 200 ]; do
  if ! kill -0 "$leader" 2>/dev/null; then
    echo "make run stopped before the first page answered; its output:" >&2
    tail -n 40 "$out" >&2
    exit 1
  fi
  if [ "$(echo "$(date +%s.%N) - $started > $timeout" | bc)" = 1 ]; then
    echo "no answer within $timeout s" >&2
    kill -INT -- "-$leader" 2>/dev/null || true
    exit 1
  fi
  sleep 0.2
  status="$(curl -sL -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null || true)"
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
# The box (the demo users' passwords and second factors) comes once the seeding is done as well: a visitor can
# sign in from then on.
until grep -q '^==> ready in' "$out"; do
  if ! kill -0 "$leader" 2>/dev/null; then
    echo "make run stopped before its box; its output:" >&2
    tail -n 40 "$out" >&2
    exit 1
  fi
  sleep 0.2
done
boxed=$(echo "$(date +%s.%N) - $started" | bc)
sleep 1  # the box itself
printf 'first page: %.1f s   box (sign-in possible): %.1f s   lines printed: %s\n' "$elapsed" "$boxed" "$(wc -l <"$out")"
echo "load after: $(uptime)"
kill -INT -- "-$leader" 2>/dev/null || true
for _ in $(seq 1 300); do
  kill -0 -- "-$leader" 2>/dev/null || exit 0
  sleep 0.1
done
echo "still running 30 s after the interrupt: killing it" >&2
kill -KILL -- "-$leader" 2>/dev/null || true
exit 1
