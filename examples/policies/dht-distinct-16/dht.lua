-- dht.lua — EXAMPLE: only routable nodes, one per /16 (IPv4) or /32 (IPv6)
-- in the whole routing table: far stricter than the default's 2 per /24
-- (/48) per bucket and 10 per table, in the spirit of Bitcoin's network
-- groups. An attacker then needs an address in a fresh /16 for every node
-- it places.
--
-- admit's view counts only the candidate's /24 (/48), so this policy keeps
-- its own claims: the node id that holds each /16, refreshed whenever that
-- node is admitted again. peerd does not tell a policy when a node leaves
-- the table, so a claim lapses CLAIM_SECS after it was last refreshed (and
-- at every reload, which starts a fresh state); until then another node of
-- that /16 is refused. feed keeps the default: every verified record feeds
-- the book (the book applies its own group limits).

-- Knobs ---------------------------------------------------------------------
local CLAIM_SECS = 3600 -- how long a /16 stays claimed without its node being seen
-- ---------------------------------------------------------------------------

-- luacheck: read globals peerd

local claims = {} -- "/16 or /32 prefix" -> { id = node id, at = unix seconds }

-- "1.2" for 1.2.3.4; for IPv6 the first two groups as written ("2a01:4f8").
local function prefix(ip)
  local a, b = ip:match("^(%d+)%.(%d+)%.")
  if a then return a .. "." .. b end
  local x, y = ip:match("^(%x*):(%x*)")
  return x and (x .. ":" .. y) or ip
end

local function admit(node, bucket) -- luacheck: no unused args
  if not node.routable then return false end
  local p, now = prefix(node.ip), peerd.now()
  local c = claims[p]
  if c and c.id ~= node.id and now - c.at < CLAIM_SECS then return false end
  claims[p] = { id = node.id, at = now }
  return true
end

local function feed(node, from) -- luacheck: no unused args
  return true
end

return { admit = admit, feed = feed }
