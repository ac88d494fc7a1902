/* scenario_dht — the DHT's Lua API in the lab (scenario lab;
 * docs/scenarios.md "DHT").
 *
 * Owns: the host methods h:dht() (its engine's table, sessions, lookups,
 * rejections and packet counters), h:dht_lookup(target [, fn]) (a lookup
 * started now; fn gets the result when the engine reports LOOKUP_DONE, as a
 * callback scheduled at that virtual time), h:dht_table() (the routing
 * table's nodes, each classified as the attacker's or not by its address);
 * sim.dht(on) (whether hosts created from then on run the DHT) and
 * sim.dht_stats([hosts]) (over up honest hosts running it, plus the
 * h:dht_lookup() lookups of the whole run: success rate, mean and p99 hops);
 * the lookups' callbacks and the run's lookup histogram.
 * Does not own: the engines and their datagrams (labdht.c), the protocol
 * (host/core/dht.c), the host handle (scenario.c, scenario_host.c).
 */
#include "lab.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_hex(lua_State *L, const char *k, const uint8_t id[PD_NODE_ID_LEN]) {
  char hex[PD_NODE_ID_HEXLEN + 1];
  pd_node_id_format(id, hex, sizeof hex);
  lua_pushstring(L, hex);
  lua_setfield(L, -2, k);
}

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

/* ---- lookups and their callbacks ---- */

/* The scheduled callback: upvalue 1 the scenario's function, 2 the result. */
static int call_with_result(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_call(L, 1, 0);
  return 0;
}

static void push_lookup(lua_State *L, const pd_dht_lookup_info_t *in) {
  lua_createtable(L, 0, 10);
  lua_pushboolean(L, in->found);
  lua_setfield(L, -2, "found");
  set_int(L, "hops", in->hops);
  set_int(L, "queries", in->queries);
  set_int(L, "answered", in->answered);
  set_int(L, "failed", in->failed);
  set_int(L, "time_ms", (uint64_t)(in->ended_ms - in->started_ms));
  set_int(L, "results", in->nresults);
  set_hex(L, "target", in->target);
  if (in->nresults) {
    set_hex(L, "closest", in->results[0].id);
    char a[PD_ADDR_STRLEN];
    pd_netaddr_format(&in->results[0].ep, a, sizeof a);
    lua_pushstring(L, a);
    lua_setfield(L, -2, "closest_addr");
  }
}

void lab_dht_lookup_ended(sim_t *s, uint32_t hi, uint64_t id) {
  sim_host_t *h = s->hosts[hi];
  size_t w = 0;
  while (w < h->nwaits && h->waits[w].id != id) w++;
  if (w == h->nwaits) return; /* the discovery loop's own */
  int ref = h->waits[w].ref;
  h->waits[w] = h->waits[--h->nwaits];
  pd_dht_lookup_info_t in;
  if (!pd_dht_lookup_get(h->dht, id, &in)) {
    if (ref != LUA_NOREF) luaL_unref(s->L, LUA_REGISTRYINDEX, ref);
    return;
  }
  s->dht_user_done++;
  if (in.found) s->dht_user_found++;
  s->dht_hops[in.hops < LAB_DHT_HOPS_MAX ? in.hops : LAB_DHT_HOPS_MAX]++;
  if (ref != LUA_NOREF) {
    lua_State *L = s->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    push_lookup(L, &in);
    lua_pushcclosure(L, call_with_result, 2);
    int cref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    /* Run from the event loop (at this virtual ms, after what runs now):
     * the callback may stop this host or start lookups without pulling the
     * engine from under its caller. */
    if (lab_push_ev(s, s->now, EV_LUA, (uint32_t)cref, 0, 0, 0, NULL) != 0)
      luaL_unref(L, LUA_REGISTRYINDEX, cref);
  }
  pd_dht_lookup_release(h->dht, id);
}

static sim_host_t *dht_host(lua_State *L, uint32_t *hi) {
  sim_t *s = lab_getsim(L);
  *hi = lab_checkhost(L, 1);
  sim_host_t *h = s->hosts[*hi];
  return h->up && h->dht ? h : NULL;
}

/* h:dht_lookup(target [, fn]) -> lookup id, or nil and a message. */
static int h_dht_lookup(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi;
  sim_host_t *h = dht_host(L, &hi);
  uint8_t target[PD_NODE_ID_LEN];
  if (luaL_testudata(L, 2, SIM_HOST_MT)) {
    memcpy(target, s->hosts[lab_checkhost(L, 2)]->ident.id, PD_NODE_ID_LEN);
  } else {
    size_t tl = 0;
    const char *t = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &tl) : NULL;
    if (!t || pd_node_id_parse(t, tl, target) != 0)
      return luaL_argerror(L, 2, "a host or a node id (40 hex digits)");
  }
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!h) {
    lua_pushnil(L);
    lua_pushstring(L, "the host runs no DHT (stopped, or dht = false)");
    return 2;
  }
  if (h->nwaits == h->waitcap) {
    size_t nc = h->waitcap ? h->waitcap * 2 : 4;
    sim_dht_wait_t *nw = realloc(h->waits, nc * sizeof *nw);
    if (!nw) return luaL_error(L, "out of memory");
    h->waits = nw;
    h->waitcap = nc;
  }
  uint64_t id = 0;
  int rc = pd_dht_lookup_start(h->dht, target, lab_now_ms(s), &id);
  if (rc < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == PD_EFULL ? "too many lookups running"
                      : pd_dht_passive(h->dht) ? "answer-only DHT (max_outbound = 0)"
                                               : pd_strerror(rc));
    return 2;
  }
  int ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 3)) {
    lua_pushvalue(L, 3);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  h->waits[h->nwaits++] = (sim_dht_wait_t){.id = id, .ref = ref};
  lab_dht_after(s, hi); /* its first queries go out now */
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* ---- reading a host's DHT ---- */

static size_t table_attackers(sim_t *s, const pd_dht_table_t *t) {
  (void)lab_aset_sync(s); /* on failure lookups stay right, only slower */
  size_t n = 0;
  for (unsigned b = 1; b <= PD_DHTT_BUCKETS; b++) {
    size_t bn = 0;
    const pd_dht_entry_t *e = pd_dht_table_bucket(t, b, &bn);
    for (size_t k = 0; k < bn; k++) n += lab_addr_is_attacker(s, &e[k].ep);
  }
  return n;
}

/* h:dht() -> its engine's state and counters since it last started; nil
 * when it runs none. */
static int h_dht(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi;
  sim_host_t *h = dht_host(L, &hi);
  if (!h) {
    lua_pushnil(L);
    return 1;
  }
  const pd_dht_stats_t *st = pd_dht_stats(h->dht);
  const pd_dht_table_t *t = pd_dht_table(h->dht);
  unsigned buckets = 0;
  for (unsigned b = 1; b <= PD_DHTT_BUCKETS; b++) {
    size_t bn = 0;
    (void)pd_dht_table_bucket(t, b, &bn);
    buckets += bn > 0;
  }
  uint64_t pin = 0, pout = 0, rej = 0;
  for (size_t k = 0; k < 3; k++) {
    pin += st->packets_in[k];
    pout += st->packets_out[k];
  }
  lua_createtable(L, 0, 20);
  set_int(L, "nodes", pd_dht_table_size(t));
  set_int(L, "replacements", pd_dht_table_cached(t));
  set_int(L, "buckets", buckets);
  set_int(L, "attackers", table_attackers(s, t));
  set_int(L, "sessions", pd_dht_sessions(h->dht));
  set_int(L, "requests", pd_dht_requests_out(h->dht));
  lua_pushboolean(L, pd_dht_passive(h->dht));
  lua_setfield(L, -2, "passive");
  lua_createtable(L, 0, 5);
  set_int(L, "started", st->lookups_started);
  set_int(L, "done", st->lookups_done);
  set_int(L, "found", st->lookups_found);
  set_int(L, "running", pd_dht_lookups_running(h->dht));
  set_num(L, "mean_hops", ratio(st->lookup_hops_sum, st->lookups_done));
  lua_setfield(L, -2, "lookups");
  set_int(L, "records_found", st->records_found);
  lua_createtable(L, 0, 4);
  for (int r = 0; r < PD_DHT_R_COUNT; r++) {
    if (!st->rejected[r]) continue;
    rej += st->rejected[r];
    set_int(L, pd_dht_reason_name(r), st->rejected[r]);
  }
  lua_setfield(L, -2, "rejected");
  set_int(L, "rejected_total", rej);
  lua_createtable(L, 0, 2);
  set_int(L, "ok", st->handshakes_ok);
  set_int(L, "failed", st->handshakes_failed);
  lua_setfield(L, -2, "handshakes");
  set_int(L, "packets_in", pin);
  set_int(L, "packets_out", pout);
  set_int(L, "bytes_in", st->bytes_in);
  set_int(L, "bytes_out", st->bytes_out);
  set_int(L, "timeouts", st->timeouts);
  set_int(L, "table_added", st->table_added);
  set_int(L, "table_removed", st->table_removed);
  set_int(L, "table_refused", st->table_refused);
  return 1;
}

/* h:dht_table() -> {{id, addr, bucket, attacker}, ...}: buckets nearest-last
 * (1..160 by log2 distance), each least recently seen first. */
static int h_dht_table(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint32_t hi;
  sim_host_t *h = dht_host(L, &hi);
  lua_newtable(L);
  if (!h) return 1;
  (void)lab_aset_sync(s);
  const pd_dht_table_t *t = pd_dht_table(h->dht);
  lua_Integer n = 0;
  for (unsigned b = 1; b <= PD_DHTT_BUCKETS; b++) {
    size_t bn = 0;
    const pd_dht_entry_t *e = pd_dht_table_bucket(t, b, &bn);
    for (size_t k = 0; k < bn; k++) {
      lua_createtable(L, 0, 4);
      set_hex(L, "id", e[k].id);
      char a[PD_ADDR_STRLEN];
      pd_netaddr_format(&e[k].ep, a, sizeof a);
      lua_pushstring(L, a);
      lua_setfield(L, -2, "addr");
      set_int(L, "bucket", b);
      lua_pushboolean(L, lab_addr_is_attacker(s, &e[k].ep));
      lua_setfield(L, -2, "attacker");
      lua_rawseti(L, -2, ++n);
    }
  }
  return 1;
}

/* ---- sim.dht, sim.dht_stats ---- */

static int l_dht(lua_State *L) {
  sim_t *s = lab_getsim(L);
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  s->dht_default = lua_toboolean(L, 1);
  return 0;
}

static void stats_add(const sim_host_t *h, size_t *n, uint64_t *sum, size_t *mn, size_t *mx,
                      uint64_t acc[6]) {
  const pd_dht_table_t *t = pd_dht_table(h->dht);
  const pd_dht_stats_t *st = pd_dht_stats(h->dht);
  size_t sz = pd_dht_table_size(t);
  if (*n == 0 || sz < *mn) *mn = sz;
  if (*n == 0 || sz > *mx) *mx = sz;
  (*n)++;
  *sum += sz;
  acc[0] += pd_dht_table_cached(t);
  acc[1] += st->records_found;
  for (size_t k = 0; k < 3; k++) {
    acc[2] += st->packets_in[k];
    acc[3] += st->packets_out[k];
  }
  acc[4] += st->lookups_done;
  acc[5] += st->handshakes_ok;
}

static int l_dht_stats(lua_State *L) {
  sim_t *s = lab_getsim(L);
  size_t n = 0, mn = 0, mx = 0;
  uint64_t sum = 0, acc[6] = {0};
  if (lua_istable(L, 1)) {
    lua_Integer len = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_rawgeti(L, 1, i);
      const sim_host_t *h = s->hosts[lab_checkhost(L, -1)];
      lua_pop(L, 1);
      if (h->up && h->dht) stats_add(h, &n, &sum, &mn, &mx, acc);
    }
  } else {
    for (size_t i = 0; i < s->nhosts; i++) {
      const sim_host_t *h = s->hosts[i];
      if (h->up && h->dht && !h->attacker) stats_add(h, &n, &sum, &mn, &mx, acc);
    }
  }
  uint64_t p99 = 0, cum = 0;
  for (size_t k = 0; k <= LAB_DHT_HOPS_MAX && s->dht_user_done; k++) {
    cum += s->dht_hops[k];
    if ((double)cum >= 0.99 * (double)s->dht_user_done) {
      p99 = k;
      break;
    }
  }
  uint64_t hops_sum = 0;
  for (size_t k = 0; k <= LAB_DHT_HOPS_MAX; k++) hops_sum += k * s->dht_hops[k];
  lua_createtable(L, 0, 16);
  set_int(L, "hosts", n);
  set_num(L, "table_mean", n ? (double)sum / (double)n : 0.0);
  set_int(L, "table_min", mn);
  set_int(L, "table_max", mx);
  set_num(L, "replacements_mean", n ? (double)acc[0] / (double)n : 0.0);
  set_int(L, "records_found", acc[1]);
  set_int(L, "packets_in", acc[2]);
  set_int(L, "packets_out", acc[3]);
  set_int(L, "engine_lookups", acc[4]);
  set_int(L, "handshakes", acc[5]);
  set_int(L, "lookups_done", s->dht_user_done);
  set_int(L, "lookups_found", s->dht_user_found);
  set_num(L, "success_rate", ratio(s->dht_user_found, s->dht_user_done));
  set_num(L, "mean_hops", ratio(hops_sum, s->dht_user_done));
  set_int(L, "p99_hops", p99);
  set_int(L, "datagrams_sent", s->dht_sent);
  set_int(L, "datagrams_dropped", s->dht_dropped);
  return 1;
}

static const luaL_Reg host_methods[] = {
    {"dht", h_dht}, {"dht_lookup", h_dht_lookup}, {"dht_table", h_dht_table}, {NULL, NULL}};

static const luaL_Reg sim_funcs[] = {{"dht", l_dht}, {"dht_stats", l_dht_stats}, {NULL, NULL}};

/* Into the host metatable's __index and the sim table on top of the stack. */
void lab_open_dht_api(lua_State *L, sim_t *s) {
  lua_pushlightuserdata(L, s);
  luaL_setfuncs(L, sim_funcs, 1);
  luaL_getmetatable(L, SIM_HOST_MT);
  lua_getfield(L, -1, "__index");
  lua_pushlightuserdata(L, s);
  luaL_setfuncs(L, host_methods, 1);
  lua_pop(L, 2);
}
