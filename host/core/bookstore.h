/* bookstore — the address book as a JSON document (addrbook.json).
 *
 * Owns: encoding a pd_book_t (entries, new-table references, tried
 * collisions, bans, key, geometry) into one JSON document with a format
 * version, and decoding such a document back into a fresh book, validating
 * every entry one by one (a bad entry is skipped and counted, the rest
 * kept), re-placing the entries when the book is given another geometry
 * than the document's (see bookstore.c); salvaging, line by line, the
 * entries of a document too damaged to parse as a whole.
 * Bans: written here unless PD_BOOKSTORE_NO_BANS (the daemon keeps them in
 * bans.json, statestore.h); always read, so a book written before bans.json
 * existed hands its bans over.
 * Does not own: files. The driver reads and writes the bytes (atomically,
 * see fsio.h) and decides what to do with a document that will not decode.
 * Deterministic: the same book encodes to the same bytes.
 */
#ifndef PD_BOOKSTORE_H
#define PD_BOOKSTORE_H

#include <stdbool.h>
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
  /* Geometry (pd_bookstore_decode_ex). */
  pd_book_geometry_t file_geometry; /* the document's (default when absent) */
  size_t entries_replaced; /* re-placed into another geometry (all loaded ones then) */
  size_t tried_demoted;    /* of those: tried entries put back in new (slot taken) */
  size_t entries_lost;     /* valid entries that found no free slot there (dropped) */
  /* Salvage (pd_bookstore_salvage; 0 / false otherwise). */
  bool salvage;           /* this report is a salvage's */
  size_t salvaged;        /* entries kept from a damaged document (= entries_loaded) */
  size_t lost;            /* its lines that gave no entry: cut, unreadable or invalid rows */
  bool salvage_end_found; /* its last line ("]}") was there: nothing was cut off the end
                           * (when false, entries after the cut are gone and not counted) */
  char first_skip[160]; /* why the first skipped item was skipped ("" if none) */
} pd_bookstore_report_t;

/* Encode. *out is malloc'd (caller frees), NUL-terminated, *len excludes
 * the NUL. `now` is written as "saved_at". 0 or PD_ENOMEM. */
int pd_bookstore_encode(const pd_book_t *b, int64_t now, char **out, size_t *len);

/* Flags of pd_bookstore_encode_ex. */
#define PD_BOOKSTORE_NO_BANS 1u /* write "bans":[] (the bans live elsewhere) */

/* The same with flags (pd_bookstore_encode is flags 0). */
int pd_bookstore_encode_ex(const pd_book_t *b, int64_t now, unsigned flags, char **out,
                           size_t *len);

/* Decode a whole document into a new book created with the document's key,
 * the given rng and flags (PD_BOOK_ALLOW_PRIVATE). Returns 0 on success
 * (possibly with skipped items, see report), or PD_ECORRUPT (not JSON,
 * truncated, required fields missing or of the wrong type) / PD_EFORMAT
 * (another format or version) with a human reason in err (cap bytes), and
 * *out untouched. */
int pd_bookstore_decode(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                        pd_book_t **out, pd_bookstore_report_t *report, char *err, size_t cap);

/* The same into a book of the given geometry (NULL = the document's own,
 * which is what pd_bookstore_decode does). When it differs from the
 * document's, entries are re-placed by the placement rules (tried entries
 * whose tried slot is taken go back to new; entries without a free slot are
 * dropped and counted in report->entries_lost). PD_EINVAL for an invalid
 * geometry. The document's geometry is the optional "new_buckets" /
 * "tried_buckets" pair, written only for a non-default geometry. */
int pd_bookstore_decode_ex(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                           const pd_book_geometry_t *geometry, pd_book_t **out,
                           pd_bookstore_report_t *report, char *err, size_t cap);

/* Salvage a document pd_bookstore_decode refused as PD_ECORRUPT (cut short,
 * garbage in it): the text is read line by line, as the encoder writes it
 * (one entry per line, see bookstore.c). The first line must still give
 * the format, version and key (else PD_ECORRUPT / PD_EFORMAT: nothing to
 * salvage); then every line that is a complete entry row (a JSON string,
 * once its trailing comma is dropped) goes through the same checks as in
 * pd_bookstore_decode, in the document's own geometry, and so do the
 * collisions line and complete ban lines. Any other line (cut, garbage) is
 * counted in entries_skipped with its line number as the first reason;
 * report->salvaged and report->lost give the totals. 0 with the new book
 * (possibly empty), else an error with err set and *out untouched. */
int pd_bookstore_salvage(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                         pd_book_t **out, pd_bookstore_report_t *report, char *err, size_t cap);

/* One ban object of the JSON form ({"subnet", "created", "until", "reason"}),
 * as addrbook.json and bans.json (statestore.c) hold them: NULL, or why it
 * is refused. *reason points into o. */
struct json_t;
const char *pd_bookstore_parse_ban(const struct json_t *o, pd_subnet_t *s, int64_t *created,
                                   int64_t *until, const char **reason);

#endif
