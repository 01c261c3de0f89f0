#!/usr/bin/env bash
# The one test command (`npm test` runs it):
#   1. npm ci when node_modules is missing (ONNXRUNTIME_NODE_INSTALL=skip: no download of CUDA parts)
#   2. typecheck (tsc --noEmit), lint (eslint) and the import rules (dependency-cruiser, .dependency-cruiser.cjs):
#      any failing fails the run
#   3. scripts/infra.sh up: real Kafka and Neo4j on loopback (kept if they were already running)
#   4. the Python training path's tests (python/tests, pytest in .venv, set up by scripts/setup-python.sh)
#   5. node's test runner over test/unit/**/*.test.ts and test/integration/**/*.test.ts (the review page's
#      browser tests first get Debian's chromium from scripts/setup-browser.sh)
#   6. stops the servers this run started, and exits with the runner's exit code (either runner failing
#      fails the run)
#
#   scripts/test.sh                          everything
#   scripts/test.sh test/unit/knowledge ...  only the test files under these paths (files or folders;
#                                            paths under python/ go to pytest)
#
# Environment: RMBERT_TEST_CONCURRENCY (test files run at once, default 2),
# RMBERT_TEST_TIMEOUT_MS (per test, default 900000), RMBERT_TEST_SKIP_CHECKS=1 (skip typecheck,
# lint and import rules, for a quick local loop), plus the port variables of scripts/infra.sh.
# The runner's summary is the last thing printed: CI reads it.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
INFRA=$ROOT/scripts/infra.sh
STATE_DIR=${RMBERT_INFRA_DIR:-$ROOT/.infra}
mkdir -p "$STATE_DIR/logs"
INFRA_DOWN_LOG=$STATE_DIR/logs/test-infra-down.log

say() { printf 'test: %s\n' "$*"; }

# ---- which test files
files=()
python_targets=()
if (($# > 0)); then
  for target in "$@"; do
    if [[ $target == python* ]]; then
      [[ -e $target ]] || { say "no such file or folder: $target" >&2; exit 2; }
      python_targets+=("$target")
    elif [[ -d $target ]]; then
      while IFS= read -r f; do files+=("$f"); done < <(find "$target" -type f -name '*.test.ts' | sort)
    elif [[ -f $target ]]; then
      files+=("$target")
    else
      say "no such file or folder: $target" >&2
      exit 2
    fi
  done
else
  while IFS= read -r f; do files+=("$f"); done < <(find test/unit test/integration -type f -name '*.test.ts' 2> /dev/null | sort)
  python_targets=(python/tests)
fi
if ((${#files[@]} == 0 && ${#python_targets[@]} == 0)); then
  say "no test files found${*:+ under $*}" >&2
  exit 2
fi

needs_infra=0
for f in "${files[@]}"; do
  [[ $f == *test/integration/* ]] && needs_infra=1
done

# ---- dependencies, typecheck, lint
if [[ ! -d node_modules ]]; then
  say "node_modules is missing: npm ci"
  # onnxruntime-node's postinstall would download CUDA providers the stage does not use (see README).
  ONNXRUNTIME_NODE_INSTALL=${ONNXRUNTIME_NODE_INSTALL:-skip} npm ci || exit 1
fi
if [[ ${RMBERT_TEST_SKIP_CHECKS:-0} != 1 ]]; then
  (($# > 0)) && say "typecheck, lint and import rules of the whole project first (RMBERT_TEST_SKIP_CHECKS=1 skips them)"
  say "typecheck: npx tsc -p tsconfig.json --noEmit"
  npx tsc -p tsconfig.json --noEmit || { say "typecheck failed" >&2; exit 1; }
  say "lint: npx eslint ."
  npx eslint . || { say "lint failed" >&2; exit 1; }
  say "import rules: npx depcruise src --config .dependency-cruiser.cjs"
  npx depcruise src --config .dependency-cruiser.cjs || { say "import rules broken (see the rule names above and .dependency-cruiser.cjs)" >&2; exit 1; }
fi

# ---- servers
started=()
stop_started() {
  local name
  ((${#started[@]})) || return 0
  for name in "${started[@]}"; do
    "$INFRA" down "$name" >> "$INFRA_DOWN_LOG" 2>&1 || printf 'test: stopping %s failed, see %s\n' "$name" "$INFRA_DOWN_LOG" >&2
  done
  started=()
}
trap 'stop_started' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((needs_infra)); then
  for name in kafka neo4j; do
    "$INFRA" status "$name" > /dev/null 2>&1 || started+=("$name")
  done
  if ! "$INFRA" up; then
    say "the local servers did not start (see above; scripts/infra.sh logs shows their logs)" >&2
    exit 1
  fi
fi
# The review page's browser tests drive Debian's chromium (scripts/setup-browser.sh installs it).
for f in "${files[@]}"; do
  if [[ $f == *test/integration/review/* ]]; then
    RMBERT_TEST_CHROMIUM=$(bash "$ROOT/scripts/setup-browser.sh" | tail -n 1) || { say "the browser for the review page's tests could not be set up (see above)" >&2; exit 1; }
    export RMBERT_TEST_CHROMIUM
    break
  fi
done
# Only the test suite's names: the tests give each command the settings they mean it to have.
eval "$("$INFRA" env | grep '^export RMBERT_TEST_')"
export RMBERT_TEST_KAFKA_BROKERS RMBERT_TEST_NEO4J_URI RMBERT_TEST_NEO4J_USER RMBERT_TEST_NEO4J_PASSWORD

# ---- Python tests (the training path), before node's runner so that its summary stays last
python_status=0
if ((${#python_targets[@]} > 0)); then
  say "python: scripts/setup-python.sh, then pytest ${python_targets[*]}"
  if python=$(bash "$ROOT/scripts/setup-python.sh" | tail -n 1); then
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$python" -m pytest -q "${python_targets[@]}" || python_status=$?
  else
    say "the Python environment could not be set up (see above)" >&2
    python_status=1
  fi
  ((python_status == 0)) || say "python tests failed (exit $python_status)" >&2
fi

# ---- tests
status=0
if ((${#files[@]} > 0)); then
  say "running ${#files[@]} test file(s)"
  node --import tsx --test --test-reporter=spec \
    --test-concurrency="${RMBERT_TEST_CONCURRENCY:-2}" \
    --test-timeout="${RMBERT_TEST_TIMEOUT_MS:-900000}" \
    "${files[@]}"
  status=$?
fi
# A Python failure was reported above; it fails the run without printing after the runner's summary.
((status == 0 && python_status != 0)) && status=1

# Quietly, so that the runner's summary stays the last thing printed.
stop_started
exit $status
