#!/bin/sh
# start-api.sh [node options...] - the API server (dist/src/main.js) with the young-generation size of its
# profile; `npm start`, `make run`, run-cluster.sh, the Dockerfile and the benchmarks all start it here.
#   NODE               the node binary   [node]
#   FILESTORE_PROFILE  embedded | cluster   [embedded]
# Node copies every piece of a request body into a buffer of its own, freed by the garbage collector.
# Embedded: a 2 MiB young generation collects them sooner (peak RSS during a 1 GiB upload 169–180 MiB
# instead of 186–193, at the same speed). Cluster: the same setting promoted bodies still waiting on
# Redis and MariaDB round trips to the old generation, and full collections ran every ~50 ms: uploads at
# 394–439 MiB/s instead of 597–699 with V8's default, which is kept there.
main="$(dirname "$0")/../dist/src/main.js"
case "${FILESTORE_PROFILE:-embedded}" in
  cluster) exec "${NODE:-node}" "$@" "$main" ;;
  *) exec "${NODE:-node}" --max-semi-space-size=2 "$@" "$main" ;;
esac
