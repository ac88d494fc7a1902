-- luacheck: read globals sim
-- sim_pool.lua — an attacker pool of N addresses (--set n=N) against a victim in
-- a 21-host network: pool counters and the victim's attacker share before and
-- after its restart; the summary's RSS shows what the addresses cost.
--   build/peerd sim bench/sim_pool.lua --set n=1000000
sim.link{latency_ms = 60, jitter_ms = 40, dist = "uniform"}
local seeds = sim.hosts(1, {seed_mode = true, policies = "../policies"})
sim.hosts(20, {seeds = seeds, policies = "../policies"})
local victim = sim.host{seeds = seeds, policies = "../policies", max_inbound = 8}
sim.run(600)
local p = sim.pool{addresses = sim.param("n", 1000), targets = {victim}, hold_inbound = 8,
                   flood = {rate = 0.05, size = 10}}

sim.run(1800)
local c = p:counters()
print("counters", c.connections, c.held, c.accepted, c.dials, c.dials_ok, c.handshakes,
      c.getaddr_answered, c.addrs_sent, c.floods)
local sh = victim:attacker_share()
print("before restart", sh.outbound, sh.all, sh.outbound_peers, sh.peers, sh.attackers, victim:book_size())
victim:restart{anchors = false}
sim.run(1800 + 600)
sh = victim:attacker_share()
c = p:counters()
print("after restart", sh.outbound, sh.all, sh.outbound_peers, sh.peers, sh.attackers, sh.eclipsed, victim:book_size())
print("counters", c.connections, c.held, c.accepted, c.dials, c.dials_ok, c.handshakes,
      c.getaddr_answered, c.addrs_sent, c.floods)
