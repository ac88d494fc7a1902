/* bench_bookstore — save and load of a full address book.
 *
 * Builds a book of random routable IPv4 addresses announced by 1,024 source
 * groups, moving each new one to tried while the tried table has room,
 * until the new table (65,536 slots) and the tried table (16,384) are full
 * or a bounded number of adds is spent (~81,900 of 81,920 in practice).
 * Then times pd_bookstore_encode and pd_bookstore_decode (best and mean of
 * 7 runs), shows how much of decode is jansson's parser, and prints the
 * document's size and bytes per entry.
 *   --quick       a 5,000-entry book, one run (keeps it working under ctest)
 *   --dump FILE   also write the document to FILE (for profiling)
 * Only this program reads a clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "addrbook.h"
#include "bookstore.h"
#include "err.h"

#define NOW ((int64_t)1700000000)

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static pd_netaddr_t random_routable(pd_rng_t *r) {
  for (;;) {
    uint32_t v = (uint32_t)pd_rng_u64(r);
    pd_netaddr_t a;
    memset(&a, 0, sizeof a);
    a.ip[10] = 0xff;
    a.ip[11] = 0xff;
    a.ip[12] = (uint8_t)(v >> 24);
    a.ip[13] = (uint8_t)(v >> 16);
    a.ip[14] = (uint8_t)(v >> 8);
    a.ip[15] = (uint8_t)v;
    a.port = (uint16_t)(26656 + pd_rng_range(r, 4));
    if (pd_netaddr_is_routable(&a)) return a;
  }
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  const char *dump = argc > 2 && strcmp(argv[1], "--dump") == 0 ? argv[2] : NULL;
  size_t want_new = quick ? 4000 : (size_t)PD_BOOK_NEW_BUCKETS * PD_BOOK_BUCKET_SIZE;
  size_t want_tried = quick ? 1000 : (size_t)PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE;
  int runs = quick ? 1 : 7;

  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i * 37 + 1);
  pd_rng_t rng, gen;
  pd_rng_seed(&rng, 1);
  pd_rng_seed(&gen, 2);
  pd_book_t *b = NULL;
  if (pd_book_create(&b, key, &rng, 0) != 0) return 1;

  /* 1,024 sources in distinct /16s: each covers up to 64 new buckets. */
  enum { NSRC = 1024 };
  pd_netaddr_t *src = malloc(NSRC * sizeof *src);
  if (src == NULL) return 1;
  for (int i = 0; i < NSRC; i++) src[i] = random_routable(&gen), src[i].port = 0;

  /* Add random addresses; move each newly added one to tried while the
   * tried table has room (a tried slot conflict sends the old entry back to
   * new, as addrman does), until both tables are full or a bounded number
   * of adds is spent. */
  size_t tries = 0, max_tries = (want_new + want_tried) * 40;
  while ((pd_book_count_new(b) < want_new || pd_book_count_tried(b) < want_tried) &&
         tries < max_tries) {
    tries++;
    pd_netaddr_t a = random_routable(&gen);
    int rc = pd_book_add(b, &a, NULL, NOW - (int64_t)pd_rng_range(&gen, 86400 * 7),
                         &src[pd_rng_range(&gen, NSRC)], 0, NOW, NULL);
    if (rc == 1 && pd_book_count_tried(b) < want_tried) pd_book_good(b, &a, false, NOW + 1);
  }
  free(src);
  size_t n = pd_book_size(b);
  printf("book: %zu entries (%zu new, %zu tried)%s\n", n, pd_book_count_new(b),
         pd_book_count_tried(b), quick ? " [quick]" : "");

  double parse_best = 1e18, free_best = 1e18;
  double enc_best = 1e18, dec_best = 1e18, enc_sum = 0, dec_sum = 0;
  size_t len = 0;
  int rc = 0;
  for (int r = 0; r < runs; r++) {
    char *doc = NULL;
    double t0 = now_ms();
    rc = pd_bookstore_encode(b, NOW + 2, &doc, &len);
    double t1 = now_ms();
    if (rc != 0) {
      fprintf(stderr, "encode: %s\n", pd_strerror(rc));
      return 1;
    }
    pd_rng_t r2;
    pd_rng_seed(&r2, 3);
    pd_book_t *back = NULL;
    pd_bookstore_report_t rep;
    char err[256];
    double t2 = now_ms();
    rc = pd_bookstore_decode(doc, len, &r2, 0, &back, &rep, err, sizeof err);
    double t3 = now_ms();
    if (rc != 0 || rep.entries_loaded != n || rep.entries_skipped != 0) {
      fprintf(stderr, "decode: %s (%s) loaded %zu skipped %zu: %s\n", pd_strerror(rc), err,
              rep.entries_loaded, rep.entries_skipped, rep.first_skip);
      return 1;
    }
    pd_book_destroy(back);
    if (dump != NULL && r == 0) {
      FILE *f = fopen(dump, "wb");
      if (f != NULL) {
        fwrite(doc, 1, len, f);
        fclose(f);
      }
    }
    /* The share of decode spent in jansson's parser alone. */
    json_error_t je;
    double t4 = now_ms();
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &je);
    double t5 = now_ms();
    json_decref(root);
    double t6 = now_ms();
    parse_best = t5 - t4 < parse_best ? t5 - t4 : parse_best;
    free_best = t6 - t5 < free_best ? t6 - t5 : free_best;
    free(doc);
    enc_best = t1 - t0 < enc_best ? t1 - t0 : enc_best;
    dec_best = t3 - t2 < dec_best ? t3 - t2 : dec_best;
    enc_sum += t1 - t0;
    dec_sum += t3 - t2;
  }
  printf("encode: best %.2f ms, mean %.2f ms (%.0f ns/entry)\n", enc_best, enc_sum / runs,
         enc_best * 1e6 / (double)(n ? n : 1));
  printf("decode: best %.2f ms, mean %.2f ms (%.0f ns/entry)\n", dec_best, dec_sum / runs,
         dec_best * 1e6 / (double)(n ? n : 1));
  printf("  of which json_loadb %.2f ms, json_decref %.2f ms\n", parse_best, free_best);
  printf("save+load: best %.2f ms (target <= 150 ms for 81,920 entries)\n", enc_best + dec_best);
  printf("document: %zu bytes, %.1f bytes/entry\n", len, (double)len / (double)(n ? n : 1));
  pd_book_destroy(b);
  return 0;
}
