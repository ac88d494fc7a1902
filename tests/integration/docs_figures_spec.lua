-- luacheck: std +busted
-- Docs that cannot go stale: every figure in docs/*.md that carries a
-- <!-- check: ... --> marker (syntax: tests/tools/docfigures.lua and
-- docs/scenarios.md, "Figures in these docs are checked") is compared with
-- what its command gives now. The cheap ones run here (a few seconds in
-- all); `expensive` ones are pending here and run by
-- `scripts/check-doc-figures --all`.
package.path = "tests/integration/?.lua;tests/tools/?.lua;" .. package.path
local H = require("harness")
local F = require("docfigures")

local SRC = os.getenv("PEERD_SOURCE_DIR") or "."
local OPTS = { root = SRC, bin = H.BIN, decode = H.cjson.decode }

local function parse_error(text)
  local ok, err = pcall(F.parse, text, "x.md")
  assert.is_false(ok)
  return err
end

describe("doc figure markers", function()
  it("parse: command, flags, paths and values; examples in code blocks are not markers", function()
    local text = table.concat({
      "Some figure: 5.",
      "<!-- check: peerd sim examples/scenarios/bootstrap.lua --seed 1 | events = 27246",
      "     | results.a[2].b = 0.69 | x = true | s = \"ok\" | t = 1.5 ± 0.25 -->",
      "```",
      "<!-- check: peerd sim not/a/marker.lua | y = 1 -->",
      "```",
      "  <!-- check expensive: peerd sim examples/scenarios/eclipse.lua --set trials=2 | z = -3 -->",
      "inline `<!-- check: peerd sim x.lua | q = 1 -->` is prose",
    }, "\n")
    local m = F.parse(text, "x.md")
    assert.are.equal(2, #m)
    assert.are.equal("x.md:2", m[1].where)
    assert.is_false(m[1].expensive)
    assert.are.same({ "examples/scenarios/bootstrap.lua", "--seed", "1" }, m[1].args)
    assert.are.equal(5, #m[1].checks)
    assert.are.same({ "results", "a", 2, "b" }, m[1].checks[2].keys)
    assert.are.equal("digits", m[1].checks[2].kind)
    assert.are.equal("tolerance", m[1].checks[5].kind)
    assert.are.equal("x.md:7", m[2].where)
    assert.is_true(m[2].expensive)
    assert.are.equal(-3, m[2].checks[1].value)
  end)

  it("refuses a malformed marker, naming the doc line", function()
    assert.matches("x.md:2: check marker without %-%->", parse_error("a\n<!-- check: peerd sim a.lua | x = 1"))
    assert.matches("x.md:1: unknown check flag 'slow'", parse_error("<!-- check slow: peerd sim a.lua | x = 1 -->"))
    assert.matches("must be 'peerd sim SCENARIO", parse_error("<!-- check: rm -rf / | x = 1 -->"))
    assert.matches("has a character other than", parse_error("<!-- check: peerd sim a.lua;ls | x = 1 -->"))
    assert.matches("must not give %-%-out", parse_error("<!-- check: peerd sim a.lua --out /tmp | x = 1 -->"))
    assert.matches("names no PATH = VALUE", parse_error("<!-- check: peerd sim a.lua -->"))
    assert.matches("bad path 'a%.%.b'", parse_error("<!-- check: peerd sim a.lua | a..b = 1 -->"))
    assert.matches("value must be", parse_error("<!-- check: peerd sim a.lua | a = 1/2 -->"))
  end)

  it("compares exactly: integers, quoted digits, tolerances, booleans, strings", function()
    local doc = { events = 27246, r = { share = 0.6875, ok = true, name = "bootstrap.lua",
      list = { { n = 2.0 } } } }
    local function check(line)
      local m = F.parse("<!-- check: peerd sim a.lua | " .. line .. " -->", "x.md")
      return F.compare(m[1].checks[1], doc)
    end
    assert.is_true(check("events = 27246"))
    assert.is_true(check("r.share = 0.69"))
    assert.is_true(check("r.share = 0.6875"))
    assert.is_true(check("r.share = 0.7 ± 0.02"))
    assert.is_true(check("r.ok = true"))
    assert.is_true(check('r.name = "bootstrap.lua"'))
    assert.is_true(check("r.list[1].n = 2"))
    assert.is_true(check("r.list[1].n = 2.0"))
    local ok, msg = check("events = 111652")
    assert.is_false(ok)
    assert.are.equal("events: the doc says 111652, the command gives 27246", msg)
    ok, msg = check("r.share = 0.68")
    assert.is_false(ok)
    assert.are.equal("r.share: the doc says 0.68, the command gives 0.69 (0.6875)", msg)
    assert.is_false((check("r.share = 0.7 ± 0.01")))
    assert.is_false((check("r.ok = false")))
    assert.is_false((check('r.name = "eclipse.lua"')))
    ok, msg = check("r.list[2].n = 1")
    assert.is_false(ok)
    assert.matches("r.list%[2%].n: the doc says 1, the command gives nothing", msg)
  end)

  it("runs a command and catches a figure it does not give", function()
    local m = F.parse("\n\n<!-- check: peerd sim examples/scenarios/bootstrap.lua --seed 1 --set hosts=20"
      .. " --set duration=120 | hosts = 22 | status = \"ok\" | events = 1 -->", "fake.md")[1]
    local doc, err = F.run(m, OPTS)
    assert.is_truthy(doc, err)
    assert.is_true(F.compare(m.checks[1], doc))
    assert.is_true(F.compare(m.checks[2], doc))
    local ok, msg = F.compare(m.checks[3], doc)
    assert.is_false(ok)
    assert.matches("^events: the doc says 1, the command gives %d+$", msg)
    -- a command that fails is reported with its output
    local bad = F.parse("<!-- check: peerd sim examples/scenarios/no-such.lua | x = 1 -->", "fake.md")[1]
    local none, why = F.run(bad, OPTS)
    assert.is_nil(none)
    assert.matches("^fake.md:1: 'peerd sim examples/scenarios/no%-such.lua' failed", why)
  end)
end)

-- Every marker in the docs, one test each.
local files = F.doc_files(SRC)
local markers = {}
for _, file in ipairs(files) do
  local text = assert(H.read_file(SRC .. "/" .. file))
  for _, m in ipairs(F.parse(text, file)) do markers[#markers + 1] = m end
end

describe("figures quoted in docs/*.md", function()
  it("has markers to check (docs/scenarios.md quotes lab figures)", function()
    local in_scenarios = 0
    for _, m in ipairs(markers) do
      if m.file == "docs/scenarios.md" then in_scenarios = in_scenarios + 1 end
    end
    assert.is_true(in_scenarios >= 2, "markers in docs/scenarios.md: " .. in_scenarios)
  end)

  local cache = {}
  for _, m in ipairs(markers) do
    local name = m.where .. ": " .. m.command
    if m.expensive then
      pending(name .. " (expensive: scripts/check-doc-figures --all)")
    else
      it(name, function()
        local key = table.concat(m.args, " ")
        if cache[key] == nil then
          local doc, err = F.run(m, OPTS)
          cache[key] = doc or { err = err }
        end
        local doc = cache[key]
        assert(not doc.err, doc.err)
        local bad = {}
        for _, c in ipairs(m.checks) do
          local ok, msg = F.compare(c, doc)
          if not ok then bad[#bad + 1] = m.where .. ": " .. msg end
        end
        assert(#bad == 0, "figures that differ from what the command gives now (fix the doc "
          .. "or the code):\n  " .. table.concat(bad, "\n  ") .. "\n  command: " .. m.command)
      end)
    end
  end
end)
