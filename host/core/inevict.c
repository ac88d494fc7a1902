/* inevict — the inbound eviction rule (sans-I/O). See inevict.h. */
#include "inevict.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
  const pd_inevict_cand_t *c;
  size_t idx;
  uint64_t gkey; /* keyed group hash */
} item_t;

static int by_id(const item_t *a, const item_t *b) {
  return a->c->conn_id < b->c->conn_id ? -1 : a->c->conn_id > b->c->conn_id;
}
/* Each comparator puts the ones to protect LAST (they are cut off the end). */
static int cmp_group(const void *pa, const void *pb) {
  const item_t *a = pa, *b = pb;
  if (a->gkey != b->gkey) return a->gkey < b->gkey ? -1 : 1;
  return -by_id(a, b);
}
static int cmp_latency(const void *pa, const void *pb) {
  const item_t *a = pa, *b = pb;
  int64_t la = a->c->latency_ms < 0 ? INT64_MAX : a->c->latency_ms;
  int64_t lb = b->c->latency_ms < 0 ? INT64_MAX : b->c->latency_ms;
  if (la != lb) return la > lb ? -1 : 1; /* slowest first */
  return -by_id(a, b);
}
static int cmp_useful(const void *pa, const void *pb) {
  const item_t *a = pa, *b = pb;
  if (a->c->useful_ms != b->c->useful_ms) return a->c->useful_ms < b->c->useful_ms ? -1 : 1;
  return -by_id(a, b);
}
static int cmp_uptime(const void *pa, const void *pb) {
  const item_t *a = pa, *b = pb;
  if (a->c->connected_ms != b->c->connected_ms)
    return a->c->connected_ms > b->c->connected_ms ? -1 : 1; /* youngest first */
  return -by_id(a, b);
}

static int cmp_group_then_young(const void *pa, const void *pb) {
  const item_t *a = pa, *b = pb;
  if (a->c->group_len != b->c->group_len) return a->c->group_len < b->c->group_len ? -1 : 1;
  int g = memcmp(a->c->group, b->c->group, a->c->group_len);
  if (g) return g;
  return cmp_uptime(pa, pb);
}

/* Sort it[0..*n) with cmp and protect up to k from the end (only those
 * for which ok() holds, when given). */
static void protect(item_t *it, size_t *n, size_t k, int (*cmp)(const void *, const void *),
                    bool (*ok)(const item_t *), bool *prot) {
  qsort(it, *n, sizeof *it, cmp);
  while (k > 0 && *n > 0 && (!ok || ok(&it[*n - 1]))) {
    if (prot) prot[it[*n - 1].idx] = true;
    (*n)--;
    k--;
  }
}

static bool was_useful(const item_t *i) { return i->c->useful_ms > 0; }
static bool was_measured(const item_t *i) { return i->c->latency_ms >= 0; }

static bool same_group(const pd_inevict_cand_t *a, const pd_inevict_cand_t *b) {
  return a->group_len == b->group_len && memcmp(a->group, b->group, a->group_len) == 0;
}

long pd_inevict_select(const pd_inevict_cand_t *c, size_t n, const uint8_t key[PD_INEVICT_KEY_LEN],
                       bool *protected_out) {
  if (protected_out) memset(protected_out, 0, n * sizeof *protected_out);
  if (!c || n == 0 || n > 100000) return -1;
  item_t *it = malloc(n * sizeof *it);
  if (!it) return -1;
  for (size_t i = 0; i < n; i++) {
    it[i].c = &c[i];
    it[i].idx = i;
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, c[i].group, c[i].group_len, key);
    uint64_t g = 0;
    for (size_t b = 0; b < sizeof h; b++) g = (g << 8) | h[b];
    it[i].gkey = g;
  }
  size_t left = n;
  protect(it, &left, PD_INEVICT_BY_GROUP, cmp_group, NULL, protected_out);
  protect(it, &left, PD_INEVICT_BY_LATENCY, cmp_latency, was_measured, protected_out);
  protect(it, &left, PD_INEVICT_BY_USEFUL, cmp_useful, was_useful, protected_out);
  protect(it, &left, left / 2, cmp_uptime, NULL, protected_out);
  long victim = -1;
  if (left > 0) {
    /* Runs of one group, newest first within each; the group with the most
     * left wins (ties: the one whose newest is newest) and loses its newest. */
    qsort(it, left, sizeof *it, cmp_group_then_young);
    size_t best = 0, best_count = 0;
    for (size_t i = 0; i < left;) {
      size_t j = i + 1;
      while (j < left && same_group(it[i].c, it[j].c)) j++;
      if (best_count == 0 || j - i > best_count ||
          (j - i == best_count && cmp_uptime(&it[i], &it[best]) < 0)) {
        best = i;
        best_count = j - i;
      }
      i = j;
    }
    victim = (long)it[best].idx;
  }
  free(it);
  return victim;
}
