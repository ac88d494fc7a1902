/* node — one peerd's core state, tied together (sans-I/O).
 *
 * Owns: the address book (and through it the ban list), the seeded RNG the
 * book draws from, the configuration the core needs, the status an operator
 * sees (start time, last save and its result, load error and report), and
 * the metrics counters. The control API (api.c) and, later, the peer
 * protocol call into it with `now`; it never reads a clock, draws entropy or
 * touches a file or socket: the driver hands it time, seeds and bytes, and
 * performs the actions it asks for (e.g. "save the book now").
 * Does not own: HTTP (api.c), files and sockets (daemon.c, fsio.c).
 */
#ifndef PD_NODE_H
#define PD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrbook.h"
#include "bookstore.h"
#include "metrics.h"

#define PD_NODE_ERR_MAX 256

typedef struct pd_node_config {
  bool allow_private;       /* --allow-private */
  int64_t save_interval;    /* seconds between periodic saves (--save-interval, minutes) */
  int64_t default_ban_secs; /* ban length for "misbehaved" and POST /v1/bans without duration */
} pd_node_config_t;

typedef struct pd_node_status {
  int64_t started_at;    /* Unix s */
  int64_t last_save_at;  /* 0 = never */
  int last_save_rc;      /* 0 ok, < 0 error code */
  char last_save_error[PD_NODE_ERR_MAX];
  size_t last_save_bytes;
  size_t last_save_entries;
  bool load_failed;      /* the saved book could not be used */
  char load_error[PD_NODE_ERR_MAX];
  char load_moved_to[PD_NODE_ERR_MAX]; /* where the bad file was moved */
  pd_bookstore_report_t load_report;   /* skipped entries etc. */
} pd_node_status_t;

typedef struct pd_node pd_node_t;

/* Create around an existing book (takes ownership of it). rng is borrowed:
 * it must be the one the book was created with and outlive the node. */
int pd_node_create(pd_node_t **out, const pd_node_config_t *cfg, pd_book_t *book, pd_rng_t *rng,
                   int64_t now);
void pd_node_destroy(pd_node_t *n);

pd_book_t *pd_node_book(pd_node_t *n);
pd_rng_t *pd_node_rng(pd_node_t *n);
const pd_node_config_t *pd_node_config(const pd_node_t *n);
pd_node_status_t *pd_node_status(pd_node_t *n);
pd_metrics_t *pd_node_metrics(pd_node_t *n);

/* Replace the book (e.g. after a load); the old one is destroyed. */
void pd_node_set_book(pd_node_t *n, pd_book_t *book);

/* Record what the driver did. */
void pd_node_note_save(pd_node_t *n, int rc, const char *error, size_t bytes, size_t entries,
                       int64_t now);
void pd_node_note_load(pd_node_t *n, int rc, const char *error, const char *moved_to,
                       const pd_bookstore_report_t *report);

/* Copy s (NULL = "") into dst of cap bytes, cutting an over-long text on a
 * UTF-8 character boundary; dst is always NUL-terminated. */
void pd_node_copy_text(char *dst, size_t cap, const char *s);

/* Periodic housekeeping at now: expire bans, resolve tried collisions.
 * Returns true when a periodic save is due (the driver then saves). */
bool pd_node_tick(pd_node_t *n, int64_t now);

#endif
