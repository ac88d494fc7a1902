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
# 1024/256; 64/16 holds 5,120 addresses in 25 KB instead of 342 KB).
#
#   bench/bench_sim.sh [PEERD] [HOSTS] [HOURS] [WARMUP] [NEW_BUCKETS] [TRIED_BUCKETS]
#   bench/bench_sim.sh build/peerd 10000 24      # the issue's run
#   bench/bench_sim.sh build/peerd 1000 1        # ~a minute on 2 cores
#   bench/bench_sim.sh build/peerd 100000 0.1 300 16 4   # 100,000 hosts, small books
set -eu
cd "$(dirname "$0")/.."
peerd=${1:-build/peerd}
hosts=${2:-10000}
hours=${3:-24}
warmup=${4:-300}
nb=${5:-1024}
tb=${6:-256}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "bench_sim: churn.lua, $hosts hosts + 5 seeds, ${warmup} s warmup + $hours virtual h at 30%/h, books $nb/$tb"
"$peerd" sim examples/scenarios/churn.lua --seed 1 --out "$out" \
  --set hosts="$hosts" --set seeds=5 --set hours="$hours" --set warmup="$warmup" \
  --set new_buckets="$nb" --set tried_buckets="$tb" \
  --set assert_connected=false >"$out/log" 2>&1 || status=$?
sed '/^-- results --$/q' "$out/log" | grep -E '^(hosts|virtual time|events|wall time|events/s|virtual:wall|memory per host|events by kind|frames sent) ' || true
sed -n '/^-- results --$/,$p' "$out/log"
exit "${status:-0}"
