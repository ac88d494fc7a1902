#!/bin/bash
# soak.sh — a network of peerd processes on loopback under churn and hostile
# clients, sampled for memory and file descriptors over time.
#
#   bench/soak.sh [--build DIR] [--peerd BIN] [--duration S] [--nodes N]
#                 [--sample-s S] [--churn-s S] [--warmup-s S]
#
# --duration S (default 3600): how long the network runs under churn and
# hostile load. --nodes N (default 20, at least 4): node k listens on
# 127.(100+k).0.1:PORT (its own /16) with its API on the same IP, PORT+1;
# every node gets --allow-private --ban-time 60 --save-interval 1 and
# --seeds of nodes 1 and 2; data directories and logs in a temp directory.
# Nodes 1..N/2 are STABLE (run the whole soak: their growth decides the
# verdict); nodes N/2+1..N are CHURNED: every --churn-s (default 45, short
# runs duration/5) one of them in turn is killed, SIGKILL and SIGTERM
# alternately, and restarted on the same data directory 1 s after it exited.
# Hostile clients (tests/tools/peer_client, through host/core/peer.c) run
# throughout, each worker in a bounded loop over the nodes in turn, from a
# pool of 16 source IPs per worker (127.66.W.1-16):
#   W1 connect flood: 100 TCP connects closed at once, no byte sent; then 1 s.
#   W2 handshake flood: 20 full handshakes, each closed with GOODBYE; then 1 s.
#   W3 slowloris: 4 at once (2 send nothing, 2 trickle their handshake a byte
#      per 700 ms), each until the node drops it (10 s handshake timeout).
#   W4 ADDR flood: 8 ADDR frames of 1,000 addresses unasked (the node bans
#      the IP); then 2 s.
#   W5 forged records: one-entry ADDRs whose record has a flipped signature,
#      a wrong node id, another network, or is well-signed by a fresh key
#      claiming another node's endpoint (one kind per connection, in turn);
#      then 1 s.
# Every --sample-s (default 60; 5 when --duration < 600) each node's VmRSS
# (/proc/PID/status), open fds (/proc/PID/fd) and, from its /metrics, peer
# connections (peerd_connections in+out), the memory it accounts for (book,
# records, policy: peerd_*_memory_bytes), book entries, records and bans are
# sampled. At the end the hostile
# workers stop, and after a settle of 5 s (2 s in short runs) a last sample
# is taken; then a table and the growth of the stable nodes from their first
# sample at or after --warmup-s (default duration/5, at most 300) to the
# last (and over the second half of that window), and the verdict: "flat"
# when the median stable node's RSS grew by at most 256 KiB over the second
# half and no stable node gained more than 4 fds beyond its peer connections.
# Everything stays on loopback; every loop is bounded;
# all processes are stopped on exit and on Ctrl-C.
# Exit status: 0 when the soak ran (whatever the verdict), 1 when the network
# did not start or a node died without being killed by the churn, 2 on bad
# arguments.
set -eu

build=build
peerd=
duration=3600
nodes=20
sample=
churn=
warmup=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --peerd) peerd=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --sample-s) sample=$2; shift 2 ;;
    --churn-s) churn=$2; shift 2 ;;
    --warmup-s) warmup=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--peerd BIN] [--duration S] [--nodes N] [--sample-s S] [--churn-s S] [--warmup-s S]" >&2
       exit 2 ;;
  esac
done
peerd=${peerd:-$build/peerd}
client=$build/peer_client
case "$duration$nodes${sample:-1}${churn:-1}${warmup:-0}" in
  *[!0-9]*) echo "soak.sh: numbers only" >&2; exit 2 ;;
esac
if [ "$nodes" -lt 4 ] || [ "$nodes" -gt 150 ] || [ "$duration" -lt 1 ]; then
  echo "soak.sh: --nodes 4..150, --duration >= 1" >&2
  exit 2
fi
for b in "$peerd" "$client"; do
  [ -x "$b" ] || { echo "soak.sh: $b not built" >&2; exit 2; }
done
short=0
[ "$duration" -lt 600 ] && short=1
if [ -z "$sample" ]; then if [ $short = 1 ]; then sample=5; else sample=60; fi; fi
if [ -z "$churn" ]; then
  if [ $short = 1 ]; then churn=$((duration / 5)); [ "$churn" -lt 3 ] && churn=3; else churn=45; fi
fi
if [ -z "$warmup" ]; then warmup=$((duration / 5)); [ "$warmup" -gt 300 ] && warmup=300; fi
settle=5
[ $short = 1 ] && settle=2
stable=$((nodes / 2))
port=$((20000 + $$ % 20000))
api=$((port + 1))

dir=$(mktemp -d /tmp/peerd-soak.XXXXXX)
workers=
declare -a pid

alive() { # PID: running (not gone, not a zombie)
  local st
  st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

cleanup() {
  for w in $workers; do kill -TERM "$w" 2>/dev/null || true; done
  for k in $(seq 1 "$nodes"); do
    [ -n "${pid[$k]:-}" ] && kill -TERM "${pid[$k]}" 2>/dev/null || true
  done
  for _ in $(seq 1 100); do
    local any=0
    for k in $(seq 1 "$nodes"); do
      [ -n "${pid[$k]:-}" ] && alive "${pid[$k]}" && any=1
    done
    [ $any = 0 ] && break
    sleep 0.1
  done
  for k in $(seq 1 "$nodes"); do
    [ -n "${pid[$k]:-}" ] && kill -KILL "${pid[$k]}" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ -n "${PEERD_SOAK_KEEP:-}" ]; then echo "soak.sh: kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'echo "soak.sh: interrupted"; exit 130' INT TERM

ip_of() { echo "127.$((100 + $1)).0.1"; }

start_node() { # K
  local k=$1 ip seeds
  ip=$(ip_of "$k")
  case $k in
    1) seeds="$(ip_of 2):$port" ;;
    2) seeds="$(ip_of 1):$port" ;;
    *) seeds="$(ip_of 1):$port,$(ip_of 2):$port" ;;
  esac
  # started from a subshell, so it is not this shell's job (no "Killed" notices
  # when the churn SIGKILLs it); its pid goes through a file
  ( "$peerd" --allow-private --data-dir "$dir/n$k" --api "$ip:$api" --listen "$ip:$port" \
    --seeds "$seeds" --ban-time 60 --save-interval 1 --log-level info >>"$dir/n$k.log" 2>&1 &
    echo $! >"$dir/n$k.pid" )
  pid[$k]=$(cat "$dir/n$k.pid")
}

healthy() { # K: its API answers
  curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$(ip_of "$1"):$api/health" 2>/dev/null |
    grep -q 200
}

wait_healthy() { # K: bounded, 20 s
  for _ in $(seq 1 200); do
    healthy "$1" && return 0
    alive "${pid[$1]}" || return 1
    sleep 0.1
  done
  return 1
}

now() { date +%s; }

echo "soak.sh: $nodes nodes on 127.101-$((100 + nodes)).0.1:$port (API :$api), stable 1..$stable," \
  "churned $((stable + 1))..$nodes every ${churn} s; duration ${duration} s, sample every ${sample} s," \
  "warm-up ${warmup} s; data in $dir"
for k in $(seq 1 "$nodes"); do start_node "$k"; done
for k in $(seq 1 "$nodes"); do
  if ! wait_healthy "$k"; then
    echo "soak.sh: node $k did not start" >&2
    tail -n 20 "$dir/n$k.log" >&2
    exit 1
  fi
done
t0=$(now)
end=$((t0 + duration))
echo "soak.sh: network up at $(date -u +%H:%M:%SZ)"

# --- hostile workers: each a bounded loop until $end ---------------------------------------------
hostile() { # W: worker number, its own output file
  local w=$1 i=0 t ip k j gap
  local out="$dir/hostile$w.out"
  # stopped with SIGTERM: take the running clients down too
  trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM
  while [ "$(now)" -lt "$end" ] && [ $i -lt 100000 ]; do
    k=$((i % nodes + 1))
    t="$(ip_of "$k"):$port"
    ip="127.66.$w.$((i % 16 + 1))"
    case $w in
      1) "$client" "$t" --from "$ip" --connect-flood 100 >>"$out" 2>&1 & ;;
      2) "$client" "$t" --from "$ip" --handshake-flood 20 >>"$out" 2>&1 & ;;
      3) for j in 0 1 2 3; do
           gap=0
           [ $j -ge 2 ] && gap=700
           "$client" "$t" --from "127.66.$w.$(((i * 4 + j) % 16 + 1))" --slowloris "$gap" \
             --wait-ms 20000 >>"$out" 2>&1 &
         done ;;
      4) "$client" "$t" --from "$ip" --flood-addrs 8 --wait-ms 2000 >>"$out" 2>&1 & ;;
      5) "$client" "$t" --from "$ip" --forge-records 2 --forge-kind $((i % 4)) --gap-ms 200 \
           --victim "$(ip_of $((k % nodes + 1))):$port" --wait-ms 1000 >>"$out" 2>&1 & ;;
    esac
    wait || true
    case $w in
      1 | 2 | 5) sleep 1 & wait || true ;;
      4) sleep 2 & wait || true ;;
    esac
    i=$((i + 1))
  done
}
for w in 1 2 3 4 5; do
  hostile "$w" &
  workers="$workers $!"
done

# --- sampling and churn --------------------------------------------------------------------------
samples="$dir/samples"
: >"$samples"
restarts=0
kills=0
terms=0
restart_fail=0
crashes=0
churn_i=0

sample_all() { # T-offset
  # one line per live node: t node pid rss_kB fds conns stable book_B records_B
  # policy_B book_entries records bans (the last six from its /metrics)
  local t=$1 k p rss fds m
  for k in $(seq 1 "$nodes"); do
    p=${pid[$k]}
    alive "$p" || continue
    rss=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$p/status" 2>/dev/null || true)
    fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
    m=$(curl -s -m 2 "http://$(ip_of "$k"):$api/metrics" 2>/dev/null | awk '
      /^peerd_connections\{direction="(inbound|outbound)"\}/ {c += $2}
      /^peerd_book_memory_bytes / {bm = $2}
      /^peerd_records_memory_bytes / {rm = $2}
      /^peerd_policy_memory_bytes / {pm = $2}
      /^peerd_book_entries\{/ {be += $2}
      /^peerd_records / {r = $2}
      /^peerd_bans / {b = $2}
      END {printf "%d %d %d %d %d %d %d", c, bm, rm, pm, be, r, b}')
    [ -n "$rss" ] || continue
    set -- $m
    echo "$t $k $p $rss $fds $1 $([ "$k" -le "$stable" ] && echo 1 || echo 0) $2 $3 $4 $5 $6 $7" >>"$samples"
  done
}

churn_one() {
  local k=$((stable + 1 + churn_i % (nodes - stable))) sig p
  if [ $((churn_i % 2)) = 0 ]; then sig=KILL; else sig=TERM; fi
  churn_i=$((churn_i + 1))
  p=${pid[$k]}
  kill -"$sig" "$p" 2>/dev/null || true
  for _ in $(seq 1 150); do alive "$p" || break; sleep 0.1; done
  alive "$p" && kill -KILL "$p" 2>/dev/null || true
  if [ "$sig" = KILL ]; then kills=$((kills + 1)); else terms=$((terms + 1)); fi
  sleep 1
  start_node "$k"
  restarts=$((restarts + 1))
  echo "$(($(now) - t0)) node $k SIG$sig pid $p -> ${pid[$k]}" >>"$dir/churn.log"
  wait_healthy "$k" || restart_fail=$((restart_fail + 1))
}

check_crashes() {
  local k
  for k in $(seq 1 "$nodes"); do
    if ! alive "${pid[$k]}"; then
      crashes=$((crashes + 1))
      echo "soak.sh: node $k (pid ${pid[$k]}) died unasked at +$(($(now) - t0)) s; restarting it" >&2
      tail -n 5 "$dir/n$k.log" >&2
      start_node "$k"
      wait_healthy "$k" || restart_fail=$((restart_fail + 1))
    fi
  done
}

next_sample=$t0
next_churn=$((t0 + churn))
for _ in $(seq 1 $((duration * 4 + 100))); do
  n=$(now)
  [ "$n" -ge "$end" ] && break
  if [ "$n" -ge "$next_sample" ]; then
    check_crashes
    sample_all $((n - t0))
    next_sample=$((next_sample + sample))
    echo "soak.sh: +$((n - t0)) s: $(awk -v t=$((n - t0)) '$1 == t {r += $4; f += $5; c++} END {if (c) printf "%d nodes, mean RSS %d kB, mean fds %.0f", c, r / c, f / c}' "$samples"), restarts $restarts"
  fi
  if [ "$n" -ge "$next_churn" ]; then
    churn_one
    next_churn=$((next_churn + churn))
  fi
  sleep 0.25
done

# --- the end: stop hostile clients, settle, last sample ------------------------------------------
for w in $workers; do kill -TERM "$w" 2>/dev/null || true; done
for w in $workers; do wait "$w" 2>/dev/null || true; done
workers=
check_crashes
sleep "$settle"
t_last=$(($(now) - t0))
sample_all "$t_last"

echo
echo "== soak: $nodes nodes, $(($(now) - t0)) s (duration $duration s + settle $settle s), samples every $sample s"
echo "restarts: $restarts ($kills SIGKILL, $terms SIGTERM), failed restarts: $restart_fail, nodes that died unasked: $crashes"
cat "$dir"/hostile*.out 2>/dev/null | awk '
  /^connect flood:/ {cf += $3; cff += $5}
  /^handshake flood:/ {hf += $3; hff += $5}
  /^slowloris:/ {sl++}
  /^sent [0-9]+ addrs/ {af++; afa += $2}
  /^sent [0-9]+ forged records/ {fr++; frr += $2}
  END {
    printf "hostile connections: %d total = connect flood %d (+%d failed), handshake flood %d (+%d failed), slowloris %d, ADDR flood %d (%d addresses), forged-record peers %d (%d records)\n",
      cf + hf + sl + af + fr, cf, cff, hf, hff, sl, af, afa, fr, frr
  }'
grep -h -c 'handshake failed' "$dir"/hostile4.out "$dir"/hostile5.out 2>/dev/null |
  awk '{s += $1} END {print "hostile handshakes refused (IP banned or limits): " s + 0}'
tmpfiles=$(find "$dir" -name '.addrbook.json.tmp-*' | wc -l)
echo "data: $(du -sk "$dir" | cut -f1) kB in $dir (logs included), stale .addrbook.json.tmp-* files: $tmpfiles"
# the stable nodes' counters (processes that ran the whole soak)
for k in $(seq 1 "$stable"); do
  curl -s -m 2 "http://$(ip_of "$k"):$api/metrics" 2>/dev/null || true
done | awk '
  /^peerd_wire_rejected_total/ && $2 > 0 {
    match($1, /reason="[a-z_]+"/); r = substr($1, RSTART + 8, RLENGTH - 9); rej[r] += $2 }
  /^peerd_bans_total/ {b += $2}
  /^peerd_inbound_evictions_total/ {e += $2}
  /^peerd_connections\{direction="outbound"\}/ {o += $2; n++}
  END {
    s = ""; for (r in rej) s = s " " r "=" rej[r]
    printf "stable nodes (sum over %d): outbound connections %d, bans %d, inbound evictions %d, rejected:%s\n", n, o, b, e, s
  }'
echo
echo "per sample: nodes alive; RSS kB median/max over all nodes; fds median/max; peer connections median;"
echo "stable nodes' medians: RSS kB, memory peerd accounts for (book + records + policy, kB), book entries, records, bans"
awk '
  { t = $1; if (!(t in seen)) { seen[t] = 1; ts[++nt] = t }
    k = t SUBSEP (++cnt[t]); rss[k] = $4; fds[k] = $5; con[k] = $6
    if ($7 == 1) { sk = t SUBSEP (++scnt[t]); srss[sk] = $4; acc[sk] = int(($8 + $9 + $10) / 1024)
      ent[sk] = $11; rec[sk] = $12; ban[sk] = $13 } }
  function med(a, t, n,   i, j, v, x) {
    for (i = 1; i <= n; i++) v[i] = a[t, i]
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return n ? v[int((n + 1) / 2)] : 0 }
  function mx(a, t, n,   i, m) { m = 0; for (i = 1; i <= n; i++) if (a[t, i] > m) m = a[t, i]; return m }
  END {
    printf "%7s %5s %8s %8s %5s %5s %5s | %8s %7s %7s %7s %5s\n", "t(s)", "nodes", "RSSmed", "RSSmax", "fdmed", "fdmax", "conns", "RSS", "acctd", "entries", "records", "bans"
    for (i = 1; i <= nt; i++) { t = ts[i]; n = cnt[t]; m = scnt[t]
      printf "%7d %5d %8d %8d %5d %5d %5d | %8d %7d %7d %7d %5d\n", t, n, med(rss, t, n), mx(rss, t, n), med(fds, t, n), mx(fds, t, n), med(con, t, n), med(srss, t, m), med(acc, t, m), med(ent, t, m), med(rec, t, m), med(ban, t, m) }
  }' "$samples"
echo
# Growth of each stable node from its first sample at or after the warm-up to
# its last (same pid only), over the whole window and over its second half;
# then the median over those nodes.
awk -v warm="$warmup" '
  $7 == 1 && $1 >= warm { k = $2
    if (!(k in t1)) { t1[k] = $1; p1[k] = $3 }
    if ($3 == p1[k]) { n = ++ns[k]; st[k, n] = $1; sr[k, n] = $4; sf[k, n] = $5; so[k, n] = $5 - $6
      sa[k, n] = ($8 + $9 + $10) / 1024 } }
  function sort(v, n,   i, j, x) { for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x } }
  END {
    n = 0
    for (k in t1) { last = ns[k]; if (last < 3) continue; n++
      mid = 1; for (i = 1; i <= last; i++) if (st[k, i] <= (st[k, 1] + st[k, last]) / 2) mid = i
      dr[n] = sr[k, last] - sr[k, 1]; dh[n] = sr[k, last] - sr[k, mid]; base[n] = sr[k, 1]
      df[n] = sf[k, last] - sf[k, 1]; dov[n] = so[k, last] - so[k, 1]; da[n] = sa[k, last] - sa[k, 1]
      span = st[k, last] - st[k, 1]; half = st[k, last] - st[k, mid] }
    if (n == 0) { print "growth: no stable node has three samples after the warm-up (run longer)"; print "verdict: unknown"; exit }
    sort(dr, n); sort(dh, n); sort(df, n); sort(dov, n); sort(base, n); sort(da, n)
    m = int((n + 1) / 2)
    printf "growth of the %d stable nodes from their first sample after the warm-up (%d s) to the last, %d s later:\n", n, warm, span
    printf "  RSS: median %+d KiB (%+.0f KiB/hour), min %+d, max %+d KiB; median RSS at the start %d KiB\n",
      dr[m], dr[m] * 3600 / span, dr[1], dr[n], base[m]
    printf "  RSS over the second half (the last %d s): median %+d KiB (%+.0f KiB/hour)\n", half, dh[m], half ? dh[m] * 3600 / half : 0
    printf "  memory peerd accounts for (book + records + policy): median %+d KiB\n", da[m]
    printf "  fds: median %+d, min %+d, max %+d; fds beyond peer connections (fds - connections): max %+d\n",
      df[m], df[1], df[n], dov[n]
    flat = (dh[m] <= 256) && (dov[n] <= 4)
    printf "verdict: %s (rule: flat when the median stable node grew by at most 256 KiB of RSS over the second half of the window and no stable node gained more than 4 fds beyond its peer connections over the window)\n",
      flat ? "flat" : "growing"
  }' "$samples"
[ "$crashes" = 0 ] || exit 1
exit 0
