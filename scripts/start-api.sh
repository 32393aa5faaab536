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
# Both: after ~30 s idle V8's memory reducer shrinks the old generation's limit to its live size (~20 MB)
# plus a little, and the bodies' buffers (external memory, counted against that limit) then set off a full
# collection every 30-90 ms of the next uploads, for good: 41-55 per GiB instead of 0-4. A 1 GiB upload after
# 35 s idle cost 3.6-4.1 CPU s embedded (5 runs; 2.6-2.8 s wall) and 2.2 with the floor (2.2 s wall), 4.60
# against 2.27 in the cluster. With a 256 MB floor an idle server uploads as a fresh one does, for 7-9 MB
# more peak RSS (make bench (c): 193-194 against 184-187 MB); lower floors (48-128 MB) helped less and cost
# a fresh server CPU.
main="$(dirname "$0")/../dist/src/main.js"
case "${FILESTORE_PROFILE:-embedded}" in
  cluster) exec "${NODE:-node}" --initial-old-space-size=256 "$@" "$main" ;;
  *) exec "${NODE:-node}" --max-semi-space-size=2 --initial-old-space-size=256 "$@" "$main" ;;
esac
