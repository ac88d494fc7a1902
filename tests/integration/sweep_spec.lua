-- luacheck: std +busted
-- `peerd sim --sweep`: parameter sweeps in worker processes, sweep.json /
-- sweep.csv with Wilson and t intervals, --trial + merge, failures. A tiny
-- scenario (a seed and 3-4 hosts for 30 virtual seconds: a few ms a trial).
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local function sim(args)
  return H.run_cmd(H.sh_quote(H.BIN) .. " sim " .. args)
end

-- Trial 1 of --seed 1 runs with seed 6717404888216029 (splitmix64, the unit
-- test checks the derivation): the scenario fails there when hosts = 4.
local TINY = [[
-- luacheck: ignore
local n = sim.param("hosts", 3)
local seeds = sim.hosts(1, {seed_mode = true})
sim.hosts(n, {seeds = seeds})
if sim.param("hang", false) then while true do end end
sim.assert(not (n == 4 and sim.seed == sim.param("fail_seed", 0)), "fails on purpose")
sim.run(30)
sim.result("outbound_mean", sim.stats().outbound_mean)
sim.result("connected", sim.connectivity().components == 1)
sim.result("coin", math.random() < 0.5)
sim.result("nested", {die = math.random(1, 6), label = "not a metric"})
]]

local Z = 1.959963984540054
local function wilson(k, n)
  local p = k / n
  local den = 1 + Z * Z / n
  local c = (p + Z * Z / (2 * n)) / den
  local h = Z / den * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
  return math.max(0, c - h), math.min(1, c + h)
end

local function setup()
  local dir = H.tmpdir()
  local scen = dir .. "/tiny.lua"
  H.write_file(scen, TINY)
  return dir, scen
end

describe("peerd sim --sweep", function()
  it("runs 2 points x 3 trials the same bytes whatever --jobs, with intervals and failures", function()
    local dir, scen = setup()
    finally(function() H.rmdir(dir) end)
    local common = H.sh_quote(scen) .. " --sweep hosts=3,4 --trials 3 --seed 1 --set fail_seed=6717404888216029 "
    local out1, rc1 = sim(common .. "--jobs 1 --out " .. H.sh_quote(dir .. "/j1"))
    -- one trial failed on purpose: exit 1, the outputs written anyway
    assert.are.equal(1, rc1, out1)
    assert.is_truthy(out1:find("6/6 trials, 2/2 points done, 1 failed", 1, true), out1)
    assert.is_truthy(out1:find("fails on purpose", 1, true), out1)
    local out2, rc2 = sim(common .. "--jobs 2 --out " .. H.sh_quote(dir .. "/j2"))
    assert.are.equal(1, rc2, out2)
    local js = H.read_file(dir .. "/j1/sweep.json")
    assert.is_truthy(js and #js > 0)
    assert.are.equal(js, H.read_file(dir .. "/j2/sweep.json"))
    local csv = H.read_file(dir .. "/j1/sweep.csv")
    assert.are.equal(csv, H.read_file(dir .. "/j2/sweep.csv"))

    local s = H.cjson.decode(js)
    assert.are.equal("tiny.lua", s.scenario)
    assert.are.equal(1, s.seed)
    assert.are.equal(3, s.trials)
    assert.are.equal(2, s.points_total)
    assert.are.equal(6, s.trials_total)
    assert.are.equal(5, s.trials_ok)
    assert.are.equal(1, s.trials_failed)
    assert.are.equal(0, s.trials_missing)
    assert.are.equal("hosts", s.sweep[1].name)
    -- metrics: sorted, nested tables flattened, strings left out
    local names = {}
    for _, m in ipairs(s.metrics) do names[#names + 1] = m.name .. ":" .. m.kind end
    assert.are.same({"coin:boolean", "connected:boolean", "nested.die:number", "outbound_mean:number"}, names)
    assert.are.equal("3", s.points[1].params.hosts)
    assert.are.equal("4", s.points[2].params.hosts)
    -- the failed trial is counted and listed, its results left out
    local p2 = s.points[2]
    assert.are.equal(2, p2.ok)
    assert.are.equal(1, p2.failed)
    assert.are.equal(1, #p2.failures)
    assert.are.equal(1, p2.failures[1].trial)
    assert.are.equal(4, p2.failures[1].index)
    assert.are.equal(6717404888216029, p2.failures[1].seed)
    assert.is_truthy(p2.failures[1].error:find("fails on purpose", 1, true), js)
    assert.are.equal(2, p2.metrics.coin.n)
    for _, p in ipairs(s.points) do
      for _, name in ipairs({"coin", "connected"}) do
        local m = p.metrics[name]
        assert.are.equal(p.ok, m.n)
        assert.is_near(m.successes / m.n, m.proportion, 1e-9)
        local lo, hi = wilson(m.successes, m.n)
        assert.is_near(lo, m.wilson_lo, 1e-9)
        assert.is_near(hi, m.wilson_hi, 1e-9)
        assert.is_true(m.wilson_lo <= m.proportion and m.proportion <= m.wilson_hi)
      end
      local d = p.metrics["nested.die"]
      assert.is_true(d.min >= 1 and d.max <= 6 and d.min <= d.mean and d.mean <= d.max, js)
      assert.is_true(d.ci_lo <= d.mean and d.mean <= d.ci_hi, js)
    end
    -- the CSV: a header and one row per point and metric
    local lines = {}
    for l in csv:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(1 + 2 * 4, #lines, csv)
    local header = "^point,hosts,metric,kind,n,successes,proportion,mean,sd,min,max,interval,lo,hi,"
    assert.is_truthy(lines[1]:find(header), csv)
    assert.is_truthy(lines[2]:find("^0,3,coin,boolean,3,"), csv)
    -- each trial is a plain run: its results.json is the one `peerd sim` writes with its seed
    local one, rc = sim(H.sh_quote(scen) .. " --seed 6717404888216029 --set fail_seed=6717404888216029 "
      .. "--set hosts=3 --out " .. H.sh_quote(dir .. "/plain"))
    assert.are.equal(0, rc, one)
    assert.are.equal(H.read_file(dir .. "/plain/results.json"), H.read_file(dir .. "/j1/trials/p0-t1/results.json"))

    -- --trial K over two directories (two "machines"), then merge: the same bytes
    for k = 0, 5 do
      local d = dir .. ((k % 2 == 0) and "/m1" or "/m2")
      local o, r = sim(common .. "--trial " .. k .. " --out " .. H.sh_quote(d))
      assert.are.equal((k == 4) and 1 or 0, r, o)
    end
    local mo, mrc = sim("merge --out " .. H.sh_quote(dir .. "/merged") .. " " .. H.sh_quote(dir .. "/m1") .. " "
      .. H.sh_quote(dir .. "/m2"))
    assert.are.equal(1, mrc, mo) -- the failed trial
    assert.are.equal(js, H.read_file(dir .. "/merged/sweep.json"))
    assert.are.equal(csv, H.read_file(dir .. "/merged/sweep.csv"))
    -- one directory alone: the other's trials are missing, and said so
    local po, prc = sim("merge --out " .. H.sh_quote(dir .. "/part") .. " " .. H.sh_quote(dir .. "/m1"))
    assert.are.equal(1, prc, po)
    local part = H.cjson.decode(H.read_file(dir .. "/part/sweep.json"))
    assert.are.equal(3, part.trials_missing)
    assert.are.same({1}, part.points[1].missing_trials)
    -- another sweep's directory does not merge
    local xo, xrc = sim(H.sh_quote(scen) .. " --sweep hosts=3 --trials 1 --trial 0 --out "
      .. H.sh_quote(dir .. "/other"))
    assert.are.equal(0, xrc, xo)
    xo, xrc = sim("merge " .. H.sh_quote(dir .. "/m1") .. " " .. H.sh_quote(dir .. "/other"))
    assert.are.equal(1, xrc, xo)
    assert.is_truthy(xo:find("different sweeps", 1, true), xo)
    -- nor does another sweep run into a directory that holds one
    xo, xrc = sim(H.sh_quote(scen) .. " --sweep hosts=3 --trials 1 --out " .. H.sh_quote(dir .. "/m1"))
    assert.are.equal(1, xrc, xo)
    assert.is_truthy(xo:find("holds another sweep", 1, true), xo)
  end)

  -- sim.branch(): a trial number's points share the run up to the branch
  -- (hosts is read before it, so only points with the same hosts share)
  local BRANCHY = [[
-- luacheck: ignore
local seeds = sim.hosts(1, {seed_mode = true})
local hs = sim.hosts(sim.param("hosts", 4), {seeds = seeds})
sim.run(20)
print("shared part ran")
sim.branch()
local k = sim.param("k", 0)
print("branch k=" .. k)
if k == 3 and sim.param("hang", false) then while true do end end
sim.assert(k ~= 2 or sim.seed ~= 6717404888216029, "branch fails on purpose")
for i = 1, k do hs[i]:stop() end
sim.run(40)
sim.result("outbound_mean", sim.stats().outbound_mean)
sim.result("coin", math.random() < 0.5)
]]

  it("runs the part before sim.branch() once per trial number: the same bytes as --no-branch", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    local scen = dir .. "/branchy.lua"
    H.write_file(scen, BRANCHY)
    local common = H.sh_quote(scen) .. " --sweep hosts=3,4 --sweep k=0,1,2 --trials 2 --seed 1 "
    local ob, rb = sim(common .. "--jobs 2 --out " .. H.sh_quote(dir .. "/b"))
    assert.are.equal(1, rb, ob) -- k = 2 fails on purpose in trial 1
    -- 2 trial numbers x 2 values of hosts: 4 shared runs, each branching 3 ways
    assert.is_truthy(ob:find("12 of 12 trials branched from 4 shared runs at sim.branch()", 1, true), ob)
    assert.is_truthy(ob:find("branch fails on purpose", 1, true), ob)
    local on, rn = sim(common .. "--jobs 1 --no-branch --out " .. H.sh_quote(dir .. "/n"))
    assert.are.equal(1, rn, on)
    assert.is_falsy(on:find("branched from", 1, true), on)
    assert.are.equal(H.read_file(dir .. "/n/sweep.json"), H.read_file(dir .. "/b/sweep.json"))
    local s = H.cjson.decode(H.read_file(dir .. "/b/sweep.json"))
    assert.are.equal(10, s.trials_ok) -- k = 2 in trial 1, at both values of hosts
    assert.are.equal(2, s.trials_failed)
    for pt = 0, 5 do
      for t = 0, 1 do
        local rel = "/trials/p" .. pt .. "-t" .. t
        assert.are.equal(H.read_file(dir .. "/n" .. rel .. "/results.json"),
          H.read_file(dir .. "/b" .. rel .. "/results.json"), rel)
        -- a branch's log starts with the shared part's, then its own
        local log = H.read_file(dir .. "/b" .. rel .. "/log.txt")
        local _, shared = log:gsub("shared part ran", "")
        assert.are.equal(1, shared, log)
        assert.is_truthy(log:find("branch k=" .. (pt % 3), 1, true), log)
      end
    end
    -- the first shared run says why the other value of hosts runs apart
    assert.is_truthy(H.read_file(dir .. "/b/trials/p0-t0/log.txt"):find(
      "swept parameter(s) hosts read before it: 3 of 6 points share this run", 1, true))
    for g = 0, 11 do assert.is_nil(H.read_file(dir .. "/b/trials/g" .. g .. "-shared.log")) end
    -- plain `peerd sim` ignores sim.branch(): the same results as the trial
    local po, prc = sim(H.sh_quote(scen) .. " --seed 6717404888216029 --set hosts=4 --set k=1 --out "
      .. H.sh_quote(dir .. "/plain"))
    assert.are.equal(0, prc, po)
    assert.are.equal(H.read_file(dir .. "/plain/results.json"), H.read_file(dir .. "/b/trials/p4-t1/results.json"))
    -- a branch past --trial-timeout is killed alone; its siblings finish
    local oh, rh = sim(H.sh_quote(scen) .. " --sweep k=0,3 --trials 1 --set hang=true --trial-timeout 1 --jobs 2 --out "
      .. H.sh_quote(dir .. "/h"))
    assert.are.equal(1, rh, oh)
    local sh = H.cjson.decode(H.read_file(dir .. "/h/sweep.json"))
    assert.are.equal(1, sh.trials_ok)
    assert.is_truthy(sh.points[2].failures[1].error:find("killed after --trial-timeout 1 s", 1, true), oh)
  end)

  it("kills a trial past --trial-timeout and records it failed", function()
    local dir, scen = setup()
    finally(function() H.rmdir(dir) end)
    -- the trial loops forever: whatever the machine's speed, the timeout ends it
    local out, rc = sim(H.sh_quote(scen) .. " --sweep hang=true --trials 1 --trial-timeout 1 --out "
      .. H.sh_quote(dir .. "/o"))
    assert.are.equal(1, rc, out)
    local s = H.cjson.decode(H.read_file(dir .. "/o/sweep.json"))
    assert.are.equal(0, s.trials_ok)
    assert.are.equal(1, s.trials_failed)
    assert.is_truthy(s.points[1].failures[1].error:find("killed after --trial-timeout 1 s", 1, true), out)
    local r = H.cjson.decode(H.read_file(dir .. "/o/trials/p0-t0/results.json"))
    assert.are.equal("failed", r.status)
  end)

  it("refuses bad command lines with a message", function()
    local dir, scen = setup()
    finally(function() H.rmdir(dir) end)
    local q, o = H.sh_quote(scen), " --out " .. H.sh_quote(dir .. "/o")
    for _, case in ipairs({
      {"--sweep hosts=", "empty list"},
      {"--sweep hosts=3,,4", "empty value"},
      {"--sweep hosts=3,3", "given twice"},
      {"--sweep hosts=3 --jobs 0", "--jobs"},
      {"--sweep hosts=3 --trials 0", "--trials"},
      {"--sweep hosts=3 --frobnicate", "unknown flag --frobnicate"},
      {"--sweep hosts=3 --set hosts=4", "both --set and --sweep"},
      {"--sweep hosts=3,4 --trials 2 --trial 4", "out of range"},
    }) do
      local out, rc = sim(q .. " " .. case[1] .. o)
      assert.are.equal(2, rc, case[1] .. ": " .. out)
      assert.is_truthy(out:find(case[2], 1, true), case[1] .. ": " .. out)
    end
    local out, rc = sim(q .. " --sweep hosts=3")
    assert.are.equal(2, rc, out)
    assert.is_truthy(out:find("--out", 1, true), out)
    out, rc = sim("merge " .. H.sh_quote(dir))
    assert.are.equal(1, rc, out)
    assert.is_truthy(out:find("plan.json", 1, true), out)
  end)
end)
