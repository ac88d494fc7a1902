-- luacheck: std +busted
-- Spec of examples/policies/bitcoind-0.9.3/select.lua (bitcoind 0.9.3's
-- pre-countermeasure address selection) in testing.lua's fake host.
--
-- Run from the repo root:  lua5.4 /usr/bin/busted tests/lua/bitcoind093_spec.lua
-- Seeded: every run draws the same numbers, so the statistical checks cannot
-- flake; their tolerance (4.5 standard deviations of a binomial share) would
-- still hold for other seeds.

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)tests/lua/[^/]*$") or "./")
if ROOT == "" then ROOT = "./" end
package.path = ROOT .. "lua/?.lua;" .. package.path

local testing = require("peerd.testing")

local NOW = 1700000000
local DAY = 86400
local PATH = "examples/policies/bitcoind-0.9.3/select.lua"

local function load(seed)
  local host = testing.host({ now = NOW, seed = seed or 9 })
  return host:load(ROOT .. PATH), host
end

-- ntried + nnew entries, each in its own group; extra(i, tbl) adds fields.
local function book_of(host, ntried, nnew, extra)
  local spec = { tried = {}, new = {}, seed = 5 }
  local i = 0
  local function add(tbl)
    i = i + 1
    local e = { addr = string.format("%d.%d.0.1:26656", 20 + (i >> 8), i & 255) }
    for k, v in pairs(extra and extra(i, tbl) or {}) do e[k] = v end
    spec[tbl][#spec[tbl] + 1] = e
  end
  for _ = 1, ntried do add("tried") end
  for _ = 1, nnew do add("new") end
  return host:book(spec)
end

-- The paper's Pr[tried] (Heilman et al. 2015, from 0.9.3's Select_).
local function pr_tried(rho, omega)
  local a = math.sqrt(rho) * (9 - omega)
  return a / ((omega + 1) + a)
end

describe("examples/policies/bitcoind-0.9.3 select.lua", function()
  it("computes 0.9.3's GetChance: freshness, recent try, failed attempts", function()
    local sel = load()
    assert.are.equal(0.5, sel.chance({ time = NOW - 600, last_try = 0, attempts = 0 }, NOW))
    assert.are.equal(1.0, sel.chance({ time = NOW + 50, last_try = 0, attempts = 0 }, NOW))
    assert.is_true(math.abs(sel.chance({ time = NOW - 600, last_try = NOW - 60, attempts = 2 }, NOW)
      - 0.5 * 0.01 / 2.25) < 1e-12)
    assert.is_true(math.abs(sel.chance({ time = NOW - 5400, last_try = NOW - 601, attempts = 0 }, NOW)
      - 0.1) < 1e-12)
  end)

  it("picks the tried table with Pr = √ρ(9−ω)/((ω+1)+√ρ(9−ω)) for a few (ρ, ω)", function()
    local DRAWS = 1500
    local cases = {
      { tried = 400, new = 100, omega = 0 },  -- ρ = 4
      { tried = 400, new = 100, omega = 4 },
      { tried = 100, new = 400, omega = 2 },  -- ρ = 1/4
      { tried = 100, new = 400, omega = 8 },
      { tried = 100, new = 100, omega = 6 },  -- ρ = 1
      { tried = 100, new = 100, omega = 12 }, -- min(ω, 8) = 8
    }
    for _, c in ipairs(cases) do
      local sel, host = load(17 + c.omega)
      local book = book_of(host, c.tried, c.new)
      local ntried = 0
      for _ = 1, DRAWS do
        local ids = host:call(sel.select, book, 1, { outbound = c.omega, max_outbound = 8 })
        assert.are.equal(1, #ids)
        if book:tried(ids[1]) then ntried = ntried + 1 end
      end
      local p = pr_tried(c.tried / c.new, math.min(c.omega, 8))
      local tol = 4.5 * math.sqrt(p * (1 - p) / DRAWS)
      local share = ntried / DRAWS
      assert.is_true(math.abs(share - p) <= tol,
        string.format("tried=%d new=%d ω=%d: tried share %.4f, formula %.4f ± %.4f",
          c.tried, c.new, c.omega, share, p, tol))
    end
  end)

  it("takes ω = 0 when called without ctx (select(book, n) as before)", function()
    local sel, host = load(3)
    local book = book_of(host, 100, 400)
    local DRAWS, ntried = 1500, 0
    for _ = 1, DRAWS do
      local ids = host:call(sel.select, book, 1)
      if book:tried(ids[1]) then ntried = ntried + 1 end
    end
    local p = pr_tried(0.25, 0) -- 4.5 / 5.5
    assert.is_true(math.abs(ntried / DRAWS - p) <= 4.5 * math.sqrt(p * (1 - p) / DRAWS), ntried)
  end)

  it("prefers fresh addresses: announced a minute ago over a week ago", function()
    local sel, host = load(4)
    -- new only; odd entries fresh, even ones a week old
    local book = book_of(host, 0, 200, function(i)
      return { time = i % 2 == 1 and NOW - 60 or NOW - 7 * DAY }
    end)
    local fresh, total = 0, 0
    for _ = 1, 300 do
      for _, id in ipairs(host:call(sel.select, book, 4, { outbound = 3 })) do
        total = total + 1
        if book:entry(id).time == NOW - 60 then fresh = fresh + 1 end
      end
    end
    assert.are.equal(1200, total)
    -- GetChance 0.909 against 0.001: a week-old address wins a walk only
    -- after ~35 refusals; nearly every pick is a fresh one
    assert.is_true(fresh / total > 0.97, fresh .. "/" .. total)
  end)

  it("never picks banned ids, returns distinct ids, at most n, with bounded draws", function()
    local sel, host = load(5)
    local book, ctl = book_of(host, 50, 200, function(i) return { banned = i % 3 == 0 } end)
    for _ = 1, 100 do
      local ids = host:call(sel.select, book, 8, { outbound = 5 })
      assert.is_true(#ids <= 8)
      local seen = {}
      for _, id in ipairs(ids) do
        assert.is_false(book:banned(id))
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end
    assert.is_true(ctl.calls.random <= 100 * (32 * 8 + 256))
    -- empty book, n = 0, huge n: no error
    local empty = host:book({})
    assert.are.same({}, host:call(sel.select, empty, 8, { outbound = 0 }))
    assert.are.same({}, host:call(sel.select, book, 0, {}))
    local before = ctl.calls.random
    assert.is_true(#host:call(sel.select, book, 1000, { outbound = 8 }) <= 250)
    assert.is_true(ctl.calls.random - before <= 4096)
  end)
end)
