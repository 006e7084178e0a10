#!/usr/bin/env bash
# Installs what the non-Rust benchmark peers need (see README.md): the Node
# packages pinned in node/package-lock.json and a Python venv with
# python/requirements.txt. Idempotent and quick when already done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in node npm python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup.sh: '$tool' is not installed; the benchmark peers need it" >&2
        exit 1
    fi
done

node_dir="$here/node"
if [[ ! -d "$node_dir/node_modules" || "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]]; then
    echo "setup.sh: npm ci in $node_dir"
    (cd "$node_dir" && npm ci --no-audit --no-fund)
    touch "$node_dir/node_modules"
else
    echo "setup.sh: node packages up to date"
fi

venv="$here/python/.venv"
stamp="$venv/.requirements-installed"
if [[ ! -f "$stamp" || "$here/python/requirements.txt" -nt "$stamp" ]]; then
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "setup.sh: python3 -m venv $venv"
        python3 -m venv "$venv"
    fi
    echo "setup.sh: pip install -r python/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
    touch "$stamp"
else
    echo "setup.sh: python venv up to date"
fi
