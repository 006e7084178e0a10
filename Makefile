# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test lint fmt check build clean bench

CARGO ?= cargo
# Extra flags for the server, e.g. `make run ARGS="--tls"`.
ARGS ?=

## run: start chat-server on its embedded defaults (http://127.0.0.1:8080, data in ./data)
run:
	$(CARGO) run --bin chat-server -- $(ARGS)

## test: every test of the workspace (unit, protocol, integration over loopback), then
## the browser client in headless Chromium (web/tests/run.sh; skipped, with a note, without Chromium)
test:
	$(CARGO) test --workspace
	$(CARGO) build --workspace --bins
	bash web/tests/run.sh

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## check: what CI runs
check: lint test

## bench: benchmarks in release mode; results in bench/results/ (see BENCHMARKS.md)
bench:
	$(CARGO) run --release -p chat-bench --bin durability -- bench/results/durability.md

build:
	$(CARGO) build --workspace

clean:
	$(CARGO) clean
