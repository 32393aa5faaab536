#!/usr/bin/env bash
# run-cluster.sh - the API server (dist/src/main.js) and the background workers
# (dist/workers/main.js) in the cluster profile, in the foreground, against the services in
# .services.env (written by scripts/services/up.sh, i.e. `make services`).
# SIGTERM, ctrl-C or a closed terminal stops both; if either exits on its own, the other is stopped too and
# its exit code is ours. Used by `make run-cluster` (which builds first).
#   RUN_CLUSTER_GRACE   seconds the children get to shut down before SIGKILL   [20]
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
GRACE=${RUN_CLUSTER_GRACE:-20}

if [ -f .services.env ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.services.env
  set +a
else
  echo "run-cluster: no .services.env; run 'make services' first (using the environment as it is)" >&2
fi
export FILESTORE_PROFILE=cluster

for f in dist/src/main.js dist/workers/main.js; do
  [ -f "$f" ] || { echo "run-cluster: $f is missing; build first (make build)" >&2; exit 1; }
done

# Each child in its own process group (job control on): a ctrl-C in the terminal then reaches
# only this script, and each child gets exactly one SIGTERM from us. Reaching them directly
# as well would hand them SIGINT and then SIGTERM, which can cut a graceful shutdown short.
set -m
scripts/start-api.sh </dev/null &
api=$!
node dist/workers/main.js </dev/null &
worker=$!
set +m
echo "run-cluster: api pid $api, workers pid $worker (FILESTORE_PROFILE=cluster)" >&2

sig=
trap 'sig=INT' INT
trap 'sig=TERM' TERM
# a closed terminal hangs up only our process group, not the children's: pass it on
trap 'sig=HUP' HUP
# returns when a child exits or a trapped signal arrives
wait -n -p exited "$api" "$worker"
rc=$?
exited=${exited:-}

if [ -n "$sig" ]; then
  echo "run-cluster: SIG$sig, stopping both" >&2
  case $sig in INT) rc=130 ;; HUP) rc=129 ;; *) rc=143 ;; esac
else
  name=workers; [ "$exited" = "$api" ] && name=api
  echo "run-cluster: $name (pid $exited) exited with $rc; stopping the other" >&2
fi

# further ctrl-C / SIGTERM while they shut down: nothing more to do than wait
trap '' INT TERM HUP
kill -TERM "$api" "$worker" 2>/dev/null
# (the watchdog's TERM trap ends its sleep too, so no stray sleep outlives us)
( trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$GRACE" & s=$!
  wait "$s"
  echo "run-cluster: still running after ${GRACE}s; SIGKILL" >&2
  kill -KILL "$api" "$worker" 2>/dev/null ) &
watchdog=$!
wait "$api" "$worker" 2>/dev/null
kill "$watchdog" 2>/dev/null
wait "$watchdog" 2>/dev/null
exit "$rc"
