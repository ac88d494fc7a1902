-- luacheck: std +busted
-- peerd --config FILE and peerd config-check FILE: a real daemon started
-- from a config file (flags override it; GET /v1/status shows every setting
-- and where it came from), errors with FILE:LINE that stop the start before
-- anything is written, config-check's exit codes, and docs/config.md
-- listing every setting with the default peerd reports.
local H = require("tests.integration.harness")

local SRC = os.getenv("PEERD_SOURCE_DIR") or "."

local function conf(dir, text)
  local path = dir .. "/peerd.conf"
  H.write_file(path, text)
  return path
end

describe("a config file", function()
  it("sets the daemon up; flags override it; status shows where each value came from", function()
    local dir = H.tmpdir()
    local path = conf(dir, table.concat({
      "-- peerd.conf for config_spec",
      "max_inbound = 33",
      "ban_time = 3600",
      "allow_private = true",
      "services = { p2p = 26656 }",
      "attrs = { chain = \"cfg-test\" }",
      "external = \"127.78.1.1\"",
      "network = \"cfgnet\"",
    }, "\n") .. "\n")
    local node = H.start({ "--config", path, "--ban-time", "7200" })
    local st = H.status_of(node)
    local s = st.config.settings
    assert.are.equal(path, st.config.file)
    assert.are.same({ value = 33, source = "file" }, s.max_inbound)
    assert.are.same({ value = 7200, source = "flag" }, s.ban_time)
    assert.are.same({ value = true, source = "file" }, s.allow_private)
    assert.are.same({ value = 0, source = "flag" }, s.max_outbound) -- the harness's --max-outbound 0
    assert.are.same({ value = 4, source = "default" }, s.min_outbound)
    assert.are.same({ value = "debug", source = "flag" }, s.log_level) -- the harness's
    assert.are.same({ value = "logfmt", source = "default" }, s.log_format)
    assert.are.same({ p2p = 26656 }, s.services.value)
    assert.is_true(st.config.allow_private) -- the setting took effect
    -- and the values do what they say: the record carries them
    local _, _, me = H.get(node, "/v1/self")
    assert.are.equal("127.78.1.1:26656", me.services.p2p)
    assert.are.equal("cfg-test", me.attrs.chain)
    assert.are.equal("cfgnet", st.config.settings.network.value)
    H.cleanup(node)
    H.rmdir(dir)
  end)

  it("with a mistake stops peerd before it writes anything, naming FILE:LINE", function()
    local dir = H.tmpdir()
    local path = conf(dir, "max_inbound = 40\n\nmax_outbund = 8\n")
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --api 127.0.0.1:0 --p2p off --data-dir "
      .. H.sh_quote(dir .. "/data") .. " --config " .. H.sh_quote(path))
    assert.are.equal(2, rc, out)
    assert.matches(path .. ":3: unknown setting 'max_outbund'", out, 1, true)
    assert.is_false(H.exists(dir .. "/data")) -- nothing created
    -- a missing file
    out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " --p2p off --config " .. H.sh_quote(dir .. "/nope.conf"))
    assert.are.equal(2, rc, out)
    assert.matches("cannot read the config file", out, 1, true)
    H.rmdir(dir)
  end)
end)

describe("peerd config-check", function()
  it("prints the effective config and exits 0, or names the problem and exits 1", function()
    local dir = H.tmpdir()
    local good = conf(dir, "max_inbound = 12\nseeds = { \"127.0.0.1:7411\" }\n")
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " config-check " .. H.sh_quote(good) .. " --max-inbound 13")
    assert.are.equal(0, rc, out)
    assert.matches("max_inbound = 13  -- flag\n", out, 1, true)
    assert.matches("seeds = { \"127.0.0.1:7411\" }  -- file\n", out, 1, true)
    assert.matches("listen = \"0.0.0.0:7411\"  -- default\n", out, 1, true)
    local bad = dir .. "/bad.conf"
    H.write_file(bad, "max_inbound = \"many\"\n")
    out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " config-check " .. H.sh_quote(bad))
    assert.are.equal(1, rc, out)
    assert.matches(bad .. ":1: max_inbound must be an integer, got string", out, 1, true)
    out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " config-check")
    assert.are.equal(2, rc, out)
    H.rmdir(dir)
  end)

  it("docs/config.md documents every setting with the default peerd reports", function()
    local dir = H.tmpdir()
    local empty = conf(dir, "-- nothing set\n")
    local out, rc = H.run_cmd(H.sh_quote(H.BIN) .. " config-check " .. H.sh_quote(empty))
    assert.are.equal(0, rc, out)
    local doc = assert(H.read_file(SRC .. "/docs/config.md"))
    local n = 0
    for key, value in out:gmatch("\n([%w_]+) = (.-)  %-%- default") do
      n = n + 1
      if key ~= "policies" then -- its default depends on where peerd is installed
        -- a table row: | `key` | `--flag` | `default` | ...
        local row = doc:match("\n| `" .. key .. "` |[^\n]*")
        assert.is_not_nil(row, "docs/config.md has no row for " .. key)
        assert.matches("`" .. value .. "`", row, 1, true)
      end
    end
    assert.is_true(n >= 30, out)
    H.rmdir(dir)
  end)
end)
