-- pex.lua — peer exchange: which addresses we take from peers and which we give.
--
-- accept(addr, from) -> boolean
--   Called for each address a peer sent us (`POST /v1/book` with `source`).
--   `from` is the peer that sent it. Default: accept it when
--     * the sender is not banned (a banned peer's gossip is dropped whole),
--     * the address is not banned, and
--     * the address is routable on the public internet (addr.routable), or it
--       is not (RFC 1918, link-local, ...) but the sender is itself not
--       routable and in the same network group: a LAN peer may tell us about
--       its LAN, a public peer may not (ACCEPT_LOCAL_FROM_LOCAL).
--   The book still applies its own checks afterwards (--allow-private).
--
-- share(addr, to) -> boolean
--   Called for each address considered for a peer (`GET /v1/pex?peer=`).
--   `to` is the peer asking. Default: share it unless
--     * it is a private peer (addr.private: operator-marked; peerd never
--       shares these whatever this file says, the check here is for clarity),
--     * it is banned,
--     * it is the asking peer itself (same addr, or same node id),
--     * it is not routable and the asking peer is (SHARE_LOCAL_WITH_PUBLIC):
--       our LAN layout is nobody else's business.

-- Knobs ---------------------------------------------------------------------
local ACCEPT_LOCAL_FROM_LOCAL = true  -- accept unroutable addrs from an unroutable peer of the same group
local SHARE_LOCAL_WITH_PUBLIC = false -- share unroutable addrs with routable peers
-- ---------------------------------------------------------------------------

local function accept(addr, from)
  if from ~= nil and from.banned then return false end
  if addr.banned then return false end
  if addr.routable then return true end
  return ACCEPT_LOCAL_FROM_LOCAL and from ~= nil and not from.routable and addr.group == from.group
end

local function same_peer(a, b)
  if a.addr == b.addr then return true end
  return a.node_id ~= nil and a.node_id == b.node_id
end

local function share(addr, to)
  if addr.private then return false end
  if addr.banned then return false end
  if to ~= nil then
    if same_peer(addr, to) then return false end
    if not addr.routable and to.routable and not SHARE_LOCAL_WITH_PUBLIC then return false end
  end
  return true
end

return { accept = accept, share = share }
