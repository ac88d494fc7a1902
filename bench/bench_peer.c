/* bench_peer — the connection state machine between two in-memory peers
 * (protocol v3: every frame after KEYX sealed by one end, opened by the
 * other, ChaCha20-Poly1305).
 *
 * Prints, per row, the median of R runs (default 9) and the min–max of the
 * per-run rates (not the best run):
 *   handshake   full v3 handshakes per second, both ends in this process:
 *               pd_peer_new on each side (ephemeral X25519 key pair from
 *               crypto_kx_seed_keypair), KEYX both ways, X25519 session
 *               keys on each side (crypto_kx), sealed HELLO both ways,
 *               checks, transcript hash (BLAKE2b), Ed25519 sign and verify
 *               on each side (sealed HELLO_ACK), first PING and GETADDR
 *               queued, sealed and opened; bytes moved in one chunk per
 *               flight. This is the CPU cost of both ends, so one daemon
 *               accepting from others does about twice this rate
 *   ping        keep-alive rounds per second on a READY pair: a round
 *               advances the clock 120 s (two ping intervals) and ticks both
 *               ends, so each end sends a PING and answers the other's with
 *               a PONG: 2 PINGs + 2 PONGs, each sealed by one end and opened
 *               (and, for the PONG, turned into a latency) by the other
 *   addr        an ADDR of 1,000 entries (half with a node ID) sealed by A
 *               (pd_peer_send_frame) and opened and handled by B (decode,
 *               token bucket, shuffle of the survivors), messages per second
 * and the heap footprint of an idle READY peer (pd_peer_footprint).
 *   --quick     small counts, one run (keeps it working under ctest)
 *   --wall      time with the monotonic clock (default: this thread's CPU
 *               time, which leaves out waits for a core on a shared machine)
 *   --runs R    R runs (1..99)
 * Only this program reads a clock.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peer.h"

static const uint8_t MAGIC[4] = PD_WIRE_MAGIC_DEFAULT_INIT;
#define T0 ((int64_t)1700000000000)

/* The clock: this thread's CPU time by default, so that time the thread
 * spends waiting for a core that other programs hold is not counted (the
 * machine these figures come from is shared); --wall: the monotonic clock. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(bench_clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MAX_RUNS 99

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median, min and max of n per-run rates (sorts them). */
static double median(double *v, int n, double *lo, double *hi) {
  qsort(v, (size_t)n, sizeof v[0], cmp_double);
  *lo = v[0];
  *hi = v[n - 1];
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
  uint8_t *b;
  size_t len, cap;
} buf_t;

/* Drain a peer's actions; SEND bytes are appended to out. Returns -1 on an
 * unexpected CLOSE. */
static int drain(pd_peer_t *p, buf_t *out) {
  pd_peer_action_t a;
  int rc = 0;
  while (pd_peer_poll(p, &a)) {
    if (a.type == PD_PEER_A_SEND) {
      if (out->len + a.send.len > out->cap) {
        size_t ncap = out->cap ? out->cap : 4096;
        while (ncap < out->len + a.send.len) ncap *= 2;
        uint8_t *nb = realloc(out->b, ncap);
        if (!nb) return -1;
        out->b = nb;
        out->cap = ncap;
      }
      memcpy(out->b + out->len, a.send.data, a.send.len);
      out->len += a.send.len;
    } else if (a.type == PD_PEER_A_CLOSE) {
      rc = -1;
    }
  }
  return rc;
}

/* Bounce bytes until both sides are quiet. */
static int settle(pd_peer_t *a, pd_peer_t *b, buf_t *ab, buf_t *ba, int64_t now) {
  for (int round = 0; round < 10 && (ab->len || ba->len); round++) {
    buf_t tmp = *ab;
    ab->len = 0;
    if (tmp.len && (pd_peer_on_bytes(b, tmp.b, tmp.len, now) || drain(b, ba))) return -1;
    /* drain(b) appended to ba; tmp still owns ab's storage */
    tmp = *ba;
    ba->len = 0;
    if (tmp.len && (pd_peer_on_bytes(a, tmp.b, tmp.len, now) || drain(a, ab))) return -1;
  }
  return 0;
}

static int make_pair(const pd_identity_t *ia, const pd_identity_t *ib, pd_rng_t *rng,
                     pd_peer_t **a, pd_peer_t **b, buf_t *ab, buf_t *ba) {
  pd_peer_params_t pa, pb;
  memset(&pa, 0, sizeof pa);
  pa.self = ia;
  pa.magic = MAGIC;
  pa.network = PD_WIRE_NETWORK_DEFAULT;
  pa.dir = PD_PEER_OUTBOUND;
  pa.expect_id = ib->id;
  pb = pa;
  pb.self = ib;
  pb.dir = PD_PEER_INBOUND;
  pb.expect_id = NULL;
  if (pd_peer_new(a, &pa, rng, T0) || pd_peer_new(b, &pb, rng, T0)) return -1;
  if (drain(*a, ab) || drain(*b, ba)) return -1;
  if (settle(*a, *b, ab, ba, T0)) return -1;
  if (pd_peer_state(*a) != PD_PEER_READY || pd_peer_state(*b) != PD_PEER_READY) return -1;
  return 0;
}

int main(int argc, char **argv) {
  int quick = 0, runs = 9;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = 1;
      runs = 1;
    } else if (strcmp(argv[i], "--wall") == 0) {
      bench_clock = CLOCK_MONOTONIC;
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: bench_peer [--quick] [--runs R] [--wall]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > MAX_RUNS) {
    fprintf(stderr, "bench_peer: --runs must be 1..%d\n", MAX_RUNS);
    return 2;
  }
  long nhs = quick ? 50 : 2000, nping = quick ? 2000 : 100000, naddr = quick ? 50 : 3000;
  double rate[MAX_RUNS], lo, hi, med;
  if (sodium_init() < 0) return 1;
  pd_identity_t ia, ib;
  uint8_t seed[32];
  memset(seed, 1, 32);
  pd_identity_from_seed(&ia, seed);
  memset(seed, 2, 32);
  pd_identity_from_seed(&ib, seed);
  pd_rng_t rng;
  pd_rng_seed(&rng, 42);
  buf_t ab = {0}, ba = {0};
  int rc = 0;

  printf("bench_peer: median of %d run(s) (min-max of the per-run rates); clock: %s\n", runs,
         bench_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU time");
  for (int r = 0; r < runs && !rc; r++) {
    double t = now_s();
    for (long i = 0; i < nhs; i++) {
      pd_peer_t *a = NULL, *b = NULL;
      ab.len = ba.len = 0;
      if (make_pair(&ia, &ib, &rng, &a, &b, &ab, &ba)) rc = 1;
      pd_peer_free(a);
      pd_peer_free(b);
      if (rc) break;
    }
    rate[r] = nhs / (now_s() - t);
  }
  if (!rc) {
    med = median(rate, runs, &lo, &hi);
    printf("handshake %8ld pairs  %8.0f handshakes/s (%.0f-%.0f) %7.1f us/handshake (both ends;"
           " KEYX + X25519 + ChaCha20-Poly1305 + Ed25519 on each)\n",
           nhs, med, lo, hi, 1e6 / med);
  }

  pd_peer_t *a = NULL, *b = NULL;
  ab.len = ba.len = 0;
  if (!rc && make_pair(&ia, &ib, &rng, &a, &b, &ab, &ba)) rc = 1;
  if (!rc) {
    printf("idle READY peer footprint: %zu bytes (a), %zu bytes (b)\n", pd_peer_footprint(a),
           pd_peer_footprint(b));
    uint8_t ping[32];
    size_t plen = 0;
    pd_wire_encode_ping(MAGIC, 7, ping, sizeof ping, &plen);
    int64_t now = T0;
    for (int r = 0; r < runs && !rc; r++) {
      double t = now_s();
      for (long i = 0; i < nping; i++) {
        /* a pings b (via its tick), b pongs, a measures; an end pings two
         * intervals after its own last PING (the ends take turns) */
        now += 120000;
        ab.len = ba.len = 0;
        if (pd_peer_on_tick(a, now) || drain(a, &ab)) rc = 1;
        if (!rc && pd_peer_on_tick(b, now)) rc = 1;
        if (!rc && drain(b, &ba)) rc = 1;
        if (!rc && settle(a, b, &ab, &ba, now)) rc = 1;
        if (rc) break;
      }
      rate[r] = nping / (now_s() - t);
    }
    if (!rc && pd_peer_stats(a)->frames_in[PD_WIRE_PONG] < (uint64_t)(nping * runs)) rc = 1;
    if (!rc) {
      med = median(rate, runs, &lo, &hi);
      printf("ping      %8ld rounds %8.0f rounds/s (%.0f-%.0f) %7.1f ns/round"
             " (2 ticks, 2 PING + 2 PONG, each sealed and opened)\n",
             nping, med, lo, hi, 1e9 / med);
    }

    size_t cap = PD_WIRE_HEADER_LEN + PD_WIRE_ADDR_MAX_PAYLOAD, flen = 0;
    uint8_t *frame = malloc(cap);
    pd_wire_addr_entry_t *e = calloc(PD_WIRE_MAX_ADDRS, sizeof *e);
    if (!frame || !e) rc = 1;
    for (int i = 0; !rc && i < PD_WIRE_MAX_ADDRS; i++) {
      e[i].addr.ip[10] = e[i].addr.ip[11] = 0xff;
      e[i].addr.ip[12] = (uint8_t)(20 + i % 100);
      e[i].addr.ip[13] = (uint8_t)i;
      e[i].addr.ip[14] = (uint8_t)(i >> 8);
      e[i].addr.ip[15] = 1;
      e[i].addr.port = 7411;
      e[i].timestamp = 1700000000;
      e[i].has_id = i & 1;
    }
    if (!rc && pd_wire_encode_addr(MAGIC, e, PD_WIRE_MAX_ADDRS, frame, cap, &flen)) rc = 1;
    for (int r = 0; r < runs && !rc; r++) {
      double t = now_s();
      for (long i = 0; i < naddr; i++) {
        ab.len = 0;
        ba.len = 0;
        /* v3: A seals the frame (pd_peer_send_frame), B opens and handles it */
        if (pd_peer_send_frame(a, frame, flen) || drain(a, &ba) ||
            pd_peer_on_bytes(b, ba.b, ba.len, T0 + 1000000 + i * 100000) || drain(b, &ab)) {
          rc = 1;
          break;
        }
      }
      rate[r] = naddr / (now_s() - t);
    }
    if (!rc) {
      med = median(rate, runs, &lo, &hi);
      printf("addr      %8ld msgs   %8.0f ADDR(1000)/s (%.0f-%.0f) %7.1f us/msg (%zu B frame sealed by"
             " A, opened by B; rate-limited to ~10 kept)\n",
             naddr, med, lo, hi, 1e6 / med, flen);
    }
    free(frame);
    free(e);
  }
  pd_peer_free(a);
  pd_peer_free(b);
  free(ab.b);
  free(ba.b);
  pd_identity_wipe(&ia);
  pd_identity_wipe(&ib);
  if (rc) fprintf(stderr, "bench_peer: failed\n");
  return rc;
}
