/* pool — the lab's attacker pools (scenario lab; docs/scenarios.md, lab.h).
 *
 * Owns: sim.pool{...}: one simulated actor that owns many attacker addresses
 * (spread over chosen /16 groups, several ports per IP) and answers for all
 * of them: it accepts connections to any of its live addresses, runs the
 * real protocol on each (host/core/peer.c: KEYX, sealed HELLO/HELLO_ACK
 * signed with a per-address identity derived on demand, PING/PONG,
 * GETADDR answered with its own addresses only), holds inbound slots of its
 * targets (connections dialled from its addresses, re-dialled after a drop),
 * and floods ADDRs of its addresses on its connections to targets. Per
 * address it keeps bytes (the address in s->apool, its pool in
 * s->apool_host, its slot in the address map), per connection one pd_peer;
 * no pd_node, no book, no policies, no timers for idle addresses.
 * Does not own: links (links.c; a pool's links are not in its host's link
 * list: it finds a connection from the link's conn id), attacker hosts and
 * phantoms (attackers.c), the measurements (an attacker pool's host is an
 * attacker host for attacker shares and h:book()).
 */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"
#include "peer.h"

#define SIM_POOL_MT "peerd.sim.pool"
#define POOL_MAX_ADDRS 4000000
#define POOL_TICK_MS 1000
#define POOL_REDIAL_MS 5000

typedef struct pool_conn {
  pd_peer_t *p;    /* NULL: a free slot (or an outbound dial in progress) */
  uint64_t cid;    /* slot | generation << 32; 0: free */
  uint32_t addr;   /* index in s->apool: the address this connection is */
  uint32_t li;     /* its link */
  uint32_t remote; /* the host at the other end */
  int side;        /* the pool's side of the link */
  int hold;        /* hold slot it fills, -1: none */
  bool dialling;
  int64_t timer_at;
  pd_identity_t *id; /* on the heap: the peer borrows it and conns move */
  uint32_t next_free;
} pool_conn_t;

typedef struct pool_hold {
  uint32_t target; /* host */
  uint32_t addr;   /* the pool address it dials from */
  uint32_t conn;   /* slot, NO_IDX: none */
  int64_t retry_at;
} pool_hold_t;

typedef struct pool_counters {
  uint64_t accepted, dials, dials_ok, handshakes, getaddr_answered, addrs_sent, floods, closed;
} pool_counters_t;

typedef struct sim_pool {
  uint32_t host;
  size_t lo, hi; /* its addresses: s->apool[lo..hi) */
  bool up;
  uint32_t gen;
  uint64_t tick_gen;
  double live;      /* fraction of its addresses that answer */
  uint64_t live_key;
  uint8_t id_key[crypto_generichash_KEYBYTES];
  pd_rng_t rng;
  pd_peer_config_t pcfg;
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  char network[PD_WIRE_NETWORK_MAX + 1];
  uint32_t getaddr_n;
  int64_t flood_period;
  uint32_t flood_size;
  int64_t next_flood;
  uint32_t *targets;
  size_t ntargets;
  pool_hold_t *holds;
  size_t nholds;
  pool_conn_t *c;
  uint32_t nc, ccap, free_c, open;
  pool_counters_t k;
} sim_pool_t;

static sim_pool_t *pool_of(const sim_t *s, uint32_t hi) { return s->hosts[hi]->pool; }

static pool_conn_t *conn_by_cid(sim_pool_t *P, uint64_t cid) {
  uint32_t slot = (uint32_t)(cid & 0xffffffffu);
  if (!cid || slot >= P->nc || P->c[slot].cid != cid) return NULL;
  return &P->c[slot];
}

/* ---- addresses ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

bool lab_pool_answers(const sim_t *s, uint32_t hi, uint32_t paddr) {
  const sim_pool_t *P = pool_of(s, hi);
  if (!P || P->live >= 1.0) return true;
  double u = (double)(mix64(P->live_key ^ paddr) >> 11) * (1.0 / 9007199254740992.0);
  return u < P->live;
}

const pd_netaddr_t *lab_pool_conn_addr(const sim_t *s, uint32_t hi, uint64_t cid) {
  sim_pool_t *P = pool_of(s, hi);
  pool_conn_t *c = P ? conn_by_cid(P, cid) : NULL;
  return c ? &s->apool[c->addr] : &s->hosts[hi]->listen;
}

/* The identity of pool address paddr: ed25519 from a seed keyed by the
 * pool, so an address is the same node every time it is reached. */
static int addr_identity(const sim_pool_t *P, uint32_t paddr, pd_identity_t *id) {
  uint8_t seed[PD_IDENTITY_SEED_LEN], msg[4] = {(uint8_t)paddr, (uint8_t)(paddr >> 8),
                                                 (uint8_t)(paddr >> 16), (uint8_t)(paddr >> 24)};
  if (crypto_generichash(seed, sizeof seed, msg, sizeof msg, P->id_key, sizeof P->id_key) != 0)
    return PD_EINVAL;
  int rc = pd_identity_from_seed(id, seed);
  sodium_memzero(seed, sizeof seed);
  return rc;
}

/* ---- connections ---- */

static pool_conn_t *conn_new(sim_pool_t *P) {
  uint32_t slot;
  if (P->free_c != NO_IDX) {
    slot = P->free_c;
    P->free_c = P->c[slot].next_free;
  } else {
    if (P->nc == P->ccap) {
      uint32_t ncap = P->ccap ? P->ccap * 2 : 16;
      pool_conn_t *nn = realloc(P->c, ncap * sizeof *nn);
      if (!nn) return NULL;
      P->c = nn;
      P->ccap = ncap;
    }
    slot = P->nc++;
  }
  pool_conn_t *c = &P->c[slot];
  memset(c, 0, sizeof *c);
  P->gen++;
  c->cid = (uint64_t)slot | ((uint64_t)(P->gen ? P->gen : 1) << 32);
  c->hold = -1;
  c->timer_at = INT64_MAX;
  c->next_free = NO_IDX;
  P->open++;
  return c;
}

static void conn_free(sim_t *s, sim_pool_t *P, pool_conn_t *c) {
  if (c->hold >= 0 && (size_t)c->hold < P->nholds) {
    pool_hold_t *hd = &P->holds[c->hold];
    hd->conn = NO_IDX;
    hd->retry_at = s->now + POOL_REDIAL_MS;
  }
  if (c->p) pd_peer_free(c->p);
  if (c->id) {
    pd_identity_wipe(c->id);
    free(c->id);
    c->id = NULL;
  }
  uint32_t slot = (uint32_t)(c->cid & 0xffffffffu);
  c->p = NULL;
  c->cid = 0;
  c->next_free = P->free_c;
  P->free_c = slot;
  P->open--;
  P->k.closed++;
}

static int conn_peer(sim_t *s, sim_pool_t *P, pool_conn_t *c, pd_peer_dir_t dir) {
  c->id = malloc(sizeof *c->id);
  if (!c->id) return PD_ENOMEM;
  if (addr_identity(P, c->addr, c->id) != 0) return PD_EINVAL;
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = c->id;
  prm.magic = P->magic;
  prm.network = P->network;
  prm.dir = dir;
  prm.listen = &s->apool[c->addr];
  prm.cfg = &P->pcfg;
  prm.auth = s->real_auth ? NULL : &s->auth;
  prm.observed = &s->hosts[c->remote]->listen;
  return pd_peer_new(&c->p, &prm, &P->rng, lab_now_ms(s));
}

static bool is_target(const sim_pool_t *P, const sim_t *s, uint32_t j) {
  if (s->hosts[j]->attacker) return false;
  if (!P->ntargets) return true;
  for (size_t i = 0; i < P->ntargets; i++)
    if (P->targets[i] == j) return true;
  return false;
}

/* n of the pool's addresses, drawn with replacement (all of them, in
 * order, when n >= its size), with fresh timestamps. */
static size_t fill_addrs(sim_t *s, sim_pool_t *P, pd_wire_addr_entry_t *ent, size_t n) {
  size_t size = P->hi - P->lo;
  if (n >= size) n = size;
  for (size_t i = 0; i < n; i++) {
    memset(&ent[i], 0, sizeof ent[i]);
    size_t k = n == size ? i : (size_t)pd_rng_range(&P->rng, size);
    ent[i].addr = s->apool[P->lo + k];
    ent[i].timestamp = lab_now_s(s);
  }
  return n;
}

static void send_addrs(sim_t *s, sim_pool_t *P, pool_conn_t *c, size_t n) {
  if (!n) return;
  if (n > PD_WIRE_MAX_ADDRS) n = PD_WIRE_MAX_ADDRS;
  pd_wire_addr_entry_t *ent = malloc(n * sizeof *ent);
  if (!ent) return;
  n = fill_addrs(s, P, ent, n);
  if (n && pd_peer_send_addrs(c->p, ent, n, lab_now_ms(s)) == 0) P->k.addrs_sent += n;
  free(ent);
}

static void conn_rearm(sim_t *s, sim_pool_t *P, pool_conn_t *c) {
  int64_t d = pd_peer_next_deadline(c->p);
  if (d == INT64_MAX) return;
  d -= PD_SIM_EPOCH_MS;
  if (d <= s->now) d = s->now + 1;
  if (c->timer_at <= s->now || d < c->timer_at) {
    c->timer_at = d;
    lab_push_ev(s, d, EV_POOL, P->host, (uint32_t)(c->cid & 0xffffffffu), 0, c->cid, NULL);
  }
}

/* Perform what the connection's peer queued; it may end the connection. */
static void conn_drain(sim_t *s, sim_pool_t *P, pool_conn_t *c) {
  pd_peer_action_t a;
  while (c->p && pd_peer_poll(c->p, &a)) {
    switch (a.type) {
    case PD_PEER_A_SEND:
      lab_link_send(s, P->host, c->li, c->side, a.send.data, a.send.len);
      break;
    case PD_PEER_A_CLOSE:
      if (s->links[c->li].open[c->side]) lab_link_close(s, P->host, c->li, c->side);
      conn_free(s, P, c);
      return;
    case PD_PEER_A_HANDSHAKE_DONE:
      P->k.handshakes++;
      if (c->dialling) P->k.dials_ok++;
      break;
    case PD_PEER_A_GETADDR_RECEIVED:
      P->k.getaddr_answered++;
      send_addrs(s, P, c, P->getaddr_n);
      break;
    default: /* addresses heard, latencies, misbehaviour: the pool ignores them */
      break;
    }
  }
  if (c->p) {
    pd_peer_trim(c->p);
    conn_rearm(s, P, c);
  }
}

/* EV_CONNECT reached pool address paddr (link li's side 1). */
void lab_pool_accept(sim_t *s, uint32_t hi, uint32_t li, uint32_t paddr) {
  sim_pool_t *P = pool_of(s, hi);
  sim_link_t *l = &s->links[li];
  if (!P->up || paddr == NO_IDX || paddr < P->lo || paddr >= P->hi) {
    lab_push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, li, PD_DIAL_REFUSED, 0, NULL);
    return;
  }
  pool_conn_t *c = conn_new(P);
  if (!c) {
    lab_push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, li, PD_DIAL_REFUSED, 0, NULL);
    return;
  }
  c->addr = paddr;
  c->li = li;
  c->side = 1;
  c->remote = l->h[0];
  if (conn_peer(s, P, c, PD_PEER_INBOUND) != 0) {
    conn_free(s, P, c);
    lab_push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, li, PD_DIAL_REFUSED, 0, NULL);
    return;
  }
  P->k.accepted++;
  l->h[1] = hi;
  l->cid[1] = c->cid;
  l->open[1] = true;
  l->up = true;
  l->last_arr[0] = s->now + l->lat;
  lab_push_link_ev(s, s->now + l->lat, EV_CONNECTED, li, 0, 0, NULL);
  conn_drain(s, P, c);
}

/* A pool dial: from address c->addr to host j. */
static void pool_dial(sim_t *s, sim_pool_t *P, size_t hold) {
  pool_hold_t *hd = &P->holds[hold];
  uint32_t j = hd->target;
  uint32_t li = lab_link_new(s);
  if (li == NO_IDX) return;
  pool_conn_t *c = conn_new(P);
  if (!c) return;
  c->addr = hd->addr;
  c->li = li;
  c->side = 0;
  c->remote = j;
  c->hold = (int)hold;
  c->dialling = true;
  hd->conn = (uint32_t)(c->cid & 0xffffffffu);
  sim_link_t *l = &s->links[li];
  l->h[0] = P->host;
  l->cid[0] = c->cid;
  l->open[0] = true;
  l->lat = lab_draw_latency(s);
  P->k.dials++;
  if (!lab_reachable(s, P->host, j) || lab_lost(s))
    lab_push_link_ev(s, s->now + s->connect_timeout_ms, EV_DIAL_FAIL, li, PD_DIAL_TIMEOUT, 0,
                     NULL);
  else
    lab_push_link_ev(s, s->now + l->lat, EV_CONNECT, li, j, 0, NULL);
}

void lab_pool_connected(sim_t *s, uint32_t hi, uint32_t li) {
  sim_pool_t *P = pool_of(s, hi);
  sim_link_t *l = &s->links[li];
  pool_conn_t *c = conn_by_cid(P, l->cid[0]);
  if (!c) return;
  if (conn_peer(s, P, c, PD_PEER_OUTBOUND) != 0) {
    lab_link_close(s, hi, li, 0);
    conn_free(s, P, c);
    return;
  }
  conn_drain(s, P, c);
}

void lab_pool_dial_failed(sim_t *s, uint32_t hi, uint32_t li) {
  sim_pool_t *P = pool_of(s, hi);
  pool_conn_t *c = conn_by_cid(P, s->links[li].cid[0]);
  if (c) conn_free(s, P, c);
}

void lab_pool_bytes(sim_t *s, uint32_t hi, uint32_t li, int side, const uint8_t *p, size_t n) {
  sim_pool_t *P = pool_of(s, hi);
  pool_conn_t *c = conn_by_cid(P, s->links[li].cid[side]);
  if (!c || !c->p) return;
  (void)pd_peer_on_bytes(c->p, p, n, lab_now_ms(s));
  conn_drain(s, P, c);
}

/* The other side closed (links.c marked our side closed). */
void lab_pool_fin(sim_t *s, uint32_t hi, uint32_t li, int side) {
  sim_pool_t *P = pool_of(s, hi);
  pool_conn_t *c = conn_by_cid(P, s->links[li].cid[side]);
  if (c) conn_free(s, P, c);
}

/* ---- the pool's tick: holds and floods ---- */

static void pool_tick(sim_t *s, sim_pool_t *P) {
  for (size_t i = 0; i < P->nholds; i++) {
    pool_hold_t *hd = &P->holds[i];
    if (hd->conn == NO_IDX && s->now >= hd->retry_at && s->hosts[hd->target]->up) pool_dial(s, P, i);
  }
  if (P->flood_period > 0 && s->now >= P->next_flood) {
    P->next_flood = s->now + P->flood_period;
    for (uint32_t i = 0; i < P->nc; i++) {
      pool_conn_t *c = &P->c[i];
      if (!c->cid || !c->p || pd_peer_state(c->p) != PD_PEER_READY) continue;
      if (!is_target(P, s, c->remote)) continue;
      P->k.floods++;
      send_addrs(s, P, c, P->flood_size);
      conn_drain(s, P, c);
    }
  }
}

static void pool_arm_tick(sim_t *s, sim_pool_t *P) {
  if (!P->nholds && P->flood_period <= 0) return;
  int64_t period = POOL_TICK_MS;
  if (P->flood_period > 0 && P->flood_period < period) period = P->flood_period;
  lab_push_ev(s, s->now + period, EV_POOL, P->host, NO_IDX, 0, P->tick_gen, NULL);
}

void lab_pool_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_pool_t *P = pool_of(s, e->a);
  if (!P || !P->up) return;
  if (e->b == NO_IDX) {
    if (e->x != P->tick_gen) return; /* a chain from before a stop */
    pool_tick(s, P);
    if (P->up) pool_arm_tick(s, P);
    return;
  }
  pool_conn_t *c = conn_by_cid(P, e->x);
  if (!c || !c->p || c->timer_at != e->t) return;
  c->timer_at = INT64_MAX;
  (void)pd_peer_on_tick(c->p, lab_now_ms(s));
  conn_drain(s, P, c);
}

static void pool_start(sim_t *s, sim_pool_t *P) {
  if (P->up) return;
  P->up = true;
  P->tick_gen++;
  P->next_flood = s->now + P->flood_period;
  for (size_t i = 0; i < P->nholds; i++) P->holds[i].retry_at = s->now;
  if (P->nholds) lab_push_ev(s, s->now, EV_POOL, P->host, NO_IDX, 0, P->tick_gen, NULL);
  else pool_arm_tick(s, P);
}

/* Stop: every connection ends at once (no GOODBYE: the attacker vanishes),
 * its addresses refuse connections until it starts again. */
static void pool_stop(sim_t *s, sim_pool_t *P) {
  if (!P->up) return;
  P->up = false;
  for (uint32_t i = 0; i < P->nc; i++) {
    pool_conn_t *c = &P->c[i];
    if (!c->cid) continue;
    if (s->links[c->li].open[c->side]) lab_link_close(s, P->host, c->li, c->side);
    conn_free(s, P, c);
  }
}

void lab_pool_free(sim_host_t *h) {
  sim_pool_t *P = h->pool;
  if (!P) return;
  for (uint32_t i = 0; i < P->nc; i++)
    if (P->c[i].cid) {
      if (P->c[i].p) pd_peer_free(P->c[i].p);
      if (P->c[i].id) {
        pd_identity_wipe(P->c[i].id);
        free(P->c[i].id);
      }
    }
  free(P->c);
  free(P->holds);
  free(P->targets);
  sodium_memzero(P->id_key, sizeof P->id_key);
  free(P);
  h->pool = NULL;
}

/* ---- sim.pool{...} and the pool handle ---- */

static uint32_t check_pool(lua_State *L, int i) {
  uint32_t *u = luaL_checkudata(L, i, SIM_POOL_MT);
  return *u;
}

static int p_start(lua_State *L) {
  sim_t *s = lab_getsim(L);
  pool_start(s, pool_of(s, check_pool(L, 1)));
  return 0;
}

static int p_stop(lua_State *L) {
  sim_t *s = lab_getsim(L);
  pool_stop(s, pool_of(s, check_pool(L, 1)));
  return 0;
}

static int p_is_up(lua_State *L) {
  sim_t *s = lab_getsim(L);
  lua_pushboolean(L, pool_of(s, check_pool(L, 1))->up);
  return 1;
}

static int p_size(lua_State *L) {
  sim_t *s = lab_getsim(L);
  sim_pool_t *P = pool_of(s, check_pool(L, 1));
  lua_pushinteger(L, (lua_Integer)(P->hi - P->lo));
  return 1;
}

static int p_addr(lua_State *L) {
  sim_t *s = lab_getsim(L);
  sim_pool_t *P = pool_of(s, check_pool(L, 1));
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || (size_t)i > P->hi - P->lo) return luaL_argerror(L, 2, "1..size");
  char a[PD_ADDR_STRLEN];
  pd_netaddr_format(&s->apool[P->lo + (size_t)i - 1], a, sizeof a);
  lua_pushstring(L, a);
  return 1;
}

static int p_counters(lua_State *L) {
  sim_t *s = lab_getsim(L);
  sim_pool_t *P = pool_of(s, check_pool(L, 1));
  size_t held = 0;
  for (size_t i = 0; i < P->nholds; i++) {
    uint32_t slot = P->holds[i].conn;
    if (slot != NO_IDX && P->c[slot].p && pd_peer_state(P->c[slot].p) == PD_PEER_READY) held++;
  }
  const struct {
    const char *k;
    uint64_t v;
  } f[] = {{"connections", P->open},
           {"held", held},
           {"accepted", P->k.accepted},
           {"dials", P->k.dials},
           {"dials_ok", P->k.dials_ok},
           {"handshakes", P->k.handshakes},
           {"getaddr_answered", P->k.getaddr_answered},
           {"addrs_sent", P->k.addrs_sent},
           {"floods", P->k.floods},
           {"closed", P->k.closed}};
  lua_createtable(L, 0, (int)(sizeof f / sizeof f[0]));
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  return 1;
}

static int p_tostring(lua_State *L) {
  sim_t *s = lab_getsim(L);
  sim_pool_t *P = pool_of(s, check_pool(L, 1));
  lua_pushfstring(L, "pool#%d(%d addresses)", (int)P->host, (int)(P->hi - P->lo));
  return 1;
}

static void open_pool_mt(lua_State *L, sim_t *s) {
  static const luaL_Reg m[] = {{"start", p_start},       {"stop", p_stop},   {"is_up", p_is_up},
                               {"size", p_size},         {"addr", p_addr},   {"counters", p_counters},
                               {NULL, NULL}};
  if (luaL_newmetatable(L, SIM_POOL_MT)) {
    lua_createtable(L, 0, 8);
    lua_pushlightuserdata(L, s);
    luaL_setfuncs(L, m, 1);
    lua_setfield(L, -2, "__index");
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, p_tostring, 1);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

/* Group list from spec.groups: a count of fresh attacker /16s or an array of
 * "A.B". Pushes nothing; *out is malloc'd. */
static int read_groups(lua_State *L, sim_t *s, int spec, size_t naddr, int **out, size_t *n) {
  lua_getfield(L, spec, "groups");
  size_t ng;
  int *g;
  if (lua_istable(L, -1)) {
    ng = (size_t)lua_rawlen(L, -1);
    if (ng == 0) return luaL_error(L, "sim.pool: groups is empty");
    g = malloc(ng * sizeof *g);
    if (!g) return luaL_error(L, "out of memory");
    for (size_t i = 0; i < ng; i++) {
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
      int a = -1, b = -1;
      char junk;
      if (!lua_isstring(L, -1) || sscanf(lua_tostring(L, -1), "%d.%d%c", &a, &b, &junk) != 2 ||
          a < 0 || a > 255 || b < 0 || b > 255) {
        free(g);
        return luaL_error(L, "sim.pool: groups must be a number or an array of \"A.B\"");
      }
      g[i] = a * 256 + b;
      lua_pop(L, 1);
    }
  } else if (lua_isnil(L, -1) || lua_isinteger(L, -1)) {
    lua_Integer v = lua_isnil(L, -1) ? (lua_Integer)((naddr + 15) / 16) : lua_tointeger(L, -1);
    if (v < 1 || v > 65536) return luaL_error(L, "sim.pool: groups must be 1..65536");
    ng = (size_t)v;
    g = malloc(ng * sizeof *g);
    if (!g) return luaL_error(L, "out of memory");
    for (size_t i = 0; i < ng; i++) g[i] = lab_atk_group_next(s);
  } else {
    return luaL_error(L, "sim.pool: groups must be a number or an array of \"A.B\"");
  }
  lua_pop(L, 1);
  *out = g;
  *n = ng;
  return 0;
}

/* sim.pool{...}: see docs/scenarios.md. */
int lab_make_pool(lua_State *L, sim_t *s, int spec) {
  lua_Integer naddr = (lua_Integer)lab_field_num(L, spec, "addresses", 0);
  if (naddr < 1 || naddr > POOL_MAX_ADDRS)
    return luaL_error(L, "sim.pool: addresses must be 1..%d", POOL_MAX_ADDRS);
  lua_Integer ports = (lua_Integer)lab_field_num(L, spec, "ports", 1);
  if (ports < 1 || ports > 1000) return luaL_error(L, "sim.pool: ports must be 1..1000");
  double live = lab_field_num(L, spec, "live", 1.0);
  if (!(live >= 0 && live <= 1)) return luaL_error(L, "sim.pool: live must be in [0, 1]");
  lua_Integer getaddr = (lua_Integer)lab_field_num(L, spec, "getaddr", 1000);
  if (getaddr < 0 || getaddr > PD_WIRE_MAX_ADDRS)
    return luaL_error(L, "sim.pool: getaddr must be 0..%d", PD_WIRE_MAX_ADDRS);
  lua_Integer hold = (lua_Integer)lab_field_num(L, spec, "hold_inbound", 0);
  if (hold < 0 || hold > 1000) return luaL_error(L, "sim.pool: hold_inbound must be 0..1000");
  double frate = 0;
  lua_Integer fsize = 10;
  lua_getfield(L, spec, "flood");
  if (lua_istable(L, -1)) {
    int ft = lua_gettop(L);
    frate = lab_field_num(L, ft, "rate", 1.0);
    fsize = (lua_Integer)lab_field_num(L, ft, "size", 10);
    if (!(frate > 0) || frate > 1000 || fsize < 1 || fsize > PD_WIRE_MAX_ADDRS)
      return luaL_error(L, "sim.pool: flood wants rate in (0, 1000] and size 1..%d",
                        PD_WIRE_MAX_ADDRS);
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "sim.pool: flood must be a table");
  }
  lua_pop(L, 1);
  /* targets */
  uint32_t *targets = NULL;
  size_t nt = 0;
  lua_getfield(L, spec, "targets");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    nt = (size_t)lua_rawlen(L, -1);
    targets = lua_newuserdatauv(L, (nt ? nt : 1) * sizeof *targets, 0);
    for (size_t i = 0; i < nt; i++) {
      lua_rawgeti(L, -2, (lua_Integer)i + 1);
      targets[i] = lab_checkhost(L, -1);
      if (s->hosts[targets[i]]->attacker || s->hosts[targets[i]]->pool)
        return luaL_error(L, "sim.pool: a target must be an honest host");
      lua_pop(L, 1);
    }
  } else {
    lua_pushnil(L);
  }
  int tslot = lua_gettop(L); /* keeps the targets userdata alive */
  if (hold > 0 && nt == 0) return luaL_error(L, "sim.pool: hold_inbound needs targets");
  if ((size_t)hold * (nt ? nt : 1) > (size_t)naddr)
    return luaL_error(L, "sim.pool: hold_inbound x targets exceeds its addresses");
  int *groups = NULL;
  size_t ng = 0;
  read_groups(L, s, spec, (size_t)naddr, &groups, &ng);

  /* the pool's host slot: an attacker, never `up` */
  sim_pool_t *P = calloc(1, sizeof *P);
  if (!P) {
    free(groups);
    return luaL_error(L, "out of memory");
  }
  sim_host_t *h = lab_host_slot(L, s); /* raises (leaking P, groups) at the limit or out of memory */
  uint32_t hi = (uint32_t)s->nhosts;
  h->attacker = true;
  P->host = hi;
  P->free_c = NO_IDX;
  P->live = live;
  P->getaddr_n = (uint32_t)getaddr;
  pd_rng_t hr;
  pd_rng_seed(&hr, s->seed ^ 0x706f6f6c5f6c6162ull ^ (0x9E3779B97F4A7C15ull * ((uint64_t)hi + 1)));
  pd_rng_fill(&hr, P->id_key, sizeof P->id_key);
  P->live_key = pd_rng_u64(&hr);
  pd_rng_seed(&P->rng, pd_rng_u64(&hr));
  pd_peer_config_default(&P->pcfg);
  P->pcfg.getaddr_on_connect_outbound = false;
  P->pcfg.getaddr_on_connect_inbound = false;
  P->pcfg.getaddr_interval_ms = 0;
  P->pcfg.getaddr_max = 1000000; /* it answers every ask */
  P->pcfg.getaddr_flood = 1000000;
  pd_netmgr_config_t ncfg;
  pd_netmgr_config_default(&ncfg);
  memcpy(P->magic, ncfg.magic, sizeof P->magic);
  snprintf(P->network, sizeof P->network, "%s",
           ncfg.network ? ncfg.network : PD_WIRE_NETWORK_DEFAULT);
  if (frate > 0) {
    P->flood_period = (int64_t)llround(1000.0 / frate);
    if (P->flood_period < 1) P->flood_period = 1;
    P->flood_size = (uint32_t)fsize;
  }
  h->pool = P; /* from here on sim_free releases it */
  if (nt) {
    P->targets = malloc(nt * sizeof *P->targets);
    if (!P->targets) {
      free(groups);
      return luaL_error(L, "out of memory");
    }
    memcpy(P->targets, targets, nt * sizeof *targets);
    P->ntargets = nt;
  }
  s->nhosts++;
  s->npools++;

  /* addresses: round-robin over the groups; in a group, `ports` addresses
   * per IP (ports 26656, 26657, ...) */
  P->lo = s->napool;
  size_t per_group = ((size_t)naddr + ng - 1) / ng;
  size_t ips_per_group = (per_group + (size_t)ports - 1) / (size_t)ports;
  uint32_t *base = malloc(ng * sizeof *base);
  if (!base) {
    free(groups);
    return luaL_error(L, "out of memory");
  }
  for (size_t g = 0; g < ng; g++) {
    base[g] = s->group_fill[groups[g]];
    if ((size_t)base[g] + ips_per_group > 254u * 254u) {
      int gg = groups[g];
      free(base);
      free(groups);
      return luaL_error(L, "sim.pool: group %d.%d is full", gg / 256, gg % 256);
    }
    s->group_fill[groups[g]] += (uint32_t)ips_per_group;
  }
  for (size_t i = 0; i < (size_t)naddr; i++) {
    size_t g = i % ng, w = i / ng;
    uint32_t k = base[g] + (uint32_t)(w / (size_t)ports);
    pd_netaddr_t a;
    memset(&a, 0, sizeof a);
    a.ip[10] = a.ip[11] = 0xff;
    a.ip[12] = (uint8_t)(groups[g] / 256);
    a.ip[13] = (uint8_t)(groups[g] % 256);
    a.ip[14] = (uint8_t)(k / 254);
    a.ip[15] = (uint8_t)(k % 254 + 1);
    a.port = (uint16_t)(SIM_PORT + w % (size_t)ports);
    long p = lab_apool_add(s, &a, hi);
    int rc = p < 0 ? (int)p : lab_addr_insert_pool(s, (uint32_t)p);
    if (rc != 0) {
      free(base);
      free(groups);
      return luaL_error(L, rc == PD_EEXIST ? "sim.pool: address already taken" : "out of memory");
    }
  }
  free(base);
  free(groups);
  P->hi = s->napool;
  h->listen = s->apool[P->lo];
  h->pool_lo = P->lo;
  h->pool_hi = P->hi;

  /* holds: hold_inbound connections to each target, from its first
   * addresses (one address per hold) */
  if (hold > 0) {
    P->nholds = (size_t)hold * nt;
    P->holds = calloc(P->nholds, sizeof *P->holds);
    if (!P->holds) return luaL_error(L, "out of memory");
    for (size_t t = 0; t < nt; t++)
      for (size_t k = 0; k < (size_t)hold; k++) {
        pool_hold_t *hd = &P->holds[t * (size_t)hold + k];
        hd->target = targets[t];
        hd->addr = (uint32_t)(P->lo + t * (size_t)hold + k);
        hd->conn = NO_IDX;
      }
  }
  lua_settop(L, tslot);
  open_pool_mt(L, s);
  uint32_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = hi;
  luaL_setmetatable(L, SIM_POOL_MT);
  if (lab_field_bool(L, spec, "up", true)) pool_start(s, P);
  return 1;
}
