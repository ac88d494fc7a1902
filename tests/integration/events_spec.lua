-- luacheck: std +busted
-- The audit events (issue 13): GET /v1/events/stream read by a raw-TCP
-- client sees every kind a daemon pair can be made to produce, in the
-- wire format `id: N\nevent: KIND\ndata: JSON\n\n`; ?kinds= filters,
-- Last-Event-ID replays; the same events are log lines, each once; a
-- client that does not read is dropped with a last comment line and the
-- daemon stays prompt; the streams are capped.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv = H.uv
local cjson = H.cjson

-- A raw-TCP event-stream client (luv). read = false: it never reads.
local function open_stream(node, path, headers, read)
  local s = { buf = "", closed = false, tcp = uv.new_tcp() }
  s.tcp:connect("127.0.0.1", node.port, function(err)
    if err then
      s.closed = true
      return
    end
    s.connected = true
    s.tcp:write("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. (headers or "") .. "\r\n")
    if read ~= false then s.start_reading() end
  end)
  function s.start_reading()
    s.tcp:read_start(function(err, chunk)
      if err or not chunk then
        s.closed = true
      else
        s.buf = s.buf .. chunk
      end
    end)
  end
  function s.close()
    if not s.tcp:is_closing() then s.tcp:close() end
    uv.run("nowait")
  end
  return s
end

-- The stream's events, each block checked: exactly `id`, `event`, `data`
-- lines in that order, data one JSON object whose seq/kind match them and
-- which has a ts in ms. Comment blocks (": ...") go to comments.
local function parse(s)
  local head, body = s.buf:match("^(.-\r\n\r\n)(.*)$")
  if not head then return {}, {}, nil end
  local events, comments = {}, {}
  -- only whole blocks (the last one may still be arriving)
  for block in body:gmatch("(.-)\n\n") do
    if block:sub(1, 1) == ":" then
      comments[#comments + 1] = block
    else
      local id, kind, data = block:match("^id: (%d+)\nevent: ([%w_]+)\ndata: ([^\n]+)$")
      assert(id, "malformed event block: " .. block)
      local doc = cjson.decode(data)
      assert.are.equal(tonumber(id), doc.seq)
      assert.are.equal(kind, doc.kind)
      assert.is_true(type(doc.ts) == "number" and doc.ts > 1.7e12, data)
      events[#events + 1] = doc
    end
  end
  return events, comments, head
end

local function find(s, pred)
  for _, e in ipairs((parse(s))) do
    if pred(e) then return e end
  end
  return nil
end

local function wait_event(s, what, pred, secs)
  local got
  assert.is_true(H.wait_until(function()
    got = find(s, pred)
    return got ~= nil
  end, secs or 10), "no " .. what .. " event; stream:\n" .. s.buf:sub(-3000))
  return got
end

local function kind_is(k, extra)
  return function(e) return e.kind == k and (extra == nil or extra(e)) end
end

-- Many requests on one keep-alive connection, pipelined; waits for every answer.
local function pipeline(node, reqs, secs)
  local out = H.raw(node, table.concat(reqs), function(buf)
    return H.count(buf, "HTTP/1%.1 %d%d%d ") >= #reqs
  end, secs or 10)
  return H.count(out, "HTTP/1%.1 %d%d%d ")
end

local function post_req(path, body, method)
  return string.format("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" ..
    "Content-Length: %d\r\n\r\n%s", method or "POST", path, #body, body)
end

local function count_lines(log, pat)
  local n = 0
  for line in log:gmatch("[^\n]+") do
    if line:find(pat) then n = n + 1 end
  end
  return n
end

describe("audit events", function()
  local a, b, pdir, s1, s2

  setup(function()
    -- the shipped policies, but evict.lua always hands a contested new slot
    -- to the newcomer (evictions on demand) and leaves tried to the C rule
    local src = (os.getenv("PEERD_SOURCE_DIR") or ".") .. "/policies"
    pdir = H.tmpdir()
    H.run_cmd("cp " .. H.sh_quote(src) .. "/*.lua " .. H.sh_quote(pdir))
    H.write_file(pdir .. "/evict.lua",
      "return { evict_new = function() return 'replace' end, evict_tried = function() return nil end }\n")
    -- a: wants one outbound peer, b, which is not there yet
    a = H.start({ "--listen", "127.98.0.1:0", "--allow-private", "--min-outbound", "1",
      "--below-min-warn", "1", "--persistent-peers", "127.99.0.1:47711", "--policies", pdir },
      nil, { log_level = "info" })
    s1 = open_stream(a, "/v1/events/stream?since=0")
    s2 = open_stream(a, "/v1/events/stream?kinds=ban,unban")
  end)

  teardown(function()
    if s1 then s1.close() end
    if s2 then s2.close() end
    H.cleanup(b)
    H.cleanup(a)
    H.rmdir(pdir)
  end)

  it("streams policy, dial, bootstrap and below-minimum events, then the recovery", function()
    assert.is_true(H.wait_until(function() return s1.buf:find("\r\n\r\n", 1, true) ~= nil end, 5))
    local _, _, head = parse(s1)
    assert.matches("^HTTP/1%.1 200 OK\r\n", head)
    assert.matches("Content%-Type: text/event%-stream\r\n", head)
    -- replayed from the ring (since=0): the start-up load
    local e = wait_event(s1, "policy_loaded", kind_is("policy_loaded"))
    assert.are.equal("start", e.trigger)
    assert.are.equal(1, e.generation)
    e = wait_event(s1, "dial_failed", kind_is("dial_failed"))
    assert.are.equal("127.99.0.1:47711", e.addr)
    assert.are.equal("refused", e.reason)
    assert.are.equal("outbound", e.direction)
    assert.are.equal("persistent", e.dial_reason)
    e = wait_event(s1, "bootstrap_started", kind_is("bootstrap_started"))
    assert.are.equal(1, e.round)
    assert.are.equal(0, e.outbound)
    e = wait_event(s1, "below_minimum", kind_is("below_minimum"))
    assert.are.equal(0, e.outbound)
    assert.are.equal(1, e.min_outbound)
    b = H.start({ "--listen", "127.99.0.1:47711", "--allow-private" })
    e = wait_event(s1, "dial_ok", kind_is("dial_ok"), 12)
    assert.are.equal("127.99.0.1:47711", e.addr)
    assert.are.equal(b.node_id, e.node_id)
    e = wait_event(s1, "connected", kind_is("connected"))
    assert.are.equal("outbound", e.direction)
    assert.are.equal(b.node_id, e.node_id)
    assert.is_number(e.conn)
    wait_event(s1, "minimum_recovered", kind_is("minimum_recovered"))
    e = wait_event(s1, "bootstrap_finished", kind_is("bootstrap_finished"))
    assert.are.equal(1, e.outbound)
    -- the same decisions are log lines (warn for failures)
    local log = H.log_of(a)
    assert.truthy(log:find('level=warn msg="dial failed" addr=127.99.0.1:47711', 1, true), log)
    assert.truthy(log:find('level=info msg="peer connected" addr=127.99.0.1:47711 node_id=' .. b.node_id, 1, true))
    assert.truthy(log:find('msg="policy loaded" generation=1 hash=%x+ files=[%w.,]+ trigger=start ' ..
      'event=policy_loaded seq=1'))
  end)

  it("streams bans (api, wire) and unbans, and the disconnects they cause", function()
    local code = H.post(a, "/v1/bans", { target = "127.99.0.1", reason = "audit test", duration = 60 })
    assert.are.equal(200, code)
    local e = wait_event(s1, "ban by api", kind_is("ban", function(x) return x.by == "api" end))
    assert.are.equal("127.99.0.1", e.subnet)
    assert.are.equal("audit test", e.reason)
    assert.is_number(e["until"])
    e = wait_event(s1, "disconnected (banned)", kind_is("disconnected", function(x)
      return x.addr == "127.99.0.1:47711"
    end))
    assert.are.equal("banned", e.reason)
    assert.is_false(e.remote)
    assert.is_true(e.ready)
    assert.is_number(e.duration_ms)
    assert.are.equal(200, (H.http(a, "DELETE", "/v1/bans?target=127.99.0.1")))
    e = wait_event(s1, "unban", kind_is("unban"))
    assert.are.equal("api", e.by)
    assert.are.equal("127.99.0.1", e.subnet)
    -- garbage on the peer port: a wire rejection, which the reputation rule bans
    H.raw_p2p(a, string.rep("\0", 64), 5, nil, "127.0.0.77")
    e = wait_event(s1, "ban by the wire", kind_is("ban", function(x) return x.trigger == "wire" end))
    assert.are.equal("127.0.0.77", e.subnet)
    assert.are.equal("policy", e.by) -- the shipped reputation.lua decided
    assert.are.equal("misbehaved", e.event)
    e = wait_event(s1, "inbound disconnected", kind_is("disconnected", function(x)
      return x.direction == "inbound" and x.addr:find("^127%.0%.0%.77:")
    end))
    assert.is_false(e.ready)
    assert.is_true(e.misbehaved)
    -- ?kinds=ban,unban saw those and nothing else
    local evs = parse(s2)
    assert.is_true(H.wait_until(function()
      evs = parse(s2)
      return #evs >= 3
    end, 5), s2.buf)
    for _, x in ipairs(evs) do assert.truthy(x.kind == "ban" or x.kind == "unban", x.kind) end
    -- one log line per decision: the API ban is logged once, at warn
    local log = H.log_of(a)
    assert.are.equal(1, count_lines(log, 'level=warn msg="ban added" subnet=127.99.0.1 by=api reason="audit test"'))
    assert.are.equal(1, count_lines(log, 'msg="peer disconnected" addr=127.99.0.1:47711 .* reason=banned'))
    assert.are.equal(1, count_lines(log, 'msg="ban lifted" subnet=127.99.0.1 by=api'))
    assert.are.equal(0, count_lines(log, 'msg="peer closed"'))
  end)

  it("streams evictions, tried collisions and their resolution, and policy failures", function()
    -- 12 groups of 40 addresses: each group shares one new bucket (64
    -- slots), so some land on taken slots and evict.lua hands them over
    local addrs = {}
    for g = 50, 61 do
      for i = 1, 40 do addrs[#addrs + 1] = string.format("127.%d.%d.%d:26656", g, i, i) end
    end
    local code, text = H.post(a, "/v1/book", { addrs = addrs, source = "127.60.0.1" })
    assert.are.equal(200, code, text)
    local e = wait_event(s1, "evict", kind_is("evict"))
    assert.are.equal("new", e.table)
    assert.are.equal("deleted", e.outcome)
    assert.are.equal("policy", e.by)
    assert.are.equal("evict_new", e.reason)
    assert.is_number(e.bucket)
    assert.is_number(e.position)
    assert.matches("^127%.%d+%.%d+%.%d+:26656$", e.replaced_by)
    -- every one of them connected: to tried, where some share a slot
    local reqs = {}
    for _, x in ipairs(addrs) do
      reqs[#reqs + 1] = post_req("/v1/events", cjson.encode({ addr = x, event = "good" }))
    end
    assert.are.equal(#reqs, pipeline(a, reqs))
    e = wait_event(s1, "tried_collision", kind_is("tried_collision"))
    assert.are.equal("tried", e.table)
    assert.are.equal("testing", e.outcome)
    assert.matches(":26656$", e.incumbent)
    -- the incumbent connected just now: the C rule keeps it (next tick)
    local addr = e.addr
    e = wait_event(s1, "collision_resolved", kind_is("collision_resolved", function(x)
      return x.addr == addr
    end), 5)
    assert.are.equal("kept", e.outcome)
    assert.are.equal("default", e.by)
    assert.are.equal("incumbent_connected_recently", e.reason)
    -- a broken policy file: the reload fails, the set in force stays
    H.write_file(pdir .. "/select.lua", "return {\n")
    assert.are.equal(422, (H.post(a, "/v1/policy/reload", {})))
    e = wait_event(s1, "policy_failed", kind_is("policy_failed", function(x) return x.trigger == "api" end))
    assert.matches("select%.lua", e.error)
    local log = H.log_of(a)
    assert.truthy(log:find('level=warn msg="policy load failed" error=', 1, true))
    assert.truthy(log:find('msg="book entry evicted" addr=', 1, true))
    assert.truthy(log:find('msg="tried collision" addr=', 1, true))
  end)

  it("replays from Last-Event-ID, counts events and request latency in /metrics", function()
    local evs = parse(s1)
    local last = evs[#evs].seq
    local s3 = open_stream(a, "/v1/events/stream", string.format("Last-Event-ID: %d\r\n", last - 3))
    assert.is_true(H.wait_until(function() return #(parse(s3)) >= 3 end, 5), s3.buf)
    local got = parse(s3)
    assert.are.equal(last - 2, got[1].seq)
    assert.are.equal(evs[#evs - 2].kind, got[1].kind)
    s3.close()
    assert.is_true(H.metric(a, 'peerd_audit_events_total{kind="evict"}') >= 1)
    assert.is_true(H.metric(a, 'peerd_audit_events_total{kind="ban"}') >= 2)
    assert.is_true(H.metric(a, 'peerd_api_request_seconds_count{route="/v1/events"}') >= 480)
    assert.is_true(H.metric(a, 'peerd_api_request_seconds_count{route="/v1/events/stream"}') >= 3)
    local out, rc = H.run_cmd("command -v promtool >/dev/null || exit 0; curl -s http://127.0.0.1:" ..
      a.port .. "/metrics | promtool check metrics")
    assert.are.equal(0, rc, out)
  end)

  it("drops a client that does not read, with a last comment line; the daemon stays prompt", function()
    local slow = open_stream(a, "/v1/events/stream?kinds=ban,unban", nil, false)
    assert.is_true(H.wait_until(function() return slow.connected end, 5))
    assert.is_true(H.wait_until(function() return H.metric(a, "peerd_event_streams") == 3 end, 5))
    local reason = string.rep("r", 90)
    local batches = 0
    while H.metric(a, "peerd_event_streams_dropped_total") == 0 and batches < 12 do
      batches = batches + 1
      local reqs = {}
      for i = 1, 150 do
        local t = string.format("10.%d.%d.0/24", batches, i)
        reqs[#reqs + 1] = post_req("/v1/bans", cjson.encode({ target = t, reason = reason }))
        reqs[#reqs + 1] = post_req("/v1/bans?target=" .. t, "", "DELETE")
      end
      assert.are.equal(#reqs, pipeline(a, reqs))
      -- the daemon answers at once meanwhile
      assert.are.equal(200, (H.get(a, "/health")))
    end
    assert.are.equal(1, H.metric(a, "peerd_event_streams_dropped_total"))
    assert.truthy(H.log_of(a):find('level=warn msg="event stream dropped: the client did not keep up"', 1, true))
    -- once it reads: what was on its way, the last comment, then the end
    slow.start_reading()
    assert.is_true(H.wait_until(function() return slow.closed end, 8), slow.buf:sub(-300))
    local _, comments = parse(slow)
    assert.truthy(comments[#comments]:find("^: dropped: "), comments[#comments])
    slow.close()
    -- the readers kept up: they are still there and still get events
    assert.are.equal(200, (H.post(a, "/v1/bans", { target = "10.200.0.0/16" })))
    wait_event(s2, "the last ban", kind_is("ban", function(x) return x.subnet == "10.200.0.0/16" end))
    assert.is_false(s1.closed)
    assert.are.equal(2, H.metric(a, "peerd_event_streams"))
  end)

  it("caps the streams open at once", function()
    local extra = {}
    for i = 1, 14 do extra[i] = open_stream(a, "/v1/events/stream?kinds=unban") end
    assert.is_true(H.wait_until(function() return H.metric(a, "peerd_event_streams") == 16 end, 5))
    local code, text = H.get(a, "/v1/events/stream")
    assert.are.equal(503, code)
    assert.matches("too many event streams", text)
    for _, s in ipairs(extra) do s.close() end
    assert.is_true(H.wait_until(function() return H.metric(a, "peerd_event_streams") == 2 end, 5))
  end)
end)
