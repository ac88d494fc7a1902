/* Unit tests for identity: RFC 8032 vectors, node ID derivation, sign and
 * verify, and the node_key file content (round trip and every refusal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "identity.h"

static void unhex(uint8_t *out, const char *hex) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (uint8_t)v;
  }
}

/* RFC 8032 §7.1, TEST 1 and TEST 2. */
static void rfc8032_vectors(void **state) {
  (void)state;
  uint8_t seed[32], pk[32], sig[64], want[64], id[20];
  pd_identity_t me;

  unhex(seed, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  unhex(pk, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  assert_int_equal(pd_identity_from_seed(&me, seed), 0);
  assert_memory_equal(me.pk, pk, 32);
  unhex(id, "21fe31dfa154a261626bf854046fd2271b7bed4b"); /* sha256(pk)[:20] */
  assert_memory_equal(me.id, id, 20);
  assert_int_equal(pd_identity_sign(&me, NULL, 0, sig), 0);
  unhex(want, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33b"
              "acc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  assert_memory_equal(sig, want, 64);
  assert_int_equal(pd_identity_verify(me.pk, NULL, 0, sig), 0);

  unhex(seed, "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
  assert_int_equal(pd_identity_from_seed(&me, seed), 0);
  unhex(pk, "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
  assert_memory_equal(me.pk, pk, 32);
  unhex(id, "39f713d0a644253f04529421b9f51b9b08979d08");
  assert_memory_equal(me.id, id, 20);
  const uint8_t msg[1] = {0x72};
  assert_int_equal(pd_identity_sign(&me, msg, 1, sig), 0);
  unhex(want, "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e1599"
              "6e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
  assert_memory_equal(sig, want, 64);
  pd_identity_wipe(&me);
  uint8_t zero[sizeof me];
  memset(zero, 0, sizeof zero);
  assert_memory_equal(&me, zero, sizeof me);
}

static void sign_verify_and_refusals(void **state) {
  (void)state;
  uint8_t s1[32], s2[32], sig[64], msg[121];
  for (int i = 0; i < 32; i++) {
    s1[i] = (uint8_t)i;
    s2[i] = (uint8_t)(200 - i);
  }
  for (int i = 0; i < 121; i++) msg[i] = (uint8_t)(i * 7);
  pd_identity_t a, b;
  assert_int_equal(pd_identity_from_seed(&a, s1), 0);
  assert_int_equal(pd_identity_from_seed(&b, s2), 0);
  assert_memory_not_equal(a.id, b.id, 20);
  assert_true(pd_identity_id_matches(a.pk, a.id));
  assert_false(pd_identity_id_matches(a.pk, b.id));

  /* Same seed, same identity (the key file is all that must persist). */
  pd_identity_t a2;
  assert_int_equal(pd_identity_from_seed(&a2, s1), 0);
  assert_memory_equal(&a, &a2, sizeof a);

  assert_int_equal(pd_identity_sign(&a, msg, sizeof msg, sig), 0);
  assert_int_equal(pd_identity_verify(a.pk, msg, sizeof msg, sig), 0);
  assert_int_equal(pd_identity_verify(b.pk, msg, sizeof msg, sig), PD_EINVAL); /* wrong key */
  msg[60] ^= 1;
  assert_int_equal(pd_identity_verify(a.pk, msg, sizeof msg, sig), PD_EINVAL); /* tampered */
  msg[60] ^= 1;
  sig[63] ^= 0x80;
  assert_int_equal(pd_identity_verify(a.pk, msg, sizeof msg, sig), PD_EINVAL); /* bad sig */
  sig[63] ^= 0x80;
  assert_int_equal(pd_identity_verify(a.pk, msg, sizeof msg - 1, sig), PD_EINVAL);
  /* A small-order public key (all zero = the identity point's neighbour
   * encodings) is refused whatever the signature. */
  uint8_t zpk[32] = {0}, zsig[64] = {0};
  assert_int_equal(pd_identity_verify(zpk, msg, sizeof msg, zsig), PD_EINVAL);
  assert_int_equal(pd_identity_verify(zpk, NULL, 0, zsig), PD_EINVAL);
  assert_int_equal(pd_identity_from_seed(NULL, s1), PD_EINVAL);
  assert_int_equal(pd_identity_sign(&a, NULL, 3, sig), PD_EINVAL);
}

static void key_file_round_trip(void **state) {
  (void)state;
  uint8_t seed[32];
  unhex(seed, "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  pd_identity_t me, back;
  assert_int_equal(pd_identity_from_seed(&me, seed), 0);
  char buf[PD_IDENTITY_FILE_LEN + 1];
  size_t n = 0;
  assert_int_equal(pd_identity_encode(&me, buf, sizeof buf - 1, &n), PD_ETOOBIG);
  assert_int_equal(pd_identity_encode(&me, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_IDENTITY_FILE_LEN);
  assert_int_equal(n, 132);
  assert_string_equal(buf, "peerd-node-key v1\n"
                           "seed 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n"
                           "id 21fe31dfa154a261626bf854046fd2271b7bed4b\n");
  const char *why = "unset";
  memset(&back, 0xAA, sizeof back);
  assert_int_equal(pd_identity_decode(buf, n, &back, &why), 0);
  assert_memory_equal(&back, &me, sizeof me);
  /* Last newline optional; hex in upper case accepted. */
  assert_int_equal(pd_identity_decode(buf, n - 1, &back, &why), 0);
  char up[PD_IDENTITY_FILE_LEN + 1];
  memcpy(up, buf, sizeof up);
  for (size_t i = 23; i < 23 + 64; i++)
    if (up[i] >= 'a' && up[i] <= 'f') up[i] = (char)(up[i] - 'a' + 'A');
  memset(&back, 0, sizeof back);
  assert_int_equal(pd_identity_decode(up, n, &back, NULL), 0);
  assert_memory_equal(&back, &me, sizeof me);
}

static void key_file_refusals(void **state) {
  (void)state;
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(i * 13 + 5);
  pd_identity_t me, out;
  assert_int_equal(pd_identity_from_seed(&me, seed), 0);
  char good[PD_IDENTITY_FILE_LEN + 1];
  size_t n;
  assert_int_equal(pd_identity_encode(&me, good, sizeof good, &n), 0);

  struct {
    const char *text; /* NULL: use the edited copy */
    int code;
  } cases[] = {
      {"", PD_EFORMAT},
      {"-----BEGIN OPENSSH PRIVATE KEY-----\n", PD_EFORMAT},
      {"peerd-node-key v2\nseed 00\n", PD_EFORMAT},
      {"peerd-node-key v1\n", PD_ECORRUPT},
      {"peerd-node-key v1\nseed 0011\nid 00\n", PD_ECORRUPT},
  };
  const char *why = NULL;
  memset(&out, 0x5A, sizeof out);
  pd_identity_t untouched = out;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    why = NULL;
    assert_int_equal(pd_identity_decode(cases[i].text, strlen(cases[i].text), &out, &why),
                     cases[i].code);
    assert_non_null(why);
    assert_memory_equal(&out, &untouched, sizeof out);
  }

  char t[PD_IDENTITY_FILE_MAX + 8];
  /* One hex digit of the seed changed: the id line no longer matches. */
  memcpy(t, good, n);
  t[30] = t[30] == '0' ? '1' : '0';
  assert_int_equal(pd_identity_decode(t, n, &out, &why), PD_ECORRUPT);
  assert_string_equal(why, "id line does not match the seed");
  /* A non-hex character in the seed. */
  memcpy(t, good, n);
  t[40] = 'g';
  assert_int_equal(pd_identity_decode(t, n, &out, &why), PD_ECORRUPT);
  /* A non-hex character in the id. */
  memcpy(t, good, n);
  t[n - 5] = 'z';
  assert_int_equal(pd_identity_decode(t, n, &out, &why), PD_ECORRUPT);
  /* Cut short inside the id. */
  assert_int_equal(pd_identity_decode(good, n - 10, &out, &why), PD_ECORRUPT);
  /* CRLF line ends. */
  memcpy(t, good, n);
  t[22 + 1 + 64] = '\r';
  assert_int_equal(pd_identity_decode(t, n, &out, &why), PD_ECORRUPT);
  /* Junk after the last line. */
  memcpy(t, good, n);
  memcpy(t + n, "x\n", 2);
  assert_int_equal(pd_identity_decode(t, n + 2, &out, &why), PD_ECORRUPT);
  assert_string_equal(why, "junk after the id line");
  /* Too long. */
  memset(t, 'a', sizeof t);
  assert_int_equal(pd_identity_decode(t, PD_IDENTITY_FILE_MAX + 1, &out, &why), PD_ETOOBIG);
  assert_memory_equal(&out, &untouched, sizeof out);
  assert_int_equal(pd_identity_decode(NULL, 0, &out, &why), PD_EINVAL);
}

/* CometBFT's node_key.json: the key of seed 00..1f (public key
 * 03a107bf...b8). The expected id was computed independently:
 *   python3 -c "import hashlib,base64; k=base64.b64decode('<value>');
 *               print(hashlib.sha256(k[32:]).hexdigest()[:40])"
 * and `base64 -d | tail -c 32 | sha256sum` gives the same. */
static void cometbft_key_file(void **state) {
  (void)state;
  const char *good =
      "{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\",\"value\":"
      "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==\"}}\n";
  pd_identity_t id;
  const char *why = NULL;
  assert_int_equal(pd_identity_decode_any(good, strlen(good), &id, &why), 0);
  char hexid[41];
  for (int i = 0; i < 20; i++) snprintf(hexid + 2 * i, 3, "%02x", id.id[i]);
  assert_string_equal(hexid, "56475aa75463474c0285df5dbf2bcab73da65135");
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)i;
  pd_identity_t want;
  assert_int_equal(pd_identity_from_seed(&want, seed), 0);
  assert_memory_equal(&id, &want, sizeof id);
  /* peerd's own file still goes through _any */
  char text[PD_IDENTITY_FILE_LEN + 1];
  size_t tl = 0;
  assert_int_equal(pd_identity_encode(&want, text, sizeof text, &tl), 0);
  pd_identity_t back;
  assert_int_equal(pd_identity_decode_any(text, tl, &back, NULL), 0);
  assert_memory_equal(&back, &want, sizeof back);
  /* refusals, each with a reason; out untouched */
  const char *mismatch =
      "{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\",\"value\":"
      "\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvhxw3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==\"}}";
  const struct { const char *text; int rc; } bad[] = {
      {mismatch, PD_ECORRUPT},
      {"{\"priv_key\":{\"type\":\"tendermint/PrivKeySecp256k1\",\"value\":\"AAAA\"}}", PD_EFORMAT},
      {"{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\",\"value\":\"AAAA\"}}", PD_ECORRUPT},
      {"{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\",\"value\":\"!!\"}}", PD_ECORRUPT},
      {"{\"priv_key\":{\"type\":\"tendermint/PrivKeyEd25519\"}}", PD_ECORRUPT},
      {"{\"priv_key\":", PD_EFORMAT},
      {"{}", PD_EFORMAT},
  };
  pd_identity_t out;
  memset(&out, 0x5A, sizeof out);
  pd_identity_t untouched = out;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why = NULL;
    assert_int_equal(pd_identity_decode_any(bad[i].text, strlen(bad[i].text), &out, &why), bad[i].rc);
    assert_non_null(why);
  }
  assert_memory_equal(&out, &untouched, sizeof out);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc8032_vectors),
      cmocka_unit_test(sign_verify_and_refusals),
      cmocka_unit_test(key_file_round_trip),
      cmocka_unit_test(key_file_refusals),
      cmocka_unit_test(cometbft_key_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
