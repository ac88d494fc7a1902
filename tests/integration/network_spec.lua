-- luacheck: std +busted
-- A real network on loopback: 20 peerd processes, each listening on its own
-- 127.K.0.1 address (distinct /16 groups, so --allow-private groups them
-- apart), default settings apart from that, one of them the seed that the
-- others are given with --seeds. The seed runs with --seed-mode (a crawler:
-- it connects, takes addresses, answers GETADDR and disconnects, so it holds
-- no connections and is exempt from the outbound minimum). Checks, with
-- bounded waits:
--   * every node reaches its minimum outbound peers (default 4) and knows at
--     least 15 of the 19 others (book entries + connected peers) within 60 s;
--   * after a third of them are killed (SIGKILL), the rest recover their
--     minimum outbound within 60 s.
-- Prints the convergence and recovery times (quoted in docs/benchmarks.md).
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv = H.uv

local N = 20
local MIN_OUT = 4 -- the default --min-outbound

-- IPs of the other nodes this one knows: its book and its connected peers.
local function known_ips(node)
  local ips = {}
  local code, _, doc = H.get(node, "/v1/book?limit=1000")
  if code == 200 and doc then
    for _, e in ipairs(doc.entries or {}) do
      local ip = e.addr:match("^([%d%.]+):%d+$")
      if ip then ips[ip] = true end
    end
  end
  local outbound, connected = 0, {}
  code, _, doc = H.get(node, "/v1/peers")
  if code == 200 and doc then
    for _, p in ipairs(doc.peers or {}) do
      local ip = p.addr:match("^([%d%.]+):%d+$")
      if ip then
        ips[ip] = true
        connected[ip] = true
      end
      if p.direction == "outbound" then outbound = outbound + 1 end
    end
  end
  return ips, outbound, connected
end

local function others_known(node, nodes)
  local ips, outbound = known_ips(node)
  local k = 0
  for _, o in ipairs(nodes) do
    if o ~= node and ips[o.p2p_host] then k = k + 1 end
  end
  return k, outbound
end

-- Connected (either direction) to every other non-seed node in `set`: a
-- node never dials a node ID already connected to it inbound, so in a small
-- dense network that is as many peers as it can have, even with fewer than
-- MIN_OUT of them outbound.
local function with_everyone(node, set)
  local _, _, conn = known_ips(node)
  for i, o in ipairs(set) do
    if o ~= node and i > 1 and not o.killed and not conn[o.p2p_host] then return false end
  end
  return true
end

describe("a 20-node peerd network on loopback", function()
  local nodes = {}
  teardown(function()
    for _, n in ipairs(nodes) do
      if n.killed then
        H.stop(n)
        H.rmdir(n.dir)
      else
        H.cleanup(n)
      end
    end
  end)

  it("converges from one seed, then recovers after a third is killed", function()
    local t0 = uv.hrtime()
    local seed = H.start({ "--allow-private", "--seed-mode", "--max-outbound", "8", "--listen", "127.1.0.1:0" }, nil,
      { log_level = "info", timeout = 20 })
    nodes[1] = seed
    for k = 2, N do
      nodes[k] = H.start({ "--allow-private", "--listen", "127." .. k .. ".0.1:0",
        "--seeds", seed.p2p }, nil, { log_level = "info", timeout = 20 })
    end
    local started = (uv.hrtime() - t0) / 1e9

    local status, fallback = {}, 0
    local converged = H.wait_until(function()
      local all = true
      for i, n in ipairs(nodes) do
        if not status[i] then
          local k, out = others_known(n, nodes)
          -- the seed crawls (--seed-mode): it holds no connections
          if k >= 15 and (out >= MIN_OUT or n == seed or with_everyone(n, nodes)) then
            status[i] = (uv.hrtime() - t0) / 1e9
            if out < MIN_OUT and n ~= seed then fallback = fallback + 1 end
          else
            all = false
          end
        end
      end
      return all
    end, 60)
    local detail = {}
    for i, n in ipairs(nodes) do
      local k, out = others_known(n, nodes)
      detail[#detail + 1] = string.format("%s known=%d outbound=%d at=%s", n.p2p, k, out,
        tostring(status[i]))
    end
    assert.is_true(converged, table.concat(detail, "\n"))
    local last = 0
    for i = 1, N do last = math.max(last, status[i]) end
    print(string.format("\n[network] %d nodes started in %.1f s; every node had >= %d outbound " ..
      "(%d: fewer, but connected to every other node) and knew >= 15 others %.1f s after the " ..
      "first start (%.1f s after the last)", N, started, MIN_OUT, fallback, last, last - started))

    -- kill a third (not the seed), SIGKILL: no GOODBYE, no anchors
    local doomed = {}
    for k = 2, N, 3 do doomed[nodes[k].p2p_host] = true end
    local lost_before = 0
    for _, n in ipairs(nodes) do
      if not doomed[n.p2p_host] then
        local _, _, doc = H.get(n, "/v1/peers")
        for _, p in ipairs(doc and doc.peers or {}) do
          local ip = p.addr:match("^([%d%.]+):%d+$")
          if p.direction == "outbound" and doomed[ip] then lost_before = lost_before + 1 end
        end
      end
    end
    local t1 = uv.hrtime()
    for k = 2, N, 3 do
      nodes[k].proc.handle:kill("sigkill")
      nodes[k].killed = true
    end
    H.wait_until(function()
      for _, n in ipairs(nodes) do
        if n.killed and not n.proc.exited then return false end
      end
      return true
    end, 10)
    local alive = {}
    for _, n in ipairs(nodes) do
      if not n.killed then alive[#alive + 1] = n end
    end
    -- Recovered: no connection to a dead node left, and MIN_OUT outbound
    -- peers (or connected to every other live node, see with_everyone).
    local dead_ips = {}
    for _, n in ipairs(nodes) do
      if n.killed then dead_ips[n.p2p_host] = true end
    end
    local function recovered_node(n)
      if n == seed then return true end
      local _, out, conn = known_ips(n)
      for ip in pairs(conn) do
        if dead_ips[ip] then return false end -- a dead peer not noticed yet
      end
      return out >= MIN_OUT or with_everyone(n, nodes)
    end
    local recovered = H.wait_until(function()
      for _, n in ipairs(alive) do
        if not recovered_node(n) then return false end
      end
      return true
    end, 60)
    detail = {}
    for _, n in ipairs(alive) do
      local _, out = known_ips(n)
      detail[#detail + 1] = n.p2p .. " outbound=" .. out .. " ok=" .. tostring(recovered_node(n))
    end
    assert.is_true(recovered, table.concat(detail, "\n"))
    assert.is_true(lost_before > 0) -- the kill did cut outbound connections
    print(string.format("[network] %d of %d killed (%d outbound connections of the others cut); " ..
      "the other %d dropped the dead peers and were back at >= %d outbound in %.1f s",
      N - #alive, N, lost_before, #alive, MIN_OUT, (uv.hrtime() - t1) / 1e9))
    for _, n in ipairs(alive) do
      local code = H.get(n, "/health")
      assert.are.equal(200, code)
    end
  end)
end)

describe("peerd identity, listener and anchors", function()
  it("creates node_key (0600) at first start, keeps it, and shows it in status", function()
    local node, again = H.start({ "--allow-private", "--listen", "127.0.0.3:0" }), nil
    local dir = node.dir
    finally(function() -- one finally per test: busted keeps only the last one
      H.cleanup(again)
      H.cleanup(node) -- stops it if a check failed first, and removes its directory
    end)
    local st = H.status_of(node)
    assert.are.equal(node.node_id, st.node_id)
    assert.are.equal(40, #st.node_id)
    assert.are.equal(node.p2p, st.listen)
    assert.truthy(H.log_of(node):find('msg="node key created" node_id=' .. st.node_id, 1, true))
    local mode = H.run_cmd("stat -c %a " .. H.sh_quote(node.data .. "/node_key"))
    assert.are.equal("600", mode:match("%d+"))
    local key = H.read_file(node.data .. "/node_key")
    assert.truthy(key:match("^peerd%-node%-key v1\nseed %x+\nid " .. st.node_id .. "\n$"))
    H.stop(node)
    -- same identity after a restart; the file is unchanged
    again = H.start({ "--allow-private", "--listen", "127.0.0.3:0" }, dir)
    assert.are.equal(st.node_id, H.status_of(again).node_id)
    assert.truthy(H.log_of(again):find('msg="node key loaded"', 1, true))
    assert.are.equal(key, H.read_file(again.data .. "/node_key"))
  end)

  it("refuses to start with a damaged node_key and never overwrites it", function()
    local dir = H.tmpdir()
    finally(function() H.rmdir(dir) end)
    os.execute("mkdir -m 700 " .. H.sh_quote(dir .. "/data"))
    local bad = "peerd-node-key v1\nseed " .. string.rep("ab", 32) .. "\nid " ..
      string.rep("00", 20) .. "\n"
    H.write_file(dir .. "/data/node_key", bad)
    local log = dir .. "/peerd.log"
    local p = H.spawn({ "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--data-dir",
      dir .. "/data" }, log)
    assert.is_true(H.wait_until(function() return p.exited end, 10))
    if not p.handle:is_closing() then p.handle:close() end
    assert.are.equal(1, p.code)
    assert.truthy(H.read_file(log):find("node key file is damaged", 1, true))
    assert.are.equal(bad, H.read_file(dir .. "/data/node_key"))
  end)

  it("rejects bad network flags with usage errors", function()
    -- loopback addresses only: were a bad entry ever accepted, this daemon
    -- (default settings: it dials) would have nothing off the machine to dial
    for _, args in ipairs({ { "--listen", "nope" }, { "--seeds", "127.0.0.1" },
      { "--persistent-peers", "zz@127.0.0.1:1" }, { "--max-outbound", "-1" },
      { "--min-outbound", "9" }, { "--network", "has space" },
      { "--unconditional-peer-ids", "abc" }, { "--private-peer-ids", "xyz" },
      { "--handshake-timeout-ms", "5" } }) do
      local cmd = H.sh_quote(H.BIN)
      for _, a in ipairs(args) do cmd = cmd .. " " .. H.sh_quote(a) end
      local out, code = H.run_cmd(cmd)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. out)
    end
    local out, code = H.run_cmd(H.sh_quote(H.BIN) .. " --help")
    assert.are.equal(0, code)
    for _, flag in ipairs({ "--listen", "--seeds", "--persistent-peers", "--seed-mode",
      "--max-outbound", "--max-inbound", "--min-outbound", "--network",
      "--unconditional-peer-ids", "--private-peer-ids", "--handshake-timeout-ms" }) do
      assert.truthy(out:find(flag, 1, true), flag)
    end
    assert.truthy(out:find("0.0.0.0:7411", 1, true))
  end)

  it("resolves host-name seeds with DNS and dials what they resolve to", function()
    local a = H.start({ "--allow-private", "--listen", "127.0.0.1:0" })
    local b = H.start({ "--allow-private", "--listen", "127.0.0.4:0", "--seeds",
      "localhost:" .. a.p2p_port })
    finally(function()
      H.cleanup(b)
      H.cleanup(a)
    end)
    assert.is_true(H.wait_until(function()
      local _, _, doc = H.get(b, "/v1/peers")
      for _, p in ipairs(doc and doc.peers or {}) do
        if p.id == a.node_id and p.direction == "outbound" then return true end
      end
      return false
    end, 20), H.log_of(b))
    assert.truthy(H.log_of(b):find('msg="resolving seed" host=localhost', 1, true))
  end)

  it("saves the outbound peers as anchors at shutdown and dials them first at the next start", function()
    local a = H.start({ "--allow-private", "--listen", "127.21.0.1:0" })
    local c = H.start({ "--allow-private", "--listen", "127.23.0.1:0", "--seeds", a.p2p })
    finally(function()
      H.cleanup(c)
      H.cleanup(a)
    end)
    local function connected_out(node)
      local _, _, doc = H.get(node, "/v1/peers")
      for _, p in ipairs(doc and doc.peers or {}) do
        if p.addr == a.p2p and p.direction == "outbound" and p.id == a.node_id then return true end
      end
      return false
    end
    assert.is_true(H.wait_until(function() return connected_out(c) end, 20), H.log_of(c))
    H.stop(c)
    local text = H.read_file(c.data .. "/anchors.json")
    local anchors = H.cjson.decode(text)
    assert.are.equal(1, anchors.version)
    assert.are.same({ { addr = a.p2p, id = a.node_id } }, anchors.anchors)
    -- restart without --seeds: the anchor is dialled
    local c2 = H.start({ "--allow-private", "--listen", "127.23.0.1:0", "--max-outbound", "8" },
      c.dir)
    c.proc, c.port, c.log = c2.proc, c2.port, c2.log
    -- the log line may reach the file just after the API answers
    assert.is_true(H.wait_until(function()
      return H.log_of(c2):find('msg="anchors loaded"', 1, true) ~= nil
    end, 10), H.log_of(c2))
    assert.is_true(H.wait_until(function() return connected_out(c2) end, 20), H.log_of(c2))
  end)
end)
