/* dialer — whom to dial and when (see dialer.h). */
#include "dialer.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Backoff state for one address. */
typedef struct bo_rec {
  pd_netaddr_t addr;
  uint32_t failures; /* consecutive failed dials; reset by a successful one */
  uint32_t flaps;    /* consecutive short-lived connections; reset by a stable one */
  int64_t next_at;   /* no dial before this */
} bo_rec_t;

typedef struct conn {
  pd_netaddr_t addr;
  enum pd_conn_dir dir;
  bool has_id;
  bool uncond; /* exempt from limits */
  uint8_t id[PD_NODE_ID_LEN];
  uint8_t group[PD_GROUP_MAX];
  uint8_t glen;
  int64_t since;
} conn_t;

typedef struct flight {
  pd_dial_target_t t;
  enum pd_dial_reason reason;
  int64_t started;
  uint8_t group[PD_GROUP_MAX];
  uint8_t glen;
} flight_t;

typedef struct persist {
  pd_endpoint_t ep;
  bool resolved;
  pd_netaddr_t addr; /* valid when resolved */
  bo_rec_t bo;       /* its own backoff, never evicted */
  int64_t resolve_at;
  uint32_t resolve_failures;
} persist_t;

typedef struct seed {
  pd_endpoint_t ep;
  bool want_resolve;
} seed_t;

struct pd_dialer {
  pd_dialer_config_t cfg; /* list pointers cleared; the copies are below */
  pd_rng_t *rng;
  persist_t *persist;
  size_t npersist;
  seed_t *seeds;
  size_t nseeds;
  uint8_t (*uncond)[PD_NODE_ID_LEN];
  size_t nuncond;
  uint8_t (*priv)[PD_NODE_ID_LEN];
  size_t npriv;
  pd_netaddr_t self[PD_DIALER_MAX_SELF];
  size_t nself, nself_cfg, self_next;

  conn_t *conns; /* in order of connection, oldest first */
  size_t nconns, conns_cap;
  flight_t *flights; /* dial_concurrency + 1 (the feeler) */
  size_t nflights, flights_cap;
  bo_rec_t *bo;
  size_t nbo, bo_cap; /* bo_cap grows to cfg.backoff_max */
  /* bo's index by address (open addressing, linear probing): position + 1,
   * 0 empty; bo_ix_mask + 1 slots, at least twice bo_cap (bo_ix_put) */
  uint32_t *bo_ix;
  size_t bo_ix_mask;

  pd_dial_target_t anchors[PD_DIALER_MAX_ANCHORS];
  size_t nanchors;
  pd_dial_target_t seedq[PD_DIALER_SEED_QUEUE];
  size_t nseedq;

  int64_t next_bootstrap_at;
  uint32_t bootstrap_rounds;
  int64_t below_since; /* -1: not below the minimum */
  int64_t next_feeler_at; /* -1: not scheduled yet */
  pd_dialer_counters_t c;
};

/* --- small helpers ---------------------------------------------------------- */

static bool id_eq(const uint8_t *a, const uint8_t *b) {
  return memcmp(a, b, PD_NODE_ID_LEN) == 0;
}

static bool id_in(const uint8_t (*list)[PD_NODE_ID_LEN], size_t n, const uint8_t *id) {
  if (!id) return false;
  for (size_t i = 0; i < n; i++) {
    if (id_eq(list[i], id)) return true;
  }
  return false;
}

static uint8_t group_of(const pd_dialer_t *d, const pd_netaddr_t *a, uint8_t g[PD_GROUP_MAX]) {
  return (uint8_t)pd_netaddr_group(a, d->cfg.allow_private, g);
}

static bool group_eq(const uint8_t *a, uint8_t alen, const uint8_t *b, uint8_t blen) {
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* secs scaled by 1 +- jitter, rounded, at least 1. */
static int64_t jittered(pd_dialer_t *d, int64_t secs) {
  if (secs <= 0) return 0;
  double f = 1.0 + d->cfg.backoff_jitter * (2.0 * pd_rng_unit(d->rng) - 1.0);
  double v = (double)secs * f + 0.5;
  int64_t r = v >= 9.0e18 ? INT64_MAX / 4 : (int64_t)v;
  return r < 1 ? 1 : r;
}

/* base * factor^(k-1) capped, then jittered and capped again (k >= 1). */
static int64_t grow(pd_dialer_t *d, int64_t base, uint32_t k, int64_t cap) {
  int64_t v = base;
  uint32_t f = d->cfg.backoff_factor;
  for (uint32_t i = 1; i < k && v < cap; i++) {
    v = (v > cap / (int64_t)f) ? cap : v * (int64_t)f;
  }
  if (v > cap) v = cap;
  v = jittered(d, v);
  return v > cap ? cap : v;
}

static int64_t add_sat(int64_t now, int64_t delta) {
  return (delta > INT64_MAX - now) ? INT64_MAX : now + delta;
}

/* --- self ------------------------------------------------------------------- */

static bool is_self(const pd_dialer_t *d, const pd_dial_target_t *t) {
  if (t->has_id && d->cfg.has_self_id && id_eq(t->id, d->cfg.self_id)) return true;
  for (size_t i = 0; i < d->nself; i++) {
    if (pd_netaddr_equal(&d->self[i], &t->addr)) return true;
  }
  return false;
}

static void learn_self(pd_dialer_t *d, const pd_netaddr_t *a) {
  for (size_t i = 0; i < d->nself; i++) {
    if (pd_netaddr_equal(&d->self[i], a)) return;
  }
  if (d->nself < PD_DIALER_MAX_SELF) {
    d->self[d->nself++] = *a;
    return;
  }
  size_t learned = PD_DIALER_MAX_SELF - d->nself_cfg;
  if (learned == 0) return;
  d->self[d->nself_cfg + d->self_next % learned] = *a;
  d->self_next++;
}

/* --- persistent peers --------------------------------------------------------- */

static persist_t *persist_by_addr(const pd_dialer_t *d, const pd_netaddr_t *a) {
  for (size_t i = 0; i < d->npersist; i++) {
    if (d->persist[i].resolved && pd_netaddr_equal(&d->persist[i].addr, a)) return &d->persist[i];
  }
  return NULL;
}

static bool conn_is_persistent(const pd_dialer_t *d, const conn_t *c) {
  for (size_t i = 0; i < d->npersist; i++) {
    const persist_t *p = &d->persist[i];
    if (p->ep.has_id && c->has_id && id_eq(p->ep.id, c->id)) return true;
    if (c->dir == PD_CONN_OUTBOUND && p->resolved && pd_netaddr_equal(&p->addr, &c->addr)) return true;
  }
  return false;
}

static bool persist_connected(const pd_dialer_t *d, const persist_t *p) {
  for (size_t i = 0; i < d->nconns; i++) {
    const conn_t *c = &d->conns[i];
    if (p->ep.has_id && c->has_id && id_eq(p->ep.id, c->id)) return true;
    if (c->dir == PD_CONN_OUTBOUND && p->resolved && pd_netaddr_equal(&p->addr, &c->addr)) return true;
  }
  return false;
}

/* --- backoff table -------------------------------------------------------------- */
/* Up to backoff_max (4,096) records, found by address through bo_ix: a
 * seed crawling thousands of addresses looks one up for every candidate and
 * every outcome, which a scan of the array made O(records) each. The hash
 * is unkeyed (the dialer draws nothing from its RNG for it): addresses
 * chosen to collide make a probe as long as that scan, no longer. */

static size_t bo_hash(const pd_netaddr_t *a) {
  uint64_t lo, hi;
  memcpy(&lo, a->ip, 8);
  memcpy(&hi, a->ip + 8, 8);
  uint64_t h = (lo * 0x9e3779b97f4a7c15ULL) ^ (hi + a->port) * 0xc2b2ae3d27d4eb4fULL;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ULL;
  return (size_t)(h ^ (h >> 32));
}

/* The index slot holding a's record, or the empty slot where it would go. */
static size_t bo_ix_slot(const pd_dialer_t *d, const pd_netaddr_t *a) {
  size_t i = bo_hash(a) & d->bo_ix_mask;
  while (d->bo_ix[i] && !pd_netaddr_equal(&d->bo[d->bo_ix[i] - 1].addr, a))
    i = (i + 1) & d->bo_ix_mask;
  return i;
}

static void bo_ix_put(pd_dialer_t *d, size_t pos) {
  d->bo_ix[bo_ix_slot(d, &d->bo[pos].addr)] = (uint32_t)pos + 1;
}

/* Remove the record at pos from the index (backward-shift deletion). */
static void bo_ix_del(pd_dialer_t *d, size_t pos) {
  size_t i = bo_ix_slot(d, &d->bo[pos].addr), j = i;
  if (!d->bo_ix[i]) return;
  for (;;) {
    j = (j + 1) & d->bo_ix_mask;
    uint32_t v = d->bo_ix[j];
    if (!v) break;
    size_t home = bo_hash(&d->bo[v - 1].addr) & d->bo_ix_mask;
    /* move back unless its home lies cyclically in (i, j] */
    if (((j - home) & d->bo_ix_mask) >= ((j - i) & d->bo_ix_mask)) {
      d->bo_ix[i] = v;
      i = j;
    }
  }
  d->bo_ix[i] = 0;
}

/* An index for cap records (twice as many slots, a power of two), filled
 * with the records held. PD_ENOMEM: the old one stays. */
static int bo_ix_resize(pd_dialer_t *d, size_t cap) {
  size_t slots = 16;
  while (slots < 2 * cap) slots *= 2;
  uint32_t *ix = calloc(slots, sizeof *ix);
  if (!ix) return PD_ENOMEM;
  free(d->bo_ix);
  d->bo_ix = ix;
  d->bo_ix_mask = slots - 1;
  for (size_t i = 0; i < d->nbo; i++) bo_ix_put(d, i);
  return 0;
}

static bo_rec_t *bo_find(pd_dialer_t *d, const pd_netaddr_t *a) {
  persist_t *p = persist_by_addr(d, a);
  if (p) return &p->bo;
  if (d->nbo == 0) return NULL;
  uint32_t v = d->bo_ix[bo_ix_slot(d, a)];
  return v ? &d->bo[v - 1] : NULL;
}

static const bo_rec_t *bo_find_const(const pd_dialer_t *d, const pd_netaddr_t *a) {
  return bo_find((pd_dialer_t *)d, a);
}

/* Find or create; when the table is full, the record due soonest goes. */
static bo_rec_t *bo_get(pd_dialer_t *d, const pd_netaddr_t *a) {
  bo_rec_t *r = bo_find(d, a);
  if (r) return r;
  if (d->cfg.backoff_max == 0) return NULL;
  if (d->nbo == d->bo_cap && d->bo_cap < d->cfg.backoff_max) {
    /* Grown on demand: most nodes never hold more than a few dozen. */
    size_t ncap = d->bo_cap ? d->bo_cap * 2 : 16;
    if (ncap > d->cfg.backoff_max) ncap = d->cfg.backoff_max;
    bo_rec_t *nb = realloc(d->bo, ncap * sizeof *nb);
    if (nb) {
      d->bo = nb;
      if (bo_ix_resize(d, ncap) == 0) d->bo_cap = ncap;
    }
  }
  if (d->nbo < d->bo_cap) {
    r = &d->bo[d->nbo++];
  } else if (d->nbo == 0) {
    return NULL;
  } else {
    r = &d->bo[0];
    for (size_t i = 1; i < d->nbo; i++) {
      if (d->bo[i].next_at < r->next_at) r = &d->bo[i];
    }
    bo_ix_del(d, (size_t)(r - d->bo));
  }
  memset(r, 0, sizeof *r);
  r->addr = *a;
  bo_ix_put(d, (size_t)(r - d->bo));
  return r;
}

/* Drop a table record that holds nothing any more (persistent ones stay). */
static void bo_maybe_drop(pd_dialer_t *d, bo_rec_t *r) {
  if (!d->bo || r < d->bo || r >= d->bo + d->nbo) return;
  if (r->failures || r->flaps) return;
  size_t pos = (size_t)(r - d->bo), last = d->nbo - 1;
  bo_ix_del(d, pos);
  if (pos != last) {
    bo_ix_del(d, last);
    *r = d->bo[last];
    bo_ix_put(d, pos);
  }
  d->nbo--;
}

static bool is_persistent_rec(const pd_dialer_t *d, const bo_rec_t *r) {
  return !(d->bo && r >= d->bo && r < d->bo + d->nbo);
}

static void bo_fail(pd_dialer_t *d, bo_rec_t *r, int64_t now) {
  bool pers = is_persistent_rec(d, r);
  if (r->failures < UINT32_MAX) r->failures++;
  int64_t delay;
  if (pers) {
    delay = grow(d, d->cfg.backoff_base, r->failures, d->cfg.persistent_backoff_cap);
  } else if (d->cfg.retry_limit && r->failures >= d->cfg.retry_limit) {
    delay = jittered(d, d->cfg.giveup_pause);
  } else {
    delay = grow(d, d->cfg.backoff_base, r->failures, d->cfg.backoff_cap);
  }
  int64_t at = add_sat(now, delay);
  if (at > r->next_at) r->next_at = at;
}

/* --- connections and flights ------------------------------------------------------ */

static conn_t *conn_find(const pd_dialer_t *d, enum pd_conn_dir dir, const pd_netaddr_t *a) {
  for (size_t i = 0; i < d->nconns; i++) {
    if (d->conns[i].dir == dir && pd_netaddr_equal(&d->conns[i].addr, a)) return &d->conns[i];
  }
  return NULL;
}

static flight_t *flight_find(const pd_dialer_t *d, const pd_netaddr_t *a) {
  for (size_t i = 0; i < d->nflights; i++) {
    if (pd_netaddr_equal(&d->flights[i].t.addr, a)) return &d->flights[i];
  }
  return NULL;
}

static bool target_uncond(const pd_dialer_t *d, const pd_dial_target_t *t) {
  return t->has_id && id_in((const uint8_t(*)[PD_NODE_ID_LEN])d->uncond, d->nuncond, t->id);
}

/* Outbound connections and outbound dials in flight that take a slot. */
static uint32_t outbound_counted(const pd_dialer_t *d, bool *feeler_busy, uint32_t *dials,
                                 uint32_t *connected_out) {
  uint32_t n = 0, fl = 0, co = 0;
  bool fb = false;
  for (size_t i = 0; i < d->nconns; i++) {
    const conn_t *c = &d->conns[i];
    if (c->dir == PD_CONN_FEELER) fb = true;
    if (c->dir != PD_CONN_OUTBOUND) continue;
    co++;
    if (!c->uncond) n++;
  }
  for (size_t i = 0; i < d->nflights; i++) {
    const flight_t *f = &d->flights[i];
    if (f->reason == PD_DIAL_REASON_FEELER) {
      fb = true;
      continue;
    }
    fl++;
    if (!target_uncond(d, &f->t)) n++;
  }
  if (feeler_busy) *feeler_busy = fb;
  if (dials) *dials = fl;
  if (connected_out) *connected_out = co;
  return n;
}

/* May t be dialled now? check_group: not in the group of an outbound
 * connection or outbound dial (outbound spread over distinct groups). */
static bool dialable(const pd_dialer_t *d, const pd_dial_target_t *t, int64_t now, bool check_group) {
  if (t->addr.port == 0 || !pd_netaddr_is_valid(&t->addr)) return false;
  if (is_self(d, t)) return false;
  uint8_t g[PD_GROUP_MAX];
  uint8_t glen = check_group ? group_of(d, &t->addr, g) : 0;
  for (size_t i = 0; i < d->nflights; i++) {
    const flight_t *f = &d->flights[i];
    if (pd_netaddr_equal(&f->t.addr, &t->addr)) return false;
    if (t->has_id && f->t.has_id && id_eq(f->t.id, t->id)) return false;
    if (check_group && f->reason != PD_DIAL_REASON_FEELER && group_eq(g, glen, f->group, f->glen))
      return false;
  }
  for (size_t i = 0; i < d->nconns; i++) {
    const conn_t *c = &d->conns[i];
    if (t->has_id && c->has_id && id_eq(c->id, t->id)) return false;
    if (c->dir == PD_CONN_INBOUND) continue;
    if (pd_netaddr_equal(&c->addr, &t->addr)) return false;
    if (check_group && c->dir == PD_CONN_OUTBOUND && group_eq(g, glen, c->group, c->glen))
      return false;
  }
  const bo_rec_t *r = bo_find_const(d, &t->addr);
  if (r && r->next_at > now) return false;
  return true;
}

static void push_action(pd_dial_action_t *out, size_t *n, enum pd_dial_action_kind kind,
                        enum pd_dial_reason reason, const pd_dial_target_t *t, size_t index) {
  pd_dial_action_t *a = &out[(*n)++];
  memset(a, 0, sizeof *a);
  a->kind = kind;
  a->reason = reason;
  if (t) a->target = *t;
  a->index = index;
}

/* Record a flight and emit its action. Caller checked room and slots. */
static void start_dial(pd_dialer_t *d, const pd_dial_target_t *t, enum pd_dial_reason reason,
                       int64_t now, pd_dial_action_t *out, size_t *n) {
  if (d->nflights >= d->flights_cap) return; /* cannot happen: slots were checked */
  flight_t *f = &d->flights[d->nflights++];
  memset(f, 0, sizeof *f);
  f->t = *t;
  f->reason = reason;
  f->started = now;
  f->glen = group_of(d, &t->addr, f->group);
  d->c.dials_started[reason]++;
  push_action(out, n, reason == PD_DIAL_REASON_FEELER ? PD_DIAL_ACT_FEELER : PD_DIAL_ACT_DIAL,
              reason, t, 0);
}

/* --- config --------------------------------------------------------------------------- */

void pd_dialer_config_default(pd_dialer_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->max_outbound = 8;
  cfg->max_inbound = 40;
  cfg->max_inbound_per_ip = 3;
  cfg->dial_concurrency = 3;
  cfg->min_outbound = 4;
  cfg->backoff_base = 1;
  cfg->backoff_factor = 2;
  cfg->backoff_cap = 600;
  cfg->backoff_jitter = 0.2;
  cfg->retry_limit = 10;
  cfg->giveup_pause = 3600;
  cfg->persistent_backoff_cap = 60;
  cfg->bootstrap_interval = 10;
  cfg->bootstrap_retry = 1;
  cfg->bootstrap_interval_cap = 300;
  cfg->feeler_interval = 120;
  cfg->inflight_timeout = 60;
  cfg->stable_secs = 60;
  cfg->backoff_max = 4096;
}

static const char *check_config(const pd_dialer_config_t *c) {
  if (c->dial_concurrency == 0) return "dial_concurrency must be at least 1";
  if (c->dial_concurrency > 4096) return "dial_concurrency above 4096";
  if (c->backoff_factor == 0) return "backoff_factor must be at least 1";
  if (!(c->backoff_jitter >= 0.0 && c->backoff_jitter <= 0.9)) return "backoff_jitter outside [0, 0.9]";
  if (c->backoff_base < 0 || c->backoff_cap < 0 || c->giveup_pause < 0 ||
      c->persistent_backoff_cap < 0 || c->bootstrap_interval < 0 || c->bootstrap_interval_cap < 0 ||
      c->bootstrap_retry < 0 || c->feeler_interval < 0 || c->inflight_timeout < 0 ||
      c->stable_secs < 0)
    return "negative time";
  if (c->backoff_cap < c->backoff_base) return "backoff_cap below backoff_base";
  if (c->npersistent > PD_DIALER_MAX_LIST || c->nseeds > PD_DIALER_MAX_LIST ||
      c->nunconditional > PD_DIALER_MAX_LIST || c->nprivate > PD_DIALER_MAX_LIST)
    return "list too long";
  if (c->nself_addrs > PD_DIALER_MAX_SELF) return "too many self addresses";
  if ((c->npersistent && !c->persistent) || (c->nseeds && !c->seeds) ||
      (c->nunconditional && !c->unconditional_ids) || (c->nprivate && !c->private_ids) ||
      (c->nself_addrs && !c->self_addrs))
    return "list length without list";
  if (c->backoff_max > (size_t)1 << 24) return "backoff_max above 16777216";
  return NULL;
}

static void *dup_mem(const void *src, size_t n, size_t size, int *rc) {
  if (n == 0) return NULL;
  void *p = calloc(n, size);
  if (!p) {
    *rc = PD_ENOMEM;
    return NULL;
  }
  memcpy(p, src, n * size);
  return p;
}

int pd_dialer_create(const pd_dialer_config_t *cfg, pd_rng_t *rng, pd_dialer_t **out,
                     const char **why) {
  const char *w = NULL;
  if (why) *why = NULL;
  if (!out) return PD_EINVAL;
  *out = NULL;
  if (!cfg || !rng) w = "missing config or rng";
  if (!w) w = check_config(cfg);
  if (w) {
    if (why) *why = w;
    return PD_EINVAL;
  }
  pd_dialer_t *d = calloc(1, sizeof *d);
  if (!d) return PD_ENOMEM;
  int rc = 0;
  d->cfg = *cfg;
  d->cfg.persistent = NULL;
  d->cfg.seeds = NULL;
  d->cfg.unconditional_ids = NULL;
  d->cfg.private_ids = NULL;
  d->cfg.self_addrs = NULL;
  d->rng = rng;
  d->uncond = dup_mem(cfg->unconditional_ids, cfg->nunconditional, PD_NODE_ID_LEN, &rc);
  d->nuncond = cfg->nunconditional;
  d->priv = dup_mem(cfg->private_ids, cfg->nprivate, PD_NODE_ID_LEN, &rc);
  d->npriv = cfg->nprivate;
  if (cfg->npersistent) {
    d->persist = calloc(cfg->npersistent, sizeof *d->persist);
    if (!d->persist) rc = PD_ENOMEM;
  }
  if (cfg->nseeds) {
    d->seeds = calloc(cfg->nseeds, sizeof *d->seeds);
    if (!d->seeds) rc = PD_ENOMEM;
  }
  d->flights_cap = cfg->dial_concurrency + 1;
  d->flights = calloc(d->flights_cap, sizeof *d->flights);
  if (!d->flights) rc = PD_ENOMEM;
  if (rc) {
    pd_dialer_destroy(d);
    return rc;
  }
  for (size_t i = 0; i < cfg->npersistent; i++) {
    persist_t *p = &d->persist[i];
    p->ep = cfg->persistent[i];
    if (p->ep.is_ip) {
      p->resolved = true;
      p->addr = p->ep.addr;
      if (p->addr.port == 0) p->addr.port = p->ep.port;
    }
    p->bo.addr = p->addr;
  }
  d->npersist = cfg->npersistent;
  for (size_t i = 0; i < cfg->nseeds; i++) d->seeds[i].ep = cfg->seeds[i];
  d->nseeds = cfg->nseeds;
  for (size_t i = 0; i < cfg->nself_addrs; i++) d->self[i] = cfg->self_addrs[i];
  d->nself = d->nself_cfg = cfg->nself_addrs;
  d->below_since = -1;
  d->next_feeler_at = -1;
  *out = d;
  return 0;
}

void pd_dialer_destroy(pd_dialer_t *d) {
  if (!d) return;
  free(d->uncond);
  free(d->priv);
  free(d->persist);
  free(d->seeds);
  free(d->flights);
  free(d->bo);
  free(d->bo_ix);
  free(d->conns);
  free(d);
}

/* --- results ---------------------------------------------------------------------------- */

static void apply_outcome(pd_dialer_t *d, const pd_netaddr_t *addr, enum pd_dial_outcome o,
                          int64_t now) {
  d->c.dials[o]++;
  switch (o) {
  case PD_DIAL_OK: {
    bo_rec_t *r = bo_find(d, addr);
    if (r) {
      r->failures = 0;
      r->next_at = 0;
      bo_maybe_drop(d, r);
    }
    break;
  }
  case PD_DIAL_SELF:
    learn_self(d, addr);
    break;
  case PD_DIAL_DUPLICATE:
    break;
  default: {
    bo_rec_t *r = bo_get(d, addr);
    if (!r) break;
    bo_fail(d, r, now);
    persist_t *p = persist_by_addr(d, addr);
    /* A persistent host name that keeps failing is looked up again. */
    if (p && !p->ep.is_ip && d->cfg.retry_limit && r->failures % d->cfg.retry_limit == 0) {
      p->resolved = false;
      p->resolve_at = now;
    }
    break;
  }
  }
}

int pd_dialer_on_dial_result(pd_dialer_t *d, const pd_netaddr_t *addr, enum pd_dial_outcome outcome,
                             int64_t now) {
  if (!d || !addr || (unsigned)outcome >= PD_DIAL_OUTCOME_COUNT) return PD_EINVAL;
  flight_t *f = flight_find(d, addr);
  /* A seed answered: the round's other queued seeds are not dialled (those
   * already in flight finish), as Bitcoin Core asks three DNS seeds at once
   * and the rest only if still short: a bootstrap costs the seeds one to
   * dial_concurrency handshakes, not one per configured seed. Still short
   * later, the next round asks them again. */
  if (f && f->reason == PD_DIAL_REASON_SEED && outcome == PD_DIAL_OK) d->nseedq = 0;
  if (f) *f = d->flights[--d->nflights];
  apply_outcome(d, addr, outcome, now);
  return f ? 0 : PD_ENOENT;
}

/* --- resolution --------------------------------------------------------------------------- */

static void seedq_push(pd_dialer_t *d, const pd_dial_target_t *t) {
  for (size_t i = 0; i < d->nseedq; i++) {
    if (pd_netaddr_equal(&d->seedq[i].addr, &t->addr)) return;
  }
  if (d->nseedq < PD_DIALER_SEED_QUEUE) d->seedq[d->nseedq++] = *t;
}

static void seed_target(const pd_endpoint_t *ep, const pd_netaddr_t *a, pd_dial_target_t *t) {
  memset(t, 0, sizeof *t);
  t->addr = *a;
  if (t->addr.port == 0) t->addr.port = ep->port;
  t->has_id = ep->has_id;
  if (ep->has_id) memcpy(t->id, ep->id, PD_NODE_ID_LEN);
}

int pd_dialer_on_resolved(pd_dialer_t *d, enum pd_dial_reason reason, size_t index,
                          const pd_netaddr_t *addrs, size_t n, int64_t now) {
  if (!d || (n && !addrs)) return PD_EINVAL;
  if (reason == PD_DIAL_REASON_SEED && index < d->nseeds) {
    for (size_t i = 0; i < n; i++) {
      pd_dial_target_t t;
      seed_target(&d->seeds[index].ep, &addrs[i], &t);
      seedq_push(d, &t);
    }
    return 0;
  }
  if (reason == PD_DIAL_REASON_PERSISTENT && index < d->npersist) {
    persist_t *p = &d->persist[index];
    if (n == 0) {
      if (p->resolve_failures < UINT32_MAX) p->resolve_failures++;
      p->resolve_at = add_sat(now, grow(d, d->cfg.backoff_base, p->resolve_failures,
                                        d->cfg.persistent_backoff_cap));
      return 0;
    }
    pd_netaddr_t a = addrs[0];
    if (a.port == 0) a.port = p->ep.port;
    if (!p->resolved || !pd_netaddr_equal(&a, &p->addr)) p->bo.addr = a;
    p->addr = a;
    p->resolved = true;
    p->resolve_failures = 0;
    return 0;
  }
  return PD_ERANGE;
}

const pd_endpoint_t *pd_dialer_endpoint(const pd_dialer_t *d, enum pd_dial_reason reason,
                                        size_t index) {
  if (!d) return NULL;
  if (reason == PD_DIAL_REASON_SEED && index < d->nseeds) return &d->seeds[index].ep;
  if (reason == PD_DIAL_REASON_PERSISTENT && index < d->npersist) return &d->persist[index].ep;
  return NULL;
}

/* --- tick --------------------------------------------------------------------------------- */

static void bootstrap(pd_dialer_t *d, int64_t now, pd_dial_action_t *out, size_t *n) {
  push_action(out, n, PD_DIAL_ACT_BOOTSTRAP, PD_DIAL_REASON_SEED, NULL, 0);
  d->c.bootstraps++;
  d->next_bootstrap_at =
      add_sat(now, grow(d, d->cfg.bootstrap_retry, d->bootstrap_rounds + 1,
                        d->cfg.bootstrap_interval_cap));
  if (d->bootstrap_rounds < 63) d->bootstrap_rounds++;
  /* Seeds in a random order each round (from a random start, then the
   * queued ones shuffled), as Bitcoin Core shuffles its DNS seeds and
   * CometBFT dials seeds in a random permutation: nodes that start together
   * spread over the seeds instead of all taking the first ones' handshake
   * slots, and with more IP seeds than the queue holds every seed can be
   * among those dialled. */
  size_t first = d->nseedq;
  size_t start = d->nseeds > 1 ? (size_t)pd_rng_range(d->rng, d->nseeds) : 0;
  for (size_t k = 0; k < d->nseeds; k++) {
    seed_t *s = &d->seeds[(start + k) % d->nseeds];
    if (s->ep.is_ip) {
      pd_dial_target_t t;
      seed_target(&s->ep, &s->ep.addr, &t);
      seedq_push(d, &t);
    } else {
      s->want_resolve = true;
    }
  }
  for (size_t i = d->nseedq; i > first + 1; i--) {
    size_t j = first + (size_t)pd_rng_range(d->rng, i - first);
    pd_dial_target_t tmp = d->seedq[i - 1];
    d->seedq[i - 1] = d->seedq[j];
    d->seedq[j] = tmp;
  }
}

/* Dial from a FIFO queue (anchors, seeds) while slots allow; entries that
 * cannot be dialled are dropped. */
static void drain_queue(pd_dialer_t *d, pd_dial_target_t *q, size_t *qn, enum pd_dial_reason reason,
                        int64_t now, pd_dial_action_t *out, size_t *n, size_t cap) {
  size_t taken = 0;
  while (taken < *qn && *n < cap) {
    uint32_t dials;
    uint32_t used = outbound_counted(d, NULL, &dials, NULL);
    if (dials >= d->cfg.dial_concurrency || used >= d->cfg.max_outbound) break;
    const pd_dial_target_t *t = &q[taken++];
    if (dialable(d, t, now, false)) {
      start_dial(d, t, reason, now, out, n);
    } else {
      d->c.candidates_skipped++;
    }
  }
  memmove(q, q + taken, (*qn - taken) * sizeof *q);
  *qn -= taken;
}

size_t pd_dialer_tick(pd_dialer_t *d, int64_t now, pd_dialer_candidate_fn candidate_fn, void *ud,
                      pd_dial_action_t *out, size_t cap) {
  if (!d || !out || cap == 0) return 0;
  size_t n = 0;

  /* 1. Dials the driver never reported are timeouts. */
  for (size_t i = 0; i < d->nflights;) {
    flight_t *f = &d->flights[i];
    if (d->cfg.inflight_timeout > 0 && now - f->started >= d->cfg.inflight_timeout) {
      pd_netaddr_t a = f->t.addr;
      *f = d->flights[--d->nflights];
      apply_outcome(d, &a, PD_DIAL_TIMEOUT, now);
    } else {
      i++;
    }
  }

  /* Dialling off (max_outbound 0): no connection of our own, ever — no
   * persistent peer, anchor, seed, pick or feeler, and no name to resolve. */
  if (d->cfg.max_outbound == 0) return n;

  /* 2. Persistent peers: resolve names, then dial whoever is down. */
  for (size_t i = 0; i < d->npersist && n < cap; i++) {
    persist_t *p = &d->persist[i];
    if (p->resolved || now < p->resolve_at) continue;
    p->resolve_at = add_sat(now, d->cfg.inflight_timeout); /* until on_resolved */
    push_action(out, &n, PD_DIAL_ACT_RESOLVE, PD_DIAL_REASON_PERSISTENT, NULL, i);
  }
  for (size_t i = 0; i < d->npersist && n < cap; i++) {
    persist_t *p = &d->persist[i];
    uint32_t dials;
    outbound_counted(d, NULL, &dials, NULL);
    if (dials >= d->cfg.dial_concurrency) break;
    if (!p->resolved || persist_connected(d, p)) continue;
    pd_dial_target_t t;
    seed_target(&p->ep, &p->addr, &t);
    if (dialable(d, &t, now, false)) start_dial(d, &t, PD_DIAL_REASON_PERSISTENT, now, out, &n);
  }

  /* 3. Anchors, then seeds queued by an earlier bootstrap. */
  drain_queue(d, d->anchors, &d->nanchors, PD_DIAL_REASON_ANCHOR, now, out, &n, cap);
  drain_queue(d, d->seedq, &d->nseedq, PD_DIAL_REASON_SEED, now, out, &n, cap);

  /* 4. The selection's picks, over distinct groups. */
  if (candidate_fn && n < cap) {
    uint32_t dials;
    uint32_t used = outbound_counted(d, NULL, &dials, NULL);
    size_t want = 0;
    if (dials < d->cfg.dial_concurrency && used < d->cfg.max_outbound) {
      want = d->cfg.dial_concurrency - dials;
      if (d->cfg.max_outbound - used < want) want = d->cfg.max_outbound - used;
      if (cap - n < want) want = cap - n;
    }
    if (want) {
      pd_dial_target_t cand[PD_DIALER_MAX_CANDIDATES];
      size_t ask = want * 3 + 2;
      if (ask > PD_DIALER_MAX_CANDIDATES) ask = PD_DIALER_MAX_CANDIDATES;
      size_t got = candidate_fn(ud, ask, now, 0, cand);
      if (got > ask) got = ask;
      size_t started = 0;
      for (size_t i = 0; i < got && started < want; i++) {
        if (dialable(d, &cand[i], now, true)) {
          start_dial(d, &cand[i], PD_DIAL_REASON_SELECT, now, out, &n);
          started++;
        } else {
          d->c.candidates_skipped++;
        }
      }
    }
  }

  /* 5. Bootstrap when below the minimum: at once if nothing is being tried,
   *    else once the shortfall has lasted bootstrap_interval; rate limited
   *    by a backoff (bootstrap_retry doubling to bootstrap_interval_cap,
   *    jittered) that resets when the minimum is reached. A node that has
   *    nothing to dial -- its seeds refused it (their handshake slots full)
   *    or answered before they knew anyone -- asks again a second later,
   *    not after 10 s; each seed also keeps its own per-address backoff. */
  uint32_t dials, connected_out;
  bool feeler_busy;
  outbound_counted(d, &feeler_busy, &dials, &connected_out);
  if (connected_out >= d->cfg.min_outbound) {
    d->below_since = -1;
    d->bootstrap_rounds = 0;
  } else {
    if (d->below_since < 0) d->below_since = now;
    bool stuck = dials == 0 || now - d->below_since >= d->cfg.bootstrap_interval;
    if (stuck && now >= d->next_bootstrap_at && n < cap) {
      bootstrap(d, now, out, &n);
      drain_queue(d, d->seedq, &d->nseedq, PD_DIAL_REASON_SEED, now, out, &n, cap);
    }
  }
  for (size_t i = 0; i < d->nseeds && n < cap; i++) {
    if (!d->seeds[i].want_resolve) continue;
    d->seeds[i].want_resolve = false;
    push_action(out, &n, PD_DIAL_ACT_RESOLVE, PD_DIAL_REASON_SEED, NULL, i);
  }

  /* 6. One feeler at a time, every ~feeler_interval, once the node has its
   *    minimum of outbound peers (before that every dial is a test). */
  if (d->cfg.feeler_interval > 0) {
    if (d->next_feeler_at < 0) d->next_feeler_at = add_sat(now, jittered(d, d->cfg.feeler_interval));
    if (now >= d->next_feeler_at && !feeler_busy && connected_out >= d->cfg.min_outbound &&
        candidate_fn && n < cap) {
      d->next_feeler_at = add_sat(now, jittered(d, d->cfg.feeler_interval));
      pd_dial_target_t cand[4];
      size_t got = candidate_fn(ud, 4, now, PD_DIALER_WANT_FEELER, cand);
      if (got > 4) got = 4;
      for (size_t i = 0; i < got; i++) {
        if (dialable(d, &cand[i], now, false)) {
          start_dial(d, &cand[i], PD_DIAL_REASON_FEELER, now, out, &n);
          break;
        }
        d->c.candidates_skipped++;
      }
    }
  }
  return n;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int64_t pd_dialer_next_deadline(const pd_dialer_t *d, int64_t now) {
  if (!d) return INT64_MAX;
  int64_t t = INT64_MAX;
  /* 1. dial timeouts */
  if (d->cfg.inflight_timeout > 0)
    for (size_t i = 0; i < d->nflights; i++)
      t = min64(t, add_sat(d->flights[i].started, d->cfg.inflight_timeout));
  if (d->cfg.max_outbound == 0) return t < now ? now : t; /* dialling off */
  /* 2. persistent peers: names to resolve; one down is dialled when a slot
   *    and its backoff allow: tick at the normal cadence while so. */
  for (size_t i = 0; i < d->npersist; i++) {
    const persist_t *p = &d->persist[i];
    if (!p->resolved) t = min64(t, p->resolve_at);
    else if (!persist_connected(d, p)) return now;
  }
  /* 3. queued anchors and seeds; seed names to resolve */
  if (d->nanchors || d->nseedq) return now;
  for (size_t i = 0; i < d->nseeds; i++)
    if (d->seeds[i].want_resolve) return now;
  uint32_t dials, connected_out;
  bool feeler_busy;
  uint32_t used = outbound_counted(d, &feeler_busy, &dials, &connected_out);
  /* 4. free outbound and dial slots: the selection is asked every tick */
  if (dials < d->cfg.dial_concurrency && used < d->cfg.max_outbound) return now;
  /* 5. bootstrap bookkeeping and rounds */
  if (connected_out >= d->cfg.min_outbound) {
    if (d->below_since >= 0 || d->bootstrap_rounds != 0) return now;
  } else {
    if (d->below_since < 0) return now;
    int64_t stuck_at = dials == 0 ? now : add_sat(d->below_since, d->cfg.bootstrap_interval);
    int64_t at = stuck_at > d->next_bootstrap_at ? stuck_at : d->next_bootstrap_at;
    t = min64(t, at);
  }
  /* 6. feelers */
  if (d->cfg.feeler_interval > 0) {
    if (d->next_feeler_at < 0) return now;
    if (!feeler_busy && connected_out >= d->cfg.min_outbound) t = min64(t, d->next_feeler_at);
  }
  return t < now ? now : t;
}

/* --- connections ---------------------------------------------------------------------------- */

enum pd_inbound_verdict pd_dialer_accept_inbound(pd_dialer_t *d, const pd_netaddr_t *addr,
                                                 const uint8_t *id, int64_t now) {
  (void)now;
  enum pd_inbound_verdict v = PD_INBOUND_ALLOW;
  if (!d || !addr) return PD_INBOUND_FULL;
  if (id && d->cfg.has_self_id && id_eq(id, d->cfg.self_id)) {
    v = PD_INBOUND_SELF;
  } else if (id && pd_dialer_is_connected_id(d, id)) {
    v = PD_INBOUND_DUPLICATE;
  } else if (id && pd_dialer_is_unconditional(d, id)) {
    v = PD_INBOUND_ALLOW;
  } else {
    uint32_t total = 0, same_ip = 0;
    for (size_t i = 0; i < d->nconns; i++) {
      const conn_t *c = &d->conns[i];
      if (c->dir != PD_CONN_INBOUND || c->uncond) continue;
      total++;
      if (d->cfg.max_inbound_per_ip && pd_netaddr_same_host(&c->addr, addr, d->cfg.ipv6_prefix))
        same_ip++;
    }
    if (total >= d->cfg.max_inbound) {
      v = PD_INBOUND_FULL;
    } else if (d->cfg.max_inbound_per_ip && same_ip >= d->cfg.max_inbound_per_ip) {
      v = PD_INBOUND_PER_IP;
    }
  }
  d->c.inbound[v]++;
  return v;
}

int pd_dialer_on_connected(pd_dialer_t *d, enum pd_conn_dir dir, const pd_netaddr_t *addr,
                           const uint8_t *id, int64_t now) {
  if (!d || !addr || (unsigned)dir >= PD_CONN_DIR_COUNT) return PD_EINVAL;
  if (conn_find(d, dir, addr)) return PD_EEXIST;
  if (dir != PD_CONN_INBOUND && flight_find(d, addr)) {
    pd_dialer_on_dial_result(d, addr, PD_DIAL_OK, now);
  }
  if (d->nconns == d->conns_cap) {
    size_t nc = d->conns_cap ? d->conns_cap * 2 : 16;
    conn_t *p = realloc(d->conns, nc * sizeof *p);
    if (!p) return PD_ENOMEM;
    d->conns = p;
    d->conns_cap = nc;
  }
  conn_t *c = &d->conns[d->nconns++];
  memset(c, 0, sizeof *c);
  c->addr = *addr;
  c->dir = dir;
  if (id) {
    c->has_id = true;
    memcpy(c->id, id, PD_NODE_ID_LEN);
    c->uncond = pd_dialer_is_unconditional(d, id);
  }
  c->glen = group_of(d, addr, c->group);
  c->since = now;
  d->c.connections_opened[dir]++;
  return 0;
}

int pd_dialer_on_disconnected(pd_dialer_t *d, enum pd_conn_dir dir, const pd_netaddr_t *addr,
                              int64_t now) {
  if (!d || !addr || (unsigned)dir >= PD_CONN_DIR_COUNT) return PD_EINVAL;
  conn_t *c = conn_find(d, dir, addr);
  if (!c) return PD_ENOENT;
  int64_t lived = now - c->since;
  size_t at = (size_t)(c - d->conns);
  memmove(c, c + 1, (d->nconns - at - 1) * sizeof *c);
  d->nconns--;
  d->c.connections_closed[dir]++;
  if (dir != PD_CONN_OUTBOUND) return 0;
  bool pers = persist_by_addr(d, addr) != NULL;
  if (lived < d->cfg.stable_secs) {
    bo_rec_t *r = bo_get(d, addr);
    if (r) {
      if (r->flaps < UINT32_MAX) r->flaps++;
      int64_t at_ = add_sat(now, grow(d, d->cfg.backoff_base, r->flaps,
                                      pers ? d->cfg.persistent_backoff_cap : d->cfg.backoff_cap));
      if (at_ > r->next_at) r->next_at = at_;
    }
  } else {
    bo_rec_t *r = bo_find(d, addr);
    if (r) {
      r->flaps = 0;
      r->next_at = pers ? add_sat(now, jittered(d, d->cfg.backoff_base)) : 0;
      bo_maybe_drop(d, r);
    }
  }
  return 0;
}

/* --- anchors ------------------------------------------------------------------------------- */

size_t pd_dialer_anchors(const pd_dialer_t *d, pd_dial_target_t *out, size_t cap) {
  if (!d) return 0;
  size_t k = 0;
  for (size_t i = 0; i < d->nconns; i++) {
    const conn_t *c = &d->conns[i];
    if (c->dir != PD_CONN_OUTBOUND || conn_is_persistent(d, c)) continue;
    if (out && k < cap) {
      memset(&out[k], 0, sizeof out[k]);
      out[k].addr = c->addr;
      out[k].has_id = c->has_id;
      memcpy(out[k].id, c->id, PD_NODE_ID_LEN);
    }
    k++;
  }
  return k;
}

void pd_dialer_set_anchors(pd_dialer_t *d, const pd_dial_target_t *list, size_t n) {
  if (!d) return;
  d->nanchors = 0;
  for (size_t i = 0; list && i < n && d->nanchors < PD_DIALER_MAX_ANCHORS; i++) {
    d->anchors[d->nanchors++] = list[i];
  }
}

/* --- predicates and counters ------------------------------------------------------------------ */

bool pd_dialer_is_private(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]) {
  return d && id_in((const uint8_t(*)[PD_NODE_ID_LEN])d->priv, d->npriv, id);
}

bool pd_dialer_is_unconditional(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]) {
  return d && id_in((const uint8_t(*)[PD_NODE_ID_LEN])d->uncond, d->nuncond, id);
}

bool pd_dialer_is_connected_id(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]) {
  if (!d || !id) return false;
  for (size_t i = 0; i < d->nconns; i++) {
    if (d->conns[i].has_id && id_eq(d->conns[i].id, id)) return true;
  }
  return false;
}

bool pd_dialer_in_flight(const pd_dialer_t *d, const pd_netaddr_t *addr) {
  return d && addr && flight_find(d, addr) != NULL;
}

int64_t pd_dialer_backoff_until(const pd_dialer_t *d, const pd_netaddr_t *addr) {
  if (!d || !addr) return 0;
  const bo_rec_t *r = bo_find_const(d, addr);
  return r ? r->next_at : 0;
}

uint32_t pd_dialer_failures(const pd_dialer_t *d, const pd_netaddr_t *addr) {
  if (!d || !addr) return 0;
  const bo_rec_t *r = bo_find_const(d, addr);
  return r ? r->failures : 0;
}

void pd_dialer_explain(const pd_dialer_t *d, const pd_dial_target_t *t, int64_t now,
                       pd_dialer_explain_t *out) {
  memset(out, 0, sizeof *out);
  if (!d || !t) return;
  out->self = is_self(d, t);
  uint8_t g[PD_GROUP_MAX];
  uint8_t glen = group_of(d, &t->addr, g);
  for (size_t i = 0; i < d->nflights; i++) {
    const flight_t *f = &d->flights[i];
    if (pd_netaddr_equal(&f->t.addr, &t->addr) || (t->has_id && f->t.has_id && id_eq(f->t.id, t->id)))
      out->in_flight = true;
    else if (f->reason != PD_DIAL_REASON_FEELER && group_eq(g, glen, f->group, f->glen))
      out->group_taken = true;
  }
  for (size_t i = 0; i < d->nconns; i++) {
    const conn_t *c = &d->conns[i];
    bool same = (t->has_id && c->has_id && id_eq(c->id, t->id)) ||
                (c->dir != PD_CONN_INBOUND && pd_netaddr_equal(&c->addr, &t->addr)) ||
                (c->dir == PD_CONN_INBOUND && pd_netaddr_same_ip(&c->addr, &t->addr) &&
                 c->addr.port == t->addr.port);
    if (same) {
      out->connected = true;
      out->dir = c->dir;
    } else if (c->dir == PD_CONN_OUTBOUND && group_eq(g, glen, c->group, c->glen)) {
      out->group_taken = true;
    }
  }
  const bo_rec_t *r = bo_find_const(d, &t->addr);
  if (r) {
    out->backoff_until = r->next_at;
    out->failures = r->failures;
  }
  uint32_t dials = 0;
  out->outbound = outbound_counted(d, NULL, &dials, NULL);
  out->max_outbound = d->cfg.max_outbound;
  out->dialling_off = d->cfg.max_outbound == 0;
  out->slots_full = dials >= d->cfg.dial_concurrency || out->outbound >= d->cfg.max_outbound;
  (void)now;
}

void pd_dialer_counters(const pd_dialer_t *d, pd_dialer_counters_t *out) {
  if (!d || !out) return;
  *out = d->c;
  memset(out->connected, 0, sizeof out->connected);
  for (size_t i = 0; i < d->nconns; i++) out->connected[d->conns[i].dir]++;
  out->in_flight = (uint32_t)d->nflights;
  out->backoff_entries = (uint32_t)d->nbo;
}

const char *pd_dialer_outcome_name(enum pd_dial_outcome o) {
  static const char *const names[PD_DIAL_OUTCOME_COUNT] = {
      "ok", "refused", "timeout", "unreachable", "handshake_failed",
      "id_mismatch", "self", "duplicate", "error"};
  return (unsigned)o < PD_DIAL_OUTCOME_COUNT ? names[o] : "unknown";
}

const char *pd_dialer_dir_name(enum pd_conn_dir dir) {
  static const char *const names[PD_CONN_DIR_COUNT] = {"inbound", "outbound", "feeler"};
  return (unsigned)dir < PD_CONN_DIR_COUNT ? names[dir] : "unknown";
}

const char *pd_dialer_verdict_name(enum pd_inbound_verdict v) {
  static const char *const names[PD_INBOUND_VERDICT_COUNT] = {
      "allow", "inbound_full", "per_ip_limit", "self", "duplicate"};
  return (unsigned)v < PD_INBOUND_VERDICT_COUNT ? names[v] : "unknown";
}

const char *pd_dialer_reason_name(enum pd_dial_reason r) {
  static const char *const names[PD_DIAL_REASON_COUNT] = {"persistent", "anchor", "seed", "select",
                                                          "feeler"};
  return (unsigned)r < PD_DIAL_REASON_COUNT ? names[r] : "unknown";
}
