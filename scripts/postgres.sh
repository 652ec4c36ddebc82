#!/usr/bin/env bash
# A private, throwaway PostgreSQL server for the tests (and the load test): its own cluster in a folder,
# reachable only through a unix socket in that folder (no TCP port, so nothing to collide with and
# nothing on the network), stopped and removed when done. Never the machine's own server or data.
#
#   scripts/postgres.sh start DIR   initialise and start a cluster in DIR (empty or absent), create the
#                                   database health_platform, print its DATABASE_URL on stdout
#   scripts/postgres.sh stop DIR    stop that cluster and remove DIR
#
# Needs Debian's postgresql package (scripts/test.sh installs it with apt when missing). The server
# refuses to run as root: as root the cluster belongs to the package's "postgres" system user.
# Durability is switched off (fsync, synchronous commit): the data is thrown away after the run.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ "$#" -eq 2 ] || usage
action="$1"
dir="$2"

bindir=""
for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then bindir="$candidate"; break; fi
done
if [ -z "$bindir" ]; then
  echo "PostgreSQL's server programs (initdb, pg_ctl) are missing: install Debian's postgresql package." >&2
  exit 1
fi

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  as_owner=(runuser -u postgres --)
fi

case "$action" in
  start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres: "$dir"
      if ! runuser -u postgres -- test -x "$dir"; then
        echo "The postgres user cannot reach $dir: choose a folder whose parents it may enter (e.g. mktemp -d)." >&2
        exit 1
      fi
    fi
    chmod 0700 "$dir"
    cd "$dir"
    "${as_owner[@]}" "$bindir/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
      --encoding=UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    # listen_addresses='' : the unix socket in $dir only.
    "${as_owner[@]}" "$bindir/pg_ctl" start --pgdata="$dir/data" --log="$dir/server.log" --wait --timeout=60 \
      --options="-c listen_addresses='' -k '$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    "${as_owner[@]}" "$bindir/createdb" --host="$dir" --username=postgres health_platform
    # django-environ reads a host that starts with "/" after the "@" as the socket folder.
    echo "postgres://postgres@/${dir}/health_platform"
    ;;
  stop)
    if [ -d "$dir/data" ]; then
      (cd "$dir" && "${as_owner[@]}" "$bindir/pg_ctl" stop --pgdata="$dir/data" --mode=fast --wait >/dev/null) || true
    fi
    rm -rf "$dir"
    ;;
  *)
    usage
    ;;
esac
