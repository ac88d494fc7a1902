-- luacheck: std +busted
-- End to end, on real loopback: 12 peerd processes on 127.K.0.1 (distinct
-- /16s), one in seed mode, each beside a stand-in node — a TCP listener on
-- its own port of the same address that speaks another protocol and counts
-- every connection and byte it receives. With default settings each
-- node's GET /v1/dial?n=8 soon names at least 4 other nodes, each as the
-- other node's service endpoint with that node's node_id, never a peerd
-- discovery endpoint, and no stand-in ever receives a byte from a peerd.
-- Then one node moves its service port (PUT /v1/self): the others' dial
-- lists show the new port and none shows the old one.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local N = 12

describe("node records end to end", function()
  local nodes, standins = {}, {}

  teardown(function()
    for _, n in ipairs(nodes) do H.cleanup(n) end
    for _, s in ipairs(standins) do s.close() end
  end)

  it("hands each node the other nodes' service endpoints, never a peerd's", function()
    for k = 1, N do
      standins[k] = H.standin(string.format("127.%d.0.1", 100 + k), 0)
    end
    local t0 = H.uv.hrtime()
    nodes[1] = H.start({ "--listen", "127.101.0.1:0", "--allow-private", "--seed-mode",
      "--service", "p2p=" .. standins[1].port })
    local seed = nodes[1].node_id .. "@" .. nodes[1].p2p
    for k = 2, N do
      nodes[k] = H.start({ "--listen", string.format("127.%d.0.1:0", 100 + k), "--allow-private",
        "--seeds", seed, "--service", "p2p=" .. standins[k].port })
    end
    local discovery, service_of = {}, {}
    for k = 1, N do
      discovery[nodes[k].p2p] = true
      service_of[nodes[k].node_id] = standins[k].addr
    end

    -- every node: >= 4 others, as service endpoint + node_id, checked each time
    local bad
    local function check(k)
      local code, text, doc = H.get(nodes[k], "/v1/dial?n=8")
      if code ~= 200 or not doc then
        bad = "node " .. k .. ": " .. tostring(text)
        return false
      end
      local others = 0
      for _, p in ipairs(doc.peers) do
        if discovery[p.addr] then bad = "node " .. k .. " was handed a discovery endpoint " .. p.addr end
        if p.node_id == nil or service_of[p.node_id] ~= p.addr then
          bad = "node " .. k .. " was handed " .. p.addr .. " as " .. tostring(p.node_id)
        end
        if p.node_id ~= nodes[k].node_id then others = others + 1 end
      end
      return others >= 4
    end
    local ok = H.wait_until(function()
      for k = 1, N do
        if not check(k) then return false end
      end
      return true
    end, 60)
    assert.is_nil(bad, bad)
    assert.is_true(ok, "not every node had 4 others to dial within 60 s")
    print(string.format("[records] %d nodes: every dial list held >= 4 other nodes' service "
      .. "endpoints %.1f s after the first start", N, (H.uv.hrtime() - t0) / 1e9))
    for k = 1, N do
      assert.are.equal(0, standins[k].conns, "stand-in " .. k .. " was connected to")
      assert.are.equal(0, standins[k].bytes)
    end

    -- node 5 moves its service port
    local moved = H.standin("127.105.0.1", 0)
    standins[#standins + 1] = moved
    local code, text = H.http(nodes[5], "PUT", "/v1/self", '{"services":{"p2p":' .. moved.port .. '}}')
    assert.are.equal(200, code, text)
    local old = standins[5].addr
    local t1 = H.uv.hrtime()
    ok = H.wait_until(function()
      for k = 1, N do
        if k ~= 5 then
          local _, _, doc = H.get(nodes[k], "/v1/dial?n=1000")
          if not doc then return false end
          local seen_new = false
          for _, p in ipairs(doc.peers) do
            if p.addr == old then return false end
            if p.addr == moved.addr then seen_new = p.node_id == nodes[5].node_id end
          end
          if not seen_new then return false end
        end
      end
      return true
    end, 60)
    assert.is_true(ok, "the new port did not reach every node within 60 s")
    print(string.format("[records] a moved service port reached the other %d nodes in %.1f s", N - 1,
      (H.uv.hrtime() - t1) / 1e9))
    for _, s in ipairs(standins) do
      assert.are.equal(0, s.conns)
      assert.are.equal(0, s.bytes)
    end
  end)
end)
