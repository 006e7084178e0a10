# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run cluster test lint fmt check build clean schema fuzz bench bench-quick bench-build bench-durability

CARGO ?= cargo
# Extra flags for the server, e.g. `make run ARGS="--tls"`.
ARGS ?=

## run: start chat-server on its embedded defaults (http://127.0.0.1:8080, data in ./data)
run:
	$(CARGO) run --bin chat-server -- $(ARGS)

## cluster: three chat-server nodes on the local PostgreSQL and Redis behind HAProxy
## on http://127.0.0.1:8080 (Ctrl-C stops them all); see docs/cluster.md
cluster:
	$(CARGO) build --bin chat-server
	bash deploy/cluster/run.sh

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

## schema: regenerate docs/schema/*.json from the protocol crate (after changing an event)
schema:
	CHAT_UPDATE_SCHEMA=1 $(CARGO) test -p chat-protocol --test schema

## fuzz: run each fuzz target (fuzz/) for FUZZ_SECONDS (default 60) with cargo-fuzz;
## needs nightly Rust and cargo-fuzz (`rustup toolchain install nightly`,
## `cargo install cargo-fuzz`). Not part of `make test`.
FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

## fmt: format the code
fmt:
	$(CARGO) fmt --all

## check: what CI runs
check: lint test

## bench: chat-server against uWebSockets.js, Node ws, Socket.IO, Python websockets and an
## axum relay, same machine, same run, then chat-server's reconnect storm and the two-node
## cluster against Socket.IO's (PostgreSQL and redis-server needed, else skipped with a
## note; about 14 minutes); writes bench/results/<date>/ and the summary in BENCHMARKS.md.
## Installs the peers first (bench/peers/setup.sh).
bench: bench-build
	bash bench/peers/setup.sh
	taskset -c 1 target/release/suite

## bench-quick: one point of each scenario, the storm and the cluster included, against
## chat-server alone (about a minute, once built); report in target/bench-quick/
bench-quick: bench-build
	taskset -c 1 target/release/suite --quick

## bench-durability: the cost of storing every message (memory vs file vs fsync), with
## its two targets checked, and acked msg/s into PostgreSQL on one node and two (skipped
## without PostgreSQL/redis-server); writes bench/results/durability.md
bench-durability:
	$(CARGO) run --release -p chat-bench --bin durability -- bench/results/durability.md

bench-build:
	$(CARGO) build --release -p chat-server -p axum-relay -p chat-bench --bins

build:
	$(CARGO) build --workspace

clean:
	$(CARGO) clean
