-- luacheck: std +busted
-- What an operator relies on (issue 13, first slices): one peerd per data
-- directory (a second one exits at once, naming the first), and a ban
-- disconnects the peers already connected from inside it at once.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local function inbound(node)
  local code, _, doc = H.get(node, "/v1/peers")
  if code ~= 200 or not doc then return -1 end
  local n = 0
  for _, p in ipairs(doc.peers) do
    if p.direction == "inbound" then n = n + 1 end
  end
  return n
end

describe("operator", function()
  it("refuses a second peerd on the same data directory, naming the first", function()
    local a = H.start({ "--p2p", "off" })
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --api 127.0.0.1:0 --p2p off --data-dir "
      .. H.sh_quote(a.data))
    assert.are.equal(1, rc, out)
    assert.matches("data directory is in use by another peerd", out, 1, true)
    assert.matches("pid=" .. a.proc.pid, out, 1, true)
    assert.are.equal(a.proc.pid .. "\n", H.read_file(a.data .. "/lock"))
    -- the first one is unharmed; after it stops, the directory is free
    assert.are.equal(200, (H.get(a, "/health")))
    H.stop(a)
    local b = H.start({ "--p2p", "off" }, a.dir)
    assert.are.equal(200, (H.get(b, "/health")))
    H.cleanup(b)
    H.rmdir(a.dir)
  end)

  it("disconnects the connected peers inside a new ban at once", function()
    local a = H.start({ "--listen", "127.93.0.1:0", "--allow-private" })
    local b = H.start({ "--listen", "127.94.0.1:0", "--allow-private",
      "--persistent-peers", a.node_id .. "@" .. a.p2p })
    assert.is_true(H.wait_until(function() return inbound(a) == 1 end, 15), "b never connected")
    local code, text = H.post(a, "/v1/bans", { target = "127.94.0.0/16", duration = 3600, reason = "test" })
    assert.are.equal(200, code, text)
    -- the API answered after closing it: no tick to wait for
    assert.are.equal(0, inbound(a))
    -- and b's redials are refused while the ban lasts
    H.wait_until(function() return false end, 3)
    assert.are.equal(0, inbound(a))
    H.cleanup(b)
    H.cleanup(a)
  end)
end)
