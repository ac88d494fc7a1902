/* scenario_host — the host handle scenarios hold (scenario lab;
 * docs/scenarios.md).
 *
 * Owns: the methods of a host handle (userdata holding the host's index,
 * metatable SIM_HOST_MT): start, stop, restart, is_up, outbound, inbound,
 * book_size, book_capacity, book, index, addr, id, peers, counters,
 * set_policies, attacker_share, is_attacker; __tostring and __eq.
 * Does not own: the handle itself (lab_checkhost, lab_pushhost: scenario.c),
 * what the methods report or do (hosts.c, measure.c, attackers.c), the
 * `sim` table (scenario.c).
 */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static int h_start(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi = lab_checkhost(L, 1);
  char err[512];
  if (lab_host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  return 0;
}

static int h_stop(lua_State *L) {
  lab_host_stop(lab_getsim(L), lab_checkhost(L, 1));
  return 0;
}

static int h_restart(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi = lab_checkhost(L, 1);
  bool anchors = true;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    anchors = lab_field_bool(L, 2, "anchors", true);
  }
  lab_host_stop(s, hi);
  if (!anchors) s->hosts[hi]->nanchors = 0;
  char err[512];
  if (lab_host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  return 0;
}

static int h_is_up(lua_State *L) {
  lua_pushboolean(L, lab_getsim(L)->hosts[lab_checkhost(L, 1)]->up);
  return 1;
}

static int h_outbound(lua_State *L) {
  lua_pushinteger(L, lab_host_outbound(lab_getsim(L)->hosts[lab_checkhost(L, 1)]));
  return 1;
}

static int h_inbound(lua_State *L) {
  lua_pushinteger(L, lab_host_inbound(lab_getsim(L)->hosts[lab_checkhost(L, 1)]));
  return 1;
}

static int h_book_size(lua_State *L) {
  sim_host_t *h = lab_getsim(L)->hosts[lab_checkhost(L, 1)];
  lua_pushinteger(L, h->up ? (lua_Integer)pd_book_size(pd_node_book(h->node)) : 0);
  return 1;
}

/* What its node would dial: book entries with a service endpoint (another
 * host's record, or an address given to it), as GET /v1/dial hands out. */
static int h_dialable(lua_State *L) {
  sim_host_t *h = lab_getsim(L)->hosts[lab_checkhost(L, 1)];
  lua_Integer n = 0;
  if (h->up) {
    pd_book_t *b = pd_node_book(h->node);
    uint32_t bound = pd_book_id_bound(b);
    pd_node_endpoint_t ep;
    for (uint32_t id = 0; id < bound; id++) n += pd_node_dial_endpoint(h->node, id, NULL, &ep);
  }
  lua_pushinteger(L, n);
  return 1;
}

/* Slots in its book's tables (new + tried buckets x 64): the most it can hold. */
static int h_book_capacity(lua_State *L) {
  sim_host_t *h = lab_getsim(L)->hosts[lab_checkhost(L, 1)];
  pd_book_geometry_t g = h->geom;
  if (h->up) pd_book_geometry(pd_node_book(h->node), &g);
  lua_pushinteger(L, (lua_Integer)(g.new_buckets + g.tried_buckets) * PD_BOOK_BUCKET_SIZE);
  return 1;
}

static int h_index(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lab_checkhost(L, 1) + 1);
  return 1;
}

static int h_addr(lua_State *L) {
  char buf[PD_ADDR_STRLEN];
  pd_netaddr_format(&lab_getsim(L)->hosts[lab_checkhost(L, 1)]->listen, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

static int h_id(lua_State *L) {
  char buf[PD_NODE_ID_HEXLEN + 1];
  pd_node_id_format(lab_getsim(L)->hosts[lab_checkhost(L, 1)]->ident.id, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

/* Outbound peers (host handles; addresses that are no simulated host are
 * left out). */
static int h_peers(lua_State *L) {
  sim_t *s = lab_getsim(L);
  sim_host_t *h = s->hosts[lab_checkhost(L, 1)];
  lua_newtable(L);
  if (!h->up) return 1;
  pd_dial_target_t out[64];
  size_t n = pd_netmgr_anchors(h->m, out, 64);
  if (n > 64) n = 64;
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t j = lab_addr_lookup(s, &out[i].addr);
    if (j == NO_IDX) continue;
    lab_pushhost(L, j);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

static int h_counters(lua_State *L) {
  sim_host_t *h = lab_getsim(L)->hosts[lab_checkhost(L, 1)];
  uint64_t frames = h->prev_frames_out, bytes = h->prev_bytes_out, hs = 0, dials_ok = 0, dials = 0;
  uint64_t addrs = 0, crawls = 0;
  if (h->up) {
    pd_netmgr_counters_t c;
    pd_netmgr_counters(h->m, &c);
    for (size_t i = 0; i < PD_WIRE_TYPE_COUNT; i++) frames += c.frames_out[i];
    bytes += c.bytes_out;
    hs = c.handshakes;
    dials_ok = c.dialer.dials[PD_DIAL_OK];
    for (size_t i = 0; i < PD_DIAL_OUTCOME_COUNT; i++) dials += c.dialer.dials[i];
    addrs = c.addrs_received;
    crawls = c.seed_crawls;
  }
  lua_createtable(L, 0, 8);
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
  lua_pushinteger(L, (lua_Integer)addrs);
  lua_setfield(L, -2, "addrs_received");
  lua_pushinteger(L, (lua_Integer)crawls);
  lua_setfield(L, -2, "seed_crawls");
  return 1;
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static int h_attacker_share(lua_State *L) {
  sim_t *s = lab_getsim(L);
  atk_share_t as;
  lab_attacker_share(s, lab_checkhost(L, 1), &as);
  lua_createtable(L, 0, 12);
  set_num(L, "outbound", ratio(as.out_atk, as.out));
  set_num(L, "inbound", ratio(as.in_atk, as.in));
  set_num(L, "all", ratio(as.all_atk, as.all));
  set_int(L, "outbound_peers", as.out);
  set_int(L, "outbound_attackers", as.out_atk);
  set_int(L, "inbound_peers", as.in);
  set_int(L, "inbound_attackers", as.in_atk);
  set_int(L, "peers", as.all);
  set_int(L, "attackers", as.all_atk);
  lua_pushboolean(L, as.eclipsed);
  lua_setfield(L, -2, "eclipsed");
  lua_pushboolean(L, as.isolated);
  lua_setfield(L, -2, "isolated");
  return 1;
}

/* Its address book as an eclipse researcher reads it (docs/scenarios.md):
 * table counts and capacities, attacker entries per table (a walk over the
 * entries, each looked up in O(1): lab_addr_is_attacker), honest tried
 * entries and those whose host is up and reachable now (p * h of Heilman's
 * bound), pending tried collisions, and the book's and the network
 * manager's counters since the host last started. */
static int h_book(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi = lab_checkhost(L, 1);
  sim_host_t *h = s->hosts[hi];
  pd_book_geometry_t g = h->geom;
  uint64_t n_new = 0, n_tried = 0, new_atk = 0, tried_atk = 0, tried_up = 0, ncoll = 0,
           coll_atk = 0;
  pd_book_counters_t bc;
  memset(&bc, 0, sizeof bc);
  pd_netmgr_counters_t nc;
  memset(&nc, 0, sizeof nc);
  if (h->up) {
    (void)lab_aset_sync(s); /* on failure lookups stay right, only slower */
    const pd_book_t *b = pd_node_book(h->node);
    pd_book_geometry(b, &g);
    n_new = pd_book_count_new(b);
    n_tried = pd_book_count_tried(b);
    uint32_t bound = pd_book_id_bound(b);
    for (uint32_t id = 0; id < bound; id++) {
      pd_netaddr_t a;
      bool tried;
      if (pd_book_entry_addr(b, id, &a, &tried) != 0) continue;
      if (lab_addr_is_attacker(s, &a)) {
        if (tried) tried_atk++;
        else new_atk++;
      } else if (tried) {
        uint32_t j = lab_addr_lookup(s, &a);
        if (j != NO_IDX && s->hosts[j]->up && lab_reachable(s, hi, j)) tried_up++;
      }
    }
    uint32_t coll[PD_BOOK_TRIED_COLLISION_SIZE];
    ncoll = pd_book_collisions(b, coll, PD_BOOK_TRIED_COLLISION_SIZE);
    for (size_t k = 0; k < ncoll; k++) {
      pd_netaddr_t a;
      if (pd_book_entry_addr(b, coll[k], &a, NULL) == 0 && lab_addr_is_attacker(s, &a)) coll_atk++;
    }
    pd_book_counters(b, &bc);
    pd_netmgr_counters(h->m, &nc);
  }
  uint64_t new_cap = (uint64_t)g.new_buckets * PD_BOOK_BUCKET_SIZE;
  uint64_t tried_cap = (uint64_t)g.tried_buckets * PD_BOOK_BUCKET_SIZE;
  lua_createtable(L, 0, 24);
  set_int(L, "new", n_new);
  set_int(L, "tried", n_tried);
  set_int(L, "new_capacity", new_cap);
  set_int(L, "tried_capacity", tried_cap);
  set_int(L, "new_attacker", new_atk);
  set_int(L, "tried_attacker", tried_atk);
  set_num(L, "new_attacker_share", ratio(new_atk, n_new));
  set_num(L, "tried_attacker_share", ratio(tried_atk, n_tried));
  set_int(L, "tried_honest", n_tried - tried_atk);
  set_int(L, "tried_honest_up", tried_up);
  /* (1 - p*h/T)^8: p*h = honest tried entries up now, T = tried slots */
  set_num(L, "heilman_bound", pow(1.0 - ratio(tried_up, tried_cap), 8));
  set_int(L, "collisions", ncoll);
  set_int(L, "collisions_attacker", coll_atk);
  lua_createtable(L, 0, 12); /* test-before-evict */
  set_int(L, "recorded", bc.collisions);
  set_int(L, "full", bc.collisions_full);
  set_int(L, "kept", bc.tbe_kept_connected + bc.tbe_kept_policy);
  set_int(L, "kept_answered", bc.tbe_kept_connected);
  set_int(L, "kept_policy", bc.tbe_kept_policy);
  set_int(L, "replaced", bc.tbe_replaced_failed + bc.tbe_replaced_timeout + bc.tbe_replaced_policy);
  set_int(L, "replaced_failed", bc.tbe_replaced_failed);
  set_int(L, "replaced_timeout", bc.tbe_replaced_timeout);
  set_int(L, "replaced_policy", bc.tbe_replaced_policy);
  set_int(L, "slot_free", bc.tbe_slot_free);
  set_int(L, "dropped", bc.tbe_dropped);
  lua_setfield(L, -2, "tbe");
  lua_createtable(L, 0, 4); /* the new table's slot contests, tried demotions */
  set_int(L, "replaced", bc.new_replaced);
  set_int(L, "kept", bc.new_kept);
  set_int(L, "evicted", bc.new_evicted);
  set_int(L, "tried_demoted", bc.tried_demoted);
  lua_setfield(L, -2, "evictions");
  lua_createtable(L, 0, 3);
  set_int(L, "tried", nc.dialer.dials_started[PD_DIAL_REASON_FEELER]);
  set_int(L, "ok", nc.feelers_done);
  set_int(L, "failed", nc.feelers_failed);
  lua_setfield(L, -2, "feelers");
  return 1;
}

static int h_is_attacker(lua_State *L) {
  lua_pushboolean(L, lab_getsim(L)->hosts[lab_checkhost(L, 1)]->attacker);
  return 1;
}

static int h_set_policies(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi = lab_checkhost(L, 1);
  sim_host_t *h = s->hosts[hi];
  const char *dir = luaL_optstring(L, 2, NULL);
  free(h->policy_dir);
  h->policy_dir = dir ? lab_resolve_path(s, dir) : NULL;
  if (!h->up) return 0;
  char err[700];
  if (h->policy_dir) {
    if (lab_host_load_policies(s, h, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  } else if (pd_node_policy_load(h->node, NULL, 0, lab_now_s(s), err, sizeof err) != 0) {
    return luaL_error(L, "%s", err);
  }
  return 0;
}

static int h_tostring(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi = lab_checkhost(L, 1);
  char buf[PD_ADDR_STRLEN];
  pd_netaddr_format(&s->hosts[hi]->listen, buf, sizeof buf);
  lua_pushfstring(L, "host#%d(%s)", (int)hi + 1, buf);
  return 1;
}

static int h_eq(lua_State *L) {
  lua_pushboolean(L, lab_checkhost(L, 1) == lab_checkhost(L, 2));
  return 1;
}

static const luaL_Reg host_methods[] = {
    {"start", h_start},       {"stop", h_stop},         {"restart", h_restart},
    {"is_up", h_is_up},       {"outbound", h_outbound}, {"inbound", h_inbound},
    {"book_size", h_book_size}, {"dialable", h_dialable}, {"book_capacity", h_book_capacity}, {"book", h_book}, {"index", h_index},     {"addr", h_addr},
    {"id", h_id},             {"peers", h_peers},       {"counters", h_counters},
    {"set_policies", h_set_policies}, {"attacker_share", h_attacker_share},
    {"is_attacker", h_is_attacker},   {NULL, NULL}};

/* The host handle's metatable: the methods, __tostring, __eq. */
void lab_open_host_mt(lua_State *L, sim_t *s) {
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
}
