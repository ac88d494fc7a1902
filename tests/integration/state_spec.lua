-- luacheck: std +busted
-- State that survives: bans (bans.json) and reputation records
-- (reputation.json) are saved beside the book and loaded at start, so a
-- restart or a corrupt book never forgets who misbehaved; a corrupt state
-- file is moved aside and the daemon runs without it; a book written before
-- bans.json existed hands its bans over. One data directory goes through
-- the steps in order (each `it` restarts the daemon on it). Real daemons on
-- 127.0.0.1, every wait bounded.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local cjson = H.cjson

local DAY = 86400
local BAD_IP = "127.0.0.21" -- the misbehaving peer (its own source address)

local function bans_of(node)
  local code, text, doc = H.get(node, "/v1/bans")
  assert.are.equal(200, code, text)
  local by = {}
  for _, b in ipairs(doc.bans) do by[b.subnet] = b end
  return by, #doc.bans
end

-- The node reports BAD_IP misbehaving again: the reply's misbehaviour count
-- and the length of the ban reputation.lua gave (24 h doubled per offence).
local function misbehaves(node)
  local code, text, doc = H.post(node, "/v1/events",
    { addr = BAD_IP .. ":26656", event = "misbehaved", reason = "again" })
  assert.are.equal(200, code, text)
  local ban = bans_of(node)[BAD_IP]
  assert.is_table(ban, text)
  return doc.misbehaviours, ban["until"] - ban.created
end

local function json_file(path)
  local text = assert(H.read_file(path), path)
  return cjson.decode(text)
end

local function corrupt_files(data, name)
  local out = H.run_cmd("ls " .. H.sh_quote(data))
  local n = 0
  for f in out:gmatch("[^\n]+") do
    if f:find(name .. ".corrupt-", 1, true) == 1 then n = n + 1 end
  end
  return n
end

describe("state that survives", function()
  local dir, data, node
  setup(function()
    dir = H.tmpdir()
    data = dir .. "/data"
  end)
  after_each(function()
    if node then
      local code = H.stop(node)
      local log = H.log_of(node)
      node = nil
      assert.are.equal(0, code, log)
      assert.is_nil(log:find("Sanitizer", 1, true), log)
    end
  end)
  teardown(function() H.rmdir(dir) end)

  it("saves bans and reputation in their own files, the book without bans", function()
    node = H.start({ "--allow-private" }, dir)
    -- a peer that sends garbage misbehaves: reputation.lua bans it 24 h
    local junk = {}
    for i = 1, 64 do junk[i] = string.char((i * 73 + 11) % 256) end
    local _, closed = H.raw_p2p(node, table.concat(junk), 10, nil, BAD_IP)
    assert.is_true(closed)
    assert.is_true(H.wait_until(function()
      return H.metric(node, 'peerd_bans_total{cause="wire"}') == 1
    end, 5), H.log_of(node))
    local code, text = H.post(node, "/v1/bans", { target = "10.9.0.0/16", duration = 3600,
      reason = "operator" })
    assert.are.equal(200, code, text)
    code, text = H.post(node, "/v1/book", { addrs = { "62.1.7.7:26656" } })
    assert.are.equal(200, code, text)
    assert.are.equal(1, H.metric(node, 'peerd_bans_total{cause="api"}'))
    assert.are.equal(0, H.metric(node, 'peerd_bans_total{cause="reputation"}'))
    local out, rc = H.run_cmd("curl -s --max-time 10 http://127.0.0.1:" .. node.port
      .. "/metrics | promtool check metrics")
    assert.are.equal(0, rc, out)
    local bans = bans_of(node)
    assert.are.equal(DAY, bans[BAD_IP]["until"] - bans[BAD_IP].created)

    assert.are.equal(0, H.stop(node))
    assert.matches('msg="book saved" reason=shutdown bytes=%d+ entries=1 bans=2 '
      .. 'reputation_records=1', H.log_of(node))
    node = nil
    local book = json_file(data .. "/addrbook.json")
    assert.are.same({}, book.bans)
    assert.are.equal(1, #book.entries)
    local saved = json_file(data .. "/bans.json")
    assert.are.equal("peerd-bans", saved.format)
    assert.are.equal(2, #saved.bans)
    local rep = json_file(data .. "/reputation.json")
    assert.are.equal("peerd-reputation", rep.format)
    assert.are.same({ BAD_IP, -30, 1 }, { rep.records[1][1], rep.records[1][2], rep.records[1][3] })
    for _, f in ipairs({ "bans.json", "reputation.json" }) do
      local mode = H.run_cmd("stat -c %a " .. H.sh_quote(data .. "/" .. f))
      assert.are.equal("600", mode:match("%d+"), f)
    end
  end)

  it("keeps the bans over a restart, and the next ban escalates", function()
    node = H.start({ "--allow-private" }, dir)
    local log = H.log_of(node)
    assert.matches('msg="bans loaded" file=bans.json bans=2 expired=0', log)
    assert.matches('msg="reputation loaded" file=reputation.json records=1', log)
    local bans, n = bans_of(node)
    assert.are.equal(2, n)
    assert.are.equal("operator", bans["10.9.0.0/16"].reason)
    -- the second offence: misbehaviour 2, banned 48 h (not 24 h again)
    local count, secs = misbehaves(node)
    assert.are.equal(2, count)
    assert.are.equal(2 * DAY, secs)
    assert.are.equal(1, H.metric(node, 'peerd_bans_total{cause="reputation"}'))
  end)

  it("sets a corrupt book aside and keeps the bans and the reputation", function()
    H.write_file(data .. "/addrbook.json", "this is not JSON {{{")
    node = H.start({ "--allow-private" }, dir)
    local st = H.status_of(node)
    assert.is_false(st.load.ok)
    assert.matches("addrbook%.json%.corrupt%-%d+", st.load.moved_to)
    assert.are.equal(0, st.book.new + st.book.tried)
    assert.matches('level=error msg="book load failed; starting with an empty book" .* '
      .. 'bans_kept=2 reputation_records_kept=1', H.log_of(node))
    local _, n = bans_of(node)
    assert.are.equal(2, n)
    local count, secs = misbehaves(node)
    assert.are.equal(3, count)
    assert.are.equal(4 * DAY, secs)
  end)

  it("sets corrupt bans.json and reputation.json aside and runs without them", function()
    H.write_file(data .. "/bans.json", "garbage")
    local rep = assert(H.read_file(data .. "/reputation.json"))
    H.write_file(data .. "/reputation.json", rep:sub(1, #rep // 2))
    node = H.start({ "--allow-private" }, dir)
    local log = H.log_of(node)
    assert.matches('level=error msg="state file load failed; moved aside, going on without it" '
      .. 'path=[^ ]*/bans%.json reason="not valid JSON[^"]*" moved_to=[^ ]*bans%.json%.corrupt%-%d+ '
      .. 'bans_kept=0', log)
    assert.matches('level=error msg="state file load failed; moved aside, going on without it" '
      .. 'path=[^ ]*/reputation%.json .* reputation_records_kept=0', log)
    assert.are.equal(1, corrupt_files(data, "bans.json"))
    assert.are.equal(1, corrupt_files(data, "reputation.json"))
    local code = H.get(node, "/health")
    assert.are.equal(200, code)
    local _, n = bans_of(node)
    assert.are.equal(0, n)
    local count, secs = misbehaves(node) -- a first offence again
    assert.are.equal(1, count)
    assert.are.equal(DAY, secs)
    -- the next save writes good files again (the bad ones stay aside)
    local c, t = H.post(node, "/v1/save", "")
    assert.are.equal(200, c, t)
    assert.are.equal(1, #json_file(data .. "/bans.json").bans)
    assert.are.equal(1, corrupt_files(data, "bans.json"))
    -- a state file that cannot be written fails the save, says which, and
    -- the other files are still written
    os.remove(data .. "/reputation.json")
    H.run_cmd("mkdir " .. H.sh_quote(data .. "/reputation.json"))
    H.post(node, "/v1/bans", { target = "10.8.0.0/16", duration = 3600 })
    local d
    c, t, d = H.post(node, "/v1/save", "")
    H.run_cmd("rmdir " .. H.sh_quote(data .. "/reputation.json"))
    assert.are.equal(500, c, t)
    assert.matches("^reputation%.json: ", d.error)
    assert.matches('level=error msg="state file save failed" file=reputation.json', H.log_of(node))
    assert.are.equal(2, #json_file(data .. "/bans.json").bans)
  end)
end)

describe("a book written before bans.json existed", function()
  it("hands its bans over to bans.json", function()
    local dir = H.tmpdir()
    H.run_cmd("mkdir -p " .. H.sh_quote(dir .. "/data"))
    H.write_file(dir .. "/data/addrbook.json", table.concat({
      '{"format":"peerd-addrbook","version":1,"saved_at":1700000002,',
      '"key":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","last_good":1,',
      '"columns":["addr","id","source","time","last_try","last_success","last_count_attempt",',
      '"attempts","tried","new_slots"],',
      '"entries":["62.1.7.7:26656 - 5.6.7.8 1700000000 0 0 0 0 0 -"],"collisions":[],',
      '"bans":[{"subnet":"198.51.0.0/16","created":1700000000,"until":0,"reason":"permanent"}]}\n',
    }))
    local node = H.start(nil, dir)
    finally(function() H.cleanup(node) end)
    assert.matches('msg="bans read from addrbook.json', H.log_of(node))
    local bans, n = bans_of(node)
    assert.are.equal(1, n)
    assert.are.equal("permanent", bans["198.51.0.0/16"].reason)
    local code, text = H.post(node, "/v1/save", "")
    assert.are.equal(200, code, text)
    local saved = json_file(dir .. "/data/bans.json")
    assert.are.equal("198.51.0.0/16", saved.bans[1].subnet)
    local book = json_file(dir .. "/data/addrbook.json")
    assert.are.same({}, book.bans)
    assert.are.equal(1, #book.entries)
  end)
end)
