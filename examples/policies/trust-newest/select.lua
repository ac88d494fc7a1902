-- select.lua — whom to dial now. EXAMPLE OF A WEAK POLICY: trust the newest.
--
-- Hook: select(book, n) -> array of at most n distinct entry ids.
--
-- Every pick comes from the new table (addresses we only heard of), and of
-- CANDIDATES random draws the one with the newest `time` (the timestamp the
-- address was announced with) wins. There is no tried-table preference and
-- no network-group diversity. Whoever announces the most addresses with the
-- freshest timestamps -- an attacker flooding ADDR from many groups -- gets
-- dialled. Shipped only so the scenario lab can show what the default
-- policies' countermeasures (85 % tried, one pick per group) are worth:
-- examples/scenarios/eclipse.lua. Do not run it on a real network.

-- luacheck: read globals peerd

local CANDIDATES = 8      -- draws per pick; the newest wins
local DRAWS_PER_PICK = 32 -- draw budget per requested peer ...
local DRAWS_BASE = 64     -- ... plus this much per call

local floor = math.floor

local function select_peers(book, n)
  local out = {}
  n = floor(tonumber(n) or 0)
  local tbl = book:count("new") > 0 and "new" or "tried"
  local size = book:count(tbl)
  if n > size then n = size end
  if n <= 0 then return out end
  local picked = {}
  local budget = DRAWS_PER_PICK * n + DRAWS_BASE
  while #out < n and budget > 0 do
    local best, best_time
    for _ = 1, CANDIDATES do
      if budget <= 0 then break end
      budget = budget - 1
      local id = book:random(tbl)
      if id == nil then break end
      if not picked[id] and not book:banned(id) then
        local e = book:entry(id)
        if e and (best_time == nil or e.time > best_time) then best, best_time = id, e.time end
      end
    end
    if best == nil then break end
    out[#out + 1] = best
    picked[best] = true
  end
  return out
end

return { select = select_peers }
