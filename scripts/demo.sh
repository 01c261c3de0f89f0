#!/usr/bin/env bash
# npm run demo: the streaming stage end to end on the local servers.
# Starts Kafka and Neo4j with scripts/infra.sh when they are not running, runs `rmbert demo` (graph
# load, topics, sample EMR records in, entities out, stage stopped, topics deleted), then stops the
# servers it started, so they are left as they were found. Extra arguments go to `rmbert demo`
# (see `node bin/rmbert.js demo --help`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

started=()
cleanup() {
  local status=$?
  for service in "${started[@]}"; do
    bash scripts/infra.sh down "$service" || echo "demo: could not stop $service; stop it with: bash scripts/infra.sh down $service" >&2
  done
  exit "$status"
}
trap cleanup EXIT

for service in kafka neo4j; do
  if bash scripts/infra.sh status "$service" > /dev/null 2>&1; then
    echo "demo: $service is already running; it will be left running" >&2
  else
    echo "demo: starting $service (first start resolves its jars from Maven Central; later starts take about a minute)" >&2
    started+=("$service")
    bash scripts/infra.sh up "$service"
  fi
done

# Run through `node --import tsx` (registers tsx for ESM and CommonJS alike, which TensorFlow.js needs).
node --import tsx src/cli/main.ts demo "$@"
