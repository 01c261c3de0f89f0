#!/usr/bin/env bash
# Local infrastructure for development and tests: a real Apache Kafka 3.9 (KRaft, one node that is
# broker and controller) and a real Neo4j Community 5.26 (embedded behind a small launcher, Bolt
# connector), both on loopback, both from Maven Central. State (resolved classpaths, data, logs,
# PID files) lives in .infra/.
#
#   scripts/infra.sh up     [kafka|neo4j]     start (what is not running yet) and wait until ready
#   scripts/infra.sh down   [kafka|neo4j]     stop by PID: SIGTERM, then SIGKILL after a grace period
#   scripts/infra.sh status [kafka|neo4j]     exit 0 when every named server is running
#   scripts/infra.sh logs   [kafka|neo4j] [-f]
#   scripts/infra.sh clean                    stop, then delete data and logs (keeps resolved classpaths)
#   scripts/infra.sh env                      print the addresses as shell exports, under the names
#                                             rmbert reads (RMBERT_KAFKA_BROKERS, RMBERT_NEO4J_*) and
#                                             the tests read (RMBERT_TEST_*): eval "$(scripts/infra.sh env)"
#
# Environment (all optional):
#   RMBERT_KAFKA_PORT (19092)  RMBERT_KAFKA_CONTROLLER_PORT (19093)  RMBERT_NEO4J_PORT (17687)
#   RMBERT_INFRA_NEO4J_PASSWORD (rmbert-local; the password of user neo4j)
#   RMBERT_INFRA_DIR (.infra)  RMBERT_INFRA_READY_TIMEOUT (seconds, 180)  RMBERT_INFRA_STOP_GRACE (seconds, 30)
#   RMBERT_JAVA_HOME (a Java 17 or 21; default /usr/lib/jvm/java-17-openjdk-amd64 when present)
#   RMBERT_KAFKA_JVM_OPTS, RMBERT_NEO4J_JVM_OPTS (extra JVM flags for each server)
#   RMBERT_INFRA_CDS=0 (no class-data archive: by default the first clean stop writes one, which
#     makes later starts about twice as fast)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${RMBERT_INFRA_DIR:-$ROOT/.infra}
KAFKA_PORT=${RMBERT_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${RMBERT_KAFKA_CONTROLLER_PORT:-19093}
NEO4J_PORT=${RMBERT_NEO4J_PORT:-17687}
NEO4J_USER=neo4j
NEO4J_PASSWORD=${RMBERT_INFRA_NEO4J_PASSWORD:-rmbert-local}
READY_TIMEOUT=${RMBERT_INFRA_READY_TIMEOUT:-180}
STOP_GRACE=${RMBERT_INFRA_STOP_GRACE:-30}

LOG_DIR=$STATE_DIR/logs
KAFKA_DIR=$STATE_DIR/kafka
NEO4J_DIR=$STATE_DIR/neo4j
KAFKA_PID_FILE=$KAFKA_DIR/kafka.pid
NEO4J_PID_FILE=$NEO4J_DIR/neo4j.pid
KAFKA_LOG=$LOG_DIR/kafka.log
NEO4J_LOG=$LOG_DIR/neo4j.log
KAFKA_PROPS=$KAFKA_DIR/server.properties
NEO4J_HOME=$NEO4J_DIR/home
NEO4J_CONF=$NEO4J_DIR/neo4j.conf
NEO4J_READY_FILE=$NEO4J_DIR/ready

# Both JVMs share 2 cores with the tests: small heaps, the serial collector, C1 only (the servers
# do little work in tests; C2 compiling in the background only competes with the tests for CPU).
COMMON_JVM_OPTS=(-XX:ActiveProcessorCount=2 -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dfile.encoding=UTF-8)
KAFKA_JVM_OPTS=(-Xms128m -Xmx512m "${COMMON_JVM_OPTS[@]}"
  "-Dlog4j.configuration=file:$ROOT/infra/kafka/log4j.properties" "-Dkafka.logs.dir=$LOG_DIR")
# Neo4j's own flags (what its server launcher adds) plus a heap for the Bolt workers and Cypher.
NEO4J_JVM_OPTS=(-Xms128m -Xmx768m "${COMMON_JVM_OPTS[@]}"
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED -Dlog4j2.disable.jmx=true
  -Djdk.nio.maxCachedBufferSize=1024 -Dio.netty.tryReflectionSetAccessible=true -XX:-OmitStackTraceInFastThrow)
# shellcheck disable=SC2206 # word splitting of the user's extra flags is intended
[[ -n ${RMBERT_KAFKA_JVM_OPTS:-} ]] && KAFKA_JVM_OPTS+=(${RMBERT_KAFKA_JVM_OPTS})
# shellcheck disable=SC2206
[[ -n ${RMBERT_NEO4J_JVM_OPTS:-} ]] && NEO4J_JVM_OPTS+=(${RMBERT_NEO4J_JVM_OPTS})

log() { printf 'infra: %s\n' "$*"; }
warn() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$1" >&2; exit "${2:-1}"; }
now_ms() { date +%s%3N; }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# ---------------------------------------------------------------- Java and classpaths

java_major() { # JAVA_HOME -> major version, or nothing
  local release=$1/release
  if [[ -r $release ]]; then
    sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$release"
  else
    "$1/bin/java" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'
  fi
}

select_java() {
  local candidates=() c major
  [[ -n ${RMBERT_JAVA_HOME:-} ]] && candidates+=("$RMBERT_JAVA_HOME")
  candidates+=(/usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-17-openjdk)
  [[ -n ${JAVA_HOME:-} ]] && candidates+=("$JAVA_HOME")
  if command -v java > /dev/null; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in "${candidates[@]}"; do
    [[ -x $c/bin/java ]] || continue
    major=$(java_major "$c")
    # Neo4j 5.26 runs on Java 17 and 21 only; Kafka 3.9 runs on both.
    if [[ $major == 17 || $major == 21 ]]; then
      JAVA_HOME=$c
      JAVA=$c/bin/java
      export JAVA_HOME
      return
    fi
  done
  die "no Java 17 or 21 found (Neo4j 5.26 needs one of them). Install openjdk-17-jdk-headless or set RMBERT_JAVA_HOME."
}

jars_exist() { # classpath file -> 0 when every entry is still on disk (a wiped ~/.m2 makes a cache stale)
  local entry
  while IFS= read -r -d ':' entry; do
    [[ -e $entry ]] || return 1
  done < <(tr -d '\n' < "$1"; printf ':')
}

# resolve_classpath NAME: sets CLASSPATH_FILE to .infra/classpath/NAME-<pom hash>.txt, resolving it
# with Maven when missing or stale.
resolve_classpath() {
  local name=$1 pom=$ROOT/infra/$1/pom.xml hash file started
  hash=$(sha256sum "$pom" | cut -c1-16)
  file=$STATE_DIR/classpath/$name-$hash.txt
  CLASSPATH_FILE=$file
  if [[ -s $file ]] && jars_exist "$file"; then
    return
  fi
  command -v mvn > /dev/null || die "Maven (mvn) is needed to fetch the $name jars from Maven Central: apt-get install maven"
  mkdir -p "$STATE_DIR/classpath" "$LOG_DIR"
  log "resolving the $name classpath with Maven (the first time this downloads the jars from Maven Central) ..."
  started=$(now_ms)
  if ! mvn -B -q -Dstyle.color=never -f "$pom" dependency:build-classpath \
      -Dmdep.includeScope=runtime -Dmdep.outputFile="$file.tmp" > "$LOG_DIR/maven-$name.log" 2>&1; then
    tail -n 20 "$LOG_DIR/maven-$name.log" >&2
    die "Maven could not resolve $pom (full output: $LOG_DIR/maven-$name.log)"
  fi
  mv "$file.tmp" "$file"
  log "$name classpath resolved in $(secs_since "$started") s ($(tr ':' '\n' < "$file" | wc -l) jars)"
}

# ---------------------------------------------------------------- processes and ports

cmdline_of() {
  if [[ -r /proc/$1/cmdline ]]; then
    tr '\0' ' ' < "/proc/$1/cmdline"
  else
    ps -ww -p "$1" -o args= 2> /dev/null || true
  fi
}

# service_state NAME -> sets STATE (running|stale|stopped) and PID.
# A PID counts only if that process is still our server (its command line names our state dir),
# so a PID reused by an unrelated process reads as stale, never as running.
service_state() {
  local pid_file marker
  case $1 in
    kafka) pid_file=$KAFKA_PID_FILE marker=$KAFKA_PROPS ;;
    neo4j) pid_file=$NEO4J_PID_FILE marker="--home $NEO4J_HOME" ;;
  esac
  PID=
  if [[ ! -f $pid_file ]]; then
    STATE=stopped
    return
  fi
  PID=$(tr -dc '0-9' < "$pid_file")
  if [[ -n $PID ]] && kill -0 "$PID" 2> /dev/null; then
    if [[ $(cmdline_of "$PID") == *"$marker"* ]]; then
      STATE=running
    else
      STATE=stale
      STALE_REASON="pid $PID now belongs to another program"
    fi
  else
    STATE=stale
    STALE_REASON="pid ${PID:-?} is not running"
  fi
}

pid_file_of() { case $1 in kafka) echo "$KAFKA_PID_FILE" ;; neo4j) echo "$NEO4J_PID_FILE" ;; esac; }
log_of() { case $1 in kafka) echo "$KAFKA_LOG" ;; neo4j) echo "$NEO4J_LOG" ;; esac; }

clean_stale() { # NAME: drop a PID file whose process is gone (a crash, a reboot, a kill -9)
  service_state "$1"
  if [[ $STATE == stale ]]; then
    log "$1: removing stale PID file $(pid_file_of "$1") ($STALE_REASON)"
    rm -f "$(pid_file_of "$1")"
    [[ $1 == neo4j ]] && rm -f "$NEO4J_READY_FILE"
    finish_cds "$1" 0
    STATE=stopped
  fi
  return 0
}

port_in_use() { # PORT -> 0 when something accepts connections on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2> /dev/null
}

who_listens() { # PORT -> a short description of the listener, when ss can tell
  if command -v ss > /dev/null; then
    ss -ltnpH "sport = :$1" 2> /dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n 1
  fi
}

require_free_port() { # PORT WHAT ENV_NAME
  if port_in_use "$1"; then
    local who
    who=$(who_listens "$1")
    die "port $1 ($2) is already in use by another process${who:+ ($who)}. Stop it, or choose another port with $3=<port>." 3
  fi
}

# launch NAME PID_FILE LOG COMMAND...: runs COMMAND in its own session (so a Ctrl-C in the terminal
# that started it does not reach it), stdout and stderr to LOG, its PID written by itself.
launch() {
  local name=$1 pid_file=$2 log_file=$3
  shift 3
  [[ -f $log_file ]] && mv -f "$log_file" "$log_file.previous"
  rm -f "$pid_file"
  local runner=()
  command -v setsid > /dev/null && runner=(setsid)
  "${runner[@]}" bash -c 'echo $$ > "$1"; shift; exec "$@"' "rmbert-$name" "$pid_file" "$@" \
    > "$log_file" 2>&1 < /dev/null &
  local i
  for i in $(seq 1 50); do
    [[ -s $pid_file ]] && return 0
    sleep 0.1
  done
  die "$name did not start (no PID file); see $log_file"
}

render() { # TEMPLATE OUT KEY=VALUE...
  local template=$1 out=$2 expr=() kv
  shift 2
  for kv in "$@"; do
    expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
  done
  sed "${expr[@]}" "$template" > "$out.tmp"
  mv "$out.tmp" "$out"
}

random_cluster_id() { # a Kafka Uuid: 16 random bytes, URL-safe base64 without padding
  head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

# Class-data sharing: most of a server's start is loading and verifying thousands of classes
# (measured here: Neo4j ready in ~25-30 s with an archive against ~55 s without, 2 cores under load).
# The first start records the classes it loads and the JVM writes them to an archive when it exits
# cleanly (on `down`, once); later starts map that archive. A stale or unusable archive is ignored by
# the JVM. Off in CI (a fresh machine starts each server once: writing the archive would only cost)
# and with RMBERT_INFRA_CDS=0.
cds_flags() { # NAME JVM_OPTS... -> sets CDS_FLAGS
  local name=$1 key archive
  shift
  CDS_FLAGS=()
  [[ ${RMBERT_INFRA_CDS:-1} == 0 || ${CI:-} == true ]] && return 0
  mkdir -p "$STATE_DIR/cds"
  key=$(printf '%s\n' "$JAVA" "$(java_major "$JAVA_HOME")" "$CLASSPATH_FILE" "$@" | sha256sum | cut -c1-16)
  archive=$STATE_DIR/cds/$name-$key.jsa
  rm -f "$STATE_DIR/cds/$name.writing"
  if [[ -s $archive ]]; then
    CDS_FLAGS=("-XX:SharedArchiveFile=$archive")
  else
    rm -f "$STATE_DIR/cds/$name"-*.jsa "$STATE_DIR/cds/$name"-*.partial
    CDS_FLAGS=("-XX:ArchiveClassesAtExit=$archive.partial")
    printf '%s\n' "$archive" > "$STATE_DIR/cds/$name.writing"
  fi
}

# After a server exited: keep the archive it wrote, or drop a partial one (it was killed).
finish_cds() { # NAME CLEAN(0|1)
  local marker=$STATE_DIR/cds/$1.writing archive
  [[ -f $marker ]] || return 0
  archive=$(< "$marker")
  if [[ $2 == 1 && -s $archive.partial ]]; then
    mv -f "$archive.partial" "$archive"
    log "$1: wrote a class-data archive ($(du -m "$archive" | cut -f1) MB); later starts are faster"
  else
    rm -f "$archive.partial"
  fi
  rm -f "$marker"
}

# ---------------------------------------------------------------- start

start_kafka() {
  resolve_classpath kafka
  local cp started
  cp=$(< "$CLASSPATH_FILE")
  mkdir -p "$KAFKA_DIR/data" "$LOG_DIR"
  render "$ROOT/infra/kafka/server.properties.template" "$KAFKA_PROPS" \
    KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" KAFKA_DATA_DIR="$KAFKA_DIR/data"
  if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
    started=$(now_ms)
    if ! "$JAVA" "${KAFKA_JVM_OPTS[@]}" -cp "$cp" kafka.tools.StorageTool format \
        --cluster-id "$(random_cluster_id)" --config "$KAFKA_PROPS" --ignore-formatted \
        > "$LOG_DIR/kafka-format.log" 2>&1; then
      cat "$LOG_DIR/kafka-format.log" >&2
      die "formatting the Kafka storage failed (see $LOG_DIR/kafka-format.log)"
    fi
    log "kafka: storage formatted in $(secs_since "$started") s"
  fi
  KAFKA_LAUNCHED_AT=$(now_ms)
  cds_flags kafka "${KAFKA_JVM_OPTS[@]}"
  launch kafka "$KAFKA_PID_FILE" "$KAFKA_LOG" "$JAVA" "${KAFKA_JVM_OPTS[@]}" "${CDS_FLAGS[@]}" \
    -cp "$cp" kafka.Kafka "$KAFKA_PROPS"
  log "kafka: started (pid $(< "$KAFKA_PID_FILE"), log $KAFKA_LOG)"
}

start_neo4j() {
  resolve_classpath neo4j
  local cp
  cp=$(< "$CLASSPATH_FILE")
  mkdir -p "$NEO4J_HOME" "$LOG_DIR"
  render "$ROOT/infra/neo4j/neo4j.conf.template" "$NEO4J_CONF" NEO4J_PORT="$NEO4J_PORT"
  rm -f "$NEO4J_READY_FILE"
  NEO4J_LAUNCHED_AT=$(now_ms)
  cds_flags neo4j "${NEO4J_JVM_OPTS[@]}"
  RMBERT_INFRA_NEO4J_PASSWORD=$NEO4J_PASSWORD launch neo4j "$NEO4J_PID_FILE" "$NEO4J_LOG" \
    "$JAVA" "${NEO4J_JVM_OPTS[@]}" "${CDS_FLAGS[@]}" -cp "$cp" "$ROOT/infra/neo4j/Launcher.java" \
    --home "$NEO4J_HOME" --config "$NEO4J_CONF" --ready-file "$NEO4J_READY_FILE"
  log "neo4j: started (pid $(< "$NEO4J_PID_FILE"), log $NEO4J_LOG)"
}

cmd_up() {
  local services=("$@") name started_any=() wait_args=()
  local up_started
  up_started=$(now_ms)
  [[ -d $ROOT/node_modules/kafkajs && -d $ROOT/node_modules/neo4j-driver && -d $ROOT/node_modules/tsx ]] \
    || die "node_modules is missing (the readiness check uses kafkajs and neo4j-driver): run npm ci first"
  select_java
  local to_start=()
  for name in "${services[@]}"; do
    clean_stale "$name"
    if [[ $STATE == running ]]; then
      log "$name: already running (pid $PID)"
    else
      to_start+=("$name")
    fi
  done
  # Check every port and resolve every classpath before launching anything, so that a busy port
  # or a Maven failure leaves nothing half started.
  for name in "${to_start[@]}"; do
    case $name in
      kafka)
        require_free_port "$KAFKA_PORT" "Kafka listener" RMBERT_KAFKA_PORT
        require_free_port "$KAFKA_CONTROLLER_PORT" "Kafka controller" RMBERT_KAFKA_CONTROLLER_PORT ;;
      neo4j) require_free_port "$NEO4J_PORT" "Neo4j Bolt" RMBERT_NEO4J_PORT ;;
    esac
  done
  for name in "${to_start[@]}"; do resolve_classpath "$name"; done
  for name in "${to_start[@]}"; do
    "start_$name"
    started_any+=("$name")
  done
  for name in "${services[@]}"; do
    service_state "$name"
    case $name in
      kafka) wait_args+=(--kafka "127.0.0.1:$KAFKA_PORT" --kafka-pid "$PID" --kafka-log "$KAFKA_LOG"
               --kafka-launched-at "${KAFKA_LAUNCHED_AT:-0}") ;;
      neo4j) wait_args+=(--neo4j "bolt://127.0.0.1:$NEO4J_PORT" --neo4j-pid "$PID" --neo4j-log "$NEO4J_LOG"
               --neo4j-ready-file "$NEO4J_READY_FILE" --neo4j-launched-at "${NEO4J_LAUNCHED_AT:-0}") ;;
    esac
  done
  if ! RMBERT_INFRA_NEO4J_USER=$NEO4J_USER RMBERT_INFRA_NEO4J_PASSWORD=$NEO4J_PASSWORD \
      node --import tsx "$ROOT/scripts/wait-ready.ts" --timeout "$READY_TIMEOUT" "${wait_args[@]}"; then
    if ((${#started_any[@]})); then
      warn "stopping what this command started (${started_any[*]}); the logs stay for a look"
      for name in "${started_any[@]}"; do stop_service "$name" > /dev/null 2>&1 || true; done
    fi
    exit 1
  fi
  if ((${#started_any[@]})); then
    # Only the servers this command was asked for: the other one may not be running at all.
    local where=()
    for name in "${services[@]}"; do
      case $name in
        kafka) where+=("kafka 127.0.0.1:$KAFKA_PORT") ;;
        neo4j) where+=("neo4j bolt://127.0.0.1:$NEO4J_PORT (user $NEO4J_USER)") ;;
      esac
    done
    log "up in $(secs_since "$up_started") s: $(IFS=,; printf '%s' "${where[*]}" | sed 's/,/, /g')"
  fi
}

# ---------------------------------------------------------------- stop, status, logs

stop_service() { # NAME
  local name=$1 pid_file started i
  pid_file=$(pid_file_of "$name")
  service_state "$name"
  case $STATE in
    stopped) log "$name: not running"; return 0 ;;
    stale) clean_stale "$name"; return 0 ;;
  esac
  started=$(now_ms)
  local grace=$STOP_GRACE clean=1
  if [[ -f $STATE_DIR/cds/$name.writing ]]; then
    # Writing the class-data archive at exit takes up to a minute on a busy 2-core machine.
    grace=$((STOP_GRACE + 180))
    log "$name: stopping; the JVM writes its class-data archive on the way out (once)"
  fi
  kill -TERM "$PID" 2> /dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$PID" 2> /dev/null || break
    sleep 0.1
  done
  if kill -0 "$PID" 2> /dev/null; then
    warn "$name: still running ${grace} s after SIGTERM, sending SIGKILL (pid $PID)"
    kill -KILL "$PID" 2> /dev/null || true
    while kill -0 "$PID" 2> /dev/null; do sleep 0.1; done
    clean=0
  fi
  finish_cds "$name" "$clean"
  rm -f "$pid_file"
  [[ $name == neo4j ]] && rm -f "$NEO4J_READY_FILE"
  log "$name: stopped in $(secs_since "$started") s (pid $PID)"
}

cmd_down() {
  local name
  for name in "$@"; do stop_service "$name"; done
}

cmd_status() {
  local name rc=0 port
  for name in "$@"; do
    service_state "$name"
    case $name in kafka) port=$KAFKA_PORT ;; neo4j) port=$NEO4J_PORT ;; esac
    case $STATE in
      running) log "$name: running (pid $PID, 127.0.0.1:$port, log $(log_of "$name"))" ;;
      stale) log "$name: not running (stale PID file $(pid_file_of "$name"): $STALE_REASON)"; rc=3 ;;
      stopped)
        if port_in_use "$port"; then
          log "$name: not running; port $port is used by another process"
        else
          log "$name: not running"
        fi
        rc=3 ;;
    esac
  done
  return $rc
}

cmd_logs() {
  local follow=() services=() arg
  for arg in "$@"; do
    case $arg in
      -f | --follow) follow=(-F) ;;
      kafka | neo4j) services+=("$arg") ;;
      *) die "logs: unknown argument $arg (expected kafka, neo4j or -f)" 2 ;;
    esac
  done
  ((${#services[@]})) || services=(kafka neo4j)
  local files=() name
  for name in "${services[@]}"; do
    [[ -f $(log_of "$name") ]] && files+=("$(log_of "$name")")
  done
  ((${#files[@]})) || die "no logs yet in $LOG_DIR"
  tail -n 100 "${follow[@]}" "${files[@]}"
}

cmd_clean() {
  cmd_down kafka neo4j
  rm -rf "$KAFKA_DIR" "$NEO4J_DIR" "$LOG_DIR"
  log "removed data and logs under $STATE_DIR (the resolved classpaths are kept)"
}

cmd_env() {
  # The names the rmbert commands read (serve, kg, demo, train), then the test suite's.
  cat << EOF
export RMBERT_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export RMBERT_NEO4J_URI=bolt://127.0.0.1:$NEO4J_PORT
export RMBERT_NEO4J_USER=$NEO4J_USER
export RMBERT_NEO4J_PASSWORD=$NEO4J_PASSWORD
export RMBERT_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export RMBERT_TEST_NEO4J_URI=bolt://127.0.0.1:$NEO4J_PORT
export RMBERT_TEST_NEO4J_USER=$NEO4J_USER
export RMBERT_TEST_NEO4J_PASSWORD=$NEO4J_PASSWORD
EOF
}

# ---------------------------------------------------------------- main

services_from() { # ARGS... -> SERVICES (default: both)
  SERVICES=()
  local arg
  for arg in "$@"; do
    case $arg in
      kafka | neo4j) SERVICES+=("$arg") ;;
      *) die "unknown server '$arg' (expected kafka or neo4j)" 2 ;;
    esac
  done
  ((${#SERVICES[@]})) || SERVICES=(kafka neo4j)
}

command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
  up) services_from "$@"; mkdir -p "$STATE_DIR"; cmd_up "${SERVICES[@]}" ;;
  down) services_from "$@"; cmd_down "${SERVICES[@]}" ;;
  status) services_from "$@"; cmd_status "${SERVICES[@]}" ;;
  logs) cmd_logs "$@" ;;
  clean) cmd_clean ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  '') usage >&2; exit 2 ;;
  *) printf 'infra: unknown command "%s"\n\n' "$command" >&2; usage >&2; exit 2 ;;
esac
