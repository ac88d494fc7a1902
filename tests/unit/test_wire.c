/* Unit tests for wire: round trips, chunking, every rejection reason,
 * boundary sizes, and a fixed-seed fuzz loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "wire.h"

static const uint8_t MAGIC[4] = PD_WIRE_MAGIC_DEFAULT_INIT;

/* Small local PRNG (splitmix64) so the test links only the wire module. */
static uint64_t next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static bool under_valgrind(void) { return getenv("PEERD_UNDER_VALGRIND") != NULL; }

static pd_netaddr_t v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  pd_netaddr_t n;
  memset(&n, 0, sizeof n);
  n.ip[10] = 0xff;
  n.ip[11] = 0xff;
  n.ip[12] = a;
  n.ip[13] = b;
  n.ip[14] = c;
  n.ip[15] = d;
  n.port = port;
  return n;
}

static void sample_hello(pd_wire_hello_t *h, uint64_t *seed) {
  memset(h, 0, sizeof *h);
  h->max_version = 3;
  h->min_version = 1;
  for (int i = 0; i < PD_NODE_ID_LEN; i++) h->node_id[i] = (uint8_t)next(seed);
  for (int i = 0; i < PD_WIRE_PUBKEY_LEN; i++) h->pubkey[i] = (uint8_t)next(seed);
  for (int i = 0; i < PD_WIRE_CHALLENGE_LEN; i++) h->challenge[i] = (uint8_t)next(seed);
  h->timestamp = 1700000000;
  h->has_listen = true;
  h->listen = v4(8, 8, 4, 4, 7411);
  strcpy(h->network, "peerd");
  strcpy(h->agent, "peerd/0.1.0 (test)");
}

static size_t fill_addrs(pd_wire_addr_entry_t *e, size_t n, uint64_t *seed, bool all_ids) {
  for (size_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof e[i]);
    uint64_t r = next(seed);
    if (i % 3 == 2) { /* an IPv6 one in 2a01::/16 */
      e[i].addr.ip[0] = 0x2a;
      e[i].addr.ip[1] = 0x01;
      e[i].addr.ip[2] = 0x04;
      e[i].addr.ip[3] = 0xf8;
      for (int k = 4; k < 16; k++) e[i].addr.ip[k] = (uint8_t)(r >> (k * 3));
      e[i].addr.port = (uint16_t)(1 + r % 65535);
    } else {
      e[i].addr = v4((uint8_t)(1 + r % 200), (uint8_t)(r >> 8), (uint8_t)(r >> 16),
                     (uint8_t)(1 + (r >> 24) % 250), (uint16_t)(1 + (r >> 32) % 65535));
    }
    e[i].timestamp = 1700000000 - (int64_t)(r % 100000);
    e[i].has_id = all_ids || (r & 1);
    if (e[i].has_id)
      for (int k = 0; k < PD_NODE_ID_LEN; k++) e[i].id[k] = (uint8_t)next(seed);
  }
  return n;
}

/* Decode exactly one message from a whole frame. */
static int decode_one(const uint8_t *f, size_t n, pd_wire_msg_t *m, pd_wire_reason_t *why) {
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t used = 0;
  int rc = pd_wire_decoder_feed(&d, f, n, &used, m);
  *why = pd_wire_decoder_reason(&d);
  if (rc == PD_WIRE_MESSAGE) assert_int_equal(used, n);
  if (rc == PD_WIRE_NEED_MORE) assert_int_equal(used, n);
  pd_wire_decoder_free(&d);
  return rc;
}

/* Decode, re-encode, compare bytes. */
static void assert_round_trip(const uint8_t *f, size_t n, unsigned type) {
  static pd_wire_msg_t m; /* large: keep off the stack */
  pd_wire_reason_t why;
  assert_int_equal(decode_one(f, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(why, PD_WIRE_R_NONE);
  assert_int_equal(m.type, type);
  uint8_t *again = malloc(PD_WIRE_MAX_FRAME);
  assert_non_null(again);
  size_t n2 = 0;
  assert_int_equal(pd_wire_encode(MAGIC, &m, again, PD_WIRE_MAX_FRAME, &n2), 0);
  assert_int_equal(n2, n);
  assert_memory_equal(again, f, n);
  assert_int_equal(pd_wire_encoded_size(&m), n);
  free(again);
}

static void round_trip_every_type(void **state) {
  (void)state;
  uint64_t seed = 1;
  uint8_t buf[PD_WIRE_MAX_MSG_PAYLOAD + PD_WIRE_HEADER_LEN];
  size_t n;
  static pd_wire_msg_t m;
  pd_wire_reason_t why;

  pd_wire_hello_t h;
  sample_hello(&h, &seed);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 97 + 18 + 1 + 5 + 1 + strlen(h.agent));
  assert_memory_equal(buf, MAGIC, 4);
  assert_int_equal(buf[4], PD_WIRE_HELLO);
  assert_int_equal(buf[5], 0);
  assert_round_trip(buf, n, PD_WIRE_HELLO);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(m.hello.max_version, 3);
  assert_int_equal(m.hello.min_version, 1);
  assert_memory_equal(m.hello.node_id, h.node_id, PD_NODE_ID_LEN);
  assert_memory_equal(m.hello.pubkey, h.pubkey, PD_WIRE_PUBKEY_LEN);
  assert_memory_equal(m.hello.challenge, h.challenge, PD_WIRE_CHALLENGE_LEN);
  assert_true(m.hello.timestamp == 1700000000);
  assert_true(m.hello.has_listen);
  assert_true(pd_netaddr_equal(&m.hello.listen, &h.listen));
  assert_string_equal(m.hello.network, "peerd");
  assert_int_equal(m.hello.network_len, 5);
  assert_string_equal(m.hello.agent, h.agent);

  /* HELLO without a listen address and with an empty agent: the minimum. */
  h.has_listen = false;
  h.agent[0] = 0;
  strcpy(h.network, "x");
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MIN);
  assert_round_trip(buf, n, PD_WIRE_HELLO);

  uint8_t sig[PD_WIRE_SIG_LEN];
  for (int i = 0; i < PD_WIRE_SIG_LEN; i++) sig[i] = (uint8_t)(i * 7);
  assert_int_equal(pd_wire_encode_ack(MAGIC, sig, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 64);
  assert_round_trip(buf, n, PD_WIRE_HELLO_ACK);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_memory_equal(m.ack.sig, sig, 64);

  assert_int_equal(pd_wire_encode_ping(MAGIC, 0x0102030405060708ull, buf, sizeof buf, &n), 0);
  assert_int_equal(n, 18);
  assert_int_equal(buf[10], 1);
  assert_int_equal(buf[17], 8);
  assert_round_trip(buf, n, PD_WIRE_PING);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_true(m.nonce == 0x0102030405060708ull);
  assert_int_equal(pd_wire_encode_pong(MAGIC, UINT64_MAX, buf, sizeof buf, &n), 0);
  assert_round_trip(buf, n, PD_WIRE_PONG);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_true(m.nonce == UINT64_MAX);

  assert_int_equal(pd_wire_encode_getaddr(MAGIC, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN);
  assert_round_trip(buf, n, PD_WIRE_GETADDR);

  static pd_wire_addr_entry_t e[PD_WIRE_MAX_ADDRS];
  fill_addrs(e, 50, &seed, false);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 50, buf, sizeof buf, &n), 0);
  assert_round_trip(buf, n, PD_WIRE_ADDR);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(m.addr.count, 50);
  for (int i = 0; i < 50; i++) {
    assert_true(pd_netaddr_equal(&m.addr.entries[i].addr, &e[i].addr));
    assert_true(m.addr.entries[i].timestamp == e[i].timestamp);
    assert_int_equal(m.addr.entries[i].has_id, e[i].has_id);
    if (e[i].has_id) assert_memory_equal(m.addr.entries[i].id, e[i].id, PD_NODE_ID_LEN);
  }
  assert_int_equal(pd_wire_encode_addr(MAGIC, NULL, 0, buf, sizeof buf, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 2);
  assert_round_trip(buf, n, PD_WIRE_ADDR);

  assert_int_equal(pd_wire_encode_goodbye(MAGIC, PD_WIRE_BYE_TOO_MANY, "full, try later", buf,
                                          sizeof buf, &n), 0);
  assert_round_trip(buf, n, PD_WIRE_GOODBYE);
  assert_int_equal(decode_one(buf, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(m.bye.code, PD_WIRE_BYE_TOO_MANY);
  assert_string_equal(m.bye.text, "full, try later");
  assert_string_equal(pd_wire_bye_name(m.bye.code), "too_many_peers");
  /* Unknown goodbye codes pass (forward compatible). */
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 999, NULL, buf, sizeof buf, &n), 0);
  assert_round_trip(buf, n, PD_WIRE_GOODBYE);
  assert_string_equal(pd_wire_bye_name(999), "unknown");
}

/* A stream of mixed frames; returns its length. */
static size_t build_stream(uint8_t *out, size_t cap, int frames, uint64_t *seed) {
  static pd_wire_addr_entry_t e[PD_WIRE_MAX_ADDRS];
  size_t off = 0, n = 0;
  for (int i = 0; i < frames; i++) {
    int rc;
    switch (next(seed) % 7) {
    case 0: {
      pd_wire_hello_t h;
      sample_hello(&h, seed);
      rc = pd_wire_encode_hello(MAGIC, &h, out + off, cap - off, &n);
      break;
    }
    case 1: {
      uint8_t sig[64];
      for (int k = 0; k < 64; k++) sig[k] = (uint8_t)next(seed);
      rc = pd_wire_encode_ack(MAGIC, sig, out + off, cap - off, &n);
      break;
    }
    case 2: rc = pd_wire_encode_ping(MAGIC, next(seed), out + off, cap - off, &n); break;
    case 3: rc = pd_wire_encode_pong(MAGIC, next(seed), out + off, cap - off, &n); break;
    case 4: rc = pd_wire_encode_getaddr(MAGIC, out + off, cap - off, &n); break;
    case 5: {
      size_t cnt = next(seed) % 300;
      fill_addrs(e, cnt, seed, false);
      rc = pd_wire_encode_addr(MAGIC, e, cnt, out + off, cap - off, &n);
      break;
    }
    default: rc = pd_wire_encode_goodbye(MAGIC, (uint16_t)(next(seed) % 13), "bye", out + off,
                                         cap - off, &n);
    }
    assert_int_equal(rc, 0);
    off += n;
  }
  return off;
}

/* Feeds the stream with the given chunking (0 = all at once, 1 = byte by
 * byte, else random 1..max); re-encodes every message into out. */
static size_t decode_stream(const uint8_t *s, size_t len, size_t chunking, uint64_t seed,
                            uint8_t *out, size_t cap, int *count) {
  static pd_wire_msg_t m;
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t pos = 0, o = 0;
  *count = 0;
  while (pos < len) {
    size_t chunk = chunking == 0 ? len - pos : chunking == 1 ? 1 : 1 + next(&seed) % chunking;
    if (chunk > len - pos) chunk = len - pos;
    size_t cpos = 0;
    while (cpos < chunk) {
      size_t used = 0;
      int rc = pd_wire_decoder_feed(&d, s + pos + cpos, chunk - cpos, &used, &m);
      assert_true(rc == PD_WIRE_MESSAGE || rc == PD_WIRE_NEED_MORE);
      cpos += used;
      if (rc == PD_WIRE_NEED_MORE) {
        assert_int_equal(cpos, chunk);
        break;
      }
      size_t n = 0;
      assert_int_equal(pd_wire_encode(MAGIC, &m, out + o, cap - o, &n), 0);
      o += n;
      (*count)++;
    }
    pos += chunk;
  }
  assert_false(pd_wire_decoder_mid_frame(&d));
  assert_int_equal(d.bytes, len);
  assert_int_equal(d.frames, (uint64_t)*count);
  pd_wire_decoder_free(&d);
  return o;
}

static void chunking_gives_identical_results(void **state) {
  (void)state;
  size_t cap = 4 << 20;
  uint8_t *s = malloc(cap), *out = malloc(cap);
  assert_non_null(s);
  assert_non_null(out);
  uint64_t seed = 7;
  size_t len = build_stream(s, cap, 300, &seed);
  int c0, c1, c2, c3;
  /* All at once: several frames in one chunk; re-encoding is the stream. */
  assert_int_equal(decode_stream(s, len, 0, 0, out, cap, &c0), len);
  assert_memory_equal(out, s, len);
  assert_int_equal(c0, 300);
  assert_int_equal(decode_stream(s, len, 1, 0, out, cap, &c1), len);
  assert_memory_equal(out, s, len);
  assert_int_equal(decode_stream(s, len, 17, 99, out, cap, &c2), len);
  assert_memory_equal(out, s, len);
  assert_int_equal(decode_stream(s, len, 5000, 12345, out, cap, &c3), len);
  assert_memory_equal(out, s, len);
  assert_int_equal(c1, 300);
  assert_int_equal(c2, 300);
  assert_int_equal(c3, 300);
  free(s);
  free(out);
}


/* A big frame split across feeds is buffered; the buffer is not kept once
 * the next frame starts (a connection gets one big ADDR, then pings). */
static void split_frame_buffer_released(void **state) {
  (void)state;
  enum { N = 1000 };
  pd_wire_addr_entry_t *e = calloc(N, sizeof *e);
  assert_non_null(e);
  for (size_t i = 0; i < N; i++) {
    e[i].addr.ip[10] = e[i].addr.ip[11] = 0xff;
    e[i].addr.ip[12] = (uint8_t)(1 + i % 200);
    e[i].addr.ip[15] = (uint8_t)(1 + i % 250);
    e[i].addr.port = (uint16_t)(1000 + i);
    e[i].timestamp = 1700000000;
  }
  size_t cap = PD_WIRE_MAX_FRAME, n = 0, pn = 0;
  uint8_t *buf = malloc(cap);
  assert_non_null(buf);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, N, buf, cap, &n), 0);
  assert_int_equal(pd_wire_encode_ping(MAGIC, 7, buf + n, cap - n, &pn), 0);
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  pd_wire_msg_t *m = malloc(sizeof *m);
  assert_non_null(m);
  size_t off = 0, used = 0;
  int got = 0;
  while (off < n) { /* the ADDR in 1,000-byte pieces */
    size_t piece = n - off < 1000 ? n - off : 1000;
    int rc = pd_wire_decoder_feed(&d, buf + off, piece, &used, m);
    off += used;
    if (rc == PD_WIRE_MESSAGE) {
      assert_int_equal(m->type, PD_WIRE_ADDR);
      assert_int_equal(m->addr.count, N);
      got++;
    } else {
      assert_int_equal(rc, PD_WIRE_NEED_MORE);
    }
  }
  assert_int_equal(got, 1);
  assert_true(d.cap >= n - PD_WIRE_HEADER_LEN); /* it was buffered */
  assert_int_equal(pd_wire_decoder_feed(&d, buf + n, pn, &used, m), PD_WIRE_MESSAGE);
  assert_int_equal(m->type, PD_WIRE_PING);
  assert_true(d.cap <= 4096);
  pd_wire_decoder_free(&d);
  free(m);
  free(buf);
  free(e);
}

static void several_frames_in_one_chunk(void **state) {
  (void)state;
  uint8_t buf[256];
  size_t n1, n2, n3;
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, buf, sizeof buf, &n1), 0);
  assert_int_equal(pd_wire_encode_getaddr(MAGIC, buf + n1, sizeof buf - n1, &n2), 0);
  assert_int_equal(pd_wire_encode_pong(MAGIC, 2, buf + n1 + n2, sizeof buf - n1 - n2, &n3), 0);
  size_t total = n1 + n2 + n3;
  /* Plus half of a fourth frame. */
  size_t n4;
  assert_int_equal(pd_wire_encode_ping(MAGIC, 3, buf + total, sizeof buf - total, &n4), 0);
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  static pd_wire_msg_t m;
  size_t used, pos = 0, len = total + 5;
  assert_int_equal(pd_wire_decoder_feed(&d, buf, len, &used, &m), PD_WIRE_MESSAGE);
  assert_int_equal(used, n1);
  assert_int_equal(m.type, PD_WIRE_PING);
  assert_true(m.nonce == 1);
  pos += used;
  assert_int_equal(pd_wire_decoder_feed(&d, buf + pos, len - pos, &used, &m), PD_WIRE_MESSAGE);
  assert_int_equal(m.type, PD_WIRE_GETADDR);
  pos += used;
  assert_int_equal(pd_wire_decoder_feed(&d, buf + pos, len - pos, &used, &m), PD_WIRE_MESSAGE);
  assert_int_equal(m.type, PD_WIRE_PONG);
  assert_true(m.nonce == 2);
  pos += used;
  assert_int_equal(pos, total);
  assert_int_equal(pd_wire_decoder_feed(&d, buf + pos, len - pos, &used, &m), PD_WIRE_NEED_MORE);
  assert_int_equal(used, 5);
  assert_true(pd_wire_decoder_mid_frame(&d));
  pos += used;
  assert_int_equal(pd_wire_decoder_feed(&d, buf + pos, n4 - 5, &used, &m), PD_WIRE_MESSAGE);
  assert_true(m.nonce == 3);
  assert_false(pd_wire_decoder_mid_frame(&d));
  /* Empty feed is harmless. */
  assert_int_equal(pd_wire_decoder_feed(&d, buf, 0, &used, &m), PD_WIRE_NEED_MORE);
  assert_int_equal(used, 0);
  pd_wire_decoder_free(&d);
}

/* --- rejections ----------------------------------------------------------- */
static void hdr(uint8_t *f, uint8_t type, uint32_t len) {
  memcpy(f, MAGIC, 4);
  f[4] = type;
  f[5] = 0;
  f[6] = (uint8_t)(len >> 24);
  f[7] = (uint8_t)(len >> 16);
  f[8] = (uint8_t)(len >> 8);
  f[9] = (uint8_t)len;
}

/* Expect the frame rejected with the reason both at once and byte by byte,
 * and the decoder to stay rejected. */
static void expect_reject(const uint8_t *f, size_t n, pd_wire_reason_t want) {
  static pd_wire_msg_t m;
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t used;
  assert_int_equal(pd_wire_decoder_feed(&d, f, n, &used, &m), PD_EINVAL);
  assert_string_equal(pd_wire_reason_name(pd_wire_decoder_reason(&d)), pd_wire_reason_name(want));
  assert_true(used <= n);
  /* Sticky: a valid ping afterwards is refused too. */
  uint8_t ping[32];
  size_t pn;
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, ping, sizeof ping, &pn), 0);
  assert_int_equal(pd_wire_decoder_feed(&d, ping, pn, &used, &m), PD_EINVAL);
  assert_int_equal(used, 0);
  assert_int_equal(pd_wire_decoder_reason(&d), want);
  pd_wire_decoder_free(&d);

  pd_wire_decoder_init(&d, MAGIC);
  int rc = PD_WIRE_NEED_MORE;
  for (size_t i = 0; i < n && rc == PD_WIRE_NEED_MORE; i++)
    rc = pd_wire_decoder_feed(&d, f + i, 1, &used, &m);
  assert_int_equal(rc, PD_EINVAL);
  assert_int_equal(pd_wire_decoder_reason(&d), want);
  pd_wire_decoder_free(&d);
}

static void every_rejection_reason(void **state) {
  (void)state;
  uint64_t seed = 3;
  uint8_t f[2048];
  size_t n;

  /* bad_magic: another network's magic, and an HTTP request. */
  static const uint8_t other[4] = {0xF5, 0x70, 0x64, 0x32};
  assert_int_equal(pd_wire_encode_ping(other, 1, f, sizeof f, &n), 0);
  expect_reject(f, n, PD_WIRE_R_BAD_MAGIC);
  {
    pd_wire_decoder_t d;
    static pd_wire_msg_t m;
    size_t used;
    pd_wire_decoder_init(&d, MAGIC);
    assert_int_equal(pd_wire_decoder_feed(&d, (const uint8_t *)"GET / HTTP/1.1\r\n", 16, &used, &m),
                     PD_EINVAL);
    assert_int_equal(used, 1); /* rejected at the first byte */
    assert_int_equal(pd_wire_decoder_reason(&d), PD_WIRE_R_BAD_MAGIC);
    pd_wire_decoder_free(&d);
  }

  /* unknown_type: 0, 10, 255 (8 and 9 are v3's KEYX and SEALED) */
  memset(f, 0, sizeof f);
  hdr(f, 0, 0);
  expect_reject(f, 10, PD_WIRE_R_UNKNOWN_TYPE);
  hdr(f, 10, 0);
  expect_reject(f, 10, PD_WIRE_R_UNKNOWN_TYPE);
  hdr(f, PD_WIRE_KEYX, 0);
  expect_reject(f, 10, PD_WIRE_R_BAD_LENGTH);
  hdr(f, PD_WIRE_SEALED, PD_WIRE_SEALED_MIN - 1);
  expect_reject(f, 10, PD_WIRE_R_BAD_LENGTH);
  hdr(f, 255, 8);
  expect_reject(f, 18, PD_WIRE_R_UNKNOWN_TYPE);

  /* bad_flags */
  hdr(f, PD_WIRE_PING, 8);
  f[5] = 0x80;
  expect_reject(f, 18, PD_WIRE_R_BAD_FLAGS);

  /* oversized: length field just above the frame limit (header only). */
  hdr(f, PD_WIRE_ADDR, PD_WIRE_MAX_PAYLOAD + 1);
  expect_reject(f, 10, PD_WIRE_R_OVERSIZED);
  hdr(f, PD_WIRE_PING, UINT32_MAX);
  expect_reject(f, 10, PD_WIRE_R_OVERSIZED);

  /* bad_length: a ping of 7 bytes, a getaddr with a byte, an ADDR longer
   * than 1,000 full entries, a trailing byte after a goodbye. */
  hdr(f, PD_WIRE_PING, 7);
  expect_reject(f, 17, PD_WIRE_R_BAD_LENGTH);
  hdr(f, PD_WIRE_GETADDR, 1);
  expect_reject(f, 11, PD_WIRE_R_BAD_LENGTH);
  hdr(f, PD_WIRE_ADDR, 3); /* count 0 and a trailing byte */
  f[10] = f[11] = f[12] = 0;
  expect_reject(f, 13, PD_WIRE_R_BAD_LENGTH);
  hdr(f, PD_WIRE_HELLO, PD_WIRE_HELLO_MIN - 1);
  expect_reject(f, 10, PD_WIRE_R_BAD_LENGTH);
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 0, "x", f, sizeof f, &n), 0);
  f[n] = 'y';
  f[9]++;
  expect_reject(f, n + 1, PD_WIRE_R_BAD_LENGTH);

  /* truncated: ADDR announcing 2 entries holding 1; a goodbye whose text
   * length runs past the end; a HELLO whose agent runs past the end. */
  memset(f, 0, sizeof f);
  hdr(f, PD_WIRE_ADDR, 2 + 27 + 5);
  f[11] = 2;
  f[12] = 0;
  pd_netaddr_t a = v4(1, 2, 3, 4, 80);
  memcpy(f + 13, a.ip, 16);
  f[29] = 0;
  f[30] = 80;
  expect_reject(f, 10 + 2 + 27 + 5, PD_WIRE_R_TRUNCATED);
  hdr(f, PD_WIRE_GOODBYE, 4);
  f[10] = 0;
  f[11] = 1;
  f[12] = 2;
  f[13] = 'a';
  expect_reject(f, 14, PD_WIRE_R_TRUNCATED);
  pd_wire_hello_t h;
  sample_hello(&h, &seed);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[n - strlen(h.agent) - 1] = (uint8_t)(strlen(h.agent) + 1); /* agent length + 1 */
  expect_reject(f, n, PD_WIRE_R_TRUNCATED);

  /* bad_address: port 0, 0.0.0.0, ::, in ADDR and in HELLO's listen. */
  static pd_wire_addr_entry_t e[PD_WIRE_MAX_ADDRS + 1];
  fill_addrs(e, 3, &seed, false);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 3, f, sizeof f, &n), 0);
  size_t port_off = 10 + 2 + 1 + 16; /* first entry's port */
  f[port_off] = 0;
  f[port_off + 1] = 0;
  expect_reject(f, n, PD_WIRE_R_BAD_ADDRESS);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 3, f, sizeof f, &n), 0);
  memset(f + 10 + 2 + 1 + 12, 0, 4); /* ::ffff:0.0.0.0 */
  expect_reject(f, n, PD_WIRE_R_BAD_ADDRESS);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 3, f, sizeof f, &n), 0);
  memset(f + 10 + 2 + 1, 0, 16); /* :: */
  expect_reject(f, n, PD_WIRE_R_BAD_ADDRESS);
  sample_hello(&h, &seed);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[10 + 97 + 16] = 0;
  f[10 + 97 + 17] = 0; /* listen port 0 */
  expect_reject(f, n, PD_WIRE_R_BAD_ADDRESS);

  /* too_many_addresses: count 1001 (checked before the entries). */
  hdr(f, PD_WIRE_ADDR, 2 + 27);
  f[10] = (uint8_t)(1001 >> 8);
  f[11] = (uint8_t)(1001 & 0xff);
  expect_reject(f, 10 + 2 + 27, PD_WIRE_R_TOO_MANY_ADDRESSES);

  /* bad_version: min 0, min > max */
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[12] = 0;
  f[13] = 0;
  expect_reject(f, n, PD_WIRE_R_BAD_VERSION);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[12] = 0;
  f[13] = 9; /* min 9 > max 3 */
  expect_reject(f, n, PD_WIRE_R_BAD_VERSION);

  /* bad_text: empty network, control character in agent, text_len > 200,
   * NUL in goodbye text. */
  h.has_listen = false;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[10 + 97] = 0;
  expect_reject(f, n, PD_WIRE_R_BAD_TEXT);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[n - 1] = '\n';
  expect_reject(f, n, PD_WIRE_R_BAD_TEXT);
  hdr(f, PD_WIRE_GOODBYE, 3);
  f[10] = 0;
  f[11] = 0;
  f[12] = 201;
  expect_reject(f, 13, PD_WIRE_R_BAD_TEXT);
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 0, "abc", f, sizeof f, &n), 0);
  f[14] = 0;
  expect_reject(f, n, PD_WIRE_R_BAD_TEXT);

  /* bad_field: ADDR entry flags 2, listen flag 2, negative timestamp. */
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 3, f, sizeof f, &n), 0);
  f[12] = 2;
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[10 + 96] = 2;
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[10 + 88] = 0x80;
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);

  /* Names: distinct, stable. */
  for (int i = 0; i < PD_WIRE_R_COUNT; i++) {
    assert_non_null(pd_wire_reason_name((pd_wire_reason_t)i));
    for (int j = 0; j < i; j++)
      assert_string_not_equal(pd_wire_reason_name((pd_wire_reason_t)i),
                              pd_wire_reason_name((pd_wire_reason_t)j));
  }
  assert_string_equal(pd_wire_reason_name(PD_WIRE_R_COUNT), "invalid");
  assert_string_equal(pd_wire_reason_name(PD_WIRE_R_TOO_MANY_ADDRESSES), "too_many_addresses");
  assert_string_equal(pd_wire_type_name(PD_WIRE_ADDR), "addr");
  assert_string_equal(pd_wire_type_name(0), "unknown");
  assert_string_equal(pd_wire_type_name(200), "unknown");
}

static void boundary_sizes(void **state) {
  (void)state;
  uint64_t seed = 11;
  static pd_wire_addr_entry_t e[PD_WIRE_MAX_ADDRS + 1];
  size_t cap = PD_WIRE_MAX_FRAME + 64;
  uint8_t *f = malloc(cap);
  assert_non_null(f);
  size_t n;
  /* The largest ADDR without records: 1,000 entries, all with node IDs. */
  fill_addrs(e, PD_WIRE_MAX_ADDRS + 1, &seed, true);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, PD_WIRE_MAX_ADDRS, f, cap, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 2 + PD_WIRE_MAX_ADDRS * PD_WIRE_ADDR_ENTRY_MAX);
  assert_int_equal(n - PD_WIRE_HEADER_LEN, 47002);
  assert_round_trip(f, n, PD_WIRE_ADDR);
  /* Byte by byte too. */
  {
    static pd_wire_msg_t m;
    pd_wire_decoder_t d;
    pd_wire_decoder_init(&d, MAGIC);
    size_t used;
    int rc = PD_WIRE_NEED_MORE;
    for (size_t i = 0; i < n; i++) {
      rc = pd_wire_decoder_feed(&d, f + i, 1, &used, &m);
      assert_int_equal(used, 1);
      if (i + 1 < n) assert_int_equal(rc, PD_WIRE_NEED_MORE);
    }
    assert_int_equal(rc, PD_WIRE_MESSAGE);
    assert_int_equal(m.addr.count, PD_WIRE_MAX_ADDRS);
    pd_wire_decoder_free(&d);
  }
  /* +1 byte: rejected. */
  f[n] = 0;
  f[9]++;
  expect_reject(f, n + 1, PD_WIRE_R_BAD_LENGTH);
  /* 1,001 entries cannot be encoded. */
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, PD_WIRE_MAX_ADDRS + 1, f, cap, &n), PD_EINVAL);

  /* Frame limit: length == PD_WIRE_MAX_PAYLOAD is not "oversized" (the type
   * bound refuses it); one more is. */
  hdr(f, PD_WIRE_HELLO, PD_WIRE_MAX_PAYLOAD);
  expect_reject(f, 10, PD_WIRE_R_BAD_LENGTH);
  hdr(f, PD_WIRE_HELLO, PD_WIRE_MAX_PAYLOAD + 1);
  expect_reject(f, 10, PD_WIRE_R_OVERSIZED);

  /* HELLO with extension bytes up to 1,024 is accepted, 1,025 is not: the
   * v2 extension (no record, no observed address), then a later
   * version's bytes, which are ignored. */
  pd_wire_hello_t h;
  sample_hello(&h, &seed);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, cap, &n), 0);
  memset(f + n, 0xAB, PD_WIRE_HELLO_MAX + 1);
  f[n] = f[n + 1] = f[n + 2] = 0;
  hdr(f, PD_WIRE_HELLO, PD_WIRE_HELLO_MAX);
  static pd_wire_msg_t m;
  pd_wire_reason_t why;
  assert_int_equal(decode_one(f, PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX, &m, &why),
                   PD_WIRE_MESSAGE);
  assert_string_equal(m.hello.agent, h.agent);
  hdr(f, PD_WIRE_HELLO, PD_WIRE_HELLO_MAX + 1);
  expect_reject(f, PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX + 1, PD_WIRE_R_BAD_LENGTH);

  /* Longest strings. */
  memset(h.network, 'n', PD_WIRE_NETWORK_MAX);
  h.network[PD_WIRE_NETWORK_MAX] = 0;
  memset(h.agent, 'a', PD_WIRE_AGENT_MAX);
  h.agent[PD_WIRE_AGENT_MAX] = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, cap, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 277);
  assert_round_trip(f, n, PD_WIRE_HELLO);
  char text[PD_WIRE_TEXT_MAX + 2];
  memset(text, 't', sizeof text);
  text[PD_WIRE_TEXT_MAX] = 0;
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 1, text, f, cap, &n), 0);
  assert_round_trip(f, n, PD_WIRE_GOODBYE);
  text[PD_WIRE_TEXT_MAX] = 't';
  text[PD_WIRE_TEXT_MAX + 1] = 0;
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 1, text, f, cap, &n), PD_EINVAL);
  free(f);
}

static void encoder_refuses_invalid(void **state) {
  (void)state;
  uint64_t seed = 5;
  uint8_t f[1024];
  size_t n = 0;
  pd_wire_hello_t h;
  sample_hello(&h, &seed);
  /* Buffer too small: PD_ETOOBIG, and the needed size is reported. */
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, f, 17, &n), PD_ETOOBIG);
  assert_int_equal(n, 18);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, 50, &n), PD_ETOOBIG);
  size_t need = n;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, need, &n), 0);
  assert_int_equal(n, need);

  pd_wire_hello_t bad = h;
  bad.min_version = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  bad.min_version = 4;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  bad.network[0] = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  strcpy(bad.network, "has space");
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  bad.agent[0] = '\t';
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  bad.listen.port = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);
  bad = h;
  bad.timestamp = -1;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &bad, f, sizeof f, &n), PD_EINVAL);

  pd_wire_addr_entry_t e[2];
  fill_addrs(e, 2, &seed, false);
  e[1].addr.port = 0;
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 2, f, sizeof f, &n), PD_EINVAL);
  fill_addrs(e, 2, &seed, false);
  memset(e[0].addr.ip, 0, 16);
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 2, f, sizeof f, &n), PD_EINVAL);
  assert_int_equal(pd_wire_encode_goodbye(MAGIC, 0, "tab\there", f, sizeof f, &n), PD_EINVAL);

  static pd_wire_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = 0;
  assert_int_equal(pd_wire_encode(MAGIC, &m, f, sizeof f, &n), PD_EINVAL);
  assert_int_equal(pd_wire_encoded_size(&m), 0);
  m.type = 9;
  assert_int_equal(pd_wire_encoded_size(&m), 0);
}

static void handshake_helpers(void **state) {
  (void)state;
  uint16_t v = 0;
  assert_int_equal(pd_wire_negotiate_version(1, 3, 1, 2, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(pd_wire_negotiate_version(2, 5, 1, 9, &v), 0);
  assert_int_equal(v, 5);
  assert_int_equal(pd_wire_negotiate_version(1, 1, 1, 1, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(pd_wire_negotiate_version(3, 4, 1, 2, &v), PD_ERANGE);
  assert_int_equal(pd_wire_negotiate_version(0, 4, 1, 2, &v), PD_ERANGE);
  assert_int_equal(pd_wire_negotiate_version(2, 1, 1, 2, &v), PD_ERANGE);

  /* v3 frames: KEYX is exactly 32 bytes; SEALED is opaque, 26..256 KiB; a
   * whole frame decodes only when it ends exactly where the buffer does. */
  uint8_t pk[32], kf[64], big[PD_WIRE_HEADER_LEN + PD_WIRE_SEALED_MIN];
  size_t fl = 0;
  for (int i = 0; i < 32; i++) pk[i] = (uint8_t)i;
  assert_int_equal(pd_wire_encode_keyx(MAGIC, pk, kf, sizeof kf, &fl), 0);
  assert_int_equal(fl, PD_WIRE_HEADER_LEN + 32);
  assert_int_equal(kf[4], PD_WIRE_KEYX);
  pd_wire_msg_t *km = calloc(1, sizeof *km);
  assert_non_null(km);
  assert_int_equal(pd_wire_decode_frame(MAGIC, kf, fl, km), PD_WIRE_R_NONE);
  assert_int_equal(km->type, PD_WIRE_KEYX);
  assert_memory_equal(km->keyx.pk, pk, 32);
  assert_int_equal(pd_wire_decode_frame(MAGIC, kf, fl - 1, km), PD_WIRE_R_TRUNCATED);
  kf[9] = 31; /* KEYX of 31 bytes */
  assert_int_equal(pd_wire_decode_frame(MAGIC, kf, fl - 1, km), PD_WIRE_R_BAD_LENGTH);
  kf[9] = 32;
  kf[fl] = 0;
  assert_int_equal(pd_wire_decode_frame(MAGIC, kf, fl + 1, km), PD_WIRE_R_BAD_LENGTH);
  assert_int_equal(pd_wire_decode_frame(MAGIC, kf, 5, km), PD_WIRE_R_TRUNCATED);
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_SEALED_MIN, big);
  memset(big + PD_WIRE_HEADER_LEN, 0xab, PD_WIRE_SEALED_MIN);
  assert_int_equal(pd_wire_decode_frame(MAGIC, big, sizeof big, km), PD_WIRE_R_NONE);
  assert_int_equal(km->type, PD_WIRE_SEALED);
  assert_ptr_equal(km->sealed.hdr, big);
  assert_ptr_equal(km->sealed.data, big + PD_WIRE_HEADER_LEN);
  assert_int_equal(km->sealed.len, PD_WIRE_SEALED_MIN);
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_SEALED_MIN - 1, big);
  assert_int_equal(pd_wire_decode_frame(MAGIC, big, sizeof big - 1, km), PD_WIRE_R_BAD_LENGTH);
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_MAX_PAYLOAD + 1, big);
  assert_int_equal(pd_wire_decode_frame(MAGIC, big, sizeof big, km), PD_WIRE_R_OVERSIZED);
  assert_string_equal(pd_wire_type_name(PD_WIRE_KEYX), "keyx");
  assert_string_equal(pd_wire_type_name(PD_WIRE_SEALED), "sealed");
  assert_string_equal(pd_wire_reason_name(PD_WIRE_R_BAD_MAC), "bad_mac");
  assert_string_equal(pd_wire_reason_name(PD_WIRE_R_NOT_SEALED), "not_sealed");
  /* an inner ADDR leaves room for the seal around it */
  assert_int_equal(PD_WIRE_ADDR_MAX_PAYLOAD + PD_WIRE_SEAL_OVERHEAD, PD_WIRE_MAX_PAYLOAD);
  free(km);

  uint8_t mg[4];
  char hex[9];
  assert_int_equal(pd_wire_magic_format(MAGIC, hex, sizeof hex), 8);
  assert_string_equal(hex, "f5706431");
  assert_int_equal(pd_wire_magic_parse("F5706431", mg), 0);
  assert_memory_equal(mg, MAGIC, 4);
  assert_int_equal(pd_wire_magic_parse("f570643", mg), PD_EINVAL);
  assert_int_equal(pd_wire_magic_parse("f570643g", mg), PD_EINVAL);
  assert_int_equal(pd_wire_magic_parse("f57064311", mg), PD_EINVAL);
  assert_int_equal(pd_wire_magic_format(MAGIC, hex, 8), PD_ETOOBIG);

  /* docs/protocol.md §8, byte for byte. */
  static const uint8_t ping1[18] = {0xf5, 0x70, 0x64, 0x31, 0x03, 0x00, 0x00, 0x00, 0x00,
                                    0x08, 0, 0, 0, 0, 0, 0, 0, 0x01};
  static const uint8_t getaddr[10] = {0xf5, 0x70, 0x64, 0x31, 0x05, 0, 0, 0, 0, 0};
  uint8_t f[32];
  size_t n;
  assert_int_equal(pd_wire_encode_ping(MAGIC, 1, f, sizeof f, &n), 0);
  assert_int_equal(n, 18);
  assert_memory_equal(f, ping1, 18);
  assert_int_equal(pd_wire_encode_getaddr(MAGIC, f, sizeof f, &n), 0);
  assert_int_equal(n, 10);
  assert_memory_equal(f, getaddr, 10);
}

/* Run a decoder over data in random chunks: it must end in NEED_MORE or a
 * clean rejection; every message it yields must re-encode. */
static int fuzz_run(const uint8_t *data, size_t len, uint64_t *seed, int *msgs, int *hist) {
  static pd_wire_msg_t m;
  static uint8_t out[PD_WIRE_MAX_FRAME];
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  size_t pos = 0;
  int rc = PD_WIRE_NEED_MORE;
  while (pos < len) {
    size_t chunk = 1 + next(seed) % 64;
    if (chunk > len - pos) chunk = len - pos;
    size_t used = 0;
    rc = pd_wire_decoder_feed(&d, data + pos, chunk, &used, &m);
    assert_true(used <= chunk);
    pos += used;
    if (rc == PD_WIRE_MESSAGE) {
      size_t n;
      assert_int_equal(pd_wire_encode(MAGIC, &m, out, sizeof out, &n), 0);
      (*msgs)++;
      continue;
    }
    if (rc == PD_WIRE_NEED_MORE) {
      assert_int_equal(used, chunk);
      continue;
    }
    assert_int_equal(rc, PD_EINVAL);
    assert_int_not_equal(pd_wire_decoder_reason(&d), PD_WIRE_R_NONE);
    assert_int_not_equal(pd_wire_decoder_reason(&d), PD_WIRE_R_NO_MEMORY);
    hist[pd_wire_decoder_reason(&d)]++;
    break;
  }
  pd_wire_decoder_free(&d);
  return rc;
}

static void fuzz_never_crashes(void **state) {
  (void)state;
  uint64_t seed = 2024;
  int iters = under_valgrind() ? 500 : 20000;
  int hist[PD_WIRE_R_COUNT] = {0};
  size_t cap = 1 << 16;
  uint8_t *buf = malloc(cap), *stream = malloc(1 << 20);
  assert_non_null(buf);
  assert_non_null(stream);
  int rejected = 0, need_more = 0, msgs = 0;
  /* Pure garbage, sometimes with our magic in front so the header and
   * payload parsers are reached. */
  for (int it = 0; it < iters; it++) {
    size_t len = 1 + next(&seed) % 600;
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)next(&seed);
    if (it % 2 && len >= 10) {
      memcpy(buf, MAGIC, 4);
      buf[4] = (uint8_t)(1 + next(&seed) % 7);
      buf[5] = 0;
      uint32_t pl = (uint32_t)(next(&seed) % 1200); /* may run past the end */
      buf[6] = 0;
      buf[7] = (uint8_t)(pl >> 16);
      buf[8] = (uint8_t)(pl >> 8);
      buf[9] = (uint8_t)pl;
    }
    int rc = fuzz_run(buf, len, &seed, &msgs, hist);
    if (rc == PD_EINVAL) rejected++;
    else need_more += rc == PD_WIRE_NEED_MORE;
  }
  /* Mutations of a valid stream: flip 1..4 bytes. */
  uint64_t sseed = 77;
  size_t slen = build_stream(stream, 1 << 20, 40, &sseed);
  uint8_t *mut = malloc(slen);
  assert_non_null(mut);
  int mut_rejected = 0;
  for (int it = 0; it < iters; it++) {
    memcpy(mut, stream, slen);
    int flips = 1 + (int)(next(&seed) % 4);
    for (int k = 0; k < flips; k++) mut[next(&seed) % slen] ^= (uint8_t)(1 + next(&seed) % 255);
    mut_rejected += fuzz_run(mut, slen, &seed, &msgs, hist) == PD_EINVAL;
  }
  /* The loop must exercise all outcomes. */
  assert_true(rejected > 0);
  assert_true(need_more > 0);
  assert_true(msgs > 0);
  assert_true(mut_rejected > 0);
  int distinct = 0;
  for (int i = 0; i < PD_WIRE_R_COUNT; i++) distinct += hist[i] > 0;
  assert_true(distinct >= 8); /* the fuzz reaches deep into the parsers */
  free(mut);
  free(buf);
  free(stream);
}

/* v2: a HELLO carrying a record and the observed address, ADDR entries
 * carrying records; each malformed form refused with its reason. */
static void v2_records(void **state) {
  (void)state;
  uint64_t seed = 77;
  static uint8_t f[PD_WIRE_MAX_FRAME + 64];
  size_t n;
  uint8_t rec[PD_WIRE_RECORD_MAX];
  for (size_t i = 0; i < sizeof rec; i++) rec[i] = (uint8_t)(i * 7);
  pd_wire_hello_t h;
  sample_hello(&h, &seed);
  h.record = rec;
  h.record_len = 200;
  h.has_observed = true;
  h.observed = v4(9, 9, 9, 9, 40001);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  static pd_wire_msg_t m;
  pd_wire_reason_t why;
  assert_int_equal(decode_one(f, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(m.hello.record_len, 200);
  assert_memory_equal(m.hello.record, rec, 200);
  assert_true(m.hello.has_observed);
  assert_true(pd_netaddr_equal(&m.hello.observed, &h.observed));
  assert_round_trip(f, n, PD_WIRE_HELLO);
  /* the largest: a 512-byte record, longest strings: within HELLO's 1,024 */
  h.record_len = PD_WIRE_RECORD_MAX;
  memset(h.network, 'n', PD_WIRE_NETWORK_MAX);
  h.network[PD_WIRE_NETWORK_MAX] = 0;
  memset(h.agent, 'a', PD_WIRE_AGENT_MAX);
  h.agent[PD_WIRE_AGENT_MAX] = 0;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  assert_int_equal(n, PD_WIRE_HEADER_LEN + 277 + 2 + 512 + 1 + 18);
  assert_round_trip(f, n, PD_WIRE_HELLO);
  /* a record longer than 512: not encoded; on the wire, bad_field */
  h.record_len = PD_WIRE_RECORD_MAX + 1;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), PD_EINVAL);
  sample_hello(&h, &seed);
  h.record = rec;
  h.record_len = 10;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  size_t ext = n - 1 - 10 - 2; /* offset of record_len (no observed address) */
  f[ext] = 0x02;                     /* 522 */
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[n - 1] = 2; /* has_observed = 2 (no observed address follows) */
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  f[9]--; /* the frame ends inside the extension */
  expect_reject(f, n - 1, PD_WIRE_R_TRUNCATED);

  static pd_wire_addr_entry_t e[4];
  fill_addrs(e, 4, &seed, true);
  e[1].record = rec;
  e[1].record_len = 300;
  e[3].record = rec + 5;
  e[3].record_len = PD_WIRE_RECORD_MAX - 5;
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 4, f, sizeof f, &n), 0);
  assert_int_equal(decode_one(f, n, &m, &why), PD_WIRE_MESSAGE);
  assert_int_equal(m.addr.count, 4);
  assert_int_equal(m.addr.entries[0].record_len, 0);
  assert_null(m.addr.entries[0].record);
  assert_int_equal(m.addr.entries[1].record_len, 300);
  assert_memory_equal(m.addr.entries[1].record, rec, 300);
  assert_memory_equal(m.addr.entries[3].record, rec + 5, PD_WIRE_RECORD_MAX - 5);
  assert_round_trip(f, n, PD_WIRE_ADDR);
  /* a record without a node id cannot be encoded */
  e[1].has_id = false;
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, 4, f, sizeof f, &n), PD_EINVAL);
  e[1].has_id = true;
  /* on the wire: a record length of 0 or above 512 is bad_field */
  static pd_wire_addr_entry_t one[1];
  one[0] = e[1];
  assert_int_equal(pd_wire_encode_addr(MAGIC, one, 1, f, sizeof f, &n), 0);
  size_t rl = 10 + 2 + 1 + 18 + 8 + 20; /* offset of its record_len */
  f[rl] = 0;
  f[rl + 1] = 0;
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_addr(MAGIC, one, 1, f, sizeof f, &n), 0);
  f[rl] = 0x02;
  f[rl + 1] = 0x01;
  expect_reject(f, n, PD_WIRE_R_BAD_FIELD);
  assert_int_equal(pd_wire_encode_addr(MAGIC, one, 1, f, sizeof f, &n), 0);
  f[9]--;
  expect_reject(f, n - 1, PD_WIRE_R_TRUNCATED);
  /* 1,000 entries with 512-byte records exceed the frame: not encoded */
  static pd_wire_addr_entry_t big[PD_WIRE_MAX_ADDRS];
  fill_addrs(big, PD_WIRE_MAX_ADDRS, &seed, true);
  for (size_t i = 0; i < PD_WIRE_MAX_ADDRS; i++) {
    big[i].record = rec;
    big[i].record_len = PD_WIRE_RECORD_MAX;
  }
  assert_int_equal(pd_wire_encode_addr(MAGIC, big, PD_WIRE_MAX_ADDRS, f, sizeof f, &n), PD_ETOOBIG);
  /* 400 of them fit (400 x 561 + 2 = 224,402 bytes) */
  assert_int_equal(pd_wire_encode_addr(MAGIC, big, 400, f, sizeof f, &n), 0);
  assert_round_trip(f, n, PD_WIRE_ADDR);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_every_type),
      cmocka_unit_test(chunking_gives_identical_results),
      cmocka_unit_test(split_frame_buffer_released),
      cmocka_unit_test(several_frames_in_one_chunk),
      cmocka_unit_test(every_rejection_reason),
      cmocka_unit_test(boundary_sizes),
      cmocka_unit_test(v2_records),
      cmocka_unit_test(encoder_refuses_invalid),
      cmocka_unit_test(handshake_helpers),
      cmocka_unit_test(fuzz_never_crashes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
