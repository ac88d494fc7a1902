-- peerd.testing — a pure-Lua fake of peerd's policy host, for unit-testing
-- policies with busted (or plain asserts) under lua5.4, without building peerd.
--
-- It mirrors docs/policies.md: a `peerd` global (settable clock, seeded
-- random), a read-only `book` with the documented methods and entry fields,
-- `peer` tables, and a sandbox with the documented allow-list (reading an
-- undefined global and assigning any global raise; no os/io/debug/load; text
-- chunks only; `require` limited to the sibling modules of the same set).
-- Everything is deterministic: the same seeds give the same draws.
--
--   package.path = "./lua/?.lua;" .. package.path
--   local testing = require("peerd.testing")
--   local host = testing.host{ now = 1700000000, seed = 42 }
--   local book, ctl = host:book{
--     tried = { { addr = "1.2.3.4:26656", last_success = 1699990000 } },
--     new = { { addr = "5.6.7.8:26656" }, { addr = "9.9.9.9:26656", banned = true } },
--   }
--   local select = host:load("policies/select.lua")
--   local ids = select.select(book, 2)        -- call it directly, or
--   ids = host:call(select.select, book, 2)   -- under the instruction budget
--   print(ctl.calls.random)                   -- book:random draws so far
--
-- What it is not: the C book's bucket layout, its exact Select_ walk and its
-- RNG stream differ, so the same seed gives different picks than peerd does;
-- the memory cap and wall-clock deadline are not enforced (the instruction
-- budget is, in host:call and host:load).

local M = {}

M.MODULES = { "select", "score", "evict", "reputation", "pex", "dht" }
local IS_MODULE = {}
for _, m in ipairs(M.MODULES) do IS_MODULE[m] = true end

M.CALL_INSTRUCTIONS = 1000000
M.LOAD_INSTRUCTIONS = 10000000

-- Bitcoin Core's addrman constants (seconds), as the C book uses them.
local HORIZON, RETRIES, MAX_FAILURES, MIN_FAIL = 30 * 86400, 3, 10, 7 * 86400

-- ---- deterministic random: xorshift64 ----------------------------------------

-- Returns a generator with :float() in [0, 1), :int(m) in [1, m] and
-- :random(...) with math.random's argument forms (what peerd.random offers).
function M.rng(seed)
  local s = math.tointeger(seed) or 0
  s = s ~ 0x2545F4914F6CDD1D
  if s == 0 then s = 0x2545F4914F6CDD1D end
  local r = {}
  local function next64()
    s = s ~ (s << 13)
    s = s ~ (s >> 7)
    s = s ~ (s << 17)
    return s
  end
  function r.float() return (next64() >> 11) * 2.0 ^ -53 end
  function r.int(m) return 1 + math.floor(r.float() * m) end
  function r.random(m, n)
    if m == nil then return r.float() end
    local lo, hi
    if n == nil then
      lo, hi = 1, math.tointeger(m)
    else
      lo, hi = math.tointeger(m), math.tointeger(n)
    end
    if lo == nil or hi == nil then error("bad argument to 'peerd.random' (number has no integer representation)", 2) end
    if lo > hi then error("bad argument to 'peerd.random' (interval is empty)", 2) end
    return lo + math.floor(r.float() * (hi - lo + 1))
  end
  return r
end

-- ---- addresses -------------------------------------------------------------

local function ipv4(addr)
  local a, b, c, d = tostring(addr):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)")
  if a then return tonumber(a), tonumber(b), tonumber(c), tonumber(d) end
  return nil
end

-- Routable on the public internet (IPv4 rules; other forms: not loopback,
-- link-local or ULA).
function M.routable(addr)
  local a, b = ipv4(addr)
  if a then
    if a == 0 or a == 10 or a == 127 or a >= 224 then return false end
    if a == 169 and b == 254 then return false end
    if a == 172 and b >= 16 and b <= 31 then return false end
    if a == 192 and b == 168 then return false end
    if a == 100 and b >= 64 and b <= 127 then return false end
    if a == 198 and (b == 18 or b == 19) then return false end
    return true
  end
  local h = tostring(addr):match("^%[([^%]]*)%]") or tostring(addr)
  h = h:lower()
  if h == "::1" or h:match("^f[cd]") or h:match("^fe[89ab]") then return false end
  return true
end

-- The network group as book:group reports it: "00" for unroutable addresses,
-- "01" .. /16 for IPv4, "02" .. /32 for IPv6 (hex, lowercase).
function M.group(addr)
  if not M.routable(addr) then return "00" end
  local a, b = ipv4(addr)
  if a then return string.format("01%02x%02x", a, b) end
  local h = (tostring(addr):match("^%[([^%]]*)%]") or tostring(addr)):lower()
  local parts = {}
  for p in (h .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  local g1 = tonumber(parts[1] ~= "" and parts[1] or "0", 16) or 0
  local g2 = tonumber(parts[2] ~= "" and parts[2] or "0", 16) or 0
  return string.format("02%04x%04x", g1, g2)
end

-- ---- the fake peerd global and the host --------------------------------------

local Host = {}
Host.__index = Host

local function readonly(t, what)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k) error(what .. " is read-only (assignment to '" .. tostring(k) .. "')", 2) end,
    __metatable = false,
  })
end

-- opts: now (Unix s, default 1700000000), seed (default 1), version,
-- instructions (per-call budget of host:call, default 1,000,000).
function M.host(opts)
  opts = opts or {}
  local h = setmetatable({}, Host)
  h._now = math.tointeger(opts.now) or 1700000000
  h._rng = M.rng(opts.seed or 1)
  h.instructions = opts.instructions or M.CALL_INSTRUCTIONS
  h.peerd = readonly({
    now = function() return h._now end,
    random = function(m, n) return h._rng.random(m, n) end,
    version = opts.version or "0.0.0-testing",
  }, "peerd")
  return h
end

function Host:now() return self._now end
function Host:set_now(t) self._now = math.tointeger(t) or error("set_now: integer Unix seconds expected", 2) end
function Host:advance(secs) self._now = self._now + (math.tointeger(secs) or error("advance: integer seconds", 2)) end
function Host:seed(s) self._rng = M.rng(s) end

-- Run f(...) under an instruction budget (like the C host: a count hook; once
-- the budget is spent the hook fires on every instruction, so a policy's own
-- pcall cannot swallow it). f runs in a coroutine that carries the hook, so
-- the caller is never metered; yielding out of f is an error, as in peerd.
-- Errors propagate; results are returned.
local function with_budget(budget, f, ...)
  local co = coroutine.create(f)
  local used, step = 0, 1000
  local function hook()
    used = used + step
    if used > budget then
      debug.sethook(co, function() error("instruction budget exceeded", 2) end, "", 1)
      error("instruction budget exceeded", 2)
    end
  end
  debug.sethook(co, hook, "", step)
  local res = table.pack(coroutine.resume(co, ...))
  if not res[1] then error(res[2], 0) end
  if coroutine.status(co) ~= "dead" then
    coroutine.close(co)
    error("attempt to yield across the policy boundary", 0)
  end
  return table.unpack(res, 2, res.n)
end

function Host:call(f, ...)
  return with_budget(self.instructions, f, ...)
end

-- ---- the sandbox -------------------------------------------------------------

local BASE = { "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "rawequal", "rawget",
  "rawlen", "rawset", "select", "tonumber", "tostring", "type" }

local function copy(lib, drop)
  local t = {}
  for k, v in pairs(lib) do
    if not (drop and drop[k]) then t[k] = v end
  end
  return t
end

local Set = {}
Set.__index = Set

local function new_set(host, dir)
  return setmetatable({ host = host, dir = dir, modules = {}, loading = {}, texts = {} }, Set)
end

-- The environment of one file: the allow-list, read-only.
function Set:env()
  local g = {}
  for _, k in ipairs(BASE) do g[k] = _G[k] end
  g.unpack = table.unpack
  g.string = copy(string, { dump = true })
  g.table = copy(table)
  g.math = copy(math, { random = true, randomseed = true })
  g.utf8 = copy(utf8)
  g.coroutine = copy(coroutine)
  g.peerd = self.host.peerd
  g.require = function(name) return self:require(name) end
  return setmetatable({}, {
    __index = function(_, k)
      local v = g[k]
      if v == nil then error("undefined global '" .. tostring(k) .. "'", 2) end
      return v
    end,
    __newindex = function(_, k) error("assignment to global '" .. tostring(k) .. "'", 2) end,
    __metatable = false,
  })
end

local function read_text(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

-- Compile and run NAME.lua's text in its own environment; it must return a
-- table. Errors read "NAME.lua:LINE: message" or "NAME.lua: message".
function Set:run(name, text)
  local file = name .. ".lua"
  local chunk, err = load(text, "@" .. file, "t", self:env())
  if not chunk then error(err, 0) end
  local ok, mod = pcall(with_budget, M.LOAD_INSTRUCTIONS, chunk)
  if not ok then error(mod, 0) end
  if type(mod) ~= "table" then error(file .. ": must return a table (got " .. type(mod) .. ")", 0) end
  return mod
end

function Set:require(name)
  if type(name) ~= "string" or not IS_MODULE[name] then
    error("require: '" .. tostring(name) .. "' is not a policy module (select, score, evict, reputation, pex, dht)", 2)
  end
  if self.modules[name] then return self.modules[name] end
  if self.loading[name] then error("require: loop loading '" .. name .. "'", 2) end
  local text = self.texts[name]
  if text == nil and self.dir then text = read_text(self.dir .. "/" .. name .. ".lua") end
  if text == nil then error("require: module '" .. name .. "' is not in this policy set", 2) end
  self.loading[name] = true
  local ok, mod = pcall(self.run, self, name, text)
  self.loading[name] = nil
  if not ok then error(mod, 0) end
  self.modules[name] = mod
  return mod
end

local function split_path(path)
  local dir, base = path:match("^(.*)/([^/]+)$")
  if not dir then dir, base = ".", path end
  local name = base:match("^(.-)%.lua$")
  return dir, name
end

-- Load one policy file (a fresh set; its siblings in the same directory are
-- what `require` reaches). Returns the module table; raises with file:line.
function Host:load(path)
  local dir, name = split_path(path)
  if not name or not IS_MODULE[name] then
    error("load: '" .. tostring(path) .. "' is not one of select/score/evict/reputation/pex/dht.lua", 2)
  end
  local set = new_set(self, dir)
  local text, err = read_text(path)
  if not text then error(err, 2) end
  set.texts[name] = text
  return set:require(name)
end

-- Load a policy from text, as NAME.lua ("select", ...). `siblings` (optional)
-- maps other module names to their texts, for `require`.
function Host:load_string(text, name, siblings)
  if not IS_MODULE[name] then error("load_string: '" .. tostring(name) .. "' is not a policy module", 2) end
  local set = new_set(self, nil)
  for k, v in pairs(siblings or {}) do set.texts[k] = v end
  set.texts[name] = text
  return set:require(name)
end

-- Load every policy file present in dir into one set: {select = module, ...};
-- missing files are absent (peerd would use its C default for them).
function Host:load_set(dir)
  local set = new_set(self, dir)
  local out = {}
  for _, name in ipairs(M.MODULES) do
    local text = read_text(dir .. "/" .. name .. ".lua")
    if text then
      set.texts[name] = text
      out[name] = set:require(name)
    end
  end
  return out
end

-- ---- the fake book -----------------------------------------------------------

local function is_terrible(e, now)
  if now - e.last_try <= 60 then return false end
  if e.time > now + 600 then return true end
  if now - e.time > HORIZON then return true end
  if e.last_success == 0 and e.attempts >= RETRIES then return true end
  if now - e.last_success > MIN_FAIL and e.attempts >= MAX_FAILURES then return true end
  return false
end

local function chance_of(e, now)
  local c = 1.0
  if now - e.last_try < 600 then c = c * 0.01 end
  return c * 0.66 ^ math.min(e.attempts, 8)
end

local TABLES = { new = true, tried = true }

local function check_table(t, fname)
  if not TABLES[t] then error("book:" .. fname .. ": table must be \"new\" or \"tried\", got " .. tostring(t), 3) end
end

-- spec: { new = {entry, ...}, tried = {entry, ...}, seed = n }. An entry needs
-- `addr`; the rest default: node_id nil, source "0.0.0.0", group from addr,
-- attempts 0, last_try 0, last_success 0 (tried: now - 3600), time now - 600,
-- refs 1 (tried: 0), banned false, service_only false, no record (services,
-- attrs, record_seq nil; peerd false); `terrible` and `chance` are computed at
-- peerd.now() (Bitcoin Core's IsTerrible/GetChance) unless given.
-- Returns the policy-facing book and a controller:
--   ctl.calls[method]      number of calls of each book method
--   ctl:add(table, entry)  -> id
--   ctl:set(id, fields)    change fields of an entry (e.g. {banned = true})
--   ctl:raw(id)            the stored entry
function Host:book(spec)
  spec = spec or {}
  local host = self
  local rng = M.rng(spec.seed or 7)
  local entries, ids = {}, { new = {}, tried = {} }
  local next_id = 0
  local ctl = { calls = setmetatable({}, { __index = function() return 0 end }) }

  function ctl.add(_, tbl, e)
    check_table(tbl, "add")
    assert(type(e) == "table" and e.addr, "entry needs an addr")
    local now = host._now
    local tried = tbl == "tried"
    local s = {
      id = next_id,
      addr = e.addr,
      node_id = e.node_id,
      source = e.source or "0.0.0.0",
      group = e.group or M.group(e.addr),
      tried = tried,
      attempts = e.attempts or 0,
      last_try = e.last_try or 0,
      last_success = e.last_success or (tried and now - 3600 or 0),
      time = e.time or now - 600,
      refs = e.refs or (tried and 0 or 1),
      banned = e.banned or false,
      terrible = e.terrible,
      chance = e.chance,
      service_only = e.service_only or false,
      -- the node's record, when it has one (entry fields, as peerd's book gives them)
      services = e.services,
      attrs = e.attrs,
      peerd = e.peerd or false,
      record_seq = e.record_seq,
    }
    entries[next_id] = s
    ids[tbl][#ids[tbl] + 1] = next_id
    next_id = next_id + 1
    return s.id
  end
  function ctl.set(_, id, fields)
    local s = assert(entries[id], "unknown id")
    for k, v in pairs(fields) do s[k] = v end
  end
  function ctl.raw(_, id) return entries[id] end

  for _, t in ipairs({ "tried", "new" }) do -- ids from 0: tried first, then new
    for _, e in ipairs(spec[t] or {}) do ctl:add(t, e) end
  end

  local function terrible(s)
    if s.terrible ~= nil then return s.terrible end
    return is_terrible(s, host._now)
  end
  local function chance(s)
    if s.chance ~= nil then return s.chance end
    return chance_of(s, host._now)
  end

  local methods = {}
  local book
  local function method(name, f)
    methods[name] = function(b, ...)
      if b ~= book then error("book:" .. name .. ": call it with ':' (book:" .. name .. "(...))", 2) end
      ctl.calls[name] = ctl.calls[name] + 1
      return f(...)
    end
  end
  method("count", function(t) check_table(t, "count"); return #ids[t] end)
  method("size", function() return #ids.new + #ids.tried end)
  method("random", function(t, mode)
    check_table(t, "random")
    if mode ~= nil and mode ~= "select" and mode ~= "bucket" then
      error("book:random: mode must be \"select\" or \"bucket\", got " .. tostring(mode), 3)
    end
    local list = ids[t]
    if #list == 0 then return nil end
    -- "bucket" (bitcoind 0.9.3's draw, no chance test): here a uniform entry
    if mode == "bucket" then return list[rng.int(#list)] end
    -- Select_-like: a uniform candidate, accepted with its chance times a
    -- factor that grows by 1.2 on every refusal (so the loop ends).
    local factor = 1.0
    while true do
      local id = list[rng.int(#list)]
      if rng.float() < chance(entries[id]) * factor then return id end
      factor = factor * 1.2
    end
  end)
  method("entry", function(id)
    local s = entries[id]
    if not s then return nil end
    local e = copy(s)
    e.terrible, e.chance = terrible(s), chance(s)
    return e
  end)
  method("group", function(id) local s = entries[id]; return s and s.group end)
  method("tried", function(id) local s = entries[id]; return s ~= nil and s.tried end)
  method("terrible", function(id) local s = entries[id]; return s ~= nil and terrible(s) end)
  method("banned", function(id) local s = entries[id]; return s ~= nil and s.banned end)
  method("chance", function(id) local s = entries[id]; return s and chance(s) or 0 end)
  method("attr", function(id, key)
    local s = entries[id]
    return s and s.attrs and s.attrs[key] or nil
  end)

  book = readonly(methods, "book")
  return book, ctl
end

-- A synthetic book: opts.new and opts.tried entries (default: full, 65,536 and
-- 16,384, peerd's capacity), spread over opts.groups IPv4 /16 groups (default
-- 4,096); every opts.banned_every-th entry banned and every
-- opts.terrible_every-th terrible (0 = none).
function Host:synthetic_book(opts)
  opts = opts or {}
  local nnew, ntried = opts.new or 65536, opts.tried or 16384
  local groups = opts.groups or 4096
  local banned_every, terrible_every = opts.banned_every or 0, opts.terrible_every or 0
  local book, ctl = self:book({ seed = opts.seed })
  local i = 0
  local function add(tbl)
    i = i + 1
    local g = i % groups
    local a, b = 11 + (g >> 8) % 150, g & 255
    ctl:add(tbl, {
      addr = string.format("%d.%d.%d.%d:%d", a, b, (i >> 8) & 255, i & 255, 26656 + (i >> 16)),
      group = string.format("01%02x%02x", a, b),
      banned = banned_every > 0 and i % banned_every == 0,
      terrible = (terrible_every > 0 and i % terrible_every == 0) or nil,
    })
  end
  for _ = 1, ntried do add("tried") end
  for _ = 1, nnew do add("new") end
  return book, ctl
end

-- A `peer` table (score, on_event, accept, share) with the documented fields;
-- `fields` overrides the defaults (a never-tried, routable address we know
-- nothing about).
function M.peer(fields)
  fields = fields or {}
  local addr = fields.addr or "1.2.3.4:26656"
  local p = {
    addr = addr, node_id = nil, known = false, tried = false, attempts = 0,
    last_try = 0, last_success = 0, time = 0, first_seen = 0, latency_ms = nil,
    reputation = 0, misbehaviours = 0, banned = false, private = false,
    routable = M.routable(addr), group = M.group(addr),
    service_only = false, peerd = false, -- services, attrs, record_seq: nil without a record
  }
  for k, v in pairs(fields) do p[k] = v end
  return p
end

return M
