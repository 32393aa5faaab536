#!/usr/bin/env bash
# start-ceph-rgw.sh - filestore's throw-away single-node Ceph (mon + 1 OSD + radosgw) on
# 127.0.0.1 for tests and `make run-cluster`. Debian 12 packages (Ceph 16.2.x Pacific), no
# systemd, no cephadm, all state in one directory. Based on the machine's reference script
# (shared/services), copied so the project does not need shared/ at run time.
#
#   eval "$(./start-ceph-rgw.sh)"      # stdout = export line only, progress on stderr
#   ... run tests against $S3_ENDPOINT / $S3_BUCKET ...
#   ./stop-ceph-rgw.sh
#
# Prints (defaults):
#   export S3_ENDPOINT=http://127.0.0.1:7480 S3_ACCESS_KEY=devkey S3_SECRET_KEY=devsecret S3_REGION=us-east-1 S3_BUCKET=filestore
# The bucket exists when this script exits 0 (also when an already running cluster is reused).
# A cluster whose daemons are only partly alive is stopped (recorded pids only) and recreated.
#
# AWS SDK v3 clients need forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED'
# and responseChecksumValidation: 'WHEN_REQUIRED' against this RGW (Pacific predates the
# SDK's default flexible checksums: streamed uploads fail with MissingContentLength).
#
# Environment (all optional):
#   CEPH_RGW_DATA_DIR     state dir (conf, mon/osd data, logs, pid files)  [/tmp/filestore-ceph-rgw]
#   CEPH_RGW_PORT         S3 port on 127.0.0.1                              [7480]
#   CEPH_MON_PORT         mon port (msgr2 only) on 127.0.0.1                [3300]
#   CEPH_S3_ACCESS_KEY / CEPH_S3_SECRET_KEY   S3 credentials      [devkey / devsecret]
#   CEPH_S3_REGION        region to sign with (also the zonegroup api name) [us-east-1]
#   CEPH_S3_BUCKET        bucket created (if missing) and exported as S3_BUCKET [filestore]
#   CEPH_OSD_OBJECTSTORE  memstore (RAM, fastest) | bluestore (sparse file) [memstore]
#   CEPH_OSD_SIZE_GB      memstore capacity / bluestore file size, GiB      [4 / 10]
#   CEPH_START_TIMEOUT    seconds to wait for each daemon                   [60]
#   CEPH_EXTRA_CONF       extra lines appended to the [client.rgw] section of ceph.conf
#                         (e.g. "rgw lc debug interval = 10"; a new [section] header works too)
#   CEPH_SKIP_APT=1       never call apt-get
set -Eeuo pipefail

DATA=${CEPH_RGW_DATA_DIR:-/tmp/filestore-ceph-rgw}
RGW_PORT=${CEPH_RGW_PORT:-7480}
MON_PORT=${CEPH_MON_PORT:-3300}
ACCESS_KEY=${CEPH_S3_ACCESS_KEY:-devkey}
SECRET_KEY=${CEPH_S3_SECRET_KEY:-devsecret}
REGION=${CEPH_S3_REGION:-us-east-1}
BUCKET=${CEPH_S3_BUCKET:-filestore}
STORE=${CEPH_OSD_OBJECTSTORE:-memstore}
TIMEOUT=${CEPH_START_TIMEOUT:-60}
case $STORE in
  memstore)  SIZE_GB=${CEPH_OSD_SIZE_GB:-4} ;;
  bluestore) SIZE_GB=${CEPH_OSD_SIZE_GB:-10} ;;
  *) echo "start-ceph-rgw: CEPH_OSD_OBJECTSTORE must be memstore or bluestore, not '$STORE'" >&2; exit 2 ;;
esac
case $DATA in /*) ;; *) echo "start-ceph-rgw: CEPH_RGW_DATA_DIR must be an absolute path" >&2; exit 2 ;; esac
[[ $BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || { echo "start-ceph-rgw: bad CEPH_S3_BUCKET '$BUCKET'" >&2; exit 2; }
DATA=$(realpath -m -- "$DATA")   # canonical form: the stop script identifies daemons by it
[ "$DATA" != / ] || { echo "start-ceph-rgw: refusing CEPH_RGW_DATA_DIR=/" >&2; exit 2; }

CONF=$DATA/ceph.conf
PIDS=$DATA/pids
LOGS=$DATA/log
MARKER=$DATA/.start-ceph-rgw
ENDPOINT=http://127.0.0.1:$RGW_PORT
T0=$(date +%s%N)
STARTED=()   # daemons started by this run, for cleanup on failure

log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[start-ceph-rgw %3d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2; }
# what identifies a running cluster (saved in s3.env); the bucket is not part of it, a
# rerun with another CEPH_S3_BUCKET just creates that bucket too
cluster_env() {
  printf 'export S3_ENDPOINT=%q S3_ACCESS_KEY=%q S3_SECRET_KEY=%q S3_REGION=%q\n' \
    "$ENDPOINT" "$ACCESS_KEY" "$SECRET_KEY" "$REGION"
}
print_env() { printf '%s S3_BUCKET=%q\n' "$(cluster_env)" "$BUCKET"; }

# is $1 a live (non-zombie) ceph daemon started with our ceph.conf? (guards against pid reuse)
is_our_daemon() {
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
# print the recorded pid of daemon $1 (mon.a, osd.0, client.rgw) if it is alive and ours
pid_alive() {
  local f=$PIDS/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  is_our_daemon "$pid" || return 1
  echo "$pid"
}

stop_started() {  # best-effort cleanup of what THIS run started (by recorded pid)
  local n pid
  for n in "${STARTED[@]}"; do
    pid=$(pid_alive "$n") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_alive "$n" >/dev/null || break; sleep 0.1; done
    if pid_alive "$n" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

fail() {  # $1 = message, $2 = daemon name whose logs to show (optional)
  echo "" >&2
  echo "start-ceph-rgw: ERROR: $1" >&2
  if [ -n "${2:-}" ]; then
    local f
    for f in "$LOGS/$2" "$LOGS/$2.stderr" "$LOGS/$2.log"; do
      if [ ! -f "$f" ] || [ ! -s "$f" ]; then continue; fi
      echo "----- last 40 lines of $f -----" >&2
      tail -n 40 "$f" >&2
    done
  fi
  echo "start-ceph-rgw: stopping the daemons this run started; logs kept in $LOGS" >&2
  stop_started
  exit 1
}
# (only in the main shell; in a subshell set -e just ends the subshell and the caller handles it)
# shellcheck disable=SC2154
trap '_rc=$?; if [ "$BASHPID" = "$$" ]; then fail "command failed (exit $_rc) at line $LINENO: $BASH_COMMAND"; fi' ERR

ceph_cli() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }

# signed S3 request with the test user's keys; prints the HTTP status (000 = no answer).
# curl 7.88's --aws-sigv4 does not send x-amz-content-sha256 itself and RGW then answers
# SignatureDoesNotMatch, so send it (all our requests have an empty body).
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3_status() {
  curl -sS -o "$LOGS/s3.out" -w '%{http_code}' --max-time 10 \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "$@" 2>"$LOGS/s3.out.stderr" || true
}
signed_list_buckets() { [ "$(s3_status "$ENDPOINT/")" = 200 ]; }
# create the bucket unless it exists; RGW answers 200 to a PUT of a bucket the user already owns
ensure_bucket() {
  local code
  code=$(s3_status -X PUT "$ENDPOINT/$BUCKET")
  case $code in 200|409) ;; *) fail "CreateBucket $BUCKET answered HTTP $code" s3.out ;; esac
  code=$(s3_status -I "$ENDPOINT/$BUCKET")
  [ "$code" = 200 ] || fail "HeadBucket $BUCKET answered HTTP $code after CreateBucket" s3.out
  log "bucket $BUCKET exists"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- 0. already up?
if [ -e "$MARKER" ]; then
  alive=0
  for n in mon.a osd.0 client.rgw; do pid_alive "$n" >/dev/null && alive=$((alive + 1)); done
  if [ $alive -eq 3 ] && curl -fsS -o /dev/null --max-time 5 "$ENDPOINT/"; then
    if [ "$(cluster_env)" != "$(cat "$DATA/s3.env" 2>/dev/null)" ]; then
      echo "start-ceph-rgw: ERROR: a cluster is already running in $DATA, but with other settings:" >&2
      cat "$DATA/s3.env" >&2
      echo "start-ceph-rgw: run stop-ceph-rgw.sh first, or use the same CEPH_* variables." >&2
      exit 1
    fi
    log "already running (data dir $DATA, S3 at $ENDPOINT)"
    ensure_bucket
    trap - ERR
    print_env
    exit 0
  elif [ $alive -gt 0 ]; then
    # a crashed daemon in a throw-away cluster: recreating it (~2 s) beats asking a human
    log "cluster in $DATA is partly running ($alive of 3 daemons alive, S3 not healthy); stopping it and recreating"
    STARTED=(client.rgw osd.0 mon.a)
    stop_started
    STARTED=()
  fi
  # never wipe the dir under a daemon that still uses our ceph.conf (e.g. a lost pid file)
  for c in /proc/[0-9]*/cmdline; do
    p=${c#/proc/}; p=${p%/cmdline}
    if is_our_daemon "$p"; then
      echo "start-ceph-rgw: ERROR: pid $p still runs with $CONF; stop it first (stop-ceph-rgw.sh)" >&2
      exit 1
    fi
  done
  log "removing stale data dir $DATA (no recorded daemon alive)"
  rm -rf -- "$DATA"
elif [ -e "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
  echo "start-ceph-rgw: ERROR: $DATA exists, is not empty and was not created by this script; refusing to touch it." >&2
  exit 1
fi

# ---------------------------------------------------------------- 1. packages
need_pkgs=()
for p in ceph-mon ceph-osd radosgw ceph-common; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
command -v curl >/dev/null || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "${CEPH_SKIP_APT:-}" != 1 ] || { echo "start-ceph-rgw: ERROR: missing packages: ${need_pkgs[*]}" >&2; exit 1; }
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "installing ${need_pkgs[*]} (apt-get, no recommends)"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    $SUDO apt-get update >&2
    $SUDO apt-get install -y --no-install-recommends "${need_pkgs[@]}" >&2
  fi
  log "packages installed"
fi

# the bucket is created with curl's SigV4 signing (curl >= 7.75; Debian 12 has 7.88).
# Not piped into grep -q: with pipefail, curl dying of SIGPIPE would read as "missing".
curl_help=$(curl --help all 2>/dev/null || true)
[[ $curl_help == *--aws-sigv4* ]] \
  || { echo "start-ceph-rgw: ERROR: $(command -v curl) has no --aws-sigv4 (need curl >= 7.75)" >&2; exit 1; }

for p in "$MON_PORT" "$RGW_PORT"; do
  if port_busy "$p"; then
    echo "start-ceph-rgw: ERROR: 127.0.0.1:$p is already in use by another process (set CEPH_MON_PORT / CEPH_RGW_PORT)." >&2
    echo "start-ceph-rgw: (a cluster started by another copy of this script, e.g. with data dir /tmp/ceph-rgw," >&2
    echo "start-ceph-rgw:  holds the same ports: stop it with its own stop script)" >&2
    exit 1
  fi
done

# ---------------------------------------------------------------- 2. config
mkdir -p "$DATA" "$PIDS" "$LOGS" "$DATA/run" "$DATA/crash" "$DATA/mon.a" "$DATA/osd.0" "$DATA/rgw"
touch "$MARKER"
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
SIZE_BYTES=$((SIZE_GB * 1024 * 1024 * 1024))
cat >"$CONF" <<EOF
# generated by start-ceph-rgw.sh - throw-away test cluster, NOT for production
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
# no cephx at all: no keyrings to create or distribute
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
# radosgw defaults to ms_mon_client_mode=secure, which needs cephx -> EACCES (-13)
ms mon client mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
client mount timeout = 30
# keep every path inside $DATA
keyring = $DATA/keyring
log file = $LOGS/\$name.log
admin socket = $DATA/run/\$name.\$pid.asok
run dir = $DATA/run
crash dir = $DATA/crash
exporter sock dir = $DATA/run
# one OSD, no replication, no mgr (so no pg autoscaler)
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = $DATA/mon.\$id
mon memory target = 268435456
# commit map changes every 0.1 s instead of 1 s: osd boot, pool creation etc. are
# each one or two map changes, so this cuts seconds off startup
paxos propose interval = 0.1
[osd]
osd data = $DATA/osd.\$id
osd objectstore = $STORE
memstore device bytes = $SIZE_BYTES
bluestore block size = $SIZE_BYTES
bluestore block create = true
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 1
[client.rgw]
rgw data = $DATA/rgw
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw thread pool size = 32
# several lifecycle workers contend for the same shard locks and the loser does an
# uninterruptible sleep(5), which makes radosgw take 4-8 s to exit on SIGTERM
rgw lc max worker = 1
# delete tail objects 30 s after S3 deletes/overwrites (default 2 h): with memstore the
# OSD holds all data in RAM, so garbage must not pile up during a long test run
rgw gc obj min wait = 30
rgw gc processor period = 30
${CEPH_EXTRA_CONF:-}
EOF

# start a daemon in the foreground (-f) in its own session; we record its pid
start_daemon() {  # $1 = name, rest = command
  local name=$1; shift
  setsid "$@" -f -c "$CONF" </dev/null >"$LOGS/$name.stderr" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  STARTED=("$name" "${STARTED[@]}")   # newest first, so cleanup stops rgw -> osd -> mon
}

# poll until "$@" succeeds; fail (with the daemon's log) if the daemon dies or time runs out
wait_for() {  # $1 = daemon name, $2 = what, rest = probe command
  local name=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while :; do
    pid_alive "$name" >/dev/null || fail "$name exited during startup (waiting for: $what)" "$name"
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name: timed out after ${TIMEOUT}s waiting for: $what" "$name"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- 3. mon
log "creating mon.a (fsid $FSID)"
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DATA/monmap" >"$LOGS/monmaptool.out" 2>&1 \
  || fail "monmaptool failed" monmaptool.out
timeout 60 ceph-mon -c "$CONF" --mkfs -i a --monmap "$DATA/monmap" >"$LOGS/mon.a.mkfs" 2>&1 \
  || fail "ceph-mon --mkfs failed" mon.a.mkfs
start_daemon mon.a ceph-mon -i a
wait_for mon.a "mon quorum" timeout 5 ceph -c "$CONF" --connect-timeout 3 mon stat
log "mon.a up (pid $(cat "$PIDS/mon.a.pid"))"

# ---------------------------------------------------------------- 4. osd
OSD_ID=$(ceph_cli osd new "$OSD_UUID" 2>"$LOGS/osd-new.err") || fail "ceph osd new failed" osd-new.err
[ "$OSD_ID" = 0 ] || fail "expected osd id 0, got '$OSD_ID'"
timeout 120 ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$LOGS/osd.0.mkfs" 2>&1 \
  || fail "ceph-osd --mkfs failed" osd.0.mkfs
# an unknown/unsupported "osd objectstore" value is silently replaced by the default
# (bluestore), so check what mkfs really created
[ "$(cat "$DATA/osd.0/type" 2>/dev/null)" = "$STORE" ] \
  || fail "osd.0 was created as '$(cat "$DATA/osd.0/type" 2>/dev/null)', not '$STORE'" osd.0.mkfs
start_daemon osd.0 ceph-osd -i 0
osd_up() { ceph -c "$CONF" --connect-timeout 3 osd stat -f json | grep -q '"num_up_osds":1'; }
wait_for osd.0 "osd.0 up" osd_up
log "osd.0 up ($STORE, pid $(cat "$PIDS/osd.0.pid"))"

# ---------------------------------------------------------------- 5. rgw pools + user
# Pre-create all rgw pools at once instead of letting radosgw create them lazily one by
# one (~1-2 s each, partly during the first test requests). One python process with the
# librados binding (python3-rados, a ceph-common dependency) sends all 14 mon commands in
# parallel threads; the mon batches them into a few map changes. 14 parallel `ceph` CLI
# processes do the same but cost ~1.3 s of CPU on 2 cores; this takes ~0.3 s.
# /usr/bin/python3 explicitly: a python3 earlier in PATH (pyenv, venv) lacks the rados module.
POOLS=".rgw.root default.rgw.control default.rgw.meta default.rgw.log default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec"
# shellcheck disable=SC2086
timeout 60 /usr/bin/python3 - "$CONF" $POOLS >"$LOGS/pools.err" 2>&1 <<'PY' || fail "creating rgw pools failed" pools.err
import json, sys, threading, rados
conf, pools = sys.argv[1], sys.argv[2:]
r = rados.Rados(conffile=conf, name='client.admin')
r.connect(timeout=20)
errs = []
def mk(pool):
    for cmd in ({"prefix": "osd pool create", "pool": pool, "pg_num": 8, "pgp_num": 8,
                 "pool_type": "replicated"},
                {"prefix": "osd pool application enable", "pool": pool, "app": "rgw"}):
        ret, _, err = r.mon_command(json.dumps(cmd), b'', timeout=30)
        if ret != 0:
            errs.append("%s %s: %d %s" % (cmd["prefix"], pool, ret, err))
            return
threads = [threading.Thread(target=mk, args=(p,)) for p in pools]
for t in threads: t.start()
for t in threads: t.join()
r.shutdown()
if errs:
    sys.exit("\n".join(errs))
PY
log "rgw pools created"

# (user create also creates the default realm-less zonegroup/zone)
timeout 60 radosgw-admin -c "$CONF" -n client.rgw user create --uid=testuser --display-name="Test User" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$LOGS/radosgw-admin.out" 2>&1 \
  || fail "radosgw-admin user create failed" radosgw-admin.out
# zonegroup api name = region, so CreateBucket with LocationConstraint=$REGION is accepted
# (the default zonegroup's api name is "default"; must be set before radosgw starts)
timeout 60 radosgw-admin -c "$CONF" -n client.rgw zonegroup modify --rgw-zonegroup=default \
  --api-name="$REGION" >>"$LOGS/radosgw-admin.out" 2>&1 \
  || fail "radosgw-admin zonegroup modify failed" radosgw-admin.out
log "S3 user testuser created, zonegroup api name = $REGION"

# ---------------------------------------------------------------- 6. radosgw
start_daemon client.rgw radosgw -n client.rgw
wait_for client.rgw "HTTP 200 on $ENDPOINT/" curl -fsS -o /dev/null --max-time 2 "$ENDPOINT/"
wait_for client.rgw "signed ListBuckets as $ACCESS_KEY" signed_list_buckets
log "radosgw up (pid $(cat "$PIDS/client.rgw.pid")); S3 ready at $ENDPOINT"
ensure_bucket
trap - ERR
cluster_env >"$DATA/s3.env"
print_env
