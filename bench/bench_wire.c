/* bench_wire — encode and decode rates of the wire codec.
 *
 * A realistic mix of frames: per 100 frames, 80 PING/PONG, 10 HELLO (with a
 * listen address and a user agent), 2 HELLO_ACK, 4 GETADDR, 2 GOODBYE and
 * 2 ADDR with 1,000 entries (half with node IDs). Also each kind alone.
 * Prints frames/s, ns/frame and MB/s for:
 *   encode      pd_wire_encode_* into one buffer
 *   decode/1    pd_wire_decoder_feed, the whole stream in one chunk (frames
 *               decoded in place)
 *   decode/1460 fed in 1,460-byte chunks (a TCP segment: most frames split
 *               across reads and copied into the decoder's buffer)
 * Best of 5 runs.
 *   --quick   a small stream, one run (keeps it working under ctest)
 * Only this program reads a clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wire.h"

static const uint8_t MAGIC[4] = PD_WIRE_MAGIC_DEFAULT_INIT;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct {
  pd_wire_hello_t hello;
  pd_wire_addr_entry_t addrs[PD_WIRE_MAX_ADDRS];
  uint8_t sig[PD_WIRE_SIG_LEN];
} fixtures_t;

static void make_fixtures(fixtures_t *fx, uint64_t *seed) {
  memset(fx, 0, sizeof *fx);
  pd_wire_hello_t *h = &fx->hello;
  h->max_version = 1;
  h->min_version = 1;
  for (int i = 0; i < PD_NODE_ID_LEN; i++) h->node_id[i] = (uint8_t)next(seed);
  for (int i = 0; i < PD_WIRE_PUBKEY_LEN; i++) h->pubkey[i] = (uint8_t)next(seed);
  for (int i = 0; i < PD_WIRE_CHALLENGE_LEN; i++) h->challenge[i] = (uint8_t)next(seed);
  h->timestamp = 1700000000;
  h->has_listen = true;
  h->listen.ip[10] = h->listen.ip[11] = 0xff;
  h->listen.ip[12] = 93;
  h->listen.ip[13] = 184;
  h->listen.ip[14] = 216;
  h->listen.ip[15] = 34;
  h->listen.port = 7411;
  strcpy(h->network, PD_WIRE_NETWORK_DEFAULT);
  strcpy(h->agent, "peerd/" PEERD_VERSION);
  for (int i = 0; i < PD_WIRE_MAX_ADDRS; i++) {
    pd_wire_addr_entry_t *e = &fx->addrs[i];
    uint64_t r = next(seed);
    e->addr.ip[10] = e->addr.ip[11] = 0xff;
    e->addr.ip[12] = (uint8_t)(1 + r % 200);
    e->addr.ip[13] = (uint8_t)(r >> 8);
    e->addr.ip[14] = (uint8_t)(r >> 16);
    e->addr.ip[15] = (uint8_t)(1 + (r >> 24) % 250);
    e->addr.port = (uint16_t)(1 + (r >> 32) % 65535);
    e->timestamp = 1700000000 - (int64_t)(r % 86400);
    e->has_id = i % 2;
    for (int k = 0; k < PD_NODE_ID_LEN; k++) e->id[k] = (uint8_t)(r >> (k % 8));
  }
  for (int i = 0; i < PD_WIRE_SIG_LEN; i++) fx->sig[i] = (uint8_t)next(seed);
}

/* kind: -1 = mix, else a message type. Encodes `frames` frames into buf;
 * returns bytes written or 0 if buf is too small. */
static size_t encode_stream(const fixtures_t *fx, int kind, int frames, uint8_t *buf, size_t cap) {
  size_t off = 0;
  for (int i = 0; i < frames; i++) {
    int t = kind;
    if (kind < 0) {
      int k = i % 100;
      t = k < 40 ? PD_WIRE_PING
        : k < 80 ? PD_WIRE_PONG
        : k < 90 ? PD_WIRE_HELLO
        : k < 92 ? PD_WIRE_HELLO_ACK
        : k < 96 ? PD_WIRE_GETADDR
        : k < 98 ? PD_WIRE_GOODBYE
                 : PD_WIRE_ADDR;
    }
    size_t n = 0;
    int rc;
    switch (t) {
    case PD_WIRE_HELLO: rc = pd_wire_encode_hello(MAGIC, &fx->hello, buf + off, cap - off, &n); break;
    case PD_WIRE_HELLO_ACK: rc = pd_wire_encode_ack(MAGIC, fx->sig, buf + off, cap - off, &n); break;
    case PD_WIRE_PING: rc = pd_wire_encode_ping(MAGIC, (uint64_t)i, buf + off, cap - off, &n); break;
    case PD_WIRE_PONG: rc = pd_wire_encode_pong(MAGIC, (uint64_t)i, buf + off, cap - off, &n); break;
    case PD_WIRE_GETADDR: rc = pd_wire_encode_getaddr(MAGIC, buf + off, cap - off, &n); break;
    case PD_WIRE_GOODBYE:
      rc = pd_wire_encode_goodbye(MAGIC, PD_WIRE_BYE_NORMAL, "shutting down", buf + off, cap - off, &n);
      break;
    default:
      rc = pd_wire_encode_addr(MAGIC, fx->addrs, PD_WIRE_MAX_ADDRS, buf + off, cap - off, &n);
      break;
    }
    if (rc != 0) return 0;
    off += n;
  }
  return off;
}

/* Decodes the stream in chunks of `chunk` bytes (0 = all); returns frames or -1. */
static long decode_stream(const uint8_t *s, size_t len, size_t chunk, pd_wire_msg_t *m) {
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  long frames = 0;
  size_t pos = 0;
  while (pos < len) {
    size_t c = chunk == 0 || chunk > len - pos ? len - pos : chunk;
    size_t cp = 0;
    while (cp < c) {
      size_t used;
      int rc = pd_wire_decoder_feed(&d, s + pos + cp, c - cp, &used, m);
      cp += used;
      if (rc == PD_WIRE_MESSAGE) frames++;
      else if (rc == PD_WIRE_NEED_MORE) break;
      else {
        pd_wire_decoder_free(&d);
        return -1;
      }
    }
    pos += c;
  }
  pd_wire_decoder_free(&d);
  return frames;
}

static void report(const char *what, const char *mode, long frames, size_t bytes, double secs) {
  printf("%-8s %-12s %9ld frames %10.0f frames/s %9.1f ns/frame %9.1f MB/s\n", what, mode, frames,
         frames / secs, secs * 1e9 / frames, bytes / secs / 1e6);
}

static int bench_kind(const fixtures_t *fx, int kind, const char *name, int frames, int runs,
                      uint8_t *buf, size_t cap, pd_wire_msg_t *m) {
  double best = 1e30;
  size_t len = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = now_s();
    len = encode_stream(fx, kind, frames, buf, cap);
    double t = now_s() - t0;
    if (len == 0) return -1;
    if (t < best) best = t;
  }
  report(name, "encode", frames, len, best);
  static const size_t chunks[] = {0, 1460};
  for (size_t ci = 0; ci < 2; ci++) {
    best = 1e30;
    for (int r = 0; r < runs; r++) {
      double t0 = now_s();
      long got = decode_stream(buf, len, chunks[ci], m);
      double t = now_s() - t0;
      if (got != frames) return -1;
      if (t < best) best = t;
    }
    report(name, chunks[ci] ? "decode/1460" : "decode/1", frames, len, best);
  }
  return 0;
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  int runs = quick ? 1 : 5;
  int mix_frames = quick ? 2000 : 100000;
  uint64_t seed = 1;
  fixtures_t *fx = malloc(sizeof *fx);
  pd_wire_msg_t *m = malloc(sizeof *m);
  /* Mix: 2 ADDR of ~35 KB per 100 frames. */
  size_t cap = (size_t)(mix_frames / 100 + 1) * 2 * (PD_WIRE_HEADER_LEN + PD_WIRE_MAX_MSG_PAYLOAD) +
               (size_t)mix_frames * 400;
  uint8_t *buf = malloc(cap);
  if (!fx || !m || !buf) {
    fprintf(stderr, "bench_wire: out of memory\n");
    return 1;
  }
  make_fixtures(fx, &seed);
  memset(buf, 0, cap); /* fault the pages in before timing */
  printf("wire codec, best of %d run(s); sizeof(pd_wire_msg_t) = %zu bytes, "
         "sizeof(pd_wire_decoder_t) = %zu bytes\n",
         runs, sizeof(pd_wire_msg_t), sizeof(pd_wire_decoder_t));
  size_t one;
  pd_wire_encode_addr(MAGIC, fx->addrs, PD_WIRE_MAX_ADDRS, buf, cap, &one);
  printf("ADDR with 1,000 entries (half with IDs): %zu bytes; HELLO: ", one);
  pd_wire_encode_hello(MAGIC, &fx->hello, buf, cap, &one);
  printf("%zu bytes; PING: 18 bytes\n", one);
  int rc = 0;
  rc |= bench_kind(fx, -1, "mix", mix_frames, runs, buf, cap, m);
  rc |= bench_kind(fx, PD_WIRE_PING, "ping", quick ? 5000 : 1000000, runs, buf, cap, m);
  rc |= bench_kind(fx, PD_WIRE_HELLO, "hello", quick ? 2000 : 200000, runs, buf, cap, m);
  rc |= bench_kind(fx, PD_WIRE_ADDR, "addr1000", quick ? 20 : mix_frames / 50, runs, buf, cap, m);
  free(buf);
  free(m);
  free(fx);
  if (rc) {
    fprintf(stderr, "bench_wire: codec failure\n");
    return 1;
  }
  return 0;
}
