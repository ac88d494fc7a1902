-- luacheck: read globals sim
-- policy-compare.lua — the same network under two policy directories, side by side.
--
-- Two separate worlds are built in one simulation, identical but for the
-- policies every host runs: A (default: the shipped policies/) and B
-- (default: examples/policies/split-70-30). Each has SEEDS seeds and HOSTS
-- hosts on the same link model; host k of A and host k of B get the same
-- place in the build order. The scenario reports, for each side, the time
-- until 95% of its hosts have their minimum outbound peers, outbound and
-- inbound means, book sizes, components and messages sent, and records both
-- sides' series (prefix a_ / b_) for plotting.
--
--   peerd sim examples/scenarios/policy-compare.lua --out /tmp/cmp
--   peerd sim examples/scenarios/policy-compare.lua --set b=../policies/trust-newest

local N = sim.param("hosts", 50)
local NSEEDS = sim.param("seeds", 2)
local DURATION = sim.param("duration", 900)
local SIDES = {
  {name = "a", dir = sim.param("a", "../../policies")},
  {name = "b", dir = sim.param("b", "../policies/split-70-30")},
}

sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}

for _, side in ipairs(SIDES) do
  local seeds = sim.hosts(NSEEDS, {seed_mode = true, policies = side.dir})
  side.nodes = sim.hosts(N, {seeds = seeds, policies = side.dir})
  sim.time_to(side.name .. "_t_95pct_min_outbound", function()
    return sim.stats(side.nodes).at_min_fraction >= 0.95
  end, 1)
end

sim.every(10, function()
  for _, side in ipairs(SIDES) do
    local st = sim.stats(side.nodes)
    sim.record(side.name .. "_outbound_mean", st.outbound_mean)
    sim.record(side.name .. "_at_min_fraction", st.at_min_fraction)
    sim.record(side.name .. "_book_mean", st.book_mean)
  end
end)

sim.run(DURATION)

local report = {}
for _, side in ipairs(SIDES) do
  local st = sim.stats(side.nodes)
  local c = sim.connectivity(side.nodes)
  local msgs = 0
  for _, h in ipairs(side.nodes) do msgs = msgs + h:counters().messages_sent end
  report[side.name] = {
    policies = side.dir,
    t_95pct_min_outbound = sim.result(side.name .. "_t_95pct_min_outbound"),
    at_min_fraction = st.at_min_fraction,
    outbound_mean = st.outbound_mean,
    inbound_mean = st.inbound_mean,
    book_mean = st.book_mean,
    components = c.components,
    largest_component = c.largest_component,
    messages_sent = msgs,
  }
end
sim.result("compare", report)
sim.result("hosts_per_side", N)
