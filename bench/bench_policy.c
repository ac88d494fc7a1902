/* bench_policy — figures for the Lua policy host.
 *
 * Builds a full book (as bench_addrbook's (b): the new table filled with
 * random routable IPv4 addresses from random sources, ~16,000 moved to tried,
 * new refilled), loads the policy set from a directory (argv: DIR, default
 * PEERD_POLICY_DIR; an embedded 85/15 select policy and simple score /
 * reputation policies stand in for files that are not there) and reports:
 *   ns per select(8) through the Lua policy vs pd_book_select (C default),
 *   ns per score call, ns per on_event call,
 *   ms per (re)load of the set, bytes held by the policy state, and what a
 *   call costs in the Lua VM itself (a pcall each under a count hook, as the
 *   host calls hooks, against no hook and against one pcall for all).
 * `--quick` runs a small book and few iterations (< 2 s) for the suite.
 * Times come from clock_gettime(CLOCK_MONOTONIC); nothing is asserted.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "err.h"
#include "policy.h"

#define NOW ((int64_t)1700000000)

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t mono_clock(void *ud) {
  (void)ud;
  return (uint64_t)now_ns();
}

static void report(const char *what, size_t n, double ns_total) {
  double per = ns_total / (double)(n ? n : 1);
  printf("  %-40s N=%-8zu %10.1f ns/op %14.0f ops/s\n", what, n, per, per > 0 ? 1e9 / per : 0.0);
}

/* ---- what a call costs in the Lua VM itself ---------------------------------------------- */

/* A ten-instruction function of (userdata, number), the shape of a pex
 * accept, called N times in a bare state: with a pcall each under a count
 * hook (as run_call calls a hook: the budget's hook makes the VM stop at
 * every instruction), with a pcall each and no hook, and all N inside one
 * pcall with the hook re-armed per call (a batched accept). */
static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)L;
  (void)ar;
}
/* The function under test is upvalue 1 of these closures. */
static int lc_one(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_newuserdatauv(L, 136, 4);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  lua_settop(L, 0);
  return 0;
}
static int lc_loop(lua_State *L) {
  lua_Integer n = lua_tointeger(L, 1);
  for (lua_Integer i = 0; i < n; i++) {
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_newuserdatauv(L, 136, 4);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    lua_sethook(L, NULL, 0, 0);
  }
  lua_settop(L, 0);
  return 0;
}
static int lc_msgh(lua_State *L) {
  (void)L;
  return 1;
}
static void lua_cost(size_t n) {
  lua_State *L = luaL_newstate();
  if (!L) return;
  luaL_openlibs(L);
  if (luaL_dostring(L, "return function(a, b) if b == nil then return false end "
                       "if a == nil then return false end local x = b + 1 "
                       "if x > 2 then return true end return false end") != LUA_OK) {
    lua_close(L);
    return;
  }
  int fn = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
  lua_pushcclosure(L, lc_one, 1);
  int one = luaL_ref(L, LUA_REGISTRYINDEX); /* made once: the loop pushes it as a value */
  for (int mode = 0; mode < 2; mode++) {
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
      lua_settop(L, 0);
      lua_pushcfunction(L, lc_msgh);
      lua_rawgeti(L, LUA_REGISTRYINDEX, one);
      if (mode == 0) lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);
      (void)lua_pcall(L, 0, 0, 1);
      lua_sethook(L, NULL, 0, 0);
    }
    report(mode == 0 ? "Lua call: a pcall each, count hook" : "Lua call: a pcall each, no hook", n,
           now_ns() - t0);
  }
  double t0 = now_ns();
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
  lua_pushcclosure(L, lc_loop, 1);
  lua_pushinteger(L, (lua_Integer)n);
  (void)lua_pcall(L, 1, 0, 0);
  report("Lua call: one pcall for all, count hook", n, now_ns() - t0);
  lua_close(L);
}

/* ---- a full book (filler as bench_addrbook) --------------------------------------- */

static void rand_v4(pd_rng_t *r, pd_netaddr_t *a) {
  memset(a->ip, 0, 10);
  a->ip[10] = a->ip[11] = 0xff;
  uint32_t v = (uint32_t)pd_rng_u64(r);
  a->ip[12] = (uint8_t)(1 + (v >> 24) % 223);
  a->ip[13] = (uint8_t)(v >> 16);
  a->ip[14] = (uint8_t)(v >> 8);
  a->ip[15] = (uint8_t)v;
  a->port = (uint16_t)(1 + pd_rng_range(r, 65535));
}

static pd_book_t *full_book(pd_rng_t *rng, size_t max_adds) {
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i * 37 + 11);
  pd_book_t *b = NULL;
  if (pd_book_create(&b, key, rng, 0) != 0) {
    fprintf(stderr, "pd_book_create failed\n");
    exit(1);
  }
  pd_rng_t gen;
  pd_rng_seed(&gen, 456);
  pd_netaddr_t a, s;
  const size_t new_target = (size_t)(PD_BOOK_NEW_BUCKETS * PD_BOOK_BUCKET_SIZE) * 995 / 1000;
  const size_t tried_target = (size_t)(PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE) * 99 / 100;
  for (int phase = 0; phase < 3; phase++) {
    if (phase == 1) {
      for (size_t k = 0; k < max_adds / 4 && pd_book_count_tried(b) < tried_target; k++) {
        uint32_t id = pd_book_random(b, PD_TABLE_NEW, NOW);
        pd_book_info_t in;
        if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &in) != 0) break;
        (void)pd_book_good(b, &in.addr, false, NOW - 3600);
      }
      continue;
    }
    for (size_t k = 0; k < max_adds && pd_book_count_new(b) < new_target; k++) {
      rand_v4(&gen, &a);
      rand_v4(&gen, &s);
      s.port = 0;
      (void)pd_book_add(b, &a, NULL, NOW - 7200, &s, 0, NOW - 7200, NULL);
    }
  }
  return b;
}

/* ---- the policy set ---------------------------------------------------------------------- */

static const char embedded_select[] =
    "local TRIED = 0.85\n"
    "return { select = function(book, n)\n"
    "  local out, picked, groups = {}, {}, {}\n"
    "  local budget = 32 * n + 64\n"
    "  local has_tried, has_new = book:count('tried') > 0, book:count('new') > 0\n"
    "  while #out < n and budget > 0 and (has_tried or has_new) do\n"
    "    budget = budget - 1\n"
    "    local t = (has_tried and (not has_new or peerd.random() < TRIED)) and 'tried' or 'new'\n"
    "    local id = book:random(t)\n"
    "    if id and not picked[id] and not book:banned(id) and not book:terrible(id) then\n"
    "      local g = book:group(id)\n"
    "      if not groups[g] then out[#out + 1] = id; picked[id] = true; groups[g] = true end\n"
    "    end\n"
    "  end\n"
    "  return out\n"
    "end }\n";
static const char embedded_score[] =
    "return { score = function(p)\n"
    "  local s = p.reputation - 10 * p.attempts\n"
    "  if p.tried then s = s + 50 end\n"
    "  if p.latency_ms then s = s - p.latency_ms / 10 end\n"
    "  return s\n"
    "end }\n";
static const char embedded_reputation[] =
    "return { on_event = function(p, event, reason)\n"
    "  local r = p.reputation\n"
    "  if event == 'good' then r = r + 1 elseif event == 'failed' then r = r - 2\n"
    "  elseif event == 'misbehaved' then r = r - 20 end\n"
    "  if r < -100 then return { reputation = r, ban = 86400, reason = reason or event } end\n"
    "  return { reputation = r }\n"
    "end }\n";

typedef struct {
  pd_policy_file_t f[5];
  char *buf[5];
  size_t n;
} set_t;

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  size_t got;
  while (b && (got = fread(b + n, 1, cap - n, fp)) > 0) {
    n += got;
    if (n == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        b = NULL;
      }
      b = nb;
    }
  }
  fclose(fp);
  *len = n;
  return b;
}

static void load_set(set_t *s, const char *dir) {
  static const char *const names[] = {"evict.lua", "pex.lua", "reputation.lua", "score.lua",
                                      "select.lua"};
  static const char *const fallback[] = {NULL, NULL, embedded_reputation, embedded_score,
                                         embedded_select};
  memset(s, 0, sizeof(*s));
  for (int i = 0; i < 5; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    size_t len = 0;
    char *t = slurp(path, &len);
    if (t) {
      s->buf[s->n] = t;
      s->f[s->n++] = (pd_policy_file_t){names[i], t, len};
      printf("  %-15s from %s (%zu bytes)\n", names[i], path, len);
    } else if (fallback[i]) {
      s->f[s->n++] = (pd_policy_file_t){names[i], fallback[i], strlen(fallback[i])};
      printf("  %-15s embedded stand-in (%s not found)\n", names[i], path);
    }
  }
}

static void free_set(set_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->buf[i]);
}

static void peer(pd_peer_view_t *v, pd_rng_t *r) {
  memset(v, 0, sizeof(*v));
  rand_v4(r, &v->addr);
  v->known = true;
  v->tried = pd_rng_range(r, 2);
  v->attempts = (int)pd_rng_range(r, 4);
  v->last_try = NOW - 600;
  v->last_success = NOW - 3600;
  v->time = NOW - 60;
  v->first_seen = NOW - 86400;
  v->latency_ms = 42.5;
  v->reputation = 3;
  v->routable = true;
  v->group_len = pd_netaddr_group(&v->addr, false, v->group);
}

int main(int argc, char **argv) {
  bool quick = false;
  const char *dir = PEERD_POLICY_DIR;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0)
      quick = true;
    else
      dir = argv[i];
  }
  printf("bench_policy%s, policies from %s\n", quick ? " (quick)" : "", dir);
  size_t iters = quick ? 300 : 50000;
  size_t calls = quick ? 2000 : 500000;
  size_t reloads = quick ? 10 : 200;

  pd_rng_t brng, rng;
  pd_rng_seed(&brng, 2);
  pd_rng_seed(&rng, 3);
  double t0 = now_ns();
  pd_book_t *b = full_book(&brng, quick ? 3000 : 2000000);
  printf("  book: %zu entries (new %zu, tried %zu), filled in %.0f ms\n", pd_book_size(b),
         pd_book_count_new(b), pd_book_count_tried(b), (now_ns() - t0) / 1e6);

  set_t set;
  load_set(&set, dir);
  pd_policy_t *p = NULL;
  if (pd_policy_create(&p, NULL, mono_clock, NULL) != 0) return 1;
  char err[512];
  t0 = now_ns();
  if (pd_policy_load(p, set.f, set.n, NOW, err, sizeof(err)) != 0) {
    printf("  load failed: %s\n", err);
    return 1;
  }
  printf("  first load: %.3f ms\n", (now_ns() - t0) / 1e6);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  printf("  policy state after load: %zu bytes\n", st.memory_bytes);

  /* select(8): Lua vs C */
  uint32_t out[8];
  size_t nout = 0, picked = 0, fails = 0;
  t0 = now_ns();
  for (size_t i = 0; i < iters; i++) {
    if (pd_policy_select(p, b, &rng, 8, NOW, out, &nout) != 0) fails++;
    picked += nout;
  }
  double t1 = now_ns();
  report("select(8) Lua policy, per call", iters, t1 - t0);
  printf("    (%.2f peers per call, %zu calls fell back)\n", (double)picked / (double)iters, fails);
  picked = 0;
  t0 = now_ns();
  for (size_t i = 0; i < iters; i++) picked += pd_book_select(b, 8, NOW, out);
  t1 = now_ns();
  report("select(8) C default (pd_book_select)", iters, t1 - t0);
  printf("    (%.2f peers per call)\n", (double)picked / (double)iters);

  /* score, on_event */
  pd_peer_view_t v;
  peer(&v, &rng);
  double sc, sum = 0;
  fails = 0;
  t0 = now_ns();
  for (size_t i = 0; i < calls; i++) {
    v.attempts = (int)(i & 3);
    if (pd_policy_score(p, &v, &rng, NOW, &sc) != 0)
      fails++;
    else
      sum += sc;
  }
  t1 = now_ns();
  report("score(peer)", calls, t1 - t0);
  if (fails) printf("    (%zu calls fell back)\n", fails);
  static const char *const events[] = {"attempt", "connected", "good", "failed", "disconnected"};
  pd_rep_verdict_t rv;
  fails = 0;
  t0 = now_ns();
  for (size_t i = 0; i < calls; i++) {
    int rc = pd_policy_reputation(p, &v, events[i % 5], NULL, &rng, NOW, &rv);
    if (rc != 0 && rc != PD_ENOENT) fails++;
  }
  t1 = now_ns();
  report("on_event(peer, event)", calls, t1 - t0);
  if (fails) printf("    (%zu calls fell back)\n", fails);

  /* pex: one GETADDR answer of 1,000 addresses through pex.lua's accept, the
   * batch API netmgr uses (the `from` view built once per batch). */
  {
    enum { BATCH = 1000 };
    static pd_peer_view_t addrs[BATCH];
    static bool acc[BATCH];
    for (size_t i = 0; i < BATCH; i++) peer(&addrs[i], &rng);
    size_t batches = quick ? 5 : 200, accepted = 0;
    fails = 0;
    t0 = now_ns();
    for (size_t k = 0; k < batches; k++) {
      int rc = pd_policy_pex_accept_batch(p, addrs, BATCH, &v, &rng, NOW, acc);
      if (rc != BATCH) fails++;
      for (size_t i = 0; i < BATCH; i++) accepted += acc[i];
    }
    t1 = now_ns();
    report("pex accept, per address (batches of 1,000)", batches * BATCH, t1 - t0);
    printf("    (%zu of %zu accepted, %zu batches fell back)\n", accepted, batches * BATCH, fails);
  }

  pd_policy_status(p, &st);
  printf("  policy state after the calls: %zu bytes\n", st.memory_bytes);
  lua_cost(quick ? 2000 : 2000000);

  /* reload */
  t0 = now_ns();
  for (size_t i = 0; i < reloads; i++) {
    if (pd_policy_load(p, set.f, set.n, NOW, err, sizeof(err)) != 0) {
      printf("  reload failed: %s\n", err);
      break;
    }
  }
  t1 = now_ns();
  printf("  reload of the set (%zu files): %.3f ms per load (N=%zu)\n", set.n,
         (t1 - t0) / 1e6 / (double)reloads, reloads);
  pd_policy_status(p, &st);
  printf("  policy state after reload: %zu bytes (generation %llu, hash %.16s...)\n",
         st.memory_bytes, (unsigned long long)st.generation, st.hash);
  for (int h = 0; h < PD_HOOK_COUNT; h++)
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++)
      if (pd_policy_failures(p, h, r))
        printf("  failures %s/%s: %llu\n", pd_policy_hook_name(h), pd_policy_reason_name(r),
               (unsigned long long)pd_policy_failures(p, h, r));
  char msg[256];
  int hh, rr;
  while (pd_policy_next_unreported(p, &hh, &rr, msg, sizeof(msg))) printf("  first: %s\n", msg);
  pd_policy_destroy(p);
  free_set(&set);
  pd_book_destroy(b);
  return sum != sum; /* keeps `sum` alive */
}
