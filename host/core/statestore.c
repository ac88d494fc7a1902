/* statestore — see statestore.h.
 *
 * bans.json (format "peerd-bans", version 1), one ban per line:
 *
 *   {"format":"peerd-bans","version":1,"saved_at":T,
 *   "bans":[
 *   {"subnet":"198.51.0.0/16","created":T,"until":0,"reason":"..."},
 *   {"subnet":"203.0.113.7","created":T,"until":T,"reason":"misbehaviour 1: addr_flood"}
 *   ]}
 *
 *   subnet: CIDR, or a bare IP for a single address; created, until: Unix
 *   seconds (until 0 = permanent); reason: text (may be absent or null).
 *   The same objects the book's "bans" held, so a book's bans move over
 *   unchanged.
 *
 * reputation.json (format "peerd-reputation", version 1), one record per
 * line, most recently touched first:
 *
 *   {"format":"peerd-reputation","version":1,"saved_at":T,
 *   "columns":["ip","reputation","misbehaviours","first_seen","last_event_at","latency_ms"],
 *   "records":[
 *   ["203.0.113.7",-30,1,1700000000,1700000100,-1],
 *   ["2001:db8::1",5.0999999999999996,0,1699990000,1700000050,42.5]
 *   ]}
 *
 *   Each record is an array of the values "columns" names, in that order:
 *   ip, a bare IP; reputation, a number in [-1e6, 1e6] written with 17
 *   significant digits (it reads back to the same double); misbehaviours,
 *   an integer >= 0; first_seen, last_event_at, Unix seconds (absolute, so
 *   a record ages correctly across downtime; 0 = none); latency_ms, a
 *   number, -1 = unknown. Readers map columns by name: unknown columns are
 *   ignored, latency_ms may be missing (unknown), the others are required
 *   (missing: PD_EFORMAT).
 *
 * Decoding: not JSON, truncated, duplicate keys, top level not an object,
 * "saved_at" or the list missing or of the wrong type => PD_ECORRUPT (with
 * jansson's line:column and text for a parse error); another "format" or
 * "version" => PD_EFORMAT; in both cases nothing is loaded. Then each item
 * is checked on its own: a bad one is skipped and counted with the first
 * reason kept, the rest load. Times must be integers in 0..2^40.
 *
 * The emitter is hand-written (one item per line, readable diffs); the one
 * free-text field, a ban's reason, is escaped by jansson. Every byte read is
 * parsed by jansson.
 */
#include "statestore.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bookstore.h"
#include "err.h"

/* Largest time accepted from a file (as bookstore.c). */
#define MAX_TIME ((int64_t)1 << 40)

/* ---- a growable text buffer ------------------------------------------- */

typedef struct out {
  char *p;
  size_t len, cap;
  bool oom;
} out_t;

static void put(out_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->oom = true;
      return;
    }
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap - b->len <= (size_t)n) {
      if (ncap > SIZE_MAX / 2) {
        b->oom = true;
        return;
      }
      ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) {
      b->oom = true;
      return;
    }
    b->p = np;
    b->cap = ncap;
  }
}

/* Free text, escaped by jansson. A UTF-8 sequence cut at the end (the ban
 * list truncates reasons by bytes) is dropped; other bytes that are not
 * valid UTF-8 become '?'. */
static void put_text(out_t *b, const char *s) {
  size_t n = strlen(s);
  json_t *js = json_stringn(s, n);
  for (size_t cut = 1; js == NULL && cut <= 3 && cut <= n; cut++) js = json_stringn(s, n - cut);
  if (js == NULL) {
    char clean[PD_BAN_REASON_MAX];
    size_t k = 0;
    for (; k < n && k < sizeof clean - 1; k++) clean[k] = (unsigned char)s[k] < 0x80 ? s[k] : '?';
    clean[k] = '\0';
    js = json_string(clean);
  }
  char *txt = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  json_decref(js);
  if (!txt) {
    b->oom = true;
    return;
  }
  put(b, "%s", txt);
  free(txt);
}

static int finish(out_t *b, char **out, size_t *len) {
  if (!b->oom && !b->p) put(b, "%s", ""); /* never NULL */
  if (b->oom) {
    free(b->p);
    return PD_ENOMEM;
  }
  *out = b->p;
  if (len) *len = b->len;
  return 0;
}

/* ---- decoding helpers ---------------------------------------------------- */

static int fail(char *err, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t cap, int code, const char *fmt, ...) {
  if (err && cap > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
  }
  return code;
}

static void note_skip(pd_statestore_report_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_skip(pd_statestore_report_t *r, const char *fmt, ...) {
  r->skipped++;
  if (r->first_skip[0] != '\0') return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->first_skip, sizeof r->first_skip, fmt, ap);
  va_end(ap);
}

static bool get_time(const json_t *v, int64_t *out) {
  if (!json_is_integer(v)) return false;
  json_int_t t = json_integer_value(v);
  if (t < 0 || t > MAX_TIME) return false;
  *out = (int64_t)t;
  return true;
}

/* Parse the document and check what every version-1 document has: an
 * object with our format, version 1, saved_at and the list `list`. Returns
 * the root (caller decrefs) and the list, or NULL with *rc and err set. */
static json_t *open_doc(const char *buf, size_t len, const char *format, const char *list,
                        const json_t **items, char *err, size_t cap, int *rc) {
  if (!buf || len == 0) {
    *rc = fail(err, cap, PD_ECORRUPT, "empty document");
    return NULL;
  }
  json_error_t je;
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    *rc = fail(err, cap, PD_ECORRUPT, "not valid JSON: line %d column %d: %s", je.line, je.column,
               je.text);
    return NULL;
  }
  const json_t *v;
  if (!json_is_object(root)) {
    *rc = fail(err, cap, PD_ECORRUPT, "top level is not an object");
  } else if (!json_is_string(v = json_object_get(root, "format"))) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"format\" missing or not a string");
  } else if (strcmp(json_string_value(v), format) != 0) {
    *rc = fail(err, cap, PD_EFORMAT, "format \"%.40s\" is not \"%s\"", json_string_value(v), format);
  } else if (!json_is_integer(v = json_object_get(root, "version"))) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"version\" missing or not an integer");
  } else if (json_integer_value(v) != PD_STATESTORE_VERSION) {
    *rc = fail(err, cap, PD_EFORMAT, "version %" JSON_INTEGER_FORMAT " is not supported (want %d)",
               json_integer_value(v), PD_STATESTORE_VERSION);
  } else if (!json_is_integer(json_object_get(root, "saved_at"))) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"saved_at\" missing or not an integer");
  } else if (!json_is_array(v = json_object_get(root, list))) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"%s\" missing or not an array", list);
  } else {
    *items = v;
    *rc = 0;
    return root;
  }
  json_decref(root);
  return NULL;
}

/* ---- bans ------------------------------------------------------------------ */

static bool ban_active(const pd_ban_t *b, int64_t now) { return b->until == 0 || now < b->until; }

typedef struct ban_rank {
  size_t idx;
  int64_t until;
} ban_rank_t;

/* Permanent first, then the latest end, then list order. */
static int cmp_rank(const void *pa, const void *pb) {
  const ban_rank_t *a = pa, *b = pb;
  if ((a->until == 0) != (b->until == 0)) return a->until == 0 ? -1 : 1;
  if (a->until != b->until) return a->until > b->until ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

int pd_statestore_encode_bans(const pd_banlist_t *bl, int64_t now, size_t max, char **out,
                              size_t *len, size_t *written) {
  if (!out) return PD_EINVAL;
  if (max == 0) max = PD_STATESTORE_MAX_BANS;
  size_t total = pd_banlist_count(bl), active = 0;
  for (size_t i = 0; i < total; i++) active += ban_active(pd_banlist_get(bl, i), now);
  /* Over the bound: mark the bans to keep. */
  bool *keep = NULL;
  if (active > max) {
    ban_rank_t *rank = malloc(active * sizeof *rank);
    keep = calloc(total, sizeof *keep);
    if (!rank || !keep) {
      free(rank);
      free(keep);
      return PD_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
      const pd_ban_t *b = pd_banlist_get(bl, i);
      if (ban_active(b, now)) rank[k++] = (ban_rank_t){i, b->until};
    }
    qsort(rank, active, sizeof *rank, cmp_rank);
    for (size_t i = 0; i < max; i++) keep[rank[i].idx] = true;
    free(rank);
  }
  out_t b = {0};
  put(&b, "{\"format\":\"%s\",\"version\":%d,\"saved_at\":%" PRId64 ",\n\"bans\":[",
      PD_STATESTORE_BANS_FORMAT, PD_STATESTORE_VERSION, now);
  size_t n = 0;
  for (size_t i = 0; i < total; i++) {
    const pd_ban_t *ban = pd_banlist_get(bl, i);
    if (!ban_active(ban, now) || (keep && !keep[i])) continue;
    char sub[PD_ADDR_STRLEN];
    if (pd_subnet_format(&ban->subnet, sub, sizeof sub) <= 0) continue;
    put(&b, "%s{\"subnet\":\"%s\",\"created\":%" PRId64 ",\"until\":%" PRId64 ",\"reason\":",
        n ? ",\n" : "\n", sub, ban->created, ban->until);
    put_text(&b, ban->reason);
    put(&b, "}");
    n++;
  }
  put(&b, n ? "\n]}\n" : "]}\n");
  free(keep);
  if (written) *written = n;
  return finish(&b, out, len);
}

int pd_statestore_decode_bans(const char *buf, size_t len, int64_t now, pd_banlist_t *bl,
                              pd_statestore_report_t *report, char *err, size_t cap) {
  pd_statestore_report_t dummy;
  pd_statestore_report_t *r = report ? report : &dummy;
  memset(r, 0, sizeof *r);
  if (err && cap) err[0] = '\0';
  if (!bl) return fail(err, cap, PD_EINVAL, "no ban list");
  const json_t *bans = NULL;
  int rc;
  json_t *root = open_doc(buf, len, PD_STATESTORE_BANS_FORMAT, "bans", &bans, err, cap, &rc);
  if (!root) return rc;
  size_t n = json_array_size(bans);
  for (size_t i = 0; i < n; i++) {
    pd_subnet_t s;
    int64_t created = 0, until = 0;
    const char *reason = "";
    const char *why = pd_bookstore_parse_ban(json_array_get(bans, i), &s, &created, &until, &reason);
    if (why) {
      note_skip(r, "ban %zu: %s", i, why);
      continue;
    }
    if (until != 0 && until <= now) {
      r->expired++;
      continue;
    }
    rc = pd_banlist_add(bl, &s, created, until, reason);
    if (rc == PD_ENOMEM) {
      json_decref(root);
      return fail(err, cap, rc, "out of memory at ban %zu", i);
    }
    if (rc < 0) {
      note_skip(r, "ban %zu: %s", i, pd_strerror(rc));
      continue;
    }
    r->loaded++;
  }
  json_decref(root);
  return 0;
}

/* ---- reputation ------------------------------------------------------------ */

enum { R_IP, R_REPUTATION, R_MISBEHAVIOURS, R_FIRST_SEEN, R_LAST_EVENT_AT, R_REQUIRED,
       R_LATENCY = R_REQUIRED, R_COUNT };

static const char *const rep_columns[R_COUNT] = {"ip", "reputation", "misbehaviours",
                                                 "first_seen", "last_event_at", "latency_ms"};

#define MAX_COLUMNS 64
#define CLASSES 4

/* What is kept first when the table is over the bound: 0 misbehaved,
 * 1 negative, 2 positive, 3 neutral. */
static int rep_class(const pd_rep_record_t *rec) {
  if (rec->misbehaviours > 0) return 0;
  if (rec->reputation < 0) return 1;
  if (rec->reputation > 0) return 2;
  return 3;
}

/* A double that reads back exactly (17 significant digits); an integral
 * value is written as an integer. */
static void put_number(out_t *b, double v) {
  if (!isfinite(v)) v = 0;
  if (v == floor(v) && fabs(v) < 1e15) put(b, "%.0f", v == 0 ? 0.0 : v);
  else put(b, "%.17g", v);
}

int pd_statestore_encode_reputation(const pd_reputation_t *r, int64_t now, size_t max,
                                    char **out, size_t *len, size_t *written) {
  if (!out) return PD_EINVAL;
  if (max == 0) max = PD_STATESTORE_MAX_RECORDS;
  size_t count[CLASSES] = {0}, quota[CLASSES], taken[CLASSES] = {0};
  const pd_rep_record_t *rec;
  for (rec = pd_reputation_next(r, NULL); rec; rec = pd_reputation_next(r, rec))
    count[rep_class(rec)]++;
  size_t room = max;
  for (int c = 0; c < CLASSES; c++) {
    quota[c] = count[c] < room ? count[c] : room;
    room -= quota[c];
  }
  out_t b = {0};
  put(&b, "{\"format\":\"%s\",\"version\":%d,\"saved_at\":%" PRId64 ",\n\"columns\":[",
      PD_STATESTORE_REPUTATION_FORMAT, PD_STATESTORE_VERSION, now);
  for (int c = 0; c < R_COUNT; c++) put(&b, "%s\"%s\"", c ? "," : "", rep_columns[c]);
  put(&b, "],\n\"records\":[");
  size_t n = 0;
  for (rec = pd_reputation_next(r, NULL); rec; rec = pd_reputation_next(r, rec)) {
    int c = rep_class(rec);
    if (taken[c] == quota[c]) continue;
    char ip[PD_ADDR_STRLEN];
    if (pd_netaddr_format_ip(&rec->ip, ip, sizeof ip) <= 0) continue;
    taken[c]++;
    put(&b, "%s[\"%s\",", n ? ",\n" : "\n", ip);
    put_number(&b, rec->reputation);
    put(&b, ",%d,%" PRId64 ",%" PRId64 ",", rec->misbehaviours, rec->first_seen, rec->last_event_at);
    put_number(&b, rec->latency_ms < 0 ? -1 : rec->latency_ms);
    put(&b, "]");
    n++;
  }
  put(&b, n ? "\n]}\n" : "]}\n");
  if (written) *written = n;
  return finish(&b, out, len);
}

/* One record row into rec; NULL or why it is refused. */
static const char *parse_record(const json_t *row, const int *col, size_t ncols,
                                pd_rep_record_t *rec) {
  if (!json_is_array(row)) return "not an array";
  if (json_array_size(row) != ncols) return "wrong number of values";
  memset(rec, 0, sizeof *rec);
  const json_t *v = json_array_get(row, (size_t)col[R_IP]);
  const char *why = NULL;
  if (!json_is_string(v)) return "ip is not a string";
  if (pd_netaddr_parse(json_string_value(v), PD_PARSE_PORT_OPTIONAL, &rec->ip, NULL, NULL, &why) != 0)
    return why ? why : "bad ip";
  if (rec->ip.port != 0) return "ip has a port";
  v = json_array_get(row, (size_t)col[R_REPUTATION]);
  if (!json_is_number(v)) return "reputation is not a number";
  rec->reputation = json_number_value(v);
  if (!isfinite(rec->reputation) || fabs(rec->reputation) > PD_REP_LIMIT)
    return "reputation is out of range";
  v = json_array_get(row, (size_t)col[R_MISBEHAVIOURS]);
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
    return "misbehaviours is not an integer in range";
  rec->misbehaviours = (int)json_integer_value(v);
  if (!get_time(json_array_get(row, (size_t)col[R_FIRST_SEEN]), &rec->first_seen))
    return "first_seen is not an integer in range";
  if (!get_time(json_array_get(row, (size_t)col[R_LAST_EVENT_AT]), &rec->last_event_at))
    return "last_event_at is not an integer in range";
  rec->latency_ms = -1;
  if (col[R_LATENCY] >= 0) {
    v = json_array_get(row, (size_t)col[R_LATENCY]);
    if (!json_is_number(v) || !isfinite(json_number_value(v))) return "latency_ms is not a number";
    rec->latency_ms = json_number_value(v) < 0 ? -1 : json_number_value(v);
  }
  return NULL;
}

int pd_statestore_decode_reputation(const char *buf, size_t len, pd_reputation_t *r,
                                    pd_statestore_report_t *report, char *err, size_t cap) {
  pd_statestore_report_t dummy;
  pd_statestore_report_t *rep = report ? report : &dummy;
  memset(rep, 0, sizeof *rep);
  if (err && cap) err[0] = '\0';
  if (!r) return fail(err, cap, PD_EINVAL, "no reputation table");
  const json_t *records = NULL;
  int rc;
  json_t *root =
      open_doc(buf, len, PD_STATESTORE_REPUTATION_FORMAT, "records", &records, err, cap, &rc);
  if (!root) return rc;
  const json_t *cols = json_object_get(root, "columns");
  int col[R_COUNT];
  size_t ncols = json_array_size(cols);
  rc = 0;
  if (!json_is_array(cols)) {
    rc = fail(err, cap, PD_ECORRUPT, "field \"columns\" missing or not an array");
  } else if (ncols > MAX_COLUMNS) {
    rc = fail(err, cap, PD_ECORRUPT, "more than %d columns", MAX_COLUMNS);
  }
  for (int c = 0; c < R_COUNT; c++) col[c] = -1;
  for (size_t i = 0; rc == 0 && i < ncols; i++) {
    const json_t *v = json_array_get(cols, i);
    if (!json_is_string(v)) {
      rc = fail(err, cap, PD_ECORRUPT, "columns[%zu] is not a string", i);
      break;
    }
    for (int c = 0; c < R_COUNT; c++) {
      if (col[c] < 0 && strcmp(json_string_value(v), rep_columns[c]) == 0) col[c] = (int)i;
    }
  }
  for (int c = 0; rc == 0 && c < R_REQUIRED; c++) {
    if (col[c] < 0) rc = fail(err, cap, PD_EFORMAT, "column \"%s\" missing", rep_columns[c]);
  }
  if (rc != 0) {
    json_decref(root);
    return rc;
  }
  /* Oldest first, so the first row ends up the most recently touched. */
  for (size_t i = json_array_size(records); i-- > 0;) {
    pd_rep_record_t rec;
    const char *why = parse_record(json_array_get(records, i), col, ncols, &rec);
    if (why) {
      note_skip(rep, "record %zu: %s", i, why);
      continue;
    }
    rc = pd_reputation_restore(r, &rec);
    if (rc < 0) {
      json_decref(root);
      return fail(err, cap, rc, "%s at record %zu", pd_strerror(rc), i);
    }
    rep->loaded++;
  }
  json_decref(root);
  return 0;
}
