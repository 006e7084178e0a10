#!/usr/bin/env bash
# `make fuzz`: each target for $1 seconds (default 60), from the seeds in
# fuzz/seeds/<target> and the corpus it grows in fuzz/corpus/<target>.
# A crash stops the run; libFuzzer saves the input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "make fuzz: nightly Rust is missing: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
  echo "make fuzz: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 1
fi
for target in client_frame http_body; do
  mkdir -p "corpus/$target"
  echo "fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=70000
done
