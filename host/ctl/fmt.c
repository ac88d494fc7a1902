/* fmt — peerctl's pure helpers. See fmt.h. */
#include "fmt.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DURATION (100LL * 365 * 86400)

int pd_ctl_parse_duration(const char *s, int64_t *secs, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  if (!s || !*s) {
    *why = "empty duration";
    return -1;
  }
  if (strcmp(s, "permanent") == 0 || strcmp(s, "forever") == 0) {
    *secs = 0;
    return 0;
  }
  int64_t total = 0;
  const char *p = s;
  char last_unit = 0;
  while (*p) {
    if (*p < '0' || *p > '9') {
      *why = "expected a number, then s, m, h, d or w (e.g. 90s, 10m, 24h, 7d, 1h30m)";
      return -1;
    }
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
      if (v > MAX_DURATION) {
        *why = "duration too long (at most 100 years)";
        return -1;
      }
      v = v * 10 + (*p - '0');
      p++;
    }
    int64_t mult;
    char u = *p;
    switch (u) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    case 'w': mult = 7 * 86400; break;
    case '\0':
      if (p == s || last_unit == 0) { /* plain seconds: only as the whole string */
        mult = 1;
        break;
      }
      *why = "a unit (s, m, h, d or w) is missing after the last number";
      return -1;
    default:
      *why = "unknown unit (use s, m, h, d or w)";
      return -1;
    }
    if (u) {
      if (last_unit && strchr("wdhms", last_unit) >= strchr("wdhms", u)) {
        *why = "units must go from largest to smallest, each once (e.g. 1d12h)";
        return -1;
      }
      last_unit = u;
      p++;
    } else {
      last_unit = 's';
    }
    if (v > MAX_DURATION / mult || total > MAX_DURATION - v * mult) {
      *why = "duration too long (at most 100 years)";
      return -1;
    }
    total += v * mult;
  }
  *secs = total;
  return 0;
}

void pd_ctl_format_duration(int64_t secs, char *buf, size_t cap) {
  static const struct {
    int64_t n;
    char u;
  } units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
  if (secs < 0) secs = -secs;
  if (secs == 0) {
    snprintf(buf, cap, "0s");
    return;
  }
  size_t i = 0;
  while (secs < units[i].n) i++;
  int64_t a = secs / units[i].n, rest = secs % units[i].n;
  if (i + 1 < 4 && rest / units[i + 1].n > 0 && a < 10)
    snprintf(buf, cap, "%" PRId64 "%c%" PRId64 "%c", a, units[i].u, rest / units[i + 1].n,
             units[i + 1].u);
  else
    snprintf(buf, cap, "%" PRId64 "%c", a, units[i].u);
}

void pd_ctl_format_ago(int64_t t, int64_t now, char *buf, size_t cap) {
  if (t == 0) {
    snprintf(buf, cap, "never");
    return;
  }
  char d[32];
  if (t == now) {
    snprintf(buf, cap, "now");
  } else if (t < now) {
    pd_ctl_format_duration(now - t, d, sizeof d);
    snprintf(buf, cap, "%s ago", d);
  } else {
    pd_ctl_format_duration(t - now, d, sizeof d);
    snprintf(buf, cap, "in %s", d);
  }
}

void pd_ctl_short_id(const char *id, char *buf, size_t cap) {
  if (!id || !*id) {
    snprintf(buf, cap, "-");
    return;
  }
  snprintf(buf, cap, "%.12s", id);
}

size_t pd_ctl_width(const char *s) {
  size_t n = 0;
  for (; s && *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

struct pd_ctl_table {
  size_t ncols;
  char **cells; /* rows * ncols, row 0 the header */
  size_t rows, cap;
};

static int table_push(pd_ctl_table_t *t, const char *const *cells) {
  if (t->rows == t->cap) {
    size_t nc = t->cap ? 2 * t->cap : 16;
    char **p = realloc(t->cells, nc * t->ncols * sizeof *p);
    if (!p) return -1;
    t->cells = p;
    t->cap = nc;
  }
  char **row = &t->cells[t->rows * t->ncols];
  for (size_t i = 0; i < t->ncols; i++) {
    row[i] = strdup(cells[i] ? cells[i] : "-");
    if (!row[i]) {
      for (size_t k = 0; k < i; k++) free(row[k]);
      return -1;
    }
  }
  t->rows++;
  return 0;
}

pd_ctl_table_t *pd_ctl_table_new(size_t ncols, const char *const *headers) {
  if (ncols == 0) return NULL;
  pd_ctl_table_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ncols = ncols;
  if (table_push(t, headers) < 0) {
    pd_ctl_table_free(t);
    return NULL;
  }
  return t;
}

int pd_ctl_table_add(pd_ctl_table_t *t, const char *const *cells) {
  return t ? table_push(t, cells) : -1;
}

size_t pd_ctl_table_rows(const pd_ctl_table_t *t) { return t && t->rows ? t->rows - 1 : 0; }

int pd_ctl_table_print(const pd_ctl_table_t *t, FILE *out) {
  if (!t) return -1;
  size_t *w = calloc(t->ncols, sizeof *w);
  if (!w) return -1;
  for (size_t r = 0; r < t->rows; r++)
    for (size_t c = 0; c < t->ncols; c++) {
      size_t cw = pd_ctl_width(t->cells[r * t->ncols + c]);
      if (cw > w[c]) w[c] = cw;
    }
  int total = 0;
  for (size_t r = 0; r < t->rows; r++) {
    for (size_t c = 0; c < t->ncols; c++) {
      const char *cell = t->cells[r * t->ncols + c];
      int n = fputs(cell, out) < 0 ? -1 : (int)strlen(cell);
      if (n < 0) {
        free(w);
        return -1;
      }
      total += n;
      if (c + 1 < t->ncols) {
        size_t pad = w[c] - pd_ctl_width(cell) + 2;
        for (size_t k = 0; k < pad; k++) fputc(' ', out);
        total += (int)pad;
      }
    }
    fputc('\n', out);
    total++;
  }
  free(w);
  return total;
}

void pd_ctl_table_free(pd_ctl_table_t *t) {
  if (!t) return;
  for (size_t i = 0; i < t->rows * t->ncols; i++) free(t->cells[i]);
  free(t->cells);
  free(t);
}
