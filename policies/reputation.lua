-- reputation.lua — what an event does to a peer's standing, and when it is banned.
--
-- Hook: on_event(peer, event, reason) -> {reputation = number,
--                                          ban = seconds | -1 | nil,
--                                          reason = string | nil} | nil
-- Called for every `POST /v1/events`. `event` is "attempt", "connected",
-- "good", "failed", "misbehaved" or "disconnected"; `reason` is the text the
-- node sent (or nil). `peer.reputation` is the value before this event;
-- `peer.misbehaviours` counts the misbehaviours before this one, so this is
-- offence number peer.misbehaviours + 1.
--
-- Reputation: starts at 0, moves by DELTA[event] and stays within
-- [MIN_REPUTATION, MAX_REPUTATION] (-100..100):
--   good +5, connected +1, attempt 0, disconnected 0, failed -2, misbehaved -30.
-- score.lua turns it into part of the peer's score.
--
-- Bans: only misbehaviour bans; failures and bad reputation never do (a
-- peer that is down is not hostile). From the BAN_AFTER-th misbehaviour on
-- (default: the first), the peer is banned. The ban escalates for repeat
-- offenders: BAN_TIME (24 h) for the first banned offence, doubled (ESCALATION)
-- for each further one, at most MAX_BAN (30 days):
--   1st misbehaviour 24 h, 2nd 48 h, 3rd 96 h, 4th 8 days, 5th 16 days, then 30 days.
-- With PERMANENT_AFTER > 0, that offence and later ones ban for good (-1).
-- When this file is loaded, BAN_TIME replaces `--ban-time` for "misbehaved".

-- Knobs ---------------------------------------------------------------------
local DELTA = {
  attempt = 0,
  connected = 1,
  good = 5,
  failed = -2,
  misbehaved = -30,
  disconnected = 0,
}
local MIN_REPUTATION, MAX_REPUTATION = -100, 100
local BAN_AFTER = 1          -- the misbehaviour that first bans (1 = the first)
local BAN_TIME = 24 * 3600   -- seconds, for the first banned offence
local ESCALATION = 2         -- each further offence multiplies the ban by this
local MAX_BAN = 30 * 86400   -- seconds, cap of an escalated ban
local PERMANENT_AFTER = 0    -- offence from which a ban is permanent; 0 = never
-- ---------------------------------------------------------------------------

local function clamp(x, lo, hi)
  if x < lo then return lo end
  if x > hi then return hi end
  return x
end

-- Ban length in seconds for offence number `offence` (1-based), or nil.
local function ban_for(offence)
  if offence < BAN_AFTER then return nil end
  if PERMANENT_AFTER > 0 and offence >= PERMANENT_AFTER then return -1 end
  local secs = BAN_TIME * ESCALATION ^ (offence - BAN_AFTER)
  return math.tointeger(math.floor(math.min(secs, MAX_BAN)))
end

local function on_event(peer, event, reason)
  local rep = clamp((peer.reputation or 0) + (DELTA[event] or 0), MIN_REPUTATION, MAX_REPUTATION)
  local verdict = { reputation = rep }
  if event == "misbehaved" then
    local offence = (peer.misbehaviours or 0) + 1
    verdict.ban = ban_for(offence)
    if verdict.ban then
      verdict.reason = string.format("misbehaviour %d: %s", offence, reason or "misbehaved")
    end
  end
  return verdict
end

return { on_event = on_event, ban_for = ban_for }
