-- luacheck: std +busted
-- peerctl against real daemons on loopback (issue 13, "peerctl" and the unix
-- socket of "API access"): every command, human and --json, the exit codes
-- scripts rely on (0 ok, 1 peerd answered an error, 2 usage, 3 unreachable),
-- connect and disconnect between two daemons, protection that holds against
-- a full inbound table, explain, ban --for, the token found through
-- --data-dir, and the API on a unix socket (mode 0660, refused while live,
-- a stale one replaced, removed on exit).
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local CTL = os.getenv("PEERD_CTL") or "build/peerctl"
local SRC = os.getenv("PEERD_SOURCE_DIR") or "."
local _ -- values thrown away

-- Run peerctl; returns exit code, stdout, stderr.
local function ctl(node, args, opts)
  opts = opts or {}
  local cmd = { H.sh_quote(CTL), "--api", H.sh_quote(opts.api or ("127.0.0.1:" .. node.port)) }
  for _, a in ipairs(opts.global or {}) do cmd[#cmd + 1] = H.sh_quote(a) end
  for _, a in ipairs(args) do cmd[#cmd + 1] = H.sh_quote(a) end
  local errf = os.tmpname()
  local out, code = H.run_cmd(table.concat(cmd, " ") .. " 2>" .. H.sh_quote(errf), true)
  local err = H.read_file(errf) or ""
  os.remove(errf)
  return code, out, err
end

-- peerctl --json ARGS: exit 0 and the decoded answer.
local function ctl_json(node, args, opts)
  local o = { api = opts and opts.api, global = { "--json" } }
  for _, g in ipairs(opts and opts.global or {}) do o.global[#o.global + 1] = g end
  local code, out, err = ctl(node, args, o)
  assert.are.equal(0, code, table.concat(args, " ") .. ": " .. out .. err)
  local ok, doc = pcall(H.cjson.decode, out)
  assert.is_true(ok, out)
  return doc
end

local function peer_of(node, pred)
  local doc = ctl_json(node, { "peers" })
  for _, p in ipairs(doc.peers) do
    if pred(p) then return p end
  end
  return nil
end

describe("peerctl", function()
  local a, b, dir
  setup(function()
    dir = H.tmpdir()
    -- a: dials (loopback only), API on TCP and a unix socket; b: listens
    a = H.start({ "--allow-private", "--max-outbound", "2", "--min-outbound", "1",
      "--api", "unix:" .. dir .. "/a.sock" }, dir)
    b = H.start({ "--allow-private", "--listen", "127.0.0.2:0", "--max-inbound", "1" })
  end)
  teardown(function()
    H.cleanup(a)
    H.cleanup(b)
    H.rmdir(dir)
  end)

  it("answers every read command, human and --json", function()
    local code, out = ctl(a, { "status" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("node " .. a.node_id:sub(1, 12), 1, true), out)
    assert.truthy(out:find("book        0 new, 0 tried", 1, true), out)
    local st = ctl_json(a, { "status" })
    assert.are.equal(a.node_id, st.node_id)
    code, out = ctl(a, { "peers" })
    assert.are.equal(0, code)
    assert.truthy(out:find("no peers connected", 1, true), out)
    assert.are.equal(0, #ctl_json(a, { "peers" }).peers)
    code, out = ctl(a, { "bans" })
    assert.are.equal(0, code)
    assert.truthy(out:find("no bans", 1, true), out)
    code, out = ctl(a, { "book" })
    assert.are.equal(0, code)
    assert.truthy(out:find("no entries match", 1, true), out)
    code, out = ctl(a, { "metrics" })
    assert.are.equal(0, code)
    assert.truthy(out:find("\npeerd_book_entries", 1, true) or out:find("^# HELP"), out:sub(1, 200))
    code, out = ctl(a, { "policy", "status" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("generation 1", 1, true), out)
    assert.are.equal(1, ctl_json(a, { "policy", "status" }).generation)
    code, out = ctl(a, { "policy", "reload" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("reloaded: generation 2", 1, true), out)
    code, out = ctl(a, { "dial", "-n", "2" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("selected by", 1, true), out)
    assert.are.same({}, ctl_json(a, { "dial", "-n", "2" }).peers)
    code, out = ctl(a, { "save" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("saved:", 1, true), out)
    code, out = ctl(a, { "protect" })
    assert.are.equal(0, code)
    assert.truthy(out:find("nothing protected", 1, true), out)
  end)

  it("exits 2 on usage errors, 3 when peerd is unreachable, 1 with peerd's message", function()
    for _, args in ipairs({ { "bogus" }, {}, { "ban" }, { "ban", "1.2.3.4", "--for", "10x" },
      { "book", "--limit", "x" }, { "explain" }, { "policy", "frob" }, { "--timeout", "0", "status" },
      { "status", "extra" } }) do
      local code, _, err = ctl(a, args)
      assert.are.equal(2, code, table.concat(args, " ") .. ": " .. err)
      assert.truthy(err:find("peerctl", 1, true), err)
    end
    local code, _, err = ctl(a, { "status" }, { api = "127.0.0.1:1" })
    assert.are.equal(3, code)
    assert.truthy(err:find("cannot reach peerd at 127.0.0.1:1", 1, true), err)
    code, _, err = ctl(a, { "status" }, { api = "unix:" .. dir .. "/nothing.sock" })
    assert.are.equal(3, code, err)
    code, _, err = ctl(a, { "unban", "9.9.9.9" })
    assert.are.equal(1, code)
    assert.truthy(err:find("peerd answered 404: not banned", 1, true), err)
    local out
    code, out, err = ctl(a, { "--json", "explain", "nonsense" })
    assert.are.equal(1, code)
    assert.truthy(err:find("400: bad target", 1, true), err)
    assert.truthy(H.cjson.decode(out).error, out) -- the API's JSON, as it came
    code, _, err = ctl(a, { "book", "--source", "x" })
    assert.are.equal(1, code)
    assert.truthy(err:find("source must be an IP address", 1, true), err)
  end)

  it("bans for a duration, lists and lifts the ban", function()
    local code, out = ctl(a, { "ban", "10.9.0.0/16", "--for", "10m", "--reason", "lab test" })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("banned 10.9.0.0/16 until in 10m (lab test)", 1, true), out)
    local bans = ctl_json(a, { "bans" }).bans
    assert.are.equal(1, #bans)
    assert.are.equal(600, bans[1]["until"] - bans[1].created)
    assert.are.equal("lab test", bans[1].reason)
    code, out = ctl(a, { "bans" })
    assert.are.equal(0, code)
    assert.truthy(out:find("10.9.0.0/16%s+%S+[%w ]-%s+in %S+%s+lab test"), out) -- created, until (relative)
    local doc = ctl_json(a, { "ban", "10.8.0.1", "--for", "permanent" })
    assert.are.equal(H.cjson.null, doc["until"])
    code, out = ctl(a, { "unban", "10.9.0.0/16" })
    assert.are.equal(0, code)
    assert.truthy(out:find("unbanned 10.9.0.0/16", 1, true), out)
    assert.are.equal(0, (ctl(a, { "unban", "10.8.0.1" })))
    assert.are.equal(0, #ctl_json(a, { "bans" }).bans)
  end)

  it("connects, explains, disconnects; a protected peer passes a full inbound table", function()
    local err
    local code, out = ctl(a, { "connect", b.p2p })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("dialling " .. b.p2p, 1, true), out)
    assert.is_true(H.wait_until(function()
      local p = peer_of(a, function(p) return p.id == b.node_id end)
      return p ~= nil and p.direction == "outbound"
    end, 10), H.log_of(a))
    code, _, err = ctl(a, { "connect", b.p2p })
    assert.are.equal(1, code)
    assert.truthy(err:find("409: already connected", 1, true), err)
    code, out = ctl(a, { "peers" })
    assert.are.equal(0, code)
    assert.truthy(out:find(b.node_id:sub(1, 12) .. "%s+" .. b.p2p:gsub("%.", "%%.") .. "%s+outbound"), out)

    -- explain: where b sits in a's book, and why a would not dial it now
    local ex = ctl_json(a, { "explain", b.p2p })
    assert.are.equal("tried", ex.table)
    assert.are.equal(b.node_id, ex.id)
    assert.is_number(ex.bucket)
    assert.is_number(ex.position)
    assert.is_number(ex.chance)
    assert.is_true(ex.connection.connected)
    assert.is_false(ex.selectable)
    assert.truthy(table.concat(ex.reasons, "\n"):find("already connected (outbound)", 1, true))
    code, out = ctl(a, { "explain", b.node_id })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("table        tried, bucket", 1, true), out)
    assert.truthy(out:find("dial now     no", 1, true), out)
    code, out = ctl(a, { "book", "--table", "tried" })
    assert.are.equal(0, code)
    assert.truthy(out:find(b.p2p, 1, true), out)
    assert.are.equal(1, ctl_json(a, { "book", "--source", b.p2p_host }).total)
    assert.are.equal(0, ctl_json(a, { "book", "--banned" }).total)

    -- b's inbound table (max 1) is full: a third node is refused, until protected
    local c = H.start({ "--allow-private", "--listen", "127.0.0.3:0", "--max-outbound", "1", "--min-outbound", "1" })
    assert.are.equal(0, (ctl(c, { "connect", b.p2p })))
    assert.is_true(H.wait_until(function()
      return H.log_of(b):find('msg="inbound peer refused" peer=127.0.0.3:%d+ reason=inbound_full') ~= nil
    end, 10), H.log_of(b))
    -- by node id: the full table lets it through to the handshake, which proves the id
    code, out = ctl(b, { "protect", c.node_id })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("protected " .. c.node_id, 1, true), out)
    assert.is_true(H.wait_until(function()
      -- the refused dial may still be ending on c's side: retry until it is dialled
      ctl(c, { "connect", b.p2p })
      local p = peer_of(b, function(p) return p.id == c.node_id end)
      return p ~= nil and p.protected == true and p.direction == "inbound"
    end, 10), H.log_of(b))
    assert.are.equal(2, #ctl_json(b, { "peers" }).peers) -- past --max-inbound 1
    code, out = ctl(b, { "peers" })
    assert.are.equal(0, code)
    assert.truthy(out:find("127.0.0.3:%d+%s+inbound.-yes"), out)
    assert.are.equal(c.node_id, ctl_json(b, { "protect" }).protected[1].id)
    code, out = ctl(b, { "unprotect", c.node_id })
    assert.are.equal(0, code, out)
    assert.are.equal(1, (ctl(b, { "unprotect", c.node_id })))
    H.cleanup(c)

    -- disconnect by node id: the answer names the connection closed
    local doc = ctl_json(a, { "disconnect", b.node_id })
    assert.are.equal(1, doc.count)
    assert.are.equal(b.p2p, doc.closed[1].addr)
    assert.are.equal("outbound", doc.closed[1].direction)
    assert.truthy(H.log_of(a):find('msg="peer disconnected on request" addr=' .. b.p2p, 1, true))
    code, _, err = ctl(a, { "disconnect", "127.0.0.9:1" })
    assert.are.equal(1, code)
    assert.truthy(err:find("404: no connected peer matches", 1, true), err)
    code, _, err = ctl(b, { "connect", "127.0.0.9:1" }) -- b never dials (--max-outbound 0) ...
    assert.are.equal(1, code)
    assert.truthy(err:find("409: dialling is off", 1, true), err)
    code, _, err = ctl(a, { "connect", "127.0.0.1:0" }) -- ... and no address the book refuses
    assert.are.equal(1, code)
    assert.truthy(err:find("400", 1, true), err)
  end)

  it("checks a policy directory without touching the live set", function()
    local good = SRC .. "/policies"
    local code, out = ctl(a, { "policy", "check", good })
    assert.are.equal(0, code, out)
    assert.truthy(out:find("ok    select.lua (hooks: select)", 1, true), out)
    assert.truthy(out:find("policy check: OK", 1, true), out)
    local bad = dir .. "/badpol"
    assert(os.execute("mkdir " .. H.sh_quote(bad)))
    H.write_file(bad .. "/select.lua", "return { select = function(book, n) return end\n")
    H.write_file(bad .. "/score.lua", "return { score = function(p) return 1 end }\n")
    local before = ctl_json(a, { "policy", "status" }).generation
    code, out = ctl(a, { "policy", "check", bad })
    assert.are.equal(1, code, out)
    assert.truthy(out:find("FAIL  select.lua: select.lua:", 1, true), out)
    assert.truthy(out:find("ok    score.lua", 1, true), out)
    local doc
    code, doc = ctl(a, { "--json", "policy", "check", bad })
    assert.are.equal(1, code)
    assert.is_false(H.cjson.decode(doc).ok)
    assert.are.equal(before, ctl_json(a, { "policy", "status" }).generation)
    local err
    code, _, err = ctl(a, { "policy", "check", dir .. "/none" })
    assert.are.equal(1, code)
    assert.truthy(err:find("422", 1, true), err)
  end)

  it("events and policy shadow: streamed, or a clear error from an older peerd", function()
    local code, out, err = ctl(a, { "--timeout", "3", "events" })
    if code == 0 then
      assert.truthy(out ~= "", out)
    else
      assert.are.equal(1, code, err)
      assert.truthy(err:find("no event stream", 1, true), err)
    end
    code, out, err = ctl(a, { "--json", "events" })
    if code == 0 then
      for line in out:gmatch("[^\n]+") do
        local doc = H.cjson.decode(line)
        assert.is_number(doc.seq)
        assert.is_string(doc.kind)
      end
    else
      assert.are.equal(1, code, err)
    end
    local f = assert(io.popen("timeout 2 " .. H.sh_quote(CTL) .. " --api 127.0.0.1:" .. a.port ..
      " events --follow 2>&1; echo rc=$?"))
    out = f:read("a")
    f:close()
    assert.truthy(out:find("rc=124", 1, true) or
      (out:find("rc=1", 1, true) and out:find("no event stream", 1, true)), out)
    code, out, err = ctl(a, { "policy", "shadow" })
    assert.truthy(code == 0 or (code == 1 and err:find("peerd answered 404", 1, true)), out .. err)
  end)

  it("serves the API on a unix socket, 0660, trusted as loopback", function()
    local sock = dir .. "/a.sock"
    local mode = H.run_cmd("stat -c '%a %F' " .. H.sh_quote(sock))
    assert.are.equal("660 socket\n", mode)
    local st = ctl_json(a, { "status" }, { api = "unix:" .. sock })
    assert.are.equal(a.node_id, st.node_id)
    local out = H.run_cmd("curl -s --unix-socket " .. H.sh_quote(sock) .. " http://localhost/v1/status")
    assert.are.equal(a.node_id, H.cjson.decode(out).node_id)
    -- a second daemon on the same socket path is refused while a lives
    local d2 = H.tmpdir()
    local p = H.spawn({ "--api", "unix:" .. sock, "--data-dir", d2 .. "/data", "--p2p", "off" }, d2 .. "/log")
    assert.is_true(H.wait_until(function() return p.exited end, 10))
    assert.are.equal(1, p.code)
    assert.truthy((H.read_file(d2 .. "/log") or ""):find("the unix socket is in use", 1, true))
    if not p.handle:is_closing() then p.handle:close() end
    H.rmdir(d2)
  end)

  it("unix only: a stale socket is replaced, the file goes at exit; the cookie through --data-dir", function()
    local d = H.tmpdir()
    local sock = d .. "/api.sock"
    local function start(args, want_tcp)
      local log = d .. "/log-" .. tostring(H.uv.hrtime())
      local p = H.spawn(args, log)
      local port
      assert.is_true(H.wait_until(function()
        local l = H.read_file(log) or ""
        port = l:match('msg="api listening" addr=0%.0%.0%.0:(%d+)')
        return p.exited or (l:find("addr=" .. sock, 1, true) ~= nil and (port ~= nil or not want_tcp))
      end, 10), H.read_file(log))
      return p, log, port
    end
    -- TCP on a wildcard (a cookie is written) and the unix socket
    local p, _, port = start({ "--api", "0.0.0.0:0", "--api", "unix:" .. sock, "--data-dir", d .. "/data",
      "--p2p", "off" }, true)
    local node = { port = tonumber(port) }
    local code, _, err = ctl(node, { "status" }, { global = { "--data-dir", d .. "/nowhere" } })
    assert.are.equal(1, code)
    assert.truthy(err:find("401", 1, true) and err:find("--data-dir", 1, true), err)
    assert.are.equal(0, (ctl(node, { "status" }, { global = { "--data-dir", d .. "/data" } })))
    assert.are.equal(0, (ctl(node, { "status" }, { global = { "--token-file", d .. "/data/api_cookie" } })))
    -- the unix socket needs no token
    assert.are.equal(0, (ctl(node, { "status" }, { api = "unix:" .. sock })))
    p.handle:kill("sigkill")
    assert.is_true(H.wait_until(function() return p.exited end, 10))
    p.handle:close()
    assert.are.equal("left\n", H.run_cmd("test -S " .. H.sh_quote(sock) .. " && echo left"))
    -- unix only (no TCP listener): the stale socket is replaced
    local log
    p, log = start({ "--api", "unix:" .. sock, "--data-dir", d .. "/data", "--p2p", "off" })
    assert.is_false(p.exited, H.read_file(log))
    local l = H.read_file(log)
    assert.truthy(l:find("removing a stale unix socket", 1, true), l)
    assert.are.equal(1, H.count(l, 'msg="api listening"'), l)
    assert.are.equal(0, (ctl(node, { "peers" }, { api = "unix:" .. sock })))
    p.handle:kill("sigterm")
    assert.is_true(H.wait_until(function() return p.exited end, 10))
    p.handle:close()
    assert.are.equal(0, p.code, H.read_file(log))
    assert.are.equal("gone\n", H.run_cmd("test -e " .. H.sh_quote(sock) .. " || echo gone"))
    H.rmdir(d)
  end)
end)
