/* fmt — peerctl's pure helpers: durations in and out, times, short ids and
 * aligned text tables.
 *
 * Owns: parsing a duration ("90s", "10m", "24h", "7d", "2w", "1h30m", plain
 * seconds, "permanent"), formatting seconds back ("1d2h"), a time relative
 * to now ("5m ago", "in 3h"), short node ids, and a table that prints its
 * columns aligned (widths in UTF-8 characters).
 * Does not own: HTTP (client.c), what commands print (peerctl.c). No I/O
 * except writing a finished table to the FILE the caller hands in.
 */
#ifndef PD_CTL_FMT_H
#define PD_CTL_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "90s" "10m" "24h" "7d" "2w", sums of them ("1h30m"), plain seconds
 * ("3600"); "0", "permanent" and "forever" give 0 (a permanent ban).
 * 0 and *secs, or -1 with *why. At most 100 years. */
int pd_ctl_parse_duration(const char *s, int64_t *secs, const char **why);

/* Seconds as the two largest units: "45s", "10m", "1h30m", "7d", "2d3h". */
void pd_ctl_format_duration(int64_t secs, char *buf, size_t cap);

/* A Unix time relative to now: "never" (0), "5m ago", "in 3h", "now". */
void pd_ctl_format_ago(int64_t t, int64_t now, char *buf, size_t cap);

/* The first 12 characters of a node id (or "-" for NULL / ""). */
void pd_ctl_short_id(const char *id, char *buf, size_t cap);

/* Display width of a UTF-8 string (code points). */
size_t pd_ctl_width(const char *s);

/* A text table: columns aligned to their widest cell, two spaces apart,
 * the last column not padded. Cells are copied. */
typedef struct pd_ctl_table pd_ctl_table_t;
pd_ctl_table_t *pd_ctl_table_new(size_t ncols, const char *const *headers);
/* Append a row of ncols cells (NULL cells print as "-"). 0 or -1 (no memory). */
int pd_ctl_table_add(pd_ctl_table_t *t, const char *const *cells);
size_t pd_ctl_table_rows(const pd_ctl_table_t *t);
/* Print the header and rows; returns bytes written or -1. */
int pd_ctl_table_print(const pd_ctl_table_t *t, FILE *out);
void pd_ctl_table_free(pd_ctl_table_t *t);

#endif
