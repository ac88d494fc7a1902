-- evict.lua — who keeps a contested slot in the address book.
--
-- The book hashes every address to one slot of the new table (addresses we
-- heard of) and, once we connected to it, to one slot of the tried table.
-- When the slot is already taken, these hooks decide. The defaults below are
-- Bitcoin Core's addrman rules, written out so they can be changed.
--
-- evict_new(book, incumbent, candidate) -> "keep" | "replace" | nil
--   A new-table slot is taken by `incumbent` and `candidate` hashes to it.
--   Default: replace the incumbent when it is terrible (IsTerrible: too old,
--   too many failures, from the future), or when it is also referenced from
--   other new-table slots (refs > 1) while the candidate is referenced from
--   none (a fresh address); otherwise keep it. `candidate.id` is nil when the
--   address is not in the book yet (candidate.refs is then 0 or nil).
--
-- evict_tried(book, incumbent, candidate) -> "keep" | "replace" | "wait" | nil
--   `candidate` connected and should move to the tried table, but its slot
--   holds `incumbent` (a tried-table collision). peerd does not evict at once:
--   the node tests the incumbent by dialling it (test-before-evict), and this
--   hook is asked again when collisions are re-examined.
--   Default, in order:
--     1. the incumbent connected within REPLACEMENT (4 h)       -> "keep"
--     2. the incumbent was tried within REPLACEMENT and that try
--        is older than TEST_GRACE (60 s) without success        -> "replace"
--        (tried less than 60 s ago: give it time)               -> "wait"
--     3. the candidate has waited longer than TEST_WINDOW
--        (40 min, from its last_success) and the incumbent was
--        never tested: we cannot test it, evict anyway          -> "replace"
--     4. otherwise                                              -> "wait"
--   "keep" drops the candidate's claim (it stays in the new table);
--   "replace" moves the candidate in and the incumbent back to the new table.
--
-- evict_inbound(candidates, newcomer) -> conn id | false | nil
--   The inbound slots are full and `newcomer` (a peer view; its handshake
--   proved its node id) wants one. `candidates` are the inbound peers that
--   may be evicted (protected and unconditional peers are never listed),
--   each { conn = id, peer = view, connected = s, useful = s | 0,
--   protected = bool }. `protected` is what peerd's rule (after Bitcoin
--   Core's SelectNodeToEvict) shields: 4 by a keyed hash of their network
--   group, 8 with the lowest measured ping, 4 that most recently gave us an
--   address we then connected to, half of the rest by uptime.
--   Default: of the others, the network group with the most peers (ties: the
--   one with the newest peer) loses its newest peer. false: evict nobody
--   (the newcomer is refused).
--
-- Returning nil from any hook means "use peerd's built-in rule" (the same
-- rules as here, in C).

-- luacheck: read globals peerd

-- Knobs (seconds; Bitcoin Core's ADDRMAN_REPLACEMENT, ADDRMAN_TEST_WINDOW) --
local REPLACEMENT = 4 * 3600 -- an incumbent that connected this recently stays
local TEST_GRACE = 60        -- time a test connection gets to succeed
local TEST_WINDOW = 40 * 60  -- after this long untested, the candidate wins
-- ---------------------------------------------------------------------------

local function evict_new(_book, incumbent, candidate)
  if incumbent.terrible then return "replace" end
  if (incumbent.refs or 0) > 1 and (candidate.refs or 0) == 0 then return "replace" end
  return "keep"
end

local function evict_tried(_book, incumbent, candidate)
  local now = peerd.now()
  if now - incumbent.last_success < REPLACEMENT then
    return "keep" -- it works: keep the peer we know
  end
  if now - incumbent.last_try < REPLACEMENT then
    if now - incumbent.last_try > TEST_GRACE then
      return "replace" -- tested recently and did not connect
    end
    return "wait" -- a test is in flight
  end
  if now - candidate.last_success > TEST_WINDOW then
    return "replace" -- could not test it in time
  end
  return "wait"
end

local function evict_inbound(candidates, _newcomer)
  local count, newest = {}, {}
  for _, c in ipairs(candidates) do
    if not c.protected then
      local g = c.peer.group
      count[g] = (count[g] or 0) + 1
      local n = newest[g]
      if not n or c.connected > n.connected or (c.connected == n.connected and c.conn > n.conn) then
        newest[g] = c
      end
    end
  end
  local best
  for g, n in pairs(count) do
    local b = best and newest[best]
    local c = newest[g]
    if not best or n > count[best] or (n == count[best] and (c.connected > b.connected or
        (c.connected == b.connected and c.conn > b.conn))) then
      best = g
    end
  end
  return best and newest[best].conn or false
end

return { evict_new = evict_new, evict_tried = evict_tried, evict_inbound = evict_inbound }
