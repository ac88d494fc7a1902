/* addrbook — see addrbook.h.
 *
 * Layout (all sized for a full book of 64 * (new + tried buckets) entries):
 *  - entries: one array of 64-byte records indexed by id. Deleted ids go on
 *    a LIFO free list threaded through the record's `rpos` field, so id
 *    allocation is deterministic. Times are kept as uint32 Unix seconds
 *    (clamped to [0, 2^32-1]; good until 2106) to fit the record in one
 *    cache line. Node ids (20 bytes) live in a side pool indexed by a uint32
 *    (0 = none), so entries without one cost nothing extra.
 *  - address index: open addressing (linear probing, backward-shift delete)
 *    of uint32 ids, keyed by SipHash-2-4 (libsodium crypto_shorthash) of
 *    ip || port, with a SipHash key derived from the book key.
 *  - tables: rank-compressed. Per bucket one occupancy word (bit p = slot
 *    p taken) and one pointer to a small heap array of the ids in the taken
 *    slots, in position order: the id at position p of bucket k is
 *    arr[k][popcount(occ[k] & ((1 << p) - 1))]; an empty bucket has NULL.
 *    The array's capacity is derived from the popcount (rounded up to a
 *    multiple of 4, see tab_cap), so a 50-address book costs a few KiB
 *    instead of the 320 KiB a flat default table took. The occupancy words
 *    and the pointers sit in the book struct's flexible tail, sized by the
 *    geometry. new_get/tried_get read a slot; set_new/set_tried are the
 *    only writers. Full-table scans walk the occupancy words.
 *    Growing a bucket allocates, so every public operation that can fill a
 *    slot first reserves room (tab_reserve) for each bucket it may grow,
 *    before it changes anything, and returns PD_ENOMEM with the book
 *    unchanged when that fails; a reserved block is not shrunk until the
 *    operation ends (tab_settle), so a removal followed by an insertion in
 *    the same bucket cannot need a second allocation. Ops that may return
 *    PD_ENOMEM for this reason: pd_book_add, pd_book_good, pd_book_restore
 *    (and pd_book_resolve_collisions, which returns nothing: a collision
 *    whose move fails stays pending). Shrinking never fails the operation
 *    (a failed shrink keeps the old, larger block).
 *  - vrandom: ids in random-access order with each entry's position in it
 *    (Bitcoin Core's vRandom / SwapRandom) for GetAddr.
 *  - per entry, two cached slots: `slot` (tried: its tried slot; new: one
 *    new-table slot that refers to it, refreshed by one scan when that
 *    reference goes, see F_STALE) and `home` (its new slot for its own source, set at
 *    creation), so Good() and tried evictions skip most SHA256d work.
 *  - tried collisions: a sorted array of at most 10 ids (Bitcoin's
 *    std::set<int> ordering). Ids are reused here, so a deleted entry is
 *    dropped from the set at once instead of lazily as Bitcoin does.
 *
 * Placement hashes are Bitcoin Core's HashWriter double SHA-256 "cheap hash"
 * (first 8 bytes, little endian) over exactly the bytes it serialises;
 * SHA-256 comes from OpenSSL libcrypto (SHA-NI where the CPU has it).
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "addrbook.h"

#include <openssl/sha.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Per book (geometry): b->new_slots, b->tried_slots; AddSingle creates an
 * entry before it knows whether it wins a slot, so a full book can hold one
 * extra entry for a moment: b->max_entries = new_slots + tried_slots + 1. */
#define NO_ID PD_BOOK_NO_ID
#define T_LIMIT ((int64_t)1 << 40) /* time inputs are clamped to +-2^40 s */

/* F_STALE: a new entry's cached `slot` was cleared while other references
 * remain; `slot` then holds the lowest slot left (found by one scan when the
 * cached one went) until the next add_ref takes the cache over. */
enum { F_LIVE = 1, F_TRIED = 2, F_HOME = 4, F_STALE = 8 };

#define ATTEMPTS_MAX 127

typedef struct entry {
  uint8_t ip[16];
  uint8_t src[16];
  uint32_t time;
  uint32_t last_try;
  uint32_t last_success;
  uint32_t last_count;
  uint32_t rpos; /* position in vrandom; next free id when on the free list */
  uint32_t node; /* index into the node id pool, 0 = none */
  uint16_t port;
  uint16_t slot; /* tried: its tried slot; new: one slot that refers to it */
  uint16_t home; /* new slot for (addr, own source), valid with F_HOME */
  uint8_t attempts : 7; /* saturating at 127 (Bitcoin looks at 10 at most) */
  uint8_t svc : 1;      /* a service endpoint the node gave: peerd never dials it */
  uint8_t refcount : 4;
  uint8_t flags : 4;
} entry_t;

_Static_assert(sizeof(entry_t) == 64, "entry must be one cache line");

/* GetNewBucket's second hash depends only on the source's group and the
 * first hash's residue (< new_per_sg <= 64): the buckets of one source
 * group, remembered. An ADDR's addresses share their source, so its up to
 * 64 distinct second hashes are computed once, not once per address (one
 * SHA256d of the three a new placement costs). sgn 0: empty. */
typedef struct {
  uint64_t known; /* bit r: bucket[r] holds residue r's bucket */
  uint16_t bucket[64];
  uint8_t sg[1 + PD_GROUP_MAX];
  uint8_t sgn;
} new_memo_t;
_Static_assert(PD_BOOK_NEW_BUCKETS_PER_SOURCE_GROUP <= 64, "a residue must fit new_memo_t");

struct pd_book {
  uint8_t key[PD_BOOK_KEY_LEN];
  uint8_t sip_key[crypto_shorthash_KEYBYTES];
  pd_rng_t *rng;
  bool allow_private;
  pd_banlist_t *bans;

  entry_t *e;
  uint32_t e_cap, e_hi; /* ids below e_hi have been handed out */
  uint32_t free_head;
  uint32_t n_new, n_tried;

  uint32_t *vrandom;
  uint32_t nrandom, vrandom_cap;

  uint32_t *index;
  uint32_t index_cap, index_count; /* cap: power of two */
  /* pd_book_find_remember's answer: id (or NO_ID) of memo_ip/memo_port,
   * good while index_gen (bumped on every index change) is memo_gen */
  uint64_t index_gen, memo_gen;
  uint8_t memo_ip[16];
  uint16_t memo_port;
  uint32_t memo_id;

  uint8_t (*nodes)[PD_NODE_ID_LEN];
  uint32_t nodes_cap, nodes_hi, nodes_free; /* index 0 unused */

  pd_book_hooks_t hooks; /* decision hooks; zeroed = built-in rules */
  /* Audit events (pd_book_set_events) and the context of the operation
   * that may evict: who decided, why, for which address, at what time.
   * ev_active is set only around the slot changes a decision causes. */
  pd_event_sink_t ev;
  bool ev_active;
  const char *ev_by, *ev_reason;
  int64_t ev_now;
  pd_netaddr_t ev_cause;
  uint32_t coll[PD_BOOK_TRIED_COLLISION_SIZE];
  uint32_t ncoll;
  int64_t last_good;
  pd_book_counters_t cnt; /* pd_book_counters: one increment per decision */
  new_memo_t memo;

  /* Geometry and the derived counts. */
  uint32_t new_buckets, tried_buckets;
  uint32_t new_per_sg, tried_per_g; /* spreads, see addrbook.h */
  uint32_t new_slots, tried_slots, max_entries;

  /* One bit per slot, one word per bucket: which slots are occupied. Kept
   * in step with the id arrays by set_new/set_tried (the only writers), so
   * Select_'s bucket walk is a rotate and a count-trailing-zeros on a word
   * that sits in L1, and a slot's id is one popcount away. */
  uint64_t *new_occ;
  uint64_t *tried_occ;
  /* Per bucket: the ids of its occupied slots in position order (NULL when
   * empty); capacity tab_cap(popcount), or larger while reserved. */
  uint32_t **new_arr;
  uint32_t **tried_arr;
  /* Buckets grown by tab_reserve during the current operation, with the
   * capacity they were grown to; tab_settle trims them and clears this. */
  struct {
    uint32_t bucket, cap;
    bool tried;
  } resv[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
  uint32_t nresv;
  /* Testing only (pd_book_set_alloc_fail_after): countdown to a failing
   * bucket growth, 0 = off. */
  uint32_t fail_after;
  uint64_t tail[]; /* new_occ, tried_occ, new_arr, tried_arr */
};

/* ---- small helpers --------------------------------------------------------- */

static int64_t clampt(int64_t t) { return t < -T_LIMIT ? -T_LIMIT : t > T_LIMIT ? T_LIMIT : t; }
static uint32_t t32(int64_t t) {
  return t < 0 ? 0 : t > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)t;
}
static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
static void put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void entry_addr(const entry_t *e, pd_netaddr_t *a) {
  memcpy(a->ip, e->ip, 16);
  a->port = e->port;
}
static void entry_src(const entry_t *e, pd_netaddr_t *a) {
  memcpy(a->ip, e->src, 16);
  a->port = 0;
}

/* ---- placement (Bitcoin Core's AddrInfo::Get*Bucket / GetBucketPosition) ---- */

/* GetCheapHash of a HashWriter: first 8 bytes (LE) of SHA256d. The low-level
 * SHA256_* calls measured faster than EVP with a reused context (see
 * bench_addrbook: no provider dispatch per call). */
static uint64_t cheap_hash(const uint8_t *msg, size_t len) {
  uint8_t h[SHA256_DIGEST_LENGTH];
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, msg, len);
  SHA256_Final(h, &c);
  SHA256_Init(&c);
  SHA256_Update(&c, h, sizeof(h));
  SHA256_Final(h, &c);
  return le64(h);
}

/* CService::GetKey() serialised as a vector: CompactSize 18, 16-byte V1
 * address, port big endian. */
static size_t put_addr_key(uint8_t *p, const pd_netaddr_t *a) {
  p[0] = 18;
  memcpy(p + 1, a->ip, 16);
  p[17] = (uint8_t)(a->port >> 8);
  p[18] = (uint8_t)(a->port & 0xff);
  return 19;
}

/* A group vector: CompactSize length (always < 253) then the bytes. */
static size_t put_group(uint8_t *p, const pd_netaddr_t *a, bool allow_private) {
  uint8_t g[PD_GROUP_MAX];
  size_t n = pd_netaddr_group(a, allow_private, g);
  p[0] = (uint8_t)n;
  memcpy(p + 1, g, n);
  return n + 1;
}

static int tried_bucket(const uint8_t *key, const pd_netaddr_t *a, bool ap, uint32_t nbuckets,
                        uint32_t per_group) {
  uint8_t m[PD_BOOK_KEY_LEN + 1 + PD_GROUP_MAX + 8];
  memcpy(m, key, PD_BOOK_KEY_LEN);
  size_t n = PD_BOOK_KEY_LEN + put_addr_key(m + PD_BOOK_KEY_LEN, a);
  uint64_t h1 = cheap_hash(m, n);
  n = PD_BOOK_KEY_LEN + put_group(m + PD_BOOK_KEY_LEN, a, ap);
  put_le64(m + n, h1 % per_group);
  uint64_t h2 = cheap_hash(m, n + 8);
  return (int)(h2 % nbuckets);
}

/* GetNewBucket's first hash, of (key, address group, source group): its
 * residue mod per_source_group (< 64) picks the bucket. sg: the source's
 * group vector (put_group). */
static uint32_t new_residue(const uint8_t *key, const pd_netaddr_t *a, const uint8_t *sg,
                            size_t sgn, bool ap, uint32_t per_source_group) {
  uint8_t m[PD_BOOK_KEY_LEN + 2 * (1 + PD_GROUP_MAX)];
  memcpy(m, key, PD_BOOK_KEY_LEN);
  size_t n = PD_BOOK_KEY_LEN + put_group(m + PD_BOOK_KEY_LEN, a, ap);
  memcpy(m + n, sg, sgn);
  return (uint32_t)(cheap_hash(m, n + sgn) % per_source_group);
}

/* GetNewBucket's second hash, of (key, source group, residue). */
static int new_bucket_of(const uint8_t *key, const uint8_t *sg, size_t sgn, uint32_t residue,
                         uint32_t nbuckets) {
  uint8_t m[PD_BOOK_KEY_LEN + 1 + PD_GROUP_MAX + 8];
  memcpy(m, key, PD_BOOK_KEY_LEN);
  memcpy(m + PD_BOOK_KEY_LEN, sg, sgn);
  size_t n = PD_BOOK_KEY_LEN + sgn;
  put_le64(m + n, residue);
  return (int)(cheap_hash(m, n + 8) % nbuckets);
}

static int new_bucket(const uint8_t *key, const pd_netaddr_t *a, const pd_netaddr_t *src, bool ap,
                      uint32_t nbuckets, uint32_t per_source_group) {
  uint8_t sg[1 + PD_GROUP_MAX];
  size_t sgn = put_group(sg, src, ap);
  return new_bucket_of(key, sg, sgn, new_residue(key, a, sg, sgn, ap, per_source_group), nbuckets);
}

static int bucket_position(const uint8_t *key, bool is_new, int bucket, const pd_netaddr_t *a) {
  uint8_t m[PD_BOOK_KEY_LEN + 1 + 4 + 19];
  memcpy(m, key, PD_BOOK_KEY_LEN);
  m[PD_BOOK_KEY_LEN] = is_new ? 'N' : 'K';
  put_le32(m + PD_BOOK_KEY_LEN + 1, (uint32_t)bucket);
  size_t n = PD_BOOK_KEY_LEN + 5 + put_addr_key(m + PD_BOOK_KEY_LEN + 5, a);
  return (int)(cheap_hash(m, n) % PD_BOOK_BUCKET_SIZE);
}

/* ---- geometry ---------------------------------------------------------------- */

static bool pow2_in(uint32_t v, uint32_t lo, uint32_t hi) {
  return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

void pd_book_geometry_default(pd_book_geometry_t *g) {
  if (!g) return;
  g->new_buckets = PD_BOOK_NEW_BUCKETS;
  g->tried_buckets = PD_BOOK_TRIED_BUCKETS;
}

int pd_book_geometry_check(const pd_book_geometry_t *g) {
  if (!g) return PD_EINVAL;
  if (!pow2_in(g->new_buckets, PD_BOOK_MIN_NEW_BUCKETS, PD_BOOK_NEW_BUCKETS)) return PD_EINVAL;
  if (!pow2_in(g->tried_buckets, PD_BOOK_MIN_TRIED_BUCKETS, PD_BOOK_TRIED_BUCKETS))
    return PD_EINVAL;
  return 0;
}

uint32_t pd_book_geometry_new_per_source_group(const pd_book_geometry_t *g) {
  uint32_t v = g ? (uint32_t)((uint64_t)PD_BOOK_NEW_BUCKETS_PER_SOURCE_GROUP * g->new_buckets /
                              PD_BOOK_NEW_BUCKETS)
                 : PD_BOOK_NEW_BUCKETS_PER_SOURCE_GROUP;
  return v ? v : 1;
}

uint32_t pd_book_geometry_tried_per_group(const pd_book_geometry_t *g) {
  uint32_t v = g ? (uint32_t)((uint64_t)PD_BOOK_TRIED_BUCKETS_PER_GROUP * g->tried_buckets /
                              PD_BOOK_TRIED_BUCKETS)
                 : PD_BOOK_TRIED_BUCKETS_PER_GROUP;
  return v ? v : 1;
}

int pd_book_new_bucket(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                       const pd_netaddr_t *source, bool allow_private) {
  return pd_book_new_bucket_ex(key, addr, source, allow_private, NULL);
}

int pd_book_tried_bucket(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                         bool allow_private) {
  return pd_book_tried_bucket_ex(key, addr, allow_private, NULL);
}

int pd_book_new_bucket_ex(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                          const pd_netaddr_t *source, bool allow_private,
                          const pd_book_geometry_t *g) {
  if (!key || !addr || !source) return PD_EINVAL;
  pd_book_geometry_t d;
  if (!g) {
    pd_book_geometry_default(&d);
    g = &d;
  }
  if (pd_book_geometry_check(g) != 0) return PD_EINVAL;
  return new_bucket(key, addr, source, allow_private, g->new_buckets,
                    pd_book_geometry_new_per_source_group(g));
}

int pd_book_tried_bucket_ex(const uint8_t key[PD_BOOK_KEY_LEN], const pd_netaddr_t *addr,
                            bool allow_private, const pd_book_geometry_t *g) {
  if (!key || !addr) return PD_EINVAL;
  pd_book_geometry_t d;
  if (!g) {
    pd_book_geometry_default(&d);
    g = &d;
  }
  if (pd_book_geometry_check(g) != 0) return PD_EINVAL;
  return tried_bucket(key, addr, allow_private, g->tried_buckets,
                      pd_book_geometry_tried_per_group(g));
}

int pd_book_bucket_position(const uint8_t key[PD_BOOK_KEY_LEN], bool is_new, int bucket,
                            const pd_netaddr_t *addr) {
  if (!key || !addr) return PD_EINVAL;
  return bucket_position(key, is_new, bucket, addr);
}

/* Slot (bucket * 64 + position) of an address in the tried table. */
static uint32_t tried_slot_of(const pd_book_t *b, const pd_netaddr_t *a) {
  int bk = tried_bucket(b->key, a, b->allow_private, b->tried_buckets, b->tried_per_g);
  return (uint32_t)(bk * PD_BOOK_BUCKET_SIZE + bucket_position(b->key, false, bk, a));
}

static uint32_t new_slot_of(const pd_book_t *b, const pd_netaddr_t *a, const pd_netaddr_t *src) {
  int bk = new_bucket(b->key, a, src, b->allow_private, b->new_buckets, b->new_per_sg);
  return (uint32_t)(bk * PD_BOOK_BUCKET_SIZE + bucket_position(b->key, true, bk, a));
}

/* new_slot_of with the second hash remembered (new_memo_t): the same slot. */
static uint32_t new_slot_memo(pd_book_t *b, const pd_netaddr_t *a, const pd_netaddr_t *src) {
  uint8_t sg[1 + PD_GROUP_MAX];
  size_t sgn = put_group(sg, src, b->allow_private);
  uint32_t r = new_residue(b->key, a, sg, sgn, b->allow_private, b->new_per_sg);
  new_memo_t *mo = &b->memo;
  if (mo->sgn != sgn || memcmp(mo->sg, sg, sgn) != 0) {
    memcpy(mo->sg, sg, sgn);
    mo->sgn = (uint8_t)sgn;
    mo->known = 0;
  }
  int bk;
  if (mo->known >> r & 1) {
    bk = mo->bucket[r];
  } else {
    bk = new_bucket_of(b->key, sg, sgn, r, b->new_buckets);
    mo->bucket[r] = (uint16_t)bk;
    mo->known |= (uint64_t)1 << r;
  }
  return (uint32_t)(bk * PD_BOOK_BUCKET_SIZE + bucket_position(b->key, true, bk, a));
}

/* ---- IsTerrible / GetChance ----------------------------------------------- */

static bool terrible(const entry_t *e, int64_t now) {
  if (now - (int64_t)e->last_try <= 60) return false; /* tried in the last minute */
  if ((int64_t)e->time > now + 10 * 60) return true;  /* from the future */
  if (now - (int64_t)e->time > PD_BOOK_HORIZON) return true;
  if (e->last_success == 0 && e->attempts >= PD_BOOK_RETRIES) return true;
  if (now - (int64_t)e->last_success > PD_BOOK_MIN_FAIL && e->attempts >= PD_BOOK_MAX_FAILURES)
    return true;
  return false;
}

/* 0.66^k for k = 0..8 (GetChance caps the exponent at 8). */
static const double POW066[9] = {
    1.0,
    0.66,
    0.66 * 0.66,
    0.66 * 0.66 * 0.66,
    0.66 * 0.66 * 0.66 * 0.66,
    0.66 * 0.66 * 0.66 * 0.66 * 0.66,
    0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66,
    0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66,
    0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66 * 0.66,
};

static double chance(const entry_t *e, int64_t now) {
  double c = 1.0;
  if (now - (int64_t)e->last_try < 10 * 60) c *= 0.01;
  return c * POW066[e->attempts < 8 ? e->attempts : 8];
}

/* ---- address index ---------------------------------------------------------- */

static uint64_t addr_hash(const pd_book_t *b, const uint8_t ip[16], uint16_t port) {
  uint8_t m[18], out[crypto_shorthash_BYTES];
  memcpy(m, ip, 16);
  m[16] = (uint8_t)(port >> 8);
  m[17] = (uint8_t)(port & 0xff);
  crypto_shorthash(out, m, sizeof(m), b->sip_key);
  return le64(out);
}

/* An index slot holds an id (low IDX_ID_BITS) tagged with 14 bits of the
 * address's hash that the slot position does not use: a probe reads an
 * entry (a likely cache miss in a big lab, the book's hottest line) only
 * when the tag matches, 1 in 16,384 for another address. */
#define IDX_ID_BITS 18
#define IDX_ID_MASK ((1u << IDX_ID_BITS) - 1)
_Static_assert((uint64_t)PD_BOOK_CAPACITY + 1 < IDX_ID_MASK,
               "book ids fit the index's id field (all ones stays NO_ID)");
static inline uint32_t idx_tag(uint64_t h) { return (uint32_t)(h >> 50) << IDX_ID_BITS; }

/* Index slot holding addr, or the empty slot where it would go; *tag gets
 * the address's tag bits. */
static uint32_t index_probe_h(const pd_book_t *b, const uint8_t ip[16], uint16_t port, uint64_t h,
                              bool *found, uint32_t *tag) {
  uint32_t mask = b->index_cap - 1;
  uint32_t t = idx_tag(h);
  *tag = t;
  uint32_t i = (uint32_t)h & mask;
  for (;;) {
    uint32_t v = b->index[i];
    if (v == NO_ID) {
      *found = false;
      return i;
    }
    if ((v & ~IDX_ID_MASK) == t) {
      const entry_t *e = &b->e[v & IDX_ID_MASK];
      if (e->port == port && memcmp(e->ip, ip, 16) == 0) {
        *found = true;
        return i;
      }
    }
    i = (i + 1) & mask;
  }
}

static uint32_t index_probe(const pd_book_t *b, const uint8_t ip[16], uint16_t port, bool *found,
                            uint32_t *tag) {
  return index_probe_h(b, ip, port, addr_hash(b, ip, port), found, tag);
}

static void index_put(pd_book_t *b, uint32_t id) {
  bool found;
  uint32_t tag;
  uint32_t i = index_probe(b, b->e[id].ip, b->e[id].port, &found, &tag);
  b->index[i] = tag | id;
  b->index_count++;
  b->index_gen++;
}

static int index_reserve(pd_book_t *b, uint32_t count) {
  if ((uint64_t)count * 4 <= (uint64_t)b->index_cap * 3) return 0;
  uint32_t cap = b->index_cap ? b->index_cap : 1024;
  while ((uint64_t)count * 4 > (uint64_t)cap * 3) cap *= 2;
  uint32_t *ni = malloc((size_t)cap * sizeof(*ni));
  if (!ni) return PD_ENOMEM;
  memset(ni, 0xff, (size_t)cap * sizeof(*ni));
  uint32_t *old = b->index;
  uint32_t old_cap = b->index_cap;
  b->index = ni;
  b->index_cap = cap;
  b->index_count = 0;
  for (uint32_t i = 0; i < old_cap; i++) {
    if (old[i] != NO_ID) index_put(b, old[i] & IDX_ID_MASK);
  }
  free(old);
  return 0;
}

static void index_del(pd_book_t *b, uint32_t id) {
  bool found;
  uint32_t tag;
  uint32_t i = index_probe(b, b->e[id].ip, b->e[id].port, &found, &tag);
  if (!found) return;
  uint32_t mask = b->index_cap - 1;
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    uint32_t other = b->index[j];
    if (other == NO_ID) break;
    const entry_t *eo = &b->e[other & IDX_ID_MASK];
    uint32_t home = (uint32_t)addr_hash(b, eo->ip, eo->port) & mask;
    /* Move back unless its home lies cyclically in (i, j]. */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      b->index[i] = other;
      i = j;
    }
  }
  b->index[i] = NO_ID;
  b->index_count--;
  b->index_gen++;
}

static uint32_t find_id(const pd_book_t *b, const pd_netaddr_t *a) {
  if (b->index_count == 0) return NO_ID;
  bool found;
  uint32_t tag;
  uint32_t i = index_probe(b, a->ip, a->port, &found, &tag);
  return found ? b->index[i] & IDX_ID_MASK : NO_ID;
}

/* find_id, answered from pd_book_find_remember's memo when it holds a. */
static uint32_t find_id_memo(const pd_book_t *b, const pd_netaddr_t *a) {
  if (b->memo_gen == b->index_gen && b->memo_port == a->port && memcmp(b->memo_ip, a->ip, 16) == 0)
    return b->memo_id;
  return find_id(b, a);
}

/* ---- node id pool --------------------------------------------------------- */

static int nodes_reserve(pd_book_t *b) {
  if (b->nodes_free != 0 || b->nodes_hi < b->nodes_cap) return 0;
  uint32_t cap = b->nodes_cap ? b->nodes_cap * 2 : 64;
  /* At most one id per entry (+ index 0, unused): a 16/4 book (1,281
   * entries) would otherwise double to 2,048 ids, 24 KB it can never use. */
  if (cap > b->max_entries + 1) cap = b->max_entries + 1;
  if (cap <= b->nodes_cap) return PD_ENOMEM;
  void *nn = realloc(b->nodes, (size_t)cap * PD_NODE_ID_LEN);
  if (!nn) return PD_ENOMEM;
  b->nodes = nn;
  b->nodes_cap = cap;
  if (b->nodes_hi == 0) b->nodes_hi = 1; /* index 0 means none */
  return 0;
}

/* Caller has called nodes_reserve. */
static uint32_t node_alloc(pd_book_t *b, const uint8_t id[PD_NODE_ID_LEN]) {
  uint32_t k;
  if (b->nodes_free != 0) {
    k = b->nodes_free;
    memcpy(&b->nodes_free, b->nodes[k], sizeof(uint32_t));
  } else {
    k = b->nodes_hi++;
  }
  memcpy(b->nodes[k], id, PD_NODE_ID_LEN);
  return k;
}

static void node_free(pd_book_t *b, uint32_t k) {
  if (k == 0) return;
  memset(b->nodes[k], 0, PD_NODE_ID_LEN);
  memcpy(b->nodes[k], &b->nodes_free, sizeof(uint32_t));
  b->nodes_free = k;
}

static void set_node(pd_book_t *b, entry_t *e, const uint8_t *node_id) {
  if (e->node) {
    memcpy(b->nodes[e->node], node_id, PD_NODE_ID_LEN);
  } else {
    e->node = node_alloc(b, node_id);
  }
}

/* ---- entries, vrandom, collisions ------------------------------------------ */

/* Make room for one more entry (entries, vrandom, index). */
static int reserve_one(pd_book_t *b) {
  uint32_t live = b->nrandom;
  if (live >= b->max_entries) return PD_ENOMEM;
  if (b->free_head == NO_ID && b->e_hi == b->e_cap) {
    uint32_t cap = b->e_cap ? b->e_cap * 2 : 1024;
    if (cap > b->max_entries) cap = b->max_entries;
    entry_t *ne = aligned_alloc(64, (size_t)cap * sizeof(entry_t));
    if (!ne) return PD_ENOMEM;
    if (b->e) memcpy(ne, b->e, (size_t)b->e_hi * sizeof(entry_t));
    free(b->e);
    b->e = ne;
    b->e_cap = cap;
  }
  if (live == b->vrandom_cap) {
    uint32_t cap = b->vrandom_cap ? b->vrandom_cap * 2 : 1024;
    if (cap > b->max_entries) cap = b->max_entries;
    uint32_t *nv = realloc(b->vrandom, (size_t)cap * sizeof(*nv));
    if (!nv) return PD_ENOMEM;
    b->vrandom = nv;
    b->vrandom_cap = cap;
  }
  return index_reserve(b, b->index_count + 1);
}

/* Create a new-table entry with refcount 0 (caller ran reserve_one). */
static uint32_t create(pd_book_t *b, const pd_netaddr_t *a, const uint8_t src_ip[16]) {
  uint32_t id;
  if (b->free_head != NO_ID) {
    id = b->free_head;
    b->free_head = b->e[id].rpos;
  } else {
    id = b->e_hi++;
  }
  entry_t *e = &b->e[id];
  memset(e, 0, sizeof(*e));
  memcpy(e->ip, a->ip, 16);
  e->port = a->port;
  memcpy(e->src, src_ip, 16);
  e->flags = F_LIVE;
  e->rpos = b->nrandom;
  b->vrandom[b->nrandom++] = id;
  index_put(b, id);
  b->n_new++;
  return id;
}

static void swap_random(pd_book_t *b, uint32_t p1, uint32_t p2) {
  if (p1 == p2) return;
  uint32_t id1 = b->vrandom[p1], id2 = b->vrandom[p2];
  b->e[id1].rpos = p2;
  b->e[id2].rpos = p1;
  b->vrandom[p1] = id2;
  b->vrandom[p2] = id1;
}

/* Drop id from the pending collisions; true when it was there. */
static bool coll_erase(pd_book_t *b, uint32_t id) {
  for (uint32_t i = 0; i < b->ncoll; i++) {
    if (b->coll[i] == id) {
      memmove(&b->coll[i], &b->coll[i + 1], (b->ncoll - i - 1) * sizeof(uint32_t));
      b->ncoll--;
      return true;
    }
  }
  return false;
}

static bool coll_has(const pd_book_t *b, uint32_t id) {
  for (uint32_t i = 0; i < b->ncoll; i++) {
    if (b->coll[i] == id) return true;
  }
  return false;
}

/* Insert keeping ascending id order; no-op when full or present. */
static int coll_insert(pd_book_t *b, uint32_t id) {
  if (coll_has(b, id)) return 0;
  if (b->ncoll >= PD_BOOK_TRIED_COLLISION_SIZE) return PD_EFULL;
  uint32_t i = b->ncoll;
  while (i > 0 && b->coll[i - 1] > id) {
    b->coll[i] = b->coll[i - 1];
    i--;
  }
  b->coll[i] = id;
  b->ncoll++;
  return 0;
}

/* ---- audit events (pd_book_set_events) ---------------------------------------- */

/* Entry id loses its place: slot (bucket * 64 + position) of the new or
 * tried table; outcome "deleted" (it leaves the book) or "moved_to_new". */
static void emit_evict(const pd_book_t *b, uint32_t id, bool tried, uint32_t slot,
                       const char *outcome) {
  if (!b->ev.fn || !b->ev_active) return;
  const entry_t *e = &b->e[id];
  pd_netaddr_t a;
  entry_addr(e, &a);
  pd_event_t ev;
  pd_event_init(&ev, PD_EV_EVICT, b->ev_now * 1000);
  pd_event_addr(&ev, "addr", &a);
  if (e->node) pd_event_id(&ev, "node_id", b->nodes[e->node]);
  pd_event_str(&ev, "table", tried ? "tried" : "new");
  pd_event_int(&ev, "bucket", slot / PD_BOOK_BUCKET_SIZE);
  pd_event_int(&ev, "position", slot % PD_BOOK_BUCKET_SIZE);
  pd_event_str(&ev, "outcome", outcome);
  pd_event_str(&ev, "by", b->ev_by);
  pd_event_str(&ev, "reason", b->ev_reason);
  pd_event_addr(&ev, "replaced_by", &b->ev_cause);
  pd_event_emit(&b->ev, &ev);
}

/* A collision event about candidate id_new and the tried incumbent id_old
 * in tried slot ts (kind: tried_collision or collision_resolved). */
static void emit_collision(const pd_book_t *b, enum pd_event_kind kind, uint32_t id_new,
                           uint32_t id_old, uint32_t ts, const char *outcome, const char *by,
                           const char *reason, int64_t now) {
  if (!b->ev.fn) return;
  const entry_t *en = &b->e[id_new];
  pd_netaddr_t a, o;
  entry_addr(en, &a);
  pd_event_t ev;
  pd_event_init(&ev, kind, now * 1000);
  pd_event_addr(&ev, "addr", &a);
  if (en->node) pd_event_id(&ev, "node_id", b->nodes[en->node]);
  if (id_old != NO_ID) {
    entry_addr(&b->e[id_old], &o);
    pd_event_addr(&ev, "incumbent", &o);
    if (b->e[id_old].node) pd_event_id(&ev, "incumbent_node_id", b->nodes[b->e[id_old].node]);
  }
  pd_event_str(&ev, "table", "tried");
  pd_event_int(&ev, "bucket", ts / PD_BOOK_BUCKET_SIZE);
  pd_event_int(&ev, "position", ts % PD_BOOK_BUCKET_SIZE);
  pd_event_str(&ev, "outcome", outcome);
  pd_event_str(&ev, "by", by);
  pd_event_str(&ev, "reason", reason);
  pd_event_emit(&b->ev, &ev);
}

/* Open the context of a decision that may evict: until ev_end, entries
 * that lose their place are reported as decided by `by` for `reason`,
 * caused by cause. Returns the previous context's state for ev_end. */
typedef struct ev_saved {
  bool active;
  const char *by, *reason;
  pd_netaddr_t cause;
} ev_saved_t;

static ev_saved_t ev_begin(pd_book_t *b, const char *by, const char *reason,
                           const pd_netaddr_t *cause, int64_t now) {
  ev_saved_t s = {b->ev_active, b->ev_by, b->ev_reason, b->ev_cause};
  if (!b->ev.fn) return s;
  b->ev_active = true;
  b->ev_by = by;
  b->ev_reason = reason;
  b->ev_now = now;
  b->ev_cause = *cause;
  return s;
}

static void ev_end(pd_book_t *b, const ev_saved_t *s) {
  b->ev_active = s->active;
  b->ev_by = s->by;
  b->ev_reason = s->reason;
  b->ev_cause = s->cause;
}

void pd_book_set_events(pd_book_t *b, const pd_event_sink_t *sink) {
  if (!b) return;
  if (sink) {
    b->ev = *sink;
  } else {
    memset(&b->ev, 0, sizeof b->ev);
  }
}

/* Bitcoin's Delete, generalised: the caller has taken the entry out of the
 * tables (refcount 0, not in tried). */
static void delete_entry(pd_book_t *b, uint32_t id) {
  entry_t *e = &b->e[id];
  if (e->flags & F_TRIED) {
    b->n_tried--;
  } else {
    b->n_new--;
  }
  swap_random(b, e->rpos, b->nrandom - 1);
  b->nrandom--;
  index_del(b, id);
  node_free(b, e->node);
  if (coll_erase(b, id)) b->cnt.tbe_dropped++; /* a pending candidate left the book */
  memset(e, 0, sizeof(*e));
  e->rpos = b->free_head;
  b->free_head = id;
}

/* ---- tables ------------------------------------------------------------------ */

/* Capacity (ids) of a bucket array holding n ids: n rounded up to a multiple
 * of 4 (0 for an empty bucket, which has no array). */
static inline uint32_t tab_cap(uint32_t n) { return (n + 3) & ~3u; }

/* Population count. Without -mpopcnt (the x86-64 baseline) the builtin is a
 * call into libgcc; the SWAR sequence inline is several times faster, and
 * Select_ does one per draw. */
static inline uint32_t popc(uint64_t v) {
#if defined(__POPCNT__) || !defined(__x86_64__)
  return (uint32_t)__builtin_popcountll(v);
#else
  v = v - ((v >> 1) & 0x5555555555555555ULL);
  v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return (uint32_t)((v * 0x0101010101010101ULL) >> 56);
#endif
}

/* How many occupied positions of a bucket precede position p: the index of
 * p's id in the bucket's array. */
static inline uint32_t rank_of(uint64_t occ, uint32_t p) { return popc(occ & ((1ULL << p) - 1)); }

static inline uint64_t *tab_occ(const pd_book_t *b, bool tried) {
  return tried ? b->tried_occ : b->new_occ;
}
static inline uint32_t **tab_arr(const pd_book_t *b, bool tried) {
  return tried ? b->tried_arr : b->new_arr;
}

/* The id in a slot (bucket * 64 + position), or NO_ID. */
static inline uint32_t tab_get(const pd_book_t *b, bool tried, uint32_t slot) {
  uint32_t k = slot / PD_BOOK_BUCKET_SIZE, p = slot % PD_BOOK_BUCKET_SIZE;
  uint64_t occ = tab_occ(b, tried)[k];
  if (!((occ >> p) & 1)) return NO_ID;
  return tab_arr(b, tried)[k][rank_of(occ, p)];
}
static inline uint32_t new_get(const pd_book_t *b, uint32_t slot) { return tab_get(b, false, slot); }
static inline uint32_t tried_get(const pd_book_t *b, uint32_t slot) {
  return tab_get(b, true, slot);
}

/* Index of bucket k's reservation in b->resv, or -1. */
static int resv_find(const pd_book_t *b, bool tried, uint32_t k) {
  for (uint32_t i = 0; i < b->nresv; i++) {
    if (b->resv[i].bucket == k && b->resv[i].tried == tried) return (int)i;
  }
  return -1;
}

/* Shrink bucket k's array to cap ids (free it for 0). A failed shrink keeps
 * the old, larger block: the book stays correct, it only holds more. */
static void tab_shrink(pd_book_t *b, bool tried, uint32_t k, uint32_t cap) {
  uint32_t **arr = tab_arr(b, tried);
  if (cap == 0) {
    free(arr[k]);
    arr[k] = NULL;
    return;
  }
  uint32_t *na = realloc(arr[k], (size_t)cap * sizeof(uint32_t));
  if (na) arr[k] = na;
}

/* Make room for one more id in bucket k, so that the next insertion there
 * cannot fail. Grows the array (recording the reservation, which keeps the
 * block from shrinking until tab_settle) or finds it already big enough.
 * PD_ENOMEM, with nothing changed, when the growth fails. */
static int tab_reserve(pd_book_t *b, bool tried, uint32_t k) {
  uint32_t n = popc(tab_occ(b, tried)[k]);
  int r = resv_find(b, tried, k);
  uint32_t room = r >= 0 ? b->resv[r].cap : tab_cap(n);
  if (n + 1 <= room) return 0;
  /* cannot happen: an operation grows at most 8 buckets */
  if (r < 0 && b->nresv == PD_BOOK_NEW_BUCKETS_PER_ADDRESS) return PD_ENOMEM;
  /* testing hook: the fail_after-th growth fails */
  if (b->fail_after != 0 && --b->fail_after == 0) return PD_ENOMEM;
  uint32_t cap = tab_cap(n + 1);
  uint32_t **arr = tab_arr(b, tried);
  uint32_t *na = realloc(arr[k], (size_t)cap * sizeof(uint32_t));
  if (!na) return PD_ENOMEM;
  arr[k] = na;
  if (r < 0) {
    r = (int)b->nresv++;
    b->resv[r].bucket = k;
    b->resv[r].tried = tried;
  }
  b->resv[r].cap = cap;
  return 0;
}

/* End of an operation: trim every reserved bucket to what its popcount
 * implies (an unused reservation is given back) and forget them. */
static void tab_settle(pd_book_t *b) {
  for (uint32_t i = 0; i < b->nresv; i++) {
    bool tried = b->resv[i].tried;
    uint32_t k = b->resv[i].bucket;
    uint32_t cap = tab_cap(popc(tab_occ(b, tried)[k]));
    if (cap < b->resv[i].cap) tab_shrink(b, tried, k, cap);
  }
  b->nresv = 0;
}

/* Write a slot: id, or NO_ID to empty it. Overwriting a taken slot never
 * allocates; filling a free one uses the room a caller reserved. */
static void tab_set(pd_book_t *b, bool tried, uint32_t slot, uint32_t id) {
  uint64_t *occ = tab_occ(b, tried);
  uint32_t **arr = tab_arr(b, tried);
  uint32_t k = slot / PD_BOOK_BUCKET_SIZE, p = slot % PD_BOOK_BUCKET_SIZE;
  uint64_t bit = 1ULL << p;
  uint32_t n = popc(occ[k]), r = rank_of(occ[k], p);
  if (occ[k] & bit) {
    if (id != NO_ID) {
      arr[k][r] = id;
      return;
    }
    if (n - r - 1 > 0) memmove(&arr[k][r], &arr[k][r + 1], (size_t)(n - r - 1) * sizeof(uint32_t));
    occ[k] &= ~bit;
    if (tab_cap(n - 1) < tab_cap(n) && resv_find(b, tried, k) < 0)
      tab_shrink(b, tried, k, tab_cap(n - 1));
    return;
  }
  if (id == NO_ID) return;
  /* Callers reserve before they change anything, so this growth does not
   * happen; should one be missed and fail, the slot stays empty, which
   * pd_book_check reports. */
  int rv = resv_find(b, tried, k);
  uint32_t room = rv >= 0 ? b->resv[rv].cap : tab_cap(n);
  if (n + 1 > room && tab_reserve(b, tried, k) != 0) return;
  if (n - r > 0) memmove(&arr[k][r + 1], &arr[k][r], (size_t)(n - r) * sizeof(uint32_t));
  arr[k][r] = id;
  occ[k] |= bit;
}

/* The only writers of the tables. */
static inline void set_new(pd_book_t *b, uint32_t slot, uint32_t id) { tab_set(b, false, slot, id); }
static inline void set_tried(pd_book_t *b, uint32_t slot, uint32_t id) {
  tab_set(b, true, slot, id);
}

/* Bytes of one bucket array of cap ids as the heap holds it: glibc's
 * malloc chunk for the request (8 bytes of header, 16-byte granules,
 * 32 bytes at least), so pd_book_memory counts what the small blocks
 * really cost. */
static size_t block_bytes(uint32_t cap) {
  if (cap == 0) return 0;
  size_t chunk = ((size_t)cap * sizeof(uint32_t) + 8 + 15) & ~(size_t)15;
  return chunk < 32 ? 32 : chunk;
}

/* Select_'s walk within one bucket: the first occupied position at or after
 * pos, wrapping around; -1 when the bucket is empty. */
static inline int occ_walk(uint64_t occ, uint32_t pos) {
  if (!occ) return -1;
  uint64_t r = (occ >> pos) | (occ << ((64 - pos) & 63));
  return (int)((pos + (uint32_t)__builtin_ctzll(r)) & (PD_BOOK_BUCKET_SIZE - 1));
}

/* New-table slots referring to id, ascending, up to max; returns the count.
 * Walks the occupied slots only (through the occupancy words). */
static uint32_t scan_new_refs(const pd_book_t *b, uint32_t id, uint32_t *out, uint32_t max) {
  uint32_t n = 0;
  for (uint32_t k = 0; k < b->new_buckets && n < max; k++) {
    uint64_t occ = b->new_occ[k];
    const uint32_t *a = b->new_arr[k];
    for (uint32_t i = 0; occ && n < max; i++, occ &= occ - 1) {
      if (a[i] == id) out[n++] = k * PD_BOOK_BUCKET_SIZE + (uint32_t)__builtin_ctzll(occ);
    }
  }
  return n;
}

/* First new-table slot referring to id (scan), or NO_ID. */
static uint32_t scan_new_ref(const pd_book_t *b, uint32_t id) {
  uint32_t s;
  return scan_new_refs(b, id, &s, 1) ? s : NO_ID;
}

/* id has lost its reference in `slot` (already overwritten or cleared):
 * delete the entry when that was its last one. */
static void unref_new(pd_book_t *b, uint32_t id, uint32_t slot) {
  entry_t *e = &b->e[id];
  e->refcount--;
  if (e->refcount == 0) {
    emit_evict(b, id, false, slot, "deleted");
    b->cnt.new_evicted++;
    delete_entry(b, id);
  } else if (e->slot == slot) {
    /* the cached reference went: cache the lowest one left now (one scan
     * here, instead of one per lookup of a stale entry: pd_book_info runs
     * for policies' book:info, the peer views and slot contests, and an
     * attacker's flood leaves many multi-reference entries stale); the next
     * add_ref still takes the cache over, as before */
    uint32_t left = scan_new_ref(b, id);
    if (left != NO_ID) e->slot = (uint16_t)left;
    e->flags |= F_STALE;
  }
}

/* id takes new-table slot `slot`; the occupant, if any (never id), loses
 * that reference (ClearNew, then the insert). Overwriting in place needs no
 * room; a free slot needs the bucket reserved. */
static void add_ref(pd_book_t *b, uint32_t id, uint32_t slot) {
  uint32_t old = new_get(b, slot);
  set_new(b, slot, id);
  if (old != NO_ID) unref_new(b, old, slot);
  entry_t *e = &b->e[id];
  if (e->refcount == 0 || (e->flags & F_STALE)) {
    e->slot = (uint16_t)slot;
    e->flags &= (uint8_t)~F_STALE;
  }
  e->refcount++;
}

/* Remove every new-table reference to id.
 * Fast path: with one reference, the cached slot is it. Otherwise we walk
 * the occupied new-table slots for the id. Bitcoin Core instead walks the
 * 1,024 buckets computing the address's position in each (one SHA256d per
 * bucket, ~130 us); the walk finds exactly the same slots and is far
 * cheaper. Only empties slots: never allocates. */
static void clear_all_refs(pd_book_t *b, uint32_t id) {
  entry_t *e = &b->e[id];
  e->flags &= (uint8_t)~F_STALE;
  if (e->refcount == 1 && new_get(b, e->slot) == id) {
    set_new(b, e->slot, NO_ID);
    e->refcount = 0;
    return;
  }
  uint32_t s[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
  uint32_t max = e->refcount < PD_BOOK_NEW_BUCKETS_PER_ADDRESS ? e->refcount
                                                                : PD_BOOK_NEW_BUCKETS_PER_ADDRESS;
  uint32_t n = scan_new_refs(b, id, s, max);
  for (uint32_t i = 0; i < n; i++) set_new(b, s[i], NO_ID);
  e->refcount = 0;
}

/* The new slot for an entry's own source (cached: saves three SHA256d). */
static uint32_t home_slot(pd_book_t *b, uint32_t id) {
  entry_t *e = &b->e[id];
  if (!(e->flags & F_HOME)) {
    pd_netaddr_t a, s;
    entry_addr(e, &a);
    entry_src(e, &s);
    e->home = (uint16_t)new_slot_memo(b, &a, &s);
    e->flags |= F_HOME;
  }
  return e->home;
}

/* The room make_tried(b, id, ts) needs: the tried bucket when ts is free;
 * otherwise its occupant goes back to its home new slot (its tried slot is
 * overwritten in place), which needs room only when that slot is free or
 * holds a reference of id (cleared first): another occupant is replaced in
 * place. 0 or PD_ENOMEM. */
static int make_tried_reserve(pd_book_t *b, uint32_t id, uint32_t ts) {
  uint32_t old = tried_get(b, ts);
  if (old == NO_ID) return tab_reserve(b, true, ts / PD_BOOK_BUCKET_SIZE);
  uint32_t us = home_slot(b, old);
  uint32_t cur = new_get(b, us);
  if (cur != NO_ID && cur != id) return 0;
  return tab_reserve(b, false, us / PD_BOOK_BUCKET_SIZE);
}

/* MakeTried: move id (in new) to its tried slot ts, pushing any occupant
 * back to its home new slot. The caller ran make_tried_reserve. */
static void make_tried(pd_book_t *b, uint32_t id, uint32_t ts) {
  entry_t *e = &b->e[id];
  clear_all_refs(b, id);
  b->n_new--;
  uint32_t old = tried_get(b, ts);
  if (old != NO_ID) {
    entry_t *eo = &b->e[old];
    emit_evict(b, old, true, ts, "moved_to_new");
    b->cnt.tried_demoted++;
    eo->flags &= (uint8_t)~F_TRIED;
    b->n_tried--;
    eo->refcount = 0;
    pd_netaddr_t oa;
    entry_addr(eo, &oa);
    ev_saved_t sv = ev_begin(b, "default", "tried_demotion", &oa, b->ev_now);
    add_ref(b, old, home_slot(b, old)); /* evicts (ClearNew) its occupant */
    ev_end(b, &sv);
    b->n_new++;
  }
  set_tried(b, ts, id); /* overwrites old in place */
  b->n_tried++;
  e->flags |= F_TRIED;
  e->slot = (uint16_t)ts;
}

/* ---- life cycle ------------------------------------------------------------- */

int pd_book_create(pd_book_t **out, const uint8_t key[PD_BOOK_KEY_LEN], pd_rng_t *rng,
                   unsigned flags) {
  return pd_book_create_ex(out, key, rng, flags, NULL);
}

/* Bytes of the book struct with its per-bucket occupancy words and array
 * pointers for a (valid) geometry; the bucket arrays come on top. */
static size_t book_bytes(const pd_book_geometry_t *g) {
  size_t buckets = (size_t)g->new_buckets + g->tried_buckets;
  return sizeof(pd_book_t) + buckets * (sizeof(uint64_t) + sizeof(uint32_t *));
}

int pd_book_create_ex(pd_book_t **out, const uint8_t key[PD_BOOK_KEY_LEN], pd_rng_t *rng,
                      unsigned flags, const pd_book_geometry_t *g) {
  if (!out || !key || !rng) return PD_EINVAL;
  pd_book_geometry_t geo;
  if (g) {
    geo = *g;
  } else {
    pd_book_geometry_default(&geo);
  }
  if (pd_book_geometry_check(&geo) != 0) return PD_EINVAL;
  pd_book_t *b = calloc(1, book_bytes(&geo));
  if (!b) return PD_ENOMEM;
  b->new_buckets = geo.new_buckets;
  b->tried_buckets = geo.tried_buckets;
  b->new_per_sg = pd_book_geometry_new_per_source_group(&geo);
  b->tried_per_g = pd_book_geometry_tried_per_group(&geo);
  b->new_slots = geo.new_buckets * PD_BOOK_BUCKET_SIZE;
  b->tried_slots = geo.tried_buckets * PD_BOOK_BUCKET_SIZE;
  b->max_entries = b->new_slots + b->tried_slots + 1;
  b->index_gen = 1; /* the memo (memo_gen 0) holds nothing yet */
  b->new_occ = b->tail;
  b->tried_occ = b->new_occ + geo.new_buckets;
  /* calloc: no bits set, every bucket array NULL */
  b->new_arr = (uint32_t **)(void *)(b->tried_occ + geo.tried_buckets);
  b->tried_arr = b->new_arr + geo.new_buckets;
  for (uint32_t k = 0; k < geo.new_buckets; k++) b->new_arr[k] = NULL;
  for (uint32_t k = 0; k < geo.tried_buckets; k++) b->tried_arr[k] = NULL;
  memcpy(b->key, key, PD_BOOK_KEY_LEN);
  uint8_t tmp[PD_BOOK_KEY_LEN + 5], dig[SHA256_DIGEST_LENGTH];
  memcpy(tmp, key, PD_BOOK_KEY_LEN);
  memcpy(tmp + PD_BOOK_KEY_LEN, "index", 5);
  SHA256(tmp, sizeof(tmp), dig);
  memcpy(b->sip_key, dig, sizeof(b->sip_key));
  b->rng = rng;
  b->allow_private = (flags & PD_BOOK_ALLOW_PRIVATE) != 0;
  b->free_head = NO_ID;
  b->last_good = 1; /* Bitcoin's m_last_good starts at 1 s */
  if (pd_banlist_create(&b->bans) != 0 || index_reserve(b, 1) != 0) {
    pd_book_destroy(b);
    return PD_ENOMEM;
  }
  *out = b;
  return 0;
}

void pd_book_destroy(pd_book_t *b) {
  if (!b) return;
  pd_banlist_destroy(b->bans);
  free(b->e);
  free(b->vrandom);
  free(b->index);
  free(b->nodes);
  for (uint32_t k = 0; k < b->new_buckets; k++) free(b->new_arr[k]);
  for (uint32_t k = 0; k < b->tried_buckets; k++) free(b->tried_arr[k]);
  sodium_memzero(b->key, sizeof(b->key));
  sodium_memzero(b->sip_key, sizeof(b->sip_key));
  free(b);
}

void pd_book_geometry(const pd_book_t *b, pd_book_geometry_t *g) {
  if (!g) return;
  if (!b) {
    pd_book_geometry_default(g);
    return;
  }
  g->new_buckets = b->new_buckets;
  g->tried_buckets = b->tried_buckets;
}

const uint8_t *pd_book_key(const pd_book_t *b) { return b->key; }
bool pd_book_allow_private(const pd_book_t *b) { return b->allow_private; }
size_t pd_book_size(const pd_book_t *b) { return b->nrandom; }
size_t pd_book_count_new(const pd_book_t *b) { return b->n_new; }
size_t pd_book_count_tried(const pd_book_t *b) { return b->n_tried; }
pd_banlist_t *pd_book_bans(pd_book_t *b) { return b->bans; }
const pd_banlist_t *pd_book_bans_const(const pd_book_t *b) { return b->bans; }
int64_t pd_book_last_good(const pd_book_t *b) { return b->last_good; }
void pd_book_set_last_good(pd_book_t *b, int64_t t) { b->last_good = clampt(t); }

static bool live(const pd_book_t *b, uint32_t id) {
  return id < b->e_hi && (b->e[id].flags & F_LIVE);
}

/* ---- AddSingle ------------------------------------------------------------------ */

/* Does the candidate (entry `id` with `refs` references, or NO_ID for an
 * address not in the book yet) take new-table slot held by `incumbent`?
 * evict.lua decides when a hook is installed; otherwise, or when it defers,
 * Bitcoin Core's rule: the incumbent loses when it is terrible, or when it
 * has more than one reference and the candidate none. */
static bool slot_contest(pd_book_t *b, uint32_t incumbent, uint32_t id, unsigned refs,
                         const pd_netaddr_t *addr, const pd_netaddr_t *src,
                         const uint8_t *node_id, int64_t time, int64_t now) {
  const entry_t *ex = &b->e[incumbent];
  if (b->hooks.evict_new) {
    /* the hook reads the incumbent's entry (pd_book_info): start loading it
     * while the candidate's is made and the call is set up */
    __builtin_prefetch(ex);
    pd_book_info_t cand;
    if (id != NO_ID) {
      pd_book_info(b, id, &cand);
    } else {
      memset(&cand, 0, sizeof cand);
      cand.id = NO_ID;
      cand.addr = *addr;
      cand.source = *src;
      cand.has_node_id = node_id != NULL;
      if (node_id) memcpy(cand.node_id, node_id, PD_NODE_ID_LEN);
      cand.time = time < 0 ? 0 : time;
      cand.bucket = cand.position = -1;
    }
    int v = b->hooks.evict_new(b->hooks.ud, b, incumbent, &cand, now);
    if (v == PD_BOOK_REPLACE) {
      b->ev_by = "policy";
      b->ev_reason = "evict_new";
      return true;
    }
    if (v == PD_BOOK_KEEP) return false;
  }
  b->ev_by = "default";
  if (terrible(ex, now)) {
    b->ev_reason = "terrible";
    return true;
  }
  b->ev_reason = "more_references";
  return ex->refcount > 1 && refs == 0;
}

void pd_book_set_hooks(pd_book_t *b, const pd_book_hooks_t *hooks) {
  if (!b) return;
  if (hooks) {
    b->hooks = *hooks;
  } else {
    memset(&b->hooks, 0, sizeof b->hooks);
  }
}

/* AddSingle. May return PD_ENOMEM (entries, index, node ids, or the room
 * for a new-table slot), always before it changes the book. */
static int add_impl(pd_book_t *b, const pd_netaddr_t *addr, const uint8_t *node_id,
                    int64_t addr_time, const pd_netaddr_t *source, int64_t time_penalty,
                    int64_t now, const char **why) {
  if (!b || !addr) {
    if (why) *why = "missing address";
    return PD_EINVAL;
  }
  int rc = pd_netaddr_check_acceptable(addr, b->allow_private, why);
  if (rc != 0) return rc;
  now = clampt(now);
  addr_time = clampt(addr_time);
  time_penalty = clampt(time_penalty);
  if (pd_banlist_is_banned(b->bans, addr, now, NULL)) {
    if (why) *why = "address is banned";
    return PD_EBANNED;
  }
  pd_netaddr_t src;
  if (source) {
    memcpy(src.ip, source->ip, 16);
  } else {
    memset(src.ip, 0, 16);
  }
  src.port = 0;
  /* No penalty for a source's self-announcement (Bitcoin compares the IPs). */
  if (memcmp(src.ip, addr->ip, 16) == 0) time_penalty = 0;
  bool self = memcmp(src.ip, addr->ip, 16) == 0;

  if (node_id && (rc = nodes_reserve(b)) != 0) return rc;

  uint32_t id = find_id_memo(b, addr);
  entry_t *e;
  bool created = false;
  bool won = false; /* a new address already won its slot contest */
  uint32_t us = NO_ID;
  if (id != NO_ID) {
    e = &b->e[id];
    /* Node id: attach when unknown; replace only on self-announcement.
     * Periodically update nTime. Both are written once the room for a new
     * reference is secured (below), so PD_ENOMEM leaves the entry as it was. */
    bool set_nid = node_id && (e->node == 0 || self);
    uint32_t etime = e->time;
    bool online = now - addr_time < 24 * 3600;
    int64_t interval = online ? 3600 : 24 * 3600;
    if ((int64_t)etime < addr_time - interval - time_penalty) {
      int64_t t = addr_time - time_penalty;
      etime = t32(t < 0 ? 0 : t);
    }
    bool done = addr_time <= (int64_t)etime          /* no news */
                || (e->flags & F_TRIED)              /* already tried */
                || e->refcount >= PD_BOOK_NEW_BUCKETS_PER_ADDRESS;
    /* Stochastic test: with N references, 2^N times harder to add one. */
    if (!done && e->refcount > 0 && pd_rng_range(b->rng, (uint64_t)1 << e->refcount) != 0)
      done = true;
    if (!done) {
      us = new_slot_memo(b, addr, &src);
      if (new_get(b, us) == NO_ID && (rc = tab_reserve(b, false, us / PD_BOOK_BUCKET_SIZE)) != 0)
        return rc; /* the book is unchanged (the rng may have advanced) */
    }
    if (set_nid) set_node(b, e, node_id);
    e->time = etime;
    if (done) return 0;
  }

  if (id == NO_ID) {
    us = new_slot_memo(b, addr, &src);
    /* A new address that would lose its slot contest: Bitcoin creates the
     * entry and deletes it again, which leaves everything observable as it
     * was (same free id, same tables); skip the round trip. */
    uint32_t occ = new_get(b, us);
    if (occ != NO_ID) {
      if (!slot_contest(b, occ, NO_ID, 0, addr, &src, node_id, addr_time - time_penalty, now)) {
        b->cnt.new_kept++;
        return 0;
      }
      won = true; /* decided once: the hook is not asked again below */
    } else if ((rc = tab_reserve(b, false, us / PD_BOOK_BUCKET_SIZE)) != 0) {
      return rc;
    }
    if ((rc = reserve_one(b)) != 0) return rc;
    id = create(b, addr, src.ip);
    created = true;
    e = &b->e[id];
    int64_t t = addr_time - time_penalty;
    e->time = t32(t < 0 ? 0 : t);
    if (node_id) set_node(b, e, node_id);
  }
  if (created) {
    e->home = (uint16_t)us; /* the slot for its own source */
    e->flags |= F_HOME;
  }
  uint32_t cur = new_get(b, us);
  bool insert = cur == NO_ID;
  if (cur != id) {
    if (!insert)
      insert = won || slot_contest(b, cur, id, e->refcount, addr, &src, node_id, addr_time, now);
    if (insert) {
      if (cur != NO_ID) b->cnt.new_replaced++;
      /* the decision's by/reason (slot_contest) go with an eviction */
      ev_saved_t sv = ev_begin(b, b->ev_by, b->ev_reason, addr, now);
      add_ref(b, id, us); /* ClearNew(us), then the reference */
      ev_end(b, &sv);
    } else {
      b->cnt.new_kept++;
      if (e->refcount == 0) delete_entry(b, id);
    }
  }
  return insert ? 1 : 0;
}

int pd_book_add(pd_book_t *b, const pd_netaddr_t *addr, const uint8_t *node_id, int64_t addr_time,
                const pd_netaddr_t *source, int64_t time_penalty, int64_t now, const char **why) {
  int rc = add_impl(b, addr, node_id, addr_time, source, time_penalty, now, why);
  if (b) tab_settle(b);
  return rc;
}

/* ---- Good_ / Attempt_ / Connected_ / remove ------------------------------------ */

/* Good_ on a live id. PD_ENOMEM (book unchanged) when the move to tried
 * cannot get the room it needs; the caller runs tab_settle. */
static int good_id(pd_book_t *b, uint32_t id, bool test_before_evict, int64_t now) {
  entry_t *e = &b->e[id];
  uint32_t ts = NO_ID;
  bool move = false;
  if (!(e->flags & F_TRIED) && e->refcount != 0) {
    pd_netaddr_t a;
    entry_addr(e, &a);
    ts = tried_slot_of(b, &a);
    move = !(test_before_evict && tried_get(b, ts) != NO_ID);
    int rc = move ? make_tried_reserve(b, id, ts) : 0;
    if (rc != 0) return rc;
  }
  b->last_good = now;
  e->last_success = t32(now);
  e->last_try = t32(now);
  e->attempts = 0;
  /* nTime is not updated, to avoid leaking currently-connected peers. */
  if (e->flags & F_TRIED) return 0;
  if (e->refcount == 0) return 0; /* cannot happen */
  if (!move) {
    bool had = coll_has(b, id);
    if (!had && coll_insert(b, id) == 0) {
      b->cnt.collisions++;
      emit_collision(b, PD_EV_TRIED_COLLISION, id, tried_get(b, ts), ts, "testing", NULL, NULL,
                     now);
    } else if (!had) {
      b->cnt.collisions_full++;
    }
    return 0;
  }
  pd_netaddr_t a;
  entry_addr(e, &a);
  /* a caller that resolves a collision has opened its own context */
  if (b->ev_active) {
    make_tried(b, id, ts);
  } else {
    ev_saved_t sv = ev_begin(b, "default", "good", &a, now);
    make_tried(b, id, ts);
    ev_end(b, &sv);
  }
  return 1;
}

/* May return PD_ENOMEM (the book unchanged): see good_id. */
int pd_book_good(pd_book_t *b, const pd_netaddr_t *addr, bool test_before_evict, int64_t now) {
  if (!b || !addr) return PD_EINVAL;
  now = clampt(now);
  uint32_t id = find_id(b, addr);
  if (id == NO_ID) {
    b->last_good = now;
    return PD_ENOENT;
  }
  int rc = good_id(b, id, test_before_evict, now);
  tab_settle(b);
  return rc;
}

int pd_book_attempt(pd_book_t *b, const pd_netaddr_t *addr, bool count_failure, int64_t now) {
  if (!b || !addr) return PD_EINVAL;
  now = clampt(now);
  uint32_t id = find_id(b, addr);
  if (id == NO_ID) return PD_ENOENT;
  entry_t *e = &b->e[id];
  e->last_try = t32(now);
  if (count_failure && (int64_t)e->last_count < b->last_good) {
    e->last_count = t32(now);
    if (e->attempts < ATTEMPTS_MAX) e->attempts++;
  }
  return 0;
}

int pd_book_connected(pd_book_t *b, const pd_netaddr_t *addr, int64_t now) {
  if (!b || !addr) return PD_EINVAL;
  now = clampt(now);
  uint32_t id = find_id(b, addr);
  if (id == NO_ID) return PD_ENOENT;
  entry_t *e = &b->e[id];
  if (now - (int64_t)e->time > 20 * 60) e->time = t32(now);
  return 0;
}

int pd_book_set_service_only(pd_book_t *b, uint32_t id, bool on) {
  if (!b || id >= b->e_hi || !(b->e[id].flags & F_LIVE)) return PD_ENOENT;
  b->e[id].svc = on ? 1 : 0;
  return 0;
}

uint32_t pd_book_find_node(const pd_book_t *b, const uint8_t node_id[PD_NODE_ID_LEN]) {
  if (!b || !node_id) return PD_BOOK_NO_ID;
  for (uint32_t id = 0; id < b->e_hi; id++) {
    const entry_t *e = &b->e[id];
    if ((e->flags & F_LIVE) && e->node && memcmp(b->nodes[e->node], node_id, PD_NODE_ID_LEN) == 0)
      return id;
  }
  return PD_BOOK_NO_ID;
}

int pd_book_remove(pd_book_t *b, const pd_netaddr_t *addr) {
  if (!b || !addr) return PD_EINVAL;
  uint32_t id = find_id(b, addr);
  if (id == NO_ID) return PD_ENOENT;
  entry_t *e = &b->e[id];
  if (e->flags & F_TRIED) {
    set_tried(b, e->slot, NO_ID);
  } else {
    clear_all_refs(b, id);
  }
  delete_entry(b, id);
  return 0;
}

/* ---- lookups ---------------------------------------------------------------------- */

uint32_t pd_book_find(const pd_book_t *b, const pd_netaddr_t *addr) {
  if (!b || !addr) return NO_ID;
  return find_id(b, addr);
}

uint32_t pd_book_find_remember(pd_book_t *b, const pd_netaddr_t *addr, const uint64_t *hash) {
  if (!b || !addr) return NO_ID;
  uint32_t id = NO_ID;
  if (b->index_count) {
    bool found;
    uint64_t h = hash ? *hash : addr_hash(b, addr->ip, addr->port);
    uint32_t tag, i = index_probe_h(b, addr->ip, addr->port, h, &found, &tag);
    if (found) id = b->index[i] & IDX_ID_MASK;
  }
  memcpy(b->memo_ip, addr->ip, 16);
  b->memo_port = addr->port;
  b->memo_id = id;
  b->memo_gen = b->index_gen;
  return id;
}

void pd_book_prefetch(const pd_book_t *b, const pd_netaddr_t *addr, uint64_t *hash, int pass) {
  if (!b || !addr || !hash || b->index_count == 0) return;
  if (pass == 0) *hash = addr_hash(b, addr->ip, addr->port);
  uint64_t h = *hash;
  uint32_t i = (uint32_t)h & (b->index_cap - 1);
  if (pass == 0) {
    __builtin_prefetch(&b->index[i]);
    return;
  }
  uint32_t v = b->index[i], t = idx_tag(h);
  if (v == NO_ID || (v & ~IDX_ID_MASK) != t) return;
  const entry_t *e = &b->e[v & IDX_ID_MASK];
  if (pass == 1)
    __builtin_prefetch(e);
  else if (e->node)
    __builtin_prefetch(b->nodes[e->node]);
}

int pd_book_info(const pd_book_t *b, uint32_t id, pd_book_info_t *out) {
  if (!b || !out || !live(b, id)) return PD_ENOENT;
  const entry_t *e = &b->e[id];
  memset(out, 0, sizeof(*out));
  out->id = id;
  entry_addr(e, &out->addr);
  entry_src(e, &out->source);
  if (e->node) {
    out->has_node_id = true;
    memcpy(out->node_id, b->nodes[e->node], PD_NODE_ID_LEN);
  }
  out->time = e->time;
  out->last_try = e->last_try;
  out->last_success = e->last_success;
  out->last_count_attempt = e->last_count;
  out->attempts = e->attempts;
  out->service_only = e->svc;
  out->refcount = e->refcount;
  out->in_tried = (e->flags & F_TRIED) != 0;
  uint32_t slot = e->slot; /* a stale entry's: its lowest reference (unref_new) */
  out->bucket = (int)(slot / PD_BOOK_BUCKET_SIZE);
  out->position = (int)(slot % PD_BOOK_BUCKET_SIZE);
  return 0;
}

int pd_book_entry_addr(const pd_book_t *b, uint32_t id, pd_netaddr_t *addr, bool *in_tried) {
  if (!b || !addr || !live(b, id)) return PD_ENOENT;
  entry_addr(&b->e[id], addr);
  if (in_tried) *in_tried = (b->e[id].flags & F_TRIED) != 0;
  return 0;
}

bool pd_book_is_terrible(const pd_book_t *b, uint32_t id, int64_t now) {
  if (!b || !live(b, id)) return false;
  return terrible(&b->e[id], clampt(now));
}

double pd_book_chance(const pd_book_t *b, uint32_t id, int64_t now) {
  if (!b || !live(b, id)) return 0.0;
  return chance(&b->e[id], clampt(now));
}

/* ---- Select_ --------------------------------------------------------------------- */

/* One bucket walk of Select_: a random bucket and start position, then the
 * first occupied slot from there (wrapping); an empty bucket starts over.
 * The table must not be empty. */
static uint32_t draw_candidate(pd_book_t *b, bool tried) {
  uint32_t *const *arr = tab_arr(b, tried);
  const uint64_t *occ = tab_occ(b, tried);
  uint64_t nbuckets = tried ? b->tried_buckets : b->new_buckets;
  for (;;) {
    uint32_t bucket = (uint32_t)pd_rng_range(b->rng, nbuckets);
    uint32_t pos = (uint32_t)pd_rng_range(b->rng, PD_BOOK_BUCKET_SIZE);
    int p = occ_walk(occ[bucket], pos);
    if (p >= 0) return arr[bucket][rank_of(occ[bucket], (uint32_t)p)];
  }
}

/* Select_'s acceptance: randbits(30) < chance_factor * GetChance * 2^30. */
static bool accepted(const pd_book_t *b, uint32_t id, uint64_t r30, double factor, int64_t now) {
  return (double)r30 < factor * chance(&b->e[id], now) * (double)(1 << 30);
}

/* Select_ on one (non-empty) table, starting with the given chance factor. */
static uint32_t select_table(pd_book_t *b, bool tried, int64_t now, double factor) {
  for (;;) {
    uint32_t id = draw_candidate(b, tried);
    if (accepted(b, id, pd_rng_bits(b->rng, 30), factor, now)) return id;
    factor *= 1.2;
  }
}

uint32_t pd_book_random(pd_book_t *b, enum pd_table table, int64_t now) {
  if (!b || b->nrandom == 0) return NO_ID;
  now = clampt(now);
  bool tried;
  switch (table) {
  case PD_TABLE_NEW:
    if (b->n_new == 0) return NO_ID;
    tried = false;
    break;
  case PD_TABLE_TRIED:
    if (b->n_tried == 0) return NO_ID;
    tried = true;
    break;
  case PD_TABLE_ANY:
    if (b->n_tried == 0) {
      tried = false;
    } else if (b->n_new == 0) {
      tried = true;
    } else {
      tried = pd_rng_bits(b->rng, 1) != 0;
    }
    break;
  default:
    return NO_ID;
  }
  return select_table(b, tried, now, 1.0);
}

/* bitcoind 0.9.3's draw, without its acceptance test: a uniformly random
 * non-empty bucket, then a uniformly random occupied slot in it. Up to 64
 * bucket draws (rejection: exactly uniform over the non-empty buckets),
 * then one counting pass over the buckets, so the work is bounded by the
 * table's bucket count whatever its fill. */
uint32_t pd_book_random_bucket(pd_book_t *b, enum pd_table table) {
  if (!b || (table != PD_TABLE_NEW && table != PD_TABLE_TRIED)) return NO_ID;
  bool tried = table == PD_TABLE_TRIED;
  if ((tried ? b->n_tried : b->n_new) == 0) return NO_ID;
  uint32_t *const *arr = tab_arr(b, tried);
  const uint64_t *occ = tab_occ(b, tried);
  uint32_t nbuckets = tried ? b->tried_buckets : b->new_buckets;
  uint32_t bucket = nbuckets;
  for (int i = 0; i < 64 && bucket == nbuckets; i++) {
    uint32_t k = (uint32_t)pd_rng_range(b->rng, nbuckets);
    if (occ[k]) bucket = k;
  }
  if (bucket == nbuckets) {
    uint32_t nonempty = 0;
    for (uint32_t k = 0; k < nbuckets; k++) nonempty += occ[k] != 0;
    if (nonempty == 0) return NO_ID;
    uint32_t want = (uint32_t)pd_rng_range(b->rng, nonempty);
    for (uint32_t k = 0; k < nbuckets; k++) {
      if (occ[k] && want-- == 0) {
        bucket = k;
        break;
      }
    }
  }
  return arr[bucket][pd_rng_range(b->rng, popc(occ[bucket]))];
}

#define SELECT_BATCH 16

size_t pd_book_select(pd_book_t *b, size_t n, int64_t now, uint32_t *out) {
  if (!b || !out || n == 0 || b->nrandom == 0) return 0;
  now = clampt(now);
  if (n > b->nrandom) n = b->nrandom;
  bool check_bans = pd_banlist_count(b->bans) != 0;
  /* Duplicate check: a linear scan of the picks for small n, a bitmap over
   * ids for large n (falling back to the scan if it cannot be allocated). */
  uint8_t *seen = n > 64 ? calloc(((size_t)b->e_hi + 7) / 8, 1) : NULL;
  size_t got = 0;
  size_t budget = 32 * n + 64;
  while (got < n && budget > 0) {
    /* Draw a batch of first attempts (table, bucket walk, randbits(30))
     * and prefetch their entries, so the cache misses overlap; then judge
     * them in order. A candidate that fails its chance test finishes its
     * Select_ sequentially (chance factor 1.2 onwards). Same distribution
     * as one Select_ after another, and just as deterministic. */
    size_t k = n - got;
    if (k > SELECT_BATCH) k = SELECT_BATCH;
    if (k > budget) k = budget;
    uint32_t cand[SELECT_BATCH];
    uint64_t r30[SELECT_BATCH];
    bool ctried[SELECT_BATCH];
    for (size_t j = 0; j < k; j++) {
      /* One 64-bit draw feeds a first attempt: 16 bits for the 85/15 coin
       * (floor(r16 * 100 / 2^16) < 85: off from exactly 85% by < 1/650 of
       * a percent), 10 bits of bucket (fewer for a smaller geometry: the
       * bucket counts are powers of two), 6 of position, 30 for the chance
       * test. An empty bucket falls back to draw_candidate. */
      uint64_t u = pd_rng_u64(b->rng);
      if (b->n_tried == 0) {
        ctried[j] = false;
      } else if (b->n_new == 0) {
        ctried[j] = true;
      } else {
        ctried[j] = (((u & 0xffff) * 100) >> 16) < 85;
      }
      uint32_t *const *arr = tab_arr(b, ctried[j]);
      const uint64_t *occ = tab_occ(b, ctried[j]);
      uint32_t nb = ctried[j] ? b->tried_buckets : b->new_buckets; /* powers of two */
      uint32_t bucket = (uint32_t)(u >> 16) & (nb - 1);
      uint32_t pos = (uint32_t)(u >> 26) & (PD_BOOK_BUCKET_SIZE - 1);
      int p = occ_walk(occ[bucket], pos);
      uint32_t id = p >= 0 ? arr[bucket][rank_of(occ[bucket], (uint32_t)p)]
                           : draw_candidate(b, ctried[j]);
      cand[j] = id;
      __builtin_prefetch(&b->e[id]);
      r30[j] = u >> 34;
    }
    for (size_t j = 0; j < k; j++) {
      budget--;
      uint32_t id = cand[j];
      if (!accepted(b, id, r30[j], 1.0, now)) id = select_table(b, ctried[j], now, 1.2);
      bool dup = false;
      if (seen) {
        dup = (seen[id >> 3] >> (id & 7)) & 1;
      } else {
        for (size_t i = 0; i < got && !dup; i++) dup = out[i] == id;
      }
      if (dup) continue;
      const entry_t *e = &b->e[id];
      if (terrible(e, now)) continue;
      if (check_bans) {
        pd_netaddr_t a;
        entry_addr(e, &a);
        if (pd_banlist_is_banned(b->bans, &a, now, NULL)) continue;
      }
      if (seen) seen[id >> 3] |= (uint8_t)(1u << (id & 7));
      out[got++] = id;
    }
  }
  free(seen);
  return got;
}

/* ---- GetAddr_ ------------------------------------------------------------------- */

size_t pd_book_getaddr(pd_book_t *b, size_t max_addrs, size_t max_pct, bool filtered,
                       int64_t now, uint32_t *out, size_t cap) {
  if (!b || !out || cap == 0) return 0;
  now = clampt(now);
  size_t nodes = b->nrandom;
  if (max_pct != 0) nodes = (max_pct > 100 ? 100 : max_pct) * nodes / 100;
  if (max_addrs != 0 && max_addrs < nodes) nodes = max_addrs;
  if (cap < nodes) nodes = cap;
  size_t got = 0;
  for (uint32_t n = 0; n < b->nrandom && got < nodes; n++) {
    uint32_t r = (uint32_t)pd_rng_range(b->rng, b->nrandom - n) + n;
    swap_random(b, n, r);
    uint32_t id = b->vrandom[n];
    if (filtered && terrible(&b->e[id], now)) continue;
    out[got++] = id;
  }
  return got;
}

/* ---- tried collisions ------------------------------------------------------------ */

size_t pd_book_collision_count(const pd_book_t *b) { return b ? b->ncoll : 0; }

void pd_book_counters(const pd_book_t *b, pd_book_counters_t *out) {
  if (!out) return;
  if (b) {
    *out = b->cnt;
  } else {
    memset(out, 0, sizeof *out);
  }
}

size_t pd_book_collisions(const pd_book_t *b, uint32_t *out, size_t cap) {
  if (!b || !out) return 0;
  size_t n = b->ncoll < cap ? b->ncoll : cap;
  memcpy(out, b->coll, n * sizeof(uint32_t));
  return n;
}

int pd_book_restore_collision(pd_book_t *b, uint32_t id) {
  if (!b || !live(b, id)) return PD_ENOENT;
  return coll_insert(b, id);
}

/* Move a colliding entry to tried for ResolveCollisions: true when done
 * (erase it from the set); false when the room for the move could not be
 * allocated, which leaves the book unchanged and the collision pending, to
 * be resolved by a later call (this function returns nothing, so running
 * out of memory cannot be reported otherwise). */
static bool resolve_good(pd_book_t *b, uint32_t id, int64_t now) {
  int rc = good_id(b, id, false, now);
  tab_settle(b);
  return rc != PD_ENOMEM;
}

void pd_book_resolve_collisions(pd_book_t *b, int64_t now) {
  if (!b || b->ncoll == 0) return;
  now = clampt(now);
  /* Work on a snapshot: Good_ below can delete entries, which drops them
   * from the set (Bitcoin would erase them when it reached them). */
  uint32_t snap[PD_BOOK_TRIED_COLLISION_SIZE];
  uint32_t ns = b->ncoll;
  memcpy(snap, b->coll, ns * sizeof(uint32_t));
  for (uint32_t k = 0; k < ns; k++) {
    uint32_t id_new = snap[k];
    if (!coll_has(b, id_new)) continue;
    bool erase = false;
    if (!live(b, id_new)) {
      erase = true;
    } else {
      entry_t *en = &b->e[id_new];
      pd_netaddr_t a;
      entry_addr(en, &a);
      uint32_t ts = tried_slot_of(b, &a);
      uint32_t id_old = tried_get(b, ts);
      int verdict = PD_BOOK_HOOK_DEFAULT;
      if (id_old != NO_ID && b->hooks.evict_tried)
        verdict = b->hooks.evict_tried(b->hooks.ud, b, id_old, id_new, now);
      /* how it ends, for the audit events: kept, or moved (replacing) */
      const char *by = "default", *why = NULL;
      bool moved = false;
      uint64_t *kept = NULL, *replaced = NULL; /* the counters of its outcome */
      if (id_old != NO_ID && verdict == PD_BOOK_REPLACE) {
        by = "policy";
        why = "evict_tried";
        moved = true;
        replaced = &b->cnt.tbe_replaced_policy;
      } else if (id_old != NO_ID && verdict == PD_BOOK_KEEP) {
        erase = true;
        by = "policy";
        why = "evict_tried";
        kept = &b->cnt.tbe_kept_policy;
      } else if (id_old != NO_ID && verdict == PD_BOOK_WAIT) {
        /* evict.lua keeps testing */
      } else if (id_old != NO_ID) {
        const entry_t *eo = &b->e[id_old];
        if (now - (int64_t)eo->last_success < PD_BOOK_REPLACEMENT) {
          erase = true; /* the old one connected recently: keep it */
          why = "incumbent_connected_recently";
          kept = &b->cnt.tbe_kept_connected;
        } else if (now - (int64_t)eo->last_try < PD_BOOK_REPLACEMENT) {
          /* tried and failed recently; give it 60 s to succeed */
          if (now - (int64_t)eo->last_try > 60) {
            moved = true;
            why = "incumbent_failed_test";
            replaced = &b->cnt.tbe_replaced_failed;
          }
        } else if (now - (int64_t)en->last_success > PD_BOOK_TEST_WINDOW) {
          /* could not test it in time: evict anyway */
          moved = true;
          why = "test_window_passed";
          replaced = &b->cnt.tbe_replaced_timeout;
        }
      } else {
        moved = true; /* no longer a collision */
        why = "slot_free";
        replaced = &b->cnt.tbe_slot_free;
      }
      if (moved) {
        ev_saved_t sv = ev_begin(b, by, why, &a, now);
        erase = resolve_good(b, id_new, now);
        ev_end(b, &sv);
        if (erase) {
          (*replaced)++;
          emit_collision(b, PD_EV_COLLISION_RESOLVED, id_new, id_old, ts,
                         id_old != NO_ID ? "replaced" : "moved_to_tried", by, why, now);
        }
      } else if (erase) {
        (*kept)++;
        emit_collision(b, PD_EV_COLLISION_RESOLVED, id_new, id_old, ts, "kept", by, why, now);
      }
    }
    if (erase) coll_erase(b, id_new);
  }
}

uint32_t pd_book_select_tried_collision(pd_book_t *b) {
  if (!b || b->ncoll == 0) return NO_ID;
  uint32_t id_new = b->coll[pd_rng_range(b->rng, b->ncoll)];
  if (!live(b, id_new)) {
    coll_erase(b, id_new);
    return NO_ID;
  }
  pd_netaddr_t a;
  entry_addr(&b->e[id_new], &a);
  return tried_get(b, tried_slot_of(b, &a));
}

/* ---- listing, refs -------------------------------------------------------------- */

size_t pd_book_list(const pd_book_t *b, enum pd_table table, size_t offset, size_t limit,
                    uint32_t *out, size_t *total) {
  if (!b) return 0;
  size_t tot = table == PD_TABLE_NEW ? b->n_new : table == PD_TABLE_TRIED ? b->n_tried : b->nrandom;
  if (total) *total = tot;
  if (!out || limit == 0 || offset >= tot) return 0;
  size_t skipped = 0, got = 0;
  for (uint32_t id = 0; id < b->e_hi && got < limit; id++) {
    const entry_t *e = &b->e[id];
    if (!(e->flags & F_LIVE)) continue;
    bool tried = (e->flags & F_TRIED) != 0;
    if ((table == PD_TABLE_NEW && tried) || (table == PD_TABLE_TRIED && !tried)) continue;
    if (skipped < offset) {
      skipped++;
      continue;
    }
    out[got++] = id;
  }
  return got;
}

int pd_book_new_refs(const pd_book_t *b, uint32_t id,
                     uint16_t slots[PD_BOOK_NEW_BUCKETS_PER_ADDRESS]) {
  if (!b || !slots || !live(b, id)) return 0;
  const entry_t *e = &b->e[id];
  if (e->flags & F_TRIED || e->refcount == 0) return 0;
  if (e->refcount == 1 && new_get(b, e->slot) == id) {
    slots[0] = e->slot;
    return 1;
  }
  uint32_t s[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
  uint32_t n = scan_new_refs(b, id, s, PD_BOOK_NEW_BUCKETS_PER_ADDRESS);
  for (uint32_t i = 0; i < n; i++) slots[i] = (uint16_t)s[i];
  return (int)n;
}

uint32_t pd_book_id_bound(const pd_book_t *b) { return b ? b->e_hi : 0; }

void pd_book_new_refs_all(const pd_book_t *b, uint8_t *count,
                          uint16_t (*slots)[PD_BOOK_NEW_BUCKETS_PER_ADDRESS]) {
  if (!b || !count || !slots) return;
  memset(count, 0, b->e_hi);
  for (uint32_t w = 0; w < b->new_buckets; w++) {
    uint64_t occ = b->new_occ[w];
    const uint32_t *a = b->new_arr[w];
    for (uint32_t i = 0; occ; i++, occ &= occ - 1) {
      uint32_t s = w * PD_BOOK_BUCKET_SIZE + (uint32_t)__builtin_ctzll(occ);
      uint32_t id = a[i];
      if (id < b->e_hi && count[id] < PD_BOOK_NEW_BUCKETS_PER_ADDRESS)
        slots[id][count[id]++] = (uint16_t)s;
    }
  }
}

/* ---- restore ---------------------------------------------------------------------- */

/* May return PD_ENOMEM (entries, index, node ids, or the room for its
 * slots), before it changes the book. */
static int restore_impl(pd_book_t *b, const pd_book_info_t *in, const uint16_t *slots,
                        size_t nslots, uint32_t *id_out, const char **why) {
  if (!b || !in) {
    if (why) *why = "missing entry";
    return PD_EINVAL;
  }
  int rc = pd_netaddr_check_acceptable(&in->addr, b->allow_private, why);
  if (rc != 0) return rc;
  if (in->time < 0 || in->last_try < 0 || in->last_success < 0 || in->last_count_attempt < 0 ||
      in->attempts < 0) {
    if (why) *why = "negative time or attempts";
    return PD_EINVAL;
  }
  if (in->in_tried && in->last_success == 0) {
    if (why) *why = "tried entry without a success";
    return PD_EINVAL;
  }
  if (find_id(b, &in->addr) != NO_ID) {
    if (why) *why = "duplicate address";
    return PD_EEXIST;
  }
  pd_netaddr_t src;
  memcpy(src.ip, in->source.ip, 16);
  src.port = 0;

  uint32_t keep[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
  size_t nkeep = 0;
  uint32_t ts = 0;
  if (in->in_tried) {
    ts = tried_slot_of(b, &in->addr);
    if (tried_get(b, ts) != NO_ID) {
      if (why) *why = "tried slot taken";
      return PD_EFULL;
    }
  } else {
    for (size_t i = 0; i < nslots && slots && nkeep < PD_BOOK_NEW_BUCKETS_PER_ADDRESS; i++) {
      uint32_t s = slots[i];
      if (s >= b->new_slots || new_get(b, s) != NO_ID) continue;
      int bk = (int)(s / PD_BOOK_BUCKET_SIZE);
      if ((uint32_t)bucket_position(b->key, true, bk, &in->addr) != s % PD_BOOK_BUCKET_SIZE)
        continue;
      bool dup = false;
      for (size_t k = 0; k < nkeep; k++) dup |= keep[k] == s;
      if (!dup) keep[nkeep++] = s;
    }
    if (nkeep == 0) {
      uint32_t s = new_slot_of(b, &in->addr, &src);
      if (new_get(b, s) != NO_ID) {
        if (why) *why = "new slot taken";
        return PD_EFULL;
      }
      keep[nkeep++] = s;
    }
  }
  /* Room first (distinct slots of one address lie in distinct buckets). */
  if (in->in_tried) {
    rc = tab_reserve(b, true, ts / PD_BOOK_BUCKET_SIZE);
  } else {
    for (size_t k = 0; k < nkeep && rc == 0; k++)
      rc = tab_reserve(b, false, keep[k] / PD_BOOK_BUCKET_SIZE);
  }
  if (rc != 0) return rc;
  if ((rc = reserve_one(b)) != 0) return rc;
  if (in->has_node_id && (rc = nodes_reserve(b)) != 0) return rc;

  uint32_t id = create(b, &in->addr, src.ip);
  entry_t *e = &b->e[id];
  e->time = t32(in->time);
  e->last_try = t32(in->last_try);
  e->last_success = t32(in->last_success);
  e->last_count = t32(in->last_count_attempt);
  e->attempts = (uint8_t)(in->attempts > ATTEMPTS_MAX ? ATTEMPTS_MAX : in->attempts);
  e->svc = in->service_only;
  if (in->has_node_id) set_node(b, e, in->node_id);
  if (in->in_tried) {
    b->n_new--;
    set_tried(b, ts, id);
    b->n_tried++;
    e->flags |= F_TRIED;
    e->slot = (uint16_t)ts;
  } else {
    for (size_t k = 0; k < nkeep; k++) add_ref(b, id, keep[k]);
  }
  if (id_out) *id_out = id;
  return 0;
}

int pd_book_restore(pd_book_t *b, const pd_book_info_t *in, const uint16_t *slots, size_t nslots,
                    uint32_t *id_out, const char **why) {
  int rc = restore_impl(b, in, slots, nslots, id_out, why);
  if (b) tab_settle(b);
  return rc;
}

/* ---- consistency check, memory ------------------------------------------------- */

int pd_book_check(const pd_book_t *b) {
  if (!b) return PD_EINVAL;
  if (b->nrandom != b->n_new + b->n_tried) return PD_ECORRUPT;
  if (b->index_count != b->nrandom) return PD_ECORRUPT;
  uint8_t *refs = calloc(b->e_hi ? b->e_hi : 1, 1);
  if (!refs) return PD_ENOMEM;
  int rc = PD_ECORRUPT;
  uint32_t n_live = 0, n_tried = 0;
  for (uint32_t id = 0; id < b->e_hi; id++) {
    const entry_t *e = &b->e[id];
    if (!(e->flags & F_LIVE)) continue;
    n_live++;
    if (e->rpos >= b->nrandom || b->vrandom[e->rpos] != id) goto out;
    pd_netaddr_t a;
    entry_addr(e, &a);
    if (find_id(b, &a) != id) goto out;
    if (e->node != 0 && e->node >= b->nodes_hi) goto out;
    if (e->flags & F_HOME) {
      pd_netaddr_t sa;
      entry_src(e, &sa);
      if (new_slot_of(b, &a, &sa) != e->home) goto out;
    }
    if (e->flags & F_TRIED) {
      n_tried++;
      if (e->refcount != 0 || e->last_success == 0 || (e->flags & F_STALE)) goto out;
      if (e->slot >= b->tried_slots || tried_get(b, e->slot) != id) goto out;
    } else {
      if (e->refcount < 1 || e->refcount > PD_BOOK_NEW_BUCKETS_PER_ADDRESS) goto out;
      if (e->slot >= b->new_slots || new_get(b, e->slot) != id) goto out;
    }
  }
  if (n_live != b->nrandom || n_tried != b->n_tried) goto out;
  /* No reservation outlives an operation; an empty bucket has no array and
   * an occupied one has an array; arrays hold no NO_ID. */
  if (b->nresv != 0) goto out;
  for (int t = 0; t < 2; t++) {
    bool tried = t == 1;
    uint32_t nbk = tried ? b->tried_buckets : b->new_buckets;
    for (uint32_t k = 0; k < nbk; k++) {
      uint64_t occ = tab_occ(b, tried)[k];
      const uint32_t *arr = tab_arr(b, tried)[k];
      if ((occ == 0) != (arr == NULL)) goto out;
      for (uint32_t i = 0; occ; i++, occ &= occ - 1) {
        uint32_t s = k * PD_BOOK_BUCKET_SIZE + (uint32_t)__builtin_ctzll(occ);
        uint32_t id = arr[i];
        if (id == NO_ID || !live(b, id)) goto out;
        if (tab_get(b, tried, s) != id) goto out;
        pd_netaddr_t a;
        entry_addr(&b->e[id], &a);
        if (tried) {
          if (!(b->e[id].flags & F_TRIED) || b->e[id].slot != s) goto out;
          if (tried_slot_of(b, &a) != s) goto out;
        } else {
          if (b->e[id].flags & F_TRIED) goto out;
          if ((uint32_t)bucket_position(b->key, true, (int)k, &a) != s % PD_BOOK_BUCKET_SIZE)
            goto out;
          refs[id]++;
        }
      }
    }
  }
  for (uint32_t id = 0; id < b->e_hi; id++) {
    const entry_t *e = &b->e[id];
    if ((e->flags & F_LIVE) && !(e->flags & F_TRIED) && refs[id] != e->refcount) goto out;
  }
  /* Free list: every id below e_hi is live or on it, once. */
  uint32_t nfree = 0;
  for (uint32_t id = b->free_head; id != NO_ID; id = b->e[id].rpos) {
    if (id >= b->e_hi || (b->e[id].flags & F_LIVE) || ++nfree > b->e_hi) goto out;
  }
  if (nfree + n_live != b->e_hi) goto out;
  for (uint32_t i = 0; i < b->ncoll; i++) {
    if (!live(b, b->coll[i])) goto out;
    if (i > 0 && b->coll[i - 1] >= b->coll[i]) goto out;
  }
  rc = 0;
out:
  free(refs);
  return rc;
}

/* The struct (occupancy words, array pointers), every bucket array as the
 * heap holds it (block_bytes: derived from the popcount, so a block whose
 * shrink failed counts at its smaller size), entries, vrandom, index and
 * node ids. O(buckets). */
size_t pd_book_memory(const pd_book_t *b) {
  if (!b) return 0;
  pd_book_geometry_t g = {b->new_buckets, b->tried_buckets};
  size_t tabs = 0;
  for (uint32_t k = 0; k < b->new_buckets; k++) tabs += block_bytes(tab_cap(popc(b->new_occ[k])));
  for (uint32_t k = 0; k < b->tried_buckets; k++)
    tabs += block_bytes(tab_cap(popc(b->tried_occ[k])));
  return book_bytes(&g) + tabs + (size_t)b->e_cap * sizeof(entry_t) +
         (size_t)b->vrandom_cap * 4 + (size_t)b->index_cap * 4 +
         (size_t)b->nodes_cap * PD_NODE_ID_LEN;
}

uint32_t pd_book_set_alloc_fail_after(pd_book_t *b, uint32_t n) {
  if (!b) return 0;
  uint32_t left = b->fail_after;
  b->fail_after = n;
  return left;
}
