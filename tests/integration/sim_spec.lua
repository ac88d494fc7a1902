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
end)
