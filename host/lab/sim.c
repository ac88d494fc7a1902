/* sim — the scenario lab driver. See sim.h and docs/scenarios.md. */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <sodium.h>

#include "addrbook.h"
#include "bookstore.h"
#include "dialer.h"
#include "err.h"
#include "fsio.h"
#include "identity.h"
#include "netaddr.h"
#include "netmgr.h"
#include "node.h"
#include "rng.h"
#include "wire.h"

#define NO_IDX UINT32_MAX
#define SIM_PORT 26656
#define SIM_MAX_POLICY_FILE (1024 * 1024)
#define SIM_HOST_MT "peerd.sim.host"
#define SIM_MAX_SEEDS 64
#define SIM_ERR_MAX 1024

/* ======================================================================
 * Event queue: binary min-heap on (t, seq).
 * ====================================================================== */

void pd_sim_queue_init(pd_sim_queue_t *q) { memset(q, 0, sizeof *q); }

void pd_sim_queue_free(pd_sim_queue_t *q) {
  free(q->v);
  memset(q, 0, sizeof *q);
}

static bool ev_less(const pd_sim_event_t *a, const pd_sim_event_t *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

int pd_sim_queue_push(pd_sim_queue_t *q, const pd_sim_event_t *ev) {
  if (q->n == q->cap) {
    size_t nc = q->cap ? q->cap * 2 : 1024;
    pd_sim_event_t *nv = realloc(q->v, nc * sizeof *nv);
    if (!nv) return PD_ENOMEM;
    q->v = nv;
    q->cap = nc;
  }
  pd_sim_event_t e = *ev;
  e.seq = q->next_seq++;
  size_t i = q->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!ev_less(&e, &q->v[parent])) break;
    q->v[i] = q->v[parent];
    i = parent;
  }
  q->v[i] = e;
  return 0;
}

bool pd_sim_queue_pop(pd_sim_queue_t *q, pd_sim_event_t *out) {
  if (q->n == 0) return false;
  *out = q->v[0];
  pd_sim_event_t last = q->v[--q->n];
  size_t i = 0, n = q->n;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= n) break;
    size_t c = l;
    if (l + 1 < n && ev_less(&q->v[l + 1], &q->v[l])) c = l + 1;
    if (!ev_less(&q->v[c], &last)) break;
    q->v[i] = q->v[c];
    i = c;
  }
  if (n > 0) q->v[i] = last;
  return true;
}

int64_t pd_sim_queue_peek_time(const pd_sim_queue_t *q) { return q->n ? q->v[0].t : INT64_MAX; }

/* ======================================================================
 * The simulated world.
 * ====================================================================== */

enum {
  EV_TIMER = 1,  /* a: host, b: gen */
  EV_CONNECT,    /* a: link: the SYN reaches the target */
  EV_CONNECTED,  /* a: link: the dialler learns it is up */
  EV_DIAL_FAIL,  /* a: link, b: outcome */
  EV_BYTES,      /* a: link, b: side, x: len, p: bytes */
  EV_FIN,        /* a: link, b: side that learns of the close */
  EV_RESOLVED,   /* a: host, b: gen, c: name index (NO_IDX: none), x: token */
  EV_LUA,        /* a: registry ref, x: period ms (0 = once) */
  EV_WATCH,      /* a: watcher index */
  EV_FLOOD,      /* a: attacker host, b: gen: send ADDR floods on its connections */
  EV_KINDS
};
static const char *const ev_kind_name[EV_KINDS] = {
    "-", "timer", "connect", "connected", "dial_fail", "bytes", "fin", "resolved", "lua", "watch", "flood"};

enum { LAT_FIXED = 0, LAT_UNIFORM, LAT_NORMAL };

typedef struct sim_link {
  uint32_t h[2];       /* 0: dialler, 1: acceptor */
  uint64_t cid[2];
  bool open[2];        /* the side's conn id is alive on its host */
  bool up;             /* accepted (TCP established) */
  uint32_t pending;    /* queued events naming this link */
  int64_t last_arr[2]; /* latest arrival scheduled at each side */
  int64_t lat;         /* one-way latency, ms */
  uint32_t next_free;
} sim_link_t;

typedef struct sim_host {
  uint32_t gen;
  bool up, seed_mode;
  int part;
  uint32_t min_out, max_out, max_in;
  double bw; /* bytes/s, 0 = unlimited */
  pd_book_geometry_t geom; /* its address book's tables (spec `book`) */
  int64_t ping_ms;         /* keep-alive PING interval (spec `ping_interval`), 0 = default */
  double tx_free_at;
  char *policy_dir; /* resolved path, or NULL: built-in defaults */
  pd_netaddr_t listen;
  pd_rng_t brng, mrng;
  uint8_t key[PD_BOOK_KEY_LEN];
  pd_identity_t ident;
  pd_node_t *node;
  pd_netmgr_t *m;
  char *saved; /* the book at the last stop (bookstore JSON) */
  size_t saved_len;
  pd_dial_target_t anchors[PD_DIALER_MAX_ANCHORS];
  size_t nanchors;
  pd_endpoint_t *seeds;
  size_t nseeds;
  int64_t timer_at;
  int64_t last_tick_s;
  uint32_t *links;
  uint32_t nlinks, linkcap;
  uint64_t starts;
  /* counters of previous incarnations */
  uint64_t prev_frames_out, prev_bytes_out;
  /* attacker behaviour (sim.attacker) */
  bool attacker, black_hole;
  int atk_pset;           /* generated policy set (attacker-only GETADDR), -1: none */
  int64_t flood_period;   /* ms between ADDR floods, 0: none */
  uint32_t flood_size;    /* entries per flood ADDR */
  uint32_t *targets;      /* hosts flooded (none: every peer) */
  size_t ntargets;
  pd_endpoint_t *persist; /* hold_inbound: connections kept open to the targets */
  size_t npersist;
  size_t pool_lo, pool_hi; /* its team's addresses: s->apool[pool_lo..pool_hi) */
} sim_host_t;

typedef struct sim_name {
  char *name;
  uint32_t *hosts;
  size_t n;
} sim_name_t;

typedef struct sim_policyset {
  char *dir;
  pd_policy_file_t files[5];
  size_t n;
} sim_policyset_t;

typedef struct sim_watch {
  char *name;
  int ref;
  int64_t period;
} sim_watch_t;

typedef struct sim_sample {
  int64_t t;
  char *name;
  double v;
  bool is_int;
  long long iv;
} sim_sample_t;

typedef struct sim {
  pd_sim_queue_t q;
  int64_t now; /* virtual ms */
  uint64_t events;
  uint64_t ev_kind[EV_KINDS]; /* events by kind (summary) */
  uint64_t frames_stopped[PD_WIRE_TYPE_COUNT]; /* frames sent by stopped incarnations */
  uint64_t addrs_stopped[3]; /* their addresses received, added, refused (summary) */
  uint64_t seed;
  pd_rng_t net_rng, lua_rng;
  sim_host_t **hosts; /* each host allocated apart: the core keeps pointers into it */
  size_t nhosts, hcap;
  sim_link_t *links;
  uint32_t nlinks, lcap, free_link;
  /* address -> host (open addressing) */
  uint32_t *amap;
  size_t amask;
  uint32_t *group_fill; /* hosts per /16 (65,536 counters) */
  uint32_t eph;
  sim_name_t *names;
  size_t nnames;
  sim_policyset_t *psets;
  size_t npsets;
  sim_watch_t *watches;
  size_t nwatches;
  sim_sample_t *series;
  size_t nseries, scap;
  json_t *results;
  /* attackers: every attacker address (attacker hosts and phantoms) */
  pd_netaddr_t *apool;
  size_t napool, apcap;
  uint32_t atk_groups; /* attacker /16 groups handed out */
  pd_rng_t atk_rng;
  pd_rng_t diam_rng; /* sim.diameter's sources (apart: sampling perturbs nothing else) */
  /* handshake signatures: the lab's keyed hash (default) or ed25519 */
  bool real_auth;
  pd_peer_auth_t auth;
  uint8_t auth_key[crypto_generichash_KEYBYTES];
  /* link model */
  int lat_kind;
  double lat_ms, jitter_ms, loss;
  int64_t connect_timeout_ms;
  /* run state */
  lua_State *L;
  bool running, in_callback, failed;
  char err[SIM_ERR_MAX];
  char script_dir[PATH_MAX];
  const pd_sim_options_t *o;
  FILE *log;
  struct timespec wall0;
  double wall_s;
} sim_t;

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(const sim_t *s) { return PD_SIM_EPOCH_MS + s->now; }
static int64_t now_s(const sim_t *s) { return now_ms(s) / 1000; }

static int push_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t a, uint32_t b, uint32_t c,
                   uint64_t x, void *p) {
  pd_sim_event_t e = {.t = t < s->now ? s->now : t, .kind = kind, .a = a, .b = b, .c = c, .x = x,
                      .p = p};
  return pd_sim_queue_push(&s->q, &e);
}

static int push_link_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t li, uint32_t b, uint64_t x,
                        void *p) {
  int rc = push_ev(s, t, kind, li, b, 0, x, p);
  if (rc == 0) s->links[li].pending++;
  return rc;
}

/* ---- address map ---- */

static uint64_t addr_hash(const pd_netaddr_t *a) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 16; i++) h = (h ^ a->ip[i]) * 1099511628211ull;
  h = (h ^ (a->port & 0xff)) * 1099511628211ull;
  h = (h ^ (a->port >> 8)) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint32_t addr_lookup(const sim_t *s, const pd_netaddr_t *a) {
  if (!s->amap) return NO_IDX;
  for (size_t i = addr_hash(a) & s->amask;; i = (i + 1) & s->amask) {
    uint32_t v = s->amap[i];
    if (v == NO_IDX) return NO_IDX;
    if (pd_netaddr_equal(&s->hosts[v]->listen, a)) return v;
  }
}

static int addr_insert_raw(uint32_t *map, size_t mask, sim_host_t *const *hosts, uint32_t idx) {
  for (size_t i = addr_hash(&hosts[idx]->listen) & mask;; i = (i + 1) & mask) {
    if (map[i] == NO_IDX) {
      map[i] = idx;
      return 0;
    }
    if (pd_netaddr_equal(&hosts[map[i]]->listen, &hosts[idx]->listen)) return PD_EEXIST;
  }
}

static int addr_insert(sim_t *s, uint32_t idx) {
  size_t size = s->amap ? s->amask + 1 : 0;
  if ((s->nhosts + 1) * 2 > size) {
    size_t ns = size ? size * 2 : 1024;
    uint32_t *nm = malloc(ns * sizeof *nm);
    if (!nm) return PD_ENOMEM;
    memset(nm, 0xff, ns * sizeof *nm);
    for (size_t i = 0; i < size; i++)
      if (s->amap[i] != NO_IDX) addr_insert_raw(nm, ns - 1, s->hosts, s->amap[i]);
    free(s->amap);
    s->amap = nm;
    s->amask = ns - 1;
  }
  return addr_insert_raw(s->amap, s->amask, s->hosts, idx);
}

/* ---- links ---- */

static uint32_t link_new(sim_t *s) {
  uint32_t li;
  if (s->free_link != NO_IDX) {
    li = s->free_link;
    s->free_link = s->links[li].next_free;
  } else {
    if (s->nlinks == s->lcap) {
      uint32_t nc = s->lcap ? s->lcap * 2 : 1024;
      sim_link_t *nl = realloc(s->links, nc * sizeof *nl);
      if (!nl) return NO_IDX;
      s->links = nl;
      s->lcap = nc;
    }
    li = s->nlinks++;
  }
  memset(&s->links[li], 0, sizeof s->links[li]);
  s->links[li].h[0] = s->links[li].h[1] = NO_IDX;
  return li;
}

static void link_maybe_free(sim_t *s, uint32_t li) {
  sim_link_t *l = &s->links[li];
  if (l->open[0] || l->open[1] || l->pending) return;
  l->h[0] = l->h[1] = NO_IDX;
  l->next_free = s->free_link;
  s->free_link = li;
}

static int host_add_link(sim_host_t *h, uint32_t li) {
  if (h->nlinks == h->linkcap) {
    uint32_t nc = h->linkcap ? h->linkcap * 2 : 16;
    uint32_t *nl = realloc(h->links, nc * sizeof *nl);
    if (!nl) return PD_ENOMEM;
    h->links = nl;
    h->linkcap = nc;
  }
  h->links[h->nlinks++] = li;
  return 0;
}

static void host_del_link(sim_host_t *h, uint32_t li) {
  for (uint32_t i = 0; i < h->nlinks; i++)
    if (h->links[i] == li) {
      h->links[i] = h->links[--h->nlinks];
      return;
    }
}

/* The link of host hi with conn id cid, and which side hi is. */
/* Arrival time for something sent towards `side` that would arrive at
 * `arr`: never before what is already in flight that way, so bytes and the
 * close keep their order per direction (TCP's in-order delivery). */
static int64_t arrival_in_order(sim_link_t *l, int side, int64_t arr) {
  if (arr < l->last_arr[side]) arr = l->last_arr[side];
  l->last_arr[side] = arr;
  return arr;
}

static uint32_t link_find(sim_t *s, uint32_t hi, uint64_t cid, int *side) {
  sim_host_t *h = s->hosts[hi];
  for (uint32_t i = 0; i < h->nlinks; i++) {
    sim_link_t *l = &s->links[h->links[i]];
    for (int k = 0; k < 2; k++)
      if (l->h[k] == hi && l->open[k] && l->cid[k] == cid) {
        *side = k;
        return h->links[i];
      }
  }
  return NO_IDX;
}

static bool reachable(const sim_t *s, uint32_t a, uint32_t b) {
  int pa = s->hosts[a]->part, pb = s->hosts[b]->part;
  return pa == 0 || pb == 0 || pa == pb;
}

static int64_t draw_latency(sim_t *s) {
  double v = s->lat_ms;
  if (s->lat_kind == LAT_UNIFORM) {
    v += (pd_rng_unit(&s->net_rng) * 2.0 - 1.0) * s->jitter_ms;
  } else if (s->lat_kind == LAT_NORMAL) {
    /* Irwin-Hall: sum of 12 uniforms - 6 is close to a standard normal. */
    double z = -6.0;
    for (int i = 0; i < 12; i++) z += pd_rng_unit(&s->net_rng);
    v += z * s->jitter_ms;
  }
  if (v < 1.0) v = 1.0;
  return (int64_t)llround(v);
}

static bool lost(sim_t *s) { return s->loss > 0 && pd_rng_unit(&s->net_rng) < s->loss; }

/* ---- hosts: actions, timers ---- */

static void rearm(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  if (!h->up || h->black_hole) return;
  int64_t d = pd_netmgr_next_deadline_ms(h->m);
  d = d == INT64_MAX ? INT64_MAX : d - PD_SIM_EPOCH_MS;
  /* The node's housekeeping (ban expiry, tried collisions, saves) runs at
   * whole seconds like the daemon's 1 s tick, but only when something is
   * due: an idle host costs no events. */
  int64_t nd = pd_node_next_deadline(h->node, now_s(s));
  if (nd != INT64_MAX) {
    if (nd <= h->last_tick_s) nd = h->last_tick_s + 1;
    int64_t tick = nd * 1000 - PD_SIM_EPOCH_MS;
    if (tick < d) d = tick;
  }
  if (d == INT64_MAX) {
    if (h->timer_at <= s->now) h->timer_at = INT64_MAX;
    return;
  }
  if (d <= s->now) d = s->now + 1;
  if (h->timer_at <= s->now || d < h->timer_at) {
    h->timer_at = d;
    push_ev(s, d, EV_TIMER, hi, h->gen, 0, 0, NULL);
  }
}

static void handle_action(sim_t *s, uint32_t hi, const pd_netmgr_action_t *a) {
  sim_host_t *h = s->hosts[hi];
  if (h->black_hole) return; /* a black hole's core is cut off: it never acts */
  switch (a->type) {
  case PD_NETMGR_A_DIAL: {
    uint32_t li = link_new(s);
    if (li == NO_IDX) {
      pd_netmgr_on_dial_failed(h->m, a->conn_id, PD_DIAL_ERROR, now_ms(s));
      return;
    }
    sim_link_t *l = &s->links[li];
    l->h[0] = hi;
    l->cid[0] = a->conn_id;
    l->open[0] = true;
    l->lat = draw_latency(s);
    host_add_link(h, li);
    uint32_t j = addr_lookup(s, &a->dial.target.addr);
    if (j == NO_IDX || !reachable(s, hi, j) || lost(s))
      push_link_ev(s, s->now + s->connect_timeout_ms, EV_DIAL_FAIL, li, PD_DIAL_TIMEOUT, 0, NULL);
    else
      push_link_ev(s, s->now + l->lat, EV_CONNECT, li, j, 0, NULL);
    return;
  }
  case PD_NETMGR_A_SEND: {
    int side = 0;
    uint32_t li = link_find(s, hi, a->conn_id, &side);
    if (li == NO_IDX) return;
    sim_link_t *l = &s->links[li];
    int o = 1 - side;
    double depart = (double)s->now;
    if (h->bw > 0) {
      double start = h->tx_free_at > depart ? h->tx_free_at : depart;
      h->tx_free_at = start + (double)a->send.len * 1000.0 / h->bw;
      depart = h->tx_free_at;
    }
    if (!l->up || !l->open[o] || !reachable(s, l->h[0], l->h[1]) || lost(s)) return;
    int64_t arr = arrival_in_order(l, o, (int64_t)ceil(depart) + l->lat);
    uint8_t *copy = malloc(a->send.len ? a->send.len : 1);
    if (!copy) return;
    memcpy(copy, a->send.data, a->send.len);
    if (push_link_ev(s, arr, EV_BYTES, li, (uint32_t)o, a->send.len, copy) != 0) free(copy);
    return;
  }
  case PD_NETMGR_A_CLOSE: {
    int side = 0;
    uint32_t li = link_find(s, hi, a->conn_id, &side);
    if (li == NO_IDX) return;
    sim_link_t *l = &s->links[li];
    int o = 1 - side;
    l->open[side] = false;
    host_del_link(h, li);
    if (l->up && l->open[o]) {
      int64_t arr = arrival_in_order(l, o, s->now + l->lat);
      push_link_ev(s, arr, EV_FIN, li, (uint32_t)o, 0, NULL);
    }
    link_maybe_free(s, li);
    return;
  }
  case PD_NETMGR_A_RESOLVE: {
    uint32_t ni = NO_IDX;
    for (size_t i = 0; i < s->nnames; i++)
      if (a->resolve.host && strcmp(s->names[i].name, a->resolve.host) == 0) ni = (uint32_t)i;
    push_ev(s, s->now + 1, EV_RESOLVED, hi, h->gen, ni, a->resolve.token, NULL);
    return;
  }
  }
}

static void drain(sim_t *s, uint32_t hi) {
  pd_netmgr_action_t a;
  while (s->hosts[hi]->up && pd_netmgr_poll(s->hosts[hi]->m, &a)) handle_action(s, hi, &a);
}

static void after(sim_t *s, uint32_t hi) {
  drain(s, hi);
  rearm(s, hi);
}

/* ---- policies ---- */

static const char *const policy_names[5] = {"select.lua", "score.lua", "evict.lua",
                                            "reputation.lua", "pex.lua"};

static int policyset_get(sim_t *s, const char *dir, sim_policyset_t **out, char *err, size_t cap) {
  for (size_t i = 0; i < s->npsets; i++)
    if (strcmp(s->psets[i].dir, dir) == 0) {
      *out = &s->psets[i];
      return 0;
    }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "policy directory %s: not a readable directory", dir);
    return PD_ENOENT;
  }
  sim_policyset_t *ns = realloc(s->psets, (s->npsets + 1) * sizeof *ns);
  if (!ns) return PD_ENOMEM;
  s->psets = ns;
  sim_policyset_t *p = &s->psets[s->npsets];
  memset(p, 0, sizeof *p);
  p->dir = strdup(dir);
  if (!p->dir) return PD_ENOMEM;
  for (size_t i = 0; i < 5; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, policy_names[i]);
    char *buf = NULL;
    size_t len = 0;
    int rc = pd_fs_read_all(path, SIM_MAX_POLICY_FILE, &buf, &len);
    if (rc == -ENOENT) continue;
    if (rc < 0) {
      if (snprintf(err, cap, "%s: cannot read: %s", path, pd_strerror(rc)) < 0) err[0] = 0;
      for (size_t k = 0; k < p->n; k++) free((char *)p->files[k].text);
      free(p->dir);
      return rc;
    }
    p->files[p->n++] = (pd_policy_file_t){.name = policy_names[i], .text = buf, .len = len};
  }
  s->npsets++;
  *out = p;
  return 0;
}

static int host_load_policies(sim_t *s, sim_host_t *h, char *err, size_t cap) {
  sim_policyset_t *ps = NULL;
  int rc = 0;
  if (h->atk_pset >= 0) {
    ps = &s->psets[h->atk_pset];
  } else {
    if (!h->policy_dir) return 0;
    rc = policyset_get(s, h->policy_dir, &ps, err, cap);
    if (rc < 0) return rc;
  }
  char perr[512] = "";
  rc = pd_node_policy_load(h->node, ps->files, ps->n, now_s(s), perr, sizeof perr);
  if (rc < 0) snprintf(err, cap, "policies %s: %s", h->policy_dir, perr);
  return rc;
}

/* ---- attackers ---- */

/* A fresh attacker's book holds every attacker address (but its own), each
 * announced by itself, so its GETADDR answers are drawn from them. */
static void attacker_prefill(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  pd_book_t *b = pd_node_book(h->node);
  for (size_t i = h->pool_lo; i < h->pool_hi && i < s->napool; i++) {
    if (pd_netaddr_equal(&s->apool[i], &h->listen)) continue;
    pd_book_add(b, &s->apool[i], NULL, now_s(s), &s->apool[i], 0, now_s(s), NULL);
  }
}

static bool is_target(const sim_host_t *h, uint32_t j) {
  if (!h->ntargets) return true;
  for (size_t i = 0; i < h->ntargets; i++)
    if (h->targets[i] == j) return true;
  return false;
}

/* An ADDR frame of flood_size attacker addresses (fresh timestamps) on each
 * handshaken connection of the attacker to a target (any honest peer when
 * it has no targets), as if its core had sent it: queued behind the bytes
 * already in flight on that connection. */
static void flood_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_host_t *h = s->hosts[e->a];
  if (!h->up || h->gen != e->b) return;
  push_ev(s, s->now + (int64_t)e->x, EV_FLOOD, e->a, e->b, 0, e->x, NULL);
  if (h->pool_hi <= h->pool_lo || h->pool_hi > s->napool || !h->nlinks) return;
  size_t np = pd_netmgr_conn_count(h->m);
  pd_netmgr_peer_info_t *pi = malloc((np ? np : 1) * sizeof *pi);
  if (!pi) return;
  np = pd_netmgr_peers(h->m, now_ms(s), pi, np);
  size_t cnt = h->flood_size ? h->flood_size : 10;
  if (cnt > PD_WIRE_MAX_ADDRS) cnt = PD_WIRE_MAX_ADDRS;
  pd_wire_addr_entry_t *ent = calloc(cnt, sizeof *ent);
  static const uint8_t magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  for (size_t k = 0; ent && k < np; k++) {
    if (pi[k].state != PD_NETMGR_READY) continue;
    int side = 0;
    uint32_t li = link_find(s, e->a, pi[k].conn_id, &side);
    if (li == NO_IDX) continue;
    sim_link_t *l = &s->links[li];
    int o = 1 - side;
    if (!l->up || !l->open[o]) continue;
    uint32_t j = l->h[o];
    if (s->hosts[j]->attacker || !is_target(h, j) || !reachable(s, e->a, j)) continue;
    for (size_t i = 0; i < cnt; i++) {
      ent[i].addr = s->apool[h->pool_lo + pd_rng_range(&s->atk_rng, h->pool_hi - h->pool_lo)];
      ent[i].timestamp = now_s(s);
      ent[i].has_id = false;
    }
    size_t cap = PD_WIRE_HEADER_LEN + 2 + cnt * PD_WIRE_ADDR_ENTRY_MAX, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) break;
    if (pd_wire_encode_addr(magic, ent, cnt, buf, cap, &len) != 0) {
      free(buf);
      continue;
    }
    int64_t arr = arrival_in_order(l, o, s->now + l->lat);
    if (push_link_ev(s, arr, EV_BYTES, li, (uint32_t)o, len, buf) != 0) free(buf);
  }
  free(ent);
  free(pi);
}

/* ---- start / stop ---- */

/* The lab's handshake signature: BLAKE2b-512 keyed with a per-run key over
 * the public key and the auth message. It binds a signature to the key
 * that "made" it exactly as far as the handshake checks (a host can only
 * sign for its own key: the key pair is never exchanged), at ~0.3 us
 * instead of ed25519's ~70 us per sign + verify. sim.auth("ed25519") runs
 * the real thing. */
static int lab_mac(const uint8_t key[crypto_generichash_KEYBYTES], const uint8_t *pk,
                   const uint8_t *msg, size_t len, uint8_t sig[PD_WIRE_SIG_LEN]) {
  crypto_generichash_state st;
  if (crypto_generichash_init(&st, key, crypto_generichash_KEYBYTES, PD_WIRE_SIG_LEN) != 0 ||
      crypto_generichash_update(&st, pk, PD_WIRE_PUBKEY_LEN) != 0 ||
      crypto_generichash_update(&st, msg, len) != 0 ||
      crypto_generichash_final(&st, sig, PD_WIRE_SIG_LEN) != 0)
    return PD_EINVAL;
  return 0;
}

static int lab_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
                    uint8_t sig[PD_WIRE_SIG_LEN]) {
  return lab_mac(((sim_t *)ud)->auth_key, self->pk, msg, len, sig);
}

static int lab_verify(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg,
                      size_t len, const uint8_t sig[PD_WIRE_SIG_LEN]) {
  uint8_t want[PD_WIRE_SIG_LEN];
  if (lab_mac(((sim_t *)ud)->auth_key, pk, msg, len, want) != 0) return PD_EINVAL;
  return sodium_memcmp(want, sig, PD_WIRE_SIG_LEN) == 0 ? 0 : PD_EINVAL;
}

static int host_start(sim_t *s, uint32_t hi, char *err, size_t cap) {
  sim_host_t *h = s->hosts[hi];
  if (h->up) return 0;
  pd_book_t *book = NULL;
  int rc;
  if (h->saved) {
    pd_bookstore_report_t rep;
    char derr[256] = "";
    rc = pd_bookstore_decode_ex(h->saved, h->saved_len, &h->brng, PD_BOOK_ALLOW_PRIVATE, &h->geom,
                                &book, &rep, derr, sizeof derr);
    if (rc < 0) {
      snprintf(err, cap, "host %u: saved book does not decode: %s", hi, derr);
      return rc;
    }
  } else {
    rc = pd_book_create_ex(&book, h->key, &h->brng, PD_BOOK_ALLOW_PRIVATE, &h->geom);
    if (rc < 0) {
      snprintf(err, cap, "host %u: book: %s", hi, pd_strerror(rc));
      return rc;
    }
  }
  pd_node_config_t nc;
  memset(&nc, 0, sizeof nc);
  nc.allow_private = true;
  nc.save_interval = 0; /* the sim saves at stop */
  nc.default_ban_secs = 24 * 3600;
  nc.policy_dir = h->policy_dir;
  rc = pd_node_create(&h->node, &nc, book, &h->brng, now_s(s));
  if (rc < 0) {
    pd_book_destroy(book);
    snprintf(err, cap, "host %u: node: %s", hi, pd_strerror(rc));
    return rc;
  }
  rc = host_load_policies(s, h, err, cap);
  if (rc < 0) {
    pd_node_destroy(h->node);
    h->node = NULL;
    return rc;
  }
  pd_netmgr_config_t cfg;
  pd_netmgr_config_default(&cfg);
  cfg.has_listen = true;
  cfg.listen = h->listen;
  cfg.seed_mode = h->seed_mode;
  cfg.dialer.allow_private = true;
  if (h->min_out) cfg.dialer.min_outbound = h->min_out;
  if (h->max_out) cfg.dialer.max_outbound = h->max_out;
  if (h->max_in) cfg.dialer.max_inbound = h->max_in;
  if (cfg.dialer.min_outbound > cfg.dialer.max_outbound)
    cfg.dialer.min_outbound = cfg.dialer.max_outbound;
  cfg.dialer.seeds = h->seeds;
  cfg.dialer.nseeds = h->nseeds;
  cfg.dialer.persistent = h->persist;
  cfg.dialer.npersistent = h->npersist;
  cfg.anchors = h->anchors;
  cfg.nanchors = h->nanchors;
  cfg.auth = s->real_auth ? NULL : &s->auth;
  if (h->ping_ms > 0) {
    /* A dead peer is still one that stays silent for 3 intervals. */
    cfg.peer.ping_interval_ms = h->ping_ms;
    if (cfg.peer.dead_timeout_ms < 3 * h->ping_ms) cfg.peer.dead_timeout_ms = 3 * h->ping_ms;
  }
  const char *why = NULL;
  rc = pd_netmgr_create(&h->m, &cfg, h->node, &h->ident, &h->mrng, now_ms(s), &why);
  if (rc < 0) {
    pd_node_destroy(h->node);
    h->node = NULL;
    snprintf(err, cap, "host %u: netmgr: %s", hi, why ? why : pd_strerror(rc));
    return rc;
  }
  h->up = true;
  h->gen++;
  h->starts++;
  h->last_tick_s = now_s(s) - 1;
  h->tx_free_at = 0;
  h->timer_at = s->now;
  push_ev(s, s->now, EV_TIMER, hi, h->gen, 0, 0, NULL);
  /* The saved book now lives in the node: keeping its JSON too cost ~84 B
   * per address for every host that ever restarted (8 GB at 10,000 hosts
   * with full books, a day into churn). */
  free(h->saved);
  h->saved = NULL;
  h->saved_len = 0;
  if (h->attacker && h->starts == 1) attacker_prefill(s, hi);
  if (h->flood_period > 0)
    push_ev(s, s->now + h->flood_period, EV_FLOOD, hi, h->gen, 0, (uint64_t)h->flood_period, NULL);
  return 0;
}

static void host_stop(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  if (!h->up) return;
  h->nanchors = pd_netmgr_anchors(h->m, h->anchors, PD_DIALER_MAX_ANCHORS);
  if (h->nanchors > PD_DIALER_MAX_ANCHORS) h->nanchors = PD_DIALER_MAX_ANCHORS;
  pd_netmgr_shutdown(h->m, now_ms(s));
  drain(s, hi);
  /* Whatever the manager did not close (dials in progress) dies with it. */
  while (h->nlinks) {
    uint32_t li = h->links[h->nlinks - 1];
    sim_link_t *l = &s->links[li];
    for (int k = 0; k < 2; k++)
      if (l->h[k] == hi && l->open[k]) {
        l->open[k] = false;
        if (l->up && l->open[1 - k]) {
          int64_t arr = arrival_in_order(l, 1 - k, s->now + l->lat);
          push_link_ev(s, arr, EV_FIN, li, (uint32_t)(1 - k), 0, NULL);
        }
      }
    h->nlinks--;
    link_maybe_free(s, li);
  }
  pd_netmgr_counters_t c;
  pd_netmgr_counters(h->m, &c);
  for (size_t i = 0; i < PD_WIRE_TYPE_COUNT; i++) {
    h->prev_frames_out += c.frames_out[i];
    s->frames_stopped[i] += c.frames_out[i];
  }
  h->prev_bytes_out += c.bytes_out;
  s->addrs_stopped[0] += c.addrs_received;
  s->addrs_stopped[1] += c.addrs_added;
  s->addrs_stopped[2] += c.addrs_refused;
  free(h->saved);
  h->saved = NULL;
  h->saved_len = 0;
  if (pd_bookstore_encode(pd_node_book(h->node), now_s(s), &h->saved, &h->saved_len) != 0) {
    h->saved = NULL;
    h->saved_len = 0;
  }
  pd_netmgr_destroy(h->m);
  pd_node_destroy(h->node);
  h->m = NULL;
  h->node = NULL;
  h->up = false;
  h->timer_at = INT64_MAX;
}

/* ---- event dispatch ---- */

static void lua_fire(sim_t *s, const pd_sim_event_t *e);
static void watch_fire(sim_t *s, uint32_t wi);
static void flood_fire(sim_t *s, const pd_sim_event_t *e);

static void dispatch(sim_t *s, const pd_sim_event_t *e) {
  switch (e->kind) {
  case EV_TIMER: {
    sim_host_t *h = s->hosts[e->a];
    if (!h->up || h->gen != e->b || h->timer_at != e->t) return;
    h->timer_at = INT64_MAX;
    int64_t sec = now_s(s);
    if (sec > h->last_tick_s) {
      pd_node_tick(h->node, sec);
      h->last_tick_s = sec;
    }
    pd_netmgr_on_tick(h->m, now_ms(s));
    after(s, e->a);
    return;
  }
  case EV_CONNECT: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    uint32_t j = e->b;
    if (!l->open[0]) break;
    sim_host_t *d = s->hosts[l->h[0]];
    sim_host_t *t = s->hosts[j];
    if (!t->up) {
      push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, e->a, PD_DIAL_REFUSED, 0, NULL);
      break;
    }
    if (t->black_hole) { /* accepts TCP, never says a word */
      l->h[1] = j;
      l->cid[1] = 0;
      l->open[1] = true;
      l->up = true;
      host_add_link(t, e->a);
      l->last_arr[0] = s->now + l->lat;
      push_link_ev(s, s->now + l->lat, EV_CONNECTED, e->a, 0, 0, NULL);
      break;
    }
    pd_netaddr_t remote = d->listen;
    remote.port = (uint16_t)(32768 + (s->eph++ % 28000));
    uint64_t cid = 0;
    if (pd_netmgr_on_inbound(t->m, &remote, now_ms(s), &cid) != PD_NETMGR_ACCEPT) {
      push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, e->a, PD_DIAL_REFUSED, 0, NULL);
      after(s, j);
      break;
    }
    l->h[1] = j;
    l->cid[1] = cid;
    l->open[1] = true;
    l->up = true;
    host_add_link(t, e->a);
    l->last_arr[0] = s->now + l->lat;
    push_link_ev(s, s->now + l->lat, EV_CONNECTED, e->a, 0, 0, NULL);
    after(s, j);
    break;
  }
  case EV_CONNECTED: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    if (!l->open[0]) break;
    pd_netmgr_on_connected(s->hosts[l->h[0]]->m, l->cid[0], now_ms(s));
    after(s, l->h[0]);
    break;
  }
  case EV_DIAL_FAIL: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    if (!l->open[0]) break;
    uint32_t hi = l->h[0];
    l->open[0] = false;
    host_del_link(s->hosts[hi], e->a);
    pd_netmgr_on_dial_failed(s->hosts[hi]->m, l->cid[0], (enum pd_dial_outcome)e->b, now_ms(s));
    after(s, hi);
    break;
  }
  case EV_BYTES: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    int side = (int)e->b;
    if (l->open[side] && !s->hosts[l->h[side]]->black_hole) {
      uint32_t hi = l->h[side];
      pd_netmgr_on_bytes(s->hosts[hi]->m, l->cid[side], e->p, (size_t)e->x, now_ms(s));
      after(s, hi);
    }
    free(e->p);
    break;
  }
  case EV_FIN: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    int side = (int)e->b;
    if (l->open[side]) {
      uint32_t hi = l->h[side];
      l->open[side] = false;
      host_del_link(s->hosts[hi], e->a);
      if (!s->hosts[hi]->black_hole) {
        pd_netmgr_on_closed(s->hosts[hi]->m, l->cid[side], now_ms(s));
        after(s, hi);
      }
    }
    break;
  }
  case EV_RESOLVED: {
    sim_host_t *h = s->hosts[e->a];
    if (!h->up || h->gen != e->b) return;
    pd_netaddr_t addrs[SIM_MAX_SEEDS];
    size_t n = 0;
    if (e->c != NO_IDX) {
      const sim_name_t *nm = &s->names[e->c];
      for (size_t i = 0; i < nm->n && n < SIM_MAX_SEEDS; i++)
        addrs[n++] = s->hosts[nm->hosts[i]]->listen;
    }
    pd_netmgr_on_resolved(h->m, e->x, addrs, n, now_ms(s));
    after(s, e->a);
    return;
  }
  case EV_LUA:
    lua_fire(s, e);
    return;
  case EV_WATCH:
    watch_fire(s, e->a);
    return;
  case EV_FLOOD:
    flood_fire(s, e);
    return;
  default:
    return;
  }
  link_maybe_free(s, e->a);
}

/* ======================================================================
 * Measurements.
 * ====================================================================== */

static uint32_t host_outbound(const sim_host_t *h) {
  if (!h->up) return 0;
  pd_dialer_counters_t c;
  pd_dialer_counters(pd_netmgr_dialer(h->m), &c);
  return c.connected[PD_CONN_OUTBOUND];
}

static uint32_t host_inbound(const sim_host_t *h) {
  if (!h->up) return 0;
  pd_dialer_counters_t c;
  pd_dialer_counters(pd_netmgr_dialer(h->m), &c);
  return c.connected[PD_CONN_INBOUND];
}

static uint32_t host_min_out(const sim_host_t *h) {
  if (h->min_out) return h->min_out;
  pd_dialer_config_t dc;
  pd_dialer_config_default(&dc);
  uint32_t m = dc.min_outbound;
  if (h->max_out && m > h->max_out) m = h->max_out;
  return m;
}

/* An honest node: up, not a seed, not an attacker (what stats count). */
static bool is_node(const sim_host_t *h) { return h->up && !h->seed_mode && !h->attacker; }

typedef struct atk_share {
  uint32_t out, out_atk; /* outbound peers; of them attacker hosts */
  uint32_t all, all_atk; /* outbound + inbound; of them attacker hosts */
} atk_share_t;

/* Outbound: the dialer's outbound peers (as anchors). Inbound: the dialer's
 * inbound count, of which those whose link comes from an attacker host. */
static void attacker_share(sim_t *s, uint32_t hi, atk_share_t *r) {
  memset(r, 0, sizeof *r);
  sim_host_t *h = s->hosts[hi];
  if (!h->up) return;
  pd_dial_target_t out[64];
  size_t n = pd_netmgr_anchors(h->m, out, 64);
  if (n > 64) n = 64;
  r->out = (uint32_t)n;
  for (size_t k = 0; k < n; k++) {
    uint32_t j = addr_lookup(s, &out[k].addr);
    if (j != NO_IDX && s->hosts[j]->attacker) r->out_atk++;
  }
  uint32_t in = host_inbound(h), in_atk = 0;
  for (uint32_t i = 0; i < h->nlinks; i++) {
    const sim_link_t *l = &s->links[h->links[i]];
    if (l->h[1] == hi && l->up && l->open[0] && l->open[1] && s->hosts[l->h[0]]->attacker) in_atk++;
  }
  if (in_atk > in) in_atk = in;
  r->all = r->out + in;
  r->all_atk = r->out_atk + in_atk;
}

static uint32_t uf_find(uint32_t *p, uint32_t x) {
  while (p[x] != x) {
    p[x] = p[p[x]];
    x = p[x];
  }
  return x;
}

/* Components of the graph of honest nodes (is_node; only those in mask
 * when mask is not NULL) joined by outbound connections. */
static int connectivity(sim_t *s, const uint8_t *mask, size_t *largest, size_t *ncomp,
                        size_t *nodes) {
  *largest = *ncomp = *nodes = 0;
  if (s->nhosts == 0) return 0;
  uint32_t *p = malloc(s->nhosts * sizeof *p);
  uint32_t *cnt = calloc(s->nhosts, sizeof *cnt);
  if (!p || !cnt) {
    free(p);
    free(cnt);
    return PD_ENOMEM;
  }
  for (uint32_t i = 0; i < s->nhosts; i++) p[i] = i;
  pd_dial_target_t out[64];
  for (uint32_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!is_node(h) || (mask && !mask[i])) continue;
    size_t n = pd_netmgr_anchors(h->m, out, 64);
    if (n > 64) n = 64;
    for (size_t k = 0; k < n; k++) {
      uint32_t j = addr_lookup(s, &out[k].addr);
      if (j == NO_IDX || !is_node(s->hosts[j]) || (mask && !mask[j])) continue;
      uint32_t a = uf_find(p, i), b = uf_find(p, j);
      if (a != b) p[a < b ? b : a] = a < b ? a : b;
    }
  }
  for (uint32_t i = 0; i < s->nhosts; i++) {
    if (!is_node(s->hosts[i]) || (mask && !mask[i])) continue;
    (*nodes)++;
    uint32_t r = uf_find(p, i);
    if (cnt[r]++ == 0) (*ncomp)++;
    if (cnt[r] > *largest) *largest = cnt[r];
  }
  free(p);
  free(cnt);
  return 0;
}

int pd_sim_graph_sample(size_t n, const uint32_t *off, const uint32_t *adj, const uint32_t *src,
                        size_t k, uint32_t *diameter, double *mean_path, uint64_t *pairs) {
  if (!diameter || !mean_path || !pairs) return PD_EINVAL;
  *diameter = 0;
  *mean_path = 0;
  *pairs = 0;
  if (n == 0 || k == 0) return 0;
  if (!off || !adj || !src || n >= UINT32_MAX) return PD_EINVAL;
  for (size_t i = 0; i < k; i++)
    if (src[i] >= n) return PD_EINVAL;
  uint32_t *dist = malloc(n * sizeof *dist);
  uint32_t *queue = malloc(n * sizeof *queue);
  if (!dist || !queue) {
    free(dist);
    free(queue);
    return PD_ENOMEM;
  }
  uint64_t sum = 0, np = 0;
  uint32_t diam = 0;
  for (size_t i = 0; i < k; i++) {
    for (size_t v = 0; v < n; v++) dist[v] = UINT32_MAX;
    size_t head = 0, tail = 0;
    dist[src[i]] = 0;
    queue[tail++] = src[i];
    while (head < tail) {
      uint32_t v = queue[head++];
      for (uint32_t e = off[v]; e < off[v + 1]; e++) {
        uint32_t w = adj[e];
        if (w >= n || dist[w] != UINT32_MAX) continue;
        dist[w] = dist[v] + 1;
        sum += dist[w];
        np++;
        if (dist[w] > diam) diam = dist[w];
        queue[tail++] = w;
      }
    }
  }
  free(dist);
  free(queue);
  *diameter = diam;
  *pairs = np;
  *mean_path = np ? (double)sum / (double)np : 0.0;
  return 0;
}

typedef struct diam_result {
  size_t hosts, samples;
  uint32_t diameter;
  double mean_path;
  uint64_t pairs;
} diam_result_t;

static bool diam_member(const sim_host_t *h, const uint8_t *mask, uint32_t i, bool atk, bool seeds) {
  if (!h->up || !h->m || (mask && !mask[i])) return false;
  if (h->attacker && !atk) return false;
  if (h->seed_mode && !seeds) return false;
  return true;
}

/* The graph of up hosts (honest non-seed ones unless atk / seeds; only
 * those in mask when given) joined by their ready outbound connections,
 * undirected; BFS from `samples` of them drawn with diam_rng (all of them,
 * in index order, when samples >= their number). */
static int diameter_sample(sim_t *s, const uint8_t *mask, bool atk, bool seeds, size_t samples,
                           diam_result_t *r) {
  memset(r, 0, sizeof *r);
  size_t nh = s->nhosts;
  if (nh == 0) return 0;
  int rc = PD_ENOMEM;
  uint32_t *vid = malloc(nh * sizeof *vid);
  uint32_t *hv = malloc(nh * sizeof *hv); /* vertex -> host */
  uint32_t *ea = NULL, *eb = NULL, *off = NULL, *adj = NULL, *src = NULL;
  size_t ne = 0, ecap = 0, nv = 0;
  if (!vid || !hv) goto out;
  for (uint32_t i = 0; i < nh; i++) {
    vid[i] = NO_IDX;
    if (diam_member(s->hosts[i], mask, i, atk, seeds)) {
      hv[nv] = i;
      vid[i] = (uint32_t)nv++;
    }
  }
  r->hosts = nv;
  if (nv == 0) {
    rc = 0;
    goto out;
  }
  pd_dial_target_t out[64];
  for (size_t v = 0; v < nv; v++) {
    size_t n = pd_netmgr_anchors(s->hosts[hv[v]]->m, out, 64);
    if (n > 64) n = 64;
    for (size_t k = 0; k < n; k++) {
      uint32_t j = addr_lookup(s, &out[k].addr);
      if (j == NO_IDX || vid[j] == NO_IDX || vid[j] == v) continue;
      if (ne == ecap) {
        size_t nc = ecap ? ecap * 2 : 1024;
        uint32_t *na = realloc(ea, nc * sizeof *na);
        if (!na) goto out;
        ea = na;
        uint32_t *nb = realloc(eb, nc * sizeof *nb);
        if (!nb) goto out;
        eb = nb;
        ecap = nc;
      }
      ea[ne] = (uint32_t)v;
      eb[ne] = vid[j];
      ne++;
    }
  }
  off = calloc(nv + 1, sizeof *off);
  adj = malloc((2 * ne + 1) * sizeof *adj);
  src = malloc(nv * sizeof *src);
  if (!off || !adj || !src) goto out;
  for (size_t e = 0; e < ne; e++) {
    off[ea[e] + 1]++;
    off[eb[e] + 1]++;
  }
  for (size_t v = 0; v < nv; v++) off[v + 1] += off[v];
  for (size_t v = 0; v < nv; v++) src[v] = off[v]; /* fill cursors */
  for (size_t e = 0; e < ne; e++) {
    adj[src[ea[e]]++] = eb[e];
    adj[src[eb[e]]++] = ea[e];
  }
  for (size_t v = 0; v < nv; v++) src[v] = (uint32_t)v;
  size_t k = samples < nv ? samples : nv;
  if (k < nv) /* partial Fisher-Yates: k distinct sources */
    for (size_t i = 0; i < k; i++) {
      size_t j = i + (size_t)pd_rng_range(&s->diam_rng, nv - i);
      uint32_t t = src[i];
      src[i] = src[j];
      src[j] = t;
    }
  r->samples = k;
  rc = pd_sim_graph_sample(nv, off, adj, src, k, &r->diameter, &r->mean_path, &r->pairs);
out:
  free(vid);
  free(hv);
  free(ea);
  free(eb);
  free(off);
  free(adj);
  free(src);
  return rc;
}

/* ======================================================================
 * Lua API.
 * ====================================================================== */

static sim_t *getsim(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static uint32_t checkhost(lua_State *L, int i) {
  uint32_t *u = luaL_checkudata(L, i, SIM_HOST_MT);
  return *u;
}

static void pushhost(lua_State *L, uint32_t idx) {
  uint32_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = idx;
  luaL_setmetatable(L, SIM_HOST_MT);
}

/* Traceback handler; an assertion's message goes through untouched. */
static int msgh(lua_State *L) {
  sim_t *s = getsim(L);
  const char *m = lua_tostring(L, 1);
  if (!m) m = "(error object is not a string)";
  if (s->failed) { /* sim.assert already set the message */
    lua_pushstring(L, m);
    return 1;
  }
  luaL_traceback(L, L, m, 1);
  return 1;
}

/* Call the function on top of the stack (no args) protected; on error the
 * run fails. Returns true when it succeeded; leaves nresults values. */
static bool pcall_top(sim_t *s, int nres, bool callback) {
  lua_State *L = s->L;
  int fn = lua_gettop(L);
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, msgh, 1);
  lua_insert(L, fn);
  bool was = s->in_callback;
  s->in_callback = was || callback;
  int rc = lua_pcall(L, 0, nres, fn);
  s->in_callback = was;
  lua_remove(L, fn);
  if (rc != LUA_OK) {
    if (!s->failed || !s->err[0]) {
      const char *m = lua_tostring(L, -1);
      snprintf(s->err, sizeof s->err, "%s", m ? m : "error");
    }
    s->failed = true;
    lua_pop(L, 1);
    return false;
  }
  return true;
}

static void lua_fire(sim_t *s, const pd_sim_event_t *e) {
  if (s->failed) return;
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, (lua_Integer)e->a);
  pcall_top(s, 0, true);
  if (e->x > 0 && !s->failed)
    push_ev(s, s->now + (int64_t)e->x, EV_LUA, e->a, 0, 0, e->x, NULL);
  else
    luaL_unref(s->L, LUA_REGISTRYINDEX, (int)e->a);
}

static void watch_fire(sim_t *s, uint32_t wi) {
  if (s->failed) return;
  sim_watch_t *w = &s->watches[wi];
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, w->ref);
  if (!pcall_top(s, 1, true)) return;
  bool ok = lua_toboolean(s->L, -1);
  lua_pop(s->L, 1);
  if (ok) {
    json_object_set_new(s->results, w->name, json_real((double)s->now / 1000.0));
    luaL_unref(s->L, LUA_REGISTRYINDEX, w->ref);
    w->ref = LUA_NOREF;
    return;
  }
  push_ev(s, s->now + w->period, EV_WATCH, wi, 0, 0, 0, NULL);
}

static int64_t secs_to_ms(lua_State *L, int i) {
  double v = luaL_checknumber(L, i);
  if (!(v >= 0) || v > 1e12) luaL_argerror(L, i, "time must be >= 0 seconds");
  return (int64_t)llround(v * 1000.0);
}

static const char *field_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *v = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  return v; /* valid while the table holds it */
}

static double field_num(lua_State *L, int t, const char *k, double dflt) {
  lua_getfield(L, t, k);
  double v = lua_isnil(L, -1) ? dflt : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool field_bool(lua_State *L, int t, const char *k, bool dflt) {
  lua_getfield(L, t, k);
  bool v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* First octets of public-looking auto-assigned /16 groups. */
static bool public_octet(int a) {
  return a >= 1 && a <= 223 && a != 10 && a != 100 && a != 127 && a != 169 && a != 172 &&
         a != 192 && a != 198 && a != 203;
}

static int auto_group(size_t k) {
  int nth = (int)(k / 256), seen = 0;
  for (int rounds = 0; rounds < 4; rounds++)
    for (int a = 1; a <= 223; a++)
      if (public_octet(a) && seen++ == nth % 214) return a * 256 + (int)(k % 256);
  return 11 * 256 + (int)(k % 256);
}

static char *resolve_path(sim_t *s, const char *p) {
  char buf[PATH_MAX];
  if (p[0] == '/' || !s->script_dir[0])
    return strdup(p);
  if (snprintf(buf, sizeof buf, "%s/%s", s->script_dir, p) >= (int)sizeof buf) return strdup(p);
  return strdup(buf);
}

/* force_group >= 0: the host's /16 (A*256+B) whatever spec says; defer:
 * create it stopped (the caller starts it). */
static int new_host_ex(lua_State *L, sim_t *s, int spec, int force_group, bool defer) {
  if (s->nhosts >= NO_IDX - 1) return luaL_error(L, "too many hosts");
  if (s->nhosts == s->hcap) {
    size_t nc = s->hcap ? s->hcap * 2 : 64;
    sim_host_t **nh = realloc(s->hosts, nc * sizeof *nh);
    if (!nh) return luaL_error(L, "out of memory");
    for (size_t i = s->hcap; i < nc; i++) nh[i] = NULL;
    s->hosts = nh;
    s->hcap = nc;
  }
  uint32_t hi = (uint32_t)s->nhosts;
  if (!s->hosts[hi]) s->hosts[hi] = calloc(1, sizeof **s->hosts);
  sim_host_t *h = s->hosts[hi];
  if (!h) return luaL_error(L, "out of memory");
  /* A slot left by a host whose creation failed is reused. */
  free(h->seeds);
  free(h->policy_dir);
  free(h->targets);
  free(h->persist);
  memset(h, 0, sizeof *h);
  h->timer_at = INT64_MAX;
  h->atk_pset = -1;
  pd_book_geometry_default(&h->geom);
  pd_rng_t hr;
  pd_rng_seed(&hr, s->seed ^ (0x9E3779B97F4A7C15ull * ((uint64_t)hi + 1)));
  uint8_t idseed[PD_IDENTITY_SEED_LEN];
  pd_rng_fill(&hr, idseed, sizeof idseed);
  pd_rng_fill(&hr, h->key, sizeof h->key);
  pd_rng_seed(&h->brng, pd_rng_u64(&hr));
  pd_rng_seed(&h->mrng, pd_rng_u64(&hr));
  if (pd_identity_from_seed(&h->ident, idseed) != 0) return luaL_error(L, "identity failed");

  /* address */
  int g = -1;
  const char *ip = spec ? field_str(L, spec, "ip") : NULL;
  uint16_t port = (uint16_t)(spec ? field_num(L, spec, "port", SIM_PORT) : SIM_PORT);
  if (ip) {
    const char *why = NULL;
    if (pd_netaddr_parse_ip(ip, &h->listen, &why) != 0)
      return luaL_error(L, "sim.host: bad ip '%s': %s", ip, why ? why : "?");
  } else {
    if (spec) {
      lua_getfield(L, spec, "group");
      if (lua_isinteger(L, -1)) {
        lua_Integer v = lua_tointeger(L, -1);
        if (v < 0 || v > 255) return luaL_error(L, "sim.host: group number must be 0..255 (10.G/16)");
        g = 10 * 256 + (int)v;
      } else if (lua_isstring(L, -1)) {
        int a = -1, b = -1;
        char junk;
        if (sscanf(lua_tostring(L, -1), "%d.%d%c", &a, &b, &junk) != 2 || a < 0 || a > 255 ||
            b < 0 || b > 255)
          return luaL_error(L, "sim.host: group must be \"A.B\" (a /16) or 0..255");
        g = a * 256 + b;
      } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "sim.host: group must be \"A.B\" or a number");
      }
      lua_pop(L, 1);
    }
    if (force_group >= 0) g = force_group;
    if (g < 0) g = auto_group(hi);
    uint32_t k = s->group_fill[g]++;
    if (k >= 254 * 254) return luaL_error(L, "sim.host: group %d.%d is full", g / 256, g % 256);
    memset(&h->listen, 0, sizeof h->listen);
    h->listen.ip[10] = h->listen.ip[11] = 0xff;
    h->listen.ip[12] = (uint8_t)(g / 256);
    h->listen.ip[13] = (uint8_t)(g % 256);
    h->listen.ip[14] = (uint8_t)(k / 254);
    h->listen.ip[15] = (uint8_t)(k % 254 + 1);
  }
  h->listen.port = port;

  if (spec) {
    h->seed_mode = field_bool(L, spec, "seed_mode", false);
    h->min_out = (uint32_t)field_num(L, spec, "min_outbound", 0);
    h->max_out = (uint32_t)field_num(L, spec, "max_outbound", 0);
    h->max_in = (uint32_t)field_num(L, spec, "max_inbound", 0);
    h->bw = field_num(L, spec, "bandwidth", 0);
    double pi = field_num(L, spec, "ping_interval", 0);
    if (pi < 0 || pi > 86400) return luaL_error(L, "sim.host: ping_interval must be 0..86400 s");
    h->ping_ms = (int64_t)(pi * 1000);
    lua_getfield(L, spec, "book");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      int bt = lua_gettop(L);
      h->geom.new_buckets = (uint32_t)field_num(L, bt, "new_buckets", PD_BOOK_NEW_BUCKETS);
      h->geom.tried_buckets = (uint32_t)field_num(L, bt, "tried_buckets", PD_BOOK_TRIED_BUCKETS);
      if (pd_book_geometry_check(&h->geom) != 0)
        return luaL_error(L, "sim.host: book: new_buckets must be a power of two in %d..%d and "
                             "tried_buckets one in %d..%d",
                          PD_BOOK_MIN_NEW_BUCKETS, PD_BOOK_NEW_BUCKETS, PD_BOOK_MIN_TRIED_BUCKETS,
                          PD_BOOK_TRIED_BUCKETS);
    }
    lua_pop(L, 1);
    const char *pol = field_str(L, spec, "policies");
    if (pol) h->policy_dir = resolve_path(s, pol);
    lua_getfield(L, spec, "seeds");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      size_t n = (size_t)lua_rawlen(L, -1);
      if (n > SIM_MAX_SEEDS) return luaL_error(L, "sim.host: at most %d seeds", SIM_MAX_SEEDS);
      h->seeds = calloc(n ? n : 1, sizeof *h->seeds);
      if (!h->seeds) return luaL_error(L, "out of memory");
      for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        pd_endpoint_t *e = &h->seeds[h->nseeds];
        if (lua_type(L, -1) == LUA_TSTRING) {
          snprintf(e->host, sizeof e->host, "%s", lua_tostring(L, -1));
          e->port = SIM_PORT;
        } else {
          uint32_t j = checkhost(L, -1);
          e->is_ip = true;
          e->addr = s->hosts[j]->listen;
          e->port = e->addr.port;
          pd_netaddr_format_ip(&e->addr, e->host, sizeof e->host);
        }
        h->nseeds++;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  if (addr_insert(s, hi) != 0) {
    free(h->seeds);
    free(h->policy_dir);
    return luaL_error(L, "sim.host: address already taken");
  }
  s->nhosts++;
  if (!defer && (!spec || field_bool(L, spec, "up", true))) {
    char err[512];
    if (host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  }
  pushhost(L, hi);
  return 1;
}

static int new_host(lua_State *L, sim_t *s, int spec) { return new_host_ex(L, s, spec, -1, false); }

static int l_host(lua_State *L) {
  sim_t *s = getsim(L);
  if (lua_isnoneornil(L, 1)) return new_host(L, s, 0);
  luaL_checktype(L, 1, LUA_TTABLE);
  return new_host(L, s, 1);
}

static int l_hosts(lua_State *L) {
  sim_t *s = getsim(L);
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0 || n > 10000000) return luaL_argerror(L, 1, "0..10,000,000");
  int spec = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    spec = 2;
  }
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    new_host(L, s, spec);
    lua_rawseti(L, -2, i);
  }
  return 1;
}


/* ---- attackers ---- */

/* The k-th attacker /16: public-looking groups taken from the top of the
 * IPv4 space down (honest hosts' automatic groups start at the bottom). */
static int atk_group(uint32_t k) {
  uint32_t nth = k / 256, seen = 0;
  for (int a = 223; a >= 1; a--)
    if (public_octet(a) && seen++ == nth % 200) return a * 256 + (int)(k % 256);
  return 223 * 256 + (int)(k % 256);
}

static int pool_add(sim_t *s, const pd_netaddr_t *a) {
  if (s->napool == s->apcap) {
    size_t nc = s->apcap ? s->apcap * 2 : 256;
    pd_netaddr_t *np = realloc(s->apool, nc * sizeof *np);
    if (!np) return PD_ENOMEM;
    s->apool = np;
    s->apcap = nc;
  }
  s->apool[s->napool++] = *a;
  return 0;
}

/* A policy set: the files of base_dir (may be NULL) but pex.lua, which is
 * generated: accept nothing (the book stays the attackers' addresses) and
 * share only addresses of the attacker pool as it is now. Returns the
 * index in s->psets, or a negative code. */
static int attacker_pset(sim_t *s, const char *base_dir, size_t lo, size_t hi, char *err,
                         size_t cap) {
  sim_policyset_t *base = NULL;
  if (base_dir) {
    int rc = policyset_get(s, base_dir, &base, err, cap);
    if (rc < 0) return rc;
  }
  size_t bi = base ? (size_t)(base - s->psets) : 0;
  char key[PATH_MAX + 64];
  snprintf(key, sizeof key, "<attackers:%zu-%zu>%s", lo, hi, base_dir ? base_dir : "");
  for (size_t i = 0; i < s->npsets; i++)
    if (strcmp(s->psets[i].dir, key) == 0) return (int)i;
  size_t tcap = 256 + (hi - lo) * (PD_ADDR_STRLEN + 16), tl = 0;
  char *text = malloc(tcap);
  if (!text) return PD_ENOMEM;
  tl += (size_t)snprintf(text + tl, tcap - tl,
                         "-- generated by peerd sim: an attacker's pex.lua\nlocal A = {\n");
  for (size_t i = lo; i < hi; i++) {
    char a[PD_ADDR_STRLEN];
    pd_netaddr_format(&s->apool[i], a, sizeof a);
    tl += (size_t)snprintf(text + tl, tcap - tl, "[\"%s\"]=true,\n", a);
  }
  tl += (size_t)snprintf(text + tl, tcap - tl,
                         "}\nreturn { accept = function() return false end,\n"
                         "  share = function(addr) return A[addr.addr] == true end }\n");
  sim_policyset_t *ns = realloc(s->psets, (s->npsets + 1) * sizeof *ns);
  if (!ns) {
    free(text);
    return PD_ENOMEM;
  }
  s->psets = ns;
  if (base) base = &s->psets[bi];
  sim_policyset_t *p = &s->psets[s->npsets];
  memset(p, 0, sizeof *p);
  p->dir = strdup(key);
  if (!p->dir) {
    free(text);
    return PD_ENOMEM;
  }
  for (size_t i = 0; base && i < base->n; i++) {
    if (strcmp(base->files[i].name, "pex.lua") == 0) continue;
    char *copy = malloc(base->files[i].len + 1);
    if (!copy) continue;
    memcpy(copy, base->files[i].text, base->files[i].len);
    p->files[p->n++] = (pd_policy_file_t){.name = base->files[i].name, .text = copy,
                                          .len = base->files[i].len};
  }
  p->files[p->n++] = (pd_policy_file_t){.name = "pex.lua", .text = text, .len = tl};
  return (int)s->npsets++;
}

/* sim.attacker{...} / sim.attackers(n, {...}): see docs/scenarios.md. */
static int make_attackers(lua_State *L, sim_t *s, lua_Integer n, int spec) {
  if (n < 0 || n > 1000000) return luaL_argerror(L, 1, "0..1,000,000");
  /* groups: a count of fresh attacker /16s, or an array of "A.B" */
  int *groups = NULL;
  size_t ng = 0;
  int single_group = -1;
  if (spec) {
    lua_getfield(L, spec, "group");
    bool has_group = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_group) single_group = -2; /* new_host_ex reads spec.group */
  }
  lua_getfield(L, spec, "groups");
  if (lua_istable(L, -1)) {
    ng = (size_t)lua_rawlen(L, -1);
    groups = lua_newuserdatauv(L, (ng ? ng : 1) * sizeof *groups, 0); /* freed by the GC */
    for (size_t i = 0; i < ng; i++) {
      lua_rawgeti(L, -2, (lua_Integer)i + 1);
      int a = -1, b = -1;
      char junk;
      if (!lua_isstring(L, -1) || sscanf(lua_tostring(L, -1), "%d.%d%c", &a, &b, &junk) != 2 ||
          a < 0 || a > 255 || b < 0 || b > 255)
        return luaL_error(L, "sim.attackers: groups must be a number or an array of \"A.B\"");
      groups[i] = a * 256 + b;
      lua_pop(L, 1);
    }
    lua_remove(L, -2); /* keep the userdata */
  } else if (lua_isnil(L, -1) || lua_isnumber(L, -1)) {
    lua_Integer g = lua_isnil(L, -1) ? n : lua_tointeger(L, -1);
    if (g < 1) g = 1;
    if (g > 65536) return luaL_error(L, "sim.attackers: too many groups");
    ng = (size_t)g;
    groups = lua_newuserdatauv(L, ng * sizeof *groups, 0);
    for (size_t i = 0; i < ng; i++) groups[i] = atk_group(s->atk_groups++);
    lua_remove(L, -2);
  } else {
    return luaL_error(L, "sim.attackers: groups must be a number or an array of \"A.B\"");
  }
  bool black_hole = field_bool(L, spec, "black_hole", false);
  bool getaddr_only = field_bool(L, spec, "getaddr_attacker_only", false);
  lua_Integer hold = (lua_Integer)field_num(L, spec, "hold_inbound", 0);
  double frate = 0;
  lua_Integer fsize = 10, fgroups = 0, fper = 16;
  lua_getfield(L, spec, "flood_addrs");
  if (lua_istable(L, -1)) {
    int ft = lua_gettop(L);
    frate = field_num(L, ft, "rate", 1.0);
    fsize = (lua_Integer)field_num(L, ft, "size", 10);
    fgroups = (lua_Integer)field_num(L, ft, "groups", 0);
    fper = (lua_Integer)field_num(L, ft, "per_group", 16);
    if (!(frate > 0) || frate > 1000 || fsize < 1 || fsize > PD_WIRE_MAX_ADDRS || fgroups < 0 ||
        fgroups > 4096 || fper < 1 || fper > 4096)
      return luaL_error(L, "sim.attackers: flood_addrs wants rate in (0, 1000], size 1..1000, "
                           "groups 0..4096, per_group 1..4096");
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "sim.attackers: flood_addrs must be a table");
  }
  lua_pop(L, 1);
  /* targets */
  uint32_t *targets = NULL;
  size_t nt = 0;
  lua_getfield(L, spec, "targets");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    nt = (size_t)lua_rawlen(L, -1);
    if (nt > SIM_MAX_SEEDS) return luaL_error(L, "sim.attackers: at most %d targets", SIM_MAX_SEEDS);
    targets = lua_newuserdatauv(L, (nt ? nt : 1) * sizeof *targets, 0);
    for (size_t i = 0; i < nt; i++) {
      lua_rawgeti(L, -2, (lua_Integer)i + 1);
      targets[i] = checkhost(L, -1);
      lua_pop(L, 1);
    }
    lua_remove(L, -2); /* keep the userdata, drop the table */
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  if (hold > 0 && nt == 0) return luaL_error(L, "sim.attackers: hold_inbound needs targets");
  if (hold < 0) hold = 0;
  /* this call's team: its phantoms, then its hosts */
  size_t pool_lo = s->napool;
  /* phantom addresses: in fresh groups, never a host (dials time out) */
  for (lua_Integer g = 0; g < fgroups; g++) {
    int grp = atk_group(s->atk_groups++);
    for (lua_Integer k = 0; k < fper; k++) {
      uint32_t f = s->group_fill[grp]++;
      if (f >= 254 * 254) break;
      pd_netaddr_t a;
      memset(&a, 0, sizeof a);
      a.ip[10] = a.ip[11] = 0xff;
      a.ip[12] = (uint8_t)(grp / 256);
      a.ip[13] = (uint8_t)(grp % 256);
      a.ip[14] = (uint8_t)(f / 254);
      a.ip[15] = (uint8_t)(f % 254 + 1);
      a.port = SIM_PORT;
      if (pool_add(s, &a) != 0) return luaL_error(L, "out of memory");
    }
  }
  /* the hosts, created stopped */
  size_t first = s->nhosts;
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    int g = single_group == -2 ? -1 : groups[(size_t)i % ng];
    new_host_ex(L, s, spec, g, true);
    lua_rawseti(L, -2, i + 1);
    sim_host_t *h = s->hosts[s->nhosts - 1];
    h->attacker = true;
    h->black_hole = black_hole;
    if (frate > 0 && !black_hole) {
      h->flood_period = (int64_t)llround(1000.0 / frate);
      if (h->flood_period < 1) h->flood_period = 1;
      h->flood_size = (uint32_t)fsize;
    }
    if (nt) {
      h->targets = malloc(nt * sizeof *h->targets);
      if (!h->targets) return luaL_error(L, "out of memory");
      memcpy(h->targets, targets, nt * sizeof *targets);
      h->ntargets = nt;
    }
    if (i < hold && !black_hole) {
      h->persist = calloc(nt, sizeof *h->persist);
      if (!h->persist) return luaL_error(L, "out of memory");
      for (size_t k = 0; k < nt; k++) {
        pd_endpoint_t *e = &h->persist[k];
        e->is_ip = true;
        e->addr = s->hosts[targets[k]]->listen;
        e->port = e->addr.port;
        pd_netaddr_format_ip(&e->addr, e->host, sizeof e->host);
      }
      h->npersist = nt;
    }
    if (pool_add(s, &h->listen) != 0) return luaL_error(L, "out of memory");
  }
  for (size_t i = first; i < s->nhosts; i++) {
    s->hosts[i]->pool_lo = pool_lo;
    s->hosts[i]->pool_hi = s->napool;
  }
  if (getaddr_only) {
    char err[700] = "";
    const char *pol = field_str(L, spec, "policies");
    char *dir = pol ? resolve_path(s, pol) : NULL;
    int pi = attacker_pset(s, dir, pool_lo, s->napool, err, sizeof err);
    free(dir);
    if (pi < 0) return luaL_error(L, "sim.attackers: %s", err[0] ? err : pd_strerror(pi));
    for (size_t i = first; i < s->nhosts; i++) s->hosts[i]->atk_pset = pi;
  }
  if (field_bool(L, spec, "up", true)) {
    for (size_t i = first; i < s->nhosts; i++) {
      char err[700];
      if (host_start(s, (uint32_t)i, err, sizeof err) != 0) return luaL_error(L, "%s", err);
    }
  }
  return 1;
}

static int l_attacker(lua_State *L) {
  sim_t *s = getsim(L);
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  make_attackers(L, s, 1, 1);
  lua_rawgeti(L, -1, 1);
  return 1;
}

static int l_attackers(lua_State *L) {
  sim_t *s = getsim(L);
  lua_Integer n = luaL_checkinteger(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  return make_attackers(L, s, n, 2);
}

static int l_auth(lua_State *L) {
  sim_t *s = getsim(L);
  const char *k = luaL_checkstring(L, 1);
  if (strcmp(k, "ed25519") == 0) s->real_auth = true;
  else if (strcmp(k, "keyed_hash") == 0) s->real_auth = false;
  else return luaL_error(L, "sim.auth: \"ed25519\" or \"keyed_hash\", not \"%s\"", k);
  return 0;
}

static int l_link(lua_State *L) {
  sim_t *s = getsim(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  s->lat_ms = field_num(L, 1, "latency_ms", s->lat_ms);
  s->jitter_ms = field_num(L, 1, "jitter_ms", s->jitter_ms);
  s->loss = field_num(L, 1, "loss", s->loss);
  s->connect_timeout_ms = (int64_t)field_num(L, 1, "connect_timeout_ms",
                                             (double)s->connect_timeout_ms);
  const char *d = field_str(L, 1, "dist");
  if (d) {
    if (strcmp(d, "fixed") == 0) s->lat_kind = LAT_FIXED;
    else if (strcmp(d, "uniform") == 0) s->lat_kind = LAT_UNIFORM;
    else if (strcmp(d, "normal") == 0) s->lat_kind = LAT_NORMAL;
    else return luaL_error(L, "sim.link: dist must be fixed, uniform or normal");
  } else if (s->jitter_ms > 0 && s->lat_kind == LAT_FIXED) {
    s->lat_kind = LAT_UNIFORM;
  }
  if (s->loss < 0 || s->loss > 1) return luaL_error(L, "sim.link: loss must be in [0, 1]");
  if (s->lat_ms < 0 || s->jitter_ms < 0 || s->connect_timeout_ms < 1)
    return luaL_error(L, "sim.link: negative latency or timeout");
  return 0;
}

static int l_at(lua_State *L) {
  sim_t *s = getsim(L);
  int64_t t = secs_to_ms(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_ev(s, t, EV_LUA, (uint32_t)ref, 0, 0, 0, NULL);
  return 0;
}

static int l_every(lua_State *L) {
  sim_t *s = getsim(L);
  int64_t p = secs_to_ms(L, 1);
  if (p < 1) return luaL_argerror(L, 1, "period must be >= 0.001 s");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_ev(s, s->now + p, EV_LUA, (uint32_t)ref, 0, 0, (uint64_t)p, NULL);
  return 0;
}

#define PROGRESS_WALL_S 60.0

static void progress(sim_t *s, int64_t until) {
  if (!s->log) return;
  size_t up = 0, atmin = 0, cnt = 0;
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!h->up) continue;
    up++;
    if (!is_node(h)) continue;
    cnt++;
    if (host_outbound(h) >= host_min_out(h)) atmin++;
  }
  double w = wall_seconds() - ((double)s->wall0.tv_sec + (double)s->wall0.tv_nsec / 1e9);
  fprintf(s->log, "sim: t=%.0fs/%.0fs events=%" PRIu64 " up=%zu at_min_out=%zu/%zu wall=%.1fs\n",
          (double)s->now / 1000.0, (double)until / 1000.0, s->events, up, atmin, cnt, w);
  fflush(s->log);
}

/* Give freed heap pages back to the system (glibc keeps them otherwise).
 * Hosts' buffers come and go by the million; what a run holds is what it
 * uses, and that is what "memory per host" should say. */
static void trim_heap(void) {
#ifdef __GLIBC__
  (void)malloc_trim(0);
#endif
}

static int l_run(lua_State *L) {
  sim_t *s = getsim(L);
  int64_t until = secs_to_ms(L, 1);
  if (s->in_callback) return luaL_error(L, "sim.run cannot be called from a scheduled callback");
  if (s->failed) return 0;
  int64_t start = s->now;
  int64_t step = (until - start) / 10;
  if (step < 1000) step = 1000;
  int64_t next_prog = start + step;
  pd_sim_event_t e;
  /* Progress at every tenth of the run, and at least every PROGRESS_WALL_S
   * of wall time (checked every 64 Ki events): a long run keeps telling
   * how far it got. The log is not an output file: wall time may steer it. */
  double last_prog = wall_seconds();
  while (!s->failed && pd_sim_queue_peek_time(&s->q) <= until && pd_sim_queue_pop(&s->q, &e)) {
    if ((s->events & ((1u << 21) - 1)) == 0) trim_heap(); /* every 2 M events */
    if ((s->events & ((1u << 16) - 1)) == 0 && wall_seconds() - last_prog >= PROGRESS_WALL_S) {
      int64_t keep = s->now;
      if (e.t > s->now) s->now = e.t;
      progress(s, until);
      s->now = keep;
      last_prog = wall_seconds();
    }
    while (e.t >= next_prog && next_prog < until) {
      int64_t keep = s->now;
      s->now = next_prog;
      progress(s, until);
      s->now = keep;
      next_prog += step;
      last_prog = wall_seconds();
    }
    s->now = e.t;
    s->events++;
    if (e.kind < EV_KINDS) s->ev_kind[e.kind]++;
    dispatch(s, &e);
  }
  if (s->failed) {
    lua_pushstring(L, s->err);
    return lua_error(L);
  }
  if (s->now < until) s->now = until;
  trim_heap();
  progress(s, until);
  return 0;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)getsim(L)->now / 1000.0);
  return 1;
}

static int l_partition(lua_State *L) {
  sim_t *s = getsim(L);
  int n = lua_gettop(L);
  for (size_t i = 0; i < s->nhosts; i++) s->hosts[i]->part = 0;
  for (int k = 1; k <= n; k++) {
    luaL_checktype(L, k, LUA_TTABLE);
    lua_Integer len = (lua_Integer)lua_rawlen(L, k);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_rawgeti(L, k, i);
      s->hosts[checkhost(L, -1)]->part = k;
      lua_pop(L, 1);
    }
  }
  return 0;
}

static int l_heal(lua_State *L) {
  sim_t *s = getsim(L);
  for (size_t i = 0; i < s->nhosts; i++) s->hosts[i]->part = 0;
  return 0;
}

static int l_dns(lua_State *L) {
  sim_t *s = getsim(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = (size_t)lua_rawlen(L, 2);
  sim_name_t *nn = realloc(s->names, (s->nnames + 1) * sizeof *nn);
  if (!nn) return luaL_error(L, "out of memory");
  s->names = nn;
  sim_name_t *e = &s->names[s->nnames];
  e->name = strdup(name);
  e->hosts = calloc(n ? n : 1, sizeof *e->hosts);
  e->n = n;
  if (!e->name || !e->hosts) {
    free(e->name);
    free(e->hosts);
    return luaL_error(L, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    e->hosts[i] = checkhost(L, -1);
    lua_pop(L, 1);
  }
  s->nnames++;
  return 0;
}

/* Optional argument i: an array of hosts -> a mask over all hosts (malloc'd;
 * NULL when absent). Raises on a bad argument. */
static uint8_t *host_mask(lua_State *L, sim_t *s, int i) {
  if (lua_isnoneornil(L, i)) return NULL;
  luaL_checktype(L, i, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, i);
  for (lua_Integer k = 1; k <= n; k++) { /* check before allocating: no leak on error */
    lua_rawgeti(L, i, k);
    checkhost(L, -1);
    lua_pop(L, 1);
  }
  uint8_t *m = calloc(s->nhosts ? s->nhosts : 1, 1);
  if (!m) luaL_error(L, "out of memory");
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, i, k);
    m[checkhost(L, -1)] = 1;
    lua_pop(L, 1);
  }
  return m;
}

static int l_connectivity(lua_State *L) {
  sim_t *s = getsim(L);
  size_t largest, ncomp, nodes;
  uint8_t *mask = host_mask(L, s, 1);
  int crc = connectivity(s, mask, &largest, &ncomp, &nodes);
  free(mask);
  if (crc != 0) return luaL_error(L, "out of memory");
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)largest);
  lua_setfield(L, -2, "largest_component");
  lua_pushinteger(L, (lua_Integer)ncomp);
  lua_setfield(L, -2, "components");
  lua_pushinteger(L, (lua_Integer)nodes);
  lua_setfield(L, -2, "hosts");
  return 1;
}

/* sim.diameter{samples = 16, hosts = {...}, attackers = false, seeds = false} */
static int l_diameter(lua_State *L) {
  sim_t *s = getsim(L);
  lua_Integer samples = 16;
  bool atk = false, seeds = false;
  uint8_t *mask = NULL;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "samples");
    if (!lua_isnil(L, -1)) samples = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (samples < 1) return luaL_error(L, "sim.diameter: samples must be >= 1");
    atk = field_bool(L, 1, "attackers", false);
    seeds = field_bool(L, 1, "seeds", false);
    lua_getfield(L, 1, "hosts");
    mask = host_mask(L, s, lua_gettop(L));
    lua_pop(L, 1);
  }
  diam_result_t r;
  int rc = diameter_sample(s, mask, atk, seeds, (size_t)samples, &r);
  free(mask);
  if (rc != 0) return luaL_error(L, "out of memory");
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)r.diameter);
  lua_setfield(L, -2, "diameter");
  lua_pushnumber(L, r.mean_path);
  lua_setfield(L, -2, "mean_path");
  lua_pushinteger(L, (lua_Integer)r.samples);
  lua_setfield(L, -2, "samples");
  lua_pushinteger(L, (lua_Integer)r.hosts);
  lua_setfield(L, -2, "hosts");
  lua_pushinteger(L, (lua_Integer)r.pairs);
  lua_setfield(L, -2, "pairs");
  return 1;
}

static int l_stats(lua_State *L) {
  sim_t *s = getsim(L);
  uint8_t *mask = host_mask(L, s, 1);
  size_t up = 0, cnt = 0, atmin = 0, attackers = 0, eclipsed = 0;
  uint64_t out_sum = 0, in_sum = 0, book_sum = 0;
  uint32_t out_min = UINT32_MAX, out_max = 0;
  double share_out = 0, share_all = 0;
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!h->up || (mask && !mask[i])) continue;
    up++;
    if (h->attacker) attackers++;
    if (!is_node(h)) continue;
    cnt++;
    if (s->napool) {
      atk_share_t as;
      attacker_share(s, (uint32_t)i, &as);
      if (as.out) share_out += (double)as.out_atk / (double)as.out;
      if (as.all) share_all += (double)as.all_atk / (double)as.all;
      if (as.out && as.out_atk == as.out) eclipsed++;
    }
    uint32_t o = host_outbound(h);
    out_sum += o;
    in_sum += host_inbound(h);
    book_sum += pd_book_size(pd_node_book(h->node));
    if (o < out_min) out_min = o;
    if (o > out_max) out_max = o;
    if (o >= host_min_out(h)) atmin++;
  }
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, (lua_Integer)s->nhosts);
  lua_setfield(L, -2, "hosts");
  lua_pushinteger(L, (lua_Integer)up);
  lua_setfield(L, -2, "up");
  lua_pushinteger(L, (lua_Integer)cnt);
  lua_setfield(L, -2, "nodes");
  lua_pushinteger(L, (lua_Integer)atmin);
  lua_setfield(L, -2, "at_min_outbound");
  lua_pushnumber(L, cnt ? (double)atmin / (double)cnt : 0.0);
  lua_setfield(L, -2, "at_min_fraction");
  lua_pushnumber(L, cnt ? (double)out_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "outbound_mean");
  lua_pushinteger(L, cnt ? (lua_Integer)out_min : 0);
  lua_setfield(L, -2, "outbound_min");
  lua_pushinteger(L, (lua_Integer)out_max);
  lua_setfield(L, -2, "outbound_max");
  lua_pushnumber(L, cnt ? (double)in_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "inbound_mean");
  lua_pushnumber(L, cnt ? (double)book_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "book_mean");
  lua_pushinteger(L, (lua_Integer)attackers);
  lua_setfield(L, -2, "attackers");
  lua_pushnumber(L, cnt ? share_out / (double)cnt : 0.0);
  lua_setfield(L, -2, "attacker_share_outbound");
  lua_pushnumber(L, cnt ? share_all / (double)cnt : 0.0);
  lua_setfield(L, -2, "attacker_share_all");
  lua_pushinteger(L, (lua_Integer)eclipsed);
  lua_setfield(L, -2, "eclipsed");
  free(mask);
  return 1;
}

/* Lua value -> JSON (tables with keys 1..n are arrays; others objects with
 * sorted string keys, so output does not depend on Lua's hash order). */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *to_json(lua_State *L, int i, int depth) {
  i = lua_absindex(L, i);
  switch (lua_type(L, i)) {
  case LUA_TNIL:
    return json_null();
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, i));
  case LUA_TNUMBER:
    if (lua_isinteger(L, i)) return json_integer((json_int_t)lua_tointeger(L, i));
    {
      double d = lua_tonumber(L, i);
      return isfinite(d) ? json_real(d) : json_null();
    }
  case LUA_TSTRING:
    return json_string(lua_tostring(L, i));
  case LUA_TTABLE: {
    if (depth > 16) luaL_error(L, "value nested too deeply");
    size_t n = (size_t)lua_rawlen(L, i);
    if (n > 0) {
      json_t *a = json_array();
      for (size_t k = 1; k <= n; k++) {
        lua_rawgeti(L, i, (lua_Integer)k);
        json_array_append_new(a, to_json(L, -1, depth + 1));
        lua_pop(L, 1);
      }
      return a;
    }
    size_t cnt = 0, cap = 16;
    const char **keys = malloc(cap * sizeof *keys);
    lua_pushnil(L);
    while (keys && lua_next(L, i)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) continue;
      if (cnt == cap) {
        const char **nk = realloc(keys, (cap *= 2) * sizeof *nk);
        if (!nk) break;
        keys = nk;
      }
      keys[cnt++] = lua_tostring(L, -1); /* anchored by the table */
    }
    json_t *o = json_object();
    if (keys) {
      qsort(keys, cnt, sizeof *keys, cmp_str);
      for (size_t k = 0; k < cnt; k++) {
        lua_getfield(L, i, keys[k]);
        json_object_set_new(o, keys[k], to_json(L, -1, depth + 1));
        lua_pop(L, 1);
      }
    }
    free(keys);
    return o;
  }
  default:
    return json_string(luaL_typename(L, i));
  }
}

static void push_json(lua_State *L, const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(j));
    return;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(j));
    return;
  case JSON_STRING:
    lua_pushstring(L, json_string_value(j));
    return;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    return;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    return;
  case JSON_ARRAY: {
    lua_createtable(L, (int)json_array_size(j), 0);
    for (size_t k = 0; k < json_array_size(j); k++) {
      push_json(L, json_array_get(j, k));
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    return;
  }
  case JSON_OBJECT: {
    lua_newtable(L);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      push_json(L, v);
      lua_setfield(L, -2, k);
    }
    return;
  }
  default:
    lua_pushnil(L);
  }
}

static int l_result(lua_State *L) {
  sim_t *s = getsim(L);
  const char *name = luaL_checkstring(L, 1);
  if (lua_gettop(L) >= 2) {
    json_object_set_new(s->results, name, to_json(L, 2, 0));
    return 0;
  }
  json_t *v = json_object_get(s->results, name);
  if (!v) return 0;
  push_json(L, v);
  return 1;
}

static int l_record(lua_State *L) {
  sim_t *s = getsim(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_checknumber(L, 2);
  if (strchr(name, ',') || strchr(name, '\n') || strchr(name, '"'))
    return luaL_argerror(L, 1, "series names may not contain ',', '\"' or newlines");
  if (s->nseries == s->scap) {
    size_t nc = s->scap ? s->scap * 2 : 256;
    sim_sample_t *ns = realloc(s->series, nc * sizeof *ns);
    if (!ns) return luaL_error(L, "out of memory");
    s->series = ns;
    s->scap = nc;
  }
  sim_sample_t *x = &s->series[s->nseries];
  x->name = strdup(name);
  if (!x->name) return luaL_error(L, "out of memory");
  x->t = s->now;
  x->is_int = lua_isinteger(L, 2);
  x->iv = x->is_int ? (long long)lua_tointeger(L, 2) : 0;
  x->v = lua_tonumber(L, 2);
  s->nseries++;
  return 0;
}

static int l_time_to(lua_State *L) {
  sim_t *s = getsim(L);
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int64_t period = lua_isnoneornil(L, 3) ? 1000 : secs_to_ms(L, 3);
  if (period < 1) period = 1;
  sim_watch_t *nw = realloc(s->watches, (s->nwatches + 1) * sizeof *nw);
  if (!nw) return luaL_error(L, "out of memory");
  s->watches = nw;
  sim_watch_t *w = &s->watches[s->nwatches];
  w->name = strdup(name);
  if (!w->name) return luaL_error(L, "out of memory");
  lua_pushvalue(L, 2);
  w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->period = period;
  push_ev(s, s->now, EV_WATCH, (uint32_t)s->nwatches, 0, 0, 0, NULL);
  s->nwatches++;
  return 0;
}

static int l_assert(lua_State *L) {
  sim_t *s = getsim(L);
  if (lua_toboolean(L, 1)) return 0;
  const char *msg = luaL_optstring(L, 2, "assertion failed");
  luaL_where(L, 1);
  const char *where = lua_tostring(L, -1);
  snprintf(s->err, sizeof s->err, "%sassertion failed: %s", where ? where : "", msg);
  s->failed = true;
  lua_pushstring(L, s->err);
  return lua_error(L);
}

static int l_param(lua_State *L) {
  sim_t *s = getsim(L);
  size_t nl = 0;
  const char *name = luaL_checklstring(L, 1, &nl);
  const char *val = NULL;
  for (size_t i = 0; i < s->o->nparams; i++) {
    const char *p = s->o->params[i];
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') val = p + nl + 1;
  }
  if (!val) {
    lua_settop(L, 2);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_pushstring(L, val);
    if (!lua_stringtonumber(L, val)) return luaL_error(L, "parameter %s: not a number: %s", name, val);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TBOOLEAN) {
    lua_pushboolean(L, strcmp(val, "true") == 0 || strcmp(val, "1") == 0);
    return 1;
  }
  lua_pushstring(L, val);
  return 1;
}

/* math.random over the sim's seeded stream (Lua 5.4's argument rules). */
static int l_random(lua_State *L) {
  sim_t *s = getsim(L);
  lua_Integer lo, hi;
  switch (lua_gettop(L)) {
  case 0:
    lua_pushnumber(L, pd_rng_unit(&s->lua_rng));
    return 1;
  case 1:
    lo = 1;
    hi = luaL_checkinteger(L, 1);
    if (hi == 0) {
      lua_pushinteger(L, (lua_Integer)pd_rng_u64(&s->lua_rng));
      return 1;
    }
    break;
  default:
    lo = luaL_checkinteger(L, 1);
    hi = luaL_checkinteger(L, 2);
  }
  luaL_argcheck(L, lo <= hi, lua_gettop(L), "interval is empty");
  uint64_t span = (uint64_t)hi - (uint64_t)lo;
  uint64_t r = span == UINT64_MAX ? pd_rng_u64(&s->lua_rng) : pd_rng_range(&s->lua_rng, span + 1);
  lua_pushinteger(L, (lua_Integer)((uint64_t)lo + r));
  return 1;
}

static int l_randomseed(lua_State *L) {
  sim_t *s = getsim(L);
  pd_rng_seed(&s->lua_rng, (uint64_t)luaL_optinteger(L, 1, 0) ^ s->seed);
  return 0;
}

static int l_os_time(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)now_s(getsim(L)));
  return 1;
}

/* ---- host methods ---- */

static int h_start(lua_State *L) {
  sim_t *s = getsim(L);
  uint32_t hi = checkhost(L, 1);
  char err[512];
  if (host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  return 0;
}

static int h_stop(lua_State *L) {
  host_stop(getsim(L), checkhost(L, 1));
  return 0;
}

static int h_restart(lua_State *L) {
  sim_t *s = getsim(L);
  uint32_t hi = checkhost(L, 1);
  bool anchors = true;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    anchors = field_bool(L, 2, "anchors", true);
  }
  host_stop(s, hi);
  if (!anchors) s->hosts[hi]->nanchors = 0;
  char err[512];
  if (host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  return 0;
}

static int h_is_up(lua_State *L) {
  lua_pushboolean(L, getsim(L)->hosts[checkhost(L, 1)]->up);
  return 1;
}

static int h_outbound(lua_State *L) {
  lua_pushinteger(L, host_outbound(getsim(L)->hosts[checkhost(L, 1)]));
  return 1;
}

static int h_inbound(lua_State *L) {
  lua_pushinteger(L, host_inbound(getsim(L)->hosts[checkhost(L, 1)]));
  return 1;
}

static int h_book_size(lua_State *L) {
  sim_host_t *h = getsim(L)->hosts[checkhost(L, 1)];
  lua_pushinteger(L, h->up ? (lua_Integer)pd_book_size(pd_node_book(h->node)) : 0);
  return 1;
}

/* Slots in its book's tables (new + tried buckets x 64): the most it can hold. */
static int h_book_capacity(lua_State *L) {
  sim_host_t *h = getsim(L)->hosts[checkhost(L, 1)];
  pd_book_geometry_t g = h->geom;
  if (h->up) pd_book_geometry(pd_node_book(h->node), &g);
  lua_pushinteger(L, (lua_Integer)(g.new_buckets + g.tried_buckets) * PD_BOOK_BUCKET_SIZE);
  return 1;
}

static int h_index(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)checkhost(L, 1) + 1);
  return 1;
}

static int h_addr(lua_State *L) {
  char buf[PD_ADDR_STRLEN];
  pd_netaddr_format(&getsim(L)->hosts[checkhost(L, 1)]->listen, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

static int h_id(lua_State *L) {
  char buf[PD_NODE_ID_HEXLEN + 1];
  pd_node_id_format(getsim(L)->hosts[checkhost(L, 1)]->ident.id, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

/* Outbound peers (host handles; addresses that are no simulated host are
 * left out). */
static int h_peers(lua_State *L) {
  sim_t *s = getsim(L);
  sim_host_t *h = s->hosts[checkhost(L, 1)];
  lua_newtable(L);
  if (!h->up) return 1;
  pd_dial_target_t out[64];
  size_t n = pd_netmgr_anchors(h->m, out, 64);
  if (n > 64) n = 64;
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t j = addr_lookup(s, &out[i].addr);
    if (j == NO_IDX) continue;
    pushhost(L, j);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

static int h_counters(lua_State *L) {
  sim_host_t *h = getsim(L)->hosts[checkhost(L, 1)];
  uint64_t frames = h->prev_frames_out, bytes = h->prev_bytes_out, hs = 0, dials_ok = 0, dials = 0;
  if (h->up) {
    pd_netmgr_counters_t c;
    pd_netmgr_counters(h->m, &c);
    for (size_t i = 0; i < PD_WIRE_TYPE_COUNT; i++) frames += c.frames_out[i];
    bytes += c.bytes_out;
    hs = c.handshakes;
    dials_ok = c.dialer.dials[PD_DIAL_OK];
    for (size_t i = 0; i < PD_DIAL_OUTCOME_COUNT; i++) dials += c.dialer.dials[i];
  }
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)frames);
  lua_setfield(L, -2, "messages_sent");
  lua_pushinteger(L, (lua_Integer)bytes);
  lua_setfield(L, -2, "bytes_sent");
  lua_pushinteger(L, (lua_Integer)hs);
  lua_setfield(L, -2, "handshakes");
  lua_pushinteger(L, (lua_Integer)dials);
  lua_setfield(L, -2, "dials");
  lua_pushinteger(L, (lua_Integer)dials_ok);
  lua_setfield(L, -2, "dials_ok");
  lua_pushinteger(L, (lua_Integer)h->starts);
  lua_setfield(L, -2, "starts");
  return 1;
}

static int h_attacker_share(lua_State *L) {
  sim_t *s = getsim(L);
  atk_share_t as;
  attacker_share(s, checkhost(L, 1), &as);
  lua_createtable(L, 0, 7);
  lua_pushnumber(L, as.out ? (double)as.out_atk / (double)as.out : 0.0);
  lua_setfield(L, -2, "outbound");
  lua_pushnumber(L, as.all ? (double)as.all_atk / (double)as.all : 0.0);
  lua_setfield(L, -2, "all");
  lua_pushinteger(L, as.out);
  lua_setfield(L, -2, "outbound_peers");
  lua_pushinteger(L, as.out_atk);
  lua_setfield(L, -2, "outbound_attackers");
  lua_pushinteger(L, as.all);
  lua_setfield(L, -2, "peers");
  lua_pushinteger(L, as.all_atk);
  lua_setfield(L, -2, "attackers");
  lua_pushboolean(L, as.out > 0 && as.out_atk == as.out);
  lua_setfield(L, -2, "eclipsed");
  return 1;
}

static int h_is_attacker(lua_State *L) {
  lua_pushboolean(L, getsim(L)->hosts[checkhost(L, 1)]->attacker);
  return 1;
}

static int h_set_policies(lua_State *L) {
  sim_t *s = getsim(L);
  uint32_t hi = checkhost(L, 1);
  sim_host_t *h = s->hosts[hi];
  const char *dir = luaL_optstring(L, 2, NULL);
  free(h->policy_dir);
  h->policy_dir = dir ? resolve_path(s, dir) : NULL;
  if (!h->up) return 0;
  char err[700];
  if (h->policy_dir) {
    if (host_load_policies(s, h, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  } else if (pd_node_policy_load(h->node, NULL, 0, now_s(s), err, sizeof err) != 0) {
    return luaL_error(L, "%s", err);
  }
  return 0;
}

static int h_tostring(lua_State *L) {
  sim_t *s = getsim(L);
  uint32_t hi = checkhost(L, 1);
  char buf[PD_ADDR_STRLEN];
  pd_netaddr_format(&s->hosts[hi]->listen, buf, sizeof buf);
  lua_pushfstring(L, "host#%d(%s)", (int)hi + 1, buf);
  return 1;
}

static int h_eq(lua_State *L) {
  lua_pushboolean(L, checkhost(L, 1) == checkhost(L, 2));
  return 1;
}

static const luaL_Reg host_methods[] = {
    {"start", h_start},       {"stop", h_stop},         {"restart", h_restart},
    {"is_up", h_is_up},       {"outbound", h_outbound}, {"inbound", h_inbound},
    {"book_size", h_book_size}, {"book_capacity", h_book_capacity}, {"index", h_index},     {"addr", h_addr},
    {"id", h_id},             {"peers", h_peers},       {"counters", h_counters},
    {"set_policies", h_set_policies}, {"attacker_share", h_attacker_share},
    {"is_attacker", h_is_attacker},   {NULL, NULL}};

static const luaL_Reg sim_funcs[] = {
    {"host", l_host},         {"hosts", l_hosts},       {"link", l_link},
    {"at", l_at},             {"every", l_every},       {"run", l_run},
    {"now", l_now},           {"partition", l_partition}, {"heal", l_heal},
    {"dns", l_dns},           {"connectivity", l_connectivity}, {"stats", l_stats},
    {"diameter", l_diameter},
    {"result", l_result},     {"record", l_record},     {"time_to", l_time_to},
    {"assert", l_assert},     {"param", l_param},       {"attacker", l_attacker},
    {"attackers", l_attackers}, {"auth", l_auth}, {NULL, NULL}};

static void open_lib(lua_State *L, const char *name, lua_CFunction f) {
  luaL_requiref(L, name, f, 1);
  lua_pop(L, 1);
}

/* Build the scenario state (run under pcall: setup may raise). */
static int setup_state(lua_State *L) {
  sim_t *s = lua_touserdata(L, 1);
  open_lib(L, LUA_GNAME, luaopen_base);
  open_lib(L, LUA_TABLIBNAME, luaopen_table);
  open_lib(L, LUA_STRLIBNAME, luaopen_string);
  open_lib(L, LUA_MATHLIBNAME, luaopen_math);
  open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
  open_lib(L, LUA_COLIBNAME, luaopen_coroutine);
  /* No io/os/debug/package: a scenario is deterministic. */
  lua_pushnil(L);
  lua_setglobal(L, "dofile");
  lua_pushnil(L);
  lua_setglobal(L, "loadfile");
  lua_getglobal(L, "math");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, l_random, 1);
  lua_setfield(L, -2, "random");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, l_randomseed, 1);
  lua_setfield(L, -2, "randomseed");
  lua_pop(L, 1);
  lua_createtable(L, 0, 2); /* os: virtual time only */
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, l_os_time, 1);
  lua_setfield(L, -2, "time");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, l_now, 1);
  lua_setfield(L, -2, "clock");
  lua_setglobal(L, "os");

  luaL_newmetatable(L, SIM_HOST_MT);
  lua_createtable(L, 0, 16);
  lua_pushlightuserdata(L, s);
  luaL_setfuncs(L, host_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, h_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, h_eq, 1);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);

  lua_createtable(L, 0, 24);
  lua_pushlightuserdata(L, s);
  luaL_setfuncs(L, sim_funcs, 1);
  lua_pushinteger(L, (lua_Integer)s->seed);
  lua_setfield(L, -2, "seed");
  lua_pushstring(L, s->script_dir);
  lua_setfield(L, -2, "script_dir");
  lua_setglobal(L, "sim");
  return 0;
}

/* ======================================================================
 * Output.
 * ====================================================================== */

static const char *base_name(const char *p) {
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

static char *results_doc(sim_t *s, size_t *len) {
  json_t *root = json_object();
  json_object_set_new(root, "scenario", json_string(base_name(s->o->scenario ? s->o->scenario : "-")));
  json_object_set_new(root, "seed", json_integer((json_int_t)s->seed));
  json_t *params = json_object();
  for (size_t i = 0; i < s->o->nparams; i++) {
    const char *p = s->o->params[i], *eq = strchr(p, '=');
    if (!eq) continue;
    char k[128];
    snprintf(k, sizeof k, "%.*s", (int)(eq - p) < 127 ? (int)(eq - p) : 127, p);
    json_object_set_new(params, k, json_string(eq + 1));
  }
  json_object_set_new(root, "params", params);
  json_object_set_new(root, "status", json_string(s->failed ? "failed" : "ok"));
  if (s->failed) json_object_set_new(root, "error", json_string(s->err));
  json_object_set_new(root, "hosts", json_integer((json_int_t)s->nhosts));
  json_object_set_new(root, "virtual_time_s", json_real((double)s->now / 1000.0));
  json_object_set_new(root, "events", json_integer((json_int_t)s->events));
  json_object_set(root, "results", s->results);
  char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
  json_decref(root);
  if (out) {
    size_t n = strlen(out);
    char *o2 = realloc(out, n + 2);
    if (o2) {
      out = o2;
      out[n++] = '\n';
      out[n] = 0;
    }
    *len = n;
  }
  return out;
}

static int write_series(sim_t *s, const char *dir) {
  size_t cap = 64 + s->nseries * 96, n = 0;
  char *buf = malloc(cap);
  if (!buf) return PD_ENOMEM;
  n += (size_t)snprintf(buf, cap, "time_s,name,value\n");
  for (size_t i = 0; i < s->nseries; i++) {
    const sim_sample_t *x = &s->series[i];
    size_t need = strlen(x->name) + 64;
    if (n + need >= cap) {
      cap = (cap + need) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        return PD_ENOMEM;
      }
      buf = nb;
    }
    if (x->is_int)
      n += (size_t)snprintf(buf + n, cap - n, "%.3f,%s,%lld\n", (double)x->t / 1000.0, x->name,
                            x->iv);
    else
      n += (size_t)snprintf(buf + n, cap - n, "%.3f,%s,%.17g\n", (double)x->t / 1000.0, x->name,
                            x->v);
  }
  int rc = pd_fs_write_atomic(dir, "series.csv", buf, n, 0644);
  free(buf);
  return rc;
}


/* ---- plots (gnuplot, when installed; not part of the determinism check) ---- */

#define SIM_MAX_PLOTS 32

/* Run `gnuplot plots.gp` in dir (fork/exec, output silenced). true when it
 * exited 0; false when gnuplot is missing or failed. */
static bool run_gnuplot(const char *dir) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, 0);
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (chdir(dir) != 0) _exit(126);
    execlp("gnuplot", "gnuplot", "plots.gp", (char *)NULL);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool gnuplot_on_path(void) {
  const char *path = getenv("PATH");
  if (!path) return false;
  char buf[PATH_MAX];
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n > 0 && snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, path) < (int)sizeof buf &&
        access(buf, X_OK) == 0)
      return true;
    path += n;
    if (*path == ':') path++;
  }
  return false;
}

/* One plot per series name (first SIM_MAX_PLOTS names, in order of first
 * record): plot-NAME.png (pngcairo, else png) or .svg, and plots.gp, the
 * gnuplot script with the data inline. Returns how many plots were made. */
/* Make *buf (capacity *cap) hold more than need bytes, doubling; on failure
 * frees it and returns false. */
static bool room(char **buf, size_t *cap, size_t need) {
  if (need < *cap) return true;
  while (*cap <= need) *cap *= 2;
  char *nb = realloc(*buf, *cap);
  if (!nb) {
    free(*buf);
    *buf = NULL;
    return false;
  }
  *buf = nb;
  return true;
}

static size_t write_plots(sim_t *s, const char *dir) {
  if (!s->nseries || !gnuplot_on_path()) return 0;
  const char *names[SIM_MAX_PLOTS];
  size_t nn = 0;
  for (size_t i = 0; i < s->nseries && nn < SIM_MAX_PLOTS; i++) {
    bool seen = false;
    for (size_t k = 0; k < nn && !seen; k++) seen = strcmp(names[k], s->series[i].name) == 0;
    if (!seen) names[nn++] = s->series[i].name;
  }
  static const char *const terms[][2] = {{"pngcairo size 900,500", "png"},
                                         {"png size 900,500", "png"},
                                         {"svg size 900,500", "svg"}};
  for (size_t t = 0; t < 3; t++) {
    size_t cap = 4096 + s->nseries * 48 + nn * 512, len = 0;
    char *gp = malloc(cap);
    if (!gp) return 0;
    len += (size_t)snprintf(gp + len, cap - len,
                            "# generated by peerd sim: plots of series.csv\n"
                            "set terminal %s\nset grid\nset key off\n"
                            "set xlabel \"virtual time (s)\"\n",
                            terms[t][0]);
    for (size_t k = 0; k < nn; k++) {
      char safe[128];
      size_t j = 0;
      for (const char *c = names[k]; *c && j + 1 < sizeof safe; c++)
        safe[j++] = (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                   (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'
                               ? *c
                               : '_');
      safe[j] = 0;
      len += (size_t)snprintf(gp + len, cap - len, "$d%zu << EOD\n", k);
      for (size_t i = 0; i < s->nseries; i++) {
        const sim_sample_t *x = &s->series[i];
        if (strcmp(x->name, names[k]) != 0) continue;
        if (!room(&gp, &cap, len + 64)) return 0;
        len += (size_t)snprintf(gp + len, cap - len, "%.3f %.17g\n", (double)x->t / 1000.0,
                                x->is_int ? (double)x->iv : x->v);
      }
      if (!room(&gp, &cap, len + 512)) return 0;
      len += (size_t)snprintf(gp + len, cap - len,
                              "EOD\nset output \"plot-%s.%s\"\nset title \"%s\" noenhanced\n"
                              "set ylabel \"%s\" noenhanced\nplot $d%zu using 1:2 with lines lw 2\n"
                              "set output\n",
                              safe, terms[t][1], safe, safe, k);
    }
    int rc = pd_fs_write_atomic(dir, "plots.gp", gp, len, 0644);
    free(gp);
    if (rc != 0) return 0;
    if (run_gnuplot(dir)) return nn;
  }
  return 0;
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, res = 0;
  int k = fscanf(f, "%lu %lu", &size, &res);
  fclose(f);
  return k == 2 ? (size_t)res * 4096 : 0;
}

static size_t peak_rss_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return 0;
  return (size_t)ru.ru_maxrss * 1024; /* Linux: KiB */
}

static void summary(sim_t *s, const pd_sim_report_t *r) {
  FILE *f = s->log;
  if (!f) return;
  double ev_s = r->wall_s > 0 ? (double)r->events / r->wall_s : 0;
  double ratio = r->wall_s > 0 ? ((double)r->virtual_ms / 1000.0) / r->wall_s : 0;
  fprintf(f, "\n== %s  seed %" PRIu64 "  %s ==\n", base_name(s->o->scenario ? s->o->scenario : "-"),
          s->seed, s->failed ? "FAILED" : "ok");
  fprintf(f, "%-22s %zu\n", "hosts", r->hosts);
  fprintf(f, "%-22s %.1f s\n", "virtual time", (double)r->virtual_ms / 1000.0);
  fprintf(f, "%-22s %" PRIu64 "\n", "events", r->events);
  fprintf(f, "%-22s %.3f s\n", "wall time", r->wall_s);
  fprintf(f, "%-22s %.0f\n", "events/s", ev_s);
  /* Whole numbers from 10x up; below, two significant digits (a big run
   * slower than real time printed "0x"). */
  if (ratio >= 10) fprintf(f, "%-22s %.0fx\n", "virtual:wall", ratio);
  else fprintf(f, "%-22s %.2gx\n", "virtual:wall", ratio);
  if (r->hosts && r->rss_bytes)
    fprintf(f, "%-22s %.1f KiB (RSS %.1f MiB, peak %.1f MiB)\n", "memory per host",
            (double)r->rss_bytes / 1024.0 / (double)r->hosts, (double)r->rss_bytes / 1048576.0,
            (double)r->peak_rss_bytes / 1048576.0);
  if (r->events) {
    fprintf(f, "%-22s", "events by kind");
    for (int k = 1; k < EV_KINDS; k++)
      if (s->ev_kind[k])
        fprintf(f, " %s %.1f%%", ev_kind_name[k], 100.0 * (double)s->ev_kind[k] / (double)r->events);
    fprintf(f, "\n");
    uint64_t fr[PD_WIRE_TYPE_COUNT], tot = 0, ad[3];
    memcpy(fr, s->frames_stopped, sizeof fr);
    memcpy(ad, s->addrs_stopped, sizeof ad);
    for (size_t i = 0; i < s->nhosts; i++) {
      if (!s->hosts[i]->up) continue;
      pd_netmgr_counters_t c;
      pd_netmgr_counters(s->hosts[i]->m, &c);
      for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++) fr[t] += c.frames_out[t];
      ad[0] += c.addrs_received;
      ad[1] += c.addrs_added;
      ad[2] += c.addrs_refused;
    }
    for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++) tot += fr[t];
    fprintf(f, "%-22s %" PRIu64 ":", "frames sent", tot);
    for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++)
      if (fr[t]) fprintf(f, " %s %" PRIu64, pd_wire_type_name((unsigned)t), fr[t]);
    fprintf(f, "\n");
    /* Each one costs a pex.lua call and a book lookup: the address intake. */
    fprintf(f, "%-22s %" PRIu64 " (new reference in the book %" PRIu64 ", refused %" PRIu64 ")\n",
            "addresses received", ad[0], ad[1], ad[2]);
  }
  if (json_object_size(s->results)) {
    fprintf(f, "-- results --\n");
    const char *k;
    json_t *v;
    json_object_foreach(s->results, k, v) {
      char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
      fprintf(f, "%-22s %s\n", k, t ? t : "?");
      free(t);
    }
  }
  if (s->failed) fprintf(f, "error: %s\n", s->err);
  fflush(f);
}

/* ======================================================================
 * Run.
 * ====================================================================== */

static void sim_free(sim_t *s) {
  if (s->L) lua_close(s->L);
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (h->up) {
      pd_netmgr_destroy(h->m);
      pd_node_destroy(h->node);
    }
    pd_identity_wipe(&h->ident);
    free(h->saved);
    free(h->seeds);
    free(h->links);
    free(h->policy_dir);
    free(h->targets);
    free(h->persist);
  }
  for (size_t i = 0; i < s->hcap; i++) free(s->hosts[i]);
  free(s->hosts);
  pd_sim_event_t e;
  while (pd_sim_queue_pop(&s->q, &e))
    if (e.kind == EV_BYTES) free(e.p);
  pd_sim_queue_free(&s->q);
  free(s->links);
  free(s->apool);
  free(s->amap);
  free(s->group_fill);
  for (size_t i = 0; i < s->nnames; i++) {
    free(s->names[i].name);
    free(s->names[i].hosts);
  }
  free(s->names);
  for (size_t i = 0; i < s->npsets; i++) {
    for (size_t k = 0; k < s->psets[i].n; k++) free((char *)s->psets[i].files[k].text);
    free(s->psets[i].dir);
  }
  free(s->psets);
  for (size_t i = 0; i < s->nwatches; i++) free(s->watches[i].name);
  free(s->watches);
  for (size_t i = 0; i < s->nseries; i++) free(s->series[i].name);
  free(s->series);
  json_decref(s->results);
  free(s);
}

int pd_sim_run(const pd_sim_options_t *o, char **results_json, size_t *len, pd_sim_report_t *rep,
               char *err, size_t cap) {
  if (results_json) *results_json = NULL;
  if (len) *len = 0;
  if (err && cap) err[0] = 0;
  if (!o || (!o->scenario && !o->scenario_text)) return PD_EINVAL;
  sim_t *s = calloc(1, sizeof *s);
  if (!s) return PD_ENOMEM;
  s->o = o;
  s->log = o->log;
  s->seed = o->seed;
  s->free_link = NO_IDX;
  pd_sim_queue_init(&s->q);
  pd_rng_seed(&s->net_rng, o->seed * 0x2545F4914F6CDD1Dull + 1);
  pd_rng_seed(&s->lua_rng, o->seed * 0x2545F4914F6CDD1Dull + 2);
  pd_rng_seed(&s->atk_rng, o->seed * 0x2545F4914F6CDD1Dull + 3);
  pd_rng_seed(&s->diam_rng, o->seed * 0x2545F4914F6CDD1Dull + 4);
  {
    pd_rng_t kr; /* the lab's handshake key: fixed by the seed, drawn from no stream in use */
    pd_rng_seed(&kr, o->seed * 0x2545F4914F6CDD1Dull + 5);
    pd_rng_fill(&kr, s->auth_key, sizeof s->auth_key);
  }
  s->auth.sign = lab_sign;
  s->auth.verify = lab_verify;
  s->auth.ud = s;
  s->lat_kind = LAT_FIXED;
  s->lat_ms = 50;
  s->connect_timeout_ms = 5000;
  s->group_fill = calloc(65536, sizeof *s->group_fill);
  s->results = json_object();
  if (o->scenario && !o->scenario_text) {
    const char *slash = strrchr(o->scenario, '/');
    if (slash)
      snprintf(s->script_dir, sizeof s->script_dir, "%.*s", (int)(slash - o->scenario), o->scenario);
    else
      snprintf(s->script_dir, sizeof s->script_dir, ".");
  }
  s->L = luaL_newstate();
  if (!s->group_fill || !s->results || !s->L) {
    sim_free(s);
    return PD_ENOMEM;
  }
  clock_gettime(CLOCK_MONOTONIC, &s->wall0);
  double w0 = wall_seconds();
  int rc = 0;
  lua_pushcfunction(s->L, setup_state);
  lua_pushlightuserdata(s->L, s);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) {
    snprintf(s->err, sizeof s->err, "setup: %s", lua_tostring(s->L, -1));
    s->failed = true;
  } else {
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", o->scenario ? o->scenario : "scenario");
    int lrc;
    if (o->scenario_text) {
      lrc = luaL_loadbufferx(s->L, o->scenario_text, strlen(o->scenario_text), chunk, "t");
    } else {
      char *buf = NULL;
      size_t blen = 0;
      int frc = pd_fs_read_all(o->scenario, 16 * 1024 * 1024, &buf, &blen);
      if (frc < 0) {
        snprintf(s->err, sizeof s->err, "%s: cannot read: %s", o->scenario, pd_strerror(frc));
        s->failed = true;
        lrc = -1;
      } else {
        lrc = luaL_loadbufferx(s->L, buf, blen, chunk, "t");
        free(buf);
      }
    }
    if (lrc > 0) {
      snprintf(s->err, sizeof s->err, "%s", lua_tostring(s->L, -1));
      lua_pop(s->L, 1);
      s->failed = true;
    } else if (lrc == 0) {
      pcall_top(s, 0, false);
    }
  }
  s->wall_s = wall_seconds() - w0;
  pd_sim_report_t r = {.virtual_ms = s->now, .events = s->events, .hosts = s->nhosts,
                       .wall_s = s->wall_s, .rss_bytes = rss_bytes(),
                       .peak_rss_bytes = peak_rss_bytes(),
                       .assertion_failed = s->failed};
  if (rep) *rep = r;
  size_t dl = 0;
  char *doc = results_doc(s, &dl);
  if (s->failed) rc = PD_EINVAL;
  if (o->out_dir && doc) {
    int wrc = pd_fs_ensure_dir(o->out_dir, 0755);
    if (wrc == 0) wrc = pd_fs_write_atomic(o->out_dir, "results.json", doc, dl, 0644);
    if (wrc == 0) wrc = write_series(s, o->out_dir);
    if (wrc != 0 && rc == 0) {
      snprintf(s->err, sizeof s->err, "cannot write to %s: %s", o->out_dir, pd_strerror(wrc));
      rc = PD_EIO;
    }
    if (wrc == 0) {
      size_t np = write_plots(s, o->out_dir);
      if (np && s->log) fprintf(s->log, "sim: %zu plot(s) in %s\n", np, o->out_dir);
    }
  }
  summary(s, &r);
  if (err && cap) snprintf(err, cap, "%s", s->err);
  if (results_json) {
    *results_json = doc;
    if (len) *len = dl;
  } else {
    free(doc);
  }
  sim_free(s);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: peerd sim SCENARIO.lua [--seed N] [--out DIR] [--set NAME=VALUE]...\n");
}

int pd_sim_main(int argc, char **argv) {
  pd_sim_options_t o;
  memset(&o, 0, sizeof o);
  o.seed = 1;
  o.log = stdout;
  const char **params = calloc((size_t)argc + 1, sizeof *params);
  if (!params) return 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
      char *end = NULL;
      errno = 0;
      unsigned long long v = strtoull(argv[++i], &end, 10);
      if (errno || !end || *end) {
        fprintf(stderr, "peerd sim: bad --seed %s\n", argv[i]);
        free(params);
        return 2;
      }
      o.seed = (uint64_t)v;
    } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
      o.out_dir = argv[++i];
    } else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
      if (!strchr(argv[i + 1], '=')) {
        fprintf(stderr, "peerd sim: --set wants NAME=VALUE\n");
        free(params);
        return 2;
      }
      params[o.nparams++] = argv[++i];
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      free(params);
      return 0;
    } else if (a[0] == '-' || o.scenario) {
      usage(stderr);
      free(params);
      return 2;
    } else {
      o.scenario = a;
    }
  }
  if (!o.scenario) {
    usage(stderr);
    free(params);
    return 2;
  }
  o.params = params;
  char err[SIM_ERR_MAX];
  int rc = pd_sim_run(&o, NULL, NULL, NULL, err, sizeof err);
  free(params);
  if (rc != 0) {
    fprintf(stderr, "peerd sim: %s\n", err[0] ? err : pd_strerror(rc));
    return 1;
  }
  return 0;
}
