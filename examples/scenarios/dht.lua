-- luacheck: read globals sim
-- dht.lua — the Kademlia DHT (docs/dht.md) at scale, and against sybils.
--
-- mode=network (default): HOSTS DHT-only hosts (overlay = false: no seeds,
-- no overlay connections, so no PEX: every address a book gets comes from
-- the DHT) join at t = 0 knowing BOOT bootnodes. Measured:
--   * t_fill: when FILL_SHARE (90%) of a sample of up hosts first hold at
--     least FILL addresses in their books (from the DHT alone);
--   * after WARMUP seconds, RATE (30%) of the hosts leave and join per hour
--     for HOURS; every LOOKUP_EVERY s, LOOKUPS random up hosts each look up a
--     random up host's id: success rate (the target's own record found),
--     hops (mean, p99), queries per lookup.
-- mode=attack: Marcus et al.'s sybils: HOSTS honest hosts, one victim, and
-- SYBILS DHT-only attacker hosts on 2 IPs (any number of node ids). The
-- victim runs VICTIM_POLICIES (the shipped dht.lua, or
-- examples/policies/dht-no-ip-limits). Measured: the attacker's share of
-- the victim's routing table, and of the closest results of the victim's
-- lookups for honest targets, and whether those lookups still find them.
--
--   peerd sim examples/scenarios/dht.lua --seed 1
--   peerd sim examples/scenarios/dht.lua --seed 1 --set hosts=10000 --set hours=1
--   peerd sim examples/scenarios/dht.lua --seed 1 --set mode=attack
--   peerd sim examples/scenarios/dht.lua --seed 1 --set mode=attack \
--       --set victim_policies=../policies/dht-no-ip-limits

local MODE = sim.param("mode", "network")
local N = sim.param("hosts", 300)
local BOOT = sim.param("boot", 4)
local POLICIES = sim.param("policies", "../../policies")
-- random-lookup intervals while a book is short / after (the daemon: 2 s and 60 s), and the
-- session table; slower and smaller for big networks (each lookup is ~20 requests)
local FAST = sim.param("dht_fast", 10)
local SLOW = sim.param("dht_slow", 120)
local SESSIONS = sim.param("dht_sessions", 256)
local BOOK = {new_buckets = sim.param("new_buckets", 64), tried_buckets = sim.param("tried_buckets", 16)}
sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}
sim.dht(true)

local spec = {overlay = false, policies = POLICIES, book = BOOK, dht_fast = FAST, dht_slow = SLOW,
              dht_sessions = SESSIONS}

local function copy(t, extra)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local boot = sim.hosts(BOOT, spec)
local hosts = sim.hosts(N - BOOT, copy(spec, {bootnodes = boot}))
local all = {}
for _, h in ipairs(boot) do all[#all + 1] = h end
for _, h in ipairs(hosts) do all[#all + 1] = h end

local function random_up(list)
  for _ = 1, 64 do
    local h = list[math.random(#list)]
    if h:is_up() then return h end
  end
  return nil
end

if MODE == "network" then
  local FILL = sim.param("fill", math.min(1000, math.floor(N / 2)))
  local FILL_SHARE = sim.param("fill_share", 0.9)
  local FILL_SAMPLE = sim.param("fill_sample", 100)
  local WARMUP = sim.param("warmup", 600)
  local RATE = sim.param("rate", 0.30)
  local HOURS = sim.param("hours", 0.5)
  local PERIOD = sim.param("period", 60)
  local LOOKUP_EVERY = sim.param("lookup_every", 30)
  local LOOKUPS = sim.param("lookups", 20)

  -- the book from the DHT alone
  local t_fill
  sim.every(10, function()
    if t_fill then return end
    local full, n = 0, 0
    for _ = 1, FILL_SAMPLE do
      local h = random_up(all)
      if h then
        local b = h:book()
        n = n + 1
        if b.new + b.tried >= FILL then full = full + 1 end
      end
    end
    sim.record("book_filled_share", n > 0 and full / n or 0)
    if n > 0 and full / n >= FILL_SHARE then t_fill = sim.now() end
  end)
  sim.every(60, function()
    local d = sim.dht_stats()
    sim.record("dht_table_mean", d.table_mean)
    sim.record("book_mean", sim.stats().book_mean)
  end)

  -- churn, as churn.lua: leaves and joins at RATE per hour after the warm-up
  local per_step, carry, down = RATE * N * PERIOD / 3600, 0, {}
  local left, joined = 0, 0
  local function churn_step()
    carry = carry + per_step
    local k = math.floor(carry)
    carry = carry - k
    for _ = 1, math.min(k, #down) do
      table.remove(down, math.random(#down)):start()
      joined = joined + 1
    end
    for _ = 1, k do
      local h = hosts[math.random(#hosts)] -- bootnodes stay
      if h:is_up() then
        h:stop()
        down[#down + 1] = h
        left = left + 1
      end
    end
  end
  local queries, looked = 0, 0
  local function lookups()
    for _ = 1, LOOKUPS do
      local a, t = random_up(all), random_up(all)
      if a and t and a ~= t then
        a:dht_lookup(t, function(r)
          queries = queries + r.queries
          looked = looked + 1
        end)
      end
    end
  end
  local stop_at = WARMUP + HOURS * 3600
  sim.at(WARMUP, function()
    sim.every(PERIOD, function() if sim.now() < stop_at then churn_step() end end)
    sim.every(LOOKUP_EVERY, function() if sim.now() < stop_at then lookups() end end)
  end)
  sim.run(stop_at + 30) -- the last lookups end
  local d = sim.dht_stats()
  sim.result("t_fill", t_fill or -1)
  sim.result("fill", FILL)
  sim.result("lookups", d.lookups_done)
  sim.result("success_rate", d.success_rate)
  sim.result("mean_hops", d.mean_hops)
  sim.result("p99_hops", d.p99_hops)
  sim.result("queries_per_lookup", looked > 0 and queries / looked or 0)
  sim.result("left", left)
  sim.result("joined", joined)
  sim.result("table_mean", d.table_mean)
  sim.result("book_mean", sim.stats().book_mean)
  sim.assert(d.lookups_done > 0, "no lookup ended")
elseif MODE == "attack" then
  local SYBILS = sim.param("sybils", 200)
  local WARMUP = sim.param("warmup", 300)
  local ATTACK = sim.param("attack", 600)      -- s the sybils have before the measure
  local VICTIM_POLICIES = sim.param("victim_policies", POLICIES)
  local LOOKUPS = sim.param("lookups", 50)
  sim.run(WARMUP)
  local victim = sim.host(copy(spec, {bootnodes = boot, policies = VICTIM_POLICIES}))
  -- the attacker: 2 public IPs in distinct /16s, a port (and a node id) per sybil; each
  -- knows the victim and so is known to it (its handshakes offer it to the victim's table)
  for i = 1, SYBILS do
    sim.attacker{ip = (i % 2 == 0) and "66.1.1.1" or "77.2.2.2", port = 20000 + i, overlay = false,
                 bootnodes = {victim}, book = BOOK, dht_fast = FAST, dht_slow = SLOW,
                 dht_sessions = SESSIONS}
  end
  sim.run(WARMUP + ATTACK)
  local t = victim:dht()
  local found, closest_atk, ended = 0, 0, 0
  -- LOOKUPS lookups for honest targets, 5 every 10 s (at most 32 run at once)
  for k = 0, math.ceil(LOOKUPS / 5) - 1 do
    sim.at(WARMUP + ATTACK + 10 * k, function()
      for _ = 1, math.min(5, LOOKUPS - 5 * k) do
        victim:dht_lookup(random_up(hosts), function(r)
          ended = ended + 1
          if r.found then found = found + 1 end
          local ca = r.closest_addr or ""
          if ca:find("^66%.1%.1%.1:") or ca:find("^77%.2%.2%.2:") then closest_atk = closest_atk + 1 end
        end)
      end
    end)
  end
  sim.run(WARMUP + ATTACK + 10 * math.ceil(LOOKUPS / 5) + 30)
  sim.result("victim_table", t.nodes)
  sim.result("victim_table_attackers", t.attackers)
  sim.result("victim_table_attacker_share", t.nodes > 0 and t.attackers / t.nodes or 0)
  sim.result("victim_lookups", ended)
  sim.result("victim_lookup_success", ended > 0 and found / ended or 0)
  sim.result("victim_closest_attacker", ended > 0 and closest_atk / ended or 0)
  sim.result("sybils", SYBILS)
  sim.assert(ended > 0, "the victim's lookups did not end")
else
  sim.assert(false, "mode must be network or attack")
end
