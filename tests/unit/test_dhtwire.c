/* Unit tests for dhtwire (host/core/dhtwire.c): the byte-exact test vectors
 * of docs/protocol.md §11.8, round trips, every rejection reason, encoder
 * limits, log2 distance and XOR ordering, the NODES split, and a fixed-seed
 * loop of random and half-valid datagrams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dhtwire.h"
#include "err.h"

/* --- helpers ------------------------------------------------------------ */
static bool under_valgrind(void) { return getenv("PEERD_UNDER_VALGRIND") != NULL; }

/* xorshift64: the test links only dhtwire. */
static uint64_t xs(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Hex (blanks ignored) into out; returns the byte count. */
static size_t unhex(const char *h, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (*h) {
    if (*h == ' ') {
      h++;
      continue;
    }
    int hi = hexval(h[0]), lo = hexval(h[1]);
    assert_true(hi >= 0 && lo >= 0);
    assert_true(n < cap);
    out[n++] = (uint8_t)(hi << 4 | lo);
    h += 2;
  }
  return n;
}

static void assert_hex(const uint8_t *got, size_t n, const char *want_hex) {
  uint8_t want[2048];
  size_t wn = unhex(want_hex, want, sizeof want);
  assert_int_equal(n, wn);
  assert_memory_equal(got, want, n);
}

/* Bytes lo, lo+1, ... (the vectors' fixed fields). */
static void seq_bytes(uint8_t *p, size_t n, uint8_t lo) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(lo + i);
}

/* --- the test vectors (docs/protocol.md §11.8) -------------------------- */
/* src_id a0..b3; a sealed nonce 00×11 ‖ 01; the lab's null cipher (ciphertext
 * = plaintext ‖ 16 zero bytes) so the packets show their messages. */
static const char V_PING[] = "01 0102030405060708 0000000000000005";
static const char V_PONG[] = "02 0102030405060708 0000000000000007"
                             " 00000000000000000000ffffcb007109 6820";
static const char V_FINDNODE[] = "03 1112131415161718 03 a09f9e";
static const char V_NODES[] =
    "04 1112131415161718 01 01 0082"
    " 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f8081";
static const char V_MESSAGE[] =
    "70646874 01 00 000000000000000000000001 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3"
    " 01 0102030405060708 0000000000000005 00000000000000000000000000000000";
static const char V_WHOAREYOU[] =
    "70646874 01 01 303132333435363738393a3b a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3"
    " c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
    " d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
    " 0000000000000007";
static const char V_HANDSHAKE[] =
    "70646874 01 02 000000000000000000000001 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3"
    " 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    " 606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    " 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    " 0000"
    " 01 0102030405060708 0000000000000005 00000000000000000000000000000000";

static uint8_t SRC[PD_DHT_ID_LEN], NONCE1[PD_DHT_NONCE_LEN];

static int setup(void **state) {
  (void)state;
  seq_bytes(SRC, sizeof SRC, 0xa0);
  memset(NONCE1, 0, sizeof NONCE1);
  NONCE1[11] = 1;
  return 0;
}

/* Encode m, compare with hex, decode back, compare the decode with m's
 * fields (by re-encoding it: encoding is canonical). */
static void msg_vector(const pd_dht_msg_t *m, const char *hex, pd_dht_msg_t *dec) {
  uint8_t buf[PD_DHT_MAX_MSG];
  size_t n = 0;
  assert_int_equal(pd_dht_msg_encode(m, buf, sizeof buf, &n), 0);
  assert_hex(buf, n, hex);
  assert_int_equal(pd_dht_msg_decode(buf, n, dec), PD_DHTW_OK);
  assert_int_equal(dec->type, m->type);
  assert_true(dec->request_id == m->request_id);
  uint8_t again[PD_DHT_MAX_MSG];
  size_t n2 = 0;
  assert_int_equal(pd_dht_msg_encode(dec, again, sizeof again, &n2), 0);
  assert_int_equal(n2, n);
  assert_memory_equal(again, buf, n);
  /* One byte less or more never decodes. */
  pd_dht_msg_t x;
  assert_int_equal(pd_dht_msg_decode(buf, n - 1, &x), PD_DHTW_R_MESSAGE);
  buf[n] = 0;
  assert_int_equal(pd_dht_msg_decode(buf, n + 1, &x), PD_DHTW_R_MESSAGE);
}

static void vectors_messages(void **state) {
  (void)state;
  pd_dht_msg_t m, d;

  memset(&m, 0, sizeof m);
  m.type = PD_DHT_PING;
  m.request_id = 0x0102030405060708ull;
  m.record_seq = 5;
  msg_vector(&m, V_PING, &d);
  assert_true(d.record_seq == 5);

  memset(&m, 0, sizeof m);
  m.type = PD_DHT_PONG;
  m.request_id = 0x0102030405060708ull;
  m.record_seq = 7;
  m.observed.ip[10] = m.observed.ip[11] = 0xff;
  m.observed.ip[12] = 203;
  m.observed.ip[13] = 0;
  m.observed.ip[14] = 113;
  m.observed.ip[15] = 9;
  m.observed.port = 26656;
  msg_vector(&m, V_PONG, &d);
  assert_true(d.record_seq == 7);
  assert_true(pd_netaddr_equal(&d.observed, &m.observed));
  assert_int_equal(d.observed.port, 26656); /* host order */

  memset(&m, 0, sizeof m);
  m.type = PD_DHT_FINDNODE;
  m.request_id = 0x1112131415161718ull;
  m.ndist = 3;
  m.dist[0] = 160;
  m.dist[1] = 159;
  m.dist[2] = 158;
  msg_vector(&m, V_FINDNODE, &d);
  assert_int_equal(d.ndist, 3);
  assert_int_equal(d.dist[0], 160);
  assert_int_equal(d.dist[2], 158);

  uint8_t rec[130];
  seq_bytes(rec, sizeof rec, 0);
  memset(&m, 0, sizeof m);
  m.type = PD_DHT_NODES;
  m.request_id = 0x1112131415161718ull;
  m.total = 1;
  m.nrec = 1;
  m.rec[0].bytes = rec;
  m.rec[0].len = sizeof rec;
  msg_vector(&m, V_NODES, &d);
  assert_int_equal(d.total, 1);
  assert_int_equal(d.nrec, 1);
  assert_int_equal(d.rec[0].len, 130);

  /* Decoding the written-out vector points into it (no copy). d's records
   * pointed into msg_vector's buffer, gone now: decode again. */
  uint8_t v[256];
  size_t vn = unhex(V_NODES, v, sizeof v);
  assert_int_equal(pd_dht_msg_decode(v, vn, &d), PD_DHTW_OK);
  assert_ptr_equal(d.rec[0].bytes, v + 13);
  assert_memory_equal(d.rec[0].bytes, rec, sizeof rec);
}

static void vectors_packets(void **state) {
  (void)state;
  uint8_t pkt[PD_DHT_MAX_PACKET];
  size_t n, mn;
  pd_dht_packet_t p;
  pd_dht_msg_t m, d;
  memset(&m, 0, sizeof m);
  m.type = PD_DHT_PING;
  m.request_id = 0x0102030405060708ull;
  m.record_seq = 5;

  /* MESSAGE: header ‖ PING ‖ 16 zero bytes (null-cipher tag). */
  pd_dht_header_encode(pkt, PD_DHT_MESSAGE, NONCE1, SRC);
  assert_int_equal(pd_dht_msg_encode(&m, pkt + PD_DHT_HEADER_LEN, sizeof pkt - PD_DHT_HEADER_LEN, &mn), 0);
  n = PD_DHT_HEADER_LEN + mn;
  memset(pkt + n, 0, PD_DHT_TAG_LEN);
  n += PD_DHT_TAG_LEN;
  assert_hex(pkt, n, V_MESSAGE);
  assert_int_equal(pd_dht_packet_decode(pkt, n, &p), PD_DHTW_OK);
  assert_int_equal(p.kind, PD_DHT_MESSAGE);
  assert_ptr_equal(p.header, pkt);
  assert_ptr_equal(p.nonce, pkt + 6);
  assert_ptr_equal(p.src_id, pkt + 18);
  assert_memory_equal(p.nonce, NONCE1, sizeof NONCE1);
  assert_memory_equal(p.src_id, SRC, sizeof SRC);
  assert_int_equal(p.ad_len, 38);
  assert_ptr_equal(p.ciphertext, pkt + 38);
  assert_int_equal(p.ciphertext_len, 17 + 16);
  assert_null(p.record);
  assert_int_equal(pd_dht_msg_decode(p.ciphertext, p.ciphertext_len - PD_DHT_TAG_LEN, &d), PD_DHTW_OK);
  assert_int_equal(d.type, PD_DHT_PING);
  assert_true(d.record_seq == 5);

  /* WHOAREYOU with fixed fields. */
  uint8_t wn[PD_DHT_NONCE_LEN], idn[PD_DHT_ID_NONCE_LEN], pk[PD_DHT_PK_LEN];
  seq_bytes(wn, sizeof wn, 0x30);
  seq_bytes(idn, sizeof idn, 0xc0);
  seq_bytes(pk, sizeof pk, 0xd0);
  uint8_t way[PD_DHT_WHOAREYOU_LEN];
  pd_dht_whoareyou_encode(way, wn, SRC, idn, pk, 7);
  assert_hex(way, sizeof way, V_WHOAREYOU);
  assert_int_equal(pd_dht_packet_decode(way, sizeof way, &p), PD_DHTW_OK);
  assert_int_equal(p.kind, PD_DHT_WHOAREYOU);
  assert_ptr_equal(p.id_nonce, way + 38);
  assert_ptr_equal(p.pubkey, way + 54);
  assert_memory_equal(p.nonce, wn, sizeof wn);
  assert_true(p.record_seq == 7);
  assert_null(p.ciphertext);
  assert_int_equal(p.ciphertext_len, 0);

  /* HANDSHAKE without a record: head ‖ PING ‖ 16 zero bytes. */
  uint8_t eph[PD_DHT_PK_LEN], hpk[PD_DHT_PK_LEN], sig[PD_DHT_SIG_LEN];
  seq_bytes(eph, sizeof eph, 0x40);
  seq_bytes(hpk, sizeof hpk, 0x60);
  seq_bytes(sig, sizeof sig, 0x80);
  assert_int_equal(pd_dht_handshake_head_encode(pkt, sizeof pkt, &n, NONCE1, SRC, eph, hpk, sig, NULL, 0), 0);
  assert_int_equal(n, PD_DHT_HANDSHAKE_FIXED);
  assert_int_equal(pd_dht_msg_encode(&m, pkt + n, sizeof pkt - n, &mn), 0);
  n += mn;
  memset(pkt + n, 0, PD_DHT_TAG_LEN);
  n += PD_DHT_TAG_LEN;
  assert_hex(pkt, n, V_HANDSHAKE);
  assert_int_equal(pd_dht_packet_decode(pkt, n, &p), PD_DHTW_OK);
  assert_int_equal(p.kind, PD_DHT_HANDSHAKE);
  assert_ptr_equal(p.eph_pubkey, pkt + 38);
  assert_ptr_equal(p.pubkey, pkt + 70);
  assert_ptr_equal(p.id_signature, pkt + 102);
  assert_null(p.record);
  assert_int_equal(p.record_len, 0);
  assert_int_equal(p.ad_len, 168);
  assert_ptr_equal(p.ciphertext, pkt + 168);
  assert_int_equal(p.ciphertext_len, 33);
}

/* HANDSHAKE carrying a record: the smallest and the largest. */
static void handshake_with_record(void **state) {
  (void)state;
  uint8_t pkt[PD_DHT_MAX_PACKET], rec[PD_DHT_RECORD_MAX], k[PD_DHT_SIG_LEN];
  seq_bytes(rec, sizeof rec, 3);
  seq_bytes(k, sizeof k, 9);
  size_t sizes[] = {PD_DHT_RECORD_MIN, PD_DHT_RECORD_MAX};
  for (size_t s = 0; s < 2; s++) {
    size_t n = 0;
    assert_int_equal(pd_dht_handshake_head_encode(pkt, sizeof pkt, &n, NONCE1, SRC, k, k + 32, k, rec, sizes[s]), 0);
    assert_int_equal(n, 168 + sizes[s]);
    assert_int_equal(pkt[166] << 8 | pkt[167], sizes[s]);
    memset(pkt + n, 0x5a, 25); /* the smallest ciphertext */
    pd_dht_packet_t p;
    assert_int_equal(pd_dht_packet_decode(pkt, n + 25, &p), PD_DHTW_OK);
    assert_ptr_equal(p.record, pkt + 168);
    assert_int_equal(p.record_len, sizes[s]);
    assert_memory_equal(p.record, rec, sizes[s]);
    assert_int_equal(p.ad_len, n);
    assert_ptr_equal(p.ciphertext, pkt + n);
    assert_int_equal(p.ciphertext_len, 25);
    /* 24 bytes of ciphertext: truncated. */
    assert_int_equal(pd_dht_packet_decode(pkt, n + 24, &p), PD_DHTW_R_MALFORMED);
  }
}

/* --- rejections --------------------------------------------------------- */
static void expect_packet(const uint8_t *b, size_t n, pd_dhtwire_reason_t want) {
  pd_dht_packet_t p;
  pd_dhtwire_reason_t got = pd_dht_packet_decode(b, n, &p);
  if (got != want) fail_msg("packet of %zu bytes: got %s, want %s", n, pd_dhtwire_reason_name(got),
                            pd_dhtwire_reason_name(want));
}

static void expect_msg(const uint8_t *b, size_t n, pd_dhtwire_reason_t want) {
  pd_dht_msg_t m;
  pd_dhtwire_reason_t got = pd_dht_msg_decode(b, n, &m);
  if (got != want) fail_msg("message of %zu bytes (type %d): got %s, want %s", n, n ? b[0] : -1,
                            pd_dhtwire_reason_name(got), pd_dhtwire_reason_name(want));
}

/* A valid packet of kind and size n (a HANDSHAKE with record_len 0). */
static void mkpacket(uint8_t *b, uint8_t kind, size_t n) {
  memset(b, 0x33, n);
  pd_dht_header_encode(b, kind, NONCE1, SRC);
  if (kind == PD_DHT_HANDSHAKE) b[166] = b[167] = 0;
}

static void packet_rejections(void **state) {
  (void)state;
  uint8_t b[PD_DHT_MAX_PACKET + 8];

  /* Each kind's smallest (and WHOAREYOU's only) size is accepted. */
  mkpacket(b, PD_DHT_MESSAGE, 63);
  expect_packet(b, 63, PD_DHTW_OK);
  mkpacket(b, PD_DHT_MESSAGE, PD_DHT_MAX_PACKET);
  expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_OK);
  mkpacket(b, PD_DHT_WHOAREYOU, 94);
  expect_packet(b, 94, PD_DHTW_OK);
  mkpacket(b, PD_DHT_HANDSHAKE, 193);
  expect_packet(b, 193, PD_DHTW_OK);

  /* bad magic, version 2 (and 0), kind 3 */
  mkpacket(b, PD_DHT_MESSAGE, 63);
  b[0] = 'P';
  expect_packet(b, 63, PD_DHTW_R_MAGIC);
  mkpacket(b, PD_DHT_MESSAGE, 63);
  b[3] = 0;
  expect_packet(b, 63, PD_DHTW_R_MAGIC);
  mkpacket(b, PD_DHT_MESSAGE, 63);
  b[4] = 2;
  expect_packet(b, 63, PD_DHTW_R_VERSION);
  b[4] = 0;
  expect_packet(b, 63, PD_DHTW_R_VERSION);
  mkpacket(b, PD_DHT_MESSAGE, 63);
  b[5] = 3;
  expect_packet(b, 63, PD_DHTW_R_KIND);
  b[5] = 0xff;
  expect_packet(b, 63, PD_DHTW_R_KIND);

  /* sizes */
  mkpacket(b, PD_DHT_MESSAGE, 62);
  expect_packet(b, 62, PD_DHTW_R_MALFORMED); /* 62-byte MESSAGE */
  mkpacket(b, PD_DHT_MESSAGE, PD_DHT_MAX_PACKET + 1);
  expect_packet(b, PD_DHT_MAX_PACKET + 1, PD_DHTW_R_MALFORMED); /* 1281 bytes */
  mkpacket(b, PD_DHT_WHOAREYOU, PD_DHT_MAX_PACKET + 1);
  expect_packet(b, PD_DHT_MAX_PACKET + 1, PD_DHTW_R_MALFORMED);
  expect_packet(b, 0, PD_DHTW_R_MALFORMED);
  expect_packet(b, 37, PD_DHTW_R_MALFORMED); /* shorter than the header */
  expect_packet(NULL, 0, PD_DHTW_R_MALFORMED);
  mkpacket(b, PD_DHT_WHOAREYOU, 95);
  expect_packet(b, 93, PD_DHTW_R_MALFORMED);
  expect_packet(b, 95, PD_DHTW_R_MALFORMED);
  mkpacket(b, PD_DHT_HANDSHAKE, 192);
  expect_packet(b, 192, PD_DHTW_R_MALFORMED);

  /* HANDSHAKE record_len: 513 (even with the bytes present), 1..129 */
  mkpacket(b, PD_DHT_HANDSHAKE, PD_DHT_MAX_PACKET);
  b[166] = 0x02;
  b[167] = 0x01; /* 513 */
  expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_R_MALFORMED);
  b[166] = 0xff;
  b[167] = 0xff;
  expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_R_MALFORMED);
  b[166] = 0x02;
  b[167] = 0x00; /* 512 fits */
  expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_OK);
  size_t short_lens[] = {1, 64, 129};
  for (size_t i = 0; i < 3; i++) {
    b[166] = 0;
    b[167] = (uint8_t)short_lens[i];
    expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_R_MALFORMED);
  }
  b[167] = 130;
  expect_packet(b, PD_DHT_MAX_PACKET, PD_DHTW_OK);
  /* truncated ciphertext: record 130 and 24 bytes after it, or the
   * record itself cut short */
  expect_packet(b, 168 + 130 + 25, PD_DHTW_OK);
  expect_packet(b, 168 + 130 + 24, PD_DHTW_R_MALFORMED);
  expect_packet(b, 168 + 100, PD_DHTW_R_MALFORMED);
  b[166] = 0x02;
  b[167] = 0x00;
  expect_packet(b, 168 + 512 + 25, PD_DHTW_OK);
  expect_packet(b, 168 + 512 + 24, PD_DHTW_R_MALFORMED);
}

static void message_rejections(void **state) {
  (void)state;
  uint8_t b[4096];
  size_t n;

  /* shorter than type + request id; unknown types 0, 5, 255 */
  n = unhex(V_PING, b, sizeof b);
  expect_msg(b, 0, PD_DHTW_R_MESSAGE);
  expect_msg(b, 8, PD_DHTW_R_MESSAGE);
  expect_msg(NULL, 0, PD_DHTW_R_MESSAGE);
  b[0] = 0;
  expect_msg(b, n, PD_DHTW_R_MESSAGE);
  b[0] = 5;
  expect_msg(b, n, PD_DHTW_R_MESSAGE);
  b[0] = 255;
  expect_msg(b, n, PD_DHTW_R_MESSAGE);

  /* PING with one byte extra / missing; PONG likewise */
  n = unhex(V_PING, b, sizeof b);
  expect_msg(b, n, PD_DHTW_OK);
  b[n] = 0;
  expect_msg(b, n + 1, PD_DHTW_R_MESSAGE);
  expect_msg(b, n - 1, PD_DHTW_R_MESSAGE);
  expect_msg(b, 9, PD_DHTW_R_MESSAGE); /* no body */
  n = unhex(V_PONG, b, sizeof b);
  expect_msg(b, n, PD_DHTW_OK);
  b[n] = 0;
  expect_msg(b, n + 1, PD_DHTW_R_MESSAGE);
  expect_msg(b, n - 1, PD_DHTW_R_MESSAGE);

  /* FINDNODE: count 0 and 5, distance 161, repeated distance, count vs
   * bytes present */
  n = unhex("03 1112131415161718 00", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 0 */
  expect_msg(b, 9, PD_DHTW_R_MESSAGE); /* no count */
  n = unhex("03 1112131415161718 05 0102030405", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 5 */
  n = unhex("03 1112131415161718 04 01020304", b, sizeof b);
  expect_msg(b, n, PD_DHTW_OK); /* count 4 */
  n = unhex("03 1112131415161718 01 a1", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* distance 161 */
  n = unhex("03 1112131415161718 01 a0", b, sizeof b);
  expect_msg(b, n, PD_DHTW_OK); /* 160 */
  n = unhex("03 1112131415161718 01 00", b, sizeof b);
  expect_msg(b, n, PD_DHTW_OK); /* 0: the responder's own record */
  n = unhex("03 1112131415161718 03 a09fa0", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* repeated */
  n = unhex("03 1112131415161718 03 a09f", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 3, two present */
  n = unhex("03 1112131415161718 01 a09f", b, sizeof b);
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* trailing byte */

  /* NODES: total 0/17, count 17, record lengths 129/513, trailing byte,
   * count 2 with one record present */
  uint8_t rec[PD_DHT_RECORD_MAX + 1];
  seq_bytes(rec, sizeof rec, 1);
  pd_dht_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = PD_DHT_NODES;
  m.request_id = 42;
  m.total = 1;
  m.nrec = 1;
  m.rec[0].bytes = rec;
  m.rec[0].len = 130;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), 0);
  expect_msg(b, n, PD_DHTW_OK);
  b[9] = 0;
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* total 0 */
  b[9] = 17;
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* total 17 */
  b[9] = 16;
  expect_msg(b, n, PD_DHTW_OK);
  b[10] = 17;
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 17 */
  b[10] = 2;
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 2, one present */
  b[10] = 0;
  expect_msg(b, n, PD_DHTW_R_MESSAGE); /* count 0 with a record trailing */
  expect_msg(b, 11, PD_DHTW_OK);       /* count 0, nothing after: an empty answer */
  expect_msg(b, 10, PD_DHTW_R_MESSAGE); /* no count */
  b[10] = 1;
  b[n] = 0;
  expect_msg(b, n + 1, PD_DHTW_R_MESSAGE); /* trailing byte */
  expect_msg(b, n - 1, PD_DHTW_R_MESSAGE); /* record cut short */
  expect_msg(b, 12, PD_DHTW_R_MESSAGE);    /* half a length */
  b[11] = 0;
  b[12] = 129; /* record length 129 (bytes present for it) */
  expect_msg(b, 11 + 2 + 129, PD_DHTW_R_MESSAGE);
  /* count 17 with all 17 records present: refused before the 17th is
   * stored (pd_dht_msg_t holds 16) */
  n = 11;
  for (int i = 0; i < 17; i++) {
    b[n] = 0;
    b[n + 1] = 130;
    memcpy(b + n + 2, rec, 130);
    n += 132;
  }
  b[9] = 1;
  b[10] = 17;
  expect_msg(b, n, PD_DHTW_R_MESSAGE);
  b[10] = 16;
  expect_msg(b, n - 132, PD_DHTW_OK);
  /* record length 513 and 512 with the bytes present */
  m.rec[0].len = 512;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), 0);
  expect_msg(b, n, PD_DHTW_OK);
  b[11] = 0x02;
  b[12] = 0x01;
  b[n] = 0;
  expect_msg(b, n + 1, PD_DHTW_R_MESSAGE);
}

/* --- encoders ----------------------------------------------------------- */
static void encoder_limits(void **state) {
  (void)state;
  uint8_t b[11 + 16 * 514], rec[PD_DHT_RECORD_MAX + 1];
  seq_bytes(rec, sizeof rec, 7);
  size_t n = 0;
  pd_dht_msg_t m;

  memset(&m, 0, sizeof m);
  m.type = 0;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.type = 5;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);

  /* capacity: exactly enough, one short */
  m.type = PD_DHT_PING;
  assert_int_equal(pd_dht_msg_encode(&m, b, 17, &n), 0);
  assert_int_equal(n, 17);
  assert_int_equal(pd_dht_msg_encode(&m, b, 16, &n), PD_ETOOBIG);
  m.type = PD_DHT_PONG;
  assert_int_equal(pd_dht_msg_encode(&m, b, 35, &n), 0);
  assert_int_equal(pd_dht_msg_encode(&m, b, 34, &n), PD_ETOOBIG);

  m.type = PD_DHT_FINDNODE;
  m.ndist = 0;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.ndist = 5;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.ndist = 2;
  m.dist[0] = 161;
  m.dist[1] = 1;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.dist[0] = 1;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL); /* repeated */
  m.dist[0] = 0;
  assert_int_equal(pd_dht_msg_encode(&m, b, 12, &n), 0);
  assert_int_equal(n, 9 + 1 + 2);
  assert_int_equal(pd_dht_msg_encode(&m, b, 11, &n), PD_ETOOBIG);

  memset(&m, 0, sizeof m);
  m.type = PD_DHT_NODES;
  m.total = 0;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.total = 17;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.total = 1;
  m.nrec = 17;
  for (int i = 0; i < PD_DHT_MAX_NODES; i++) {
    m.rec[i].bytes = rec;
    m.rec[i].len = 130;
  }
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.nrec = 1;
  m.rec[0].len = 129;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.rec[0].len = 513;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.rec[0].len = 512;
  m.rec[0].bytes = NULL;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), PD_EINVAL);
  m.rec[0].bytes = rec;
  assert_int_equal(pd_dht_msg_encode(&m, b, 11 + 2 + 512, &n), 0);
  assert_int_equal(pd_dht_msg_encode(&m, b, 11 + 2 + 511, &n), PD_ETOOBIG);
  m.nrec = 0; /* an empty answer */
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), 0);
  assert_int_equal(n, 11);

  /* 16 records of 512 encode (the caller splits by pd_dht_nodes_split). */
  m.nrec = 16;
  for (int i = 0; i < 16; i++) m.rec[i].len = 512;
  assert_int_equal(pd_dht_msg_encode(&m, b, sizeof b, &n), 0);
  assert_int_equal(n, 11 + 16 * 514);
  pd_dht_msg_t d;
  assert_int_equal(pd_dht_msg_decode(b, n, &d), PD_DHTW_OK);
  assert_int_equal(d.nrec, 16);
  assert_ptr_equal(d.rec[15].bytes, b + 11 + 15 * 514 + 2);

  /* HANDSHAKE head: record lengths and capacity */
  uint8_t k[PD_DHT_SIG_LEN];
  seq_bytes(k, sizeof k, 0);
  assert_int_equal(pd_dht_handshake_head_encode(b, sizeof b, &n, k, k, k, k, k, rec, 513), PD_EINVAL);
  assert_int_equal(pd_dht_handshake_head_encode(b, sizeof b, &n, k, k, k, k, k, rec, 129), PD_EINVAL);
  assert_int_equal(pd_dht_handshake_head_encode(b, sizeof b, &n, k, k, k, k, k, NULL, 130), PD_EINVAL);
  assert_int_equal(pd_dht_handshake_head_encode(b, 168 + 130, &n, k, k, k, k, k, rec, 130), 0);
  assert_int_equal(n, 298);
  assert_int_equal(pd_dht_handshake_head_encode(b, 168 + 129, &n, k, k, k, k, k, rec, 130), PD_ETOOBIG);
  assert_int_equal(pd_dht_handshake_head_encode(b, 167, &n, k, k, k, k, k, NULL, 0), PD_ETOOBIG);
}

static void reason_names(void **state) {
  (void)state;
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_OK), "none");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_MAGIC), "dht_magic");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_VERSION), "dht_version");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_KIND), "dht_kind");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_MALFORMED), "dht_malformed");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_MESSAGE), "dht_message");
  assert_string_equal(pd_dhtwire_reason_name(PD_DHTW_R_COUNT), "invalid");
}

/* --- distance ----------------------------------------------------------- */
static void logdist_and_distcmp(void **state) {
  (void)state;
  uint8_t a[PD_DHT_ID_LEN], b[PD_DHT_ID_LEN], t[PD_DHT_ID_LEN];
  seq_bytes(a, sizeof a, 0x5c);
  memcpy(b, a, sizeof b);
  assert_int_equal(pd_dht_logdist(a, b), 0);
  b[19] ^= 0x01; /* last bit */
  assert_int_equal(pd_dht_logdist(a, b), 1);
  assert_int_equal(pd_dht_logdist(b, a), 1);
  memcpy(b, a, sizeof b);
  b[0] ^= 0x80; /* first bit */
  assert_int_equal(pd_dht_logdist(a, b), 160);
  b[19] ^= 0xff; /* the first differing bit decides */
  assert_int_equal(pd_dht_logdist(a, b), 160);
  memcpy(b, a, sizeof b);
  b[0] ^= 0x01; /* bit 7 of 160 */
  assert_int_equal(pd_dht_logdist(a, b), 153);
  memcpy(b, a, sizeof b);
  b[1] ^= 0x80;
  assert_int_equal(pd_dht_logdist(a, b), 152);
  memcpy(b, a, sizeof b);
  b[19] ^= 0x80;
  assert_int_equal(pd_dht_logdist(a, b), 8);

  /* distcmp: a^t against b^t, bytewise, the first difference decides */
  memset(t, 0, sizeof t);
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  assert_int_equal(pd_dht_distcmp(t, a, b), 0);
  b[19] = 1;
  assert_true(pd_dht_distcmp(t, a, b) < 0);
  assert_true(pd_dht_distcmp(t, b, a) > 0);
  a[0] = 0x01; /* a is farther: the higher byte decides */
  assert_true(pd_dht_distcmp(t, a, b) > 0);
  /* with a target: t = ff.., a = ff..fe (distance 1), b = 00.. (all ones) */
  memset(t, 0xff, sizeof t);
  memset(a, 0xff, sizeof a);
  a[19] = 0xfe;
  memset(b, 0, sizeof b);
  assert_true(pd_dht_distcmp(t, a, b) < 0);
  assert_true(pd_dht_distcmp(t, b, a) > 0);
  assert_int_equal(pd_dht_distcmp(t, t, t), 0);
  /* not numeric order of the ids: 0x80.. is closer to 0xc0.. than 0x7f.. */
  memset(t, 0, sizeof t);
  t[0] = 0xc0;
  memset(a, 0, sizeof a);
  a[0] = 0x80;
  memset(b, 0xff, sizeof b);
  b[0] = 0x7f;
  assert_true(pd_dht_distcmp(t, a, b) < 0);
}

/* --- NODES split -------------------------------------------------------- */
/* Each packet's message (11 + Σ(2+len)) fits PD_DHT_MAX_MSG, and adding the
 * next record would not have (greedy). */
static void check_split(const uint16_t *len, size_t n, const uint8_t *pp, int np) {
  size_t i = 0;
  for (int p = 0; p < np; p++) {
    size_t size = 11;
    for (unsigned k = 0; k < pp[p]; k++, i++) size += 2 + (size_t)len[i];
    assert_true(size <= PD_DHT_MAX_MSG);
    if (p + 1 < np) assert_true(size + 2 + len[i] > PD_DHT_MAX_MSG);
  }
  assert_int_equal(i, n);
}

static void nodes_split(void **state) {
  (void)state;
  uint16_t len[PD_DHT_MAX_NODES + 1] = {0};
  uint8_t pp[PD_DHT_MAX_TOTAL];

  /* nothing: one packet with count 0 */
  memset(pp, 0xee, sizeof pp);
  assert_int_equal(pd_dht_nodes_split(len, 0, pp), 1);
  assert_int_equal(pp[0], 0);

  /* 16 × 512: 8 packets of 2 (11 + 3 × 514 = 1553 > 1226) */
  for (int i = 0; i < 16; i++) len[i] = 512;
  int np = pd_dht_nodes_split(len, 16, pp);
  assert_int_equal(np, 8);
  for (int p = 0; p < 8; p++) assert_int_equal(pp[p], 2);
  check_split(len, 16, pp, np);

  /* 16 × 130: 9 + 7 (11 + 9 × 132 = 1199; + 132 = 1331) */
  for (int i = 0; i < 16; i++) len[i] = 130;
  np = pd_dht_nodes_split(len, 16, pp);
  assert_int_equal(np, 2);
  assert_int_equal(pp[0], 9);
  assert_int_equal(pp[1], 7);
  check_split(len, 16, pp, np);

  /* one record: one packet */
  len[0] = 512;
  assert_int_equal(pd_dht_nodes_split(len, 1, pp), 1);
  assert_int_equal(pp[0], 1);

  /* mixed: 512 130 130 | 512 300 300 | 300 130 —
   * 11 + 514 + 132 + 132 = 789, + 514 = 1303 > 1226;
   * 11 + 514 + 302 + 302 = 1129, + 302 = 1431 > 1226; 11 + 302 + 132 = 445. */
  uint16_t mixed[] = {512, 130, 130, 512, 300, 300, 300, 130};
  np = pd_dht_nodes_split(mixed, 8, pp);
  assert_int_equal(np, 3);
  assert_int_equal(pp[0], 3);
  assert_int_equal(pp[1], 3);
  assert_int_equal(pp[2], 2);
  check_split(mixed, 8, pp, np);

  /* exactly at the limit: 11 + 2 × 514 + 2 + 185 = 1226 */
  uint16_t edge[] = {512, 512, 185, 130};
  np = pd_dht_nodes_split(edge, 4, pp);
  assert_int_equal(np, 2);
  assert_int_equal(pp[0], 3);
  assert_int_equal(pp[1], 1);
  check_split(edge, 4, pp, np);
  edge[2] = 186; /* one byte over: the third goes with the fourth */
  np = pd_dht_nodes_split(edge, 4, pp);
  assert_int_equal(np, 2);
  assert_int_equal(pp[0], 2);
  assert_int_equal(pp[1], 2);

  /* every split message encodes within PD_DHT_MAX_MSG and decodes */
  uint8_t rec[PD_DHT_RECORD_MAX], buf[PD_DHT_MAX_MSG];
  seq_bytes(rec, sizeof rec, 0);
  uint64_t s = 99;
  for (int round = 0; round < 50; round++) {
    size_t n = 1 + xs(&s) % PD_DHT_MAX_NODES;
    for (size_t i = 0; i < n; i++) len[i] = (uint16_t)(130 + xs(&s) % 383);
    np = pd_dht_nodes_split(len, n, pp);
    assert_true(np >= 1 && np <= PD_DHT_MAX_TOTAL);
    check_split(len, n, pp, np);
    size_t i = 0;
    for (int p = 0; p < np; p++) {
      pd_dht_msg_t m, d;
      memset(&m, 0, sizeof m);
      m.type = PD_DHT_NODES;
      m.total = (uint8_t)np;
      m.nrec = pp[p];
      for (unsigned k = 0; k < pp[p]; k++, i++) {
        m.rec[k].bytes = rec;
        m.rec[k].len = len[i];
      }
      size_t mn;
      assert_int_equal(pd_dht_msg_encode(&m, buf, sizeof buf, &mn), 0);
      assert_int_equal(pd_dht_msg_decode(buf, mn, &d), PD_DHTW_OK);
    }
  }

  /* refused: 17 records, a length out of range */
  for (int i = 0; i < 17; i++) len[i] = 200;
  assert_int_equal(pd_dht_nodes_split(len, 17, pp), PD_EINVAL);
  len[3] = 129;
  assert_int_equal(pd_dht_nodes_split(len, 4, pp), PD_EINVAL);
  len[3] = 513;
  assert_int_equal(pd_dht_nodes_split(len, 4, pp), PD_EINVAL);
}

/* --- random datagrams --------------------------------------------------- */
/* Random bytes, half of them behind a valid header (and, for HANDSHAKE, a
 * plausible record_len); random messages, half with a known type. Each
 * decode returns OK or a reason; an accepted packet's pointers stay inside
 * the buffer; an accepted message re-encodes to the same bytes (the codec
 * is canonical). The buffers are heap copies of exactly len bytes, so ASan
 * and valgrind see any read past the end. */
static void random_never_crashes(void **state) {
  (void)state;
  uint64_t s = 0x9e3779b97f4a7c15ull;
  int iters = under_valgrind() ? 4000 : 20000;
  int hist[PD_DHTW_R_COUNT] = {0}, mhist[PD_DHTW_R_COUNT] = {0};
  int kinds_ok[3] = {0}, types_ok[5] = {0};
  uint8_t src[1400], again[1400];
  for (int it = 0; it < iters; it++) {
    size_t len = (size_t)(xs(&s) % 1301);
    for (size_t i = 0; i < len; i += 8) {
      uint64_t r = xs(&s);
      for (size_t k = 0; k < 8 && i + k < len; k++) src[i + k] = (uint8_t)(r >> (8 * k));
    }
    int mode = (int)(xs(&s) % 4);
    if (mode >= 2 && len >= PD_DHT_HEADER_LEN) {
      uint8_t kind = (uint8_t)(xs(&s) % 3);
      memcpy(src, PD_DHT_MAGIC, 4);
      src[4] = PD_DHT_VERSION;
      src[5] = kind;
      if (mode == 2 && xs(&s) % 8 == 0) src[4] = (uint8_t)xs(&s); /* mostly a wrong version */
      if (mode == 2 && xs(&s) % 8 == 0) src[5] = (uint8_t)xs(&s); /* mostly a wrong kind */
      if (kind == PD_DHT_WHOAREYOU && mode == 3) len = PD_DHT_WHOAREYOU_LEN;
      if (kind == PD_DHT_HANDSHAKE && len >= 168 && mode == 3) {
        uint16_t rl = (uint16_t)(xs(&s) % 3 ? 130 + xs(&s) % 383 : xs(&s) % 600);
        src[166] = (uint8_t)(rl >> 8);
        src[167] = (uint8_t)rl;
      }
    }
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memcpy(buf, src, len);
    pd_dht_packet_t p;
    pd_dhtwire_reason_t r = pd_dht_packet_decode(buf, len, &p);
    assert_true((unsigned)r < PD_DHTW_R_COUNT);
    assert_true(r != PD_DHTW_R_MESSAGE);
    hist[r]++;
    if (r == PD_DHTW_OK) {
      kinds_ok[p.kind]++;
      if (p.ciphertext) {
        assert_true(p.ciphertext + p.ciphertext_len == buf + len);
        assert_true(p.ciphertext_len >= PD_DHT_MSG_HEAD + PD_DHT_TAG_LEN);
        assert_int_equal(p.ad_len, (size_t)(p.ciphertext - buf));
      }
      if (p.record) assert_true(p.record + p.record_len <= p.ciphertext);
    }
    free(buf);

    /* a message: up to 600 bytes; mode 1 keeps the type in 1..4 and, for
     * NODES, a plausible head */
    size_t mlen = (size_t)(xs(&s) % 600);
    if (mode & 1 && mlen >= 1) {
      src[0] = (uint8_t)(1 + xs(&s) % 4);
      if (src[0] == PD_DHT_NODES && mlen >= 13) {
        src[9] = (uint8_t)(1 + xs(&s) % 16);
        src[10] = (uint8_t)(xs(&s) % 3);
        uint16_t rl = (uint16_t)(130 + xs(&s) % 383);
        if (xs(&s) % 2) rl = (uint16_t)(mlen - 13); /* exactly one record */
        src[11] = (uint8_t)(rl >> 8);
        src[12] = (uint8_t)rl;
      } else if (src[0] == PD_DHT_FINDNODE && xs(&s) % 2) {
        mlen = 10 + xs(&s) % 5;
        src[9] = (uint8_t)(mlen - 10);
        for (size_t k = 10; k < mlen; k++) src[k] = (uint8_t)(xs(&s) % 161);
      } else if (xs(&s) % 2) {
        mlen = src[0] == PD_DHT_PING ? 17 : src[0] == PD_DHT_PONG ? 35 : mlen;
      }
    }
    buf = malloc(mlen ? mlen : 1);
    assert_non_null(buf);
    memcpy(buf, src, mlen);
    pd_dht_msg_t m;
    r = pd_dht_msg_decode(buf, mlen, &m);
    assert_true(r == PD_DHTW_OK || r == PD_DHTW_R_MESSAGE);
    mhist[r]++;
    if (r == PD_DHTW_OK) {
      types_ok[m.type]++;
      size_t n2 = 0;
      assert_int_equal(pd_dht_msg_encode(&m, again, sizeof again, &n2), 0);
      assert_int_equal(n2, mlen);
      assert_memory_equal(again, buf, mlen);
    }
    free(buf);
  }
  /* The loop reaches every outcome (the seed is fixed: these are facts
   * about this run, not chance). */
  for (int i = 0; i < PD_DHTW_R_MESSAGE; i++) assert_true(hist[i] > 0);
  for (int k = 0; k < 3; k++) assert_true(kinds_ok[k] > 0);
  assert_true(mhist[PD_DHTW_OK] > 0 && mhist[PD_DHTW_R_MESSAGE] > 0);
  for (int t = 1; t <= 4; t++) assert_true(types_ok[t] > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(vectors_messages),
      cmocka_unit_test(vectors_packets),
      cmocka_unit_test(handshake_with_record),
      cmocka_unit_test(packet_rejections),
      cmocka_unit_test(message_rejections),
      cmocka_unit_test(encoder_limits),
      cmocka_unit_test(reason_names),
      cmocka_unit_test(logdist_and_distcmp),
      cmocka_unit_test(nodes_split),
      cmocka_unit_test(random_never_crashes),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
