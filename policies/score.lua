-- score.lua — how good a peer looks, as one number.
--
-- Hook: score(peer) -> number in [MIN_SCORE, MAX_SCORE] (-100..100).
-- Called when a peer is shown or ranked (`GET /v1/dial`, `GET /v1/book/ADDR`).
-- Higher is better. The score ranks; it does not select or ban.
--
-- Formula (each term bounded; the sum is clamped to [-100, 100]):
--
--   tried      +TRIED_BONUS (20) if we ever connected (peer.tried)
--   recency    +RECENCY_MAX (30) * 0.5 ^ (since_success / RECENCY_HALF_LIFE)
--              since_success = now - last_success; 0 when never connected
--   failures   -FAILURE_COST (10) * min(attempts, MAX_FAILURES (5))
--              attempts = failed tries since the last success
--   age        +AGE_MAX (10) * min(1, known_for / AGE_FULL (7 days))
--              known_for = now - first_seen (or `time` when first_seen is 0)
--   latency    +LATENCY_MAX (10) * (1 - 2 * min(latency_ms, LATENCY_SLOW) / LATENCY_SLOW)
--              i.e. +10 at 0 ms, 0 at 500 ms, -10 at 1000 ms or more; 0 when unknown
--   reputation +REPUTATION_WEIGHT (0.3) * clamp(reputation, -100, 100)
--
-- So the best conceivable peer (tried, connected just now, no failures, known
-- for a week, 0 ms, reputation 100) scores 100; a new address we heard of a
-- moment ago and never tried scores 0.

-- luacheck: read globals peerd

-- Knobs ---------------------------------------------------------------------
local TRIED_BONUS = 20
local RECENCY_MAX = 30
local RECENCY_HALF_LIFE = 24 * 3600 -- seconds
local FAILURE_COST = 10
local MAX_FAILURES = 5
local AGE_MAX = 10
local AGE_FULL = 7 * 86400 -- seconds
local LATENCY_MAX = 10
local LATENCY_SLOW = 1000 -- ms
local REPUTATION_WEIGHT = 0.3
local MIN_SCORE, MAX_SCORE = -100, 100
-- ---------------------------------------------------------------------------

local function clamp(x, lo, hi)
  if x < lo then return lo end
  if x > hi then return hi end
  return x
end

-- The terms, each a number (exported for tests and for policies that want to
-- reuse them through require("score")).
local function terms(peer, now)
  local t = {}
  t.tried = peer.tried and TRIED_BONUS or 0

  local last_success = peer.last_success or 0
  if last_success > 0 then
    local since = math.max(0, now - last_success)
    t.recency = RECENCY_MAX * 0.5 ^ (since / RECENCY_HALF_LIFE)
  else
    t.recency = 0
  end

  t.failures = -FAILURE_COST * clamp(peer.attempts or 0, 0, MAX_FAILURES)

  local first = peer.first_seen or 0
  if first <= 0 then first = peer.time or 0 end
  if first > 0 then
    t.age = AGE_MAX * clamp((now - first) / AGE_FULL, 0, 1)
  else
    t.age = 0
  end

  local latency = peer.latency_ms
  if latency ~= nil and latency >= 0 then
    t.latency = LATENCY_MAX * (1 - 2 * clamp(latency, 0, LATENCY_SLOW) / LATENCY_SLOW)
  else
    t.latency = 0
  end

  t.reputation = REPUTATION_WEIGHT * clamp(peer.reputation or 0, -100, 100)
  return t
end

local function score(peer)
  local t = terms(peer, peerd.now())
  local s = t.tried + t.recency + t.failures + t.age + t.latency + t.reputation
  if s ~= s then return 0 end -- NaN from odd inputs: neutral
  return clamp(s, MIN_SCORE, MAX_SCORE)
end

return { score = score, terms = terms }
