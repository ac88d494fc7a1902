-- luacheck: read globals sim
-- churn.lua — does the network hold together while hosts come and go?
--
-- HOSTS honest hosts (default 60) bootstrap from SEEDS seeds for WARMUP
-- seconds (all at t = 0, or spread over RAMP seconds). Then, every PERIOD seconds (at the middle of each minute by
-- default), enough hosts leave (graceful stop: the book is saved) and as
-- many stopped ones join again (restart from their saved book and anchors)
-- that RATE (default 30%) of the hosts leave and join per virtual hour.
-- Every SAMPLE seconds (on the minute, so a host that just joined had half a
-- period to dial) the scenario records the largest component and asserts
-- that the up hosts form ONE component, and takes a diameter sample
-- (breadth-first searches from DIAM_SAMPLES random up hosts, default 16).
--
--   peerd sim examples/scenarios/churn.lua --out /tmp/churn
--   peerd sim examples/scenarios/churn.lua --set hosts=1000 --set hours=24

local N = sim.param("hosts", 60)
local NSEEDS = sim.param("seeds", 2)
local RATE = sim.param("rate", 0.30)       -- share of hosts leaving (and joining) per hour
local HOURS = sim.param("hours", 2)
local WARMUP = sim.param("warmup", 300)    -- s before the churn starts
local PERIOD = sim.param("period", 60)     -- s between churn steps
local SAMPLE = sim.param("sample", 600)    -- s between connectivity checks
local POLICIES = sim.param("policies", "../../policies")
local DIAM_SAMPLES = sim.param("diam_samples", 16)
local ASSERT = sim.param("assert_connected", true) -- false: record only (bench/bench_sim.sh)
-- the hosts' address-book tables (Bitcoin's 1024/256 by default; 64/16 or 16/4 for big
-- networks). Seeds always keep Bitcoin's: a seed's job is to know the network, and a 100,000-host
-- run whose 5 seeds held 1,280 addresses each left 84% of the hosts short of outbound peers.
local BOOK = {new_buckets = sim.param("new_buckets", 1024), tried_buckets = sim.param("tried_buckets", 256)}

sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}
local PING = sim.param("ping_interval", 0)  -- s; 0 = the daemon's default (60 s)
-- records=false: hosts exchange no node records (the overlay as before issue 12: addresses
-- only), for scale runs where ~250 B per record a host keeps is too much memory
local RECORDS = sim.param("records", true)
-- RAMP > 0: the hosts first join in equal batches, one per second over RAMP seconds (a
-- 100,000-host flash crowd on 5 seeds at t = 0 takes many virtual minutes to sort itself out)
local RAMP = sim.param("ramp", 0)
sim.assert(RAMP >= 0 and RAMP <= WARMUP, "ramp must be within [0, warmup]")
local seeds = sim.hosts(NSEEDS, {seed_mode = true, policies = POLICIES, ping_interval = PING,
                                records = RECORDS})
local nodes = sim.hosts(N, {seeds = seeds, policies = POLICIES, book = BOOK, ping_interval = PING,
                            up = RAMP <= 0, records = RECORDS})
if RAMP > 0 then
  local per = math.ceil(N / RAMP)
  for k = 0, math.ceil(N / per) - 1 do
    sim.at(k, function()
      for i = k * per + 1, math.min(N, (k + 1) * per) do nodes[i]:start() end
    end)
  end
end

local per_step = RATE * N * PERIOD / 3600  -- expected leaves (and joins) per step
local carry = 0
local left, joined = 0, 0
local down = {}                             -- stopped hosts, in leaving order

local function churn_step()
  carry = carry + per_step
  local k = math.floor(carry)
  carry = carry - k
  -- joins first (hosts that left at an earlier step), then leaves
  for _ = 1, math.min(k, #down) do
    local h = table.remove(down, math.random(#down))
    h:start()
    joined = joined + 1
  end
  for _ = 1, k do
    local h = nodes[math.random(#nodes)]
    if h:is_up() then
      h:stop()
      down[#down + 1] = h
      left = left + 1
    end
  end
end

local min_largest, checks, worst_components = 1.0, 0, 1
local max_diameter, max_mean_path = 0, 0.0
local function check()
  local c = sim.connectivity()
  local d = sim.diameter{samples = DIAM_SAMPLES}
  if d.diameter > max_diameter then max_diameter = d.diameter end
  if d.mean_path > max_mean_path then max_mean_path = d.mean_path end
  sim.record("diameter_sample", d.diameter)
  sim.record("mean_path", d.mean_path)
  local st = sim.stats()
  checks = checks + 1
  local frac = c.hosts > 0 and c.largest_component / c.hosts or 0
  if frac < min_largest then min_largest = frac end
  if c.components > worst_components then worst_components = c.components end
  sim.record("largest_component_fraction", frac)
  sim.record("components", c.components)
  sim.record("up", st.up)
  sim.assert(not ASSERT or c.components == 1, string.format("t=%.0fs: %d components (largest %d of %d)",
                                              sim.now(), c.components, c.largest_component, c.hosts))
end

sim.every(10, function()
  local st = sim.stats()
  sim.record("outbound_mean", st.outbound_mean)
  sim.record("at_min_fraction", st.at_min_fraction)
end)
sim.at(WARMUP + PERIOD / 2, function()
  churn_step()
  sim.every(PERIOD, churn_step)
end)
sim.at(WARMUP, function()
  check()
  sim.every(SAMPLE, check)
end)

local END = WARMUP + HOURS * 3600
sim.run(END)

local st = sim.stats()
local d = sim.diameter{samples = DIAM_SAMPLES}
sim.result("hosts", N)
sim.result("hours", HOURS)
sim.result("left", left)
sim.result("joined", joined)
sim.result("checks", checks)
sim.result("min_largest_component_fraction", min_largest)
sim.result("max_components", worst_components)
sim.result("at_min_fraction", st.at_min_fraction)
sim.result("outbound_mean", st.outbound_mean)
sim.result("diameter_sample", d.diameter)        -- at the end: max eccentricity seen
sim.result("mean_path", d.mean_path)             -- at the end: mean shortest path
sim.result("max_diameter_sample", max_diameter)  -- over the checks
sim.result("max_mean_path", max_mean_path)
