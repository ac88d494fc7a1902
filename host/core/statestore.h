/* statestore — the state that outlives a restart besides the book, as JSON
 * documents: the ban list (bans.json) and the reputation records
 * (reputation.json).
 *
 * Owns: encoding a pd_banlist_t and a pd_reputation_t into one versioned
 * JSON document each (bounded: at most `max` items, the ones that matter
 * most kept, see below), and decoding such a document into an existing
 * list or table, validating every item on its own (a bad item is skipped
 * and counted, the rest kept). Pure functions, bytes in and out.
 * Does not own: files (the driver reads and writes the bytes atomically
 * and moves a document that will not decode aside), the tables themselves
 * (banlist.c, reputation.c), the book's document (bookstore.c, which still
 * reads bans from books written before bans.json existed).
 * Deterministic: the same list or table encodes to the same bytes.
 *
 * Bounds (the file never grows with an attack beyond them):
 * - bans: at most `max` active bans (PD_STATESTORE_MAX_BANS by default);
 *   permanent bans are kept first, then those that end latest; the bans
 *   that would end soonest are dropped first. Expired bans are never saved.
 * - reputation: at most `max` records (PD_STATESTORE_MAX_RECORDS by
 *   default), kept by class, then by recency: first every record with a
 *   misbehaviour (what ban escalation counts), then negative reputation,
 *   then positive, then neutral ones (reputation 0, no misbehaviour: only
 *   a first-seen time and a latency). Within a class the least recently
 *   touched records are dropped first.
 */
#ifndef PD_STATESTORE_H
#define PD_STATESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "banlist.h"
#include "reputation.h"

#define PD_STATESTORE_BANS_FORMAT "peerd-bans"
#define PD_STATESTORE_REPUTATION_FORMAT "peerd-reputation"
#define PD_STATESTORE_VERSION 1
/* Worst-case documents at these bounds: 65 MiB of bans, 2.4 MiB of records
 * (test_statestore prints the figures). */
#define PD_STATESTORE_MAX_BANS 100000
#define PD_STATESTORE_MAX_RECORDS 20000

typedef struct pd_statestore_report {
  size_t loaded;  /* bans or records put into the list or table */
  size_t skipped; /* items that failed validation */
  size_t expired; /* bans: already over at `now` (left out, not an error) */
  char first_skip[160]; /* why the first skipped item was skipped ("" if none) */
} pd_statestore_report_t;

/* Encode the bans active at `now`, at most max (0 = PD_STATESTORE_MAX_BANS),
 * in the list's order. *out is malloc'd (caller frees), NUL-terminated, *len
 * excludes the NUL; *written (may be NULL) gets the number of bans written.
 * `now` is written as "saved_at". 0 or PD_ENOMEM. */
int pd_statestore_encode_bans(const pd_banlist_t *bl, int64_t now, size_t max, char **out,
                              size_t *len, size_t *written);

/* Decode a bans document into bl: each valid ban that is still active at
 * `now` is added (replacing a ban on the same subnet already there). 0 on
 * success (possibly with skipped items, see report), or PD_ECORRUPT (not
 * JSON, truncated, a required field missing or of the wrong type) /
 * PD_EFORMAT (another format or version) with a human reason in err (cap
 * bytes) and bl untouched; PD_ENOMEM (bl may hold part of the document). */
int pd_statestore_decode_bans(const char *buf, size_t len, int64_t now, pd_banlist_t *bl,
                              pd_statestore_report_t *report, char *err, size_t cap);

/* Encode the reputation records, at most max (0 = PD_STATESTORE_MAX_RECORDS)
 * chosen as the top of this header says, most recently touched first.
 * Otherwise as pd_statestore_encode_bans. */
int pd_statestore_encode_reputation(const pd_reputation_t *r, int64_t now, size_t max,
                                    char **out, size_t *len, size_t *written);

/* Decode a reputation document into r: every valid record is restored
 * (pd_reputation_restore), from the last row to the first, so the touch
 * order is the saved one; a table smaller than the document keeps the most
 * recent records. Errors as pd_statestore_decode_bans (r untouched on
 * PD_ECORRUPT / PD_EFORMAT). */
int pd_statestore_decode_reputation(const char *buf, size_t len, pd_reputation_t *r,
                                    pd_statestore_report_t *report, char *err, size_t cap);

#endif
