#!/usr/bin/env bash
# Runs the web client's tests. First the unit tests of tests/unit/ (the model
# and the connection's pure parts): they need only node, so they run wherever
# node does, Chromium or not. Then the browser tests: playwright-core drives
# Debian's Chromium against the real chat-server binary on loopback. Those
# skip (exit 0) with a clear message when Chromium or the npm packages are
# missing on a developer's machine; CI (.ci/run) installs both, so there they
# always run.
#
# With arguments (paths relative to web/), runs just those files: unit ones
# first, then browser ones.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED web tests: node is needed (apt-get install -y nodejs npm)"
  exit 0
fi

unit=()
browser=()
if [ $# -eq 0 ]; then
  unit=(tests/unit/*.test.js)
  browser=(tests/*.test.js)
else
  for file in "$@"; do
    case "$file" in
      tests/unit/*) unit+=("$file") ;;
      *) browser+=("$file") ;;
    esac
  done
fi

if [ ${#unit[@]} -gt 0 ]; then
  node --test --test-timeout=30000 "${unit[@]}"
  echo "unit tests done"
fi
if [ ${#browser[@]} -eq 0 ]; then exit 0; fi

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "SKIPPED browser tests: chromium not found at $chromium (apt-get install -y chromium, or set CHROMIUM)"
  exit 0
fi

if [ ! -d node_modules/playwright-core ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "SKIPPED browser tests: npm is needed (apt-get install -y npm)"
    exit 0
  fi
  echo "installing the pinned npm packages (npm ci in web/)"
  npm ci --no-audit --no-fund
fi

export CHROMIUM="$chromium"
server_bin="${CHAT_SERVER_BIN:-../target/debug/chat-server}"
if [ ! -x "$server_bin" ]; then
  echo "error: $server_bin is missing: run 'cargo build --bin chat-server' first (or set CHAT_SERVER_BIN)" >&2
  exit 1
fi
export CHAT_SERVER_BIN="$(cd "$(dirname "$server_bin")" && pwd)/$(basename "$server_bin")"

mkdir -p tests/output
# One file at a time: each starts its own servers and Chromium, and two cores
# are plenty for one.
node --test --test-concurrency=1 --test-timeout=120000 "${browser[@]}"
echo "browser tests done; screenshots in web/tests/output/"
