-- luacheck: std +busted
-- `peerd sim`: the scenario lab through the real binary. Small sizes; each
-- run is bounded by its scenario's virtual duration.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local SRC = os.getenv("PEERD_SOURCE_DIR") or "."
local BOOT = SRC .. "/examples/scenarios/bootstrap.lua"

local function sim(args)
  return H.run_cmd(H.sh_quote(H.BIN) .. " sim " .. args)
end

-- A one-line scenario must be refused (exit != 0) with `want` in the output.
local function refused(dir, body, want)
  local bad = dir .. "/bad.lua"
  H.write_file(bad, "-- luacheck: ignore\n" .. body .. "\n")
  local out, rc = sim(H.sh_quote(bad) .. " --seed 1")
  assert.are_not.equal(0, rc, out)
  assert.is_truthy(out:find(want, 1, true), out)
end

describe("peerd sim", function()
  it("runs bootstrap.lua and writes byte-identical results for the same seed", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local common = H.sh_quote(BOOT) .. " --set hosts=20 --set duration=120 "
    local out1, rc1 = sim(common .. "--seed 5 --out " .. H.sh_quote(dir .. "/a"))
    assert.are.equal(0, rc1, out1)
    assert.is_truthy(out1:find("events/s", 1, true), out1)
    assert.is_truthy(out1:find("virtual:wall", 1, true), out1)
    local out2, rc2 = sim(common .. "--seed 5 --out " .. H.sh_quote(dir .. "/b"))
    assert.are.equal(0, rc2, out2)
    local out3, rc3 = sim(common .. "--seed 6 --out " .. H.sh_quote(dir .. "/c"))
    assert.are.equal(0, rc3, out3)
    local a = H.read_file(dir .. "/a/results.json")
    assert.is_truthy(a and #a > 0)
    assert.are.equal(a, H.read_file(dir .. "/b/results.json"))
    assert.are.equal(H.read_file(dir .. "/a/series.csv"), H.read_file(dir .. "/b/series.csv"))
    assert.are_not.equal(a, H.read_file(dir .. "/c/results.json"))
    local res = H.cjson.decode(a)
    assert.is_truthy(res, a)
    -- the diameter sample: within bounds and part of the byte-identical output
    local d = res.results.diameter_sample
    assert.is_true(d >= 1 and d <= 19, a)
    assert.is_true(res.results.mean_path >= 1 and res.results.mean_path <= d, a)
  end)

  it("runs the DHT when asked (bootstrap.lua --set dht=true) and refuses bad DHT arguments", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local out, rc = sim(H.sh_quote(BOOT) .. " --set hosts=20 --set duration=30 --set dht=true"
      .. " --seed 1 --out " .. H.sh_quote(dir .. "/d"))
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("DHT datagrams", 1, true), out)
    assert.is_truthy(out:find("dht_packet", 1, true), out)
    local res = H.cjson.decode(H.read_file(dir .. "/d/results.json"))
    assert.is_true(res.results.dht_table_min >= 8, out)
    assert.is_true(res.results.dht_records_found > 0, out)
    -- off by default: no datagram, no DHT result
    out, rc = sim(H.sh_quote(BOOT) .. " --set hosts=20 --set duration=30 --seed 1")
    assert.are.equal(0, rc, out)
    assert.is_falsy(out:find("DHT datagrams", 1, true), out)
    refused(dir, "sim.dht('yes')", "boolean expected")
    refused(dir, "sim.host{bootnodes = {'a'}}", "bootnodes must be an array of hosts")
    refused(dir, "sim.dht(true); local h = sim.host{}; h:dht_lookup('xyz')", "40 hex digits")
  end)

  it("gives a host the book geometry it asks for, across restarts, and refuses a bad one", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = dir .. "/geom.lua"
    H.write_file(path, [[
-- luacheck: ignore
local seeds = sim.hosts(1, {seed_mode = true})
local small = sim.hosts(6, {seeds = seeds, book = {new_buckets = 16, tried_buckets = 4}})
local big = sim.hosts(6, {seeds = seeds})
sim.run(120)
sim.assert(small[1]:book_capacity() == (16 + 4) * 64, "small capacity " .. small[1]:book_capacity())
sim.assert(big[1]:book_capacity() == (1024 + 256) * 64, "default capacity")
sim.assert(small[1]:book_size() > 0, "small book learned nothing")
small[1]:restart()
sim.run(240)
sim.assert(small[1]:book_capacity() == (16 + 4) * 64, "after restart " .. small[1]:book_capacity())
sim.assert(small[1]:book_size() > 0, "restart lost the book")
sim.result("ok", true)
]])
    local out, rc = sim(H.sh_quote(path) .. " --seed 1")
    assert.are.equal(0, rc, out)
    refused(dir, "sim.host{book = {new_buckets = 100}}", "power of two")
  end)

  it("handshakes with the keyed hash by default and with ed25519 on request", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = dir .. "/auth.lua"
    H.write_file(path, [[
-- luacheck: ignore
if sim.param("real", false) then sim.auth("ed25519") end
local seeds = sim.hosts(1, {seed_mode = true})
local nodes = sim.hosts(8, {seeds = seeds, min_outbound = 2, max_outbound = 2})
sim.run(120)
local hs = 0
for _, h in ipairs(nodes) do
  sim.assert(h:outbound() == 2, tostring(h) .. " has " .. h:outbound() .. " outbound")
  hs = hs + h:counters().handshakes
end
sim.result("handshakes", hs)
]])
    for _, real in ipairs({ "false", "true" }) do
      local out, rc = sim(H.sh_quote(path) .. " --seed 2 --set real=" .. real)
      assert.are.equal(0, rc, out)
    end
    refused(dir, 'sim.auth("rsa")', "ed25519")
  end)

  it("max_outbound = 0 never dials over hours; hosts carry records their nodes would dial", function()
    -- (the dialer's and the manager's unit tests run 6 h and 3 h of it too)
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = dir .. "/off.lua"
    H.write_file(path, [[
-- luacheck: ignore
local seeds = sim.hosts(1, {seed_mode = true})
-- listens only: seeds given, a book that fills from its inbound peers, 2 h
local quiet = sim.host{seeds = seeds, max_outbound = 0}
local nodes = sim.hosts(6, {seeds = {seeds[1], quiet}})
for i = 1, 3 do nodes[i]:stop() end
sim.run(600)
for i = 1, 3 do nodes[i]:start() end
sim.run(2 * 3600)
sim.assert(quiet:counters().dials == 0, "the listen-only host dialled " .. quiet:counters().dials)
sim.assert(quiet:inbound() > 0, "nobody connected to it")
sim.assert(quiet:book_size() > 0, "its book stayed empty")
local d = 0
for _, h in ipairs(nodes) do
  sim.assert(h:dialable() >= 4, tostring(h) .. " could dial only " .. h:dialable())
  d = d + h:dialable()
end
sim.assert(sim.stats().records_mean >= 4, "records_mean " .. sim.stats().records_mean)
sim.result("dialable", d)
]])
    local out, rc = sim(H.sh_quote(path) .. " --seed 4")
    assert.are.equal(0, rc, out)
  end)

  it("takes a host's keep-alive interval: fewer frames, same connections", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = dir .. "/ping.lua"
    H.write_file(path, [[
-- luacheck: ignore
local p = sim.param("ping", 0)
local seeds = sim.hosts(1, {seed_mode = true, ping_interval = p})
local nodes = sim.hosts(8, {seeds = seeds, min_outbound = 2, max_outbound = 2, ping_interval = p})
sim.run(1800)
local sent, out = 0, 0
for _, h in ipairs(nodes) do
  sent = sent + h:counters().messages_sent
  out = out + h:outbound()
end
sim.result("sent", sent)
sim.result("outbound", out)
]])
    local res = {}
    for _, ping in ipairs({ 0, 600 }) do
      local o = dir .. "/o" .. ping
      local out, rc = sim(H.sh_quote(path) .. " --seed 4 --set ping=" .. ping .. " --out " .. H.sh_quote(o))
      assert.are.equal(0, rc, out)
      res[ping] = H.cjson.decode(H.read_file(o .. "/results.json")).results
    end
    assert.are.equal(16, res[0].outbound)
    assert.are.equal(16, res[600].outbound)
    -- 60 s pings: ~30 PING+PONG per connection in 30 min (the ends take
    -- turns); 600 s: ~3; the handshakes and PEX (~450 frames) are the same
    assert.is_true(res[600].sent * 2 < res[0].sent, res[600].sent .. " vs " .. res[0].sent)
    refused(dir, "sim.host{ping_interval = -1}", "ping_interval")
  end)

  it("fails with the scenario's file:line when an assertion fails", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = dir .. "/failing.lua"
    H.write_file(path, "-- luacheck: ignore\nsim.run(1)\nsim.assert(false, \"no peers\")\n")
    local out, rc = sim(H.sh_quote(path) .. " --seed 1")
    assert.are.equal(1, rc, out)
    assert.is_truthy(out:find("failing.lua:3", 1, true), out)
    assert.is_truthy(out:find("no peers", 1, true), out)
  end)

  -- The shipped scenarios at small sizes: exit 0 and their result keys.
  local function run_scenario(name, sets, keys)
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local path = SRC .. "/examples/scenarios/" .. name
    local out, rc = sim(H.sh_quote(path) .. " --seed 3 " .. sets .. " --out " .. H.sh_quote(dir .. "/o"))
    assert.are.equal(0, rc, out)
    local doc = H.read_file(dir .. "/o/results.json")
    assert.is_truthy(doc, out)
    local res = H.cjson.decode(doc)
    assert.are.equal("ok", res.status)
    for _, k in ipairs(keys) do
      assert.is_not_nil(res.results[k], "missing result " .. k .. " in " .. doc)
    end
    return res.results, dir
  end

  it("runs churn.lua small: one component at every check", function()
    local r = run_scenario("churn.lua",
      "--set hosts=20 --set hours=0.5 --set warmup=120 --set sample=300",
      {"left", "joined", "checks", "min_largest_component_fraction", "max_components",
       "diameter_sample", "mean_path", "max_diameter_sample", "max_mean_path"})
    assert.is_true(r.left > 0 and r.joined > 0)
    assert.is_true(r.diameter_sample >= 1 and r.diameter_sample <= r.max_diameter_sample)
    assert.is_true(r.max_diameter_sample <= 19 and r.max_mean_path >= 1)
    assert.are.equal(1, r.max_components)
  end)

  it("runs heilman.lua small: a pool attacks a mature victim, shares and the bound reported", function()
    local r = run_scenario("heilman.lua",
      "--set honest=12 --set seeds=1 --set warmup=300 --set restart_after=300 --set after=120"
        .. " --set addresses=500",
      {"before_new_attacker", "before_tried_attacker", "heilman_bound", "outbound_attacker_share",
       "inbound_attacker_share", "eclipsed", "isolated", "time_to_eclipse", "pool_held"})
    assert.is_true(r.before_new_attacker > 0, "the flood reached the victim's new table")
    assert.is_true(r.heilman_bound > 0 and r.heilman_bound <= 1)
    assert.is_true(r.inbound_attacker_share > 0, "the pool holds inbound slots")
    assert.is_true(r.outbound_attacker_share >= 0 and r.outbound_attacker_share <= 1)
    if r.eclipsed then assert.are.equal(1, r.outbound_attacker_share) end
    assert.is_true(r.time_to_eclipse == -1 or r.time_to_eclipse >= 0)
  end)

  it("runs eclipse.lua small and reports eclipse shares for both policies", function()
    local r, dir = run_scenario("eclipse.lua",
      "--set honest=6 --set trials=1 --set sizes=10 --set attack=600 --set after=60",
      {"eclipse", "eclipsed_share_default_10", "eclipsed_share_trust_newest_10", "trials"})
    -- plots next to series.csv when gnuplot is installed
    local has_gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1")
    if has_gnuplot then
      local base = dir .. "/o/plot-victim_attacker_share_trust_newest"
      local f = io.open(base .. ".png", "rb") or io.open(base .. ".svg", "rb")
      assert.is_truthy(f, "no plot written although gnuplot is installed")
      local head = f:read(8)
      f:close()
      assert.is_truthy(head and (head:find("PNG", 1, true) or head:find("<", 1, true)))
    end
    assert.is_truthy(r.eclipse.default and r.eclipse.trust_newest)
    for _, v in ipairs({r.eclipsed_share_default_10, r.eclipsed_share_trust_newest_10}) do
      assert.is_true(v >= 0 and v <= 1)
    end
  end)

  it("runs policy-compare.lua small and reports both sides", function()
    local r = run_scenario("policy-compare.lua", "--set hosts=12 --set duration=120",
      {"compare", "hosts_per_side"})
    assert.is_truthy(r.compare.a and r.compare.b)
    assert.is_true(r.compare.a.largest_component >= 1 and r.compare.b.largest_component >= 1)
    assert.is_truthy(r.compare.a.outbound_mean and r.compare.b.outbound_mean)
  end)
end)
