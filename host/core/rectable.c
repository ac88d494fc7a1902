/* rectable — verified node records of other nodes. See rectable.h. */
#include "rectable.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "intern.h"

#define EMPTY UINT32_MAX
#define TOMB (UINT32_MAX - 1)

/* An index slot: the record's ring array index (or EMPTY, TOMB), the high
 * 32 bits of its id's hash (a probe reads a record only on a match), and
 * the record itself, so that a lookup costs one cache line of index and
 * one of record, not four (slot, tag, pointer, record). */
typedef struct islot {
  pd_rec_t *rec;
  uint32_t v;
  uint32_t tag;
} islot_t;

/* An index: slot -> record, linear probing, tombstones. */
typedef struct index {
  islot_t *s;
  size_t mask, used; /* used counts live + tombstones */
} index_t;

typedef struct svc_key {
  pd_netaddr_t addr;
  uint32_t rec;
} svc_ent_t;

struct pd_rectable {
  uint8_t key[crypto_shorthash_KEYBYTES];
  size_t cap;
  pd_rec_t **recs;  /* ring in insertion order: recs[(head + i) % alloc], i < count */
  size_t alloc;     /* grows by doubling up to cap */
  size_t head, count;
  index_t by_id;    /* -> ring position */
  /* service endpoint -> ring position; parallel arrays */
  svc_ent_t *svc;
  size_t svc_mask, svc_used, svc_live;
  size_t bytes; /* record bytes held */
  uint64_t changes; /* puts that changed the table, and removals */
  pd_intern_t *store; /* where the records' bytes are kept */
  bool own_store;
};

/* ring position p (0..count) <-> array index */
static size_t at(const pd_rectable_t *t, size_t p) { return (t->head + p) % t->alloc; }

static uint64_t hash(const pd_rectable_t *t, const void *p, size_t n) {
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, p, n, t->key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}

static uint64_t hash_addr(const pd_rectable_t *t, const pd_netaddr_t *a) {
  uint8_t m[18];
  memcpy(m, a->ip, 16);
  m[16] = (uint8_t)(a->port >> 8);
  m[17] = (uint8_t)a->port;
  return hash(t, m, sizeof m);
}

static size_t pow2_at_least(size_t n) {
  size_t p = 16;
  while (p < n) p <<= 1;
  return p;
}

_Static_assert(PD_RECTABLE_KEY_LEN == crypto_shorthash_KEYBYTES, "siphash key");

int pd_rectable_create(pd_rectable_t **out, size_t cap, const uint8_t key[PD_RECTABLE_KEY_LEN]) {
  return pd_rectable_create_shared(out, cap, key, NULL);
}

int pd_rectable_create_shared(pd_rectable_t **out, size_t cap,
                              const uint8_t key[PD_RECTABLE_KEY_LEN], pd_intern_t *store) {
  if (!out || cap == 0 || cap > (1u << 24) || !key) return PD_EINVAL;
  pd_rectable_t *t = calloc(1, sizeof *t);
  if (!t) return PD_ENOMEM;
  memcpy(t->key, key, sizeof t->key);
  t->store = store;
  if (!store) {
    _Static_assert(PD_INTERN_KEY_LEN <= PD_RECTABLE_KEY_LEN, "store key from the table's");
    if (pd_intern_create(&t->store, key) < 0) {
      free(t);
      return PD_ENOMEM;
    }
    t->own_store = true;
  }
  t->cap = cap;
  /* the ring grows with use; indexes start small */
  size_t isz = 16;
  t->by_id.s = malloc(isz * sizeof *t->by_id.s);
  t->svc = malloc(isz * sizeof *t->svc);
  if (!t->by_id.s || !t->svc) {
    free(t->by_id.s);
    free(t->svc);
    if (t->own_store) pd_intern_destroy(t->store);
    free(t);
    return PD_ENOMEM;
  }
  for (size_t i = 0; i < isz; i++) t->by_id.s[i] = (islot_t){NULL, EMPTY, 0};
  for (size_t i = 0; i < isz; i++) t->svc[i].rec = EMPTY;
  t->by_id.mask = isz - 1;
  t->svc_mask = isz - 1;
  *out = t;
  return 0;
}

static void rec_free(pd_rectable_t *t, pd_rec_t *r);

void pd_rectable_destroy(pd_rectable_t *t) {
  if (!t) return;
  for (size_t i = 0; i < t->count; i++) rec_free(t, t->recs[at(t, i)]);
  free(t->recs);
  free(t->by_id.s);
  free(t->svc);
  if (t->own_store) pd_intern_destroy(t->store);
  free(t);
}


/* --- the id index: values are array indexes into recs ------------------------------------- */

static long id_lookup_h(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN], uint64_t h) {
  uint32_t tag = (uint32_t)(h >> 32);
  size_t i = (size_t)h & t->by_id.mask;
  for (size_t probes = 0; probes <= t->by_id.mask; probes++, i = (i + 1) & t->by_id.mask) {
    const islot_t *e = &t->by_id.s[i];
    if (e->v == EMPTY) return -1;
    if (e->v != TOMB && e->tag == tag && memcmp(e->rec->id, id, PD_NODE_ID_LEN) == 0)
      return (long)i;
  }
  return -1;
}

static long id_lookup(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN]) {
  return id_lookup_h(t, id, hash(t, id, PD_NODE_ID_LEN));
}

static int id_grow(pd_rectable_t *t, size_t want);

static int id_insert(pd_rectable_t *t, uint32_t v) {
  if ((t->by_id.used + 1) * 4 > (t->by_id.mask + 1) * 3) {
    int rc = id_grow(t, (t->count + 1) * 2);
    if (rc < 0) return rc;
  }
  uint64_t h = hash(t, t->recs[v]->id, PD_NODE_ID_LEN);
  size_t i = (size_t)h & t->by_id.mask;
  while (t->by_id.s[i].v != EMPTY && t->by_id.s[i].v != TOMB) i = (i + 1) & t->by_id.mask;
  if (t->by_id.s[i].v == EMPTY) t->by_id.used++;
  t->by_id.s[i] = (islot_t){t->recs[v], v, (uint32_t)(h >> 32)};
  return 0;
}

static int id_grow(pd_rectable_t *t, size_t want) {
  size_t n = pow2_at_least(want);
  islot_t *s = malloc(n * sizeof *s);
  if (!s) return PD_ENOMEM;
  for (size_t i = 0; i < n; i++) s[i] = (islot_t){NULL, EMPTY, 0};
  islot_t *old = t->by_id.s;
  size_t oldn = t->by_id.mask + 1;
  t->by_id.s = s;
  t->by_id.mask = n - 1;
  t->by_id.used = 0;
  for (size_t i = 0; i < oldn; i++)
    if (old[i].v != EMPTY && old[i].v != TOMB) id_insert(t, old[i].v); /* cannot grow again */
  free(old);
  return 0;
}

/* --- the service index ----------------------------------------------------------------------- */

static long svc_lookup(const pd_rectable_t *t, const pd_netaddr_t *a) {
  size_t i = (size_t)hash_addr(t, a) & t->svc_mask;
  for (size_t probes = 0; probes <= t->svc_mask; probes++, i = (i + 1) & t->svc_mask) {
    uint32_t v = t->svc[i].rec;
    if (v == EMPTY) return -1;
    if (v != TOMB && pd_netaddr_equal(&t->svc[i].addr, a)) return (long)i;
  }
  return -1;
}

static int svc_set(pd_rectable_t *t, const pd_netaddr_t *a, uint32_t v);

/* Rehash into a table for `live` entries at most 1/2 full (drops tombstones). */
static int svc_grow(pd_rectable_t *t, size_t live) {
  size_t want = live * 2;
  size_t n = pow2_at_least(want);
  svc_ent_t *s = malloc(n * sizeof *s);
  if (!s) return PD_ENOMEM;
  for (size_t i = 0; i < n; i++) s[i].rec = EMPTY;
  svc_ent_t *old = t->svc;
  size_t oldn = t->svc_mask + 1;
  t->svc = s;
  t->svc_mask = n - 1;
  t->svc_used = 0;
  t->svc_live = 0;
  for (size_t i = 0; i < oldn; i++)
    if (old[i].rec != EMPTY && old[i].rec != TOMB) svc_set(t, &old[i].addr, old[i].rec);
  free(old);
  return 0;
}

static int svc_set(pd_rectable_t *t, const pd_netaddr_t *a, uint32_t v) {
  long f = svc_lookup(t, a);
  if (f >= 0) {
    t->svc[f].rec = v;
    return 0;
  }
  if ((t->svc_used + 1) * 4 > (t->svc_mask + 1) * 3) {
    int rc = svc_grow(t, t->svc_live + 1);
    if (rc < 0) return rc;
  }
  size_t i = (size_t)hash_addr(t, a) & t->svc_mask;
  while (t->svc[i].rec != EMPTY && t->svc[i].rec != TOMB) i = (i + 1) & t->svc_mask;
  if (t->svc[i].rec == EMPTY) t->svc_used++;
  t->svc_live++;
  t->svc[i].addr = *a;
  t->svc[i].rec = v;
  return 0;
}

/* Drop the service entries of record v (decoded r) that still point at it. */
static void svc_unset(pd_rectable_t *t, const pd_record_t *r, uint32_t v) {
  for (unsigned k = 0; k < r->nservices; k++) {
    long f = svc_lookup(t, &r->services[k].addr);
    if (f >= 0 && t->svc[f].rec == v) {
      t->svc[f].rec = TOMB;
      t->svc_live--;
    }
  }
}

/* --- put / remove ------------------------------------------------------------------------------ */

int pd_rec_decode(const pd_rec_t *r, pd_record_t *out) {
  return pd_record_parse_trusted(r->bytes, r->len, out) == PD_RECORD_OK ? 0 : PD_ECORRUPT;
}

static pd_rec_t *rec_new(pd_rectable_t *t, const uint8_t *bytes, size_t len,
                         const pd_record_t *rec, int64_t now) {
  pd_rec_t *r = malloc(sizeof *r);
  if (!r) return NULL;
  r->bytes = pd_intern_get(t->store, bytes, len);
  if (!r->bytes) {
    free(r);
    return NULL;
  }
  memcpy(r->id, rec->id, PD_NODE_ID_LEN);
  r->seq = rec->seq;
  r->updated = now;
  const pd_netaddr_t *at = pd_record_placed(rec, NULL);
  if (at)
    r->placed = *at;
  else
    memset(&r->placed, 0, sizeof r->placed);
  r->len = (uint16_t)len;
  return r;
}

static void rec_free(pd_rectable_t *t, pd_rec_t *r) {
  if (!r) return;
  pd_intern_put(t->store, r->bytes);
  free(r);
}

/* Remove the record at array index v: the ring keeps insertion order, so
 * the hole is closed by moving later records one place back (O(count) but
 * only on an explicit remove; eviction takes the head, O(1)). */
static void remove_at(pd_rectable_t *t, uint32_t v) {
  pd_record_t dec;
  if (pd_rec_decode(t->recs[v], &dec) == 0) svc_unset(t, &dec, v);
  long f = id_lookup(t, t->recs[v]->id);
  if (f >= 0) t->by_id.s[f] = (islot_t){NULL, TOMB, 0};
  t->bytes -= t->recs[v]->len;
  t->changes++;
  rec_free(t, t->recs[v]);
  size_t pos = (v + t->alloc - t->head) % t->alloc;
  if (pos == 0) {
    t->recs[v] = NULL;
    t->head = (t->head + 1) % t->alloc;
    t->count--;
    return;
  }
  /* shift positions pos+1.. back by one, re-pointing the indexes */
  for (size_t p = pos; p + 1 < t->count; p++) {
    uint32_t from = (uint32_t)at(t, p + 1), to = (uint32_t)at(t, p);
    t->recs[to] = t->recs[from];
    long g = id_lookup(t, t->recs[to]->id);
    if (g >= 0) t->by_id.s[g].v = to; /* same record, new array index */
    if (pd_rec_decode(t->recs[to], &dec) == 0) {
      for (unsigned k = 0; k < dec.nservices; k++) {
        long s = svc_lookup(t, &dec.services[k].addr);
        if (s >= 0 && t->svc[s].rec == from) t->svc[s].rec = to;
      }
    }
  }
  t->recs[at(t, t->count - 1)] = NULL;
  t->count--;
}

/* Room for one more record: the ring doubles (up to cap), copied in ring
 * order so that positions stay insertion order; the indexes are rebuilt. */
static int ensure_ring(pd_rectable_t *t) {
  if (t->count < t->alloc || t->alloc == t->cap) return 0;
  size_t n = t->alloc ? t->alloc * 2 : 16;
  if (n > t->cap) n = t->cap;
  pd_rec_t **r = calloc(n, sizeof *r);
  if (!r) return PD_ENOMEM;
  for (size_t p = 0; p < t->count; p++) r[p] = t->recs[at(t, p)];
  free(t->recs);
  t->recs = r;
  t->alloc = n;
  t->head = 0;
  /* array indexes changed: rebuild both indexes */
  for (size_t i = 0; i <= t->by_id.mask; i++) t->by_id.s[i] = (islot_t){NULL, EMPTY, 0};
  t->by_id.used = 0;
  for (size_t i = 0; i <= t->svc_mask; i++) t->svc[i].rec = EMPTY;
  t->svc_used = t->svc_live = 0;
  for (uint32_t v = 0; v < t->count; v++) {
    if (id_insert(t, v) < 0) return PD_ENOMEM;
    pd_record_t dec;
    if (pd_rec_decode(t->recs[v], &dec) < 0) continue;
    for (unsigned k = 0; k < dec.nservices; k++)
      if (svc_set(t, &dec.services[k].addr, v) < 0) return PD_ENOMEM;
  }
  return 0;
}

int pd_rectable_put(pd_rectable_t *t, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                    int64_t now) {
  if (!t || !bytes || !rec || len == 0 || len > PD_RECORD_MAX) return PD_EINVAL;
  long f = t->count ? id_lookup(t, rec->id) : -1;
  if (f >= 0) {
    uint32_t v = t->by_id.s[f].v;
    pd_rec_t *old = t->recs[v];
    bool same = false;
    pd_record_reason_t why =
        pd_record_compare(old->bytes, old->len, old->seq, bytes, len, rec->seq, &same);
    if (same) return PD_REC_SAME;
    if (why == PD_RECORD_R_STALE) return PD_REC_STALE;
    if (why == PD_RECORD_R_CONFLICT) return PD_REC_CONFLICT;
    pd_rec_t *r = rec_new(t, bytes, len, rec, now);
    if (!r) return PD_ENOMEM;
    /* make room in the service index first, so nothing fails half-way */
    if ((t->svc_used + rec->nservices + 1) * 4 > (t->svc_mask + 1) * 3 &&
        svc_grow(t, t->svc_live + rec->nservices + 1) < 0) {
      rec_free(t, r);
      return PD_ENOMEM;
    }
    pd_record_t dec;
    if (pd_rec_decode(old, &dec) == 0) svc_unset(t, &dec, v);
    t->bytes += len;
    t->bytes -= old->len;
    t->changes++;
    rec_free(t, old);
    t->recs[v] = r;
    t->by_id.s[f].rec = r;
    for (unsigned k = 0; k < rec->nservices; k++) svc_set(t, &rec->services[k].addr, v);
    return PD_REC_UPDATED;
  }
  if (ensure_ring(t) < 0) return PD_ENOMEM;
  pd_rec_t *r = rec_new(t, bytes, len, rec, now);
  if (!r) return PD_ENOMEM;
  if (((t->by_id.used + 2) * 4 > (t->by_id.mask + 1) * 3 && id_grow(t, (t->count + 2) * 2) < 0) ||
      ((t->svc_used + rec->nservices + 1) * 4 > (t->svc_mask + 1) * 3 &&
       svc_grow(t, t->svc_live + rec->nservices + 1) < 0)) {
    rec_free(t, r);
    return PD_ENOMEM;
  }
  if (t->count == t->cap) remove_at(t, (uint32_t)t->head);
  uint32_t v = (uint32_t)at(t, t->count);
  t->recs[v] = r;
  t->count++;
  t->bytes += len;
  t->changes++;
  id_insert(t, v);
  for (unsigned k = 0; k < rec->nservices; k++) svc_set(t, &rec->services[k].addr, v);
  return PD_REC_NEW;
}

const pd_rec_t *pd_rectable_find(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN]) {
  if (!t || !id || !t->count) return NULL;
  long f = id_lookup(t, id);
  return f >= 0 ? t->by_id.s[f].rec : NULL;
}

const pd_rec_t *pd_rectable_find_hashed(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN],
                                        uint64_t h) {
  if (!t || !id || !t->count) return NULL;
  long f = id_lookup_h(t, id, h);
  return f >= 0 ? t->by_id.s[f].rec : NULL;
}

void pd_rectable_prefetch(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN], uint64_t *hp,
                          int pass) {
  if (!t || !id || !hp) return;
  if (pass == 0) *hp = hash(t, id, PD_NODE_ID_LEN);
  if (!t->count) return;
  uint64_t h = *hp;
  size_t i = (size_t)h & t->by_id.mask;
  if (pass == 0) {
    __builtin_prefetch(&t->by_id.s[i]);
    return;
  }
  const islot_t *e = &t->by_id.s[i];
  if (e->v != EMPTY && e->v != TOMB && e->tag == (uint32_t)(h >> 32)) __builtin_prefetch(e->rec);
}

const pd_rec_t *pd_rectable_find_service(const pd_rectable_t *t, const pd_netaddr_t *addr) {
  if (!t || !addr || !t->count) return NULL;
  long f = svc_lookup(t, addr);
  return f >= 0 ? t->recs[t->svc[f].rec] : NULL;
}

int pd_rectable_remove(pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN]) {
  if (!t || !id || !t->count) return PD_ENOENT;
  long f = id_lookup(t, id);
  if (f < 0) return PD_ENOENT;
  remove_at(t, t->by_id.s[f].v);
  return 0;
}

size_t pd_rectable_count(const pd_rectable_t *t) { return t ? t->count : 0; }
uint64_t pd_rectable_changes(const pd_rectable_t *t) { return t ? t->changes : 0; }
size_t pd_rectable_cap(const pd_rectable_t *t) { return t ? t->cap : 0; }

const pd_rec_t *pd_rectable_at(const pd_rectable_t *t, size_t i) {
  if (!t || i >= t->count) return NULL;
  return t->recs[at(t, i)];
}

size_t pd_rectable_memory(const pd_rectable_t *t) {
  if (!t) return 0;
  size_t m = sizeof *t + (t->by_id.mask + 1) * sizeof *t->by_id.s +
             (t->svc_mask + 1) * sizeof *t->svc + t->bytes + t->count * (sizeof(pd_rec_t) + 16);
  m += t->alloc * sizeof *t->recs;
  return m;
}
