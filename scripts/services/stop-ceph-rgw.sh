#!/usr/bin/env bash
# stop-ceph-rgw.sh - stop the daemons started by start-ceph-rgw.sh (only the pids it
# recorded, after checking each pid still runs with our ceph.conf) and wipe the data dir.
# filestore's copy of the machine's reference script (shared/services).
#   CEPH_RGW_DATA_DIR   same value as for start-ceph-rgw.sh            [/tmp/filestore-ceph-rgw]
#   CEPH_RGW_KEEP_DATA=1  stop the daemons but keep the data dir (logs)
set -uo pipefail

DATA=${CEPH_RGW_DATA_DIR:-/tmp/filestore-ceph-rgw}
case $DATA in /*) ;; *) echo "stop-ceph-rgw: CEPH_RGW_DATA_DIR must be an absolute path" >&2; exit 2 ;; esac
DATA=$(realpath -m -- "$DATA")   # same canonical form as start-ceph-rgw.sh
[ "$DATA" != / ] || { echo "stop-ceph-rgw: refusing CEPH_RGW_DATA_DIR=/" >&2; exit 2; }
CONF=$DATA/ceph.conf
PIDS=$DATA/pids
MARKER=$DATA/.start-ceph-rgw

if [ ! -e "$DATA" ]; then
  echo "stop-ceph-rgw: $DATA does not exist; nothing to stop" >&2
  exit 0
fi
if [ ! -e "$MARKER" ]; then
  echo "stop-ceph-rgw: ERROR: $DATA was not created by start-ceph-rgw.sh (no $MARKER); not touching it" >&2
  exit 1
fi

# alive = a live (non-zombie) ceph daemon whose command line names our ceph.conf
# (guards against pid reuse; pure bash matching, so no helper process can match itself)
alive() {
  local pid=$1 comm state args
  # (braces: a redirection error is reported before a 2>/dev/null after it applies)
  { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1   # cheap pre-filter, no fork
  case $comm in ceph-mon|ceph-osd|radosgw|ceph-mgr) ;; *) return 1 ;; esac
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  case $state in Z|X|"") return 1 ;; esac
  args=$( { tr "\\0" " " <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  case ${args%% *} in ceph-mon|ceph-osd|radosgw|ceph-mgr|*/ceph-mon|*/ceph-osd|*/radosgw|*/ceph-mgr) ;; *) return 1 ;; esac
  case $args in *" -c $CONF "*) return 0 ;; *) return 1 ;; esac
}

rc=0
# reverse start order: radosgw, mgr (if any), osd, mon
for name in client.rgw mgr.x osd.0 mon.a; do
  f=$PIDS/$name.pid
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if ! alive "$pid"; then
    echo "stop-ceph-rgw: $name (pid $pid) is not running" >&2
    rm -f "$f"; continue
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done   # up to 10 s
  if alive "$pid"; then
    echo "stop-ceph-rgw: $name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  fi
  if alive "$pid"; then
    echo "stop-ceph-rgw: ERROR: could not stop $name (pid $pid)" >&2; rc=1
  else
    echo "stop-ceph-rgw: stopped $name (pid $pid)" >&2
    rm -f "$f"
  fi
done

# safety net: never delete the data dir under a process that still uses our ceph.conf
# (e.g. a pid file was lost); report it, do not kill it
for c in /proc/[0-9]*/cmdline; do
  p=${c#/proc/}; p=${p%/cmdline}
  if alive "$p"; then
    echo "stop-ceph-rgw: ERROR: pid $p still runs with $CONF but has no pid file: $(tr '\0' ' ' <"$c")" >&2
    rc=1
  fi
done
if [ $rc -ne 0 ]; then
  echo "stop-ceph-rgw: leaving $DATA in place because a daemon is still running" >&2
  exit $rc
fi
if [ "${CEPH_RGW_KEEP_DATA:-}" = 1 ]; then
  echo "stop-ceph-rgw: keeping $DATA (CEPH_RGW_KEEP_DATA=1)" >&2
else
  rm -rf -- "$DATA"
  echo "stop-ceph-rgw: removed $DATA" >&2
fi
