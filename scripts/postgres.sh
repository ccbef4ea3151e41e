#!/usr/bin/env bash
# Brings up a local PostgreSQL for the datastore suite and prints its connection URL on stdout.
# Idempotent: safe to run again while the cluster is already up. Needs root on Debian; works
# without systemd because it drives the cluster through pg_ctlcluster directly.
# Usage: export SVIDSCOPE_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
# Everything except the URL goes to stderr so the command substitution above captures only the URL.
set -euo pipefail

ROLE=svidscope
PASSWORD=svidscope
DATABASE=svidscope_test
HOST=127.0.0.1
PORT=5432

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs packages and starts the cluster as the postgres user)"
  exit 2
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v pg_lsclusters >/dev/null 2>&1; then
  log "postgresql missing; installing it"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2
  apt-get install -y postgresql >&2
fi

# The newest installed major version; Debian's postgresql package creates the "main" cluster.
VERSION=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if [ -z "$VERSION" ]; then
  log "no postgresql server version found under /usr/lib/postgresql"
  exit 3
fi
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
  log "creating cluster $VERSION/main"
  pg_createcluster "$VERSION" main --port "$PORT" >&2
fi

# pg_lsclusters -h columns: version cluster port status owner datadir logfile
STATUS=$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}')
if [ "$STATUS" != "online" ]; then
  log "starting cluster $VERSION/main"
  # A stale pid file from a killed container would block the start; pg_ctlcluster reports it clearly.
  pg_ctlcluster "$VERSION" main start >&2
fi
CLUSTER_PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $3}')
PORT=${CLUSTER_PORT:-$PORT}

# Wait for the server to accept connections (startup recovery can take a few seconds).
for _ in $(seq 1 60); do
  if pg_isready -q -h "$HOST" -p "$PORT"; then break; fi
  sleep 0.5
done
if ! pg_isready -q -h "$HOST" -p "$PORT"; then
  log "postgresql on $HOST:$PORT does not accept connections; see /var/log/postgresql/postgresql-$VERSION-main.log"
  exit 3
fi

psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }

# Role and database are created only when absent, so re-runs keep existing data and passwords.
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != "1" ]; then
  log "creating role $ROLE"
  psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != "1" ]; then
  log "creating database $DATABASE"
  psql_admin -c "CREATE DATABASE $DATABASE OWNER $ROLE" >&2
fi

URL="postgres://$ROLE:$PASSWORD@$HOST:$PORT/$DATABASE"
# Prove the password login over TCP works (pg_hba must allow md5/scram on 127.0.0.1, Debian's default).
if ! PGCONNECT_TIMEOUT=5 psql "$URL" -qtA -c 'SELECT 1' >/dev/null 2>&1; then
  log "cannot log in as $ROLE over TCP; check pg_hba.conf of cluster $VERSION/main"
  exit 3
fi
echo "$URL"
