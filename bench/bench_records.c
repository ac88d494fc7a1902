/* bench_records — figures for signed node records (issue 12).
 *
 * A typical record is the shape of docs/protocol.md §10.4's test vector:
 * network "peerd", a discovery endpoint (IPv4:7411), one service "p2p"
 * (same IP:26656) and two attributes (chain, version): 208 bytes. Record k
 * is signed by the identity pd_identity_from_seed(seed k) and names
 * 20.(k>>16).(k>>8).k (mod 256 each); everything is deterministic.
 *
 * (a) per record: pd_record_sign (encode + ed25519 sign), pd_record_decode
 *     (strict decode + id check + ed25519 verify), pd_record_parse_trusted
 *     (the same decode without the signature);
 * (b) the table: pd_rectable_put of N = 81,920 distinct records (a full
 *     default book's worth: 64 x (1024 + 256)) into a table of that cap —
 *     ns per put — then pd_rectable_find (by node id) and
 *     pd_rectable_find_service (by the p2p endpoint) per lookup, hits and
 *     misses; bytes per stored record (pd_rectable_memory / count, and the
 *     heap glibc reports held, mallinfo2) and the average record size;
 * (c) the book side on Bitcoin Core's addrman bench fixture (64 sources x
 *     256 random IPv6, the same generator and seeds as bench_addrbook (a)):
 *     bytes per address of the book with no records, and of the same book
 *     plus one record per entry, placed as pd_node_learn_record places them
 *     (the book entry carries the record's node id; the rectable has the
 *     key and cap pd_node gives it): (book bytes + rectable bytes) / entries.
 *
 * Timed rows repeat 7 times (3 with --quick) and print the median ns/op
 * with min-max over the repetitions.
 * `--quick` runs tiny sizes (< 2 s) so the suite keeps this working.
 * Times come from clock_gettime(CLOCK_MONOTONIC); nothing is asserted.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <sodium.h>

#include "addrbook.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"
#include "rectable.h"
#include "rng.h"

#define NOW ((int64_t)1700000000)
#define NETWORK "peerd"
#define MAX_RUNS 15

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uint64_t sink;

static void die(const char *what) {
  fprintf(stderr, "bench_records: %s\n", what);
  exit(1);
}

/* Heap bytes in use as glibc counts them (0 elsewhere). */
static size_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#else
  return 0;
#endif
}

/* ---- reporting: median of runs with min-max ---------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ns[r] = ns per op of run r; prints median and min-max over runs. */
static void report_runs(const char *what, size_t n_per_run, double *ns, int runs) {
  double s[MAX_RUNS];
  memcpy(s, ns, (size_t)runs * sizeof *s);
  qsort(s, (size_t)runs, sizeof *s, cmp_double);
  double med = runs % 2 ? s[runs / 2] : (s[runs / 2 - 1] + s[runs / 2]) / 2;
  printf("  %-40s N=%-8zu %10.1f ns/op %12.0f ops/s  (median of %d runs, min %.1f, max %.1f)\n",
         what, n_per_run, med, med > 0 ? 1e9 / med : 0.0, runs, s[0], s[runs - 1]);
}

/* ---- records ------------------------------------------------------------------------------ */

typedef struct signed_rec {
  uint8_t bytes[PD_RECORD_MAX];
  size_t len;
} signed_rec_t;

static void identity_k(pd_identity_t *id, uint32_t k) {
  uint8_t seed[PD_IDENTITY_SEED_LEN];
  for (int i = 0; i < PD_IDENTITY_SEED_LEN; i++) seed[i] = (uint8_t)(0xA5 ^ (i * 29));
  seed[0] = (uint8_t)k;
  seed[1] = (uint8_t)(k >> 8);
  seed[2] = (uint8_t)(k >> 16);
  seed[3] = (uint8_t)(k >> 24);
  if (pd_identity_from_seed(id, seed) != 0) die("pd_identity_from_seed failed");
}

static void v4(pd_netaddr_t *a, uint32_t k, uint16_t port) {
  memset(a, 0, sizeof *a);
  a->ip[10] = a->ip[11] = 0xff;
  a->ip[12] = 20;
  a->ip[13] = (uint8_t)(k >> 16);
  a->ip[14] = (uint8_t)(k >> 8);
  a->ip[15] = (uint8_t)k;
  a->port = port;
}

/* The typical record of node k with discovery endpoint disc (its p2p
 * service on the same IP, port 26656), unsigned. */
static void typical(pd_record_t *r, const pd_netaddr_t *disc) {
  if (pd_record_init(r, NETWORK, 1700000000000ull, NULL) != 0) die("pd_record_init failed");
  r->has_discovery = true;
  r->discovery = *disc;
  pd_netaddr_t p2p = *disc;
  p2p.port = 26656;
  if (pd_record_set_service(r, "p2p", &p2p, NULL) != 0 ||
      pd_record_set_attr(r, "chain", "test-chain-1", NULL) != 0 ||
      pd_record_set_attr(r, "version", "0.38.0", NULL) != 0)
    die("building the typical record failed");
}

static void sign_k(signed_rec_t *out, pd_record_t *r, const pd_identity_t *id) {
  if (pd_record_sign(r, id, NULL, out->bytes, sizeof out->bytes, &out->len) != 0)
    die("pd_record_sign failed");
}

/* ---- (a) per record ------------------------------------------------------------------------ */

static void bench_per_record(size_t nid, size_t iters_sig, size_t iters_parse, int runs) {
  printf("(a) one typical record (discovery endpoint, service p2p, 2 attributes), %zu identities\n",
         nid);
  pd_identity_t *ids = malloc(nid * sizeof *ids);
  pd_record_t *recs = malloc(nid * sizeof *recs);
  signed_rec_t *sr = malloc(nid * sizeof *sr);
  if (!ids || !recs || !sr) die("out of memory");
  for (uint32_t k = 0; k < nid; k++) {
    identity_k(&ids[k], k);
    pd_netaddr_t d;
    v4(&d, k, 7411);
    typical(&recs[k], &d);
    sign_k(&sr[k], &recs[k], &ids[k]);
  }
  printf("  record size %zu bytes (signature included); sizeof(pd_record_t) %zu\n", sr[0].len,
         sizeof(pd_record_t));

  double ns[MAX_RUNS];
  uint8_t buf[PD_RECORD_MAX];
  size_t len = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = now_ns();
    for (size_t i = 0; i < iters_sig; i++) {
      if (pd_record_sign(&recs[i % nid], &ids[i % nid], NULL, buf, sizeof buf, &len) != 0)
        die("sign failed");
      sink += buf[len - 1];
    }
    ns[r] = (now_ns() - t0) / (double)iters_sig;
  }
  report_runs("sign (encode + ed25519), per record", iters_sig, ns, runs);

  pd_record_t out;
  for (int r = 0; r < runs; r++) {
    double t0 = now_ns();
    for (size_t i = 0; i < iters_sig; i++) {
      const signed_rec_t *s = &sr[i % nid];
      if (pd_record_decode(s->bytes, s->len, NETWORK, NULL, &out, NULL) != PD_RECORD_OK)
        die("decode failed");
      sink += out.seq;
    }
    ns[r] = (now_ns() - t0) / (double)iters_sig;
  }
  report_runs("decode + verify (ed25519), per record", iters_sig, ns, runs);

  for (int r = 0; r < runs; r++) {
    double t0 = now_ns();
    for (size_t i = 0; i < iters_parse; i++) {
      const signed_rec_t *s = &sr[i % nid];
      if (pd_record_parse_trusted(s->bytes, s->len, &out) != PD_RECORD_OK) die("parse failed");
      sink += out.seq;
    }
    ns[r] = (now_ns() - t0) / (double)iters_parse;
  }
  report_runs("parse_trusted (no signature), per record", iters_parse, ns, runs);

  for (size_t k = 0; k < nid; k++) pd_identity_wipe(&ids[k]);
  free(ids);
  free(recs);
  free(sr);
}

/* ---- (b) the table -------------------------------------------------------------------------- */

#define BATCH 1024

static void rectable_key(uint8_t key[PD_RECTABLE_KEY_LEN]) {
  for (int i = 0; i < PD_RECTABLE_KEY_LEN; i++) key[i] = (uint8_t)(i * 53 + 3);
}

/* Shuffle 0..n-1 with pd_rng (fixed seed). */
static uint32_t *perm(size_t n, uint64_t seed) {
  uint32_t *p = malloc(n * sizeof *p);
  if (!p) die("out of memory");
  for (size_t i = 0; i < n; i++) p[i] = (uint32_t)i;
  pd_rng_t rng;
  pd_rng_seed(&rng, seed);
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)pd_rng_range(&rng, i);
    uint32_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
  }
  return p;
}

static void bench_table(size_t n, int runs) {
  printf("(b) rectable: %zu distinct typical records, table cap %zu\n", n, n);
  signed_rec_t *sr = malloc(n * sizeof *sr);
  uint8_t(*nid)[PD_NODE_ID_LEN] = malloc(n * PD_NODE_ID_LEN);
  pd_netaddr_t *svc = malloc(n * sizeof *svc);
  pd_record_t *dec = malloc(BATCH * sizeof *dec);
  if (!sr || !nid || !svc || !dec) die("out of memory");
  double t0 = now_ns();
  for (uint32_t k = 0; k < n; k++) {
    pd_identity_t id;
    identity_k(&id, k);
    pd_record_t r;
    pd_netaddr_t d;
    v4(&d, k, 7411);
    typical(&r, &d);
    sign_k(&sr[k], &r, &id);
    memcpy(nid[k], id.id, PD_NODE_ID_LEN);
    svc[k] = r.services[0].addr;
    pd_identity_wipe(&id);
  }
  printf("  made and signed %zu records in %.0f ms (not timed below)\n", n, (now_ns() - t0) / 1e6);
  /* misses: ids of identities never put, endpoints on another port */
  uint8_t(*miss_id)[PD_NODE_ID_LEN] = malloc(n * PD_NODE_ID_LEN);
  pd_netaddr_t *miss_svc = malloc(n * sizeof *miss_svc);
  if (!miss_id || !miss_svc) die("out of memory");
  pd_rng_t mr;
  pd_rng_seed(&mr, 99);
  for (size_t k = 0; k < n; k++) {
    pd_rng_fill(&mr, miss_id[k], PD_NODE_ID_LEN);
    miss_svc[k] = svc[k];
    miss_svc[k].port = 26657;
  }
  uint32_t *order = perm(n, 7); /* lookups in an order unrelated to insertion */

  double put_ns[MAX_RUNS], find_ns[MAX_RUNS], fsvc_ns[MAX_RUNS], fmiss_ns[MAX_RUNS],
      smiss_ns[MAX_RUNS], grow_ns[MAX_RUNS], rest_ns[MAX_RUNS],
      grow_share[MAX_RUNS];
  size_t grows_n = 0;
  size_t mem = 0, heap = 0, count = 0, total_len = 0;
  for (int r = 0; r < runs; r++) {
    uint8_t key[PD_RECTABLE_KEY_LEN];
    rectable_key(key);
    size_t h0 = heap_in_use();
    pd_rectable_t *t = NULL;
    if (pd_rectable_create(&t, n, key) != 0) die("pd_rectable_create failed");
    double put_total = 0, grow_total = 0;
    grows_n = 0;
    for (size_t b = 0; b < n; b += BATCH) {
      size_t m = n - b < BATCH ? n - b : BATCH;
      /* decode the batch first (untimed): put takes the decoded form */
      for (size_t i = 0; i < m; i++)
        if (pd_record_parse_trusted(sr[b + i].bytes, sr[b + i].len, &dec[i]) != PD_RECORD_OK)
          die("parse failed");
      /* a put that finds the ring full (16, 32, ... records) doubles it and
       * rebuilds both indexes: timed on its own as well */
      double p0 = now_ns();
      for (size_t i = 0; i < m; i++) {
        size_t c = b + i;
        bool grows = c >= 16 && (c & (c - 1)) == 0;
        double g0 = grows ? now_ns() : 0;
        if (pd_rectable_put(t, sr[c].bytes, sr[c].len, &dec[i], NOW) != PD_REC_NEW)
          die("put did not add a record");
        if (grows) {
          grow_total += now_ns() - g0;
          grows_n++;
        }
      }
      put_total += now_ns() - p0;
    }
    put_ns[r] = put_total / (double)n;
    grow_ns[r] = grows_n ? grow_total / (double)grows_n : 0;
    grow_share[r] = put_total > 0 ? grow_total / put_total : 0;
    rest_ns[r] = (put_total - grow_total) / (double)(n - grows_n);
    size_t h1 = heap_in_use();
    if (pd_rectable_count(t) != n) die("table lost records");

    double f0 = now_ns();
    for (size_t i = 0; i < n; i++) {
      const pd_rec_t *x = pd_rectable_find(t, nid[order[i]]);
      if (!x) die("find missed");
      sink += x->len;
    }
    find_ns[r] = (now_ns() - f0) / (double)n;
    f0 = now_ns();
    for (size_t i = 0; i < n; i++) {
      const pd_rec_t *x = pd_rectable_find_service(t, &svc[order[i]]);
      if (!x) die("find_service missed");
      sink += x->len;
    }
    fsvc_ns[r] = (now_ns() - f0) / (double)n;
    f0 = now_ns();
    for (size_t i = 0; i < n; i++) sink += pd_rectable_find(t, miss_id[i]) != NULL;
    fmiss_ns[r] = (now_ns() - f0) / (double)n;
    f0 = now_ns();
    for (size_t i = 0; i < n; i++) sink += pd_rectable_find_service(t, &miss_svc[i]) != NULL;
    smiss_ns[r] = (now_ns() - f0) / (double)n;

    mem = pd_rectable_memory(t);
    heap = h1 - h0;
    count = pd_rectable_count(t);
    total_len = 0;
    for (size_t i = 0; i < count; i++) total_len += pd_rectable_at(t, i)->len;
    pd_rectable_destroy(t);
  }
  report_runs("rectable_put, new record (per put)", n, put_ns, runs);
  report_runs("  a put that doubles the ring (per put)", grows_n, grow_ns, runs);
  report_runs("  every other put (per put)", n - grows_n, rest_ns, runs);
  qsort(grow_share, (size_t)runs, sizeof *grow_share, cmp_double);
  printf("  the %zu ring doublings (index rebuilds) are %.0f%% of the put time (median; %.0f-%.0f%%)\n",
         grows_n, 100 * grow_share[runs / 2], 100 * grow_share[0], 100 * grow_share[runs - 1]);
  report_runs("rectable_find by node id, hit", n, find_ns, runs);
  report_runs("rectable_find_service, hit", n, fsvc_ns, runs);
  report_runs("rectable_find by node id, miss", n, fmiss_ns, runs);
  report_runs("rectable_find_service, miss", n, smiss_ns, runs);
  printf("  records=%zu  rectable_memory=%zu bytes  %.1f bytes/record  (record bytes %.1f avg, "
         "%zu total)\n",
         count, mem, count ? (double)mem / (double)count : 0.0,
         count ? (double)total_len / (double)count : 0.0, total_len);
  if (heap)
    printf("  heap held by the table (glibc mallinfo2, after the puts): %zu bytes  %.1f "
           "bytes/record\n",
           heap, count ? (double)heap / (double)count : 0.0);
  free(order);
  free(miss_id);
  free(miss_svc);
  free(dec);
  free(svc);
  free(nid);
  free(sr);
}

/* ---- (c) the book side: Bitcoin Core's fixture with and without records ----------------------- */

static void rand_v6(pd_rng_t *r, pd_netaddr_t *a) {
  pd_rng_fill(r, a->ip, 16);
  uint8_t p[2];
  pd_rng_fill(r, p, 2);
  a->port = (uint16_t)(p[0] | p[1] << 8);
  if (a->port == 0) a->port = 1;
}

static pd_book_t *fixture_book(pd_rng_t *rng) {
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i * 37 + 11); /* bench_addrbook's */
  pd_book_t *b = NULL;
  if (pd_book_create(&b, key, rng, 0) != 0) die("pd_book_create failed");
  return b;
}

/* The rectable a node makes for its book (node.c ensure_records): key from
 * the book's key, cap = the book's slots. */
static pd_rectable_t *node_rectable(const pd_book_t *b) {
  uint8_t key[PD_RECTABLE_KEY_LEN];
  crypto_generichash(key, sizeof key, pd_book_key(b), PD_BOOK_KEY_LEN,
                     (const uint8_t *)"peerd-rectable", 14);
  pd_book_geometry_t g;
  pd_book_geometry(b, &g);
  pd_rectable_t *t = NULL;
  if (pd_rectable_create(&t, (size_t)PD_BOOK_BUCKET_SIZE * (g.new_buckets + g.tried_buckets),
                         key) != 0)
    die("pd_rectable_create failed");
  return t;
}

static void bench_book_side(size_t nsources, size_t per_source) {
  size_t n = nsources * per_source;
  printf("(c) book + records on Bitcoin Core's addrman fixture: %zu sources x %zu random IPv6 = "
         "%zu offered\n",
         nsources, per_source, n);
  pd_rng_t gen;
  pd_rng_seed(&gen, 123);
  pd_netaddr_t *src = malloc(nsources * sizeof *src);
  pd_netaddr_t *addrs = malloc(n * sizeof *addrs);
  signed_rec_t *sr = malloc(n * sizeof *sr);
  pd_record_t *dec = malloc(sizeof *dec);
  if (!src || !addrs || !sr || !dec) die("out of memory");
  for (size_t s = 0; s < nsources; s++) {
    rand_v6(&gen, &src[s]);
    for (size_t i = 0; i < per_source; i++) rand_v6(&gen, &addrs[s * per_source + i]);
  }
  /* one typical record per offered address, its discovery endpoint */
  size_t unsigned_n = 0;
  for (uint32_t k = 0; k < n; k++) {
    pd_identity_t id;
    identity_k(&id, 1000000 + k);
    pd_record_t r;
    if (pd_record_init(&r, NETWORK, 1700000000000ull, NULL) != 0) die("init failed");
    r.has_discovery = true;
    r.discovery = addrs[k];
    pd_netaddr_t p2p = addrs[k];
    p2p.port = 26656;
    if (pd_record_set_service(&r, "p2p", &p2p, NULL) != 0 ||
        pd_record_set_attr(&r, "chain", "test-chain-1", NULL) != 0 ||
        pd_record_set_attr(&r, "version", "0.38.0", NULL) != 0 ||
        pd_record_sign(&r, &id, NULL, sr[k].bytes, sizeof sr[k].bytes, &sr[k].len) != 0) {
      sr[k].len = 0; /* an address no record can name (none expected) */
      unsigned_n++;
    }
    pd_identity_wipe(&id);
  }

  /* Warm-up, so the heap figures below hold only the books and tables: the
   * first book of a process brings ~135 KB of one-time allocations that
   * pd_book_memory does not count and that stay after the book is gone. */
  {
    pd_rng_t rng_w;
    pd_rng_seed(&rng_w, 5);
    pd_book_t *w = fixture_book(&rng_w);
    (void)pd_book_add(w, &addrs[0], NULL, NOW, &src[0], 0, NOW, NULL);
    pd_book_destroy(w);
  }
  /* A: the book alone, no node ids, no records (bench_addrbook (a)'s book) */
  pd_rng_t rng_a;
  pd_rng_seed(&rng_a, 1);
  size_t h0 = heap_in_use();
  pd_book_t *a = fixture_book(&rng_a);
  for (size_t s = 0; s < nsources; s++)
    for (size_t i = 0; i < per_source; i++)
      (void)pd_book_add(a, &addrs[s * per_source + i], NULL, NOW, &src[s], 0, NOW, NULL);
  size_t heap_a = heap_in_use() - h0;
  size_t ea = pd_book_size(a), ma = pd_book_memory(a);

  /* B: the same adds as pd_node_learn_record makes them (record kept, then
   * the discovery endpoint added with the record's node id); rt_all holds
   * every offered record, as learn_record keeps it whether or not the book
   * placed the address. */
  pd_rng_t rng_b;
  pd_rng_seed(&rng_b, 1);
  h0 = heap_in_use();
  pd_book_t *b = fixture_book(&rng_b);
  for (size_t s = 0; s < nsources; s++)
    for (size_t i = 0; i < per_source; i++) {
      size_t k = s * per_source + i;
      const uint8_t *node_id = NULL;
      if (sr[k].len && pd_record_parse_trusted(sr[k].bytes, sr[k].len, dec) == PD_RECORD_OK)
        node_id = dec->id;
      (void)pd_book_add(b, &addrs[k], node_id, NOW, &src[s], 0, NOW, NULL);
    }
  size_t heap_b = heap_in_use() - h0;
  pd_rectable_t *rt_all = node_rectable(b);
  for (size_t k = 0; k < n; k++)
    if (sr[k].len && pd_record_parse_trusted(sr[k].bytes, sr[k].len, dec) == PD_RECORD_OK)
      (void)pd_rectable_put(rt_all, sr[k].bytes, sr[k].len, dec, NOW);
  /* one record per book entry */
  h0 = heap_in_use();
  pd_rectable_t *rt = node_rectable(b);
  for (size_t k = 0; k < n; k++)
    if (sr[k].len && pd_book_find(b, &addrs[k]) != PD_BOOK_NO_ID &&
        pd_record_parse_trusted(sr[k].bytes, sr[k].len, dec) == PD_RECORD_OK)
      (void)pd_rectable_put(rt, sr[k].bytes, sr[k].len, dec, NOW);
  size_t heap_rt = heap_in_use() - h0;
  size_t eb = pd_book_size(b), mb = pd_book_memory(b), mrt = pd_rectable_memory(rt),
         crt = pd_rectable_count(rt), mall = pd_rectable_memory(rt_all),
         call = pd_rectable_count(rt_all);
  if (unsigned_n) printf("  (%zu addresses could not be a record's endpoint)\n", unsigned_n);
  printf("  book without records: entries=%zu  book=%zu bytes  %.1f bytes/address\n", ea, ma,
         ea ? (double)ma / (double)ea : 0.0);
  printf("  same book, entries with node ids: entries=%zu  book=%zu bytes  %.1f bytes/address\n",
         eb, mb, eb ? (double)mb / (double)eb : 0.0);
  printf("  + one record per entry: records=%zu  rectable=%zu bytes  (%.1f bytes/record)\n", crt,
         mrt, crt ? (double)mrt / (double)crt : 0.0);
  printf("  book + records: %zu bytes  %.1f bytes/address  (%.2fx the book without records)\n",
         mb + mrt, eb ? (double)(mb + mrt) / (double)eb : 0.0,
         ma && ea && eb ? ((double)(mb + mrt) / (double)eb) / ((double)ma / (double)ea) : 0.0);
  printf("  as learn_record keeps them (every offered record): records=%zu  book + rectable=%zu "
         "bytes  %.1f bytes/address\n",
         call, mb + mall, eb ? (double)(mb + mall) / (double)eb : 0.0);
  if (heap_a && heap_b && heap_rt)
    printf("  heap (glibc mallinfo2): book without records %.1f, with node ids %.1f, + records "
           "%.1f bytes/address\n",
           ea ? (double)heap_a / (double)ea : 0.0, eb ? (double)heap_b / (double)eb : 0.0,
           eb ? (double)(heap_b + heap_rt) / (double)eb : 0.0);
  if (pd_book_check(a) != 0 || pd_book_check(b) != 0) printf("  CHECK FAILED\n");
  pd_rectable_destroy(rt);
  pd_rectable_destroy(rt_all);
  pd_book_destroy(a);
  pd_book_destroy(b);
  free(dec);
  free(sr);
  free(addrs);
  free(src);
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  if (sodium_init() < 0) die("sodium_init failed");
  printf("bench_records%s\n", quick ? " (quick)" : "");
  if (quick) {
    bench_per_record(16, 64, 2000, 3);
    bench_table(256, 3);
    bench_book_side(8, 32);
  } else {
    bench_per_record(256, 4000, 400000, 7);
    bench_table((size_t)PD_BOOK_BUCKET_SIZE * (PD_BOOK_NEW_BUCKETS + PD_BOOK_TRIED_BUCKETS), 7);
    bench_book_side(64, 256);
  }
  return (int)(sink & 0);
}
