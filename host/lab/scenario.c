/* scenario — the scenario's Lua state and the `sim` API it sees (scenario
 * lab; docs/scenarios.md).
 *
 * Owns: the Lua 5.4 state (base, table, string, math, utf8 and coroutine
 * libraries; no io, os, debug, package; math.random over the run's seeded
 * stream; os.time and os.clock on the virtual clock), protected calls of
 * scenario code and callbacks (a failure or a failed sim.assert stops the
 * run), the `sim` table: hosts, attackers, link model, auth, scheduled
 * callbacks (sim.at, sim.every: EV_LUA), sim.run, partitions, names,
 * results (Lua values <-> JSON, keys sorted), series, time_to watches
 * (EV_WATCH), assertions, parameters; the Lua helpers the other files use.
 * Does not own: the host handle's methods (scenario_host.c), the
 * measurements behind sim.connectivity, sim.diameter and sim.stats
 * (measure.c), the run loop behind sim.run (sim.c), creating hosts and
 * attackers (hosts.c, attackers.c), writing results (output.c).
 */
#include "lab.h"

#include "err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* ---- plumbing: the run, host handles, protected calls, spec fields ---- */

sim_t *lab_getsim(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

uint32_t lab_checkhost(lua_State *L, int i) {
  uint32_t *u = luaL_checkudata(L, i, SIM_HOST_MT);
  return *u;
}

void lab_pushhost(lua_State *L, uint32_t idx) {
  uint32_t *u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = idx;
  luaL_setmetatable(L, SIM_HOST_MT);
}

/* Traceback handler; an assertion's message goes through untouched. */
static int msgh(lua_State *L) {
  sim_t *s = lab_getsim(L);
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
bool lab_pcall_top(sim_t *s, int nres, bool callback) {
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

void lab_lua_fire(sim_t *s, const pd_sim_event_t *e) {
  if (s->failed) return;
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, (lua_Integer)e->a);
  lab_pcall_top(s, 0, true);
  if (e->x > 0 && !s->failed)
    lab_push_ev(s, s->now + (int64_t)e->x, EV_LUA, e->a, 0, 0, e->x, NULL);
  else
    luaL_unref(s->L, LUA_REGISTRYINDEX, (int)e->a);
}

void lab_watch_fire(sim_t *s, uint32_t wi) {
  if (s->failed) return;
  sim_watch_t *w = &s->watches[wi];
  lua_rawgeti(s->L, LUA_REGISTRYINDEX, w->ref);
  if (!lab_pcall_top(s, 1, true)) return;
  bool ok = lua_toboolean(s->L, -1);
  lua_pop(s->L, 1);
  if (ok) {
    json_object_set_new(s->results, w->name, json_real((double)s->now / 1000.0));
    luaL_unref(s->L, LUA_REGISTRYINDEX, w->ref);
    w->ref = LUA_NOREF;
    return;
  }
  lab_push_ev(s, s->now + w->period, EV_WATCH, wi, 0, 0, 0, NULL);
}

static int64_t secs_to_ms(lua_State *L, int i) {
  double v = luaL_checknumber(L, i);
  if (!(v >= 0) || v > 1e12) luaL_argerror(L, i, "time must be >= 0 seconds");
  return (int64_t)llround(v * 1000.0);
}

const char *lab_field_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *v = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  return v; /* valid while the table holds it */
}

double lab_field_num(lua_State *L, int t, const char *k, double dflt) {
  lua_getfield(L, t, k);
  double v = lua_isnil(L, -1) ? dflt : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

bool lab_field_bool(lua_State *L, int t, const char *k, bool dflt) {
  lua_getfield(L, t, k);
  bool v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- the sim table ---- */

static int new_host(lua_State *L, sim_t *s, int spec) {
  return lab_host_new(L, s, spec, -1, false);
}

static int l_host(lua_State *L) {
  sim_t *s = lab_getsim(L);
  if (lua_isnoneornil(L, 1)) return new_host(L, s, 0);
  luaL_checktype(L, 1, LUA_TTABLE);
  return new_host(L, s, 1);
}

static int l_hosts(lua_State *L) {
  sim_t *s = lab_getsim(L);
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

static int l_attacker(lua_State *L) {
  sim_t *s = lab_getsim(L);
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lab_make_attackers(L, s, 1, 1);
  lua_rawgeti(L, -1, 1);
  return 1;
}

static int l_attackers(lua_State *L) {
  sim_t *s = lab_getsim(L);
  lua_Integer n = luaL_checkinteger(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  return lab_make_attackers(L, s, n, 2);
}

static int l_pool(lua_State *L) {
  sim_t *s = lab_getsim(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  return lab_make_pool(L, s, 1);
}

static int l_auth(lua_State *L) {
  sim_t *s = lab_getsim(L);
  const char *k = luaL_checkstring(L, 1);
  if (strcmp(k, "ed25519") == 0) s->real_auth = true;
  else if (strcmp(k, "keyed_hash") == 0) s->real_auth = false;
  else return luaL_error(L, "sim.auth: \"ed25519\" or \"keyed_hash\", not \"%s\"", k);
  return 0;
}

static int l_link(lua_State *L) {
  sim_t *s = lab_getsim(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  s->lat_ms = lab_field_num(L, 1, "latency_ms", s->lat_ms);
  s->jitter_ms = lab_field_num(L, 1, "jitter_ms", s->jitter_ms);
  s->loss = lab_field_num(L, 1, "loss", s->loss);
  s->connect_timeout_ms = (int64_t)lab_field_num(L, 1, "connect_timeout_ms",
                                                 (double)s->connect_timeout_ms);
  const char *d = lab_field_str(L, 1, "dist");
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
  sim_t *s = lab_getsim(L);
  int64_t t = secs_to_ms(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lab_push_ev(s, t, EV_LUA, (uint32_t)ref, 0, 0, 0, NULL);
  return 0;
}

static int l_every(lua_State *L) {
  sim_t *s = lab_getsim(L);
  int64_t p = secs_to_ms(L, 1);
  if (p < 1) return luaL_argerror(L, 1, "period must be >= 0.001 s");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lab_push_ev(s, s->now + p, EV_LUA, (uint32_t)ref, 0, 0, (uint64_t)p, NULL);
  return 0;
}

static int l_run(lua_State *L) {
  sim_t *s = lab_getsim(L);
  int64_t until = secs_to_ms(L, 1);
  if (s->in_callback) return luaL_error(L, "sim.run cannot be called from a scheduled callback");
  if (s->failed) return 0;
  if (!lab_run_until(s, until)) {
    lua_pushstring(L, s->err);
    return lua_error(L);
  }
  return 0;
}

/* sim.branch(): the end of what every point of a sweep's trial shares. */
static int l_branch(lua_State *L) {
  sim_t *s = lab_getsim(L);
  if (s->in_callback) return luaL_error(L, "sim.branch cannot be called from a scheduled callback");
  if (s->branched) return luaL_error(L, "sim.branch() runs once per scenario");
  s->branched = true;
  if (!s->o->branch) return 0;
  const char *const *params = s->params;
  size_t n = s->nparams;
  if (s->log) fflush(s->log);
  int rc = s->o->branch(s->o->branch_ctx, s->now, s->swept_read, &params, &n);
  if (rc < 0) return luaL_error(L, "sim.branch(): %s", pd_strerror(rc));
  s->params = params;
  s->nparams = n;
  return 0;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)lab_getsim(L)->now / 1000.0);
  return 1;
}

static int l_partition(lua_State *L) {
  sim_t *s = lab_getsim(L);
  int n = lua_gettop(L);
  for (size_t i = 0; i < s->nhosts; i++) s->hosts[i]->part = 0;
  for (int k = 1; k <= n; k++) {
    luaL_checktype(L, k, LUA_TTABLE);
    lua_Integer len = (lua_Integer)lua_rawlen(L, k);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_rawgeti(L, k, i);
      s->hosts[lab_checkhost(L, -1)]->part = k;
      lua_pop(L, 1);
    }
  }
  return 0;
}

static int l_heal(lua_State *L) {
  sim_t *s = lab_getsim(L);
  for (size_t i = 0; i < s->nhosts; i++) s->hosts[i]->part = 0;
  return 0;
}

static int l_dns(lua_State *L) {
  sim_t *s = lab_getsim(L);
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
    e->hosts[i] = lab_checkhost(L, -1);
    lua_pop(L, 1);
  }
  s->nnames++;
  return 0;
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
  sim_t *s = lab_getsim(L);
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
  sim_t *s = lab_getsim(L);
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
  sim_t *s = lab_getsim(L);
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
  lab_push_ev(s, s->now, EV_WATCH, (uint32_t)s->nwatches, 0, 0, 0, NULL);
  s->nwatches++;
  return 0;
}

static int l_assert(lua_State *L) {
  sim_t *s = lab_getsim(L);
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
  sim_t *s = lab_getsim(L);
  size_t nl = 0;
  const char *name = luaL_checklstring(L, 1, &nl);
  const char *val = NULL;
  for (size_t i = 0; i < s->nparams; i++) {
    const char *p = s->params[i];
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') val = p + nl + 1;
  }
  if (!s->branched)
    for (size_t i = 0; i < s->o->nswept && i < 32; i++)
      if (strcmp(s->o->swept[i], name) == 0) s->swept_read |= 1u << i;
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
  sim_t *s = lab_getsim(L);
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
  sim_t *s = lab_getsim(L);
  pd_rng_seed(&s->lua_rng, (uint64_t)luaL_optinteger(L, 1, 0) ^ s->seed);
  return 0;
}

static int l_os_time(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lab_now_s(lab_getsim(L)));
  return 1;
}

/* ---- the state ---- */

static const luaL_Reg sim_funcs[] = {
    {"host", l_host},         {"hosts", l_hosts},       {"link", l_link},
    {"at", l_at},             {"every", l_every},       {"run", l_run},
    {"now", l_now},           {"partition", l_partition}, {"heal", l_heal},
    {"dns", l_dns},           {"connectivity", lab_l_connectivity}, {"stats", lab_l_stats},
    {"diameter", lab_l_diameter},
    {"result", l_result},     {"record", l_record},     {"time_to", l_time_to},
    {"assert", l_assert},     {"param", l_param},       {"attacker", l_attacker},
    {"attackers", l_attackers}, {"auth", l_auth}, {"pool", l_pool}, {"branch", l_branch}, {NULL, NULL}};

static void open_lib(lua_State *L, const char *name, lua_CFunction f) {
  luaL_requiref(L, name, f, 1);
  lua_pop(L, 1);
}

/* Build the scenario state (run under pcall: setup may raise). */
int lab_setup_state(lua_State *L) {
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

  lab_open_host_mt(L, s);

  lua_createtable(L, 0, 24);
  lua_pushlightuserdata(L, s);
  luaL_setfuncs(L, sim_funcs, 1);
  lab_open_dht_api(L, s); /* sim.dht, sim.dht_stats, h:dht*() (scenario_dht.c) */
  lua_pushinteger(L, (lua_Integer)s->seed);
  lua_setfield(L, -2, "seed");
  lua_pushstring(L, s->script_dir);
  lua_setfield(L, -2, "script_dir");
  lua_setglobal(L, "sim");
  return 0;
}
