/* fuzz_bookstore — libFuzzer target for the book loader
 * (host/core/bookstore.c): the input is an addrbook.json document, decoded
 * as the daemon does: pd_bookstore_decode_ex, and for a document refused as
 * corrupt, pd_bookstore_salvage (line by line).
 * Byte 0 picks the flags: bit 0 PD_BOOK_ALLOW_PRIVATE, bit 1 decode into a
 * small geometry (64 new / 16 tried buckets: the re-placement path); the
 * rest is the document.
 * Oracle beyond the sanitizers: a book that decodes or is salvaged encodes
 * again, and that encoding decodes into a book of the same size with
 * nothing skipped; a salvage's report counts what it kept; a refusal always
 * says why. Nothing outlives one input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bookstore.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned flags = (data[0] & 1) ? PD_BOOK_ALLOW_PRIVATE : 0;
  pd_book_geometry_t small = {.new_buckets = 64, .tried_buckets = 16};
  const pd_book_geometry_t *geo = (data[0] & 2) ? &small : NULL;
  data++;
  size--;

  pd_rng_t rng;
  pd_rng_seed(&rng, 42);
  pd_book_t *book = NULL;
  pd_bookstore_report_t rep;
  memset(&rep, 0, sizeof rep);
  char err[256] = "";
  int rc = pd_bookstore_decode_ex((const char *)data, size, &rng, flags, geo, &book, &rep, err,
                                  sizeof err);
  if (rc != 0) {
    if (book || err[0] == '\0') abort();
    if (rc != PD_ECORRUPT) return 0;
    /* what the daemon does with a damaged book: salvage it line by line */
    pd_rng_seed(&rng, 42);
    memset(&rep, 0, sizeof rep);
    err[0] = '\0';
    rc = pd_bookstore_salvage((const char *)data, size, &rng, flags, &book, &rep, err, sizeof err);
    if (rc != 0) {
      if (book || err[0] == '\0') abort();
      return 0;
    }
    if (!book || !rep.salvage || rep.salvaged != rep.entries_loaded) abort();
  }
  if (!book || pd_book_size(book) != rep.entries_loaded) abort();

  char *text = NULL;
  size_t len = 0;
  if (pd_bookstore_encode(book, 1700000000, &text, &len) != 0) abort();
  pd_rng_t rng2;
  pd_rng_seed(&rng2, 42);
  pd_book_t *again = NULL;
  pd_bookstore_report_t rep2;
  if (pd_bookstore_decode(text, len, &rng2, flags, &again, &rep2, err, sizeof err) != 0) abort();
  if (pd_book_size(again) != pd_book_size(book) || rep2.entries_skipped != 0) abort();

  pd_book_destroy(again);
  free(text);
  pd_book_destroy(book);
  return 0;
}
