#!/usr/bin/env bash
# up.sh - every real service that filestore's cluster profile (and the tests, with
# REQUIRE_SERVICES=1) talks to: Redis on 127.0.0.1:6379, the MariaDB primary + replica,
# and Ceph RGW (S3) with the bucket `filestore`.
#
#   eval "$(scripts/services/up.sh)"    # stdout = export lines only, progress on stderr
#
# The same export lines are written to .services.env at the repo root, which
# `make run-cluster` reads. Already running services are reused, so a second call takes
# well under a second. scripts/services/down.sh stops MariaDB and Ceph (not Redis: the
# machine runs it for everyone).
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ENV_FILE=$ROOT/.services.env
# shellcheck disable=SC2034  # read through ${!v} below
REDIS_URL=redis://127.0.0.1:6379
T0=$(date +%s%N)

log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[up %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2; }
die() { echo "up.sh: ERROR: $*" >&2; exit 1; }
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR

# prints Redis's answer to PING ('' if nothing answers); pure bash, so it works before
# redis-tools is installed; a subshell, so a failed exec cannot end the script
redis_reply() (
  line=
  { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || exit 0
  printf 'PING\r\n' >&3 2>/dev/null || exit 0
  IFS= read -r -t 2 line <&3 || true
  printf '%s' "${line%$'\r'}"
)
redis_ok() { [ "$(redis_reply)" = +PONG ]; }

apt_install() {
  local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  # the package lists may be missing or old on a fresh machine: update only when needed
  $sudo apt-get install -y --no-install-recommends "$@" </dev/null >&2 \
    || { $sudo apt-get update </dev/null >&2 && $sudo apt-get install -y --no-install-recommends "$@" </dev/null >&2; }
}

# ---------------------------------------------------------------- Redis
if redis_ok; then
  log "redis answers on 127.0.0.1:6379"
else
  reply=$(redis_reply)
  [ -z "$reply" ] || die "127.0.0.1:6379 answers PING with '$reply', not +PONG (a password? another server?)"
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server"
    apt_install redis-server
  fi
  # the package's own start (where it has one) may have brought it up already
  if ! redis_ok; then
    dir=/var/lib/redis; [ -d "$dir" ] && [ -w "$dir" ] || dir=/tmp
    logfile=/var/log/redis/filestore.log; [ -d /var/log/redis ] && [ -w /var/log/redis ] || logfile=/tmp/redis-filestore.log
    # the machine's own command line: nothing is kept on disk
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir "$dir" --logfile "$logfile" </dev/null >&2
    for ((i = 0; i < 100; i++)); do redis_ok && break; sleep 0.1; done
    redis_ok || die "redis-server started but 127.0.0.1:6379 does not answer PING (log: $logfile)"
  fi
  log "redis started on 127.0.0.1:6379"
fi

# ---------------------------------------------------------------- MariaDB pair, Ceph
# sequential: on a fresh machine both may run apt-get, which takes a lock
log "starting the MariaDB pair"
db_env=$("$HERE/start-mariadb-pair.sh") || die "start-mariadb-pair.sh failed (see above)"
log "starting Ceph RGW"
s3_env=$("$HERE/start-ceph-rgw.sh") || die "start-ceph-rgw.sh failed (see above)"

# one variable per line, so .services.env also suits dotenv-style readers; the subshell
# keeps the caller's environment clean and fails if a script printed less than expected
exports=$(
  set -u
  eval "$db_env"
  eval "$s3_env"
  for v in REDIS_URL DB_PRIMARY_URL DB_REPLICA_URL S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION S3_BUCKET; do
    [ -n "${!v:-}" ] || { echo "up.sh: ERROR: $v is empty after starting the services" >&2; exit 1; }
    printf 'export %s=%q\n' "$v" "${!v}"
  done
) || die "the service scripts did not print every expected variable"

tmp=$(mktemp "$ENV_FILE.XXXXXX")
printf '%s\n' "$exports" >"$tmp"
chmod 644 "$tmp"   # mktemp makes it 0600; it holds only throw-away dev credentials
mv -f "$tmp" "$ENV_FILE"
log "all services up; exports written to $ENV_FILE"
trap - ERR
printf '%s\n' "$exports"
