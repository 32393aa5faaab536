#!/usr/bin/env bash
# start-mariadb-pair.sh - filestore's throw-away MariaDB primary + replica (GTID replication)
# on 127.0.0.1 for tests and `make run-cluster`. Based on the machine's reference script
# (shared/services), copied so the project does not need shared/ at run time.
# Debian 12 packages (MariaDB 10.11), no systemd, /etc/mysql is never read, all state
# (configs, datadirs, sockets, logs, pid files) in one directory.
#
#   eval "$(./start-mariadb-pair.sh)"      # stdout = one export line only, progress on stderr
#   ... tests write via $DB_PRIMARY_URL, read via $DB_REPLICA_URL ...
#   ./stop-mariadb-pair.sh
#
# Prints (default ports):
#   export DB_PRIMARY_URL=mysql://app:app@127.0.0.1:3316/filestore DB_REPLICA_URL=mysql://app:app@127.0.0.1:3317/filestore
# Primary: server_id=1, log_bin, binlog_format=ROW, GTID. Replica: server_id=2, read_only=1,
# CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos. Database `filestore`, user app/app and
# replication user repl/repl are created on the primary and reach the replica through
# replication. app has all privileges on filestore.* and on every database matching
# `filestore\_%`, so tests can create and drop throw-away databases (filestore_t_ab12cd)
# on the primary; they replicate to the replica like everything else.
# Admin access: unix socket as the OS user running this script, e.g.
#   mariadb --no-defaults --socket="$MARIADB_PAIR_DIR/run/primary.sock"
# Exits 0 only after Slave_IO_Running=Yes, Slave_SQL_Running=Yes and a row written on the
# primary was read back on the replica. If the pair of this state dir already runs and is
# healthy, just prints the exports; a stale or broken one is stopped (recorded pids only)
# and recreated.
#
# Environment (all optional):
#   MARIADB_PAIR_DIR       state dir, absolute path                   [/tmp/filestore-mariadb-pair]
#   MARIADB_PRIMARY_PORT   primary port on 127.0.0.1                  [3316]
#   MARIADB_REPLICA_PORT   replica port on 127.0.0.1                  [3317]
#   MARIADB_START_TIMEOUT  seconds to wait for each step              [60]
#   MARIADB_SKIP_APT=1     never call apt-get (fail if binaries are missing)
set -Eeuo pipefail

# client/server environment that would override our settings (host, port, password, config groups)
unset MYSQL_PWD MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MARIADB_UNIX_PORT MYSQL_HOME MARIADB_HOME \
  MYSQL_GROUP_SUFFIX MARIADB_GROUP_SUFFIX MARIADB_PLUGIN_DIR LIBMYSQL_PLUGINS LIBMYSQL_PLUGIN_DIR \
  LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN MYSQL_TEST_LOGIN_FILE MYSQL_HISTFILE MYSQL_PS1

DATA=${MARIADB_PAIR_DIR:-/tmp/filestore-mariadb-pair}
PRIMARY_PORT=${MARIADB_PRIMARY_PORT:-3316}
REPLICA_PORT=${MARIADB_REPLICA_PORT:-3317}
TIMEOUT=${MARIADB_START_TIMEOUT:-60}
case $DATA in /*) ;; *) echo "start-mariadb-pair: MARIADB_PAIR_DIR must be an absolute path" >&2; exit 2 ;; esac
DATA=$(realpath -m -- "$DATA")   # canonical form: the stop script identifies daemons by it
[ "$DATA" != / ] || { echo "start-mariadb-pair: refusing MARIADB_PAIR_DIR=/" >&2; exit 2; }
# the path goes into option files and SQL-free command lines; keep it simple
[[ $DATA =~ ^[A-Za-z0-9._/+-]+$ ]] || { echo "start-mariadb-pair: MARIADB_PAIR_DIR may only contain [A-Za-z0-9._/+-]" >&2; exit 2; }
for p in "$PRIMARY_PORT" "$REPLICA_PORT"; do
  if ! [[ $p =~ ^[1-9][0-9]{0,4}$ ]] || [ "$p" -gt 65535 ]; then echo "start-mariadb-pair: bad port '$p'" >&2; exit 2; fi
done
[ "$PRIMARY_PORT" != "$REPLICA_PORT" ] || { echo "start-mariadb-pair: primary and replica ports must differ" >&2; exit 2; }
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "start-mariadb-pair: bad MARIADB_START_TIMEOUT '$TIMEOUT'" >&2; exit 2; }

RUN=$DATA/run
PIDS=$DATA/pids
LOGS=$DATA/log
MARKER=$DATA/.start-mariadb-pair
ME=$(id -un)            # admin account: unix_socket auth as this OS user
T0=$(date +%s%N)
STARTED=()              # daemons started by this run, for cleanup on failure
MARIADBD='' MARIADB='' INSTALL_DB=''
if [ ${#RUN} -gt 90 ]; then   # unix socket paths are limited to 107 bytes
  echo "start-mariadb-pair: MARIADB_PAIR_DIR is too long for unix socket paths (keep it under ~85 chars)" >&2; exit 2
fi

log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[start-mariadb-pair %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2; }
print_env() {
  printf 'export DB_PRIMARY_URL=%s DB_REPLICA_URL=%s\n' \
    "mysql://app:app@127.0.0.1:$PRIMARY_PORT/filestore" "mysql://app:app@127.0.0.1:$REPLICA_PORT/filestore"
}

# is $1 a live (non-zombie) mariadbd started with our option file for $2 (primary|replica)?
# Pure bash (no forks); guards against pid reuse. kill -0 would also succeed on a zombie.
is_our_daemon() {
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
# print the recorded pid of $1 (primary|replica) if it is alive and ours
pid_alive() {
  local f=$PIDS/$1.pid pid
  [ -s "$f" ] || return 1
  pid=$(<"$f")
  is_our_daemon "$pid" "$1" || return 1
  echo "$pid"
}

unrecorded() {  # print pids of live mariadbd using our option files (lost pid file etc.)
  local c p n
  for c in /proc/[0-9]*/cmdline; do
    p=${c#/proc/}; p=${p%/cmdline}
    for n in primary replica; do if is_our_daemon "$p" "$n"; then echo "$p"; fi; done
  done
}

stop_daemons() {  # SIGTERM the given daemons (recorded pids only), SIGKILL after 20 s
  local n pid i
  for n in "$@"; do if pid=$(pid_alive "$n"); then kill -TERM "$pid" 2>/dev/null || true; fi; done
  for n in "$@"; do
    for ((i = 0; i < 200; i++)); do pid_alive "$n" >/dev/null || break; sleep 0.1; done
    if pid=$(pid_alive "$n"); then kill -KILL "$pid" 2>/dev/null || true; fi
    for ((i = 0; i < 50; i++)); do pid_alive "$n" >/dev/null || break; sleep 0.1; done
  done
}

fail() {  # $1 = message, $2 = daemon name whose logs to show (optional)
  trap - ERR INT TERM
  echo "" >&2
  echo "start-mariadb-pair: ERROR: $1" >&2
  if [ -n "${2:-}" ]; then
    local f
    for f in "$LOGS/$2.err" "$LOGS/$2.out" "$LOGS/$2.install"; do
      if [ ! -f "$f" ] || [ ! -s "$f" ]; then continue; fi
      echo "----- last 30 lines of $f -----" >&2
      tail -n 30 "$f" >&2
    done
  fi
  if [ ${#STARTED[@]} -gt 0 ]; then
    echo "start-mariadb-pair: stopping the daemons this run started; logs kept in $LOGS" >&2
    stop_daemons "${STARTED[@]}"
  fi
  exit 1
}
# (only in the main shell; in a subshell set -e just ends the subshell and the caller handles it)
# shellcheck disable=SC2154
trap '_rc=$?; if [ "$BASHPID" = "$$" ]; then fail "command failed (exit $_rc) at line $LINENO: $BASH_COMMAND"; fi' ERR
trap 'fail "interrupted"' INT TERM

# admin client over the unix socket of $1 (primary|replica)
client() { local name=$1; shift
  timeout 30 "$MARIADB" --no-defaults --protocol=socket --socket="$RUN/$name.sock" --user="$ME" \
    --connect-timeout=5 "$@"
}
sql() { local name=$1; shift; client "$name" -N -B -e "$*"; }   # bare tab-separated output
# app user over TCP, as the exported URL does
app_sql() { local port=$1; shift
  timeout 30 "$MARIADB" --no-defaults --protocol=tcp --host=127.0.0.1 --port="$port" --user=app \
    --password=app --connect-timeout=5 -N -B filestore -e "$*"
}
# Slave_IO_Running and Slave_SQL_Running, e.g. "Yes Yes" (empty if not configured)
slave_state() {
  client replica -E -e 'SHOW SLAVE STATUS' 2>/dev/null \
    | awk '$1=="Slave_IO_Running:"{io=$2} $1=="Slave_SQL_Running:"{s=$2} END{if(io!="") print io, s}'
}
healthy() {
  sql primary 'SELECT 1' >/dev/null 2>&1 && [ "$(slave_state)" = "Yes Yes" ]
}
# the throw-away-database grant is there (a pair made by an older version of this script lacks it)
grants_ok() {
  # -r: batch mode would print the backslash doubled. No pipe into grep -q: with pipefail
  # an early exit of grep could fail the check through SIGPIPE
  local grants
  grants=$(client primary -N -B -r -e "SHOW GRANTS FOR 'app'@'%'" 2>/dev/null) || return 1
  [[ $grants == *'ON `filestore\_%`.*'* ]]
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
find_bin() {  # first of the given names on PATH or in the usual system dirs
  # (not `command -v`: it also prints a matching file that is not executable)
  local n d IFS=:
  for n in "$@"; do
    for d in $PATH:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin; do
      if [ -n "$d" ] && [ -f "$d/$n" ] && [ -x "$d/$n" ]; then echo "$d/$n"; return 0; fi
    done
  done
  return 1
}
find_bins() {
  MARIADBD=$(find_bin mariadbd mysqld) && INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db) \
    && MARIADB=$(find_bin mariadb mysql)
}

# ---------------------------------------------------------------- 0. already up?
if [ -e "$MARKER" ]; then
  alive=()
  for n in primary replica; do pid_alive "$n" >/dev/null && alive+=("$n"); done
  if [ ${#alive[@]} -eq 2 ] && find_bins; then
    ok=0   # allow a few seconds, e.g. a replica still reconnecting
    for ((i = 0; i < 20; i++)); do if healthy; then ok=1; break; fi; sleep 0.1; done
    if [ $ok = 1 ] && ! grants_ok; then
      log "pair in $DATA lacks the filestore\\_% grant (made by an older script)"
      ok=0
    fi
    if [ $ok = 1 ]; then
      if [ "$(print_env)" != "$(cat "$DATA/pair.env" 2>/dev/null)" ]; then
        echo "start-mariadb-pair: ERROR: a pair is already running in $DATA, but with other ports:" >&2
        cat "$DATA/pair.env" >&2
        echo "start-mariadb-pair: run stop-mariadb-pair.sh first, or use the same MARIADB_*_PORT values." >&2
        exit 1
      fi
      log "already running and replicating (state dir $DATA); nothing to do"
      print_env
      exit 0
    fi
  fi
  if [ ${#alive[@]} -gt 0 ]; then
    log "pair in $DATA is not healthy (alive: ${alive[*]}); stopping its recorded daemons and recreating it"
    stop_daemons "${alive[@]}"
    for n in "${alive[@]}"; do
      ! pid_alive "$n" >/dev/null || { echo "start-mariadb-pair: ERROR: could not stop $n in $DATA" >&2; exit 1; }
    done
  else
    log "removing stale state dir $DATA (no recorded daemon alive)"
  fi
  others=$(unrecorded)
  if [ -n "$others" ]; then
    echo "start-mariadb-pair: ERROR: mariadbd pid(s) $others use $DATA but are not recorded; stop them first" >&2
    exit 1
  fi
  rm -rf -- "$DATA"
elif [ -e "$DATA" ] && [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
  echo "start-mariadb-pair: ERROR: $DATA exists, is not empty and was not created by this script; refusing to touch it." >&2
  exit 1
fi

# ---------------------------------------------------------------- 1. packages
if ! find_bins; then
  [ "${MARIADB_SKIP_APT:-}" != 1 ] \
    || { echo "start-mariadb-pair: ERROR: mariadbd / mariadb-install-db / mariadb not found and MARIADB_SKIP_APT=1" >&2; exit 1; }
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "mariadbd / mariadb-install-db missing: apt-get update + install mariadb-server mariadb-client"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update >&2
  $SUDO apt-get install -y --no-install-recommends mariadb-server mariadb-client >&2
  find_bins || fail "mariadbd / mariadb-install-db / mariadb still missing after apt-get install"
  log "packages installed"
fi

for p in "$PRIMARY_PORT" "$REPLICA_PORT"; do
  if port_busy "$p"; then
    echo "start-mariadb-pair: ERROR: 127.0.0.1:$p is already in use (set MARIADB_PRIMARY_PORT / MARIADB_REPLICA_PORT)." >&2
    echo "start-mariadb-pair: (a pair started by another copy of this script, e.g. with state dir /tmp/mariadb-pair," >&2
    echo "start-mariadb-pair:  holds the same ports: stop it with its own stop script)" >&2
    exit 1
  fi
done

# ---------------------------------------------------------------- 2. config + datadirs
mkdir -p "$DATA" "$RUN" "$PIDS" "$LOGS" "$DATA/tmp/primary" "$DATA/tmp/replica"
touch "$MARKER"
USER_LINE=; [ "$(id -u)" -ne 0 ] || USER_LINE="user=$ME"   # mariadbd refuses to run as root without it
write_cnf() {  # $1 = name, $2 = server_id, $3 = port, $4 = extra lines
  cat >"$DATA/$1.cnf" <<EOF
# generated by start-mariadb-pair.sh - throw-away test server, NOT for production
[mariadbd]
$USER_LINE
datadir=$DATA/$1
socket=$RUN/$1.sock
pid-file=$RUN/$1.pid
# own tmpdir per server: at startup mariadbd deletes every #sql* file in its tmpdir, which
# would include the other server's (or, with the default /tmp, the system server's) temp tables
tmpdir=$DATA/tmp/$1
port=$3
bind-address=127.0.0.1
skip-name-resolve
server-id=$2
# log-basename must come before log-error: it resets the log file names that precede it
log-basename=$1
log-error=$LOGS/$1.err
log-bin
log-slave-updates
binlog-format=ROW
# Debian's /etc/mysql config (not read here) sets these; the compiled-in default is latin1
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
# small and fast: test data only, durability not needed
performance-schema=0
# holds the instant-upload bench's 1M-row files table (~240 MiB with indexes): at 16M every lookup
# was an O_DIRECT disk read and the bench's p99 doubled (45 → 22 ms); memory is only touched as used
innodb-buffer-pool-size=256M
innodb-log-file-size=8M
innodb-log-buffer-size=2M
key-buffer-size=1M
aria-pagecache-buffer-size=1M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
$4
EOF
}
write_cnf primary 1 "$PRIMARY_PORT" ""
write_cnf replica 2 "$REPLICA_PORT" "read-only=1
relay-log-recovery=1"

# One mariadb-install-db (~0.6 s), then a cold copy for the replica (~0.05 s): two in parallel
# take 1-2 s on 2 cores. The copy is made before either server has started, and bootstrap
# writes no binlog, so both start with identical system tables and empty GTID state.
# --force: skip its hostname lookup, which fails where /etc/hosts lacks localhost (minimal
# chroots/containers); grants use IPs anyway (--skip-name-resolve)
install_args=(--defaults-file="$DATA/primary.cnf" --skip-test-db --skip-name-resolve --force
              --auth-root-authentication-method=socket --auth-root-socket-user="$ME")
[ "$(id -u)" -ne 0 ] || install_args+=(--user="$ME")
log "initialising datadir ($("$MARIADBD" --version | awk '{print $3}'))"
timeout 120 "$INSTALL_DB" "${install_args[@]}" </dev/null >"$LOGS/primary.install" 2>&1 \
  || fail "mariadb-install-db failed" primary
cp -a -- "$DATA/primary" "$DATA/replica"
log "datadirs ready"

# ---------------------------------------------------------------- 3. daemons
# own session, stdin/stdout/stderr away from the caller (so "$(...)" returns), pid recorded
start_daemon() {  # $1 = name
  setsid "$MARIADBD" --defaults-file="$DATA/$1.cnf" </dev/null >"$LOGS/$1.out" 2>&1 &
  local pid=$! comm i
  echo "$pid" >"$PIDS/$1.pid"
  STARTED+=("$1")
  # until the forked shell has exec'd mariadbd, /proc/PID/comm says bash or setsid and
  # is_our_daemon would report it dead: wait for the exec (a few ms)
  for ((i = 0; i < 300; i++)); do
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 0
    case $comm in mariadbd|mysqld) return 0 ;; esac
    sleep 0.01
  done
}
# poll until "$@" succeeds; fail (with the daemon's log) if the daemon dies or time runs out
wait_for() {  # $1 = daemon name, $2 = what, rest = probe command
  local name=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while :; do
    pid_alive "$name" >/dev/null || fail "$name exited during startup (waiting for: $what)" "$name"
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "$name: timed out after ${TIMEOUT}s waiting for: $what" "$name"
    sleep 0.05
  done
}
check_pidfile() {  # the server's own pid file must name the pid we recorded
  local own; own=$(cat "$RUN/$1.pid" 2>/dev/null || true)
  if [ -n "$own" ] && [ "$own" != "$(cat "$PIDS/$1.pid")" ] && is_our_daemon "$own" "$1"; then
    log "note: $1 runs as pid $own, not the recorded $(cat "$PIDS/$1.pid"); recording $own"
    echo "$own" >"$PIDS/$1.pid"
  fi
}

start_daemon primary
start_daemon replica
wait_for primary "SQL over $RUN/primary.sock" sql primary 'SELECT 1'
check_pidfile primary
log "primary up on 127.0.0.1:$PRIMARY_PORT (pid $(cat "$PIDS/primary.pid"))"

# everything below is binlogged, so the replica (starting from an empty GTID position) gets it too
sql primary "
  CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
  GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
  CREATE DATABASE filestore;
  CREATE USER 'app'@'%' IDENTIFIED BY 'app';
  CREATE USER 'app'@'localhost' IDENTIFIED BY 'app';
  GRANT ALL PRIVILEGES ON filestore.* TO 'app'@'%';
  GRANT ALL PRIVILEGES ON filestore.* TO 'app'@'localhost';
  GRANT ALL PRIVILEGES ON \`filestore\\_%\`.* TO 'app'@'%';
  GRANT ALL PRIVILEGES ON \`filestore\\_%\`.* TO 'app'@'localhost';" >"$LOGS/setup.out" 2>&1 \
  || fail "creating database and users on the primary failed" setup
log "primary: database filestore, users app and repl created"

wait_for replica "SQL over $RUN/replica.sock" sql replica 'SELECT 1'
check_pidfile replica
log "replica up on 127.0.0.1:$REPLICA_PORT (pid $(cat "$PIDS/replica.pid"))"
sql replica "
  CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PRIMARY_PORT, MASTER_USER='repl',
    MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
  START SLAVE;" >"$LOGS/setup.out" 2>&1 || fail "CHANGE MASTER / START SLAVE on the replica failed" setup

# ---------------------------------------------------------------- 4. replication checks
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  st=$(slave_state || true)
  [ "$st" = "Yes Yes" ] && break
  pid_alive replica >/dev/null || fail "replica exited while starting replication" replica
  if [ "$(date +%s)" -ge "$deadline" ]; then
    client replica -E -e 'SHOW SLAVE STATUS' >"$LOGS/slave-status.out" 2>&1 || true
    fail "replication not running after ${TIMEOUT}s (Slave_IO_Running Slave_SQL_Running = '$st')" slave-status
  fi
  sleep 0.05
done
log "replication running (Slave_IO_Running=Yes, Slave_SQL_Running=Yes)"

# a row written on the primary must show up on the replica; the check schema is dropped again
TOKEN=$(cat /proc/sys/kernel/random/uuid)
sql primary "
  CREATE DATABASE mariadb_pair_check;
  CREATE TABLE mariadb_pair_check.t (id INT PRIMARY KEY, token VARCHAR(64)) ENGINE=InnoDB;
  INSERT INTO mariadb_pair_check.t VALUES (1, '$TOKEN');" >"$LOGS/setup.out" 2>&1 \
  || fail "writing the check row on the primary failed" setup
t_ins=$(date +%s%N)
seen_on_replica() { [ "$(sql replica "SELECT token FROM mariadb_pair_check.t WHERE id=1" 2>/dev/null)" = "$TOKEN" ]; }
wait_for replica "check row replicated" seen_on_replica
log "row written on the primary read back on the replica after $(( ($(date +%s%N) - t_ins) / 1000000 )) ms (incl. client start-up)"
pos=$(sql primary "DROP DATABASE mariadb_pair_check; SELECT @@gtid_binlog_pos;")
[ "$(sql replica "SELECT MASTER_GTID_WAIT('$pos', $(( TIMEOUT < 25 ? TIMEOUT : 25 )))")" = 0 ] \
  || fail "replica did not reach the primary's GTID position $pos" replica
# the exported URLs work (TCP, app user); the replica is read-only for app
app_sql "$PRIMARY_PORT" 'SELECT 1' >/dev/null 2>"$LOGS/setup.out" || fail "app@127.0.0.1:$PRIMARY_PORT cannot log in" setup
app_sql "$REPLICA_PORT" 'SELECT 1' >/dev/null 2>"$LOGS/setup.out" || fail "app@127.0.0.1:$REPLICA_PORT cannot log in" setup
[ "$(sql replica 'SELECT @@read_only')" = 1 ] || fail "replica is not read_only"
log "app user logs in on both ports, replica read_only=1, GTID position $pos; ready"

trap - ERR INT TERM
print_env >"$DATA/pair.env"
print_env
