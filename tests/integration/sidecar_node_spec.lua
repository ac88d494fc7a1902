-- luacheck: std +busted
-- docs/sidecar.md for real: five peerds on 127.81.0.1 … 127.85.0.1 (the
-- first in --seed-mode, the others with --seeds; each with --allow-private
-- and --service p2p=PORT) and beside each one the example node
-- (examples/node/node.lua, spawned with luv) on PORT of the same address.
-- Within 60 s every node holds >= 2 peers that are other nodes (by node_id,
-- from its status lines), and its events reached its peerd (good events in
-- /metrics, the other nodes' service endpoints in tried); GET /v1/dial names
-- service endpoints only. The peerds run the shipped policies with one
-- change: select.lua answers nothing to a GET /v1/dial without outbound=,
-- so the nodes only find peers if they say how many they hold. Also:
-- examples/sidecar.sh still runs against a --p2p off peerd.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv = H.uv

local SRC = os.getenv("PEERD_SOURCE_DIR") or "."
local NODE = SRC .. "/examples/node/node.lua"
local N = 5
local WANT = 2           -- --peers of each node
local DEADLINE = 60      -- s, for every node to hold WANT peers

-- A port free on every one of ips (bind and listen, then close).
local function free_port(ips)
  for _ = 1, 50 do
    local port = math.random(20000, 40000)
    local ok = true
    for _, ip in ipairs(ips) do
      local t = uv.new_tcp()
      local r = t:bind(ip, port)
      if r then r = t:listen(1, function() end) end
      t:close()
      if not r then
        ok = false
        break
      end
    end
    uv.run("nowait")
    if ok then return port end
  end
  error("no port free on all of " .. table.concat(ips, " "))
end

-- Spawn one example node; returns {proc, log, out} (proc as the harness's; out: its stderr).
local function spawn_node(dir, listen, api_port)
  local n = { log = dir .. "/node.log", out = dir .. "/node.err" }
  local proc = { exited = false }
  local fd = assert(uv.fs_open(n.out, "a", tonumber("644", 8)))
  local handle, pid = uv.spawn("lua5.4", {
    args = { NODE, "--listen", listen, "--peerd", "127.0.0.1:" .. api_port, "--peers", tostring(WANT),
      "--log", n.log, "--duration", "150" },
    stdio = { nil, nil, fd }, -- stdout (a copy of the log) ignored, stderr kept
  }, function(code, signal)
    proc.exited, proc.code, proc.signal = true, code, signal
  end)
  uv.fs_close(fd)
  assert(handle, "cannot spawn lua5.4: " .. tostring(pid))
  proc.handle, proc.pid = handle, pid
  n.proc = proc
  return n
end

-- The node's last status line: {outbound, inbound, peers = {{id, dir}...}, line}.
local function last_status(n)
  local last
  for line in (H.read_file(n.log) or ""):gmatch("[^\n]+") do
    if line:find(" msg=status ", 1, true) then last = line end
  end
  if not last then return nil end
  local st = { line = last, peers = {}, outbound = tonumber(last:match(" outbound=(%d+)")),
    inbound = tonumber(last:match(" inbound=(%d+)")), events_ok = tonumber(last:match(" events_ok=(%d+)")),
    events_refused = tonumber(last:match(" events_refused=(%d+)")) }
  local list = last:match(" peers=(%S+)")
  for id, dir in (list or ""):gmatch("(%x+)/(%a+)") do st.peers[#st.peers + 1] = { id = id, dir = dir } end
  return st
end

local function tail(path, lines)
  local all = {}
  for line in (H.read_file(path) or ""):gmatch("[^\n]+") do all[#all + 1] = line end
  return table.concat(all, "\n", math.max(1, #all - lines + 1))
end

local peerds, nodes = {}, {}

describe("sidecar walk-through (docs/sidecar.md)", function()
  after_each(function()
    for _, n in ipairs(nodes) do
      if n.proc and not n.proc.exited then
        n.proc.handle:kill("sigkill")
        H.wait_until(function() return n.proc.exited end, 5)
      end
      if n.proc and not n.proc.handle:is_closing() then n.proc.handle:close() end
    end
    for _, p in ipairs(peerds) do
      H.stop(p)
      H.rmdir(p.dir)
    end
    peerds, nodes = {}, {}
    uv.run("nowait")
  end)

  it("five nodes beside five peerds keep >= 2 peers each, found and reported through peerd", function()
    local ips = {}
    for k = 1, N do ips[k] = "127.8" .. k .. ".0.1" end
    local port = free_port(ips)
    local service = "p2p=" .. port
    local pol = H.tmpdir()
    finally(function() H.rmdir(pol) end)
    for _, f in ipairs({ "dht.lua", "evict.lua", "pex.lua", "reputation.lua", "score.lua", "select.lua" }) do
      local text = assert(H.read_file(SRC .. "/policies/" .. f))
      if f == "select.lua" then
        local last = "return { select = select_peers }"
        local at = assert(text:find(last, 1, true), "policies/select.lua ends otherwise")
        text = text:sub(1, at - 1) .. "return { select = function(book, n, ctx)\n"
          .. "  if ctx == nil or ctx.outbound == nil then return {} end\n"
          .. "  return select_peers(book, n, ctx)\nend }\n"
      end
      H.write_file(pol .. "/" .. f, text)
    end
    local t0 = uv.hrtime()
    peerds[1] = H.start({ "--allow-private", "--seed-mode", "--max-outbound", "8", "--listen", ips[1] .. ":0",
      "--service", service, "--policies", pol }, nil, { log_level = "info", timeout = 20 })
    for k = 2, N do
      peerds[k] = H.start({ "--allow-private", "--listen", ips[k] .. ":0", "--seeds", peerds[1].p2p,
        "--service", service, "--policies", pol }, nil, { log_level = "info", timeout = 20 })
    end
    local id_at, endpoint_of = {}, {}
    for k = 1, N do
      local code, text, self = H.get(peerds[k], "/v1/self")
      assert.are.equal(200, code, text)
      assert.are.equal(ips[k] .. ":" .. port, self.services.p2p, text)
      endpoint_of[k] = ips[k] .. ":" .. port
      id_at[endpoint_of[k]] = peerds[k].node_id
    end
    for k = 1, N do nodes[k] = spawn_node(peerds[k].dir, endpoint_of[k], peerds[k].port) end

    -- every node: >= WANT peers, all of them other nodes
    local function judge(k)
      local st = last_status(nodes[k])
      if not st then return false, "no status line yet" end
      local seen = {}
      for _, p in ipairs(st.peers) do
        if p.id == peerds[k].node_id then return false, "peer is itself: " .. st.line end
        local other = false
        for j = 1, N do other = other or (j ~= k and peerds[j].node_id == p.id) end
        if not other then return false, "peer is not one of the nodes: " .. p.id end
        seen[p.id] = true
      end
      local distinct = 0
      for _ in pairs(seen) do distinct = distinct + 1 end
      if distinct < WANT then return false, st.line end
      return true, st.line
    end
    local next_look = 0
    local ok = H.wait_until(function()
      if uv.hrtime() < next_look then return false end
      next_look = uv.hrtime() + 1e9
      for k = 1, N do
        if nodes[k].proc.exited then return true end -- reported below
        if not judge(k) then return false end
      end
      return true
    end, DEADLINE)
    local detail = {}
    for k = 1, N do
      local good, why = judge(k)
      detail[#detail + 1] = string.format("node %d (%s, exited=%s): %s %s", k, endpoint_of[k],
        tostring(nodes[k].proc.exited), good and "ok" or "NOT OK", why)
      if not good then detail[#detail + 1] = tail(nodes[k].log, 15) .. "\n" .. tail(nodes[k].out, 5) end
    end
    assert.is_true(ok, table.concat(detail, "\n"))
    local held = {}
    for k = 1, N do
      local st = last_status(nodes[k])
      held[k] = string.format("%d out + %d in", st.outbound, st.inbound)
    end
    print(string.format("\n[sidecar] %d nodes each held >= %d other nodes as peers %.1f s after the first peerd " ..
      "started (%s)", N, WANT, (uv.hrtime() - t0) / 1e9, table.concat(held, ", ")))

    for k = 1, N do
      local st = last_status(nodes[k])
      -- the node's events reached its peerd, and peerd took every one
      assert.is_true(st.events_ok > 0, st.line)
      assert.are.equal(0, st.events_refused, st.line .. "\n" .. tail(nodes[k].log, 30))
      local good = H.metric(peerds[k], 'peerd_events_total{event="good"}')
      assert.is_true((good or 0) >= 1, "node " .. k .. ": no good event in its peerd's /metrics")
      -- an outbound peer that greeted us is in tried, under its service endpoint
      if st.outbound > 0 then
        local code, text, doc = H.get(peerds[k], "/v1/book?table=tried&limit=1000")
        assert.are.equal(200, code, text)
        local found = false
        for _, e in ipairs(doc.entries) do found = found or (id_at[e.addr] ~= nil and e.addr ~= endpoint_of[k]) end
        assert.is_true(found, "node " .. k .. ": no other node's service endpoint in tried: " .. text)
      end
      -- GET /v1/dial names service endpoints (what the node dials), never peerd's own endpoints
      local code, text, doc = H.get(peerds[k], "/v1/dial?n=8")
      assert.are.equal(200, code, text)
      assert.are.equal(0, #doc.peers, text) -- the test's select.lua wants outbound=
      code, text, doc = H.get(peerds[k], "/v1/dial?n=8&outbound=" .. st.outbound)
      assert.are.equal(200, code, text)
      assert.is_true(#doc.peers >= 1, text)
      for _, p in ipairs(doc.peers) do
        assert.is_not_nil(id_at[p.addr], "peerd " .. k .. " handed out a non-service endpoint: " .. text)
        if p.node_id then assert.are.equal(id_at[p.addr], p.node_id, text) end
      end
    end

    -- SIGTERM: each node closes its connections and exits 0
    for k = 1, N do nodes[k].proc.handle:kill("sigterm") end
    assert.is_true(H.wait_until(function()
      for k = 1, N do
        if not nodes[k].proc.exited then return false end
      end
      return true
    end, 10), "a node did not exit within 10 s of SIGTERM")
    for k = 1, N do
      assert.are.equal(0, nodes[k].proc.code, tail(nodes[k].out, 10))
      assert.matches('msg="final status"', H.read_file(nodes[k].log), 1, true)
    end
    for k = 1, N do
      H.cleanup(peerds[k])
      peerds[k].proc = nil
    end
  end)
end)

describe("examples/sidecar.sh", function()
  it("still runs against a --p2p off peerd", function()
    local p = H.start({ "--p2p", "off" })
    local out, rc = H.run_cmd("PEERD=127.0.0.1:" .. p.port .. " sh " .. H.sh_quote(SRC .. "/examples/sidecar.sh"))
    assert.are.equal(0, rc, out)
    assert.matches('"result":"moved_to_tried"', out, 1, true)
    assert.matches('"misbehaviours":1', out, 1, true)
    H.cleanup(p)
  end)
end)
