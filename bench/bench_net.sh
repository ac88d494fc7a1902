#!/bin/sh
# bench_net.sh [BUILD_DIR] [CONNS] — start a peerd on loopback that accepts
# CONNS inbound peers, run bench_net against it (handshakes/s and the
# daemon's RSS while it holds CONNS authenticated peers), stop it.
set -eu
build=${1:-build}
conns=${2:-1000}
dir=$(mktemp -d /tmp/peerd-bench-net.XXXXXX)
port=$((20000 + $$ % 20000))
"$build/peerd" --data-dir "$dir/data" --api 127.0.0.1:0 --listen "127.0.0.1:$port" \
  --max-inbound $((conns + 100)) --allow-private --log-level warn 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  grep -q . "/proc/$pid/status" 2>/dev/null && ss -ltn 2>/dev/null | grep -q ":$port " && break
  sleep 0.05
done
"$build/bench_net" "127.0.0.1:$port" --conns "$conns" --pid "$pid"
