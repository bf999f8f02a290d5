#!/usr/bin/env bash
COMPONENT=kafka
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# A single-node Kafka (KRaft, one process that is broker and controller) on 127.0.0.1, run from
# the Maven Central jars: no Docker, no tarball download. Everything lives in $STACK_DIR/kafka.
#
#   kafka.sh up       resolve the jars if missing, format the storage if new, start, wait for ready
#   kafka.sh down     stop the process in kafka.pid (never by name)
#   kafka.sh status   running (exit 0) or stopped (exit 3)
#   kafka.sh logs     tail of the server log (logs -f to follow)
#   kafka.sh install  only resolve the jars
#
# Environment (defaults in stack.env): PODMORTEM_KAFKA_PORT, PODMORTEM_KAFKA_CONTROLLER_PORT,
# PODMORTEM_KAFKA_HEAP; also PODMORTEM_KAFKA_VERSION (default: kafka.version of kafka/pom.xml),
# PODMORTEM_KAFKA_START_TIMEOUT (seconds, default 120) and JAVA_HOME (default: java on PATH).
#
# One member of a multi-node cluster (each member with its own PODMORTEM_STACK_DIR and ports;
# every member broker and controller): PODMORTEM_KAFKA_NODE_ID (default 1),
# PODMORTEM_KAFKA_QUORUM_VOTERS (id@host:controller-port,... of every member; default this node
# alone), PODMORTEM_KAFKA_CLUSTER_ID (the same on every member, used when the storage is formatted;
# default a new one), PODMORTEM_KAFKA_REPLICATION_FACTOR (default and internal topics' replicas,
# default 1) and PODMORTEM_KAFKA_MIN_INSYNC_REPLICAS (default 1). The defaults are the one-node
# broker of the local stack.
#
# A secured listener beside PLAINTEXT (for the tests of TLS and SASL): PODMORTEM_KAFKA_SASL_SSL_PORT
# opens SASL_SSL on that port (SCRAM-SHA-256 and SCRAM-SHA-512), with the server's PEM private key
# (unencrypted PKCS#8) and certificate chain in the one file PODMORTEM_KAFKA_SSL_PEM_FILE, and the
# SCRAM users of PODMORTEM_KAFKA_SCRAM_USERS ("name=password ...", both mechanisms), written when
# the storage is formatted. PODMORTEM_KAFKA_SSL_PORT opens an SSL listener (mutual TLS) with the
# same key store, taking only clients whose certificate a CA of PODMORTEM_KAFKA_SSL_CLIENT_CA_FILE
# signed. Inter-broker and controller traffic stays on PLAINTEXT.

POM="$LOCAL_DIR/kafka/pom.xml"
KAFKA_DIR="$STACK_DIR/kafka"
LIB_DIR="$KAFKA_DIR/lib"
DATA_DIR="$KAFKA_DIR/data"
LOG_DIR="$KAFKA_DIR/logs"
PIDFILE="$KAFKA_DIR/kafka.pid"
VERSION_FILE="$KAFKA_DIR/kafka.version" # the version the running broker reported at start
SERVER_PROPS="$KAFKA_DIR/server.properties"
LOG4J_PROPS="$KAFKA_DIR/log4j2.properties"
TOOLS_LOG4J_PROPS="$KAFKA_DIR/log4j2-tools.properties" # one-shot tools: warnings to stderr only
SERVER_LOG="$LOG_DIR/server.log"
CONSOLE_LOG="$LOG_DIR/kafka.out" # the JVM's own stdout/stderr: crashes, not the broker's logging

HOST=$PODMORTEM_STACK_HOST
PORT=$PODMORTEM_KAFKA_PORT
CONTROLLER_PORT=$PODMORTEM_KAFKA_CONTROLLER_PORT
HEAP=$PODMORTEM_KAFKA_HEAP
START_TIMEOUT=${PODMORTEM_KAFKA_START_TIMEOUT:-120}
NODE_ID=${PODMORTEM_KAFKA_NODE_ID:-1}
QUORUM_VOTERS=${PODMORTEM_KAFKA_QUORUM_VOTERS:-$NODE_ID@$HOST:$CONTROLLER_PORT}
REPLICATION_FACTOR=${PODMORTEM_KAFKA_REPLICATION_FACTOR:-1}
MIN_INSYNC=${PODMORTEM_KAFKA_MIN_INSYNC_REPLICAS:-1}
SASL_SSL_PORT=${PODMORTEM_KAFKA_SASL_SSL_PORT:-}
SSL_PEM_FILE=${PODMORTEM_KAFKA_SSL_PEM_FILE:-}
SCRAM_USERS=${PODMORTEM_KAFKA_SCRAM_USERS:-}
SSL_PORT=${PODMORTEM_KAFKA_SSL_PORT:-}
SSL_CLIENT_CA_FILE=${PODMORTEM_KAFKA_SSL_CLIENT_CA_FILE:-}
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
VERSION=${PODMORTEM_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")}
[ -n "$VERSION" ] || die "no kafka.version in $POM"

# The lib folder is complete for exactly the version and pom named in its marker.
lib_marker() { printf 'kafka %s, pom %s\n' "$VERSION" "$(cksum <"$POM" | cut -d' ' -f1)"; }

install() {
  if [ -f "$LIB_DIR/.resolved" ] && [ "$(cat "$LIB_DIR/.resolved")" = "$(lib_marker)" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install maven)"
  log "resolving Kafka $VERSION from Maven Central into $LIB_DIR…"
  mkdir -p "$KAFKA_DIR" "$LOG_DIR"
  local staging="$KAFKA_DIR/lib.partial" resolve_log="$LOG_DIR/resolve.log" start=$SECONDS
  rm -rf "$staging"
  if ! mvn -B -ntp -f "$POM" dependency:copy-dependencies \
    -Dkafka.version="$VERSION" -DincludeScope=runtime -DoutputDirectory="$staging" \
    >"$resolve_log" 2>&1; then
    grep -E '\[ERROR\]' "$resolve_log" | head -n 20 >&2 || true
    die "could not resolve Kafka $VERSION; see $resolve_log"
  fi
  [ -f "$staging/kafka_2.13-$VERSION.jar" ] || die "kafka_2.13-$VERSION.jar missing after resolve; see $resolve_log"
  lib_marker >"$staging/.resolved"
  rm -rf "$LIB_DIR"
  mv "$staging" "$LIB_DIR"
  log "resolved $(find "$LIB_DIR" -name '*.jar' | wc -l) jars ($(du -sh "$LIB_DIR" | cut -f1)) in $((SECONDS - start))s"
}

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$SASL_SSL_PORT" ]; then
    [ -f "$SSL_PEM_FILE" ] || die "PODMORTEM_KAFKA_SASL_SSL_PORT needs PODMORTEM_KAFKA_SSL_PEM_FILE (key and certificate chain)"
    listeners+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    advertised+=",SASL_SSL://$HOST:$SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  if [ -n "$SSL_PORT" ]; then
    [ -f "$SSL_PEM_FILE" ] || die "PODMORTEM_KAFKA_SSL_PORT needs PODMORTEM_KAFKA_SSL_PEM_FILE (key and certificate chain)"
    [ -f "$SSL_CLIENT_CA_FILE" ] || die "PODMORTEM_KAFKA_SSL_PORT needs PODMORTEM_KAFKA_SSL_CLIENT_CA_FILE"
    listeners+=",SSL://$HOST:$SSL_PORT"
    advertised+=",SSL://$HOST:$SSL_PORT"
    protocols+=",SSL:SSL"
  fi
  cat >"$SERVER_PROPS" <<EOF
# Written by deploy/local/kafka.sh on every start; edit that script, not this file.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$QUORUM_VOTERS
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR

# One node (the default): every internal topic has one replica; a cluster member gets the
# cluster's replication factor and minimum in-sync replicas. Clients create their topics themselves.
num.partitions=1
default.replication.factor=$REPLICATION_FACTOR
min.insync.replicas=$MIN_INSYNC
offsets.topic.replication.factor=$REPLICATION_FACTOR
transaction.state.log.replication.factor=$REPLICATION_FACTOR
transaction.state.log.min.isr=$MIN_INSYNC
share.coordinator.state.topic.replication.factor=$REPLICATION_FACTOR
share.coordinator.state.topic.min.isr=$MIN_INSYNC
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# 50 partitions each (the default) only slow a one-node dev broker down: its start loads every
# one of them, and the first group or transaction creates them.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
EOF
  if [ -n "$SASL_SSL_PORT" ]; then
    cat >>"$SERVER_PROPS" <<EOF

# The secured listener (PODMORTEM_KAFKA_SASL_SSL_PORT): TLS with a PEM key store, SCRAM users.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$SSL_PEM_FILE
listener.name.sasl_ssl.ssl.client.auth=none
EOF
  fi
  if [ -n "$SSL_PORT" ]; then
    cat >>"$SERVER_PROPS" <<EOF

# The mutual TLS listener (PODMORTEM_KAFKA_SSL_PORT): a client certificate of the client CA required.
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$SSL_PEM_FILE
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$SSL_CLIENT_CA_FILE
listener.name.ssl.ssl.client.auth=required
EOF
  fi
  # Everything at INFO into one rolling file; the console gets nothing.
  cat >"$LOG4J_PROPS" <<EOF
# Written by deploy/local/kafka.sh on every start.
status = warn
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = $SERVER_LOG
appender.server.filePattern = $SERVER_LOG.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.server.ref = server
# Per-partition state changes and per-request lines would bury the rest.
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
  cat >"$TOOLS_LOG4J_PROPS" <<EOF
# Written by deploy/local/kafka.sh: for one-shot tools (StorageTool, TopicCommand…), not the broker.
status = warn
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
EOF
}

format_storage() {
  if [ -f "$DATA_DIR/meta.properties" ]; then return 0; fi
  local cluster_id=${PODMORTEM_KAFKA_CLUSTER_ID:-}
  if [ -z "$cluster_id" ]; then
    cluster_id=$("$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="$TOOLS_LOG4J_PROPS" \
      kafka.tools.StorageTool random-uuid) || die "StorageTool random-uuid failed"
  fi
  # SCRAM credentials live in the metadata log: KRaft takes the first ones at format time.
  local scram=() user
  for user in $SCRAM_USERS; do
    scram+=(--add-scram "SCRAM-SHA-256=[name=${user%%=*},password=${user#*=}]")
    scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%=*},password=${user#*=}]")
  done
  log "formatting storage in $DATA_DIR (cluster id $cluster_id)"
  "$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="$TOOLS_LOG4J_PROPS" \
    kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$SERVER_PROPS" "${scram[@]}" \
    >"$LOG_DIR/format.log" 2>&1 || { cat "$LOG_DIR/format.log" >&2; die "formatting failed; see $LOG_DIR/format.log"; }
}

# Ready = the port answers and this run's log says the server finished starting. While waiting,
# a broker that died is reported at once instead of at the timeout (fd 4 is the real stderr,
# since wait_until silences the command it polls).
broker_ready() {
  if ! started_alive "$PIDFILE"; then
    rm -f "$PIDFILE"
    { tail -n 20 "$SERVER_LOG" "$CONSOLE_LOG" 2>/dev/null || true; } >&4
    die "the broker exited during startup; see $SERVER_LOG and $CONSOLE_LOG" 2>&4
  fi
  port_open "$PORT" && grep -q 'Kafka Server started' "$SERVER_LOG"
}

# The version the broker itself logs at start ("Kafka version: X" of its app-info), this run's.
reported_version() {
  sed -n '/Kafka version: /{s/.*Kafka version: \([^ ]*\).*/\1/p;q}' "$SERVER_LOG" 2>/dev/null || true
}

up() {
  if pid_alive "$PIDFILE"; then
    log "already running (pid $(cat "$PIDFILE")), nothing to do"
    return 0
  fi
  rm -f "$PIDFILE" "$VERSION_FILE"
  command -v "$JAVA" >/dev/null || die "java not found (need 17 or newer)"
  port_open "$PORT" && die "port $HOST:$PORT is taken by another process"
  port_open "$CONTROLLER_PORT" && die "port $HOST:$CONTROLLER_PORT is taken by another process"
  install
  write_config
  format_storage

  # A fresh log per run, so readiness and the version are read from this run only.
  local f
  for f in "$SERVER_LOG" "$CONSOLE_LOG"; do
    if [ -f "$f" ]; then mv -f "$f" "$f.prev"; fi
  done
  rm -f "$SERVER_LOG".[0-9]*
  local start=$SECONDS
  log "starting Kafka $VERSION node $NODE_ID on $HOST:$PORT (controller $CONTROLLER_PORT, heap $HEAP)"
  # setsid: own session, so the broker outlives the calling shell and its terminal. log4j's own
  # shutdown hook would stop logging halfway through the broker's shutdown, so it is off.
  setsid "$JAVA" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_PROPS" -Dkafka.logs.dir="$LOG_DIR" \
    -Dlog4j2.shutdownHookEnabled=false \
    -cp "$LIB_DIR/*" kafka.Kafka "$SERVER_PROPS" </dev/null >"$CONSOLE_LOG" 2>&1 &
  echo $! >"$PIDFILE"
  log "waiting for the broker (pid $(cat "$PIDFILE"), timeout ${START_TIMEOUT}s, log $SERVER_LOG)…"
  exec 4>&2
  wait_until "broker" "$START_TIMEOUT" "$SERVER_LOG" broker_ready
  exec 4>&-
  reported_version >"$VERSION_FILE"
  log "up in $((SECONDS - start))s: Kafka $(cat "$VERSION_FILE") on $HOST:$PORT"
}

status() {
  if pid_alive "$PIDFILE"; then
    local version
    version=$(cat "$VERSION_FILE" 2>/dev/null || true)
    [ -n "$version" ] || version=$(reported_version)
    echo "kafka: running (pid $(cat "$PIDFILE")) on $HOST:$PORT, version ${version:-unknown}"
    return 0
  fi
  echo "kafka: stopped"
  return 3
}

case "${1:-}" in
  up) up ;;
  down) stop_pidfile "$PIDFILE" && rm -f "$VERSION_FILE" ;;
  status) status ;;
  logs) shift; show_log "$@" ;;
  install) install ;;
  *) echo "usage: $0 up|down|status|logs [-f|N]|install" >&2; exit 2 ;;
esac
