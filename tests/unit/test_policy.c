/* Unit tests for policy: the Lua host against well-behaved and hostile
 * policies. Every hostile call must fail (counted by hook and reason), fall
 * back, and leave the state usable and under its memory cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "policy.h"
#include "record.h"
#include "rectable.h"
#include "identity.h"

#define NOW ((int64_t)1700000000)

typedef struct {
  const char *name, *text;
} src_t;

#define CANARY                                                                                 \
  {"pex.lua", "return { accept = function(addr, from) return addr.routable end,\n"             \
              "  share = function(addr, to) return not addr.private end }\n"}

static int load(pd_policy_t *p, const src_t *s, size_t n, char *err, size_t cap) {
  pd_policy_file_t f[8];
  for (size_t i = 0; i < n; i++) {
    f[i].name = s[i].name;
    f[i].text = s[i].text;
    f[i].len = strlen(s[i].text);
  }
  return pd_policy_load(p, f, n, NOW, err, cap);
}

static pd_policy_t *mk(const pd_policy_limits_t *l, pd_policy_clock_fn clk, void *ud) {
  pd_policy_t *p = NULL;
  assert_int_equal(pd_policy_create(&p, l, clk, ud), 0);
  assert_non_null(p);
  return p;
}

static void view(pd_peer_view_t *v, const char *ip) {
  memset(v, 0, sizeof(*v));
  assert_int_equal(pd_netaddr_parse(ip, 0, &v->addr, NULL, NULL, NULL), 0);
  v->routable = pd_netaddr_is_routable(&v->addr);
  v->group_len = pd_netaddr_group(&v->addr, false, v->group);
  v->latency_ms = -1;
}

/* The canary pex hook still answers, and the state is under its cap. */
static void healthy(pd_policy_t *p, size_t cap) {
  pd_peer_view_t a, f;
  view(&a, "8.8.8.8:26656");
  view(&f, "9.9.9.9:26656");
  bool acc = false;
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  assert_int_equal(pd_policy_pex_accept(p, &a, &f, &r, NOW, &acc), 0);
  assert_true(acc);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_true(st.memory_bytes > 0);
  assert_true(st.memory_bytes <= cap);
}

static const size_t DEFAULT_CAP = (size_t)64 << 20;

/* A score hook that fails; returns the error code and checks the counter. */
static int score_fails(pd_policy_t *p, int reason) {
  pd_peer_view_t v;
  view(&v, "8.8.4.4:26656");
  double s = -1;
  pd_rng_t r;
  pd_rng_seed(&r, 2);
  uint64_t before = pd_policy_failures(p, PD_HOOK_SCORE, reason);
  int rc = pd_policy_score(p, &v, &r, NOW, &s);
  assert_true(rc != 0 && rc != PD_ENOENT);
  assert_true(s == -1);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, reason), before + 1);
  return rc;
}

/* Load a score.lua (+ canary) and expect the score call to fail with reason;
 * the message of the kind (first report) must contain `needle`. */
static void score_case(const char *score_src, int reason, const char *needle) {
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", score_src}, CANARY};
  char err[512];
  assert_int_equal(load(p, s, 2, err, sizeof(err)), 0);
  score_fails(p, reason);
  int h, r;
  char msg[256];
  assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(h, PD_HOOK_SCORE);
  assert_int_equal(r, reason);
  if (!strstr(msg, needle)) fail_msg("message '%s' lacks '%s'", msg, needle);
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
}

/* ---- a small book ------------------------------------------------------------------- */

static pd_rng_t book_rng;

static pd_book_t *small_book(size_t n_new, size_t n_tried) {
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i + 1);
  pd_rng_seed(&book_rng, 77);
  pd_book_t *b = NULL;
  assert_int_equal(pd_book_create(&b, key, &book_rng, 0), 0);
  pd_netaddr_t src;
  assert_int_equal(pd_netaddr_parse_ip("5.6.7.8", &src, NULL), 0);
  for (size_t i = 0; i < n_new + n_tried; i++) {
    char ip[64];
    snprintf(ip, sizeof(ip), "%zu.%zu.1.%zu:26656", 20 + i % 100, 1 + i / 100, 1 + i % 200);
    pd_netaddr_t a;
    assert_int_equal(pd_netaddr_parse(ip, 0, &a, NULL, NULL, NULL), 0);
    assert_int_equal(pd_book_add(b, &a, NULL, NOW - 100, &src, 0, NOW - 100, NULL), 1);
    if (i < n_tried) assert_int_equal(pd_book_good(b, &a, false, NOW - 50), 1);
  }
  return b;
}

/* ---- tests -------------------------------------------------------------------------- */

static void names_and_defaults(void **state) {
  (void)state;
  assert_string_equal(pd_policy_hook_name(PD_HOOK_REPUTATION), "reputation");
  assert_string_equal(pd_policy_hook_name(PD_HOOK_PEX_SHARE), "pex_share");
  assert_string_equal(pd_policy_reason_name(PD_POLICY_BAD_RETURN), "bad_return");
  assert_string_equal(pd_policy_reason_name(PD_POLICY_INSTRUCTIONS), "instructions");
  pd_policy_limits_t l;
  pd_policy_limits_default(&l);
  assert_int_equal(l.call_instructions, 1000000);
  assert_int_equal(l.call_deadline_ms, 50);
  assert_int_equal(l.memory_bytes, DEFAULT_CAP);
  assert_int_equal(l.load_instructions, 10000000);
  assert_int_equal(l.load_deadline_ms, 500);
}

static void empty_and_absent(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double s = 0;
  /* nothing loaded yet */
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &s), PD_ENOENT);
  assert_int_equal(load(p, NULL, 0, NULL, 0), 0);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_int_equal(st.generation, 1);
  assert_int_equal(st.nfiles, 0);
  /* SHA-256 of the empty input */
  assert_string_equal(st.hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  for (int h = 0; h < PD_HOOK_COUNT; h++) assert_false(st.has_hook[h]);
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &s), PD_ENOENT);
  for (int h = 0; h < PD_HOOK_COUNT; h++)
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) assert_int_equal(pd_policy_failures(p, h, r), 0);
  pd_policy_destroy(p);
}

static void load_status_and_hash(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {CANARY, {"score.lua", "return { score = function(p) return 1.5 end }"}};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_int_equal(st.generation, 1);
  assert_int_equal(st.loaded_at, NOW);
  assert_int_equal(st.nfiles, 2);
  assert_string_equal(st.files[0], "pex.lua"); /* name order */
  assert_string_equal(st.files[1], "score.lua");
  assert_true(st.has_hook[PD_HOOK_SCORE]);
  assert_true(st.has_hook[PD_HOOK_PEX_ACCEPT]);
  assert_true(st.has_hook[PD_HOOK_PEX_SHARE]);
  assert_false(st.has_hook[PD_HOOK_SELECT]);
  assert_true(pd_policy_has_hook(p, PD_HOOK_SCORE));
  assert_int_equal(strlen(st.hash), 64);
  char h1[65];
  memcpy(h1, st.hash, 65);
  /* same set in another order: same hash; one byte changed: another */
  src_t s2[] = {s[1], s[0]};
  assert_int_equal(load(p, s2, 2, NULL, 0), 0);
  pd_policy_status(p, &st);
  assert_int_equal(st.generation, 2);
  assert_string_equal(st.hash, h1);
  src_t s3[] = {CANARY, {"score.lua", "return { score = function(p) return 2.5 end }"}};
  assert_int_equal(load(p, s3, 2, NULL, 0), 0);
  pd_policy_status(p, &st);
  assert_string_not_equal(st.hash, h1);
  double v = 0;
  pd_peer_view_t pv;
  view(&pv, "8.8.8.8:1");
  assert_int_equal(pd_policy_score(p, &pv, NULL, NOW, &v), 0);
  assert_true(v == 2.5);
  pd_policy_destroy(p);
}

static void hash_format_matches_contract(void **state) {
  (void)state;
  /* SHA-256 over "pex.lua\0" + le64(len) + text for a one-file set,
   * computed independently from the documented layout: text "return {}" */
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"pex.lua", "return {}"}};
  assert_int_equal(load(p, s, 1, NULL, 0), 0);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  /* python3: hashlib.sha256(b"pex.lua\0" + (9).to_bytes(8,"little") + b"return {}") */
  assert_string_equal(st.hash, "1e784092f5532d6efe364a2ead763908a81496c86fcd7511a7fcbadd74686532");
  pd_policy_destroy(p);
}

static void endless_loop(void **state) {
  (void)state;
  score_case("return { score = function(p)\n  while true do end\nend }", PD_POLICY_INSTRUCTIONS,
             "score.lua:2: instruction budget exceeded");
}

static uint64_t fake_clock(void *ud) {
  uint64_t *t = ud;
  *t += 1000000; /* every read: one millisecond later */
  return *t;
}

static void deadline_with_fake_clock(void **state) {
  (void)state;
  uint64_t t = 0;
  pd_policy_limits_t l;
  pd_policy_limits_default(&l);
  l.call_instructions = 4000000000ull; /* only the deadline can stop it */
  pd_policy_t *p = mk(&l, fake_clock, &t);
  src_t s[] = {{"score.lua", "return { score = function(p)\n  local i = 0\n  while true do i = i + 1 end\nend }"},
               CANARY};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  uint64_t t0 = t;
  score_fails(p, PD_POLICY_TIMEOUT);
  assert_true(t - t0 >= 50 * 1000000ull);     /* ran until the deadline ... */
  assert_true(t - t0 <= 60 * 1000000ull);     /* ... and not much longer */
  int h, r;
  char msg[256];
  assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(r, PD_POLICY_TIMEOUT);
  assert_non_null(strstr(msg, "score.lua:3: deadline exceeded"));
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_INSTRUCTIONS), 0);
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
}

static void pcall_cannot_swallow(void **state) {
  (void)state;
  score_case("return { score = function(p)\n"
             "  while true do pcall(function() while true do end end) end\nend }",
             PD_POLICY_INSTRUCTIONS, "exceeded");
  score_case("return { score = function(p)\n"
             "  while true do xpcall(function() while true do end end,\n"
             "    function(e) while true do end end) end\nend }",
             PD_POLICY_INSTRUCTIONS, "exceeded");
  /* the trip happens inside a coroutine; the caller returns at once */
  score_case("return { score = function(p)\n"
             "  coroutine.resume(coroutine.create(function() while true do end end))\n"
             "  return 1\nend }",
             PD_POLICY_INSTRUCTIONS, "exceeded");
  score_case("return { score = function(p)\n"
             "  while true do pcall(coroutine.wrap(function() while true do end end)) end\nend }",
             PD_POLICY_INSTRUCTIONS, "exceeded");
}

static void memory_bombs(void **state) {
  (void)state;
  const char *bombs[] = {
      "return { score = function(p)\n  local s = 'x'\n  while true do s = s .. s end\nend }",
      "return { score = function(p)\n  local t = {}\n"
      "  while true do t[#t + 1] = string.rep('y', 65536) .. #t end\nend }",
      "return { score = function(p)\n  local t = {}\n"
      "  while true do t[#t + 1] = {1, 2, 3, 4, 5, 6, 7, 8} end\nend }",
      "return { score = function(p)\n  local keep = {}\n"
      "  while true do pcall(function() keep[#keep + 1] = string.rep('z', 1 << 20) .. #keep end) end\n"
      "end }",
      "return { score = function(p)\n  local keep = {}\n"
      "  while true do pcall(function() keep[#keep + 1] = {} end) end\nend }",
      "return { score = function(p)\n  local keep = {}\n"
      "  coroutine.wrap(function()\n"
      "    while true do pcall(function() keep[#keep + 1] = {} end) end\n  end)()\nend }",
  };
  for (size_t i = 0; i < sizeof(bombs) / sizeof(bombs[0]); i++) {
    pd_policy_limits_t l;
    pd_policy_limits_default(&l);
    l.memory_bytes = (size_t)4 << 20;
    pd_policy_t *p = mk(&l, NULL, NULL);
    src_t s[] = {{"score.lua", bombs[i]}, CANARY};
    assert_int_equal(load(p, s, 2, NULL, 0), 0);
    pd_peer_view_t v;
    view(&v, "8.8.4.4:26656");
    double sc = -1;
    int rc = pd_policy_score(p, &v, NULL, NOW, &sc);
    assert_true(rc != 0 && rc != PD_ENOENT);
    uint64_t mem = pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_MEMORY);
    uint64_t ins = pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_INSTRUCTIONS);
    /* catching the memory error does not help: the cap ends the call */
    assert_int_equal(rc, PD_ENOMEM);
    assert_int_equal(mem, 1);
    assert_int_equal(ins, 0);
    healthy(p, l.memory_bytes);
    /* again: the memory was given back */
    rc = pd_policy_score(p, &v, NULL, NOW, &sc);
    assert_true(rc != 0 && rc != PD_ENOENT);
    healthy(p, l.memory_bytes);
    pd_policy_destroy(p);
  }
}

static void error_has_file_line(void **state) {
  (void)state;
  score_case("return { score = function(p)\n  local x = 1\n  error('boom ' .. x)\nend }",
             PD_POLICY_ERROR, "score.lua:3: boom 1");
  score_case("return { score = function(p)\n  return p.nope.deeper\nend }", PD_POLICY_ERROR,
             "score.lua:2: attempt to index");
  /* errors raised from C functions still get the Lua position */
  score_case("return { score = function(p)\n  return string.rep('x', {})\nend }", PD_POLICY_ERROR,
             "score.lua:2: bad argument #2 to 'rep'");
  score_case("return { score = function(p)\n  error({})\nend }", PD_POLICY_ERROR,
             "score.lua:2: (error object is a table value)");
  score_case("return { score = function(p)\n  error('no position', 0)\nend }", PD_POLICY_ERROR,
             "score.lua:2: no position");
}

static void coroutine_yield_across_boundary(void **state) {
  (void)state;
  score_case("return { score = function(p)\n  return coroutine.yield(1)\nend }", PD_POLICY_ERROR,
             "yield");
  score_case("return { score = function(p)\n  return coroutine.create(function() end)\nend }",
             PD_POLICY_BAD_RETURN, "thread");
}

static void sandbox_escapes(void **state) {
  (void)state;
  static const struct {
    const char *expr, *needle;
  } cases[] = {
      {"io.open('/etc/passwd')", "undefined global 'io'"},
      {"os.time()", "undefined global 'os'"},
      {"os.execute('true')", "undefined global 'os'"},
      {"require('io')", "module 'io' not found"},
      {"require('os')", "module 'os' not found"},
      {"load('return 1')", "undefined global 'load'"},
      {"loadfile('/etc/passwd')", "undefined global 'loadfile'"},
      {"dofile('/etc/passwd')", "undefined global 'dofile'"},
      {"loadstring('return 1')", "undefined global 'loadstring'"},
      {"debug.getinfo(1)", "undefined global 'debug'"},
      {"package.loaded.string", "undefined global 'package'"},
      {"collectgarbage('count')", "undefined global 'collectgarbage'"},
      {"print('hi')", "undefined global 'print'"},
      {"getmetatable('')", "undefined global 'getmetatable'"},
      {"setmetatable({}, {})", "undefined global 'setmetatable'"},
      {"_G.x", "undefined global '_G'"},
      {"string.dump(function() end)", "field 'dump'"},
      {"(''):dump()", "method 'dump'"},
      {"math.random()", "field 'random'"},
      {"math.randomseed(1)", "field 'randomseed'"},
      {"undefined_thing", "undefined global 'undefined_thing'"},
      {"string.upper2 ~= nil or error('x')", "x"}, /* library fields read as usual */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char src[256];
    snprintf(src, sizeof(src), "return { score = function(p)\n  local _ = %s\n  return 1\nend }",
             cases[i].expr);
    char needle[128];
    snprintf(needle, sizeof(needle), "score.lua:2: ");
    score_case(src, PD_POLICY_ERROR, needle);
    score_case(src, PD_POLICY_ERROR, cases[i].needle);
  }
  score_case("return { score = function(p)\n  x = 1\n  return 1\nend }", PD_POLICY_ERROR,
             "score.lua:2: assignment to global 'x' (policies keep state in locals)");
  score_case("return { score = function(p)\n  string.upper = nil\n  return 1\nend }",
             PD_POLICY_ERROR, "read-only table 'string'");
  score_case("return { score = function(p)\n  peerd.now = function() return 0 end\n  return 1\nend }",
             PD_POLICY_ERROR, "read-only table 'peerd'");
}

static void modules_cannot_touch_each_other(void **state) {
  (void)state;
  /* rawset on its own proxy of `string` / `_ENV` changes nothing for another
   * module, nor for string methods */
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"select.lua", "rawset(string, 'upper', function() return 'evil' end)\n"
                              "rawset(_ENV, 'shared', 1)\n"
                              "rawset(math, 'floor', nil)\n"
                              "return {}"},
               {"score.lua", "return { score = function(p)\n"
                             "  assert(string.upper('a') == 'A')\n"
                             "  assert(('a'):upper() == 'A')\n"
                             "  assert(math.floor(1.5) == 1)\n"
                             "  assert(rawget(_ENV, 'shared') == nil)\n"
                             "  return #peerd.version\nend }"},
               CANARY};
  char err[512];
  if (load(p, s, 3, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double sc = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == (double)strlen(PEERD_VERSION));
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
}

static void slow_c_functions_are_bounded(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  assert(string.rep('', 1e15) == '')\n"
                             "  assert(('x'):rep(3, ',') == 'x,x,x')\n"
                             "  local ok = pcall(table.move, {}, 1, 1e15, 1, {})\n"
                             "  assert(not ok)\n"
                             "  assert(table.move({1, 2, 3}, 1, 3, 2)[4] == 3)\n"
                             "  local a, b = xpcall(error, function(e) return 'handled ' .. e end, 'x')\n"
                             "  assert(a == false and b == 'handled x')\n"
                             "  local c, d, e = xpcall(function(u, v) return u + v, u end, error, 2, 3)\n"
                             "  assert(c == true and d == 5 and e == 2)\n"
                             "  return 1\nend }"},
               CANARY};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double sc = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 1);
  pd_policy_destroy(p);
}

/* Pattern matching runs in C where the count hook cannot reach: costly
 * patterns are refused up front, ordinary ones work (methods included). */
static void costly_patterns_are_refused(void **state) {
  (void)state;
  score_case("return { score = function(p)\n"
             "  local s = string.rep('a', 100000)\n"
             "  return s:find('a.-b.-c.-d') and 1 or 0\nend }",
             PD_POLICY_ERROR, "score.lua:3: pattern too costly");
  score_case("return { score = function(p)\n"
             "  local n = 0\n"
             "  for _ in string.gmatch(string.rep('ab', 50000), 'a.-b') do n = n + 1 end\n"
             "  return n\nend }",
             PD_POLICY_ERROR, "pattern too costly");
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  local ip, port = p.addr:match('^(.-):(%d+)$')\n"
                             "  assert(ip == '8.8.8.8' and port == '1')\n"
                             "  assert(string.find(string.rep('x', 100000) .. '.-', '.-', 1, true))\n"
                             "  assert(select(2, string.gsub('a,b,c', ',', ';')) == 2)\n"
                             "  local parts = {}\n"
                             "  for w in ('1.2.3.4'):gmatch('%d+') do parts[#parts + 1] = w end\n"
                             "  return #parts\nend }"},
               CANARY};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double sc = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 4);
  pd_policy_destroy(p);
}

static void bad_returns_every_hook(void **state) {
  (void)state;
  pd_book_t *b = small_book(20, 5);
  pd_book_info_t cand;
  memset(&cand, 0, sizeof(cand));
  cand.id = PD_BOOK_NO_ID;
  assert_int_equal(pd_netaddr_parse("99.1.2.3:26656", 0, &cand.addr, NULL, NULL, NULL), 0);
  cand.time = NOW;
  uint32_t ids[32];
  size_t total = 0;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 32, ids, &total), 25);
  static const char *const bad_values[] = {"'x'", "{}", "true", "0/0", "math.huge", "nil",
                                           "function() end", "coroutine.create(pairs)"};
  for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
    const char *bv = bad_values[i];
    char sel[256], sco[256], ev[512], rep[256], pex[256], dht[256];
    snprintf(sel, sizeof(sel), "return { select = function(b, n) return %s end }", bv);
    snprintf(sco, sizeof(sco), "return { score = function(p) return %s end }", bv);
    snprintf(ev, sizeof(ev),
             "return { evict_new = function(b, i, c) return %s end,\n"
             "  evict_tried = function(b, i, c) return %s end,\n"
             "  evict_inbound = function(c, n) return %s end }",
             bv, bv, bv);
    snprintf(rep, sizeof(rep), "return { on_event = function(p, e, r) return %s end }", bv);
    snprintf(pex, sizeof(pex),
             "return { accept = function(a, f) return %s end, share = function(a, t) return %s end }",
             bv, bv);
    snprintf(dht, sizeof(dht),
             "return { admit = function(n, b) return %s end, feed = function(n, f) return %s end }",
             bv, bv);
    src_t s[] = {{"select.lua", sel}, {"score.lua", sco}, {"evict.lua", ev},
                 {"reputation.lua", rep}, {"pex.lua", pex}, {"dht.lua", dht}};
    pd_policy_t *p = mk(NULL, NULL, NULL);
    char err[512];
    if (load(p, s, 6, err, sizeof(err)) != 0) fail_msg("%s: %s", bv, err);
    pd_rng_t r;
    pd_rng_seed(&r, 3);
    pd_peer_view_t v, w;
    view(&v, "8.8.8.8:1");
    view(&w, "8.8.4.4:1");
    uint32_t out[8];
    size_t nout = 99;
    double sc;
    int vd;
    pd_rep_verdict_t rv;
    bool flag;
    bool is_nil = strcmp(bv, "nil") == 0;
    bool is_empty_table = strcmp(bv, "{}") == 0;
    bool is_bool = strcmp(bv, "true") == 0;

    int rc = pd_policy_select(p, b, &r, 8, NOW, out, &nout);
    if (is_empty_table) {
      assert_int_equal(rc, 0); /* a valid (empty) decision */
      assert_int_equal(nout, 0);
    } else {
      assert_int_equal(rc, PD_EINVAL);
      assert_int_equal(nout, 0);
    }
    rc = pd_policy_score(p, &v, &r, NOW, &sc);
    assert_int_equal(rc, PD_EINVAL);
    rc = pd_policy_evict_new(p, b, ids[0], &cand, &r, NOW, &vd);
    assert_int_equal(rc, is_nil ? PD_ENOENT : PD_EINVAL);
    rc = pd_policy_evict_tried(p, b, ids[0], ids[1], &r, NOW, &vd);
    assert_int_equal(rc, is_nil ? PD_ENOENT : PD_EINVAL);
    rc = pd_policy_reputation(p, &v, "failed", NULL, &r, NOW, &rv);
    assert_int_equal(rc, is_nil ? PD_ENOENT : PD_EINVAL);
    rc = pd_policy_pex_accept(p, &v, &w, &r, NOW, &flag);
    assert_int_equal(rc, is_bool ? 0 : PD_EINVAL);
    rc = pd_policy_pex_share(p, &v, &w, &r, NOW, &flag);
    assert_int_equal(rc, is_bool ? 0 : PD_EINVAL);
    pd_policy_inbound_t ib;
    memset(&ib, 0, sizeof ib);
    ib.view = w;
    ib.conn_id = 7;
    long victim = 99;
    rc = pd_policy_evict_inbound(p, &ib, 1, &v, &r, NOW, &victim);
    assert_int_equal(rc, is_nil ? PD_ENOENT : PD_EINVAL);
    assert_int_equal(victim, 99);
    pd_policy_dht_node_t dn;
    memset(&dn, 0, sizeof dn);
    dn.addr = v.addr;
    rc = pd_policy_dht_admit(p, &dn, &r, NOW, &flag);
    assert_int_equal(rc, is_bool ? 0 : PD_EINVAL);
    rc = pd_policy_dht_feed(p, &v, &w, &r, NOW, &flag);
    assert_int_equal(rc, is_bool ? 0 : PD_EINVAL);
    for (int h = 0; h < PD_HOOK_COUNT; h++) {
      uint64_t want = 1;
      if (h == PD_HOOK_SELECT && is_empty_table) want = 0;
      if ((h == PD_HOOK_EVICT_NEW || h == PD_HOOK_EVICT_TRIED || h == PD_HOOK_REPUTATION ||
           h == PD_HOOK_EVICT_INBOUND) &&
          is_nil)
        want = 0;
      if ((h == PD_HOOK_PEX_ACCEPT || h == PD_HOOK_PEX_SHARE || h == PD_HOOK_DHT_ADMIT ||
           h == PD_HOOK_DHT_FEED) &&
          is_bool)
        want = 0;
      if (pd_policy_failures(p, h, PD_POLICY_BAD_RETURN) != want)
        fail_msg("%s: hook %s: %llu bad returns", bv, pd_policy_hook_name(h),
                 (unsigned long long)pd_policy_failures(p, h, PD_POLICY_BAD_RETURN));
      assert_int_equal(pd_policy_failures(p, h, PD_POLICY_ERROR), 0);
    }
    pd_policy_destroy(p);
  }
  pd_book_destroy(b);
}

/* evict_inbound(candidates, newcomer): sees each candidate's conn id, peer
 * view, connected/useful times and the C rule's protection; returns a conn
 * id (its index comes back), false (nobody) or nil (the default). */
static void evict_inbound_hook(void **state) {
  (void)state;
  src_t s[] = {{"evict.lua",
                "return { evict_inbound = function(c, n)\n"
                "  if n.addr == '9.9.9.9:1' then return false end\n"
                "  if n.addr == '7.7.7.7:1' then return 12345 end\n"
                "  if n.addr == '6.6.6.6:1' then return nil end\n"
                "  local best\n"
                "  for _, x in ipairs(c) do\n"
                "    assert(math.type(x.conn) == 'integer' and x.peer.addr and x.connected > 0)\n"
                "    if not x.protected and x.useful == 0 and (not best or x.connected < best.connected)\n"
                "    then best = x end\n"
                "  end\n"
                "  return best and best.conn\n"
                "end }"}};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[512];
  if (load(p, s, 1, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_rng_t r;
  pd_rng_seed(&r, 3);
  pd_policy_inbound_t c[4];
  memset(c, 0, sizeof c);
  const char *addrs[] = {"1.1.1.1:1", "2.2.2.2:1", "3.3.3.3:1", "4.4.4.4:1"};
  for (int i = 0; i < 4; i++) {
    view(&c[i].view, addrs[i]);
    c[i].conn_id = (uint64_t)(100 + i);
    c[i].connected = NOW - 1000 + i;
  }
  c[0].protected_by_default = true; /* oldest, but protected */
  c[1].useful = NOW - 5;            /* useful */
  pd_peer_view_t n;
  view(&n, "8.8.8.8:1");
  long victim = 99;
  assert_int_equal(pd_policy_evict_inbound(p, c, 4, &n, &r, NOW, &victim), 0);
  assert_int_equal(victim, 2); /* the oldest neither protected nor useful */
  view(&n, "9.9.9.9:1");
  assert_int_equal(pd_policy_evict_inbound(p, c, 4, &n, &r, NOW, &victim), 0);
  assert_int_equal(victim, -1); /* false: nobody */
  view(&n, "6.6.6.6:1");
  victim = 99;
  assert_int_equal(pd_policy_evict_inbound(p, c, 4, &n, &r, NOW, &victim), PD_ENOENT);
  assert_int_equal(victim, 99);
  view(&n, "7.7.7.7:1"); /* an id not among the candidates */
  assert_int_equal(pd_policy_evict_inbound(p, c, 4, &n, &r, NOW, &victim), PD_EINVAL);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_EVICT_INBOUND, PD_POLICY_BAD_RETURN), 1);
  assert_string_equal(pd_policy_hook_name(PD_HOOK_EVICT_INBOUND), "evict_inbound");
  pd_policy_destroy(p);
}

static void select_validation(void **state) {
  (void)state;
  pd_book_t *b = small_book(30, 10);
  uint32_t ids[64];
  size_t total = 0;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 64, ids, &total), 40);
  /* ban the first listed entry */
  pd_book_info_t e;
  assert_int_equal(pd_book_info(b, ids[0], &e), 0);
  pd_subnet_t sn;
  memset(&sn, 0, sizeof(sn));
  memcpy(sn.ip, e.addr.ip, 16);
  sn.prefix = 128;
  assert_true(pd_banlist_add(pd_book_bans(b), &sn, NOW, 0, "test") >= 0);
  char good[64], dup[64], banned[64], unknown[64], big[64], frac[64], strid[64];
  snprintf(good, sizeof(good), "{%u, %u}", ids[1], ids[2]);
  snprintf(dup, sizeof(dup), "{%u, %u, %u}", ids[1], ids[2], ids[1]);
  snprintf(banned, sizeof(banned), "{%u, %u}", ids[1], ids[0]);
  snprintf(unknown, sizeof(unknown), "{%u, 999999}", ids[1]);
  snprintf(big, sizeof(big), "{%u, 4294967296}", ids[1]);
  snprintf(frac, sizeof(frac), "{%u + 0.5}", ids[1]);
  snprintf(strid, sizeof(strid), "{'%u'}", ids[1]);
  static const char *labels[] = {"good", "dup", "banned", "unknown", "big", "frac", "strid",
                                 "toomany", "negative", "hole"};
  const char *vals[] = {good, dup, banned, unknown, big, frac, strid,
                        "{1, 2, 3, 4, 5, 6, 7, 8, 9}", "{-1}", "{[2] = 1}"};
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    char sel[256];
    snprintf(sel, sizeof(sel), "return { select = function(b, n)\n  return %s\nend }", vals[i]);
    src_t s[] = {{"select.lua", sel}, CANARY};
    pd_policy_t *p = mk(NULL, NULL, NULL);
    assert_int_equal(load(p, s, 2, NULL, 0), 0);
    uint32_t out[8];
    size_t nout = 99;
    int rc = pd_policy_select(p, b, NULL, 8, NOW, out, &nout);
    if (i == 0) {
      assert_int_equal(rc, 0);
      assert_int_equal(nout, 2);
      assert_int_equal(out[0], ids[1]);
      assert_int_equal(out[1], ids[2]);
    } else if (i == 9) {
      /* {[2]=1}: its border is 0 (an empty array): a valid empty answer, or
       * 2 with a hole at [1]: rejected. Either way no garbage comes out. */
      assert_true((rc == 0 && nout == 0) || rc == PD_EINVAL);
    } else {
      if (rc != PD_EINVAL) fail_msg("%s: rc %d", labels[i], rc);
      assert_int_equal(nout, 0);
      assert_int_equal(pd_policy_failures(p, PD_HOOK_SELECT, PD_POLICY_BAD_RETURN), 1);
      int h, r;
      char msg[256];
      assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
      assert_non_null(strstr(msg, "select.lua:1: select returned"));
    }
    healthy(p, DEFAULT_CAP);
    pd_policy_destroy(p);
  }
  pd_book_destroy(b);
}

static void huge_select_return(void **state) {
  (void)state;
  pd_book_t *b = small_book(10, 2);
  /* built at load time (under the 10M load budget), returned at call time */
  src_t s[] = {{"select.lua", "local big = {}\nfor i = 1, 1000000 do big[i] = i end\n"
                              "return { select = function(b, n) return big end }"},
               CANARY};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[512];
  if (load(p, s, 2, err, sizeof(err)) != 0) fail_msg("%s", err);
  uint32_t out[8];
  size_t nout = 99;
  assert_int_equal(pd_policy_select(p, b, NULL, 8, NOW, out, &nout), PD_EINVAL);
  assert_int_equal(nout, 0);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SELECT, PD_POLICY_BAD_RETURN), 1);
  char msg[256];
  assert_true(pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg)));
  assert_non_null(strstr(msg, "1000000 ids, more than n = 8"));
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

static void select_through_book(void **state) {
  (void)state;
  pd_book_t *b = small_book(30, 10);
  src_t s[] = {{"select.lua",
                "return { select = function(book, n)\n"
                "  local out, seen = {}, {}\n"
                "  assert(book:size() == 40 and book:count('new') == 30 and book:count('tried') == 10)\n"
                "  for _ = 1, 200 do\n"
                "    if #out >= n then break end\n"
                "    local id = book:random(#out % 2 == 0 and 'tried' or 'new')\n"
                "    local e = book:entry(id)\n"
                "    assert(e.id == id and type(e.addr) == 'string' and e.group == book:group(id))\n"
                "    assert(e.tried == book:tried(id) and e.terrible == book:terrible(id))\n"
                "    assert(e.chance == book:chance(id) and e.banned == book:banned(id))\n"
                "    assert(e.source == '5.6.7.8' and e.refs >= 0 and e.time > 0)\n"
                "    if not seen[id] then seen[id] = true; out[#out + 1] = id end\n"
                "  end\n"
                "  assert(book:entry(123456) == nil and book:group(-1) == nil)\n"
                "  assert(not pcall(book.count, book, 'bogus'))\n"
                "  return out\nend }"},
               CANARY};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[512];
  if (load(p, s, 2, err, sizeof(err)) != 0) fail_msg("%s", err);
  uint32_t out[8];
  size_t nout = 0;
  pd_rng_t r;
  pd_rng_seed(&r, 5);
  int rc = pd_policy_select(p, b, &r, 8, NOW, out, &nout);
  if (rc != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("select: %d %s", rc, msg);
  }
  assert_int_equal(nout, 8);
  for (size_t i = 0; i < nout; i++) {
    pd_book_info_t e;
    assert_int_equal(pd_book_info(b, out[i], &e), 0);
    assert_int_equal(e.in_tried, i % 2 == 0);
  }
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

static void stashed_book_is_dead(void **state) {
  (void)state;
  pd_book_t *b = small_book(5, 1);
  src_t s[] = {{"select.lua", "local saved\n"
                              "return { select = function(book, n)\n"
                              "  if saved then return { saved:size() } end\n"
                              "  saved = book\n"
                              "  return {}\nend }"},
               CANARY};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  uint32_t out[4];
  size_t nout = 9;
  assert_int_equal(pd_policy_select(p, b, NULL, 4, NOW, out, &nout), 0);
  assert_int_equal(nout, 0);
  assert_int_equal(pd_policy_select(p, b, NULL, 4, NOW, out, &nout), PD_EINVAL);
  char msg[256];
  assert_true(pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg)));
  assert_non_null(strstr(msg, "select.lua:3: book used outside the call"));
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

static void load_failures_keep_old(void **state) {
  (void)state;
  uint64_t t = 0;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  pd_policy_t *pc = mk(NULL, fake_clock, &t);
  src_t good[] = {{"score.lua", "return { score = function(p) return 42 end }"}, CANARY};
  assert_int_equal(load(p, good, 2, NULL, 0), 0);
  assert_int_equal(load(pc, good, 2, NULL, 0), 0);
  static const struct {
    const char *name, *text, *needle;
  } bad[] = {
      {"score.lua", "while true do end\nreturn {}", "score.lua:1: instruction budget exceeded while loading"},
      {"score.lua", "return {\n  score = function() return 1 end\n  bad bad\n}", "score.lua:3:"},
      {"score.lua", "\x1bLuaT\x00\x19\x93\r\n\x1a\n", "score.lua: attempt to load a binary chunk"},
      {"score.lua", "return 42", "score.lua: module must return a table (got number)"},
      {"score.lua", "return { score = 7 }", "score.lua: field 'score' must be a function"},
      {"select.lua", "return { select = 'x' }", "select.lua: field 'select' must be a function"},
      {"score.lua", "x = 1\nreturn {}", "score.lua:1: assignment to global 'x'"},
      {"score.lua", "error('top')", "score.lua:1: top"},
      {"score.lua", "local s = 'x'\nwhile true do s = s .. s end", "memory"},
      {"scores.lua", "return {}", "scores.lua: unknown policy file"},
      {"init.lua", "return {}", "unknown policy file"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    src_t s[] = {{bad[i].name, bad[i].text}, CANARY};
    char err[512] = "";
    size_t len = strlen(bad[i].text);
    if (i == 2) len = 12; /* contains NUL */
    pd_policy_file_t f[2] = {{s[0].name, s[0].text, len}, {s[1].name, s[1].text, strlen(s[1].text)}};
    assert_int_equal(pd_policy_load(p, f, 2, NOW + 10, err, sizeof(err)), PD_EINVAL);
    if (!strstr(err, bad[i].needle)) fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
    pd_policy_status_t st;
    pd_policy_status(p, &st);
    assert_int_equal(st.generation, 1);
    assert_int_equal(st.loaded_at, NOW);
    assert_int_equal(st.last_error_at, NOW + 10);
    assert_string_equal(st.last_error, err);
    assert_true(st.has_hook[PD_HOOK_SCORE]);
    /* the old generation still answers */
    pd_peer_view_t v;
    view(&v, "8.8.8.8:1");
    double sc = 0;
    assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
    assert_true(sc == 42);
    healthy(p, DEFAULT_CAP);
  }
  /* a load that runs past its deadline (fake clock) */
  src_t slow[] = {{"score.lua", "local i = 0\nwhile true do i = i + 1 end"}};
  char err[512];
  assert_int_equal(load(pc, slow, 1, err, sizeof(err)), PD_EINVAL);
  assert_non_null(strstr(err, "score.lua:2: deadline exceeded while loading (500 ms)"));
  healthy(pc, DEFAULT_CAP);
  /* duplicates and too many files */
  src_t dup[] = {CANARY, CANARY};
  assert_int_equal(load(p, dup, 2, err, sizeof(err)), PD_EINVAL);
  assert_non_null(strstr(err, "pex.lua: duplicate"));
  src_t six[] = {CANARY, CANARY, CANARY, CANARY, CANARY, CANARY};
  assert_int_equal(load(p, six, 6, err, sizeof(err)), PD_EINVAL);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_int_equal(st.generation, 1);
  pd_policy_destroy(p);
  pd_policy_destroy(pc);
}

static void require_and_cycles(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "local pex = require('pex')\n"
                             "return { score = function(p) return pex.weight + require('pex').weight end }"},
               {"pex.lua", "return { weight = 7, accept = function(a, f) return a.routable end }"}};
  char err[512];
  if (load(p, s, 2, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double sc = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 14);
  healthy(p, DEFAULT_CAP);
  src_t cyc[] = {{"score.lua", "local e = require('evict')\nreturn {}"},
                 {"evict.lua", "local s = require('score')\nreturn {}"}};
  assert_int_equal(load(p, cyc, 2, err, sizeof(err)), PD_EINVAL);
  assert_non_null(strstr(err, "require cycle"));
  assert_non_null(strstr(err, "score.lua:1:") ? "" : strstr(err, "evict.lua:1:"));
  src_t missing[] = {{"score.lua", "local e = require('select')\nreturn {}"}};
  assert_int_equal(load(p, missing, 1, err, sizeof(err)), PD_EINVAL);
  assert_non_null(strstr(err, "score.lua:1: module 'select' not found"));
  pd_policy_destroy(p);
}

static void random_is_deterministic(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  local a, b, c = peerd.random(), peerd.random(6), peerd.random(-3, 3)\n"
                             "  assert(a >= 0 and a < 1 and b >= 1 and b <= 6 and c >= -3 and c <= 3)\n"
                             "  assert(math.type(b) == 'integer' and peerd.random(5, 5) == 5)\n"
                             "  assert(not pcall(peerd.random, 0))\n"
                             "  assert(peerd.now() == " "1700000000" ")\n"
                             "  return a * 1000 + b * 10 + c\nend }"}};
  assert_int_equal(load(p, s, 1, NULL, 0), 0);
  double seq1[50], seq2[50];
  pd_rng_t r1, r2;
  pd_rng_seed(&r1, 99);
  pd_rng_seed(&r2, 99);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  for (int i = 0; i < 50; i++) assert_int_equal(pd_policy_score(p, &v, &r1, NOW, &seq1[i]), 0);
  for (int i = 0; i < 50; i++) assert_int_equal(pd_policy_score(p, &v, &r2, NOW, &seq2[i]), 0);
  int differ = 0;
  for (int i = 0; i < 50; i++) {
    assert_true(seq1[i] == seq2[i]);
    if (i) differ += seq1[i] != seq1[i - 1];
  }
  assert_true(differ > 40);
  /* the first draw is pd_rng_unit of the seeded generator */
  pd_rng_t r3, r4;
  pd_rng_seed(&r3, 1234);
  pd_rng_seed(&r4, 1234);
  src_t s2[] = {{"score.lua", "return { score = function(p) return peerd.random() end }"}};
  assert_int_equal(load(p, s2, 1, NULL, 0), 0);
  double x;
  assert_int_equal(pd_policy_score(p, &v, &r3, NOW, &x), 0);
  assert_true(x == pd_rng_unit(&r4));
  pd_policy_destroy(p);
}

static void counting_and_reporting(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  if p.attempts == 1 then while true do end end\n"
                             "  if p.attempts == 2 then return 'x' end\n"
                             "  error('fail ' .. p.attempts)\nend }"},
               CANARY};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double sc;
  for (int i = 0; i < 3; i++) {
    v.attempts = 5 + i;
    assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_EINVAL);
  }
  v.attempts = 1;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_ERANGE);
  v.attempts = 2;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_EINVAL);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_ERROR), 3);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_INSTRUCTIONS), 1);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_BAD_RETURN), 1);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SELECT, PD_POLICY_ERROR), 0);
  int h, r, seen = 0;
  char msg[256];
  while (pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg))) {
    assert_int_equal(h, PD_HOOK_SCORE);
    if (r == PD_POLICY_ERROR) assert_non_null(strstr(msg, "score.lua:4: fail 5")); /* the first */
    if (r == PD_POLICY_BAD_RETURN)
      assert_non_null(strstr(msg, "score.lua:1: score returned string, expected a finite number"));
    if (r == PD_POLICY_INSTRUCTIONS) assert_non_null(strstr(msg, "score.lua:2:"));
    seen++;
  }
  assert_int_equal(seen, 3);
  /* more failures of reported kinds: counted, not reported again */
  v.attempts = 9;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_EINVAL);
  assert_false(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_ERROR), 4);
  /* a failed reload does not re-arm; a successful one does */
  src_t broken[] = {{"score.lua", "syntax error here"}};
  assert_int_equal(load(p, broken, 1, NULL, 0), PD_EINVAL);
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_EINVAL);
  assert_false(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  v.attempts = 11;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), PD_EINVAL);
  assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(r, PD_POLICY_ERROR);
  assert_non_null(strstr(msg, "fail 11"));
  assert_false(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_ERROR), 6);
  pd_policy_destroy(p);
}

static void peers_events_and_pex(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua",
                "return { score = function(p)\n"
                "  assert(p.addr == '8.8.8.8:26656' and p.known and not p.tried)\n"
                "  assert(p.node_id == string.rep('ab', 20) and p.group == '010808')\n"
                "  assert(p.last_try == 10 and p.last_success == 20 and p.time == 30)\n"
                "  assert(p.first_seen == 5 and p.misbehaviours == 2 and p.reputation == -1.5)\n"
                "  assert(p.routable and not p.private and not p.banned)\n"
                "  return p.attempts * 100 + (p.latency_ms or 0)\nend }"},
               {"reputation.lua",
                "return { on_event = function(p, event, reason)\n"
                "  if event == 'good' then return nil end\n"
                "  if event == 'misbehaved' then\n"
                "    return { reputation = p.reputation - 10, ban = p.misbehaviours >= 2 and -1 or 3600,\n"
                "             reason = reason }\n"
                "  end\n"
                "  if event == 'bad_ban' then return { reputation = 1, ban = 1.5 } end\n"
                "  if event == 'neg_ban' then return { reputation = 1, ban = -2 } end\n"
                "  if event == 'no_rep' then return { ban = 10 } end\n"
                "  if event == 'nan' then return { reputation = 0/0 } end\n"
                "  if event == 'bad_reason' then return { reputation = 1, reason = 5 } end\n"
                "  return { reputation = p.reputation + 1 }\nend }"},
               {"pex.lua", "return { accept = function(a, f) return a.routable and f.known end,\n"
                           "  share = function(a, t) return not a.private end }"}};
  char err[512];
  if (load(p, s, 3, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_peer_view_t v, f;
  view(&v, "8.8.8.8:26656");
  v.has_node_id = true;
  memset(v.node_id, 0xab, sizeof(v.node_id));
  v.known = true;
  v.attempts = 3;
  v.last_try = 10;
  v.last_success = 20;
  v.time = 30;
  v.first_seen = 5;
  v.misbehaviours = 2;
  v.reputation = -1.5;
  double sc = 0;
  if (pd_policy_score(p, &v, NULL, NOW, &sc) != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("%s", msg);
  }
  assert_true(sc == 300);
  v.latency_ms = 12.5;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 312.5);

  pd_rep_verdict_t rv;
  memset(&rv, 0x55, sizeof(rv));
  pd_rep_verdict_t untouched = rv;
  assert_int_equal(pd_policy_reputation(p, &v, "good", NULL, NULL, NOW, &rv), PD_ENOENT);
  assert_memory_equal(&rv, &untouched, sizeof(rv));
  assert_int_equal(pd_policy_reputation(p, &v, "misbehaved", "spam", NULL, NOW, &rv), 0);
  assert_true(rv.reputation == -11.5);
  assert_int_equal(rv.ban_secs, -1);
  assert_string_equal(rv.reason, "spam");
  v.misbehaviours = 0;
  assert_int_equal(pd_policy_reputation(p, &v, "misbehaved", NULL, NULL, NOW, &rv), 0);
  assert_int_equal(rv.ban_secs, 3600);
  assert_string_equal(rv.reason, "");
  assert_int_equal(pd_policy_reputation(p, &v, "failed", NULL, NULL, NOW, &rv), 0);
  assert_true(rv.reputation == -0.5);
  assert_int_equal(rv.ban_secs, 0);
  const char *bad_events[] = {"bad_ban", "neg_ban", "no_rep", "nan", "bad_reason"};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(pd_policy_reputation(p, &v, bad_events[i], NULL, NULL, NOW, &rv), PD_EINVAL);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_REPUTATION, PD_POLICY_BAD_RETURN), 5);

  view(&f, "9.9.9.9:26656");
  bool ok = true;
  assert_int_equal(pd_policy_pex_accept(p, &v, &f, NULL, NOW, &ok), 0);
  assert_false(ok); /* from is not known */
  f.known = true;
  assert_int_equal(pd_policy_pex_accept(p, &v, &f, NULL, NOW, &ok), 0);
  assert_true(ok);
  v.private_peer = true;
  assert_int_equal(pd_policy_pex_share(p, &v, &f, NULL, NOW, &ok), 0);
  assert_false(ok);
  pd_policy_destroy(p);
}

/* A peer argument is a lazy view: fields read as they were in a table,
 * writes shadow them, pairs() lists everything, tostring() is the address,
 * and a view kept past its call is the snapshot it was. */
static void peer_views(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua",
                "local kept\n"
                "return { score = function(p)\n"
                "  if kept == nil then kept = p; return 0 end\n"
                "  assert(type(p) == 'userdata' and tostring(p) == '8.8.8.8:26656')\n"
                "  assert(p.node_id == nil and p.latency_ms == nil and p.nosuch == nil)\n"
                "  assert(p[1] == nil and p[true] == nil and p[string.rep('x', 50)] == nil)\n"
                "  assert(p.attempts == 4 and p.reputation == 2.5 and p.group == '010808')\n"
                "  assert(p.addr == tostring(p) and p.group == '010808') -- made once, kept\n"
                "  p.attempts = 'mine'; p.extra = 7; p.group = 'g'\n"
                "  assert(p.group == 'g') -- a write shadows a kept string too\n"
                "  assert(p.attempts == 'mine' and p.extra == 7 and p.tried == false)\n"
                "  local n, seen = 0, {}\n"
                "  for k, v in pairs(p) do n = n + 1; seen[k] = v end\n"
                "  assert(n == 17, n) -- 16 fields (no node_id, latency or record) + extra\n"
                "  assert(seen.attempts == 'mine' and seen.extra == 7 and seen.addr == '8.8.8.8:26656')\n"
                "  assert(seen.routable == true and seen.time == 30)\n"
                "  assert(seen.peerd == false and seen.service_only == false and seen.services == nil)\n"
                "  -- the first call's view is still its own snapshot\n"
                "  assert(kept.attempts == 3 and kept.extra == nil)\n"
                "  return 1\nend }"}};
  char err[512];
  if (load(p, s, 1, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:26656");
  v.attempts = 3;
  v.time = 30;
  v.reputation = 2.5;
  double sc = -1;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 0);
  v.attempts = 4;
  if (pd_policy_score(p, &v, NULL, NOW, &sc) != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("%s", msg);
  }
  assert_true(sc == 1);
  pd_policy_destroy(p);
}

/* Book entries (book:entry, evict_new/evict_tried's arguments) are lazy
 * snapshots as peer views are: every field reads as it did from the eager
 * table, pairs() lists them all, writes shadow them, tostring() is the
 * address, the candidate not yet in the book has no id, and an entry kept
 * past its call still reads what it was. */
static void entry_views(void **state) {
  (void)state;
  pd_book_t *b = small_book(3, 1);
  uint32_t ids[8];
  size_t total = 0;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 8, ids, &total), 4);
  pd_book_info_t inc;
  assert_int_equal(pd_book_info(b, ids[0], &inc), 0);
  pd_book_info_t cand;
  memset(&cand, 0, sizeof(cand));
  cand.id = PD_BOOK_NO_ID;
  assert_int_equal(pd_netaddr_parse("99.1.2.3:26656", 0, &cand.addr, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("7.7.7.7", &cand.source, NULL), 0);
  cand.time = NOW - 5;
  char src[2048];
  snprintf(src, sizeof src,
           "local kept, kept_addr, kept_tried\n"
           "return { evict_new = function(book, inc, cand)\n"
           "  if kept then\n"
           "    assert(kept.addr == kept_addr and kept.tried == kept_tried and kept.mine == 1)\n"
           "    return 'keep'\n"
           "  end\n"
           "  assert(type(inc) == 'userdata' and tostring(inc) == inc.addr)\n"
           "  assert(inc.id == %u and inc.addr == '%s')\n"
           "  assert(inc.source == '5.6.7.8' and inc.group == book:group(inc.id))\n"
           "  assert(inc.tried == book:tried(inc.id) and inc.terrible == book:terrible(inc.id))\n"
           "  assert(inc.chance == book:chance(inc.id) and inc.banned == false)\n"
           "  assert(inc.refs == %d and inc.attempts == 0 and inc.time == %lld)\n"
           "  assert(inc.node_id == nil and inc.peerd == false and inc.services == nil)\n"
           "  assert(inc.service_only == false and inc.nosuch == nil and inc[1] == nil)\n"
           "  local n, seen = 0, {}\n"
           "  for k, v in pairs(inc) do n = n + 1; seen[k] = v end\n"
           "  assert(n == 15, n) -- 19 fields but node_id, services, attrs and record_seq\n"
           "  for k, v in pairs(seen) do assert(inc[k] == v, k) end\n"
           "  assert(cand.id == nil and cand.addr == '99.1.2.3:26656' and cand.refs == 0)\n"
           "  assert(cand.source == '7.7.7.7' and cand.time == %lld and cand.tried == false)\n"
           "  n = 0\n"
           "  for k in pairs(cand) do n = n + 1; assert(k ~= 'id') end\n"
           "  assert(n == 14, n) -- and no id\n"
           "  cand.refs = 'x'; cand.extra = true\n"
           "  assert(cand.refs == 'x' and cand.extra == true and cand.time == %lld)\n"
           "  seen = {}\n"
           "  for k, v in pairs(cand) do seen[k] = v end\n"
           "  assert(seen.refs == 'x' and seen.extra == true)\n"
           "  kept, kept_addr, kept_tried = inc, inc.addr, inc.tried\n"
           "  inc.mine = 1\n"
           "  return 'replace'\n"
           "end }",
           inc.id, "", (int)inc.refcount, (long long)inc.time, (long long)cand.time,
           (long long)cand.time);
  /* the incumbent's address, formatted as the policy sees it */
  char addr[PD_ADDR_STRLEN];
  assert_true(pd_netaddr_format(&inc.addr, addr, sizeof addr) > 0);
  char full[2200];
  char *at = strstr(src, "inc.addr == ''");
  assert_non_null(at);
  snprintf(full, sizeof full, "%.*sinc.addr == '%s'%s", (int)(at - src), src, addr,
           at + strlen("inc.addr == ''"));
  src_t s[] = {{"evict.lua", full}};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[512];
  if (load(p, s, 1, err, sizeof(err)) != 0) fail_msg("%s", err);
  int vd = 0;
  int rc = pd_policy_evict_new(p, b, ids[0], &cand, NULL, NOW, &vd);
  if (rc != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("evict_new: %d %s", rc, msg);
  }
  assert_int_equal(vd, PD_BOOK_REPLACE);
  /* the book changes; the kept entry does not */
  pd_netaddr_t a = inc.addr;
  assert_int_equal(pd_book_attempt(b, &a, true, NOW), 0);
  rc = pd_policy_evict_new(p, b, ids[1], &cand, NULL, NOW, &vd);
  if (rc != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("evict_new (kept): %d %s", rc, msg);
  }
  assert_int_equal(vd, PD_BOOK_KEEP);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

/* Batches of pex calls decide exactly as single calls do (same decisions,
 * same peerd.random draws, same failure accounting), one failing address
 * falling back alone. */
static const char PEX_MIXED[] =
    "return {\n"
    "  accept = function(addr, from)\n"
    "    if addr.addr == '7.7.7.7:1' then error('boom') end\n"
    "    if addr.addr == '6.6.6.6:1' then while true do end end\n"
    "    if addr.addr == '5.5.5.5:1' then return 1 end\n"
    "    local r = peerd.random(3)\n"
    "    return addr.routable and from.reputation >= 0 and\n"
    "           (addr.attempts + from.misbehaviours + r) % 2 == 0\n"
    "  end,\n"
    "  share = function(addr, to)\n"
    "    if addr.addr == '7.7.7.7:1' then error('boom') end\n"
    "    return addr.attempts + peerd.random(2) > to.attempts\n"
    "  end }\n";

#define NB 12
static void pex_views(pd_peer_view_t *a, pd_peer_view_t *from) {
  static const char *const ips[NB] = {"8.8.8.8:1", "1.2.3.4:1", "7.7.7.7:1", "10.0.0.1:1",
                                      "8.8.4.4:1", "6.6.6.6:1", "9.9.9.9:1", "5.5.5.5:1",
                                      "4.4.4.4:1", "3.3.3.3:1", "2.2.2.2:1", "1.1.1.1:1"};
  for (size_t i = 0; i < NB; i++) {
    view(&a[i], ips[i]);
    a[i].attempts = (int)(i * 7 % 5);
  }
  view(from, "9.9.9.9:26656");
  from->misbehaviours = 1;
  from->attempts = 2;
  from->reputation = 3;
}

static void pex_batch_matches_single(void **state) {
  (void)state;
  pd_policy_limits_t l;
  pd_policy_limits_default(&l);
  l.call_instructions = 20000;
  pd_policy_t *p = mk(&l, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua", PEX_MIXED}};
  assert_int_equal(load(p, s, 1, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);

  for (int hook = PD_HOOK_PEX_ACCEPT; hook <= PD_HOOK_PEX_SHARE; hook++) {
    bool acc = hook == PD_HOOK_PEX_ACCEPT;
    uint64_t f0[PD_POLICY_REASON_COUNT];
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) f0[r] = pd_policy_failures(p, hook, r);
    /* one by one */
    pd_rng_t r1;
    pd_rng_seed(&r1, 42);
    bool single[NB];
    int rcs[NB], decided = 0, ntrue = 0;
    for (size_t i = 0; i < NB; i++) {
      single[i] = true; /* the C default */
      bool d = false;
      rcs[i] = acc ? pd_policy_pex_accept(p, &a[i], &from, &r1, NOW, &d)
                   : pd_policy_pex_share(p, &a[i], &from, &r1, NOW, &d);
      if (rcs[i] == 0) {
        single[i] = d;
        decided++;
        ntrue += d;
      }
    }
    assert_int_equal(decided, acc ? NB - 3 : NB - 1);
    assert_true(ntrue > 0 && ntrue < decided); /* the test discriminates */
    uint64_t f1[PD_POLICY_REASON_COUNT];
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) {
      f1[r] = pd_policy_failures(p, hook, r);
      assert_true(f1[r] - f0[r] <= 1);
    }
    assert_int_equal(f1[PD_POLICY_ERROR] - f0[PD_POLICY_ERROR], 1);
    /* as one batch */
    pd_rng_t r2;
    pd_rng_seed(&r2, 42);
    bool batch[NB];
    for (size_t i = 0; i < NB; i++) batch[i] = true;
    int got = acc ? pd_policy_pex_accept_batch(p, a, NB, &from, &r2, NOW, batch)
                  : pd_policy_pex_share_batch(p, a, NB, &from, &r2, NOW, batch);
    assert_int_equal(got, decided);
    for (size_t i = 0; i < NB; i++) assert_int_equal(batch[i], single[i]);
    assert_true(pd_rng_u64(&r1) == pd_rng_u64(&r2)); /* the same draws */
    /* each failure counted once more, of the same kind */
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++)
      assert_int_equal(pd_policy_failures(p, hook, r) - f1[r], f1[r] - f0[r]);
  }
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_INSTRUCTIONS), 2);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_BAD_RETURN), 2);
  /* bad arguments; no hook: nothing decided, outputs untouched */
  bool o = true;
  assert_int_equal(pd_policy_pex_accept_batch(p, NULL, 1, &from, NULL, NOW, &o), PD_EINVAL);
  assert_int_equal(pd_policy_pex_accept_batch(p, a, 1, NULL, NULL, NOW, &o), PD_EINVAL);
  assert_int_equal(pd_policy_pex_accept_batch(p, a, 0, &from, NULL, NOW, NULL), 0);
  src_t none[] = {{"score.lua", "return { score = function(p) return 1 end }"}};
  assert_int_equal(load(p, none, 1, err, sizeof(err)), 0);
  assert_int_equal(pd_policy_pex_accept_batch(p, a, NB, &from, NULL, NOW, (bool[NB]){0}), 0);
  pd_policy_destroy(p);
}

/* The from/to table is built once per batch: a policy that writes to it
 * (it must not) sees its writes within that batch only; the next batch, a
 * single call, or a changed view gets a fresh table. */
static const char PEX_COUNTER[] =
    "return { accept = function(addr, from)\n"
    "  local c = from.count or 0\n"
    "  from.count = c + 1\n"
    "  return c == 0\n"
    "end }\n";

typedef struct {
  const pd_peer_view_t *a;
  size_t change_at;
  bool out[NB];
  int rcs[NB];
  size_t calls;
} cb_t;

static bool cb_next(void *ud, size_t i, pd_peer_view_t *addr, pd_peer_view_t *other,
                    bool *changed) {
  cb_t *c = ud;
  if (i == 1) return false; /* skipped: no call, no done */
  *addr = c->a[i];
  if (i >= c->change_at && other->reputation != 50) {
    other->reputation = 50;
    *changed = true;
  }
  return true;
}

static void cb_done(void *ud, size_t i, int rc, bool decision) {
  cb_t *c = ud;
  c->calls++;
  c->rcs[i] = rc;
  c->out[i] = decision;
}

static void pex_batch_shares_from(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua", PEX_COUNTER}};
  assert_int_equal(load(p, s, 1, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);
  bool out[4];
  for (int round = 0; round < 2; round++) {
    memset(out, 0, sizeof(out));
    assert_int_equal(pd_policy_pex_accept_batch(p, a, 4, &from, NULL, NOW, out), 4);
    assert_true(out[0]);
    assert_false(out[1]);
    assert_false(out[2]);
    assert_false(out[3]);
    bool one = false;
    assert_int_equal(pd_policy_pex_accept(p, &a[0], &from, NULL, NOW, &one), 0);
    assert_true(one);
  }
  /* callback form: skipped entries, and a changed `from` view mid-batch */
  cb_t c;
  memset(&c, 0, sizeof(c));
  c.a = a;
  c.change_at = 3;
  assert_int_equal(pd_policy_pex_batch(p, PD_HOOK_PEX_ACCEPT, &from, 5, cb_next, cb_done, &c,
                                       NULL, NOW),
                   0);
  assert_int_equal(c.calls, 4);
  assert_true(c.out[0]);
  assert_false(c.out[2]);
  assert_true(c.out[3]); /* new view, new table */
  assert_false(c.out[4]);
  for (size_t i = 0; i < 5; i++) assert_int_equal(c.rcs[i], 0);
  assert_int_equal(pd_policy_pex_batch(p, PD_HOOK_SCORE, &from, 1, cb_next, cb_done, &c, NULL,
                                       NOW),
                   PD_EINVAL);
  /* no policy host: every call fails as a single call would */
  memset(&c, 0, sizeof(c));
  c.a = a;
  c.change_at = NB;
  assert_int_equal(pd_policy_pex_batch(NULL, PD_HOOK_PEX_SHARE, &from, 3, cb_next, cb_done, &c,
                                       NULL, NOW),
                   0);
  assert_int_equal(c.calls, 2);
  assert_int_equal(c.rcs[0], PD_EINVAL);
  pd_policy_destroy(p);
}

/* The allocator's kept small blocks go to the classes in use: a load that
 * frees thousands of blocks of one size (long strings of ~256 bytes) that
 * no call asks for again must not fill the room the calls' views need, or
 * every view goes to malloc (it did: 89% of a lab run's small blocks). */
static void small_blocks_are_reused(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua",
                "do local t = {}\n"
                "  for i = 1, 4000 do t[i] = string.rep('x', 220) .. i end\n"
                "end\n"
                "return { accept = function(addr, from) return addr.routable end }\n"}};
  assert_int_equal(load(p, s, 1, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);
  pd_policy_status_t st0, st1;
  pd_policy_status(p, &st0);
  bool out[NB];
  for (int round = 0; round < 2000; round++)
    assert_int_equal(pd_policy_pex_accept_batch(p, a, NB, &from, NULL, NOW, out), NB);
  pd_policy_status(p, &st1);
  uint64_t reused = st1.small_reused - st0.small_reused, fresh = st1.small_fresh - st0.small_fresh;
  /* 24,000 calls, a view each (and the batch's `from`) */
  assert_true(reused + fresh >= 24000);
  assert_true(reused > 9 * fresh);
  pd_policy_destroy(p);
}

/* A PEX address's view keeps no strings (made at each read), the batch's
 * from view keeps them: both read the same, any number of times. */
static void pex_view_strings_each_read(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua",
                "return { accept = function(addr, from)\n"
                "  local a, g = addr.addr, addr.group\n"
                "  for _ = 1, 3 do\n"
                "    if addr.addr ~= a or addr.group ~= g or tostring(addr) ~= a then return false end\n"
                "    if from.addr ~= '9.9.9.9:26656' or from.group ~= '010909' then return false end\n"
                "  end\n"
                "  return a == '8.8.8.8:1' and g == '010808' and addr.node_id == nil\n"
                "end }\n"}};
  assert_int_equal(load(p, s, 1, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);
  bool out[NB];
  for (int round = 0; round < 3; round++) {
    assert_int_equal(pd_policy_pex_accept_batch(p, a, NB, &from, NULL, NOW, out), NB);
    assert_true(out[0]);
    for (size_t i = 1; i < NB; i++) assert_false(out[i]);
  }
  pd_policy_destroy(p);
}

/* A batch's calls share one protected run until one fails: what the
 * callbacks do between them must work as between plain calls. The node's
 * done() adds to the book, whose evict hooks call the same policy state:
 * here done() calls score() on it, which fails for some peers. A failing
 * accept must not take the rest of the batch, or the nested calls, with it. */
typedef struct {
  pd_policy_t *p;
  const pd_peer_view_t *a;
  bool out[NB];
  int rcs[NB];
  double score[NB];
  int score_rc[NB];
  size_t calls;
} nest_t;

static bool nest_next(void *ud, size_t i, pd_peer_view_t *addr, pd_peer_view_t *other,
                      bool *changed) {
  (void)other;
  (void)changed;
  *addr = ((nest_t *)ud)->a[i];
  return true;
}

static void nest_done(void *ud, size_t i, int rc, bool decision) {
  nest_t *c = ud;
  c->calls++;
  c->rcs[i] = rc;
  c->out[i] = decision;
  c->score_rc[i] = pd_policy_score(c->p, &c->a[i], NULL, NOW, &c->score[i]);
}

static void pex_batch_nested_calls(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua",
                "return { accept = function(addr, from)\n"
                "  if addr.addr == '7.7.7.7:1' or addr.addr == '4.4.4.4:1' then error('boom') end\n"
                "  return addr.attempts % 2 == 0\n"
                "end }\n"},
               {"score.lua",
                "return { score = function(peer)\n"
                "  if peer.addr == '8.8.4.4:1' then error('score boom') end\n"
                "  return peer.attempts + 0.5\n"
                "end }\n"}};
  assert_int_equal(load(p, s, 2, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);
  for (int round = 0; round < 3; round++) {
    nest_t c;
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.a = a;
    assert_int_equal(pd_policy_pex_batch(p, PD_HOOK_PEX_ACCEPT, &from, NB, nest_next, nest_done,
                                         &c, NULL, NOW),
                     0);
    assert_int_equal(c.calls, NB);
    for (size_t i = 0; i < NB; i++) {
      bool boom = i == 2 || i == 8; /* 7.7.7.7 and 4.4.4.4 */
      assert_int_equal(c.rcs[i], boom ? PD_EINVAL : 0);
      assert_int_equal(c.out[i], !boom && a[i].attempts % 2 == 0);
      if (i == 4) { /* 8.8.4.4 */
        assert_int_equal(c.score_rc[i], PD_EINVAL);
      } else {
        assert_int_equal(c.score_rc[i], 0);
        assert_true(c.score[i] == a[i].attempts + 0.5);
      }
    }
  }
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_ERROR), 6);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_ERROR), 3);
  pd_policy_destroy(p);
}

/* Every call of a batch fails: the breaker trips after
 * PD_POLICY_TRIP_AFTER of them and the rest are skipped, each address
 * answered, as with plain calls. */
static void pex_batch_trips_midway(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  char err[256];
  src_t s[] = {{"pex.lua", "return { accept = function(addr, from) error('always') end }\n"}};
  assert_int_equal(load(p, s, 1, err, sizeof(err)), 0);
  pd_peer_view_t a[NB], from;
  pex_views(a, &from);
  nest_t c;
  memset(&c, 0, sizeof(c));
  c.p = p;
  c.a = a;
  assert_int_equal(pd_policy_pex_batch(p, PD_HOOK_PEX_ACCEPT, &from, NB, nest_next, nest_done, &c,
                                       NULL, NOW),
                   0);
  assert_int_equal(c.calls, NB);
  for (size_t i = 0; i < NB; i++) {
    assert_int_equal(c.rcs[i], PD_EINVAL);
    assert_false(c.out[i]);
  }
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_ERROR), PD_POLICY_TRIP_AFTER);
  assert_int_equal(pd_policy_skipped(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_SKIP_TRIPPED),
                   NB - PD_POLICY_TRIP_AFTER);
  pd_policy_destroy(p);
}

static void book_hooks_adapter(void **state) {
  (void)state;
  pd_book_t *b = small_book(20, 4);
  uint32_t ids[32];
  size_t total;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 32, ids, &total), 24);
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"evict.lua",
                "local calls = 0\n"
                "return {\n"
                "  calls = function() return calls end,\n"
                "  evict_new = function(book, inc, cand)\n"
                "    calls = calls + 1\n"
                "    local e = book:entry(inc.id)\n"
                "    assert(e and e.addr == inc.addr)\n"
                "    assert(not pcall(book.random, book, 'new'))\n"
                "    if cand.addr == '66.1.1.1:1' then error('hostile') end\n"
                "    if cand.id == nil then return 'replace' end\n"
                "    return 'keep'\n"
                "  end,\n"
                "  evict_tried = function(book, inc, cand)\n"
                "    if inc.id == cand.id then return 'maybe' end\n"
                "    return inc.tried and 'wait' or nil\n"
                "  end }"},
               {"score.lua", "return { score = function(p) return require('evict').calls() end }"}};
  char err[512];
  if (load(p, s, 2, err, sizeof(err)) != 0) fail_msg("%s", err);
  pd_rng_t r;
  pd_rng_seed(&r, 8);
  pd_book_hooks_t hk;
  pd_policy_book_hooks(p, &r, &hk);
  assert_non_null(hk.evict_new);
  assert_non_null(hk.evict_tried);
  pd_book_info_t cand;
  memset(&cand, 0, sizeof(cand));
  cand.id = PD_BOOK_NO_ID;
  cand.time = NOW;
  assert_int_equal(pd_netaddr_parse("99.1.2.3:26656", 0, &cand.addr, NULL, NULL, NULL), 0);
  assert_int_equal(hk.evict_new(hk.ud, b, ids[0], &cand, NOW), PD_BOOK_REPLACE);
  pd_book_info_t in;
  assert_int_equal(pd_book_info(b, ids[1], &in), 0);
  assert_int_equal(hk.evict_new(hk.ud, b, ids[0], &in, NOW), PD_BOOK_KEEP);
  assert_int_equal(pd_netaddr_parse("66.1.1.1:1", 0, &cand.addr, NULL, NULL, NULL), 0);
  assert_int_equal(hk.evict_new(hk.ud, b, ids[0], &cand, NOW), PD_BOOK_HOOK_DEFAULT);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_EVICT_NEW, PD_POLICY_ERROR), 1);
  /* unknown incumbent: an error, the default applies */
  assert_int_equal(hk.evict_new(hk.ud, b, 999999, &in, NOW), PD_BOOK_HOOK_DEFAULT);
  /* tried: ids[0..3] are the tried ones (added and moved first) */
  pd_book_info_t e0;
  assert_int_equal(pd_book_info(b, ids[0], &e0), 0);
  uint32_t tried_id = PD_BOOK_NO_ID, new_id = PD_BOOK_NO_ID;
  for (size_t i = 0; i < total; i++) {
    pd_book_info_t e;
    assert_int_equal(pd_book_info(b, ids[i], &e), 0);
    if (e.in_tried && tried_id == PD_BOOK_NO_ID) tried_id = ids[i];
    if (!e.in_tried && new_id == PD_BOOK_NO_ID) new_id = ids[i];
  }
  assert_int_equal(hk.evict_tried(hk.ud, b, tried_id, new_id, NOW), PD_BOOK_WAIT);
  assert_int_equal(hk.evict_tried(hk.ud, b, new_id, tried_id, NOW), PD_BOOK_HOOK_DEFAULT); /* nil */
  assert_int_equal(hk.evict_tried(hk.ud, b, tried_id, tried_id, NOW), PD_BOOK_HOOK_DEFAULT);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_EVICT_TRIED, PD_POLICY_BAD_RETURN), 1);

  /* installed in a book: the book calls evict_new from inside pd_book_add */
  pd_book_set_hooks(b, &hk);
  pd_netaddr_t src;
  assert_int_equal(pd_netaddr_parse_ip("5.6.7.8", &src, NULL), 0);
  pd_rng_t g;
  pd_rng_seed(&g, 4);
  for (int i = 0; i < 6000; i++) {
    pd_netaddr_t a;
    memset(&a, 0, sizeof(a));
    a.ip[10] = a.ip[11] = 0xff;
    a.ip[12] = (uint8_t)(30 + pd_rng_range(&g, 60));
    a.ip[13] = (uint8_t)pd_rng_u64(&g);
    a.ip[14] = (uint8_t)pd_rng_u64(&g);
    a.ip[15] = (uint8_t)(1 + pd_rng_range(&g, 250));
    a.port = 26656;
    (void)pd_book_add(b, &a, NULL, NOW, &src, 0, NOW, NULL);
  }
  assert_int_equal(pd_book_check(b), 0);
  pd_peer_view_t v;
  view(&v, "8.8.8.8:1");
  double calls = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &calls), 0);
  assert_true(calls > 10); /* the single source group's 64 buckets filled up */
  assert_int_equal(pd_policy_failures(p, PD_HOOK_EVICT_NEW, PD_POLICY_ERROR), 2);
  pd_book_set_hooks(b, NULL);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

/* Views read the record of the peer's node: services, attrs, peerd,
 * record_seq (looked up when read, by node id); without a record services
 * and attrs are nil and peerd false. The worked example of
 * docs/policies.md: prefer peers on our chain. */
static void record_views(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua",
                "local CHAIN = 'test-chain-1'\n"
                "return { score = function(p)\n"
                "  local s = 0\n"
                "  if p.attrs and p.attrs.chain == CHAIN then s = s + 20 end\n"
                "  if p.peerd then s = s + 1 end\n"
                "  if p.services then\n"
                "    assert(p.services.p2p == '192.0.2.1:26656', p.services.p2p)\n"
                "    assert(p.record_seq == 1)\n"
                "    local n = 0; for k in pairs(p) do if k == 'services' or k == 'attrs' then n = n + 1 end end\n"
                "    assert(n == 2)\n"
                "  end\n"
                "  return s\nend }"},
               {"evict.lua", /* a book entry reads the same fields */
                "return { evict_new = function(book, inc, cand)\n"
                "  assert(inc.peerd == false and inc.attrs == nil and inc.record_seq == nil)\n"
                "  assert(cand.peerd == true and cand.attrs.chain == 'test-chain-1')\n"
                "  assert(cand.services.p2p == '192.0.2.1:26656' and cand.record_seq == 1)\n"
                "  local n = 0; for k in pairs(cand) do if k == 'services' or k == 'attrs' then n = n + 1 end end\n"
                "  assert(n == 2)\n"
                "  return 'keep'\nend }"}};
  char err[512];
  if (load(p, s, 2, err, sizeof(err)) != 0) fail_msg("%s", err);
  /* the record of docs/protocol.md's test vector: chain=test-chain-1 */
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)i;
  pd_identity_t id;
  assert_int_equal(pd_identity_from_seed(&id, seed), 0);
  pd_record_t r;
  assert_int_equal(pd_record_init(&r, "peerd", 1, NULL), 0);
  assert_int_equal(pd_netaddr_parse("192.0.2.1:7411", 0, &r.discovery, NULL, NULL, NULL), 0);
  r.has_discovery = true;
  pd_netaddr_t svc;
  assert_int_equal(pd_netaddr_parse("192.0.2.1:26656", 0, &svc, NULL, NULL, NULL), 0);
  assert_int_equal(pd_record_set_service(&r, "p2p", &svc, NULL), 0);
  assert_int_equal(pd_record_set_attr(&r, "chain", "test-chain-1", NULL), 0);
  uint8_t buf[PD_RECORD_MAX];
  size_t len;
  assert_int_equal(pd_record_sign(&r, &id, NULL, buf, sizeof buf, &len), 0);
  uint8_t key[PD_RECTABLE_KEY_LEN] = {1};
  pd_rectable_t *t = NULL;
  assert_int_equal(pd_rectable_create(&t, 16, key), 0);
  assert_int_equal(pd_rectable_put(t, buf, len, &r, NOW), PD_REC_NEW);
  pd_policy_set_records(p, t);
  pd_peer_view_t v;
  view(&v, "192.0.2.1:7411");
  double sc = -1;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 0); /* no node id: no record */
  v.has_node_id = true;
  memcpy(v.node_id, id.id, PD_NODE_ID_LEN);
  if (pd_policy_score(p, &v, NULL, NOW, &sc) != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("%s", msg);
  }
  assert_true(sc == 21);
  pd_book_t *b = small_book(1, 0);
  uint32_t inc;
  size_t total = 0;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 1, &inc, &total), 1);
  pd_book_info_t cand;
  memset(&cand, 0, sizeof(cand));
  cand.id = PD_BOOK_NO_ID;
  cand.addr = v.addr;
  cand.has_node_id = true;
  memcpy(cand.node_id, id.id, PD_NODE_ID_LEN);
  int vd = 0;
  if (pd_policy_evict_new(p, b, inc, &cand, NULL, NOW, &vd) != 0) {
    char msg[256];
    pd_policy_next_unreported(p, NULL, NULL, msg, sizeof(msg));
    fail_msg("%s", msg);
  }
  assert_int_equal(vd, PD_BOOK_KEEP);
  pd_book_destroy(b);
  pd_policy_set_records(p, NULL);
  pd_rectable_destroy(t);
  pd_policy_destroy(p);
}


/* ---- under load: request budgets, breakers, last_error, latency, adopt ------------ */

static int score_once(pd_policy_t *p, int attempts) {
  pd_peer_view_t v;
  view(&v, "8.8.4.4:26656");
  v.attempts = attempts;
  double sc = 0;
  return pd_policy_score(p, &v, NULL, NOW, &sc);
}

/* A request budget is shared by every call until its end: the call that
 * runs out of what is left fails (request_budget, not counted by the
 * breaker), the rest are not run; the next request starts afresh. */
static void request_budget_exhaustion(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  local x = 0\n"
                             "  for i = 1, 3000 do x = x + i end\n"
                             "  return x\nend }"}};
  assert_int_equal(load(p, s, 1, NULL, 0), 0);
  assert_int_equal(pd_policy_budget_used(p), 0);
  pd_policy_budget_begin(p, 50500, 0);
  pd_policy_budget_begin(p, 1, 0); /* nested: the outer budget governs */
  assert_int_equal(score_once(p, 0), 0);
  uint64_t one = pd_policy_budget_used(p); /* what a call costs, counted per 1,000 */
  assert_true(one >= 6000 && one <= 12000 && one % 1000 == 0);
  int ran = 1, cut = 0, skipped = 0;
  for (int i = 1; i < 40; i++) {
    int rc = score_once(p, 0);
    if (rc == 0) {
      assert_int_equal(cut + skipped, 0); /* nothing runs once the budget is gone */
      ran++;
    } else if (rc == PD_ERANGE && cut == 0 && skipped == 0) {
      cut++;
    } else {
      assert_int_equal(rc, PD_ERANGE);
      skipped++;
    }
  }
  pd_policy_budget_end(p);
  assert_int_equal(ran, 50500 / one);
  assert_int_equal(cut, 1); /* 50,500 is no multiple of 1,000 */
  assert_int_equal(ran + cut + skipped, 40);
  assert_int_equal(pd_policy_budget_used(p), 50500);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_REQUEST_BUDGET), (uint64_t)cut);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_SCORE, PD_POLICY_INSTRUCTIONS), 0);
  assert_int_equal(pd_policy_skipped(p, PD_HOOK_SCORE, PD_POLICY_SKIP_BUDGET), (uint64_t)skipped);
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_OK); /* not the hook's own failure */
  assert_int_equal(hh.consecutive, 0);
  assert_int_equal(hh.calls, (uint64_t)(ran + cut));
  assert_int_equal(hh.last_error_reason, PD_POLICY_REQUEST_BUDGET);
  assert_non_null(strstr(hh.last_error, "request instruction budget exceeded"));
  int h, r;
  char msg[256];
  assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof(msg)));
  assert_int_equal(r, PD_POLICY_REQUEST_BUDGET);
  assert_non_null(strstr(msg, "score.lua:3: request instruction budget exceeded"));
  /* the request is over */
  pd_policy_budget_end(p);
  assert_int_equal(pd_policy_budget_used(p), 0);
  assert_int_equal(score_once(p, 0), 0);
  /* a new request: a full budget again */
  pd_policy_budget_begin(p, 50500, 0);
  assert_int_equal(score_once(p, 0), 0);
  assert_int_equal(pd_policy_budget_used(p), one);
  pd_policy_budget_end(p);
  pd_policy_destroy(p);
}

/* The case in the core: a hook that loops on every call, 1,000
 * calls in one request (one POST /v1/book): 8 failures trip the breaker,
 * the other 992 calls get the C default without running Lua; a reload
 * closes the breaker. */
static void breaker_trips_and_reload_resets(void **state) {
  (void)state;
  pd_policy_limits_t l;
  pd_policy_limits_default(&l);
  l.call_instructions = 100000; /* a tenth of the default: cheaper under valgrind */
  l.request_instructions = 0;   /* 10 x call_instructions */
  pd_policy_t *p = mk(&l, NULL, NULL);
  src_t s[] = {{"pex.lua", "return { accept = function(addr, from)\n  while true do end\nend }"},
               {"score.lua", "return { score = function(p) return 1 end }"}};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_peer_view_t a, f;
  view(&a, "8.8.8.8:26656");
  view(&f, "9.9.9.9:26656");
  pd_policy_budget_begin(p, 0, 0);
  int failed = 0, skipped = 0;
  for (int i = 0; i < 1000; i++) {
    bool acc = false;
    int rc = pd_policy_pex_accept(p, &a, &f, NULL, NOW + i, &acc);
    assert_int_equal(rc == PD_ERANGE || rc == PD_EINVAL, 1);
    if (i < PD_POLICY_TRIP_AFTER) {
      assert_int_equal(rc, PD_ERANGE); /* ran out of its own budget */
      failed++;
    } else {
      assert_int_equal(rc, PD_EINVAL); /* tripped: not run */
      skipped++;
    }
    if (i == PD_POLICY_TRIP_AFTER - 2) {
      pd_policy_hook_health_t hh;
      pd_policy_hook_health(p, PD_HOOK_PEX_ACCEPT, &hh);
      assert_int_equal(hh.state, PD_HOOK_STATE_FAILING);
      assert_int_equal(hh.consecutive, PD_POLICY_TRIP_AFTER - 1);
    }
  }
  /* 8 calls of 100,000 instructions: within the request's 1,000,000 */
  assert_int_equal(pd_policy_budget_used(p), (uint64_t)PD_POLICY_TRIP_AFTER * 100000);
  pd_policy_budget_end(p);
  assert_int_equal(failed, PD_POLICY_TRIP_AFTER);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_INSTRUCTIONS), 8);
  assert_int_equal(pd_policy_skipped(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_SKIP_TRIPPED), 992);
  assert_int_equal(pd_policy_skipped(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_SKIP_BUDGET), 0);
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, PD_HOOK_PEX_ACCEPT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_TRIPPED);
  assert_int_equal(hh.consecutive, PD_POLICY_TRIP_AFTER);
  assert_int_equal(hh.calls, 8);
  assert_int_equal(hh.failures, 8);
  assert_int_equal(hh.tripped_at, NOW + PD_POLICY_TRIP_AFTER - 1);
  assert_int_equal(hh.last_error_reason, PD_POLICY_INSTRUCTIONS);
  assert_non_null(strstr(hh.last_error, "pex.lua:2: instruction budget exceeded"));
  /* the trip is reported once */
  int h = -1;
  char msg[256];
  assert_true(pd_policy_next_tripped(p, &h, msg, sizeof(msg)));
  assert_int_equal(h, PD_HOOK_PEX_ACCEPT);
  assert_non_null(strstr(msg, "pex.lua:2:"));
  assert_false(pd_policy_next_tripped(p, &h, msg, sizeof(msg)));
  /* other hooks are not affected */
  assert_int_equal(score_once(p, 0), 0);
  pd_policy_hook_health(p, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_OK);
  pd_policy_hook_health(p, PD_HOOK_SELECT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_ABSENT);
  /* a failed reload keeps the set, and the breaker */
  src_t broken[] = {{"pex.lua", "syntax error"}};
  assert_int_equal(load(p, broken, 1, NULL, 0), PD_EINVAL);
  pd_policy_hook_health(p, PD_HOOK_PEX_ACCEPT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_TRIPPED);
  /* a successful one closes it: the hook runs (and fails) again */
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  pd_policy_hook_health(p, PD_HOOK_PEX_ACCEPT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_OK);
  assert_int_equal(hh.consecutive, 0);
  assert_int_equal(hh.tripped_at, 0);
  assert_int_equal(hh.calls, 8); /* counts since creation */
  bool acc;
  assert_int_equal(pd_policy_pex_accept(p, &a, &f, NULL, NOW, &acc), PD_ERANGE);
  pd_policy_hook_health(p, PD_HOOK_PEX_ACCEPT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_FAILING);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_PEX_ACCEPT, PD_POLICY_INSTRUCTIONS), 9);
  pd_policy_destroy(p);
}

/* A hook that fails on some calls only never trips: a call that decides
 * (or chooses the default) ends the run; so does nil from a hook. */
static void breaker_needs_a_run(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  src_t s[] = {{"score.lua", "return { score = function(p)\n"
                             "  if p.attempts % 4 ~= 0 then error('odd ' .. p.attempts) end\n"
                             "  return 0\nend }"},
               {"reputation.lua", "return { on_event = function(p, e)\n"
                                  "  if e == 'good' then return nil end\n"
                                  "  return 'bad'\nend }"}};
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  for (int i = 1; i <= 100; i++) {
    int rc = score_once(p, i);
    assert_int_equal(rc, i % 4 ? PD_EINVAL : 0);
  }
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_OK);
  assert_int_equal(hh.calls, 100);
  assert_int_equal(hh.failures, 75);
  assert_int_equal(pd_policy_skipped(p, PD_HOOK_SCORE, PD_POLICY_SKIP_TRIPPED), 0);
  /* reputation: 7 bad returns, a nil (the default: not a failure), 7 more */
  pd_peer_view_t v;
  view(&v, "8.8.4.4:26656");
  pd_rep_verdict_t out;
  for (int i = 0; i < 15; i++) {
    int rc = pd_policy_reputation(p, &v, i == 7 ? "good" : "failed", NULL, NULL, NOW, &out);
    assert_int_equal(rc, i == 7 ? PD_ENOENT : PD_EINVAL);
  }
  pd_policy_hook_health(p, PD_HOOK_REPUTATION, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_FAILING);
  assert_int_equal(hh.consecutive, 7);
  assert_int_equal(pd_policy_reputation(p, &v, "failed", NULL, NULL, NOW, &out), PD_EINVAL);
  pd_policy_hook_health(p, PD_HOOK_REPUTATION, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_TRIPPED);
  assert_int_equal(pd_policy_reputation(p, &v, "good", NULL, NULL, NOW, &out), PD_EINVAL);
  assert_int_equal(pd_policy_failures(p, PD_HOOK_REPUTATION, PD_POLICY_BAD_RETURN), 15);
  pd_policy_destroy(p);
}

/* last_error is the most recent error of any kind: a failed load, a failed
 * call, a read failure the driver notes; with its time and hook. */
static void last_error_is_most_recent(void **state) {
  (void)state;
  pd_policy_t *p = mk(NULL, NULL, NULL);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, 0);
  src_t good[] = {{"score.lua", "return { score = function(p)\n"
                                "  if p.attempts == 1 then error('first') end\n"
                                "  if p.attempts == 2 then return 'x' end\n"
                                "  return 0\nend }"}};
  src_t bad[] = {{"select.lua", "return {"}};
  pd_policy_file_t f = {"select.lua", bad[0].text, strlen(bad[0].text)};
  assert_int_equal(pd_policy_load(p, &f, 1, NOW + 1, NULL, 0), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 1);
  assert_int_equal(st.last_error_hook, -1);
  assert_int_equal(st.last_error_reason, -1);
  assert_non_null(strstr(st.last_error, "select.lua:"));
  f = (pd_policy_file_t){"score.lua", good[0].text, strlen(good[0].text)};
  assert_int_equal(pd_policy_load(p, &f, 1, NOW + 2, NULL, 0), 0);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 1); /* a success clears nothing */
  pd_peer_view_t v;
  view(&v, "8.8.4.4:26656");
  double sc;
  v.attempts = 1;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW + 3, &sc), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 3);
  assert_int_equal(st.last_error_hook, PD_HOOK_SCORE);
  assert_int_equal(st.last_error_reason, PD_POLICY_ERROR);
  assert_non_null(strstr(st.last_error, "score.lua:2: first"));
  /* a later failure of a kind already reported is still the last error */
  v.attempts = 2;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW + 4, &sc), PD_EINVAL);
  v.attempts = 1;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW + 5, &sc), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 5);
  assert_non_null(strstr(st.last_error, "first"));
  v.attempts = 2;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW + 6, &sc), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_reason, PD_POLICY_BAD_RETURN);
  assert_non_null(strstr(st.last_error, "score returned string"));
  /* a success does not clear it; a directory the driver cannot read does replace it */
  v.attempts = 0;
  assert_int_equal(pd_policy_score(p, &v, NULL, NOW + 7, &sc), 0);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 6);
  pd_policy_note_error(p, "policy directory /x: No such file or directory", NOW + 8);
  pd_policy_status(p, &st);
  assert_int_equal(st.last_error_at, NOW + 8);
  assert_int_equal(st.last_error_hook, -1);
  assert_string_equal(st.last_error, "policy directory /x: No such file or directory");
  /* the hook's own last error stays */
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.last_error_at, NOW + 6);
  assert_int_equal(hh.last_error_reason, PD_POLICY_BAD_RETURN);
  pd_policy_destroy(p);
}

static uint64_t step_clock(void *ud) {
  uint64_t *t = ud;
  *t += 30000; /* every read: 30 us later */
  return *t;
}

/* With a clock each call that runs is timed (one read before, one after);
 * without one nothing is. */
static void latency_histogram(void **state) {
  (void)state;
  uint64_t t = 0;
  pd_policy_t *p = mk(NULL, step_clock, &t);
  src_t s[] = {{"score.lua", "return { score = function(p) return 1 end }"}};
  assert_int_equal(load(p, s, 1, NULL, 0), 0);
  for (int i = 0; i < 5; i++) assert_int_equal(score_once(p, 0), 0);
  uint64_t b[PD_POLICY_LATENCY_BUCKETS + 1];
  double sum = 0;
  pd_policy_latency(p, PD_HOOK_SCORE, b, &sum);
  const double *bounds = pd_policy_latency_bounds();
  for (int i = 0; i <= PD_POLICY_LATENCY_BUCKETS; i++) {
    bool above = i == PD_POLICY_LATENCY_BUCKETS || bounds[i] >= 0.00003;
    assert_int_equal(b[i], above ? 5 : 0); /* cumulative: 30 us each */
  }
  assert_true(fabs(sum - 5 * 0.00003) < 1e-12);
  pd_policy_latency(p, PD_HOOK_SELECT, b, &sum);
  assert_int_equal(b[PD_POLICY_LATENCY_BUCKETS], 0);
  pd_policy_destroy(p);
  p = mk(NULL, NULL, NULL);
  assert_int_equal(load(p, s, 1, NULL, 0), 0);
  assert_int_equal(score_once(p, 0), 0);
  pd_policy_latency(p, PD_HOOK_SCORE, b, &sum);
  assert_int_equal(b[PD_POLICY_LATENCY_BUCKETS], 0);
  pd_policy_destroy(p);
}

/* Promote: dst takes src's set as a new generation; src is left empty. */
static void adopt_moves_the_set(void **state) {
  (void)state;
  pd_policy_t *live = mk(NULL, NULL, NULL), *shadow = mk(NULL, NULL, NULL);
  src_t a[] = {{"score.lua", "return { score = function(p) error('live') end }"}};
  src_t b[] = {{"score.lua", "return { score = function(p) return 42 end }"}, CANARY};
  assert_int_equal(pd_policy_adopt(live, shadow, NOW), PD_ENOENT);
  assert_int_equal(load(live, a, 1, NULL, 0), 0);
  assert_int_equal(load(shadow, b, 2, NULL, 0), 0);
  for (int i = 0; i < PD_POLICY_TRIP_AFTER; i++) score_once(live, 0);
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(live, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_TRIPPED);
  pd_policy_status_t sl, ss;
  pd_policy_status(shadow, &ss);
  assert_int_equal(pd_policy_adopt(live, shadow, NOW + 10), 0);
  pd_policy_status(live, &sl);
  assert_int_equal(sl.generation, 2);
  assert_int_equal(sl.loaded_at, NOW + 10);
  assert_string_equal(sl.hash, ss.hash);
  assert_int_equal(sl.nfiles, 2);
  pd_policy_hook_health(live, PD_HOOK_SCORE, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_OK);
  pd_peer_view_t v;
  view(&v, "8.8.4.4:26656");
  double sc = 0;
  assert_int_equal(pd_policy_score(live, &v, NULL, NOW, &sc), 0);
  assert_true(sc == 42);
  healthy(live, DEFAULT_CAP);
  assert_false(pd_policy_has_hook(shadow, PD_HOOK_SCORE));
  assert_int_equal(pd_policy_score(shadow, &v, NULL, NOW, &sc), PD_ENOENT);
  assert_int_equal(pd_policy_adopt(live, shadow, NOW), PD_ENOENT);
  pd_policy_destroy(shadow);
  assert_int_equal(pd_policy_score(live, &v, NULL, NOW, &sc), 0); /* the state outlives its donor */
  pd_policy_destroy(live);
}

/* select's third argument: the ctx table (outbound, max_outbound), fields
 * left out when unknown, an empty table from pd_policy_select. */
static void select_ctx_reaches_the_hook(void **state) {
  (void)state;
  pd_book_t *b = small_book(20, 5);
  src_t s[] = {{"select.lua",
                "return { select = function(book, n, ctx)\n"
                "  local k = 0\n"
                "  for _ in pairs(ctx) do k = k + 1 end\n"
                "  error(string.format('ctx fields=%d outbound=%s max_outbound=%s', k,\n"
                "    tostring(ctx.outbound), tostring(ctx.max_outbound)), 0)\n"
                "end }"},
               CANARY};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  uint32_t out[4];
  size_t nout = 9;
  pd_policy_status_t st;
  pd_policy_select_ctx_t ctx = {.outbound = 3, .max_outbound = 8};
  assert_int_equal(pd_policy_select_ctx(p, b, NULL, 4, &ctx, NOW, out, &nout), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_string_equal(st.last_error, "select.lua:4: ctx fields=2 outbound=3 max_outbound=8");
  ctx = (pd_policy_select_ctx_t){.outbound = 0, .max_outbound = -1};
  assert_int_equal(pd_policy_select_ctx(p, b, NULL, 4, &ctx, NOW, out, &nout), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_string_equal(st.last_error, "select.lua:4: ctx fields=1 outbound=0 max_outbound=nil");
  assert_int_equal(pd_policy_select(p, b, NULL, 4, NOW, out, &nout), PD_EINVAL);
  pd_policy_status(p, &st);
  assert_string_equal(st.last_error, "select.lua:4: ctx fields=0 outbound=nil max_outbound=nil");
  /* a two-argument select (every shipped policy) is unaffected */
  src_t s2[] = {{"select.lua", "return { select = function(book, n) return { book:random('new') } end }"},
                CANARY};
  assert_int_equal(load(p, s2, 2, NULL, 0), 0);
  ctx = (pd_policy_select_ctx_t){.outbound = 7, .max_outbound = 8};
  assert_int_equal(pd_policy_select_ctx(p, b, NULL, 4, &ctx, NOW, out, &nout), 0);
  assert_int_equal(nout, 1);
  healthy(p, DEFAULT_CAP);
  pd_policy_destroy(p);
  pd_book_destroy(b);
}

/* book:random(tbl, "bucket"): bitcoind 0.9.3's draw (a uniformly random
 * non-empty bucket, a uniformly random entry in it), no chance weighting;
 * a bad mode is an error naming it. */
static void book_random_bucket(void **state) {
  (void)state;
  pd_book_t *b = small_book(30, 10);
  src_t s[] = {{"select.lua", "return { select = function(book, n)\n"
                              "  local out = {}\n"
                              "  for i = 1, n do out[i] = book:random(i % 2 == 0 and 'tried' or 'new', 'bucket') end\n"
                              "  return out\nend }"},
               CANARY};
  pd_policy_t *p = mk(NULL, NULL, NULL);
  assert_int_equal(load(p, s, 2, NULL, 0), 0);
  /* every entry drawn, each from its own table; the picks of one call are
   * distinct by contract, so draw two at a time */
  uint32_t bound = pd_book_id_bound(b);
  uint32_t *seen = calloc(bound, sizeof *seen);
  assert_non_null(seen);
  size_t distinct = 0;
  for (int i = 0; i < 2000; i++) {
    uint32_t out[2];
    size_t nout = 0;
    assert_int_equal(pd_policy_select(p, b, NULL, 2, NOW, out, &nout), 0);
    assert_int_equal(nout, 2);
    pd_book_info_t e;
    assert_int_equal(pd_book_info(b, out[0], &e), 0);
    assert_false(e.in_tried);
    assert_int_equal(pd_book_info(b, out[1], &e), 0);
    assert_true(e.in_tried);
    for (int k = 0; k < 2; k++) distinct += seen[out[k]]++ == 0;
  }
  assert_int_equal(distinct, 40);
  free(seen);
  src_t bad_mode[] = {{"select.lua", "return { select = function(book, n)\n"
                                     "  return { book:random('new', 'uniform') }\nend }"},
                      CANARY};
  assert_int_equal(load(p, bad_mode, 2, NULL, 0), 0);
  uint32_t out[2];
  size_t nout = 0;
  assert_int_equal(pd_policy_select(p, b, NULL, 1, NOW, out, &nout), PD_EINVAL);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  assert_non_null(strstr(st.last_error, "invalid option 'uniform'"));
  pd_policy_destroy(p);
  /* the C function: empty table, the ANY table, and a sparse one (one entry
   * in 1,024 buckets: past the 64 rejection draws, the counting pass) */
  assert_int_equal(pd_book_random_bucket(b, PD_TABLE_ANY), PD_BOOK_NO_ID);
  pd_book_destroy(b);
  b = small_book(1, 0);
  assert_int_equal(pd_book_random_bucket(b, PD_TABLE_TRIED), PD_BOOK_NO_ID);
  uint32_t only = pd_book_random_bucket(b, PD_TABLE_NEW);
  assert_true(only != PD_BOOK_NO_ID);
  for (int i = 0; i < 200; i++) assert_int_equal(pd_book_random_bucket(b, PD_TABLE_NEW), only);
  pd_book_destroy(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(names_and_defaults),
      cmocka_unit_test(empty_and_absent),
      cmocka_unit_test(load_status_and_hash),
      cmocka_unit_test(hash_format_matches_contract),
      cmocka_unit_test(endless_loop),
      cmocka_unit_test(deadline_with_fake_clock),
      cmocka_unit_test(pcall_cannot_swallow),
      cmocka_unit_test(memory_bombs),
      cmocka_unit_test(error_has_file_line),
      cmocka_unit_test(coroutine_yield_across_boundary),
      cmocka_unit_test(sandbox_escapes),
      cmocka_unit_test(modules_cannot_touch_each_other),
      cmocka_unit_test(slow_c_functions_are_bounded),
      cmocka_unit_test(costly_patterns_are_refused),
      cmocka_unit_test(bad_returns_every_hook),
      cmocka_unit_test(select_validation),
      cmocka_unit_test(huge_select_return),
      cmocka_unit_test(select_through_book),
      cmocka_unit_test(stashed_book_is_dead),
      cmocka_unit_test(load_failures_keep_old),
      cmocka_unit_test(require_and_cycles),
      cmocka_unit_test(random_is_deterministic),
      cmocka_unit_test(counting_and_reporting),
      cmocka_unit_test(peers_events_and_pex),
      cmocka_unit_test(peer_views),
      cmocka_unit_test(entry_views),
      cmocka_unit_test(evict_inbound_hook),
      cmocka_unit_test(record_views),
      cmocka_unit_test(book_hooks_adapter),
      cmocka_unit_test(pex_batch_matches_single),
      cmocka_unit_test(pex_batch_shares_from),
      cmocka_unit_test(pex_batch_nested_calls),
      cmocka_unit_test(pex_batch_trips_midway),
      cmocka_unit_test(small_blocks_are_reused),
      cmocka_unit_test(pex_view_strings_each_read),
      cmocka_unit_test(request_budget_exhaustion),
      cmocka_unit_test(breaker_trips_and_reload_resets),
      cmocka_unit_test(breaker_needs_a_run),
      cmocka_unit_test(last_error_is_most_recent),
      cmocka_unit_test(latency_histogram),
      cmocka_unit_test(adopt_moves_the_set),
      cmocka_unit_test(select_ctx_reaches_the_hook),
      cmocka_unit_test(book_random_bucket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
