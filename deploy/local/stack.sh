#!/usr/bin/env bash
# The local stack: real Kafka, Elasticsearch, Prometheus and SeaweedFS (S3) on 127.0.0.1.
#   stack.sh up|down|status|logs [kafka|elasticsearch|prometheus|seaweedfs]...
# Defaults (ports, heaps) are in stack.env; data, jars and logs live in $PODMORTEM_STACK_DIR
# (default .stack/ in the repository).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
all=(kafka elasticsearch prometheus seaweedfs)

usage() {
  cat <<USAGE
usage: npm run stack -- <command> [component...]

commands:
  up       install what is missing and start each component; a running one is left alone
  down     stop the processes this stack started (by pid file, never by name)
  status   print each component's state and the version the server itself reports
  logs     print the last lines of each component's log

components: ${all[*]} (default: all)
environment: PODMORTEM_STACK_DIR and the keys of deploy/local/stack.env override the defaults
USAGE
}

cmd=${1:-}
case "$cmd" in
  up | down | status | logs) shift ;;
  -h | --help | help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

components=("$@")
[ ${#components[@]} -gt 0 ] || components=("${all[@]}")
for c in "${components[@]}"; do
  case " ${all[*]} " in *" $c "*) ;; *) echo "stack: unknown component '$c' (one of: ${all[*]})" >&2; exit 2 ;; esac
done

# One `up` or `down` at a time per stack folder: two at once would build into the same staging
# folders and race for the same ports. `status` and `logs` only read.
if [ "$cmd" = up ] || [ "$cmd" = down ]; then
  stack_dir=${PODMORTEM_STACK_DIR:-$here/../../.stack}
  mkdir -p "$stack_dir"
  exec 9>"$stack_dir/.stack.lock"
  if ! flock -n 9; then
    echo "stack: another 'up' or 'down' of $stack_dir is running; waiting for it…" >&2
    flock 9
  fi
fi

# Stop in reverse order of start; status reports every component and fails if any is stopped.
# Each component script runs with the lock's descriptor closed (9>&-): the servers it starts
# outlive this shell, and one that inherited the descriptor would hold the lock for its lifetime.
if [ "$cmd" = down ]; then
  for ((i = ${#components[@]} - 1; i >= 0; i--)); do bash "$here/${components[$i]}.sh" down 9>&-; done
  exit 0
fi
rc=0
for c in "${components[@]}"; do
  bash "$here/$c.sh" "$cmd" 9>&- || rc=$?
done
exit "$rc"
