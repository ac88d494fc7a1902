/* Unit tests for statestore: bans.json and reputation.json round trips
 * (byte-exact, every field and the touch order kept), the bounds (what is
 * kept and what is dropped first), damaged documents (every truncation,
 * wrong format or version) that fail with a clear error and leave the list
 * or table untouched, bad items skipped with counts and a reason, and an
 * old book that still holds bans handing them over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrbook.h"
#include "bookstore.h"
#include "err.h"
#include "statestore.h"

#define NOW ((int64_t)1700000000)
#define DAY 86400
#define MAX_TIME_FILE ((int64_t)1 << 40) /* the largest time a document may hold */

static pd_subnet_t subnet(const char *s) {
  pd_subnet_t sn;
  assert_int_equal(pd_subnet_parse(s, &sn, NULL), 0);
  return sn;
}

static pd_netaddr_t ip(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(s, PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, NULL), 0);
  return a;
}

static void add_ban(pd_banlist_t *bl, const char *s, int64_t created, int64_t until,
                    const char *reason) {
  pd_subnet_t sn = subnet(s);
  assert_true(pd_banlist_add(bl, &sn, created, until, reason) >= 0);
}

static char *enc_bans(const pd_banlist_t *bl, int64_t now, size_t max, size_t *len, size_t *n) {
  char *doc = NULL;
  assert_int_equal(pd_statestore_encode_bans(bl, now, max, &doc, len, n), 0);
  assert_non_null(doc);
  assert_int_equal(strlen(doc), *len);
  return doc;
}

static char *enc_rep(const pd_reputation_t *r, size_t max, size_t *len, size_t *n) {
  char *doc = NULL;
  assert_int_equal(pd_statestore_encode_reputation(r, NOW, max, &doc, len, n), 0);
  assert_non_null(doc);
  assert_int_equal(strlen(doc), *len);
  return doc;
}

static void assert_same_ban(const pd_ban_t *a, const pd_ban_t *b) {
  assert_int_equal(a->subnet.prefix, b->subnet.prefix);
  assert_memory_equal(a->subnet.ip, b->subnet.ip, 16);
  assert_int_equal(a->created, b->created);
  assert_int_equal(a->until, b->until);
  assert_string_equal(a->reason, b->reason);
}

/* ---- bans ---------------------------------------------------------------- */

static void bans_round_trip_is_byte_exact(void **state) {
  (void)state;
  pd_banlist_t *a = NULL, *b = NULL;
  assert_int_equal(pd_banlist_create(&a), 0);
  assert_int_equal(pd_banlist_create(&b), 0);
  add_ban(a, "198.51.0.0/16", NOW - 10, 0, "permanent \"quoted\" reason\n\ttab\\");
  add_ban(a, "203.0.113.7", NOW, NOW + DAY, "misbehaviour 1: caf\xc3\xa9");
  add_ban(a, "2001:db8::/32", NOW, NOW + 2 * DAY, NULL);
  add_ban(a, "2001:db8:1::5", NOW, NOW + 3 * DAY, "v6 single");
  add_ban(a, "192.0.2.0/24", NOW - 2 * DAY, NOW - DAY, "expired");
  /* a reason the list cut inside a UTF-8 sequence (95 bytes kept) */
  char longr[200];
  memset(longr, 'x', sizeof longr);
  memcpy(longr + 94, "\xc3\xa9\xc3\xa9", 4);
  longr[199] = '\0';
  add_ban(a, "100.64.0.0/10", NOW, 0, longr);

  size_t len = 0, n = 0, len2 = 0, n2 = 0;
  char *doc = enc_bans(a, NOW, 0, &len, &n);
  assert_int_equal(n, 5); /* the expired one is left out */
  assert_null(strstr(doc, "expired"));
  assert_non_null(strstr(doc, "{\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1700000000,"));
  assert_non_null(strstr(doc, "\n{\"subnet\":\"203.0.113.7\",\"created\":1700000000,\"until\":"
                              "1700086400,\"reason\":\"misbehaviour 1: caf\xc3\xa9\"}"));

  pd_statestore_report_t rep;
  char err[256];
  assert_int_equal(pd_statestore_decode_bans(doc, len, NOW, b, &rep, err, sizeof err), 0);
  assert_int_equal(rep.loaded, 5);
  assert_int_equal(rep.skipped, 0);
  assert_int_equal(rep.expired, 0);
  assert_string_equal(rep.first_skip, "");
  assert_int_equal(pd_banlist_count(b), 5);
  for (size_t i = 0, j = 0; i < pd_banlist_count(a); i++) {
    const pd_ban_t *x = pd_banlist_get(a, i);
    if (x->until != 0 && x->until <= NOW) continue;
    const pd_ban_t *y = pd_banlist_get(b, j++);
    if (strncmp(x->reason, "xxxx", 4) == 0) {
      /* the cut sequence is dropped, the rest kept */
      assert_int_equal(strlen(x->reason), 95);
      assert_int_equal(strlen(y->reason), 94);
      assert_memory_equal(y->reason, x->reason, 94);
      continue;
    }
    assert_same_ban(x, y);
  }
  pd_netaddr_t in = ip("198.51.77.1");
  assert_true(pd_banlist_is_banned(b, &in, NOW + 10 * DAY, NULL));

  char *doc2 = enc_bans(b, NOW, 0, &len2, &n2);
  assert_int_equal(len, len2);
  assert_memory_equal(doc, doc2, len);

  /* decoded later, bans over by then are left out and counted */
  pd_banlist_clear(b);
  assert_int_equal(pd_statestore_decode_bans(doc, len, NOW + 2 * DAY, b, &rep, NULL, 0), 0);
  assert_int_equal(rep.expired, 2); /* 1 day, 2 days */
  assert_int_equal(rep.loaded, 3);

  /* an empty list */
  pd_banlist_clear(a);
  free(doc);
  doc = enc_bans(a, NOW, 0, &len, &n);
  assert_int_equal(n, 0);
  assert_string_equal(doc, "{\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1700000000,\n"
                           "\"bans\":[]}\n");
  assert_int_equal(pd_statestore_decode_bans(doc, len, NOW, a, &rep, NULL, 0), 0);
  assert_int_equal(pd_banlist_count(a), 0);
  free(doc);
  free(doc2);
  pd_banlist_destroy(a);
  pd_banlist_destroy(b);
}

static void bans_bound_keeps_the_longest(void **state) {
  (void)state;
  pd_banlist_t *a = NULL, *b = NULL;
  assert_int_equal(pd_banlist_create(&a), 0);
  assert_int_equal(pd_banlist_create(&b), 0);
  /* 10 bans: 3 permanent, 7 ending at NOW + k days (k = 1..7, mixed order) */
  static const int days[10] = {3, 0, 7, 1, 0, 6, 2, 0, 5, 4};
  for (int i = 0; i < 10; i++) {
    char s[32];
    snprintf(s, sizeof s, "10.0.%d.1", i);
    add_ban(a, s, NOW, days[i] ? NOW + days[i] * DAY : 0, NULL);
  }
  size_t len = 0, n = 0;
  char *doc = enc_bans(a, NOW, 5, &len, &n);
  assert_int_equal(n, 5);
  assert_int_equal(pd_statestore_decode_bans(doc, len, NOW, b, NULL, NULL, 0), 0);
  assert_int_equal(pd_banlist_count(b), 5);
  /* kept: the permanent ones and those ending last (7 and 6 days), in the
   * list's order */
  static const int kept[5] = {1, 2, 4, 5, 7};
  for (int i = 0; i < 5; i++) {
    char s[32];
    snprintf(s, sizeof s, "10.0.%d.1", kept[i]);
    pd_subnet_t want = subnet(s);
    assert_memory_equal(pd_banlist_get(b, (size_t)i)->subnet.ip, want.ip, 16);
  }
  free(doc);
  pd_banlist_destroy(a);
  pd_banlist_destroy(b);
}

/* decode must fail with want and a message, leaving the list as it was. */
static void expect_bans_fail(const char *doc, size_t len, int want, const char *needle) {
  pd_banlist_t *bl = NULL;
  assert_int_equal(pd_banlist_create(&bl), 0);
  add_ban(bl, "9.9.9.9", NOW, 0, "before");
  char err[256];
  memset(err, 'x', sizeof err);
  int rc = pd_statestore_decode_bans(doc, len, NOW, bl, NULL, err, sizeof err);
  if (rc != want) print_error("decode gave %d (%s), want %d\n", rc, err, want);
  assert_int_equal(rc, want);
  assert_true(strlen(err) > 0 && strlen(err) < sizeof err);
  if (needle && !strstr(err, needle)) {
    print_error("message \"%s\" lacks \"%s\"\n", err, needle);
    fail();
  }
  assert_int_equal(pd_banlist_count(bl), 1);
  assert_string_equal(pd_banlist_get(bl, 0)->reason, "before");
  pd_banlist_destroy(bl);
}

static void bans_damaged_documents_fail_cleanly(void **state) {
  (void)state;
  expect_bans_fail("", 0, PD_ECORRUPT, "empty");
  expect_bans_fail("garbage {{{", 11, PD_ECORRUPT, "not valid JSON: line 1");
  expect_bans_fail("[]", 2, PD_ECORRUPT, "not an object");
  const char *d = "{\"format\":\"peerd-addrbook\",\"version\":1,\"saved_at\":1,\"bans\":[]}";
  expect_bans_fail(d, strlen(d), PD_EFORMAT, "format");
  d = "{\"format\":\"peerd-bans\",\"version\":2,\"saved_at\":1,\"bans\":[]}";
  expect_bans_fail(d, strlen(d), PD_EFORMAT, "version 2");
  d = "{\"format\":\"peerd-bans\",\"version\":\"1\",\"saved_at\":1,\"bans\":[]}";
  expect_bans_fail(d, strlen(d), PD_ECORRUPT, "version");
  d = "{\"format\":\"peerd-bans\",\"version\":1,\"bans\":[]}";
  expect_bans_fail(d, strlen(d), PD_ECORRUPT, "saved_at");
  d = "{\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1,\"bans\":{}}";
  expect_bans_fail(d, strlen(d), PD_ECORRUPT, "\"bans\"");
  d = "{\"format\":\"peerd-bans\",\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1,\"bans\":[]}";
  expect_bans_fail(d, strlen(d), PD_ECORRUPT, "duplicate");

  /* every truncation of a real document fails and changes nothing */
  pd_banlist_t *a = NULL;
  assert_int_equal(pd_banlist_create(&a), 0);
  add_ban(a, "198.51.0.0/16", NOW, 0, "one");
  add_ban(a, "203.0.113.7", NOW, NOW + DAY, "two");
  size_t len = 0, n = 0;
  char *doc = enc_bans(a, NOW, 0, &len, &n);
  for (size_t cut = 0; cut + 1 < len; cut++) { /* the last byte is the newline */
    expect_bans_fail(doc, cut, PD_ECORRUPT, NULL);
  }
  free(doc);
  pd_banlist_destroy(a);
}

static void bans_bad_items_are_skipped(void **state) {
  (void)state;
  const char *d =
      "{\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1,\"future\":true,\"bans\":[\n"
      "\"1.2.3.4\",\n"
      "{\"subnet\":\"1.2.3.0/33\",\"created\":1,\"until\":0},\n"
      "{\"subnet\":\"1.2.3.4\",\"created\":-1,\"until\":0},\n"
      "{\"subnet\":\"1.2.3.4\",\"created\":1,\"until\":\"never\"},\n"
      "{\"subnet\":\"1.2.3.4\",\"created\":1,\"until\":0,\"reason\":7},\n"
      "{\"subnet\":\"1.2.3.4\",\"created\":1,\"until\":99999999999999},\n"
      "{\"subnet\":\"5.6.7.8\",\"created\":1,\"until\":0,\"reason\":null},\n"
      "{\"subnet\":\"5.6.0.0/16\",\"created\":1,\"until\":1700086400,\"reason\":\"ok\"},\n"
      "{\"subnet\":\"5.7.0.0/16\",\"created\":1,\"until\":5,\"reason\":\"over\"}\n"
      "]}";
  pd_banlist_t *bl = NULL;
  assert_int_equal(pd_banlist_create(&bl), 0);
  pd_statestore_report_t rep;
  char err[256] = "";
  assert_int_equal(pd_statestore_decode_bans(d, strlen(d), NOW, bl, &rep, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_int_equal(rep.skipped, 6);
  assert_int_equal(rep.loaded, 2);
  assert_int_equal(rep.expired, 1);
  assert_string_equal(rep.first_skip, "ban 0: not an object");
  assert_int_equal(pd_banlist_count(bl), 2);
  assert_string_equal(pd_banlist_get(bl, 0)->reason, "");
  assert_string_equal(pd_banlist_get(bl, 1)->reason, "ok");
  /* a ban already in the list (the book's) is replaced by the file's */
  pd_banlist_clear(bl);
  add_ban(bl, "5.6.0.0/16", 1, 0, "from the book");
  assert_int_equal(pd_statestore_decode_bans(d, strlen(d), NOW, bl, &rep, NULL, 0), 0);
  assert_int_equal(pd_banlist_count(bl), 2);
  assert_string_equal(pd_banlist_get(bl, 0)->reason, "ok");
  pd_banlist_destroy(bl);
}

/* ---- reputation ---------------------------------------------------------- */

static pd_reputation_t *sample_table(size_t max) {
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, max, 3), 0);
  pd_netaddr_t a = ip("203.0.113.7:26656"), b = ip("[2001:db8::1]:1"), c = ip("198.51.100.9"),
               d = ip("192.0.2.1");
  assert_int_equal(pd_reputation_update(r, &a, -30, true, NOW), 0);
  assert_int_equal(pd_reputation_update(r, &a, -60, true, NOW + 5), 0);
  double v = 0;
  for (int i = 0; i < 7; i++) {
    v += 0.1; /* not a short decimal */
    assert_int_equal(pd_reputation_update(r, &b, v, false, NOW + 10 + i), 0);
  }
  assert_int_equal(pd_reputation_set_latency(r, &b, 42.5, NOW + 20), 0);
  assert_int_equal(pd_reputation_set_latency(r, &c, 1.0 / 3, NOW + 30), 0);
  assert_int_equal(pd_reputation_update(r, &d, -1e6, false, NOW + 40), 0);
  return r;
}

static void assert_same_table(const pd_reputation_t *x, const pd_reputation_t *y) {
  assert_int_equal(pd_reputation_count(x), pd_reputation_count(y));
  const pd_rep_record_t *p = pd_reputation_next(x, NULL), *q = pd_reputation_next(y, NULL);
  for (; p && q; p = pd_reputation_next(x, p), q = pd_reputation_next(y, q)) {
    assert_memory_equal(p->ip.ip, q->ip.ip, 16);
    assert_int_equal(q->ip.port, 0);
    assert_memory_equal(&p->reputation, &q->reputation, sizeof(double)); /* bit for bit */
    assert_int_equal(p->misbehaviours, q->misbehaviours);
    assert_int_equal(p->first_seen, q->first_seen);
    assert_int_equal(p->last_event_at, q->last_event_at);
    assert_memory_equal(&p->latency_ms, &q->latency_ms, sizeof(double));
  }
  assert_null(p);
  assert_null(q);
}

static void reputation_round_trip_is_exact(void **state) {
  (void)state;
  pd_reputation_t *a = sample_table(0), *b = NULL;
  assert_int_equal(pd_reputation_create(&b, 0, 99), 0);
  size_t len = 0, n = 0, len2 = 0, n2 = 0;
  char *doc = enc_rep(a, 0, &len, &n);
  assert_int_equal(n, 4);
  assert_non_null(strstr(doc, "\"columns\":[\"ip\",\"reputation\",\"misbehaviours\",\"first_seen\","
                              "\"last_event_at\",\"latency_ms\"]"));
  /* most recently touched first; integral values as integers */
  assert_non_null(strstr(doc, "\"records\":[\n[\"192.0.2.1\",-1000000,0,1700000040,1700000040,-1],\n"
                              "[\"198.51.100.9\",0,0,1700000030,0,0.33333333333333331],\n"));
  assert_non_null(strstr(doc, "[\"203.0.113.7\",-60,2,1700000000,1700000005,-1]\n]}\n"));

  pd_statestore_report_t rep;
  char err[256];
  assert_int_equal(pd_statestore_decode_reputation(doc, len, b, &rep, err, sizeof err), 0);
  assert_int_equal(rep.loaded, 4);
  assert_int_equal(rep.skipped, 0);
  assert_same_table(a, b);
  const pd_rep_record_t *g = pd_reputation_get(b, &(pd_netaddr_t){0});
  assert_null(g);
  pd_netaddr_t x = ip("203.0.113.7");
  g = pd_reputation_get(b, &x);
  assert_non_null(g);
  assert_int_equal(g->misbehaviours, 2); /* what the next ban's escalation counts */

  char *doc2 = enc_rep(b, 0, &len2, &n2);
  assert_int_equal(len, len2);
  assert_memory_equal(doc, doc2, len);

  /* into a smaller table: the most recent records stay */
  pd_reputation_t *small = NULL;
  assert_int_equal(pd_reputation_create(&small, 2, 5), 0);
  assert_int_equal(pd_statestore_decode_reputation(doc, len, small, NULL, NULL, 0), 0);
  assert_int_equal(pd_reputation_count(small), 2);
  x = ip("192.0.2.1");
  assert_non_null(pd_reputation_get(small, &x));
  x = ip("198.51.100.9");
  assert_non_null(pd_reputation_get(small, &x));

  /* an empty table */
  pd_reputation_t *e = NULL;
  assert_int_equal(pd_reputation_create(&e, 0, 5), 0);
  free(doc);
  doc = enc_rep(e, 0, &len, &n);
  assert_int_equal(n, 0);
  assert_non_null(strstr(doc, "\"records\":[]}\n"));
  assert_int_equal(pd_statestore_decode_reputation(doc, len, e, NULL, NULL, 0), 0);
  assert_int_equal(pd_reputation_count(e), 0);

  free(doc);
  free(doc2);
  pd_reputation_destroy(a);
  pd_reputation_destroy(b);
  pd_reputation_destroy(small);
  pd_reputation_destroy(e);
}

static pd_netaddr_t nth(int i) {
  char s[32];
  snprintf(s, sizeof s, "11.%d.%d.1", i / 250, i % 250);
  return ip(s);
}

static void reputation_bound_keeps_what_matters(void **state) {
  (void)state;
  /* 100 records, touched in index order (99 the most recent): i % 10 == 0
   * misbehaved (10), i % 10 in 1..3 negative (30), 4..6 positive (30),
   * 7..9 neutral (30) */
  pd_reputation_t *r = NULL, *b = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  for (int i = 0; i < 100; i++) {
    pd_netaddr_t a = nth(i);
    int k = i % 10;
    double v = k == 0 ? -30 : k <= 3 ? -1 : k <= 6 ? 2 : 0;
    assert_int_equal(pd_reputation_update(r, &a, v, k == 0, NOW + i), 0);
  }
  size_t len = 0, n = 0;
  char *doc = enc_rep(r, 50, &len, &n);
  assert_int_equal(n, 50);
  assert_int_equal(pd_reputation_create(&b, 0, 2), 0);
  assert_int_equal(pd_statestore_decode_reputation(doc, len, b, NULL, NULL, 0), 0);
  assert_int_equal(pd_reputation_count(b), 50);
  int kept[4] = {0, 0, 0, 0};
  for (int i = 0; i < 100; i++) {
    pd_netaddr_t a = nth(i);
    int k = i % 10, c = k == 0 ? 0 : k <= 3 ? 1 : k <= 6 ? 2 : 3;
    bool in = pd_reputation_get(b, &a) != NULL;
    kept[c] += in;
    /* positive: only the 10 most recently touched (96 down to 66) */
    if (c == 2) assert_true(in == (i >= 66));
  }
  assert_int_equal(kept[0], 10); /* every misbehaver */
  assert_int_equal(kept[1], 30); /* every negative record */
  assert_int_equal(kept[2], 10);
  assert_int_equal(kept[3], 0); /* neutral ones go first */
  /* the kept records keep their relative touch order */
  int last = 1000;
  for (const pd_rep_record_t *p = pd_reputation_next(b, NULL); p; p = pd_reputation_next(b, p)) {
    int i = (int)(p->last_event_at - NOW);
    assert_true(i < last);
    last = i;
  }
  free(doc);
  pd_reputation_destroy(r);
  pd_reputation_destroy(b);
}

static void expect_rep_fail(const char *doc, size_t len, int want, const char *needle) {
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  pd_netaddr_t a = ip("9.9.9.9");
  assert_int_equal(pd_reputation_update(r, &a, 7, false, NOW), 0);
  char err[256];
  memset(err, 'x', sizeof err);
  int rc = pd_statestore_decode_reputation(doc, len, r, NULL, err, sizeof err);
  if (rc != want) print_error("decode gave %d (%s), want %d\n", rc, err, want);
  assert_int_equal(rc, want);
  assert_true(strlen(err) > 0 && strlen(err) < sizeof err);
  if (needle && !strstr(err, needle)) {
    print_error("message \"%s\" lacks \"%s\"\n", err, needle);
    fail();
  }
  assert_int_equal(pd_reputation_count(r), 1);
  assert_true(pd_reputation_get(r, &a)->reputation == 7);
  pd_reputation_destroy(r);
}

#define REP_HEAD "{\"format\":\"peerd-reputation\",\"version\":1,\"saved_at\":1,"
#define REP_COLS                                                                            \
  "\"columns\":[\"ip\",\"reputation\",\"misbehaviours\",\"first_seen\",\"last_event_at\"," \
  "\"latency_ms\"],"

static void reputation_damaged_documents_fail_cleanly(void **state) {
  (void)state;
  expect_rep_fail("", 0, PD_ECORRUPT, "empty");
  expect_rep_fail("{\"format\":", 11, PD_ECORRUPT, "not valid JSON");
  const char *d = "{\"format\":\"peerd-bans\",\"version\":1,\"saved_at\":1,\"records\":[]}";
  expect_rep_fail(d, strlen(d), PD_EFORMAT, "peerd-reputation");
  d = "{\"format\":\"peerd-reputation\",\"version\":0,\"saved_at\":1,\"records\":[]}";
  expect_rep_fail(d, strlen(d), PD_EFORMAT, "version 0");
  d = REP_HEAD "\"records\":[]}";
  expect_rep_fail(d, strlen(d), PD_ECORRUPT, "columns");
  d = REP_HEAD "\"columns\":[\"ip\",1],\"records\":[]}";
  expect_rep_fail(d, strlen(d), PD_ECORRUPT, "columns[1]");
  d = REP_HEAD "\"columns\":[\"ip\",\"reputation\",\"first_seen\",\"last_event_at\"],\"records\":[]}";
  expect_rep_fail(d, strlen(d), PD_EFORMAT, "\"misbehaviours\" missing");
  d = REP_HEAD REP_COLS "\"records\":null}";
  expect_rep_fail(d, strlen(d), PD_ECORRUPT, "records");

  pd_reputation_t *a = sample_table(0);
  size_t len = 0, n = 0;
  char *doc = enc_rep(a, 0, &len, &n);
  for (size_t cut = 0; cut + 1 < len; cut++) expect_rep_fail(doc, cut, PD_ECORRUPT, NULL);
  free(doc);
  pd_reputation_destroy(a);
}

static void reputation_bad_rows_are_skipped(void **state) {
  (void)state;
  const char *d = REP_HEAD REP_COLS "\"records\":[\n"
                  "[\"1.1.1.1\",1,0,1,1,-1],\n"                  /* 0 ok */
                  "[\"1.1.1.2:80\",1,0,1,1,-1],\n"               /* 1 port */
                  "[\"not-an-ip\",1,0,1,1,-1],\n"                /* 2 */
                  "[\"1.1.1.3\",\"1\",0,1,1,-1],\n"              /* 3 */
                  "[\"1.1.1.4\",2e6,0,1,1,-1],\n"                /* 4 */
                  "[\"1.1.1.5\",1,-1,1,1,-1],\n"                 /* 5 */
                  "[\"1.1.1.6\",1,0,-5,1,-1],\n"                 /* 6 */
                  "[\"1.1.1.7\",1,0,1,1099511627777,-1],\n"     /* 7 */
                  "[\"1.1.1.8\",1,0,1,1],\n"                     /* 8 short */
                  "{\"ip\":\"1.1.1.9\"},\n"                      /* 9 */
                  "[\"1.1.1.10\",1,0,1,1,null],\n"               /* 10 */
                  "[\"2001:db8::7\",-2.5,3,1,2,-7]\n"            /* 11 ok */
                  "]}";
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  pd_statestore_report_t rep;
  assert_int_equal(pd_statestore_decode_reputation(d, strlen(d), r, &rep, NULL, 0), 0);
  assert_int_equal(rep.loaded, 2);
  assert_int_equal(rep.skipped, 10);
  /* rows are read from the last: the first skip reported is row 10 */
  assert_string_equal(rep.first_skip, "record 10: latency_ms is not a number");
  pd_netaddr_t a = ip("2001:db8::7");
  const pd_rep_record_t *g = pd_reputation_get(r, &a);
  assert_non_null(g);
  assert_true(g->reputation == -2.5);
  assert_int_equal(g->misbehaviours, 3);
  assert_true(g->latency_ms == -1); /* any negative latency is "unknown" */
  pd_reputation_destroy(r);
}

static void reputation_columns_by_name(void **state) {
  (void)state;
  /* another order, an unknown column, no latency */
  const char *d = REP_HEAD
      "\"columns\":[\"last_event_at\",\"future\",\"ip\",\"misbehaviours\",\"reputation\","
      "\"first_seen\"],\"records\":[[1700000005,\"x\",\"203.0.113.7\",1,-30,1700000000]]}";
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  assert_int_equal(pd_statestore_decode_reputation(d, strlen(d), r, NULL, NULL, 0), 0);
  pd_netaddr_t a = ip("203.0.113.7");
  const pd_rep_record_t *g = pd_reputation_get(r, &a);
  assert_non_null(g);
  assert_true(g->reputation == -30);
  assert_int_equal(g->misbehaviours, 1);
  assert_int_equal(g->first_seen, 1700000000);
  assert_int_equal(g->last_event_at, 1700000005);
  assert_true(g->latency_ms < 0);
  pd_reputation_destroy(r);
}

/* ---- sizes at the bounds --------------------------------------------------- */

/* The largest documents the bounds allow stay under the daemon's read caps
 * (PD_DAEMON_MAX_BANS_FILE 128 MiB, PD_DAEMON_MAX_REPUTATION_FILE 16 MiB),
 * so peerd never refuses a file it wrote itself. Measured on 1,000 worst
 * cases and scaled to the bound; the figures are printed (docs/persistence.md). */
static void worst_case_sizes_fit_the_read_caps(void **state) {
  (void)state;
  enum { N = 1000 };
  pd_banlist_t *bl = NULL;
  assert_int_equal(pd_banlist_create(&bl), 0);
  char reason[PD_BAN_REASON_MAX];
  memset(reason, 0x01, sizeof reason - 1); /* control characters: 6 bytes each escaped */
  reason[sizeof reason - 1] = '\0';
  for (int i = 0; i < N; i++) {
    char s[64];
    snprintf(s, sizeof s, "2001:db8:%x:%x:ffff:ffff:ffff:0/112", i / 256 + 0x1000, i % 256 + 0x1000);
    add_ban(bl, s, MAX_TIME_FILE, MAX_TIME_FILE, reason);
  }
  size_t blen = 0, n = 0;
  char *doc = enc_bans(bl, 0, 0, &blen, &n);
  assert_int_equal(n, N);
  double per_ban = (double)blen / N;
  double at_bound = per_ban * PD_STATESTORE_MAX_BANS;
  print_message("# bans.json: %.0f bytes per ban at worst (IPv6 /112, reason of 95 control "
                "characters), %.1f MiB at the bound of %d bans (read cap 128 MiB)\n",
                per_ban, at_bound / 1048576, PD_STATESTORE_MAX_BANS);
  assert_true(at_bound < 128.0 * 1048576);
  free(doc);
  pd_banlist_destroy(bl);

  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  for (int i = 0; i < N; i++) {
    pd_rep_record_t rec;
    memset(&rec, 0, sizeof rec);
    char s[64];
    snprintf(s, sizeof s, "2001:db8:%x:%x:ffff:ffff:ffff:ffff", i / 256 + 0x1000, i % 256 + 0x1000);
    rec.ip = ip(s);
    rec.reputation = -PD_REP_LIMIT / 3; /* 17 significant digits */
    rec.misbehaviours = INT32_MAX;
    rec.first_seen = rec.last_event_at = MAX_TIME_FILE;
    rec.latency_ms = 1e300 / 7;
    assert_int_equal(pd_reputation_restore(r, &rec), 0);
  }
  size_t rlen = 0;
  doc = enc_rep(r, 0, &rlen, &n);
  assert_int_equal(n, N);
  double per_rec = (double)rlen / N;
  at_bound = per_rec * PD_STATESTORE_MAX_RECORDS;
  print_message("# reputation.json: %.0f bytes per record at worst (full IPv6, 17-digit values), "
                "%.1f MiB at the bound of %d records (read cap 16 MiB)\n",
                per_rec, at_bound / 1048576, PD_STATESTORE_MAX_RECORDS);
  assert_true(at_bound < 16.0 * 1048576);
  free(doc);
  pd_reputation_destroy(r);
}

/* ---- the book's bans (migration) ------------------------------------------ */

static void old_book_hands_its_bans_over(void **state) {
  (void)state;
  /* A book as peerd wrote it before bans.json existed: bans inside. */
  const char *old =
      "{\"format\":\"peerd-addrbook\",\"version\":1,\"saved_at\":1700000002,"
      "\"key\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
      "\"last_good\":1,\n\"columns\":[\"addr\",\"id\",\"source\",\"time\",\"last_try\","
      "\"last_success\",\"last_count_attempt\",\"attempts\",\"tried\",\"new_slots\"],\n"
      "\"entries\":[\n\"62.1.7.7:26656 - 5.6.7.8 1700000000 0 0 0 0 0 -\"\n],\n"
      "\"collisions\":[],\n\"bans\":[\n"
      "{\"subnet\":\"198.51.0.0/16\",\"created\":1700000000,\"until\":0,\"reason\":\"permanent\"},\n"
      "{\"subnet\":\"62.1.7.7\",\"created\":1700000000,\"until\":1700172800,\"reason\":\"misbehaved\"}\n"
      "]}\n";
  pd_rng_t rng;
  pd_rng_seed(&rng, 1);
  pd_book_t *b = NULL;
  pd_bookstore_report_t rep;
  char err[256];
  assert_int_equal(pd_bookstore_decode(old, strlen(old), &rng, 0, &b, &rep, err, sizeof err), 0);
  assert_int_equal(rep.entries_loaded, 1);
  assert_int_equal(rep.bans_loaded, 2);
  const pd_banlist_t *bl = pd_book_bans_const(b);
  assert_int_equal(pd_banlist_count(bl), 2);

  /* The next save: bans.json holds them, the book no longer does. */
  size_t blen = 0, n = 0, len = 0;
  char *bans = enc_bans(bl, NOW, 0, &blen, &n);
  assert_int_equal(n, 2);
  assert_non_null(strstr(bans, "{\"subnet\":\"198.51.0.0/16\",\"created\":1700000000,\"until\":0,"
                               "\"reason\":\"permanent\"}"));
  char *book = NULL;
  assert_int_equal(pd_bookstore_encode_ex(b, NOW, PD_BOOKSTORE_NO_BANS, &book, &len), 0);
  assert_non_null(strstr(book, "\"bans\":[]}\n"));
  assert_null(strstr(book, "198.51.0.0"));
  /* the new book and bans.json together give the same state back */
  pd_book_t *b2 = NULL;
  assert_int_equal(pd_bookstore_decode(book, len, &rng, 0, &b2, &rep, NULL, 0), 0);
  assert_int_equal(rep.bans_loaded, 0);
  assert_int_equal(pd_book_size(b2), 1);
  pd_statestore_report_t srep;
  assert_int_equal(pd_statestore_decode_bans(bans, blen, NOW, pd_book_bans(b2), &srep, NULL, 0), 0);
  assert_int_equal(srep.loaded, 2);
  for (size_t i = 0; i < 2; i++)
    assert_same_ban(pd_banlist_get(bl, i), pd_banlist_get(pd_book_bans_const(b2), i));
  /* pd_bookstore_encode (flags 0, the lab's) still writes the bans */
  char *withbans = NULL;
  assert_int_equal(pd_bookstore_encode(b, NOW, &withbans, &len), 0);
  assert_non_null(strstr(withbans, "198.51.0.0/16"));
  free(withbans);
  free(bans);
  free(book);
  pd_book_destroy(b);
  pd_book_destroy(b2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bans_round_trip_is_byte_exact),
      cmocka_unit_test(bans_bound_keeps_the_longest),
      cmocka_unit_test(bans_damaged_documents_fail_cleanly),
      cmocka_unit_test(bans_bad_items_are_skipped),
      cmocka_unit_test(reputation_round_trip_is_exact),
      cmocka_unit_test(reputation_bound_keeps_what_matters),
      cmocka_unit_test(reputation_damaged_documents_fail_cleanly),
      cmocka_unit_test(reputation_bad_rows_are_skipped),
      cmocka_unit_test(reputation_columns_by_name),
      cmocka_unit_test(worst_case_sizes_fit_the_read_caps),
      cmocka_unit_test(old_book_hands_its_bans_over),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
