#!/usr/bin/env bash
COMPONENT=elasticsearch
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# A single-node Elasticsearch on 127.0.0.1, run from the Maven Central jars (the distribution is
# not published there): es-launcher/ builds a small launcher that starts org.elasticsearch.node.Node
# with the Netty transport plugin from the class path. No Docker, no tarball download.
# Everything lives in $STACK_DIR/elasticsearch.
#
#   elasticsearch.sh up       build the launcher and resolve the jars if missing, start, wait for
#                             cluster health yellow
#   elasticsearch.sh down     stop the process in elasticsearch.pid (never by name)
#   elasticsearch.sh status   running with the version the server reports (exit 0), stopped (exit 3),
#                             or alive but not answering HTTP (exit 1)
#   elasticsearch.sh logs     tail of the server log (logs -f to follow, logs N for N lines)
#   elasticsearch.sh install  only build the launcher and resolve the jars
#
# What the node has: core Elasticsearch (index/search/bulk/aggregations/aliases/composable
# templates/PIT...), HTTP, GET /. What it lacks (modules and x-pack are not on Maven Central):
# painless and scripts, ingest processors, data streams, ILM, reindex/update_by_query/
# delete_by_query, security, the mapper-extras types (scaled_float, search_as_you_type...).
#
# Environment (defaults in stack.env): PODMORTEM_ES_PORT, PODMORTEM_ES_TRANSPORT_PORT,
# PODMORTEM_ES_HEAP; also PODMORTEM_ES_JAVA_HOME (a JDK 21 or newer; default: the newest one
# found in JAVA_HOME or /usr/lib/jvm), PODMORTEM_ES_START_TIMEOUT (seconds, default 120) and
# PODMORTEM_ES_JAVA_OPTS (extra JVM options) and PODMORTEM_ES_SETTINGS (extra node settings,
# space-separated key=value, e.g. http.max_content_length=64kb).
#
# One member of a multi-node cluster (each member with its own PODMORTEM_STACK_DIR and ports):
# PODMORTEM_ES_DISCOVERY_TYPE=multi-node (default single-node), and the member's node.name,
# cluster.name, discovery.seed_hosts (and cluster.initial_master_nodes, node.roles) in
# PODMORTEM_ES_SETTINGS.

# Elasticsearch 9 needs Java 21+. Its major must match the @elastic/elasticsearch client's.
ES_VERSION=9.5.3
MIN_JAVA=21

LAUNCHER_DIR="$LOCAL_DIR/es-launcher"
ES_DIR="$STACK_DIR/elasticsearch"
LIB_DIR="$ES_DIR/lib"
HOME_DIR="$ES_DIR/home" # path.home: the launcher writes config/log4j2.properties there
DATA_DIR="$ES_DIR/data"
LOG_DIR="$ES_DIR/logs"
TMP_DIR="$ES_DIR/tmp"
NATIVE_DIR="$ES_DIR/native"
PIDFILE="$ES_DIR/elasticsearch.pid"
SERVER_LOG="$LOG_DIR/elasticsearch.log"
CONSOLE_LOG="$LOG_DIR/console.log" # the JVM's own stdout/stderr: crashes, not the server's logging

HOST=$PODMORTEM_STACK_HOST
PORT=$PODMORTEM_ES_PORT
TRANSPORT_PORT=$PODMORTEM_ES_TRANSPORT_PORT
HEAP=$PODMORTEM_ES_HEAP
START_TIMEOUT=${PODMORTEM_ES_START_TIMEOUT:-120}
URL="http://$HOST:$PORT"

java_major() { # JDK home -> feature version (17, 21, 25...), empty when not a working JDK
  [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] || return 0
  "$1/bin/java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

# A JDK (javac too: the launcher is compiled) of at least MIN_JAVA: PODMORTEM_ES_JAVA_HOME if set,
# else JAVA_HOME if recent enough, else the newest one under /usr/lib/jvm.
find_jdk() {
  local home major best="" best_major=0
  if [ -n "${PODMORTEM_ES_JAVA_HOME:-}" ]; then
    major=$(java_major "$PODMORTEM_ES_JAVA_HOME")
    if [ -z "$major" ] || [ "$major" -lt "$MIN_JAVA" ]; then
      die "PODMORTEM_ES_JAVA_HOME=$PODMORTEM_ES_JAVA_HOME is not a JDK $MIN_JAVA or newer"
    fi
    echo "$PODMORTEM_ES_JAVA_HOME"
    return 0
  fi
  for home in ${JAVA_HOME:+"$JAVA_HOME"} /usr/lib/jvm/*; do
    if [ ! -d "$home" ] || [ -L "$home" ]; then continue; fi # default-java and the like: links
    major=$(java_major "$home")
    if [ -n "$major" ] && [ "$major" -ge "$MIN_JAVA" ] && [ "$major" -gt "$best_major" ]; then
      best=$home best_major=$major
    fi
  done
  [ -n "$best" ] || die "no JDK $MIN_JAVA or newer found (Elasticsearch $ES_VERSION needs one); set PODMORTEM_ES_JAVA_HOME"
  echo "$best"
}

# The lib folder is complete for exactly the version and launcher sources named in its marker.
lib_marker() {
  local sources
  sources=$(cd "$LAUNCHER_DIR" && find pom.xml src -type f | LC_ALL=C sort | xargs cat | cksum | cut -d' ' -f1)
  printf 'elasticsearch %s, launcher %s\n' "$ES_VERSION" "$sources"
}

install() {
  if [ -f "$LIB_DIR/.installed" ] && [ "$(cat "$LIB_DIR/.installed")" = "$(lib_marker)" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install maven)"
  local jdk
  jdk=$(find_jdk)
  mkdir -p "$ES_DIR" "$LOG_DIR"
  local staging="$ES_DIR/lib.partial" build_log="$LOG_DIR/install.log" start=$SECONDS
  log "resolving Elasticsearch $ES_VERSION jars from Maven Central and building the launcher (JDK $jdk)…"
  rm -rf "$staging" "$ES_DIR/build"
  # Maven itself on Java 24+ warns about sun.misc.Unsafe: quiet that where the flag exists.
  local maven_opts=${MAVEN_OPTS:-}
  if [ "$(java_major "$jdk")" -ge 24 ]; then maven_opts="$maven_opts --sun-misc-unsafe-memory-access=allow"; fi
  if ! JAVA_HOME="$jdk" MAVEN_OPTS="$maven_opts" mvn -B -ntp -f "$LAUNCHER_DIR/pom.xml" package \
    -Des.version="$ES_VERSION" -Des.build.dir="$ES_DIR/build" -Des.lib.dir="$staging" \
    >"$build_log" 2>&1; then
    grep -E '\[ERROR\]' "$build_log" | head -n 20 >&2 || true
    die "could not build the launcher for Elasticsearch $ES_VERSION; see $build_log"
  fi
  if [ ! -f "$staging/elasticsearch-$ES_VERSION.jar" ] || [ ! -f "$staging/es-launcher.jar" ]; then
    die "jars missing after the build; see $build_log"
  fi
  lib_marker >"$staging/.installed"
  rm -rf "$LIB_DIR" "$ES_DIR/build"
  mv "$staging" "$LIB_DIR"
  log "installed $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $((SECONDS - start))s"
}

# Elasticsearch's native access (zstd for index.codec=best_compression, mlockall...) loads its
# libraries from one folder; the distribution ships them, Maven Central does not. The system's
# libzstd does the job; its SIMD vector library is turned off (-D...enableVectorLibrary=false,
# Lucene's Java vector code is used instead). Without libzstd native access is off with a warning.
link_native() {
  rm -rf "$NATIVE_DIR"
  mkdir -p "$NATIVE_DIR"
  local zstd candidate
  zstd=$({ /sbin/ldconfig -p 2>/dev/null || true; } | awk '/libzstd\.so\.1 /{print $NF; exit}')
  for candidate in /usr/lib/x86_64-linux-gnu/libzstd.so.1 /usr/lib/aarch64-linux-gnu/libzstd.so.1 /usr/lib64/libzstd.so.1; do
    if [ -z "$zstd" ] && [ -f "$candidate" ]; then zstd=$candidate; fi
  done
  if [ -n "$zstd" ]; then
    ln -s "$zstd" "$NATIVE_DIR/libzstd.so"
  else
    log "warning: no libzstd.so.1 on this machine: native access off, index.codec=best_compression will fail"
  fi
}

healthy() {
  curl -s -m 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null |
    grep -q '"status":"\(green\|yellow\)"'
}

# The version the server reports over HTTP (GET /, else the local node's info).
reported_version() {
  local v
  v=$(curl -s -m 5 "$URL/" 2>/dev/null | sed -n 's/.*"number":"\([^"]*\)".*/\1/p')
  [ -n "$v" ] || v=$(curl -s -m 5 "$URL/_nodes/_local?filter_path=nodes.*.version" 2>/dev/null |
    sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
  echo "$v"
}

# Ready = cluster health at least yellow. While waiting, progress every 10s, and a server that
# died is reported at once instead of at the timeout (fd 4 is the real stderr, fd 5 the real
# stdout, since wait_until silences the command it polls).
server_ready() {
  if ! started_alive "$PIDFILE"; then
    rm -f "$PIDFILE"
    { tail -n 30 "$SERVER_LOG" "$CONSOLE_LOG" 2>/dev/null || true; } >&4
    die "the server exited during startup; see $SERVER_LOG and $CONSOLE_LOG" 2>&4
  fi
  if healthy; then return 0; fi
  local waited=$((SECONDS - WAIT_START))
  if [ "$waited" -ge "$NEXT_PROGRESS" ]; then
    log "still starting… ${waited}s" >&5
    NEXT_PROGRESS=$((NEXT_PROGRESS + 10))
  fi
  return 1
}

wait_ready() {
  WAIT_START=$SECONDS NEXT_PROGRESS=10
  exec 4>&2 5>&1
  wait_until "cluster health" "$START_TIMEOUT" "$SERVER_LOG" server_ready
  exec 4>&- 5>&-
}

up() {
  command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
  if pid_alive "$PIDFILE"; then
    if healthy; then
      log "already running (pid $(cat "$PIDFILE")), nothing to do"
      return 0
    fi
    log "already starting (pid $(cat "$PIDFILE")), waiting for it…"
    wait_ready
    return 0
  fi
  rm -f "$PIDFILE"
  port_open "$PORT" && die "port $HOST:$PORT is taken by another process"
  port_open "$TRANSPORT_PORT" && die "port $HOST:$TRANSPORT_PORT is taken by another process"
  install
  local jdk
  jdk=$(find_jdk)
  mkdir -p "$HOME_DIR" "$DATA_DIR" "$LOG_DIR" "$TMP_DIR"
  link_native

  # A fresh log per run, so a failed start shows this run's lines only.
  local f
  for f in "$SERVER_LOG" "$CONSOLE_LOG"; do
    if [ -f "$f" ]; then mv -f "$f" "$f.prev"; fi
  done
  local start=$SECONDS
  log "starting Elasticsearch $ES_VERSION on $HOST:$PORT (transport $TRANSPORT_PORT, heap $HEAP, JDK $jdk)"
  # setsid: own session, so the server outlives the calling shell and its terminal. log4j's own
  # shutdown hook would stop logging halfway through the node's shutdown, so it is off; the
  # launcher closes the node, then log4j, on SIGTERM.
  local setting settings=()
  for setting in ${PODMORTEM_ES_SETTINGS:-}; do settings+=("-E$setting"); done
  # shellcheck disable=SC2086 # PODMORTEM_ES_JAVA_OPTS is a list of options
  setsid "$jdk/bin/java" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
    -XX:-OmitStackTraceInFastThrow -Djava.awt.headless=true -Dfile.encoding=UTF-8 \
    -Djava.locale.providers=CLDR -Djava.io.tmpdir="$TMP_DIR" \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    --enable-native-access=ALL-UNNAMED --add-modules=jdk.incubator.vector \
    -Des.path.home="$HOME_DIR" -Des.nativelibs.path="$NATIVE_DIR" \
    -Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false \
    ${PODMORTEM_ES_JAVA_OPTS:-} \
    -cp "$LIB_DIR/*" podmortem.es.Launcher \
    -Epath.home="$HOME_DIR" -Epath.data="$DATA_DIR" -Epath.logs="$LOG_DIR" \
    -Enetwork.host="$HOST" -Ehttp.port="$PORT" -Etransport.port="$TRANSPORT_PORT" \
    -Ediscovery.type="${PODMORTEM_ES_DISCOVERY_TYPE:-single-node}" \
    -Ecluster.routing.allocation.disk.threshold_enabled=false \
    "${settings[@]}" </dev/null >"$CONSOLE_LOG" 2>&1 &
  echo $! >"$PIDFILE"
  log "waiting for cluster health yellow (pid $(cat "$PIDFILE"), timeout ${START_TIMEOUT}s, log $SERVER_LOG)…"
  wait_ready
  log "up in $((SECONDS - start))s: Elasticsearch $(reported_version) on $HOST:$PORT"
}

status() {
  if pid_alive "$PIDFILE"; then
    local version
    version=$(reported_version)
    if [ -z "$version" ]; then
      echo "elasticsearch: not answering on $HOST:$PORT (pid $(cat "$PIDFILE") alive; starting or stuck, see $SERVER_LOG)"
      return 1
    fi
    echo "elasticsearch: running (pid $(cat "$PIDFILE")) on $HOST:$PORT, version $version"
    return 0
  fi
  echo "elasticsearch: stopped"
  return 3
}

case "${1:-}" in
  up) up ;;
  down) stop_pidfile "$PIDFILE" 40 ;;
  status) status ;;
  logs) shift; show_log "$@" ;;
  install) install ;;
  *) echo "usage: $0 up|down|status|logs [-f|N]|install" >&2; exit 2 ;;
esac
