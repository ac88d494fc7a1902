/* rectable — the verified node records this peerd holds about other nodes
 * (sans-I/O).
 *
 * Owns: one record per node id (the bytes as signed, at most PD_RECORD_MAX,
 * kept in an intern store, intern.h, that tables may share),
 * the sequence rules on update (higher replaces, lower is stale, the same
 * sequence with other bytes is a conflict), lookup by node id and by service
 * endpoint, a bound on how many records are kept (oldest inserted goes
 * first), and the bytes-per-record accounting.
 * Does not own: verifying records (the caller verifies before put: record.c
 * decodes and checks the signature), the address book (entries are placed
 * by their discovery endpoint and name their node id; the book costs
 * nothing more for an entry without a record), which endpoint to hand out.
 *
 * Indexes are open-addressing tables keyed by SipHash (libsodium
 * crypto_shorthash) with a secret key from the caller, so a peer that
 * chooses endpoints cannot aim at one probe chain.
 */
#ifndef PD_RECTABLE_H
#define PD_RECTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "record.h"

typedef struct pd_rectable pd_rectable_t;

/* A stored record (read-only; valid until the next put/remove). */
typedef struct pd_rec {
  uint8_t id[PD_NODE_ID_LEN];
  uint64_t seq;
  int64_t updated; /* when put last changed it (Unix s) */
  pd_netaddr_t placed; /* where books place the node (pd_record_placed), port 0: nowhere */
  uint16_t len;
  const uint8_t *bytes; /* len bytes: the signed record (kept in the table's intern store) */
} pd_rec_t;

enum pd_rec_put {
  PD_REC_NEW = 0,      /* a node we had no record of */
  PD_REC_UPDATED = 1,  /* a higher sequence replaced the one we had */
  PD_REC_SAME = 2,     /* exactly the record we have */
  PD_REC_STALE = 3,    /* lower sequence than ours: ignored */
  PD_REC_CONFLICT = 4, /* same sequence, other bytes: refused */
};

#define PD_RECTABLE_KEY_LEN 16
/* cap: records kept at most (>= 1); key: the index's SipHash key (secret:
 * derive it from something random, e.g. the book's key). */
int pd_rectable_create(pd_rectable_t **out, size_t cap, const uint8_t key[PD_RECTABLE_KEY_LEN]);
/* The same, with the records' bytes kept in `store` (intern.h), which
 * tables may share: the lab's hosts share one, so a record every host holds
 * is kept once. store must outlive the table; NULL: a store of its own. */
struct pd_intern;
int pd_rectable_create_shared(pd_rectable_t **out, size_t cap,
                              const uint8_t key[PD_RECTABLE_KEY_LEN], struct pd_intern *store);
void pd_rectable_destroy(pd_rectable_t *t);

/* Keep a verified record (its bytes and the decoded form, for the id,
 * sequence and service endpoints). Returns enum pd_rec_put, or PD_ENOMEM /
 * PD_EINVAL (the table unchanged). A full table drops its oldest-inserted
 * record first. */
int pd_rectable_put(pd_rectable_t *t, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                    int64_t now);
const pd_rec_t *pd_rectable_find(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN]);
/* pd_rectable_find with the id's hash in this table (pd_rectable_prefetch's
 * *hash): the same answer, one keyed hash fewer. */
const pd_rec_t *pd_rectable_find_hashed(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN],
                                        uint64_t hash);
/* A hint, no effect on the table: start loading what pd_rectable_find(t,
 * id) will read. Pass 0 hashes the id into *hash and loads the index line
 * it names; pass 1 (after pass 0 over the same ids) follows it to the
 * record when it is there. For batches (an ADDR's entries): pass 0, then
 * pass 1, over a few dozen ahead of the ones looked up, so their cache
 * misses overlap. */
void pd_rectable_prefetch(const pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN], uint64_t *hash,
                          int pass);
/* The record naming addr (IP and port) as one of its service endpoints
 * (the latest put wins when several do). */
const pd_rec_t *pd_rectable_find_service(const pd_rectable_t *t, const pd_netaddr_t *addr);
int pd_rectable_remove(pd_rectable_t *t, const uint8_t id[PD_NODE_ID_LEN]);

/* How many times the table has changed (a put that added or replaced a
 * record, a removal). While it stays the same, every pd_rectable_find
 * answers as before and the records it returned stay valid. */
uint64_t pd_rectable_changes(const pd_rectable_t *t);
size_t pd_rectable_count(const pd_rectable_t *t);
size_t pd_rectable_cap(const pd_rectable_t *t);
/* The i-th stored record in an order stable between puts (for saving), or
 * NULL past the end. */
const pd_rec_t *pd_rectable_at(const pd_rectable_t *t, size_t i);
/* Heap bytes held (records, indexes). */
size_t pd_rectable_memory(const pd_rectable_t *t);

/* The decoded form of a stored record (no signature check: it was checked
 * on the way in). 0 or PD_ECORRUPT. */
int pd_rec_decode(const pd_rec_t *r, pd_record_t *out);

#endif
