#!/bin/bash
# bench_load.sh — 10,000 concurrent authenticated overlay connections against
# one peerd on loopback (bench/bench_load.c drives them through host/core/peer.c).
#
#   bench/bench_load.sh [--build DIR] [--peerd BIN] [--conns N] [--hold-s S]
#                       [--ping-ms MS] [--open] [--groups G]
#
# Default ("limits on"): peerd runs WITHOUT --allow-private, so its inbound
# limits are all active: 3 finished handshakes per IP, 2 per IP and 4 per
# network group in the handshake at once, --max-inbound. peerd puts every
# loopback address in ONE network group, so the driver keeps 4 handshakes in
# flight in all and spreads the N connections over ceil(N/3) source IPs
# 127.64.h.l (3 per IP).
# --open: peerd runs with --allow-private (each 127.x/16 its own group, the
# per-IP and pending limits off, as in a loopback test network); the driver
# still keeps to 3 per IP, 2 per IP and 4 per group in flight, over G (40)
# groups 127.64-103.0.0/16, i.e. up to 4*G handshakes in flight.
# peerd gets --max-inbound N+100 and --max-outbound 0 (it dials nothing).
# Everything stays on loopback. Output: bench_load's lines (see
# bench/bench_load.c), plus the daemon's own count of inbound connections
# (GET /metrics) while it holds them.
set -eu
build=build
peerd=
conns=10000
hold=150
ping=0
open=0
groups=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --peerd) peerd=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --hold-s) hold=$2; shift 2 ;;
    --ping-ms) ping=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --open) open=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--peerd BIN] [--conns N] [--hold-s S] [--ping-ms MS] [--open] [--groups G]" >&2
       exit 2 ;;
  esac
done
peerd=${peerd:-$build/peerd}
# Each side holds one fd per connection (plus a few): the driver and peerd are
# separate processes, so each needs ulimit -n >= conns + 64.
need=$((conns + 64))
cur=$(ulimit -n)
if [ "$cur" != unlimited ] && [ "$cur" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || {
    echo "bench_load.sh: ulimit -n is $cur (hard $(ulimit -Hn)); $conns connections need $need" >&2
    exit 2
  }
fi
echo "bench_load.sh: ulimit -n $(ulimit -n) (need $need per process)"
dir=$(mktemp -d /tmp/peerd-bench-load.XXXXXX)
pid=
bpid=

cleanup() {
  for p in $bpid $pid; do kill "$p" 2>/dev/null || true; done
  for p in $bpid $pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$open" = 1 ]; then
  mode="--allow-private (limits off, one group per 127.x/16)"
  set -- --allow-private
  groups=${groups:-40}
else
  mode="limits on (no --allow-private: loopback is one network group)"
  set --
  groups=${groups:-1}
fi
"$peerd" "$@" --data-dir "$dir/data" --api 127.0.0.1:0 --listen 127.0.0.1:0 \
  --max-inbound $((conns + 100)) --max-outbound 0 --log-level info 2>"$dir/log" &
pid=$!
port=
api=
for _ in $(seq 1 200); do
  port=$(sed -n 's/.*msg="p2p listening" addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/log" | head -n 1)
  api=$(sed -n 's/.*msg="api listening" addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/log" | head -n 1)
  [ -n "$port" ] && [ -n "$api" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ] || [ -z "$api" ]; then
  echo "bench_load.sh: peerd did not start" >&2
  cat "$dir/log" >&2
  exit 1
fi
echo "bench_load.sh: peerd pid $pid on 127.0.0.1:$port, $mode, --max-inbound $((conns + 100))"
"$build/bench_load" "127.0.0.1:$port" --conns "$conns" --groups "$groups" --hold-s "$hold" \
  --ping-ms "$ping" --pid "$pid" >"$dir/out" 2>&1 &
bpid=$!
# Stream the driver's output; once it holds all connections, ask peerd how
# many inbound peers it counts (bounded: the driver's fill timeout is 300 s).
asked=0
shown=0
for _ in $(seq 1 $(( (300 + ${hold%.*} + 30) * 4 ))); do
  lines=$(wc -l <"$dir/out")
  if [ "$lines" -gt "$shown" ]; then
    sed -n "$((shown + 1)),${lines}p" "$dir/out"
    shown=$lines
  fi
  if [ "$asked" = 0 ] && grep -q '^hold: keeping' "$dir/out"; then
    asked=1
    inb=$(curl -s "http://127.0.0.1:$api/metrics" |
      sed -n 's/^peerd_connections{direction="inbound"} \([0-9]*\).*/\1/p')
    echo "daemon metrics while holding: peerd_connections{direction=\"inbound\"} ${inb:-?}"
  fi
  kill -0 "$bpid" 2>/dev/null || break
  sleep 0.25
done
rc=0
wait "$bpid" || rc=$?
bpid=
lines=$(wc -l <"$dir/out")
[ "$lines" -gt "$shown" ] && sed -n "$((shown + 1)),${lines}p" "$dir/out"
kill -0 "$pid" 2>/dev/null || { echo "bench_load.sh: peerd died" >&2; tail -n 20 "$dir/log" >&2; rc=1; }
warns=$(grep -c 'level=warn\|level=error' "$dir/log" || true)
echo "bench_load.sh: peerd log: $(wc -l <"$dir/log") lines, $warns warn/error"
exit "$rc"
