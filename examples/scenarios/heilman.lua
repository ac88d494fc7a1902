-- luacheck: read globals sim
-- heilman.lua — Heilman, Kendler, Zohar and Goldberg's eclipse attack
-- ("Eclipse Attacks on Bitcoin's Peer-to-Peer Network", USENIX Security
-- 2015) on a MATURE network, with a cheap attacker (sim.pool).
--
-- One trial per run (sweep it: docs/eclipse.md):
--   1. HONEST hosts and SEEDS seeds warm up for WARMUP s, with churn: every
--      CHURN_EVERY s one random honest host leaves and one that is down
--      comes back, so about a share LIVENESS of the honest hosts is up and
--      the tried tables fill with peers that are sometimes away. The victim
--      is one of them from t = 0 (POLICIES: its policy directory).
--   2. At ATTACK s the attacker arrives: a pool of ADDRESSES addresses over
--      GROUPS /16s (PORTS per IP; with IPS set, IPS x PORTS addresses: Marcus
--      et al.'s few IPs with many ports each) that holds HOLD of the victim's inbound
--      slots (it races for each slot that frees; the victim's max_inbound is
--      INBOUND), floods FLOOD_SIZE of its addresses every 1/FLOOD_RATE s on
--      each held connection, and answers every GETADDR with GETADDR_N of its
--      addresses only.
--   3. RESTART_AFTER s later the victim restarts (with its saved book; with
--      its anchors only when ANCHORS = true), and is watched AFTER s.
-- Results: the victim's book before the restart (new/tried attacker shares
-- and counts, honest tried entries up, Heilman's test-before-evict bound);
-- at the end: outbound and inbound attacker shares, `eclipsed` (it has
-- outbound peers and all are the attacker's), `isolated` (no connection to
-- an honest host at all), `time_to_eclipse` (seconds from the restart to the
-- first check, every second, at which it was eclipsed; -1: never).
--
--   peerd sim examples/scenarios/heilman.lua --set addresses=5000
--   peerd sim examples/scenarios/heilman.lua --sweep addresses=250,1000,4000 \
--       --trials 20 --jobs 2 --out /tmp/heilman
-- In a sweep the warm-up (step 1) runs once per trial and the attack's
-- points branch from it at sim.branch(): sweep the attack's parameters
-- (step 2 and 3); a sweep over honest, policies, ... runs a warm-up per value.

local HONEST = sim.param("honest", 200)
local SEEDS = sim.param("seeds", 2)
local WARMUP = sim.param("warmup", 3600)
local LIVENESS = sim.param("liveness", 0.9)
local CHURN_EVERY = sim.param("churn_every", 30)
local POLICIES = sim.param("policies", "../../policies")
local ATTACK = sim.param("attack", WARMUP)
local INBOUND = sim.param("inbound", 8)

sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}
local base = "../../policies"
local seeds = sim.hosts(SEEDS, {seed_mode = true, policies = base})
local honest = sim.hosts(HONEST, {seeds = seeds, policies = base})
local victim = sim.host{seeds = seeds, policies = POLICIES, max_inbound = INBOUND}

-- Churn: keep about LIVENESS of the honest hosts up, one leave and one join
-- per step (never the victim).
local down = {}
local function churn()
  local want_down = math.floor(#honest * (1 - LIVENESS) + 0.5)
  local i = math.random(#honest)
  if honest[i]:is_up() and #down < want_down + 1 then
    honest[i]:stop()
    down[#down + 1] = honest[i]
  end
  if #down > want_down then
    local k = math.random(#down)
    down[k]:start()
    table.remove(down, k)
  end
end
sim.every(CHURN_EVERY, churn)

sim.run(ATTACK)

-- Everything above is the same whatever the attacker: a sweep over the
-- parameters below runs it once per trial and branches here (the attack's
-- parameters are read only after the branch; docs/scenarios.md, Branching).
sim.branch()
local PORTS = sim.param("ports", 1)
local IPS = sim.param("ips", 0)                -- > 0: addresses = IPS x PORTS
local ADDRESSES = IPS > 0 and IPS * PORTS or sim.param("addresses", 1000)
local GROUPS = sim.param("groups", 0)          -- 0: one per 16 addresses
local HOLD = sim.param("hold", 8)
local FLOOD_RATE = sim.param("flood_rate", 0.05)
local FLOOD_SIZE = sim.param("flood_size", 10)
local GETADDR_N = sim.param("getaddr", 1000)
local RESTART_AFTER = sim.param("restart_after", 1800)
local AFTER = sim.param("after", 600)
local ANCHORS = sim.param("anchors", false)

local pool = sim.pool{
  addresses = ADDRESSES, groups = GROUPS > 0 and GROUPS or nil, ports = PORTS,
  targets = {victim}, hold_inbound = math.min(HOLD, ADDRESSES),
  flood = FLOOD_RATE > 0 and {rate = FLOOD_RATE, size = FLOOD_SIZE} or nil,
  getaddr = GETADDR_N,
}

local restart_at = ATTACK + RESTART_AFTER
sim.run(restart_at)
local b = victim:book()
local sh = victim:attacker_share()
sim.result("before_new", b.new)
sim.result("before_tried", b.tried)
sim.result("before_new_attacker", b.new_attacker)
sim.result("before_tried_attacker", b.tried_attacker)
sim.result("before_new_attacker_share", b.new_attacker_share)
sim.result("before_tried_attacker_share", b.tried_attacker_share)
sim.result("before_tried_honest_up", b.tried_honest_up)
sim.result("heilman_bound", b.heilman_bound)
sim.result("before_inbound_attacker_share", sh.inbound)
sim.result("before_outbound_attacker_share", sh.outbound)

victim:restart{anchors = ANCHORS}
local eclipsed_at = -1
sim.every(1, function()
  if eclipsed_at < 0 and victim:attacker_share().eclipsed then
    eclipsed_at = sim.now() - restart_at
  end
end)
sim.run(restart_at + AFTER)

sh = victim:attacker_share()
sim.result("outbound_attacker_share", sh.outbound)
sim.result("inbound_attacker_share", sh.inbound)
sim.result("outbound_peers", sh.outbound_peers)
sim.result("eclipsed", sh.eclipsed)
sim.result("isolated", sh.isolated)
sim.result("time_to_eclipse", eclipsed_at)
sim.result("ever_eclipsed", eclipsed_at >= 0)
local c = pool:counters()
sim.result("pool_held", c.held)
sim.result("pool_handshakes", c.handshakes)
-- What the run cost: the pool's GETADDR answers (each GETADDR_N addresses)
-- go mostly to the seeds, which crawl every address they learn (once an
-- hour each); every address received is a pex.lua call and a book lookup.
sim.result("pool_getaddr_answered", c.getaddr_answered)
sim.result("pool_addrs_sent", c.addrs_sent)
local crawls, received = 0, 0
for _, h in ipairs(seeds) do
  local k = h:counters()
  crawls = crawls + k.seed_crawls
  received = received + k.addrs_received
end
sim.result("seed_crawls", crawls)
sim.result("seed_addrs_received", received)
sim.result("addresses", ADDRESSES)
sim.result("honest", HONEST)
sim.result("anchors", ANCHORS)
