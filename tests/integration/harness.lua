-- luacheck: std +busted
-- Shared helpers for the integration specs: spawn real peerd processes on
-- 127.0.0.1 with port 0, each with its own directory, talk to them over HTTP
-- with curl, wait with bounded loops. Required by *_spec.lua through
-- package.path (tests/integration/?.lua).
local uv = require("luv")
local cjson = require("cjson")
local luassert = require("luassert")

local BIN = os.getenv("PEERD_BIN") or "build/peerd"


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

local function has_flag(list, flag)
  for _, a in ipairs(list or {}) do
    if a == flag then return true end
  end
  return false
end

local function flag_value(list, flag)
  for i, a in ipairs(list or {}) do
    if a == flag then return list[i + 1] end
  end
  return nil
end

-- Tests never leave the machine, even outside scripts/test's network
-- namespace: a daemon whose dialer runs is given loopback addresses only
-- (127.x, ::1, localhost). start() and http() check what a test hands a
-- dialling daemon: --seeds, --persistent-peers, a saved book or anchors in
-- its data directory, POST /v1/book. (Addresses it learns from its peers
-- are theirs: loopback in every spec.)
local function is_loopback(endpoint)
  local host = tostring(endpoint):gsub("^%x+@", "")
  host = host:match("^%[(.*)%]:%d*$") or host:match("^([^:]*):%d*$") or host
  return host:match("^127%.%d+%.%d+%.%d+$") ~= nil or host == "::1" or host == "localhost"
end

local function assert_loopback(node, what, addrs)
  for _, a in ipairs(addrs) do
    if not is_loopback(a) and node.own_dir and not node.proc then rmdir(node.dir) end
    luassert(is_loopback(a), string.format("harness: %s gives a dialling peerd (%s) a " ..
      "non-loopback address: %s; give it 127.x addresses or start it with --max-outbound 0",
      what, node.dir, tostring(a)))
  end
end

-- The addresses in a saved book (addrbook.json: "addr ..." rows) and in
-- anchors.json, if there are such files.
local function saved_addrs(data)
  local out = {}
  local book = read_file(data .. "/addrbook.json")
  local ok, doc = pcall(cjson.decode, book or "")
  if ok and type(doc) == "table" and type(doc.entries) == "table" then
    for _, row in ipairs(doc.entries) do
      if type(row) == "string" then out[#out + 1] = row:match("^(%S+)") end
    end
  end
  ok, doc = pcall(cjson.decode, read_file(data .. "/anchors.json") or "")
  if ok and type(doc) == "table" and type(doc.anchors) == "table" then
    for _, a in ipairs(doc.anchors) do out[#out + 1] = type(a) == "table" and a.addr or a end
  end
  return out
end

-- Start a daemon on 127.0.0.1:0 in dir (fresh one when nil); waits for the
-- "api listening" and "p2p listening" lines and returns the node (node.port:
-- the API port; node.p2p_host, node.p2p_port, node.node_id: the peer side).
-- The peer listener is on 127.0.0.1:0 unless extra has --listen. A node
-- that is given none of --seeds, --persistent-peers, --max-outbound runs
-- with --max-outbound 0 (listen only), so the addresses a test puts in its
-- book are never dialled behind the test's back. A node that dials may be
-- given loopback addresses only (assert_loopback).
local function start(extra, dir, opts)
  local node = { dir = dir or tmpdir(), own_dir = dir == nil }
  node.data = node.dir .. "/data"
  local args = { "--api", "127.0.0.1:0", "--data-dir", node.data, "--log-level",
    (opts and opts.log_level) or "debug" }
  -- --p2p off: no peer listener to wait for
  node.p2p_off = flag_value(extra, "--p2p") == "off"
  if not has_flag(extra, "--listen") and not node.p2p_off then
    args[#args + 1] = "--listen"
    args[#args + 1] = "127.0.0.1:0"
  end
  if not (has_flag(extra, "--seeds") or has_flag(extra, "--persistent-peers") or
      has_flag(extra, "--max-outbound")) then
    args[#args + 1] = "--max-outbound"
    args[#args + 1] = "0"
  end
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  node.dials = flag_value(args, "--max-outbound") ~= "0"
  if node.dials then
    for _, flag in ipairs({ "--seeds", "--persistent-peers", "--bootnodes" }) do
      local list = {}
      for e in (flag_value(args, flag) or ""):gmatch("[^,]+") do list[#list + 1] = e end
      assert_loopback(node, flag, list)
    end
    assert_loopback(node, "its data directory", saved_addrs(node.data))
    -- a config file: every quoted HOST:PORT in it
    local conf = flag_value(args, "--config")
    if conf then
      local list = {}
      for e in (read_file(conf) or ""):gmatch('"([^"]-:%d+)"') do list[#list + 1] = e end
      assert_loopback(node, "its config file", list)
    end
  end
  node.log = node.dir .. "/peerd-" .. tostring(uv.hrtime()) .. ".log"
  local p = spawn(args, node.log)
  node.proc = p
  local ok = wait_until(function()
    if p.exited then return true end
    local log = log_of(node)
    node.port = log:match('msg="api listening" addr=127%.0%.0%.1:(%d+)')
    node.p2p_host, node.p2p_port = log:match('msg="p2p listening" addr=([%d%.]+):(%d+)')
    node.node_id = log:match('msg="p2p listening" addr=[^ ]+ node_id=(%x+)')
    if node.p2p_off then return node.port ~= nil and log:find('msg="overlay off', 1, true) ~= nil end
    return node.port ~= nil and node.p2p_port ~= nil
  end, (opts and opts.timeout) or 10)
  assert(ok and node.port and (node.p2p_port or node.p2p_off), "peerd did not start:\n" .. log_of(node))
  node.port = tonumber(node.port)
  if node.p2p_off then return node end
  node.p2p_port = tonumber(node.p2p_port)
  node.p2p = node.p2p_host .. ":" .. node.p2p_port
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
  luassert.are.equal(0, code, log)
  luassert.is_nil(log:find("Sanitizer", 1, true), log)
end

-- HTTP through curl. Returns status (number), body (string), json (table|nil).
local body_seq = 0
local function http(node, method, path, body, extra_args)
  local cmd = { "curl", "-s", "-S", "--max-time", "15", "-X", method, "-w", "'\\n%{http_code}'" }
  if node.dials and body and method == "POST" and path:match("^/v1/book") then
    local ok, doc = pcall(cjson.decode, body)
    if ok and type(doc) == "table" and type(doc.addrs) == "table" then
      assert_loopback(node, "POST " .. path, doc.addrs)
    end
  end
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
  luassert.are.equal(200, code, text)
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

-- Raw TCP to the peer port: connect, write each of `chunks` (a string or a
-- list of strings, written `gap_ms` apart), read until EOF or `secs`.
-- `src` (optional) is the local IP to connect from (127.0.0.X: a peer that
-- misbehaved gets its IP banned, so each hostile client uses its own).
-- Returns everything read and whether the server closed the connection.
local function raw_p2p(node, chunks, secs, gap_ms, src)
  if type(chunks) == "string" then chunks = { chunks } end
  local client = uv.new_tcp()
  if src then assert(client:bind(src, 0)) end
  local got, closed, connected = {}, false, false
  local start_t
  client:connect(node.p2p_host, node.p2p_port, function(err)
    if err then
      closed = true
      return
    end
    connected = true
    start_t = uv.hrtime()
    client:read_start(function(err2, chunk)
      if err2 or not chunk then
        closed = true
      else
        got[#got + 1] = chunk
      end
    end)
  end)
  local sent = 0
  wait_until(function()
    if not connected then return closed end
    local due = math.floor((uv.hrtime() - start_t) / 1e6 / (gap_ms or 1))
    while not closed and sent < #chunks and sent <= due do
      sent = sent + 1
      client:write(chunks[sent])
    end
    return closed
  end, secs or 10)
  if not client:is_closing() then client:close() end
  uv.run("nowait")
  return table.concat(got), closed
end

-- The value of one /metrics sample (nil if absent).
local function metric(node, series)
  local code, text = http(node, "GET", "/metrics")
  if code ~= 200 then return nil end
  for line in text:gmatch("[^\n]+") do
    local name, v = line:match("^(%S+) (%S+)$")
    if name == series then return tonumber(v) end
  end
  return nil
end

-- A stand-in node: a TCP listener on host:port (port 0: any) that speaks
-- another protocol (it never writes) and counts every connection and byte
-- it receives. Returns {port, conns, bytes, close()}.
local function standin(host, port)
  local st = { conns = 0, bytes = 0, clients = {} }
  local server = uv.new_tcp()
  assert(server:bind(host, port or 0))
  assert(server:listen(64, function(err)
    if err then return end
    local c = uv.new_tcp()
    server:accept(c)
    st.conns = st.conns + 1
    st.clients[#st.clients + 1] = c
    c:read_start(function(rerr, data)
      if rerr or not data then
        if not c:is_closing() then c:close() end
        return
      end
      st.bytes = st.bytes + #data
    end)
  end))
  st.host = host
  st.port = server:getsockname().port
  st.addr = host .. ":" .. st.port
  function st.close()
    for _, c in ipairs(st.clients) do
      if not c:is_closing() then c:close() end
    end
    if not server:is_closing() then server:close() end
    uv.run("nowait")
  end
  return st
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

return {
  uv = uv, cjson = cjson, BIN = BIN, sh_quote = sh_quote, read_file = read_file,
  write_file = write_file, exists = exists, tmpdir = tmpdir, rmdir = rmdir,
  wait_until = wait_until, spawn = spawn, log_of = log_of, start = start, stop = stop,
  cleanup = cleanup, http = http, get = get, post = post, status_of = status_of, raw = raw,
  count = count, chunk = chunk, run_cmd = run_cmd, raw_p2p = raw_p2p, metric = metric,
  has_flag = has_flag, flag_value = flag_value, standin = standin, is_loopback = is_loopback,
}
