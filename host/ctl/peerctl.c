/* peerctl — the operator's client for peerd's control API (man peerctl).
 *
 * Owns: the command line (global flags, one command and its options), the
 * bearer token (--token-file, else DATA_DIR/api_cookie when it exists),
 * mapping each command onto one API endpoint, printing the answer (aligned
 * tables and short ids by default, the API's JSON unchanged with --json),
 * the server-sent event stream of `events`, and exit codes scripts can
 * trust: 0 ok, 1 peerd answered an error (4xx/5xx: its message is printed;
 * also a policy check that found errors), 2 usage, 3 peerd unreachable.
 * Does not own: HTTP (client.c), durations and tables (fmt.c), anything
 * the daemon decides.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "fmt.h"

#ifndef PEERD_VERSION
#define PEERD_VERSION "unknown"
#endif

enum { EXIT_OK = 0, EXIT_API = 1, EXIT_USAGE = 2, EXIT_UNREACH = 3 };

#define DEFAULT_DATA_DIR "./peerd-data"
#define COOKIE_FILE "api_cookie"

static const char usage_text[] =
    "usage: peerctl [GLOBAL FLAGS] COMMAND [ARGS]\n"
    "\n"
    "Global flags:\n"
    "  --api HOST:PORT|unix:PATH  the daemon's API (default " PD_CTL_DEFAULT_API ")\n"
    "  --data-dir DIR             find the bearer token in DIR/api_cookie (default " DEFAULT_DATA_DIR ")\n"
    "  --token-file FILE          the bearer token is in FILE\n"
    "  --json                     print the API's JSON as it comes (for scripts)\n"
    "  --timeout SECONDS          connect and answer timeout (default 10)\n"
    "\n"
    "Commands:\n"
    "  status                     the daemon: version, id, book, policy, saves\n"
    "  peers                      the connected peers\n"
    "  book [--table new|tried|all] [--group G] [--banned|--not-banned] [--source IP]\n"
    "       [--min-score X] [--limit N] [--offset N]\n"
    "                             book entries, filtered and paged\n"
    "  explain ADDR|ID            one entry: placement, attempts, reputation, ban, and\n"
    "                             why peerd would or would not dial it now\n"
    "  dial [-n K] [--service NAME]  whom the node should dial\n"
    "  bans                       active bans\n"
    "  ban TARGET [--for DURATION] [--reason TEXT]  ban an IP or subnet (90s, 10m, 24h, 7d)\n"
    "  unban TARGET               lift a ban\n"
    "  disconnect ID|ADDR|IP      close connections to a peer now\n"
    "  connect [ID@]ADDR          dial an address now\n"
    "  protect [ID|ADDR|IP]       never refuse or evict it by limits (no argument: list)\n"
    "  unprotect ID|ADDR|IP       undo protect\n"
    "  policy status|reload|shadow|check DIR\n"
    "  events [--follow] [--kinds LIST]  decisions as they happen (recent ones without\n"
    "                             --follow); LIST: kinds, comma-separated\n"
    "  metrics                    the Prometheus text\n"
    "  save                       save the book now\n"
    "  dht                        the DHT: routing table, sessions, lookups\n"
    "  lookup ID                  a DHT lookup now: the closest nodes to ID\n"
    "  node ID                    where node ID is now: its freshest record (a DHT lookup)\n"
    "\n"
    "Exit status: 0 ok, 1 peerd answered an error, 2 usage error, 3 peerd unreachable.\n";

typedef struct ctl {
  pd_ctl_api_t api;
  const char *api_text;
  char *token;
  bool json;
  int timeout_ms;
  int64_t now;
} ctl_t;

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...) {
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    fputs("peerctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
  }
  fputs("Try 'peerctl --help'.\n", stderr);
  return EXIT_USAGE;
}

/* ---- tokens -------------------------------------------------------------- */

static char *read_token(const char *path, bool must) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (must) fprintf(stderr, "peerctl: cannot read token file %s: %s\n", path, strerror(errno));
    return NULL;
  }
  char buf[256];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
  if (n == 0) {
    if (must) fprintf(stderr, "peerctl: token file %s is empty\n", path);
    return NULL;
  }
  return strdup(buf);
}

/* ---- requests ------------------------------------------------------------ */

/* Percent-encode a path segment (RFC 3986 unreserved characters stay). */
static void pct_encode(const char *s, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (; *s && o + 4 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out[o++] = (char)ch;
    } else {
      out[o++] = '%';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    }
  }
  out[o] = '\0';
}

static int unreachable(const ctl_t *c, const char *why) {
  fprintf(stderr, "peerctl: cannot reach peerd at %s: %s\n", c->api_text, why ? why : "?");
  return EXIT_UNREACH;
}

/* Report a 4xx/5xx: the API's "error" message (and, with --json, the body
 * on stdout as it came). */
static int api_error(const ctl_t *c, const pd_ctl_response_t *r) {
  json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
  const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
  if (c->json && r->body_len) fputs(r->body, stdout);
  fprintf(stderr, "peerctl: peerd answered %d: %s", r->status, msg ? msg : r->body);
  if (msg || !r->body_len || r->body[r->body_len - 1] != '\n') fputc('\n', stderr);
  if (r->status == 401)
    fprintf(stderr, "peerctl: this API needs its token: --data-dir DIR (DIR/api_cookie) or --token-file FILE\n");
  json_decref(j);
  return EXIT_API;
}

/* One call. Returns an exit code; on 2xx *out gets the parsed JSON, or,
 * with --json (raw), the body is printed as it came and *out stays NULL. */
static int request(const ctl_t *c, const char *method, const char *path, json_t *body,
                   json_t **out) {
  *out = NULL;
  char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  pd_ctl_request_t rq = {.method = method, .path = path, .body = b, .token = c->token,
                         .timeout_ms = c->timeout_ms};
  pd_ctl_response_t r;
  const char *why = NULL;
  int rc = pd_ctl_call(&c->api, &rq, &r, &why);
  free(b);
  if (rc < 0) return unreachable(c, why);
  if (r.status >= 400) {
    rc = api_error(c, &r);
    pd_ctl_response_free(&r);
    return rc;
  }
  if (c->json) {
    fputs(r.body, stdout);
    if (r.body_len && r.body[r.body_len - 1] != '\n') fputc('\n', stdout);
    pd_ctl_response_free(&r);
    return EXIT_OK;
  }
  json_error_t err;
  *out = json_loadb(r.body, r.body_len, 0, &err);
  pd_ctl_response_free(&r);
  if (!*out) {
    fprintf(stderr, "peerctl: peerd's answer is not JSON: %s\n", err.text);
    return EXIT_UNREACH;
  }
  return EXIT_OK;
}

/* ---- printing helpers ---------------------------------------------------- */

static const char *s_of(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "-";
}

static int64_t i_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? (int64_t)json_number_value(v) : 0;
}

static void num_text(json_t *v, char *buf, size_t cap) {
  if (json_is_integer(v)) snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  else if (json_is_real(v)) snprintf(buf, cap, "%.2f", json_real_value(v));
  else snprintf(buf, cap, "-");
}

static void ago(const ctl_t *c, json_t *o, const char *key, char *buf, size_t cap) {
  json_t *v = json_object_get(o, key);
  pd_ctl_format_ago(json_is_integer(v) ? (int64_t)json_integer_value(v) : 0, c->now, buf, cap);
}

/* Any JSON as indented "key: value" lines (for answers without a table). */
static void print_tree(json_t *v, int indent, const char *key) {
  char pad[64];
  int n = indent * 2 < 60 ? indent * 2 : 60;
  memset(pad, ' ', (size_t)n);
  pad[n] = '\0';
  if (json_is_object(v)) {
    if (key) printf("%s%s:\n", pad, key);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) print_tree(x, key ? indent + 1 : indent, k);
    return;
  }
  if (json_is_array(v)) {
    if (json_array_size(v) == 0) {
      printf("%s%s: (none)\n", pad, key ? key : "");
      return;
    }
    if (key) printf("%s%s:\n", pad, key);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
      if (json_is_object(x) || json_is_array(x)) {
        printf("%s  -\n", pad);
        print_tree(x, indent + 2, NULL);
      } else {
        char *s = json_is_string(x) ? strdup(json_string_value(x)) : json_dumps(x, JSON_ENCODE_ANY);
        printf("%s  - %s\n", pad, s ? s : "?");
        free(s);
      }
    }
    return;
  }
  char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
  printf("%s%s: %s\n", pad, key ? key : "", s ? s : "?");
  free(s);
}

static int print_table(pd_ctl_table_t *t, const char *empty) {
  if (!t) {
    fprintf(stderr, "peerctl: out of memory\n");
    return EXIT_API;
  }
  if (pd_ctl_table_rows(t) == 0 && empty) printf("%s\n", empty);
  else pd_ctl_table_print(t, stdout);
  pd_ctl_table_free(t);
  return EXIT_OK;
}

/* ---- commands ------------------------------------------------------------ */

/* Options of a command: getopt_long over argv[0..argc) (argv[0] the
 * command). Returns the index of the first operand, or -1 after a usage
 * message. */
static int sub_opts(int argc, char **argv, const struct option *opts, const char *shorts,
                    int (*on_opt)(void *ud, int ch, const char *arg), void *ud) {
  optind = 0; /* GNU: re-initialise */
  opterr = 0;
  int ch;
  char spec[32];
  snprintf(spec, sizeof spec, "+:%s", shorts ? shorts : "");
  while ((ch = getopt_long(argc, argv, spec, opts, NULL)) != -1) {
    if (ch == '?') {
      usage("%s: unknown option %s", argv[0], argv[optind - 1]);
      return -1;
    }
    if (ch == ':') {
      usage("%s: %s needs a value", argv[0], argv[optind - 1]);
      return -1;
    }
    if (on_opt(ud, ch, optarg) < 0) return -1;
  }
  return optind;
}

static int no_opt(void *ud, int ch, const char *arg) {
  (void)ud;
  (void)ch;
  (void)arg;
  return 0;
}

static const struct option no_opts[] = {{NULL, 0, NULL, 0}};

/* Commands that take exactly `want` operands and no options. */
static int operands(int argc, char **argv, int want, const char *form) {
  int first = sub_opts(argc, argv, no_opts, "", no_opt, NULL);
  if (first < 0) return -1;
  if (argc - first != want) {
    usage("usage: peerctl %s", form);
    return -1;
  }
  return first;
}

static int cmd_status(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "status") < 0) return EXIT_USAGE;
  json_t *j;
  int rc = request(c, "GET", "/v1/status", NULL, &j);
  if (rc || !j) return rc;
  char id[16], up[32], t[32];
  pd_ctl_short_id(json_string_value(json_object_get(j, "node_id")), id, sizeof id);
  pd_ctl_format_duration(i_of(j, "uptime"), up, sizeof up);
  printf("peerd %s  node %s  up %s\n", s_of(j, "version"), id, up);
  printf("  listen      %s\n", s_of(j, "listen"));
  json_t *b = json_object_get(j, "book");
  printf("  book        %" PRId64 " new, %" PRId64 " tried, %" PRId64 " banned, %" PRId64
         " collisions\n",
         i_of(b, "new"), i_of(b, "tried"), i_of(b, "banned"), i_of(b, "collisions"));
  json_t *p = json_object_get(j, "policy");
  json_t *le = json_object_get(p, "last_error");
  char hash[16];
  pd_ctl_short_id(json_string_value(json_object_get(p, "hash")), hash, sizeof hash);
  printf("  policy      generation %" PRId64 " (%s), %zu files, last error: %s\n",
         i_of(p, "generation"), hash, json_array_size(json_object_get(p, "files")),
         json_is_object(le) ? s_of(le, "error") : "none");
  json_t *s = json_object_get(j, "last_save");
  ago(c, s, "at", t, sizeof t);
  if (json_is_null(json_object_get(s, "at")))
    printf("  last save   never\n");
  else
    printf("  last save   %s, %s (%" PRId64 " entries, %" PRId64 " bytes)\n", t,
           json_is_true(json_object_get(s, "ok")) ? "ok" : s_of(s, "error"), i_of(s, "entries"),
           i_of(s, "bytes"));
  json_t *l = json_object_get(j, "load");
  if (!json_is_true(json_object_get(l, "ok")))
    printf("  load        FAILED: %s (moved to %s)\n", s_of(l, "error"), s_of(l, "moved_to"));
  json_t *rep = json_object_get(j, "reputation");
  if (rep) printf("  reputation  %" PRId64 " records (max %" PRId64 ")\n", i_of(rep, "records"), i_of(rep, "max"));
  json_decref(j);
  return EXIT_OK;
}

static int cmd_peers(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "peers") < 0) return EXIT_USAGE;
  json_t *j;
  int rc = request(c, "GET", "/v1/peers", NULL, &j);
  if (rc || !j) return rc;
  static const char *const h[] = {"ID", "ADDR", "DIRECTION", "SINCE", "IN", "OUT", "LATENCY",
                                  "SCORE", "PROTECTED"};
  pd_ctl_table_t *t = pd_ctl_table_new(9, h);
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(j, "peers"), i, p) {
    char id[16], since[32], in[24], out[24], lat[24], score[24];
    pd_ctl_short_id(json_string_value(json_object_get(p, "id")), id, sizeof id);
    ago(c, p, "since", since, sizeof since);
    num_text(json_object_get(p, "bytes_in"), in, sizeof in);
    num_text(json_object_get(p, "bytes_out"), out, sizeof out);
    json_t *lv = json_object_get(p, "latency_ms");
    if (json_is_number(lv)) snprintf(lat, sizeof lat, "%" PRId64 "ms", i_of(p, "latency_ms"));
    else snprintf(lat, sizeof lat, "-");
    num_text(json_object_get(p, "score"), score, sizeof score);
    const char *row[] = {id, s_of(p, "addr"), s_of(p, "direction"), since, in, out, lat, score,
                         json_is_true(json_object_get(p, "protected")) ? "yes" : "no"};
    pd_ctl_table_add(t, row);
  }
  json_decref(j);
  return print_table(t, "no peers connected");
}

typedef struct book_args {
  char query[1024];
  size_t qlen;
  bool bad;
} book_args_t;

static void q_add(book_args_t *a, const char *key, const char *val) {
  char enc[512];
  pct_encode(val, enc, sizeof enc);
  int n = snprintf(a->query + a->qlen, sizeof a->query - a->qlen, "%s%s=%s",
                   a->qlen ? "&" : "?", key, enc);
  if (n > 0 && (size_t)n < sizeof a->query - a->qlen) a->qlen += (size_t)n;
  else a->bad = true;
}

enum { O_TABLE = 1000, O_GROUP, O_BANNED, O_NOT_BANNED, O_SOURCE, O_MIN_SCORE, O_LIMIT, O_OFFSET,
       O_FOR, O_REASON, O_SERVICE, O_FOLLOW, O_KINDS };

static bool is_uint(const char *s) {
  if (!s || !*s || strlen(s) > 10) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

static int book_opt(void *ud, int ch, const char *arg) {
  book_args_t *a = ud;
  switch (ch) {
  case O_TABLE:
    if (strcmp(arg, "new") && strcmp(arg, "tried") && strcmp(arg, "all")) {
      usage("book: --table is new, tried or all");
      return -1;
    }
    q_add(a, "table", arg);
    break;
  case O_GROUP: q_add(a, "group", arg); break;
  case O_BANNED: q_add(a, "banned", "true"); break;
  case O_NOT_BANNED: q_add(a, "banned", "false"); break;
  case O_SOURCE: q_add(a, "source", arg); break;
  case O_MIN_SCORE: q_add(a, "min_score", arg); break;
  case O_LIMIT:
  case O_OFFSET:
    if (!is_uint(arg)) {
      usage("book: %s needs a number", ch == O_LIMIT ? "--limit" : "--offset");
      return -1;
    }
    q_add(a, ch == O_LIMIT ? "limit" : "offset", arg);
    break;
  default: return -1;
  }
  return 0;
}

static int cmd_book(ctl_t *c, int argc, char **argv) {
  static const struct option opts[] = {
      {"table", required_argument, NULL, O_TABLE},     {"group", required_argument, NULL, O_GROUP},
      {"banned", no_argument, NULL, O_BANNED},         {"not-banned", no_argument, NULL, O_NOT_BANNED},
      {"source", required_argument, NULL, O_SOURCE},   {"min-score", required_argument, NULL, O_MIN_SCORE},
      {"limit", required_argument, NULL, O_LIMIT},     {"offset", required_argument, NULL, O_OFFSET},
      {NULL, 0, NULL, 0}};
  book_args_t a;
  memset(&a, 0, sizeof a);
  int first = sub_opts(argc, argv, opts, "", book_opt, &a);
  if (first < 0) return EXIT_USAGE;
  if (first != argc) return usage("book takes no operands (filters are options)");
  if (a.bad) return usage("book: options too long");
  char path[1100];
  snprintf(path, sizeof path, "/v1/book%s", a.query);
  json_t *j;
  int rc = request(c, "GET", path, NULL, &j);
  if (rc || !j) return rc;
  json_t *entries = json_object_get(j, "entries");
  bool scores = json_array_size(entries) && json_object_get(json_array_get(entries, 0), "score");
  static const char *const h[] = {"ADDR", "TABLE", "SOURCE", "ATTEMPTS", "LAST TRY",
                                  "LAST SUCCESS", "ID", "SCORE"};
  pd_ctl_table_t *t = pd_ctl_table_new(scores ? 8 : 7, h);
  size_t i;
  json_t *e;
  json_array_foreach(entries, i, e) {
    char id[16], lt[32], ls[32], at[24], sc[24];
    pd_ctl_short_id(json_string_value(json_object_get(e, "id")), id, sizeof id);
    ago(c, e, "last_try", lt, sizeof lt);
    ago(c, e, "last_success", ls, sizeof ls);
    num_text(json_object_get(e, "attempts"), at, sizeof at);
    num_text(json_object_get(e, "score"), sc, sizeof sc);
    const char *row[] = {s_of(e, "addr"), s_of(e, "table"), s_of(e, "source"), at, lt, ls, id, sc};
    pd_ctl_table_add(t, row);
  }
  int64_t total = i_of(j, "total"), off = i_of(j, "offset");
  size_t shown = json_array_size(entries);
  rc = print_table(t, "no entries match");
  if (shown)
    printf("-- %" PRId64 "..%" PRId64 " of %" PRId64 "%s", off + 1, off + (int64_t)shown, total,
           off + (int64_t)shown < total ? "" : "\n");
  if (shown && off + (int64_t)shown < total)
    printf(" (next page: --offset %" PRId64 ")\n", off + (int64_t)shown);
  else if (!shown && total)
    printf("-- %" PRId64 " match; --offset %" PRId64 " is past the end\n", total, off);
  json_decref(j);
  return rc;
}

static int cmd_explain(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "explain ADDR|ID");
  if (first < 0) return EXIT_USAGE;
  char enc[256], path[300];
  pct_encode(argv[first], enc, sizeof enc);
  snprintf(path, sizeof path, "/v1/explain/%s", enc);
  json_t *j;
  int rc = request(c, "GET", path, NULL, &j);
  if (rc || !j) return rc;
  char t1[32], t2[32], t3[32];
  printf("%s%s%s\n", s_of(j, "addr"), json_is_string(json_object_get(j, "id")) ? "  id " : "",
         json_is_string(json_object_get(j, "id")) ? s_of(j, "id") : "");
  if (json_is_true(json_object_get(j, "in_book"))) {
    printf("  table        %s, bucket %" PRId64 " position %" PRId64, s_of(j, "table"),
           i_of(j, "bucket"), i_of(j, "position"));
    json_t *refs = json_object_get(j, "refs");
    if (json_array_size(refs)) {
      printf(" (refs:");
      size_t i;
      json_t *r;
      json_array_foreach(refs, i, r) printf(" %" PRId64 "/%" PRId64, i_of(r, "bucket"), i_of(r, "position"));
      printf(")");
    }
    printf("\n  source       %s, group %s%s\n", s_of(j, "source"), s_of(j, "group"),
           json_is_true(json_object_get(j, "service_only")) ? ", service-only (the node's)" : "");
    ago(c, j, "last_try", t1, sizeof t1);
    ago(c, j, "last_success", t2, sizeof t2);
    ago(c, j, "time", t3, sizeof t3);
    printf("  attempts     %" PRId64 " (last try %s, last success %s, heard of %s)\n",
           i_of(j, "attempts"), t1, t2, t3);
    char ch[24];
    num_text(json_object_get(j, "chance"), ch, sizeof ch);
    printf("  chance       %s%s\n", ch, json_is_true(json_object_get(j, "terrible")) ? ", terrible" : "");
  } else {
    printf("  not in the book (group %s)\n", s_of(j, "group"));
  }
  char sc[24], rv[24];
  num_text(json_object_get(j, "score"), sc, sizeof sc);
  json_t *rep = json_object_get(j, "reputation");
  num_text(json_object_get(rep, "value"), rv, sizeof rv);
  printf("  score        %s (reputation %s, %" PRId64 " misbehaviours)\n", sc, rv,
         i_of(rep, "misbehaviours"));
  json_t *ban = json_object_get(j, "ban");
  if (json_is_object(ban)) {
    ago(c, ban, "until", t1, sizeof t1);
    printf("  ban          %s until %s: %s\n", s_of(ban, "subnet"),
           json_is_null(json_object_get(ban, "until")) ? "forever" : t1, s_of(ban, "reason"));
  } else {
    printf("  ban          none\n");
  }
  printf("  protected    %s%s\n", json_is_true(json_object_get(j, "protected")) ? "yes" : "no",
         json_is_true(json_object_get(j, "private")) ? "; private peer (never shared)" : "");
  json_t *cn = json_object_get(j, "connection");
  if (json_is_object(cn)) {
    printf("  connection   %s%s%s\n",
           json_is_true(json_object_get(cn, "connected")) ? "connected " : "not connected",
           json_is_true(json_object_get(cn, "connected")) ? s_of(cn, "direction") : "",
           json_is_true(json_object_get(cn, "in_flight")) ? ", dial in flight" : "");
  }
  printf("  dial now     %s\n", json_is_true(json_object_get(j, "selectable")) ? "yes" : "no");
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(j, "reasons"), i, r) printf("    - %s\n", json_string_value(r));
  printf("  to the node  %s\n", json_is_true(json_object_get(j, "handed_to_node"))
                                    ? "GET /v1/dial may hand it out"
                                    : "not handed out by GET /v1/dial");
  json_decref(j);
  return EXIT_OK;
}

typedef struct dial_args {
  const char *n, *service;
} dial_args_t;

static int dial_opt(void *ud, int ch, const char *arg) {
  dial_args_t *a = ud;
  if (ch == 'n') {
    if (!is_uint(arg)) {
      usage("dial: -n needs a number");
      return -1;
    }
    a->n = arg;
  } else if (ch == O_SERVICE) {
    a->service = arg;
  }
  return 0;
}

static int cmd_dial(ctl_t *c, int argc, char **argv) {
  static const struct option opts[] = {{"service", required_argument, NULL, O_SERVICE},
                                       {NULL, 0, NULL, 0}};
  dial_args_t a = {NULL, NULL};
  int first = sub_opts(argc, argv, opts, "n:", dial_opt, &a);
  if (first < 0) return EXIT_USAGE;
  if (first != argc) return usage("usage: peerctl dial [-n K] [--service NAME]");
  book_args_t q;
  memset(&q, 0, sizeof q);
  if (a.n) q_add(&q, "n", a.n);
  if (a.service) q_add(&q, "service", a.service);
  char path[1100];
  snprintf(path, sizeof path, "/v1/dial%s", q.query);
  json_t *j;
  int rc = request(c, "GET", path, NULL, &j);
  if (rc || !j) return rc;
  static const char *const h[] = {"ADDR", "ID", "SERVICE", "TABLE", "SCORE", "PEERD"};
  pd_ctl_table_t *t = pd_ctl_table_new(6, h);
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(j, "peers"), i, p) {
    char id[16], sc[24];
    const char *nid = json_string_value(json_object_get(p, "node_id"));
    pd_ctl_short_id(nid ? nid : json_string_value(json_object_get(p, "id")), id, sizeof id);
    num_text(json_object_get(p, "score"), sc, sizeof sc);
    const char *row[] = {s_of(p, "addr"), id, s_of(p, "service"), s_of(p, "table"), sc,
                         json_is_true(json_object_get(p, "peerd")) ? "yes" : "no"};
    pd_ctl_table_add(t, row);
  }
  printf("selected by %s\n", s_of(j, "selected_by"));
  json_decref(j);
  return print_table(t, "nothing to dial");
}

static int cmd_bans(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "bans") < 0) return EXIT_USAGE;
  json_t *j;
  int rc = request(c, "GET", "/v1/bans", NULL, &j);
  if (rc || !j) return rc;
  static const char *const h[] = {"SUBNET", "CREATED", "UNTIL", "REASON"};
  pd_ctl_table_t *t = pd_ctl_table_new(4, h);
  size_t i;
  json_t *b;
  json_array_foreach(json_object_get(j, "bans"), i, b) {
    char cr[32], un[32];
    ago(c, b, "created", cr, sizeof cr);
    if (json_is_null(json_object_get(b, "until"))) snprintf(un, sizeof un, "permanent");
    else ago(c, b, "until", un, sizeof un);
    const char *row[] = {s_of(b, "subnet"), cr, un, s_of(b, "reason")};
    pd_ctl_table_add(t, row);
  }
  json_decref(j);
  return print_table(t, "no bans");
}

typedef struct ban_args {
  bool has_for;
  int64_t secs;
  const char *reason;
} ban_args_t;

static int ban_opt(void *ud, int ch, const char *arg) {
  ban_args_t *a = ud;
  if (ch == O_FOR) {
    const char *why = NULL;
    if (pd_ctl_parse_duration(arg, &a->secs, &why) < 0) {
      usage("ban: --for %s: %s", arg, why);
      return -1;
    }
    a->has_for = true;
  } else if (ch == O_REASON) {
    a->reason = arg;
  }
  return 0;
}

static int cmd_ban(ctl_t *c, int argc, char **argv) {
  static const struct option opts[] = {{"for", required_argument, NULL, O_FOR},
                                       {"reason", required_argument, NULL, O_REASON},
                                       {NULL, 0, NULL, 0}};
  ban_args_t a = {false, 0, NULL};
  /* options may come before or after the target */
  int first = sub_opts(argc, argv, opts, "", ban_opt, &a);
  if (first < 0) return EXIT_USAGE;
  const char *target = first < argc ? argv[first] : NULL;
  if (target && first + 1 < argc) {
    int more = sub_opts(argc - first, argv + first, opts, "", ban_opt, &a);
    if (more < 0) return EXIT_USAGE;
    if (more != argc - first) return usage("usage: peerctl ban TARGET [--for DURATION] [--reason TEXT]");
  }
  if (!target) return usage("usage: peerctl ban TARGET [--for DURATION] [--reason TEXT]");
  json_t *body = json_object();
  json_object_set_new(body, "target", json_string(target));
  if (a.has_for) json_object_set_new(body, "duration", json_integer(a.secs));
  if (a.reason) json_object_set_new(body, "reason", json_string(a.reason));
  json_t *j;
  int rc = request(c, "POST", "/v1/bans", body, &j);
  if (rc || !j) return rc;
  char un[48];
  if (json_is_null(json_object_get(j, "until"))) snprintf(un, sizeof un, "permanently");
  else {
    char d[32];
    ago(c, j, "until", d, sizeof d);
    snprintf(un, sizeof un, "until %s", d);
  }
  printf("banned %s %s%s%s%s\n", s_of(j, "banned"), un,
         *s_of(j, "reason") && strcmp(s_of(j, "reason"), "-") ? " (" : "",
         *s_of(j, "reason") && strcmp(s_of(j, "reason"), "-") ? s_of(j, "reason") : "",
         *s_of(j, "reason") && strcmp(s_of(j, "reason"), "-") ? ")" : "");
  json_decref(j);
  return EXIT_OK;
}

static int path_call(ctl_t *c, const char *method, const char *prefix, const char *target,
                     json_t **out) {
  char enc[256], path[300];
  pct_encode(target, enc, sizeof enc);
  snprintf(path, sizeof path, "%s%s", prefix, enc);
  return request(c, method, path, NULL, out);
}

static int cmd_unban(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "unban TARGET");
  if (first < 0) return EXIT_USAGE;
  json_t *j;
  int rc = path_call(c, "DELETE", "/v1/bans/", argv[first], &j);
  if (rc || !j) return rc;
  printf("unbanned %s\n", s_of(j, "unbanned"));
  json_decref(j);
  return EXIT_OK;
}

static int cmd_disconnect(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "disconnect ID|ADDR|IP");
  if (first < 0) return EXIT_USAGE;
  json_t *j;
  int rc = path_call(c, "DELETE", "/v1/peers/", argv[first], &j);
  if (rc || !j) return rc;
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(j, "closed"), i, p) {
    char id[16];
    pd_ctl_short_id(json_string_value(json_object_get(p, "id")), id, sizeof id);
    printf("disconnected %s %s (%s)\n", s_of(p, "addr"), id, s_of(p, "direction"));
  }
  json_decref(j);
  return EXIT_OK;
}

static int cmd_connect(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "connect [ID@]ADDR");
  if (first < 0) return EXIT_USAGE;
  json_t *body = json_object();
  json_object_set_new(body, "addr", json_string(argv[first]));
  json_t *j;
  int rc = request(c, "POST", "/v1/peers", body, &j);
  if (rc || !j) return rc;
  printf("dialling %s (see: peerctl peers)\n", s_of(j, "dialling"));
  json_decref(j);
  return EXIT_OK;
}

static int cmd_protect(ctl_t *c, int argc, char **argv) {
  int first = sub_opts(argc, argv, no_opts, "", no_opt, NULL);
  if (first < 0) return EXIT_USAGE;
  json_t *j;
  if (first == argc) {
    int rc = request(c, "GET", "/v1/protected", NULL, &j);
    if (rc || !j) return rc;
    static const char *const h[] = {"TARGET", "SINCE"};
    pd_ctl_table_t *t = pd_ctl_table_new(2, h);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "protected"), i, p) {
      char since[32];
      ago(c, p, "since", since, sizeof since);
      const char *row[] = {s_of(p, "target"), since};
      pd_ctl_table_add(t, row);
    }
    json_decref(j);
    return print_table(t, "nothing protected");
  }
  if (first + 1 != argc) return usage("usage: peerctl protect [ID|ADDR|IP]");
  json_t *body = json_object();
  json_object_set_new(body, "target", json_string(argv[first]));
  int rc = request(c, "POST", "/v1/protected", body, &j);
  if (rc || !j) return rc;
  printf("%s %s\n", json_is_true(json_object_get(j, "added")) ? "protected" : "already protected",
         s_of(j, "protected"));
  json_decref(j);
  return EXIT_OK;
}

static int cmd_unprotect(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "unprotect ID|ADDR|IP");
  if (first < 0) return EXIT_USAGE;
  json_t *j;
  int rc = path_call(c, "DELETE", "/v1/protected/", argv[first], &j);
  if (rc || !j) return rc;
  printf("unprotected %s\n", s_of(j, "unprotected"));
  json_decref(j);
  return EXIT_OK;
}

static void print_policy(json_t *p) {
  char hash[16];
  pd_ctl_short_id(json_string_value(json_object_get(p, "hash")), hash, sizeof hash);
  printf("policies %s: generation %" PRId64 " (%s)\n", s_of(p, "dir"), i_of(p, "generation"), hash);
  printf("  files     ");
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(p, "files"), i, f) printf("%s%s", i ? ", " : "", json_string_value(f));
  printf("%s\n", json_array_size(json_object_get(p, "files")) ? "" : "(none: built-in defaults)");
  printf("  hooks     ");
  const char *k;
  json_t *v;
  bool any = false;
  json_object_foreach(json_object_get(p, "hooks"), k, v) {
    /* {"provided":true,"state":"ok|failing|tripped",...} (a bare true from older peerds) */
    if (json_is_true(v) || json_is_true(json_object_get(v, "provided"))) {
      const char *st = json_string_value(json_object_get(v, "state"));
      printf("%s%s", any ? ", " : "", k);
      if (st && strcmp(st, "ok") != 0) printf(" (%s)", st);
      any = true;
    }
  }
  printf("%s\n", any ? "" : "(none)");
  json_t *le = json_object_get(p, "last_error");
  printf("  failures  %" PRId64 "; last error: %s\n", i_of(p, "failures"),
         json_is_object(le) ? s_of(le, "error") : "none");
  json_t *lim = json_object_get(p, "limits");
  if (lim)
    printf("  limits    %" PRId64 " instructions and %" PRId64 " ms per call, %" PRId64 " bytes of Lua memory\n",
           i_of(lim, "instructions"), i_of(lim, "timeout_ms"), i_of(lim, "memory_bytes"));
}

static int cmd_policy(ctl_t *c, int argc, char **argv) {
  if (argc < 2) return usage("usage: peerctl policy status|reload|shadow|check DIR");
  const char *sub = argv[1];
  json_t *j;
  int rc;
  if (strcmp(sub, "status") == 0 && argc == 2) {
    rc = request(c, "GET", "/v1/policy", NULL, &j);
    if (rc || !j) return rc;
    print_policy(j);
  } else if (strcmp(sub, "reload") == 0 && argc == 2) {
    rc = request(c, "POST", "/v1/policy/reload", NULL, &j);
    if (rc || !j) return rc;
    char hash[16];
    pd_ctl_short_id(json_string_value(json_object_get(j, "hash")), hash, sizeof hash);
    printf("reloaded: generation %" PRId64 " (%s)\n", i_of(j, "generation"), hash);
  } else if (strcmp(sub, "shadow") == 0 && argc == 2) {
    rc = request(c, "GET", "/v1/policy/shadow", NULL, &j);
    if (rc == EXIT_API) fprintf(stderr, "peerctl: (shadow policies: peerd --shadow-policies DIR)\n");
    if (rc || !j) return rc;
    print_tree(j, 0, NULL);
  } else if (strcmp(sub, "check") == 0 && argc == 3) {
    char abs[PATH_MAX];
    const char *dir = argv[2];
    if (!c->api.is_unix || dir[0] != '/') {
      if (realpath(dir, abs)) dir = abs; /* the daemon runs elsewhere: send it absolute */
    }
    json_t *body = json_object();
    json_object_set_new(body, "dir", json_string(dir));
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    pd_ctl_request_t rq = {.method = "POST", .path = "/v1/policy/check", .body = b,
                           .token = c->token, .timeout_ms = c->timeout_ms};
    pd_ctl_response_t r;
    const char *why = NULL;
    rc = pd_ctl_call(&c->api, &rq, &r, &why);
    free(b);
    if (rc < 0) return unreachable(c, why);
    json_t *doc = json_loadb(r.body, r.body_len, 0, NULL);
    bool ok = r.status < 400 && json_is_true(json_object_get(doc, "ok"));
    if (r.status >= 400) {
      rc = api_error(c, &r);
    } else if (c->json) {
      fputs(r.body, stdout);
      rc = ok ? EXIT_OK : EXIT_API;
    } else {
      size_t i;
      json_t *f;
      json_array_foreach(json_object_get(doc, "files"), i, f) {
        if (json_is_true(json_object_get(f, "ok"))) {
          printf("ok    %s", s_of(f, "file"));
          size_t k;
          json_t *h;
          json_array_foreach(json_object_get(f, "hooks"), k, h) printf("%s%s", k ? ", " : " (hooks: ", json_string_value(h));
          printf("%s\n", json_array_size(json_object_get(f, "hooks")) ? ")" : "");
        } else {
          printf("FAIL  %s: %s\n", s_of(f, "file"), s_of(f, "error"));
        }
      }
      if (ok) {
        char hash[16];
        pd_ctl_short_id(json_string_value(json_object_get(doc, "hash")), hash, sizeof hash);
        printf("policy check: OK: %s loads (%s); the policies in force are unchanged\n", s_of(doc, "dir"), hash);
      } else {
        printf("policy check: FAILED: %s%s%s\n", s_of(doc, "dir"),
               json_is_string(json_object_get(doc, "error")) ? ": " : "",
               json_is_string(json_object_get(doc, "error")) ? s_of(doc, "error") : "");
      }
      rc = ok ? EXIT_OK : EXIT_API;
    }
    json_decref(doc);
    pd_ctl_response_free(&r);
    return rc;
  } else {
    return usage("usage: peerctl policy status|reload|shadow|check DIR");
  }
  json_decref(j);
  return EXIT_OK;
}

/* ---- events: server-sent events ----------------------------------------- */

typedef struct sse {
  const ctl_t *c;
  char line[65536];
  size_t len;
  bool overflow;
  char data[65536];
  size_t dlen;
  char event[64];
  size_t count;
  int status;
} sse_t;

static void print_event(sse_t *s) {
  if (s->dlen == 0) return;
  s->data[s->dlen] = '\0';
  s->count++;
  if (s->c->json) {
    printf("%s\n", s->data);
    fflush(stdout);
    return;
  }
  json_t *j = json_loads(s->data, 0, NULL);
  if (!json_is_object(j)) {
    printf("%s %s\n", s->event[0] ? s->event : "event", s->data);
    json_decref(j);
    fflush(stdout);
    return;
  }
  int64_t ts = i_of(j, "ts");
  time_t secs = (time_t)(ts / 1000);
  struct tm tm;
  char when[32] = "-";
  if (ts > 0 && localtime_r(&secs, &tm)) {
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    snprintf(when + strlen(when), sizeof when - strlen(when), ".%03d", (int)(ts % 1000));
  }
  const char *kind = json_string_value(json_object_get(j, "kind"));
  printf("%s %-14s", when, kind ? kind : (s->event[0] ? s->event : "event"));
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    if (!strcmp(k, "seq") || !strcmp(k, "ts") || !strcmp(k, "kind")) continue;
    char *txt = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    printf(" %s=%s", k, txt ? txt : "?");
    free(txt);
  }
  printf("\n");
  fflush(stdout);
  json_decref(j);
}

/* One line of the stream (without its newline). */
static void sse_line(sse_t *s) {
  char *l = s->line;
  if (s->len == 0) { /* blank line: dispatch */
    print_event(s);
    s->dlen = 0;
    s->event[0] = '\0';
    return;
  }
  if (l[0] == ':') return; /* comment: keep-alive */
  char *colon = strchr(l, ':');
  const char *val = "";
  if (colon) {
    *colon = '\0';
    val = colon + 1;
    if (*val == ' ') val++;
  }
  if (strcmp(l, "data") == 0) {
    size_t vl = strlen(val);
    if (s->dlen + vl + 2 < sizeof s->data) {
      if (s->dlen) s->data[s->dlen++] = '\n';
      memcpy(s->data + s->dlen, val, vl);
      s->dlen += vl;
    }
  } else if (strcmp(l, "event") == 0) {
    snprintf(s->event, sizeof s->event, "%s", val);
  }
}

static bool sse_body(void *ud, const char *data, size_t len) {
  sse_t *s = ud;
  for (size_t i = 0; i < len; i++) {
    char ch = data[i];
    if (ch == '\n') {
      if (s->len && s->line[s->len - 1] == '\r') s->len--;
      s->line[s->len] = '\0';
      if (!s->overflow) sse_line(s);
      s->len = 0;
      s->overflow = false;
    } else if (s->len + 1 < sizeof s->line) {
      s->line[s->len++] = ch;
    } else {
      s->overflow = true;
    }
  }
  return true;
}

static void sse_head(void *ud, int status, const char *ct) {
  sse_t *s = ud;
  (void)ct;
  s->status = status;
}

typedef struct events_args {
  bool follow;
  const char *kinds;
} events_args_t;

static int events_opt(void *ud, int ch, const char *arg) {
  events_args_t *a = ud;
  if (ch == 'f' || ch == O_FOLLOW) a->follow = true;
  else if (ch == O_KINDS) a->kinds = arg;
  return 0;
}

static int cmd_events(ctl_t *c, int argc, char **argv) {
  static const struct option opts[] = {{"follow", no_argument, NULL, O_FOLLOW},
                                       {"kinds", required_argument, NULL, O_KINDS},
                                       {NULL, 0, NULL, 0}};
  events_args_t ea = {false, NULL};
  int first = sub_opts(argc, argv, opts, "f", events_opt, &ea);
  if (first < 0) return EXIT_USAGE;
  if (first != argc) return usage("usage: peerctl events [--follow] [--kinds LIST]");
  bool follow = ea.follow;
  book_args_t q;
  memset(&q, 0, sizeof q);
  if (ea.kinds) q_add(&q, "kinds", ea.kinds);
  char path[1100];
  snprintf(path, sizeof path, "/v1/events/stream%s", q.query);
  sse_t *s = calloc(1, sizeof *s);
  if (!s) return EXIT_API;
  s->c = c;
  /* Without --follow: what the daemon replays from its recent events
   * (Last-Event-ID: 0), until the stream has been quiet for 500 ms. */
  pd_ctl_request_t rq = {.method = "GET", .path = path, .token = c->token,
                         .timeout_ms = c->timeout_ms, .on_head = sse_head, .on_body = sse_body,
                         .ud = s, .idle_ms = follow ? 0 : 500,
                         .last_event_id = follow ? NULL : "0"};
  pd_ctl_response_t r;
  const char *why = NULL;
  int rc = pd_ctl_call(&c->api, &rq, &r, &why);
  if (rc < 0) {
    free(s);
    return unreachable(c, why);
  }
  if (r.status >= 400) {
    if (r.status == 404 || r.status == 405)
      fprintf(stderr, "peerctl: this peerd has no event stream (GET /v1/events/stream answered %d); "
                      "peerctl is newer than this daemon\n", r.status);
    rc = api_error(c, &r);
  } else {
    if (s->len) sse_body(s, "\n", 1);
    if (s->dlen) print_event(s);
    if (!c->json && s->count == 0 && !follow) printf("no recent events\n");
    rc = EXIT_OK;
  }
  pd_ctl_response_free(&r);
  free(s);
  return rc;
}

static int cmd_metrics(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "metrics") < 0) return EXIT_USAGE;
  pd_ctl_request_t rq = {.method = "GET", .path = "/metrics", .token = c->token,
                         .timeout_ms = c->timeout_ms};
  pd_ctl_response_t r;
  const char *why = NULL;
  int rc = pd_ctl_call(&c->api, &rq, &r, &why);
  if (rc < 0) return unreachable(c, why);
  if (r.status >= 400) rc = api_error(c, &r);
  else fwrite(r.body, 1, r.body_len, stdout);
  pd_ctl_response_free(&r);
  return rc;
}

static int cmd_save(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "save") < 0) return EXIT_USAGE;
  json_t *j;
  int rc = request(c, "POST", "/v1/save", NULL, &j);
  if (rc || !j) return rc;
  printf("saved: %" PRId64 " entries, %" PRId64 " bytes\n", i_of(j, "entries"), i_of(j, "bytes"));
  json_decref(j);
  return EXIT_OK;
}

/* ---- the DHT ---------------------------------------------------------------- */

static bool is_node_id(const char *s) {
  if (!s || strlen(s) != 40) return false;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F'))) return false;
  return true;
}

static int cmd_dht(ctl_t *c, int argc, char **argv) {
  if (operands(argc, argv, 0, "dht") < 0) return EXIT_USAGE;
  json_t *j;
  int rc = request(c, "GET", "/v1/dht", NULL, &j);
  if (rc || !j) return rc;
  json_t *tab = json_object_get(j, "table"), *lk = json_object_get(j, "lookups");
  json_t *mh = json_object_get(lk, "mean_hops");
  char hops[32];
  if (json_is_number(mh)) snprintf(hops, sizeof hops, "%.2f", json_number_value(mh));
  else snprintf(hops, sizeof hops, "-");
  printf("node %s  observed %s\n", s_of(j, "node_id"),
         json_is_string(json_object_get(j, "observed")) ? s_of(j, "observed") : "-");
  printf("table %" PRId64 " nodes (%" PRId64 " replacements), %" PRId64 " sessions; lookups %" PRId64
         " done, %" PRId64 " found, mean hops %s; %" PRId64 " records found\n",
         i_of(tab, "nodes"), i_of(tab, "replacements"), i_of(j, "sessions"), i_of(lk, "done"),
         i_of(lk, "found"), hops, i_of(j, "records_found"));
  static const char *const h[] = {"DIST", "ID", "ENDPOINT", "SEQ", "FAILS"};
  pd_ctl_table_t *t = pd_ctl_table_new(5, h);
  size_t i, k;
  json_t *b, *n;
  json_array_foreach(json_object_get(tab, "buckets"), i, b) {
    json_array_foreach(json_object_get(b, "nodes"), k, n) {
      char dist[8], id[16], seq[24], fails[8];
      snprintf(dist, sizeof dist, "%" PRId64, i_of(b, "distance"));
      pd_ctl_short_id(s_of(n, "node_id"), id, sizeof id);
      num_text(json_object_get(n, "seq"), seq, sizeof seq);
      snprintf(fails, sizeof fails, "%" PRId64, i_of(n, "fails"));
      const char *row[] = {dist, id, s_of(n, "endpoint"), seq, fails};
      pd_ctl_table_add(t, row);
    }
  }
  json_decref(j);
  return print_table(t, "the routing table is empty");
}

/* A lookup takes up to 64 requests of 1 s (3 at a time): wait long enough. */
static void lookup_timeout(ctl_t *c) {
  if (c->timeout_ms < 30000) c->timeout_ms = 30000;
}

static int cmd_lookup(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "lookup ID");
  if (first < 0) return EXIT_USAGE;
  if (!is_node_id(argv[first])) return usage("lookup: ID is a node id, 40 hex characters");
  char path[128];
  snprintf(path, sizeof path, "/v1/dht/lookup?target=%s", argv[first]);
  lookup_timeout(c);
  json_t *j;
  int rc = request(c, "GET", path, NULL, &j);
  if (rc || !j) return rc;
  printf("%s: %s in %" PRId64 " hops, %" PRId64 " queries (%" PRId64 " answered, %" PRId64
         " failed), %" PRId64 " ms\n",
         s_of(j, "target"), json_is_true(json_object_get(j, "found")) ? "found" : "not found",
         i_of(j, "hops"), i_of(j, "queries"), i_of(j, "answered"), i_of(j, "failed"), i_of(j, "time_ms"));
  static const char *const h[] = {"DIST", "ID", "DISCOVERY", "HOP", "SERVICES"};
  pd_ctl_table_t *t = pd_ctl_table_new(5, h);
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(j, "results"), i, r) {
    char dist[8], id[16], hop[8], svc[256] = "";
    snprintf(dist, sizeof dist, "%" PRId64, i_of(r, "distance"));
    pd_ctl_short_id(s_of(r, "node_id"), id, sizeof id);
    snprintf(hop, sizeof hop, "%" PRId64, i_of(r, "hop"));
    const char *name;
    json_t *v;
    size_t used = 0;
    json_object_foreach(json_object_get(r, "services"), name, v) {
      int w = snprintf(svc + used, sizeof svc - used, "%s%s=%s", used ? "," : "", name,
                       json_string_value(v) ? json_string_value(v) : "?");
      if (w < 0 || (size_t)w >= sizeof svc - used) break;
      used += (size_t)w;
    }
    const char *row[] = {dist, id, json_is_string(json_object_get(r, "discovery")) ? s_of(r, "discovery") : "-",
                         hop, used ? svc : "-"};
    pd_ctl_table_add(t, row);
  }
  json_decref(j);
  return print_table(t, "no node answered");
}

static int cmd_node(ctl_t *c, int argc, char **argv) {
  int first = operands(argc, argv, 1, "node ID");
  if (first < 0) return EXIT_USAGE;
  if (!is_node_id(argv[first])) return usage("node: ID is a node id, 40 hex characters");
  char path[128];
  snprintf(path, sizeof path, "/v1/nodes/%s", argv[first]);
  lookup_timeout(c);
  json_t *j;
  int rc = request(c, "GET", path, NULL, &j);
  if (rc || !j) return rc;
  printf("node       %s\nseq        ", s_of(j, "node_id"));
  char seq[24];
  num_text(json_object_get(j, "seq"), seq, sizeof seq);
  printf("%s\ndiscovery  %s\n", seq,
         json_is_string(json_object_get(j, "discovery")) ? s_of(j, "discovery") : "-");
  const char *name;
  json_t *v;
  json_object_foreach(json_object_get(j, "services"), name, v)
    printf("service    %s %s\n", name, json_string_value(v) ? json_string_value(v) : "?");
  json_object_foreach(json_object_get(j, "attrs"), name, v)
    printf("attr       %s=%s\n", name, json_string_value(v) ? json_string_value(v) : "");
  json_t *lk = json_object_get(j, "lookup");
  printf("source     %s", s_of(j, "source"));
  if (json_is_object(lk))
    printf(" (lookup: %s, %" PRId64 " hops, %" PRId64 " queries, %" PRId64 " ms)",
           json_is_true(json_object_get(lk, "found")) ? "found" : "not found", i_of(lk, "hops"),
           i_of(lk, "queries"), i_of(lk, "time_ms"));
  printf("\n");
  json_decref(j);
  return EXIT_OK;
}

/* ---- main ----------------------------------------------------------------- */

typedef struct command {
  const char *name;
  int (*fn)(ctl_t *c, int argc, char **argv);
} command_t;

static const command_t commands[] = {
    {"status", cmd_status},   {"peers", cmd_peers},         {"book", cmd_book},
    {"explain", cmd_explain}, {"dial", cmd_dial},           {"bans", cmd_bans},
    {"ban", cmd_ban},         {"unban", cmd_unban},         {"disconnect", cmd_disconnect},
    {"connect", cmd_connect}, {"protect", cmd_protect},     {"unprotect", cmd_unprotect},
    {"policy", cmd_policy},   {"events", cmd_events},       {"metrics", cmd_metrics},
    {"save", cmd_save},       {"dht", cmd_dht},             {"lookup", cmd_lookup},
    {"node", cmd_node},
};

enum { G_API = 2000, G_DATA_DIR, G_TOKEN_FILE, G_JSON, G_TIMEOUT, G_HELP, G_VERSION };

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"api", required_argument, NULL, G_API},         {"data-dir", required_argument, NULL, G_DATA_DIR},
      {"token-file", required_argument, NULL, G_TOKEN_FILE}, {"json", no_argument, NULL, G_JSON},
      {"timeout", required_argument, NULL, G_TIMEOUT}, {"help", no_argument, NULL, G_HELP},
      {"version", no_argument, NULL, G_VERSION},       {NULL, 0, NULL, 0}};
  ctl_t c;
  memset(&c, 0, sizeof c);
  c.api_text = PD_CTL_DEFAULT_API;
  c.timeout_ms = 10000;
  const char *data_dir = NULL, *token_file = NULL;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
    switch (ch) {
    case G_API: c.api_text = optarg; break;
    case G_DATA_DIR: data_dir = optarg; break;
    case G_TOKEN_FILE: token_file = optarg; break;
    case G_JSON: c.json = true; break;
    case G_TIMEOUT: {
      char *end = NULL;
      double t = strtod(optarg, &end);
      if (!end || *end || !(t > 0) || t > 86400) return usage("--timeout needs seconds (0 < s <= 86400)");
      c.timeout_ms = (int)(t * 1000);
      if (c.timeout_ms < 1) c.timeout_ms = 1;
      break;
    }
    case 'h':
    case G_HELP: fputs(usage_text, stdout); return EXIT_OK;
    case G_VERSION: printf("peerctl %s\n", PEERD_VERSION); return EXIT_OK;
    case ':': return usage("%s needs a value", argv[optind - 1]);
    default: return usage("unknown option %s", argv[optind - 1]);
    }
  }
  if (optind >= argc) return usage("no command");
  const char *why = NULL;
  if (pd_ctl_api_parse(c.api_text, &c.api, &why) < 0) return usage("bad --api %s: %s", c.api_text, why);
  if (token_file) {
    c.token = read_token(token_file, true);
    if (!c.token) return EXIT_USAGE;
  } else {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", data_dir ? data_dir : DEFAULT_DATA_DIR, COOKIE_FILE);
    c.token = read_token(path, false); /* only an API off loopback writes one */
  }
  c.now = (int64_t)time(NULL);
  const char *name = argv[optind];
  int rc = -1;
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(commands[i].name, name) == 0) {
      rc = commands[i].fn(&c, argc - optind, argv + optind);
      break;
    }
  }
  if (rc < 0) rc = strcmp(name, "help") == 0 ? (fputs(usage_text, stdout), EXIT_OK)
                                             : usage("unknown command: %s", name);
  free(c.token);
  fflush(stdout);
  return rc;
}
