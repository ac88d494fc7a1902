/* Unit tests for dht.lua (docs/policies.md "dht.lua"): the hooks dht_admit
 * and dht_feed in the policy host, the node's wrappers pd_node_dht_admit /
 * pd_node_dht_feed with their C defaults, the shipped policies/dht.lua
 * against those defaults, hostile policies falling back, sets without
 * dht.lua, hot reload and the shadow comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "node.h"
#include "policy.h"
#include "record.h"
#include "shadow.h"

#define NOW ((int64_t)1700000000)

/* ---- helpers ----------------------------------------------------------------------- */

static pd_node_t *mk_node(pd_rng_t *rng, size_t memory_bytes) {
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  pd_rng_seed(rng, 4242);
  pd_book_t *book = NULL;
  assert_int_equal(pd_book_create(&book, key, rng, 0), 0);
  pd_node_config_t cfg = {.save_interval = 300, .default_ban_secs = 3600};
  cfg.policy_limits.memory_bytes = memory_bytes; /* 0: the default */
  pd_node_t *n = NULL;
  assert_int_equal(pd_node_create(&n, &cfg, book, rng, NOW), 0);
  return n;
}

/* Load `text` as dht.lua (NULL: an empty set) into the node's live set. */
static int node_load(pd_node_t *n, const char *text) {
  pd_policy_file_t f = {"dht.lua", text, text ? strlen(text) : 0};
  char err[512] = "";
  int rc = pd_node_policy_load(n, &f, text ? 1 : 0, NOW, err, sizeof err);
  if (rc != 0) print_message("load: %s\n", err);
  return rc;
}

static int pol_load(pd_policy_t *p, const char *name, const char *text, char *err, size_t cap) {
  pd_policy_file_t f = {name, text, strlen(text)};
  return pd_policy_load(p, &f, 1, NOW, err, cap);
}

static char *read_source(const char *rel) {
  const char *src = getenv("PEERD_SOURCE_DIR");
  assert_non_null(src);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", src, rel);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[64 * 1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* A candidate at ip:7411 with the given subnet counts. */
static pd_policy_dht_node_t cand(const char *ip, unsigned in_bucket, unsigned in_table) {
  pd_policy_dht_node_t v;
  memset(&v, 0, sizeof v);
  assert_int_equal(pd_netaddr_parse_ip(ip, &v.addr, NULL), 0);
  v.addr.port = 7411;
  for (int i = 0; i < PD_NODE_ID_LEN; i++) v.node_id[i] = (uint8_t)(i + 1);
  v.seq = 3;
  v.routable = pd_netaddr_is_routable(&v.addr);
  v.bucket = 158;
  v.bucket_size = 4;
  v.k = 16;
  v.subnet_in_bucket = in_bucket;
  v.subnet_in_table = in_table;
  return v;
}

/* The cases the default decides; `want` is what the issue's rule says. */
static const struct {
  const char *ip;
  unsigned in_bucket, in_table;
  bool want;
} cases[] = {
    {"1.2.3.4", 0, 0, true},        {"1.2.3.4", 1, 1, true},
    {"1.2.3.4", 2, 2, false},       /* the 3rd of a /24 in one bucket */
    {"1.2.3.4", 1, 9, true},        /* the 10th in the table */
    {"1.2.3.4", 0, 10, false},      /* the 11th in the table */
    {"1.2.3.4", 7, 30, false},      {"2a01:4f8::1", 1, 9, true},
    {"2a01:4f8::1", 2, 2, false},   /* IPv6: the 3rd of a /48 in a bucket */
    {"2a01:4f8::1", 0, 10, false},  {"10.0.0.1", 5, 50, true}, /* unroutable: exempt */
    {"127.0.0.1", 16, 160, true},   {"fd00::1", 3, 12, true},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* ---- tests ------------------------------------------------------------------------- */

static void names_and_indices(void **state) {
  (void)state;
  /* existing indices are metric labels and persisted names: unchanged */
  assert_int_equal(PD_HOOK_EVICT_INBOUND, 7);
  assert_int_equal(PD_HOOK_DHT_ADMIT, 8);
  assert_int_equal(PD_HOOK_DHT_FEED, 9);
  assert_int_equal(PD_HOOK_COUNT, 10);
  assert_string_equal(pd_policy_hook_name(PD_HOOK_DHT_ADMIT), "dht_admit");
  assert_string_equal(pd_policy_hook_name(PD_HOOK_DHT_FEED), "dht_feed");
  assert_string_equal(pd_policy_hook_name(PD_HOOK_EVICT_INBOUND), "evict_inbound");
}

static void c_default_is_the_issue_rule(void **state) {
  (void)state;
  for (size_t i = 0; i < NCASES; i++) {
    pd_policy_dht_node_t v = cand(cases[i].ip, cases[i].in_bucket, cases[i].in_table);
    if (pd_node_dht_admit_default(&v) != cases[i].want)
      fail_msg("case %zu (%s %u/%u)", i, cases[i].ip, cases[i].in_bucket, cases[i].in_table);
  }
}

/* The shipped policies/dht.lua answers as the C default, case by case. */
static void shipped_policy_matches_default(void **state) {
  (void)state;
  pd_policy_t *p = NULL;
  assert_int_equal(pd_policy_create(&p, NULL, NULL, NULL), 0);
  char err[512] = "";
  assert_int_equal(pol_load(p, "dht.lua", read_source("policies/dht.lua"), err, sizeof err), 0);
  assert_true(pd_policy_has_hook(p, PD_HOOK_DHT_ADMIT));
  assert_true(pd_policy_has_hook(p, PD_HOOK_DHT_FEED));
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  for (size_t i = 0; i < NCASES; i++) {
    pd_policy_dht_node_t v = cand(cases[i].ip, cases[i].in_bucket, cases[i].in_table);
    for (unsigned size = 0; size <= 16; size += 8) { /* the bucket's fill does not matter */
      v.bucket_size = size;
      bool got = !cases[i].want;
      assert_int_equal(pd_policy_dht_admit(p, &v, &r, NOW, &got), 0);
      if (got != pd_node_dht_admit_default(&v) || got != cases[i].want)
        fail_msg("case %zu (%s %u/%u): policy %d", i, cases[i].ip, cases[i].in_bucket,
                 cases[i].in_table, got);
    }
  }
  pd_peer_view_t a, f;
  memset(&a, 0, sizeof a);
  memset(&f, 0, sizeof f);
  assert_int_equal(pd_netaddr_parse("1.2.3.4:7411", 0, &a.addr, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("5.6.7.8:7411", 0, &f.addr, NULL, NULL, NULL), 0);
  f.banned = true;
  bool fed = false;
  assert_int_equal(pd_policy_dht_feed(p, &a, &f, &r, NOW, &fed), 0);
  assert_true(fed);
  for (int h = 0; h < PD_HOOK_COUNT; h++)
    for (int k = 0; k < PD_POLICY_REASON_COUNT; k++) assert_int_equal(pd_policy_failures(p, h, k), 0);
  pd_policy_destroy(p);
}

/* admit sees every field of the candidate and its bucket. */
static const char FIELDS[] =
    "local function eq(k, got, want)\n"
    "  if got ~= want then error(k .. ' = ' .. tostring(got), 2) end\n"
    "end\n"
    "return { admit = function(n, b)\n"
    "  eq('id', n.id, '0102030405060708090a0b0c0d0e0f1011121314')\n"
    "  if n.port == 7411 then\n"
    "    eq('ip', n.ip, '1.2.3.4'); eq('addr', n.addr, '1.2.3.4:7411')\n"
    "    eq('seq', n.seq, 42); eq('routable', n.routable, true)\n"
    "  else\n"
    "    eq('ip', n.ip, '2a01:4f8::1'); eq('addr', n.addr, '[2a01:4f8::1]:7412')\n"
    "    eq('port', n.port, 7412); eq('seq', n.seq, math.maxinteger)\n"
    "  end\n"
    "  eq('subnet_in_bucket', n.subnet_in_bucket, 1)\n"
    "  eq('subnet_in_table', n.subnet_in_table, 7)\n"
    "  eq('index', b.index, 159); eq('size', b.size, 5); eq('k', b.k, 16)\n"
    "  return false\n"
    "end,\n"
    "feed = function(node, from)\n"
    "  eq('node.addr', node.addr, '9.9.9.9:7411')\n"
    "  eq('node.node_id', node.node_id, '0102030405060708090a0b0c0d0e0f1011121314')\n"
    "  eq('from.addr', from.addr, '5.6.7.8:7411')\n"
    "  eq('from.group', from.group, '010506')\n"
    "  eq('node.routable', node.routable, true)\n"
    "  return node.known\n"
    "end }\n";

static void custom_policy_sees_every_field(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_node_t *n = mk_node(&rng, 0);
  assert_int_equal(node_load(n, FIELDS), 0);
  pd_policy_t *p = pd_node_policy(n);
  pd_policy_dht_node_t v = cand("1.2.3.4", 1, 7);
  v.seq = 42;
  v.bucket = 159;
  v.bucket_size = 5;
  bool ok = true;
  int rc = pd_policy_dht_admit(p, &v, &rng, NOW, &ok);
  pd_policy_status_t st;
  pd_policy_status(p, &st);
  if (rc != 0) fail_msg("admit failed: %s", st.last_error);
  assert_false(ok); /* the policy's answer, not the default's (true here) */
  assert_true(pd_node_dht_admit_default(&v));
  assert_false(pd_node_dht_admit(n, &v, NOW));
  /* IPv6, another port, a sequence past Lua's integers */
  pd_policy_dht_node_t w = cand("2a01:4f8::1", 1, 7);
  w.addr.port = 7412;
  w.seq = UINT64_MAX;
  w.bucket = 159;
  w.bucket_size = 5;
  ok = true;
  rc = pd_policy_dht_admit(p, &w, &rng, NOW, &ok);
  pd_policy_status(p, &st);
  if (rc != 0) fail_msg("admit (v6) failed: %s", st.last_error);
  assert_false(ok);
  /* feed: the record's placed endpoint with its id; from = the responder */
  pd_record_t rec;
  const char *why = NULL;
  assert_int_equal(pd_record_init(&rec, "test", 1, &why), 0);
  rec.has_discovery = true;
  assert_int_equal(pd_netaddr_parse("9.9.9.9:7411", 0, &rec.discovery, NULL, NULL, NULL), 0);
  memcpy(rec.id, v.node_id, PD_NODE_ID_LEN);
  pd_netaddr_t from;
  assert_int_equal(pd_netaddr_parse("5.6.7.8:7411", 0, &from, NULL, NULL, NULL), 0);
  uint64_t fails = 0;
  for (int k = 0; k < PD_POLICY_REASON_COUNT; k++) fails += pd_policy_failures(p, PD_HOOK_DHT_FEED, k);
  assert_false(pd_node_dht_feed(n, &rec, &from, NOW)); /* not in the book: known = false */
  for (int k = 0; k < PD_POLICY_REASON_COUNT; k++) fails -= pd_policy_failures(p, PD_HOOK_DHT_FEED, k);
  pd_policy_status(p, &st);
  if (fails != 0) fail_msg("feed failed: %s", st.last_error);
  /* once the book holds the address the policy says yes */
  pd_netaddr_t src;
  assert_int_equal(pd_netaddr_parse_ip("5.6.7.8", &src, NULL), 0);
  assert_int_equal(pd_book_add(pd_node_book(n), &rec.discovery, rec.id, NOW - 10, &src, 0, NOW, NULL), 1);
  assert_true(pd_node_dht_feed(n, &rec, &from, NOW));
  pd_node_destroy(n);
}

/* Each hostile admit fails with its reason, and the node falls back to the C
 * default for that call: true where the default admits, false where not. */
static void hostile_admit_falls_back(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int reason;
    int rc;
  } bad[] = {
      {"return { admit = function(n, b) error('boom') end }", PD_POLICY_ERROR, PD_EINVAL},
      {"return { admit = function(n, b) while true do end end }", PD_POLICY_INSTRUCTIONS, PD_ERANGE},
      {"return { admit = function(n, b)\n"
       "  local t = {}\n"
       "  while true do t[#t + 1] = string.rep('y', 65536) .. #t end\n"
       "end }",
       PD_POLICY_MEMORY, PD_ENOMEM},
      {"return { admit = function(n, b) return 'yes' end }", PD_POLICY_BAD_RETURN, PD_EINVAL},
      {"return { admit = function(n, b) return nil end }", PD_POLICY_BAD_RETURN, PD_EINVAL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pd_rng_t rng;
    pd_node_t *n = mk_node(&rng, (size_t)8 << 20);
    assert_int_equal(node_load(n, bad[i].text), 0);
    pd_policy_t *p = pd_node_policy(n);
    pd_policy_dht_node_t in = cand("1.2.3.4", 1, 1), out = cand("1.2.3.4", 2, 2);
    bool ok = false;
    assert_int_equal(pd_policy_dht_admit(p, &in, &rng, NOW, &ok), bad[i].rc);
    assert_int_equal(pd_policy_failures(p, PD_HOOK_DHT_ADMIT, bad[i].reason), 1);
    assert_true(pd_node_dht_admit(n, &in, NOW));   /* default: admit */
    assert_false(pd_node_dht_admit(n, &out, NOW)); /* default: refuse */
    assert_int_equal(pd_policy_failures(p, PD_HOOK_DHT_ADMIT, bad[i].reason), 3);
    int h, r;
    char msg[256];
    assert_true(pd_policy_next_unreported(p, &h, &r, msg, sizeof msg));
    assert_int_equal(h, PD_HOOK_DHT_ADMIT);
    assert_int_equal(r, bad[i].reason);
    if (!strstr(msg, "dht.lua")) fail_msg("message '%s' lacks dht.lua", msg);
    /* the breaker: 8 in a row trip it; the default still decides */
    for (int k = 3; k < PD_POLICY_TRIP_AFTER; k++) (void)pd_node_dht_admit(n, &in, NOW);
    pd_policy_hook_health_t hh;
    pd_policy_hook_health(p, PD_HOOK_DHT_ADMIT, &hh);
    assert_int_equal(hh.state, PD_HOOK_STATE_TRIPPED);
    assert_int_equal(pd_policy_dht_admit(p, &in, &rng, NOW, &ok), PD_EINVAL);
    assert_true(pd_node_dht_admit(n, &in, NOW));
    assert_false(pd_node_dht_admit(n, &out, NOW));
    assert_true(pd_policy_skipped(p, PD_HOOK_DHT_ADMIT, PD_POLICY_SKIP_TRIPPED) >= 3);
    /* the state is still usable: a good set loads and decides */
    assert_int_equal(node_load(n, "return { admit = function() return true end }"), 0);
    assert_true(pd_node_dht_admit(n, &out, NOW));
    pd_node_destroy(n);
  }
}

/* A set without dht.lua loads as before: both hooks absent, the defaults decide. */
static void set_without_dht_lua(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_node_t *n = mk_node(&rng, 0);
  pd_policy_file_t f = {"pex.lua", "return { accept = function() return true end }", 0};
  f.len = strlen(f.text);
  char err[512] = "";
  assert_int_equal(pd_node_policy_load(n, &f, 1, NOW, err, sizeof err), 0);
  pd_policy_t *p = pd_node_policy(n);
  assert_false(pd_policy_has_hook(p, PD_HOOK_DHT_ADMIT));
  assert_false(pd_policy_has_hook(p, PD_HOOK_DHT_FEED));
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, PD_HOOK_DHT_ADMIT, &hh);
  assert_int_equal(hh.state, PD_HOOK_STATE_ABSENT);
  pd_policy_dht_node_t out = cand("1.2.3.4", 2, 2), in = cand("1.2.3.4", 0, 0);
  bool ok = true;
  assert_int_equal(pd_policy_dht_admit(p, &out, &rng, NOW, &ok), PD_ENOENT);
  assert_false(pd_node_dht_admit(n, &out, NOW));
  assert_true(pd_node_dht_admit(n, &in, NOW));
  pd_record_t rec;
  const char *why = NULL;
  assert_int_equal(pd_record_init(&rec, "test", 1, &why), 0);
  pd_netaddr_t from;
  assert_int_equal(pd_netaddr_parse("5.6.7.8:7411", 0, &from, NULL, NULL, NULL), 0);
  assert_false(pd_node_dht_feed(n, &rec, &from, NOW)); /* no endpoint: nothing to place */
  rec.has_discovery = true;
  assert_int_equal(pd_netaddr_parse("9.9.9.9:7411", 0, &rec.discovery, NULL, NULL, NULL), 0);
  assert_true(pd_node_dht_feed(n, &rec, &from, NOW)); /* default: feed */
  /* dht.lua with admit only: feed stays absent; a non-function field is a load error */
  assert_int_equal(node_load(n, "return { admit = function() return true end }"), 0);
  assert_true(pd_policy_has_hook(p, PD_HOOK_DHT_ADMIT));
  assert_false(pd_policy_has_hook(p, PD_HOOK_DHT_FEED));
  pd_policy_file_t g = {"dht.lua", "return { feed = 1 }", 19};
  assert_int_equal(pd_node_policy_load(n, &g, 1, NOW, err, sizeof err), PD_EINVAL);
  assert_non_null(strstr(err, "dht.lua: field 'feed' must be a function"));
  /* six files load; a seventh is refused */
  static const char *names[] = {"select.lua", "score.lua", "evict.lua", "reputation.lua",
                                "pex.lua", "dht.lua", "more.lua"};
  pd_policy_file_t six[7];
  for (int i = 0; i < 7; i++) six[i] = (pd_policy_file_t){names[i], "return {}", 9};
  assert_int_equal(pd_node_policy_load(n, six, 6, NOW, err, sizeof err), 0);
  assert_int_equal(pd_node_policy_load(n, six, 7, NOW, err, sizeof err), PD_EINVAL);
  assert_non_null(strstr(err, "at most 6"));
  /* dht.lua is reachable with require from the other modules */
  pd_policy_file_t two[2] = {{"dht.lua", "return { limit = 2 }", 20},
                             {"pex.lua", "local d = require('dht')\n"
                                         "return { accept = function() return d.limit == 2 end }",
                              0}};
  two[1].len = strlen(two[1].text);
  assert_int_equal(pd_node_policy_load(n, two, 2, NOW, err, sizeof err), 0);
  pd_node_destroy(n);
}

/* A changed dht.lua takes effect on reload; a broken one keeps the old. */
static void hot_reload(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_node_t *n = mk_node(&rng, 0);
  pd_policy_dht_node_t out = cand("1.2.3.4", 2, 2);
  assert_false(pd_node_dht_admit(n, &out, NOW));
  assert_int_equal(node_load(n, "return { admit = function(n, b) return true end }"), 0);
  assert_true(pd_node_dht_admit(n, &out, NOW));
  pd_policy_status_t st;
  pd_policy_status(pd_node_policy(n), &st);
  uint64_t gen = st.generation;
  assert_int_equal(node_load(n, "return { admit = function(n, b) return n.subnet_in_bucket < 1 end }"),
                   0);
  pd_policy_status(pd_node_policy(n), &st);
  assert_int_equal(st.generation, gen + 1);
  pd_policy_dht_node_t one = cand("1.2.3.4", 1, 1);
  assert_false(pd_node_dht_admit(n, &one, NOW)); /* the new rule: 1 per bucket */
  pd_policy_file_t broken = {"dht.lua", "return { admit = ", 17};
  char err[512] = "";
  assert_int_equal(pd_node_policy_load(n, &broken, 1, NOW, err, sizeof err), PD_EINVAL);
  assert_non_null(strstr(err, "dht.lua:"));
  assert_false(pd_node_dht_admit(n, &one, NOW)); /* still the rule in force */
  assert_int_equal(node_load(n, NULL), 0);      /* an empty set: the C default again */
  assert_true(pd_node_dht_admit(n, &one, NOW));
  pd_node_destroy(n);
}

/* feed follows the policy, answer by answer. */
static void node_feed_follows_policy(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_node_t *n = mk_node(&rng, 0);
  assert_int_equal(node_load(n, "return { feed = function(node, from)\n"
                                "  return node.addr ~= '9.9.9.9:7411' and from.addr ~= '6.6.6.6:7411'\n"
                                "end }"),
                   0);
  pd_record_t rec;
  const char *why = NULL;
  assert_int_equal(pd_record_init(&rec, "test", 1, &why), 0);
  rec.has_discovery = true;
  pd_netaddr_t from, bad_from;
  assert_int_equal(pd_netaddr_parse("5.6.7.8:7411", 0, &from, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("6.6.6.6:7411", 0, &bad_from, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("9.9.9.9:7411", 0, &rec.discovery, NULL, NULL, NULL), 0);
  assert_false(pd_node_dht_feed(n, &rec, &from, NOW));
  assert_int_equal(pd_netaddr_parse("8.8.8.8:7411", 0, &rec.discovery, NULL, NULL, NULL), 0);
  assert_true(pd_node_dht_feed(n, &rec, &from, NOW));
  assert_false(pd_node_dht_feed(n, &rec, &bad_from, NOW));
  /* a service-only record (no discovery endpoint) is placed by its service */
  rec.has_discovery = false;
  pd_netaddr_t svc;
  assert_int_equal(pd_netaddr_parse("9.9.9.9:7411", 0, &svc, NULL, NULL, NULL), 0);
  assert_int_equal(pd_record_set_service(&rec, "p2p", &svc, &why), 0);
  assert_false(pd_node_dht_feed(n, &rec, &from, NOW));
  /* a failing feed falls back to true */
  assert_int_equal(node_load(n, "return { feed = function() return 1 end }"), 0);
  assert_true(pd_node_dht_feed(n, &rec, &from, NOW));
  assert_int_equal(pd_policy_failures(pd_node_policy(n), PD_HOOK_DHT_FEED, PD_POLICY_BAD_RETURN), 1);
  pd_node_destroy(n);
}

/* The shadow set is asked too and its answers compared per hook. */
static void shadow_compares(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_node_t *n = mk_node(&rng, 0);
  assert_int_equal(pd_node_shadow_enable(n, "/nonexistent-shadow"), 0);
  pd_policy_file_t f = {"dht.lua",
                        "return { admit = function() return true end,\n"
                        "  feed = function() return false end }",
                        0};
  f.len = strlen(f.text);
  char err[512] = "";
  assert_int_equal(pd_node_shadow_load(n, &f, 1, NOW, err, sizeof err), 0);
  pd_policy_dht_node_t in = cand("1.2.3.4", 0, 0), out = cand("1.2.3.4", 2, 2);
  assert_true(pd_node_dht_admit(n, &in, NOW));   /* live: C default */
  assert_false(pd_node_dht_admit(n, &out, NOW)); /* the shadow would admit */
  pd_record_t rec;
  const char *why = NULL;
  assert_int_equal(pd_record_init(&rec, "test", 1, &why), 0);
  rec.has_discovery = true;
  assert_int_equal(pd_netaddr_parse("9.9.9.9:7411", 0, &rec.discovery, NULL, NULL, NULL), 0);
  pd_netaddr_t from;
  assert_int_equal(pd_netaddr_parse("5.6.7.8:7411", 0, &from, NULL, NULL, NULL), 0);
  assert_true(pd_node_dht_feed(n, &rec, &from, NOW));
  pd_shadow_t *s = pd_node_shadow(n);
  assert_int_equal(pd_shadow_count(s, PD_HOOK_DHT_ADMIT, PD_SHADOW_AGREE, true), 1);
  assert_int_equal(pd_shadow_count(s, PD_HOOK_DHT_ADMIT, PD_SHADOW_DISAGREE, true), 1);
  assert_int_equal(pd_shadow_count(s, PD_HOOK_DHT_FEED, PD_SHADOW_DISAGREE, true), 1);
  pd_shadow_diff_t d;
  assert_int_equal(pd_shadow_diffs(s, PD_HOOK_DHT_ADMIT, &d, 1), 1);
  assert_non_null(strstr(d.input, "node=1.2.3.4:7411"));
  assert_string_equal(d.live, "false (default)");
  assert_string_equal(d.shadow, "true");
  assert_int_equal(pd_shadow_diffs(s, PD_HOOK_DHT_FEED, &d, 1), 1);
  assert_string_equal(d.input, "node=9.9.9.9:7411 from=5.6.7.8:7411");
  pd_node_destroy(n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(names_and_indices),
      cmocka_unit_test(c_default_is_the_issue_rule),
      cmocka_unit_test(shipped_policy_matches_default),
      cmocka_unit_test(custom_policy_sees_every_field),
      cmocka_unit_test(hostile_admit_falls_back),
      cmocka_unit_test(set_without_dht_lua),
      cmocka_unit_test(hot_reload),
      cmocka_unit_test(node_feed_follows_policy),
      cmocka_unit_test(shadow_compares),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
