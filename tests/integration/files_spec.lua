-- luacheck: std +busted
-- The data directory's files at start: the temp files a crash left behind
-- are removed (only peerd's own names), a node_key open to group or others
-- stops the start (a lent --node-key is only warned about), a damaged
-- addrbook.json gives back every entry that still parses and is set aside
-- untouched. Real daemons on 127.0.0.1 with --p2p off (nothing dials), every
-- wait bounded.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")

local function mode_of(path)
  return (H.run_cmd("stat -c %a " .. H.sh_quote(path)):gsub("%s+$", ""))
end

-- Spawn peerd on data and wait for it to exit: its exit code and log.
local function start_fails(dir, extra)
  local log = dir .. "/fail-" .. tostring(H.uv.hrtime()) .. ".log"
  local args = { "--api", "127.0.0.1:0", "--p2p", "off", "--data-dir", dir .. "/data" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local p = H.spawn(args, log)
  local exited = H.wait_until(function() return p.exited end, 10)
  if not exited then p.handle:kill("sigkill") end
  H.wait_until(function() return p.exited end, 5)
  if not p.handle:is_closing() then p.handle:close() end
  assert.is_true(exited, H.read_file(log))
  return p.code, H.read_file(log)
end

describe("data directory files", function()
  local dir
  before_each(function()
    dir = H.tmpdir()
    os.execute("mkdir -m 700 " .. H.sh_quote(dir .. "/data"))
  end)
  after_each(function() H.rmdir(dir) end)

  it("removes only its own stale temp files at start and says how many", function()
    local data = dir .. "/data"
    local stale = { ".addrbook.json.tmp-aB3dE9", ".bans.json.tmp-000001", ".node_key.tmp-Zz9Zz9" }
    local keep = { ".other.json.tmp-aB3dE9", ".addrbook.json.tmp-aB3dE", "addrbook.json.tmp-aB3dE9",
      ".addrbook.json.tmp-aB3dE9.x", "notes.txt" }
    for _, n in ipairs(stale) do H.write_file(data .. "/" .. n, string.rep("x", 100)) end
    for _, n in ipairs(keep) do H.write_file(data .. "/" .. n, "keep") end
    os.execute("mkdir " .. H.sh_quote(data .. "/.reputation.json.tmp-DIR000"))
    local node = H.start({ "--p2p", "off" }, dir)
    local log = H.log_of(node)
    assert.truthy(log:find('msg="stale temp files removed" dir=' .. data .. ' removed=3 bytes=300',
      1, true), log)
    for _, n in ipairs(stale) do assert.is_false(H.exists(data .. "/" .. n), n) end
    for _, n in ipairs(keep) do assert.are.equal("keep", H.read_file(data .. "/" .. n), n) end
    assert.are.equal("0", H.run_cmd("test -d " .. H.sh_quote(data .. "/.reputation.json.tmp-DIR000")
      .. "; printf %s $?"))
    H.cleanup(node)
    -- nothing left: the next start says nothing about temps
    node = H.start({ "--p2p", "off" }, dir)
    assert.is_nil(H.log_of(node):find("stale temp", 1, true))
    H.cleanup(node)
  end)

  it("refuses a node_key open to group or others; only warns about a lent --node-key", function()
    local data = dir .. "/data"
    local node = H.start({ "--p2p", "off" }, dir)
    local id = node.node_id or H.status_of(node).node_id
    H.cleanup(node)
    local key = H.read_file(data .. "/node_key")
    assert.are.equal("600", mode_of(data .. "/node_key"))

    os.execute("chmod 640 " .. H.sh_quote(data .. "/node_key"))
    local code, log = start_fails(dir)
    assert.are.equal(1, code, log)
    assert.truthy(log:find("node key file is readable by group or others; refusing to start", 1,
      true), log)
    assert.truthy(log:find("mode=0640", 1, true), log)
    assert.truthy(log:find("chmod 600 " .. data .. "/node_key", 1, true), log)
    assert.are.equal("640", mode_of(data .. "/node_key")) -- not changed behind our back
    assert.are.equal(key, H.read_file(data .. "/node_key"))

    -- lent: the node's own file, used as it is, warned about, never chmod'ed
    local lent = dir .. "/lent_key"
    H.write_file(lent, key)
    os.execute("chmod 644 " .. H.sh_quote(lent))
    os.execute("rm " .. H.sh_quote(data .. "/node_key"))
    node = H.start({ "--p2p", "off", "--node-key", lent }, dir)
    log = H.log_of(node)
    assert.truthy(log:find("--node-key file is readable by group or others; using it", 1, true), log)
    assert.are.equal(id, H.status_of(node).node_id)
    H.cleanup(node)
    assert.are.equal("644", mode_of(lent))
  end)
  it("salvages every entry of a cut addrbook.json and sets the file aside untouched", function()
    local data = dir .. "/data"
    local node = H.start({ "--p2p", "off" }, dir)
    local addrs = {}
    for i = 1, 30 do addrs[#addrs + 1] = string.format("8.%d.%d.1:26656", i, i * 7 % 250) end
    local code, text = H.post(node, "/v1/book", { addrs = addrs, source = "9.9.9.9" })
    assert.are.equal(200, code, text)
    code, text = H.post(node, "/v1/save", {})
    assert.are.equal(200, code, text)
    H.cleanup(node)
    local book = H.read_file(data .. "/addrbook.json")
    -- cut in the middle of the 21st entry row
    local rows, cut, kept = 0, nil, {}
    local at = 1
    for line in book:gmatch("([^\n]*)\n") do
      if line:match('^"[%d%[]') then
        rows = rows + 1
        if rows == 21 then cut = at + 10 end
        if rows <= 20 then kept[#kept + 1] = line:match('^"(%S+)') end
      end
      at = at + #line + 1
    end
    -- (two of the 30 may have met in one new-table slot: the book's key is random)
    assert.is_true(rows >= 25, book)
    local damaged = book:sub(1, cut - 1)
    H.write_file(data .. "/addrbook.json", damaged)

    node = H.start({ "--p2p", "off" }, dir)
    local st = H.status_of(node)
    assert.is_false(st.load.ok)
    assert.are.equal(20, st.load.salvaged)
    assert.are.equal(1, st.load.lost)
    assert.are.equal(20, st.load.entries_loaded)
    assert.matches("addrbook%.json%.corrupt%-%d+", st.load.moved_to)
    assert.are.equal(damaged, H.read_file(st.load.moved_to)) -- set aside untouched
    local log = H.log_of(node)
    assert.truthy(log:find('msg="book damaged; kept the entries that still parse"', 1, true), log)
    assert.truthy(log:find("salvaged=20 lost=1 end_found=false", 1, true), log)
    local _, _, doc = H.get(node, "/v1/book?limit=1000")
    assert.are.equal(20, doc.total)
    local got = {}
    for _, e in ipairs(doc.entries) do got[#got + 1] = e.addr end
    table.sort(got)
    table.sort(kept)
    assert.are.same(kept, got) -- every complete row before the cut
    -- the next save writes the salvaged book, which loads cleanly
    H.cleanup(node)
    node = H.start({ "--p2p", "off" }, dir)
    st = H.status_of(node)
    assert.is_true(st.load.ok)
    assert.are.equal(H.cjson.null, st.load.salvaged)
    assert.are.equal(H.cjson.null, st.load.lost)
    assert.are.equal(20, st.load.entries_loaded)
    H.cleanup(node)
  end)
end)
