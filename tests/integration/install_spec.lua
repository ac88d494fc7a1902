-- luacheck: std +busted
-- Integration specs for installing and running peerd as an operator does:
-- `cmake --install` into a scratch prefix and the installed peerd started
-- from another directory (it must use the installed policies, never the
-- source tree); the binary copied alone (the policies built into it); the
-- data directory's defaults ($STATE_DIRECTORY, ./peerd-data made
-- absolute); systemd's notify protocol against a stand-in socket (READY,
-- RELOADING, STOPPING); the unit checked by systemd-analyze; the .deb
-- built with cpack, its Depends and conffiles, unpacked into a scratch root
-- and run; the man page documenting every flag.
--
-- Needs PEERD_BUILD_DIR (the build tree, set by ctest), PEERD_SOURCE_DIR,
-- PEERD_NOTIFY_SINK (tests/tools/notify_sink). Every wait is bounded; every
-- daemon is stopped and every scratch directory removed in a `finally`.
package.path = "tests/integration/?.lua;" .. package.path
local H = require("harness")
local uv, sh_quote, tmpdir, rmdir = H.uv, H.sh_quote, H.tmpdir, H.rmdir
local wait_until, log_of, cleanup = H.wait_until, H.log_of, H.cleanup
local get, status_of, run_cmd, exists, read_file = H.get, H.status_of, H.run_cmd, H.exists,
  H.read_file

local BUILD = os.getenv("PEERD_BUILD_DIR") or "build"
local SOURCE = os.getenv("PEERD_SOURCE_DIR") or "."
local SINK = os.getenv("PEERD_NOTIFY_SINK") or (BUILD .. "/notify_sink")
local POLICY_FILES = { "dht.lua", "evict.lua", "pex.lua", "reputation.lua", "score.lua", "select.lua" }

local function realpath(p)
  local out = run_cmd("realpath " .. sh_quote(p))
  return (out:gsub("\n$", ""))
end

local function sanitized_build()
  return (read_file(BUILD .. "/CMakeCache.txt") or ""):find("PEERD_SANITIZE:BOOL=ON", 1, true) ~= nil
end

-- The environment a daemon gets: PATH and the sanitizers' options, plus extra
-- ("K=V" strings). Nothing else leaks in (no NOTIFY_SOCKET, no STATE_DIRECTORY
-- from whatever runs the tests).
local function env_with(extra)
  local env = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin") }
  for _, k in ipairs({ "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" }) do
    if os.getenv(k) then env[#env + 1] = k .. "=" .. os.getenv(k) end
  end
  for _, kv in ipairs(extra or {}) do env[#env + 1] = kv end
  return env
end

-- Start bin with args in cwd (--api 127.0.0.1:0, --p2p off are added), its
-- log in dir; wait for "api listening". A node for the harness's get/cleanup.
local function launch(bin, args, dir, opts)
  opts = opts or {}
  local node = { dir = dir, own_dir = false, p2p_off = true }
  node.log = dir .. "/peerd-" .. tostring(uv.hrtime()) .. ".log"
  local all = { "--api", "127.0.0.1:0", "--p2p", "off", "--log-level", "debug" }
  for _, a in ipairs(args or {}) do all[#all + 1] = a end
  local proc = { log = node.log, exited = false }
  local fd = assert(uv.fs_open(node.log, "a", tonumber("644", 8)))
  local handle, pid = uv.spawn(bin, { args = all, cwd = opts.cwd or dir, env = env_with(opts.env),
    stdio = { nil, nil, fd } }, function(code, signal)
    proc.exited, proc.code, proc.signal = true, code, signal
  end)
  uv.fs_close(fd)
  assert(handle, "cannot spawn " .. bin .. ": " .. tostring(pid))
  proc.handle, proc.pid = handle, pid
  node.proc = proc
  local ok = wait_until(function()
    node.port = log_of(node):match('msg="api listening" addr=127%.0%.0%.1:(%d+)')
    return proc.exited or node.port ~= nil
  end, 10)
  assert(ok and node.port, "peerd did not start:\n" .. log_of(node))
  node.port = tonumber(node.port)
  return node
end

-- /health answers and the status names the policy set and data directory.
local function check_running(node)
  local code, text, doc = get(node, "/health")
  assert.are.equal(200, code, text)
  assert.are.equal("ok", doc.status)
  local st = status_of(node)
  assert.are.equal(1, st.policy.generation, log_of(node))
  assert.are.same(POLICY_FILES, st.policy.files)
  return st
end

local function install_into(prefix)
  local out, rc = run_cmd("cmake --install " .. sh_quote(BUILD) .. " --prefix " .. sh_quote(prefix))
  assert.are.equal(0, rc, out)
end

describe("installed peerd", function()
  it("runs from a scratch prefix on the installed policies, from another directory", function()
    local scratch, node = tmpdir(), nil
    finally(function()
      if node then cleanup(node) end
      rmdir(scratch)
    end)
    local prefix = scratch .. "/prefix"
    install_into(prefix)
    for _, f in ipairs({ "bin/peerd", "share/peerd/policies/README.md", "share/man/man8/peerd.8",
      "share/doc/peerd/examples/peerd.conf", "share/doc/peerd/README.md",
      "lib/systemd/system/peerd.service", "etc/peerd/peerd.conf",
      "share/peerd/examples/scenarios/bootstrap.lua" }) do
      assert.is_true(exists(prefix .. "/" .. f), f .. " not installed")
    end
    for _, f in ipairs(POLICY_FILES) do
      assert.are.equal(read_file(SOURCE .. "/policies/" .. f),
        read_file(prefix .. "/share/peerd/policies/" .. f), f)
    end
    if exists(BUILD .. "/peerctl") then
      assert.is_true(exists(prefix .. "/bin/peerctl"), "peerctl not installed")
    end
    if exists(SOURCE .. "/man/peerctl.1") then
      assert.is_true(exists(prefix .. "/share/man/man1/peerctl.1"), "peerctl.1 not installed")
    end
    -- the unit names this prefix's binary and config
    local unit = read_file(prefix .. "/lib/systemd/system/peerd.service")
    assert.truthy(unit:find("\nExecStart=" .. prefix .. "/bin/peerd --config " .. prefix ..
      "/etc/peerd/peerd.conf\n", 1, true), unit)
    -- an operator's edited config survives a second install
    H.write_file(prefix .. "/etc/peerd/peerd.conf", "max_inbound = 12\n")
    install_into(prefix)
    assert.are.equal("max_inbound = 12\n", read_file(prefix .. "/etc/peerd/peerd.conf"))

    local elsewhere = scratch .. "/elsewhere"
    assert(os.execute("mkdir " .. sh_quote(elsewhere)))
    node = launch(prefix .. "/bin/peerd", { "--data-dir", scratch .. "/data" }, scratch,
      { cwd = elsewhere })
    local st = check_running(node)
    local want = realpath(prefix .. "/share/peerd/policies")
    assert.are.equal("dir", st.policy.source)
    assert.are.equal(want, st.policy.dir)
    assert.is_nil(st.policy.dir:find(realpath(SOURCE), 1, true))
    assert.are.equal(scratch .. "/data", st.data_dir)
    assert.matches('policies_from=installed', log_of(node))
    assert.is_nil(log_of(node):find("cannot watch", 1, true), log_of(node))
    -- nothing was written where it started
    assert.are.equal("", run_cmd("ls -A " .. sh_quote(elsewhere)))
  end)

  it("runs as a binary copied alone, on the policies built into it", function()
    local scratch, nodes = tmpdir(), {}
    finally(function()
      for _, n in ipairs(nodes) do cleanup(n) end
      rmdir(scratch)
    end)
    assert(os.execute("mkdir " .. sh_quote(scratch .. "/bin") .. " " .. sh_quote(scratch .. "/cwd")))
    local bin = scratch .. "/bin/peerd"
    assert(os.execute("cp " .. sh_quote(BUILD .. "/peerd") .. " " .. sh_quote(bin)))
    -- no --data-dir: ./peerd-data of the start directory, made absolute
    local node = launch(bin, {}, scratch, { cwd = scratch .. "/cwd" })
    nodes[#nodes + 1] = node
    local st = check_running(node)
    assert.are.equal("builtin", st.policy.source)
    assert.are.equal(H.cjson.null, st.policy.dir)
    assert.are.equal(scratch .. "/cwd/peerd-data", st.data_dir)
    assert.is_true(exists(scratch .. "/cwd/peerd-data/node_key"))
    local log = log_of(node)
    assert.matches("policies_from=builtin", log)
    assert.matches("built into the binary %(nothing to watch", log)
    assert.matches("data_dir=" .. scratch .. "/cwd/peerd%-data data_dir_from=default", log)
    -- the same policies as the source tree's: the same hash as a directory load
    local fromdir = launch(BUILD .. "/peerd", { "--policies", SOURCE .. "/policies",
      "--data-dir", scratch .. "/d2" }, scratch)
    nodes[#nodes + 1] = fromdir
    assert.are.equal(status_of(fromdir).policy.hash, st.policy.hash)
    -- a reload reloads the built-in copy
    node.proc.handle:kill("sighup")
    assert.is_true(wait_until(function() return status_of(node).policy.generation == 2 end, 5))

    -- $STATE_DIRECTORY (systemd's StateDirectory=) when no --data-dir is given
    local state = scratch .. "/state"
    assert(os.execute("mkdir -m 700 " .. sh_quote(state)))
    local sd = launch(bin, {}, scratch, { cwd = scratch .. "/cwd", env = { "STATE_DIRECTORY=" ..
      state .. ":/nonexistent/other" } })
    nodes[#nodes + 1] = sd
    assert.are.equal(state, status_of(sd).data_dir)
    assert.is_true(exists(state .. "/node_key"))
    assert.matches("data_dir_from=STATE_DIRECTORY", log_of(sd))
  end)

  it("tells systemd when it is ready, reloading and stopping ($NOTIFY_SOCKET)", function()
    local scratch, node, sink = tmpdir(), nil, nil
    finally(function()
      if node then cleanup(node) end
      if sink and not sink.exited then sink.handle:kill("sigkill") end
      if sink and not sink.handle:is_closing() then sink.handle:close() end
      uv.run("nowait") -- let the close finish
      rmdir(scratch)
    end)
    local sock = "@peerd-notify-test-" .. tostring(uv.os_getpid()) .. "-" .. tostring(uv.hrtime())
    local out = scratch .. "/sink.out"
    sink = { exited = false }
    local fd = assert(uv.fs_open(out, "w", tonumber("644", 8)))
    sink.handle = assert(uv.spawn(SINK, { args = { sock, "4", "30" }, stdio = { nil, fd, fd } },
      function(code) sink.exited, sink.code = true, code end))
    uv.fs_close(fd)
    assert.is_true(wait_until(function() return (read_file(out) or ""):find("listening") end, 5))
    node = launch(BUILD .. "/peerd", { "--data-dir", scratch .. "/data" }, scratch,
      { env = { "NOTIFY_SOCKET=" .. sock } })
    local pid = "pid=" .. tostring(node.proc.pid) .. " "
    local function lines() return read_file(out) or "" end
    assert.is_true(wait_until(function() return lines():find(pid .. "READY=1", 1, true) end, 5),
      lines())
    node.proc.handle:kill("sighup")
    assert.is_true(wait_until(function() return H.count(lines(), "READY=1") == 2 end, 5), lines())
    assert.matches(pid:gsub("%p", "%%%0") .. "RELOADING=1 MONOTONIC_USEC=%d+\n" ..
      pid:gsub("%p", "%%%0") .. "READY=1", lines())
    assert.matches('msg="policy loaded".-trigger=SIGHUP', log_of(node))
    cleanup(node) -- SIGTERM, exit status 0
    node = nil
    assert.is_true(wait_until(function() return sink.exited end, 5), lines())
    assert.are.equal(0, sink.code, lines())
    assert.truthy(lines():find(pid .. "STOPPING=1", 1, true), lines())
  end)

  it("has a unit that systemd-analyze accepts", function()
    if run_cmd("command -v systemd-analyze") == "" then
      pending("systemd-analyze is not installed")
      return
    end
    local scratch = tmpdir()
    finally(function() rmdir(scratch) end)
    install_into(scratch .. "/prefix")
    local unit = scratch .. "/prefix/lib/systemd/system/peerd.service"
    local out, rc = run_cmd("systemd-analyze verify --man=no " .. sh_quote(unit))
    assert.are.equal(0, rc, out)
    -- a unit's problems are printed as "FILE:LINE: ..." (unknown keys and bad
    -- values too, which leave the exit status 0)
    assert.is_nil(out:find("peerd.service", 1, true), out)
    -- and a broken one is reported
    H.write_file(scratch .. "/bad.service", read_file(unit):gsub("ProtectSystem=strict", "ProtectSystem=strictt"))
    out = run_cmd("systemd-analyze verify --man=no " .. sh_quote(scratch .. "/bad.service"))
    assert.matches("bad%.service:%d+: .*strictt", out)
  end)

  it("packages as a .deb (cpack) that unpacks and runs", function()
    if sanitized_build() then
      pending("not in a sanitizer build (its binary is no package)")
      return
    end
    local scratch, node = tmpdir(), nil
    finally(function()
      if node then cleanup(node) end
      rmdir(scratch)
    end)
    -- The build is complete (ctest runs after it): CPACK_CMAKE_GENERATOR=Ninja
    -- only skips cpack's "preinstall" step (a `make all` over every target,
    -- ~5-8 s on 2 busy cores); install and packaging are cpack's own.
    local out, rc = run_cmd("cd " .. sh_quote(BUILD) .. " && cpack -G DEB -D CPACK_CMAKE_GENERATOR=Ninja -B " ..
      sh_quote(scratch .. "/pkg"))
    assert.are.equal(0, rc, out)
    local arch = run_cmd("dpkg --print-architecture"):gsub("\n", "")
    local version = read_file(BUILD .. "/CPackConfig.cmake"):match('CPACK_PACKAGE_VERSION "([^"]+)"')
    local deb = scratch .. "/pkg/peerd_" .. version .. "_" .. arch .. ".deb"
    assert.is_true(exists(deb), out)
    local depends = run_cmd("dpkg-deb -f " .. sh_quote(deb) .. " Depends")
    for _, pkg in ipairs({ "liblua5.4-0", "libuv1", "libjansson4", "libsodium23", "libssl3",
      "libhttp-parser2.9" }) do
      assert.matches(pkg:gsub("%p", "%%%0") .. " %(>=", depends)
    end
    local ctl = scratch .. "/control"
    out, rc = run_cmd("dpkg-deb -e " .. sh_quote(deb) .. " " .. sh_quote(ctl))
    assert.are.equal(0, rc, out)
    assert.are.equal("/etc/peerd/peerd.conf\n", read_file(ctl .. "/conffiles"))
    local root = scratch .. "/root"
    out, rc = run_cmd("dpkg-deb -x " .. sh_quote(deb) .. " " .. sh_quote(root))
    assert.are.equal(0, rc, out)
    for _, f in ipairs({ "usr/bin/peerd", "usr/share/peerd/policies/select.lua",
      "usr/share/man/man8/peerd.8", "usr/share/doc/peerd/examples/peerd.conf",
      "etc/peerd/peerd.conf" }) do
      assert.is_true(exists(root .. "/" .. f), f .. " not in the package")
    end
    local unit = read_file(root .. "/usr/lib/systemd/system/peerd.service")
    assert.truthy(unit:find("\nExecStart=/usr/bin/peerd --config /etc/peerd/peerd.conf\n", 1, true))
    -- the shipped config is valid as it stands (every line a comment or a default)
    out, rc = run_cmd(sh_quote(root .. "/usr/bin/peerd") .. " config-check " ..
      sh_quote(root .. "/etc/peerd/peerd.conf"))
    assert.are.equal(0, rc, out)
    node = launch(root .. "/usr/bin/peerd", { "--config", root .. "/etc/peerd/peerd.conf",
      "--data-dir", scratch .. "/data" }, scratch, { cwd = "/" })
    local st = check_running(node)
    assert.are.equal(realpath(root .. "/usr/share/peerd/policies"), st.policy.dir)
  end)

  it("configures with -DPEERD_TESTS=OFF from the runtime libraries alone", function()
    if sanitized_build() then
      pending("once is enough: in the plain build")
      return
    end
    local scratch = tmpdir()
    finally(function() rmdir(scratch) end)
    -- pkg-config sees only the runtime libraries' .pc files (no cmocka)
    local pc = scratch .. "/pc"
    assert(os.execute("mkdir " .. sh_quote(pc)))
    for _, m in ipairs({ "lua5.4", "libuv", "jansson", "libsodium", "libcrypto" }) do
      local dir = run_cmd("pkg-config --variable=pcfiledir " .. m):gsub("\n", "")
      assert(os.execute("ln -s " .. sh_quote(dir .. "/" .. m .. ".pc") .. " " .. sh_quote(pc)))
    end
    local cc = (read_file(BUILD .. "/CMakeCache.txt") or ""):match("\nCMAKE_C_COMPILER:[%w]+=([^\n]+)")
    local cmd = "PKG_CONFIG_LIBDIR=" .. sh_quote(pc) .. " cmake -S " .. sh_quote(SOURCE) .. " -B " ..
      sh_quote(scratch .. "/b") .. " -DCMAKE_C_COMPILER=" .. sh_quote(cc or "cc")
    local out, rc = run_cmd(cmd .. " -DPEERD_TESTS=OFF")
    assert.are.equal(0, rc, out)
    local cache = read_file(scratch .. "/b/CMakeCache.txt")
    for _, tool in ipairs({ "BUSTED", "LUACHECK", "VALGRIND", "LUA54", "PROMTOOL", "CMOCKA" }) do
      assert.is_nil(cache:find("\n" .. tool .. "[%w_]*:", 1), tool .. " looked for")
    end
    assert.is_false(exists(scratch .. "/b/CTestTestfile.cmake"))
    -- the same tree with tests on needs cmocka, and says so
    out, rc = run_cmd(cmd .. " -DPEERD_TESTS=ON")
    assert.are_not.equal(0, rc, out)
    assert.matches("cmocka", out)
  end)

  it("documents every flag and subcommand of --help in peerd(8)", function()
    local help = run_cmd(sh_quote(BUILD .. "/peerd") .. " --help")
    local man = read_file(SOURCE .. "/man/peerd.8")
    assert.truthy(man, "man/peerd.8 is missing")
    local n = 0
    for flag in help:gmatch("%s(%-%-[a-z][a-z0-9-]+)") do
      n = n + 1
      local roff = flag:gsub("%-", "\\-")
      assert.truthy(man:find(roff, 1, true), flag .. " is not in man/peerd.8")
    end
    for sub in help:gmatch("\n  peerd ([a-z][a-z-]+)") do
      assert.truthy(man:find(sub:gsub("%-", "\\-"), 1, true), sub .. " is not in man/peerd.8")
    end
    assert.is_true(n > 30, help)
  end)
end)
