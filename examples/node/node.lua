#!/usr/bin/env lua5.4
-- A small peer-to-peer node that uses peerd as its sidecar (Lua 5.4 + luv).
--
--   lua5.4 examples/node/node.lua --listen 127.81.0.1:26656 --peerd 127.0.0.1:7481 --peers 2
--          [--id HEX40] [--log FILE] [--duration SECONDS]
--
-- The node speaks its own line protocol, not peerd's. On connect each side
-- sends `node <node_id> <listen ip:port>\n`; after that only `ping\n` (answered
-- with `pong\n`) and `pong\n` are allowed, anything else closes. Each side pings
-- every 3 s and closes a connection silent for 12 s. Outbound connections are
-- made from the listen IP, so the remote sees the address we announce. Two
-- connections to one node (both ends dialled at once): both ends keep the one
-- dialled by the lower node_id.
--
-- peerd is only asked and told, over its HTTP API (a minimal HTTP/1.1 client on
-- luv TCP, one request at a time, in order, `Connection: close`, 5 s timeout):
--   GET  /v1/status (or /v1/self)  once at start: our node_id (unless --id)
--   GET  /v1/dial?n=K&outbound=O   every 2 s while we have fewer than N outbound (O: how many we have)
--   POST /v1/events                outbound: attempt, connected, good (the remote's
--                                  `node` line arrived), failed (connect error,
--                                  timeout or a bad greeting), disconnected (a good
--                                  peer went away); inbound: connected and good once
--                                  the `node` line names the remote, disconnected
--   POST /v1/book                  the remote's announced listen address, ID@ip:port,
--                                  with the remote's IP as source
-- A status line is printed every 5 s. SIGINT/SIGTERM or --duration stop it:
-- connections are closed, their events sent (at most 3 s), exit 0.
local uv = require("luv")
local cjson = require("cjson.safe")

local USAGE = "usage: lua5.4 examples/node/node.lua --listen IP:PORT --peerd IP:PORT --peers N\n" ..
  "                        [--id HEX40] [--log FILE] [--duration SECONDS]\n"

-- Every timing (ms) and bound in one place.
local DIAL_EVERY = 2000      -- ask peerd whom to dial, while short of N outbound
local STATUS_EVERY = 5000    -- status line
local TICK = 500             -- per-connection deadline checks
local PING_EVERY = 3000
local IDLE_TIMEOUT = 12000   -- nothing received for this long: close
local DIAL_TIMEOUT = 5000    -- TCP connect
local HELLO_TIMEOUT = 5000   -- from TCP connect to the remote's `node` line
local HTTP_TIMEOUT = 5000    -- one API call, connect to last byte
local HTTP_RESPONSE_MAX = 1 << 20
local HTTP_QUEUE_MAX = 256   -- queued API calls; beyond, new ones are dropped (and counted)
local API_WARN_EVERY = 10000 -- a failing API call is logged at most this often
local LINE_MAX = 128         -- longest line of our protocol
local LINES_PER_SEC = 20     -- more from one peer: close
local WRITE_QUEUE_MAX = 65536
local MAX_INBOUND = 32
local MAX_PEERS = 64         -- --peers upper bound
local DIAL_N_MAX = 64        -- n asked from GET /v1/dial
local RETRY_AFTER = 10000    -- an address that failed is not redialled sooner
local RETRY_TABLE_MAX = 1024
local ID_TRIES = 30          -- start: attempts to read our node_id, 1 s apart
local DRAIN_MS = 3000        -- stop: time left to send the last events

---------------------------------------------------------------------------
-- command line

local function die(msg, code)
  io.stderr:write("node: ", msg, "\n", code == 1 and "" or USAGE)
  os.exit(code or 2)
end

-- "a.b.c.d:port" or "[v6]:port" -> ip, port (nil when malformed)
local function parse_hostport(s)
  if type(s) ~= "string" then return nil end
  local ip, port = s:match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
  if ip then
    for octet in ip:gmatch("%d+") do
      if tonumber(octet) > 255 then return nil end
    end
  else
    ip, port = s:match("^%[([%x:%.]+)%]:(%d+)$")
  end
  port = tonumber(port)
  if not ip or not port or port < 1 or port > 65535 then return nil end
  return ip, port
end

local function valid_id(s)
  if type(s) == "string" and #s == 40 and s:match("^%x+$") then return s:lower() end
  return nil
end

local function parse_args(argv)
  local known = { ["--listen"] = true, ["--peerd"] = true, ["--peers"] = true, ["--id"] = true,
    ["--log"] = true, ["--duration"] = true }
  local o = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      io.stdout:write(USAGE)
      os.exit(0)
    end
    if not known[a] then die("unknown argument: " .. tostring(a)) end
    if argv[i + 1] == nil then die(a .. " needs a value") end
    o[a:sub(3)] = argv[i + 1]
    i = i + 2
  end
  if not o.listen or not o.peerd or not o.peers then die("--listen, --peerd and --peers are required") end
  o.listen_ip, o.listen_port = parse_hostport(o.listen)
  if not o.listen_ip then die("--listen wants IP:PORT (port 1..65535), got " .. o.listen) end
  o.api_ip, o.api_port = parse_hostport(o.peerd)
  if not o.api_ip then die("--peerd wants IP:PORT, got " .. o.peerd) end
  o.peers = math.tointeger(tonumber(o.peers))
  if not o.peers or o.peers < 1 or o.peers > MAX_PEERS then die("--peers wants 1.." .. MAX_PEERS) end
  if o.id then
    o.id = valid_id(o.id)
    if not o.id then die("--id wants 40 hex characters") end
  end
  if o.duration then
    o.duration = tonumber(o.duration)
    if not o.duration or o.duration <= 0 or o.duration > 1e6 then die("--duration wants seconds, 0 < s <= 1e6") end
  end
  return o
end

local opt = parse_args(arg)

---------------------------------------------------------------------------
-- logging: logfmt lines on stdout and, with --log, appended to FILE

io.stdout:setvbuf("line")
local logfile
if opt.log then
  local err
  logfile, err = io.open(opt.log, "a")
  if not logfile then die("cannot open --log: " .. tostring(err), 1) end
  logfile:setvbuf("line")
end

local function quote(s)
  s = tostring(s)
  if s == "" or s:find('[%s"=\\]') then return '"' .. s:gsub("%c", " "):gsub('[\\"]', "\\%0") .. '"' end
  return s
end

-- log("info", "peer ready", "id", id, "addr", addr, ...)
local function log(level, msg, ...)
  local parts = { "ts=" .. os.date("!%Y-%m-%dT%H:%M:%SZ"), "level=" .. level, "msg=" .. quote(msg) }
  local kv = table.pack(...)
  for i = 1, kv.n - 1, 2 do
    if kv[i + 1] ~= nil then parts[#parts + 1] = kv[i] .. "=" .. quote(kv[i + 1]) end
  end
  local line = table.concat(parts, " ") .. "\n"
  io.stdout:write(line)
  if logfile then logfile:write(line) end
end

---------------------------------------------------------------------------
-- state

local self_id = opt.id          -- our node_id (peerd's, unless --id)
local conns = {}                -- seq -> connection
local next_seq = 0
local retry_at = {}             -- addr -> uv.now() before which it is not redialled
local retry_count = 0
local stopping = false
local exit_code = 0
local stats = { events_ok = 0, events_refused = 0, book_fed = 0, api_errors = 0, dropped = 0 }
local timers = {}
local server

---------------------------------------------------------------------------
-- HTTP client for peerd's API: one request per connection, Content-Length
-- bodies, `Connection: close`, bounded in time and size.

local function parse_response(raw)
  local head_end = raw:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = raw:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local len = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)"))
  if not status or not len then return nil end
  local body = raw:sub(head_end + 4)
  if #body < len then return nil end
  return status, body:sub(1, len)
end

local function http_request(method, path, body, cb)
  local tcp, timer = uv.new_tcp(), uv.new_timer()
  local chunks, size, done = {}, 0, false
  local function finish(status, text)
    if done then return end
    done = true
    timer:stop()
    if not timer:is_closing() then timer:close() end
    if not tcp:is_closing() then tcp:close() end
    local doc = nil
    if status then doc = cjson.decode(text) end
    cb(status, doc, text)
  end
  timer:start(HTTP_TIMEOUT, 0, function() finish(nil, "timeout") end)
  local ok, err = tcp:connect(opt.api_ip, opt.api_port, function(cerr)
    if cerr then return finish(nil, "connect: " .. cerr) end
    local req = { method, " ", path, " HTTP/1.1\r\nHost: ", opt.peerd, "\r\nConnection: close\r\n" }
    if body then
      req[#req + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n"
    end
    req[#req + 1] = "\r\n"
    req[#req + 1] = body or ""
    tcp:write(table.concat(req))
    tcp:read_start(function(rerr, data)
      if done then return end
      if rerr then return finish(nil, "read: " .. rerr) end
      if data then
        size = size + #data
        if size > HTTP_RESPONSE_MAX then return finish(nil, "response too large") end
        chunks[#chunks + 1] = data
      end
      local status, text = parse_response(table.concat(chunks))
      if status then return finish(status, text) end
      if not data then finish(nil, "connection closed before a whole response") end
    end)
  end)
  if not ok then finish(nil, "connect: " .. tostring(err)) end
end

-- Calls go out one at a time, in the order they were made, so that peerd
-- sees book, attempt, connected, good, disconnected in that order.
local queue, q_head, q_tail, in_flight = {}, 1, 0, false
local next_api_warn = 0

local function pump()
  if in_flight or q_head > q_tail then return end
  local job = queue[q_head]
  queue[q_head] = nil
  q_head = q_head + 1
  in_flight = true
  http_request(job.method, job.path, job.body, function(status, doc, text)
    in_flight = false
    if not status then
      stats.api_errors = stats.api_errors + 1
      -- at most one warning per API_WARN_EVERY (a peerd that is down would fill the log)
      if not job.quiet and uv.now() >= next_api_warn then
        next_api_warn = uv.now() + API_WARN_EVERY
        log("warn", "peerd API call failed", "call", job.method .. " " .. job.path, "error", text,
          "failed_so_far", stats.api_errors)
      end
    end
    if job.cb then job.cb(status, doc, text) end
    pump()
  end)
end

-- quiet: a failure is not logged (the caller says what it means)
local function api(method, path, tbl, cb, quiet)
  if q_tail - q_head + 1 >= HTTP_QUEUE_MAX then
    stats.dropped = stats.dropped + 1
    log("warn", "peerd API queue full: call dropped", "call", method .. " " .. path)
    return false
  end
  q_tail = q_tail + 1
  queue[q_tail] = { method = method, path = path, body = tbl and cjson.encode(tbl) or nil, cb = cb, quiet = quiet }
  pump()
  return true
end

local function trim(s) return (tostring(s or ""):gsub("%s+$", "")) end

local function api_idle() return not in_flight and q_head > q_tail end

local function report(event, direction, addr, node_id, reason)
  api("POST", "/v1/events", { event = event, direction = direction, addr = addr, node_id = node_id,
    reason = reason }, function(status, _, text)
    if status == 200 then
      stats.events_ok = stats.events_ok + 1
    elseif status then
      stats.events_refused = stats.events_refused + 1
      log("warn", "event refused", "event", event, "direction", direction, "addr", addr, "status", status,
        "body", trim(text))
    end
  end)
end

local function feed_book(id, listen, source)
  api("POST", "/v1/book", { addrs = { id .. "@" .. listen }, source = source }, function(status, _, text)
    if status == 200 then
      stats.book_fed = stats.book_fed + 1
    elseif status then
      log("warn", "book refused the address", "addr", listen, "status", status, "body", trim(text))
    end
  end)
end

---------------------------------------------------------------------------
-- connections

local function outbound_count()
  local n = 0
  for _, c in pairs(conns) do
    if c.dir == "outbound" then n = n + 1 end
  end
  return n
end

local function inbound_count()
  local n = 0
  for _, c in pairs(conns) do
    if c.dir == "inbound" then n = n + 1 end
  end
  return n
end

local function close_conn(c, why)
  if c.closed then return end
  c.closed = true
  conns[c.seq] = nil
  c.timer:stop()
  if not c.timer:is_closing() then c.timer:close() end
  if not c.tcp:is_closing() then c.tcp:close() end
  local shutdown = why == "shutdown"
  if c.good then
    report("disconnected", c.dir, c.dir == "outbound" and c.addr or c.listen_addr, c.remote_id, why)
  elseif c.dir == "outbound" and not shutdown then
    if why == "duplicate" then
      report("disconnected", "outbound", c.addr, c.remote_id, why)
    else
      report("failed", "outbound", c.addr, c.expect_id, why)
      if not retry_at[c.addr] and retry_count < RETRY_TABLE_MAX then
        retry_count = retry_count + 1
        retry_at[c.addr] = uv.now() + RETRY_AFTER
      end
    end
  end
  log(c.good and "info" or "debug", "peer closed", "dir", c.dir, "addr", c.addr or c.listen_addr or c.remote_ip,
    "id", c.remote_id, "reason", why)
end

local function send(c, s)
  if c.closed then return end
  if c.tcp:get_write_queue_size() > WRITE_QUEUE_MAX then return close_conn(c, "not reading") end
  local ok, err = c.tcp:write(s)
  if not ok then close_conn(c, "write: " .. tostring(err)) end
end

-- Two connections to one node (both dialled at once): keep the one dialled by
-- the lower node_id, which both ends compute alike; two in one direction: the older.
local function resolve_duplicate(c)
  for _, o in pairs(conns) do
    if o ~= c and o.hello and o.remote_id == c.remote_id then
      local keep_dir = (self_id < c.remote_id) and "outbound" or "inbound"
      if o.dir == c.dir or o.dir == keep_dir then return c end
      return o
    end
  end
  return nil
end

local function on_hello(c, line)
  local id, listen = line:match("^node (%x+) (%S+)$")
  id = valid_id(id)
  if not id or not parse_hostport(listen) then return close_conn(c, "bad greeting") end
  if id == self_id or listen == opt.listen then return close_conn(c, "self") end
  if c.expect_id and id ~= c.expect_id then return close_conn(c, "id mismatch") end
  c.hello, c.remote_id, c.listen_addr = true, id, listen
  c.next_ping = uv.now() + PING_EVERY
  local drop = resolve_duplicate(c)
  if drop then
    close_conn(drop, "duplicate")
    if drop == c then return end
  end
  c.good = true
  feed_book(id, listen, c.remote_ip)
  if c.dir == "inbound" then
    report("connected", "inbound", listen, id)
    report("good", "inbound", listen, id)
  else
    report("good", "outbound", c.addr, id)
  end
  log("info", "peer ready", "dir", c.dir, "id", id, "addr", c.dir == "outbound" and c.addr or listen)
end

local function on_line(c, line)
  local now = uv.now()
  c.last_rx = now
  if now >= c.window_end then
    c.window_end, c.lines = now + 1000, 0
  end
  c.lines = c.lines + 1
  if c.lines > LINES_PER_SEC then return close_conn(c, "flood") end
  if not c.hello then return on_hello(c, line) end
  if line == "ping" then
    send(c, "pong\n")
  elseif line ~= "pong" then
    close_conn(c, "unexpected line")
  end
end

local function start_reading(c)
  c.tcp:read_start(function(err, data)
    if c.closed then return end
    if err then return close_conn(c, "read: " .. err) end
    if not data then return close_conn(c, "closed by peer") end
    c.buf = c.buf .. data
    while not c.closed do
      local nl = c.buf:find("\n", 1, true)
      if not nl then break end
      local line = c.buf:sub(1, nl - 1):gsub("\r$", "")
      c.buf = c.buf:sub(nl + 1)
      if #line > LINE_MAX then return close_conn(c, "line too long") end
      on_line(c, line)
    end
    if not c.closed and #c.buf > LINE_MAX then close_conn(c, "line too long") end
  end)
end

-- Deadlines of one connection, checked every TICK ms.
local function tick(c)
  if c.closed then return end
  local now = uv.now()
  if not c.connected then
    if now >= c.deadline then close_conn(c, "connect timeout") end
  elseif not c.hello then
    if now >= c.deadline then close_conn(c, "greeting timeout") end
  elseif now - c.last_rx >= IDLE_TIMEOUT then
    close_conn(c, "ping timeout")
  elseif now >= c.next_ping then
    c.next_ping = now + PING_EVERY
    send(c, "ping\n")
  end
end

local function new_conn(tcp, dir)
  next_seq = next_seq + 1
  local now = uv.now()
  local c = { seq = next_seq, tcp = tcp, dir = dir, buf = "", lines = 0, window_end = now, last_rx = now,
    timer = uv.new_timer() }
  conns[c.seq] = c
  c.timer:start(TICK, TICK, function() tick(c) end)
  return c
end

local function hello_line() return "node " .. self_id .. " " .. opt.listen .. "\n" end

local function dial(addr, expect_id)
  local ip, port = parse_hostport(addr)
  local tcp = uv.new_tcp()
  -- dial from our own address, so the remote sees the IP we announce
  if opt.listen_ip:find(".", 1, true) and ip:find(".", 1, true) and opt.listen_ip ~= "0.0.0.0" then
    local ok, err = tcp:bind(opt.listen_ip, 0)
    if not ok then log("warn", "cannot dial from our address", "addr", opt.listen_ip, "error", err) end
  end
  local c = new_conn(tcp, "outbound")
  c.addr, c.expect_id, c.remote_ip = addr, expect_id, ip
  c.deadline = uv.now() + DIAL_TIMEOUT
  report("attempt", "outbound", addr, expect_id)
  log("debug", "dialling", "addr", addr, "id", expect_id)
  local ok, err = tcp:connect(ip, port, function(cerr)
    if c.closed then return end
    if cerr then return close_conn(c, "connect: " .. cerr) end
    c.connected = true
    c.deadline = uv.now() + HELLO_TIMEOUT
    report("connected", "outbound", addr, expect_id)
    send(c, hello_line())
    start_reading(c)
  end)
  if not ok then close_conn(c, "connect: " .. tostring(err)) end
end

local function busy_with(addr, id)
  for _, c in pairs(conns) do
    if c.addr == addr or c.listen_addr == addr or (id and c.remote_id == id) or (id and c.expect_id == id) then
      return true
    end
  end
  return false
end

local dial_pending = false

local function dial_round()
  if stopping or dial_pending then return end
  local short = opt.peers - outbound_count()
  if short <= 0 then return end
  local now = uv.now()
  for addr, t in pairs(retry_at) do
    if t <= now then
      retry_at[addr] = nil
      retry_count = retry_count - 1
    end
  end
  local path = "/v1/dial?n=" .. math.min(DIAL_N_MAX, short * 2 + 2) .. "&outbound=" .. outbound_count()
  dial_pending = api("GET", path, nil, function(status, doc, text)
    dial_pending = false
    if stopping or not status then return end
    if status ~= 200 or type(doc) ~= "table" or type(doc.peers) ~= "table" then
      log("warn", "GET /v1/dial refused", "status", status, "body", trim(text))
      return
    end
    for i, p in ipairs(doc.peers) do
      if i > DIAL_N_MAX or outbound_count() >= opt.peers then break end
      local addr = type(p) == "table" and p.addr
      local id = type(p) == "table" and (valid_id(p.node_id) or valid_id(p.id)) or nil
      if parse_hostport(addr) and addr ~= opt.listen and id ~= self_id and not busy_with(addr, id)
          and not retry_at[addr] then
        dial(addr, id)
      end
    end
  end)
end

local function on_inbound(err)
  if err or stopping then return end
  local tcp = uv.new_tcp()
  if not server:accept(tcp) then
    tcp:close()
    return
  end
  if inbound_count() >= MAX_INBOUND then
    tcp:close()
    return
  end
  local c = new_conn(tcp, "inbound")
  local peer = tcp:getpeername()
  c.remote_ip = peer and peer.ip or "?"
  c.connected = true
  c.deadline = uv.now() + HELLO_TIMEOUT
  send(c, hello_line())
  start_reading(c)
end

local function status_line(final)
  local out, inb, dialling, peers = 0, 0, 0, {}
  for _, c in pairs(conns) do
    if not c.good then
      if c.dir == "outbound" then dialling = dialling + 1 end
    elseif c.dir == "outbound" then
      out = out + 1
      peers[#peers + 1] = c.remote_id .. "/out"
    else
      inb = inb + 1
      peers[#peers + 1] = c.remote_id .. "/in"
    end
  end
  table.sort(peers)
  log("info", final and "final status" or "status", "id", self_id, "listen", opt.listen, "want", opt.peers,
    "outbound", out, "inbound", inb, "dialling", dialling,
    "peers", #peers > 0 and table.concat(peers, ",") or "none",
    "events_ok", stats.events_ok, "events_refused", stats.events_refused, "book_fed", stats.book_fed,
    "api_errors", stats.api_errors, "dropped", stats.dropped)
end

---------------------------------------------------------------------------
-- start and stop

local function every(ms, fn, first)
  local t = uv.new_timer()
  t:start(first or ms, ms, fn)
  timers[#timers + 1] = t
  return t
end

local function stop(why, code)
  if stopping then return end
  stopping = true
  exit_code = code or 0
  log("info", "stopping", "reason", why)
  for _, t in ipairs(timers) do t:stop() end
  if server and not server:is_closing() then server:close() end
  status_line(true)
  local all = {}
  for _, c in pairs(conns) do all[#all + 1] = c end
  for _, c in ipairs(all) do close_conn(c, "shutdown") end
  local t0 = uv.now()
  local drain = uv.new_timer()
  drain:start(0, 50, function()
    if api_idle() or uv.now() - t0 >= DRAIN_MS then
      drain:stop()
      uv.walk(function(h)
        if not h:is_closing() then h:close() end
      end)
    end
  end)
end

local function on_signal(name)
  return function()
    if stopping then
      log("warn", "second signal: exiting now", "signal", name)
      os.exit(1)
    end
    stop(name)
  end
end

for _, name in ipairs({ "sigint", "sigterm" }) do
  local s = uv.new_signal()
  s:start(name, on_signal(name))
end

local function run()
  if stopping then return end
  server = uv.new_tcp()
  local ok, err = server:bind(opt.listen_ip, opt.listen_port)
  if ok then ok, err = server:listen(64, on_inbound) end
  if not ok then
    log("error", "cannot listen", "addr", opt.listen, "error", err)
    return stop("cannot listen", 1)
  end
  log("info", "node listening", "addr", opt.listen, "id", self_id, "peerd", opt.peerd, "want", opt.peers)
  every(DIAL_EVERY, dial_round, 1)
  every(STATUS_EVERY, function() status_line(false) end)
  if opt.duration then
    every(math.floor(opt.duration * 1000), function() stop("duration") end)
  end
end

-- Our node_id: peerd's (GET /v1/status, else GET /v1/self), a few tries.
local function fetch_id(try)
  if stopping then return end
  if try > ID_TRIES then
    log("error", "no node_id from peerd", "peerd", opt.peerd, "tries", ID_TRIES)
    return stop("no node_id", 1)
  end
  local function retry(why)
    if try == 1 then log("info", "waiting for peerd's node_id", "peerd", opt.peerd, "error", why) end
    local t = uv.new_timer()
    t:start(1000, 0, function()
      t:close()
      fetch_id(try + 1)
    end)
  end
  api("GET", "/v1/status", nil, function(_, doc)
    local id = type(doc) == "table" and valid_id(doc.node_id)
    if id then
      self_id = id
      return run()
    end
    api("GET", "/v1/self", nil, function(status, sdoc, text)
      id = type(sdoc) == "table" and valid_id(sdoc.node_id)
      if id then
        self_id = id
        return run()
      end
      retry(status and ("HTTP " .. status) or text)
    end, true)
  end, true)
end

if self_id then run() else fetch_id(1) end
uv.run()
if logfile then logfile:close() end
os.exit(exit_code)
