#!/bin/sh
# bench_net.sh [BUILD_DIR] [CONNS] [RUNS] — RUNS times (default 5, at least
# 3 for a median worth quoting): start a fresh peerd on loopback that accepts
# CONNS (default 1000) inbound peers, run bench_net against it (handshakes/s,
# and the daemon's RSS idle and while it holds CONNS authenticated peers),
# stop it. Prints each run's lines, then the median and min–max over the
# runs of handshakes/s, of RSS per connection = (RSS holding CONNS - RSS
# idle) / CONNS, and of peerd's CPU time per handshake (an even RUNS gives
# the lower middle). It gives peerd loopback addresses only; run it inside
# a network namespace with only lo up if you like (unshare -n).
set -eu
build=${1:-build}
conns=${2:-1000}
runs=${3:-5}
dir=$(mktemp -d /tmp/peerd-bench-net.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -n "$pid" ] && wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
: >"$dir/results"
for r in $(seq 1 "$runs"); do
  port=$((20000 + ($$ + r) % 20000))
  rm -rf "$dir/data"
  "$build/peerd" --data-dir "$dir/data" --api 127.0.0.1:0 --listen "127.0.0.1:$port" \
    --max-inbound $((conns + 100)) --allow-private --log-level warn 2>"$dir/log" &
  pid=$!
  for _ in $(seq 1 100); do
    grep -q . "/proc/$pid/status" 2>/dev/null && ss -ltn 2>/dev/null | grep -q ":$port " && break
    sleep 0.05
  done
  echo "run $r/$runs:"
  "$build/bench_net" "127.0.0.1:$port" --conns "$conns" --pid "$pid" | tee "$dir/out"
  grep '^result ' "$dir/out" >>"$dir/results"
  kill $pid
  wait $pid 2>/dev/null || true
  pid=
done
# median (lower middle for an even count) and min–max of one field
stat() {
  sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$dir/results" | sort -n |
    awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'
}
perconn() {
  awk -v c="$conns" '{for (i = 1; i <= NF; i++) {split($i, kv, "="); f[kv[1]] = kv[2]}
    printf "%.2f\n", (f["rss_held_kb"] - f["rss_idle_kb"]) / c}' "$dir/results" | sort -n |
    awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'
}
n=$(wc -l <"$dir/results")
echo "summary over $n run(s) of $conns connections, median (min-max):"
echo "  handshakes/s          $(stat hs_per_s)"
echo "  RSS idle, kB          $(stat rss_idle_kb)"
echo "  RSS holding, kB       $(stat rss_held_kb)"
echo "  RSS per connection kB $(perconn)"
echo "  peerd CPU us/handshake $(stat peerd_cpu_us_per_hs)"
[ "$n" = "$runs" ]
