-- luacheck: std +busted
-- Integration specs for the peerd daemon: real processes on 127.0.0.1 with
-- port 0, a fresh data directory each, driven over HTTP with curl.
-- Every wait is bounded in iterations and time; every daemon is stopped in a
-- `finally`, even when the test fails.
--
-- Run from the repo root:  PEERD_BIN=build/peerd lua5.4 /usr/bin/busted tests/integration
local uv = require("luv")
local cjson = require("cjson")

local BIN = os.getenv("PEERD_BIN") or "build/peerd"

-- SHA256d(01 00 00 00): Bitcoin Core's addrman test key (HashWriter{} << 1).
local BTC_TEST_KEY = "41f758f2e5cc078d3795b4fc0cb60c2d735fa92cc020572bdc982dd2d564d11b"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- A fresh directory under /tmp named after os.tmpname().
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 " .. sh_quote(p)))
  return p
end

local function rmdir(p)
  if p and p:match("^/tmp/lua_[%w_]+$") then os.execute("rm -rf " .. sh_quote(p)) end
end

-- Run the loop until pred() is true, at most `secs` seconds (and a matching
-- number of iterations). Returns whether pred() became true.
local function wait_until(pred, secs)
  local step_ms = 10
  local max_iter = math.floor(secs * 1000 / step_ms) + 1
  local deadline = uv.hrtime() + secs * 1e9
  for _ = 1, max_iter do
    uv.run("nowait")
    if pred() then return true end
    if uv.hrtime() > deadline then break end
    uv.sleep(step_ms)
  end
  uv.run("nowait")
  return pred() and true or false
end

-- Run `peerd` with args (stderr to a file), without waiting for anything.
local function spawn(args, logpath)
  local proc = { log = logpath, exited = false }
  local fd = assert(uv.fs_open(logpath, "a", tonumber("644", 8)))
  local handle, pid = uv.spawn(BIN, { args = args, stdio = { nil, nil, fd } }, function(code, signal)
    proc.exited = true
    proc.code = code
    proc.signal = signal
  end)
  uv.fs_close(fd)
  assert(handle, "cannot spawn " .. BIN .. ": " .. tostring(pid))
  proc.handle = handle
  proc.pid = pid
  return proc
end

local function log_of(node)
  return read_file(node.log) or ""
end

-- Start a daemon on 127.0.0.1:0 in dir (fresh one when nil); waits for the
-- "api listening" line and returns the node (node.port set).
local function start(extra, dir)
  local node = { dir = dir or tmpdir(), own_dir = dir == nil }
  node.data = node.dir .. "/data"
  local args = { "--api", "127.0.0.1:0", "--data-dir", node.data, "--log-level", "debug" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  node.log = node.dir .. "/peerd-" .. tostring(uv.hrtime()) .. ".log"
  local p = spawn(args, node.log)
  node.proc = p
  local ok = wait_until(function()
    if p.exited then return true end
    node.port = log_of(node):match('msg="api listening" addr=127%.0%.0%.1:(%d+)')
    return node.port ~= nil
  end, 10)
  assert(ok and node.port, "peerd did not start:\n" .. log_of(node))
  node.port = tonumber(node.port)
  return node
end

-- Send sig (default SIGTERM) and wait for exit; SIGKILL if it hangs.
local function stop(node, sig)
  if not node or not node.proc then return nil end
  local p = node.proc
  if not p.exited then
    p.handle:kill(sig or "sigterm")
    if not wait_until(function() return p.exited end, 10) then
      p.handle:kill("sigkill")
      wait_until(function() return p.exited end, 5)
    end
  end
  if not p.handle:is_closing() then p.handle:close() end
  uv.run("nowait")
  return p.code, p.signal
end

-- Stop the daemon, remove its directory, and check it shut down cleanly
-- (exit status 0, nothing from the sanitizers in its log).
local function cleanup(node)
  if not node then return end
  local code = stop(node)
  local log = log_of(node)
  if node.own_dir then rmdir(node.dir) end
  assert.are.equal(0, code, log)
  assert.is_nil(log:find("Sanitizer", 1, true), log)
end

-- HTTP through curl. Returns status (number), body (string), json (table|nil).
local body_seq = 0
local function http(node, method, path, body, extra_args)
  local cmd = { "curl", "-s", "-S", "--max-time", "15", "-X", method, "-w", "'\\n%{http_code}'" }
  if body then
    body_seq = body_seq + 1
    local bf = node.dir .. "/body-" .. body_seq
    write_file(bf, body)
    cmd[#cmd + 1] = "-H 'Content-Type: application/json' --data-binary @" .. sh_quote(bf)
  end
  for _, a in ipairs(extra_args or {}) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = sh_quote("http://127.0.0.1:" .. node.port .. path)
  local f = assert(io.popen(table.concat(cmd, " ") .. " 2>&1"))
  local out = f:read("a")
  f:close()
  local text, code = out:match("^(.*)\n(%d%d%d)$")
  if not code then return nil, out end
  local ok, doc = pcall(cjson.decode, text)
  return tonumber(code), text, ok and doc or nil
end

local function get(node, path) return http(node, "GET", path) end
local function post(node, path, tbl)
  return http(node, "POST", path, type(tbl) == "string" and tbl or cjson.encode(tbl))
end

local function status_of(node)
  local code, text, doc = get(node, "/v1/status")
  assert.are.equal(200, code, text)
  return doc
end

-- Raw TCP: connect, write data, read until EOF or until done(buf) is true.
local function raw(node, data, done, secs)
  local client = uv.new_tcp()
  local chunks, finished = {}, false
  client:connect("127.0.0.1", node.port, function(err)
    if err then
      finished = true
      return
    end
    client:write(data)
    client:read_start(function(err2, chunk)
      if err2 or not chunk then
        finished = true
      else
        chunks[#chunks + 1] = chunk
      end
    end)
  end)
  wait_until(function()
    return finished or (done ~= nil and done(table.concat(chunks)))
  end, secs or 10)
  if not client:is_closing() then client:close() end
  uv.run("nowait")
  return table.concat(chunks), finished
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Run a shell command; its stderr is captured too unless cmd redirects it.
-- One chunk of a chunked body.
local function chunk(s)
  return string.format("%x\r\n%s\r\n", #s, s)
end

local function run_cmd(cmd, keep_redirects)
  local f = assert(io.popen(keep_redirects and cmd or (cmd .. " 2>&1")))
  local out = f:read("a")
  local ok, how, code = f:close()
  return out, (ok and 0) or (how == "exit" and code) or 128
end

describe("peerd daemon", function()
  it("answers GET /health with 200", function()
    local node = start()
    finally(function() cleanup(node) end)
    local code, text, doc = get(node, "/health")
    assert.are.equal(200, code, text)
    assert.are.equal("ok", doc.status)
  end)

  it("reports status fields", function()
    local node = start()
    finally(function() cleanup(node) end)
    local st = status_of(node)
    assert.is_string(st.version)
    assert.is_number(st.uptime)
    assert.is_true(st.uptime >= 0)
    assert.are.same({ new = 0, tried = 0, banned = 0 },
      { new = st.book.new, tried = st.book.tried, banned = st.book.banned })
    assert.is_table(st.last_save)
    assert.is_table(st.load)
    assert.is_true(st.load.ok)
  end)

  it("adds addresses and rejects bad ones with reasons", function()
    local node = start()
    finally(function() cleanup(node) end)
    local addrs = {
      "1.2.3.4:26656", "[2001:4860::1]:26656", -- routable
      "10.0.0.1:26656", "192.168.1.1:26656", "127.0.0.1:26656", -- private / loopback
      "0.0.0.0:26656", -- unroutable
      "junk", "1.2.3.4", "1.2.3.5:0", "1.2.3.6:70000", -- malformed, port 0
    }
    local code, text, doc = post(node, "/v1/book", { addrs = addrs, source = "5.6.7.8" })
    assert.are.equal(200, code, text)
    assert.are.equal(2, doc.added)
    local reasons = {}
    for _, r in ipairs(doc.rejected) do
      assert.is_string(r.error)
      assert.is_true(#r.error > 0)
      reasons[r.addr] = r.error
    end
    assert.are.equal(8, #doc.rejected)
    assert.matches("private", reasons["10.0.0.1:26656"])
    assert.matches("private", reasons["192.168.1.1:26656"])
    assert.matches("loopback", reasons["127.0.0.1:26656"])
    assert.is_string(reasons["0.0.0.0:26656"])
    assert.is_string(reasons["junk"])
    assert.is_string(reasons["1.2.3.4"])
    assert.matches("port 0", reasons["1.2.3.5:0"])
    assert.is_string(reasons["1.2.3.6:70000"])
    assert.are.equal(2, status_of(node).book.new)
  end)

  it("pages GET /v1/book and explains one address", function()
    local node = start()
    finally(function() cleanup(node) end)
    local addrs = {}
    for i = 1, 30 do addrs[i] = string.format("45.%d.1.1:26656", i) end
    local code, text, doc = post(node, "/v1/book", { addrs = addrs })
    assert.are.equal(200, code, text)
    local added = doc.added
    assert.is_true(added >= 28) -- distinct groups: slot clashes are very unlikely
    local seen, n = {}, 0
    for page = 0, 3 do
      local c, t, d = get(node, "/v1/book?table=new&limit=10&offset=" .. page * 10)
      assert.are.equal(200, c, t)
      assert.are.equal(added, d.total)
      assert.is_true(#d.entries <= 10)
      for _, e in ipairs(d.entries) do
        assert.is_nil(seen[e.addr])
        seen[e.addr] = true
        n = n + 1
      end
    end
    assert.are.equal(added, n)
    local c, t, d = get(node, "/v1/book?table=tried")
    assert.are.equal(200, c, t)
    assert.are.equal(0, d.total)
    c, t = get(node, "/v1/book?table=bogus")
    assert.are.equal(400, c, t)

    local first = next(seen)
    c, t, d = get(node, "/v1/book/" .. first)
    assert.are.equal(200, c, t)
    assert.are.equal("new", d.table)
    assert.is_number(d.bucket)
    assert.is_true(d.bucket >= 0 and d.bucket < 1024)
    assert.is_true(d.position >= 0 and d.position < 64)
    assert.is_number(d.attempts)
    c, t, d = get(node, "/v1/book/9.9.9.9:1")
    assert.are.equal(404, c, t)
    assert.is_string(d.error)
  end)

  it("moves an address to tried on a good event", function()
    local node = start()
    finally(function() cleanup(node) end)
    local code, text = post(node, "/v1/book", { addrs = { "1.2.3.4:26656", "5.6.7.8:26656" } })
    assert.are.equal(200, code, text)
    code, text = post(node, "/v1/events", { addr = "1.2.3.4:26656", event = "attempt" })
    assert.are.equal(200, code, text)
    code, text = post(node, "/v1/events", { addr = "1.2.3.4:26656", event = "good" })
    assert.are.equal(200, code, text)
    local c, t, d = get(node, "/v1/book/1.2.3.4:26656")
    assert.are.equal(200, c, t)
    assert.are.equal("tried", d.table)
    assert.is_true(d.bucket >= 0 and d.bucket < 256)
    local st = status_of(node)
    assert.are.equal(1, st.book.tried)
    assert.are.equal(1, st.book.new)
    c, t = post(node, "/v1/events", { addr = "1.2.3.4:26656", event = "exploded" })
    assert.are.equal(400, c, t)
  end)

  it("hands out peers to dial", function()
    local node = start()
    finally(function() cleanup(node) end)
    local addrs, set = {}, {}
    for i = 1, 12 do
      addrs[i] = string.format("81.%d.2.3:26656", i)
      set[addrs[i]] = true
    end
    local code, text = post(node, "/v1/book", { addrs = addrs })
    assert.are.equal(200, code, text)
    local c, t, d = get(node, "/v1/dial?n=5")
    assert.are.equal(200, c, t)
    assert.is_true(#d.peers >= 1 and #d.peers <= 5)
    local dup = {}
    for _, p in ipairs(d.peers) do
      assert.is_true(set[p.addr] == true, p.addr)
      assert.is_nil(dup[p.addr])
      dup[p.addr] = true
    end
  end)

  it("adds, lists and deletes bans", function()
    local node = start()
    finally(function() cleanup(node) end)
    local code, text = post(node, "/v1/bans", { target = "1.2.3.0/24", duration = 3600, reason = "test" })
    assert.are.equal(200, code, text)
    local c, t, d = get(node, "/v1/bans")
    assert.are.equal(200, c, t)
    assert.are.equal(1, #d.bans)
    assert.are.equal("1.2.3.0/24", d.bans[1].subnet)
    assert.are.equal(1, status_of(node).book.banned)
    c, t, d = post(node, "/v1/book", { addrs = { "1.2.3.9:26656" } })
    assert.are.equal(200, c, t)
    assert.are.equal(0, d.added)
    assert.matches("ban", d.rejected[1].error)
    c, t = http(node, "DELETE", "/v1/bans/1.2.3.0%2F24")
    assert.are.equal(200, c, t)
    c, t, d = get(node, "/v1/bans")
    assert.are.equal(200, c, t)
    assert.are.equal(0, #d.bans)
    c, t, d = http(node, "DELETE", "/v1/bans/1.2.3.0%2F24")
    assert.are.equal(404, c, t)
    assert.is_string(d.error)
    c, t = post(node, "/v1/bans", { target = "not-a-subnet" })
    assert.are.equal(400, c, t)
  end)

  it("answers bad requests with JSON errors and keeps serving", function()
    local node = start()
    finally(function() cleanup(node) end)
    local c, t, d = get(node, "/nope")
    assert.are.equal(404, c, t)
    assert.is_string(d.error)
    c, t, d = http(node, "DELETE", "/health")
    assert.are.equal(405, c, t)
    assert.is_string(d.error)
    c, t, d = post(node, "/v1/book", "{not json")
    assert.are.equal(400, c, t)
    assert.is_string(d.error)
    c, t, d = post(node, "/v1/book", { addrs = "1.2.3.4:1" })
    assert.are.equal(400, c, t)
    assert.is_string(d.error)
    -- a body over 1 MiB, with and without Expect: 100-continue
    local big = node.dir .. "/big.json"
    write_file(big, string.rep("x", 1024 * 1024 + 100))
    for _, expect in ipairs({ {}, { "-H", "'Expect:'" } }) do
      local args = { "-H 'Content-Type: application/json' --data-binary @" .. sh_quote(big) }
      for _, a in ipairs(expect) do args[#args + 1] = a end
      c, t, d = http(node, "POST", "/v1/book", nil, args)
      assert.are.equal(413, c, t)
      assert.is_string(d.error)
    end
    c = get(node, "/health")
    assert.are.equal(200, c)
  end)

  it("survives malformed HTTP, serves pipelined requests in order", function()
    local node = start()
    finally(function() cleanup(node) end)
    local resp = raw(node, "GARBAGE\r\n\r\n")
    assert.matches("^HTTP/1%.1 400 ", resp)
    assert.matches('"error"', resp)
    assert.matches("Connection: close", resp)
    resp = raw(node, "GET / HTTP/1.1\r\nX: " .. string.rep("a", 20000) .. "\r\n\r\n")
    assert.matches("^HTTP/1%.1 431 ", resp)
    local pipelined = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "POST /v1/book HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. chunk('{"addrs":["1.') .. chunk('2.3.4:26656"]}') .. "0\r\n\r\n"
      .. "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = raw(node, pipelined)
    assert.are.equal(4, count(resp, "HTTP/1%.1 %d%d%d "))
    local codes = {}
    for code in resp:gmatch("HTTP/1%.1 (%d%d%d) ") do codes[#codes + 1] = tonumber(code) end
    assert.are.same({ 200, 404, 200, 200 }, codes)
    assert.matches('"added":1', resp)
    -- split across writes, one byte at a time for the head
    local client = uv.new_tcp()
    local got, connected = {}, false
    client:connect("127.0.0.1", node.port, function(err)
      connected = not err
      client:read_start(function(_, data) if data then got[#got + 1] = data end end)
    end)
    assert.is_true(wait_until(function() return connected end, 5))
    local req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    for i = 1, #req do
      client:write(req:sub(i, i))
      uv.run("nowait")
    end
    assert.is_true(wait_until(function() return table.concat(got):find("\r\n\r\n{") ~= nil end, 5))
    assert.matches("^HTTP/1%.1 200 ", table.concat(got))
    client:close()
    uv.run("nowait")
    assert.are.equal(200, (get(node, "/health")))
  end)

  it("refuses connections beyond 256 and serves again once they close", function()
    local node = start()
    finally(function() cleanup(node) end)
    local clients, connected, closed = {}, 0, 0
    for i = 1, 260 do
      local c = uv.new_tcp()
      clients[i] = c
      c:connect("127.0.0.1", node.port, function(err)
        if err then
          closed = closed + 1
          return
        end
        connected = connected + 1
        c:read_start(function(e, data)
          if e or not data then closed = closed + 1 end
        end)
      end)
    end
    assert.is_true(wait_until(function() return connected + closed >= 260 end, 10))
    assert.is_true(wait_until(function() return closed >= 4 end, 10))
    local code = get(node, "/health") -- the 257th connection is refused too
    assert.is_true(code == nil or code == 0, tostring(code)) -- curl: empty reply
    assert.matches("too many connections", log_of(node))
    for _, c in ipairs(clients) do
      if not c:is_closing() then c:close() end
    end
    uv.run("nowait")
    assert.is_true(wait_until(function() return get(node, "/health") == 200 end, 10))
  end)

  it("serves /metrics that promtool accepts", function()
    local node = start()
    finally(function() cleanup(node) end)
    post(node, "/v1/book", { addrs = { "1.2.3.4:26656" } })
    get(node, "/nope")
    local c, t = get(node, "/metrics")
    assert.are.equal(200, c, t)
    assert.matches("# TYPE", t)
    local out, rc = run_cmd("curl -s --max-time 10 http://127.0.0.1:" .. node.port
      .. "/metrics | promtool check metrics")
    assert.are.equal(0, rc, out)
  end)

  it("saves on SIGTERM and restores the same book", function()
    local node = start()
    finally(function() cleanup(node) end)
    local addrs = {}
    for i = 1, 20 do addrs[i] = string.format("62.%d.7.7:26656", i) end
    local c, t, d = post(node, "/v1/book", { addrs = addrs })
    assert.are.equal(200, c, t)
    assert.is_true(d.added > 0)
    c, t = post(node, "/v1/events", { addr = addrs[1], event = "good" })
    assert.are.equal(200, c, t)
    c, t = post(node, "/v1/bans", { target = "9.9.0.0/16", duration = 3600 })
    assert.are.equal(200, c, t)
    local before = status_of(node).book
    local code = stop(node)
    assert.are.equal(0, code, log_of(node))
    assert.is_true(exists(node.data .. "/addrbook.json"))
    assert.matches('msg="book saved" reason=shutdown', log_of(node))
    local again = start(nil, node.dir)
    finally(function() stop(again) end)
    local after = status_of(again).book
    assert.are.same(before, after)
    c, t, d = get(again, "/v1/book/" .. addrs[1])
    assert.are.equal(200, c, t)
    assert.are.equal("tried", d.table)
  end)

  it("saves on POST /v1/save", function()
    local node = start()
    finally(function() cleanup(node) end)
    post(node, "/v1/book", { addrs = { "1.2.3.4:26656", "2.3.4.5:26656" } })
    assert.is_false(exists(node.data .. "/addrbook.json"))
    local c, t, d = post(node, "/v1/save", "")
    assert.are.equal(200, c, t)
    assert.is_true(d.saved)
    assert.are.equal(2, d.entries)
    local doc = cjson.decode(read_file(node.data .. "/addrbook.json"))
    assert.are.equal(2, #doc.entries)
    local st = status_of(node)
    assert.is_number(st.last_save.at)
    assert.is_true(st.last_save.ok)
    -- several saves at once all get answered
    for _ = 1, 3 do
      c = post(node, "/v1/save", "")
      assert.are.equal(200, c)
    end
  end)

  describe("with a damaged addrbook.json", function()
    -- Make a real saved book in dir/data, return its bytes.
    local function real_book(dir)
      local node = start(nil, dir)
      local addrs = {}
      for i = 1, 10 do addrs[i] = string.format("33.%d.4.4:26656", i) end
      post(node, "/v1/book", { addrs = addrs })
      local code = stop(node)
      assert.are.equal(0, code)
      return assert(read_file(node.data .. "/addrbook.json"))
    end

    local function check_moved_aside(dir, original)
      local node = start(nil, dir)
      local st = status_of(node)
      stop(node)
      assert.is_false(st.load.ok)
      assert.is_string(st.load.error)
      assert.is_true(#st.load.error > 0)
      assert.is_string(st.load.moved_to)
      assert.matches("addrbook%.json%.corrupt%-%d+", st.load.moved_to)
      assert.are.equal(0, st.book.new)
      assert.are.equal(0, st.book.tried)
      local moved = st.load.moved_to
      if moved:sub(1, 1) ~= "/" then moved = dir .. "/data/" .. moved:match("[^/]+$") end
      assert.are.equal(original, read_file(moved))
      assert.matches('level=error msg="book load failed', log_of(node))
      return st
    end

    local dir
    before_each(function()
      dir = tmpdir()
      os.execute("mkdir " .. sh_quote(dir .. "/data"))
    end)
    after_each(function() rmdir(dir) end)

    it("moves garbage aside and starts empty", function()
      local garbage = "this is not JSON {{{ \0\1\2"
      write_file(dir .. "/data/addrbook.json", garbage)
      check_moved_aside(dir, garbage)
    end)

    it("moves a truncated book aside and starts empty", function()
      local good = real_book(dir)
      local cut = good:sub(1, #good // 2)
      write_file(dir .. "/data/addrbook.json", cut)
      check_moved_aside(dir, cut)
    end)

    it("moves a book of another version aside and starts empty", function()
      local good = real_book(dir)
      local other, n = good:gsub('"version":%s*1', '"version":99', 1)
      assert.are.equal(1, n)
      write_file(dir .. "/data/addrbook.json", other)
      local st = check_moved_aside(dir, other)
      assert.matches("version", st.load.error)
    end)

    it("never overwrites the bad file when saving", function()
      write_file(dir .. "/data/addrbook.json", "garbage")
      local node = start(nil, dir)
      finally(function() stop(node) end)
      local moved = status_of(node).load.moved_to
      post(node, "/v1/book", { addrs = { "1.2.3.4:26656" } })
      assert.are.equal(200, (post(node, "/v1/save", "")))
      assert.are.equal(0, (stop(node)))
      moved = dir .. "/data/" .. moved:match("[^/]+$")
      assert.are.equal("garbage", read_file(moved))
      local doc = cjson.decode(read_file(dir .. "/data/addrbook.json"))
      assert.are.equal(1, #doc.entries)
    end)
  end)

  it("admits 127.x.0.1 addresses with --allow-private", function()
    local node = start({ "--allow-private" })
    finally(function() cleanup(node) end)
    local addrs = { "127.1.0.1:26656", "127.2.0.1:26656", "127.3.0.1:26656", "10.1.2.3:26656" }
    local c, t, d = post(node, "/v1/book", { addrs = addrs })
    assert.are.equal(200, c, t)
    assert.are.equal(4, d.added, t)
    assert.are.equal(4, status_of(node).book.new)
  end)

  it("resolves host names in POST /v1/book through the system resolver", function()
    -- localhost comes from /etc/hosts: real getaddrinfo, no traffic off the machine.
    local node = start({ "--allow-private" })
    finally(function() cleanup(node) end)
    local c, t, d = post(node, "/v1/book", { addrs = { "localhost:26656", "1.2.3.4:26656" } })
    assert.are.equal(200, c, t)
    assert.are.equal(1, #d.resolved, t)
    assert.are.equal("localhost:26656", d.resolved[1].name)
    local got = {}
    for _, a in ipairs(d.resolved[1].addrs) do got[a] = true end
    assert.is_true(got["127.0.0.1:26656"] == true, t)
    assert.is_true(d.added >= 2, t)
    local c2, t2 = http(node, "GET", "/v1/book/127.0.0.1:26656")
    assert.are.equal(200, c2, t2)
    -- without --allow-private the resolved loopback address is refused, with the reason
    local strict = start()
    finally(function() cleanup(strict) end)
    local c3, t3, d3 = post(strict, "/v1/book", { addrs = { "localhost:26656" } })
    assert.are.equal(200, c3, t3)
    assert.are.equal(0, d3.added, t3)
    assert.is_truthy(d3.rejected[1].error:find("loopback", 1, true), t3)
  end)
end)

describe("peerd command line", function()
  it("book-slot matches Bitcoin Core's addrman test vectors", function()
    local out, rc = run_cmd(sh_quote(BIN) .. " book-slot --key " .. BTC_TEST_KEY .. " 250.1.1.1:8333")
    assert.are.equal(0, rc, out)
    local d = cjson.decode(out)
    assert.are.equal(40, d.tried.bucket)
    assert.are.equal("01fa01", d.group)
    out, rc = run_cmd(sh_quote(BIN) .. " book-slot --key " .. BTC_TEST_KEY .. " 250.1.2.1:8333")
    assert.are.equal(0, rc, out)
    d = cjson.decode(out)
    assert.are.equal(786, d.new.bucket)
    assert.are.equal("01fa01", d.group)
    assert.is_true(d.new.position >= 0 and d.new.position < 64)
    out, rc = run_cmd(sh_quote(BIN) .. " book-slot --key " .. BTC_TEST_KEY
      .. " --source 250.1.2.1 250.1.2.1:8333")
    assert.are.equal(0, rc, out)
    assert.are.equal(786, cjson.decode(out).new.bucket)
    out, rc = run_cmd(sh_quote(BIN) .. " book-slot --key " .. BTC_TEST_KEY .. " 109.122.4.5:1")
    assert.are.equal(0, rc, out)
    assert.are.equal("016d7a", cjson.decode(out).group)
  end)

  it("book-slot rejects bad input with exit status 2", function()
    for _, args in ipairs({
      "book-slot --key 00 1.2.3.4:1",
      "book-slot --key " .. string.rep("zz", 32) .. " 1.2.3.4:1",
      "book-slot --key " .. BTC_TEST_KEY .. " not-an-address",
      "book-slot --key " .. BTC_TEST_KEY,
      "book-slot 1.2.3.4:1",
    }) do
      local out, rc = run_cmd(sh_quote(BIN) .. " " .. args .. " 2>&1 >/dev/null", true)
      assert.are.equal(2, rc, args .. ": " .. out)
      assert.is_true(#out > 0)
    end
  end)

  it("--help lists every flag with its default", function()
    local out, rc = run_cmd(sh_quote(BIN) .. " --help")
    assert.are.equal(0, rc)
    for _, flag in ipairs({ "--data-dir", "--api", "--allow-private", "--save-interval", "--ban-time",
      "--seed", "--log-level", "--key", "--source", "--version", "--help", "book-slot" }) do
      assert.is_truthy(out:find(flag, 1, true), flag)
    end
    for _, default in ipairs({ "./peerd-data", "127.0.0.1:7412", "86400", "info", "(default: 5)" }) do
      assert.is_truthy(out:find(default, 1, true), default)
    end
  end)

  it("exits 2 with usage on a bad flag", function()
    for _, args in ipairs({ "--bogus", "--save-interval abc", "--log-level loud", "--api nowhere",
      "--seed -1", "run extra-arg", "--data-dir" }) do
      local out, rc = run_cmd(sh_quote(BIN) .. " " .. args .. " 2>&1 >/dev/null", true)
      assert.are.equal(2, rc, args)
      assert.matches("Usage", out)
    end
  end)

  it("exits 1 with an error log when it cannot start", function()
    local dir = tmpdir()
    finally(function() rmdir(dir) end)
    -- data directory whose parent does not exist
    local out, rc = run_cmd(sh_quote(BIN) .. " --api 127.0.0.1:0 --data-dir " .. sh_quote(dir .. "/no/such/dir"))
    assert.are.equal(1, rc, out)
    assert.matches('level=error msg="cannot create data directory"', out)
    -- API port already taken by another peerd
    local node = start(nil, dir)
    finally(function() stop(node) end)
    out, rc = run_cmd(sh_quote(BIN) .. " --api 127.0.0.1:" .. node.port .. " --data-dir " .. sh_quote(dir .. "/d2"))
    assert.are.equal(1, rc, out)
    assert.matches('level=error msg="cannot listen"', out)
    assert.are.equal(200, (get(node, "/health")))
  end)

  it("prints its version", function()
    local out, rc = run_cmd(sh_quote(BIN) .. " --version")
    assert.are.equal(0, rc)
    assert.matches("^peerd %d+%.%d+%.%d+", out)
  end)
end)
