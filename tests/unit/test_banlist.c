/* Unit tests for banlist: add/replace/remove, expiry, subnet containment,
 * stable order, many single bans (hash set growth). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "banlist.h"
#include "err.h"

#define NOW 1700000000

static pd_netaddr_t ip(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse_ip(s, &a, NULL), 0);
  return a;
}

static pd_subnet_t net(const char *s) {
  pd_subnet_t n;
  const char *why = NULL;
  int rc = pd_subnet_parse(s, &n, &why);
  if (rc != 0) fail_msg("subnet %s: %s", s, why ? why : "?");
  return n;
}

static void empty_list(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  pd_netaddr_t a = ip("1.2.3.4");
  assert_false(pd_banlist_is_banned(bl, &a, NOW, NULL));
  assert_int_equal(pd_banlist_count(bl), 0);
  assert_null(pd_banlist_get(bl, 0));
  assert_int_equal(pd_banlist_expire(bl, NOW), 0);
  pd_subnet_t s = net("1.2.3.4");
  assert_int_equal(pd_banlist_remove(bl, &s), PD_ENOENT);
  pd_banlist_destroy(bl);
}

static void single_add_replace_remove(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  pd_subnet_t s = net("1.2.3.4");
  assert_int_equal(pd_banlist_add(bl, &s, NOW, 0, "spam"), 0);
  pd_netaddr_t a = ip("1.2.3.4"), other = ip("1.2.3.5");
  a.port = 26656; /* ports do not matter */
  pd_ban_t m;
  assert_true(pd_banlist_is_banned(bl, &a, NOW, &m));
  assert_string_equal(m.reason, "spam");
  assert_int_equal(m.until, 0);
  assert_false(pd_banlist_is_banned(bl, &other, NOW, NULL));
  /* Replace: same subnet, new expiry and reason; still one ban. */
  assert_int_equal(pd_banlist_add(bl, &s, NOW + 1, NOW + 100, NULL), 1);
  assert_int_equal(pd_banlist_count(bl), 1);
  const pd_ban_t *g = pd_banlist_get(bl, 0);
  assert_non_null(g);
  assert_int_equal(g->until, NOW + 100);
  assert_int_equal(g->created, NOW + 1);
  assert_string_equal(g->reason, "");
  assert_true(pd_banlist_is_banned(bl, &a, NOW + 99, NULL));
  assert_false(pd_banlist_is_banned(bl, &a, NOW + 100, NULL)); /* banned while now < until */
  assert_int_equal(pd_banlist_remove(bl, &s), 0);
  assert_int_equal(pd_banlist_count(bl), 0);
  assert_false(pd_banlist_is_banned(bl, &a, NOW, NULL));
  assert_int_equal(pd_banlist_remove(bl, &s), PD_ENOENT);
  pd_banlist_destroy(bl);
}

static void long_reason_truncated(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  char longr[300];
  memset(longr, 'x', sizeof(longr) - 1);
  longr[sizeof(longr) - 1] = '\0';
  pd_subnet_t s = net("2001:db8::1");
  assert_int_equal(pd_banlist_add(bl, &s, NOW, 0, longr), 0);
  const pd_ban_t *g = pd_banlist_get(bl, 0);
  assert_int_equal(strlen(g->reason), PD_BAN_REASON_MAX - 1);
  pd_banlist_destroy(bl);
}

static void subnet_containment(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  pd_subnet_t s24 = net("10.1.2.0/24"), s6 = net("2001:db8::/32"), s13 = net("100.64.0.0/13");
  assert_int_equal(pd_banlist_add(bl, &s24, NOW, 0, "a"), 0);
  assert_int_equal(pd_banlist_add(bl, &s6, NOW, NOW + 10, "b"), 0);
  assert_int_equal(pd_banlist_add(bl, &s13, NOW, 0, "c"), 0);
  pd_netaddr_t in1 = ip("10.1.2.200"), out1 = ip("10.1.3.1");
  pd_netaddr_t in2 = ip("2001:db8:ffff::1"), out2 = ip("2001:db9::1");
  pd_netaddr_t in3 = ip("100.71.255.255"), out3 = ip("100.72.0.0");
  pd_ban_t m;
  assert_true(pd_banlist_is_banned(bl, &in1, NOW, &m));
  assert_string_equal(m.reason, "a");
  assert_false(pd_banlist_is_banned(bl, &out1, NOW, NULL));
  assert_true(pd_banlist_is_banned(bl, &in2, NOW, &m));
  assert_string_equal(m.reason, "b");
  assert_false(pd_banlist_is_banned(bl, &in2, NOW + 10, NULL));
  assert_false(pd_banlist_is_banned(bl, &out2, NOW, NULL));
  assert_true(pd_banlist_is_banned(bl, &in3, NOW, NULL));
  assert_false(pd_banlist_is_banned(bl, &out3, NOW, NULL));
  /* An IPv4 /24 does not cover an IPv6 address with the same low bytes. */
  pd_netaddr_t v6 = ip("::10.1.2.3");
  assert_false(pd_banlist_is_banned(bl, &v6, NOW, NULL));
  /* Same subnet with host bits in the input is the same ban. */
  pd_subnet_t dirty = s24;
  dirty.ip[15] = 7;
  assert_int_equal(pd_banlist_add(bl, &dirty, NOW, 0, "a2"), 1);
  assert_int_equal(pd_banlist_count(bl), 3);
  /* A /0 bans everything. */
  pd_subnet_t all;
  memset(&all, 0, sizeof(all));
  assert_int_equal(pd_banlist_add(bl, &all, NOW, 0, "all"), 0);
  assert_true(pd_banlist_is_banned(bl, &out1, NOW, NULL));
  assert_int_equal(pd_banlist_remove(bl, &all), 0);
  assert_false(pd_banlist_is_banned(bl, &out1, NOW, NULL));
  pd_subnet_t bad = all;
  bad.prefix = 129;
  assert_int_equal(pd_banlist_add(bl, &bad, NOW, 0, NULL), PD_EINVAL);
  pd_banlist_destroy(bl);
}

static void expiry_and_stable_order(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  const char *names[] = {"1.1.1.1", "2.2.0.0/16", "3.3.3.3", "4.4.4.0/24", "5.5.5.5"};
  int64_t until[] = {0, NOW + 5, NOW + 5, 0, NOW + 50};
  for (int i = 0; i < 5; i++) {
    pd_subnet_t s = net(names[i]);
    assert_int_equal(pd_banlist_add(bl, &s, NOW, until[i], names[i]), 0);
  }
  assert_int_equal(pd_banlist_count(bl), 5);
  for (int i = 0; i < 5; i++) assert_string_equal(pd_banlist_get(bl, (size_t)i)->reason, names[i]);
  /* Expired bans no longer match even before expire() runs. */
  pd_netaddr_t a3 = ip("3.3.3.3"), a2 = ip("2.2.9.9"), a5 = ip("5.5.5.5");
  assert_false(pd_banlist_is_banned(bl, &a3, NOW + 5, NULL));
  assert_false(pd_banlist_is_banned(bl, &a2, NOW + 5, NULL));
  assert_int_equal(pd_banlist_count(bl), 5);
  assert_int_equal(pd_banlist_expire(bl, NOW + 5), 2);
  assert_int_equal(pd_banlist_count(bl), 3);
  assert_string_equal(pd_banlist_get(bl, 0)->reason, "1.1.1.1");
  assert_string_equal(pd_banlist_get(bl, 1)->reason, "4.4.4.0/24");
  assert_string_equal(pd_banlist_get(bl, 2)->reason, "5.5.5.5");
  assert_null(pd_banlist_get(bl, 3));
  /* Lookups still work after compaction. */
  pd_netaddr_t a1 = ip("1.1.1.1"), a4 = ip("4.4.4.4");
  assert_true(pd_banlist_is_banned(bl, &a1, NOW + 5, NULL));
  assert_true(pd_banlist_is_banned(bl, &a4, NOW + 5, NULL));
  assert_true(pd_banlist_is_banned(bl, &a5, NOW + 5, NULL));
  /* Remove from the middle keeps the order of the rest. */
  pd_subnet_t s4 = net("4.4.4.0/24");
  assert_int_equal(pd_banlist_remove(bl, &s4), 0);
  assert_string_equal(pd_banlist_get(bl, 0)->reason, "1.1.1.1");
  assert_string_equal(pd_banlist_get(bl, 1)->reason, "5.5.5.5");
  assert_false(pd_banlist_is_banned(bl, &a4, NOW, NULL));
  assert_true(pd_banlist_is_banned(bl, &a5, NOW, NULL));
  pd_banlist_clear(bl);
  assert_int_equal(pd_banlist_count(bl), 0);
  assert_false(pd_banlist_is_banned(bl, &a1, NOW, NULL));
  pd_banlist_destroy(bl);
}

static void many_single_bans(void **state) {
  (void)state;
  pd_banlist_t *bl;
  assert_int_equal(pd_banlist_create(&bl), 0);
  for (int i = 0; i < 5000; i++) {
    pd_netaddr_t a;
    memset(&a, 0, sizeof(a));
    a.ip[10] = a.ip[11] = 0xff;
    a.ip[12] = 9;
    a.ip[13] = (uint8_t)(i >> 8);
    a.ip[14] = (uint8_t)i;
    a.ip[15] = 1;
    pd_subnet_t s;
    pd_subnet_from_addr(&a, &s);
    assert_int_equal(pd_banlist_add(bl, &s, NOW, i % 2 ? NOW + 10 : 0, NULL), 0);
  }
  assert_int_equal(pd_banlist_count(bl), 5000);
  for (int i = 0; i < 5000; i++) {
    pd_netaddr_t a = ip("9.0.0.1");
    a.ip[13] = (uint8_t)(i >> 8);
    a.ip[14] = (uint8_t)i;
    assert_true(pd_banlist_is_banned(bl, &a, NOW, NULL));
    a.ip[15] = 2;
    assert_false(pd_banlist_is_banned(bl, &a, NOW, NULL));
  }
  assert_int_equal(pd_banlist_expire(bl, NOW + 10), 2500);
  for (int i = 0; i < 5000; i++) {
    pd_netaddr_t a = ip("9.0.0.1");
    a.ip[13] = (uint8_t)(i >> 8);
    a.ip[14] = (uint8_t)i;
    assert_int_equal(pd_banlist_is_banned(bl, &a, NOW, NULL), i % 2 == 0);
  }
  pd_banlist_destroy(bl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(empty_list),
      cmocka_unit_test(single_add_replace_remove),
      cmocka_unit_test(long_reason_truncated),
      cmocka_unit_test(subnet_containment),
      cmocka_unit_test(expiry_and_stable_order),
      cmocka_unit_test(many_single_bans),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
