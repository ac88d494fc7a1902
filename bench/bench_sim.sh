#!/bin/sh
# bench_sim.sh — the scenario lab at scale: runs examples/scenarios/bootstrap.lua
# with HOSTS honest hosts (default 1000) and 5 seeds for DURATION virtual
# seconds (default 600) and prints the lab's own closing figures: events,
# wall time, events/s, virtual:wall and memory per host.
#
#   bench/bench_sim.sh [PEERD] [HOSTS] [DURATION]
#   bench/bench_sim.sh build/peerd 10000 60
set -eu
cd "$(dirname "$0")/.."
peerd=${1:-build/peerd}
hosts=${2:-1000}
duration=${3:-600}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "bench_sim: bootstrap.lua, $hosts hosts + 5 seeds, $duration virtual s"
"$peerd" sim examples/scenarios/bootstrap.lua --seed 1 --out "$out" \
  --set hosts="$hosts" --set seeds=5 --set duration="$duration" 2>/dev/null |
  grep -E '^(virtual time|events|wall time|events/s|virtual:wall|memory per host) '
