#!/usr/bin/env bash
# stop-mariadb-pair.sh - stop the two mariadbd started by start-mariadb-pair.sh (only the pids
# it recorded in $MARIADB_PAIR_DIR/pids, after checking each still runs with our option file)
# and remove the state dir. filestore's copy of the machine's reference script (shared/services).
#
#   ./stop-mariadb-pair.sh
#
# Environment (all optional):
#   MARIADB_PAIR_DIR      same value as for start-mariadb-pair.sh         [/tmp/filestore-mariadb-pair]
#   MARIADB_PAIR_KEEP=1   stop the daemons but keep the state dir (data, logs)
#   MARIADB_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL    [20]
set -Eeuo pipefail

DATA=${MARIADB_PAIR_DIR:-/tmp/filestore-mariadb-pair}
TIMEOUT=${MARIADB_STOP_TIMEOUT:-20}
case $DATA in /*) ;; *) echo "stop-mariadb-pair: MARIADB_PAIR_DIR must be an absolute path" >&2; exit 2 ;; esac
DATA=$(realpath -m -- "$DATA")   # same canonical form as start-mariadb-pair.sh
[ "$DATA" != / ] || { echo "stop-mariadb-pair: refusing MARIADB_PAIR_DIR=/" >&2; exit 2; }
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "stop-mariadb-pair: bad MARIADB_STOP_TIMEOUT '$TIMEOUT'" >&2; exit 2; }
PIDS=$DATA/pids
MARKER=$DATA/.start-mariadb-pair
T0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }

if [ ! -e "$DATA" ]; then
  echo "stop-mariadb-pair: $DATA does not exist; nothing to stop" >&2
  exit 0
fi
if [ ! -e "$MARKER" ]; then
  echo "stop-mariadb-pair: ERROR: $DATA was not created by start-mariadb-pair.sh (no $MARKER); not touching it" >&2
  exit 1
fi

# alive = a live (non-zombie) mariadbd whose first argument is our option file for $2.
# kill -0 also succeeds on a zombie (an exited child nobody has reaped yet), so read
# /proc/PID/stat. Pure bash, so no helper process can match itself.
alive() {
  local pid=$1 name=$2 comm stat state args
  [[ $pid =~ ^[1-9][0-9]*$ ]] || return 1
  { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
  case $comm in mariadbd|mysqld) ;; *) return 1 ;; esac
  { stat=$(<"/proc/$pid/stat"); } 2>/dev/null || return 1
  state=${stat##*) }; state=${state%% *}
  case $state in Z|X|x|"") return 1 ;; esac
  { mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
  [ "${args[1]:-}" = "--defaults-file=$DATA/$name.cnf" ]
}

# SIGTERM both at once (clean, fast shutdown), then wait for each
names=() pids=()
for name in replica primary; do
  f=$PIDS/$name.pid
  [ -s "$f" ] || continue
  pid=$(<"$f")
  if ! alive "$pid" "$name"; then
    echo "stop-mariadb-pair: $name (pid $pid) is not running" >&2
    rm -f "$f"; continue
  fi
  kill -TERM "$pid" 2>/dev/null || true
  names+=("$name") pids+=("$pid")
done
rc=0
for i in "${!names[@]}"; do
  name=${names[$i]} pid=${pids[$i]}
  for ((t = 0; t < TIMEOUT * 20; t++)); do alive "$pid" "$name" || break; sleep 0.05; done
  if alive "$pid" "$name"; then
    echo "stop-mariadb-pair: $name (pid $pid) ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((t = 0; t < 100; t++)); do alive "$pid" "$name" || break; sleep 0.05; done
  fi
  if alive "$pid" "$name"; then
    echo "stop-mariadb-pair: ERROR: could not stop $name (pid $pid)" >&2; rc=1
  else
    echo "stop-mariadb-pair: stopped $name (pid $pid) after $(ms) ms" >&2
    rm -f "$PIDS/$name.pid"
  fi
done

# safety net: never delete the state dir under a mariadbd that still uses our option files
# (e.g. a pid file was lost); report it, do not kill it
for c in /proc/[0-9]*/cmdline; do
  p=${c#/proc/}; p=${p%/cmdline}
  for name in primary replica; do
    if alive "$p" "$name"; then
      echo "stop-mariadb-pair: ERROR: pid $p still runs with $DATA/$name.cnf but is not recorded" >&2
      rc=1
    fi
  done
done
if [ $rc -ne 0 ]; then
  echo "stop-mariadb-pair: leaving $DATA in place because a daemon is still running" >&2
  exit $rc
fi
if [ "${MARIADB_PAIR_KEEP:-}" = 1 ]; then
  echo "stop-mariadb-pair: keeping $DATA (MARIADB_PAIR_KEEP=1)" >&2
else
  rm -rf -- "$DATA"
  echo "stop-mariadb-pair: removed $DATA ($(ms) ms)" >&2
fi
