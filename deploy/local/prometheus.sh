#!/usr/bin/env bash
# Prometheus from Debian's package, on 127.0.0.1, with the remote-write receiver on so tests can
# put series at known times, and file-based discovery of the podmortem services' /metrics.
COMPONENT=prometheus
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HOME_DIR=$STACK_DIR/prometheus
PIDFILE=$HOME_DIR/prometheus.pid
SERVER_LOG=$HOME_DIR/logs/prometheus.log
URL="http://$PODMORTEM_STACK_HOST:$PODMORTEM_PROMETHEUS_PORT"

install() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return 0; fi
  log "installing Debian's prometheus package…"
  if [ "$(id -u)" -ne 0 ]; then die "prometheus is not installed and installing it needs root (apt-get install prometheus)"; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # policy-rc.d keeps the package's own service from starting; this stack runs its own instance.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

write_config() {
  mkdir -p "$HOME_DIR/data" "$HOME_DIR/logs" "$HOME_DIR/targets"
  cat >"$HOME_DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: podmortem
    file_sd_configs:
      - files: ['$HOME_DIR/targets/*.json']
        refresh_interval: 5s
YAML
}

ready() { curl -fsS "$URL/-/ready" >/dev/null; }

up() {
  if pid_alive "$PIDFILE" && ready; then
    log "already running (pid $(cat "$PIDFILE")), nothing to do"
    return 0
  fi
  install
  write_config
  log "starting on $PODMORTEM_STACK_HOST:$PODMORTEM_PROMETHEUS_PORT…"
  setsid prometheus \
    --config.file="$HOME_DIR/prometheus.yml" \
    --storage.tsdb.path="$HOME_DIR/data" \
    --storage.tsdb.retention.time=30d \
    --web.listen-address="$PODMORTEM_STACK_HOST:$PODMORTEM_PROMETHEUS_PORT" \
    --web.enable-remote-write-receiver \
    --web.enable-admin-api \
    </dev/null >>"$SERVER_LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_until "prometheus" 60 "$SERVER_LOG" ready
}

status() {
  if ! pid_alive "$PIDFILE" || ! ready; then
    echo "prometheus: stopped"
    return 3
  fi
  local version
  version=$(curl -fsS "$URL/api/v1/status/buildinfo" | sed -E 's/.*"version":"([^"]+)".*/\1/')
  echo "prometheus: running (pid $(cat "$PIDFILE")) on $PODMORTEM_STACK_HOST:$PODMORTEM_PROMETHEUS_PORT, version $version"
}

case "${1:-}" in
  up) up ;;
  down) stop_pidfile "$PIDFILE" ;;
  status) status ;;
  logs) shift; show_log "$@" ;;
  *) echo "usage: $0 up|down|status|logs [-f|N]" >&2; exit 2 ;;
esac
