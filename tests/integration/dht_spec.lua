-- luacheck: std +busted
-- The DHT end to end, on real loopback UDP (docs/dht.md): 30 peerd
-- processes on 127.K.0.1 that know one bootnode find each other's records
-- by lookups; GET /v1/nodes/ID finds a node the asker has no overlay peer
-- at all to hear of; a hostile datagram stream is refused with counted
-- reasons and loses nothing; the table survives a restart (dht.json).
local H = require("tests.integration.harness")
local uv = H.uv

local N = 30

-- Node k listens (TCP overlay and UDP DHT, one port) on 127.(20+k).0.1.
local function host(k) return string.format("127.%d.0.1", 20 + k) end

local function dht(node)
  local code, text, doc = H.get(node, "/v1/dht")
  assert.are.equal(200, code, text)
  return doc
end

local function send_udp(hostname, port, datagrams)
  local u = uv.new_udp()
  for _, d in ipairs(datagrams) do u:send(d, hostname, port, function() end) end
  uv.run("nowait")
  uv.sleep(50)
  uv.run("nowait")
  u:close()
  uv.run("nowait")
end

describe("the DHT", function()
  local nodes = {}
  setup(function()
    -- node 1 is every other node's bootnode; the overlay dials nobody
    -- (no seeds; --max-outbound 1 keeps the dialer, and so the DHT, active)
    nodes[1] = H.start({ "--listen", host(1) .. ":0", "--allow-private", "--max-outbound", "1", "--min-outbound", "1" })
    local boot = nodes[1].node_id .. "@" .. nodes[1].p2p
    for k = 2, N do
      nodes[k] = H.start({ "--listen", host(k) .. ":0", "--allow-private", "--max-outbound", "1", "--min-outbound", "1",
        "--bootnodes", boot }, nil, { log_level = "info" })
    end
  end)
  teardown(function()
    for _, n in pairs(nodes) do H.cleanup(n) end
  end)

  it("fills every routing table from one bootnode", function()
    local ok = H.wait_until(function()
      for k = 1, N do
        if dht(nodes[k]).table.nodes < 8 then return false end
      end
      return true
    end, 40)
    local sizes = {}
    for k = 1, N do sizes[#sizes + 1] = dht(nodes[k]).table.nodes end
    assert.is_true(ok, "table sizes: " .. table.concat(sizes, " "))
    local d = dht(nodes[5])
    assert.is_true(d.handshakes.ok > 0)
    assert.are.equal(d.node_id, nodes[5].node_id)
    assert.is_truthy(d.observed and d.observed:find(host(5), 1, true), tostring(d.observed))
  end)

  it("lookups converge: the target first, found, in a few hops", function()
    for _, pair in ipairs({ { 3, 27 }, { 17, 2 }, { 30, 11 } }) do
      local asker, target = nodes[pair[1]], nodes[pair[2]]
      local code, text, doc = H.get(asker, "/v1/dht/lookup?target=" .. target.node_id)
      assert.are.equal(200, code, text)
      assert.is_true(doc.found, text)
      assert.are.equal(target.node_id, doc.target)
      assert.are.equal(target.node_id, doc.results[1].node_id, text)
      assert.are.equal(0, doc.results[1].distance)
      assert.are.equal(target.p2p, doc.results[1].discovery)
      assert.is_true(#doc.results >= 8, text)
      assert.is_true(doc.hops <= 4, text)
      -- the closest come first
      for i = 2, #doc.results do
        assert.is_true(doc.results[i].distance >= doc.results[i - 1].distance, text)
      end
    end
    -- a malformed target is refused before anything is sent
    local code = H.get(nodes[3], "/v1/dht/lookup?target=xyz")
    assert.are.equal(400, code)
    assert.is_true(H.metric(nodes[3], 'peerd_dht_lookups_total{result="found"}') >= 1)
  end)

  it("peerctl dht, lookup and node print what the API says", function()
    local CTL = os.getenv("PEERD_CTL") or "build/peerctl"
    local function ctl(node, ...)
      local args = { H.sh_quote(CTL), "--api", "127.0.0.1:" .. node.port }
      for _, a in ipairs({ ... }) do args[#args + 1] = H.sh_quote(a) end
      return H.run_cmd(table.concat(args, " "))
    end
    local out, rc = ctl(nodes[4], "dht")
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("node " .. nodes[4].node_id, 1, true), out)
    assert.is_truthy(out:find("DIST", 1, true), out)
    out, rc = ctl(nodes[4], "lookup", nodes[19].node_id)
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find(nodes[19].node_id .. ": found", 1, true), out)
    assert.is_truthy(out:find(nodes[19].p2p, 1, true), out)
    out, rc = ctl(nodes[4], "node", nodes[19].node_id)
    assert.are.equal(0, rc, out)
    assert.is_truthy(out:find("discovery  " .. nodes[19].p2p, 1, true), out)
    out, rc = ctl(nodes[4], "lookup", "nothex")
    assert.are.equal(2, rc, out)
  end)

  it("GET /v1/nodes/ID finds a node the asker has no overlay peer to hear of", function()
    -- The asker feeds nothing from the DHT into its book (dht.lua feed
    -- says no) and takes no inbound peers: its book stays empty, it dials
    -- nobody, nobody dials it. It has no PEX neighbour at all.
    local pol = H.tmpdir()
    for _, f in ipairs({ "select", "score", "evict", "reputation", "pex" }) do
      H.write_file(pol .. "/" .. f .. ".lua", H.read_file("policies/" .. f .. ".lua"))
    end
    H.write_file(pol .. "/dht.lua", [[
local M = {}
function M.admit(node, bucket) return node.subnet_in_bucket < 2 or not node.routable end
function M.feed(node, from) return false end
return M
]])
    local asker = H.start({ "--listen", host(40) .. ":0", "--allow-private", "--max-outbound", "1",
      "--min-outbound", "1", "--max-inbound", "0", "--policies", pol,
      "--bootnodes", nodes[1].node_id .. "@" .. nodes[1].p2p })
    finally(function() H.cleanup(asker); H.rmdir(pol) end)
    local target = nodes[23]
    assert.is_true(H.wait_until(function() return dht(asker).table.nodes >= 4 end, 20))
    local code, text, doc = H.get(asker, "/v1/nodes/" .. target.node_id)
    assert.are.equal(200, code, text)
    -- from the DHT: its table (a lookup fills it) or the lookup itself
    assert.is_truthy(doc.source == "dht_lookup" or doc.source == "dht_table", text)
    assert.are.equal(target.node_id, doc.node_id)
    assert.are.equal(target.p2p, doc.discovery)
    assert.is_true(doc.lookup.found)
    -- no overlay peer, nothing in the book: the record came from the DHT alone
    local _, _, peers = H.get(asker, "/v1/peers")
    assert.are.equal(0, #peers.peers)
    local _, _, book = H.get(asker, "/v1/book")
    assert.are.equal(0, book.total or #book.entries)
    -- an id nobody has: 404 after the lookup
    code, text = H.get(asker, "/v1/nodes/" .. string.rep("ab", 20))
    assert.are.equal(404, code, text)
    code = H.get(asker, "/v1/nodes/123")
    assert.are.equal(400, code)
  end)

  it("refuses hostile datagrams with counted reasons and keeps serving", function()
    local victim = nodes[9]
    local grams = {}
    grams[#grams + 1] = string.rep("x", 100)                                  -- dht_magic
    grams[#grams + 1] = "pdht\2\0" .. string.rep("\0", 60)                    -- dht_version
    grams[#grams + 1] = "pdht\1\9" .. string.rep("\0", 60)                    -- dht_kind
    grams[#grams + 1] = "pdht\1\0" .. string.rep("\0", 20)                    -- dht_malformed (short)
    grams[#grams + 1] = "pdht\1\0" .. string.rep("\1", 2000)                  -- dht_malformed (long)
    grams[#grams + 1] = "pdht\1\1" .. string.rep("\7", 88)                    -- unsolicited WHOAREYOU
    for _ = 1, 50 do grams[#grams + 1] = "pdht\1\0" .. string.rep("\3", 80) end -- challenged, throttled
    send_udp(host(9), victim.p2p_port, grams)
    assert.is_true(H.wait_until(function()
      return (H.metric(victim, 'peerd_dht_rejected_total{reason="dht_kind"}') or 0) >= 1
    end, 5))
    for _, r in ipairs({ "dht_magic", "dht_version", "dht_kind", "dht_malformed", "dht_unsolicited",
      "dht_throttled" }) do
      assert.is_true(H.metric(victim, 'peerd_dht_rejected_total{reason="' .. r .. '"}') >= 1, r)
    end
    -- one WHOAREYOU to the unverified sender, however many it sent
    local d = dht(victim)
    assert.is_truthy(d.rejected.dht_throttled >= 40)
    -- still working: a lookup from the victim finds a node
    local code, text, doc = H.get(victim, "/v1/dht/lookup?target=" .. nodes[14].node_id)
    assert.are.equal(200, code, text)
    assert.is_true(doc.found, text)
    if os.execute("command -v promtool >/dev/null") then
      local out, rc = H.run_cmd("curl -s http://127.0.0.1:" .. victim.port .. "/metrics | promtool check metrics")
      assert.are.equal(0, rc, out)
    end
  end)

  it("saves its table in dht.json and contacts those nodes after a restart", function()
    local n = nodes[12]
    H.stop(n)
    local doc = H.cjson.decode(H.read_file(n.data .. "/dht.json"))
    assert.are.equal("peerd-dht", doc.format)
    assert.is_true(#doc.nodes >= 8)
    -- restart without --bootnodes: the saved table is the only way in
    local again = H.start({ "--listen", host(12) .. ":0", "--allow-private", "--max-outbound", "1",
      "--min-outbound", "1" }, n.dir)
    nodes[12] = again
    assert.is_true(H.wait_until(function()
      return H.log_of(again):find('msg="DHT table loaded', 1, true) ~= nil
    end, 5), H.log_of(again))
    assert.is_true(H.wait_until(function() return dht(again).table.nodes >= 4 end, 20))
    -- a corrupt file is moved aside, the daemon starts without it
    H.stop(again)
    H.write_file(again.data .. "/dht.json", "{not json")
    local third = H.start({ "--listen", host(12) .. ":0", "--allow-private", "--max-outbound", "1",
      "--min-outbound", "1" }, n.dir)
    nodes[12] = third
    assert.is_true(H.wait_until(function()
      return H.log_of(third):find("DHT table file malformed", 1, true) ~= nil
    end, 5), H.log_of(third))
  end)
end)
