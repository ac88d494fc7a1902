/* Unit tests for seal (the v3 session cipher, docs/protocol.md §5) and the
 * protocol's test vectors (§5.7).
 *
 * The seal.c part: ephemeral key pairs, mirrored per-direction keys (checked
 * against crypto_kx's formula computed with libsodium's primitives),
 * sealing and opening, every single-byte tamper, replay / reorder / drop,
 * the null cipher of the lab, key rotation by frames and by bytes, low-order
 * X25519 keys, the transcript and auth message layouts.
 *
 * The vector part: two real state machines (pd_peer) with fixed inputs run
 * the handshake step by step; every frame they send, and every value the
 * handshake derives, is compared byte for byte with the constants V_* below,
 * which docs/protocol.md §5.7 quotes. tests/tools/seal_vectors.py recomputes
 * every constant from the same inputs with Python's hashlib and
 * `cryptography` (no peerd code) and checks that this file and the doc
 * carry exactly those bytes. */
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
#include "peer.h"
#include "rng.h"
#include "seal.h"
#include "wire.h"

static const uint8_t MAGIC[4] = PD_WIRE_MAGIC_DEFAULT_INIT;

/* --- test vectors (docs/protocol.md §5.7) ------------------------------------
 * Inputs: node key seeds 00..1f (dialler) and 20..3f (listener); ephemeral
 * seeds 40..5f and 60..7f; challenges 80..9f and a0..bf; network "peerd",
 * magic f5706431, versions 3..3, timestamp 1700000000, listen 192.0.2.1:7411
 * (dialler) and 192.0.2.2:7411 (listener), agent "peerd/vector", no record,
 * no observed address. "D" is the dialler, "L" the listener. */
static const char V_D_NODE_PK[] = /* 32 bytes */
    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
static const char V_D_NODE_ID[] = "56475aa75463474c0285df5dbf2bcab73da65135"; /* 20 bytes */
static const char V_L_NODE_PK[] = /* 32 bytes */
    "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7";
static const char V_L_NODE_ID[] = "24f6ed6acbfe1009c030d7ca567c33ca48309114"; /* 20 bytes */
static const char V_D_EPH_SK[] = "62093cd92cefd1bcb597c82ad3a8f14f9905d30b298108a8da3ecbc672cfb8dc";
static const char V_D_EPH_PK[] = "20243c2fa724ef40cdd0a518dd546e05b914cad065b4e8a3958079080aac6607";
static const char V_L_EPH_SK[] = "5ede41999638cdcabec37c8db9724c951cee9f4b2aa9e522ef7d01f399abfd4f";
static const char V_L_EPH_PK[] = "a7e09d2129568e8aa5cf96ea7fd9e0f881a5d78bf592269562963f7b6f689050";
static const char V_D_KEYX[] = /* 42 bytes */
    "f570643108000000002020243c2fa724ef40cdd0a518dd546e05b914cad065b4"
    "e8a3958079080aac6607";
static const char V_L_KEYX[] = /* 42 bytes */
    "f5706431080000000020a7e09d2129568e8aa5cf96ea7fd9e0f881a5d78bf592"
    "269562963f7b6f689050";
static const char V_SHARED[] = "9dbcf98d398bcf306881a730e045ec7a2255f0a1e285df58c52bed24c431c53c";
static const char V_KEY_L2D[] = "50db0c9a83d6a75810996dffb08a8cb386402ecbd48675baab70bd16973afae2";
static const char V_KEY_D2L[] = "5456f554f31586207ccf8c025a72fbaa863076d024ce609ffae643de5ec6b286";
static const char V_D_HELLO[] = /* 144 bytes */
    "f57064310100000000860003000356475aa75463474c0285df5dbf2bcab73da6"
    "513503a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc86641255"
    "31b8808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d"
    "9e9f000000006553f1000100000000000000000000ffffc00002011cf3057065"
    "6572640c70656572642f766563746f72";
static const char V_L_HELLO[] = /* 144 bytes */
    "f57064310100000000860003000324f6ed6acbfe1009c030d7ca567c33ca4830"
    "911429acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc932296"
    "6dd7a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbd"
    "bebf000000006553f1000100000000000000000000ffffc00002021cf3057065"
    "6572640c70656572642f766563746f72";
static const char V_D_HELLO_HASH[] = /* 32 bytes */
    "346a6708ac15c9aea8a57d5b5e471ac736c939c85b821df137d8cf89b47a4d96";
static const char V_L_HELLO_HASH[] = /* 32 bytes */
    "6ba98fcc729f3969d3f136a9ee9e644f4b5e8518571bc05b63fd0b7e4e9c39de";
static const char V_TRANSCRIPT[] = /* 32 bytes */
    "47d6722745c193bceed871574ca1bb9acdf58dfcccf6a04593c40747d4108289";
static const char V_D_AUTH_MSG[] = /* 46 bytes */
    "70656572642d617574682d76330047d6722745c193bceed871574ca1bb9acdf5"
    "8dfcccf6a04593c40747d4108289";
static const char V_L_AUTH_MSG[] = /* 46 bytes */
    "70656572642d617574682d76330147d6722745c193bceed871574ca1bb9acdf5"
    "8dfcccf6a04593c40747d4108289";
static const char V_D_SIG[] = /* 64 bytes */
    "e7915700265ce701e64f4de19112dd589a23f0d544d15fe7cefd386aecd35c9a"
    "19d2b3fc009bfd763f177c166c5485c676c6370b950e489cc230b8479d8bbe0b";
static const char V_L_SIG[] = /* 64 bytes */
    "6a6348beae1e2d6f16b3b599774ee776491a6d42ebddb98fd8ade9b399a393ad"
    "4900a9951dda01870a6bf6602ae34eb1e8e60c7941ff64cd2509f394ed57bc0b";
static const char V_D_SEALED_HELLO[] = /* 170 bytes */
    "f57064310900000000a01d00f492bb1e2658612fdce608c40c4752210a5ffa89"
    "1de11702d7b4ad374bbb205f907cf45b5185fb82ce9be99b815fcd1070b79c15"
    "4a1c7b9a707bae212382032d2acc9d2ec66b7f45064be0c91269e18fd269acdb"
    "7d1229b449e338f64f76ccd96714b5bd63ee0569628673423be2c2a6a611de83"
    "6c769468a81e41f7e1e65e6eb7ec822f5559cfb747d69c0be8b6db304a35283c"
    "24beaf0414ab7c491ebe";
static const char V_L_SEALED_HELLO[] = /* 170 bytes */
    "f57064310900000000a06516b287e83f3f7143aad444b4910d9ddca9ed1bdf9d"
    "50a43d57c303f30bde280d4885a8889bab194a318ada404873900fc8efc677fa"
    "57e879bbf948a134596e1aab73bc97a4611aad5e5d4d503d917d4eb670c274a8"
    "60505b6c03c9fc39767125d145a87e0e6c3194372dfce331f5692e19e49e7a49"
    "38a3ee2c31b500c24bad6ab9734f0113867d13b6615a8acb253c8d5d929fb3a4"
    "4ebf89f1d6290e84333e";
static const char V_D_SEALED_ACK[] = /* 100 bytes */
    "f570643109000000005a58592e787856cfdc9e63fa98c234c0218449ba48c5c3"
    "d284347a67d6c6574af37da610c1bf6a8fdcbe78a51f362ce0f0d32b760ca5e0"
    "d316d65b31c72221addc1f1e087815bf04b962dd838c4dd8552415a14f6f4cd9"
    "cba47fa4";
static const char V_L_SEALED_ACK[] = /* 100 bytes */
    "f570643109000000005ae134872fc541d7a444a3068324956aaf2caa8a9dedfe"
    "dacb560e87e30f6fe3ed69b64067f2e6469cb4b217ba6f70121f7e03afa5c95e"
    "d72555befc88565b3b57b9a5ee366256d1bee99a41a54715e276b516544a8472"
    "40d1dc21";
static const char V_KEY_D2L_1[] = /* 32 bytes */
    "d935f2d853b8ebe733256298886b4a80b8398944610708e4e748329d2c0f5efd";
static const char V_KEY_L2D_1[] = /* 32 bytes */
    "d42c99ce3ce3c2b303069e950b36a29c0c501eeeb17a139cbdbcacd3678504f7";
static const char V_D_SEALED_4096[] = /* 44 bytes */
    "f570643109000000002235315248799f678368088e1808c62e57c07c5aa1904b"
    "75d900f7c6a840ce827f5bee";

/* --- helpers ------------------------------------------------------------------ */
static void seq(uint8_t *b, size_t n, uint8_t first) {
  for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(first + i);
}

/* Bytes that differ from a vector are printed in full (the test fails at
 * the end of the vector test, so one run shows every difference). */
static int mismatches;
static void check_hex(const char *name, const uint8_t *got, size_t n, const char *want) {
  char *h = malloc(2 * n + 1);
  assert_non_null(h);
  sodium_bin2hex(h, 2 * n + 1, got, n);
  if (strcmp(h, want) != 0) {
    print_message("VECTOR %s[] = \"%s\"; (%zu bytes)\n", name, h, n);
    mismatches++;
  }
  free(h);
}

/* A seal pair: the dialler's session and the listener's, from fixed seeds. */
typedef struct {
  uint8_t dpk[32], dsk[32], lpk[32], lsk[32];
  pd_seal_t d, l;
} pair_t;

static void pair_init(pair_t *p, bool null_cipher) {
  uint8_t sd[32], sl[32];
  seq(sd, 32, 0x40);
  seq(sl, 32, 0x60);
  assert_int_equal(pd_seal_keypair(sd, p->dpk, p->dsk, null_cipher), 0);
  assert_int_equal(pd_seal_keypair(sl, p->lpk, p->lsk, null_cipher), 0);
  assert_int_equal(pd_seal_init(&p->d, PD_SEAL_DIALLER, p->dpk, p->dsk, p->lpk, null_cipher), 0);
  assert_int_equal(pd_seal_init(&p->l, PD_SEAL_LISTENER, p->lpk, p->lsk, p->dpk, null_cipher), 0);
}

/* A PING inner frame at buf + 10, sealed by s; returns the sealed length. */
static size_t seal_ping(pd_seal_t *s, uint64_t nonce, uint8_t *buf) {
  size_t n = 0;
  assert_int_equal(pd_wire_encode_ping(MAGIC, nonce, buf + PD_WIRE_HEADER_LEN, 64, &n), 0);
  size_t sn = pd_seal_frame(s, MAGIC, buf, n);
  assert_int_equal(sn, n + PD_WIRE_SEAL_OVERHEAD);
  return sn;
}

/* Open a whole sealed frame f[0..n) with s into out; 0 or PD_EINVAL. */
static int open_frame(pd_seal_t *s, const uint8_t *f, size_t n, uint8_t *out) {
  return pd_seal_open(s, f, f + PD_WIRE_HEADER_LEN, n - PD_WIRE_HEADER_LEN, out);
}

/* --- key pairs and keys ------------------------------------------------------- */
static void keypair_from_seed(void **state) {
  (void)state;
  uint8_t seed[32], pk[32], sk[32], pk2[32], sk2[32], want_sk[32], want_pk[32];
  seq(seed, 32, 0x40);
  assert_int_equal(pd_seal_keypair(seed, pk, sk, false), 0);
  /* crypto_kx_seed_keypair: sk = BLAKE2b-256(seed), pk = X25519(sk, 9). */
  crypto_generichash(want_sk, 32, seed, 32, NULL, 0);
  assert_int_equal(crypto_scalarmult_base(want_pk, want_sk), 0);
  assert_memory_equal(sk, want_sk, 32);
  assert_memory_equal(pk, want_pk, 32);
  /* Deterministic; another seed, another key. */
  assert_int_equal(pd_seal_keypair(seed, pk2, sk2, false), 0);
  assert_memory_equal(pk, pk2, 32);
  seed[31] ^= 1;
  assert_int_equal(pd_seal_keypair(seed, pk2, sk2, false), 0);
  assert_memory_not_equal(pk, pk2, 32);
  /* Null (the lab): the seed is both halves. */
  assert_int_equal(pd_seal_keypair(seed, pk2, sk2, true), 0);
  assert_memory_equal(pk2, seed, 32);
  assert_memory_equal(sk2, seed, 32);
  assert_int_equal(pd_seal_keypair(NULL, pk, sk, false), PD_EINVAL);
  assert_int_equal(pd_seal_keypair(seed, NULL, sk, false), PD_EINVAL);
  assert_int_equal(pd_seal_keypair(seed, pk, NULL, false), PD_EINVAL);
}

static void keys_mirrored(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, false);
  assert_memory_equal(p.d.tx.key, p.l.rx.key, 32);
  assert_memory_equal(p.d.rx.key, p.l.tx.key, 32);
  assert_memory_not_equal(p.d.tx.key, p.d.rx.key, 32);
  /* crypto_kx as a formula: keys = BLAKE2b-512(X25519(sk, their pk) ||
   * client_pk || server_pk); server->client = keys[0..32), client->server =
   * keys[32..64); the dialler is the client. Computed from both ends' q. */
  uint8_t qd[32], ql[32], keys[64];
  assert_int_equal(crypto_scalarmult(qd, p.dsk, p.lpk), 0);
  assert_int_equal(crypto_scalarmult(ql, p.lsk, p.dpk), 0);
  assert_memory_equal(qd, ql, 32);
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 64);
  crypto_generichash_update(&st, qd, 32);
  crypto_generichash_update(&st, p.dpk, 32);
  crypto_generichash_update(&st, p.lpk, 32);
  crypto_generichash_final(&st, keys, 64);
  assert_memory_equal(p.d.rx.key, keys, 32);      /* listener -> dialler */
  assert_memory_equal(p.d.tx.key, keys + 32, 32); /* dialler -> listener */
  /* Fresh counters. */
  assert_true(p.d.tx.frames == 0 && p.d.tx.bytes == 0 && p.d.tx.epoch == 0);
  assert_true(p.l.rx.frames == 0 && p.l.rx.bytes == 0 && p.l.rx.epoch == 0);
  assert_false(p.d.null_cipher);
  /* The roles matter: two "dialers" do not agree. */
  pd_seal_t x;
  assert_int_equal(pd_seal_init(&x, PD_SEAL_DIALLER, p.lpk, p.lsk, p.dpk, false), 0);
  assert_memory_not_equal(x.tx.key, p.d.rx.key, 32);
  /* Wipe zeroes everything. */
  pd_seal_wipe(&p.d);
  uint8_t zero[sizeof p.d];
  memset(zero, 0, sizeof zero);
  assert_memory_equal(&p.d, zero, sizeof zero);
}

static void low_order_key_refused(void **state) {
  (void)state;
  uint8_t seed[32], pk[32], sk[32];
  seq(seed, 32, 0x40);
  assert_int_equal(pd_seal_keypair(seed, pk, sk, false), 0);
  /* Points of small order give X25519 an all-zero result: 0, 1, and a point
   * of order 8 (RFC 7748's list, as libsodium's). */
  uint8_t bad[3][32];
  memset(bad, 0, sizeof bad);
  bad[1][0] = 1;
  static const char order8[] = "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800";
  assert_int_equal(sodium_hex2bin(bad[2], 32, order8, 64, NULL, NULL, NULL), 0);
  for (int i = 0; i < 3; i++) {
    pd_seal_t s;
    memset(&s, 0xaa, sizeof s);
    assert_int_equal(pd_seal_init(&s, PD_SEAL_DIALLER, pk, sk, bad[i], false), PD_EINVAL);
    assert_int_equal(pd_seal_init(&s, PD_SEAL_LISTENER, pk, sk, bad[i], false), PD_EINVAL);
    uint8_t zero[PD_SEAL_KEY_LEN] = {0};
    assert_memory_equal(s.tx.key, zero, sizeof zero); /* nothing usable left */
    assert_memory_equal(s.rx.key, zero, sizeof zero);
  }
}

/* --- sealing and opening ------------------------------------------------------ */
static void seal_open_roundtrip(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, false);
  uint8_t f[128], pt[128];
  for (uint64_t i = 0; i < 5; i++) {
    /* dialler -> listener */
    size_t n = seal_ping(&p.d, 1000 + i, f);
    assert_int_equal(n, 44); /* 10 + 18 + 16 */
    static const uint8_t hdr[] = {0xf5, 0x70, 0x64, 0x31, 9, 0, 0, 0, 0, 34};
    assert_memory_equal(f, hdr, sizeof hdr);
    /* The ciphertext is not the plaintext. */
    uint8_t plain[18];
    size_t pn = 0;
    assert_int_equal(pd_wire_encode_ping(MAGIC, 1000 + i, plain, sizeof plain, &pn), 0);
    assert_memory_not_equal(f + 10, plain, pn);
    /* The outer frame decodes as SEALED, the opened inner one as the PING. */
    pd_wire_msg_t m;
    assert_int_equal(pd_wire_decode_frame(MAGIC, f, n, &m), PD_WIRE_R_NONE);
    assert_int_equal(m.type, PD_WIRE_SEALED);
    assert_int_equal(m.sealed.len, 34);
    assert_int_equal(pd_seal_open(&p.l, m.sealed.hdr, m.sealed.data, m.sealed.len, pt), 0);
    assert_memory_equal(pt, plain, pn);
    assert_int_equal(pd_wire_decode_frame(MAGIC, pt, n - PD_WIRE_SEAL_OVERHEAD, &m), PD_WIRE_R_NONE);
    assert_int_equal(m.type, PD_WIRE_PING);
    assert_true(m.nonce == 1000 + i);
    /* listener -> dialler */
    n = seal_ping(&p.l, 2000 + i, f);
    assert_int_equal(open_frame(&p.d, f, n, pt), 0);
    assert_int_equal(pd_wire_decode_frame(MAGIC, pt, n - PD_WIRE_SEAL_OVERHEAD, &m), PD_WIRE_R_NONE);
    assert_true(m.type == PD_WIRE_PING && m.nonce == 2000 + i);
  }
  assert_true(p.d.tx.frames == 5 && p.l.rx.frames == 5 && p.l.tx.frames == 5 && p.d.rx.frames == 5);
  assert_true(p.d.tx.bytes == 5 * 18 && p.l.rx.bytes == 5 * 18);
  /* Same plaintext twice gives different bytes (the nonce moved on). */
  uint8_t a[64], b[64];
  size_t na = seal_ping(&p.d, 7, a), nb = seal_ping(&p.d, 7, b);
  assert_int_equal(na, nb);
  assert_memory_not_equal(a + 10, b + 10, na - 10);
  /* Sizes: an inner frame must hold a header and fit the frame limit. */
  static uint8_t big[PD_WIRE_MAX_FRAME + 64];
  assert_int_equal(pd_seal_frame(&p.d, MAGIC, big, PD_WIRE_HEADER_LEN - 1), 0);
  assert_int_equal(pd_seal_frame(&p.d, MAGIC, big, PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN + 1), 0);
  assert_int_equal(p.d.tx.frames, 7); /* refused frames count nothing */
  /* A frame shorter than header + tag does not open. */
  assert_int_equal(pd_seal_open(&p.l, f, f + 10, PD_WIRE_SEALED_MIN - 1, pt), PD_EINVAL);
}

/* Every single-byte change anywhere in a sealed frame -- outer header
 * (magic, type, flags, length: the associated data), ciphertext, tag --
 * makes it refuse to open, and a refusal advances nothing. */
static void tamper_every_byte(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, false);
  uint8_t f[64], pt[64];
  size_t gn = 0;
  assert_int_equal(pd_wire_encode_getaddr(MAGIC, f + PD_WIRE_HEADER_LEN, 54, &gn), 0);
  size_t n = pd_seal_frame(&p.d, MAGIC, f, gn);
  assert_int_equal(n, 36);
  static const uint8_t masks[] = {0x01, 0x80, 0xff};
  int refused = 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < sizeof masks; k++) {
      uint8_t t[64];
      memcpy(t, f, n);
      t[i] ^= masks[k];
      pd_seal_t rx = p.l;
      assert_int_equal(open_frame(&rx, t, n, pt), PD_EINVAL);
      assert_memory_equal(&rx, &p.l, sizeof rx);
      refused++;
    }
  }
  assert_int_equal(refused, 36 * 3);
  /* Cut or lengthened: the AD still says 26, the tag is looked for elsewhere. */
  pd_seal_t rx = p.l;
  assert_int_equal(pd_seal_open(&rx, f, f + 10, n - 10 - 1, pt), PD_EINVAL);
  uint8_t longer[64];
  memcpy(longer, f, n);
  longer[n] = 0;
  assert_int_equal(pd_seal_open(&rx, f, longer + 10, n - 10 + 1, pt), PD_EINVAL);
  /* The header with the length changed to match a cut frame does not help. */
  uint8_t cut[64];
  memcpy(cut, f, n - 1);
  cut[9] = (uint8_t)(cut[9] - 1);
  assert_int_equal(open_frame(&rx, cut, n - 1, pt), PD_EINVAL);
  assert_memory_equal(&rx, &p.l, sizeof rx);
  /* The untouched frame still opens: the refusals left the state alone. */
  assert_int_equal(open_frame(&p.l, f, n, pt), 0);
  pd_wire_msg_t m;
  assert_int_equal(pd_wire_decode_frame(MAGIC, pt, gn, &m), PD_WIRE_R_NONE);
  assert_int_equal(m.type, PD_WIRE_GETADDR);
  /* Reflected back to its sender, it does not open either (other key). */
  pd_seal_t self_rx = p.d;
  assert_int_equal(open_frame(&self_rx, f, n, pt), PD_EINVAL);
}

static void replay_reorder_drop(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, false);
  uint8_t f[4][64], pt[64];
  size_t n[4];
  for (int i = 0; i < 4; i++) n[i] = seal_ping(&p.d, (uint64_t)i, f[i]);
  pd_seal_t l0 = p.l;
  /* In order: all open. */
  pd_seal_t rx = l0;
  for (int i = 0; i < 4; i++) assert_int_equal(open_frame(&rx, f[i], n[i], pt), 0);
  /* Replay: frame 1 again after 1 (and after 2), frame 0 after 1. */
  rx = l0;
  assert_int_equal(open_frame(&rx, f[0], n[0], pt), 0);
  assert_int_equal(open_frame(&rx, f[1], n[1], pt), 0);
  assert_int_equal(open_frame(&rx, f[1], n[1], pt), PD_EINVAL);
  assert_int_equal(open_frame(&rx, f[0], n[0], pt), PD_EINVAL);
  assert_int_equal(open_frame(&rx, f[2], n[2], pt), 0);
  assert_int_equal(open_frame(&rx, f[1], n[1], pt), PD_EINVAL);
  /* Reorder: 1 before 0. */
  rx = l0;
  assert_int_equal(open_frame(&rx, f[1], n[1], pt), PD_EINVAL);
  assert_int_equal(rx.rx.frames, 0);
  assert_int_equal(open_frame(&rx, f[0], n[0], pt), 0);
  assert_int_equal(open_frame(&rx, f[1], n[1], pt), 0);
  /* Drop: 2 goes missing, 3 does not open. */
  assert_int_equal(open_frame(&rx, f[3], n[3], pt), PD_EINVAL);
  assert_int_equal(rx.rx.frames, 2);
  /* Frames of equal length are interchangeable byte-wise but not as nonces:
   * a frame of the other direction does not open here either. */
  uint8_t g[64];
  size_t gn = seal_ping(&p.l, 0, g);
  rx = l0;
  assert_int_equal(open_frame(&rx, g, gn, pt), PD_EINVAL);
}

/* The lab's null session: same framing and counters, no secrecy. */
static void null_cipher(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, true);
  uint8_t zero[32] = {0};
  assert_true(p.d.null_cipher && p.l.null_cipher);
  assert_memory_equal(p.d.tx.key, zero, 32);
  uint8_t f[64], pt[64], plain[32];
  size_t pn = 0;
  assert_int_equal(pd_wire_encode_ping(MAGIC, 42, plain, sizeof plain, &pn), 0);
  size_t n = seal_ping(&p.d, 42, f);
  static const uint8_t hdr[] = {0xf5, 0x70, 0x64, 0x31, 9, 0, 0, 0, 0, 34};
  assert_memory_equal(f, hdr, sizeof hdr);
  assert_memory_equal(f + 10, plain, pn);        /* the inner frame in clear */
  assert_memory_equal(f + 10 + pn, zero, 16);    /* a zero tag */
  pd_seal_t rx = p.l;
  assert_int_equal(open_frame(&rx, f, n, pt), 0);
  assert_memory_equal(pt, plain, pn);
  assert_int_equal(rx.rx.frames, 1);
  /* Any non-zero tag byte is refused; the clear part is not checked. */
  for (size_t i = 10 + pn; i < n; i++) {
    uint8_t t[64];
    memcpy(t, f, n);
    t[i] = 1;
    pd_seal_t r2 = p.l;
    assert_int_equal(open_frame(&r2, t, n, pt), PD_EINVAL);
    assert_int_equal(r2.rx.frames, 0);
  }
  /* A null frame does not open under a real session, nor a real one here. */
  pair_t r;
  pair_init(&r, false);
  assert_int_equal(open_frame(&r.l, f, n, pt), PD_EINVAL);
  n = seal_ping(&r.d, 42, f);
  assert_int_equal(open_frame(&p.l, f, n, pt), PD_EINVAL);
  /* The counters rotate as in a real session. */
  for (unsigned i = 0; i < PD_SEAL_REKEY_FRAMES; i++) {
    n = seal_ping(&p.d, i, f);
    assert_int_equal(open_frame(&rx, f, n, pt), 0);
  }
  assert_int_equal(p.d.tx.epoch, 1);
  assert_int_equal(rx.rx.epoch, 1);
  assert_int_equal(rx.rx.frames, 1);
}

/* --- key rotation ------------------------------------------------------------ */
/* crypto_kdf_derive_from_key as a formula: BLAKE2b-256 with key = the old
 * key, no message, salt = subkey id (u64 LE) || 8 zero bytes, personal =
 * "peerdrk3" || 8 zero bytes. */
static void next_key(const uint8_t key[32], uint64_t epoch, uint8_t out[32]) {
  uint8_t salt[16] = {0}, personal[16] = {0};
  for (int i = 0; i < 8; i++) salt[i] = (uint8_t)(epoch >> (8 * i));
  memcpy(personal, "peerdrk3", 8);
  assert_int_equal(crypto_generichash_blake2b_salt_personal(out, 32, NULL, 0, key, 32, salt, personal),
                   0);
}

static void rekey_after_4096_frames(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, false);
  uint8_t k0[32], k1[32], k2[32], lk0[32];
  memcpy(k0, p.d.tx.key, 32);
  memcpy(lk0, p.l.tx.key, 32);
  next_key(k0, 1, k1);
  next_key(k1, 2, k2);
  uint8_t f[64], pt[64];
  for (unsigned i = 1; i <= 2 * PD_SEAL_REKEY_FRAMES + 3; i++) {
    size_t n = seal_ping(&p.d, i, f);
    assert_int_equal(open_frame(&p.l, f, n, pt), 0);
    if (i == PD_SEAL_REKEY_FRAMES - 1) {
      assert_int_equal(p.d.tx.epoch, 0);
      assert_int_equal(p.d.tx.frames, PD_SEAL_REKEY_FRAMES - 1);
      assert_memory_equal(p.d.tx.key, k0, 32);
    }
    if (i == PD_SEAL_REKEY_FRAMES) { /* the 4096th frame went under k0; now k1 */
      assert_int_equal(p.d.tx.epoch, 1);
      assert_int_equal(p.d.tx.frames, 0);
      assert_int_equal(p.d.tx.bytes, 0);
      assert_memory_equal(p.d.tx.key, k1, 32);
      uint8_t viakdf[32];
      static const char ctx[8] = {'p', 'e', 'e', 'r', 'd', 'r', 'k', '3'};
      assert_int_equal(crypto_kdf_derive_from_key(viakdf, 32, 1, ctx, k0), 0);
      assert_memory_equal(viakdf, k1, 32);
    }
    if (i == 2 * PD_SEAL_REKEY_FRAMES) {
      assert_int_equal(p.d.tx.epoch, 2);
      assert_memory_equal(p.d.tx.key, k2, 32);
    }
    /* Both ends in step all along. */
    assert_memory_equal(p.d.tx.key, p.l.rx.key, 32);
    assert_true(p.d.tx.frames == p.l.rx.frames && p.d.tx.epoch == p.l.rx.epoch);
  }
  assert_int_equal(p.d.tx.frames, 3);
  /* The other direction did not move. */
  assert_int_equal(p.l.tx.epoch, 0);
  assert_memory_equal(p.l.tx.key, lk0, 32);
  assert_memory_equal(p.d.rx.key, lk0, 32);
  /* A frame sealed under the old key (a replay from epoch 0) does not open. */
  pair_t q;
  pair_init(&q, false);
  size_t n = seal_ping(&q.d, 1, f);
  assert_int_equal(open_frame(&p.l, f, n, pt), PD_EINVAL);
}

/* 16 MiB of inner bytes under one key rotate it even before 4096 frames.
 * Largest inner frames (PD_WIRE_MAX_PAYLOAD - 16 = 262,128 bytes): 64 of
 * them are 16,776,192 bytes (< 16 MiB), the 65th crosses. Counted honestly
 * under the null session (no cipher cost), then around the boundary with
 * the real cipher, the byte count advanced by setting both ends alike. */
static void rekey_after_16_mib(void **state) {
  (void)state;
  const size_t inner = PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN;
  uint8_t *f = malloc(inner + PD_WIRE_SEAL_OVERHEAD), *pt = malloc(inner);
  assert_non_null(f);
  assert_non_null(pt);
  memset(f, 0x5c, inner + PD_WIRE_SEAL_OVERHEAD);
  pair_t z;
  pair_init(&z, true);
  for (int i = 1; i <= 66; i++) {
    size_t n = pd_seal_frame(&z.d, MAGIC, f, inner);
    assert_int_equal(n, PD_WIRE_MAX_FRAME);
    assert_int_equal(open_frame(&z.l, f, n, pt), 0);
    if (i == 64) assert_true(z.d.tx.epoch == 0 && z.d.tx.bytes == 64 * (uint64_t)inner);
    if (i == 65) assert_true(z.d.tx.epoch == 1 && z.d.tx.bytes == 0 && z.d.tx.frames == 0);
    assert_true(z.l.rx.epoch == z.d.tx.epoch && z.l.rx.bytes == z.d.tx.bytes);
  }
  assert_int_equal(z.d.tx.frames, 1);

  pair_t p;
  pair_init(&p, false);
  uint8_t k0[32], k1[32];
  memcpy(k0, p.d.tx.key, 32);
  next_key(k0, 1, k1);
  p.d.tx.bytes = p.l.rx.bytes = PD_SEAL_REKEY_BYTES - inner - 1000; /* as if 16 MiB went before */
  p.d.tx.frames = p.l.rx.frames = 100;
  for (int i = 1; i <= 4; i++) {
    memset(f + PD_WIRE_HEADER_LEN, i, inner);
    size_t n = pd_seal_frame(&p.d, MAGIC, f, inner);
    assert_int_equal(open_frame(&p.l, f, n, pt), 0);
    for (size_t k = 0; k < inner; k += 4096) assert_int_equal(pt[k], i);
    if (i == 1) assert_true(p.d.tx.epoch == 0 && p.d.tx.bytes == PD_SEAL_REKEY_BYTES - 1000);
    if (i == 2) { /* crossed 16 MiB: the next frame goes under k1, counter 0 */
      assert_true(p.d.tx.epoch == 1 && p.d.tx.frames == 0 && p.d.tx.bytes == 0);
      assert_memory_equal(p.d.tx.key, k1, 32);
    }
    assert_memory_equal(p.d.tx.key, p.l.rx.key, 32);
    assert_true(p.d.tx.frames == p.l.rx.frames && p.d.tx.bytes == p.l.rx.bytes);
  }
  assert_int_equal(p.d.tx.epoch, 1);
  assert_int_equal(p.d.tx.bytes, 2 * (uint64_t)inner);
  free(f);
  free(pt);
}

/* --- transcript and auth message ------------------------------------------- */
static void transcript_and_auth_layout(void **state) {
  (void)state;
  uint8_t ed[32], el[32], hd[32], hl[32], t[32], t2[32];
  seq(ed, 32, 1);
  seq(el, 32, 2);
  seq(hd, 32, 3);
  seq(hl, 32, 4);
  pd_seal_transcript(t, MAGIC, ed, el, hd, hl);
  /* BLAKE2b-256 of the 151 bytes, context string without its NUL. */
  assert_int_equal(strlen(PD_SEAL_TRANSCRIPT_CONTEXT), 19);
  uint8_t in[19 + 4 + 4 * 32], *w = in;
  memcpy(w, "peerd-transcript-v3", 19), w += 19;
  memcpy(w, MAGIC, 4), w += 4;
  memcpy(w, ed, 32), w += 32;
  memcpy(w, el, 32), w += 32;
  memcpy(w, hd, 32), w += 32;
  memcpy(w, hl, 32), w += 32;
  assert_int_equal(w - in, 151);
  crypto_generichash(t2, 32, in, sizeof in, NULL, 0);
  assert_memory_equal(t, t2, 32);
  /* Every input matters, and the order (roles) too. */
  pd_seal_transcript(t2, MAGIC, el, ed, hd, hl);
  assert_memory_not_equal(t, t2, 32);
  pd_seal_transcript(t2, MAGIC, ed, el, hl, hd);
  assert_memory_not_equal(t, t2, 32);
  uint8_t other_magic[4] = {0xf5, 1, 2, 3};
  pd_seal_transcript(t2, other_magic, ed, el, hd, hl);
  assert_memory_not_equal(t, t2, 32);
  hl[31] ^= 1;
  pd_seal_transcript(t2, MAGIC, ed, el, hd, hl);
  assert_memory_not_equal(t, t2, 32);
  /* pd_seal_hash is plain BLAKE2b-256. */
  uint8_t h1[32], h2[32];
  pd_seal_hash(in, sizeof in, h1);
  crypto_generichash(h2, 32, in, sizeof in, NULL, 0);
  assert_memory_equal(h1, h2, 32);

  /* The auth message: "peerd-auth-v3" (13) || role (1) || T (32) = 46. */
  assert_int_equal(PD_SEAL_AUTH_MSG_LEN, 46);
  assert_int_equal(strlen(PD_SEAL_AUTH_CONTEXT), 13);
  uint8_t m0[PD_SEAL_AUTH_MSG_LEN + 1], m1[PD_SEAL_AUTH_MSG_LEN + 1];
  m0[46] = m1[46] = 0xee; /* not written past 46 */
  pd_seal_auth_message(m0, PD_SEAL_DIALLER, t);
  pd_seal_auth_message(m1, PD_SEAL_LISTENER, t);
  assert_memory_equal(m0, "peerd-auth-v3", 13);
  assert_int_equal(m0[13], 0);
  assert_int_equal(m1[13], 1);
  assert_memory_equal(m0 + 14, t, 32);
  assert_memory_equal(m1 + 14, t, 32);
  assert_memory_equal(m1, m0, 13);
  assert_int_equal(m0[46], 0xee);
  assert_int_equal(m1[46], 0xee);
  assert_int_equal(PD_SEAL_DIALLER, 0);
  assert_int_equal(PD_SEAL_LISTENER, 1);
}

/* --- test vectors -------------------------------------------------------------- */
/* One state machine and every byte it sent so far. */
typedef struct {
  pd_peer_t *p;
  uint8_t out[4096];
  size_t len, read;
  int done, closed;
  const char *reason; /* of the CLOSE */
  bool misbehaved;
} vside_t;

static void vdrain(vside_t *s) {
  pd_peer_action_t a;
  while (pd_peer_poll(s->p, &a)) {
    if (a.type == PD_PEER_A_SEND) {
      assert_true(s->len + a.send.len <= sizeof s->out);
      memcpy(s->out + s->len, a.send.data, a.send.len);
      s->len += a.send.len;
    } else if (a.type == PD_PEER_A_HANDSHAKE_DONE) {
      s->done++;
    } else if (a.type == PD_PEER_A_CLOSE) {
      s->closed++;
      s->reason = a.close.reason;
      s->misbehaved = a.close.misbehaved;
    }
  }
}

/* The next whole frame this side sent (by its header's length). */
static const uint8_t *vnext(vside_t *s, size_t *n) {
  assert_true(s->len - s->read >= PD_WIRE_HEADER_LEN);
  const uint8_t *f = s->out + s->read;
  size_t len = PD_WIRE_HEADER_LEN + ((size_t)f[6] << 24 | (size_t)f[7] << 16 | (size_t)f[8] << 8 | f[9]);
  assert_true(s->len - s->read >= len);
  s->read += len;
  *n = len;
  return f;
}

static void vfeed(vside_t *to, const uint8_t *f, size_t n, int64_t now) {
  assert_int_equal(pd_peer_on_bytes(to->p, f, n, now), 0);
  vdrain(to);
}

static void vpeer(vside_t *s, const pd_identity_t *id, pd_peer_dir_t dir, uint8_t eph_first,
                  uint8_t chal_first, const pd_netaddr_t *listen, int64_t now) {
  uint8_t eph[32], chal[32];
  seq(eph, 32, eph_first);
  seq(chal, 32, chal_first);
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = id;
  prm.magic = MAGIC;
  prm.network = "peerd";
  prm.agent = "peerd/vector";
  prm.dir = dir;
  prm.listen = listen;
  prm.challenge = chal;
  prm.eph_seed = eph;
  pd_rng_t rng;
  pd_rng_seed(&rng, 1);
  memset(s, 0, sizeof *s);
  assert_int_equal(pd_peer_new(&s->p, &prm, &rng, now), 0);
  vdrain(s);
}

static pd_netaddr_t doc_addr(uint8_t last) {
  pd_netaddr_t a;
  memset(&a, 0, sizeof a);
  a.ip[10] = a.ip[11] = 0xff;
  a.ip[12] = 192;
  a.ip[14] = 2;
  a.ip[15] = last;
  a.port = 7411;
  return a;
}

static void vectors(void **state) {
  (void)state;
  mismatches = 0;
  const int64_t now = 1700000000000; /* HELLO timestamp 1700000000 */
  uint8_t seed[32];
  pd_identity_t idd, idl;
  seq(seed, 32, 0x00);
  assert_int_equal(pd_identity_from_seed(&idd, seed), 0);
  seq(seed, 32, 0x20);
  assert_int_equal(pd_identity_from_seed(&idl, seed), 0);
  check_hex("V_D_NODE_PK", idd.pk, 32, V_D_NODE_PK);
  check_hex("V_D_NODE_ID", idd.id, 20, V_D_NODE_ID);
  check_hex("V_L_NODE_PK", idl.pk, 32, V_L_NODE_PK);
  check_hex("V_L_NODE_ID", idl.id, 20, V_L_NODE_ID);

  /* Ephemeral keys and the session keys, through seal.c. */
  pair_t p;
  pair_init(&p, false);
  check_hex("V_D_EPH_SK", p.dsk, 32, V_D_EPH_SK);
  check_hex("V_D_EPH_PK", p.dpk, 32, V_D_EPH_PK);
  check_hex("V_L_EPH_SK", p.lsk, 32, V_L_EPH_SK);
  check_hex("V_L_EPH_PK", p.lpk, 32, V_L_EPH_PK);
  uint8_t q[32];
  assert_int_equal(crypto_scalarmult(q, p.dsk, p.lpk), 0);
  check_hex("V_SHARED", q, 32, V_SHARED);
  check_hex("V_KEY_L2D", p.d.rx.key, 32, V_KEY_L2D);
  check_hex("V_KEY_D2L", p.d.tx.key, 32, V_KEY_D2L);

  /* The two state machines, one message at a time. */
  pd_netaddr_t ld = doc_addr(1), ll = doc_addr(2);
  vside_t *d = calloc(1, sizeof *d), *l = calloc(1, sizeof *l);
  assert_non_null(d);
  assert_non_null(l);
  vpeer(d, &idd, PD_PEER_OUTBOUND, 0x40, 0x80, &ld, now);
  vpeer(l, &idl, PD_PEER_INBOUND, 0x60, 0xa0, &ll, now);
  size_t dkn, lkn, dhn, lhn, dan, lan;
  const uint8_t *dk = vnext(d, &dkn), *lk = vnext(l, &lkn);
  assert_int_equal(d->read, d->len); /* KEYX alone until the peer's arrives */
  check_hex("V_D_KEYX", dk, dkn, V_D_KEYX);
  check_hex("V_L_KEYX", lk, lkn, V_L_KEYX);
  vfeed(d, lk, lkn, now); /* the dialler keys, its HELLO goes out sealed */
  const uint8_t *dh = vnext(d, &dhn);
  vfeed(l, dk, dkn, now);
  const uint8_t *lh = vnext(l, &lhn);
  check_hex("V_D_SEALED_HELLO", dh, dhn, V_D_SEALED_HELLO);
  check_hex("V_L_SEALED_HELLO", lh, lhn, V_L_SEALED_HELLO);
  vfeed(l, dh, dhn, now); /* the listener checks it and signs */
  const uint8_t *la = vnext(l, &lan);
  vfeed(d, lh, lhn, now);
  const uint8_t *da = vnext(d, &dan);
  check_hex("V_D_SEALED_ACK", da, dan, V_D_SEALED_ACK);
  check_hex("V_L_SEALED_ACK", la, lan, V_L_SEALED_ACK);
  assert_int_equal(d->done + l->done, 0);
  vfeed(d, la, lan, now);
  vfeed(l, da, dan, now);
  assert_int_equal(d->done, 1);
  assert_int_equal(l->done, 1);
  assert_int_equal(d->closed + l->closed, 0);
  assert_int_equal(pd_peer_state(d->p), PD_PEER_READY);
  assert_int_equal(pd_peer_state(l->p), PD_PEER_READY);

  /* Open what they sent with the session keys; the inner frames. */
  pd_seal_t dsess = p.d, lsess = p.l; /* fresh copies: frame 0, epoch 0 */
  uint8_t dhello[1100], lhello[1100], dack[128], lack[128];
  assert_int_equal(open_frame(&lsess, dh, dhn, dhello), 0);
  assert_int_equal(open_frame(&dsess, lh, lhn, lhello), 0);
  assert_int_equal(open_frame(&lsess, da, dan, dack), 0);
  assert_int_equal(open_frame(&dsess, la, lan, lack), 0);
  size_t dhi = dhn - PD_WIRE_SEAL_OVERHEAD, lhi = lhn - PD_WIRE_SEAL_OVERHEAD;
  check_hex("V_D_HELLO", dhello, dhi, V_D_HELLO);
  check_hex("V_L_HELLO", lhello, lhi, V_L_HELLO);
  /* The HELLO is the codec's encoding of the fixed fields. */
  pd_wire_msg_t m;
  assert_int_equal(pd_wire_decode_frame(MAGIC, dhello, dhi, &m), PD_WIRE_R_NONE);
  assert_int_equal(m.type, PD_WIRE_HELLO);
  assert_true(m.hello.min_version == 3 && m.hello.max_version == 3);
  assert_true(m.hello.timestamp == 1700000000 && m.hello.has_listen);
  assert_true(pd_netaddr_equal(&m.hello.listen, &ld));
  assert_string_equal(m.hello.agent, "peerd/vector");
  assert_string_equal(m.hello.network, "peerd");
  assert_true(m.hello.record_len == 0 && !m.hello.has_observed);
  uint8_t reenc[1100];
  size_t rn = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &m.hello, reenc, sizeof reenc, &rn), 0);
  assert_int_equal(rn, dhi);
  assert_memory_equal(reenc, dhello, rn);

  /* Hashes, transcript, what each side signs, the signatures. */
  uint8_t hd[32], hl[32], t[32], md[46], ml[46];
  pd_seal_hash(dhello, dhi, hd);
  pd_seal_hash(lhello, lhi, hl);
  check_hex("V_D_HELLO_HASH", hd, 32, V_D_HELLO_HASH);
  check_hex("V_L_HELLO_HASH", hl, 32, V_L_HELLO_HASH);
  pd_seal_transcript(t, MAGIC, p.dpk, p.lpk, hd, hl);
  check_hex("V_TRANSCRIPT", t, 32, V_TRANSCRIPT);
  pd_seal_auth_message(md, PD_SEAL_DIALLER, t);
  pd_seal_auth_message(ml, PD_SEAL_LISTENER, t);
  check_hex("V_D_AUTH_MSG", md, 46, V_D_AUTH_MSG);
  check_hex("V_L_AUTH_MSG", ml, 46, V_L_AUTH_MSG);
  assert_int_equal(dack[4], PD_WIRE_HELLO_ACK);
  assert_int_equal(dan - PD_WIRE_SEAL_OVERHEAD, PD_WIRE_HEADER_LEN + 64);
  check_hex("V_D_SIG", dack + 10, 64, V_D_SIG);
  check_hex("V_L_SIG", lack + 10, 64, V_L_SIG);
  assert_int_equal(crypto_sign_verify_detached(dack + 10, md, 46, idd.pk), 0);
  assert_int_equal(crypto_sign_verify_detached(lack + 10, ml, 46, idl.pk), 0);
  /* A signature is for its role only. */
  assert_int_not_equal(crypto_sign_verify_detached(dack + 10, ml, 46, idd.pk), 0);

  /* Frame #4096 of the dialler: frames 0 and 1 are its HELLO and HELLO_ACK
   * (as the state machine sent them), 2..4095 anything (PINGs here), then the
   * key is rotated and frame #4096, a PING with nonce 4096, goes under the
   * epoch-1 key with counter 0. The listener opens all of them. */
  pd_seal_t tx = p.d, rx = p.l;
  uint8_t f[PD_WIRE_HEADER_LEN + 1100], pt[1100];
  memcpy(f + PD_WIRE_HEADER_LEN, dhello, dhi);
  assert_int_equal(pd_seal_frame(&tx, MAGIC, f, dhi), dhn);
  assert_memory_equal(f, dh, dhn);
  memcpy(f + PD_WIRE_HEADER_LEN, dack, dan - PD_WIRE_SEAL_OVERHEAD);
  assert_int_equal(pd_seal_frame(&tx, MAGIC, f, dan - PD_WIRE_SEAL_OVERHEAD), dan);
  assert_memory_equal(f, da, dan);
  assert_int_equal(open_frame(&rx, dh, dhn, pt), 0);
  assert_int_equal(open_frame(&rx, da, dan, pt), 0);
  for (uint64_t i = 2; i < PD_SEAL_REKEY_FRAMES; i++) {
    size_t n = seal_ping(&tx, i, f);
    assert_int_equal(open_frame(&rx, f, n, pt), 0);
  }
  assert_true(tx.tx.epoch == 1 && tx.tx.frames == 0);
  check_hex("V_KEY_D2L_1", tx.tx.key, 32, V_KEY_D2L_1);
  size_t n4096 = seal_ping(&tx, 4096, f);
  check_hex("V_D_SEALED_4096", f, n4096, V_D_SEALED_4096);
  assert_int_equal(open_frame(&rx, f, n4096, pt), 0);
  assert_int_equal(pd_wire_decode_frame(MAGIC, pt, n4096 - PD_WIRE_SEAL_OVERHEAD, &m), PD_WIRE_R_NONE);
  assert_true(m.type == PD_WIRE_PING && m.nonce == 4096);
  /* The other direction's first rotated key, the same way. */
  pd_seal_t ltx = p.l;
  for (uint64_t i = 0; i < PD_SEAL_REKEY_FRAMES; i++) seal_ping(&ltx, i, f);
  assert_int_equal(ltx.tx.epoch, 1);
  check_hex("V_KEY_L2D_1", ltx.tx.key, 32, V_KEY_L2D_1);

  pd_peer_free(d->p);
  pd_peer_free(l->p);
  free(d);
  free(l);
  pd_identity_wipe(&idd);
  pd_identity_wipe(&idl);
  if (mismatches) fail_msg("%d vectors differ (printed above)", mismatches);
}

/* A low-order KEYX from the peer ends the connection before anything else
 * is sent: auth_failed. */
static void peer_low_order_keyx(void **state) {
  (void)state;
  uint8_t seed[32];
  seq(seed, 32, 0x00);
  pd_identity_t id;
  assert_int_equal(pd_identity_from_seed(&id, seed), 0);
  vside_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  vpeer(s, &id, PD_PEER_OUTBOUND, 0x40, 0x80, NULL, 1700000000000);
  uint8_t zero[32] = {0}, f[64];
  size_t n = 0;
  assert_int_equal(pd_wire_encode_keyx(MAGIC, zero, f, sizeof f, &n), 0);
  size_t before = s->len;
  vfeed(s, f, n, 1700000000000);
  assert_int_equal(s->closed, 1);
  assert_string_equal(s->reason, "auth_failed");
  assert_false(s->misbehaved); /* unauthenticated: maybe put there on the path */
  assert_int_equal(pd_peer_state(s->p), PD_PEER_CLOSED);
  /* What went out after KEYX is a plain GOODBYE auth_failed, no HELLO. */
  assert_true(s->len > before);
  pd_wire_msg_t m;
  size_t fn = 0;
  s->read = before;
  const uint8_t *g = vnext(s, &fn);
  assert_int_equal(pd_wire_decode_frame(MAGIC, g, fn, &m), PD_WIRE_R_NONE);
  assert_int_equal(m.type, PD_WIRE_GOODBYE);
  assert_int_equal(m.bye.code, PD_WIRE_BYE_AUTH);
  assert_int_equal(s->read, s->len);
  pd_peer_free(s->p);
  free(s);
  pd_identity_wipe(&id);
}

/* docs/protocol.md §5.5, what a state machine accepts when, at the level of
 * frames: a listener (the vector one) and a scripted dialler holding the
 * vector session (pair_init's keys are the vector's). */
typedef struct {
  vside_t *l;
  pair_t s;
  pd_identity_t id;
} lst_t;

static void lst_new(lst_t *t, bool keyed) {
  uint8_t seed[32];
  seq(seed, 32, 0x20);
  assert_int_equal(pd_identity_from_seed(&t->id, seed), 0);
  pair_init(&t->s, false);
  t->l = calloc(1, sizeof *t->l);
  assert_non_null(t->l);
  vpeer(t->l, &t->id, PD_PEER_INBOUND, 0x60, 0xa0, NULL, 1700000000000);
  size_t n;
  vnext(t->l, &n); /* its KEYX */
  if (keyed) {
    uint8_t f[64];
    assert_int_equal(pd_wire_encode_keyx(MAGIC, t->s.dpk, f, sizeof f, &n), 0);
    vfeed(t->l, f, n, 1700000000000);
    const uint8_t *h = vnext(t->l, &n); /* its sealed HELLO */
    uint8_t pt[1100];
    assert_int_equal(open_frame(&t->s.d, h, n, pt), 0);
    assert_int_equal(pt[4], PD_WIRE_HELLO);
  }
  assert_int_equal(t->l->closed, 0);
}

static void lst_free(lst_t *t) {
  pd_peer_free(t->l->p);
  free(t->l);
  pd_identity_wipe(&t->id);
}

/* Feed an inner frame sealed by the scripted dialler. */
static void lst_sealed(lst_t *t, const uint8_t *inner, size_t n) {
  uint8_t f[PD_WIRE_HEADER_LEN + 512];
  assert_true(n <= 512 - PD_WIRE_TAG_LEN);
  memcpy(f + PD_WIRE_HEADER_LEN, inner, n);
  size_t sn = pd_seal_frame(&t->s.d, MAGIC, f, n);
  assert_true(sn > 0);
  vfeed(t->l, f, sn, 1700000000000);
}

static void lst_expect(lst_t *t, const char *reason, bool misbehaved) {
  assert_int_equal(t->l->closed, 1);
  assert_string_equal(t->l->reason, reason);
  assert_int_equal(t->l->misbehaved, misbehaved);
  assert_int_equal(pd_peer_state(t->l->p), PD_PEER_CLOSED);
}

/* The GOODBYE the listener sent last: plain (keyed = false) or sealed. */
static void lst_goodbye(lst_t *t, bool keyed, uint16_t code, const char *text_has) {
  size_t n;
  const uint8_t *f = vnext(t->l, &n);
  uint8_t pt[512];
  pd_wire_msg_t m;
  if (keyed) {
    assert_int_equal(f[4], PD_WIRE_SEALED);
    assert_int_equal(open_frame(&t->s.d, f, n, pt), 0);
    assert_int_equal(pd_wire_decode_frame(MAGIC, pt, n - PD_WIRE_SEAL_OVERHEAD, &m), PD_WIRE_R_NONE);
  } else {
    assert_int_equal(pd_wire_decode_frame(MAGIC, f, n, &m), PD_WIRE_R_NONE);
  }
  assert_int_equal(m.type, PD_WIRE_GOODBYE);
  assert_int_equal(m.bye.code, code);
  assert_non_null(strstr(m.bye.text, text_has));
  assert_int_equal(t->l->read, t->l->len); /* and nothing after it */
}

static void accepted_when(void **state) {
  (void)state;
  uint8_t f[1100], g[1100];
  size_t n = 0;
  lst_t t;
  /* Before the peer's KEYX. A SEALED frame: not_sealed. */
  lst_new(&t, false);
  pair_t other;
  pair_init(&other, false);
  n = seal_ping(&other.d, 1, f);
  vfeed(t.l, f, n, 1700000000000);
  lst_expect(&t, "not_sealed", true);
  lst_goodbye(&t, false, PD_WIRE_BYE_PROTOCOL, "not_sealed");
  lst_free(&t);
  /* A plain PING: unexpected_message. */
  lst_new(&t, false);
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, f, sizeof f, &n), 0);
  vfeed(t.l, f, n, 1700000000000);
  lst_expect(&t, "unexpected_message", true);
  lst_goodbye(&t, false, PD_WIRE_BYE_PROTOCOL, "unexpected_message");
  lst_free(&t);
  /* A v2 peer's plain HELLO: incompatible_version, saying why, no blame. */
  lst_new(&t, false);
  pd_wire_msg_t m;
  assert_int_equal(sodium_hex2bin(g, sizeof g, V_D_HELLO, strlen(V_D_HELLO), NULL, &n, NULL), 0);
  assert_int_equal(pd_wire_decode_frame(MAGIC, g, n, &m), PD_WIRE_R_NONE);
  m.hello.min_version = m.hello.max_version = 2;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &m.hello, f, sizeof f, &n), 0);
  vfeed(t.l, f, n, 1700000000000);
  lst_expect(&t, "incompatible_version", false);
  lst_goodbye(&t, false, PD_WIRE_BYE_VERSION, "this peer speaks 3..3 (v3: encrypted sessions), you 2..2");
  lst_free(&t);
  /* A plain GOODBYE is understood. */
  lst_new(&t, false);
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, PD_WIRE_BYE_TOO_MANY, "full", f, sizeof f, &n), 0);
  vfeed(t.l, f, n, 1700000000000);
  lst_expect(&t, "goodbye", false);
  lst_free(&t);

  /* After it: any plain frame is not_sealed (a PING, a second KEYX, a
   * GOODBYE), not blamed on the peer (unauthenticated bytes: anyone on the
   * path can inject them); the answer is sealed. */
  for (int k = 0; k < 3; k++) {
    lst_new(&t, true);
    if (k == 0) assert_int_equal(pd_wire_encode_ping(MAGIC, 1, f, sizeof f, &n), 0);
    if (k == 1) assert_int_equal(pd_wire_encode_keyx(MAGIC, t.s.dpk, f, sizeof f, &n), 0);
    if (k == 2) assert_int_equal(pd_wire_encode_goodbye(MAGIC, 0, NULL, f, sizeof f, &n), 0);
    vfeed(t.l, f, n, 1700000000000);
    lst_expect(&t, "not_sealed", false);
    lst_goodbye(&t, true, PD_WIRE_BYE_PROTOCOL, "not_sealed");
    lst_free(&t);
  }
  /* After it, a frame whose outer header does not parse (bad flags): its
   * reason, not blamed either. */
  lst_new(&t, true);
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, g, sizeof g, &n), 0);
  memcpy(f + PD_WIRE_HEADER_LEN, g, n);
  size_t fn = pd_seal_frame(&t.s.d, MAGIC, f, n);
  f[5] = 0x01;
  vfeed(t.l, f, fn, 1700000000000);
  lst_expect(&t, "bad_flags", false);
  lst_free(&t);
  /* A sealed frame that does not open: bad_mac, not misbehaviour, GOODBYE
   * sealed. */
  lst_new(&t, true);
  assert_int_equal(sodium_hex2bin(g, sizeof g, V_D_HELLO, strlen(V_D_HELLO), NULL, &n, NULL), 0);
  memcpy(f + PD_WIRE_HEADER_LEN, g, n);
  size_t sn = pd_seal_frame(&t.s.d, MAGIC, f, n);
  f[sn - 1] ^= 0x20;
  vfeed(t.l, f, sn, 1700000000000);
  lst_expect(&t, "bad_mac", false);
  lst_goodbye(&t, true, PD_WIRE_BYE_PROTOCOL, "bad_mac");
  lst_free(&t);
  /* Inside: a SEALED frame is not_sealed, a KEYX unexpected_message, a
   * PING before HELLO unexpected_message, a malformed frame its reason. */
  lst_new(&t, true);
  n = seal_ping(&other.d, 2, g);
  lst_sealed(&t, g, n);
  lst_expect(&t, "not_sealed", true);
  lst_goodbye(&t, true, PD_WIRE_BYE_PROTOCOL, "not_sealed");
  lst_free(&t);
  lst_new(&t, true);
  assert_int_equal(pd_wire_encode_keyx(MAGIC, t.s.dpk, g, sizeof g, &n), 0);
  lst_sealed(&t, g, n);
  lst_expect(&t, "unexpected_message", true);
  lst_free(&t);
  lst_new(&t, true);
  assert_int_equal(pd_wire_encode_ping(MAGIC, 5, g, sizeof g, &n), 0);
  lst_sealed(&t, g, n);
  lst_expect(&t, "unexpected_message", true);
  lst_free(&t);
  lst_new(&t, true);
  assert_int_equal(pd_wire_encode_ping(MAGIC, 5, g, sizeof g, &n), 0);
  g[n++] = 0; /* a byte after the frame inside the seal */
  lst_sealed(&t, g, n);
  lst_expect(&t, "bad_length", true);
  lst_free(&t);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keypair_from_seed),
      cmocka_unit_test(keys_mirrored),
      cmocka_unit_test(low_order_key_refused),
      cmocka_unit_test(seal_open_roundtrip),
      cmocka_unit_test(tamper_every_byte),
      cmocka_unit_test(replay_reorder_drop),
      cmocka_unit_test(null_cipher),
      cmocka_unit_test(rekey_after_4096_frames),
      cmocka_unit_test(rekey_after_16_mib),
      cmocka_unit_test(transcript_and_auth_layout),
      cmocka_unit_test(vectors),
      cmocka_unit_test(peer_low_order_keyx),
      cmocka_unit_test(accepted_when),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
