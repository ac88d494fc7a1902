/* bench_addrbook — figures for the address book.
 *
 * (a) Bitcoin Core's addrman bench fixture (src/bench/addrman.cpp): 64
 *     sources x 256 random IPv6 addresses = 16,384 (random bytes from pd_rng
 *     seed 123, random nonzero ports);
 * (b) a full book: new filled with random routable IPv4 addresses from random
 *     sources, ~16,384 moved to tried with good, new refilled.
 * For each: ns/op and ops/s for add, select(8), good, GetAddr, and bytes of
 * RAM per entry (pd_book_memory / size). Also SHA256d: low-level SHA256_*
 * versus EVP with a reused EVP_MD_CTX.
 * (c) geometry: bytes per empty book and bytes per entry of a filled book
 *     at the default 1024/256 and at 64/16 (pd_book_memory: the book with
 *     its tables, entries, vrandom, index, node ids), with add / select /
 *     getaddr / good ns/op on the 64/16 book.
 * (d) bytes per book at the default geometry holding 0, 1,000 and 10,000
 *     entries.
 * `--quick` runs tiny sizes (< 2 s) so the suite keeps this working.
 * Times come from clock_gettime(CLOCK_MONOTONIC); nothing is asserted.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addrbook.h"

#define NOW ((int64_t)1700000000)

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void report(const char *what, size_t n, double ns_total) {
  double per = ns_total / (double)(n ? n : 1);
  printf("  %-34s N=%-8zu %10.1f ns/op %14.0f ops/s\n", what, n, per, per > 0 ? 1e9 / per : 0.0);
}

static volatile uint64_t sink;

/* ---- SHA256d -------------------------------------------------------------------- */

static void bench_sha(size_t iters) {
  uint8_t msg[56], h[32];
  memset(msg, 7, sizeof(msg));
  double t0 = now_ns();
  for (size_t i = 0; i < iters; i++) {
    msg[0] = (uint8_t)i;
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, msg, sizeof(msg));
    SHA256_Final(h, &c);
    SHA256_Init(&c);
    SHA256_Update(&c, h, 32);
    SHA256_Final(h, &c);
    sink += h[0];
  }
  double t1 = now_ns();
  report("sha256d low-level SHA256_*", iters, t1 - t0);

  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!ctx || !md) {
    printf("  sha256d EVP: unavailable\n");
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    return;
  }
  unsigned len;
  t0 = now_ns();
  for (size_t i = 0; i < iters; i++) {
    msg[0] = (uint8_t)i;
    EVP_DigestInit_ex(ctx, md, NULL);
    EVP_DigestUpdate(ctx, msg, sizeof(msg));
    EVP_DigestFinal_ex(ctx, h, &len);
    EVP_DigestInit_ex(ctx, md, NULL);
    EVP_DigestUpdate(ctx, h, 32);
    EVP_DigestFinal_ex(ctx, h, &len);
    sink += h[0];
  }
  t1 = now_ns();
  report("sha256d EVP (reused ctx, fetched)", iters, t1 - t0);
  EVP_MD_CTX_free(ctx);
  EVP_MD_free(md);
}

/* ---- fixtures ----------------------------------------------------------------------- */

static void rand_v6(pd_rng_t *r, pd_netaddr_t *a) {
  pd_rng_fill(r, a->ip, 16);
  uint8_t p[2];
  pd_rng_fill(r, p, 2);
  a->port = (uint16_t)(p[0] | p[1] << 8);
  if (a->port == 0) a->port = 1;
}

static void rand_v4(pd_rng_t *r, pd_netaddr_t *a) {
  memset(a->ip, 0, 10);
  a->ip[10] = a->ip[11] = 0xff;
  uint32_t v = (uint32_t)pd_rng_u64(r);
  a->ip[12] = (uint8_t)(1 + (v >> 24) % 223); /* 1..223 */
  a->ip[13] = (uint8_t)(v >> 16);
  a->ip[14] = (uint8_t)(v >> 8);
  a->ip[15] = (uint8_t)v;
  a->port = (uint16_t)(1 + pd_rng_range(r, 65535));
}

static pd_book_t *new_book_geo(pd_rng_t *rng, const pd_book_geometry_t *g) {
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i * 37 + 11);
  pd_book_t *b = NULL;
  if (pd_book_create_ex(&b, key, rng, 0, g) != 0) {
    fprintf(stderr, "pd_book_create failed\n");
    exit(1);
  }
  return b;
}

static pd_book_t *new_book(pd_rng_t *rng) { return new_book_geo(rng, NULL); }

static void bench_select_getaddr(pd_book_t *b, size_t iters, int64_t now) {
  uint32_t out[2500];
  double t0 = now_ns();
  size_t picked = 0;
  for (size_t i = 0; i < iters; i++) picked += pd_book_select(b, 8, now, out);
  double t1 = now_ns();
  report("select(8) per call", iters, t1 - t0);
  report("select(8) per peer returned", picked, t1 - t0);

  size_t giters = iters / 50 + 1;
  size_t got = 0;
  t0 = now_ns();
  for (size_t i = 0; i < giters; i++)
    got = pd_book_getaddr(b, PD_BOOK_GETADDR_MAX, PD_BOOK_GETADDR_PCT, true, now, out, 2500);
  t1 = now_ns();
  char what[64];
  snprintf(what, sizeof(what), "getaddr(1000, 23%%) -> %zu", got);
  report(what, giters, t1 - t0);
  t0 = now_ns();
  for (size_t i = 0; i < giters; i++) got = pd_book_getaddr(b, 2500, 23, true, now, out, 2500);
  t1 = now_ns();
  snprintf(what, sizeof(what), "getaddr(2500, 23%%) -> %zu", got);
  report(what, giters, t1 - t0);
}

static void memory_line(const pd_book_t *b) {
  size_t sz = pd_book_size(b);
  printf("  size=%zu (new %zu, tried %zu)  memory=%zu bytes  %.1f bytes/entry\n", sz,
         pd_book_count_new(b), pd_book_count_tried(b), pd_book_memory(b),
         sz ? (double)pd_book_memory(b) / (double)sz : 0.0);
}

/* (a) Bitcoin Core's fixture. */
static void bench_fixture(size_t nsources, size_t per_source, int rounds, size_t sel_iters) {
  printf("(a) Bitcoin Core addrman fixture: %zu sources x %zu random IPv6 = %zu\n", nsources,
         per_source, nsources * per_source);
  pd_rng_t gen;
  pd_rng_seed(&gen, 123);
  size_t n = nsources * per_source;
  pd_netaddr_t *src = malloc(nsources * sizeof(*src));
  pd_netaddr_t *addrs = malloc(n * sizeof(*addrs));
  if (!src || !addrs) exit(1);
  for (size_t s = 0; s < nsources; s++) {
    rand_v6(&gen, &src[s]);
    for (size_t i = 0; i < per_source; i++) rand_v6(&gen, &addrs[s * per_source + i]);
  }
  pd_rng_t rng;
  pd_rng_seed(&rng, 1);
  double best = 0;
  pd_book_t *b = NULL;
  for (int r = 0; r < rounds; r++) {
    if (b) pd_book_destroy(b);
    b = new_book(&rng);
    double t0 = now_ns();
    for (size_t s = 0; s < nsources; s++)
      for (size_t i = 0; i < per_source; i++)
        (void)pd_book_add(b, &addrs[s * per_source + i], NULL, NOW, &src[s], 0, NOW, NULL);
    double t = now_ns() - t0;
    if (r == 0 || t < best) best = t;
  }
  report("add (best round, per address)", n, best);
  memory_line(b);
  bench_select_getaddr(b, sel_iters, NOW);
  double t0 = now_ns();
  size_t moved = 0;
  for (size_t i = 0; i < n; i++) moved += pd_book_good(b, &addrs[i], true, NOW) == 1;
  double t1 = now_ns();
  report("good (test_before_evict, per call)", n, t1 - t0);
  printf("  good moved %zu to tried (%zu collisions pending)\n", moved,
         pd_book_collision_count(b));
  memory_line(b);
  /* an hour later: Good() set last_try = NOW, which GetChance damps for
   * ten minutes */
  bench_select_getaddr(b, sel_iters, NOW + 3600);
  if (pd_book_check(b) != 0) printf("  CHECK FAILED\n");
  pd_book_destroy(b);
  free(src);
  free(addrs);
}

/* (b) a full book. */
static void bench_full(size_t max_adds, size_t extra, size_t sel_iters) {
  printf("(b) full book (capacity %d)\n", PD_BOOK_CAPACITY);
  pd_rng_t gen, rng;
  pd_rng_seed(&gen, 456);
  pd_rng_seed(&rng, 2);
  pd_book_t *b = new_book(&rng);
  pd_netaddr_t a, s;
  double t0 = now_ns();
  size_t adds = 0, goods = 0;
  const size_t new_target = (size_t)(PD_BOOK_NEW_BUCKETS * PD_BOOK_BUCKET_SIZE) * 995 / 1000;
  const size_t tried_target = (size_t)(PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE) * 99 / 100;
  for (int phase = 0; phase < 3; phase++) {
    if (phase == 1) {
      /* move to tried: random new entries, evicting on collision */
      for (size_t k = 0; k < max_adds / 4 && pd_book_count_tried(b) < tried_target; k++) {
        uint32_t id = pd_book_random(b, PD_TABLE_NEW, NOW);
        pd_book_info_t in;
        if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &in) != 0) break;
        goods += pd_book_good(b, &in.addr, false, NOW - 3600) == 1;
      }
      continue;
    }
    for (size_t k = 0; k < max_adds && pd_book_count_new(b) < new_target; k++) {
      rand_v4(&gen, &a);
      rand_v4(&gen, &s);
      s.port = 0;
      adds += pd_book_add(b, &a, NULL, NOW, &s, 0, NOW, NULL) == 1;
    }
  }
  double t1 = now_ns();
  printf("  filled with %zu successful adds and %zu goods in %.0f ms\n", adds, goods,
         (t1 - t0) / 1e6);
  memory_line(b);

  pd_netaddr_t *probe = malloc(extra * sizeof(*probe));
  pd_netaddr_t *psrc = malloc(extra * sizeof(*psrc));
  if (!probe || !psrc) exit(1);
  for (size_t i = 0; i < extra; i++) {
    rand_v4(&gen, &probe[i]);
    rand_v4(&gen, &psrc[i]);
    psrc[i].port = 0;
  }
  size_t won = 0;
  t0 = now_ns();
  for (size_t i = 0; i < extra; i++)
    won += pd_book_add(b, &probe[i], NULL, NOW, &psrc[i], 0, NOW, NULL) == 1;
  t1 = now_ns();
  report("add to a full book (per address)", extra, t1 - t0);
  printf("  (%zu of %zu took a slot)\n", won, extra);

  bench_select_getaddr(b, sel_iters, NOW);

  /* good: new -> tried on random new entries; test_before_evict=false
   * (moves and evicts, the expensive path) and =true (collision path). */
  size_t ng = extra / 4 + 1;
  pd_netaddr_t *targets = malloc(ng * sizeof(*targets));
  if (!targets) exit(1);
  for (int mode = 0; mode < 2; mode++) {
    size_t nt = 0;
    for (size_t i = 0; i < ng; i++) {
      uint32_t id = pd_book_random(b, PD_TABLE_NEW, NOW);
      pd_book_info_t in;
      if (id != PD_BOOK_NO_ID && pd_book_info(b, id, &in) == 0) targets[nt++] = in.addr;
    }
    size_t moved = 0;
    t0 = now_ns();
    for (size_t i = 0; i < nt; i++) moved += pd_book_good(b, &targets[i], mode == 1, NOW) == 1;
    t1 = now_ns();
    report(mode == 0 ? "good new->tried (evicting)" : "good (test_before_evict)", nt, t1 - t0);
    printf("  (%zu moved to tried)\n", moved);
  }
  memory_line(b);
  if (pd_book_check(b) != 0) printf("  CHECK FAILED\n");
  free(targets);
  free(probe);
  free(psrc);
  pd_book_destroy(b);
}

/* (c) geometry: memory of an empty and of a filled book, default vs 64/16. */
static void bench_geometry(size_t max_adds, size_t sel_iters) {
  static const pd_book_geometry_t geos[2] = {{1024, 256}, {64, 16}};
  printf("(c) geometry: bytes per book and per entry\n");
  for (int gi = 0; gi < 2; gi++) {
    const pd_book_geometry_t *g = &geos[gi];
    pd_rng_t gen, rng;
    pd_rng_seed(&gen, 789);
    pd_rng_seed(&rng, 3);
    pd_book_t *b = new_book_geo(&rng, g);
    size_t empty = pd_book_memory(b);
    size_t cap_new = (size_t)g->new_buckets * PD_BOOK_BUCKET_SIZE;
    size_t cap_tried = (size_t)g->tried_buckets * PD_BOOK_BUCKET_SIZE;
    pd_netaddr_t a, s;
    size_t adds = 0;
    double t0 = now_ns();
    for (size_t k = 0; k < max_adds && pd_book_count_new(b) < cap_new * 99 / 100; k++) {
      rand_v4(&gen, &a);
      rand_v4(&gen, &s);
      s.port = 0;
      (void)pd_book_add(b, &a, NULL, NOW, &s, 0, NOW, NULL);
      adds++;
    }
    double t1 = now_ns();
    char what[80];
    snprintf(what, sizeof what, "%u/%u add (filling new)", (unsigned)g->new_buckets,
             (unsigned)g->tried_buckets);
    report(what, adds, t1 - t0);
    size_t goods = 0;
    t0 = now_ns();
    for (size_t k = 0; k < max_adds / 4 && pd_book_count_tried(b) < cap_tried * 98 / 100; k++) {
      uint32_t id = pd_book_random(b, PD_TABLE_NEW, NOW);
      pd_book_info_t in;
      if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &in) != 0) break;
      (void)pd_book_good(b, &in.addr, false, NOW - 3600);
      goods++;
    }
    t1 = now_ns();
    snprintf(what, sizeof what, "%u/%u good (filling tried)", (unsigned)g->new_buckets,
             (unsigned)g->tried_buckets);
    report(what, goods, t1 - t0);
    for (size_t k = 0; k < max_adds && pd_book_count_new(b) < cap_new * 99 / 100; k++) {
      rand_v4(&gen, &a);
      rand_v4(&gen, &s);
      s.port = 0;
      (void)pd_book_add(b, &a, NULL, NOW, &s, 0, NOW, NULL);
    }
    size_t sz = pd_book_size(b), full = pd_book_memory(b);
    printf("  geometry %u/%u: empty book %zu bytes; filled: size=%zu (new %zu of %zu, tried %zu "
           "of %zu) memory=%zu bytes, %.1f bytes/entry (%.1f beyond the empty book)\n",
           (unsigned)g->new_buckets, (unsigned)g->tried_buckets, empty, sz, pd_book_count_new(b),
           cap_new, pd_book_count_tried(b), cap_tried, full, sz ? (double)full / (double)sz : 0.0,
           sz ? (double)(full - empty) / (double)sz : 0.0);
    if (gi == 1) bench_select_getaddr(b, sel_iters, NOW + 3600);
    if (pd_book_check(b) != 0) printf("  CHECK FAILED\n");
    pd_book_destroy(b);
  }
}

/* (d) bytes per book (pd_book_memory) at the default geometry when it holds
 * 0, 1,000 and 10,000 entries (random routable IPv4 from random sources,
 * added until the book holds that many; then a quarter of them moved to
 * tried with good), the figure that sizes a many-host lab run. */
/* Add random routable IPv4 addresses from random sources until the book
 * holds `target` entries. */
static void fill_to(pd_book_t *b, pd_rng_t *gen, size_t target) {
  pd_netaddr_t a, s;
  while (pd_book_size(b) < target) {
    rand_v4(gen, &a);
    rand_v4(gen, &s);
    s.port = 0;
    (void)pd_book_add(b, &a, NULL, NOW, &s, 0, NOW, NULL);
  }
}

static void bench_bytes_per_book(void) {
  static const size_t targets[3] = {0, 1000, 10000};
  size_t bytes[3], bytes_tried[3];
  for (int pass = 0; pass < 2; pass++) { /* pass 1: a quarter of the entries in tried */
    pd_rng_t gen, rng;
    pd_rng_seed(&gen, 31337);
    pd_rng_seed(&rng, 4);
    pd_book_t *b = new_book(&rng);
    for (int i = 0; i < 3; i++) {
      fill_to(b, &gen, targets[i]);
      for (size_t k = 0; pass && k < 4 * targets[i] && pd_book_count_tried(b) < targets[i] / 4;
           k++) {
        uint32_t id = pd_book_random(b, PD_TABLE_NEW, NOW);
        pd_book_info_t in;
        if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &in) != 0) break;
        (void)pd_book_good(b, &in.addr, false, NOW - 3600);
      }
      (pass ? bytes_tried : bytes)[i] = pd_book_memory(b);
    }
    if (pd_book_check(b) != 0) printf("  CHECK FAILED\n");
    pd_book_destroy(b);
  }
  printf("(d) bytes per book, default geometry 1024/256: 0 entries %zu, 1,000 entries %zu, "
         "10,000 entries %zu (with a quarter in tried: %zu, %zu, %zu)\n",
         bytes[0], bytes[1], bytes[2], bytes_tried[0], bytes_tried[1], bytes_tried[2]);
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  printf("bench_addrbook%s\n", quick ? " (quick)" : "");
  bench_sha(quick ? 20000 : 2000000);
  if (quick) {
    bench_fixture(8, 32, 1, 200);
    bench_full(3000, 500, 200);
    bench_geometry(3000, 200);
    bench_bytes_per_book();
  } else {
    bench_fixture(64, 256, 5, 200000);
    bench_full(2000000, 100000, 200000);
    bench_geometry(2000000, 200000);
    bench_bytes_per_book();
  }
  return (int)(sink & 0);
}
