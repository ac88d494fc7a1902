/* reputation — bounded per-IP records with LRU eviction. See reputation.h.
 *
 * Records sit in one array (grown by doubling up to the maximum) threaded
 * on a doubly linked list in touch order (head = most recent). A keyed hash
 * over the 16 IP bytes indexes them in an open-addressing table (linear
 * probing, backward-shift deletion) at most half full. */
#include "reputation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define NIL UINT32_MAX
#define INITIAL_RECORDS 64

typedef struct rec {
  pd_rep_record_t r;
  uint32_t prev, next; /* touch order */
} rec_t;

struct pd_reputation {
  rec_t *recs;
  uint32_t nrecs, caprecs, maxrecs;
  uint32_t *slots; /* record index or NIL */
  uint32_t nslots; /* power of two >= 2 * caprecs */
  uint32_t head, tail;
  uint64_t k0, k1;
};

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint32_t hash_ip(const pd_reputation_t *r, const uint8_t ip[16]) {
  uint64_t a, b;
  memcpy(&a, ip, 8);
  memcpy(&b, ip + 8, 8);
  return (uint32_t)mix(mix(a ^ r->k0) ^ b ^ r->k1);
}

static bool ip_eq(const pd_netaddr_t *a, const uint8_t ip[16]) { return memcmp(a->ip, ip, 16) == 0; }

/* Slot holding the record of ip, or the empty slot where it would go. */
static uint32_t find_slot(const pd_reputation_t *r, const uint8_t ip[16]) {
  uint32_t mask = r->nslots - 1;
  uint32_t i = hash_ip(r, ip) & mask;
  while (r->slots[i] != NIL && !ip_eq(&r->recs[r->slots[i]].r.ip, ip)) i = (i + 1) & mask;
  return i;
}

static void slot_delete(pd_reputation_t *r, uint32_t i) {
  uint32_t mask = r->nslots - 1;
  r->slots[i] = NIL;
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (r->slots[j] == NIL) return;
    uint32_t home = hash_ip(r, r->recs[r->slots[j]].r.ip.ip) & mask;
    /* move j back into the hole at i unless its home lies in (i, j] */
    bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      r->slots[i] = r->slots[j];
      r->slots[j] = NIL;
      i = j;
    }
  }
}

static int rebuild(pd_reputation_t *r, uint32_t nslots) {
  uint32_t *s = malloc((size_t)nslots * sizeof *s);
  if (!s) return PD_ENOMEM;
  for (uint32_t i = 0; i < nslots; i++) s[i] = NIL;
  free(r->slots);
  r->slots = s;
  r->nslots = nslots;
  for (uint32_t k = 0; k < r->nrecs; k++) r->slots[find_slot(r, r->recs[k].r.ip.ip)] = k;
  return 0;
}

static uint32_t slots_for(uint32_t caprecs) {
  uint32_t n = 16;
  while (n < 2 * caprecs) n *= 2;
  return n;
}

int pd_reputation_create(pd_reputation_t **out, size_t max_records, uint64_t seed) {
  if (!out) return PD_EINVAL;
  if (max_records == 0) max_records = PD_REP_DEFAULT_MAX;
  if (max_records > (1u << 30)) return PD_ERANGE;
  pd_reputation_t *r = calloc(1, sizeof *r);
  if (!r) return PD_ENOMEM;
  r->maxrecs = (uint32_t)max_records;
  r->caprecs = r->maxrecs < INITIAL_RECORDS ? r->maxrecs : INITIAL_RECORDS;
  r->recs = malloc((size_t)r->caprecs * sizeof *r->recs);
  r->head = r->tail = NIL;
  r->k0 = mix(seed ^ 0x9e3779b97f4a7c15ULL);
  r->k1 = mix(r->k0 + seed);
  if (!r->recs || rebuild(r, slots_for(r->caprecs)) < 0) {
    pd_reputation_destroy(r);
    return PD_ENOMEM;
  }
  *out = r;
  return 0;
}

void pd_reputation_destroy(pd_reputation_t *r) {
  if (!r) return;
  free(r->recs);
  free(r->slots);
  free(r);
}

size_t pd_reputation_count(const pd_reputation_t *r) { return r->nrecs; }
size_t pd_reputation_max(const pd_reputation_t *r) { return r->maxrecs; }
size_t pd_reputation_memory(const pd_reputation_t *r) {
  return sizeof *r + (size_t)r->caprecs * sizeof *r->recs + (size_t)r->nslots * sizeof *r->slots;
}

static void unlink_rec(pd_reputation_t *r, uint32_t k) {
  rec_t *e = &r->recs[k];
  if (e->prev != NIL) r->recs[e->prev].next = e->next;
  else r->head = e->next;
  if (e->next != NIL) r->recs[e->next].prev = e->prev;
  else r->tail = e->prev;
  e->prev = e->next = NIL;
}

static void push_front(pd_reputation_t *r, uint32_t k) {
  rec_t *e = &r->recs[k];
  e->prev = NIL;
  e->next = r->head;
  if (r->head != NIL) r->recs[r->head].prev = k;
  r->head = k;
  if (r->tail == NIL) r->tail = k;
}

const pd_rep_record_t *pd_reputation_get(const pd_reputation_t *r, const pd_netaddr_t *a) {
  if (!r || !a) return NULL;
  uint32_t s = r->slots[find_slot(r, a->ip)];
  return s == NIL ? NULL : &r->recs[s].r;
}

void pd_reputation_prefetch(const pd_reputation_t *r, const pd_netaddr_t *a, int pass) {
  if (!r || !a || r->nrecs == 0) return;
  uint32_t i = hash_ip(r, a->ip) & (r->nslots - 1);
  if (pass == 0) {
    __builtin_prefetch(&r->slots[i]);
    return;
  }
  if (r->slots[i] != NIL) __builtin_prefetch(&r->recs[r->slots[i]]);
}

/* Move record k to index dst (the array stays dense after a removal). */
static void move_rec(pd_reputation_t *r, uint32_t k, uint32_t dst) {
  if (k == dst) return;
  rec_t *e = &r->recs[k];
  r->slots[find_slot(r, e->r.ip.ip)] = dst;
  if (e->prev != NIL) r->recs[e->prev].next = dst;
  else r->head = dst;
  if (e->next != NIL) r->recs[e->next].prev = dst;
  else r->tail = dst;
  r->recs[dst] = *e;
}

int pd_reputation_touch(pd_reputation_t *r, const pd_netaddr_t *a, int64_t now,
                        pd_rep_record_t **out) {
  if (!r || !a || !out) return PD_EINVAL;
  uint32_t s = find_slot(r, a->ip);
  uint32_t k = r->slots[s];
  if (k != NIL) {
    unlink_rec(r, k);
    push_front(r, k);
    *out = &r->recs[k].r;
    return 0;
  }
  if (r->nrecs == r->maxrecs) {
    /* evict the least recently touched record and reuse its index */
    k = r->tail;
    unlink_rec(r, k);
    slot_delete(r, find_slot(r, r->recs[k].r.ip.ip));
    s = find_slot(r, a->ip);
  } else {
    if (r->nrecs == r->caprecs) {
      uint32_t ncap = r->caprecs * 2 > r->maxrecs ? r->maxrecs : r->caprecs * 2;
      rec_t *nr = realloc(r->recs, (size_t)ncap * sizeof *nr);
      if (!nr) return PD_ENOMEM;
      r->recs = nr;
      uint32_t old = r->caprecs;
      r->caprecs = ncap;
      if (slots_for(ncap) != r->nslots && rebuild(r, slots_for(ncap)) < 0) {
        r->caprecs = old;
        return PD_ENOMEM;
      }
      s = find_slot(r, a->ip);
    }
    k = r->nrecs++;
  }
  rec_t *e = &r->recs[k];
  memset(e, 0, sizeof *e);
  memcpy(e->r.ip.ip, a->ip, 16);
  e->r.ip.port = 0;
  e->r.first_seen = now;
  e->r.latency_ms = -1;
  r->slots[s] = k;
  push_front(r, k);
  *out = &e->r;
  return 0;
}

int pd_reputation_update(pd_reputation_t *r, const pd_netaddr_t *a, double reputation,
                         bool misbehaved, int64_t now) {
  pd_rep_record_t *rec;
  int rc = pd_reputation_touch(r, a, now, &rec);
  if (rc < 0) return rc;
  if (!isnan(reputation)) {
    if (reputation > PD_REP_LIMIT) reputation = PD_REP_LIMIT;
    if (reputation < -PD_REP_LIMIT) reputation = -PD_REP_LIMIT;
    rec->reputation = reputation;
  }
  if (misbehaved && rec->misbehaviours < INT32_MAX) rec->misbehaviours++;
  rec->last_event_at = now;
  return 0;
}

int pd_reputation_set_latency(pd_reputation_t *r, const pd_netaddr_t *a, double ms, int64_t now) {
  pd_rep_record_t *rec;
  int rc = pd_reputation_touch(r, a, now, &rec);
  if (rc < 0) return rc;
  rec->latency_ms = (isnan(ms) || ms < 0) ? -1 : ms;
  return 0;
}

int pd_reputation_remove(pd_reputation_t *r, const pd_netaddr_t *a) {
  if (!r || !a) return PD_EINVAL;
  uint32_t s = find_slot(r, a->ip);
  uint32_t k = r->slots[s];
  if (k == NIL) return PD_ENOENT;
  unlink_rec(r, k);
  slot_delete(r, s);
  uint32_t last = --r->nrecs;
  move_rec(r, last, k);
  return 0;
}

const pd_rep_record_t *pd_reputation_next(const pd_reputation_t *r, const pd_rep_record_t *prev) {
  if (!r) return NULL;
  uint32_t k;
  if (!prev) {
    k = r->head;
  } else {
    /* a record is the first member of its rec_t */
    uintptr_t at = (uintptr_t)(const void *)prev, base = (uintptr_t)(const void *)r->recs;
    if (at < base || (at - base) % sizeof(rec_t) != 0 || (at - base) / sizeof(rec_t) >= r->nrecs)
      return NULL;
    k = r->recs[(at - base) / sizeof(rec_t)].next;
  }
  return k == NIL ? NULL : &r->recs[k].r;
}

int pd_reputation_restore(pd_reputation_t *r, const pd_rep_record_t *rec) {
  if (!r || !rec) return PD_EINVAL;
  pd_rep_record_t *out;
  int rc = pd_reputation_touch(r, &rec->ip, rec->first_seen, &out);
  if (rc < 0) return rc;
  double v = isnan(rec->reputation) ? 0 : rec->reputation;
  if (v > PD_REP_LIMIT) v = PD_REP_LIMIT;
  if (v < -PD_REP_LIMIT) v = -PD_REP_LIMIT;
  out->reputation = v;
  out->misbehaviours = rec->misbehaviours > 0 ? rec->misbehaviours : 0;
  out->first_seen = rec->first_seen;
  out->last_event_at = rec->last_event_at;
  out->latency_ms = (isnan(rec->latency_ms) || rec->latency_ms < 0) ? -1 : rec->latency_ms;
  return 0;
}

void pd_reputation_default(double current, const char *event, int64_t default_ban_secs,
                           pd_rep_default_t *out) {
  out->reputation = current;
  out->ban_secs = 0;
  out->reason = "";
  if (!event) return;
  if (strcmp(event, "good") == 0) {
    out->reputation = current + 1;
  } else if (strcmp(event, "connected") == 0) {
    out->reputation = current + 0.1;
  } else if (strcmp(event, "failed") == 0) {
    out->reputation = current - 1;
  } else if (strcmp(event, "misbehaved") == 0) {
    out->reputation = current - 10;
    out->ban_secs = default_ban_secs > 0 ? default_ban_secs : 0;
    out->reason = "misbehaved";
  }
  if (out->reputation > PD_REP_LIMIT) out->reputation = PD_REP_LIMIT;
  if (out->reputation < -PD_REP_LIMIT) out->reputation = -PD_REP_LIMIT;
}
