/* Unit tests for bookstore: byte-exact round trips, determinism across
 * identical runs, damaged documents (every truncation, random byte flips)
 * that must fail cleanly, and per-entry skipping with counts and reasons;
 * salvage of a damaged document (every cut keeps every complete row before
 * it; garbage lines are skipped and counted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrbook.h"
#include "bookstore.h"
#include "err.h"

#define NOW ((int64_t)1700000000)
#define DAY 86400

static const char KEYHEX[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

static void test_key(uint8_t key[PD_BOOK_KEY_LEN]) {
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)((i % 16) * 0x11);
}

static pd_netaddr_t ipv4(uint32_t v, uint16_t port) {
  pd_netaddr_t a;
  memset(&a, 0, sizeof a);
  a.ip[10] = 0xff;
  a.ip[11] = 0xff;
  a.ip[12] = (uint8_t)(v >> 24);
  a.ip[13] = (uint8_t)(v >> 16);
  a.ip[14] = (uint8_t)(v >> 8);
  a.ip[15] = (uint8_t)v;
  a.port = port;
  return a;
}

static pd_netaddr_t random_routable(pd_rng_t *r, uint16_t port) {
  for (;;) {
    pd_netaddr_t a = ipv4((uint32_t)pd_rng_u64(r), port);
    if (pd_netaddr_is_routable(&a)) return a;
  }
}

static pd_netaddr_t random_routable6(pd_rng_t *r, uint16_t port) {
  for (;;) {
    pd_netaddr_t a;
    pd_rng_fill(r, a.ip, 16);
    a.ip[0] = 0x2a; /* 2a00::/8, global unicast */
    a.port = port;
    if (pd_netaddr_is_routable(&a)) return a;
  }
}

/* A book built from a seed: many sources, repeated announcements (the rng
 * decides extra new-table references), goods, attempts, a tried collision
 * and bans. Same seed => same book. */
static pd_book_t *build_book_geo(uint64_t seed, pd_rng_t *rng, size_t n,
                                 const pd_book_geometry_t *geo) {
  uint8_t key[PD_BOOK_KEY_LEN];
  test_key(key);
  pd_rng_seed(rng, seed);
  pd_book_t *b = NULL;
  if (geo == NULL) {
    assert_int_equal(pd_book_create(&b, key, rng, 0), 0);
  } else {
    assert_int_equal(pd_book_create_ex(&b, key, rng, 0, geo), 0);
  }
  /* Addresses and sources come from a fixed stream, independent of seed,
   * so that only the book's own randomness differs between seeds. */
  pd_rng_t gen;
  pd_rng_seed(&gen, 1234);
  pd_netaddr_t sources[16];
  for (int i = 0; i < 16; i++)
    sources[i] = i % 5 == 4 ? random_routable6(&gen, 0) : random_routable(&gen, 0);
  pd_netaddr_t *addrs = malloc(n * sizeof *addrs);
  assert_non_null(addrs);
  for (size_t i = 0; i < n; i++) {
    addrs[i] = i % 10 == 9 ? random_routable6(&gen, (uint16_t)(26656 + (i % 3)))
                           : random_routable(&gen, (uint16_t)(26656 + (i % 3)));
    uint8_t id[PD_NODE_ID_LEN];
    for (int k = 0; k < PD_NODE_ID_LEN; k++) id[k] = (uint8_t)(i * 7 + k);
    int64_t t = NOW - (int64_t)(i % 50) * 3600;
    int rc = pd_book_add(b, &addrs[i], (i % 4 == 0) ? id : NULL, t, &sources[i % 16], 0, NOW,
                         NULL);
    assert_true(rc == 0 || rc == 1);
  }
  /* Re-announce from other sources: extra references, chosen by the rng. */
  for (int round = 1; round <= 4; round++) {
    for (size_t i = 0; i < n; i++) {
      pd_book_add(b, &addrs[i], NULL, NOW - round * 60, &sources[(i + (size_t)round * 5) % 16], 0,
                  NOW + round, NULL);
    }
  }
  for (size_t i = 0; i < n; i += 5) pd_book_good(b, &addrs[i], true, NOW + 100 + (int64_t)i);
  for (size_t i = 1; i < n; i += 7) pd_book_attempt(b, &addrs[i], true, NOW + 200 + (int64_t)i);
  for (size_t i = 2; i < n; i += 11) pd_book_connected(b, &addrs[i], NOW + 5000);

  /* Force a tried collision: two known addresses with the same tried slot. */
  int *slot_owner = malloc(sizeof(int) * PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE);
  assert_non_null(slot_owner);
  for (int i = 0; i < PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE; i++) slot_owner[i] = -1;
  pd_netaddr_t cand[4096];
  for (int i = 0; i < 4096; i++) {
    cand[i] = random_routable(&gen, 9000);
    int tb = pd_book_tried_bucket_ex(key, &cand[i], false, geo);
    int pos = pd_book_bucket_position(key, false, tb, &cand[i]);
    int slot = tb * PD_BOOK_BUCKET_SIZE + pos;
    if (slot_owner[slot] >= 0) {
      pd_netaddr_t *first = &cand[slot_owner[slot]];
      if (pd_book_add(b, first, NULL, NOW, &sources[0], 0, NOW, NULL) == 1 &&
          pd_book_add(b, &cand[i], NULL, NOW, &sources[1], 0, NOW, NULL) == 1 &&
          pd_book_good(b, first, true, NOW + 10) == 1 &&
          pd_book_good(b, &cand[i], true, NOW + 11) == 0) {
        break;
      }
    }
    slot_owner[slot] = i;
  }
  free(slot_owner);

  pd_banlist_t *bl = pd_book_bans(b);
  pd_subnet_t s;
  assert_int_equal(pd_subnet_parse("198.51.0.0/16", &s, NULL), 0);
  assert_true(pd_banlist_add(bl, &s, NOW, 0, "permanent \"quoted\" reason\n\ttab") >= 0);
  pd_subnet_from_addr(&addrs[3], &s);
  assert_true(pd_banlist_add(bl, &s, NOW, NOW + DAY, "misbehaved: caf\xc3\xa9") >= 0);
  assert_int_equal(pd_subnet_parse("2001:db8::/32", &s, NULL), 0);
  assert_true(pd_banlist_add(bl, &s, NOW, NOW + 2 * DAY, NULL) >= 0);
  assert_int_equal(pd_subnet_parse("203.0.113.0/24", &s, NULL), 0);
  assert_true(pd_banlist_add(bl, &s, NOW - 2 * DAY, NOW - DAY, "expired") >= 0);
  free(addrs);
  assert_int_equal(pd_book_check(b), 0);
  return b;
}

static pd_book_t *build_book(uint64_t seed, pd_rng_t *rng, size_t n) {
  return build_book_geo(seed, rng, n, NULL);
}

static char *encode(const pd_book_t *b, size_t *len) {
  char *doc = NULL;
  assert_int_equal(pd_bookstore_encode(b, NOW + 9999, &doc, len), 0);
  assert_non_null(doc);
  assert_int_equal(strlen(doc), *len);
  return doc;
}

static int cmp_u16(const void *a, const void *b) {
  uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
  return (x > y) - (x < y);
}

static void assert_same_entries(const pd_book_t *a, const pd_book_t *b) {
  assert_int_equal(pd_book_size(a), pd_book_size(b));
  assert_int_equal(pd_book_count_new(a), pd_book_count_new(b));
  assert_int_equal(pd_book_count_tried(a), pd_book_count_tried(b));
  assert_int_equal(pd_book_collision_count(a), pd_book_collision_count(b));
  assert_int_equal(pd_book_last_good(a), pd_book_last_good(b));
  assert_memory_equal(pd_book_key(a), pd_book_key(b), PD_BOOK_KEY_LEN);
  size_t n = pd_book_size(a), total = 0;
  uint32_t *ids = malloc((n + 1) * sizeof *ids);
  assert_non_null(ids);
  assert_int_equal(pd_book_list(a, PD_TABLE_ANY, 0, n, ids, &total), n);
  for (size_t i = 0; i < n; i++) {
    pd_book_info_t x, y;
    assert_int_equal(pd_book_info(a, ids[i], &x), 0);
    uint32_t id = pd_book_find(b, &x.addr);
    assert_int_not_equal(id, PD_BOOK_NO_ID);
    assert_int_equal(pd_book_info(b, id, &y), 0);
    assert_true(pd_netaddr_equal(&x.addr, &y.addr));
    assert_true(pd_netaddr_same_ip(&x.source, &y.source));
    assert_int_equal(x.has_node_id, y.has_node_id);
    if (x.has_node_id) assert_memory_equal(x.node_id, y.node_id, PD_NODE_ID_LEN);
    assert_int_equal(x.time, y.time);
    assert_int_equal(x.last_try, y.last_try);
    assert_int_equal(x.last_success, y.last_success);
    assert_int_equal(x.last_count_attempt, y.last_count_attempt);
    assert_int_equal(x.attempts, y.attempts);
    assert_int_equal(x.refcount, y.refcount);
    assert_int_equal(x.in_tried, y.in_tried);
    if (x.in_tried) {
      assert_int_equal(x.bucket, y.bucket);
      assert_int_equal(x.position, y.position);
    }
    uint16_t sa[8], sb[8];
    int ka = pd_book_new_refs(a, ids[i], sa), kb = pd_book_new_refs(b, id, sb);
    assert_int_equal(ka, kb);
    qsort(sa, (size_t)ka, sizeof sa[0], cmp_u16);
    qsort(sb, (size_t)kb, sizeof sb[0], cmp_u16);
    assert_memory_equal(sa, sb, (size_t)ka * sizeof sa[0]);
  }
  free(ids);
}

static void round_trip_is_byte_exact(void **state) {
  (void)state;
  pd_rng_t r1, r2;
  pd_book_t *a = build_book(1, &r1, 600);
  assert_true(pd_book_count_tried(a) > 50);
  assert_true(pd_book_count_new(a) > 300);
  assert_true(pd_book_collision_count(a) >= 1);
  size_t len1 = 0, len2 = 0;
  char *doc1 = encode(a, &len1);
  /* The expired ban was left out, the other three are there. */
  assert_null(strstr(doc1, "\"expired\""));
  assert_non_null(strstr(doc1, "\"198.51.0.0/16\""));
  assert_non_null(strstr(doc1, "\"2001:db8::/32\""));
  assert_non_null(strstr(doc1, "\"format\":\"peerd-addrbook\",\"version\":1"));

  /* Every address is written exactly as pd_netaddr_format writes it. */
  {
    size_t n = pd_book_size(a), total = 0;
    uint32_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(pd_book_list(a, PD_TABLE_ANY, 0, n, ids, &total), n);
    for (size_t i = 0; i < n; i++) {
      pd_book_info_t e;
      char want[2 * PD_ADDR_STRLEN + 4], ab[PD_ADDR_STRLEN], sb[PD_ADDR_STRLEN];
      assert_int_equal(pd_book_info(a, ids[i], &e), 0);
      assert_true(pd_netaddr_format(&e.addr, ab, sizeof ab) > 0);
      assert_true(pd_netaddr_format_ip(&e.source, sb, sizeof sb) > 0);
      snprintf(want, sizeof want, "\n\"%s ", ab);
      assert_non_null(strstr(doc1, want));
      snprintf(want, sizeof want, " %s ", sb);
      assert_non_null(strstr(doc1, want));
    }
    free(ids);
  }

  pd_rng_seed(&r2, 99);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256];
  assert_int_equal(pd_bookstore_decode(doc1, len1, &r2, 0, &b, &rep, err, sizeof err), 0);
  assert_non_null(b);
  assert_int_equal(pd_book_check(b), 0);
  assert_int_equal(rep.entries_loaded, pd_book_size(a));
  assert_int_equal(rep.entries_skipped, 0);
  assert_int_equal(rep.bans_loaded, 3);
  assert_int_equal(rep.bans_skipped, 0);
  assert_int_equal(rep.collisions_loaded, pd_book_collision_count(a));
  assert_int_equal(rep.collisions_skipped, 0);
  assert_string_equal(rep.first_skip, "");
  assert_same_entries(a, b);
  assert_int_equal(pd_banlist_count(pd_book_bans_const(b)), 3);
  const pd_ban_t *ban = pd_banlist_get(pd_book_bans_const(b), 0);
  assert_non_null(ban);
  assert_string_equal(ban->reason, "permanent \"quoted\" reason\n\ttab");
  assert_int_equal(ban->until, 0);

  char *doc2 = encode(b, &len2);
  assert_int_equal(len1, len2);
  assert_memory_equal(doc1, doc2, len1);

  /* A third generation is identical too (nothing drifts). */
  pd_book_t *c = NULL;
  assert_int_equal(pd_bookstore_decode(doc2, len2, &r2, 0, &c, NULL, NULL, 0), 0);
  size_t len3 = 0;
  char *doc3 = encode(c, &len3);
  assert_int_equal(len1, len3);
  assert_memory_equal(doc1, doc3, len1);

  free(doc1);
  free(doc2);
  free(doc3);
  pd_book_destroy(a);
  pd_book_destroy(b);
  pd_book_destroy(c);
}

static void empty_book_round_trip(void **state) {
  (void)state;
  uint8_t key[PD_BOOK_KEY_LEN];
  test_key(key);
  pd_rng_t r;
  pd_rng_seed(&r, 5);
  pd_book_t *a = NULL;
  assert_int_equal(pd_book_create(&a, key, &r, 0), 0);
  size_t len = 0;
  char *doc = encode(a, &len);
  assert_non_null(strstr(doc, KEYHEX));
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  assert_int_equal(pd_bookstore_decode(doc, len, &r, 0, &b, &rep, NULL, 0), 0);
  assert_int_equal(pd_book_size(b), 0);
  assert_memory_equal(pd_book_key(b), key, PD_BOOK_KEY_LEN);
  size_t len2 = 0;
  char *doc2 = encode(b, &len2);
  assert_int_equal(len, len2);
  assert_memory_equal(doc, doc2, len);
  free(doc);
  free(doc2);
  pd_book_destroy(a);
  pd_book_destroy(b);
}

static void same_seed_same_bytes(void **state) {
  (void)state;
  pd_rng_t r1, r2, r3;
  pd_book_t *a = build_book(7, &r1, 400);
  pd_book_t *b = build_book(7, &r2, 400);
  pd_book_t *c = build_book(8, &r3, 400);
  size_t la, lb, lc;
  char *da = encode(a, &la), *db = encode(b, &lb), *dc = encode(c, &lc);
  assert_int_equal(la, lb);
  assert_memory_equal(da, db, la);
  assert_true(la != lc || memcmp(da, dc, la) != 0);
  free(da);
  free(db);
  free(dc);
  pd_book_destroy(a);
  pd_book_destroy(b);
  pd_book_destroy(c);
}

/* decode must fail with `want` (and a message), leaving *out untouched. */
static void expect_fail(const char *doc, size_t len, int want, const char *needle) {
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  pd_book_t *sentinel = (pd_book_t *)&r;
  pd_book_t *out = sentinel;
  char err[256];
  memset(err, 'x', sizeof err);
  int rc = pd_bookstore_decode(doc, len, &r, 0, &out, NULL, err, sizeof err);
  if (rc != want) print_error("decode gave %d (%s), want %d\n", rc, err, want);
  assert_int_equal(rc, want);
  assert_ptr_equal(out, sentinel);
  assert_true(strlen(err) > 0 && strlen(err) < sizeof err);
  if (needle != NULL && strstr(err, needle) == NULL) {
    print_error("message \"%s\" lacks \"%s\"\n", err, needle);
    fail();
  }
}

static char *doc_with(const char *format, const char *version, const char *key,
                      const char *columns, const char *entries, const char *tail) {
  char *buf = malloc(8192);
  assert_non_null(buf);
  snprintf(buf, 8192,
           "{\"format\":%s,\"version\":%s,\"saved_at\":1700000000,\"key\":%s,\"last_good\":1,"
           "\"columns\":%s,\"entries\":%s%s}",
           format, version, key, columns, entries, tail);
  return buf;
}

#define GOOD_COLUMNS                                                                           \
  "[\"addr\",\"id\",\"source\",\"time\",\"last_try\",\"last_success\",\"last_count_attempt\"," \
  "\"attempts\",\"tried\",\"new_slots\"]"
#define GOOD_KEY "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\""
#define GOOD_TAIL ",\"collisions\":[],\"bans\":[]"
#define ONE_ENTRY "[\"1.2.3.4:26656 - 5.6.7.8 1700000000 0 0 0 0 0 -\"]"

static void corrupt_and_wrong_format(void **state) {
  (void)state;
  expect_fail("", 0, PD_ECORRUPT, "empty");
  expect_fail("{", 1, PD_ECORRUPT, "line 1");
  expect_fail("[]", 2, PD_ECORRUPT, "object");
  expect_fail("null", 4, PD_ECORRUPT, NULL);
  expect_fail("{\"format\":\"peerd-addrbook\"}", 27, PD_ECORRUPT, "version");
  expect_fail("\x01\x02garbage", 9, PD_ECORRUPT, "JSON");

  struct {
    const char *format, *version, *key, *columns, *entries, *tail;
    int want;
    const char *needle;
  } cases[] = {
      /* the control: this one is fine */
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, 0, NULL},
      {"\"bitcoin-peers\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_EFORMAT,
       "bitcoin-peers"},
      {"\"peerd-addrbook\"", "2", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_EFORMAT,
       "version 2"},
      {"\"peerd-addrbook\"", "0", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_EFORMAT,
       "version 0"},
      {"\"peerd-addrbook\"", "\"1\"", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT,
       "version"},
      {"7", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT, "format"},
      {"\"peerd-addrbook\"", "1", "\"0011\"", GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT,
       "key"},
      {"\"peerd-addrbook\"", "1",
       "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg\"", GOOD_COLUMNS,
       ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT, "key"},
      {"\"peerd-addrbook\"", "1",
       "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\"", GOOD_COLUMNS,
       ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT, "key"},
      {"\"peerd-addrbook\"", "1", "null", GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT, "key"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, "{}", GOOD_TAIL, PD_ECORRUPT,
       "entries"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, "null", GOOD_TAIL, PD_ECORRUPT,
       "entries"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, ",\"bans\":[]", PD_ECORRUPT,
       "collisions"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY,
       ",\"collisions\":[],\"bans\":7", PD_ECORRUPT, "bans"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, "[\"addr\",\"id\"]", ONE_ENTRY, GOOD_TAIL, PD_EFORMAT,
       "column"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, "[1,2]", ONE_ENTRY, GOOD_TAIL, PD_ECORRUPT, "columns"},
      {"\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY,
       GOOD_TAIL ",\"bans\":[]", PD_ECORRUPT, "duplicate"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *doc = doc_with(cases[i].format, cases[i].version, cases[i].key, cases[i].columns,
                         cases[i].entries, cases[i].tail);
    if (cases[i].want == 0) {
      pd_rng_t r;
      pd_rng_seed(&r, 1);
      pd_book_t *b = NULL;
      char err[256] = "";
      int rc = pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, NULL, err, sizeof err);
      if (rc != 0) print_error("control failed: %s\n", err);
      assert_int_equal(rc, 0);
      assert_int_equal(pd_book_size(b), 1);
      pd_book_destroy(b);
    } else {
      expect_fail(doc, strlen(doc), cases[i].want, cases[i].needle);
    }
    free(doc);
  }
}

/* Decode a damaged document: it must fail with a code and message, or
 * succeed with a consistent book. Never crash (run under ASan). */
static int decode_damaged(const char *doc, size_t len, pd_rng_t *r) {
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256] = "";
  int rc = pd_bookstore_decode(doc, len, r, 0, &b, &rep, err, sizeof err);
  if (rc == 0) {
    assert_non_null(b);
    assert_int_equal(pd_book_check(b), 0);
    assert_int_equal(rep.entries_loaded, pd_book_size(b));
    pd_book_destroy(b);
  } else {
    assert_true(rc == PD_ECORRUPT || rc == PD_EFORMAT);
    assert_null(b);
    assert_true(err[0] != '\0');
  }
  return rc;
}

static void truncated_everywhere(void **state) {
  (void)state;
  pd_rng_t r1, r;
  pd_rng_seed(&r, 3);
  /* Small book: every single truncation point. */
  pd_book_t *a = build_book(11, &r1, 40);
  size_t len = 0;
  char *doc = encode(a, &len);
  for (size_t k = 0; k + 1 < len; k++) { /* the last byte is "\n" */
    char *copy = malloc(k + 1);
    assert_non_null(copy);
    memcpy(copy, doc, k); /* exactly k bytes: ASan catches any over-read */
    assert_int_equal(decode_damaged(copy, k, &r), PD_ECORRUPT);
    free(copy);
  }
  assert_int_equal(decode_damaged(doc, len - 1, &r), 0);
  free(doc);
  pd_book_destroy(a);

  /* Bigger book: a spread of truncation points. */
  a = build_book(12, &r1, 1500);
  doc = encode(a, &len);
  for (size_t k = 0; k + 1 < len; k += 1 + k / 3) {
    char *copy = malloc(k + 1);
    assert_non_null(copy);
    memcpy(copy, doc, k);
    assert_int_equal(decode_damaged(copy, k, &r), PD_ECORRUPT);
    free(copy);
  }
  free(doc);
  pd_book_destroy(a);
}

static void random_damage(void **state) {
  (void)state;
  pd_rng_t r1, r, g;
  pd_rng_seed(&r, 4);
  pd_rng_seed(&g, 5);
  pd_book_t *a = build_book(13, &r1, 60);
  size_t len = 0;
  char *doc = encode(a, &len);
  static const char alphabet[] = "0123456789\"[]{},:-.ftnul9x \\";
  int ok = 0, bad = 0;
  char *copy = malloc(len);
  assert_non_null(copy);
  for (int trial = 0; trial < 1500; trial++) {
    memcpy(copy, doc, len);
    int flips = 1 + (int)pd_rng_range(&g, 3);
    for (int f = 0; f < flips; f++) {
      size_t at = (size_t)pd_rng_range(&g, len);
      copy[at] = pd_rng_range(&g, 4) == 0 ? (char)pd_rng_u64(&g)
                                           : alphabet[pd_rng_range(&g, sizeof alphabet - 1)];
    }
    if (decode_damaged(copy, len, &r) == 0)
      ok++;
    else
      bad++;
  }
  /* Both outcomes occur: the check really sees damage, and many single
   * damaged entries are skipped rather than failing the document. */
  assert_true(ok > 100);
  assert_true(bad > 100);
  free(copy);
  free(doc);
  pd_book_destroy(a);
}

#define T "1700000000"
static const char *const MIXED_ENTRIES =
    "[\n"
    "\"1.2.3.4:26656 - 5.6.7.8 " T " 0 0 0 0 0 -\",\n"                     /* 0 ok */
    "\"1.2.3:26656 - 5.6.7.8 " T " 0 0 0 0 0 -\",\n"                       /* 1 bad addr */
    "\"8.8.8.8:26656 00112233445566778899AABBCCDDEEFF00112233 5.6.7.8 " T
    " 0 0 0 0 0 -\",\n"                                                      /* 2 ok, id */
    "\"10.0.0.1:26656 - 5.6.7.8 " T " 0 0 0 0 0 -\",\n"                    /* 3 private */
    "\"9.9.9.9:26656 - 5.6.7.8 yesterday 0 0 0 0 0 -\",\n"                  /* 4 time */
    "\"9.9.9.10:26656\",\n"                                                  /* 5 short */
    "42,\n"                                                                   /* 6 not row */
    "\"9.9.9.11:26656 - 5.6.7.8 " T " 0 0 0 0 true -\",\n"                 /* 7 tried */
    "\"9.9.9.12:26656 xyz 5.6.7.8 " T " 0 0 0 0 0 -\",\n"                  /* 8 id */
    "\"9.9.9.13:26656 - 5.6.7.8 " T " 0 0 0 -1 0 -\",\n"                   /* 9 attempts */
    "\"1.2.3.4:26656 - 5.6.7.9 " T " 0 0 0 0 0 -\",\n"                     /* 10 dup */
    "\"[2001:4860::8888]:26656 - 2001:4860::1 " T " 0 0 0 0 0 -\",\n"      /* 11 ok v6 */
    "\"9.9.9.14:26656 - 5.6.7.8 " T " 0 0 0 0 0 70000\",\n"                /* 12 slot */
    "\"4.4.4.4:26656 - 5.6.7.8 " T " " T " " T " 0 0 1 -\",\n"             /* 13 ok tried */
    "\"4.4.4.5:26656 - 5.6.7.8 " T " 0 0 0 1000 0 -\",\n"                  /* 14 ok clamp */
    "\"9.9.9.15:26656 - not-an-ip " T " 0 0 0 0 0 -\",\n"                  /* 15 source */
    "\"9.9.9.16:26656 - 5.6.7.8 -5 0 0 0 0 0 -\",\n"                       /* 16 time<0 */
    "[\"9.9.9.17:26656\",null],\n"                                            /* 17 array */
    "\"9.9.9.18:26656  - 5.6.7.8 " T " 0 0 0 0 0 -\",\n"                   /* 18 2 spaces */
    "\"9.9.9.19:26656 - 5.6.7.8 " T " 0 0 0 0 0 1,,2\",\n"                 /* 19 slots */
    "\"9.9.9.20:26656 - 5.6.7.8 " T " 0 0 0 0 0 1,2,3,4,5,6,7,8,9\",\n"    /* 20 9 slots */
    "\"9.9.9.21:26656 - 5.6.7.8 " T " 0 0 0 0 0 - extra\",\n"              /* 21 11 vals */
    "\"9.9.9.22:26656 - 5.6.7.8 99999999999999999999 0 0 0 0 0 -\"\n"      /* 22 huge */
    "]";
#undef T

static const char *const MIXED_TAIL =
    ",\"collisions\":[\"99.99.99.99:1\",\"1.2.3.4:26656\",17],"
    "\"bans\":[{\"subnet\":\"10.0.0.0/8\",\"created\":1,\"until\":0,\"reason\":\"r\"},"
    "{\"subnet\":\"10.0.0.1/8\",\"created\":1,\"until\":0,\"reason\":\"host bits\"},"
    "{\"subnet\":\"1.2.0.0/16\",\"created\":-5,\"until\":0,\"reason\":\"\"},"
    "\"not an object\","
    "{\"subnet\":\"2001:db8::/32\",\"created\":1,\"until\":1800000000}]";

static void bad_entries_are_skipped(void **state) {
  (void)state;
  char *doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, MIXED_ENTRIES, MIXED_TAIL);
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256] = "";
  int rc = pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, &rep, err, sizeof err);
  if (rc != 0) print_error("decode: %s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(pd_book_check(b), 0);
  assert_int_equal(rep.entries_loaded, 5);
  assert_int_equal(rep.entries_skipped, 18);
  assert_int_equal(pd_book_size(b), 5);
  assert_int_equal(pd_book_count_tried(b), 1);
  assert_true(strncmp(rep.first_skip, "entry 1 (1.2.3:26656): ", 23) == 0);
  assert_int_equal(rep.bans_loaded, 2);
  assert_int_equal(rep.bans_skipped, 3);
  assert_int_equal(rep.collisions_skipped, 2 + (rep.collisions_loaded == 0));
  assert_int_equal(pd_banlist_count(pd_book_bans_const(b)), 2);

  pd_netaddr_t a;
  bool has_id = false;
  uint8_t id[PD_NODE_ID_LEN];
  assert_int_equal(pd_netaddr_parse("8.8.8.8:26656", 0, &a, &has_id, id, NULL), 0);
  uint32_t eid = pd_book_find(b, &a);
  assert_int_not_equal(eid, PD_BOOK_NO_ID);
  pd_book_info_t info;
  assert_int_equal(pd_book_info(b, eid, &info), 0);
  assert_true(info.has_node_id);
  assert_int_equal(info.node_id[0], 0x00);
  assert_int_equal(info.node_id[19], 0x33);
  assert_int_equal(info.node_id[10], 0xaa);
  assert_int_equal(pd_netaddr_parse("4.4.4.5:26656", 0, &a, NULL, NULL, NULL), 0);
  eid = pd_book_find(b, &a);
  assert_int_not_equal(eid, PD_BOOK_NO_ID);
  assert_int_equal(pd_book_info(b, eid, &info), 0);
  assert_int_equal(info.attempts, 127);
  assert_int_equal(pd_netaddr_parse("4.4.4.4:26656", 0, &a, NULL, NULL, NULL), 0);
  eid = pd_book_find(b, &a);
  assert_int_equal(pd_book_info(b, eid, &info), 0);
  assert_true(info.in_tried);
  assert_int_equal(info.last_success, NOW);
  pd_book_destroy(b);

  /* The same document with private addresses allowed: entry 3 loads and
   * the first skip is still entry 1. */
  b = NULL;
  assert_int_equal(
      pd_bookstore_decode(doc, strlen(doc), &r, PD_BOOK_ALLOW_PRIVATE, &b, &rep, err, sizeof err),
      0);
  assert_int_equal(rep.entries_loaded, 6);
  assert_int_equal(rep.entries_skipped, 17);
  assert_true(strncmp(rep.first_skip, "entry 1 ", 8) == 0);
  pd_book_destroy(b);
  free(doc);

  /* Only the private entry is bad: its reason is the first skip. */
  doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS,
                 "[\"10.0.0.1:26656 - 5.6.7.8 1 0 0 0 0 0 -\","
                 "\"11.0.0.1:26656 - 5.6.7.8 1 0 0 0 0 0 -\"]",
                 GOOD_TAIL);
  assert_int_equal(pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, &rep, err, sizeof err), 0);
  assert_int_equal(rep.entries_loaded, 1);
  assert_int_equal(rep.entries_skipped, 1);
  assert_true(strncmp(rep.first_skip, "entry 0 (10.0.0.1:26656): ", 26) == 0);
  assert_true(strlen(rep.first_skip) > 26);
  pd_book_destroy(b);
  free(doc);
}

/* Extra columns (a later minor addition) are ignored; order is by name. */
static void columns_by_name(void **state) {
  (void)state;
  char *doc = doc_with(
      "\"peerd-addrbook\"", "1", GOOD_KEY,
      "[\"new_slots\",\"tried\",\"attempts\",\"extra\",\"last_count_attempt\",\"last_success\","
      "\"last_try\",\"time\",\"source\",\"id\",\"addr\"]",
      "[\"- 0 2 whatever 0 0 1699999000 1699990000 5.6.7.8 - 1.2.3.4:26656\"]",
      GOOD_TAIL);
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  assert_int_equal(pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, &rep, NULL, 0), 0);
  assert_int_equal(rep.entries_loaded, 1);
  pd_book_info_t info;
  uint32_t ids[1];
  size_t total = 0;
  assert_int_equal(pd_book_list(b, PD_TABLE_ANY, 0, 1, ids, &total), 1);
  assert_int_equal(pd_book_info(b, ids[0], &info), 0);
  assert_int_equal(info.attempts, 2);
  assert_int_equal(info.time, 1699990000);
  assert_int_equal(info.last_try, 1699999000);
  pd_book_destroy(b);
  free(doc);
}

/* Two tried entries that want the same tried slot: the first in the file
 * wins, the second is skipped with the reason. */
static void tried_slot_conflict_is_skipped(void **state) {
  (void)state;
  uint8_t key[PD_BOOK_KEY_LEN];
  test_key(key);
  pd_rng_t gen;
  pd_rng_seed(&gen, 77);
  int *owner = malloc(sizeof(int) * PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE);
  assert_non_null(owner);
  for (int i = 0; i < PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE; i++) owner[i] = -1;
  pd_netaddr_t cand[4096];
  int x = -1, y = -1;
  for (int i = 0; i < 4096 && x < 0; i++) {
    cand[i] = random_routable(&gen, 26656);
    int tb = pd_book_tried_bucket(key, &cand[i], false);
    int slot = tb * PD_BOOK_BUCKET_SIZE + pd_book_bucket_position(key, false, tb, &cand[i]);
    if (owner[slot] >= 0) {
      x = owner[slot];
      y = i;
    }
    owner[slot] = i;
  }
  free(owner);
  assert_true(x >= 0);
  char ax[PD_ADDR_STRLEN], ay[PD_ADDR_STRLEN], rows[512];
  assert_true(pd_netaddr_format(&cand[x], ax, sizeof ax) > 0);
  assert_true(pd_netaddr_format(&cand[y], ay, sizeof ay) > 0);
  snprintf(rows, sizeof rows,
           "[\"%s - 5.6.7.8 1700000000 1700000000 1700000000 0 0 1 -\","
           "\"%s - 5.6.7.8 1700000000 1700000000 1700000000 0 0 1 -\"]",
           ax, ay);
  char *doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, rows, GOOD_TAIL);
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  assert_int_equal(pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, &rep, NULL, 0), 0);
  assert_int_equal(rep.entries_loaded, 1);
  assert_int_equal(rep.entries_skipped, 1);
  assert_int_equal(pd_book_count_tried(b), 1);
  assert_int_not_equal(pd_book_find(b, &cand[x]), PD_BOOK_NO_ID);
  assert_int_equal(pd_book_find(b, &cand[y]), PD_BOOK_NO_ID);
  char want[200];
  snprintf(want, sizeof want, "entry 1 (%s): ", ay);
  assert_true(strncmp(rep.first_skip, want, strlen(want)) == 0);
  pd_book_destroy(b);
  free(doc);
}

/* ---- geometry ------------------------------------------------------------------------ */

static const pd_book_geometry_t SMALL = {64, 16};

static void small_geometry_round_trip(void **state) {
  (void)state;
  pd_rng_t r1, r2, r3;
  pd_book_t *a = build_book_geo(1, &r1, 600, &SMALL);
  assert_true(pd_book_count_tried(a) > 50);
  assert_true(pd_book_count_new(a) > 200);
  assert_true(pd_book_collision_count(a) >= 1);
  size_t len1 = 0, len2 = 0, len3 = 0;
  char *doc1 = encode(a, &len1);
  assert_non_null(strstr(doc1, ",\"last_good\":"));
  assert_non_null(strstr(doc1, ",\"new_buckets\":64,\"tried_buckets\":16,\n\"columns\":"));
  /* slots are in the small table */
  size_t n = pd_book_size(a);
  uint32_t *ids = malloc(n * sizeof *ids);
  assert_non_null(ids);
  assert_int_equal(pd_book_list(a, PD_TABLE_NEW, 0, n, ids, NULL), pd_book_count_new(a));
  for (size_t i = 0; i < pd_book_count_new(a); i++) {
    uint16_t sl[8];
    int k = pd_book_new_refs(a, ids[i], sl);
    assert_true(k >= 1);
    for (int j = 0; j < k; j++) assert_true(sl[j] < 64 * 64);
  }
  free(ids);

  pd_rng_seed(&r2, 99);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256];
  assert_int_equal(pd_bookstore_decode(doc1, len1, &r2, 0, &b, &rep, err, sizeof err), 0);
  pd_book_geometry_t g;
  pd_book_geometry(b, &g);
  assert_int_equal(g.new_buckets, 64);
  assert_int_equal(g.tried_buckets, 16);
  assert_int_equal(rep.file_geometry.new_buckets, 64);
  assert_int_equal(rep.file_geometry.tried_buckets, 16);
  assert_int_equal(rep.entries_replaced, 0);
  assert_int_equal(rep.entries_lost, 0);
  assert_int_equal(rep.entries_skipped, 0);
  assert_int_equal(rep.entries_loaded, pd_book_size(a));
  assert_int_equal(rep.collisions_loaded, pd_book_collision_count(a));
  assert_int_equal(pd_book_check(b), 0);
  assert_same_entries(a, b);
  char *doc2 = encode(b, &len2);
  assert_int_equal(len1, len2);
  assert_memory_equal(doc1, doc2, len1);

  /* asking for the document's own geometry is the same thing */
  pd_book_t *c = NULL;
  assert_int_equal(pd_bookstore_decode_ex(doc1, len1, &r2, 0, &SMALL, &c, &rep, NULL, 0), 0);
  assert_int_equal(rep.entries_replaced, 0);
  char *doc3 = encode(c, &len3);
  assert_int_equal(len1, len3);
  assert_memory_equal(doc1, doc3, len1);

  /* same seed => same bytes, another seed => other bytes, at 64/16 too */
  pd_book_t *d = build_book_geo(1, &r3, 600, &SMALL);
  size_t len4 = 0;
  char *doc4 = encode(d, &len4);
  assert_int_equal(len1, len4);
  assert_memory_equal(doc1, doc4, len1);
  pd_book_destroy(d);
  d = build_book_geo(2, &r3, 600, &SMALL);
  free(doc4);
  doc4 = encode(d, &len4);
  assert_true(len1 != len4 || memcmp(doc1, doc4, len1) != 0);

  /* a default book writes no geometry (its bytes are as before) */
  pd_book_t *e = build_book(1, &r3, 50);
  size_t len5 = 0;
  char *doc5 = encode(e, &len5);
  assert_null(strstr(doc5, "new_buckets"));
  assert_null(strstr(doc5, "tried_buckets"));

  free(doc1);
  free(doc2);
  free(doc3);
  free(doc4);
  free(doc5);
  pd_book_destroy(a);
  pd_book_destroy(b);
  pd_book_destroy(c);
  pd_book_destroy(d);
  pd_book_destroy(e);
}

/* Which tried entries of `src` fit in geometry g: first come (in file
 * order = ascending id) first served per tried slot. fits[i] for ids[i]. */
static size_t tried_that_fit(const pd_book_t *src, const uint32_t *ids, size_t n,
                             const pd_book_geometry_t *g, bool *fits) {
  int *owner = malloc(sizeof(int) * PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE);
  assert_non_null(owner);
  for (int i = 0; i < PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE; i++) owner[i] = -1;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    pd_book_info_t e;
    assert_int_equal(pd_book_info(src, ids[i], &e), 0);
    fits[i] = false;
    if (!e.in_tried) continue;
    int tb = pd_book_tried_bucket_ex(pd_book_key(src), &e.addr, false, g);
    assert_true(tb >= 0 && (uint32_t)tb < g->tried_buckets);
    int slot = tb * PD_BOOK_BUCKET_SIZE +
               pd_book_bucket_position(pd_book_key(src), false, tb, &e.addr);
    if (owner[slot] >= 0) continue;
    owner[slot] = (int)i;
    fits[i] = true;
    k++;
  }
  free(owner);
  return k;
}

/* Re-placing `src`'s document into geometry g: the checks that hold for
 * any source and target. Returns the new book. */
static pd_book_t *replace_into(const pd_book_t *src, const pd_book_geometry_t *g, size_t *lost) {
  size_t len = 0;
  char *doc = encode(src, &len);
  size_t n = pd_book_size(src);
  uint32_t *ids = malloc((n + 1) * sizeof *ids);
  bool *fits = malloc((n + 1) * sizeof *fits);
  assert_non_null(ids);
  assert_non_null(fits);
  assert_int_equal(pd_book_list(src, PD_TABLE_ANY, 0, n, ids, NULL), n);
  size_t want_tried = tried_that_fit(src, ids, n, g, fits);

  pd_rng_t r;
  pd_rng_seed(&r, 5);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256];
  assert_int_equal(pd_bookstore_decode_ex(doc, len, &r, 0, g, &b, &rep, err, sizeof err), 0);
  assert_int_equal(pd_book_check(b), 0);
  pd_book_geometry_t bg, sg;
  pd_book_geometry(b, &bg);
  pd_book_geometry(src, &sg);
  assert_int_equal(bg.new_buckets, g->new_buckets);
  assert_int_equal(bg.tried_buckets, g->tried_buckets);
  assert_int_equal(rep.file_geometry.new_buckets, sg.new_buckets);
  assert_int_equal(rep.file_geometry.tried_buckets, sg.tried_buckets);
  /* every entry is accounted for: loaded (re-placed) or lost */
  assert_int_equal(rep.entries_skipped, 0);
  assert_int_equal(rep.entries_loaded, pd_book_size(b));
  assert_int_equal(rep.entries_replaced, pd_book_size(b));
  assert_int_equal(rep.entries_loaded + rep.entries_lost, n);
  /* every tried entry that fits is tried; the others are not */
  assert_int_equal(pd_book_count_tried(b), want_tried);
  size_t demoted = 0;
  for (size_t i = 0; i < n; i++) {
    pd_book_info_t e, f;
    assert_int_equal(pd_book_info(src, ids[i], &e), 0);
    uint32_t id = pd_book_find(b, &e.addr);
    if (fits[i]) {
      assert_int_not_equal(id, PD_BOOK_NO_ID);
      assert_int_equal(pd_book_info(b, id, &f), 0);
      assert_true(f.in_tried);
      assert_int_equal(f.last_success, e.last_success);
      continue;
    }
    if (id == PD_BOOK_NO_ID) continue; /* lost, counted */
    assert_int_equal(pd_book_info(b, id, &f), 0);
    assert_false(f.in_tried);
    demoted += e.in_tried;
    /* one reference, in its own source's new slot */
    assert_int_equal(f.refcount, 1);
    assert_int_equal(f.bucket, pd_book_new_bucket_ex(pd_book_key(b), &e.addr, &e.source, false, g));
    assert_int_equal(f.time, e.time);
    assert_int_equal(f.attempts, e.attempts);
    assert_int_equal(f.has_node_id, e.has_node_id);
  }
  assert_int_equal(demoted, rep.tried_demoted);
  *lost = rep.entries_lost;

  /* deterministic: the same document into the same geometry, same bytes */
  pd_book_t *b2 = NULL;
  pd_rng_seed(&r, 5);
  assert_int_equal(pd_bookstore_decode_ex(doc, len, &r, 0, g, &b2, NULL, NULL, 0), 0);
  size_t l1 = 0, l2 = 0;
  char *d1 = encode(b, &l1), *d2 = encode(b2, &l2);
  assert_int_equal(l1, l2);
  assert_memory_equal(d1, d2, l1);
  free(d1);
  free(d2);
  pd_book_destroy(b2);
  free(doc);
  free(ids);
  free(fits);
  return b;
}

/* A default document decoded into 64/16 and back into the default. */
static void default_to_small_and_back(void **state) {
  (void)state;
  pd_rng_t r1;
  pd_book_t *a = build_book(3, &r1, 6000);
  assert_true(pd_book_count_tried(a) > 16 * 64); /* more than the small tried table holds */
  assert_true(pd_book_count_new(a) > 64 * 64 / 2);
  size_t lost = 0;
  pd_book_t *s = replace_into(a, &SMALL, &lost);
  assert_true(lost > 0); /* the small table cannot hold them all */
  assert_true(pd_book_count_tried(s) > 16 * 64 / 2);
  pd_book_geometry_t def;
  pd_book_geometry_default(&def);
  size_t lost2 = 99;
  pd_book_t *d = replace_into(s, &def, &lost2);
  /* the big table has room for what the small one held: at most a few
   * slot collisions */
  assert_true(lost2 * 100 <= pd_book_size(s));
  assert_true(pd_book_count_tried(d) * 100 >= pd_book_count_tried(s) * 95);
  /* another small geometry, from the small book */
  pd_book_geometry_t tiny = {16, 4};
  size_t lost3 = 0;
  pd_book_t *t = replace_into(s, &tiny, &lost3);
  assert_true(lost3 > 0);
  pd_book_destroy(t);
  pd_book_destroy(d);
  pd_book_destroy(s);
  pd_book_destroy(a);
}

static void geometry_errors(void **state) {
  (void)state;
  /* bad geometry fields in a document */
  static const char inline_doc[] =
      "{\"format\":\"peerd-addrbook\",\"version\":1,\"saved_at\":1,\"key\":" GOOD_KEY
      ",\"last_good\":1,\"new_buckets\":32,\"tried_buckets\":32,\"columns\":" GOOD_COLUMNS
      ",\"entries\":[]" GOOD_TAIL ",\"new_buckets\":100}";
  /* duplicate keys are rejected before the geometry is looked at */
  expect_fail(inline_doc, strlen(inline_doc), PD_ECORRUPT, NULL);
  static const char *const tails[] = {
      GOOD_TAIL ",\"new_buckets\":100",    GOOD_TAIL ",\"new_buckets\":\"64\"",
      GOOD_TAIL ",\"tried_buckets\":512",  GOOD_TAIL ",\"new_buckets\":-1",
      GOOD_TAIL ",\"new_buckets\":2048",   GOOD_TAIL ",\"tried_buckets\":2",
      GOOD_TAIL ",\"new_buckets\":1e3",    GOOD_TAIL ",\"tried_buckets\":null",
      GOOD_TAIL ",\"new_buckets\":8,\"tried_buckets\":16"};
  for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
    char *doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, tails[i]);
    expect_fail(doc, strlen(doc), PD_ECORRUPT, "_buckets");
    free(doc);
  }
  /* one field alone: the other keeps its default */
  char *doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY,
                       GOOD_TAIL ",\"new_buckets\":64");
  pd_rng_t r;
  pd_rng_seed(&r, 1);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  assert_int_equal(pd_bookstore_decode(doc, strlen(doc), &r, 0, &b, &rep, NULL, 0), 0);
  pd_book_geometry_t g;
  pd_book_geometry(b, &g);
  assert_int_equal(g.new_buckets, 64);
  assert_int_equal(g.tried_buckets, 256);
  assert_int_equal(rep.entries_loaded, 1);
  pd_book_destroy(b);
  /* an invalid wanted geometry */
  static const pd_book_geometry_t bad[] = {{0, 0}, {100, 16}, {64, 512}, {2048, 256}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pd_book_t *sentinel = (pd_book_t *)&r, *out = sentinel;
    char err[128] = "";
    assert_int_equal(
        pd_bookstore_decode_ex(doc, strlen(doc), &r, 0, &bad[i], &out, NULL, err, sizeof err),
        PD_EINVAL);
    assert_ptr_equal(out, sentinel);
    assert_true(strlen(err) > 0);
  }
  free(doc);
  /* a version-1 document without the fields is the default geometry,
   * decoded in place (no re-placement), also when asked for explicitly */
  doc = doc_with("\"peerd-addrbook\"", "1", GOOD_KEY, GOOD_COLUMNS, ONE_ENTRY, GOOD_TAIL);
  pd_book_geometry_t def;
  pd_book_geometry_default(&def);
  assert_int_equal(pd_bookstore_decode_ex(doc, strlen(doc), &r, 0, &def, &b, &rep, NULL, 0), 0);
  assert_int_equal(rep.file_geometry.new_buckets, 1024);
  assert_int_equal(rep.file_geometry.tried_buckets, 256);
  assert_int_equal(rep.entries_replaced, 0);
  pd_book_geometry(b, &g);
  assert_int_equal(g.new_buckets, 1024);
  pd_book_destroy(b);
  free(doc);
}

/* The entry rows of an encoded document: each row's address and the offset
 * just past its closing quote (the row is complete in a copy of at least
 * that many bytes). Returns the count (at most cap). */
typedef struct row_at {
  char addr[64];
  size_t start, end;
} row_at_t;

static size_t rows_of(const char *doc, size_t len, row_at_t *rows, size_t cap) {
  size_t n = 0;
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(doc + at, '\n', len - at);
    size_t ll = nl ? (size_t)(nl - (doc + at)) : len - at;
    const char *l = doc + at;
    if (ll > 2 && l[0] == '"' && strncmp(l, "\"columns\"", 9) != 0 &&
        strncmp(l, "\"entries\"", 9) != 0 && strncmp(l, "\"collisions\"", 12) != 0 &&
        strncmp(l, "\"bans\"", 6) != 0) {
      assert_true(n < cap);
      size_t q = l[ll - 1] == ',' ? ll - 1 : ll; /* past the closing quote */
      rows[n].start = at;
      rows[n].end = at + q;
      size_t al = strcspn(l + 1, " ");
      assert_true(al < sizeof rows[n].addr);
      memcpy(rows[n].addr, l + 1, al);
      rows[n].addr[al] = '\0';
      n++;
    }
    at += ll + 1;
  }
  return n;
}

static int salvage(const char *doc, size_t len, pd_book_t **out, pd_bookstore_report_t *rep) {
  pd_rng_t r;
  pd_rng_seed(&r, 5);
  char err[256] = "";
  int rc = pd_bookstore_salvage(doc, len, &r, 0, out, rep, err, sizeof err);
  if (rc != 0) assert_true(err[0] != '\0');
  return rc;
}

static void salvage_every_cut(void **state) {
  (void)state;
  pd_rng_t r1;
  /* a small geometry: the header carries it, and 2,000 book creations stay cheap */
  pd_book_t *a = build_book_geo(21, &r1, 16, &SMALL);
  size_t len = 0;
  char *doc = encode(a, &len);
  row_at_t rows[64];
  size_t nrows = rows_of(doc, len, rows, 64);
  assert_int_equal(nrows, pd_book_size(a));
  const char *nl = memchr(doc, '\n', len);
  size_t first_line = (size_t)(nl - doc) + 1;

  /* the whole document: the same book as decode gives */
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  assert_int_equal(salvage(doc, len, &b, &rep), 0);
  assert_same_entries(a, b);
  assert_int_equal(rep.salvaged, nrows);
  assert_int_equal(rep.lost, 0);
  assert_true(rep.salvage_end_found);
  pd_book_destroy(b);

  /* every cut */
  for (size_t k = 0; k < len; k++) {
    char *copy = malloc(k + 1);
    assert_non_null(copy);
    memcpy(copy, doc, k); /* exactly k bytes: ASan catches any over-read */
    b = NULL;
    int rc = salvage(copy, k, &b, &rep);
    if (k < first_line) {
      assert_int_equal(rc, PD_ECORRUPT);
      assert_null(b);
      free(copy);
      continue;
    }
    assert_int_equal(rc, 0);
    size_t want = 0;
    bool mid_row = false;
    for (size_t i = 0; i < nrows; i++) {
      if (rows[i].end <= k) {
        want++;
        pd_netaddr_t addr;
        assert_int_equal(pd_netaddr_parse(rows[i].addr, 0, &addr, NULL, NULL, NULL), 0);
        assert_int_not_equal(pd_book_find(b, &addr), PD_BOOK_NO_ID);
      } else if (k > rows[i].start && k < rows[i].end) {
        mid_row = k > rows[i].start + 1; /* the cut is inside this row (a lone " is nothing) */
      }
    }
    if (rep.salvaged != want)
      print_error("cut at %zu: salvaged %zu, want %zu\n", k, rep.salvaged, want);
    assert_int_equal(rep.salvaged, want);
    assert_int_equal(pd_book_size(b), want);
    if (rep.lost != (mid_row ? 1u : 0u))
      print_error("cut at %zu: lost %zu (%s), mid_row %d: %.*s|\n", k, rep.lost, rep.first_skip,
                  (int)mid_row, 30, doc + (k > 20 ? k - 20 : 0));
    assert_int_equal(rep.lost, mid_row ? 1 : 0);
    if (mid_row) assert_non_null(strstr(rep.first_skip, "not a complete entry row"));
    assert_int_equal(rep.salvage_end_found, k >= len - 1);
    assert_int_equal(pd_book_check(b), 0);
    assert_memory_equal(pd_book_key(a), pd_book_key(b), PD_BOOK_KEY_LEN);
    pd_book_destroy(b);
    free(copy);
  }
  free(doc);
  pd_book_destroy(a);
}

static void salvage_skips_garbage(void **state) {
  (void)state;
  pd_rng_t r1;
  pd_book_t *a = build_book(22, &r1, 40);
  size_t len = 0;
  char *doc = encode(a, &len);
  /* after the 10th row: four lines of damage */
  size_t at = 0;
  int seen = 0;
  for (size_t i = 0; i < len && seen < 4 + 10; i++) {
    if (doc[i] == '\n') {
      seen++;
      at = i + 1;
    }
  }
  static const char junk[] = "garbage here\n"
                             "\"1.2.3.4:26656 - 5.6.7.8 17\n"
                             "\"1.2.3.4:26656 - 5.6.7.8 1700000000 0 0\",\n"
                             "\x00\x00\x00\x00\n";
  size_t jl = sizeof junk - 1;
  char *bad = malloc(len + jl + 1);
  assert_non_null(bad);
  memcpy(bad, doc, at);
  memcpy(bad + at, junk, jl);
  memcpy(bad + at + jl, doc + at, len - at);
  size_t bl = len + jl;
  bad[bl] = '\0';
  /* the whole document does not decode any more */
  pd_rng_t r;
  pd_rng_seed(&r, 5);
  pd_book_t *b = NULL;
  assert_int_equal(pd_bookstore_decode(bad, bl, &r, 0, &b, NULL, NULL, 0), PD_ECORRUPT);
  pd_bookstore_report_t rep;
  assert_int_equal(salvage(bad, bl, &b, &rep), 0);
  assert_same_entries(a, b);
  assert_int_equal(rep.salvaged, pd_book_size(a));
  assert_int_equal(rep.lost, 4);
  assert_int_equal(rep.entries_skipped, 4);
  assert_true(rep.salvage_end_found);
  assert_int_equal(rep.bans_loaded, 3); /* the expired fourth is not written */
  assert_int_equal(rep.bans_skipped, 0);
  if (strstr(rep.first_skip, "line 15: unreadable") == NULL) print_error("%s\n", rep.first_skip);
  assert_non_null(strstr(rep.first_skip, "line 15: unreadable"));
  pd_book_destroy(b);

  /* the first line destroyed: nothing to salvage; another format: refused */
  bad[3] = '#';
  b = NULL;
  assert_int_equal(salvage(bad, bl, &b, &rep), PD_ECORRUPT);
  assert_null(b);
  memcpy(bad, doc, at);
  memcpy(bad + 11, "peerd-xddrbook", 14);
  assert_int_equal(salvage(bad, bl, &b, &rep), PD_EFORMAT);
  assert_null(b);
  assert_int_equal(salvage(bad, 0, &b, &rep), PD_ECORRUPT);
  free(bad);
  free(doc);
  pd_book_destroy(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_is_byte_exact),
      cmocka_unit_test(empty_book_round_trip),
      cmocka_unit_test(same_seed_same_bytes),
      cmocka_unit_test(corrupt_and_wrong_format),
      cmocka_unit_test(truncated_everywhere),
      cmocka_unit_test(random_damage),
      cmocka_unit_test(bad_entries_are_skipped),
      cmocka_unit_test(columns_by_name),
      cmocka_unit_test(tried_slot_conflict_is_skipped),
      cmocka_unit_test(small_geometry_round_trip),
      cmocka_unit_test(default_to_small_and_back),
      cmocka_unit_test(geometry_errors),
      cmocka_unit_test(salvage_every_cut),
      cmocka_unit_test(salvage_skips_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
