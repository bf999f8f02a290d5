#!/usr/bin/env bash
COMPONENT=seaweedfs
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# SeaweedFS as the local stack's S3-compatible object store: one `weed server` process (master,
# volume server, filer and S3 gateway) on 127.0.0.1, built from the Go module proxy at a pinned
# version. Everything lives in $STACK_DIR/seaweedfs.
#
#   seaweedfs.sh up       build weed if missing, write the S3 identity file, start, wait for ready
#   seaweedfs.sh down     stop the process in weed.pid (never by name)
#   seaweedfs.sh status   running (exit 0) or stopped (exit 3)
#   seaweedfs.sh logs     tail of the server log (logs -f to follow)
#   seaweedfs.sh install  only build weed
#
# Environment (defaults in stack.env): PODMORTEM_S3_PORT (the S3 endpoint), the master, volume and
# filer ports and their gRPC ports (PODMORTEM_SEAWEEDFS_*_PORT), PODMORTEM_S3_GRPC_PORT,
# PODMORTEM_S3_ACCESS_KEY and PODMORTEM_S3_SECRET_KEY (the one identity, allowed everything);
# PODMORTEM_S3_DOMAIN_NAME (unset or empty by default: path-style only), the gateway's -domainName,
# so that a Host of <bucket>.<domain> names the bucket (virtual-host requests) as well;
# also PODMORTEM_SEAWEEDFS_VERSION (the module version to build), PODMORTEM_SEAWEEDFS_START_TIMEOUT
# (seconds, default 120) and PODMORTEM_GO (the go command; default go on PATH, else
# /usr/local/go/bin/go).

MODULE=github.com/seaweedfs/seaweedfs
VERSION=${PODMORTEM_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
SW_DIR="$STACK_DIR/seaweedfs"
BIN_DIR="$SW_DIR/bin"
WEED="$BIN_DIR/weed"
BUILT_MARKER="$BIN_DIR/weed.built" # the module version the binary was built from
DATA_DIR="$SW_DIR/data"
LOG_DIR="$SW_DIR/logs"
SERVER_LOG="$LOG_DIR/weed.log"
PIDFILE="$SW_DIR/weed.pid"
S3_CONFIG="$SW_DIR/s3.json"
HOST=$PODMORTEM_STACK_HOST
URL="http://$HOST:$PODMORTEM_S3_PORT"
START_TIMEOUT=${PODMORTEM_SEAWEEDFS_START_TIMEOUT:-120}

go_command() {
  if [ -n "${PODMORTEM_GO:-}" ]; then echo "$PODMORTEM_GO"; return 0; fi
  if command -v go >/dev/null; then command -v go; return 0; fi
  if [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go; return 0; fi
  die "no Go toolchain found to build SeaweedFS (set PODMORTEM_GO)"
}

# `go install module/weed@version` refuses a module whose go.mod has replace directives, as
# SeaweedFS's has; so the module is fetched from the proxy into the module cache and built there
# as the main module, its replace directives and go.sum in force.
install() {
  if [ -x "$WEED" ] && [ -f "$BUILT_MARKER" ] && [ "$(cat "$BUILT_MARKER")" = "$VERSION" ]; then
    return 0
  fi
  local go build_log="$LOG_DIR/build.log" start=$SECONDS dir
  go=$(go_command)
  mkdir -p "$BIN_DIR" "$LOG_DIR"
  log "building weed ($MODULE@$VERSION) from the Go module proxy; the first build takes minutes…"
  if ! dir=$("$go" mod download -json "$MODULE@$VERSION" 2>>"$build_log" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') ||
    [ -z "$dir" ]; then
    tail -n 20 "$build_log" >&2 || true
    die "could not download $MODULE@$VERSION; see $build_log"
  fi
  if ! (cd "$dir" && GOFLAGS=-buildvcs=false "$go" build -o "$WEED.partial" ./weed) >>"$build_log" 2>&1; then
    tail -n 20 "$build_log" >&2 || true
    die "could not build weed; see $build_log"
  fi
  mv "$WEED.partial" "$WEED"
  echo "$VERSION" >"$BUILT_MARKER"
  log "built weed in $((SECONDS - start))s"
}

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  cat >"$S3_CONFIG" <<JSON
{
  "identities": [
    {
      "name": "podmortem",
      "credentials": [{ "accessKey": "$PODMORTEM_S3_ACCESS_KEY", "secretKey": "$PODMORTEM_S3_SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
JSON
  chmod 600 "$S3_CONFIG"
}

# Ready when the gateway answers a request signed with the stack's key (ListBuckets): the filer
# behind it is up and the identity is loaded.
ready() {
  curl -fsS -o /dev/null --max-time 5 --aws-sigv4 "aws:amz:$PODMORTEM_S3_REGION:s3" \
    --user "$PODMORTEM_S3_ACCESS_KEY:$PODMORTEM_S3_SECRET_KEY" "$URL/"
}

up() {
  if pid_alive "$PIDFILE" && ready; then
    log "already running (pid $(cat "$PIDFILE")), nothing to do"
    return 0
  fi
  install
  write_config
  log "starting on $HOST:$PODMORTEM_S3_PORT (S3)…"
  # Only the S3 gateway is wanted: the Iceberg and Lance catalogs are off, no telemetry is sent,
  # and buckets are made only by request (a PUT into a missing bucket is an error, as on S3).
  (cd "$SW_DIR" && exec setsid "$WEED" server \
    -ip="$HOST" -ip.bind="$HOST" -dir="$DATA_DIR" \
    -master.port="$PODMORTEM_SEAWEEDFS_MASTER_PORT" -master.port.grpc="$PODMORTEM_SEAWEEDFS_MASTER_GRPC_PORT" \
    -master.volumeSizeLimitMB=1024 -master.telemetry=false \
    -volume.port="$PODMORTEM_SEAWEEDFS_VOLUME_PORT" -volume.port.grpc="$PODMORTEM_SEAWEEDFS_VOLUME_GRPC_PORT" \
    -volume.max=32 \
    -filer -filer.port="$PODMORTEM_SEAWEEDFS_FILER_PORT" -filer.port.grpc="$PODMORTEM_SEAWEEDFS_FILER_GRPC_PORT" \
    -s3 -s3.port="$PODMORTEM_S3_PORT" -s3.port.grpc="$PODMORTEM_S3_GRPC_PORT" -s3.config="$S3_CONFIG" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
    ${PODMORTEM_S3_DOMAIN_NAME:+-s3.domainName="$PODMORTEM_S3_DOMAIN_NAME"} \
    </dev/null >>"$SERVER_LOG" 2>&1) &
  echo $! >"$PIDFILE"
  wait_until "seaweedfs" "$START_TIMEOUT" "$SERVER_LOG" running_and_ready
}

# Its own process, not another server on the same port, must be the one answering.
running_and_ready() { pid_alive "$PIDFILE" && ready; }

status() {
  if ! pid_alive "$PIDFILE" || ! ready; then
    echo "seaweedfs: stopped"
    return 3
  fi
  local version
  # `weed version` prints "version 30GB 4.53  linux amd64".
  version=$("$WEED" version 2>/dev/null | sed -nE '1s/.* ([0-9]+\.[0-9]+(\.[0-9]+)?) .*/\1/p')
  echo "seaweedfs: running (pid $(cat "$PIDFILE")) on $HOST:$PODMORTEM_S3_PORT (S3), version $version"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pidfile "$PIDFILE" ;;
  status) status ;;
  logs) shift; show_log "$@" ;;
  *) echo "usage: $0 install|up|down|status|logs [-f|N]" >&2; exit 2 ;;
esac
