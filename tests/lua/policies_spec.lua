-- luacheck: std +busted
-- Specs for the default policies (policies/*.lua), the worked examples
-- (examples/policies/*) and the fake host lua/peerd/testing.lua.
--
-- Run from the repo root:  lua5.4 /usr/bin/busted tests/lua
-- Everything runs in testing.lua's sandbox with seeded randomness, so every
-- run draws the same numbers; the statistical bounds are still set wide enough
-- to hold for any reasonable seed.

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)tests/lua/[^/]*$") or "./")
if ROOT == "" then ROOT = "./" end
package.path = ROOT .. "lua/?.lua;" .. package.path

local testing = require("peerd.testing")

local NOW = 1700000000
local HOUR, DAY = 3600, 86400

local function policy(path, host)
  host = host or testing.host({ now = NOW, seed = 42 })
  return host:load(ROOT .. path), host
end

-- A book with `ntried` tried and `nnew` new entries, each in its own group
-- unless `groups` is given (entry i then lands in group i % groups).
local function make_book(host, ntried, nnew, groups, extra)
  local spec = { tried = {}, new = {}, seed = 3 }
  local i = 0
  local function entry()
    i = i + 1
    local g = groups and (i % groups) or i
    local e = { addr = string.format("%d.%d.0.%d:26656", 20 + (g >> 8), g & 255, i & 255),
      group = string.format("g%05d", g) }
    for k, v in pairs(extra and extra(i) or {}) do e[k] = v end
    return e
  end
  for _ = 1, ntried do spec.tried[#spec.tried + 1] = entry() end
  for _ = 1, nnew do spec.new[#spec.new + 1] = entry() end
  return host:book(spec)
end

local function tried_share(sel, book, calls, n)
  local tried, total = 0, 0
  for _ = 1, calls do
    for _, id in ipairs(sel.select(book, n)) do
      total = total + 1
      if book:tried(id) then tried = tried + 1 end
    end
  end
  return tried / total, total
end

-- ---------------------------------------------------------------------------
describe("peerd.testing", function()
  it("has a deterministic seeded peerd.random with math.random's forms", function()
    local a, b = testing.host({ seed = 5 }), testing.host({ seed = 5 })
    for _ = 1, 50 do assert.are.equal(a.peerd.random(), b.peerd.random()) end
    for _ = 1, 200 do
      local f = a.peerd.random()
      assert.is_true(f >= 0 and f < 1)
      local m = a.peerd.random(6)
      assert.is_true(m >= 1 and m <= 6 and math.type(m) == "integer")
      local r = a.peerd.random(-3, 3)
      assert.is_true(r >= -3 and r <= 3)
    end
    assert.has_error(function() a.peerd.random(0) end)
    assert.has_error(function() a.peerd.random(3, 2) end)
  end)

  it("has a settable clock and a read-only peerd", function()
    local h = testing.host({ now = 100 })
    assert.are.equal(100, h.peerd.now())
    h:advance(50)
    assert.are.equal(150, h.peerd.now())
    h:set_now(7)
    assert.are.equal(7, h.peerd.now())
    assert.has_error(function() h.peerd.now = function() return 0 end end)
  end)

  it("rejects global assignment in the sandbox", function()
    local h = testing.host()
    local ok, err = pcall(h.load_string, h, "x = 1\nreturn {}", "score")
    assert.is_false(ok)
    assert.matches("score.lua:1: assignment to global 'x'", err, 1, true)
    local mod = h:load_string("return { score = function() y = 2; return 0 end }", "score")
    ok, err = pcall(mod.score, {})
    assert.is_false(ok)
    assert.matches("score.lua:1: assignment to global 'y'", err, 1, true)
  end)

  it("rejects reading undefined globals, os.time, io, load and math.random", function()
    local h = testing.host()
    local cases = {
      { "return { score = function() return os.time() end }", "undefined global 'os'" },
      { "return { score = function() return io.open('/etc/passwd') end }", "undefined global 'io'" },
      { "return { score = function() return load('return 1')() end }", "undefined global 'load'" },
      { "return { score = function() return dofile('x') end }", "undefined global 'dofile'" },
      { "return { score = function() return debug.traceback() end }", "undefined global 'debug'" },
      { "return { score = function() return collectgarbage('count') end }", "undefined global 'collectgarbage'" },
      { "return { score = function() return package.path end }", "undefined global 'package'" },
      { "return { score = function() return undefined_thing end }", "undefined global 'undefined_thing'" },
      { "return { score = function() return math.random() end }", "field 'random'" },
      { "return { score = function() return string.dump(tostring) end }", "field 'dump'" },
    }
    for _, c in ipairs(cases) do
      local mod = h:load_string(c[1], "score")
      local ok, err = pcall(mod.score, {})
      assert.is_false(ok, c[1])
      assert.matches(c[2], err, 1, true)
    end
    -- the allowed ones are there
    local mod = h:load_string([[
      return { score = function()
        return #table.concat({ string.rep("a", 2), tostring(math.floor(1.5)) }) + select("#", 1, 2)
          + utf8.len("é") + (coroutine.isyieldable() and 1 or 0) + peerd.now() * 0 + unpack({ 1 })
      end }]], "score")
    assert.are.equal(3 + 2 + 1 + 0 + 1, mod.score())
  end)

  it("loads text chunks only and needs a table back", function()
    local h = testing.host()
    local bin = string.dump(function() return {} end)
    assert.has_error(function() h:load_string(bin, "score") end)
    assert.has_error(function() h:load_string("return 42", "score") end, "score.lua: must return a table (got number)")
    assert.has_error(function() h:load_string("return {", "score") end)
  end)

  it("limits require to sibling modules of the same set", function()
    local h = testing.host({ now = NOW })
    local sel = h:load_string("local s = require('score'); return { select = function() return s.score() end }",
      "select", { score = "return { score = function() return 7 end }" })
    assert.are.equal(7, sel.select())
    assert.has_error(function() h:load_string("return require('os')", "select") end)
    assert.has_error(function() h:load_string("return require('score')", "select") end)
    assert.has_error(function() h:load_string("return require('select')", "select") end)
    -- the default set loads as one, every hook a function
    local set = h:load_set(ROOT .. "policies")
    assert.are.equal("function", type(set.select.select))
    assert.are.equal("function", type(set.score.score))
    assert.are.equal("function", type(set.evict.evict_new))
    assert.are.equal("function", type(set.evict.evict_tried))
    assert.are.equal("function", type(set.evict.evict_inbound))
    assert.are.equal("function", type(set.reputation.on_event))
    assert.are.equal("function", type(set.pex.accept))
    assert.are.equal("function", type(set.pex.share))
    assert.are.equal("function", type(set.dht.admit))
    assert.are.equal("function", type(set.dht.feed))
  end)

  it("enforces the instruction budget in host:call, even through pcall", function()
    local h = testing.host({ instructions = 100000 })
    local loop = h:load_string("return { score = function() while true do end end }", "score")
    assert.has_error(function() h:call(loop.score, {}) end)
    local swallow = h:load_string([[
      return { score = function()
        for _ = 1, 1000 do pcall(function() while true do end end) end
        return 1
      end }]], "score")
    assert.has_error(function() h:call(swallow.score, {}) end)
    local fine = h:load_string("return { score = function() return 5 end }", "score")
    assert.are.equal(5, h:call(fine.score, {}))
  end)

  it("gives a read-only book with the documented methods", function()
    local h = testing.host({ now = NOW })
    local book, ctl = h:book({
      tried = { { addr = "1.2.3.4:26656" } },
      new = { { addr = "5.6.7.8:26656", attempts = 3, time = NOW - HOUR },
        { addr = "9.9.9.9:26656", banned = true } },
    })
    assert.are.equal(1, book:count("tried"))
    assert.are.equal(2, book:count("new"))
    assert.are.equal(3, book:size())
    local e = book:entry(0)
    assert.are.equal("1.2.3.4:26656", e.addr)
    assert.is_true(e.tried)
    assert.are.equal("01" .. "0102", book:group(0))
    assert.is_true(book:terrible(1)) -- never succeeded, 3 attempts
    assert.is_true(book:banned(2))
    assert.is_nil(book:entry(99))
    assert.has_error(function() book.count("new") end)
    assert.has_error(function() book:count("old") end)
    assert.has_error(function() book.x = 1 end)
    e.addr = "changed"
    assert.are.equal("1.2.3.4:26656", book:entry(0).addr)
    assert.are.equal(3, ctl.calls.entry)
    local empty = h:book({})
    assert.is_nil(empty:random("new"))
  end)
end)

-- ---------------------------------------------------------------------------
describe("select.lua", function()
  local sel, host = policy("policies/select.lua")

  it("returns {} for an empty book and for n <= 0", function()
    local book = host:book({})
    assert.are.same({}, sel.select(book, 8))
    local full = make_book(host, 10, 10)
    assert.are.same({}, sel.select(full, 0))
    assert.are.same({}, sel.select(full, -3))
  end)

  it("takes about 85% of picks from tried and 15% from new", function()
    local book = make_book(host, 300, 300)
    local share, total = tried_share(sel, book, 300, 8)
    assert.are.equal(2400, total)
    assert.is_true(share > 0.81 and share < 0.89, "tried share " .. share)
  end)

  it("takes every pick from the other table when one is empty", function()
    local only_new = make_book(host, 0, 50)
    local only_tried = make_book(host, 50, 0)
    assert.are.equal(0, (tried_share(sel, only_new, 20, 8)))
    assert.are.equal(1, (tried_share(sel, only_tried, 20, 8)))
  end)

  it("returns distinct ids, at most n", function()
    local book = make_book(host, 20, 20)
    for n = 1, 40, 3 do
      local ids = sel.select(book, n)
      assert.is_true(#ids <= n)
      local seen = {}
      for _, id in ipairs(ids) do
        assert.is_nil(seen[id])
        seen[id] = true
      end
    end
    -- a book smaller than n: everything usable, once
    local small = make_book(host, 2, 1)
    local ids = sel.select(small, 8)
    table.sort(ids)
    assert.are.same({ 0, 1, 2 }, ids)
  end)

  it("never returns banned or terrible entries", function()
    local book = make_book(host, 100, 100, nil, function(i)
      if i % 3 == 0 then return { banned = true } end
      if i % 3 == 1 then return { terrible = true } end
      return {}
    end)
    local n = 0
    for _ = 1, 100 do
      for _, id in ipairs(sel.select(book, 8)) do
        n = n + 1
        assert.is_false(book:banned(id))
        assert.is_false(book:terrible(id))
      end
    end
    assert.is_true(n > 700) -- the usable third still fills most picks
    -- nothing usable at all: empty answer
    local none = make_book(host, 10, 10, nil, function() return { banned = true } end)
    assert.are.same({}, sel.select(none, 8))
  end)

  it("prefers distinct network groups and relaxes when it cannot", function()
    -- 64 tried entries in 8 groups: 4 picks always land in 4 groups
    local book = make_book(host, 64, 0, 8)
    for _ = 1, 100 do
      local ids = sel.select(book, 4)
      assert.are.equal(4, #ids)
      local groups = {}
      for _, id in ipairs(ids) do groups[book:group(id)] = true end
      local k = 0
      for _ in pairs(groups) do k = k + 1 end
      assert.are.equal(4, k)
    end
    -- 2 groups, 6 picks: both groups used, then relaxed to fill all 6
    local two = make_book(host, 40, 0, 2)
    for _ = 1, 20 do
      local ids = sel.select(two, 6)
      assert.are.equal(6, #ids)
      assert.are_not.equal(two:group(ids[1]), two:group(ids[2]))
    end
  end)

  it("stays bounded on a full book", function()
    local book, ctl = host:synthetic_book({}) -- 65,536 new + 16,384 tried
    assert.are.equal(81920, book:size())
    for _ = 1, 20 do
      ctl.calls.random = 0
      local ids = host:call(sel.select, book, 8)
      assert.are.equal(8, #ids)
      assert.is_true(ctl.calls.random <= 32 * 8 + 64)
    end
    assert.is_true(ctl.calls.entry == 0, "select never fetches whole entries")
    -- a full book where nothing is usable: gives up within the draw budget
    local bad, bctl = host:synthetic_book({ new = 4096, tried = 4096, banned_every = 1 })
    assert.are.same({}, host:call(sel.select, bad, 8))
    assert.is_true(bctl.calls.random <= 32 * 8 + 64)
  end)
end)

-- ---------------------------------------------------------------------------
describe("score.lua", function()
  local sc = policy("policies/score.lua")
  local P = testing.peer

  local good = P({ tried = true, last_success = NOW - 60, attempts = 0, first_seen = NOW - 30 * DAY,
    latency_ms = 40, reputation = 20 })

  it("stays within -100..100", function()
    local rng = testing.rng(9)
    for _ = 1, 500 do
      local s = sc.score(P({
        tried = rng.float() < 0.5, attempts = rng.int(1000) - 1,
        last_success = rng.float() < 0.5 and 0 or NOW - rng.int(100 * DAY),
        first_seen = rng.float() < 0.3 and 0 or NOW - rng.int(400 * DAY),
        time = NOW - rng.int(DAY), latency_ms = rng.float() < 0.5 and rng.int(100000) or nil,
        reputation = rng.int(100000) - 50000,
      }))
      assert.is_true(s >= -100 and s <= 100, tostring(s))
    end
    assert.are.equal(100, sc.score(P({ tried = true, last_success = NOW, first_seen = NOW - 7 * DAY,
      latency_ms = 0, reputation = 100 })))
    assert.are.equal(0, sc.score(P({})))
  end)

  local function with(fields)
    local p = {}
    for k, v in pairs(good) do p[k] = v end
    for k, v in pairs(fields) do p[k] = v end
    return sc.score(p)
  end

  it("ranks tried and recently successful peers above unknown ones", function()
    assert.is_true(sc.score(good) > sc.score(P({})))
    assert.is_true(with({ last_success = NOW - HOUR }) > with({ last_success = NOW - 5 * DAY }))
    assert.is_true(with({ last_success = NOW - 5 * DAY }) > with({ last_success = 0, tried = false }))
  end)

  it("ranks more failures lower", function()
    local prev = math.huge
    for attempts = 0, 5 do
      local s = with({ attempts = attempts })
      assert.is_true(s < prev)
      prev = s
    end
  end)

  it("ranks long-known peers above fresh ones", function()
    assert.is_true(with({ first_seen = NOW - 6 * DAY }) > with({ first_seen = NOW - HOUR }))
    -- first_seen unknown: time is used instead
    assert.is_true(with({ first_seen = 0, time = NOW - 6 * DAY }) > with({ first_seen = 0, time = NOW }))
  end)

  it("prefers lower latency; unknown latency is neutral", function()
    assert.is_true(with({ latency_ms = 20 }) > with({ latency_ms = 300 }))
    assert.is_true(with({ latency_ms = 300 }) > with({ latency_ms = 2000 }))
    local unknown = with({ latency_ms = false and 0 or nil })
    assert.is_true(with({ latency_ms = 20 }) > unknown and unknown > with({ latency_ms = 2000 }))
  end)

  it("follows reputation", function()
    assert.is_true(with({ reputation = 50 }) > with({ reputation = 0 }))
    assert.is_true(with({ reputation = 0 }) > with({ reputation = -50 }))
  end)
end)

-- ---------------------------------------------------------------------------
describe("evict.lua", function()
  local ev = policy("policies/evict.lua")
  local function entry(f)
    local e = { id = 1, addr = "1.2.3.4:26656", tried = true, attempts = 0, last_try = 0, last_success = 0,
      time = NOW, refs = 0, terrible = false, banned = false, chance = 1 }
    for k, v in pairs(f or {}) do e[k] = v end
    return e
  end

  it("evict_new follows Bitcoin Core's rule", function()
    local cases = {
      -- incumbent, candidate, verdict
      { { terrible = true, refs = 1 }, { refs = 1 }, "replace" },
      { { terrible = true, refs = 1 }, { id = false, refs = nil }, "replace" },
      { { refs = 2 }, { refs = 0 }, "replace" },
      { { refs = 3 }, { refs = nil }, "replace" },
      { { refs = 2 }, { refs = 1 }, "keep" },
      { { refs = 1 }, { refs = 0 }, "keep" },
      { { refs = 1 }, { refs = 2 }, "keep" },
    }
    for i, c in ipairs(cases) do
      local cand = entry(c[2])
      if cand.id == false then cand.id = nil end
      assert.are.equal(c[3], ev.evict_new(nil, entry(c[1]), cand), "case " .. i)
    end
  end)

  it("evict_tried follows Bitcoin Core's test-before-evict rules", function()
    local cases = {
      -- incumbent, candidate, verdict
      { { last_success = NOW - 3 * HOUR }, { last_success = NOW - 2 * HOUR }, "keep" },
      { { last_success = NOW - 3 * HOUR, last_try = NOW - 10 }, { last_success = NOW }, "keep" },
      { { last_success = NOW - 5 * HOUR, last_try = NOW - 120 }, { last_success = NOW - 60 }, "replace" },
      { { last_success = NOW - 5 * HOUR, last_try = NOW - 30 }, { last_success = NOW - 60 }, "wait" },
      { { last_success = NOW - 5 * HOUR, last_try = NOW - 60 }, { last_success = NOW - 60 }, "wait" },
      { { last_success = NOW - 5 * HOUR, last_try = NOW - 5 * HOUR }, { last_success = NOW - 41 * 60 }, "replace" },
      { { last_success = NOW - 5 * HOUR, last_try = NOW - 5 * HOUR }, { last_success = NOW - 39 * 60 }, "wait" },
      { { last_success = 0, last_try = 0 }, { last_success = NOW - 10 }, "wait" },
      { { last_success = 0, last_try = 0 }, { last_success = NOW - HOUR }, "replace" },
    }
    for i, c in ipairs(cases) do
      assert.are.equal(c[3], ev.evict_tried(nil, entry(c[1]), entry(c[2])), "case " .. i)
    end
  end)

  it("evict_inbound takes the crowded group's newest unprotected peer", function()
    local function cand(conn, group, connected, protected)
      return { conn = conn, peer = { group = group }, connected = connected, useful = 0,
               protected = protected or false }
    end
    local n = { addr = "9.9.9.9:1" }
    assert.are.equal(4, ev.evict_inbound({ cand(1, "a", 10), cand(2, "b", 11), cand(3, "b", 12),
      cand(4, "b", 13), cand(5, "b", 14, true) }, n))
    -- a tie of two groups: the one whose newest is newest
    assert.are.equal(4, ev.evict_inbound({ cand(1, "a", 10), cand(2, "b", 11), cand(3, "a", 12),
      cand(4, "b", 13) }, n))
    -- everyone protected (or nobody): evict nobody
    assert.are.equal(false, ev.evict_inbound({ cand(1, "a", 10, true) }, n))
    assert.are.equal(false, ev.evict_inbound({}, n))
  end)
end)

-- ---------------------------------------------------------------------------
describe("reputation.lua", function()
  local rep = policy("policies/reputation.lua")
  local P = testing.peer

  it("raises reputation on good and connected, lowers it on failed", function()
    local p = P({ reputation = 10 })
    assert.is_true(rep.on_event(p, "good").reputation > 10)
    assert.is_true(rep.on_event(p, "connected").reputation > 10)
    assert.is_true(rep.on_event(p, "good").reputation > rep.on_event(p, "connected").reputation)
    assert.is_true(rep.on_event(p, "failed").reputation < 10)
    assert.are.equal(10, rep.on_event(p, "attempt").reputation)
    assert.are.equal(10, rep.on_event(p, "disconnected").reputation)
    assert.are.equal(100, rep.on_event(P({ reputation = 99 }), "good").reputation)
    assert.are.equal(-100, rep.on_event(P({ reputation = -99 }), "misbehaved").reputation)
  end)

  it("bans only on misbehaviour", function()
    for _, ev in ipairs({ "attempt", "connected", "good", "failed", "disconnected" }) do
      local v = rep.on_event(P({ reputation = -100, misbehaviours = 5 }), ev)
      assert.is_nil(v.ban, ev)
    end
    local v = rep.on_event(P({}), "misbehaved", "invalid handshake")
    assert.are.equal(24 * HOUR, v.ban)
    assert.is_true(v.reputation < 0)
    assert.matches("invalid handshake", v.reason, 1, true)
  end)

  it("escalates the ban for repeat offenders", function()
    local p = P({})
    local bans = {}
    for i = 1, 3 do
      local v = rep.on_event(p, "misbehaved", "spam")
      bans[i] = v.ban
      p.reputation, p.misbehaviours = v.reputation, p.misbehaviours + 1
    end
    assert.are.same({ DAY, 2 * DAY, 4 * DAY }, bans)
    assert.is_true(p.reputation <= -90)
    -- capped at 30 days, never permanent by default
    assert.are.equal(30 * DAY, rep.on_event(P({ misbehaviours = 40 }), "misbehaved").ban)
  end)
end)

-- ---------------------------------------------------------------------------
describe("pex.lua", function()
  local pex = policy("policies/pex.lua")
  local P = testing.peer
  local to = P({ addr = "8.8.8.8:26656", node_id = "aa" })

  it("never shares private, banned or the asking peer itself", function()
    assert.is_true(pex.share(P({ addr = "1.2.3.4:26656" }), to))
    assert.is_false(pex.share(P({ addr = "1.2.3.4:26656", private = true }), to))
    assert.is_false(pex.share(P({ addr = "1.2.3.4:26656", banned = true }), to))
    assert.is_false(pex.share(P({ addr = "8.8.8.8:26656" }), to))
    assert.is_false(pex.share(P({ addr = "8.8.4.4:26656", node_id = "aa" }), to))
    assert.is_false(pex.share(P({ addr = "192.168.1.2:26656" }), to)) -- LAN address to a public peer
    assert.is_true(pex.share(P({ addr = "192.168.1.2:26656" }), P({ addr = "192.168.1.3:26656" })))
    assert.is_false(pex.share(P({ addr = "192.168.1.2:26656", private = true }), P({ addr = "192.168.1.3:26656" })))
  end)

  it("accepts routable, unbanned addresses from unbanned peers", function()
    assert.is_true(pex.accept(P({ addr = "1.2.3.4:26656" }), to))
    assert.is_false(pex.accept(P({ addr = "1.2.3.4:26656", banned = true }), to))
    assert.is_false(pex.accept(P({ addr = "1.2.3.4:26656" }), P({ addr = "8.8.8.8:26656", banned = true })))
    assert.is_false(pex.accept(P({ addr = "10.0.0.1:26656" }), to))
    assert.is_true(pex.accept(P({ addr = "10.0.0.1:26656" }), P({ addr = "10.0.0.2:26656" })))
  end)
end)

-- ---------------------------------------------------------------------------
describe("dht.lua", function()
  local dht = policy("policies/dht.lua")
  local function node(ip, routable, in_bucket, in_table)
    return { id = string.rep("ab", 20), ip = ip, port = 7411, addr = ip .. ":7411", seq = 1,
      routable = routable, subnet_in_bucket = in_bucket, subnet_in_table = in_table }
  end
  local bucket = { index = 160, size = 3, k = 16 }

  it("admits at most 2 per /24 (/48) in a bucket and 10 in the table, unroutable exempt", function()
    assert.is_true(dht.admit(node("1.2.3.4", true, 0, 0), bucket))
    assert.is_true(dht.admit(node("1.2.3.4", true, 1, 9), bucket))
    assert.is_false(dht.admit(node("1.2.3.4", true, 2, 2), bucket)) -- the 3rd in the bucket
    assert.is_false(dht.admit(node("1.2.3.4", true, 0, 10), bucket)) -- the 11th in the table
    assert.is_false(dht.admit(node("2001:db8::1", true, 2, 5), bucket))
    assert.is_true(dht.admit(node("127.0.0.1", false, 16, 160), bucket))
  end)

  it("examples: dht-no-ip-limits admits all; dht-distinct-16 one routable node per /16", function()
    local free = policy("examples/policies/dht-no-ip-limits/dht.lua")
    assert.is_true(free.admit(node("1.2.3.4", true, 2, 10), bucket))
    assert.is_true(free.admit(node("1.2.3.4", true, 16, 160), bucket))
    local host = testing.host({ now = NOW, seed = 1 })
    local d16 = policy("examples/policies/dht-distinct-16/dht.lua", host)
    local function n(ip, id, routable)
      local t = node(ip, routable ~= false, 0, 0)
      t.id = id
      return t
    end
    assert.is_false(d16.admit(n("10.0.0.1", "aa", false), bucket))
    assert.is_true(d16.admit(n("1.2.3.4", "aa"), bucket))
    assert.is_true(d16.admit(n("1.2.3.4", "aa"), bucket))  -- the claim's own node again
    assert.is_false(d16.admit(n("1.2.200.9", "bb"), bucket)) -- same /16, another node
    assert.is_true(d16.admit(n("1.3.0.1", "bb"), bucket))
    assert.is_true(d16.admit(n("2a01:4f8::1", "cc"), bucket))
    assert.is_false(d16.admit(n("2a01:4f8:1::2", "dd"), bucket)) -- same /32
    host:advance(3601)                                           -- "aa" not seen for an hour
    assert.is_true(d16.admit(n("1.2.200.9", "bb"), bucket))
  end)

  it("feeds every verified record to the book", function()
    local P = testing.peer
    assert.is_true(dht.feed(P({ addr = "1.2.3.4:7411", node_id = "aa" }), P({ addr = "5.6.7.8:7411" })))
    assert.is_true(dht.feed(P({ addr = "10.0.0.1:7411" }), P({ addr = "5.6.7.8:7411", banned = true })))
  end)
end)

-- ---------------------------------------------------------------------------
describe("worked examples", function()
  local function lines(path)
    local t = {}
    for l in io.lines(ROOT .. path) do t[#t + 1] = l end
    return t
  end

  -- The examples are the defaults with the lines docs/policies.md shows
  -- changed; keep the two in step.
  local function changed(default, example)
    local a, b = lines(default), lines(example)
    local seen, out = {}, {}
    for _, l in ipairs(a) do seen[l] = (seen[l] or 0) + 1 end
    for _, l in ipairs(b) do
      if (seen[l] or 0) > 0 then seen[l] = seen[l] - 1 else out[#out + 1] = l end
    end
    return out
  end

  it("split-70-30 takes about 70% of picks from tried", function()
    local host = testing.host({ now = NOW, seed = 11 })
    local sel = policy("examples/policies/split-70-30/select.lua", host)
    local book = make_book(host, 300, 300)
    local share = tried_share(sel, book, 300, 8)
    assert.is_true(share > 0.65 and share < 0.75, "tried share " .. share)
    local code = {}
    for _, l in ipairs(changed("policies/select.lua", "examples/policies/split-70-30/select.lua")) do
      if not l:match("^%-%-") then code[#code + 1] = l end
    end
    assert.are.equal(1, #code)
    assert.matches("^local TRIED_SHARE = 0%.70", code[1])
  end)

  it("same-chain never picks a node whose record names another chain", function()
    local host = testing.host({ now = NOW, seed = 12 })
    local sel = policy("examples/policies/same-chain/select.lua", host)
    -- thirds: our chain, another chain, no record
    local book = make_book(host, 150, 150, nil, function(i)
      if i % 3 == 0 then return { attrs = { chain = "test-chain-1" }, peerd = true } end
      if i % 3 == 1 then return { attrs = { chain = "other-chain" }, peerd = true } end
      return {}
    end)
    local ours, none = 0, 0
    for _ = 1, 200 do
      for _, id in ipairs(sel.select(book, 8)) do
        local chain = book:attr(id, "chain")
        assert.are_not.equal("other-chain", chain)
        if chain == "test-chain-1" then ours = ours + 1 else none = none + 1 end
      end
    end
    assert.is_true(ours > 0 and none > 0)
    local code = {}
    for _, l in ipairs(changed("policies/select.lua", "examples/policies/same-chain/select.lua")) do
      if not l:match("^%-%-") then code[#code + 1] = l end
    end
    assert.are.equal(3, #code)
  end)

  it("ban-after-three bans from the third misbehaviour", function()
    local rep = policy("examples/policies/ban-after-three/reputation.lua")
    local p = testing.peer({})
    local bans = {}
    for i = 1, 4 do
      local v = rep.on_event(p, "misbehaved", "bad block")
      bans[i] = v.ban or 0
      p.reputation, p.misbehaviours = v.reputation, p.misbehaviours + 1
    end
    assert.are.same({ 0, 0, DAY, 2 * DAY }, bans)
    local code = {}
    for _, l in ipairs(changed("policies/reputation.lua", "examples/policies/ban-after-three/reputation.lua")) do
      if not l:match("^%-%-") then code[#code + 1] = l end
    end
    assert.are.equal(1, #code)
    assert.matches("^local BAN_AFTER = 3", code[1])
  end)
end)
