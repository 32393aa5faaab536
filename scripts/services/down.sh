#!/usr/bin/env bash
# down.sh - stop what scripts/services/up.sh started: Ceph RGW and the MariaDB pair (their
# recorded pids only), and remove .services.env so nothing reads stale endpoints.
# Redis is left alone: the machine runs it for everyone. Both stops are tried even if one
# fails; the exit code is non-zero if either did.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T0=$(date +%s%N)
rc=0

"$HERE/stop-ceph-rgw.sh" || { echo "down.sh: stop-ceph-rgw.sh failed" >&2; rc=1; }
"$HERE/stop-mariadb-pair.sh" || { echo "down.sh: stop-mariadb-pair.sh failed" >&2; rc=1; }
rm -f -- "$ROOT/.services.env"
echo "down.sh: done in $(( ($(date +%s%N) - T0) / 1000000 )) ms (rc $rc)" >&2
exit $rc
