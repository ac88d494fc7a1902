/* Unit tests for reputation: per-IP keying, updates and clamping, LRU
 * eviction at the bound, removal keeping the index consistent, and the
 * built-in C default rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "reputation.h"

static pd_netaddr_t addr(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(s, PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, NULL), 0);
  return a;
}

static pd_netaddr_t nth(uint32_t i) {
  char s[48];
  snprintf(s, sizeof s, "%u.%u.%u.%u:%u", 1 + (i >> 24), (i >> 16) & 255, (i >> 8) & 255,
           i & 255, 1000 + (i % 7));
  return addr(s);
}

static void keyed_by_ip_not_port(void **state) {
  (void)state;
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 0, 1), 0);
  assert_int_equal(pd_reputation_max(r), PD_REP_DEFAULT_MAX);
  pd_netaddr_t a = addr("1.2.3.4:26656"), b = addr("1.2.3.4:9999"), c = addr("[2001:db8::1]:1");
  assert_null(pd_reputation_get(r, &a));
  pd_rep_record_t *rec = NULL;
  assert_int_equal(pd_reputation_touch(r, &a, 100, &rec), 0);
  assert_int_equal(rec->first_seen, 100);
  assert_int_equal(rec->last_event_at, 0);
  assert_true(rec->latency_ms < 0);
  assert_int_equal(rec->ip.port, 0);
  assert_int_equal(pd_reputation_update(r, &b, 2.5, false, 150), 0);
  const pd_rep_record_t *g = pd_reputation_get(r, &a);
  assert_non_null(g);
  assert_true(g->reputation == 2.5);
  assert_int_equal(g->first_seen, 100);
  assert_int_equal(g->last_event_at, 150);
  assert_int_equal(pd_reputation_count(r), 1);
  assert_int_equal(pd_reputation_update(r, &c, -1, true, 160), 0);
  assert_int_equal(pd_reputation_update(r, &c, NAN, true, 170), 0);
  g = pd_reputation_get(r, &c);
  assert_true(g->reputation == -1);
  assert_int_equal(g->misbehaviours, 2);
  assert_int_equal(pd_reputation_count(r), 2);
  /* clamping */
  assert_int_equal(pd_reputation_update(r, &a, 1e300, false, 200), 0);
  assert_true(pd_reputation_get(r, &a)->reputation == PD_REP_LIMIT);
  assert_int_equal(pd_reputation_update(r, &a, -INFINITY, false, 200), 0);
  assert_true(pd_reputation_get(r, &a)->reputation == -PD_REP_LIMIT);
  /* latency */
  assert_int_equal(pd_reputation_set_latency(r, &a, 42.5, 210), 0);
  assert_true(pd_reputation_get(r, &a)->latency_ms == 42.5);
  assert_int_equal(pd_reputation_set_latency(r, &a, -3, 210), 0);
  assert_true(pd_reputation_get(r, &a)->latency_ms < 0);
  assert_true(pd_reputation_memory(r) > sizeof(pd_rep_record_t));
  pd_reputation_destroy(r);
}

static void evicts_least_recently_touched(void **state) {
  (void)state;
  pd_reputation_t *r = NULL;
  const uint32_t max = 1000;
  assert_int_equal(pd_reputation_create(&r, max, 7), 0);
  for (uint32_t i = 0; i < max; i++) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_update(r, &a, (double)i, false, i), 0);
  }
  assert_int_equal(pd_reputation_count(r), max);
  /* touch the oldest 10: they become the most recent */
  for (uint32_t i = 0; i < 10; i++) {
    pd_netaddr_t a = nth(i);
    pd_rep_record_t *rec;
    assert_int_equal(pd_reputation_touch(r, &a, 5000, &rec), 0);
    assert_true(rec->reputation == (double)i);
  }
  /* 20 newcomers evict records 10..29, the least recently touched */
  for (uint32_t i = max; i < max + 20; i++) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_update(r, &a, -1, false, 6000), 0);
  }
  assert_int_equal(pd_reputation_count(r), max);
  for (uint32_t i = 0; i < max + 20; i++) {
    pd_netaddr_t a = nth(i);
    const pd_rep_record_t *g = pd_reputation_get(r, &a);
    bool want = !(i >= 10 && i < 30);
    if ((g != NULL) != want) fail_msg("record %u: present=%d want=%d", i, g != NULL, want);
    if (g && i < max) assert_true(g->reputation == (double)i);
  }
  pd_reputation_destroy(r);
}

static void remove_keeps_index_consistent(void **state) {
  (void)state;
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 300, 99), 0);
  for (uint32_t i = 0; i < 300; i++) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_update(r, &a, (double)i, false, 1), 0);
  }
  for (uint32_t i = 0; i < 300; i += 3) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_remove(r, &a), 0);
    assert_int_equal(pd_reputation_remove(r, &a), PD_ENOENT);
  }
  assert_int_equal(pd_reputation_count(r), 200);
  for (uint32_t i = 0; i < 300; i++) {
    pd_netaddr_t a = nth(i);
    const pd_rep_record_t *g = pd_reputation_get(r, &a);
    if (i % 3 == 0) {
      assert_null(g);
    } else {
      assert_non_null(g);
      assert_true(g->reputation == (double)i);
    }
  }
  /* refill past the bound: the LRU order survived the removals */
  for (uint32_t i = 1000; i < 1150; i++) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_update(r, &a, 0, false, 2), 0);
  }
  assert_int_equal(pd_reputation_count(r), 300);
  /* 100 free places, then 50 evictions: the oldest survivors 1,2,4,5,... */
  pd_netaddr_t first = nth(1);
  assert_null(pd_reputation_get(r, &first));
  pd_netaddr_t last = nth(299);
  assert_non_null(pd_reputation_get(r, &last));
  pd_reputation_destroy(r);
}

static void default_rule(void **state) {
  (void)state;
  pd_rep_default_t d;
  pd_reputation_default(0, "good", 3600, &d);
  assert_true(d.reputation == 1 && d.ban_secs == 0);
  pd_reputation_default(1, "connected", 3600, &d);
  assert_true(d.reputation > 1.0999999 && d.reputation < 1.1000001 && d.ban_secs == 0);
  pd_reputation_default(1, "failed", 3600, &d);
  assert_true(d.reputation == 0 && d.ban_secs == 0);
  pd_reputation_default(5, "attempt", 3600, &d);
  assert_true(d.reputation == 5 && d.ban_secs == 0);
  pd_reputation_default(5, "disconnected", 3600, &d);
  assert_true(d.reputation == 5 && d.ban_secs == 0);
  pd_reputation_default(5, "misbehaved", 3600, &d);
  assert_true(d.reputation == -5 && d.ban_secs == 3600);
  assert_string_equal(d.reason, "misbehaved");
  pd_reputation_default(5, "misbehaved", 0, &d);
  assert_true(d.ban_secs == 0);
  pd_reputation_default(5, "bogus", 3600, &d);
  assert_true(d.reputation == 5 && d.ban_secs == 0);
  pd_reputation_default(PD_REP_LIMIT, "good", 0, &d);
  assert_true(d.reputation == PD_REP_LIMIT);
}

static void bad_arguments(void **state) {
  (void)state;
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(NULL, 0, 0), PD_EINVAL);
  assert_int_equal(pd_reputation_create(&r, (size_t)1 << 31, 0), PD_ERANGE);
  assert_int_equal(pd_reputation_create(&r, 1, 0), 0);
  pd_netaddr_t a = addr("9.9.9.9"), b = addr("8.8.8.8");
  assert_int_equal(pd_reputation_touch(r, NULL, 0, NULL), PD_EINVAL);
  assert_int_equal(pd_reputation_update(r, &a, 1, false, 1), 0);
  assert_int_equal(pd_reputation_update(r, &b, 2, false, 2), 0);
  assert_null(pd_reputation_get(r, &a));
  assert_true(pd_reputation_get(r, &b)->reputation == 2);
  assert_int_equal(pd_reputation_remove(r, &b), 0);
  assert_int_equal(pd_reputation_count(r), 0);
  assert_null(pd_reputation_get(NULL, &a));
  pd_reputation_destroy(r);
  pd_reputation_destroy(NULL);
}

/* pd_reputation_next walks in touch order; pd_reputation_restore puts a
 * saved record back exactly, as the most recent, evicting at the bound. */
static void walk_and_restore(void **state) {
  (void)state;
  pd_reputation_t *r = NULL;
  assert_int_equal(pd_reputation_create(&r, 3, 9), 0);
  assert_null(pd_reputation_next(r, NULL));
  assert_null(pd_reputation_next(NULL, NULL));
  for (uint32_t i = 0; i < 3; i++) {
    pd_netaddr_t a = nth(i);
    assert_int_equal(pd_reputation_update(r, &a, (double)i, false, 100 + i), 0);
  }
  pd_netaddr_t a0 = nth(0);
  assert_int_equal(pd_reputation_update(r, &a0, 5, true, 200), 0); /* 0 is now the most recent */
  static const int64_t order[3] = {200, 102, 101};
  int k = 0;
  for (const pd_rep_record_t *p = pd_reputation_next(r, NULL); p; p = pd_reputation_next(r, p))
    assert_int_equal(p->last_event_at, order[k++]);
  assert_int_equal(k, 3);
  pd_rep_record_t outside;
  memset(&outside, 0, sizeof outside);
  assert_null(pd_reputation_next(r, &outside)); /* not one of the table's records */

  /* restore: exact values, clamped where out of range, most recent */
  pd_rep_record_t rec;
  memset(&rec, 0, sizeof rec);
  rec.ip = addr("[2001:db8::9]:7");
  rec.reputation = -2e6;
  rec.misbehaviours = 4;
  rec.first_seen = 10;
  rec.last_event_at = 20;
  rec.latency_ms = 12.25;
  assert_int_equal(pd_reputation_restore(r, &rec), 0);
  assert_int_equal(pd_reputation_count(r), 3); /* the least recent (1) was evicted */
  pd_netaddr_t a1 = nth(1);
  assert_null(pd_reputation_get(r, &a1));
  const pd_rep_record_t *g = pd_reputation_next(r, NULL);
  assert_int_equal(g->ip.port, 0);
  assert_true(g->reputation == -PD_REP_LIMIT);
  assert_int_equal(g->misbehaviours, 4);
  assert_int_equal(g->first_seen, 10);
  assert_int_equal(g->last_event_at, 20);
  assert_true(g->latency_ms == 12.25);
  /* restoring an IP already there replaces its values */
  rec.reputation = NAN;
  rec.misbehaviours = -3;
  rec.latency_ms = -5;
  assert_int_equal(pd_reputation_restore(r, &rec), 0);
  g = pd_reputation_get(r, &rec.ip);
  assert_true(g->reputation == 0);
  assert_int_equal(g->misbehaviours, 0);
  assert_true(g->latency_ms < 0);
  assert_int_equal(pd_reputation_count(r), 3);
  assert_int_equal(pd_reputation_restore(NULL, &rec), PD_EINVAL);
  assert_int_equal(pd_reputation_restore(r, NULL), PD_EINVAL);
  pd_reputation_destroy(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keyed_by_ip_not_port),
      cmocka_unit_test(evicts_least_recently_touched),
      cmocka_unit_test(remove_keeps_index_consistent),
      cmocka_unit_test(default_rule),
      cmocka_unit_test(bad_arguments),
      cmocka_unit_test(walk_and_restore),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
