-- select.lua — whom to dial now. EXAMPLE: bitcoind 0.9.3's address selection,
-- the one Heilman, Kendler, Zohar and Goldberg attacked ("Eclipse Attacks on
-- Bitcoin's Peer-to-Peer Network", USENIX Security 2015), before the
-- countermeasures that Bitcoin Core (and peerd's default select.lua) took
-- from that paper. Shipped so the scenario lab can show what each
-- countermeasure is worth as a policy change. Do not run it on a real network.
--
-- Hook: select(book, n, ctx) -> array of at most n distinct entry ids.
--
-- bitcoind 0.9.3, CAddrMan::Select_(nUnkBias) with nUnkBias = 10 + 10 * min(ω, 8)
-- (net.cpp ThreadOpenConnections), ω = the node's outbound connections now
-- (ctx.outbound; 0 when the caller does not say):
--   * table: tried when (√tried · (100 − nUnkBias) + √new · nUnkBias) · u
--     < √tried · (100 − nUnkBias), u uniform in [0, 1); so with ρ = tried/new
--     Pr[tried] = √ρ(9−ω) / ((ω+1) + √ρ(9−ω)): the more outbound peers the
--     node has, the more it explores the new table;
--   * within the table: a uniformly random non-empty bucket, a uniformly random
--     entry in it (book:random(tbl, "bucket")), accepted with probability
--     factor · GetChance, factor starting at 1 and × 1.2 on every refusal;
--   * 0.9.3's GetChance: 600 / (600 + seconds since the address's `time`
--     (the timestamp it was announced with: the freshness bias an attacker
--     feeds with fresh timestamps)) × 0.01 when tried in the last 10 minutes
--     × (1/1.5)^attempts.
-- As in ThreadOpenConnections, banned addresses are not dialled and an address
-- tried in the last 10 minutes is passed over for the first 30 draws of a
-- pick; after 100 draws without a pick the call ends with what it has. There is no network-group diversity
-- between picks and no skipping of "terrible" entries; peerd's dialer still
-- keeps one outbound connection per network group, as 0.9.3's setConnected did.
-- Differences from 0.9.3 that remain: ω is the same for every pick of one call
-- (the dialer asks for several candidates at once; 0.9.3 picked one at a time,
-- after the previous connection attempt ended), the book's tables are peerd's
-- (Bitcoin Core's modern geometry: 1,024 new and 256 tried buckets of 64
-- slots) and 0.9.3's non-default-port rule is left out.

-- luacheck: read globals peerd

-- Knobs ---------------------------------------------------------------------
local MAX_OMEGA = 8           -- min(nOutbound, 8)
local RECENT = 600            -- seconds: "very recently tried"
local RECENT_AFTER = 30       -- draws of a pick before recently tried ones are taken
local TRIES_PER_PICK = 100    -- draws per pick before it gives up (nTries > 100)
local WALK_MAX = 256          -- candidates per draw (1.2^256 accepts any chance > 1e-20)
local DRAWS_PER_PICK = 32     -- book:random budget per requested peer ...
local DRAWS_BASE = 256        -- ... plus this much per call ...
local DRAWS_MAX = 4096        -- ... and never more than this per call

local floor, sqrt, min, max = math.floor, math.sqrt, math.min, math.max

-- bitcoind 0.9.3's CAddrInfo::GetChance at now.
local function chance(e, now)
  local since_seen = max(now - e.time, 0)
  local since_try = max(now - e.last_try, 0)
  local c = 600 / (600 + since_seen)
  if since_try < RECENT then c = c * 0.01 end
  return c / 1.5 ^ e.attempts
end

-- Pr[tried] for ω outbound connections, ntried and nnew entries (the formula
-- above; exported for the spec).
local function tried_weights(ntried, nnew, omega)
  local bias = 10 + 10 * min(max(floor(omega), 0), MAX_OMEGA)
  return sqrt(ntried) * (100 - bias), sqrt(nnew) * bias
end

local function select_peers(book, n, ctx)
  local out = {}
  n = floor(tonumber(n) or 0)
  if n > book:size() then n = book:size() end
  if n <= 0 then return out end
  local omega = type(ctx) == "table" and tonumber(ctx.outbound) or 0
  local cor_tried, cor_new = tried_weights(book:count("tried"), book:count("new"), omega)
  if cor_tried + cor_new <= 0 then return out end
  local now = peerd.now()
  local picked = {}
  local budget = min(DRAWS_PER_PICK * n + DRAWS_BASE, DRAWS_MAX)
  while #out < n and budget > 0 do
    local pick
    for try = 1, TRIES_PER_PICK do
      if budget <= 0 then break end
      -- Select_: the table, then the bucket walk with a growing chance factor
      local tbl = (cor_tried + cor_new) * peerd.random() < cor_tried and "tried" or "new"
      local factor, id, e = 1.0, nil, nil
      for _ = 1, WALK_MAX do
        if budget <= 0 then break end
        budget = budget - 1
        local cand = book:random(tbl, "bucket")
        local ce = cand and book:entry(cand)
        if not ce then break end
        if peerd.random() < factor * chance(ce, now) then
          id, e = cand, ce
          break
        end
        factor = factor * 1.2
      end
      -- ThreadOpenConnections' filters
      if id and not picked[id] and not e.banned and (try > RECENT_AFTER or now - e.last_try >= RECENT) then
        pick = id
        break
      end
    end
    if not pick then break end -- as 0.9.3 after 100 draws: wait for the next round
    out[#out + 1] = pick
    picked[pick] = true
  end
  return out
end

return { select = select_peers, chance = chance, tried_weights = tried_weights }
