-- luacheck: std +busted
-- Policies under load, through the real daemon (docs/policies.md, "Policies
-- under load" and "Shadow policies"): a pex.lua whose accept loops forever
-- against one POST /v1/book of 1,000 addresses (the request completes, the
-- hook's breaker trips and says so in status and metrics, a concurrent
-- /health is answered, a reload closes the breaker); a shadow policy set
-- that disagrees exactly where its pex.lua differs and agrees everywhere
-- else, follows the watcher and SIGHUP, and is promoted. No assertion is on
-- time; every wait is bounded.
--
-- Run from the repo root:  PEERD_BIN=build/peerd lua5.4 /usr/bin/busted tests/integration/policyload_spec.lua
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv, cjson = H.uv, H.cjson
local sh_quote, write_file, read_file, tmpdir = H.sh_quote, H.write_file, H.read_file, H.tmpdir
local wait_until, log_of, start, cleanup = H.wait_until, H.log_of, H.start, H.cleanup
local get, post, status_of, metric, run_cmd = H.get, H.post, H.status_of, H.metric, H.run_cmd

local SOURCE_DIR = os.getenv("PEERD_SOURCE_DIR") or "."

-- curl in the background: returns a handle whose .done/.code/.out fill in
-- when it exits.
local function curl_async(dir, port, method, path, body)
  local out = dir .. "/curl-" .. tostring(uv.hrtime()) .. ".out"
  local args = { "-s", "-S", "--max-time", "60", "-o", out, "-w", "%{http_code}", "-X", method }
  if body then
    local bf = out .. ".body"
    write_file(bf, body)
    for _, a in ipairs({ "-H", "Content-Type: application/json", "--data-binary", "@" .. bf }) do
      args[#args + 1] = a
    end
  end
  args[#args + 1] = "http://127.0.0.1:" .. port .. path
  local job = { done = false }
  local pipe = uv.new_pipe(false)
  local chunks = {}
  local handle
  handle = uv.spawn("curl", { args = args, stdio = { nil, pipe, nil } }, function(code)
    job.exit = code
    handle:close()
  end)
  assert(handle, "cannot run curl")
  pipe:read_start(function(err, data)
    if data then
      chunks[#chunks + 1] = data
    elseif not err then
      pipe:close()
      job.code = tonumber(table.concat(chunks))
      job.out = read_file(out)
      job.done = true
    end
  end)
  return job
end

-- 1,000 public addresses (20.1.0.1 .. ), none private or reserved
local function thousand()
  local addrs = {}
  for i = 0, 999 do
    addrs[#addrs + 1] = string.format("%d.%d.%d.1:26656", 20 + i % 70, 1 + i // 70, i % 250)
  end
  return addrs
end

local function copy_policies(to)
  assert(os.execute("mkdir -p " .. sh_quote(to) .. " && cp " .. sh_quote(SOURCE_DIR .. "/policies") ..
    "/*.lua " .. sh_quote(to)))
end

local function promtool_ok(node)
  local out, code = run_cmd("command -v promtool >/dev/null || exit 0; curl -s http://127.0.0.1:" ..
    node.port .. "/metrics | promtool check metrics")
  assert.are.equal(0, code, out)
end

describe("policies under load", function()
  it("bounds a request whose pex.accept loops, trips the hook, keeps /health answering; reload resets", function()
    local dir = tmpdir()
    local pdir = dir .. "/policies"
    assert(os.execute("mkdir " .. sh_quote(pdir)))
    write_file(pdir .. "/pex.lua", "return { accept = function(addr, from)\n  while true do end\nend }\n")
    local node = start({ "--policies", pdir, "--p2p", "off" }, dir)
    node.own_dir = true
    finally(function() cleanup(node) end)

    local body = cjson.encode({ addrs = thousand(), source = "5.6.7.8" })
    local book = curl_async(dir, node.port, "POST", "/v1/book", body)
    local health = curl_async(dir, node.port, "GET", "/health")
    assert.is_true(wait_until(function() return book.done and health.done end, 60),
      "requests did not finish:\n" .. log_of(node))
    assert.are.equal(200, book.code, book.out)
    assert.are.equal(200, health.code, health.out)
    local doc = cjson.decode(book.out)
    assert.are.equal(1000, doc.added + doc.known + #doc.rejected, book.out)
    -- the C default accepted every address (some lose a slot of the one source's buckets)
    assert.is_true(doc.added >= 500, book.out)
    for _, r in ipairs(doc.rejected) do
      assert.are.equal("new-table slot taken by another address", r.error)
    end

    local pol = status_of(node).policy
    local h = pol.hooks.pex_accept
    assert.is_true(h.provided)
    assert.are.equal("tripped", h.state)
    assert.are.equal(8, h.consecutive_failures)
    assert.are.equal(8, h.calls)
    assert.are.equal(8, h.failures)
    assert.are.equal(992, h.skipped.tripped)
    assert.is_number(h.tripped_at)
    assert.matches("pex.lua:2:", h.last_error.error)
    assert.is_truthy(h.last_error.kind == "instructions" or h.last_error.kind == "timeout", h.last_error.kind)
    assert.are.equal("pex_accept", pol.last_error.hook)
    assert.are.equal(h.last_error.kind, pol.last_error.kind)
    assert.are.equal("absent", pol.hooks.select.state)
    assert.are.equal(8, pol.limits.trip_after)

    assert.are.equal(1, metric(node, 'peerd_policy_hook_tripped{hook="pex_accept"}'))
    assert.are.equal(0, metric(node, 'peerd_policy_hook_tripped{hook="select"}'))
    assert.are.equal(992, metric(node, 'peerd_policy_skipped_total{hook="pex_accept",reason="tripped"}'))
    assert.are.equal(8, metric(node, 'peerd_policy_call_seconds_count{hook="pex_accept"}'))
    assert.are.equal(8, metric(node, 'peerd_policy_call_seconds_bucket{hook="pex_accept",le="+Inf"}'))
    promtool_ok(node)
    assert.matches('level=warn msg="policy hook tripped[^"]*" hook=pex_accept failures_in_a_row=8 set=live ' ..
      'error=.- event=policy_tripped', log_of(node))

    -- a reload closes the breaker: the hook runs (and fails) again
    local code, text, r = post(node, "/v1/policy/reload", "")
    assert.are.equal(200, code, text)
    assert.is_true(r.reloaded)
    h = status_of(node).policy.hooks.pex_accept
    assert.are.equal("ok", h.state)
    assert.are.equal(0, h.consecutive_failures)
    assert.are.equal(cjson.null, h.tripped_at)
    assert.are.equal(0, metric(node, 'peerd_policy_hook_tripped{hook="pex_accept"}'))
    code, text = post(node, "/v1/book", { addrs = { "98.1.1.1:26656" }, source = "5.6.7.8" })
    assert.are.equal(200, code, text)
    h = status_of(node).policy.hooks.pex_accept
    assert.are.equal("failing", h.state)
    assert.are.equal(1, h.consecutive_failures)
    assert.are.equal(9, h.calls)
  end)

  it("compares a shadow set on every decision, follows reloads, and promotes it", function()
    local dir = tmpdir()
    local live, shadow = dir .. "/live", dir .. "/shadow"
    copy_policies(live)
    copy_policies(shadow)
    -- the shadow's pex.lua also refuses 7.7.0.0/16; everything else is the same code
    local pex = read_file(shadow .. "/pex.lua")
    local anchor = "  if addr.banned then return false end\n"
    local at = pex:find(anchor, 1, true)
    assert.is_truthy(at)
    write_file(shadow .. "/pex.lua", pex:sub(1, at - 1) .. anchor ..
      '  if addr.addr:sub(1, 4) == "7.7." then return false end\n' .. pex:sub(at + #anchor))
    local node = start({ "--policies", live, "--shadow-policies", shadow, "--p2p", "off", "--seed", "7" }, dir)
    node.own_dir = true
    finally(function() cleanup(node) end)

    local code, text, doc = get(node, "/v1/policy/shadow")
    assert.are.equal(200, code, text)
    assert.are.equal(shadow, doc.dir)
    assert.is_true(doc.loaded)
    assert.are.equal(1, doc.generation)
    assert.are.equal(shadow, status_of(node).policy.shadow.dir)

    -- 100 gossiped addresses, 20 of them in 7.7/16: the live set takes all
    local addrs = {}
    for i = 1, 100 do
      addrs[i] = i % 5 == 0 and string.format("7.7.%d.1:26656", i) or string.format("%d.%d.1.1:26656", 20 + i % 60, i)
    end
    code, text, doc = post(node, "/v1/book", { addrs = addrs, source = "5.6.7.8" })
    assert.are.equal(200, code, text)
    for _, r in ipairs(doc.rejected) do assert.are_not.equal("refused by pex policy", r.error) end
    local tried = 0
    for i = 1, 100 do
      if i % 5 ~= 0 and tried < 5 then
        code = post(node, "/v1/events", { addr = addrs[i], event = "good" })
        if code == 200 then tried = tried + 1 end
      end
    end
    for _ = 1, 3 do
      code, text = get(node, "/v1/dial?n=8")
      assert.are.equal(200, code, text)
    end

    code, text, doc = get(node, "/v1/policy/shadow")
    assert.are.equal(200, code, text)
    local pa = doc.hooks.pex_accept
    assert.are.same({ 100, 80, 20, 0 }, { pa.calls, pa.agreements, pa.disagreements, pa.errors })
    assert.are.equal(8, #pa.last_disagreements)
    assert.matches("^addr=7%.7%.%d+%.1:26656 from=5%.6%.7%.8$", pa.last_disagreements[1].input)
    assert.are.equal("true", pa.last_disagreements[1].live)
    assert.are.equal("false", pa.last_disagreements[1].shadow)
    -- the same code on the same inputs (and the same random stream) agrees
    for _, hook in ipairs({ "select", "score", "reputation" }) do
      local hh = doc.hooks[hook]
      assert.is_true(hh.calls > 0, hook)
      assert.are.equal(hh.calls, hh.agreements, hook .. ": " .. text)
    end
    assert.are.equal(3, doc.hooks.select.calls)
    assert.are.equal(20, metric(node, 'peerd_policy_shadow_calls_total{hook="pex_accept",result="disagree"}'))
    assert.are.equal(80, metric(node, 'peerd_policy_shadow_calls_total{hook="pex_accept",result="agree"}'))
    assert.are.equal(0, metric(node, 'peerd_policy_shadow_calls_total{hook="select",result="disagree"}'))
    promtool_ok(node)

    -- the watcher reloads the shadow (only): counts start again
    local live_gen = status_of(node).policy.generation
    write_file(shadow .. "/pex.lua", read_file(shadow .. "/pex.lua") .. "-- edited\n")
    assert.is_true(wait_until(function()
      local _, _, d = get(node, "/v1/policy/shadow")
      return d and d.generation == 2
    end, 10), log_of(node))
    code, text, doc = get(node, "/v1/policy/shadow")
    assert.are.equal(200, code, text)
    assert.are.equal(0, doc.hooks.pex_accept.calls)
    assert.are.equal(live_gen, status_of(node).policy.generation)
    -- SIGHUP reloads both
    node.proc.handle:kill("sighup")
    assert.is_true(wait_until(function()
      local _, _, d = get(node, "/v1/policy/shadow")
      return d and d.generation == 3 and status_of(node).policy.generation == live_gen + 1
    end, 10), log_of(node))

    -- promote: the shadow set is live, its directory the live one, no shadow left
    code, text, doc = post(node, "/v1/policy/promote", "")
    assert.are.equal(200, code, text)
    assert.is_true(doc.promoted)
    assert.are.equal(shadow, doc.dir)
    local pol = status_of(node).policy
    assert.are.equal(shadow, pol.dir)
    assert.are.equal(cjson.null, pol.shadow)
    assert.are.equal(live_gen + 2, pol.generation)
    assert.are.equal(404, (get(node, "/v1/policy/shadow")))
    assert.are.equal(409, (post(node, "/v1/policy/promote", "")))
    code, text, doc = post(node, "/v1/book", { addrs = { "7.7.200.1:26656" }, source = "5.6.7.8" })
    assert.are.equal(200, code, text)
    assert.are.equal("refused by pex policy", doc.rejected[1].error)
    assert.matches('msg="shadow policy set promoted', log_of(node))
    -- the live watcher follows the new directory
    write_file(shadow .. "/score.lua", read_file(shadow .. "/score.lua") .. "-- edited\n")
    assert.is_true(wait_until(function()
      return status_of(node).policy.generation == live_gen + 3
    end, 10), log_of(node))
  end)

  it("promoted over the built-in copy, makes the shadow's directory the live, watched one", function()
    local dir = tmpdir()
    local shadow = dir .. "/shadow"
    copy_policies(shadow)
    -- no --policies: the build tree's peerd runs the copy built into it
    -- (or an installed directory, if this machine has one)
    local node = start({ "--p2p", "off", "--shadow-policies", shadow })
    local before = status_of(node).policy
    local code, text = post(node, "/v1/policy/promote", "")
    assert.are.equal(200, code, text)
    local pol = status_of(node).policy
    assert.are.equal("dir", pol.source)
    assert.are.equal(shadow, pol.dir)
    assert.are.equal(before.generation + 1, pol.generation)
    -- SIGHUP reloads the promoted directory (a change there shows in the hash)
    write_file(shadow .. "/pex.lua", "return { accept = function() return false end }\n")
    node.proc.handle:kill("sighup")
    assert.is_true(wait_until(function()
      local p = status_of(node).policy
      return p.generation >= pol.generation + 1 and p.hash ~= pol.hash
    end, 10), log_of(node))
    cleanup(node)
    H.rmdir(dir)
  end)
end)
