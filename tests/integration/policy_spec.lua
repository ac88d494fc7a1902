-- luacheck: std +busted
-- Integration specs for the Lua policy host in the running daemon: hostile
-- policies through the real process, hot reload (file change, SIGHUP, API),
-- `peerd policy-check`, and a select policy that measurably changes /v1/dial.
-- Every daemon runs with --policies pointing at its own temporary directory.
-- Every wait is bounded; every daemon is stopped in a `finally`.
--
-- Run from the repo root:  PEERD_BIN=build/peerd lua5.4 /usr/bin/busted tests/integration
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local BIN, sh_quote = H.BIN, H.sh_quote
local write_file, tmpdir, rmdir = H.write_file, H.tmpdir, H.rmdir
local wait_until, log_of, start, cleanup = H.wait_until, H.log_of, H.start, H.cleanup
local get, post, http, status_of, run_cmd = H.get, H.post, H.http, H.status_of, H.run_cmd

local SOURCE_DIR = os.getenv("PEERD_SOURCE_DIR") or "."

-- A daemon whose policy directory is node.dir .. "/policies" (created first,
-- with the given files).
local function start_with_policies(files, extra)
  local dir = tmpdir()
  local pdir = dir .. "/policies"
  assert(os.execute("mkdir " .. sh_quote(pdir)))
  for name, text in pairs(files or {}) do write_file(pdir .. "/" .. name, text) end
  local args = { "--policies", pdir, "--seed", "42" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local node = start(args, dir)
  node.own_dir = true
  node.pdir = pdir
  return node
end

-- The value of one sample in /metrics (nil when absent).
local function metric(node, series)
  local code, text = get(node, "/metrics")
  assert.are.equal(200, code, text)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #series + 1) == series .. " " then return tonumber(line:sub(#series + 2)) end
  end
  return nil
end

local function failures(node, hook, reason)
  return metric(node, string.format('peerd_policy_failures_total{hook="%s",reason="%s"}', hook, reason))
end

local REASONS = { "error", "instructions", "timeout", "memory", "bad_return" }

local function all_failures(node, hook)
  local t, total = {}, 0
  for _, r in ipairs(REASONS) do
    t[r] = failures(node, hook, r)
    total = total + t[r]
  end
  return t, total
end

local function reload(node)
  return post(node, "/v1/policy/reload", "")
end

-- n public addresses (a few may lose a new-table slot contest), the first
-- `tried` of those that entered moved to tried. Returns the ones in the book.
local function fill_book(node, n, tried)
  local addrs = {}
  for i = 1, n do addrs[i] = string.format("%d.%d.1.1:26656", 20 + i % 70, 1 + i) end
  local code, text, doc = post(node, "/v1/book", { addrs = addrs })
  assert.are.equal(200, code, text)
  assert.is_true(doc.added >= n - n // 20, text)
  local lost = {}
  for _, r in ipairs(doc.rejected) do lost[r.addr] = true end
  local kept = {}
  for _, a in ipairs(addrs) do
    if not lost[a] then kept[#kept + 1] = a end
  end
  for i = 1, tried or 0 do
    code, text = post(node, "/v1/events", { addr = kept[i], event = "good" })
    assert.are.equal(200, code, text)
  end
  return kept
end

local ONLY_TRIED = [[
return { select = function(book, n)
  local id = book:random("tried")
  return { id }
end }
]]

describe("peerd policies", function()
  -- Bounded by the policy budgets, not timed: curl's --max-time only keeps a
  -- hang from stalling the suite (it was 1 s, which a loaded ASan run missed).
  it("serves /v1/dial from the C default whatever select.lua does", function()
    local node = start_with_policies({})
    finally(function() cleanup(node) end)
    fill_book(node, 40, 0)
    local hostile = {
      { "endless loop", "return { select = function() while true do end end }",
        { instructions = true, timeout = true } },
      { "memory bomb (string.rep)", [[return { select = function()
          local s = "x"
          while true do s = s .. string.rep(s, 2) end
        end }]], { memory = true, instructions = true, timeout = true } },
      { "memory bomb (table)", [[return { select = function()
          local t = {}
          for i = 1, math.maxinteger do t[i] = { i, i, i, i } end
        end }]], { memory = true, instructions = true, timeout = true } },
      { "error()", "return { select = function() error('no') end }", { error = true } },
      { "wrong return type", "return { select = function() return 'all of them' end }",
        { bad_return = true } },
      { "huge return", [[return { select = function(book, n)
          local t = {}
          for i = 1, 100000 do t[i] = 1 end
          return t
        end }]], { bad_return = true, instructions = true, memory = true, timeout = true } },
      { "coroutine.yield", "return { select = function() return coroutine.yield(1) end }",
        { error = true } },
      { "io.open", "return { select = function() io.open('/etc/passwd') return {} end }",
        { error = true } },
      { "pcall-swallowed loop", [[return { select = function()
          for _ = 1, 100 do pcall(function() while true do end end) end
          return {}
        end }]], { instructions = true, timeout = true } },
    }
    for _, h in ipairs(hostile) do
      local name, text, reasons = h[1], h[2], h[3]
      write_file(node.pdir .. "/select.lua", text)
      local code, body, doc = reload(node)
      assert.are.equal(200, code, name .. ": " .. tostring(body))
      assert.is_true(doc.reloaded, name)
      local before, total_before = all_failures(node, "select")
      local c, t, d = http(node, "GET", "/v1/dial?n=4", nil, { "--max-time", "20" })
      assert.are.equal(200, c, name .. ": " .. tostring(t))
      assert.are.equal("default", d.selected_by, name)
      assert.is_true(#d.peers >= 1, name)
      local after, total_after = all_failures(node, "select")
      assert.are.equal(total_before + 1, total_after, name)
      local moved
      for r in pairs(reasons) do
        if after[r] == before[r] + 1 then moved = r end
      end
      assert.is_truthy(moved, name .. ": failures " .. require("cjson").encode(after))
    end
    -- each kind logged once, with file:line
    assert.matches('level=warn msg="policy failure" hook=select reason=error error="?select.lua:%d+:', log_of(node))
    assert.are.equal(200, (get(node, "/health")))
  end)

  it("hot-reloads on a file change, on SIGHUP and on POST /v1/policy/reload", function()
    local node = start_with_policies({})
    finally(function() cleanup(node) end)
    local addrs = fill_book(node, 10, 1)
    local st = status_of(node).policy
    assert.are.equal(node.pdir, st.dir)
    local gen0, hash0 = st.generation, st.hash
    assert.are.same({}, st.files)
    assert.is_false(st.hooks.select.provided)

    -- (1) file change
    write_file(node.pdir .. "/select.lua", ONLY_TRIED)
    local ok = wait_until(function()
      st = status_of(node).policy
      return st.generation > gen0 and st.hooks.select.provided
    end, 10)
    assert.is_true(ok, log_of(node))
    assert.are_not.equal(hash0, st.hash)
    assert.are.same({ "select.lua" }, st.files)
    local hash1 = st.hash
    local _, _, d = get(node, "/v1/dial?n=5")
    assert.are.equal("policy", d.selected_by)
    assert.are.equal(1, #d.peers)
    assert.are.equal(addrs[1], d.peers[1].addr)
    -- let the debounced watcher settle before counting generations
    wait_until(function() return false end, 0.4)
    local gen1 = status_of(node).policy.generation

    -- (2) SIGHUP reloads the same files: a new generation, the same hash
    node.proc.handle:kill("sighup")
    ok = wait_until(function() return status_of(node).policy.generation == gen1 + 1 end, 10)
    assert.is_true(ok, log_of(node))
    assert.are.equal(hash1, status_of(node).policy.hash)

    -- (3) the API
    local code, text, doc = reload(node)
    assert.are.equal(200, code, text)
    assert.is_true(doc.reloaded)
    assert.are.equal(gen1 + 2, doc.generation)
    assert.are.equal(hash1, doc.hash)
    assert.is_true(doc.error == nil or doc.error == require("cjson").null)

    -- (4) a broken file: the old generation stays in force and in use
    write_file(node.pdir .. "/select.lua", "return {\n  select = function(book, n)\n    return {\n")
    ok = wait_until(function()
      local p = status_of(node).policy
      return type(p.last_error) == "table"
    end, 10)
    assert.is_true(ok, log_of(node))
    st = status_of(node).policy
    assert.matches("select%.lua:%d+:", st.last_error.error)
    assert.are.equal(gen1 + 2, st.generation)
    assert.are.equal(hash1, st.hash)
    code, text, doc = reload(node)
    assert.are.equal(422, code, text)
    assert.is_false(doc.reloaded)
    assert.matches("select%.lua:%d+:", doc.error)
    assert.are.equal(gen1 + 2, doc.generation)
    _, _, d = get(node, "/v1/dial?n=5")
    assert.are.equal("policy", d.selected_by)
    assert.are.equal(1, #d.peers)
    assert.are.equal(addrs[1], d.peers[1].addr)
    assert.matches('level=warn msg="policy load failed"', log_of(node))
    assert.matches('msg="policy loaded".-generation=', log_of(node))
    assert.is_true(metric(node, 'peerd_policy_reloads_total{result="error"}') >= 2)
    assert.are.equal(gen1 + 2, metric(node, "peerd_policy_generation"))
  end)

  it("starts on the C defaults when the policy set does not load", function()
    local node = start_with_policies({ ["score.lua"] = "return {\n score = \n" })
    finally(function() cleanup(node) end)
    local st = status_of(node).policy
    assert.are.equal(0, st.generation)
    assert.matches("score%.lua:%d+:", st.last_error.error)
    assert.matches('level=warn msg="policy load failed"', log_of(node))
    fill_book(node, 5, 0)
    local _, _, d = get(node, "/v1/dial?n=3")
    assert.are.equal("default", d.selected_by)
  end)

  it("refuses to start without its policy directory", function()
    local dir = tmpdir()
    finally(function() rmdir(dir) end)
    local out, rc = run_cmd(sh_quote(BIN) .. " --api 127.0.0.1:0 --data-dir " .. sh_quote(dir .. "/d")
      .. " --policies " .. sh_quote(dir .. "/nope"))
    assert.are.equal(1, rc, out)
    assert.matches('level=error msg="policy directory missing"', out)
  end)

  it("policy-check passes the repo's policies and names file:line in a broken set", function()
    local repo = SOURCE_DIR .. "/policies"
    local f = io.open(repo .. "/select.lua", "r")
    if not f then
      pending("the repo's policies/ are not written yet")
      return
    end
    f:close()
    local out, rc = run_cmd(sh_quote(BIN) .. " policy-check " .. sh_quote(repo))
    assert.are.equal(0, rc, out)
    assert.matches("policy%-check: OK", out)

    local dir = tmpdir()
    finally(function() rmdir(dir) end)
    write_file(dir .. "/select.lua", "return {\n  select = function(book, n)\n")
    out, rc = run_cmd(sh_quote(BIN) .. " policy-check " .. sh_quote(dir))
    assert.are.equal(1, rc, out)
    assert.matches("select%.lua:%d+:", out)
    -- loads, but fails when called
    write_file(dir .. "/select.lua", "return { select = function(book, n)\n  return book.nope.x\nend }\n")
    write_file(dir .. "/score.lua", "return { score = function(peer) return 'high' end }\n")
    out, rc = run_cmd(sh_quote(BIN) .. " policy-check " .. sh_quote(dir))
    assert.are.equal(1, rc, out)
    assert.matches("select%.lua:2:", out)
    assert.matches("score", out)
    out, rc = run_cmd(sh_quote(BIN) .. " policy-check " .. sh_quote(dir .. "/missing"))
    assert.are.equal(1, rc, out)
  end)

  it("a 70/30 select policy shifts the tried/new share of /v1/dial", function()
    local node = start_with_policies({})
    finally(function() cleanup(node) end)
    fill_book(node, 200, 100)
    local st = status_of(node)
    assert.is_true(st.book.tried >= 80, "tried: " .. st.book.tried)
    assert.is_true(st.book.new >= 80, "new: " .. st.book.new)
    local function tried_share(rounds)
      local tried, total = 0, 0
      for _ = 1, rounds do
        local code, text, d = get(node, "/v1/dial?n=8")
        assert.are.equal(200, code, text)
        for _, p in ipairs(d.peers) do
          total = total + 1
          if p.table == "tried" then tried = tried + 1 end
        end
      end
      return tried / total, total
    end
    local default_share, n1 = tried_share(75) -- the C default: 85 / 15
    write_file(node.pdir .. "/select.lua", [[
local SHARE = 0.70
return { select = function(book, n)
  local out, seen, draws = {}, {}, 0
  while #out < n and draws < 64 * n do
    draws = draws + 1
    local id = book:random(peerd.random() < SHARE and "tried" or "new")
    if id and not seen[id] and not book:banned(id) then
      seen[id] = true
      out[#out + 1] = id
    end
  end
  return out
end }
]])
    local code, text = reload(node)
    assert.are.equal(200, code, text)
    local policy_share, n2 = tried_share(75)
    assert.is_true(n1 >= 500 and n2 >= 500, n1 .. " " .. n2)
    -- 600 picks each: a binomial sd of ~0.02, the expected gap is 0.15
    assert.is_true(policy_share > 0.6 and policy_share < 0.8, "policy share " .. policy_share)
    assert.is_true(default_share - policy_share > 0.07,
      string.format("default %.3f vs policy %.3f", default_share, policy_share))
  end)

  it("--help lists the policy flags and policy-check", function()
    local out, rc = run_cmd(sh_quote(BIN) .. " --help")
    assert.are.equal(0, rc)
    for _, s in ipairs({ "--policies", "--policy-instructions", "--policy-timeout-ms",
      "--policy-memory-mb", "--private-peer", "policy-check", "1000000", "(default: 50)", "(default: 64)" }) do
      assert.is_truthy(out:find(s, 1, true), s)
    end
  end)
end)
