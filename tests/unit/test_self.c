/* Unit tests for self: the node's own record — services on the announced
 * address, re-signing only on change with a rising sequence, the announced
 * address from --external, a concrete listen address or 3 agreeing
 * outbound peers, and all-or-nothing replacement. Fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"
#include "self.h"

#define NOW ((int64_t)1700000000000)

static pd_netaddr_t A(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(s, 0, &a, NULL, NULL, NULL), 0);
  return a;
}

static void ident(pd_identity_t *id) {
  uint8_t seed[32];
  memset(seed, 7, sizeof seed);
  assert_int_equal(pd_identity_from_seed(id, seed), 0);
}

/* The signed bytes decode, verify, and equal the record struct. */
static const pd_record_t *check(const pd_self_t *s) {
  size_t len = 0;
  const uint8_t *b = pd_self_bytes(s, &len);
  static pd_record_t r;
  assert_int_equal(pd_record_decode(b, len, "peerd", NULL, &r, NULL), PD_RECORD_OK);
  assert_memory_equal(&r, pd_self_record(s), sizeof r);
  return pd_self_record(s);
}

static void test_concrete_listen(void **state) {
  (void)state;
  pd_identity_t id;
  ident(&id);
  pd_self_config_t c = {.network = "peerd", .identity = &id, .has_listen = true,
                        .listen = A("127.5.0.1:7411")};
  pd_self_t *s = NULL;
  assert_int_equal(pd_self_create(&s, &c, NOW, NULL), 0);
  const pd_record_t *r = check(s);
  assert_true(r->has_discovery);
  pd_netaddr_t disc = A("127.5.0.1:7411");
  assert_true(pd_netaddr_equal(&r->discovery, &disc));
  assert_int_equal(r->seq, NOW);
  assert_string_equal(pd_self_announced_source(s), "listen");
  pd_netaddr_t port_only = {0};
  port_only.port = 26656;
  assert_int_equal(pd_self_set_service(s, "p2p", false, &port_only, NOW + 5, NULL), 0);
  r = check(s);
  assert_int_equal(r->nservices, 1);
  pd_netaddr_t want = A("127.5.0.1:26656");
  assert_true(pd_netaddr_equal(&r->services[0].addr, &want));
  assert_int_equal(r->seq, NOW + 5);
  assert_int_equal(pd_self_changes(s), 1);
  /* the same declaration again: nothing re-signed */
  assert_int_equal(pd_self_set_service(s, "p2p", false, &port_only, NOW + 9, NULL), 0);
  assert_int_equal(pd_self_changes(s), 1);
  assert_int_equal(check(s)->seq, NOW + 5);
  /* a service with its own host; an attribute; the clock going back */
  pd_netaddr_t rpc = A("127.5.0.2:26657");
  assert_int_equal(pd_self_set_service(s, "rpc", true, &rpc, NOW - 1000, NULL), 0);
  assert_int_equal(check(s)->seq, NOW + 6); /* previous + 1, not the clock */
  assert_int_equal(pd_self_set_attr(s, "chain", "test-1", NOW + 20, NULL), 0);
  r = check(s);
  assert_string_equal(pd_record_attr(r, "chain"), "test-1");
  assert_non_null(pd_record_service(r, "rpc"));
  /* refusals leave it unchanged */
  const char *why = NULL;
  uint64_t seq = r->seq;
  assert_int_equal(pd_self_set_service(s, "Bad", false, &port_only, NOW + 30, &why), PD_EINVAL);
  assert_non_null(why);
  assert_int_equal(pd_self_set_attr(s, "k", "\x01", NOW + 30, &why), PD_EINVAL);
  pd_netaddr_t zero = {0};
  assert_int_equal(pd_self_set_service(s, "x", false, &zero, NOW + 30, &why), PD_EINVAL);
  assert_int_equal(check(s)->seq, seq);
  assert_int_equal(pd_self_del_service(s, "rpc", NOW + 40), 0);
  assert_null(pd_record_service(check(s), "rpc"));
  assert_int_equal(pd_self_del_service(s, "rpc", NOW + 40), PD_ENOENT);
  /* a concrete listen address is never overridden by observations */
  uint8_t peer[20];
  for (int i = 0; i < 5; i++) {
    memset(peer, i + 1, sizeof peer);
    pd_netaddr_t seen = A("198.51.100.7:40000");
    assert_false(pd_self_observed(s, peer, &seen, NOW + 50));
  }
  pd_self_destroy(s);
}

static void test_learnt_from_three_peers(void **state) {
  (void)state;
  pd_identity_t id;
  ident(&id);
  pd_self_config_t c = {.network = "peerd", .identity = &id, .has_listen = true};
  c.listen.port = 7411; /* wildcard */
  pd_self_t *s = NULL;
  assert_int_equal(pd_self_create(&s, &c, NOW, NULL), 0);
  pd_netaddr_t port_only = {0};
  port_only.port = 26656;
  assert_int_equal(pd_self_set_service(s, "p2p", false, &port_only, NOW, NULL), 0);
  const pd_record_t *r = check(s);
  assert_false(r->has_discovery);
  assert_int_equal(r->nservices, 0); /* waits for the announced address */
  assert_false(pd_self_announced(s, NULL));
  assert_string_equal(pd_self_announced_source(s), "unknown");
  uint8_t p1[20], p2[20], p3[20], p4[20];
  memset(p1, 1, 20);
  memset(p2, 2, 20);
  memset(p3, 3, 20);
  memset(p4, 4, 20);
  pd_netaddr_t x = A("198.51.100.7:40001"), y = A("203.0.113.9:40002");
  assert_false(pd_self_observed(s, p1, &x, NOW + 1));
  assert_false(pd_self_observed(s, p1, &x, NOW + 2)); /* the same peer again: still one */
  assert_false(pd_self_observed(s, p2, &y, NOW + 3));
  assert_false(pd_self_observed(s, p3, &x, NOW + 4)); /* two agree on x */
  assert_true(pd_self_observed(s, p4, &x, NOW + 5));  /* three */
  r = check(s);
  pd_netaddr_t want = A("198.51.100.7:26656"), disc = A("198.51.100.7:7411");
  assert_int_equal(r->nservices, 1);
  assert_true(pd_netaddr_equal(&r->services[0].addr, &want));
  assert_true(r->has_discovery);
  assert_true(pd_netaddr_equal(&r->discovery, &disc));
  assert_string_equal(pd_self_announced_source(s), "observed");
  assert_int_equal(r->seq, NOW + 5);
  /* the peers move to y: once y has the most (and >= 3), it wins */
  assert_false(pd_self_observed(s, p1, &y, NOW + 6)); /* x 2, y 2 */
  assert_true(pd_self_observed(s, p3, &y, NOW + 7));  /* y 3 */
  r = check(s);
  want = A("203.0.113.9:26656");
  assert_true(pd_netaddr_equal(&r->services[0].addr, &want));
  pd_self_destroy(s);
}

static void test_external_and_replace(void **state) {
  (void)state;
  pd_identity_t id;
  ident(&id);
  pd_self_config_t c = {.network = "peerd", .identity = &id, .has_external = true,
                        .external = A("192.0.2.44:1")};
  pd_self_t *s = NULL;
  assert_int_equal(pd_self_create(&s, &c, NOW, NULL), 0);
  assert_false(check(s)->has_discovery); /* no overlay listener: no discovery endpoint */
  assert_string_equal(pd_self_announced_source(s), "external");
  pd_self_service_t svc[2];
  memset(svc, 0, sizeof svc);
  strcpy(svc[0].name, "p2p");
  svc[0].addr.port = 26656;
  strcpy(svc[1].name, "grpc");
  svc[1].has_host = true;
  svc[1].addr = A("192.0.2.45:9090");
  pd_record_attr_t at[1];
  memset(at, 0, sizeof at);
  strcpy(at[0].key, "roles");
  strcpy(at[0].value, "validator");
  assert_int_equal(pd_self_replace(s, svc, 2, at, 1, NOW + 1, NULL), 0);
  const pd_record_t *r = check(s);
  assert_int_equal(r->nservices, 2);
  assert_string_equal(r->services[0].name, "grpc"); /* sorted */
  pd_netaddr_t want = A("192.0.2.44:26656");
  assert_true(pd_netaddr_equal(&pd_record_service(r, "p2p")->addr, &want));
  assert_string_equal(pd_record_attr(r, "roles"), "validator");
  size_t n = 0;
  assert_non_null(pd_self_services(s, &n));
  assert_int_equal(n, 2);
  /* all or nothing: a repeated name changes nothing */
  uint64_t seq = r->seq;
  strcpy(svc[1].name, "p2p");
  const char *why = NULL;
  assert_int_equal(pd_self_replace(s, svc, 2, NULL, 0, NOW + 2, &why), PD_EINVAL);
  assert_non_null(why);
  assert_int_equal(check(s)->seq, seq);
  assert_string_equal(pd_record_attr(check(s), "roles"), "validator");
  /* observations are ignored with --external */
  uint8_t p[20];
  pd_netaddr_t x = A("198.51.100.7:1");
  for (int i = 0; i < 4; i++) {
    memset(p, i + 1, 20);
    assert_false(pd_self_observed(s, p, &x, NOW + 3));
  }
  /* an empty replace clears everything */
  assert_int_equal(pd_self_replace(s, NULL, 0, NULL, 0, NOW + 4, NULL), 0);
  assert_int_equal(check(s)->nservices, 0);
  assert_int_equal(check(s)->nattrs, 0);
  pd_self_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concrete_listen),
      cmocka_unit_test(test_learnt_from_three_peers),
      cmocka_unit_test(test_external_and_replace),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
