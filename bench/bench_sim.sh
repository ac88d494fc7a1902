#!/bin/sh
# bench_sim.sh — issue 6's lab benchmark: examples/scenarios/churn.lua with
# HOSTS honest hosts (default 10000) and 5 seeds, a WARMUP (default 300 s)
# bootstrap, then HOURS virtual hours (default 24; fractions allowed) in
# which 30% of the hosts leave and join per hour. Connectivity is recorded,
# not asserted (assert_connected=false), so the run always goes to the end.
# Prints the lab's own closing figures: virtual time, events, wall time,
# events/s, virtual:wall and memory per host, plus the churn results
# (components, diameter sample).
#
# NEW_BUCKETS/TRIED_BUCKETS set the hosts' book tables (default Bitcoin's
# 1024/256, up to 81,920 addresses; 16/4 caps a book at 1,280, ~100 KB
# full); the seeds keep Bitcoin's. RAMP (s, <= WARMUP) spreads the hosts'
# first joins over that long (default 0: all at t = 0).
#
#   bench/bench_sim.sh [PEERD] [HOSTS] [HOURS] [WARMUP] [NEW_BUCKETS] [TRIED_BUCKETS] [RAMP]
#   bench/bench_sim.sh build/peerd 10000 24      # the issue's run
#   bench/bench_sim.sh build/peerd 1000 1        # ~a minute on 2 cores
#   bench/bench_sim.sh build/peerd 100000 0.1 300 16 4 240   # 100,000 hosts, small books,
#                                                            # joining over the first 240 s
set -eu
cd "$(dirname "$0")/.."
peerd=${1:-build/peerd}
hosts=${2:-10000}
hours=${3:-24}
warmup=${4:-300}
nb=${5:-1024}
tb=${6:-256}
ramp=${7:-0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "bench_sim: churn.lua, $hosts hosts + 5 seeds, ${warmup} s warmup + $hours virtual h at 30%/h, books $nb/$tb"
"$peerd" sim examples/scenarios/churn.lua --seed 1 --out "$out" \
  --set hosts="$hosts" --set seeds=5 --set hours="$hours" --set warmup="$warmup" \
  --set new_buckets="$nb" --set tried_buckets="$tb" --set ramp="$ramp" \
  --set assert_connected=false >"$out/log" 2>&1 || status=$?
sed '/^-- results --$/q' "$out/log" | grep -E '^(hosts|virtual time|events|wall time|events/s|virtual:wall|memory per host|events by kind|frames sent|addresses received) ' || true
sed -n '/^-- results --$/,$p' "$out/log"
exit "${status:-0}"
