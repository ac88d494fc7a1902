/* node — one peerd's core state. See node.h. */
#include "node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct pd_node {
  pd_node_config_t cfg;
  pd_book_t *book;
  pd_rng_t *rng;
  pd_node_status_t status;
  pd_metrics_t metrics;
};

/* Copy s (may be NULL) into a fixed buffer, truncating on a UTF-8 boundary. */
void pd_node_copy_text(char *dst, size_t cap, const char *s) {
  if (!s) {
    dst[0] = '\0';
    return;
  }
  size_t n = strlen(s);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* On failure nothing is taken: the book stays the caller's. */
int pd_node_create(pd_node_t **out, const pd_node_config_t *cfg, pd_book_t *book, pd_rng_t *rng,
                   int64_t now) {
  if (!out || !cfg || !book || !rng) return PD_EINVAL;
  pd_node_t *n = calloc(1, sizeof(*n));
  if (!n) return PD_ENOMEM;
  n->cfg = *cfg;
  n->book = book;
  n->rng = rng;
  n->status.started_at = now;
  pd_metrics_init(&n->metrics);
  *out = n;
  return 0;
}

void pd_node_destroy(pd_node_t *n) {
  if (!n) return;
  pd_book_destroy(n->book);
  free(n);
}

pd_book_t *pd_node_book(pd_node_t *n) { return n->book; }
pd_rng_t *pd_node_rng(pd_node_t *n) { return n->rng; }
const pd_node_config_t *pd_node_config(const pd_node_t *n) { return &n->cfg; }
pd_node_status_t *pd_node_status(pd_node_t *n) { return &n->status; }
pd_metrics_t *pd_node_metrics(pd_node_t *n) { return &n->metrics; }

void pd_node_set_book(pd_node_t *n, pd_book_t *book) {
  if (!book || book == n->book) return;
  pd_book_destroy(n->book);
  n->book = book;
}

void pd_node_note_save(pd_node_t *n, int rc, const char *error, size_t bytes, size_t entries,
                       int64_t now) {
  pd_node_status_t *st = &n->status;
  st->last_save_at = now;
  st->last_save_rc = rc < 0 ? rc : 0;
  if (rc < 0) {
    pd_node_copy_text(st->last_save_error, sizeof(st->last_save_error), error ? error : pd_strerror(rc));
  } else {
    st->last_save_error[0] = '\0';
  }
  st->last_save_bytes = bytes;
  st->last_save_entries = entries;
  pd_metrics_count_save(&n->metrics, rc >= 0, now);
}

void pd_node_note_load(pd_node_t *n, int rc, const char *error, const char *moved_to,
                       const pd_bookstore_report_t *report) {
  pd_node_status_t *st = &n->status;
  st->load_failed = rc < 0;
  if (rc < 0) {
    pd_node_copy_text(st->load_error, sizeof(st->load_error), error ? error : pd_strerror(rc));
    pd_metrics_count_load_error(&n->metrics);
  } else {
    st->load_error[0] = '\0';
  }
  pd_node_copy_text(st->load_moved_to, sizeof(st->load_moved_to), moved_to);
  if (report) {
    st->load_report = *report;
    st->load_report.first_skip[sizeof(st->load_report.first_skip) - 1] = '\0';
    pd_metrics_count_load_skipped(&n->metrics, report->entries_skipped);
  } else {
    memset(&st->load_report, 0, sizeof(st->load_report));
  }
}

bool pd_node_tick(pd_node_t *n, int64_t now) {
  pd_banlist_expire(pd_book_bans(n->book), now);
  pd_book_resolve_collisions(n->book, now);
  if (n->cfg.save_interval <= 0) return false; /* periodic saves disabled */
  int64_t since = n->status.last_save_at ? n->status.last_save_at : n->status.started_at;
  return now - since >= n->cfg.save_interval;
}
