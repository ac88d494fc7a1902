/* addrbook — the new/tried address book (Bitcoin Core's addrman, in C).
 *
 * Owns: the entries, the new table (1,024 buckets x 64 slots by default) and
 * the tried table (256 x 64 by default; see "Geometry" below) with Bitcoin
 * Core's keyed placement reproduced exactly
 * (double-SHA-256 "cheap hash" over key, address key, group and source group),
 * up to 8 new-table references per address, test-before-evict for tried
 * collisions, "terrible" entries, attempt/good/connected bookkeeping, the ban
 * list (a pd_banlist_t it holds), and the sampling primitives the selection
 * code uses: a random entry from a table (Select_), a GetAddr sample, and the
 * built-in default selection (85% tried / 15% new).
 * Does not own: deciding whom to dial beyond that default (policies), files
 * (bookstore + driver), the clock or entropy: every call takes `now` (Unix
 * seconds) and the book draws randomness only from the pd_rng_t handed to
 * pd_book_create. Same key, seed and calls => same book, byte for byte.
 *
 * Entries are named by a uint32_t id, stable while the entry lives (ids of
 * deleted entries are reused). Addresses are keyed by IP and port together
 * (as Bitcoin Core since 2022: one IP with two ports is two entries).
 */
#ifndef PD_ADDRBOOK_H
#define PD_ADDRBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "banlist.h"
#include "events.h"
#include "netaddr.h"
#include "rng.h"

#define PD_BOOK_KEY_LEN 32
/* Bitcoin Core's geometry: the default, and the maximum (other modules size
 * arrays with these). A book's own geometry may be smaller, see below. */
#define PD_BOOK_NEW_BUCKETS 1024
#define PD_BOOK_TRIED_BUCKETS 256
#define PD_BOOK_BUCKET_SIZE 64
#define PD_BOOK_NEW_BUCKETS_PER_SOURCE_GROUP 64
#define PD_BOOK_TRIED_BUCKETS_PER_GROUP 8
#define PD_BOOK_NEW_BUCKETS_PER_ADDRESS 8
#define PD_BOOK_CAPACITY (PD_BOOK_NEW_BUCKETS * PD_BOOK_BUCKET_SIZE + PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE)
/* Bitcoin Core's constants (addrman_impl.h), seconds. */
#define PD_BOOK_HORIZON (30 * 86400)     /* ADDRMAN_HORIZON */
#define PD_BOOK_RETRIES 3                /* ADDRMAN_RETRIES */
#define PD_BOOK_MAX_FAILURES 10          /* ADDRMAN_MAX_FAILURES */
#define PD_BOOK_MIN_FAIL (7 * 86400)     /* ADDRMAN_MIN_FAIL */
#define PD_BOOK_REPLACEMENT (4 * 3600)   /* ADDRMAN_REPLACEMENT */
#define PD_BOOK_TEST_WINDOW (40 * 60)    /* ADDRMAN_TEST_WINDOW */
#define PD_BOOK_TRIED_COLLISION_SIZE 10  /* ADDRMAN_SET_TRIED_COLLISION_SIZE */
#define PD_BOOK_GETADDR_MAX 1000         /* MAX_ADDR_TO_SEND */
#define PD_BOOK_GETADDR_PCT 23           /* MAX_PCT_ADDR_TO_SEND */
#define PD_BOOK_NO_ID UINT32_MAX

/* Geometry: how many buckets each table has (64 slots per bucket always).
 * Valid: powers of two, new_buckets 16..1024, tried_buckets 4..256; the
 * default (pd_book_geometry_default) is Bitcoin Core's 1024 / 256, and with
 * it every placement is exactly Bitcoin Core's. For another geometry the
 * same formulas run with the counts replaced:
 *   tried bucket = H(key, group, H(key, addr) % tried_per_group) % tried_buckets
 *   new bucket   = H(key, source group, H(key, group, source group)
 *                    % new_per_source_group) % new_buckets
 *   position     = H(key, 'N'/'K', bucket, addr) % 64 (unchanged)
 * where the spreads scale with the tables:
 *   new_per_source_group = max(1, 64 * new_buckets / 1024)
 *   tried_per_group      = max(1, 8 * tried_buckets / 256)
 * so one source group reaches at most that many new buckets and one address
 * group at most that many tried buckets. A book holds at most
 * 64 * (new_buckets + tried_buckets) entries. Memory: the tables are
 * rank-compressed: 16 bytes per bucket (occupancy bits and a pointer) plus a
 * small heap array per non-empty bucket holding only the ids of its taken
 * slots, so an empty 1024/256 book's tables cost 20 KiB (64/16: 1.3 KiB)
 * and they grow with the references they hold: 32 bytes for a lone id in
 * a bucket, about 4.3 bytes an id in a full one. */
#define PD_BOOK_MIN_NEW_BUCKETS 16
#define PD_BOOK_MIN_TRIED_BUCKETS 4
typedef struct pd_book_geometry {
  uint32_t new_buckets, tried_buckets;
} pd_book_geometry_t;

/* Bitcoin Core's 1024 / 256. */
void pd_book_geometry_default(pd_book_geometry_t *g);
/* 0 when g is a valid geometry, PD_EINVAL otherwise (also for NULL). */
int pd_book_geometry_check(const pd_book_geometry_t *g);
/* The spreads above, for a valid geometry (NULL = the default). */
uint32_t pd_book_geometry_new_per_source_group(const pd_book_geometry_t *g);
uint32_t pd_book_geometry_tried_per_group(const pd_book_geometry_t *g);

enum pd_table { PD_TABLE_NEW = 0, PD_TABLE_TRIED = 1, PD_TABLE_ANY = 2 };

enum { PD_BOOK_ALLOW_PRIVATE = 1 << 0 };

typedef struct pd_book pd_book_t;

/* A copy of one entry, for callers (API, policies, store). */
typedef struct pd_book_info {
  uint32_t id;
  pd_netaddr_t addr;
  pd_netaddr_t source; /* who told us (port 0) */
  bool has_node_id;
  uint8_t node_id[PD_NODE_ID_LEN];
  int64_t time;               /* nTime: last heard of / connected (Unix s) */
  int64_t last_try;           /* 0 = never */
  int64_t last_success;       /* 0 = never */
  int64_t last_count_attempt; /* 0 = never */
  int attempts;               /* failed attempts since last success (saturates at 127) */
  bool service_only;          /* a node's service endpoint: peerd never dials it */
  int refcount;               /* new-table references (0 when tried) */
  bool in_tried;
  int bucket;   /* tried: its bucket; new: bucket of one reference */
  int position; /* slot within that bucket */
} pd_book_info_t;

/* Create an empty book with the given 32-byte key. The rng is borrowed and
 * must outlive the book. flags: PD_BOOK_ALLOW_PRIVATE. Default geometry. */
int pd_book_create(pd_book_t **out, const uint8_t key[PD_BOOK_KEY_LEN], pd_rng_t *rng,
                   unsigned flags);
/* The same with a geometry (NULL = the default); PD_EINVAL when invalid. */
int pd_book_create_ex(pd_book_t **out, const uint8_t key[PD_BOOK_KEY_LEN], pd_rng_t *rng,
                      unsigned flags, const pd_book_geometry_t *g);
/* The book's geometry. */
void pd_book_geometry(const pd_book_t *b, pd_book_geometry_t *g);
void pd_book_destroy(pd_book_t *b);

const uint8_t *pd_book_key(const pd_book_t *b);
bool pd_book_allow_private(const pd_book_t *b);
size_t pd_book_size(const pd_book_t *b);        /* new + tried */
size_t pd_book_count_new(const pd_book_t *b);
size_t pd_book_count_tried(const pd_book_t *b);
pd_banlist_t *pd_book_bans(pd_book_t *b);
const pd_banlist_t *pd_book_bans_const(const pd_book_t *b);

/* AddSingle. `addr_time` is the nTime the address was announced with
 * (now, when the node itself reports it); `source` is who told us (its port
 * is ignored); `time_penalty` seconds are subtracted from nTime unless the
 * source announces itself. node_id may be NULL.
 * Returns 1 when a new-table reference was made (new entry or extra
 * reference), 0 when nothing changed (known, no news, lost a slot contest),
 * PD_EUNROUTABLE/PD_EINVAL (with *why when why != NULL) when the address may
 * not enter the book, PD_EBANNED when it is banned, PD_ENOMEM when memory
 * for the entry or its table slot runs out (the book is then unchanged; the
 * rng may have advanced). */
int pd_book_add(pd_book_t *b, const pd_netaddr_t *addr, const uint8_t *node_id, int64_t addr_time,
                const pd_netaddr_t *source, int64_t time_penalty, int64_t now, const char **why);

/* Good_: a connection to addr succeeded and was useful. Moves it to tried
 * (returns 1), or, when test_before_evict and its tried slot is taken,
 * records a tried collision and returns 0. 0 too when already tried.
 * PD_ENOENT when unknown. PD_ENOMEM (the book unchanged) when the table
 * slot the move needs cannot be allocated. */
int pd_book_good(pd_book_t *b, const pd_netaddr_t *addr, bool test_before_evict, int64_t now);
/* Attempt_: we tried to connect. count_failure counts it against the entry
 * (once per Good() epoch, as Bitcoin Core). 0 or PD_ENOENT. */
int pd_book_attempt(pd_book_t *b, const pd_netaddr_t *addr, bool count_failure, int64_t now);
/* Connected_: we were connected recently; refreshes nTime at most every
 * 20 minutes. 0 or PD_ENOENT. */
int pd_book_connected(pd_book_t *b, const pd_netaddr_t *addr, int64_t now);
/* Mark an entry as a service endpoint only (an address the node gave: the
 * node may dial it, peerd itself never does) or clear the mark. Placement
 * is unchanged. 0 or PD_ENOENT. */
int pd_book_set_service_only(pd_book_t *b, uint32_t id, bool on);
/* The first entry (lowest id) with this node id, or PD_BOOK_NO_ID; a scan
 * of the entries (for the API, not per packet). */
uint32_t pd_book_find_node(const pd_book_t *b, const uint8_t node_id[PD_NODE_ID_LEN]);

/* Remove an entry entirely (operator action). 0 or PD_ENOENT. */
int pd_book_remove(pd_book_t *b, const pd_netaddr_t *addr);

/* Look up by address: its id, or PD_BOOK_NO_ID. */
uint32_t pd_book_find(const pd_book_t *b, const pd_netaddr_t *addr);
/* pd_book_find, and the answer is remembered until the book's index next
 * changes: a pd_book_add of the same address then skips its own lookup
 * (a PEX intake looks an address up for the policy's view, then adds it).
 * hash: the address's hash from pd_book_prefetch's pass 0, or NULL. */
uint32_t pd_book_find_remember(pd_book_t *b, const pd_netaddr_t *addr, const uint64_t *hash);
/* A hint, no effect on the book: start loading what pd_book_find(b, addr)
 * and pd_book_info will read. Pass 0 hashes the address into *hash and
 * loads the index line it names; pass 1 (after pass 0 over the same
 * addresses, the index line then at hand) follows it to the entry when the
 * address is there; pass 2 (the entry then at hand) to its node id. A
 * caller with a batch of addresses (a received ADDR) runs each pass over a
 * few dozen ahead of the ones it decides on, so the cache misses overlap
 * instead of following one another. */
void pd_book_prefetch(const pd_book_t *b, const pd_netaddr_t *addr, uint64_t *hash, int pass);
/* Copy an entry out. 0 or PD_ENOENT. */
int pd_book_info(const pd_book_t *b, uint32_t id, pd_book_info_t *out);
/* Only its address and table (tried or new), for walks over every id below
 * pd_book_id_bound: no slot lookup, unlike pd_book_info. in_tried may be
 * NULL. 0 or PD_ENOENT. */
int pd_book_entry_addr(const pd_book_t *b, uint32_t id, pd_netaddr_t *addr, bool *in_tried);
/* IsTerrible at now. false for unknown ids. */
bool pd_book_is_terrible(const pd_book_t *b, uint32_t id, int64_t now);
/* GetChance at now (0..1]. */
double pd_book_chance(const pd_book_t *b, uint32_t id, int64_t now);

/* Select_ for one table: a random entry drawn by Bitcoin Core's bucket walk,
 * accepted with probability GetChance * 1.2^tries. PD_TABLE_ANY picks the
 * table 50/50 as Bitcoin Core. Returns the id or PD_BOOK_NO_ID when that
 * table is empty. */
uint32_t pd_book_random(pd_book_t *b, enum pd_table table, int64_t now);
/* bitcoind 0.9.3's draw for one table (PD_TABLE_NEW or PD_TABLE_TRIED): a
 * uniformly random non-empty bucket, then a uniformly random occupied slot
 * in it, with no GetChance acceptance (policies apply their own). Work
 * bounded by the table's bucket count. PD_BOOK_NO_ID when the table is
 * empty. */
uint32_t pd_book_random_bucket(pd_book_t *b, enum pd_table table);

/* The default selection until policies decide: up to n distinct entries,
 * each drawn from tried with probability 0.85 (new otherwise; the other
 * table when one is empty), skipping banned entries, terrible entries and
 * entries already picked in this call. Bounded work: gives up after
 * 32 * n + 64 draws. Returns how many ids were written to out. */
size_t pd_book_select(pd_book_t *b, size_t n, int64_t now, uint32_t *out);

/* GetAddr_: up to min(max_pct% of the book, max_addrs) random entries
 * (0 = no limit for either), skipping terrible ones when filtered. Returns
 * the count written to out (out must hold min(cap, ...) ids). */
size_t pd_book_getaddr(pd_book_t *b, size_t max_addrs, size_t max_pct, bool filtered,
                       int64_t now, uint32_t *out, size_t cap);

/* Tried collisions (test-before-evict). */
size_t pd_book_collision_count(const pd_book_t *b);

/* What the book decided, counted since it was created (not saved with it:
 * a book restored by bookstore starts from zero, and restoring its pending
 * collisions counts nothing). One increment where the decision is taken;
 * each ending is counted once, so at any time
 *   collisions + (restored) = kept + replaced + slot_free + dropped + pending.
 * Test-before-evict (pd_book_good with test_before_evict, then
 * pd_book_resolve_collisions): */
typedef struct pd_book_counters {
  uint64_t collisions;           /* Good() found the tried slot taken: a collision recorded */
  uint64_t collisions_full;      /* ... while 10 were pending: not recorded (stays in new) */
  uint64_t tbe_kept_connected;   /* resolved, incumbent kept: it connected in the last 4 h */
  uint64_t tbe_kept_policy;      /* resolved, incumbent kept by evict_tried */
  uint64_t tbe_replaced_failed;  /* resolved, candidate took the slot: the incumbent's test failed */
  uint64_t tbe_replaced_timeout; /* ...: the 40 min test window passed without a test */
  uint64_t tbe_replaced_policy;  /* ...: evict_tried said so */
  uint64_t tbe_slot_free;        /* resolved: the slot had become free, the candidate moved */
  uint64_t tbe_dropped;          /* a pending candidate left the book before a verdict */
  /* The new table (AddSingle's slot contests, evict_new or the built-in rule): */
  uint64_t new_replaced;         /* an occupied slot went to the candidate */
  uint64_t new_kept;             /* the incumbent kept its slot, the candidate lost */
  uint64_t new_evicted;          /* entries that left the book: their last new slot was taken
                                    (by a candidate or by a demoted tried entry) */
  /* The tried table: */
  uint64_t tried_demoted;        /* tried entries pushed back to new by another's move */
} pd_book_counters_t;
/* Copy the counters out (zeros for a NULL book). */
void pd_book_counters(const pd_book_t *b, pd_book_counters_t *out);
/* ResolveCollisions_ at now. A collision whose move to tried cannot get
 * memory (see pd_book_good's PD_ENOMEM) stays pending for a later call. */
void pd_book_resolve_collisions(pd_book_t *b, int64_t now);
/* SelectTriedCollision_: id of the tried entry that a random pending
 * collision would evict (the one to test with a feeler), or PD_BOOK_NO_ID. */
uint32_t pd_book_select_tried_collision(pd_book_t *b);

/* Ids in a table (PD_TABLE_NEW / PD_TABLE_TRIED / PD_TABLE_ANY) in ascending
 * id order, for paging: skips `offset`, writes up to `limit`, returns the
 * number written; *total gets the table's size. */
size_t pd_book_list(const pd_book_t *b, enum pd_table table, size_t offset, size_t limit,
                    uint32_t *out, size_t *total);

/* New-table slots (bucket * 64 + position, in the book's geometry) that
 * refer to id; returns count (0..8). For the store and for explaining an
 * entry. (pd_book_info's bucket/position are in the book's geometry too.) */
int pd_book_new_refs(const pd_book_t *b, uint32_t id, uint16_t slots[PD_BOOK_NEW_BUCKETS_PER_ADDRESS]);
/* Every entry's new-table slots in one pass over the table (what
 * pd_book_new_refs gives for each id, in ascending order): count[id] and
 * slots[id][0..count) for id < pd_book_id_bound(b); the arrays must hold
 * that many. An entry with several references otherwise costs a scan of
 * the whole table each (the store encodes every entry). */
uint32_t pd_book_id_bound(const pd_book_t *b);
void pd_book_new_refs_all(const pd_book_t *b, uint8_t *count,
                          uint16_t (*slots)[PD_BOOK_NEW_BUCKETS_PER_ADDRESS]);

/* Placement, exactly as Bitcoin Core (usable without a book, e.g. by
 * `peerd book-slot`). `group` functions use pd_netaddr_group(allow_private).
 * These use the default geometry; the _ex variants take one (NULL = the
 * default; PD_EINVAL when invalid). pd_book_bucket_position does not depend
 * on the geometry (only on the bucket number it is given). */
int pd_book_new_bucket(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                       const pd_netaddr_t *source, bool allow_private);
int pd_book_tried_bucket(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                         bool allow_private);
int pd_book_new_bucket_ex(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                          const pd_netaddr_t *source, bool allow_private,
                          const pd_book_geometry_t *g);
int pd_book_tried_bucket_ex(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                            bool allow_private, const pd_book_geometry_t *g);
int pd_book_bucket_position(const uint8_t key[PD_BOOK_KEY_LEN], bool is_new, int bucket,
                            const pd_netaddr_t *addr);

/* Restoring a saved book (bookstore): put an entry back as it was. For a
 * tried entry, `slots` is ignored and it goes to its tried slot; for a new
 * entry, each slot (bucket*64+pos, in the book's geometry: slots beyond its
 * new table are ignored) is kept when pos matches the address's position in
 * that bucket and the slot is free; when none is kept, the entry
 * is placed in its source's bucket (as Bitcoin Core's load does). Returns the
 * new id via *id_out, or PD_EINVAL (why set) / PD_EEXIST (duplicate) /
 * PD_EFULL (no free slot) / PD_EUNROUTABLE / PD_ENOMEM (book unchanged). */
int pd_book_restore(pd_book_t *b, const pd_book_info_t *e, const uint16_t *slots, size_t nslots,
                    uint32_t *id_out, const char **why);
/* Re-insert a pending tried collision by address (store). */
int pd_book_restore_collision(pd_book_t *b, uint32_t id);
/* Ids of pending tried collisions (up to cap); returns count. */
size_t pd_book_collisions(const pd_book_t *b, uint32_t *out, size_t cap);
/* Bitcoin's m_last_good (Unix s), used by Attempt's failure counting. */
int64_t pd_book_last_good(const pd_book_t *b);
void pd_book_set_last_good(pd_book_t *b, int64_t t);

/* Decision hooks (the Lua policy host installs them; absent or returning
 * PD_BOOK_HOOK_DEFAULT, the book applies Bitcoin Core's built-in rule).
 * Hooks must not modify the book. */
enum {
  PD_BOOK_HOOK_DEFAULT = -1, /* no decision: use the built-in rule */
  PD_BOOK_KEEP = 0,          /* keep the incumbent */
  PD_BOOK_REPLACE = 1,       /* the candidate takes the slot / the tried place */
  PD_BOOK_WAIT = 2,          /* evict_tried only: decide later (keep testing) */
};
typedef struct pd_book_hooks {
  /* A new-table slot is taken by `incumbent` and `candidate` (not yet in
   * the book when candidate->id == PD_BOOK_NO_ID) wants it. Built-in:
   * replace when the incumbent is terrible, or has more than one reference
   * while the candidate has none. */
  int (*evict_new)(void *ud, const pd_book_t *b, uint32_t incumbent,
                   const pd_book_info_t *candidate, int64_t now);
  /* ResolveCollisions: candidate (in new) collides with incumbent (in
   * tried). Built-in: Bitcoin Core's rules (keep an incumbent that connected
   * in the last 4 h; replace one that failed a test more than 60 s ago or
   * after the 40 min test window; otherwise wait). */
  int (*evict_tried)(void *ud, const pd_book_t *b, uint32_t incumbent, uint32_t candidate,
                     int64_t now);
  void *ud;
} pd_book_hooks_t;

/* Install (or, with NULL, remove) the decision hooks. */
void pd_book_set_hooks(pd_book_t *b, const pd_book_hooks_t *hooks);

/* Audit events (events.h; NULL or a NULL fn: none, and nothing is built):
 * "evict" when an entry leaves the book because a new-table slot went to
 * another address (by "policy": evict.lua's evict_new; by "default":
 * reason "terrible" or "more_references"; reason "tried_demotion" when an
 * entry pushed out of tried took its slot), and when a tried entry goes
 * back to new (outcome "moved_to_new") for a colliding one;
 * "tried_collision" when Good() finds the tried slot taken (test before
 * evict); "collision_resolved" when ResolveCollisions ends one (outcome
 * "replaced", "kept" or "moved_to_tried", by "policy" or "default" with
 * its reason). Losing one of several new-table references is not an
 * eviction. The sink is copied. */
void pd_book_set_events(pd_book_t *b, const pd_event_sink_t *sink);

/* Internal consistency check (tables vs entries vs index), for tests and
 * fuzzing: 0 or PD_ECORRUPT. O(size of tables). */
int pd_book_check(const pd_book_t *b);
/* Bytes of heap the book holds (the book with its tables, entries, index,
 * node ids, ban list not included), for benchmarks. */
size_t pd_book_memory(const pd_book_t *b);

/* Testing only (fault injection for the unit tests): the n-th table-bucket
 * growth from now on fails as if malloc had (the operation then returns
 * PD_ENOMEM); 0 turns it off. One-shot: after that failure growth works
 * again. Returns the countdown that was left (0: off, or already fired).
 * Never used outside tests. */
uint32_t pd_book_set_alloc_fail_after(pd_book_t *b, uint32_t n);

#endif
