-- luacheck: read globals sim
-- eclipse.lua — the eclipse attack of Heilman, Kendler, Zohar and Goldberg,
-- "Eclipse Attacks on Bitcoin's Peer-to-Peer Network" (USENIX Security 2015).
--
-- For each victim policy (the shipped defaults, and the deliberately weak
-- examples/policies/trust-newest that dials the newest addresses of the new
-- table), each attacker size in SIZES and each of TRIALS independent trials,
-- the scenario builds a separate small world in the same simulation: SEEDS
-- seed hosts, HONEST honest hosts, one victim, and the attacker's hosts,
-- spread over as many /16 groups as there are hosts, plus PHANTOM_GROUPS
-- groups of addresses that are no host at all. From time 0 the attacker
--   * holds HOLD inbound connections to the victim (its whole inbound
--     allowance: the victim runs with max_inbound = HOLD),
--   * floods ADDR messages of fresh attacker addresses on them,
--   * answers GETADDR only with attacker addresses.
-- At ATTACK seconds the victim restarts (its saved book is reloaded; without
-- anchors unless --set anchors=true, as in the paper) and AFTER seconds later
-- the scenario checks whether ALL of its outbound connections go to the
-- attacker. It reports, per policy and attacker size, the share of trials in
-- which the victim was eclipsed.
--
--   peerd sim examples/scenarios/eclipse.lua --out /tmp/eclipse
--   peerd sim examples/scenarios/eclipse.lua --set trials=10 --set sizes=20,50,100

local SEEDS = sim.param("seeds", 1)
local HONEST = sim.param("honest", 20)
local TRIALS = sim.param("trials", 4)
local SIZES = sim.param("sizes", "16,48")
local ATTACK = sim.param("attack", 1800)
local AFTER = sim.param("after", 120)
local HOLD = sim.param("hold", 8)
local RATE = sim.param("flood_rate", 0.05)     -- ADDR messages per second per connection
local FSIZE = sim.param("flood_size", 10)      -- addresses per ADDR
local PHANTOM_GROUPS = sim.param("phantom_groups", 8)
local ANCHORS = sim.param("anchors", false)
local POLICY_DIRS = {
  {name = "default", dir = sim.param("policies", "../../policies")},
  {name = "trust_newest", dir = sim.param("weak", "../policies/trust-newest")},
}

local sizes = {}
for v in string.gmatch(SIZES, "[^,]+") do sizes[#sizes + 1] = math.tointeger(tonumber(v)) end

sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}

-- runs[k] = {policy =, size =, victim =}
local runs = {}
for _, pol in ipairs(POLICY_DIRS) do
  for _, size in ipairs(sizes) do
    for trial = 1, TRIALS do
      local seeds = sim.hosts(SEEDS, {seed_mode = true, policies = POLICY_DIRS[1].dir})
      sim.hosts(HONEST, {seeds = seeds, policies = POLICY_DIRS[1].dir})
      local victim = sim.host{seeds = seeds, policies = pol.dir, max_inbound = HOLD}
      sim.attackers(size, {
        policies = POLICY_DIRS[1].dir,
        targets = {victim},
        hold_inbound = HOLD,
        flood_addrs = {rate = RATE, size = FSIZE, groups = PHANTOM_GROUPS, per_group = 16},
        getaddr_attacker_only = true,
      })
      runs[#runs + 1] = {policy = pol.name, size = size, trial = trial, victim = victim}
    end
  end
end

local function victims_share(policy)
  local sum, n = 0, 0
  for _, r in ipairs(runs) do
    if r.policy == policy then
      sum = sum + r.victim:attacker_share().outbound
      n = n + 1
    end
  end
  return n > 0 and sum / n or 0
end

sim.every(60, function()
  for _, pol in ipairs(POLICY_DIRS) do
    sim.record("victim_attacker_share_" .. pol.name, victims_share(pol.name))
  end
  local st = sim.stats()
  sim.record("outbound_mean", st.outbound_mean)
  sim.record("at_min_fraction", st.at_min_fraction)
end)

sim.run(ATTACK)
for _, r in ipairs(runs) do r.victim:restart{anchors = ANCHORS} end
sim.run(ATTACK + AFTER)

local summary = {}
for _, pol in ipairs(POLICY_DIRS) do
  local per = {}
  for _, size in ipairs(sizes) do
    local ecl, n, share = 0, 0, 0
    for _, r in ipairs(runs) do
      if r.policy == pol.name and r.size == size then
        local sh = r.victim:attacker_share()
        n = n + 1
        share = share + sh.outbound
        if sh.eclipsed then ecl = ecl + 1 end
      end
    end
    per[#per + 1] = {attackers = size, runs = n, eclipsed = ecl,
                     eclipsed_share = ecl / n, outbound_attacker_share = share / n}
    sim.result(string.format("eclipsed_share_%s_%d", pol.name, size), ecl / n)
  end
  summary[pol.name] = per
end
sim.result("eclipse", summary)
sim.result("trials", TRIALS)
sim.result("honest", HONEST)
sim.result("anchors", ANCHORS)
