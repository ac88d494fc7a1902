/* Unit tests for dhtsess: a handshake between two fixed keys gives both
 * sides the same keys (and the documented key-schedule vector), messages
 * open only under the right key, the replay window (out of order inside
 * it, duplicates and too-old counters refused, the window never moved by a
 * packet that does not open), the null cipher's layout, the session table's
 * LRU bound and idle expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dhtsess.h"
#include "dhtwire.h"
#include "err.h"
#include "identity.h"

#define NOW 1700000000000LL
#ifndef INIT_KEY_HEX
#define INIT_KEY_HEX "7c1793388a6d8822845535c52f55ad6d1758d9f59f1d2affa2b54fc8f3de451f"
#endif

typedef struct pair {
  pd_identity_t a, b;
  pd_dht_crypto_t ca, cb;
  pd_netaddr_t ea, eb;
  uint8_t challenge[PD_DHT_WHOAREYOU_LEN];
  pd_dht_session_t sa, sb; /* A's session with B, B's with A */
} pair_t;

static void ident(pd_identity_t *id, uint8_t k) {
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(k + i);
  assert_int_equal(pd_identity_from_seed(id, seed), 0);
}

static void addr(pd_netaddr_t *a, uint8_t last, uint16_t port) {
  memset(a, 0, sizeof *a);
  a->ip[10] = a->ip[11] = 0xff;
  a->ip[12] = 192, a->ip[13] = 0, a->ip[14] = 2, a->ip[15] = last;
  a->port = port;
}

/* A handshake A -> B carrying msg; B's opened plaintext must equal it. */
static void handshake(pair_t *p, bool null_cipher) {
  memset(p, 0, sizeof *p);
  ident(&p->a, 0);
  ident(&p->b, 100);
  p->ca.self = &p->a;
  p->cb.self = &p->b;
  p->ca.null_cipher = p->cb.null_cipher = null_cipher;
  addr(&p->ea, 1, 7411);
  addr(&p->eb, 2, 7411);
  uint8_t nonce[PD_DHT_NONCE_LEN], id_nonce[PD_DHT_ID_NONCE_LEN];
  memset(nonce, 0xA5, sizeof nonce);
  memset(id_nonce, 0x3C, sizeof id_nonce);
  pd_dht_whoareyou_encode(p->challenge, nonce, p->b.id, id_nonce, p->b.pk, 0);
  pd_dht_packet_t wp;
  assert_int_equal(pd_dht_packet_decode(p->challenge, sizeof p->challenge, &wp), PD_DHTW_OK);
  uint8_t eph_seed[32];
  memset(eph_seed, 0x11, sizeof eph_seed);
  const uint8_t msg[17] = {PD_DHT_PING, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9};
  uint8_t pkt[PD_DHT_MAX_PACKET];
  size_t len = 0;
  assert_int_equal(pd_dht_handshake_initiate(&p->ca, p->challenge, &wp, &p->eb, eph_seed, NULL, 0,
                                             0, msg, sizeof msg, &p->sa, pkt, sizeof pkt, &len, NOW),
                   0);
  assert_int_equal(len, PD_DHT_HANDSHAKE_FIXED + sizeof msg + PD_DHT_TAG_LEN);
  pd_dht_packet_t hp;
  assert_int_equal(pd_dht_packet_decode(pkt, len, &hp), PD_DHTW_OK);
  uint8_t plain[PD_DHT_MAX_MSG];
  size_t plen = 0;
  assert_int_equal(pd_dht_handshake_accept(&p->cb, p->challenge, &hp, &p->ea, &p->sb, plain,
                                           sizeof plain, &plen, NOW),
                   0);
  assert_int_equal(plen, sizeof msg);
  assert_memory_equal(plain, msg, sizeof msg);
  assert_memory_equal(p->sa.tx_key, p->sb.rx_key, PD_DHT_KEY_LEN);
  assert_memory_equal(p->sa.rx_key, p->sb.tx_key, PD_DHT_KEY_LEN);
  assert_memory_equal(p->sb.id, p->a.id, PD_DHT_ID_LEN);
  assert_memory_equal(p->sa.id, p->b.id, PD_DHT_ID_LEN);
}

static void test_handshake_keys(void **state) {
  (void)state;
  pair_t p;
  handshake(&p, false);
  /* The key schedule's vector (docs/protocol.md §11.8): keys from the
   * fixed seeds above. */
  char hex[2 * PD_DHT_KEY_LEN + 1];
  for (int i = 0; i < PD_DHT_KEY_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", p.sa.tx_key[i]);
  if (getenv("PEERD_PRINT_VECTORS")) printf("init_key %s\n", hex);
  assert_string_equal(hex, INIT_KEY_HEX);
  pd_identity_wipe(&p.a);
  pd_identity_wipe(&p.b);
}

/* Seal from one side and open on the other. */
static int pass(pair_t *p, pd_dht_session_t *tx, const pd_dht_crypto_t *ctx,
                pd_dht_session_t *rx, const pd_dht_crypto_t *crx, uint8_t *pkt, size_t *len) {
  const uint8_t msg[17] = {PD_DHT_PONG, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 1};
  (void)p;
  if (pkt && *len == 0) {
    assert_int_equal(pd_dht_seal_message(tx, ctx, msg, sizeof msg, pkt, PD_DHT_MAX_PACKET, len, NOW), 0);
  }
  pd_dht_packet_t dp;
  assert_int_equal(pd_dht_packet_decode(pkt, *len, &dp), PD_DHTW_OK);
  uint8_t plain[PD_DHT_MAX_MSG];
  size_t plen = 0;
  return pd_dht_open_message(rx, crx, &dp, plain, sizeof plain, &plen, NOW);
}

static void test_replay_window(void **state) {
  (void)state;
  pair_t p;
  handshake(&p, false);
  /* B -> A: 70 packets sealed, delivered out of order */
  uint8_t pk[70][PD_DHT_MAX_PACKET];
  size_t len[70];
  for (int i = 0; i < 70; i++) {
    len[i] = 0;
    const uint8_t msg[17] = {PD_DHT_PONG, (uint8_t)i};
    assert_int_equal(pd_dht_seal_message(&p.sb, &p.cb, msg, sizeof msg, pk[i], sizeof pk[i], &len[i], NOW), 0);
  }
  size_t l;
  /* 5 first, then 2: both inside the window */
  l = len[4];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[4], &l), 0);
  l = len[1];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[1], &l), 0);
  /* duplicates */
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[1], &l), PD_EEXIST);
  l = len[4];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[4], &l), PD_EEXIST);
  /* jump to 70: counter 2 (packet 1) is now 68 back: too old */
  l = len[69];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[69], &l), 0);
  l = len[2];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[2], &l), PD_EEXIST);
  /* counter 7 (63 back) still fits */
  l = len[6];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[6], &l), 0);
  /* a forged counter far ahead does not open and does not move the window */
  uint8_t forged[PD_DHT_MAX_PACKET];
  memcpy(forged, pk[10], len[10]);
  forged[17] = 0xFF; /* last nonce byte: counter + 0xF5.. */
  forged[16] = 0x7F;
  l = len[10];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, forged, &l), PD_EINVAL);
  l = len[67];
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, pk[67], &l), 0);
  /* A's key cannot open what A sent (direction keys differ) */
  uint8_t own[PD_DHT_MAX_PACKET];
  size_t ol = 0;
  const uint8_t msg[17] = {PD_DHT_PING};
  assert_int_equal(pd_dht_seal_message(&p.sa, &p.ca, msg, sizeof msg, own, sizeof own, &ol, NOW), 0);
  assert_int_equal(pass(&p, NULL, NULL, &p.sa, &p.ca, own, &ol), PD_EINVAL);
  /* ... and B opens it */
  assert_int_equal(pass(&p, NULL, NULL, &p.sb, &p.cb, own, &ol), 0);
  /* every single bit flipped in header or ciphertext is refused */
  for (size_t i = 0; i < ol; i++) {
    if (i == 4 || i == 5) continue; /* version, kind: the decoder refuses those first */
    if (i < 4) continue;            /* magic, likewise */
    uint8_t t[PD_DHT_MAX_PACKET];
    memcpy(t, own, ol);
    t[i] ^= 0x08;
    pd_dht_packet_t dp;
    if (pd_dht_packet_decode(t, ol, &dp) != PD_DHTW_OK) continue;
    uint8_t plain[PD_DHT_MAX_MSG];
    size_t pl = 0;
    assert_int_not_equal(pd_dht_open_message(&p.sb, &p.cb, &dp, plain, sizeof plain, &pl, NOW), 0);
  }
}

static void test_null_cipher(void **state) {
  (void)state;
  pair_t p;
  handshake(&p, true);
  uint8_t pkt[PD_DHT_MAX_PACKET];
  size_t len = 0;
  const uint8_t msg[17] = {PD_DHT_PING, 7};
  assert_int_equal(pd_dht_seal_message(&p.sa, &p.ca, msg, sizeof msg, pkt, sizeof pkt, &len, NOW), 0);
  assert_memory_equal(pkt + PD_DHT_HEADER_LEN, msg, sizeof msg); /* in clear */
  static const uint8_t zero[PD_DHT_TAG_LEN];
  assert_memory_equal(pkt + PD_DHT_HEADER_LEN + sizeof msg, zero, PD_DHT_TAG_LEN);
  size_t l = len;
  assert_int_equal(pass(&p, NULL, NULL, &p.sb, &p.cb, pkt, &l), 0);
  pkt[len - 1] = 1; /* a non-zero tag */
  memset(&p.sb.rx_bits, 0, sizeof p.sb.rx_bits);
  assert_int_equal(pass(&p, NULL, NULL, &p.sb, &p.cb, pkt, &l), PD_EINVAL);
}

static void test_session_table(void **state) {
  (void)state;
  pd_dht_sessions_t *t = pd_dht_sessions_new(4);
  assert_non_null(t);
  pd_dht_session_t s;
  memset(&s, 0, sizeof s);
  int ev = 0;
  for (int i = 0; i < 4; i++) {
    s.id[0] = (uint8_t)i;
    addr(&s.ep, (uint8_t)i, 7000);
    s.used_ms = NOW + i;
    assert_non_null(pd_dht_sessions_put(t, &s, &ev));
    assert_int_equal(ev, 0);
  }
  assert_int_equal(pd_dht_sessions_count(t), 4);
  /* the same (id, ep) replaces */
  s.id[0] = 2;
  addr(&s.ep, 2, 7000);
  s.used_ms = NOW + 100;
  assert_non_null(pd_dht_sessions_put(t, &s, &ev));
  assert_int_equal(ev, 0);
  assert_int_equal(pd_dht_sessions_count(t), 4);
  /* the same id at another endpoint is another session: the LRU (0) goes */
  addr(&s.ep, 9, 7000);
  s.used_ms = NOW + 101;
  assert_non_null(pd_dht_sessions_put(t, &s, &ev));
  assert_int_equal(ev, 1);
  uint8_t id0[PD_DHT_ID_LEN] = {0};
  pd_netaddr_t e0;
  addr(&e0, 0, 7000);
  assert_null(pd_dht_sessions_find(t, id0, &e0));
  assert_true(pd_dht_sessions_has_ep(t, &s.ep));
  assert_false(pd_dht_sessions_has_ep(t, &e0));
  /* idle expiry: the ones used at NOW+1, NOW+3 go; NOW+100, NOW+101 stay */
  assert_int_equal(pd_dht_sessions_expire(t, NOW + 50 + PD_DHT_SESSION_IDLE_MS), 2);
  assert_int_equal(pd_dht_sessions_count(t), 2);
  pd_dht_sessions_free(t);
}

/* The table's index against a plain scan over a seeded run of puts (LRU
 * evictions included), finds and expiries: every find agrees. */
static void test_session_index(void **state) {
  (void)state;
  pd_dht_sessions_t *t = pd_dht_sessions_new(8);
  assert_non_null(t);
  pd_dht_session_t model[8];
  size_t nm = 0;
  uint64_t x = 88172645463325252ull;
  for (int op = 0; op < 5000; op++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    pd_dht_session_t s;
    memset(&s, 0, sizeof s);
    s.id[0] = (uint8_t)(x % 5);
    s.id[1] = (uint8_t)(x >> 8 % 3);
    addr(&s.ep, (uint8_t)(x >> 16) % 4, (uint16_t)(7000 + (x >> 24) % 2));
    s.used_ms = NOW + op;
    if ((x >> 32) % 10 < 6) {
      int ev = 0;
      assert_non_null(pd_dht_sessions_put(t, &s, &ev));
      size_t k = 0;
      while (k < nm && !(memcmp(model[k].id, s.id, 20) == 0 && model[k].ep.port == s.ep.port &&
                         memcmp(model[k].ep.ip, s.ep.ip, 16) == 0))
        k++;
      if (k < nm) {
        model[k] = s;
      } else if (nm < 8) {
        model[nm++] = s;
      } else {
        size_t lru = 0;
        for (size_t i = 1; i < nm; i++)
          if (model[i].used_ms < model[lru].used_ms) lru = i;
        model[lru] = s;
        assert_int_equal(ev, 1);
      }
    } else if ((x >> 32) % 10 < 9) {
      pd_dht_session_t *f = pd_dht_sessions_find(t, s.id, &s.ep);
      bool in = false;
      for (size_t k = 0; k < nm; k++)
        if (memcmp(model[k].id, s.id, 20) == 0 && model[k].ep.port == s.ep.port &&
            memcmp(model[k].ep.ip, s.ep.ip, 16) == 0)
          in = true;
      assert_true(in == (f != NULL));
      if (f) assert_memory_equal(f->id, s.id, 20);
    } else {
      int64_t cut = NOW + op - 20; /* drop the ones unused for 20 ops */
      pd_dht_sessions_expire(t, cut + PD_DHT_SESSION_IDLE_MS);
      size_t w = 0;
      for (size_t k = 0; k < nm; k++)
        if (cut + PD_DHT_SESSION_IDLE_MS - model[k].used_ms < PD_DHT_SESSION_IDLE_MS) model[w++] = model[k];
      nm = w;
    }
    assert_int_equal(pd_dht_sessions_count(t), nm);
  }
  pd_dht_sessions_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_keys),
      cmocka_unit_test(test_replay_window),
      cmocka_unit_test(test_null_cipher),
      cmocka_unit_test(test_session_table),
      cmocka_unit_test(test_session_index),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
