-- dht.lua — the Kademlia DHT's decisions: who enters our routing table, and
-- which records its lookups hand to the address book (docs/protocol.md §11).
--
-- admit(node, bucket) -> boolean
--   Called when a node could enter the routing table: its signed record is
--   valid (peerd checked it before asking), it answered us from the discovery
--   endpoint that record names (it is live there), and `bucket` has room or
--   a slot may open after the ping-before-evict of its least recently seen
--   node. `node` = {id, ip, port, addr, seq, routable, subnet_in_bucket,
--   subnet_in_table}; `bucket` = {index (1..160, log2 distance), size (nodes
--   in it now), k (capacity, 16)}. subnet_in_* count the nodes of the
--   candidate's /24 (IPv4) or /48 (IPv6) already in that bucket / the table.
--   Default: admit a routable node while its subnet has fewer than 2 nodes in
--   the bucket and fewer than 10 in the whole table. These are go-ethereum's
--   limits (p2p/discover, netutil.DistinctNetSet), adopted after Marcus et
--   al., "Low-Resource Eclipse Attacks on Ethereum's Peer-to-Peer Network"
--   (2018): without them an attacker with a couple of IP addresses and as
--   many node ids as it can hash fills the victim's buckets and then answers
--   its lookups alone. Unroutable nodes (loopback, RFC 1918: test networks
--   and the lab, where every node shares a few subnets) are not limited.
--
-- feed(node, from) -> boolean
--   Called for each verified record a lookup found, before peerd adds its
--   endpoint to the address book. `node` is the peer view of that endpoint
--   (node.node_id is the record's node id), `from` the peer view of the DHT
--   node that answered with it. The book files the address under `from`'s
--   network group as its source, so Bitcoin-style bucket placement still
--   limits how much of the new table one responder can fill.
--   Default: every verified record feeds the book.

-- Knobs ---------------------------------------------------------------------
local MAX_SUBNET_PER_BUCKET = 2  -- nodes of one /24 (/48) in one bucket
local MAX_SUBNET_PER_TABLE = 10  -- nodes of one /24 (/48) in the whole table
local LIMIT_UNROUTABLE = false   -- apply the limits to unroutable nodes too
-- ---------------------------------------------------------------------------

local function admit(node, bucket) -- luacheck: no unused args (the default ignores the bucket)
  if not node.routable and not LIMIT_UNROUTABLE then return true end
  return node.subnet_in_bucket < MAX_SUBNET_PER_BUCKET
    and node.subnet_in_table < MAX_SUBNET_PER_TABLE
end

local function feed(node, from) -- luacheck: no unused args
  return true
end

return { admit = admit, feed = feed }
