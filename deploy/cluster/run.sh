#!/usr/bin/env bash
# `make cluster`: three chat-server nodes on this machine's PostgreSQL and
# Redis, with HAProxy in front on one port. Runs in the foreground; Ctrl-C
# (or SIGTERM) stops the proxy and every node. See docs/cluster.md.
#
# Settings (environment): CHAT_CLUSTER_PORT (8080), CHAT_CLUSTER_NODES (3),
# CHAT_DATABASE_URL (postgres://postgres@127.0.0.1:5432/chat_cluster, created
# if missing), CHAT_REDIS_URL (redis://127.0.0.1:6379), CHAT_REDIS_PREFIX
# (chat-cluster), CHAT_SERVER_BIN (target/debug/chat-server), CHAT_CLUSTER_STATE
# (data/cluster: the nodes' data directories, logs and the HAProxy config).
set -euo pipefail
cd "$(dirname "$0")/../.."

port="${CHAT_CLUSTER_PORT:-8080}"
count="${CHAT_CLUSTER_NODES:-3}"
database_url="${CHAT_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/chat_cluster}"
redis_url="${CHAT_REDIS_URL:-redis://127.0.0.1:6379}"
prefix="${CHAT_REDIS_PREFIX:-chat-cluster}"
bin="${CHAT_SERVER_BIN:-target/debug/chat-server}"
state="${CHAT_CLUSTER_STATE:-data/cluster}"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "make cluster: '$1' is not installed ($2)" >&2
    exit 1
  fi
}
need haproxy "apt-get install -y haproxy"
need psql "apt-get install -y postgresql-client"
need redis-cli "apt-get install -y redis-tools"
[ -x "$bin" ] || { echo "make cluster: $bin is missing (cargo build --bin chat-server)" >&2; exit 1; }

# The database is created once and kept between runs, like data/ for `make run`.
db="${database_url##*/}"
server_url="${database_url%/*}"
if ! psql "$database_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "creating database $db"
  psql "$server_url/postgres" -qc "CREATE DATABASE \"$db\"" >/dev/null
fi
redis-cli -u "$redis_url" ping >/dev/null || { echo "make cluster: Redis at $redis_url does not answer" >&2; exit 1; }

mkdir -p "$state"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Nodes listen on the ports after the proxy's.
servers=""
for i in $(seq 1 "$count"); do
  node_port=$((port + i))
  # HAProxy names each client with the PROXY protocol (send-proxy-v2 below),
  # so the login throttle and the registration rates count clients, not the
  # proxy. Every client of this demo is on this machine (127.0.0.1), though,
  # so the per-address registration rate is lifted.
  "$bin" --listen "127.0.0.1:$node_port" --data-dir "$state/n$i" \
    --database-url "$database_url" --redis-url "$redis_url" --redis-prefix "$prefix" \
    --node-id "n$i" --proxy-protocol-from 127.0.0.1 \
    --registrations-per-address 1000000 \
    >"$state/n$i.out" 2>"$state/n$i.log" &
  pids+=("$!")
  servers+="    server n$i 127.0.0.1:$node_port send-proxy-v2 check check-send-proxy inter 2s fall 2 rise 1"$'\n'
done

# WebSockets need no sticky sessions: a client resumes on any node. The
# health check is readiness, so a node whose engines fail gets no new clients.
cat >"$state/haproxy.cfg" <<CFG
global
    # Two descriptors per proxied connection; this machine allows 20,000 per process.
    maxconn 9000

defaults
    mode http
    option http-server-close
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    # An upgraded WebSocket: the server pings every 20 s, well inside this.
    timeout tunnel 1h

frontend chat
    bind 127.0.0.1:$port
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
$servers
CFG
haproxy -f "$state/haproxy.cfg" -db >"$state/haproxy.log" 2>&1 &
pids+=("$!")

for i in $(seq 1 "$count"); do
  for _ in $(seq 1 100); do
    grep -q "listening on" "$state/n$i.out" 2>/dev/null && break
    if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
      echo "node n$i failed to start:" >&2
      cat "$state/n$i.log" >&2
      exit 1
    fi
    sleep 0.1
  done
done
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    echo "HAProxy failed to start:" >&2
    cat "$state/haproxy.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "chat cluster: $count nodes behind http://127.0.0.1:$port (HAProxy)"
echo "  browser:  http://127.0.0.1:$port/"
echo "  terminal: cargo run --bin chat-tui -- --server http://127.0.0.1:$port --user NAME --room lobby"
echo "  logs:     $state/n*.log; press Ctrl-C to stop"
wait -n "${pids[@]}"
echo "a process of the cluster exited; see $state/*.log" >&2
