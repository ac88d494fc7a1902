/* Unit tests for record: the documented test vector (docs/protocol.md
 * §10.4) byte for byte, round trips, every truncation and every single-byte
 * change refused, each structural rule with its reason, the sequence rules,
 * the setters, the size limit and a plugged-in signature scheme. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"

/* docs/protocol.md §10.4: seed 00 01 .. 1f, network "peerd", seq 1,
 * discovery 192.0.2.1:7411, service p2p -> 192.0.2.1:26656,
 * attributes chain=test-chain-1, version=0.38.0. */
static const char VECTOR_HEX[] =
    "01"
    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    "56475aa75463474c0285df5dbf2bcab73da65135"
    "0000000000000001"
    "05" "7065657264"
    "01" "00000000000000000000ffffc0000201" "1cf3"
    "01" "03" "703270" "00000000000000000000ffffc0000201" "6820"
    "02" "05" "636861696e" "0c" "746573742d636861696e2d31"
    "07" "76657273696f6e" "06" "302e33382e30";

static pd_netaddr_t A(const char *s) {
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(s, 0, &a, NULL, NULL, NULL), 0);
  return a;
}

static void vector_identity(pd_identity_t *id) {
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)i;
  assert_int_equal(pd_identity_from_seed(id, seed), 0);
}

static void vector_record(pd_record_t *r) {
  assert_int_equal(pd_record_init(r, "peerd", 1, NULL), 0);
  r->has_discovery = true;
  r->discovery = A("192.0.2.1:7411");
  pd_netaddr_t svc = A("192.0.2.1:26656");
  assert_int_equal(pd_record_set_service(r, "p2p", &svc, NULL), 0);
  /* set out of order: the record keeps keys sorted */
  assert_int_equal(pd_record_set_attr(r, "version", "0.38.0", NULL), 0);
  assert_int_equal(pd_record_set_attr(r, "chain", "test-chain-1", NULL), 0);
}

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static size_t sign_vector(uint8_t *buf, pd_record_t *r) {
  pd_identity_t id;
  vector_identity(&id);
  vector_record(r);
  size_t len = 0;
  assert_int_equal(pd_record_sign(r, &id, NULL, buf, PD_RECORD_MAX, &len), 0);
  return len;
}

static void test_vector(void **state) {
  (void)state;
  uint8_t buf[PD_RECORD_MAX];
  pd_record_t r;
  size_t len = sign_vector(buf, &r);
  char h[2 * PD_RECORD_MAX + 1];
  hex(buf, len - 64, h);
  if (getenv("RECORD_PRINT")) {
    hex(buf, len, h);
    print_message("record %zu bytes: %s\n", len, h);
    hex(buf, len - 64, h);
  }
  assert_string_equal(h, VECTOR_HEX);
  /* The signature is checked independently of record.c: libsodium over
   * the context string and the content. */
  uint8_t msg[15 + PD_RECORD_MAX];
  memcpy(msg, "peerd-record-v1", 15);
  memcpy(msg + 15, buf, len - 64);
  assert_int_equal(crypto_sign_verify_detached(buf + len - 64, msg, 15 + len - 64, r.pubkey), 0);
  /* And the node id is CometBFT's: SHA-256(pubkey)[0..20). */
  uint8_t d[32];
  crypto_hash_sha256(d, r.pubkey, 32);
  assert_memory_equal(d, r.id, 20);
}

static void test_round_trip(void **state) {
  (void)state;
  uint8_t buf[PD_RECORD_MAX];
  pd_record_t r, back;
  size_t len = sign_vector(buf, &r);
  const char *why = NULL;
  assert_int_equal(pd_record_decode(buf, len, "peerd", NULL, &back, &why), PD_RECORD_OK);
  assert_null(why);
  assert_memory_equal(&r, &back, sizeof r);
  assert_int_equal(back.seq, 1);
  assert_string_equal(pd_record_attr(&back, "chain"), "test-chain-1");
  assert_null(pd_record_attr(&back, "roles"));
  const pd_record_service_t *s = pd_record_service(&back, "p2p");
  assert_non_null(s);
  assert_int_equal(s->addr.port, 26656);
  assert_int_equal(pd_record_peek_seq(buf, len), 1);
  /* any network (NULL) too; another network is refused */
  assert_int_equal(pd_record_decode(buf, len, NULL, NULL, NULL, NULL), PD_RECORD_OK);
  assert_int_equal(pd_record_decode(buf, len, "other", NULL, NULL, &why), PD_RECORD_R_WRONG_NETWORK);
  assert_string_equal(pd_record_reason_name(PD_RECORD_R_WRONG_NETWORK), "record_network");
}

static void test_every_truncation_and_flip_refused(void **state) {
  (void)state;
  uint8_t buf[PD_RECORD_MAX], tmp[PD_RECORD_MAX + 1];
  pd_record_t r, out;
  size_t len = sign_vector(buf, &r);
  memset(&out, 0xAB, sizeof out);
  pd_record_t untouched = out;
  for (size_t n = 0; n < len; n++) {
    const char *why = NULL;
    assert_int_not_equal(pd_record_decode(buf, n, "peerd", NULL, &out, &why), PD_RECORD_OK);
    assert_non_null(why);
  }
  /* a trailing byte */
  memcpy(tmp, buf, len);
  tmp[len] = 0;
  assert_int_not_equal(pd_record_decode(tmp, len + 1, "peerd", NULL, &out, NULL), PD_RECORD_OK);
  for (size_t i = 0; i < len; i++) {
    for (int bit = 0; bit < 8; bit++) {
      memcpy(tmp, buf, len);
      tmp[i] ^= (uint8_t)(1u << bit);
      assert_int_not_equal(pd_record_decode(tmp, len, "peerd", NULL, &out, NULL), PD_RECORD_OK);
    }
  }
  assert_memory_equal(&out, &untouched, sizeof out); /* untouched on failure */
}

/* Re-sign hand-edited content with the vector's key: structural checks
 * must refuse what the signature alone would accept. */
static size_t resign(uint8_t *buf, size_t content_len) {
  pd_identity_t id;
  vector_identity(&id);
  uint8_t msg[15 + PD_RECORD_MAX];
  memcpy(msg, "peerd-record-v1", 15);
  memcpy(msg + 15, buf, content_len);
  assert_int_equal(pd_identity_sign(&id, msg, 15 + content_len, buf + content_len), 0);
  return content_len + 64;
}

static void test_structural_rules(void **state) {
  (void)state;
  pd_identity_t id;
  vector_identity(&id);
  pd_record_t r;
  assert_int_equal(pd_record_init(&r, "peerd", 7, NULL), 0);
  pd_netaddr_t a1 = A("192.0.2.1:1000"), a2 = A("192.0.2.2:2000");
  assert_int_equal(pd_record_set_service(&r, "a", &a1, NULL), 0);
  assert_int_equal(pd_record_set_service(&r, "b", &a2, NULL), 0);
  uint8_t buf[PD_RECORD_MAX];
  size_t len = 0;
  assert_int_equal(pd_record_sign(&r, &id, NULL, buf, sizeof buf, &len), 0);
  size_t c = len - 64;
  const char *why = NULL;
  assert_int_equal(pd_record_decode(buf, len, "peerd", NULL, NULL, NULL), PD_RECORD_OK);
  /* services "a","b" -> "b","a": offsets after the header (53+8+1+5+1) */
  size_t s0 = 53 + 8 + 1 + 5 + 1 + 1; /* first service's length byte */
  uint8_t e[PD_RECORD_MAX];
  memcpy(e, buf, c);
  e[s0 + 1] = 'b';
  e[s0 + 1 + 1 + 18 + 1] = 'a';
  size_t el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, &why), PD_RECORD_R_UNSORTED);
  /* a repeated name */
  memcpy(e, buf, c);
  e[s0 + 1 + 1 + 18 + 1] = 'a';
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_UNSORTED);
  /* an upper-case name */
  memcpy(e, buf, c);
  e[s0 + 1] = 'A';
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_NAME);
  /* port 0 */
  memcpy(e, buf, c);
  e[s0 + 1 + 1 + 16] = 0;
  e[s0 + 1 + 1 + 17] = 0;
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_ADDRESS);
  /* reserved flag bit */
  memcpy(e, buf, c);
  e[53 + 8 + 1 + 5] = 2;
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_MALFORMED);
  /* another key's id (signature fine, id not the key's hash) */
  memcpy(e, buf, c);
  e[33] ^= 1;
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_ID);
  /* version 2 */
  memcpy(e, buf, c);
  e[0] = 2;
  el = resign(e, c);
  assert_int_equal(pd_record_decode(e, el, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_VERSION);
  /* signed by another key */
  pd_identity_t other;
  uint8_t seed[32];
  memset(seed, 9, sizeof seed);
  assert_int_equal(pd_identity_from_seed(&other, seed), 0);
  uint8_t msg[15 + PD_RECORD_MAX];
  memcpy(msg, "peerd-record-v1", 15);
  memcpy(msg + 15, buf, c);
  memcpy(e, buf, c);
  assert_int_equal(pd_identity_sign(&other, msg, 15 + c, e + c), 0);
  assert_int_equal(pd_record_decode(e, len, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_SIGNATURE);
}

static void test_sequence_rules(void **state) {
  (void)state;
  pd_identity_t id;
  vector_identity(&id);
  pd_record_t r;
  uint8_t b1[PD_RECORD_MAX], b2[PD_RECORD_MAX], b3[PD_RECORD_MAX];
  size_t l1, l2, l3;
  vector_record(&r);
  r.seq = 10;
  assert_int_equal(pd_record_sign(&r, &id, NULL, b1, sizeof b1, &l1), 0);
  pd_netaddr_t moved = A("192.0.2.1:26657");
  assert_int_equal(pd_record_set_service(&r, "p2p", &moved, NULL), 0);
  assert_int_equal(pd_record_sign(&r, &id, NULL, b2, sizeof b2, &l2), 0); /* same seq, other content */
  r.seq = 11;
  assert_int_equal(pd_record_sign(&r, &id, NULL, b3, sizeof b3, &l3), 0);
  bool same = true;
  assert_int_equal(pd_record_compare(b1, l1, 10, b1, l1, 10, &same), PD_RECORD_OK);
  assert_true(same);
  assert_int_equal(pd_record_compare(b1, l1, 10, b2, l2, 10, &same), PD_RECORD_R_CONFLICT);
  assert_false(same);
  assert_int_equal(pd_record_compare(b1, l1, 10, b3, l3, 11, &same), PD_RECORD_OK);
  assert_false(same);
  assert_int_equal(pd_record_compare(b3, l3, 11, b1, l1, 10, NULL), PD_RECORD_R_STALE);
  assert_int_equal(pd_record_next_seq(5, 0), 6);
  assert_int_equal(pd_record_next_seq(5, 1700000000000), 1700000000000);
  assert_int_equal(pd_record_next_seq(1700000000000, 1700000000000), 1700000000001);
  assert_true(pd_record_next_seq(UINT64_MAX, 5) == UINT64_MAX);
}

static void test_setters_and_limits(void **state) {
  (void)state;
  pd_record_t r;
  const char *why = NULL;
  assert_int_equal(pd_record_init(&r, "", 1, &why), PD_EINVAL);
  assert_int_equal(pd_record_init(&r, "has space", 1, &why), PD_EINVAL);
  assert_int_equal(pd_record_init(&r, "peerd", 1, NULL), 0);
  pd_netaddr_t a = A("192.0.2.1:1"), zero;
  memset(&zero, 0, sizeof zero);
  assert_int_equal(pd_record_set_service(&r, "P2P", &a, &why), PD_EINVAL);
  assert_int_equal(pd_record_set_service(&r, "-x", &a, &why), PD_EINVAL);
  assert_int_equal(pd_record_set_service(&r, "x", &zero, &why), PD_EINVAL);
  assert_int_equal(pd_record_set_service(&r, "abcdefghijklmnopq", &a, &why), PD_EINVAL); /* 17 */
  assert_int_equal(pd_record_set_attr(&r, "k", "tab\there", &why), PD_EINVAL);
  assert_int_equal(pd_record_set_attr(&r, "k", "", NULL), 0); /* empty value is fine */
  assert_int_equal(pd_record_set_attr(&r, "k", NULL, NULL), 0);
  assert_int_equal(pd_record_set_attr(&r, "k", NULL, NULL), PD_ENOENT);
  char name[8];
  for (int i = 0; i < 8; i++) {
    snprintf(name, sizeof name, "s%d", 7 - i);
    assert_int_equal(pd_record_set_service(&r, name, &a, NULL), 0);
  }
  assert_int_equal(pd_record_set_service(&r, "s9", &a, &why), PD_EFULL);
  assert_int_equal(pd_record_set_service(&r, "s3", &a, NULL), 0); /* replace, not add */
  for (int i = 1; i < 8; i++) assert_true(strcmp(r.services[i - 1].name, r.services[i].name) < 0);
  assert_int_equal(pd_record_del_service(&r, "s3"), 0);
  assert_int_equal(pd_record_del_service(&r, "s3"), PD_ENOENT);
  assert_int_equal(r.nservices, 7);
  /* The largest content does not fit in 512 bytes: refused, not cut. */
  pd_record_t big;
  assert_int_equal(pd_record_init(&big, "abcdefghijklmnopqrstuvwxyz012345", 1, NULL), 0);
  char key[17], val[65];
  memset(val, 'v', 64);
  val[64] = 0;
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "service-name-%03d", i);
    assert_int_equal(pd_record_set_service(&big, key, &a, NULL), 0);
    snprintf(key, sizeof key, "attribute-key%03d", i);
    assert_int_equal(pd_record_set_attr(&big, key, val, NULL), 0);
  }
  pd_identity_t id;
  vector_identity(&id);
  uint8_t buf[PD_RECORD_MAX];
  size_t len = 0;
  assert_int_equal(pd_record_sign(&big, &id, NULL, buf, sizeof buf, &len), PD_ETOOBIG);
  /* Without the attributes (95 + 8 x 35 + 2 + 64 = 441 bytes) it fits. */
  for (int i = 0; i < 8; i++) {
    snprintf(key, sizeof key, "attribute-key%03d", i);
    assert_int_equal(pd_record_set_attr(&big, key, NULL, NULL), 0);
  }
  assert_int_equal(pd_record_sign(&big, &id, NULL, buf, sizeof buf, &len), 0);
  assert_int_equal(len, 441);
  assert_int_equal(pd_record_decode(buf, len, NULL, NULL, NULL, NULL), PD_RECORD_OK);
  /* a buffer too small for the record */
  assert_int_equal(pd_record_sign(&big, &id, NULL, buf, len - 1, &len), PD_ETOOBIG);
}

/* The lab's cheaper scheme: a keyed hash in place of ed25519. */
static int fake_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
                     uint8_t sig[64]) {
  (*(int *)ud)++;
  memset(sig, 0, 64);
  crypto_generichash(sig, 32, msg, len, self->pk, 32);
  return 0;
}

static int fake_verify(void *ud, const uint8_t pk[32], const uint8_t *msg, size_t len,
                       const uint8_t sig[64]) {
  (*(int *)ud)++;
  uint8_t want[64];
  memset(want, 0, 64);
  crypto_generichash(want, 32, msg, len, pk, 32);
  return memcmp(want, sig, 64) == 0 ? 0 : PD_EINVAL;
}

static void test_plugged_scheme(void **state) {
  (void)state;
  int calls = 0;
  pd_record_auth_t auth = {.sign = fake_sign, .verify = fake_verify, .ud = &calls};
  pd_identity_t id;
  vector_identity(&id);
  pd_record_t r;
  vector_record(&r);
  uint8_t buf[PD_RECORD_MAX];
  size_t len;
  assert_int_equal(pd_record_sign(&r, &id, &auth, buf, sizeof buf, &len), 0);
  assert_int_equal(pd_record_decode(buf, len, "peerd", &auth, NULL, NULL), PD_RECORD_OK);
  assert_int_equal(calls, 2);
  /* not an ed25519 signature */
  assert_int_equal(pd_record_decode(buf, len, "peerd", NULL, NULL, NULL), PD_RECORD_R_BAD_SIGNATURE);
  buf[len - 70] ^= 1; /* an attribute byte */
  assert_int_not_equal(pd_record_decode(buf, len, "peerd", &auth, NULL, NULL), PD_RECORD_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vector),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_every_truncation_and_flip_refused),
      cmocka_unit_test(test_structural_rules),
      cmocka_unit_test(test_sequence_rules),
      cmocka_unit_test(test_setters_and_limits),
      cmocka_unit_test(test_plugged_scheme),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
