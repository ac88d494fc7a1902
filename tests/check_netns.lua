-- ctest `netns`: the suite runs where nothing can leave the machine.
-- scripts/test runs the builds and ctest inside a fresh network namespace
-- with only `lo` up and exports PEERD_TEST_NETNS=1; this checks that it is
-- so. Without PEERD_TEST_NETNS=1 it exits 77 (ctest: skipped) before
-- touching the network. Checks, each bounded in time:
--   (a) the only network interface is lo, and it is up: /proc/self/net/dev
--       and `ip -o link` (netlink), both of this process's namespace
--       (/sys/class/net is not: sysfs shows the namespace of whoever
--       mounted it, which `unshare --net` alone does not change);
--   (b) a TCP connect to public and private addresses fails at once, with
--       "no route" (ENETUNREACH and the like), well within 2 s each;
--   (c) loopback works: a listener on 127.0.0.1 and a connect to it
--       exchange bytes.
-- Run by hand:  PEERD_TEST_NETNS=1 lua5.4 tests/check_netns.lua
-- (outside a namespace that must fail, on (a) first.)
if os.getenv("PEERD_TEST_NETNS") ~= "1" then
  print("SKIP: PEERD_TEST_NETNS is not 1: not inside the test network namespace " ..
    "(scripts/test sets it; PEERD_TEST_NO_NETNS=1 runs without one)")
  os.exit(77)
end

local uv = require("luv")

local failed = 0
local function check(ok, what)
  print((ok and "ok    " or "FAIL  ") .. what)
  if not ok then failed = failed + 1 end
end

-- Run the loop until done() or `secs` seconds; returns done() and the time.
local function run_until(done, secs)
  local t0 = uv.hrtime()
  while not done() and uv.hrtime() - t0 < secs * 1e9 do
    uv.run("nowait")
    if not done() then uv.sleep(5) end
  end
  return done(), (uv.hrtime() - t0) / 1e9
end

-- (a) interfaces ------------------------------------------------------------
local names = {}
local f = io.open("/proc/self/net/dev", "r")
if f then
  for line in f:lines() do
    local name = line:match("^%s*([^%s:|]+):")
    if name then names[#names + 1] = name end
  end
  f:close()
end
table.sort(names)
check(#names == 1 and names[1] == "lo",
  "only lo in /proc/self/net/dev (found: " .. table.concat(names, " ") .. ")")

local p = io.popen("ip -o link show 2>&1")
local out = p and p:read("a") or ""
if p then p:close() end
local links, lo_up = {}, false
for line in out:gmatch("[^\n]+") do
  local name, flags = line:match("^%d+:%s+([^:@%s]+)[^<]*<([^>]*)>")
  if name then
    links[#links + 1] = name
    if name == "lo" then lo_up = ("," .. flags .. ","):find(",UP,", 1, true) ~= nil end
  end
end
table.sort(links)
check(#links == 1 and links[1] == "lo",
  "only lo in `ip -o link show` (found: " .. (#links > 0 and table.concat(links, " ") or out) .. ")")
check(lo_up, "lo is up")

-- (b) nothing off the machine is reachable ---------------------------------
-- What a connect must fail with: no route (or a local refusal to send).
-- ECONNREFUSED or ETIMEDOUT would mean a packet went somewhere.
local NO_ROUTE = { ENETUNREACH = true, EHOSTUNREACH = true, EACCES = true, EPERM = true,
  EADDRNOTAVAIL = true, EAFNOSUPPORT = true }
local BOUND = 2 -- seconds
for _, target in ipairs({
  { "1.1.1.1", 80 }, { "8.8.8.8", 53 }, { "10.0.0.1", 80 }, { "192.168.1.1", 80 },
  { "2606:4700:4700::1111", 80 },
}) do
  local host, port = target[1], target[2]
  local tcp = uv.new_tcp()
  local result
  local ok_call, call_err = pcall(function()
    local _, e = tcp:connect(host, port, function(err) result = err or "connected" end)
    if e then result = e end -- refused synchronously
  end)
  if not ok_call then result = tostring(call_err) end
  local done, secs = run_until(function() return result ~= nil end, BOUND)
  if not tcp:is_closing() then tcp:close() end
  uv.run("nowait")
  local code = result and tostring(result):match("^(E[%u]+)")
  check(done and code ~= nil and NO_ROUTE[code] == true and secs < BOUND,
    string.format("connect %s port %d fails at once: %s after %.3f s", host, port,
      tostring(result or "no answer"), secs))
end

-- (c) loopback works ---------------------------------------------------------
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
local got, accepted = "", nil
assert(server:listen(8, function(err)
  if err then return end
  accepted = uv.new_tcp()
  server:accept(accepted)
  accepted:read_start(function(_, chunk) if chunk then got = got .. chunk end end)
end))
local port = server:getsockname().port
local client = uv.new_tcp()
local conn_err
client:connect("127.0.0.1", port, function(err)
  conn_err = err
  if not err then client:write("ping") end
end)
local done, secs = run_until(function() return got == "ping" or conn_err ~= nil end, BOUND)
check(done and got == "ping", string.format("loopback: 127.0.0.1:%d answered in %.3f s (%s)",
  port, secs, tostring(conn_err or got)))
for _, h in ipairs({ client, server, accepted }) do
  if h and not h:is_closing() then h:close() end
end
uv.run("nowait")

if failed > 0 then
  print(failed .. " check(s) failed: the tests are not isolated from the network")
  os.exit(1)
end
print("network namespace: only lo, nothing off the machine reachable")
os.exit(0)
