/* Unit tests for dhttable: adding up to k, the replacement cache and
 * ping-before-evict, refreshes and record/endpoint updates by seq, the
 * built-in subnet limits and custom admit hooks (and the counts they see),
 * revalidation (two failures remove, picks are seeded and skip nodes with a
 * ping out), closest against a brute-force sort, and a seeded random run with
 * the table's invariant check after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dhttable.h"
#include "err.h"
#include "netaddr.h"
#include "rng.h"

#define T0 1700000000000LL
#define RECLEN 130

static const uint8_t SELF[PD_DHTT_ID_LEN] = {0x5a, 0xc3, 0x10, 0x77, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                             0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10};

/* An id at log2 distance d (1..160) from SELF: flip bit 160 - d (msb of
 * byte 0 first), then XOR `salt` into the bits below it (salt < 2^(d-1)
 * keeps the distance). */
static void mkid(uint8_t id[PD_DHTT_ID_LEN], unsigned d, uint32_t salt) {
  memcpy(id, SELF, PD_DHTT_ID_LEN);
  unsigned p = PD_DHTT_BUCKETS - d;
  id[p / 8] ^= (uint8_t)(0x80u >> (p % 8));
  for (unsigned i = 0; i < 4; i++) {
    unsigned j = PD_DHTT_ID_LEN - 1 - i;
    uint8_t mask = j * 8 > p ? 0xff : j == p / 8 ? (uint8_t)(0xffu >> (p % 8 + 1)) : 0;
    id[j] ^= (uint8_t)((salt >> (8 * i)) & mask);
  }
}

static pd_netaddr_t addr(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(s, 0, &a, NULL, NULL, NULL), 0);
  return a;
}

static void blob(uint8_t *rec, size_t len, uint32_t tag) {
  for (size_t i = 0; i < len; i++) {
    rec[i] = (uint8_t)(tag * 31u + i * 7u);
  }
}

typedef struct seen_out {
  int rc;
  bool ping;
  uint8_t ping_id[PD_DHTT_ID_LEN];
} seen_out_t;

/* Offer id from ep with a 130-byte record tagged `tag` at seq. */
static seen_out_t offer(pd_dht_table_t *t, const uint8_t *id, const char *ep, uint64_t seq, uint32_t tag,
                        int64_t now, pd_dht_admit_fn admit, void *ctx) {
  seen_out_t o;
  memset(&o, 0, sizeof o);
  uint8_t rec[RECLEN];
  blob(rec, sizeof rec, tag);
  pd_netaddr_t a = addr(ep);
  o.rc = pd_dht_table_seen(t, id, &a, rec, sizeof rec, seq, now, admit, ctx, o.ping_id, &o.ping);
  assert_int_equal(pd_dht_table_check(t), 0);
  return o;
}

/* Node i of bucket 160 on its own /24 (5.6.i.1). */
static seen_out_t offer160(pd_dht_table_t *t, uint32_t i, int64_t now) {
  uint8_t id[PD_DHTT_ID_LEN];
  char ep[64];
  mkid(id, 160, i);
  snprintf(ep, sizeof ep, "5.6.%u.1:30303", i);
  return offer(t, id, ep, 1, i, now, NULL, NULL);
}

static void assert_id(const uint8_t *got, unsigned d, uint32_t salt) {
  uint8_t want[PD_DHTT_ID_LEN];
  mkid(want, d, salt);
  assert_memory_equal(got, want, PD_DHTT_ID_LEN);
}

static void test_ids_and_distance(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  assert_non_null(t);
  assert_int_equal(pd_dht_table_k(t), PD_DHTT_K);
  assert_memory_equal(pd_dht_table_self(t), SELF, PD_DHTT_ID_LEN);
  /* each chosen distance lands in its bucket */
  const unsigned ds[] = {1, 2, 8, 9, 17, 100, 152, 153, 159, 160};
  for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    uint8_t id[PD_DHTT_ID_LEN];
    char ep[64];
    mkid(id, ds[i], 0);
    snprintf(ep, sizeof ep, "5.%zu.1.1:1", i + 1);
    assert_int_equal(offer(t, id, ep, 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
    size_t n = 0;
    const pd_dht_entry_t *b = pd_dht_table_bucket(t, ds[i], &n);
    assert_int_equal(n, 1);
    assert_memory_equal(b[0].id, id, PD_DHTT_ID_LEN);
    assert_ptr_equal(pd_dht_table_find(t, id), &b[0]);
  }
  assert_int_equal(pd_dht_table_size(t), 10);
  /* this node's own id, bad arguments, out-of-range buckets */
  uint8_t rec[RECLEN] = {0};
  pd_netaddr_t a = addr("1.2.3.4:1");
  bool ps = true;
  assert_int_equal(pd_dht_table_seen(t, SELF, &a, rec, sizeof rec, 1, T0, NULL, NULL, NULL, &ps),
                   PD_DHTT_REFUSED);
  assert_false(ps);
  uint8_t id[PD_DHTT_ID_LEN];
  mkid(id, 50, 0);
  assert_int_equal(pd_dht_table_seen(t, id, &a, rec, 0, 1, T0, NULL, NULL, NULL, NULL), PD_EINVAL);
  assert_int_equal(pd_dht_table_seen(t, id, &a, rec, 513, 1, T0, NULL, NULL, NULL, NULL), PD_EINVAL);
  assert_int_equal(pd_dht_table_seen(t, id, NULL, rec, 130, 1, T0, NULL, NULL, NULL, NULL), PD_EINVAL);
  size_t n = 7;
  assert_null(pd_dht_table_bucket(t, 0, &n));
  assert_int_equal(n, 0);
  assert_null(pd_dht_table_bucket(t, 161, &n));
  assert_null(pd_dht_table_bucket(t, 50, &n));
  assert_null(pd_dht_table_find(t, id));
  assert_int_equal(pd_dht_table_ping_result(t, id, true, T0, NULL, NULL), PD_ENOENT);
  assert_int_equal(pd_dht_table_remove(t, id), 0);
  assert_int_equal(pd_dht_table_size(t), 10);
  assert_null(pd_dht_table_new(SELF, 257, 0));
  pd_dht_table_free(t);
}

/* k nodes enter; the k+1th is cached and the LRS is named for a ping; an
 * answered ping keeps the LRS (now most recent) and the newcomer waits. */
static void test_full_bucket_ping_ok(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  for (uint32_t i = 0; i < PD_DHTT_K; i++) {
    seen_out_t o = offer160(t, i, T0 + i);
    assert_int_equal(o.rc, PD_DHTT_ADDED);
    assert_false(o.ping);
  }
  seen_out_t o = offer160(t, 100, T0 + 100);
  assert_int_equal(o.rc, PD_DHTT_CACHED);
  assert_true(o.ping);
  assert_id(o.ping_id, 160, 0);
  size_t n;
  const pd_dht_entry_t *b = pd_dht_table_bucket(t, 160, &n);
  assert_int_equal(n, PD_DHTT_K);
  assert_true(b[0].pinging);
  /* a second newcomer: cached, no second ping while one is out */
  o = offer160(t, 101, T0 + 101);
  assert_int_equal(o.rc, PD_DHTT_CACHED);
  assert_false(o.ping);
  assert_int_equal(pd_dht_table_size(t), PD_DHTT_K);
  assert_int_equal(pd_dht_table_cached(t), 2);
  const pd_dht_entry_t *rc = pd_dht_table_replacements(t, 160, &n);
  assert_int_equal(n, 2);
  assert_id(rc[0].id, 160, 101); /* newest first */
  assert_id(rc[1].id, 160, 100);
  /* the ping is answered: node 0 stays and becomes most recently seen */
  uint8_t id0[PD_DHTT_ID_LEN];
  mkid(id0, 160, 0);
  assert_int_equal(pd_dht_table_ping_result(t, id0, true, T0 + 200, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_check(t), 0);
  b = pd_dht_table_bucket(t, 160, &n);
  assert_int_equal(n, PD_DHTT_K);
  assert_id(b[n - 1].id, 160, 0);
  assert_false(b[n - 1].pinging);
  assert_int_equal(b[n - 1].seen_ms, T0 + 200);
  assert_id(b[0].id, 160, 1);
  assert_int_equal(pd_dht_table_cached(t), 2);
  assert_null(pd_dht_table_find(t, rc[0].id)); /* caches are not searched by find */
  /* the next newcomer names the new LRS, node 1 */
  o = offer160(t, 102, T0 + 300);
  assert_int_equal(o.rc, PD_DHTT_CACHED);
  assert_true(o.ping);
  assert_id(o.ping_id, 160, 1);
  pd_dht_table_free(t);
}

/* Ping-before-evict: however many newcomers arrive, the bucket's nodes stay
 * until a ping fails; then the newest replacement takes the LRS's place. */
static void test_full_bucket_ping_fail(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  for (uint32_t i = 0; i < PD_DHTT_K; i++) {
    assert_int_equal(offer160(t, i, T0 + i).rc, PD_DHTT_ADDED);
  }
  for (uint32_t i = 100; i < 130; i++) {
    assert_int_equal(offer160(t, i, T0 + i).rc, PD_DHTT_CACHED);
  }
  size_t n;
  const pd_dht_entry_t *b = pd_dht_table_bucket(t, 160, &n);
  assert_int_equal(n, PD_DHTT_K);
  for (uint32_t i = 0; i < PD_DHTT_K; i++) {
    assert_id(b[i].id, 160, i); /* nothing replaced without a failed ping */
  }
  assert_int_equal(pd_dht_table_cached(t), PD_DHTT_REPL);
  uint8_t id0[PD_DHTT_ID_LEN];
  mkid(id0, 160, 0);
  assert_int_equal(pd_dht_table_ping_result(t, id0, false, T0 + 500, NULL, NULL), 1);
  assert_int_equal(pd_dht_table_check(t), 0);
  assert_null(pd_dht_table_find(t, id0));
  b = pd_dht_table_bucket(t, 160, &n);
  assert_int_equal(n, PD_DHTT_K);
  assert_id(b[n - 1].id, 160, 129); /* the newest replacement, most recent end */
  assert_int_equal(b[n - 1].added_ms, T0 + 500);
  assert_int_equal(b[n - 1].fails, 0);
  assert_id(b[0].id, 160, 1);
  assert_int_equal(pd_dht_table_cached(t), PD_DHTT_REPL - 1);
  const pd_dht_entry_t *rc = pd_dht_table_replacements(t, 160, &n);
  assert_id(rc[0].id, 160, 128);
  assert_int_equal(pd_dht_table_ping_result(t, id0, false, T0, NULL, NULL), PD_ENOENT);
  pd_dht_table_free(t);
}

/* The cache keeps the newest `repl`; a cached node offered again moves to the
 * newest place; remove takes from bucket or cache without promoting. */
static void test_cache_capacity(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 2, 3);
  assert_int_equal(offer160(t, 0, T0).rc, PD_DHTT_ADDED);
  assert_int_equal(offer160(t, 1, T0).rc, PD_DHTT_ADDED);
  for (uint32_t i = 10; i < 15; i++) {
    assert_int_equal(offer160(t, i, T0 + i).rc, PD_DHTT_CACHED);
  }
  size_t n;
  const pd_dht_entry_t *rc = pd_dht_table_replacements(t, 160, &n);
  assert_int_equal(n, 3);
  assert_id(rc[0].id, 160, 14);
  assert_id(rc[1].id, 160, 13);
  assert_id(rc[2].id, 160, 12); /* 10 and 11 dropped, oldest first */
  assert_int_equal(pd_dht_table_cached(t), 3);
  /* 12 answers again: newest, keeping its added_ms */
  assert_int_equal(offer160(t, 12, T0 + 50).rc, PD_DHTT_CACHED);
  rc = pd_dht_table_replacements(t, 160, &n);
  assert_int_equal(n, 3);
  assert_id(rc[0].id, 160, 12);
  assert_int_equal(rc[0].added_ms, T0 + 12);
  assert_int_equal(rc[0].seen_ms, T0 + 50);
  assert_id(rc[1].id, 160, 14);
  assert_id(rc[2].id, 160, 13);
  /* remove: a cache entry, then a bucket node (no promotion) */
  uint8_t id[PD_DHTT_ID_LEN];
  mkid(id, 160, 14);
  assert_int_equal(pd_dht_table_remove(t, id), 1);
  assert_int_equal(pd_dht_table_remove(t, id), 0);
  mkid(id, 160, 0);
  assert_int_equal(pd_dht_table_remove(t, id), 1);
  assert_int_equal(pd_dht_table_check(t), 0);
  assert_int_equal(pd_dht_table_size(t), 1);
  assert_int_equal(pd_dht_table_cached(t), 2);
  /* with room in the bucket, a cached node answering again enters it */
  assert_int_equal(offer160(t, 13, T0 + 60).rc, PD_DHTT_ADDED);
  assert_int_equal(pd_dht_table_cached(t), 1);
  pd_dht_table_free(t);
}

/* A known node answering again moves to the end; a higher seq replaces the
 * record and the endpoint; an equal or lower one changes neither. */
static void test_refresh_and_records(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  uint8_t a[PD_DHTT_ID_LEN], b[PD_DHTT_ID_LEN], c[PD_DHTT_ID_LEN];
  mkid(a, 155, 1);
  mkid(b, 155, 2);
  mkid(c, 155, 3);
  assert_int_equal(offer(t, a, "5.6.1.1:1", 5, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, b, "5.6.2.1:1", 5, 2, T0 + 1, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, c, "5.6.3.1:1", 5, 3, T0 + 2, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, a, "5.6.1.1:1", 5, 1, T0 + 10, NULL, NULL).rc, PD_DHTT_REFRESHED);
  size_t n;
  const pd_dht_entry_t *bk = pd_dht_table_bucket(t, 155, &n);
  assert_int_equal(n, 3);
  assert_memory_equal(bk[0].id, b, PD_DHTT_ID_LEN);
  assert_memory_equal(bk[2].id, a, PD_DHTT_ID_LEN);
  assert_int_equal(bk[2].seen_ms, T0 + 10);
  assert_int_equal(bk[2].added_ms, T0);

  /* higher seq, longer record, new endpoint: all taken */
  uint8_t rec[300];
  blob(rec, sizeof rec, 77);
  pd_netaddr_t ep2 = addr("5.6.9.9:2");
  assert_int_equal(pd_dht_table_seen(t, a, &ep2, rec, sizeof rec, 6, T0 + 20, NULL, NULL, NULL, NULL),
                   PD_DHTT_REFRESHED);
  const pd_dht_entry_t *e = pd_dht_table_find(t, a);
  assert_int_equal(e->seq, 6);
  assert_int_equal(e->rec_len, sizeof rec);
  assert_memory_equal(e->rec, rec, sizeof rec);
  assert_true(pd_netaddr_equal(&e->ep, &ep2));
  /* lower seq from elsewhere: refreshed, nothing else changes */
  assert_int_equal(offer(t, a, "5.6.1.1:1", 4, 9, T0 + 30, NULL, NULL).rc, PD_DHTT_REFRESHED);
  e = pd_dht_table_find(t, a);
  assert_int_equal(e->seq, 6);
  assert_int_equal(e->rec_len, sizeof rec);
  assert_memory_equal(e->rec, rec, sizeof rec);
  assert_true(pd_netaddr_equal(&e->ep, &ep2));
  assert_int_equal(e->seen_ms, T0 + 30);
  /* the same seq from another endpoint: the endpoint stays */
  assert_int_equal(offer(t, b, "5.6.2.2:7", 5, 2, T0 + 40, NULL, NULL).rc, PD_DHTT_REFRESHED);
  e = pd_dht_table_find(t, b);
  pd_netaddr_t epb = addr("5.6.2.1:1");
  assert_true(pd_netaddr_equal(&e->ep, &epb));
  uint8_t want[RECLEN];
  blob(want, sizeof want, 2);
  assert_int_equal(e->rec_len, RECLEN);
  assert_memory_equal(e->rec, want, RECLEN);
  /* a refresh clears the failure count */
  assert_int_equal(pd_dht_table_ping_result(t, c, false, T0 + 50, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_find(t, c)->fails, 1);
  assert_int_equal(offer(t, c, "5.6.3.1:1", 5, 3, T0 + 60, NULL, NULL).rc, PD_DHTT_REFRESHED);
  assert_int_equal(pd_dht_table_find(t, c)->fails, 0);
  pd_dht_table_free(t);
}

/* A cached node offered with a higher seq takes the new record; a lower seq
 * keeps the cached one (and its endpoint). */
static void test_cached_record_seq(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 1, 0);
  uint8_t a[PD_DHTT_ID_LEN], b[PD_DHTT_ID_LEN];
  mkid(a, 160, 1);
  mkid(b, 160, 2);
  assert_int_equal(offer(t, a, "5.6.1.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, b, "5.6.2.1:1", 5, 2, T0, NULL, NULL).rc, PD_DHTT_CACHED);
  assert_int_equal(offer(t, b, "5.6.2.9:9", 3, 3, T0 + 1, NULL, NULL).rc, PD_DHTT_CACHED);
  size_t n;
  const pd_dht_entry_t *rc = pd_dht_table_replacements(t, 160, &n);
  pd_netaddr_t ep = addr("5.6.2.1:1");
  uint8_t want[RECLEN];
  blob(want, sizeof want, 2);
  assert_int_equal(rc[0].seq, 5);
  assert_true(pd_netaddr_equal(&rc[0].ep, &ep));
  assert_memory_equal(rc[0].rec, want, RECLEN);
  assert_int_equal(offer(t, b, "5.6.2.9:9", 6, 4, T0 + 2, NULL, NULL).rc, PD_DHTT_CACHED);
  rc = pd_dht_table_replacements(t, 160, &n);
  ep = addr("5.6.2.9:9");
  blob(want, sizeof want, 4);
  assert_int_equal(rc[0].seq, 6);
  assert_true(pd_netaddr_equal(&rc[0].ep, &ep));
  assert_memory_equal(rc[0].rec, want, RECLEN);
  pd_dht_table_free(t);
}

static void test_same_subnet(void **state) {
  (void)state;
  pd_netaddr_t a = addr("1.2.3.4:1"), b = addr("1.2.3.200:2"), c = addr("1.2.4.4:1");
  assert_true(pd_dht_same_subnet(&a, &b));
  assert_false(pd_dht_same_subnet(&a, &c));
  pd_netaddr_t x = addr("[2a01:4f8:1:1::1]:1"), y = addr("[2a01:4f8:1:ffff::2]:1"), z = addr("[2a01:4f8:2::1]:1");
  assert_true(pd_dht_same_subnet(&x, &y));
  assert_false(pd_dht_same_subnet(&x, &z));
  pd_netaddr_t v6zero = addr("[::5]:1"); /* shares ::/48 with the IPv4-mapped form */
  assert_false(pd_dht_same_subnet(&a, &v6zero));
}

/* The default rule: 2 per /24 (/48) in a bucket, 10 in the table, unroutable
 * addresses exempt. */
static void test_default_ip_limits(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  uint8_t id[PD_DHTT_ID_LEN];
  char ep[64];
  mkid(id, 160, 1);
  assert_int_equal(offer(t, id, "1.2.3.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  mkid(id, 160, 2);
  assert_int_equal(offer(t, id, "1.2.3.2:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  mkid(id, 160, 3);
  assert_int_equal(offer(t, id, "1.2.3.3:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_REFUSED);
  assert_int_equal(offer(t, id, "1.2.4.3:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  /* 8 more of 1.2.3.0/24 in buckets 159..156: 10 in the table */
  for (unsigned d = 159; d >= 156; d--) {
    for (uint32_t s = 1; s <= 2; s++) {
      mkid(id, d, s);
      snprintf(ep, sizeof ep, "1.2.3.%u:1", d * 2 + s - 300);
      assert_int_equal(offer(t, id, ep, 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
    }
  }
  mkid(id, 155, 1);
  assert_int_equal(offer(t, id, "1.2.3.99:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_REFUSED); /* the 11th */
  assert_null(pd_dht_table_find(t, id));
  assert_int_equal(offer(t, id, "1.2.5.99:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  /* IPv6 by /48 */
  mkid(id, 150, 1);
  assert_int_equal(offer(t, id, "[2a01:4f8:1::1]:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  mkid(id, 150, 2);
  assert_int_equal(offer(t, id, "[2a01:4f8:1:2::1]:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  mkid(id, 150, 3);
  assert_int_equal(offer(t, id, "[2a01:4f8:1:3::1]:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_REFUSED);
  assert_int_equal(offer(t, id, "[2a01:4f8:2::1]:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  /* loopback and RFC1918: no limits */
  for (uint32_t s = 1; s <= 12; s++) {
    mkid(id, 140, s);
    assert_int_equal(offer(t, id, "127.0.0.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
    mkid(id, 139, s);
    snprintf(ep, sizeof ep, "10.0.0.%u:1", s);
    assert_int_equal(offer(t, id, ep, 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  }
  pd_dht_table_free(t);
}

typedef struct hook {
  int answer;           /* 0 refuse, 1 allow, 2 default rule */
  unsigned calls;
  pd_dht_admit_info_t last;
  pd_dht_entry_t last_node;
} hook_t;

static bool hook_fn(void *ctx, const pd_dht_admit_info_t *info) {
  hook_t *h = ctx;
  h->calls++;
  h->last = *info;
  h->last_node = *info->node;
  return h->answer == 2 ? pd_dht_admit_default(info) : h->answer == 1;
}

/* A hook changes the outcome (refuse all, no limits), and sees correct
 * counts: bucket nodes only, never cache entries. */
/* A bucket node that moves (higher seq, new endpoint) into a /24 that
 * already has 2 nodes in its bucket is refused there and leaves. */
static void test_move_is_admitted_again(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  assert_non_null(t);
  uint8_t a[PD_DHTT_ID_LEN], b[PD_DHTT_ID_LEN], c[PD_DHTT_ID_LEN];
  mkid(a, 160, 1);
  mkid(b, 160, 2);
  mkid(c, 160, 3);
  assert_int_equal(offer(t, a, "7.7.7.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, b, "7.7.7.2:1", 1, 2, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, c, "8.8.8.1:1", 1, 3, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  /* c moves within its own /24: fine */
  assert_int_equal(offer(t, c, "8.8.8.9:1", 2, 3, T0 + 1, NULL, NULL).rc, PD_DHTT_REFRESHED);
  /* c moves into 7.7.7.0/24, which holds 2 in the bucket: refused, gone */
  assert_int_equal(offer(t, c, "7.7.7.3:1", 3, 3, T0 + 2, NULL, NULL).rc, PD_DHTT_REFUSED);
  assert_null(pd_dht_table_find(t, c));
  assert_int_equal(pd_dht_table_size(t), 2);
  /* the same move with a lower seq changes nothing (and is not a move) */
  assert_int_equal(offer(t, a, "9.9.9.9:1", 1, 1, T0 + 3, NULL, NULL).rc, PD_DHTT_REFRESHED);
  assert_int_equal(pd_dht_table_find(t, a)->ep.ip[12], 7);
  pd_dht_table_free(t);
}

static void test_custom_hook(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 4, 0);
  hook_t h = {0};
  uint8_t id[PD_DHTT_ID_LEN];
  mkid(id, 160, 1);
  assert_int_equal(offer(t, id, "127.0.0.1:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_REFUSED);
  assert_int_equal(h.calls, 1);
  assert_int_equal(pd_dht_table_size(t), 0);
  /* no limits: five of one /24 in one bucket (the default stops at 2) */
  h.answer = 1;
  for (uint32_t s = 1; s <= 3; s++) {
    char ep[64];
    snprintf(ep, sizeof ep, "1.2.3.%u:1", s);
    mkid(id, 160, s);
    assert_int_equal(offer(t, id, ep, 1, s, T0, hook_fn, &h).rc, PD_DHTT_ADDED);
    mkid(id, 159, s);
    if (s <= 2) {
      assert_int_equal(offer(t, id, ep, 1, s, T0, hook_fn, &h).rc, PD_DHTT_ADDED);
    }
  }
  /* what the hook sees for a 4th of 1.2.3.0/24 in bucket 160 */
  mkid(id, 160, 4);
  assert_int_equal(offer(t, id, "1.2.3.4:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_ADDED);
  assert_int_equal(h.last.bucket, 160);
  assert_int_equal(h.last.bucket_size, 3);
  assert_int_equal(h.last.k, 4);
  assert_int_equal(h.last.subnet_in_bucket, 3);
  assert_int_equal(h.last.subnet_in_table, 5);
  assert_true(h.last.routable);
  assert_memory_equal(h.last_node.id, id, PD_DHTT_ID_LEN);
  assert_int_equal(h.last_node.rec_len, RECLEN);
  /* bucket 160 is now full: newcomers are cached and do not count */
  for (uint32_t s = 5; s <= 6; s++) {
    mkid(id, 160, s);
    assert_int_equal(offer(t, id, "1.2.3.9:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_CACHED);
    assert_int_equal(h.last.bucket_size, 4);
    assert_int_equal(h.last.subnet_in_bucket, 4);
    assert_int_equal(h.last.subnet_in_table, 6);
  }
  mkid(id, 158, 1);
  assert_int_equal(offer(t, id, "127.0.0.1:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_ADDED);
  assert_false(h.last.routable);
  assert_int_equal(h.last.subnet_in_table, 0);
  /* refuse everything: a full bucket's newcomer is not cached, no ping */
  h.answer = 0;
  mkid(id, 160, 7);
  seen_out_t o = offer(t, id, "9.9.9.9:1", 1, 1, T0, hook_fn, &h);
  assert_int_equal(o.rc, PD_DHTT_REFUSED);
  assert_false(o.ping);
  assert_int_equal(pd_dht_table_cached(t), 2);
  /* ... and a cached node offered again leaves the cache when refused */
  mkid(id, 160, 6);
  assert_int_equal(offer(t, id, "1.2.3.9:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_REFUSED);
  assert_int_equal(pd_dht_table_cached(t), 1);
  /* known nodes refresh without asking the hook */
  unsigned calls = h.calls;
  mkid(id, 160, 1);
  assert_int_equal(offer(t, id, "1.2.3.1:1", 1, 1, T0, hook_fn, &h).rc, PD_DHTT_REFRESHED);
  assert_int_equal(h.calls, calls);
  pd_dht_table_free(t);
}

/* A failed ping promotes the newest admissible replacement, with counts as if
 * the failed node were gone; an inadmissible one leaves the node in place
 * until its second failure. */
static void test_ping_fail_admission(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 3, 0);
  uint8_t x[PD_DHTT_ID_LEN], a[PD_DHTT_ID_LEN], y[PD_DHTT_ID_LEN], c[PD_DHTT_ID_LEN], d[PD_DHTT_ID_LEN];
  mkid(x, 160, 1);
  mkid(a, 160, 2);
  mkid(y, 160, 3);
  mkid(c, 160, 4);
  mkid(d, 160, 5);
  assert_int_equal(offer(t, x, "5.6.7.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, a, "1.2.3.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, y, "5.6.8.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  seen_out_t o = offer(t, c, "1.2.3.3:1", 1, 1, T0, NULL, NULL); /* 1 of its /24 in the bucket: cached */
  assert_int_equal(o.rc, PD_DHTT_CACHED);
  assert_true(o.ping);
  assert_memory_equal(o.ping_id, x, PD_DHTT_ID_LEN);
  /* y leaves, d (1.2.3.0/24) enters: the bucket is [x, a, d], two of c's /24 */
  assert_int_equal(pd_dht_table_remove(t, y), 1);
  assert_int_equal(offer(t, d, "1.2.3.4:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(pd_dht_table_check(t), 0);
  /* x fails once: c would be the 3rd of its /24 in the bucket, so x stays */
  assert_int_equal(pd_dht_table_ping_result(t, x, false, T0 + 1, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_find(t, x)->fails, 1);
  assert_false(pd_dht_table_find(t, x)->pinging);
  assert_int_equal(pd_dht_table_cached(t), 1);
  /* a fails: without it c is admissible and takes its place */
  assert_int_equal(pd_dht_table_ping_result(t, a, false, T0 + 2, NULL, NULL), 1);
  assert_int_equal(pd_dht_table_check(t), 0);
  assert_null(pd_dht_table_find(t, a));
  size_t n;
  const pd_dht_entry_t *b = pd_dht_table_bucket(t, 160, &n);
  assert_int_equal(n, 3);
  assert_memory_equal(b[2].id, c, PD_DHTT_ID_LEN);
  assert_int_equal(pd_dht_table_cached(t), 0);
  /* x's second failure in a row removes it */
  assert_int_equal(pd_dht_table_ping_result(t, x, false, T0 + 3, NULL, NULL), 1);
  assert_null(pd_dht_table_find(t, x));
  assert_int_equal(pd_dht_table_size(t), 2);
  pd_dht_table_free(t);
}

/* Revalidation: one failure keeps a node, an answer resets it, two in a row
 * remove it; picks are seeded and skip buckets whose LRS has a ping out. */
static void test_revalidation(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  pd_rng_t rng;
  pd_rng_seed(&rng, 42);
  assert_null(pd_dht_table_revalidate_pick(t, &rng));
  uint8_t a[PD_DHTT_ID_LEN];
  mkid(a, 120, 0);
  assert_int_equal(offer(t, a, "5.6.1.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  const pd_dht_entry_t *e = pd_dht_table_revalidate_pick(t, &rng);
  assert_ptr_equal(e, pd_dht_table_find(t, a));
  assert_true(e->pinging);
  assert_null(pd_dht_table_revalidate_pick(t, &rng)); /* its ping is out */
  assert_int_equal(pd_dht_table_ping_result(t, a, false, T0 + 1, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_find(t, a)->fails, 1);
  assert_ptr_equal(pd_dht_table_revalidate_pick(t, &rng), pd_dht_table_find(t, a));
  assert_int_equal(pd_dht_table_ping_result(t, a, true, T0 + 2, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_find(t, a)->fails, 0);
  assert_int_equal(pd_dht_table_ping_result(t, a, false, T0 + 3, NULL, NULL), 0);
  assert_int_equal(pd_dht_table_ping_result(t, a, false, T0 + 4, NULL, NULL), 1);
  assert_null(pd_dht_table_find(t, a));
  assert_int_equal(pd_dht_table_size(t), 0);
  assert_int_equal(pd_dht_table_check(t), 0);

  /* two identical tables, same seed: the same picks; each pick a different
   * non-empty bucket's LRS until every one has a ping out */
  pd_dht_table_t *u = pd_dht_table_new(SELF, 0, 0);
  const unsigned ds[] = {160, 158, 150, 140, 130, 100, 60, 20};
  const size_t nd = sizeof ds / sizeof ds[0];
  for (size_t i = 0; i < nd; i++) {
    for (uint32_t s = 0; s < 3; s++) {
      uint8_t id[PD_DHTT_ID_LEN];
      char ep[64];
      mkid(id, ds[i], s);
      snprintf(ep, sizeof ep, "5.%zu.%u.1:1", i + 1, s);
      assert_int_equal(offer(t, id, ep, 1, 1, T0 + s, NULL, NULL).rc, PD_DHTT_ADDED);
      assert_int_equal(offer(u, id, ep, 1, 1, T0 + s, NULL, NULL).rc, PD_DHTT_ADDED);
    }
  }
  pd_rng_t r1, r2;
  pd_rng_seed(&r1, 7);
  pd_rng_seed(&r2, 7);
  bool hit[PD_DHTT_BUCKETS + 1] = {false};
  unsigned first_bucket = 0;
  for (size_t i = 0; i < nd; i++) {
    const pd_dht_entry_t *p = pd_dht_table_revalidate_pick(t, &r1);
    const pd_dht_entry_t *q = pd_dht_table_revalidate_pick(u, &r2);
    assert_non_null(p);
    assert_non_null(q);
    assert_memory_equal(p->id, q->id, PD_DHTT_ID_LEN);
    assert_true(p->pinging);
    size_t n;
    unsigned bi = 0;
    for (size_t j = 0; j < nd; j++) {
      if (pd_dht_table_bucket(t, ds[j], &n) == p) {
        bi = ds[j]; /* it is its bucket's LRS */
      }
    }
    assert_int_not_equal(bi, 0);
    assert_false(hit[bi]);
    hit[bi] = true;
    if (i == 0) {
      first_bucket = bi;
    }
    assert_int_equal(pd_dht_table_check(t), 0);
  }
  assert_null(pd_dht_table_revalidate_pick(t, &r1));
  /* the first picked node answers: its bucket's new LRS can be picked */
  size_t n;
  const pd_dht_entry_t *lrs = pd_dht_table_bucket(t, first_bucket, &n);
  uint8_t pid[PD_DHTT_ID_LEN];
  memcpy(pid, lrs[0].id, sizeof pid);
  assert_int_equal(pd_dht_table_ping_result(t, pid, true, T0 + 9, NULL, NULL), 0);
  lrs = pd_dht_table_bucket(t, first_bucket, &n);
  assert_memory_equal(lrs[n - 1].id, pid, PD_DHTT_ID_LEN);
  assert_ptr_equal(pd_dht_table_revalidate_pick(t, &r1), &lrs[0]);
  pd_dht_table_free(u);
  pd_dht_table_free(t);
}

static int by_dist(const uint8_t *target, const uint8_t *a, const uint8_t *b) {
  for (unsigned i = 0; i < PD_DHTT_ID_LEN; i++) {
    uint8_t da = (uint8_t)(a[i] ^ target[i]), db = (uint8_t)(b[i] ^ target[i]);
    if (da != db) {
      return da < db ? -1 : 1;
    }
  }
  return 0;
}

/* The brute force: insertion sort of every id by distance to target. */
static void sort_by_dist(uint8_t (*ids)[PD_DHTT_ID_LEN], size_t n, const uint8_t *target) {
  for (size_t i = 1; i < n; i++) {
    uint8_t cur[PD_DHTT_ID_LEN];
    memcpy(cur, ids[i], sizeof cur);
    size_t j = i;
    while (j > 0 && by_dist(target, cur, ids[j - 1]) < 0) {
      memcpy(ids[j], ids[j - 1], sizeof cur);
      j--;
    }
    memcpy(ids[j], cur, sizeof cur);
  }
}

static void test_closest_bruteforce(void **state) {
  (void)state;
  pd_dht_table_t *t = pd_dht_table_new(SELF, 0, 0);
  hook_t h = {.answer = 1};
  pd_rng_t rng;
  pd_rng_seed(&rng, 1234);
  for (unsigned i = 0; i < 1500; i++) {
    uint8_t id[PD_DHTT_ID_LEN];
    pd_rng_fill(&rng, id, sizeof id);
    if (i % 3 == 0) {
      mkid(id, 100 + (unsigned)pd_rng_range(&rng, 61), (uint32_t)pd_rng_u64(&rng)); /* spread over buckets */
    }
    assert_true(offer(t, id, "5.6.7.8:1", 1, i, T0, hook_fn, &h).rc >= 0);
  }
  /* every bucket node, for the brute force */
  static uint8_t ids[PD_DHTT_BUCKETS * PD_DHTT_K][PD_DHTT_ID_LEN];
  size_t total = 0;
  for (unsigned b = 1; b <= PD_DHTT_BUCKETS; b++) {
    size_t n;
    const pd_dht_entry_t *e = pd_dht_table_bucket(t, b, &n);
    for (size_t j = 0; j < n; j++) {
      memcpy(ids[total++], e[j].id, PD_DHTT_ID_LEN);
    }
  }
  assert_int_equal(total, pd_dht_table_size(t));
  assert_true(total > 200);
  const pd_dht_entry_t *out[PD_DHTT_K * 2];
  for (unsigned round = 0; round < 30; round++) {
    uint8_t target[PD_DHTT_ID_LEN];
    if (round % 5 == 0) {
      memcpy(target, ids[pd_rng_range(&rng, total)], sizeof target); /* a node's own id */
    } else if (round % 5 == 1) {
      memcpy(target, SELF, sizeof target);
    } else {
      pd_rng_fill(&rng, target, sizeof target);
    }
    sort_by_dist(ids, total, target);
    size_t want = round % 2 ? PD_DHTT_K : 7;
    size_t got = pd_dht_table_closest(t, target, want, out);
    assert_int_equal(got, want);
    for (size_t j = 0; j < got; j++) {
      assert_memory_equal(out[j]->id, ids[j], PD_DHTT_ID_LEN);
    }
  }
  assert_int_equal(pd_dht_table_closest(t, SELF, 0, out), 0);
  pd_dht_table_free(t);
  /* fewer nodes than asked for */
  t = pd_dht_table_new(SELF, 0, 0);
  uint8_t a[PD_DHTT_ID_LEN], b[PD_DHTT_ID_LEN];
  mkid(a, 3, 1);
  mkid(b, 90, 0);
  assert_int_equal(offer(t, a, "5.6.1.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(offer(t, b, "5.6.2.1:1", 1, 1, T0, NULL, NULL).rc, PD_DHTT_ADDED);
  assert_int_equal(pd_dht_table_closest(t, SELF, PD_DHTT_K, out), 2);
  assert_memory_equal(out[0]->id, a, PD_DHTT_ID_LEN);
  assert_memory_equal(out[1]->id, b, PD_DHTT_ID_LEN);
  pd_dht_table_free(t);
}

/* A seeded random run over a small id space and a few subnets (small k and
 * cache so buckets fill): the invariant check after every step; an offer
 * never evicts another node (every bucket node before it is there after,
 * but the offered one when it moved somewhere refused); the counts
 * the table reports match a recount. */
static void test_random_ops(void **state) {
  (void)state;
  enum { POOL = 240, OPS = 5000 };
  pd_dht_table_t *t = pd_dht_table_new(SELF, 4, 3);
  pd_rng_t rng;
  pd_rng_seed(&rng, 99);
  static uint8_t pool[POOL][PD_DHTT_ID_LEN];
  for (unsigned i = 0; i < POOL; i++) {
    unsigned d = 150 + (unsigned)pd_rng_range(&rng, 11);
    mkid(pool[i], d, (uint32_t)pd_rng_u64(&rng));
    if (i % 17 == 0) {
      memcpy(pool[i], SELF, PD_DHTT_ID_LEN); /* this node itself now and then */
    }
  }
  hook_t h = {.answer = 2};
  unsigned added = 0, cached = 0, refused = 0, removed = 0, picks = 0;
  for (unsigned op = 0; op < OPS; op++) {
    const uint8_t *id = pool[pd_rng_range(&rng, POOL)];
    int64_t now = T0 + op;
    unsigned kind = (unsigned)pd_rng_range(&rng, 10);
    if (kind < 6) {
      char ep[64];
      snprintf(ep, sizeof ep, "%s.%u.%u:1", pd_rng_range(&rng, 8) ? "1.2" : "127.0",
               (unsigned)pd_rng_range(&rng, 4), (unsigned)pd_rng_range(&rng, 250) + 1);
      /* snapshot every bucket node (cheap enough at k = 4) */
      static uint8_t snap[PD_DHTT_BUCKETS * 4][PD_DHTT_ID_LEN];
      size_t ns = 0;
      for (unsigned b = 150; b <= PD_DHTT_BUCKETS; b++) {
        size_t n;
        const pd_dht_entry_t *e = pd_dht_table_bucket(t, b, &n);
        for (size_t j = 0; j < n; j++) {
          memcpy(snap[ns++], e[j].id, PD_DHTT_ID_LEN);
        }
      }
      seen_out_t o = offer(t, id, ep, pd_rng_range(&rng, 5), op, now, hook_fn, &h);
      assert_true(o.rc >= 0);
      added += o.rc == PD_DHTT_ADDED;
      cached += o.rc == PD_DHTT_CACHED;
      refused += o.rc == PD_DHTT_REFUSED;
      for (size_t j = 0; j < ns; j++) {
        /* no eviction without a ping; only the offered node itself may go
         * (it moved to an endpoint the hook refuses) */
        if (o.rc == PD_DHTT_REFUSED && memcmp(snap[j], id, PD_DHTT_ID_LEN) == 0) continue;
        assert_non_null(pd_dht_table_find(t, snap[j]));
      }
      if (o.ping) {
        const pd_dht_entry_t *p = pd_dht_table_find(t, o.ping_id);
        assert_non_null(p);
        assert_true(p->pinging);
      }
    } else if (kind < 8) {
      int r = pd_dht_table_ping_result(t, id, pd_rng_range(&rng, 2) == 0, now, hook_fn, &h);
      assert_true(r == 0 || r == 1 || r == PD_ENOENT);
      removed += r == 1;
    } else if (kind < 9) {
      removed += (unsigned)pd_dht_table_remove(t, id);
    } else {
      const pd_dht_entry_t *p = pd_dht_table_revalidate_pick(t, &rng);
      if (p) {
        picks++;
        assert_true(p->pinging);
        assert_ptr_equal(pd_dht_table_find(t, p->id), p);
      }
    }
    assert_int_equal(pd_dht_table_check(t), 0);
    size_t total = 0, total_c = 0;
    for (unsigned b = 1; b <= PD_DHTT_BUCKETS; b++) {
      size_t n;
      pd_dht_table_bucket(t, b, &n);
      total += n;
      pd_dht_table_replacements(t, b, &n);
      total_c += n;
    }
    assert_int_equal(total, pd_dht_table_size(t));
    assert_int_equal(total_c, pd_dht_table_cached(t));
  }
  /* the run exercised every path */
  assert_true(added > 50);
  assert_true(cached > 50);
  assert_true(refused > 50);
  assert_true(removed > 50);
  assert_true(picks > 50);
  pd_dht_table_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids_and_distance),
      cmocka_unit_test(test_full_bucket_ping_ok),
      cmocka_unit_test(test_full_bucket_ping_fail),
      cmocka_unit_test(test_cache_capacity),
      cmocka_unit_test(test_refresh_and_records),
      cmocka_unit_test(test_cached_record_seq),
      cmocka_unit_test(test_same_subnet),
      cmocka_unit_test(test_default_ip_limits),
      cmocka_unit_test(test_move_is_admitted_again),
      cmocka_unit_test(test_custom_hook),
      cmocka_unit_test(test_ping_fail_admission),
      cmocka_unit_test(test_revalidation),
      cmocka_unit_test(test_closest_bruteforce),
      cmocka_unit_test(test_random_ops),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
