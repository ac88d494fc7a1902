/* scenario_host — the host handle scenarios hold (scenario lab;
 * docs/scenarios.md).
 *
 * Owns: the methods of a host handle (userdata holding the host's index,
 * metatable SIM_HOST_MT): start, stop, restart, is_up, outbound, inbound,
 * book_size, book_capacity, index, addr, id, peers, counters,
 * set_policies, attacker_share, is_attacker; __tostring and __eq.
 * Does not own: the handle itself (lab_checkhost, lab_pushhost: scenario.c),
 * what the methods report or do (hosts.c, measure.c, attackers.c), the
 * `sim` table (scenario.c).
 */
#include "lab.h"

#include <stdlib.h>

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
  sim_t *s = lab_getsim(L);
  atk_share_t as;
  lab_attacker_share(s, lab_checkhost(L, 1), &as);
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
    {"book_size", h_book_size}, {"book_capacity", h_book_capacity}, {"index", h_index},     {"addr", h_addr},
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
