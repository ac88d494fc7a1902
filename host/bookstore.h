/* bookstore — the address book as a JSON document (addrbook.json).
 *
 * Owns: encoding a pd_book_t (entries, new-table references, tried
 * collisions, bans, key) into one JSON document with a format version, and
 * decoding such a document back into a fresh book, validating every entry
 * one by one (a bad entry is skipped and counted, the rest kept).
 * Does not own: files. The driver reads and writes the bytes (atomically,
 * see fsio.h) and decides what to do with a document that will not decode.
 * Deterministic: the same book encodes to the same bytes.
 */
#ifndef PD_BOOKSTORE_H
#define PD_BOOKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "addrbook.h"

#define PD_BOOKSTORE_FORMAT "peerd-addrbook"
#define PD_BOOKSTORE_VERSION 1

typedef struct pd_bookstore_report {
  size_t entries_loaded;  /* entries now in the book */
  size_t entries_skipped; /* entries that failed validation */
  size_t bans_loaded;
  size_t bans_skipped;
  size_t collisions_loaded;  /* pending tried collisions restored */
  size_t collisions_skipped; /* collisions naming no restored entry, or bad */
  char first_skip[160]; /* why the first skipped item was skipped ("" if none) */
} pd_bookstore_report_t;

/* Encode. *out is malloc'd (caller frees), NUL-terminated, *len excludes
 * the NUL. `now` is written as "saved_at". 0 or PD_ENOMEM. */
int pd_bookstore_encode(const pd_book_t *b, int64_t now, char **out, size_t *len);

/* Decode a whole document into a new book created with the document's key,
 * the given rng and flags (PD_BOOK_ALLOW_PRIVATE). Returns 0 on success
 * (possibly with skipped items, see report), or PD_ECORRUPT (not JSON,
 * truncated, required fields missing or of the wrong type) / PD_EFORMAT
 * (another format or version) with a human reason in err (cap bytes), and
 * *out untouched. */
int pd_bookstore_decode(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                        pd_book_t **out, pd_bookstore_report_t *report, char *err, size_t cap);

#endif
