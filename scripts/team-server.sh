#!/usr/bin/env bash
# The team setup on one machine: a private PostgreSQL cluster and an authenticated MLflow
# tracking server on it, all state in one folder. Used by tests/integration/test_team.py
# and by people (README, "Team setup").
#
#   scripts/team-server.sh start DIR     cluster + databases + mlflow server (basic auth)
#   scripts/team-server.sh stop DIR      stop both (data kept: `start DIR` resumes)
#   scripts/team-server.sh restart-mlflow DIR   stop and start the tracking server only
#   scripts/team-server.sh stop-mlflow DIR      stop the tracking server only
#   scripts/team-server.sh add-user DIR NAME    a new team member (prints the password)
#   scripts/team-server.sh status DIR
#
# `start` writes DIR/team.env (source it: MLFLOW_TRACKING_URI, the team user's
# credentials, OPTUNA_STORAGE, bounded client retries) and DIR/admin.env (the admin's).
# PostgreSQL listens on 127.0.0.1 only, on a free port (or PG_PORT), with its socket in
# DIR/run: a PostgreSQL the machine already runs is never touched. Run as root, the
# cluster belongs to the `postgres` OS user (initdb refuses root); DIR must be reachable
# by that user. ALERT_WEBHOOK_URL: MLflow's own registry webhook posts every alias move
# there (MLCYCLE_WEBHOOK_SECRET signs it). Environment: PG_PORT, MLFLOW_PORT, MLFLOW_HOST (127.0.0.1),
# MLFLOW_WORKERS (2), TEAM_USER (mlcycle), ARTIFACTS_DESTINATION (DIR/artifacts; an
# s3://bucket/path in production).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${MLCYCLE_BIN:-$ROOT/.venv/bin}"
PY="$BIN/python"
# mlcycle.scaleout.remote from this checkout, whatever the current folder.
remote() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m mlcycle.scaleout.remote "$@"; }

die() { echo "team-server: $*" >&2; exit 1; }
say() { echo "team-server: $*"; }

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
secret() { "$PY" -c 'import secrets; print(secrets.token_hex(16))'; }

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] || dir="$(dirname "$(command -v initdb 2>/dev/null || echo /none/initdb)")"
  [ -x "$dir/initdb" ] || die "PostgreSQL not found: run scripts/system-deps.sh (Debian: apt-get install postgresql)"
  echo "$dir"
}

# initdb and postgres refuse to run as root: run them as the postgres OS user then.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

load() {  # the settings of an existing setup
  [ -f "$DIR/settings.env" ] || die "no team setup in $DIR (run: $0 start $DIR)"
  # shellcheck disable=SC1091
  source "$DIR/settings.env"
}

pg_running() { as_pg "$PG/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; }

mlflow_pid() {
  local pid
  pid="$(cat "$DIR/mlflow-server.pid" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}

psql_admin() {
  PGPASSWORD="$PG_SUPERUSER_PASSWORD" "$PG/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

init_settings() {
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  umask 077
  cat >"$DIR/settings.env" <<EOF
PG_PORT=${PG_PORT:-$(free_port)}
MLFLOW_PORT=${MLFLOW_PORT:-$(free_port)}
MLFLOW_HOST=${MLFLOW_HOST:-127.0.0.1}
PG_SUPERUSER_PASSWORD=$(secret)
MLFLOW_DB_PASSWORD=$(secret)
OPTUNA_DB_PASSWORD=$(secret)
ADMIN_PASSWORD=$(secret)
FLASK_SECRET_KEY=$(secret)
TEAM_USER=${TEAM_USER:-mlcycle}
TEAM_PASSWORD=$(secret)
ARTIFACTS_DESTINATION=${ARTIFACTS_DESTINATION:-$DIR/artifacts}
EOF
  umask 022
}

init_cluster() {
  mkdir -p "$DIR/pg" "$DIR/run" "$DIR/logs"
  touch "$DIR/logs/postgres.log"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DIR/pg" "$DIR/run" "$DIR/logs/postgres.log"
    as_pg test -x "$DIR" || die "the postgres user cannot reach $DIR: use a folder whose parents are world-searchable (e.g. under /tmp)"
  fi
  chmod 700 "$DIR/pg"
  local pwfile="$DIR/run/pwfile"
  printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
  chmod 600 "$pwfile"
  as_pg "$PG/initdb" -D "$DIR/pg" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
    -E UTF8 --no-locale >"$DIR/logs/initdb.log" 2>&1 || { cat "$DIR/logs/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  # Loopback only, a port of its own and the socket in DIR/run: a PostgreSQL the machine
  # already runs (port 5432, /var/run/postgresql) is never touched.
  cat >>"$DIR/pg/postgresql.conf" <<EOF

# scripts/team-server.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR/run'
max_connections = 200
EOF
}

start_pg() {
  pg_running && return 0
  as_pg "$PG/pg_ctl" -D "$DIR/pg" -l "$DIR/logs/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$DIR/logs/postgres.log" >&2; die "PostgreSQL did not start (port $PG_PORT)"; }
}

create_databases() {
  # Two roles: the tracking server's (its stores) and the tuning workers' (Optuna only),
  # so a worker's credentials cannot write around the server's authentication.
  psql_admin <<EOF
CREATE ROLE mlflow LOGIN PASSWORD '$MLFLOW_DB_PASSWORD';
CREATE ROLE optuna LOGIN PASSWORD '$OPTUNA_DB_PASSWORD';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE DATABASE optuna OWNER optuna;
EOF
}

# A bare postgresql://: SQLAlchemy 2.1 reads it as psycopg 3, the driver the project ships.
pg_url() { echo "postgresql://$1:$2@127.0.0.1:$PG_PORT/$3"; }

start_mlflow() {
  if [ -n "$(mlflow_pid)" ]; then return 0; fi
  sed "s|@AUTH_DATABASE_URI@|$(pg_url mlflow "$MLFLOW_DB_PASSWORD" mlflow_auth)|" \
    "$ROOT/deploy/basic_auth.ini" >"$DIR/basic_auth.ini"
  chmod 600 "$DIR/basic_auth.ini"
  mkdir -p "$DIR/logs"
  [[ "$ARTIFACTS_DESTINATION" == *://* ]] || mkdir -p "$ARTIFACTS_DESTINATION"
  # setsid: the server and its workers form one process group, stopped as one.
  # Job execution (GenAI scorers, trace jobs) would start five more processes: not needed.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini" \
  MLFLOW_AUTH_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  MLFLOW_FLASK_SERVER_SECRET_KEY="$FLASK_SECRET_KEY" \
  setsid "$BIN/mlflow" server --app-name basic-auth \
    --backend-store-uri "$(pg_url mlflow "$MLFLOW_DB_PASSWORD" mlflow)" \
    --serve-artifacts --artifacts-destination "$ARTIFACTS_DESTINATION" \
    --default-artifact-root mlflow-artifacts:/ \
    --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "${MLFLOW_WORKERS:-2}" \
    </dev/null >>"$DIR/logs/mlflow-server.log" 2>&1 &
  echo $! >"$DIR/mlflow-server.pid"
  remote wait "http://127.0.0.1:$MLFLOW_PORT" --timeout 180 --pid $! \
    || { tail -n 30 "$DIR/logs/mlflow-server.log" >&2; die "mlflow server did not start"; }
}

stop_mlflow() {
  local pid i
  pid="$(mlflow_pid)"
  if [ -n "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/mlflow-server.pid"
}

add_user() {  # NAME PASSWORD
  ( set -a; source "$DIR/admin.env"
    MLCYCLE_NEW_USER_PASSWORD="$2" remote add-user "$MLFLOW_TRACKING_URI" "$1" )
}

write_env_files() {
  local url="http://$MLFLOW_HOST:$MLFLOW_PORT"
  [ "$MLFLOW_HOST" = "0.0.0.0" ] && url="http://127.0.0.1:$MLFLOW_PORT"
  umask 077
  cat >"$DIR/team.env" <<EOF
# source this file (scripts/team-server.sh wrote it): every step then logs to the server.
export MLFLOW_TRACKING_URI=$url
export MLFLOW_TRACKING_USERNAME=$TEAM_USER
export MLFLOW_TRACKING_PASSWORD=$TEAM_PASSWORD
# optimize -P storage=\$OPTUNA_STORAGE: one Optuna study shared by workers on any machine.
export OPTUNA_STORAGE=$(pg_url optuna "$OPTUNA_DB_PASSWORD" optuna)
# A server that went away fails the step within seconds instead of ~4 minutes of retries.
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=2
export MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1
export MLFLOW_HTTP_REQUEST_TIMEOUT=30
EOF
  cat >"$DIR/admin.env" <<EOF
export MLFLOW_TRACKING_URI=$url
export MLFLOW_TRACKING_USERNAME=admin
export MLFLOW_TRACKING_PASSWORD=$ADMIN_PASSWORD
EOF
  umask 022
}

# MLflow's registry webhook for alias moves (admin only), when ALERT_WEBHOOK_URL is set.
# The server only posts to https on public addresses unless it was started with
# MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true.
setup_webhook() {
  [ -n "${ALERT_WEBHOOK_URL:-}" ] || return 0
  ( set -a; source "$DIR/admin.env"; remote webhook "$MLFLOW_TRACKING_URI" "$ALERT_WEBHOOK_URL" ) \
    || say "the server runs without the alias webhook"
}

cmd_start() {
  PG="$(pg_bin)"
  local fresh=0
  if [ ! -f "$DIR/settings.env" ]; then init_settings; fresh=1; fi
  load
  [ -f "$DIR/pg/PG_VERSION" ] || { init_cluster; fresh=1; }
  start_pg
  [ "$fresh" -eq 1 ] && create_databases
  start_mlflow
  write_env_files
  [ "$fresh" -eq 1 ] && add_user "$TEAM_USER" "$TEAM_PASSWORD" >/dev/null
  setup_webhook
  say "PostgreSQL on 127.0.0.1:$PG_PORT (data $DIR/pg), mlflow server on http://$MLFLOW_HOST:$MLFLOW_PORT (pid $(cat "$DIR/mlflow-server.pid"))"
  say "team member '$TEAM_USER': source $DIR/team.env"
}

cmd_stop() {
  PG="$(pg_bin)"
  [ -f "$DIR/settings.env" ] || { say "nothing to stop in $DIR"; return 0; }
  load
  stop_mlflow
  if pg_running; then as_pg "$PG/pg_ctl" -D "$DIR/pg" -m fast -w -t 60 stop >/dev/null; fi
  say "stopped (data kept in $DIR)"
}

cmd_status() {
  PG="$(pg_bin)"
  load
  local pid
  pid="$(mlflow_pid)"
  if pg_running; then say "PostgreSQL: running on 127.0.0.1:$PG_PORT"; else say "PostgreSQL: stopped"; fi
  if [ -n "$pid" ]; then say "mlflow server: running (pid $pid) on port $MLFLOW_PORT"; else say "mlflow server: stopped"; fi
}

[ $# -ge 2 ] || { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
action="$1"
DIR="$(mkdir -p "$2" && cd "$2" && pwd)"
case "$action" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  stop-mlflow) load; stop_mlflow; say "mlflow server stopped" ;;
  restart-mlflow) PG="$(pg_bin)"; load; stop_mlflow; start_pg; start_mlflow; say "mlflow server restarted" ;;
  add-user)
    [ $# -ge 3 ] || die "usage: $0 add-user DIR NAME"
    load; password="${NEW_USER_PASSWORD:-$(secret)}"
    out="$(add_user "$3" "$password")"; echo "$out"
    [[ "$out" == *": created"* ]] && echo "password of $3: $password" ;;
  *) die "unknown action $action (start, stop, status, stop-mlflow, restart-mlflow, add-user)" ;;
esac
