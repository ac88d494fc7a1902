-- docfigures.lua — figures quoted in docs/*.md, checked against the command
-- that produces them (docs/scenarios.md, "Figures in these docs are checked").
--
-- A figure carries a marker, an HTML comment next to it (invisible when the
-- page is rendered):
--
--   <!-- check: peerd sim examples/scenarios/bootstrap.lua --seed 1
--        | events = 27246 | results.t_95pct_min_outbound = 2.0 -->
--   <!-- check expensive: peerd sim ... | results.eclipse.default[2].eclipsed = 1 -->
--
-- * `check`, then flags (`expensive`: skipped by the test suite, run by
--   `scripts/check-doc-figures --all`), then `:`.
-- * The command: `peerd sim SCENARIO ARGS...`, paths relative to the
--   repository's root; the checker runs it with the built peerd, adds
--   `--out DIR` (and no gnuplot: plots are not figures) and reads
--   DIR/results.json. Words of [A-Za-z0-9._/=,:+-] only (no shell).
-- * Then, after each `|`, `PATH = VALUE`: PATH walks results.json from its
--   root (`events`, `results.x`, `results.eclipse.default[2].eclipsed`,
--   arrays from 1); VALUE is `true`/`false`, a "string", an integer (the
--   number must equal it), a decimal (the number rounded to the quoted
--   digits must print as quoted: 0.69 matches 0.6875), or `V ± TOL` (also
--   `V +- TOL`: |number - V| <= TOL).
-- The lab is deterministic for a scenario, its parameters and its seed, so
-- quoting digits exactly is right: a figure that moves is a changed result.
--
-- As a module: M.parse(text, file) -> markers (raises "file:line: ..." on a
-- malformed one), M.run(marker, opts) -> results document or nil, error,
-- M.compare(check, doc) -> ok, message, M.check_files(files, opts) -> report.
-- As a program (scripts/check-doc-figures): [--all] [--list] [--bin PEERD]
-- [FILE.md ...] (default: docs/*.md).

local M = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local FLAGS = { expensive = true }

-- "a.b[2].c" -> { "a", "b", 2, "c" } or nil
local function parse_path(p)
  local out = {}
  local pos = 1
  while pos <= #p do
    local key, nxt = p:match("^([%a_][%w_]*)()", pos)
    if not key then return nil end
    out[#out + 1] = key
    pos = nxt
    while p:sub(pos, pos) == "[" do
      local idx, n2 = p:match("^%[(%d+)%]()", pos)
      if not idx then return nil end
      out[#out + 1] = math.tointeger(tonumber(idx))
      pos = n2
    end
    if pos <= #p then
      if p:sub(pos, pos) ~= "." then return nil end
      pos = pos + 1
      if pos > #p then return nil end
    end
  end
  return #out > 0 and out or nil
end

-- "= VALUE [± TOL]" -> a check table, or nil, why
local function parse_value(v)
  local val, tol = v:match("^(%S+)%s*±%s*(%S+)$")
  if not val then val, tol = v:match("^(%S+)%s*%+%-%s*(%S+)$") end
  if val then
    local x, t = tonumber(val), tonumber(tol)
    if not x or not t or t < 0 then return nil, "a tolerance needs numbers: V ± TOL" end
    return { kind = "tolerance", value = x, tol = t, text = v }
  end
  if v == "true" or v == "false" then return { kind = "boolean", value = v == "true", text = v } end
  local str = v:match('^"(.*)"$')
  if str then return { kind = "string", value = str, text = v } end
  if v:match("^%-?%d+$") then return { kind = "integer", value = tonumber(v), text = v } end
  local digits = v:match("^%-?%d+%.(%d+)$")
  if digits then return { kind = "digits", value = tonumber(v), digits = #digits, text = v } end
  return nil, "value must be true, false, \"string\", an integer, a decimal or V ± TOL; got " .. v
end

-- Fenced code blocks (``` ... ```) blanked, newlines kept: a marker shown
-- as an example in a code block is not a marker.
local function blank_fences(text)
  local out, inside = {}, false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^%s*```") then
      inside = not inside
      out[#out + 1] = ""
    else
      out[#out + 1] = inside and "" or line
    end
  end
  return table.concat(out, "\n")
end

-- All markers of one document's text: comments that begin a line (after
-- blanks) outside fenced code blocks.
function M.parse(text, file)
  local markers = {}
  text = "\n" .. blank_fences(text)
  local pos = 1
  while true do
    local s, e = text:find("\n[ \t]*<!%-%-%s*check[%s:]", pos)
    if not s then break end
    s = s + 1
    local close = text:find("-->", e, true)
    local line = select(2, text:sub(2, s):gsub("\n", "")) + 1
    local where = file .. ":" .. line
    if not close then error(where .. ": check marker without -->", 0) end
    local body = text:sub(e, close - 1):gsub("%s+", " ")
    local head, rest = body:match("^%s*([%w%s]*):(.*)$")
    if not head then error(where .. ": check marker: expected 'check [flags]: COMMAND | PATH = VALUE ...'", 0) end
    local m = { file = file, line = line, where = where, flags = {}, checks = {} }
    for flag in head:gmatch("%S+") do
      if not FLAGS[flag] then error(where .. ": unknown check flag '" .. flag .. "' (known: expensive)", 0) end
      m.flags[flag] = true
    end
    m.expensive = m.flags.expensive == true
    local parts = {}
    for part in (rest .. "|"):gmatch("([^|]*)|") do parts[#parts + 1] = trim(part) end
    m.command = parts[1]
    local words = {}
    for w in m.command:gmatch("%S+") do
      if not w:match("^[%w%._/=,:+%-]+$") then
        error(where .. ": check command word '" .. w .. "' has a character other than [A-Za-z0-9._/=,:+-]", 0)
      end
      words[#words + 1] = w
    end
    if words[1] ~= "peerd" or words[2] ~= "sim" or not words[3] then
      error(where .. ": check command must be 'peerd sim SCENARIO ...', got '" .. m.command .. "'", 0)
    end
    for _, w in ipairs(words) do
      if w == "--out" then error(where .. ": check command must not give --out (the checker does)", 0) end
    end
    m.args = { table.unpack(words, 3) }
    if #parts < 2 then error(where .. ": check marker names no PATH = VALUE", 0) end
    for i = 2, #parts do
      local path, val = parts[i]:match("^(%S+)%s*=%s*(.-)$")
      if not path then error(where .. ": expected PATH = VALUE, got '" .. parts[i] .. "'", 0) end
      local keys = parse_path(path)
      if not keys then error(where .. ": bad path '" .. path .. "' (name.name[1].name)", 0) end
      local c, why = parse_value(val)
      if not c then error(where .. ": " .. path .. ": " .. why, 0) end
      c.path, c.keys = path, keys
      m.checks[#m.checks + 1] = c
    end
    markers[#markers + 1] = m
    pos = close + 3
  end
  return markers
end

local function describe_value(v)
  if type(v) == "string" then return string.format("%q", v) end
  -- JSON decoders give 27246 as 27246.0: a whole number prints whole
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
    return string.format("%d", math.tointeger(v))
  end
  return tostring(v)
end

-- Does the results document match one check? true, or false and a message.
function M.compare(c, doc)
  local v = doc
  for _, k in ipairs(c.keys) do
    if type(v) ~= "table" then v = nil break end
    v = v[k]
  end
  local function differ(got)
    return false, string.format("%s: the doc says %s, the command gives %s", c.path, c.text, got)
  end
  if v == nil then return differ("nothing (no such field)") end
  if c.kind == "boolean" or c.kind == "string" then
    if v ~= c.value then return differ(describe_value(v)) end
    return true
  end
  if type(v) ~= "number" then return differ(describe_value(v)) end
  if c.kind == "integer" then
    if v ~= c.value then return differ(describe_value(v)) end
  elseif c.kind == "digits" then
    local printed = string.format("%." .. c.digits .. "f", v)
    if printed ~= c.text and tonumber(printed) ~= c.value then
      return differ(printed .. " (" .. describe_value(v) .. ")")
    end
  else
    if math.abs(v - c.value) > c.tol then return differ(describe_value(v)) end
  end
  return true
end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Run a marker's command. opts: bin (peerd), root (repository root), decode
-- (a JSON decoder). Returns the results document, or nil and an error with
-- the command's last lines.
function M.run(m, opts)
  local dir = os.tmpname()
  os.remove(dir)
  local args = {}
  for i, a in ipairs(m.args) do args[i] = sh_quote(a) end
  local cmd = string.format("cd %s && PATH=/nonexistent-no-gnuplot %s sim %s --out %s > %s/log 2>&1",
    sh_quote(opts.root), sh_quote(opts.bin), table.concat(args, " "), sh_quote(dir), sh_quote(dir))
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  local ok = os.execute(cmd)
  local results = read_file(dir .. "/results.json")
  local log = read_file(dir .. "/log") or ""
  os.execute("rm -rf " .. sh_quote(dir))
  if not ok or not results then
    local tail = log:sub(-1500)
    return nil, string.format("%s: '%s' failed:\n%s", m.where, m.command, tail)
  end
  local okd, doc = pcall(opts.decode, results)
  if not okd then return nil, m.where .. ": results.json does not parse: " .. tostring(doc) end
  return doc
end

-- Check every marker of the files. opts: bin, root, decode, all (run the
-- expensive ones too), log (function(line)). Returns {passed, failed,
-- skipped, failures = {messages}}.
function M.check_files(files, opts)
  local report = { passed = 0, failed = 0, skipped = 0, failures = {} }
  local log = opts.log or function() end
  local cache = {}
  for _, file in ipairs(files) do
    local text = assert(read_file(opts.root .. "/" .. file), "cannot read " .. file)
    for _, m in ipairs(M.parse(text, file)) do
      if m.expensive and not opts.all then
        report.skipped = report.skipped + 1
        log("skip  " .. m.where .. " (expensive): " .. m.command)
      else
        local key = table.concat(m.args, " ")
        local t0 = os.time()
        if cache[key] == nil then
          local doc, err = M.run(m, opts)
          cache[key] = doc or { err = err }
        end
        local entry = cache[key]
        local bad = {}
        if entry.err then
          bad[1] = entry.err
        else
          for _, c in ipairs(m.checks) do
            local ok, msg = M.compare(c, entry)
            if not ok then bad[#bad + 1] = m.where .. ": " .. msg .. " (" .. m.command .. ")" end
          end
        end
        if #bad == 0 then
          report.passed = report.passed + 1
          log(string.format("ok    %s (%d figures, ~%ds): %s", m.where, #m.checks, os.time() - t0, m.command))
        else
          report.failed = report.failed + 1
          for _, b in ipairs(bad) do
            report.failures[#report.failures + 1] = b
            log("FAIL  " .. b)
          end
        end
      end
    end
  end
  return report
end

-- The docs with figures: every docs/*.md (sorted).
function M.doc_files(root)
  local files = {}
  local p = io.popen("cd " .. sh_quote(root) .. " && ls docs/*.md 2>/dev/null")
  for l in p:lines() do files[#files + 1] = l end
  p:close()
  table.sort(files)
  return files
end

function M.main(argv, root)
  local opts = { root = root, bin = os.getenv("PEERD_BIN") or (root .. "/build/peerd"), all = false }
  local files, list = {}, false
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--all" then opts.all = true
    elseif a == "--list" then list = true
    elseif a == "--bin" then i = i + 1; opts.bin = argv[i]
    elseif a == "-h" or a == "--help" then
      print("usage: scripts/check-doc-figures [--all] [--list] [--bin PEERD] [FILE.md ...]")
      print("  checks the figures marked <!-- check: ... --> in docs/*.md (docs/scenarios.md)")
      print("  --all   also the expensive ones    --list  list the markers, run nothing")
      return 0
    elseif a:sub(1, 1) == "-" then
      io.stderr:write("check-doc-figures: unknown option " .. a .. "\n")
      return 2
    else files[#files + 1] = a end
    i = i + 1
  end
  if #files == 0 then files = M.doc_files(root) end
  if list then
    for _, f in ipairs(files) do
      for _, m in ipairs(M.parse(assert(read_file(root .. "/" .. f)), f)) do
        print(string.format("%s%s: %s (%d figures)", m.where, m.expensive and " [expensive]" or "",
          m.command, #m.checks))
      end
    end
    return 0
  end
  opts.decode = require("cjson").decode
  opts.log = function(l) print(l) io.stdout:flush() end
  local r = M.check_files(files, opts)
  print(string.format("%d passed, %d failed, %d skipped", r.passed, r.failed, r.skipped))
  return r.failed == 0 and 0 or 1
end

return M
