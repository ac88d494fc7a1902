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
  it("README's 'Using it' calls all succeed as written", function()
    local node = H.start({ "--p2p", "off", "--external", "127.60.0.1", "--service", "p2p=26656" })
    local readme = H.read_file((os.getenv("PEERD_SOURCE_DIR") or ".") .. "/README.md")
    local n = 0
    for line in readme:gmatch("\n    (curl [^\n]+)") do
      local cmd = line:gsub("%s+#.*$", ""):gsub("127%.0%.0%.1:7412", "127.0.0.1:" .. node.port)
      local out, rc = H.run_cmd(cmd .. " -o /dev/null -w '%{http_code}'")
      assert.are.equal(0, rc, cmd .. "\n" .. out)
      local code = tonumber(out:match("(%d%d%d)%s*$"))
      assert.is_true(code and code < 400, cmd .. " -> " .. out)
      n = n + 1
    end
    assert.are.equal(8, n)
    H.cleanup(node)
  end)

  it("refuses DNS-rebinding Host, cross-site Origin, non-JSON bodies; wants the token off loopback", function()
    local node = H.start({ "--p2p", "off" })
    local base = "curl -s -o /dev/null -w '%{http_code}' "
    local url = "http://127.0.0.1:" .. node.port
    local function status(args) return tonumber((H.run_cmd(base .. args))) end
    assert.are.equal(200, status(url .. "/health"))
    assert.are.equal(403, status("-H 'Host: evil.example' " .. url .. "/v1/status"))
    assert.are.equal(403, status("-H 'Origin: http://evil.example' --json '{\"target\":\"1.2.3.0/24\"}' "
      .. url .. "/v1/bans"))
    assert.are.equal(415, status("-H 'Content-Type: text/plain' -d '{\"target\":\"1.2.3.0/24\"}' "
      .. url .. "/v1/bans"))
    local _, _, doc = H.get(node, "/v1/bans")
    assert.are.equal(0, #doc.bans)
    H.cleanup(node)
    -- on a wildcard: a cookie, 0600, and the token it holds is required
    local dir = H.tmpdir()
    local log = dir .. "/log"
    local p = H.spawn({ "--api", "0.0.0.0:0", "--p2p", "off", "--data-dir", dir .. "/data" }, log)
    local port
    H.wait_until(function()
      port = (H.read_file(log) or ""):match('msg="api listening" addr=0%.0%.0%.0:(%d+)')
      return port ~= nil and (H.read_file(log) or ""):find("requires the bearer token", 1, true) ~= nil
    end, 10)
    assert.truthy(port, H.read_file(log))
    url = "http://127.0.0.1:" .. port
    local token = (H.read_file(dir .. "/data/api_cookie") or ""):gsub("%s+$", "")
    assert.are.equal(64, #token)
    local mode = H.run_cmd("stat -c %a " .. H.sh_quote(dir .. "/data/api_cookie")):gsub("%s+$", "")
    assert.are.equal("600", mode)
    assert.are.equal(200, status(url .. "/health")) -- open, for health checks
    assert.are.equal(401, status(url .. "/v1/status"))
    assert.are.equal(401, status("-H 'Authorization: Bearer " .. string.rep("0", 64) .. "' " .. url .. "/v1/status"))
    assert.are.equal(200, status("-H 'Authorization: Bearer " .. token .. "' " .. url .. "/v1/status"))
    p.handle:kill("sigterm")
    H.wait_until(function() return p.exited end, 10)
    assert.are.equal(0, p.code)
    H.rmdir(dir)
  end)

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

  it("says in its log when outbound peers stay below the minimum, and when they are back", function()
    local b_listen = "127.96.0.1:47411"
    local a = H.start({ "--listen", "127.97.0.1:0", "--allow-private", "--min-outbound", "1",
      "--below-min-warn", "1", "--persistent-peers", b_listen }, nil, { log_level = "info" })
    assert.is_true(H.wait_until(function()
      return H.log_of(a):find('msg="below the minimum of outbound peers" outbound=0 min_outbound=1', 1, true) ~= nil
    end, 10), H.log_of(a))
    assert.are.equal(1, H.metric(a, "peerd_outbound_below_minimum"))
    assert.is_true(H.metric(a, "peerd_bootstraps_total") >= 0)
    assert.is_true(H.metric(a, "process_resident_memory_bytes") > 1e6)
    assert.is_true(H.metric(a, "process_open_fds") > 3)
    assert.is_true(H.metric(a, "process_start_time_seconds") > 1.7e9)
    local b = H.start({ "--listen", b_listen, "--allow-private" })
    assert.is_true(H.wait_until(function()
      return H.log_of(a):find('msg="outbound peers back at the minimum" outbound=1 min_outbound=1', 1, true) ~= nil
    end, 30), H.log_of(a))
    assert.are.equal(0, H.metric(a, "peerd_outbound_below_minimum"))
    H.cleanup(b)
    -- b gone: the close is an audit line (the disconnected event) with its reason
    assert.is_true(H.wait_until(function()
      return H.log_of(a):find('msg="peer disconnected" addr=127.96.0.1:47411 node_id=%x+ ' ..
        'direction=outbound conn=%d+ reason=') ~= nil
    end, 10), H.log_of(a))
    H.cleanup(a)
  end)

  it("logs one JSON object per line with --log-format json, timestamps in ms", function()
    local dir = H.tmpdir()
    local log = dir .. "/log"
    local p = H.spawn({ "--api", "127.0.0.1:0", "--p2p", "off", "--data-dir", dir .. "/data",
      "--log-format", "json" }, log)
    assert.is_true(H.wait_until(function()
      return (H.read_file(log) or ""):find('"msg":"overlay off', 1, true) ~= nil
    end, 10), H.read_file(log))
    p.handle:kill("sigterm")
    H.wait_until(function() return p.exited end, 10)
    assert.are.equal(0, p.code)
    local n, api = 0, nil
    for line in (H.read_file(log) or ""):gmatch("[^\n]+") do
      local doc = H.cjson.decode(line) -- every line is JSON
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", doc.ts)
      assert.is_string(doc.level)
      assert.is_string(doc.msg)
      if doc.msg == "api listening" then api = doc.addr end
      n = n + 1
    end
    assert.is_true(n >= 5)
    assert.matches("^127%.0%.0%.1:%d+$", api)
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --log-format xml")
    assert.are.equal(2, rc, out)
    H.rmdir(dir)
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
