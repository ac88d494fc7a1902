-- select.lua — whom to dial now. EXAMPLE: only nodes on our chain. A node
-- whose signed record names another `chain` attribute is never picked;
-- nodes without a record, or whose record sets no chain, still are.
--
-- Hook: select(book, n) -> array of at most n distinct entry ids.
-- Called for `GET /v1/dial?n=`. The node dials the returned peers in order.
--
-- What it decides:
--   * Which table each pick comes from: TRIED_SHARE of the picks (85 %) from
--     the tried table (peers we have connected to before), the rest from the
--     new table (addresses we only heard of). When one table is empty, or
--     holds nothing usable, every pick comes from the other.
--   * Which entries are never dialled: banned ones, "terrible" ones (Bitcoin
--     Core's IsTerrible: too old, too many failures) and ones already picked.
--   * Diversity: a pick prefers a network group (book:group, /16 for IPv4,
--     /32 for IPv6) that no earlier pick of this call used, so that one
--     operator or subnet cannot fill all our outbound slots. A pick tries
--     GROUP_TRIES candidates for a fresh group; if it finds none it relaxes and
--     takes the first usable candidate it saw from an already used group.
--
-- How it stays fast: candidates come from book:random(table) (Bitcoin Core's
-- Select_: a bucket walk where recently tried and failing entries are less
-- likely); the book is never walked. A call makes at most
-- DRAWS_PER_PICK * n + DRAWS_BASE draws, whatever the size of the book, and
-- returns fewer than n ids when that budget runs out.

-- luacheck: read globals peerd

-- Knobs ---------------------------------------------------------------------
local TRIED_SHARE = 0.85  -- fraction of picks taken from the tried table
local GROUP_TRIES = 16    -- draws per pick looking for a not yet used group
local DRAWS_PER_PICK = 32 -- draw budget per requested peer ...
local DRAWS_BASE = 64     -- ... plus this much per call
local CHAIN = "test-chain-1" -- our chain id (the `chain` attribute of records)
-- ---------------------------------------------------------------------------

local floor = math.floor

-- One pick from `tbl`: a usable id, preferring an unused group. Returns the id
-- (or nil), its group, the number of draws made and whether any usable
-- candidate was seen at all (false means the table is exhausted for us).
local function pick_from(book, tbl, picked, groups, budget)
  local fallback, fallback_group
  local draws = 0
  while draws < GROUP_TRIES and draws < budget do
    draws = draws + 1
    local id = book:random(tbl)
    if id == nil then break end -- table is empty
    local chain = book:attr(id, "chain")
    if not picked[id] and not book:banned(id) and not book:terrible(id) and (chain == nil or chain == CHAIN) then
      local g = book:group(id)
      if not groups[g] then return id, g, draws, true end
      if fallback == nil then fallback, fallback_group = id, g end
    end
  end
  return fallback, fallback_group, draws, fallback ~= nil
end

local function select_peers(book, n)
  local out = {}
  n = floor(tonumber(n) or 0)
  local size = book:size()
  if n > size then n = size end
  if n <= 0 then return out end

  local usable = { tried = book:count("tried") > 0, new = book:count("new") > 0 }
  local picked, groups = {}, {}
  local budget = DRAWS_PER_PICK * n + DRAWS_BASE

  while #out < n and budget > 0 and (usable.tried or usable.new) do
    local tbl
    if not usable.new then
      tbl = "tried"
    elseif not usable.tried then
      tbl = "new"
    elseif peerd.random() < TRIED_SHARE then
      tbl = "tried"
    else
      tbl = "new"
    end
    local id, g, draws, any = pick_from(book, tbl, picked, groups, budget)
    budget = budget - draws
    if id ~= nil then
      out[#out + 1] = id
      picked[id] = true
      groups[g] = true
    elseif not any then
      -- Empty, or GROUP_TRIES draws without one usable entry: treat the table
      -- as spent for this call; the remaining picks come from the other one.
      usable[tbl] = false
    end
  end
  return out
end

return { select = select_peers }
