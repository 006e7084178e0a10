#!/usr/bin/env bash
# Runs the browser tests: playwright-core drives Debian's Chromium against the
# real chat-server binary on loopback. Skips (exit 0) with a clear message when
# Chromium or the npm packages are missing on a developer's machine; CI
# (.ci/run) installs both, so there they always run.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "SKIPPED browser tests: chromium not found at $chromium (apt-get install -y chromium, or set CHROMIUM)"
  exit 0
fi

if [ ! -d node_modules/playwright-core ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "SKIPPED browser tests: node and npm are needed (apt-get install -y nodejs npm)"
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
if [ $# -eq 0 ]; then set -- tests/*.test.js; fi
node --test --test-concurrency=1 --test-timeout=120000 "$@"
echo "browser tests done; screenshots in web/tests/output/"
