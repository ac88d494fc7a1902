-- luacheck: read globals sim
-- bootstrap.lua — how fast does a fresh network find its feet?
--
-- HOSTS honest hosts (default 50) start at time 0 knowing only SEEDS seed
-- hosts (default 2, in seed mode: they crawl, answer GETADDR and hang up).
-- Every host runs the shipped policies (policies/). The scenario reports
-- the virtual time until 95% of the hosts have their minimum number of
-- outbound peers, and asserts that it happens within the run. At the end it
-- reports the connectivity and a diameter sample (BFS from DIAM_SAMPLES
-- random hosts, default 16). SEED_MAX_INBOUND (default 0: the daemon's 40)
-- sets the seeds' inbound limit, which is also their limit of inbound
-- handshakes at once: what bounds a 1,000-host start (docs/scenarios.md).
-- DHT (default false): true runs the DHT on every host, the seeds as its
-- bootnodes, and adds the DHT's figures to the results (dht_*).
--
--   peerd sim examples/scenarios/bootstrap.lua --seed 1 --out /tmp/boot
--   peerd sim examples/scenarios/bootstrap.lua --set hosts=1000 --set seeds=5

local N = sim.param("hosts", 50)
local NSEEDS = sim.param("seeds", 2)
local DURATION = sim.param("duration", 600)          -- virtual seconds
local POLICIES = sim.param("policies", "../../policies")
local DIAM_SAMPLES = sim.param("diam_samples", 16)
local SEED_MAX_INBOUND = sim.param("seed_max_inbound", 0)  -- 0: the default
local DHT = sim.param("dht", false)
local TARGET = 0.95

sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}
if DHT then sim.dht(true) end

local seeds = sim.hosts(NSEEDS, {seed_mode = true, policies = POLICIES,
                                 max_inbound = SEED_MAX_INBOUND > 0 and SEED_MAX_INBOUND or nil})
local nodes = sim.hosts(N, {seeds = seeds, policies = POLICIES, bootnodes = DHT and seeds or nil})

sim.time_to("t_95pct_min_outbound", function()
  return sim.stats().at_min_fraction >= TARGET
end, 1)

sim.every(10, function()
  local st = sim.stats()
  sim.record("at_min_fraction", st.at_min_fraction)
  sim.record("outbound_mean", st.outbound_mean)
  sim.record("book_mean", st.book_mean)
end)

sim.run(DURATION)

local st = sim.stats()
local conn = sim.connectivity()
local diam = sim.diameter{samples = DIAM_SAMPLES}
local msgs = 0
for _, h in ipairs(nodes) do msgs = msgs + h:counters().messages_sent end

sim.result("hosts", N)
sim.result("seeds", NSEEDS)
sim.result("at_min_fraction", st.at_min_fraction)
sim.result("outbound_mean", st.outbound_mean)
sim.result("inbound_mean", st.inbound_mean)
sim.result("book_mean", st.book_mean)
sim.result("largest_component", conn.largest_component)
sim.result("components", conn.components)
sim.result("diameter_sample", diam.diameter)
sim.result("mean_path", diam.mean_path)
sim.result("messages_sent", msgs)
if DHT then
  local d = sim.dht_stats()
  sim.result("dht_table_mean", d.table_mean)
  sim.result("dht_table_min", d.table_min)
  sim.result("dht_records_found", d.records_found)
  sim.result("dht_datagrams", d.datagrams_sent)
end

sim.assert(sim.result("t_95pct_min_outbound") ~= nil,
           "95% of hosts never reached their minimum outbound peers")
