/* dhttable — the DHT's routing table (sans-I/O). Spec: docs/protocol.md §11.6.
 *
 * Owns the 160 k-buckets and their replacement caches, the rules for
 * entering, refreshing and leaving them, the per-subnet counts the admit
 * hook reads and the k closest nodes to a target (see dhttable.h for the
 * contract). Everything is computed on demand over the bucket arrays: the
 * table holds at most 160 x k nodes, so a scan is a few thousand compares
 * and there is no second index to keep in step.
 *
 * Layout: bucket i (1..160) is b[i - 1]; its one allocation holds k node
 * slots followed by repl cache slots. Nodes are kept least recently seen
 * first (index 0 is the LRS), the cache newest first (index 0 the newest).
 * The arrays are allocated on a bucket's first entry and released when the
 * bucket and its cache are both empty again.
 */
#include "dhttable.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

#define REC_MAX 512   /* §11.1: record_len <= 512 */
#define K_MAX 256     /* sanity bound on k and repl */

typedef struct bucket {
  pd_dht_entry_t *e; /* k nodes, then repl cache entries; NULL when both empty */
  uint32_t n;        /* nodes */
  uint32_t nr;       /* cache entries */
} bucket_t;

struct pd_dht_table {
  uint8_t self[PD_DHTT_ID_LEN];
  unsigned k, repl;
  size_t size, cached;
  bucket_t b[PD_DHTT_BUCKETS];
};

/* 160 - leading zero bits of a ^ b (0 when equal). */
static unsigned logdist(const uint8_t *a, const uint8_t *b) {
  for (unsigned i = 0; i < PD_DHTT_ID_LEN; i++) {
    unsigned x = (unsigned)(a[i] ^ b[i]);
    if (x) {
      unsigned lz = 0;
      while (!(x & 0x80u)) {
        x <<= 1;
        lz++;
      }
      return PD_DHTT_BUCKETS - (i * 8 + lz);
    }
  }
  return 0;
}

/* <0: a is closer to target than b; >0: farther; 0: same id. */
static int distcmp(const uint8_t *target, const uint8_t *a, const uint8_t *b) {
  for (unsigned i = 0; i < PD_DHTT_ID_LEN; i++) {
    uint8_t da = (uint8_t)(a[i] ^ target[i]), db = (uint8_t)(b[i] ^ target[i]);
    if (da != db) {
      return da < db ? -1 : 1;
    }
  }
  return 0;
}

static pd_dht_entry_t *cache_of(const pd_dht_table_t *t, const bucket_t *b) {
  return b->e + t->k;
}

static int find_in(const pd_dht_entry_t *e, uint32_t n, const uint8_t *id) {
  for (uint32_t i = 0; i < n; i++) {
    if (memcmp(e[i].id, id, PD_DHTT_ID_LEN) == 0) {
      return (int)i;
    }
  }
  return -1;
}

/* Drop entry i of an array of n, shifting the rest down (the record is the
 * caller's to free or keep). */
static void take_out(pd_dht_entry_t *e, uint32_t n, uint32_t i) {
  memmove(&e[i], &e[i + 1], (size_t)(n - i - 1) * sizeof *e);
}

/* Move node i of bucket b to the most recently seen end. */
static void move_to_end(bucket_t *b, uint32_t i) {
  pd_dht_entry_t tmp = b->e[i];
  take_out(b->e, b->n, i);
  b->e[b->n - 1] = tmp;
}

static int ensure_arrays(const pd_dht_table_t *t, bucket_t *b) {
  if (b->e) {
    return 0;
  }
  b->e = calloc((size_t)t->k + t->repl, sizeof *b->e);
  return b->e ? 0 : PD_ENOMEM;
}

static void trim(bucket_t *b) {
  if (b->e && b->n == 0 && b->nr == 0) {
    free(b->e);
    b->e = NULL;
  }
}

bool pd_dht_same_subnet(const pd_netaddr_t *a, const pd_netaddr_t *b) {
  bool a4 = pd_netaddr_is_ipv4(a), b4 = pd_netaddr_is_ipv4(b);
  if (a4 != b4) {
    return false;
  }
  return memcmp(a->ip, b->ip, a4 ? 15 : 6) == 0;
}

bool pd_dht_admit_default(const pd_dht_admit_info_t *info) {
  return !info->routable ||
         (info->subnet_in_bucket < PD_DHTT_SUBNET_BUCKET && info->subnet_in_table < PD_DHTT_SUBNET_TABLE);
}

/* The admit hook's view of candidate c for bucket index bi (0-based), with
 * bucket node `skip` (or NULL) counted as gone. */
static void admit_info(const pd_dht_table_t *t, unsigned bi, const pd_dht_entry_t *c,
                       const pd_dht_entry_t *skip, pd_dht_admit_info_t *info) {
  memset(info, 0, sizeof *info);
  info->node = c;
  info->bucket = bi + 1;
  info->k = t->k;
  info->routable = pd_netaddr_is_routable(&c->ep);
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    const bucket_t *b = &t->b[i];
    for (uint32_t j = 0; j < b->n; j++) {
      const pd_dht_entry_t *e = &b->e[j];
      if (e == skip) {
        continue;
      }
      if (i == bi) {
        info->bucket_size++;
      }
      if (pd_dht_same_subnet(&e->ep, &c->ep)) {
        info->subnet_in_table++;
        if (i == bi) {
          info->subnet_in_bucket++;
        }
      }
    }
  }
}

static bool admit_call(pd_dht_admit_fn admit, void *ctx, const pd_dht_admit_info_t *info) {
  return admit ? admit(ctx, info) : pd_dht_admit_default(info);
}

pd_dht_table_t *pd_dht_table_new(const uint8_t self[PD_DHTT_ID_LEN], unsigned k, unsigned repl) {
  if (!self || k > K_MAX || repl > K_MAX) {
    return NULL;
  }
  pd_dht_table_t *t = calloc(1, sizeof *t);
  if (!t) {
    return NULL;
  }
  memcpy(t->self, self, PD_DHTT_ID_LEN);
  t->k = k ? k : PD_DHTT_K;
  t->repl = repl ? repl : PD_DHTT_REPL;
  return t;
}

void pd_dht_table_free(pd_dht_table_t *t) {
  if (!t) {
    return;
  }
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    bucket_t *b = &t->b[i];
    for (uint32_t j = 0; j < b->n; j++) {
      free(b->e[j].rec);
    }
    for (uint32_t j = 0; j < b->nr; j++) {
      free(cache_of(t, b)[j].rec);
    }
    free(b->e);
  }
  free(t);
}

/* A node already in its bucket answered again. */
static int refresh(bucket_t *b, uint32_t i, const pd_netaddr_t *ep, const uint8_t *rec, size_t len,
                   uint64_t seq, int64_t now_ms) {
  pd_dht_entry_t *e = &b->e[i];
  if (seq > e->seq) {
    uint8_t *copy = malloc(len);
    if (!copy) {
      return PD_ENOMEM;
    }
    memcpy(copy, rec, len);
    free(e->rec);
    e->rec = copy;
    e->rec_len = (uint16_t)len;
    e->seq = seq;
    e->ep = *ep;
  }
  e->seen_ms = now_ms;
  e->fails = 0;
  move_to_end(b, i);
  return PD_DHTT_REFRESHED;
}

int pd_dht_table_seen(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN], const pd_netaddr_t *ep,
                      const uint8_t *rec, size_t len, uint64_t seq, int64_t now_ms,
                      pd_dht_admit_fn admit, void *ctx, uint8_t ping_id[PD_DHTT_ID_LEN],
                      bool *ping_set) {
  if (ping_set) {
    *ping_set = false;
  }
  if (!t || !id || !ep || !rec || len == 0 || len > REC_MAX) {
    return PD_EINVAL;
  }
  unsigned d = logdist(t->self, id);
  if (d == 0) {
    return PD_DHTT_REFUSED;
  }
  unsigned bi = d - 1;
  bucket_t *b = &t->b[bi];
  int at = b->e ? find_in(b->e, b->n, id) : -1;
  if (at >= 0) {
    pd_dht_entry_t *e = &b->e[at];
    if (seq > e->seq && (e->ep.port != ep->port || memcmp(e->ep.ip, ep->ip, 16) != 0)) {
      /* A node that moves is a candidate again at its new endpoint: the
       * subnet limits apply there too (else moving in would bypass them). */
      pd_dht_entry_t c = *e;
      c.ep = *ep;
      pd_dht_admit_info_t info;
      admit_info(t, bi, &c, e, &info);
      if (!admit_call(admit, ctx, &info)) {
        free(e->rec);
        take_out(b->e, b->n, (uint32_t)at);
        b->n--;
        t->size--;
        trim(b);
        return PD_DHTT_REFUSED;
      }
    }
    return refresh(b, (uint32_t)at, ep, rec, len, seq, now_ms);
  }

  /* A candidate: new, or back from the replacement cache (keeping whichever
   * record has the higher seq, and the endpoint that goes with it). */
  pd_dht_entry_t c;
  memset(&c, 0, sizeof c);
  memcpy(c.id, id, PD_DHTT_ID_LEN);
  c.added_ms = now_ms;
  c.seen_ms = now_ms;
  int ci = b->e ? find_in(cache_of(t, b), b->nr, id) : -1;
  pd_dht_entry_t *old = ci >= 0 ? &cache_of(t, b)[ci] : NULL;
  if (old && old->seq >= seq) {
    c.ep = old->ep;
    c.rec = old->rec; /* ownership moves to c */
    c.rec_len = old->rec_len;
    c.seq = old->seq;
  } else {
    c.rec = malloc(len);
    if (!c.rec) {
      return PD_ENOMEM;
    }
    memcpy(c.rec, rec, len);
    c.rec_len = (uint16_t)len;
    c.seq = seq;
    c.ep = *ep;
  }
  if (ensure_arrays(t, b) != 0) {
    free(c.rec);
    return PD_ENOMEM;
  }
  if (old) {
    c.added_ms = old->added_ms;
    if (old->rec != c.rec) {
      free(old->rec);
    }
    take_out(cache_of(t, b), b->nr, (uint32_t)ci);
    b->nr--;
    t->cached--;
  }

  pd_dht_admit_info_t info;
  admit_info(t, bi, &c, NULL, &info);
  if (!admit_call(admit, ctx, &info)) {
    free(c.rec);
    trim(b);
    return PD_DHTT_REFUSED;
  }
  if (b->n < t->k) {
    c.added_ms = now_ms;
    b->e[b->n++] = c;
    t->size++;
    return PD_DHTT_ADDED;
  }

  /* Full: newest first into the cache, the oldest leaving when it is full. */
  pd_dht_entry_t *rc = cache_of(t, b);
  if (b->nr == t->repl) {
    free(rc[b->nr - 1].rec);
    b->nr--;
    t->cached--;
  }
  memmove(&rc[1], &rc[0], (size_t)b->nr * sizeof *rc);
  rc[0] = c;
  b->nr++;
  t->cached++;
  pd_dht_entry_t *lrs = &b->e[0];
  if (!lrs->pinging) {
    lrs->pinging = true;
    if (ping_id) {
      memcpy(ping_id, lrs->id, PD_DHTT_ID_LEN);
    }
    if (ping_set) {
      *ping_set = true;
    }
  }
  return PD_DHTT_CACHED;
}

/* Bucket index and node index of a bucket node; false when absent. */
static bool locate(const pd_dht_table_t *t, const uint8_t *id, unsigned *bi, uint32_t *ni) {
  unsigned d = logdist(t->self, id);
  if (d == 0) {
    return false;
  }
  const bucket_t *b = &t->b[d - 1];
  int at = b->e ? find_in(b->e, b->n, id) : -1;
  if (at < 0) {
    return false;
  }
  *bi = d - 1;
  *ni = (uint32_t)at;
  return true;
}

static void remove_node(pd_dht_table_t *t, bucket_t *b, uint32_t i) {
  free(b->e[i].rec);
  take_out(b->e, b->n, i);
  b->n--;
  t->size--;
}

int pd_dht_table_ping_result(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN], bool ok,
                             int64_t now_ms, pd_dht_admit_fn admit, void *ctx) {
  if (!t || !id) {
    return PD_EINVAL;
  }
  unsigned bi;
  uint32_t ni;
  if (!locate(t, id, &bi, &ni)) {
    return PD_ENOENT;
  }
  bucket_t *b = &t->b[bi];
  pd_dht_entry_t *e = &b->e[ni];
  e->pinging = false;
  if (ok) {
    e->fails = 0;
    e->seen_ms = now_ms;
    move_to_end(b, ni);
    return 0;
  }
  if (e->fails < UINT8_MAX) {
    e->fails++;
  }
  pd_dht_entry_t *rc = cache_of(t, b);
  for (uint32_t r = 0; r < b->nr; r++) {
    pd_dht_admit_info_t info;
    admit_info(t, bi, &rc[r], e, &info);
    if (admit_call(admit, ctx, &info)) {
      pd_dht_entry_t c = rc[r];
      take_out(rc, b->nr, r);
      b->nr--;
      t->cached--;
      remove_node(t, b, ni);
      c.added_ms = now_ms;
      c.fails = 0;
      c.pinging = false;
      b->e[b->n++] = c;
      t->size++;
      return 1;
    }
  }
  if (e->fails >= PD_DHTT_MAX_FAILS) {
    remove_node(t, b, ni);
    trim(b);
    return 1;
  }
  return 0;
}

int pd_dht_table_remove(pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN]) {
  if (!t || !id) {
    return 0;
  }
  unsigned d = logdist(t->self, id);
  if (d == 0) {
    return 0;
  }
  bucket_t *b = &t->b[d - 1];
  if (!b->e) {
    return 0;
  }
  int at = find_in(b->e, b->n, id);
  if (at >= 0) {
    remove_node(t, b, (uint32_t)at);
    trim(b);
    return 1;
  }
  pd_dht_entry_t *rc = cache_of(t, b);
  at = find_in(rc, b->nr, id);
  if (at >= 0) {
    free(rc[at].rec);
    take_out(rc, b->nr, (uint32_t)at);
    b->nr--;
    t->cached--;
    trim(b);
    return 1;
  }
  return 0;
}

const pd_dht_entry_t *pd_dht_table_find(const pd_dht_table_t *t, const uint8_t id[PD_DHTT_ID_LEN]) {
  unsigned bi;
  uint32_t ni;
  if (!t || !id || !locate(t, id, &bi, &ni)) {
    return NULL;
  }
  return &t->b[bi].e[ni];
}

/* Insertion into out[0..*have) kept sorted by distance, capped at n. */
size_t pd_dht_table_closest(const pd_dht_table_t *t, const uint8_t target[PD_DHTT_ID_LEN], size_t n,
                            const pd_dht_entry_t **out) {
  if (!t || !target || !out || n == 0) {
    return 0;
  }
  size_t have = 0;
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    const bucket_t *b = &t->b[i];
    for (uint32_t j = 0; j < b->n; j++) {
      const pd_dht_entry_t *e = &b->e[j];
      if (have == n && distcmp(target, e->id, out[n - 1]->id) >= 0) {
        continue;
      }
      size_t pos = have < n ? have : n - 1;
      while (pos > 0 && distcmp(target, e->id, out[pos - 1]->id) < 0) {
        out[pos] = out[pos - 1];
        pos--;
      }
      out[pos] = e;
      if (have < n) {
        have++;
      }
    }
  }
  return have;
}

const pd_dht_entry_t *pd_dht_table_bucket(const pd_dht_table_t *t, unsigned i, size_t *n) {
  if (n) {
    *n = 0;
  }
  if (!t || i < 1 || i > PD_DHTT_BUCKETS || t->b[i - 1].n == 0) {
    return NULL;
  }
  if (n) {
    *n = t->b[i - 1].n;
  }
  return t->b[i - 1].e;
}

const pd_dht_entry_t *pd_dht_table_replacements(const pd_dht_table_t *t, unsigned i, size_t *n) {
  if (n) {
    *n = 0;
  }
  if (!t || i < 1 || i > PD_DHTT_BUCKETS || t->b[i - 1].nr == 0) {
    return NULL;
  }
  if (n) {
    *n = t->b[i - 1].nr;
  }
  return cache_of(t, &t->b[i - 1]);
}

const pd_dht_entry_t *pd_dht_table_revalidate_pick(pd_dht_table_t *t, pd_rng_t *rng) {
  if (!t || !rng) {
    return NULL;
  }
  unsigned count = 0;
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    if (t->b[i].n > 0 && !t->b[i].e[0].pinging) {
      count++;
    }
  }
  if (count == 0) {
    return NULL;
  }
  unsigned pick = (unsigned)pd_rng_range(rng, count);
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    if (t->b[i].n > 0 && !t->b[i].e[0].pinging) {
      if (pick == 0) {
        t->b[i].e[0].pinging = true;
        return &t->b[i].e[0];
      }
      pick--;
    }
  }
  return NULL; /* not reached */
}

size_t pd_dht_table_size(const pd_dht_table_t *t) {
  return t ? t->size : 0;
}

size_t pd_dht_table_cached(const pd_dht_table_t *t) {
  return t ? t->cached : 0;
}

unsigned pd_dht_table_k(const pd_dht_table_t *t) {
  return t ? t->k : 0;
}

const uint8_t *pd_dht_table_self(const pd_dht_table_t *t) {
  return t ? t->self : NULL;
}

static bool entry_ok(const pd_dht_entry_t *e, unsigned bucket, const uint8_t *self) {
  return logdist(self, e->id) == bucket && e->rec != NULL && e->rec_len > 0 && e->rec_len <= REC_MAX;
}

int pd_dht_table_check(const pd_dht_table_t *t) {
  if (!t || t->k == 0 || t->k > K_MAX || t->repl == 0 || t->repl > K_MAX) {
    return PD_EINVAL;
  }
  size_t size = 0, cached = 0;
  for (unsigned i = 0; i < PD_DHTT_BUCKETS; i++) {
    const bucket_t *b = &t->b[i];
    if (!b->e) {
      if (b->n || b->nr) {
        return PD_EINVAL;
      }
      continue;
    }
    if (b->n > t->k || b->nr > t->repl || (b->n == 0 && b->nr == 0)) {
      return PD_EINVAL;
    }
    const pd_dht_entry_t *rc = cache_of(t, b);
    for (uint32_t j = 0; j < b->n; j++) {
      if (!entry_ok(&b->e[j], i + 1, t->self) || find_in(b->e, j, b->e[j].id) >= 0) {
        return PD_EINVAL;
      }
    }
    for (uint32_t j = 0; j < b->nr; j++) {
      /* a cache entry has no ping out and is in neither the bucket nor the
       * cache twice (an id can only live in the bucket of its distance, so
       * a per-bucket check covers the whole table) */
      if (!entry_ok(&rc[j], i + 1, t->self) || rc[j].pinging || find_in(rc, j, rc[j].id) >= 0 ||
          find_in(b->e, b->n, rc[j].id) >= 0) {
        return PD_EINVAL;
      }
    }
    size += b->n;
    cached += b->nr;
  }
  return size == t->size && cached == t->cached ? 0 : PD_EINVAL;
}
