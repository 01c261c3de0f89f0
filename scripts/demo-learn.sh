#!/usr/bin/env bash
# npm run demo:learn: the learning loop end to end (benchmarks/feedback-loop.ts): the stage, the review
# page with a scripted reviewer, a trainer round, promotion and swap, the error before and after.
# Starts Kafka with scripts/infra.sh when it is not running (the stage runs with its embedded graph, so
# Neo4j is not needed) and stops it again if it started it. Extra arguments go to the script.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

started=()
cleanup() {
  local status=$?
  for service in "${started[@]}"; do
    bash scripts/infra.sh down "$service" || echo "demo:learn: could not stop $service; stop it with: bash scripts/infra.sh down $service" >&2
  done
  exit "$status"
}
trap cleanup EXIT

if bash scripts/infra.sh status kafka > /dev/null 2>&1; then
  echo "demo:learn: kafka is already running; it will be left running" >&2
else
  started+=(kafka)
  bash scripts/infra.sh up kafka
fi
node --import tsx benchmarks/feedback-loop.ts "$@"
