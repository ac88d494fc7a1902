/* bench_seal — the protocol v3 session cipher (host/core/seal.c) in memory,
 * on one core, with no peer state machine and no sockets around it.
 *
 * Rows (an "inner frame" is the whole plain frame that goes inside a SEALED
 * frame, its 10-byte header included; the SEALED frame adds 26 bytes):
 *   seal SIZE   pd_seal_frame: seal one inner frame of SIZE bytes in place
 *               (ChaCha20-Poly1305 IETF, header as AD, counter nonce), key
 *               rotations included as they fall due (every 4,096 frames or
 *               16 MiB of inner bytes per key)
 *   open SIZE   pd_seal_open: check the tag and decrypt one such SEALED
 *               frame into a separate buffer (rotations included likewise)
 *               SIZEs: 18 B (a PING), 64 B, 1 KiB, 47,012 B (an ADDR of 1,000
 *               entries, each with a node ID) and 262,128 B (the largest
 *               inner frame: 256 KiB of payload limit minus the tag).
 *               Frames are sealed and opened in batches of up to 1 MiB that
 *               stay in cache (seal batch, then open it, both timed apart;
 *               the null seal seals each batch several times, see below).
 *               frames/s, MB/s of inner bytes (1 MB = 10^6 B), ns/frame.
 *   the same with the null cipher (the lab: zero tag, inner frame in clear;
 *               what the lab pays for the v3 frame layout)
 *   aead        crypto_aead_chacha20poly1305_ietf_encrypt_detached alone on
 *               18 B with a 10 B AD: the floor under "seal 18 B"
 *   rotate      a seal of an 18 B frame that is the 4,096th under its key,
 *               so it also derives the next key (crypto_kdf); the extra over
 *               a plain 18 B seal (same loop) is the cost of one rotation
 *   keypair     pd_seal_keypair: crypto_kx_seed_keypair (BLAKE2b of the
 *               seed, X25519 base-point multiplication)
 *   init        pd_seal_init: crypto_kx session keys (X25519 with the
 *               peer's key, BLAKE2b-512), roles alternating
 *   kx          keypair + init: what one end of a connection spends on
 *               the key exchange (each end does it once per connection)
 * Every row is timed in each of R runs (default 11); the runs interleave the
 * rows, so machine drift hits them alike. Printed: the median of the R
 * per-run rates and, in brackets, their min–max (not the best run).
 *   --quick     small counts, one run (keeps it working under ctest)
 *   --wall      time with the monotonic clock (default: this thread's CPU
 *               time, which leaves out waits for a core on a shared machine)
 *   --runs R    R runs (1..101)
 * Checks, always: a sealed batch opens to the original bytes, a flipped byte
 * does not open, a rotation happens where due, both ends derive the same
 * keys; exit status 1 otherwise. Only this program reads a clock.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seal.h"
#include "wire.h"

static const uint8_t MAGIC[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;

#define MAX_RUNS 101
#define MAX_INNER (PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN) /* 262,128 */
#define BATCH_BYTES (1u << 20)
#define BATCH_MAX 4096u

/* The clock: this thread's CPU time by default, so that time the thread
 * spends waiting for a core that other programs hold is not counted (the
 * machine these figures come from is shared); --wall: the monotonic clock. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(bench_clock, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One printed row: per-run rates (ops per second). */
typedef struct {
  char name[96];
  double unit_bytes; /* inner bytes per op, 0 = not a byte rate */
  long ops;          /* ops per run */
  double rate[MAX_RUNS];
  int n;
} row_t;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median_of(const row_t *r, double *lo, double *hi) {
  double v[MAX_RUNS];
  memcpy(v, r->rate, sizeof(double) * (size_t)r->n);
  qsort(v, (size_t)r->n, sizeof v[0], cmp_double);
  *lo = v[0];
  *hi = v[r->n - 1];
  return r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
}

static void print_row(const row_t *r) {
  double lo, hi, med = median_of(r, &lo, &hi);
  if (med >= 1e6)
    printf("%-58s %8ld/run %7.2f M/s (%.2f-%.2f)", r->name, r->ops, med / 1e6, lo / 1e6, hi / 1e6);
  else
    printf("%-58s %8ld/run %7.1f k/s (%.1f-%.1f)", r->name, r->ops, med / 1e3, lo / 1e3, hi / 1e3);
  if (r->unit_bytes > 0)
    printf(" %8.1f MB/s (%.1f-%.1f)", med * r->unit_bytes / 1e6, lo * r->unit_bytes / 1e6,
           hi * r->unit_bytes / 1e6);
  if (med >= 1e6)
    printf(" %8.1f ns/op\n", 1e9 / med);
  else
    printf(" %8.2f us/op\n", 1e6 / med);
}

/* A connected pair of sessions: d seals what l opens (dialler -> listener). */
typedef struct {
  pd_seal_t d, l;
} pair_t;

static int make_pair(pair_t *p, bool null_cipher) {
  uint8_t seed[PD_WIRE_KEYX_LEN], dpk[PD_WIRE_KEYX_LEN], dsk[PD_WIRE_KEYX_LEN];
  uint8_t lpk[PD_WIRE_KEYX_LEN], lsk[PD_WIRE_KEYX_LEN];
  memset(seed, 1, sizeof seed);
  if (pd_seal_keypair(seed, dpk, dsk, null_cipher)) return -1;
  memset(seed, 2, sizeof seed);
  if (pd_seal_keypair(seed, lpk, lsk, null_cipher)) return -1;
  if (pd_seal_init(&p->d, PD_SEAL_DIALLER, dpk, dsk, lpk, null_cipher) ||
      pd_seal_init(&p->l, PD_SEAL_LISTENER, lpk, lsk, dpk, null_cipher))
    return -1;
  sodium_memzero(dsk, sizeof dsk);
  sodium_memzero(lsk, sizeof lsk);
  if (!null_cipher && (memcmp(p->d.tx.key, p->l.rx.key, PD_SEAL_KEY_LEN) != 0 ||
                       memcmp(p->d.rx.key, p->l.tx.key, PD_SEAL_KEY_LEN) != 0 ||
                       memcmp(p->d.tx.key, p->d.rx.key, PD_SEAL_KEY_LEN) == 0)) {
    fprintf(stderr, "bench_seal: the two ends derived different keys\n");
    return -1;
  }
  return 0;
}

/* One size, one cipher: batches of frames in one arena. */
typedef struct {
  const char *label;
  size_t inner;    /* inner frame bytes */
  bool null_cipher;
  pair_t pair;
  uint8_t *arena;  /* batch * stride bytes: outer header, inner, tag */
  size_t stride, batch;
  long rep;        /* seals of each batch per open of it (null cipher only) */
  uint8_t *plain;  /* the inner frame as built (to check the first open) */
  bool checked;
  row_t seal, open;
} sized_t;

static size_t addr_frame(uint8_t *buf, size_t cap) {
  pd_wire_addr_entry_t *e = calloc(PD_WIRE_MAX_ADDRS, sizeof *e);
  size_t len = 0;
  if (!e) return 0;
  for (int i = 0; i < PD_WIRE_MAX_ADDRS; i++) {
    e[i].addr.ip[10] = e[i].addr.ip[11] = 0xff;
    e[i].addr.ip[12] = (uint8_t)(20 + i % 100);
    e[i].addr.ip[13] = (uint8_t)i;
    e[i].addr.ip[14] = (uint8_t)(i >> 8);
    e[i].addr.ip[15] = 1;
    e[i].addr.port = 7411;
    e[i].timestamp = 1700000000;
    e[i].has_id = true;
    for (int k = 0; k < PD_NODE_ID_LEN; k++) e[i].id[k] = (uint8_t)(i * 7 + k);
  }
  if (pd_wire_encode_addr(MAGIC, e, PD_WIRE_MAX_ADDRS, buf, cap, &len)) len = 0;
  free(e);
  return len;
}

static int sized_init(sized_t *z, const char *label, size_t inner, bool null_cipher, bool quick) {
  memset(z, 0, sizeof *z);
  z->label = label;
  z->null_cipher = null_cipher;
  z->plain = malloc(MAX_INNER);
  if (!z->plain || make_pair(&z->pair, null_cipher)) return -1;
  if (inner == 18) {
    if (pd_wire_encode_ping(MAGIC, 0x0123456789abcdefull, z->plain, MAX_INNER, &z->inner)) return -1;
  } else if (inner == 0) {
    z->inner = addr_frame(z->plain, MAX_INNER);
    if (!z->inner) return -1;
  } else {
    /* a frame of exactly `inner` bytes: header, then filler (seal does not parse it) */
    z->inner = inner;
    pd_wire_write_header(MAGIC, PD_WIRE_ADDR, (uint32_t)(inner - PD_WIRE_HEADER_LEN), z->plain);
    for (size_t i = PD_WIRE_HEADER_LEN; i < inner; i++) z->plain[i] = (uint8_t)(i * 131 + 7);
  }
  z->stride = z->inner + PD_WIRE_SEAL_OVERHEAD;
  z->batch = BATCH_BYTES / z->stride;
  if (z->batch < 1) z->batch = 1;
  if (z->batch > BATCH_MAX) z->batch = BATCH_MAX;
  z->arena = malloc(z->batch * z->stride);
  if (!z->arena) return -1;
  for (size_t i = 0; i < z->batch; i++)
    memcpy(z->arena + i * z->stride + PD_WIRE_HEADER_LEN, z->plain, z->inner);
  /* per run ~32 MiB of inner bytes (null: 256 MiB), at least 2 batches,
   * at most 200,000 frames; the null seal, which costs a few ns whatever
   * the size, seals each batch `rep` times to reach ~200,000 seals (null
   * counters advance but no nonce is used, so the frames still open) */
  long want = (long)((null_cipher ? 256u << 20 : 32u << 20) / z->inner), cap = 200000;
  if (want > cap) want = cap;
  if (quick) {
    want /= 50;
    cap /= 50;
  }
  long batches = (want + (long)z->batch - 1) / (long)z->batch;
  if (batches < 2) batches = 2;
  z->rep = 1;
  if (null_cipher && batches * (long)z->batch < cap) z->rep = cap / (batches * (long)z->batch);
  const char *cipher = null_cipher ? "null" : "chacha20poly1305";
  snprintf(z->seal.name, sizeof z->seal.name, "seal %-16s %7zu B %s", cipher, z->inner, label);
  snprintf(z->open.name, sizeof z->open.name, "open %-16s %7zu B %s", cipher, z->inner, label);
  z->open.ops = batches * (long)z->batch;
  z->seal.ops = z->open.ops * z->rep;
  /* the null seal writes the outer header and a zero tag only: its cost
   * does not depend on the size, so a byte rate would mean nothing */
  z->seal.unit_bytes = null_cipher ? 0 : (double)z->inner;
  z->open.unit_bytes = (double)z->inner;
  return 0;
}

static void sized_free(sized_t *z) {
  pd_seal_wipe(&z->pair.d);
  pd_seal_wipe(&z->pair.l);
  free(z->arena);
  free(z->plain);
}

/* One run of both rows. out: MAX_INNER bytes. */
static int sized_run(sized_t *z, uint8_t *out) {
  long batches = z->open.ops / (long)z->batch;
  double ts = 0, to = 0;
  for (long b = 0; b < batches; b++) {
    double t = now_s();
    for (long k = 0; k < z->rep; k++)
      for (size_t i = 0; i < z->batch; i++)
        if (pd_seal_frame(&z->pair.d, MAGIC, z->arena + i * z->stride, z->inner) != z->stride)
          return -1;
    double t2 = now_s();
    ts += t2 - t;
    if (!z->checked && !z->null_cipher) {
      /* a flipped byte does not open, and nothing advances */
      uint64_t before = z->pair.l.rx.frames;
      z->arena[PD_WIRE_HEADER_LEN + z->inner / 2] ^= 0x40;
      int rc = pd_seal_open(&z->pair.l, z->arena, z->arena + PD_WIRE_HEADER_LEN,
                            z->inner + PD_WIRE_TAG_LEN, out);
      z->arena[PD_WIRE_HEADER_LEN + z->inner / 2] ^= 0x40;
      if (rc == 0 || z->pair.l.rx.frames != before) {
        fprintf(stderr, "bench_seal: a tampered frame opened\n");
        return -1;
      }
      if (memcmp(z->arena + PD_WIRE_HEADER_LEN, z->plain, z->inner) == 0) {
        fprintf(stderr, "bench_seal: sealing left the frame in clear\n");
        return -1;
      }
    }
    t = now_s();
    for (size_t i = 0; i < z->batch; i++) {
      const uint8_t *f = z->arena + i * z->stride;
      if (pd_seal_open(&z->pair.l, f, f + PD_WIRE_HEADER_LEN, z->inner + PD_WIRE_TAG_LEN, out))
        return -1;
      if (!z->checked && i == z->batch - 1 && memcmp(out, z->plain, z->inner) != 0) {
        fprintf(stderr, "bench_seal: opened bytes differ from the sealed ones\n");
        return -1;
      }
    }
    to += now_s() - t;
    z->checked = true;
  }
  z->seal.rate[z->seal.n++] = (double)z->seal.ops / ts;
  z->open.rate[z->open.n++] = (double)z->open.ops / to;
  return 0;
}

/* Rotation: 18 B seals with the frame counter set just below the limit
 * (each one rotates) against the same loop with it set to 0. */
static int rotate_run(row_t *plain_row, row_t *rot_row, uint8_t *buf, size_t ping_len) {
  pair_t p;
  if (make_pair(&p, false)) return -1;
  for (int pass = 0; pass < 2; pass++) {
    row_t *r = pass ? rot_row : plain_row;
    uint64_t preset = pass ? PD_SEAL_REKEY_FRAMES - 1 : 0;
    uint32_t epoch0 = p.d.tx.epoch;
    double t = now_s();
    for (long i = 0; i < r->ops; i++) {
      p.d.tx.frames = preset;
      if (pd_seal_frame(&p.d, MAGIC, buf, ping_len) != ping_len + PD_WIRE_SEAL_OVERHEAD) return -1;
    }
    t = now_s() - t;
    if (p.d.tx.epoch - epoch0 != (pass ? (uint32_t)r->ops : 0)) {
      fprintf(stderr, "bench_seal: rotations %u, expected %ld\n", p.d.tx.epoch - epoch0,
              pass ? r->ops : 0L);
      return -1;
    }
    r->rate[r->n++] = (double)r->ops / t;
  }
  pd_seal_wipe(&p.d);
  pd_seal_wipe(&p.l);
  return 0;
}

/* libsodium's AEAD call alone on an 18 B message with a 10 B AD (no
 * header writing, counters or rotation): the floor under "seal 18 B". */
static void aead_run(row_t *r) {
  uint8_t key[32], nonce[12] = {0}, ad[PD_WIRE_HEADER_LEN] = {0}, m[18] = {0}, tag[16];
  memset(key, 3, sizeof key);
  double t = now_s();
  for (long i = 0; i < r->ops; i++) {
    memcpy(nonce + 4, &i, 4);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(m, tag, NULL, m, sizeof m, ad, sizeof ad,
                                                       NULL, nonce, key);
  }
  r->rate[r->n++] = (double)r->ops / (now_s() - t);
}

/* keypair, init, keypair + init; real and null. */
static int kx_run(row_t *kp, row_t *in, row_t *both, row_t *nboth, uint32_t run) {
  uint8_t seed[PD_WIRE_KEYX_LEN], pk[PD_WIRE_KEYX_LEN], sk[PD_WIRE_KEYX_LEN];
  uint8_t their[PD_WIRE_KEYX_LEN], tsk[PD_WIRE_KEYX_LEN];
  pd_seal_t s;
  memset(seed, 9, sizeof seed);
  if (pd_seal_keypair(seed, their, tsk, false)) return -1;
  memset(seed, 0, sizeof seed);
  memcpy(seed + 4, &run, sizeof run);
  double t = now_s();
  for (long i = 0; i < kp->ops; i++) {
    memcpy(seed, &i, 4);
    if (pd_seal_keypair(seed, pk, sk, false)) return -1;
  }
  kp->rate[kp->n++] = (double)kp->ops / (now_s() - t);
  t = now_s();
  for (long i = 0; i < in->ops; i++)
    if (pd_seal_init(&s, (int)(i & 1), pk, sk, their, false)) return -1;
  in->rate[in->n++] = (double)in->ops / (now_s() - t);
  for (int pass = 0; pass < 2; pass++) {
    row_t *r = pass ? nboth : both;
    t = now_s();
    for (long i = 0; i < r->ops; i++) {
      memcpy(seed, &i, 4);
      if (pd_seal_keypair(seed, pk, sk, pass) ||
          pd_seal_init(&s, (int)(i & 1), pk, sk, their, pass))
        return -1;
    }
    r->rate[r->n++] = (double)r->ops / (now_s() - t);
  }
  pd_seal_wipe(&s);
  sodium_memzero(sk, sizeof sk);
  sodium_memzero(tsk, sizeof tsk);
  return 0;
}

int main(int argc, char **argv) {
  int quick = 0, runs = 11;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = 1;
      runs = 1;
    } else if (strcmp(argv[i], "--wall") == 0) {
      bench_clock = CLOCK_MONOTONIC;
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else {
      fprintf(stderr, "usage: bench_seal [--quick] [--runs R] [--wall]\n");
      return 2;
    }
  }
  if (runs < 1 || runs > MAX_RUNS) {
    fprintf(stderr, "bench_seal: --runs must be 1..%d\n", MAX_RUNS);
    return 2;
  }
  if (sodium_init() < 0) return 1;

  static const struct {
    const char *label;
    size_t inner; /* 0: an ADDR of 1,000 entries */
  } sizes[] = {
      {"(PING)", 18},
      {"", 64},
      {"(1 KiB)", 1024},
      {"(ADDR, 1,000 entries)", 0},
      {"(largest)", MAX_INNER},
  };
  enum { NS = sizeof sizes / sizeof sizes[0] };
  sized_t z[2 * NS];
  memset(z, 0, sizeof z);
  row_t rot_plain = {.ops = quick ? 2000 : 100000}, rot = {.ops = quick ? 2000 : 100000};
  row_t aead = {.ops = quick ? 2000 : 100000};
  row_t kp = {.ops = quick ? 50 : 2000}, in = {.ops = quick ? 50 : 2000};
  row_t both = {.ops = quick ? 50 : 2000}, nboth = {.ops = quick ? 5000 : 200000};
  snprintf(rot_plain.name, sizeof rot_plain.name, "seal   18 B, no rotation (same loop)");
  snprintf(rot.name, sizeof rot.name, "seal   18 B that rotates the key (crypto_kdf)");
  snprintf(aead.name, sizeof aead.name, "libsodium AEAD call alone, 18 B (floor of seal 18 B)");
  snprintf(kp.name, sizeof kp.name, "keypair (crypto_kx_seed_keypair)");
  snprintf(in.name, sizeof in.name, "init (crypto_kx session keys)");
  snprintf(both.name, sizeof both.name, "kx = keypair + init (one end, X25519 x2)");
  snprintf(nboth.name, sizeof nboth.name, "kx, null cipher (the lab)");
  int rc = 0;
  uint8_t *out = malloc(MAX_INNER), ping[64];
  size_t ping_len = 0;
  if (!out || pd_wire_encode_ping(MAGIC, 7, ping, sizeof ping - PD_WIRE_TAG_LEN, &ping_len)) rc = 1;
  /* the ping is sealed in place: move it past the outer header */
  memmove(ping + PD_WIRE_HEADER_LEN, ping, ping_len);
  for (int i = 0; i < 2 * NS && !rc; i++)
    if (sized_init(&z[i], sizes[i % NS].label, sizes[i % NS].inner, i >= NS, quick)) rc = 1;

  for (int r = 0; r < runs && !rc; r++) {
    for (int i = 0; i < 2 * NS && !rc; i++)
      if (sized_run(&z[i], out)) rc = 1;
    if (!rc && rotate_run(&rot_plain, &rot, ping, ping_len)) rc = 1;
    if (!rc) aead_run(&aead);
    if (!rc && kx_run(&kp, &in, &both, &nboth, (uint32_t)r)) rc = 1;
  }
  if (!rc) {
    printf("bench_seal: median of %d run(s) (min-max); inner bytes; one core, in memory; clock: %s\n",
           runs, bench_clock == CLOCK_MONOTONIC ? "wall" : "thread CPU time");
    for (int i = 0; i < 2 * NS; i++) print_row(&z[i].seal);
    for (int i = 0; i < 2 * NS; i++) print_row(&z[i].open);
    print_row(&aead);
    print_row(&rot_plain);
    print_row(&rot);
    double lo, hi, a = median_of(&rot_plain, &lo, &hi), b = median_of(&rot, &lo, &hi);
    printf("one rotation: %.0f ns (difference of the medians); every 4,096 frames: %.2f ns/frame\n",
           1e9 / b - 1e9 / a, (1e9 / b - 1e9 / a) / PD_SEAL_REKEY_FRAMES);
    print_row(&kp);
    print_row(&in);
    print_row(&both);
    print_row(&nboth);
  }
  for (int i = 0; i < 2 * NS; i++)
    if (z[i].plain || z[i].arena) sized_free(&z[i]);
  free(out);
  if (rc) fprintf(stderr, "bench_seal: failed\n");
  return rc;
}
