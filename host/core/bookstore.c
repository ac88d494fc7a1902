/* bookstore — see bookstore.h.
 *
 * The document (format "peerd-addrbook", version 1) is one JSON object,
 * written with one entry per line so that a diff of two saves is readable:
 *
 *   {"format":"peerd-addrbook","version":1,"saved_at":T,"key":"<64 hex>","last_good":T,
 *   ["new_buckets":N,"tried_buckets":M,]
 *   "columns":["addr","id","source","time","last_try","last_success","last_count_attempt","attempts","tried","new_slots"],
 *   "entries":[
 *   "1.2.3.4:26656 - 5.6.7.8 1700000000 0 0 0 0 0 1234,5678",
 *   "[2001:db8::1]:26656 0123...(40 hex) 2001:db8::2 1700000000 1700000100 1700000100 0 0 1 -",
 *   ...
 *   ],
 *   "collisions":["1.2.3.4:26656"],
 *   "bans":[
 *   {"subnet":"10.0.0.0/8","created":T,"until":T,"reason":"..."}
 *   ]}
 *
 * - bans: the ban list. The daemon keeps its bans in their own file
 *   (bans.json, statestore.c) and writes books with PD_BOOKSTORE_NO_BANS
 *   ("bans":[], so the document stays version 1 for every reader); the
 *   decoder still loads the bans a book holds (books written before
 *   bans.json existed: the daemon then saves them to bans.json), and the
 *   lab, which has no files, keeps writing them here.
 * - new_buckets, tried_buckets: the book's geometry (addrbook.h). Written
 *   only when it is not the default 1024 / 256, so a default book encodes
 *   to exactly the bytes it did before geometries existed; a document
 *   without them (every file written before) has the default geometry. A
 *   field present must be an integer forming a valid geometry (else
 *   PD_ECORRUPT); one missing alone takes its default.
 * - entries: one JSON string per entry holding its values separated by
 *   single spaces, in the order "columns" names them: addr "ip:port" or
 *   "[ipv6]:port"; id, the node id as 40 lowercase hex characters or "-";
 *   source, a bare IP; time, last_try, last_success, last_count_attempt,
 *   Unix seconds (0 = never); attempts, the failure count; tried, 1 or 0;
 *   new_slots, the new-table slots (bucket * 64 + position, in the
 *   document's geometry) that refer to the entry, ascending and
 *   comma-separated, or "-" (always "-" for tried entries); service (only
 *   when some entry is one: the column is left out otherwise, so books
 *   without such entries keep their bytes), 1 for an address the node gave
 *   (a service endpoint peerd never dials), else 0. No value can contain a
 *   space.
 *   Why strings and not arrays: jansson allocates one node per JSON value,
 *   and with ~12 values per entry its parser alone took ~95 ms (+19 ms to
 *   free) for a full book; one string per entry parses in about half that,
 *   keeping save+load of 81,920 entries under the 150 ms target. The row
 *   is split on spaces and each value checked strictly; everything that is
 *   JSON is parsed by jansson.
 * - Entries are written in ascending id order, collisions in the order the
 *   book lists them, bans in the ban list's order, expired bans left out.
 *   Decoding restores them in file order, so ids stay in the same relative
 *   order and encode(decode(doc)) == doc byte for byte.
 * - The emitter is hand-written (building a jansson tree costs more than
 *   the rest of the save) and escapes the one free-text field, a ban's
 *   reason, with jansson.
 *
 * Decoding: not JSON, truncated, top-level fields missing or of the wrong
 * type => PD_ECORRUPT (with jansson's line:column and text when it is a
 * parse error); another "format" or "version" => PD_EFORMAT. Readers map
 * columns by name, so a later version may add columns. Then each entry,
 * collision and ban is checked on its own: a bad one is skipped, counted
 * and the first reason kept; the rest load. Entry checks: the row splits
 * into exactly as many values as there are columns; address parses and may
 * enter the book (routable, or private under PD_BOOK_ALLOW_PRIVATE); id "-"
 * or 40 hex; source an IP; times decimal digits in 0..2^40; attempts
 * decimal digits (values above 127 are clamped to 127: terrible either
 * way); tried 0 or 1; new_slots "-" or up to 8 numbers in 0..65535; then
 * pd_book_restore places it (a tried entry whose tried slot is taken, or a
 * duplicate address, is skipped).
 *
 * Salvage (pd_bookstore_salvage): for a document that will not parse as a
 * whole, the same layout read line by line: line 1 (closed with "}") gives
 * the key and geometry, the columns line the columns, and every other line
 * that parses on its own as a JSON string (trailing comma dropped) is an
 * entry row, checked and restored exactly as above; the collisions line and
 * whole ban lines load as usual; structural lines are skipped and any
 * other line is counted as lost. docs/persistence.md has the details.
 *
 * Decoding into another geometry (pd_bookstore_decode_ex with a geometry
 * that differs from the document's): the saved slots mean nothing in the
 * other tables, so every entry is re-placed by the placement rules, in file
 * order, as Bitcoin Core does when its bucket count changed: a tried entry
 * goes to its tried slot in the new geometry, or, when that slot is already
 * taken, back to new (counted in tried_demoted); a new entry (and a demoted
 * one) gets one reference, in the new-table slot for its own source, when
 * that slot is free. An entry that finds no free slot is dropped and
 * counted in entries_lost (only a smaller table loses entries in practice:
 * its slots are fewer than the entries). Extra new-table references are
 * not kept (only the first source is saved). Validation failures are
 * skipped and counted as usual. Deterministic: same document, geometry and
 * flags => same book.
 */
#include "bookstore.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Largest time accepted from a file (year ~36800): keeps every time
 * calculation in the book far from int64 overflow. */
#define MAX_TIME ((int64_t)1 << 40)
#define MAX_ATTEMPTS 127
#define MAX_COLUMNS 64
/* Longest row string accepted (a real row is under 250 bytes). */
#define ROW_MAX 512

enum {
  C_ADDR,
  C_ID,
  C_SOURCE,
  C_TIME,
  C_LAST_TRY,
  C_LAST_SUCCESS,
  C_LAST_COUNT_ATTEMPT,
  C_ATTEMPTS,
  C_TRIED,
  C_NEW_SLOTS,
  C_REQUIRED, /* the columns above must be there; the ones below may not */
  C_SERVICE = C_REQUIRED,
  C_COUNT
};

static const char *const column_names[C_COUNT] = {
    "addr",     "id",    "source", "time",     "last_try", "last_success", "last_count_attempt",
    "attempts", "tried", "new_slots", "service"};

/* ---- encoding -------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len;
  size_t cap;
  bool oom;
} sbuf_t;

static bool sb_reserve(sbuf_t *s, size_t more) {
  if (s->oom) return false;
  if (s->cap - s->len > more) return true; /* keep room for the NUL */
  size_t ncap = s->cap ? s->cap : 4096;
  while (ncap - s->len <= more) {
    if (ncap > SIZE_MAX / 2) {
      s->oom = true;
      return false;
    }
    ncap *= 2;
  }
  char *np = realloc(s->p, ncap);
  if (np == NULL) {
    s->oom = true;
    return false;
  }
  s->p = np;
  s->cap = ncap;
  return true;
}

static void sb_put(sbuf_t *s, const char *str, size_t n) {
  if (!sb_reserve(s, n)) return;
  memcpy(s->p + s->len, str, n);
  s->len += n;
}

static void sb_puts(sbuf_t *s, const char *str) { sb_put(s, str, strlen(str)); }

static void sb_putc(sbuf_t *s, char c) {
  if (!sb_reserve(s, 1)) return;
  s->p[s->len++] = c;
}

static void sb_int(sbuf_t *s, int64_t v) {
  char tmp[24];
  size_t n = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (!sb_reserve(s, n + 1)) return;
  if (v < 0) s->p[s->len++] = '-';
  while (n > 0) s->p[s->len++] = tmp[--n];
}

/* A string known to need no escaping (addresses, hex). */
static void sb_plain_str(sbuf_t *s, const char *str, size_t n) {
  if (!sb_reserve(s, n + 2)) return;
  s->p[s->len++] = '"';
  memcpy(s->p + s->len, str, n);
  s->len += n;
  s->p[s->len++] = '"';
}

/* Free text: escaped by jansson. A UTF-8 sequence cut at the end (the ban
 * list truncates reasons by bytes) is dropped; other bytes that are not
 * valid UTF-8 become '?'. */
static void sb_text(sbuf_t *s, const char *str) {
  size_t n = strlen(str);
  json_t *js = json_stringn(str, n);
  for (size_t cut = 1; js == NULL && cut <= 3 && cut <= n; cut++)
    js = json_stringn(str, n - cut);
  if (js == NULL) {
    char clean[PD_BAN_REASON_MAX];
    size_t k = 0;
    for (; k < n && k < sizeof clean - 1; k++)
      clean[k] = (unsigned char)str[k] < 0x80 ? str[k] : '?';
    clean[k] = '\0';
    js = json_string(clean);
  }
  char *txt = js ? json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  json_decref(js);
  if (txt == NULL) {
    s->oom = true;
    return;
  }
  sb_puts(s, txt);
  free(txt);
}

static void hex_encode(const uint8_t *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* The address text (netaddr's formatters have the IPv4 fast path). */
static size_t format_addr(const pd_netaddr_t *a, bool with_port, char *buf, size_t cap) {
  int n = with_port ? pd_netaddr_format(a, buf, cap) : pd_netaddr_format_ip(a, buf, cap);
  return n > 0 ? (size_t)n : 0;
}

/* Every entry's new-table slots, found in one pass (pd_book_new_refs_all). */
typedef struct refs {
  uint8_t *count;
  uint16_t (*slots)[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
} refs_t;

/* One entry as one row string; see the format comment at the top. */
static void encode_entry(sbuf_t *s, const refs_t *r, const pd_book_info_t *e, bool svc_col) {
  char buf[PD_ADDR_STRLEN];
  if (!sb_reserve(s, 3 * PD_ADDR_STRLEN + 160)) return;
  sb_putc(s, '"');
  size_t n = format_addr(&e->addr, true, buf, sizeof buf);
  sb_put(s, buf, n);
  sb_putc(s, ' ');
  if (e->has_node_id) {
    char hex[PD_NODE_ID_HEXLEN + 1];
    hex_encode(e->node_id, PD_NODE_ID_LEN, hex);
    sb_put(s, hex, PD_NODE_ID_HEXLEN);
  } else {
    sb_putc(s, '-');
  }
  sb_putc(s, ' ');
  n = format_addr(&e->source, false, buf, sizeof buf);
  sb_put(s, buf, n);
  sb_putc(s, ' ');
  sb_int(s, e->time);
  sb_putc(s, ' ');
  sb_int(s, e->last_try);
  sb_putc(s, ' ');
  sb_int(s, e->last_success);
  sb_putc(s, ' ');
  sb_int(s, e->last_count_attempt);
  sb_putc(s, ' ');
  sb_int(s, e->attempts);
  if (e->in_tried) {
    sb_put(s, " 1 -", 4);
  } else {
    sb_put(s, " 0 ", 3);
    int k = r->count[e->id];
    const uint16_t *slots = r->slots[e->id]; /* ascending: the table was walked in order */
    if (k == 0) sb_putc(s, '-');
    for (int i = 0; i < k; i++) {
      if (i) sb_putc(s, ',');
      sb_int(s, slots[i]);
    }
  }
  if (svc_col) sb_put(s, e->service_only ? " 1" : " 0", 2);
  sb_putc(s, '"');
}

static bool is_default_geometry(const pd_book_geometry_t *g) {
  pd_book_geometry_t d;
  pd_book_geometry_default(&d);
  return g->new_buckets == d.new_buckets && g->tried_buckets == d.tried_buckets;
}

int pd_bookstore_encode(const pd_book_t *b, int64_t now, char **out, size_t *len) {
  return pd_bookstore_encode_ex(b, now, 0, out, len);
}

int pd_bookstore_encode_ex(const pd_book_t *b, int64_t now, unsigned flags, char **out,
                           size_t *len) {
  size_t total = pd_book_size(b);
  uint32_t *ids = NULL;
  if (total > 0) {
    ids = malloc(total * sizeof *ids);
    if (ids == NULL) return PD_ENOMEM;
    size_t all = 0;
    total = pd_book_list(b, PD_TABLE_ANY, 0, total, ids, &all);
  }
  uint32_t bound = pd_book_id_bound(b);
  refs_t refs = {malloc(bound ? bound : 1), malloc((bound ? bound : 1) * sizeof *refs.slots)};
  if (!refs.count || !refs.slots) {
    free(refs.count);
    free(refs.slots);
    free(ids);
    return PD_ENOMEM;
  }
  pd_book_new_refs_all(b, refs.count, refs.slots);
  sbuf_t s = {0};
  sb_reserve(&s, 1024 + total * 112);

  char keyhex[2 * PD_BOOK_KEY_LEN + 1];
  hex_encode(pd_book_key(b), PD_BOOK_KEY_LEN, keyhex);
  sb_puts(&s, "{\"format\":\"" PD_BOOKSTORE_FORMAT "\",\"version\":");
  sb_int(&s, PD_BOOKSTORE_VERSION);
  sb_puts(&s, ",\"saved_at\":");
  sb_int(&s, now);
  sb_puts(&s, ",\"key\":\"");
  sb_puts(&s, keyhex);
  sb_puts(&s, "\",\"last_good\":");
  sb_int(&s, pd_book_last_good(b));
  pd_book_geometry_t geo;
  pd_book_geometry(b, &geo);
  if (!is_default_geometry(&geo)) {
    sb_puts(&s, ",\"new_buckets\":");
    sb_int(&s, geo.new_buckets);
    sb_puts(&s, ",\"tried_buckets\":");
    sb_int(&s, geo.tried_buckets);
  }
  /* "service" (an address the node gave, never dialled by peerd) is written
   * only when some entry is one, so other books keep their bytes. */
  bool svc_col = false;
  for (size_t i = 0; i < total && !svc_col; i++) {
    pd_book_info_t e;
    svc_col = pd_book_info(b, ids[i], &e) == 0 && e.service_only;
  }
  sb_puts(&s, ",\n\"columns\":[");
  for (int c = 0; c < (svc_col ? C_COUNT : C_REQUIRED); c++) {
    if (c) sb_putc(&s, ',');
    sb_plain_str(&s, column_names[c], strlen(column_names[c]));
  }
  sb_puts(&s, "],\n\"entries\":[");
  bool first = true;
  for (size_t i = 0; i < total; i++) {
    pd_book_info_t e;
    if (pd_book_info(b, ids[i], &e) != 0) continue;
    sb_puts(&s, first ? "\n" : ",\n");
    first = false;
    encode_entry(&s, &refs, &e, svc_col);
  }
  sb_puts(&s, "\n],\n\"collisions\":[");

  size_t ncoll = pd_book_collision_count(b);
  if (ncoll > 0) {
    uint32_t *cids = malloc(ncoll * sizeof *cids);
    if (cids == NULL) {
      s.oom = true;
    } else {
      ncoll = pd_book_collisions(b, cids, ncoll);
      first = true;
      for (size_t i = 0; i < ncoll; i++) {
        pd_book_info_t e;
        char buf[PD_ADDR_STRLEN];
        if (pd_book_info(b, cids[i], &e) != 0) continue;
        int n = pd_netaddr_format(&e.addr, buf, sizeof buf);
        if (n <= 0) continue;
        if (!first) sb_putc(&s, ',');
        first = false;
        sb_plain_str(&s, buf, (size_t)n);
      }
      free(cids);
    }
  }
  sb_puts(&s, "],\n\"bans\":[");

  const pd_banlist_t *bl = (flags & PD_BOOKSTORE_NO_BANS) ? NULL : pd_book_bans_const(b);
  first = true;
  for (size_t i = 0; bl != NULL; i++) {
    const pd_ban_t *ban = pd_banlist_get(bl, i);
    if (ban == NULL) break;
    if (ban->until != 0 && ban->until <= now) continue; /* expired */
    char sub[PD_ADDR_STRLEN];
    int n = pd_subnet_format(&ban->subnet, sub, sizeof sub);
    if (n <= 0) continue;
    sb_puts(&s, first ? "\n" : ",\n");
    first = false;
    sb_puts(&s, "{\"subnet\":");
    sb_plain_str(&s, sub, (size_t)n);
    sb_puts(&s, ",\"created\":");
    sb_int(&s, ban->created);
    sb_puts(&s, ",\"until\":");
    sb_int(&s, ban->until);
    sb_puts(&s, ",\"reason\":");
    sb_text(&s, ban->reason);
    sb_putc(&s, '}');
  }
  sb_puts(&s, first ? "]}\n" : "\n]}\n");
  free(ids);
  free(refs.count);
  free(refs.slots);

  if (s.oom || !sb_reserve(&s, 1)) {
    free(s.p);
    return PD_ENOMEM;
  }
  s.p[s.len] = '\0';
  *out = s.p;
  if (len != NULL) *len = s.len;
  return 0;
}

/* ---- decoding -------------------------------------------------------- */

static int fail(char *err, size_t cap, int code, const char *fmt, ...) {
  if (err != NULL && cap > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
  }
  return code;
}

static void note_skip(pd_bookstore_report_t *r, const char *fmt, ...) {
  if (r->first_skip[0] != '\0') return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->first_skip, sizeof r->first_skip, fmt, ap);
  va_end(ap);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool hex_decode(const char *s, size_t slen, uint8_t *out, size_t n) {
  if (slen != 2 * n) return false;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

static bool get_time(const json_t *v, int64_t *out) {
  if (!json_is_integer(v)) return false;
  json_int_t t = json_integer_value(v);
  if (t < 0 || t > MAX_TIME) return false;
  *out = (int64_t)t;
  return true;
}

/* A decimal number of digits only (no sign, no spaces), at most max. */
static bool parse_uint(const char *t, int64_t max, int64_t *out) {
  int64_t v = 0;
  if (*t == '\0') return false;
  for (; *t; t++) {
    if (*t < '0' || *t > '9') return false;
    v = v * 10 + (*t - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

/* Split a row string into its values: `line` (ROW_MAX bytes) receives a
 * copy with the separating spaces replaced by NULs. Returns the number of
 * values, or 0 when the row is malformed (*why set). */
static size_t split_row(const json_t *row, char *line, const char **tok, const char **why) {
  if (!json_is_string(row)) {
    *why = "not a string";
    return 0;
  }
  size_t n = json_string_length(row);
  if (n >= ROW_MAX) {
    *why = "row too long";
    return 0;
  }
  memcpy(line, json_string_value(row), n);
  line[n] = '\0';
  size_t nt = 0;
  char *p = line;
  for (;;) {
    if (nt == MAX_COLUMNS) {
      *why = "too many values";
      return 0;
    }
    tok[nt++] = p;
    char *sp = memchr(p, ' ', (size_t)(line + n - p));
    if (sp == NULL) break;
    *sp = '\0';
    p = sp + 1;
  }
  for (size_t i = 0; i < nt; i++) {
    if (tok[i][0] == '\0') {
      *why = "empty value (stray space)";
      return 0;
    }
  }
  return nt;
}

/* Reasons are static strings; the caller adds entry number and address. */
static const char *parse_entry(const char *const *tok, const int *col, pd_book_info_t *e,
                               uint16_t *slots, size_t *nslots) {
  memset(e, 0, sizeof *e);
  const char *why = NULL;
  const char *t = tok[col[C_ADDR]];
  /* Acceptability (routable / private) is pd_book_restore's check. */
  if (pd_netaddr_parse(t, PD_PARSE_PORT_OPTIONAL, &e->addr, NULL, NULL, &why) != 0)
    return why ? why : "bad address";

  t = tok[col[C_ID]];
  if (strcmp(t, "-") != 0) {
    if (!hex_decode(t, strlen(t), e->node_id, PD_NODE_ID_LEN))
      return "id is neither 40 hex characters nor -";
    e->has_node_id = true;
  }

  if (pd_netaddr_parse_ip(tok[col[C_SOURCE]], &e->source, &why) != 0)
    return why ? why : "bad source address";

  if (!parse_uint(tok[col[C_TIME]], MAX_TIME, &e->time)) return "time is not a number in range";
  if (!parse_uint(tok[col[C_LAST_TRY]], MAX_TIME, &e->last_try))
    return "last_try is not a number in range";
  if (!parse_uint(tok[col[C_LAST_SUCCESS]], MAX_TIME, &e->last_success))
    return "last_success is not a number in range";
  if (!parse_uint(tok[col[C_LAST_COUNT_ATTEMPT]], MAX_TIME, &e->last_count_attempt))
    return "last_count_attempt is not a number in range";
  int64_t att = 0;
  if (!parse_uint(tok[col[C_ATTEMPTS]], INT64_MAX / 16, &att))
    return "attempts is not a number >= 0";
  e->attempts = att > MAX_ATTEMPTS ? MAX_ATTEMPTS : (int)att;

  t = tok[col[C_TRIED]];
  if (strcmp(t, "0") != 0 && strcmp(t, "1") != 0) return "tried is neither 0 nor 1";
  e->in_tried = t[0] == '1';

  t = tok[col[C_NEW_SLOTS]];
  size_t k = 0;
  if (strcmp(t, "-") != 0) {
    for (;;) {
      char num[8];
      const char *comma = strchr(t, ',');
      size_t len = comma ? (size_t)(comma - t) : strlen(t);
      if (len == 0 || len >= sizeof num) return "new_slots is not a list of numbers";
      memcpy(num, t, len);
      num[len] = '\0';
      int64_t v = 0;
      if (!parse_uint(num, PD_BOOK_NEW_BUCKETS * PD_BOOK_BUCKET_SIZE - 1, &v))
        return "new slot is not a number in range";
      if (k == PD_BOOK_NEW_BUCKETS_PER_ADDRESS) return "more than 8 new_slots";
      slots[k++] = (uint16_t)v;
      if (comma == NULL) break;
      t = comma + 1;
    }
  }
  *nslots = e->in_tried ? 0 : k;
  e->refcount = (int)*nslots;
  if (col[C_SERVICE] >= 0) {
    t = tok[col[C_SERVICE]];
    if (strcmp(t, "0") != 0 && strcmp(t, "1") != 0) return "service is neither 0 nor 1";
    e->service_only = t[0] == '1';
  }
  e->id = PD_BOOK_NO_ID;
  return NULL;
}

/* Map our columns onto the document's. 0, or an error code with err set. */
static int map_columns(const json_t *cols, int *col, size_t *ncols, char *err, size_t cap) {
  size_t n = json_array_size(cols);
  if (n > MAX_COLUMNS) return fail(err, cap, PD_ECORRUPT, "more than %d columns", MAX_COLUMNS);
  for (int c = 0; c < C_COUNT; c++) col[c] = -1;
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(cols, i);
    if (!json_is_string(v))
      return fail(err, cap, PD_ECORRUPT, "columns[%zu] is not a string", i);
    for (int c = 0; c < C_COUNT; c++) {
      if (col[c] < 0 && strcmp(json_string_value(v), column_names[c]) == 0) col[c] = (int)i;
    }
  }
  for (int c = 0; c < C_REQUIRED; c++) {
    if (col[c] < 0) return fail(err, cap, PD_EFORMAT, "column \"%s\" missing", column_names[c]);
  }
  *ncols = n;
  return 0;
}

/* Re-placement (replace == true, see the top): one entry into the book by
 * the placement rules. 0 when placed, PD_EFULL when no slot was free (lost),
 * else restore's error. */
static int replace_entry(pd_book_t *b, pd_book_info_t *e, pd_bookstore_report_t *r,
                         const char **why) {
  uint32_t id = PD_BOOK_NO_ID;
  int rc = pd_book_restore(b, e, NULL, 0, &id, why);
  if (rc == PD_EFULL && e->in_tried) {
    e->in_tried = false;
    e->refcount = 0;
    rc = pd_book_restore(b, e, NULL, 0, &id, why);
    if (rc == 0) r->tried_demoted++;
  }
  if (rc == 0) r->entries_replaced++;
  return rc;
}

/* One entry row (entry number i, for the reason) into the book: loaded,
 * lost (re-placement without a free slot) or skipped and counted; *fatal
 * set on PD_ENOMEM. */
static void load_row(pd_book_t *b, const json_t *row, size_t i, const int *col, size_t ncols,
                     bool replace, pd_bookstore_report_t *r, int *fatal) {
  char line[ROW_MAX];
  const char *tok[MAX_COLUMNS];
  const char *why = NULL;
  size_t nt = split_row(row, line, tok, &why);
  if (nt != 0 && nt != ncols) why = "wrong number of values";
  if (why == NULL) {
    pd_book_info_t e;
    uint16_t slots[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
    size_t nslots = 0;
    why = parse_entry(tok, col, &e, slots, &nslots);
    if (why == NULL) {
      uint32_t id = PD_BOOK_NO_ID;
      int rc = replace ? replace_entry(b, &e, r, &why)
                       : pd_book_restore(b, &e, slots, nslots, &id, &why);
      if (rc == 0) {
        r->entries_loaded++;
        return;
      }
      if (replace && rc == PD_EFULL) {
        r->entries_lost++;
        return;
      }
      if (rc == PD_ENOMEM) {
        *fatal = rc;
        return;
      }
      if (why == NULL) why = pd_strerror(rc);
    }
  }
  r->entries_skipped++;
  if (nt > (size_t)col[C_ADDR])
    note_skip(r, "entry %zu (%.60s): %s", i, tok[col[C_ADDR]], why);
  else
    note_skip(r, "entry %zu: %s", i, why);
}

static void load_entries(pd_book_t *b, const json_t *entries, const int *col, size_t ncols,
                         bool replace, pd_bookstore_report_t *r, int *fatal) {
  size_t n = json_array_size(entries);
  for (size_t i = 0; i < n && *fatal == 0; i++)
    load_row(b, json_array_get(entries, i), i, col, ncols, replace, r, fatal);
}

static void load_collisions(pd_book_t *b, const json_t *coll, pd_bookstore_report_t *r) {
  size_t n = json_array_size(coll);
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(coll, i);
    const char *why = NULL;
    pd_netaddr_t a;
    int rc;
    if (!json_is_string(v)) {
      why = "not a string";
    } else if (pd_netaddr_parse(json_string_value(v), PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL,
                                &why) != 0) {
      if (why == NULL) why = "bad address";
    } else {
      uint32_t id = pd_book_find(b, &a);
      if (id == PD_BOOK_NO_ID) {
        why = "address not in the book";
      } else if ((rc = pd_book_restore_collision(b, id)) != 0) {
        why = pd_strerror(rc);
      }
    }
    if (why == NULL) {
      r->collisions_loaded++;
      continue;
    }
    r->collisions_skipped++;
    note_skip(r, "collision %zu: %s", i, why);
  }
}

const char *pd_bookstore_parse_ban(const struct json_t *o, pd_subnet_t *s, int64_t *created,
                                   int64_t *until, const char **reason) {
  if (!json_is_object(o)) return "not an object";
  const json_t *v = json_object_get(o, "subnet");
  const char *why = NULL;
  if (!json_is_string(v)) return "subnet is not a string";
  if (pd_subnet_parse(json_string_value(v), s, &why) != 0) return why ? why : "bad subnet";
  if (!get_time(json_object_get(o, "created"), created)) return "created is not an integer in range";
  if (!get_time(json_object_get(o, "until"), until)) return "until is not an integer in range";
  v = json_object_get(o, "reason");
  if (v == NULL || json_is_null(v)) {
    *reason = "";
  } else if (json_is_string(v)) {
    *reason = json_string_value(v);
  } else {
    return "reason is not a string";
  }
  return NULL;
}

static void load_bans(pd_book_t *b, const json_t *bans, pd_bookstore_report_t *r, int *fatal) {
  size_t n = json_array_size(bans);
  pd_banlist_t *bl = pd_book_bans(b);
  for (size_t i = 0; i < n; i++) {
    pd_subnet_t s;
    int64_t created = 0, until = 0;
    const char *reason = "";
    const char *why = pd_bookstore_parse_ban(json_array_get(bans, i), &s, &created, &until, &reason);
    if (why == NULL) {
      int rc = pd_banlist_add(bl, &s, created, until, reason);
      if (rc == 0) {
        r->bans_loaded++;
        continue;
      }
      if (rc == PD_ENOMEM) {
        *fatal = rc;
        return;
      }
      why = rc == 1 ? "same subnet as an earlier ban (this one kept)" : pd_strerror(rc);
    }
    r->bans_skipped++;
    note_skip(r, "ban %zu: %s", i, why);
  }
}

static const json_t *need(const json_t *root, const char *name, json_type t, char *err, size_t cap,
                          int *rc) {
  const json_t *v = json_object_get(root, name);
  if (v == NULL) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"%s\" missing", name);
    return NULL;
  }
  if (json_typeof(v) != t) {
    *rc = fail(err, cap, PD_ECORRUPT, "field \"%s\" has the wrong type", name);
    return NULL;
  }
  return v;
}

/* The optional geometry fields (see the top): 0 or PD_ECORRUPT. */
static int read_geometry(const json_t *root, pd_book_geometry_t *g, char *err, size_t cap) {
  pd_book_geometry_default(g);
  static const char *const names[2] = {"new_buckets", "tried_buckets"};
  uint32_t *vals[2] = {&g->new_buckets, &g->tried_buckets};
  for (int i = 0; i < 2; i++) {
    const json_t *v = json_object_get(root, names[i]);
    if (v == NULL) continue;
    if (!json_is_integer(v))
      return fail(err, cap, PD_ECORRUPT, "field \"%s\" has the wrong type", names[i]);
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > PD_BOOK_NEW_BUCKETS)
      return fail(err, cap, PD_ECORRUPT, "%s %" JSON_INTEGER_FORMAT " is out of range", names[i],
                  n);
    *vals[i] = (uint32_t)n;
  }
  if (pd_book_geometry_check(g) != 0)
    return fail(err, cap, PD_ECORRUPT,
                "geometry new_buckets %u / tried_buckets %u is invalid (powers of two, "
                "new 16..1024, tried 4..256)",
                (unsigned)g->new_buckets, (unsigned)g->tried_buckets);
  return 0;
}

/* The top-level fields before the columns: format, version, saved_at, key,
 * last_good. 0, or PD_ECORRUPT / PD_EFORMAT with err set. */
static int read_header(const json_t *root, uint8_t *key, int64_t *last_good, char *err,
                       size_t cap) {
  int rc = 0;
  const json_t *v;
  if (!json_is_object(root)) return fail(err, cap, PD_ECORRUPT, "top level is not an object");
  if ((v = need(root, "format", JSON_STRING, err, cap, &rc)) == NULL) return rc;
  if (strcmp(json_string_value(v), PD_BOOKSTORE_FORMAT) != 0)
    return fail(err, cap, PD_EFORMAT, "format \"%.40s\" is not \"%s\"", json_string_value(v),
                PD_BOOKSTORE_FORMAT);
  if ((v = need(root, "version", JSON_INTEGER, err, cap, &rc)) == NULL) return rc;
  if (json_integer_value(v) != PD_BOOKSTORE_VERSION)
    return fail(err, cap, PD_EFORMAT,
                "version %" JSON_INTEGER_FORMAT " is not supported (want %d)",
                json_integer_value(v), PD_BOOKSTORE_VERSION);
  if (need(root, "saved_at", JSON_INTEGER, err, cap, &rc) == NULL) return rc;
  const json_t *jkey = need(root, "key", JSON_STRING, err, cap, &rc);
  if (jkey == NULL) return rc;
  if (!hex_decode(json_string_value(jkey), json_string_length(jkey), key, PD_BOOK_KEY_LEN))
    return fail(err, cap, PD_ECORRUPT, "key is not %d hex characters", 2 * PD_BOOK_KEY_LEN);
  const json_t *jlast = need(root, "last_good", JSON_INTEGER, err, cap, &rc);
  if (jlast == NULL) return rc;
  if (!get_time(jlast, last_good)) return fail(err, cap, PD_ECORRUPT, "last_good is out of range");
  return 0;
}

int pd_bookstore_decode(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                        pd_book_t **out, pd_bookstore_report_t *report, char *err, size_t cap) {
  return pd_bookstore_decode_ex(buf, len, rng, flags, NULL, out, report, err, cap);
}

int pd_bookstore_decode_ex(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                           const pd_book_geometry_t *geometry, pd_book_t **out,
                           pd_bookstore_report_t *report, char *err, size_t cap) {
  pd_bookstore_report_t dummy;
  pd_bookstore_report_t *r = report ? report : &dummy;
  memset(r, 0, sizeof *r);
  pd_book_geometry_default(&r->file_geometry);
  if (err != NULL && cap > 0) err[0] = '\0';
  if (geometry != NULL && pd_book_geometry_check(geometry) != 0)
    return fail(err, cap, PD_EINVAL, "invalid geometry %u/%u", (unsigned)geometry->new_buckets,
                (unsigned)geometry->tried_buckets);
  if (buf == NULL || len == 0) return fail(err, cap, PD_ECORRUPT, "empty document");

  json_error_t je;
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL)
    return fail(err, cap, PD_ECORRUPT, "not valid JSON: line %d column %d: %s", je.line,
                je.column, je.text);

  int rc = 0;
  pd_book_t *b = NULL;
  uint8_t key[PD_BOOK_KEY_LEN];
  int64_t last_good = 0;
  if ((rc = read_header(root, key, &last_good, err, cap)) != 0) goto done;
  const json_t *cols = need(root, "columns", JSON_ARRAY, err, cap, &rc);
  if (cols == NULL) goto done;
  const json_t *entries = need(root, "entries", JSON_ARRAY, err, cap, &rc);
  if (entries == NULL) goto done;
  const json_t *coll = need(root, "collisions", JSON_ARRAY, err, cap, &rc);
  if (coll == NULL) goto done;
  const json_t *bans = need(root, "bans", JSON_ARRAY, err, cap, &rc);
  if (bans == NULL) goto done;
  int col[C_COUNT];
  size_t ncols = 0;
  if ((rc = map_columns(cols, col, &ncols, err, cap)) != 0) goto done;
  pd_book_geometry_t fgeo, bgeo;
  if ((rc = read_geometry(root, &fgeo, err, cap)) != 0) goto done;
  r->file_geometry = fgeo;
  bgeo = geometry != NULL ? *geometry : fgeo;
  bool replace = bgeo.new_buckets != fgeo.new_buckets || bgeo.tried_buckets != fgeo.tried_buckets;

  rc = pd_book_create_ex(&b, key, rng, flags, &bgeo);
  if (rc != 0) {
    b = NULL;
    rc = fail(err, cap, rc, "cannot create the book: %s", pd_strerror(rc));
    goto done;
  }
  pd_book_set_last_good(b, last_good);
  int fatal = 0;
  load_entries(b, entries, col, ncols, replace, r, &fatal);
  if (fatal == 0) load_collisions(b, coll, r);
  if (fatal == 0) load_bans(b, bans, r, &fatal);
  if (fatal != 0) {
    rc = fail(err, cap, fatal, "%s while loading", pd_strerror(fatal));
    goto done;
  }
  r->entries_loaded = pd_book_size(b);
  *out = b;
  b = NULL;

done:
  if (b != NULL) pd_book_destroy(b);
  json_decref(root);
  return rc;
}

/* ---- salvage --------------------------------------------------------- */

static bool line_is(const char *p, size_t n, const char *s) {
  return strlen(s) == n && memcmp(p, s, n) == 0;
}

static bool line_starts(const char *p, size_t n, const char *s) {
  size_t sl = strlen(s);
  return n >= sl && memcmp(p, s, sl) == 0;
}

/* One line of the document as a JSON text of its own: without its trailing
 * comma, wrapped in {} when wrap (a `"name":value` member). NULL when it
 * does not parse (*oom when memory ran out). */
static json_t *parse_line(const char *p, size_t n, bool wrap, bool *oom) {
  if (n > 0 && p[n - 1] == ',') n--;
  if (!wrap) return json_loadb(p, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
  char *t = malloc(n + 2);
  if (t == NULL) {
    *oom = true;
    return NULL;
  }
  t[0] = '{';
  memcpy(t + 1, p, n);
  t[n + 1] = '}';
  json_t *v = json_loadb(t, n + 2, JSON_REJECT_DUPLICATES, NULL);
  free(t);
  return v;
}

/* The lines between the rows, and the names of the lines that hold data:
 * the last line of a cut document that is the start of one of these is no
 * lost entry. */
static const char *const structure[] = {"\"entries\":[", "],",           "\"bans\":[",
                                        "\"bans\":[]}",  "]}",           "\"columns\":",
                                        "\"collisions\":"};

static bool cut_structure(const char *p, size_t n) {
  for (size_t i = 0; i < sizeof structure / sizeof *structure; i++) {
    if (n < strlen(structure[i]) && memcmp(p, structure[i], n) == 0) return true;
  }
  return false;
}

/* A line that gave nothing (line numbers from 1). */
static void lost_line(pd_bookstore_report_t *r, size_t lineno, const char *why) {
  r->entries_skipped++;
  note_skip(r, "line %zu: %s", lineno, why);
}

int pd_bookstore_salvage(const char *buf, size_t len, pd_rng_t *rng, unsigned flags,
                         pd_book_t **out, pd_bookstore_report_t *report, char *err, size_t cap) {
  pd_bookstore_report_t dummy;
  pd_bookstore_report_t *r = report ? report : &dummy;
  memset(r, 0, sizeof *r);
  pd_book_geometry_default(&r->file_geometry);
  if (err != NULL && cap > 0) err[0] = '\0';
  if (buf == NULL || len == 0) return fail(err, cap, PD_ECORRUPT, "empty document");

  /* Line 1: format, version, saved_at, key, last_good [, geometry]. */
  const char *end = buf + len;
  const char *nl = memchr(buf, '\n', len);
  bool oom = false;
  /* complete only with its newline: a cut "last_good":17 would parse */
  json_t *hdr = nl && buf[0] == '{' ? parse_line(buf + 1, (size_t)(nl - buf) - 1, true, &oom)
                                     : NULL;
  if (hdr == NULL)
    return fail(err, cap, oom ? PD_ENOMEM : PD_ECORRUPT,
                "first line (format, key) unreadable: nothing can be salvaged");
  uint8_t key[PD_BOOK_KEY_LEN];
  int64_t last_good = 0;
  pd_book_geometry_t geo;
  int rc = read_header(hdr, key, &last_good, err, cap);
  if (rc == 0) rc = read_geometry(hdr, &geo, err, cap);
  json_decref(hdr);
  if (rc != 0) return rc;
  r->file_geometry = geo;
  pd_book_t *b = NULL;
  rc = pd_book_create_ex(&b, key, rng, flags, &geo);
  if (rc != 0) return fail(err, cap, rc, "cannot create the book: %s", pd_strerror(rc));
  pd_book_set_last_good(b, last_good);

  json_t *bans = json_array();
  json_t *coll = NULL;
  int col[C_COUNT];
  size_t ncols = 0, row = 0, lineno = 1;
  bool have_cols = false;
  int fatal = bans == NULL ? PD_ENOMEM : 0;
  for (const char *p = nl ? nl + 1 : end; p < end && fatal == 0;) {
    nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    const char *line = p;
    p = nl ? nl + 1 : end;
    lineno++;
    if (n == 0 || line_is(line, n, "\"entries\":[") || line_is(line, n, "],") ||
        line_is(line, n, "\"bans\":[") || line_is(line, n, "\"bans\":[]}"))
      continue;
    if (line_is(line, n, "]}")) {
      r->salvage_end_found = true;
      continue;
    }
    if (nl == NULL && cut_structure(line, n)) continue; /* the cut's last line */
    json_t *v = NULL;
    if (line_starts(line, n, "\"columns\":") && !have_cols) {
      v = parse_line(line, n, true, &oom);
      char cerr[96] = "";
      if (v != NULL && map_columns(json_object_get(v, "columns"), col, &ncols, cerr,
                                   sizeof cerr) == 0 &&
          json_is_array(json_object_get(v, "columns"))) {
        have_cols = true;
      } else {
        note_skip(r, "line %zu: columns unreadable%s%s", lineno, cerr[0] ? ": " : "", cerr);
      }
    } else if (line_starts(line, n, "\"collisions\":")) {
      v = parse_line(line, n, true, &oom);
      json_t *a = v ? json_object_get(v, "collisions") : NULL;
      if (json_is_array(a) && coll == NULL) {
        coll = json_incref(a);
      } else {
        r->collisions_skipped++;
        note_skip(r, "line %zu: collisions unreadable", lineno);
      }
    } else if (line[0] == '{') {
      v = parse_line(line, n, false, &oom);
      if (json_is_object(v)) {
        if (json_array_append(bans, v) != 0) fatal = PD_ENOMEM;
      } else {
        r->bans_skipped++;
        note_skip(r, "line %zu: not a complete ban", lineno);
      }
    } else if (line[0] == '"') {
      v = parse_line(line, n, false, &oom);
      if (!json_is_string(v))
        lost_line(r, lineno, "not a complete entry row");
      else if (!have_cols)
        lost_line(r, lineno, "entry row before any readable columns");
      else
        load_row(b, v, row++, col, ncols, false, r, &fatal);
    } else {
      lost_line(r, lineno, "unreadable");
    }
    json_decref(v);
    if (oom) fatal = PD_ENOMEM;
  }
  if (fatal == 0 && coll != NULL) load_collisions(b, coll, r);
  if (fatal == 0) load_bans(b, bans, r, &fatal);
  json_decref(coll);
  json_decref(bans);
  if (fatal != 0) {
    pd_book_destroy(b);
    return fail(err, cap, fatal, "%s while salvaging", pd_strerror(fatal));
  }
  r->entries_loaded = pd_book_size(b);
  r->salvage = true;
  r->salvaged = r->entries_loaded;
  r->lost = r->entries_skipped;
  *out = b;
  return 0;
}
