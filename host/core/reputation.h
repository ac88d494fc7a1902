/* reputation — what peerd remembers about how peers behaved (sans-I/O).
 *
 * Owns: a bounded table of reputation records keyed by IP address (the
 * port is ignored: a peer that reconnects from another port, or runs two
 * nodes on one host, shares one record, so a misbehaving host cannot shed
 * its history by changing ports; bans are per IP too). Each record holds a
 * reputation value, a misbehaviour count, when the IP was first seen, when
 * its last event arrived, and its latency when known. The table holds at
 * most `max_records` records (default PD_REP_DEFAULT_MAX); a new IP beyond
 * that evicts the least recently touched record. Also owns the built-in C
 * default rule for events (used when reputation.lua is absent or fails).
 * Walking the records in touch order and putting saved records back are
 * here too (pd_reputation_next, pd_reputation_restore): statestore.c turns
 * them into reputation.json and back.
 * Does not own: bans (addrbook's ban list; the node applies a verdict),
 * deciding with Lua (policy.c), the clock (`now` comes in), the saved
 * document (statestore.c) and its file (the driver).
 */
#ifndef PD_REPUTATION_H
#define PD_REPUTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PD_REP_DEFAULT_MAX 100000
#define PD_REP_LIMIT 1e6 /* reputation values are clamped to [-1e6, 1e6] */

typedef struct pd_rep_record {
  pd_netaddr_t ip;       /* port 0 */
  double reputation;     /* 0 for a new record */
  int misbehaviours;     /* "misbehaved" events so far */
  int64_t first_seen;    /* Unix s of the record's creation */
  int64_t last_event_at; /* Unix s of the last event (0 = none) */
  double latency_ms;     /* < 0: unknown */
} pd_rep_record_t;

/* The outcome of the built-in rule (same meaning as pd_rep_verdict_t). */
typedef struct pd_rep_default {
  double reputation;
  int64_t ban_secs; /* 0 none, > 0 seconds, -1 permanent */
  const char *reason; /* static */
} pd_rep_default_t;

typedef struct pd_reputation pd_reputation_t;

/* max_records 0 = PD_REP_DEFAULT_MAX. seed keys the table's hash (draw it
 * from the node's RNG so crafted addresses cannot collide on purpose). */
int pd_reputation_create(pd_reputation_t **out, size_t max_records, uint64_t seed);
void pd_reputation_destroy(pd_reputation_t *r);

size_t pd_reputation_count(const pd_reputation_t *r);
size_t pd_reputation_max(const pd_reputation_t *r);
/* Heap bytes held. */
size_t pd_reputation_memory(const pd_reputation_t *r);

/* The record of a's IP, or NULL (does not count as a touch). */
const pd_rep_record_t *pd_reputation_get(const pd_reputation_t *r, const pd_netaddr_t *a);

/* A hint, no effect on results: start loading what pd_reputation_get(r, a)
 * reads. Pass 0 the index slot, pass 1 (after pass 0 for a batch of
 * addresses) the record that slot names. */
void pd_reputation_prefetch(const pd_reputation_t *r, const pd_netaddr_t *a, int pass);

/* The record of a's IP, created (first_seen = now) when absent, evicting
 * the least recently touched record when the table is full; it becomes the
 * most recently touched. The pointer is valid until the next call that
 * touches or removes. 0 or PD_ENOMEM. */
int pd_reputation_touch(pd_reputation_t *r, const pd_netaddr_t *a, int64_t now,
                        pd_rep_record_t **out);

/* Record an event on a's record (touching it): sets reputation (clamped to
 * PD_REP_LIMIT; NaN keeps the old value), last_event_at = now, and counts a
 * misbehaviour when `misbehaved`. 0 or PD_ENOMEM. */
int pd_reputation_update(pd_reputation_t *r, const pd_netaddr_t *a, double reputation,
                         bool misbehaved, int64_t now);
/* Set the latency of a's record (touching it); ms < 0 = unknown. */
int pd_reputation_set_latency(pd_reputation_t *r, const pd_netaddr_t *a, double ms, int64_t now);

/* Forget a's IP. 0 or PD_ENOENT. */
int pd_reputation_remove(pd_reputation_t *r, const pd_netaddr_t *a);

/* The records in touch order, most recently touched first: prev NULL gives
 * the first, a record the one touched before it, NULL after the last.
 * Valid while the table is not changed. */
const pd_rep_record_t *pd_reputation_next(const pd_reputation_t *r, const pd_rep_record_t *prev);

/* Put a saved record back: the record of rec->ip (port ignored) gets rec's
 * values exactly (reputation clamped to PD_REP_LIMIT, NaN read as 0;
 * misbehaviours below 0 read as 0; latency NaN or < 0 read as unknown) and
 * becomes the most recently touched one, evicting the least recently
 * touched record when the table is full. Restoring a list from its least
 * to its most recent record rebuilds the touch order. 0, PD_EINVAL or
 * PD_ENOMEM. */
int pd_reputation_restore(pd_reputation_t *r, const pd_rep_record_t *rec);

/* The built-in rule: the new reputation after `event` ("attempt",
 * "connected", "good", "failed", "misbehaved", "disconnected") given the
 * current value: good +1, connected +0.1, failed -1, attempt and
 * disconnected 0, misbehaved -10 and a ban of default_ban_secs (0 or
 * negative: no ban) with reason "misbehaved". Unknown events change
 * nothing. */
void pd_reputation_default(double current, const char *event, int64_t default_ban_secs,
                           pd_rep_default_t *out);

#endif
