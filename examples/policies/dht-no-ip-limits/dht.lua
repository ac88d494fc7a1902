-- dht.lua — EXAMPLE: no IP limits. Every node with a valid, live record may
-- enter the DHT routing table whatever its subnet, as Kademlia without
-- geth's limits. Do not run this on a public network: it is the baseline
-- Marcus et al. (2018) attack — an attacker with two IP addresses and as many
-- node ids as it can hash fills our buckets and answers our lookups alone.
-- It exists to measure that (the lab) and for private networks where every
-- node shares a few subnets anyway.

local function admit(node, bucket) -- luacheck: no unused args
  return true
end

local function feed(node, from) -- luacheck: no unused args
  return true
end

return { admit = admit, feed = feed }
