/* dhttable — the DHT's routing table (sans-I/O). Spec: docs/protocol.md §11.6.
 *
 * Owns: 160 k-buckets by log2 XOR distance from this node's id (k nodes
 * each, least recently seen first) with a replacement cache per bucket;
 * the rules for entering, refreshing and leaving a bucket (admission through
 * a caller's hook, ping-before-evict: a full bucket's least recently seen
 * node is only replaced after a failed ping; two failed revalidations in a
 * row remove a node); the per-subnet counts the admission rule reads (/24
 * IPv4, /48 IPv6) and the built-in rule (geth's: at most 2 per subnet in a
 * bucket, 10 in the table, routable addresses only); the k closest nodes to
 * a target; picking the node to revalidate; a copy of each node's record.
 * Does not own: sending pings or knowing whether they were answered (the
 * engine, dht.h, reports results), verifying records (done before a node
 * is offered), policies (the admit hook is a callback), time (every call
 * takes now_ms), randomness (a pd_rng_t is passed where one is drawn).
 *
 * Memory: a bucket's arrays are allocated on its first node; a record is
 * kept as a malloc'd copy of its bytes (130..512). Empty buckets cost 16
 * bytes each.
 */
#ifndef PD_DHTTABLE_H
#define PD_DHTTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "rng.h"

#define PD_DHTT_ID_LEN 20
#define PD_DHTT_BUCKETS 160
#define PD_DHTT_K 16              /* default nodes per bucket */
#define PD_DHTT_REPL 10           /* default replacement cache per bucket */
#define PD_DHTT_SUBNET_BUCKET 2   /* built-in admit: per /24 (/48) in a bucket */
#define PD_DHTT_SUBNET_TABLE 10   /* built-in admit: per /24 (/48) in the table */
#define PD_DHTT_MAX_FAILS 2       /* failed revalidations in a row that remove a node */

typedef struct pd_dht_entry {
  uint8_t id[PD_DHTT_ID_LEN];
  pd_netaddr_t ep;      /* the discovery endpoint it answered from */
  uint8_t *rec;         /* its record's bytes (owned) */
  uint16_t rec_len;
  uint64_t seq;         /* its record's sequence */
  int64_t added_ms;     /* when it entered the bucket (or the cache) */
  int64_t seen_ms;      /* last time it answered us */
  uint8_t fails;        /* failed pings in a row */
  bool pinging;         /* a ping-before-evict or revalidation is out for it */
} pd_dht_entry_t;

/* What the admission hook sees about a candidate. */
typedef struct pd_dht_admit_info {
  const pd_dht_entry_t *node;
  unsigned bucket;          /* 1..160 */
  unsigned bucket_size;     /* nodes in that bucket now */
  unsigned k;
  unsigned subnet_in_bucket; /* nodes of the candidate's /24 (/48) in that bucket */
  unsigned subnet_in_table;  /* ... in the whole table */
  bool routable;            /* the candidate's IP is routable (limits apply) */
} pd_dht_admit_info_t;

/* true: the candidate may enter the bucket. NULL hook: pd_dht_admit_default. */
typedef bool (*pd_dht_admit_fn)(void *ctx, const pd_dht_admit_info_t *info);
/* The built-in rule: not routable, or fewer than 2 of its subnet in the
 * bucket and fewer than 10 in the table. */
bool pd_dht_admit_default(const pd_dht_admit_info_t *info);

typedef struct pd_dht_table pd_dht_table_t;

/* A table for node `self`; k 0 = 16, repl 0 = 10. NULL on allocation failure
 * (or k or repl above 256). */
pd_dht_table_t *pd_dht_table_new(const uint8_t self[PD_DHTT_ID_LEN], unsigned k, unsigned repl);
void pd_dht_table_free(pd_dht_table_t *t);

/* The outcome of pd_dht_table_seen. */
enum pd_dht_seen {
  PD_DHTT_REFRESHED = 0, /* was in its bucket: now most recently seen (record kept or updated) */
  PD_DHTT_ADDED,         /* entered its bucket */
  PD_DHTT_CACHED,        /* bucket full: in the replacement cache (*ping names the node to ping, if any) */
  PD_DHTT_REFUSED,       /* the admit hook said no (or it is this node's own id) */
};

/* Node `id` answered us from `ep` with a verified record (rec, len; seq).
 * Refreshes it, adds it, or caches it (returns enum pd_dht_seen, or
 * PD_EINVAL for a NULL argument or len outside 1..512, PD_ENOMEM; the table
 * is unchanged on error). A node already in the bucket with a newer record
 * seq gets the new bytes; a known node answering from another endpoint is
 * updated to it only with a higher seq, and only when admit agrees at the
 * new endpoint (counted without the node itself); otherwise it leaves the
 * table (PD_DHTT_REFUSED): moving cannot bypass the subnet limits. When the bucket is full and its
 * least recently seen node has no ping out, that node is marked pinging and
 * its id copied to ping_id (may be NULL) with *ping_set = true: the caller
 * pings it and reports with pd_dht_table_ping_result. */
int pd_dht_table_seen(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN], const pd_netaddr_t *ep,
                      const uint8_t *rec, size_t len, uint64_t seq, int64_t now_ms,
                      pd_dht_admit_fn admit, void *ctx, uint8_t ping_id[PD_DHTT_ID_LEN],
                      bool *ping_set);

/* The ping of a bucket node ended: answered (ok) or not. ok: the node
 * becomes most recently seen, fails = 0. Not ok: fails + 1; the node is
 * removed when its bucket's replacement cache holds an admissible node
 * (the newest one takes its place) or when fails reaches 2. Returns 1 when
 * the node was removed, 0 when it stays, PD_ENOENT when it is not in the
 * table. */
int pd_dht_table_ping_result(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN], bool ok,
                             int64_t now_ms, pd_dht_admit_fn admit, void *ctx);

/* Remove a node from its bucket or its replacement cache (a node that
 * failed a request, say). 1 removed, 0 absent. Does not promote. */
int pd_dht_table_remove(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN]);

/* The bucket node with that id (NULL: none; replacement caches not searched). */
const pd_dht_entry_t *pd_dht_table_find(const pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN]);

/* Up to n bucket nodes closest to target by XOR distance, closest first,
 * into out (pointers valid until the table changes). Returns how many. */
size_t pd_dht_table_closest(const pd_dht_table_t *t, const uint8_t target[PD_DHTT_ID_LEN], size_t n,
                            const pd_dht_entry_t **out);

/* The nodes of bucket i (1..160), least recently seen first, and of its
 * replacement cache, newest first. *n gets the count (0 for an empty or
 * out-of-range bucket; the pointer is then NULL). */
const pd_dht_entry_t *pd_dht_table_bucket(const pd_dht_table_t *t, unsigned i, size_t *n);
const pd_dht_entry_t *pd_dht_table_replacements(const pd_dht_table_t *t, unsigned i, size_t *n);

/* The least recently seen node of a random non-empty bucket that has no
 * ping out (marked pinging on return), for revalidation. NULL when none. */
const pd_dht_entry_t *pd_dht_table_revalidate_pick(pd_dht_table_t *t, pd_rng_t *rng);

/* Nodes in buckets / in replacement caches. */
size_t pd_dht_table_size(const pd_dht_table_t *t);
size_t pd_dht_table_cached(const pd_dht_table_t *t);
unsigned pd_dht_table_k(const pd_dht_table_t *t);
const uint8_t *pd_dht_table_self(const pd_dht_table_t *t);

/* Same /24 (IPv4) or /48 (IPv6)? */
bool pd_dht_same_subnet(const pd_netaddr_t *a, const pd_netaddr_t *b);

/* Check every invariant (sizes and counters, bucket = log2 distance, a
 * record per entry, no ping out for a cache entry, no id twice in the
 * table): 0 or PD_EINVAL. For tests. Subnet limits are not invariants (the
 * admit hook may allow more), nor is seen_ms order (now_ms is the
 * caller's). */
int pd_dht_table_check(const pd_dht_table_t *t);

#endif
