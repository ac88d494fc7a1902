-- luacheck: std +busted
-- Integration specs for the peerd daemon: real processes on 127.0.0.1 with
-- port 0, a fresh data directory each, driven over HTTP with curl.
-- Every wait is bounded in iterations and time; every daemon is stopped in a
-- `finally`, even when the test fails.
--
-- Run from the repo root:  PEERD_BIN=build/peerd lua5.4 /usr/bin/busted tests/integration
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv = H.uv
local cjson = H.cjson
local BIN = H.BIN
local sh_quote = H.sh_quote
local read_file = H.read_file
local write_file = H.write_file
local exists = H.exists
local tmpdir = H.tmpdir
local rmdir = H.rmdir
local wait_until = H.wait_until
local log_of = H.log_of
local start = H.start
local stop = H.stop
local cleanup = H.cleanup
local http = H.http
local get = H.get
local post = H.post
local status_of = H.status_of
local raw = H.raw
local count = H.count
local chunk = H.chunk
local run_cmd = H.run_cmd

-- SHA256d(01 00 00 00): Bitcoin Core's addrman test key (HashWriter{} << 1).
local BTC_TEST_KEY = "41f758f2e5cc078d3795b4fc0cb60c2d735fa92cc020572bdc982dd2d564d11b"

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
    local pipelined = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      .. "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
      .. "POST /v1/book HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
      .. chunk('{"addrs":["1.') .. chunk('2.3.4:26656"]}') .. "0\r\n\r\n"
      .. "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
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
    local req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
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
    -- (within the daemon's 30 s idle timeout, which would free slots)
    assert.is_true(wait_until(function() return connected + closed >= 260 end, 10))
    assert.is_true(wait_until(function() return closed >= 4 end, 10), "closed " .. closed)
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
    local node, again = start(), nil
    finally(function() -- one finally per test: busted keeps only the last one
      stop(again)
      cleanup(node)
    end)
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
    again = start(nil, node.dir)
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

    it("moves a truncated book aside and keeps the rows before the cut", function()
      local good = real_book(dir)
      local cut = good:sub(1, #good // 2)
      write_file(dir .. "/data/addrbook.json", cut)
      -- the complete rows before the cut (files_spec.lua covers salvage in detail)
      local rows = 0
      for line in cut:gmatch("([^\n]*)\n") do
        if line:match('^"33%.') then rows = rows + 1 end
      end
      local node = start(nil, dir)
      local st = status_of(node)
      stop(node)
      assert.is_false(st.load.ok)
      assert.matches("addrbook%.json%.corrupt%-%d+", st.load.moved_to)
      assert.are.equal(rows, st.load.salvaged)
      assert.are.equal(rows, st.book.new + st.book.tried)
      assert.are.equal(cut, read_file(st.load.moved_to))
      assert.matches('level=error msg="book damaged; kept the entries that still parse"', log_of(node))
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
    local node, strict = start({ "--allow-private" }), nil
    -- one finally per test: busted keeps only the last one registered
    finally(function()
      cleanup(strict)
      cleanup(node)
    end)
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
    strict = start()
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
    local dir, node = tmpdir(), nil
    finally(function() -- one finally per test: busted keeps only the last one
      stop(node)
      rmdir(dir)
    end)
    -- data directory whose parent does not exist
    local out, rc = run_cmd(sh_quote(BIN) .. " --api 127.0.0.1:0 --data-dir " .. sh_quote(dir .. "/no/such/dir"))
    assert.are.equal(1, rc, out)
    assert.matches('level=error msg="cannot create data directory"', out)
    -- API port already taken by another peerd
    node = start(nil, dir)
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
