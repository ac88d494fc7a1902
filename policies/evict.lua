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
-- Returning nil from either hook means "use peerd's built-in rule" (the same
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

return { evict_new = evict_new, evict_tried = evict_tried }
