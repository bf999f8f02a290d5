# Shared by the component scripts of the local stack: paths, defaults, pid files, readiness waits.
# Sourced, never run.
set -euo pipefail

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LOCAL_DIR/../.." && pwd)

# Defaults from stack.env, each overridable by the environment.
while IFS='=' read -r key value; do
  case "$key" in '' | \#*) continue ;; esac
  if [ -z "${!key:-}" ]; then export "$key=$value"; fi
done <"$LOCAL_DIR/stack.env"

# Data, downloaded jars and logs of every server live below one git-ignored folder.
STACK_DIR=${PODMORTEM_STACK_DIR:-$REPO_DIR/.stack}
export PODMORTEM_STACK_DIR=$STACK_DIR

log() { printf '%s: %s\n' "$COMPONENT" "$*"; }
die() { printf '%s: error: %s\n' "$COMPONENT" "$*" >&2; exit 1; }

# `logs` of a component: the last N (default 100) lines of its $SERVER_LOG, or -f to follow it.
show_log() {
  [ -f "$SERVER_LOG" ] || die "no log yet ($SERVER_LOG)"
  if [ "${1:-}" = "-f" ]; then exec tail -n 100 -F "$SERVER_LOG"; fi
  tail -n "${1:-100}" "$SERVER_LOG"
}

# A pid file names the process this stack started. A stale file (process gone, or the pid reused
# by a process that does not name this stack's folder on its command line) counts as stopped.
pid_alive() {
  local pidfile=$1
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STACK_DIR"
}

# While `up` waits for the server it has just started: right after the start, the pid may still be
# the forked shell that has not exec'd the server yet, whose command line does not name the stack
# folder (pid_alive would call it stale, and the server would be left running unwatched, as seen
# with two Elasticsearch nodes starting at once). A pid is not reused before its process is reaped,
# so asking the kernel is enough here.
started_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Stops exactly the process in the pid file (and its process group), never by name.
stop_pidfile() {
  local pidfile=$1 deadline_s=${2:-30}
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  local pid
  pid=$(cat "$pidfile")
  log "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$((deadline_s * 10))" ]; then
      log "did not stop within ${deadline_s}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$pidfile"
  log "stopped"
}

# Polls a command until it succeeds, printing progress; fails naming the log to read.
wait_until() {
  local what=$1 timeout_s=$2 logfile=$3
  shift 3
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout_s" ]; then
      die "$what not ready after ${timeout_s}s; see $logfile"
    fi
    sleep 0.5
  done
  log "$what ready after $((SECONDS - start))s"
}

port_open() { (exec 3<>"/dev/tcp/$PODMORTEM_STACK_HOST/$1") 2>/dev/null; }
