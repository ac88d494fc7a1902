-- luacheck: std +busted
-- The node's record through the real binary: --service/--attr/--external
-- and GET/PUT /v1/self, a CometBFT node_key.json lent with --node-key (its
-- id checked against one computed by coreutils from the same key), and
-- "dialling off means off": --p2p off and --max-outbound 0 never open a
-- connection of their own, checked by stand-in nodes that count every
-- connection they receive (and a control daemon that does dial).
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local function sleep_loop(secs) H.wait_until(function() return false end, secs) end

describe("node record", function()
  it("--service, --attr and PUT /v1/self", function()
    local node = H.start({ "--listen", "127.79.0.1:0", "--service", "p2p=26656",
      "--service", "grpc=127.79.0.2:9090", "--attr", "chain=test-1" })
    local code, text, doc = H.get(node, "/v1/self")
    assert.are.equal(200, code, text)
    assert.are.equal(node.node_id, doc.node_id)
    assert.are.equal(node.p2p, doc.discovery)
    assert.are.equal("127.79.0.1:26656", doc.services.p2p)
    assert.are.equal("127.79.0.2:9090", doc.services.grpc)
    assert.are.equal("test-1", doc.attrs.chain)
    assert.are.equal("listen", doc.announced.source)
    local seq = doc.seq
    code, text, doc = H.http(node, "PUT", "/v1/self", '{"services":{"p2p":26700},"attrs":{"roles":"validator"}}')
    assert.are.equal(200, code, text)
    assert.are.equal("127.79.0.1:26700", doc.services.p2p)
    assert.is_nil(doc.services.grpc)
    assert.are.equal("validator", doc.attrs.roles)
    assert.is_true(doc.seq > seq)
    code, text = H.http(node, "PUT", "/v1/self", '{"services":{"p2p":"0.0.0.0:1"}}')
    assert.are.equal(400, code, text)
    assert.matches("p2p", text)
    code, text, doc = H.get(node, "/v1/self")
    assert.are.equal(200, code, text)
    assert.are.equal("127.79.0.1:26700", doc.services.p2p, text)
    H.cleanup(node)
  end)

  it("learns its address from what 3 outbound peers see (wildcard --listen)", function()
    local peers = {}
    for k = 1, 3 do
      peers[k] = H.start({ "--listen", string.format("127.7%d.0.1:0", k), "--allow-private" })
    end
    local list = {}
    for k = 1, 3 do list[k] = peers[k].node_id .. "@" .. peers[k].p2p end
    -- listens on every address; dials its three persistent peers from 127.0.0.1
    local node = H.start({ "--listen", "0.0.0.0:0", "--allow-private", "--service", "p2p=26656",
      "--persistent-peers", table.concat(list, ",") })
    local doc
    local ok = H.wait_until(function()
      local _, _, d = H.get(node, "/v1/self")
      doc = d
      return doc and doc.announced.source == "observed"
    end, 20)
    assert.is_true(ok, "never learnt its address:\n" .. H.log_of(node))
    assert.are.equal("127.0.0.1", doc.announced.ip)
    assert.are.equal("127.0.0.1:26656", doc.services.p2p)
    assert.are.equal("127.0.0.1:" .. node.p2p_port, doc.discovery)
    assert.is_true(doc.changes >= 1) -- re-signed when the address was learnt
    -- the start said it did not know yet
    assert.truthy(H.log_of(node):find('msg="node record" seq=%d+ discovery=none services=0 announced=unknown'))
    H.cleanup(node)
    for k = 1, 3 do H.cleanup(peers[k]) end
  end)

  it("refuses bad record flags with a reason", function()
    for _, case in ipairs({
      { "--service", "P2P=1", "service name" },
      { "--service", "p2p", "NAME=" },
      { "--service", "p2p=0.0.0.0:5", "usable IP" },
      { "--attr", "k", "KEY=VALUE" },
      { "--external", "0.0.0.0", "--external" },
      { "--p2p", "maybe", "on or off" },
    }) do
      local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --data-dir /nonexistent/x " .. case[1] .. " "
        .. H.sh_quote(case[2]))
      assert.are.equal(2, rc, out)
      assert.matches(case[3], out, 1, true)
    end
  end)

  it("takes the node's own CometBFT node_key.json", function()
    local dir = H.tmpdir()
    local value = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
    H.write_file(dir .. "/node_key.json", '{"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"'
      .. value .. '"}}\n')
    -- The id, computed apart from peerd: SHA-256 of the public key (the last
    -- 32 of the 64 key bytes), first 20 bytes in hex.
    local want = H.run_cmd("printf %s " .. H.sh_quote(value) .. " | base64 -d | tail -c 32 | sha256sum | cut -c1-40")
    want = want:gsub("%s+$", "")
    assert.are.equal(40, #want)
    local node = H.start({ "--node-key", dir .. "/node_key.json" }, dir)
    assert.are.equal(want, node.node_id)
    assert.are.equal(want, H.status_of(node).node_id)
    local _, _, doc = H.get(node, "/v1/self")
    assert.are.equal(want, doc.node_id)
    assert.is_false(H.exists(node.data .. "/node_key")) -- lent, not copied
    H.cleanup(node)
    -- a damaged key file: refuses to start, says why
    H.write_file(dir .. "/bad.json", '{"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"AAAA"}}')
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --api 127.0.0.1:0 --p2p off --data-dir "
      .. H.sh_quote(dir .. "/d2") .. " --node-key " .. H.sh_quote(dir .. "/bad.json"))
    assert.are.equal(1, rc, out)
    assert.matches("base64 of 64 bytes", out, 1, true)
    H.rmdir(dir)
  end)
end)

describe("the node's addresses", function()
  -- The issue's first report: a stand-in node (another protocol) on
  -- 127.78.0.1 was dialled by peerd with its own protocol, banned for
  -- bad_magic and dropped from the dial list.
  it("are never dialled by peerd, even with dialling on", function()
    local node_port = H.standin("127.78.0.1", 0)
    local node = H.start({ "--allow-private", "--max-outbound", "8", "--listen", "127.78.9.2:0" })
    local code, text = H.post(node, "/v1/book", { addrs = { node_port.addr }, source = "127.78.0.2" })
    assert.are.equal(200, code, text)
    H.wait_until(function() return false end, 5)
    assert.are.equal(0, node_port.conns)
    local _, _, doc = H.get(node, "/v1/dial?n=8")
    assert.are.equal(1, #doc.peers)
    assert.are.equal(node_port.addr, doc.peers[1].addr)
    assert.is_nil(H.log_of(node):find("misbehaviour", 1, true))
    H.cleanup(node)
    node_port.close()
  end)

  it("--p2p off sidecar loop: only an outbound good reaches tried; nothing is dialled", function()
    local a = H.standin("127.78.4.1", 0)
    local b = H.standin("127.78.5.1", 0)
    local node = H.start({ "--p2p", "off", "--allow-private" })
    -- a and b share a /16, so they share a new-table bucket, and one time in
    -- 64 they share its slot too (the book then keeps a): another source
    -- puts b in another bucket
    local code, text, res0 = H.post(node, "/v1/book", { addrs = { a.addr, b.addr } })
    assert.are.equal(200, code, text)
    local have = res0.added + res0.known
    for i = 1, 8 do
      if have >= 2 then break end
      local _, _, r = H.post(node, "/v1/book", { addrs = { b.addr }, source = "127.79." .. i .. ".1" })
      have = 1 + r.added + r.known
    end
    assert.are.equal(2, have, text)
    -- both come back (the selection is Bitcoin's bucket walk: random, so
    -- ask until each was seen, a bounded number of times)
    local seen = {}
    for _ = 1, 50 do
      local _, _, doc = H.get(node, "/v1/dial?n=8")
      for _, p in ipairs(doc.peers) do seen[p.addr] = true end
      if seen[a.addr] and seen[b.addr] then break end
    end
    assert.is_true(seen[a.addr] and seen[b.addr])
    for _, ev in ipairs({ "attempt", "connected", "good" }) do
      code, text = H.post(node, "/v1/events", { addr = a.addr, event = ev, direction = "outbound" })
      assert.are.equal(200, code, text)
    end
    local _, _, res = H.post(node, "/v1/events", { addr = b.addr, event = "good", direction = "inbound" })
    assert.are.equal("inbound", res.result)
    local _, _, ea = H.get(node, "/v1/book/" .. a.addr)
    local _, _, eb = H.get(node, "/v1/book/" .. b.addr)
    assert.are.equal("tried", ea.table)
    assert.are.equal("new", eb.table)
    H.wait_until(function() return false end, 2)
    assert.are.equal(0, a.conns + b.conns)
    H.cleanup(node)
    a.close()
    b.close()
  end)
end)

describe("dialling off", function()
  it("--p2p off: no listener, no dials, the API answers", function()
    local s1 = H.standin("127.78.0.1", 0)
    local node = H.start({ "--p2p", "off", "--allow-private", "--external", "127.78.0.1",
      "--service", "p2p=26656" })
    local code, text, doc = H.get(node, "/v1/self")
    assert.are.equal(200, code, text)
    assert.is_true(doc.discovery == H.cjson.null)
    assert.are.equal("127.78.0.1:26656", doc.services.p2p)
    code, text = H.post(node, "/v1/book", { addrs = { s1.addr } })
    assert.are.equal(200, code, text)
    code, text = H.get(node, "/v1/dial?n=8")
    assert.are.equal(200, code, text)
    sleep_loop(3)
    assert.are.equal(0, s1.conns)
    assert.is_nil(H.log_of(node):find("p2p listening", 1, true))
    code = H.get(node, "/metrics")
    assert.are.equal(200, code)
    H.cleanup(node)
    s1.close()
  end)

  it("--max-outbound 0: not a saved book, seeds, persistent peers or an inbound close", function()
    local book_peer = H.standin("127.78.1.1", 0)
    local seed = H.standin("127.78.2.1", 0)
    local persistent = H.standin("127.78.3.1", 0)
    local dir = H.tmpdir()
    -- a first run fills the book with the stand-in's address, saved at exit;
    -- the node's addresses are never dialled anyway, so the saved entry is
    -- made a peerd's (a discovery endpoint: the "service" column dropped)
    local node = H.start({ "--allow-private" }, dir)
    local code, text = H.post(node, "/v1/book", { addrs = { book_peer.addr } })
    assert.are.equal(200, code, text)
    H.cleanup(node)
    local path = node.data .. "/addrbook.json"
    local saved = H.read_file(path)
    local n1, n2
    saved, n1 = saved:gsub(',"service"', "")
    saved, n2 = saved:gsub(' 1"', '"')
    assert.are.equal(1, n1)
    assert.are.equal(1, n2)
    H.write_file(path, saved)
    node = H.start({ "--allow-private", "--max-outbound", "0", "--seeds", seed.addr,
      "--persistent-peers", persistent.addr, "--listen", "127.78.9.1:0" }, dir)
    sleep_loop(2)
    -- an inbound peer connects and leaves at once
    local c = H.uv.new_tcp()
    local connected = false
    c:connect(node.p2p_host, node.p2p_port, function(err)
      connected = not err
      c:close()
    end)
    assert.is_true(H.wait_until(function() return connected end, 5))
    sleep_loop(3)
    assert.are.equal(0, book_peer.conns)
    assert.are.equal(0, seed.conns)
    assert.are.equal(0, persistent.conns)
    H.cleanup(node)
    -- control: the same book with dialling on reaches the stand-in
    node = H.start({ "--allow-private", "--max-outbound", "8", "--listen", "127.78.9.1:0" }, dir)
    assert.is_true(H.wait_until(function() return book_peer.conns > 0 end, 15),
      "the control daemon never dialled its book:\n" .. H.log_of(node))
    H.cleanup(node)
    H.rmdir(dir)
    book_peer.close()
    seed.close()
    persistent.close()
  end)
end)
