#!/usr/bin/env bash
# The headless browser of the review page's browser tests (test/integration/review), idempotent:
# Debian's chromium package (never a browser downloaded by puppeteer or playwright: the tests drive it
# with puppeteer-core, which downloads nothing). Needs root for apt-get the first time.
# Prints, last, the browser executable to use (RMBERT_TEST_CHROMIUM overrides it).
set -euo pipefail
BROWSER=${RMBERT_TEST_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$BROWSER" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup-browser.sh: needs root to apt-get install chromium (or set RMBERT_TEST_CHROMIUM to a Chromium executable)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
fi
echo "$BROWSER"
