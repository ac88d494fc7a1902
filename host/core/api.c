/* api — the control API as a pure function. See api.h and docs/api.md. */
#include "api.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "err.h"
#include "dht.h"
#include "rectable.h"
#include "self.h"
#include "shadow.h"

#ifndef PEERD_VERSION
#define PEERD_VERSION "unknown"
#endif

#define CT_JSON "application/json"
#define MAX_QUERY_PARAMS 16
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000
#define DIAL_DEFAULT 8

/* ---- small helpers ------------------------------------------------------ */

/* A JSON string from s; bytes that are not valid UTF-8 become '?'. */
static json_t *jstr(const char *s) {
  json_t *j = json_string(s);
  if (j) return j;
  size_t n = strlen(s);
  char *tmp = malloc(n + 1);
  if (!tmp) return NULL;
  for (size_t i = 0; i < n; i++) tmp[i] = ((unsigned char)s[i] < 0x80) ? s[i] : '?';
  tmp[n] = '\0';
  j = json_string(tmp);
  free(tmp);
  return j;
}

static json_t *jstr_or_null(const char *s) { return (s && *s) ? jstr(s) : json_null(); }

static json_t *jint(int64_t v) { return json_integer((json_int_t)v); }

/* Unix seconds, or null for 0 ("never"/"permanent"). */
static json_t *jtime_or_null(int64_t t) { return t ? jint(t) : json_null(); }

static void set(json_t *obj, const char *key, json_t *val) { json_object_set_new(obj, key, val); }

static void set_body(pd_api_response_t *resp, int status, const char *ct, char *body, size_t len) {
  free(resp->body);
  resp->status = status;
  resp->content_type = ct;
  resp->body = body;
  resp->body_len = len;
}

/* Serialize obj (stolen) as the response body. */
static void reply_json(pd_api_response_t *resp, int status, json_t *obj) {
  if (!obj) {
    pd_api_error(resp, 500, "out of memory");
    return;
  }
  char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
  json_decref(obj);
  if (!s) {
    pd_api_error(resp, 500, "out of memory");
    return;
  }
  size_t n = strlen(s);
  char *body = realloc(s, n + 2);
  if (!body) {
    free(s);
    pd_api_error(resp, 500, "out of memory");
    return;
  }
  body[n] = '\n';
  body[n + 1] = '\0';
  set_body(resp, status, CT_JSON, body, n + 1);
}

void pd_api_error(pd_api_response_t *resp, int status, const char *msg) {
  json_t *o = json_object();
  char *s = NULL;
  if (o) {
    set(o, "error", jstr(msg ? msg : "error"));
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
  }
  char *body = NULL;
  size_t n = 0;
  if (s) {
    n = strlen(s);
    body = realloc(s, n + 2);
    if (body) {
      body[n++] = '\n';
      body[n] = '\0';
    } else {
      free(s);
      n = 0;
    }
  }
  set_body(resp, status, CT_JSON, body, n);
}

static void errorf(pd_api_response_t *resp, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errorf(pd_api_response_t *resp, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  pd_api_error(resp, status, msg);
}

/* Reply with a JSON error object (stolen) that carries extra fields. */
static void reply_error_obj(pd_api_response_t *resp, int status, json_t *obj) {
  reply_json(resp, status, obj);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..len) into out (len + 1 bytes). '+' becomes a space
 * when plus_space. Returns the decoded length, or -1 on a bad escape or a
 * decoded NUL. */
static long pct_decode(const char *s, size_t len, int plus_space, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= len) return -1;
      int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = (char)(hi * 16 + lo);
      if (c == '\0') return -1;
      i += 2;
    } else if (c == '+' && plus_space) {
      c = ' ';
    } else if (c == '\0') {
      return -1;
    }
    out[o++] = c;
  }
  out[o] = '\0';
  return (long)o;
}

static void hex_encode(const uint8_t *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- request context ---------------------------------------------------- */

typedef struct query_param {
  char *key;
  char *val;
} query_param_t;

typedef struct ctx {
  pd_node_t *node;
  pd_book_t *book;
  const pd_api_request_t *req;
  int64_t now;
  pd_api_response_t *resp;
  const char *path; /* decoded */
  const char *rest; /* decoded remainder after a prefix route ("" if none) */
  query_param_t q[MAX_QUERY_PARAMS];
  size_t nq;
} ctx_t;

static const char *query_get(const ctx_t *c, const char *key) {
  for (size_t i = 0; i < c->nq; i++) {
    if (strcmp(c->q[i].key, key) == 0) return c->q[i].val;
  }
  return NULL;
}

/* 400 unless every query parameter is one of names (NULL-terminated). */
static bool query_allow(ctx_t *c, const char *const *names) {
  for (size_t i = 0; i < c->nq; i++) {
    bool ok = false;
    for (const char *const *n = names; n && *n; n++) {
      if (strcmp(c->q[i].key, *n) == 0) ok = true;
    }
    if (!ok) {
      errorf(c->resp, 400, "unknown query parameter: %.100s", c->q[i].key);
      return false;
    }
  }
  return true;
}

/* Parse a decimal query parameter in [min, max]; absent gives def. */
static bool query_uint(ctx_t *c, const char *key, uint64_t def, uint64_t min, uint64_t max,
                       uint64_t *out) {
  const char *v = query_get(c, key);
  if (!v) {
    *out = def;
    return true;
  }
  uint64_t x = 0;
  bool ok = *v != '\0';
  for (const char *p = v; *p && ok; p++) {
    if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10) {
      ok = false;
    } else {
      x = x * 10 + (uint64_t)(*p - '0');
    }
  }
  if (!ok || x < min || x > max) {
    errorf(c->resp, 400, "%s must be an integer from %" PRIu64 " to %" PRIu64, key, min, max);
    return false;
  }
  *out = x;
  return true;
}

/* Parse the query string raw[0..len) into c->q. */
static bool parse_query(ctx_t *c, const char *raw, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && raw[j] != '&') j++;
    if (j > i) {
      if (c->nq == MAX_QUERY_PARAMS) {
        errorf(c->resp, 400, "too many query parameters (at most %d)", MAX_QUERY_PARAMS);
        return false;
      }
      size_t eq = i;
      while (eq < j && raw[eq] != '=') eq++;
      size_t klen = eq - i;
      size_t vlen = eq < j ? j - eq - 1 : 0;
      char *k = malloc(klen + 1);
      char *v = malloc(vlen + 1);
      if (!k || !v) {
        free(k);
        free(v);
        pd_api_error(c->resp, 500, "out of memory");
        return false;
      }
      c->q[c->nq].key = k;
      c->q[c->nq].val = v;
      c->nq++;
      if (pct_decode(raw + i, klen, 1, k) < 0 ||
          pct_decode(eq < j ? raw + eq + 1 : "", vlen, 1, v) < 0) {
        pd_api_error(c->resp, 400, "bad percent-encoding in query string");
        return false;
      }
      for (size_t p = 0; p + 1 < c->nq; p++) {
        if (strcmp(c->q[p].key, k) == 0) {
          errorf(c->resp, 400, "duplicate query parameter: %.100s", k);
          return false;
        }
      }
    }
    i = j + 1;
  }
  return true;
}

/* The request body as a JSON object whose keys are all in `fields`
 * (NULL-terminated); NULL with a 400 already set otherwise. */
static json_t *body_object(ctx_t *c, const char *const *fields) {
  const pd_api_request_t *req = c->req;
  json_error_t err;
  json_t *root = json_loadb(req->body ? req->body : "", req->body ? req->body_len : 0,
                            JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    errorf(c->resp, 400, "malformed JSON: %s (line %d, column %d)", err.text, err.line,
           err.column);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    pd_api_error(c->resp, 400, "request body must be a JSON object");
    return NULL;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    bool ok = false;
    for (const char *const *f = fields; *f; f++) {
      if (strcmp(key, *f) == 0) ok = true;
    }
    if (!ok) {
      errorf(c->resp, 400, "unknown field: %.100s", key);
      json_decref(root);
      return NULL;
    }
  }
  return root;
}

/* An optional string field: true with *out NULL when absent; false (400
 * set) when present and not a string. */
static bool field_string(ctx_t *c, json_t *obj, const char *key, bool required, const char **out) {
  json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (!v) {
    if (required) {
      errorf(c->resp, 400, "missing field: %s", key);
      return false;
    }
    return true;
  }
  if (!json_is_string(v)) {
    errorf(c->resp, 400, "field \"%s\" must be a string", key);
    return false;
  }
  *out = json_string_value(v);
  return true;
}

/* An IP-literal address "[ID@]host:port"; host names are refused with
 * "host names must be resolved first". flags: PD_PARSE_*. */
static int parse_addr(const char *s, unsigned flags, pd_netaddr_t *out, bool *has_id,
                      uint8_t id[PD_NODE_ID_LEN], const char **why) {
  pd_endpoint_t ep;
  const char *w = NULL;
  int rc = pd_endpoint_parse(s, flags | PD_PARSE_ALLOW_HOSTNAME, &ep, &w);
  if (rc < 0) {
    *why = w ? w : pd_strerror(rc);
    return rc;
  }
  if (!ep.is_ip) {
    *why = "host names must be resolved first";
    return PD_EHOSTNAME;
  }
  *out = ep.addr;
  out->port = ep.port;
  if (has_id) *has_id = ep.has_id;
  if (id && ep.has_id) memcpy(id, ep.id, PD_NODE_ID_LEN);
  return 0;
}

static const char *table_name(bool in_tried) { return in_tried ? "tried" : "new"; }

static json_t *ban_json(const pd_ban_t *b) {
  char sub[PD_ADDR_STRLEN];
  if (pd_subnet_format(&b->subnet, sub, sizeof(sub)) < 0) snprintf(sub, sizeof(sub), "?");
  json_t *o = json_object();
  if (!o) return NULL;
  set(o, "subnet", jstr(sub));
  set(o, "created", jint(b->created));
  set(o, "until", jtime_or_null(b->until));
  char reason[PD_BAN_REASON_MAX];
  memcpy(reason, b->reason, sizeof(reason));
  reason[sizeof(reason) - 1] = '\0';
  set(o, "reason", jstr(reason));
  return o;
}

static bool ban_active(const pd_ban_t *b, int64_t now) { return b->until == 0 || b->until > now; }

static size_t active_bans(const pd_book_t *book, int64_t now) {
  const pd_banlist_t *bl = pd_book_bans_const(book);
  size_t n = 0;
  const pd_ban_t *b;
  for (size_t i = 0; (b = pd_banlist_get(bl, i)) != NULL; i++) n += ban_active(b, now);
  return n;
}

/* The common fields of an entry. */
static json_t *entry_json(const pd_book_info_t *e) {
  char buf[PD_ADDR_STRLEN];
  json_t *o = json_object();
  if (!o) return NULL;
  if (pd_netaddr_format(&e->addr, buf, sizeof(buf)) < 0) snprintf(buf, sizeof(buf), "?");
  set(o, "addr", jstr(buf));
  if (e->has_node_id) {
    char hex[PD_NODE_ID_HEXLEN + 1];
    hex_encode(e->node_id, PD_NODE_ID_LEN, hex);
    set(o, "id", jstr(hex));
  }
  if (pd_netaddr_format_ip(&e->source, buf, sizeof(buf)) < 0) snprintf(buf, sizeof(buf), "?");
  set(o, "source", jstr(buf));
  set(o, "table", jstr(table_name(e->in_tried)));
  return o;
}

/* ---- handlers ----------------------------------------------------------- */

static const char *const no_params[] = {NULL};

static void h_health(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  json_t *o = json_object();
  if (o) set(o, "status", jstr("ok"));
  reply_json(c->resp, 200, o);
}

/* One hook's health (status.policy.hooks.NAME; docs/api.md). */
static json_t *hook_health_json(const pd_policy_t *p, int h) {
  pd_policy_hook_health_t hh;
  pd_policy_hook_health(p, h, &hh);
  json_t *o = json_object();
  json_t *sk = json_object();
  if (!o || !sk) {
    json_decref(o);
    json_decref(sk);
    return NULL;
  }
  set(o, "provided", json_boolean(hh.state != PD_HOOK_STATE_ABSENT));
  set(o, "state", jstr(pd_policy_hook_state_name(hh.state)));
  set(o, "calls", jint((int64_t)hh.calls));
  set(o, "failures", jint((int64_t)hh.failures));
  set(o, "consecutive_failures", jint((int64_t)hh.consecutive));
  for (int w = 0; w < PD_POLICY_SKIP_COUNT; w++)
    set(sk, pd_policy_skip_name(w), jint((int64_t)hh.skipped[w]));
  set(o, "skipped", sk);
  set(o, "tripped_at", jtime_or_null(hh.tripped_at));
  if (hh.last_error_at) {
    json_t *le = json_object();
    if (le) {
      set(le, "at", jint(hh.last_error_at));
      set(le, "error", jstr(hh.last_error));
      set(le, "kind", jstr(pd_policy_reason_name(hh.last_error_reason)));
    }
    set(o, "last_error", le);
  } else {
    set(o, "last_error", json_null());
  }
  return o;
}

/* The most recent error of a policy host: {at, error, hook, kind} or null. */
static json_t *last_error_json(const pd_policy_status_t *ps) {
  if (!ps->last_error_at) return json_null();
  json_t *le = json_object();
  if (!le) return NULL;
  set(le, "at", jint(ps->last_error_at));
  set(le, "error", jstr(ps->last_error));
  set(le, "hook", ps->last_error_hook >= 0 ? jstr(pd_policy_hook_name(ps->last_error_hook))
                                           : json_null());
  set(le, "kind", jstr(ps->last_error_reason >= 0 ? pd_policy_reason_name(ps->last_error_reason)
                                                  : "load"));
  return le;
}

static json_t *policy_status_json(ctx_t *c) {
  pd_policy_status_t ps;
  pd_policy_status(pd_node_policy(c->node), &ps);
  const pd_node_config_t *cfg = pd_node_config(c->node);
  json_t *o = json_object();
  json_t *files = json_array();
  json_t *hooks = json_object();
  json_t *limits = json_object();
  if (!o || !files || !hooks || !limits) {
    json_decref(o);
    json_decref(files);
    json_decref(hooks);
    json_decref(limits);
    return NULL;
  }
  set(o, "dir", jstr_or_null(cfg->policy_dir));
  set(o, "source", cfg->policy_builtin ? jstr("builtin")
                   : cfg->policy_dir  ? jstr("dir")
                                      : json_null());
  set(o, "generation", jint((int64_t)ps.generation));
  set(o, "hash", ps.generation ? jstr(ps.hash) : json_null());
  set(o, "loaded_at", jtime_or_null(ps.loaded_at));
  for (size_t i = 0; i < ps.nfiles && i < sizeof(ps.files) / sizeof(ps.files[0]); i++) {
    ps.files[i][sizeof(ps.files[i]) - 1] = '\0';
    json_array_append_new(files, jstr(ps.files[i]));
  }
  set(o, "files", files);
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    const char *name = pd_policy_hook_name(h);
    set(hooks, name ? name : "?", hook_health_json(pd_node_policy(c->node), h));
  }
  set(o, "hooks", hooks);
  set(o, "last_error", last_error_json(&ps));
  set(o, "memory_bytes", jint((int64_t)ps.memory_bytes));
  set(limits, "instructions", jint((int64_t)cfg->policy_limits.call_instructions));
  set(limits, "timeout_ms", jint((int64_t)cfg->policy_limits.call_deadline_ms));
  set(limits, "memory_bytes", jint((int64_t)cfg->policy_limits.memory_bytes));
  set(limits, "request_instructions", jint((int64_t)cfg->policy_limits.request_instructions));
  set(limits, "request_timeout_ms", jint((int64_t)cfg->policy_limits.request_deadline_ms));
  set(limits, "trip_after", jint(PD_POLICY_TRIP_AFTER));
  set(o, "limits", limits);
  uint64_t total = 0;
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) {
      total += pd_policy_failures(pd_node_policy(c->node), h, r);
    }
  }
  set(o, "failures", jint((int64_t)total));
  pd_shadow_t *sh = pd_node_shadow(c->node);
  if (sh && pd_node_shadow_dir(c->node)) {
    pd_policy_status_t ss;
    pd_policy_status(pd_shadow_policy(sh), &ss);
    json_t *so = json_object();
    if (so) {
      set(so, "dir", jstr(pd_node_shadow_dir(c->node)));
      set(so, "generation", jint((int64_t)ss.generation));
      set(so, "hash", pd_shadow_loaded(sh) ? jstr(ss.hash) : json_null());
      set(so, "loaded_at", pd_shadow_loaded(sh) ? jtime_or_null(ss.loaded_at) : json_null());
    }
    set(o, "shadow", so);
  } else {
    set(o, "shadow", json_null());
  }
  return o;
}

static void h_status(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  const pd_node_status_t *st = pd_node_status(c->node);
  const pd_node_config_t *cfg = pd_node_config(c->node);
  json_t *o = json_object();
  json_t *book = json_object();
  json_t *conf = json_object();
  json_t *save = json_object();
  json_t *load = json_object();
  if (!o || !book || !conf || !save || !load) {
    json_decref(o);
    json_decref(book);
    json_decref(conf);
    json_decref(save);
    json_decref(load);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set(o, "version", jstr(PEERD_VERSION));
  set(o, "node_id", jstr_or_null(st->node_id));
  set(o, "listen", jstr_or_null(st->listen));
  set(o, "data_dir", jstr_or_null(cfg->data_dir));
  set(o, "uptime", jint(c->now - st->started_at));
  set(o, "started_at", jint(st->started_at));
  set(o, "now", jint(c->now));
  set(book, "new", jint((int64_t)pd_book_count_new(c->book)));
  set(book, "tried", jint((int64_t)pd_book_count_tried(c->book)));
  set(book, "banned", jint((int64_t)active_bans(c->book, c->now)));
  set(book, "collisions", jint((int64_t)pd_book_collision_count(c->book)));
  set(o, "book", book);
  set(conf, "allow_private", json_boolean(cfg->allow_private));
  set(conf, "save_interval", jint(cfg->save_interval));
  if (st->settings_json) {
    /* the driver's effective config: "file" and "settings" */
    json_t *eff = json_loads(st->settings_json, 0, NULL);
    if (eff) json_object_update(conf, eff);
    json_decref(eff);
  }
  set(o, "config", conf);
  set(save, "at", jtime_or_null(st->last_save_at));
  set(save, "ok", json_boolean(st->last_save_rc == 0));
  set(save, "error", st->last_save_rc < 0 ? jstr(st->last_save_error[0] ? st->last_save_error
                                                                       : pd_strerror(st->last_save_rc))
                                          : json_null());
  set(save, "bytes", jint((int64_t)st->last_save_bytes));
  set(save, "entries", jint((int64_t)st->last_save_entries));
  set(o, "last_save", save);
  set(load, "ok", json_boolean(!st->load_failed));
  set(load, "error", st->load_failed ? jstr(st->load_error) : json_null());
  set(load, "moved_to", jstr_or_null(st->load_moved_to));
  set(load, "entries_loaded", jint((int64_t)st->load_report.entries_loaded));
  set(load, "entries_skipped", jint((int64_t)st->load_report.entries_skipped));
  set(load, "first_skip", jstr_or_null(st->load_report.first_skip));
  set(load, "salvaged",
      st->load_report.salvage ? jint((int64_t)st->load_report.salvaged) : json_null());
  set(load, "lost", st->load_report.salvage ? jint((int64_t)st->load_report.lost) : json_null());
  set(o, "load", load);
  set(o, "policy", policy_status_json(c));
  json_t *rep = json_object();
  if (rep) {
    set(rep, "records", jint((int64_t)pd_reputation_count(pd_node_reputation(c->node))));
    set(rep, "max", jint((int64_t)pd_reputation_max(pd_node_reputation(c->node))));
  }
  set(o, "reputation", rep);
  reply_json(c->resp, 200, o);
}

/* A host name in POST /v1/book, waiting for the driver's DNS answer. */
typedef struct pending_name {
  char *orig; /* the string as the caller wrote it */
  char host[PD_HOST_MAX + 1];
  uint16_t port;
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  bool done;
  char *error;         /* resolver message, when it failed */
  pd_netaddr_t *addrs; /* resolved addresses, ports set */
  size_t naddrs;
} pending_name_t;

struct pd_api_pending {
  json_t *rejected;
  size_t added, known;
  bool has_source;
  pd_netaddr_t source;
  pending_name_t names[PD_API_MAX_NAMES];
  size_t nnames;
  char *dir;    /* POST /v1/policy/check: the directory to read */
  json_t *check; /* ... and its report (pd_api_policy_checked) */
  bool check_unreadable; /* ... the directory could not be read */
  /* GET /v1/events/stream */
  uint32_t kinds;
  bool has_since;
  uint64_t since;
  /* GET /v1/dht/lookup, GET /v1/nodes/ID: the lookup the driver waits for */
  uint64_t lookup_id;
  bool nodes;                        /* /v1/nodes/ID: one record, not the k closest */
  uint8_t target[PD_NODE_ID_LEN];
  uint8_t local[PD_RECORD_MAX];      /* /v1/nodes/ID: the best record known here */
  size_t local_len;
  const char *local_source;
};

static void pending_free(pd_api_pending_t *p) {
  if (!p) return;
  json_decref(p->rejected);
  free(p->dir);
  json_decref(p->check);
  for (size_t i = 0; i < p->nnames; i++) {
    free(p->names[i].orig);
    free(p->names[i].error);
    free(p->names[i].addrs);
  }
  free(p);
}

static void reject(json_t *rejected, const char *addr, const char *why) {
  json_t *r = json_object();
  if (!r) return;
  set(r, "addr", jstr(addr));
  set(r, "error", jstr(why));
  json_array_append_new(rejected, r);
}

/* Add one address heard from source (NULL: the address announces itself).
 * Counts it as added or known, or appends {addr: label, error} to rejected. */
static void add_one(pd_node_t *node, const pd_netaddr_t *a, const uint8_t *id,
                    const pd_netaddr_t *source, int64_t now, const char *label, size_t *added,
                    size_t *known, json_t *rejected) {
  pd_book_t *book = pd_node_book(node);
  pd_netaddr_t src = source ? *source : *a;
  src.port = 0;
  /* Gossip from a peer passes pex.lua's accept, after the book's own
   * checks (so their reasons win). */
  const char *why0 = NULL;
  if (source && pd_netaddr_check_acceptable(a, pd_book_allow_private(book), &why0) < 0) {
    reject(rejected, label, why0 ? why0 : "not acceptable");
    return;
  }
  if (source && pd_banlist_is_banned(pd_book_bans_const(book), a, now, NULL)) {
    reject(rejected, label, "banned");
    return;
  }
  if (source && !pd_node_pex_accept(node, a, id, &src, now)) {
    reject(rejected, label, "refused by pex policy");
    return;
  }
  bool was_known = pd_book_find(book, a) != PD_BOOK_NO_ID;
  const char *why = NULL;
  int rc = pd_book_add(book, a, id, now, &src, 0, now, &why);
  if (rc == PD_EBANNED) {
    why = "banned";
  } else if (rc >= 0 && was_known) {
    (*known)++;
    return;
  } else if (rc == 1) {
    /* The node's own addresses are service endpoints: the node may dial
     * them (GET /v1/dial), peerd never does. */
    pd_book_set_service_only(book, pd_book_find(book, a), true);
    (*added)++;
    return;
  } else if (rc == 0) {
    why = "new-table slot taken by another address";
  }
  reject(rejected, label, why ? why : pd_strerror(rc));
}

static void book_post_reply(pd_api_response_t *resp, size_t added, size_t known,
                            json_t *rejected, json_t *resolved) {
  json_t *res = json_object();
  if (!res) {
    json_decref(rejected);
    json_decref(resolved);
    pd_api_error(resp, 500, "out of memory");
    return;
  }
  set(res, "added", jint((int64_t)added));
  set(res, "known", jint((int64_t)known));
  set(res, "rejected", rejected);
  if (resolved) set(res, "resolved", resolved);
  reply_json(resp, 200, res);
}

static void h_book_post(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"addrs", "source", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  json_t *addrs = json_object_get(root, "addrs");
  const char *source_s = NULL;
  pd_api_pending_t *p = NULL;
  if (!addrs) {
    pd_api_error(c->resp, 400, "missing field: addrs");
    goto out;
  }
  if (!json_is_array(addrs)) {
    pd_api_error(c->resp, 400, "field \"addrs\" must be an array of strings");
    goto out;
  }
  size_t n = json_array_size(addrs);
  if (n > PD_API_MAX_ADDRS) {
    errorf(c->resp, 413, "too many addresses: %zu > %d", n, PD_API_MAX_ADDRS);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!json_is_string(json_array_get(addrs, i))) {
      errorf(c->resp, 400, "field \"addrs\" must be an array of strings (addrs[%zu] is not)", i);
      goto out;
    }
  }
  if (!field_string(c, root, "source", false, &source_s)) goto out;
  p = calloc(1, sizeof *p);
  if (!p || !(p->rejected = json_array())) {
    pd_api_error(c->resp, 500, "out of memory");
    goto out;
  }
  if (source_s) {
    const char *why = NULL;
    if (pd_netaddr_parse_ip(source_s, &p->source, &why) < 0 &&
        parse_addr(source_s, PD_PARSE_PORT_OPTIONAL, &p->source, NULL, NULL, &why) < 0) {
      errorf(c->resp, 400, "field \"source\": %s", why ? why : "bad address");
      goto out;
    }
    p->source.port = 0;
    p->has_source = true;
  }
  for (size_t i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(addrs, i));
    pd_endpoint_t ep;
    const char *why = NULL;
    int rc = pd_endpoint_parse(s, PD_PARSE_ALLOW_ID | PD_PARSE_ALLOW_HOSTNAME, &ep, &why);
    if (rc < 0) {
      reject(p->rejected, s, why ? why : pd_strerror(rc));
    } else if (ep.is_ip) {
      pd_netaddr_t a = ep.addr;
      a.port = ep.port;
      add_one(c->node, &a, ep.has_id ? ep.id : NULL, p->has_source ? &p->source : NULL, c->now,
              s, &p->added, &p->known, p->rejected);
    } else if (p->nnames == PD_API_MAX_NAMES) {
      char msg[96];
      snprintf(msg, sizeof msg, "too many host names in one call (max %d)", PD_API_MAX_NAMES);
      reject(p->rejected, s, msg);
    } else {
      pending_name_t *pn = &p->names[p->nnames];
      if (!(pn->orig = strdup(s))) {
        pd_api_error(c->resp, 500, "out of memory");
        goto out;
      }
      p->nnames++;
      memcpy(pn->host, ep.host, sizeof pn->host);
      pn->port = ep.port;
      pn->has_id = ep.has_id;
      memcpy(pn->id, ep.id, sizeof pn->id);
    }
  }
  if (p->nnames > 0) {
    /* The driver resolves the names, then pd_api_complete finishes. */
    c->resp->status = 200;
    c->resp->action = PD_API_ACTION_RESOLVE;
    c->resp->pending = p;
    p = NULL;
  } else {
    book_post_reply(c->resp, p->added, p->known, p->rejected, NULL);
    p->rejected = NULL;
  }
out:
  pending_free(p);
  json_decref(root);
}

size_t pd_api_pending_names(const pd_api_response_t *resp) {
  return (resp && resp->pending) ? resp->pending->nnames : 0;
}

const char *pd_api_pending_name(const pd_api_response_t *resp, size_t i, uint16_t *port) {
  if (i >= pd_api_pending_names(resp)) return NULL;
  if (port) *port = resp->pending->names[i].port;
  return resp->pending->names[i].host;
}

void pd_api_resolved(pd_api_response_t *resp, size_t i, const pd_netaddr_t *addrs, size_t n,
                     const char *error) {
  if (i >= pd_api_pending_names(resp)) return;
  pending_name_t *pn = &resp->pending->names[i];
  if (pn->done) return;
  pn->done = true;
  if (error || n == 0) {
    pn->error = strdup(error ? error : "no addresses");
    return;
  }
  pn->addrs = malloc(n * sizeof *addrs);
  if (!pn->addrs) {
    pn->error = strdup("out of memory");
    return;
  }
  memcpy(pn->addrs, addrs, n * sizeof *addrs);
  pn->naddrs = n;
}

/* Add what the driver resolved and render the POST /v1/book answer. */
static void complete_resolve(pd_node_t *n, int64_t now, pd_api_response_t *resp) {
  pd_api_pending_t *p = resp->pending;
  json_t *resolved = json_array();
  for (size_t i = 0; p && i < p->nnames; i++) {
    pending_name_t *pn = &p->names[i];
    if (!pn->done || pn->error) {
      char msg[256];
      snprintf(msg, sizeof msg, "could not resolve host name: %s",
               pn->error ? pn->error : "not resolved");
      reject(p->rejected, pn->orig, msg);
      continue;
    }
    json_t *r = json_object();
    json_t *list = json_array();
    for (size_t k = 0; k < pn->naddrs; k++) {
      char txt[PD_ADDR_STRLEN];
      if (pd_netaddr_format(&pn->addrs[k], txt, sizeof txt) < 0) continue;
      json_array_append_new(list, jstr(txt));
      add_one(n, &pn->addrs[k], pn->has_id ? pn->id : NULL,
              p->has_source ? &p->source : NULL, now, txt, &p->added, &p->known, p->rejected);
    }
    if (r) {
      set(r, "name", jstr(pn->orig));
      set(r, "addrs", list);
      json_array_append_new(resolved, r);
    } else {
      json_decref(list);
    }
  }
  if (!p) {
    json_decref(resolved);
    pd_api_error(resp, 500, "internal error");
    return;
  }
  book_post_reply(resp, p->added, p->known, p->rejected, resolved);
  p->rejected = NULL;
}

static bool parse_table(ctx_t *c, enum pd_table *t) {
  const char *v = query_get(c, "table");
  if (!v || strcmp(v, "all") == 0) {
    *t = PD_TABLE_ANY;
  } else if (strcmp(v, "new") == 0) {
    *t = PD_TABLE_NEW;
  } else if (strcmp(v, "tried") == 0) {
    *t = PD_TABLE_TRIED;
  } else {
    pd_api_error(c->resp, 400, "table must be new, tried or all");
    return false;
  }
  return true;
}

typedef struct book_filter {
  bool has_group;
  uint8_t group[PD_GROUP_MAX];
  size_t glen;
  int banned; /* -1 any, 0 not banned, 1 banned */
  bool has_source;
  pd_netaddr_t source;
  bool has_min_score;
  double min_score;
} book_filter_t;
static bool parse_book_filter(ctx_t *c, book_filter_t *f);
static bool book_filter_any(const book_filter_t *f);
static void book_list_filtered(ctx_t *c, enum pd_table t, const book_filter_t *f, size_t limit,
                               size_t offset);

static void h_book_list(ctx_t *c) {
  static const char *const params[] = {"table", "limit",  "offset",    "group",
                                       "banned", "source", "min_score", NULL};
  if (!query_allow(c, params)) return;
  enum pd_table t;
  uint64_t limit, offset;
  if (!parse_table(c, &t)) return;
  if (!query_uint(c, "limit", LIST_LIMIT_DEFAULT, 0, LIST_LIMIT_MAX, &limit)) return;
  if (!query_uint(c, "offset", 0, 0, UINT32_MAX, &offset)) return;
  book_filter_t filter;
  if (!parse_book_filter(c, &filter)) return;
  if (book_filter_any(&filter)) {
    book_list_filtered(c, t, &filter, (size_t)limit, (size_t)offset);
    return;
  }
  uint32_t ids[LIST_LIMIT_MAX];
  size_t total = 0;
  size_t got = pd_book_list(c->book, t, (size_t)offset, (size_t)limit, ids, &total);
  json_t *o = json_object();
  json_t *entries = json_array();
  if (!o || !entries) {
    json_decref(o);
    json_decref(entries);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set(o, "table", jstr(t == PD_TABLE_NEW ? "new" : t == PD_TABLE_TRIED ? "tried" : "all"));
  set(o, "total", jint((int64_t)total));
  set(o, "offset", jint((int64_t)offset));
  set(o, "limit", jint((int64_t)limit));
  for (size_t i = 0; i < got; i++) {
    pd_book_info_t e;
    if (pd_book_info(c->book, ids[i], &e) < 0) continue;
    json_t *j = entry_json(&e);
    if (!j) continue;
    set(j, "time", jint(e.time));
    set(j, "last_try", jint(e.last_try));
    set(j, "last_success", jint(e.last_success));
    set(j, "attempts", jint(e.attempts));
    set(j, "refs", jint(e.refcount));
    json_array_append_new(entries, j);
  }
  set(o, "entries", entries);
  reply_json(c->resp, 200, o);
}

static json_t *ban_state(ctx_t *c, const pd_netaddr_t *a, json_t *o) {
  pd_ban_t ban;
  bool banned = pd_banlist_is_banned(pd_book_bans_const(c->book), a, c->now, &ban);
  set(o, "banned", json_boolean(banned));
  set(o, "ban", banned ? ban_json(&ban) : json_null());
  return o;
}

static json_t *reputation_json(const pd_peer_view_t *v) {
  json_t *r = json_object();
  if (!r) return NULL;
  set(r, "value", json_real(v->reputation));
  set(r, "misbehaviours", jint(v->misbehaviours));
  set(r, "latency_ms", v->latency_ms >= 0 ? json_real(v->latency_ms) : json_null());
  set(r, "first_seen", jtime_or_null(v->first_seen));
  return r;
}

/* The new-table slots an entry holds: [{bucket, position}, ...] into refs. */
static void new_refs_json(pd_book_t *book, uint32_t id, json_t *refs) {
  uint16_t slots[PD_BOOK_NEW_BUCKETS_PER_ADDRESS];
  int nr = pd_book_new_refs(book, id, slots);
  for (int i = 0; i < nr; i++) {
    json_t *r = json_object();
    if (!r) continue;
    set(r, "bucket", jint(slots[i] / PD_BOOK_BUCKET_SIZE));
    set(r, "position", jint(slots[i] % PD_BOOK_BUCKET_SIZE));
    json_array_append_new(refs, r);
  }
}

static void h_book_get(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_netaddr_t a;
  const char *why = NULL;
  if (parse_addr(c->rest, PD_PARSE_ALLOW_ID, &a, NULL, NULL, &why) < 0) {
    errorf(c->resp, 400, "bad address: %s", why);
    return;
  }
  char buf[PD_ADDR_STRLEN];
  uint8_t group[PD_GROUP_MAX];
  size_t glen = pd_netaddr_group(&a, pd_book_allow_private(c->book), group);
  char ghex[2 * PD_GROUP_MAX + 1];
  hex_encode(group, glen, ghex);
  uint32_t id = pd_book_find(c->book, &a);
  pd_book_info_t e;
  if (id == PD_BOOK_NO_ID || pd_book_info(c->book, id, &e) < 0) {
    json_t *o = json_object();
    if (o) {
      if (pd_netaddr_format(&a, buf, sizeof(buf)) < 0) snprintf(buf, sizeof(buf), "?");
      set(o, "error", jstr("not in book"));
      set(o, "addr", jstr(buf));
      set(o, "group", jstr(ghex));
      ban_state(c, &a, o);
    }
    reply_error_obj(c->resp, 404, o);
    return;
  }
  json_t *o = entry_json(&e);
  json_t *refs = json_array();
  if (!o || !refs) {
    json_decref(o);
    json_decref(refs);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set(o, "bucket", jint(e.bucket));
  set(o, "position", jint(e.position));
  if (!e.in_tried) new_refs_json(c->book, id, refs);
  set(o, "refs", refs);
  set(o, "attempts", jint(e.attempts));
  set(o, "last_try", jint(e.last_try));
  set(o, "last_success", jint(e.last_success));
  set(o, "last_count_attempt", jint(e.last_count_attempt));
  set(o, "time", jint(e.time));
  set(o, "terrible", json_boolean(pd_book_is_terrible(c->book, id, c->now)));
  set(o, "chance", json_real(pd_book_chance(c->book, id, c->now)));
  set(o, "group", jstr(ghex));
  ban_state(c, &a, o);
  pd_peer_view_t v;
  pd_node_peer_view(c->node, &e.addr, c->now, &v);
  set(o, "score", json_real(pd_node_score(c->node, &v, c->now)));
  set(o, "reputation", reputation_json(&v));
  set(o, "private", json_boolean(v.private_peer));
  reply_json(c->resp, 200, o);
}

static json_t *attrs_json(const pd_record_t *r) {
  json_t *o = json_object();
  for (unsigned i = 0; o && r && i < r->nattrs; i++) set(o, r->attrs[i].key, jstr(r->attrs[i].value));
  return o;
}

/* GET /v1/dial?n=K[&service=NAME]: what the node dials — service endpoints
 * only (a record's, or an address the node gave), never a peerd's
 * discovery endpoint. The selection is asked for more than K, since some
 * picks have nothing to hand out. */
static void h_dial(ctx_t *c) {
  static const char *const params[] = {"n", "service", "outbound", NULL};
  if (!query_allow(c, params)) return;
  uint64_t n;
  if (!query_uint(c, "n", DIAL_DEFAULT, 1, PD_API_MAX_DIAL, &n)) return;
  const char *service = query_get(c, "service");
  if (service && !pd_record_name_ok(service)) {
    pd_api_error(c->resp, 400, "service must be 1..16 of [a-z0-9._-], starting with a letter or digit");
    return;
  }
  /* outbound=K: the node's own outbound connections, for select.lua's ctx */
  pd_policy_select_ctx_t sctx = {.outbound = -1, .max_outbound = -1};
  if (query_get(c, "outbound")) {
    uint64_t ob;
    if (!query_uint(c, "outbound", 0, 0, 100000, &ob)) return;
    sctx.outbound = (int32_t)ob;
  }
  size_t ask = (size_t)n * 3 + 8;
  if (ask > PD_API_MAX_DIAL * 3 + 8) ask = PD_API_MAX_DIAL * 3 + 8;
  uint32_t *ids = malloc(ask * sizeof *ids);
  pd_netaddr_t *given = malloc((size_t)n * sizeof *given);
  json_t *o = json_object();
  json_t *peers = json_array();
  if (!ids || !given || !o || !peers) {
    free(ids);
    free(given);
    json_decref(o);
    json_decref(peers);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  bool by_policy = false;
  size_t got = pd_node_dial_ctx(c->node, ask, &sctx, c->now, ids, &by_policy);
  size_t w = 0;
  for (size_t i = 0; i < got && w < n; i++) {
    pd_book_info_t e;
    pd_node_endpoint_t ep;
    if (pd_book_info(c->book, ids[i], &e) < 0) continue;
    if (!pd_node_dial_endpoint(c->node, ids[i], service, &ep)) continue;
    bool dup = false;
    for (size_t k = 0; k < w && !dup; k++) dup = pd_netaddr_equal(&given[k], &ep.addr);
    if (dup) continue;
    given[w++] = ep.addr;
    json_t *j = entry_json(&e);
    if (!j) continue;
    json_object_del(j, "source");
    char buf[PD_ADDR_STRLEN];
    if (pd_netaddr_format(&ep.addr, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
    set(j, "addr", jstr(buf));
    if (ep.proven) {
      char hex[PD_NODE_ID_HEXLEN + 1], peer[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
      hex_encode(ep.node_id, PD_NODE_ID_LEN, hex);
      set(j, "node_id", jstr(hex));
      snprintf(peer, sizeof peer, "%s@%s", hex, buf);
      set(j, "peer", jstr(peer));
      set(j, "service", jstr(ep.service));
      set(j, "attrs", attrs_json(&ep.rec));
      set(j, "seq", json_integer((json_int_t)ep.rec.seq));
    } else {
      if (ep.has_id) {
        char hex[PD_NODE_ID_HEXLEN + 1], peer[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
        hex_encode(ep.node_id, PD_NODE_ID_LEN, hex);
        snprintf(peer, sizeof peer, "%s@%s", hex, buf);
        set(j, "peer", jstr(peer)); /* the id as the node gave it, not proven */
      }
      set(j, "service", json_null());
      set(j, "attrs", json_object());
    }
    set(j, "peerd", json_boolean(ep.peerd));
    if (pd_netaddr_format(&e.addr, buf, sizeof buf) >= 0) set(j, "entry", jstr(buf));
    set(j, "attempts", jint(e.attempts));
    set(j, "last_try", jint(e.last_try));
    set(j, "last_success", jint(e.last_success));
    pd_peer_view_t v;
    pd_node_peer_view(c->node, &e.addr, c->now, &v);
    set(j, "score", json_real(pd_node_score(c->node, &v, c->now)));
    json_array_append_new(peers, j);
  }
  free(ids);
  free(given);
  set(o, "peers", peers);
  set(o, "selected_by", jstr(by_policy ? "policy" : "default"));
  reply_json(c->resp, 200, o);
}

static bool event_from_name(const char *s, enum pd_metrics_event *ev) {
  for (int i = 0; i < PD_METRICS_EV_COUNT; i++) {
    if (strcmp(s, pd_metrics_event_name((enum pd_metrics_event)i)) == 0) {
      *ev = (enum pd_metrics_event)i;
      return true;
    }
  }
  return false;
}

static void h_events(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"addr", "event", "reason", "latency_ms", "direction",
                                       "node_id", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  const char *addr_s, *event_s, *reason_s, *dir_s, *id_s;
  json_t *latency = json_object_get(root, "latency_ms");
  double lat_ms = -1;
  if (latency) {
    if (!json_is_number(latency) || json_number_value(latency) < 0 ||
        json_number_value(latency) > 1e9) {
      pd_api_error(c->resp, 400, "field \"latency_ms\" must be a number from 0 to 1e9");
      goto out;
    }
    lat_ms = json_number_value(latency);
  }
  if (!field_string(c, root, "addr", false, &addr_s) ||
      !field_string(c, root, "event", true, &event_s) ||
      !field_string(c, root, "reason", false, &reason_s) ||
      !field_string(c, root, "direction", false, &dir_s) ||
      !field_string(c, root, "node_id", false, &id_s)) {
    goto out;
  }
  if (!addr_s && !id_s) {
    pd_api_error(c->resp, 400, "missing field: addr or node_id");
    goto out;
  }
  bool inbound = false;
  if (dir_s && strcmp(dir_s, "inbound") == 0) {
    inbound = true;
  } else if (dir_s && strcmp(dir_s, "outbound") != 0) {
    errorf(c->resp, 400, "field \"direction\" must be \"outbound\" or \"inbound\", got %.32s", dir_s);
    goto out;
  }
  uint8_t nid[PD_NODE_ID_LEN];
  if (id_s && (strlen(id_s) != PD_NODE_ID_HEXLEN || pd_node_id_parse(id_s, strlen(id_s), nid) < 0)) {
    pd_api_error(c->resp, 400, "field \"node_id\" must be 40 hex characters");
    goto out;
  }
  enum pd_metrics_event ev;
  if (!event_from_name(event_s, &ev)) {
    errorf(c->resp, 400,
           "unknown event: %.64s (expected attempt, connected, good, failed, misbehaved or "
           "disconnected)",
           event_s);
    goto out;
  }
  pd_netaddr_t a;
  memset(&a, 0, sizeof a);
  const char *why = NULL;
  if (addr_s && parse_addr(addr_s, PD_PARSE_ALLOW_ID, &a, NULL, NULL, &why) < 0) {
    errorf(c->resp, 400, "field \"addr\": %s", why);
    goto out;
  }
  /* The entry the report is about: the address itself, the node of a
   * record naming it as a service endpoint, or the node by id. */
  uint32_t eid = pd_node_find_peer(c->node, addr_s ? &a : NULL, id_s ? nid : NULL);
  pd_book_info_t target;
  if (eid != PD_BOOK_NO_ID && pd_book_info(c->book, eid, &target) == 0) {
    a = target.addr;
  } else if (!addr_s) {
    json_t *e = json_object();
    if (e) {
      set(e, "error", jstr("not in book"));
      set(e, "node_id", jstr(id_s));
      set(e, "event", jstr(event_s));
    }
    reply_error_obj(c->resp, 404, e);
    goto out;
  }
  char abuf[PD_ADDR_STRLEN];
  if (pd_netaddr_format(&a, abuf, sizeof(abuf)) < 0) snprintf(abuf, sizeof(abuf), "?");
  json_t *o = json_object();
  if (!o) {
    pd_api_error(c->resp, 500, "out of memory");
    goto out;
  }
  set(o, "ok", json_true());
  set(o, "addr", jstr(abuf));
  set(o, "event", jstr(event_s));
  set(o, "direction", jstr(inbound ? "inbound" : "outbound"));

  pd_node_event_result_t r;
  int rc = pd_node_event_dir(c->node, &a, ev, reason_s, inbound, c->now, &r);
  if (rc == PD_ENOENT) {
    json_decref(o);
    json_t *e = json_object();
    if (e) {
      set(e, "error", jstr("not in book"));
      set(e, "addr", jstr(abuf));
      set(e, "event", jstr(event_s));
    }
    reply_error_obj(c->resp, 404, e);
    goto out;
  }
  if (rc < 0) {
    json_decref(o);
    errorf(c->resp, 500, "%s failed: %s", event_s, pd_strerror(rc));
    goto out;
  }
  if (latency) pd_reputation_set_latency(pd_node_reputation(c->node), &a, lat_ms, c->now);
  pd_book_info_t after;
  uint32_t id2 = pd_book_find(c->book, &a);
  bool still = id2 != PD_BOOK_NO_ID && pd_book_info(c->book, id2, &after) == 0;
  set(o, "table", still ? jstr(table_name(after.in_tried)) : json_null());
  if (r.book_result) set(o, "result", jstr(r.book_result));
  set(o, "reputation", json_real(r.reputation));
  set(o, "misbehaviours", jint(r.misbehaviours));
  set(o, "decided_by", jstr(r.by_policy ? "policy" : "default"));
  if (r.banned) {
    char sbuf[PD_ADDR_STRLEN];
    if (pd_subnet_format(&r.ban_subnet, sbuf, sizeof(sbuf)) < 0) snprintf(sbuf, sizeof(sbuf), "?");
    set(o, "banned", jstr(sbuf));
    set(o, "until", jtime_or_null(r.ban_until));
    json_t *ban = json_object();
    if (ban) {
      set(ban, "subnet", jstr(sbuf));
      set(ban, "until", jtime_or_null(r.ban_until));
      set(ban, "reason", jstr(r.ban_reason));
    }
    set(o, "ban", ban);
  } else {
    set(o, "ban", json_null());
  }
  pd_metrics_count_event(pd_node_metrics(c->node), ev);
  reply_json(c->resp, 200, o);
out:
  json_decref(root);
}

static void h_bans_list(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  const pd_banlist_t *bl = pd_book_bans_const(c->book);
  json_t *o = json_object();
  json_t *arr = json_array();
  if (!o || !arr) {
    json_decref(o);
    json_decref(arr);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  const pd_ban_t *b;
  for (size_t i = 0; (b = pd_banlist_get(bl, i)) != NULL; i++) {
    if (ban_active(b, c->now)) json_array_append_new(arr, ban_json(b));
  }
  set(o, "bans", arr);
  reply_json(c->resp, 200, o);
}

static void h_bans_post(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"target", "duration", "reason", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  const char *target_s, *reason_s;
  if (!field_string(c, root, "target", true, &target_s) ||
      !field_string(c, root, "reason", false, &reason_s)) {
    goto out;
  }
  int64_t secs = pd_node_config(c->node)->default_ban_secs;
  if (secs < 0) secs = 0;
  json_t *d = json_object_get(root, "duration");
  if (d) {
    if (!json_is_integer(d) || json_integer_value(d) < 0) {
      pd_api_error(c->resp, 400, "field \"duration\" must be a non-negative integer (seconds)");
      goto out;
    }
    secs = (int64_t)json_integer_value(d);
    if (c->now > 0 && secs > INT64_MAX - c->now) {
      pd_api_error(c->resp, 400, "field \"duration\" is too large");
      goto out;
    }
  }
  pd_subnet_t sn;
  const char *why = NULL;
  if (pd_subnet_parse(target_s, &sn, &why) < 0) {
    errorf(c->resp, 400, "field \"target\": %s", why ? why : "bad address or subnet");
    goto out;
  }
  int64_t until = secs > 0 ? c->now + secs : 0;
  char reason[PD_BAN_REASON_MAX];
  pd_node_copy_text(reason, sizeof(reason), reason_s ? reason_s : "");
  int rc = pd_banlist_add(pd_book_bans(c->book), &sn, c->now, until, reason);
  if (rc < 0) {
    errorf(c->resp, 500, "could not ban: %s", pd_strerror(rc));
    goto out;
  }
  if (pd_event_sink_on(pd_node_events(c->node))) {
    pd_event_t ev;
    pd_event_init(&ev, PD_EV_BAN, c->now * 1000);
    pd_event_subnet(&ev, "subnet", &sn);
    pd_event_str(&ev, "by", "api");
    pd_event_str(&ev, "reason", reason);
    pd_event_time(&ev, "until", until);
    pd_event_bool(&ev, "replaced", rc == 1);
    pd_node_emit(c->node, &ev);
  }
  pd_metrics_count_ban(pd_node_metrics(c->node), PD_METRICS_BAN_API);
  char sbuf[PD_ADDR_STRLEN];
  if (pd_subnet_format(&sn, sbuf, sizeof(sbuf)) < 0) snprintf(sbuf, sizeof(sbuf), "?");
  json_t *o = json_object();
  if (o) {
    set(o, "banned", jstr(sbuf));
    set(o, "until", jtime_or_null(until));
    set(o, "replaced", json_boolean(rc == 1));
    set(o, "reason", jstr(reason));
  }
  reply_json(c->resp, 200, o);
out:
  json_decref(root);
}

static void unban(ctx_t *c, const char *target) {
  pd_subnet_t sn;
  const char *why = NULL;
  if (pd_subnet_parse(target, &sn, &why) < 0) {
    errorf(c->resp, 400, "bad target: %s", why ? why : "bad address or subnet");
    return;
  }
  char sbuf[PD_ADDR_STRLEN];
  if (pd_subnet_format(&sn, sbuf, sizeof(sbuf)) < 0) snprintf(sbuf, sizeof(sbuf), "?");
  pd_ban_t was;
  bool had = false;
  const pd_ban_t *bp;
  for (size_t i = 0; (bp = pd_banlist_get(pd_book_bans_const(c->book), i)) != NULL; i++) {
    if (bp->subnet.prefix == sn.prefix && memcmp(bp->subnet.ip, sn.ip, 16) == 0) {
      was = *bp;
      had = true;
      break;
    }
  }
  int rc = pd_banlist_remove(pd_book_bans(c->book), &sn);
  if (rc == 0 && pd_event_sink_on(pd_node_events(c->node))) {
    pd_event_t ev;
    pd_event_init(&ev, PD_EV_UNBAN, c->now * 1000);
    pd_event_subnet(&ev, "subnet", &sn);
    pd_event_str(&ev, "by", "api");
    if (had) pd_event_str(&ev, "reason", was.reason);
    if (had) pd_event_time(&ev, "until", was.until);
    pd_node_emit(c->node, &ev);
  }
  json_t *o = json_object();
  if (rc == PD_ENOENT) {
    if (o) {
      set(o, "error", jstr("not banned"));
      set(o, "target", jstr(sbuf));
    }
    reply_error_obj(c->resp, 404, o);
    return;
  }
  if (rc < 0) {
    json_decref(o);
    errorf(c->resp, 500, "could not unban: %s", pd_strerror(rc));
    return;
  }
  if (o) set(o, "unbanned", jstr(sbuf));
  reply_json(c->resp, 200, o);
}

static void h_bans_delete_query(ctx_t *c) {
  static const char *const params[] = {"target", NULL};
  if (!query_allow(c, params)) return;
  const char *t = query_get(c, "target");
  if (!t) {
    pd_api_error(c->resp, 400, "missing query parameter: target");
    return;
  }
  unban(c, t);
}

static void h_bans_delete_path(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  unban(c, c->rest);
}

static void h_save(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  json_t *o = json_object();
  if (o) set(o, "saving", json_true());
  reply_json(c->resp, 200, o);
  if (c->resp->status == 200) c->resp->action = PD_API_ACTION_SAVE;
}

/* GET /v1/pex?peer=ADDR&n=K: what to send `peer` when it asks for addresses. */
static void h_pex(ctx_t *c) {
  static const char *const params[] = {"peer", "n", NULL};
  if (!query_allow(c, params)) return;
  const char *peer_s = query_get(c, "peer");
  if (!peer_s) {
    pd_api_error(c->resp, 400, "missing query parameter: peer");
    return;
  }
  pd_netaddr_t to;
  const char *why = NULL;
  if (pd_netaddr_parse_ip(peer_s, &to, &why) < 0 &&
      parse_addr(peer_s, PD_PARSE_ALLOW_ID | PD_PARSE_PORT_OPTIONAL, &to, NULL, NULL, &why) < 0) {
    errorf(c->resp, 400, "query parameter peer: %s", why ? why : "bad address");
    return;
  }
  uint64_t n;
  if (!query_uint(c, "n", 0, 1, PD_API_MAX_PEX, &n)) return;
  bool explicit_n = query_get(c, "n") != NULL;
  size_t max = explicit_n ? (size_t)n : PD_BOOK_GETADDR_MAX;
  uint32_t *ids = malloc(PD_API_MAX_PEX * sizeof *ids);
  json_t *o = json_object();
  json_t *arr = json_array();
  if (!ids || !o || !arr) {
    free(ids);
    json_decref(o);
    json_decref(arr);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  size_t got = pd_node_pex_sample(c->node, &to, max, !explicit_n, c->now, ids, PD_API_MAX_PEX);
  for (size_t i = 0; i < got; i++) {
    pd_book_info_t e;
    if (pd_book_info(c->book, ids[i], &e) < 0) continue;
    char buf[PD_ADDR_STRLEN + PD_NODE_ID_HEXLEN + 1];
    size_t off = 0;
    if (e.has_node_id) {
      hex_encode(e.node_id, PD_NODE_ID_LEN, buf);
      buf[PD_NODE_ID_HEXLEN] = '@';
      off = PD_NODE_ID_HEXLEN + 1;
    }
    if (pd_netaddr_format(&e.addr, buf + off, sizeof(buf) - off) < 0) continue;
    json_array_append_new(arr, jstr(buf));
  }
  free(ids);
  set(o, "addrs", arr);
  reply_json(c->resp, 200, o);
}

static void h_policy_reload(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  json_t *o = json_object();
  if (o) set(o, "reloading", json_true());
  reply_json(c->resp, 200, o);
  if (c->resp->status == 200) c->resp->action = PD_API_ACTION_RELOAD;
}

static void h_metrics(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  const pd_node_status_t *st = pd_node_status(c->node);
  pd_metrics_gauges_t g = {
      .uptime = c->now - st->started_at,
      .book_new = pd_book_count_new(c->book),
      .book_tried = pd_book_count_tried(c->book),
      .bans = active_bans(c->book, c->now),
      .collisions = pd_book_collision_count(c->book),
      .book_memory = pd_book_memory(c->book),
      .records = pd_rectable_count(pd_node_records(c->node)),
      .records_memory = pd_rectable_memory(pd_node_records(c->node)),
      .self_seq = pd_node_self(c->node) ? pd_self_record(pd_node_self(c->node))->seq : 0,
  };
  pd_policy_t *pol = pd_node_policy(c->node);
  uint64_t failures[PD_HOOK_COUNT * PD_POLICY_REASON_COUNT];
  const char *hn[PD_HOOK_COUNT], *rn[PD_POLICY_REASON_COUNT];
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    hn[h] = pd_policy_hook_name(h);
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) {
      failures[h * PD_POLICY_REASON_COUNT + r] = pd_policy_failures(pol, h, r);
    }
  }
  for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) {
    rn[r] = pd_policy_reason_name(r);
  }
  pd_policy_status_t ps;
  pd_policy_status(pol, &ps);
  g.policy_hooks = PD_HOOK_COUNT;
  g.policy_reasons = PD_POLICY_REASON_COUNT;
  g.policy_hook_names = hn;
  g.policy_reason_names = rn;
  g.policy_failures = failures;
  g.policy_memory = ps.memory_bytes;
  g.policy_generation = ps.generation;
  /* policies under load */
  enum { NB = PD_POLICY_LATENCY_BUCKETS + 1 };
  uint64_t tripped[PD_HOOK_COUNT], consec[PD_HOOK_COUNT];
  uint64_t skipped[PD_HOOK_COUNT * PD_POLICY_SKIP_COUNT], buckets[PD_HOOK_COUNT * NB];
  uint64_t shadow_calls[PD_HOOK_COUNT * PD_SHADOW_RESULT_COUNT];
  double sums[PD_HOOK_COUNT];
  const char *skn[PD_POLICY_SKIP_COUNT], *srn[PD_SHADOW_RESULT_COUNT];
  pd_shadow_t *sh = pd_node_shadow(c->node);
  for (int w = 0; w < PD_POLICY_SKIP_COUNT; w++) skn[w] = pd_policy_skip_name(w);
  for (int r = 0; r < PD_SHADOW_RESULT_COUNT; r++) srn[r] = pd_shadow_result_name(r);
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    pd_policy_hook_health_t hh;
    pd_policy_hook_health(pol, h, &hh);
    tripped[h] = hh.state == PD_HOOK_STATE_TRIPPED;
    consec[h] = hh.consecutive;
    for (int w = 0; w < PD_POLICY_SKIP_COUNT; w++) skipped[h * PD_POLICY_SKIP_COUNT + w] = hh.skipped[w];
    pd_policy_latency(pol, h, &buckets[h * NB], &sums[h]);
    for (int r = 0; r < PD_SHADOW_RESULT_COUNT; r++)
      shadow_calls[h * PD_SHADOW_RESULT_COUNT + r] = pd_shadow_count(sh, h, r, true);
  }
  pd_metrics_policy_load_t pl = {
      .tripped = tripped,
      .consecutive = consec,
      .nskip = PD_POLICY_SKIP_COUNT,
      .skip_names = skn,
      .skipped = skipped,
      .nbuckets = PD_POLICY_LATENCY_BUCKETS,
      .bounds = pd_policy_latency_bounds(),
      .buckets = buckets,
      .sum = sums,
      .nresults = PD_SHADOW_RESULT_COUNT,
      .result_names = srn,
      .shadow_calls = sh ? shadow_calls : NULL,
  };
  g.policy_load = &pl;
  pd_metrics_net_t net;
  if (pd_node_net_counters(c->node, &net)) g.net = &net;
  pd_metrics_dht_t dm;
  const char *dht_reasons[PD_DHT_R_COUNT];
  pd_dht_t *dht = pd_node_dht(c->node);
  if (dht) {
    const pd_dht_stats_t *ds = pd_dht_stats(dht);
    memset(&dm, 0, sizeof dm);
    dm.table_nodes = pd_dht_table_size(pd_dht_table(dht));
    dm.table_replacements = pd_dht_table_cached(pd_dht_table(dht));
    dm.sessions = pd_dht_sessions(dht);
    dm.requests_out = pd_dht_requests_out(dht);
    dm.lookups_running = pd_dht_lookups_running(dht);
    for (int k = 0; k < 3; k++) {
      dm.packets_in[k] = ds->packets_in[k];
      dm.packets_out[k] = ds->packets_out[k];
    }
    for (int k = 0; k < 4; k++) {
      dm.msgs_in[k] = ds->msgs_in[k + 1];
      dm.msgs_out[k] = ds->msgs_out[k + 1];
    }
    dm.bytes_in = ds->bytes_in;
    dm.bytes_out = ds->bytes_out;
    for (int r = 0; r < PD_DHT_R_COUNT; r++) dht_reasons[r] = pd_dht_reason_name(r);
    dm.nreasons = PD_DHT_R_COUNT;
    dm.reason_names = dht_reasons;
    dm.rejected = ds->rejected;
    dm.handshakes_ok = ds->handshakes_ok;
    dm.handshakes_failed = ds->handshakes_failed;
    dm.requests = ds->requests;
    dm.timeouts = ds->timeouts;
    dm.lookups_started = ds->lookups_started;
    dm.lookups_done = ds->lookups_done;
    dm.lookups_found = ds->lookups_found;
    dm.lookup_hops_sum = ds->lookup_hops_sum;
    dm.records_found = ds->records_found;
    dm.table_added = ds->table_added;
    dm.table_removed = ds->table_removed;
    dm.table_refused = ds->table_refused;
    g.dht = &dm;
  }
  char *text = NULL;
  size_t len = 0;
  if (pd_metrics_render(pd_node_metrics(c->node), &g, PEERD_VERSION, &text, &len) < 0) {
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set_body(c->resp, 200, PD_METRICS_CONTENT_TYPE, text, len);
}

/* GET /v1/policy/shadow: the shadow set and how its answers compare. */
static void h_policy_shadow(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_shadow_t *sh = pd_node_shadow(c->node);
  const char *dir = pd_node_shadow_dir(c->node);
  if (!sh || !dir) {
    pd_api_error(c->resp, 404, "no shadow policy set (start peerd with --shadow-policies DIR)");
    return;
  }
  pd_policy_t *sp = pd_shadow_policy(sh);
  pd_policy_status_t ss;
  pd_policy_status(sp, &ss);
  bool loaded = pd_shadow_loaded(sh);
  json_t *o = json_object();
  json_t *files = json_array();
  json_t *hooks = json_object();
  if (!o || !files || !hooks) {
    json_decref(o);
    json_decref(files);
    json_decref(hooks);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set(o, "dir", jstr(dir));
  set(o, "loaded", json_boolean(loaded));
  set(o, "generation", jint((int64_t)ss.generation));
  set(o, "hash", loaded ? jstr(ss.hash) : json_null());
  set(o, "loaded_at", loaded ? jtime_or_null(ss.loaded_at) : json_null());
  for (size_t i = 0; loaded && i < ss.nfiles && i < sizeof(ss.files) / sizeof(ss.files[0]); i++) {
    ss.files[i][sizeof(ss.files[i]) - 1] = '\0';
    json_array_append_new(files, jstr(ss.files[i]));
  }
  set(o, "files", files);
  set(o, "since", jtime_or_null(pd_shadow_since(sh)));
  const char *lerr = NULL;
  int64_t lat = 0;
  if (pd_shadow_last_load(sh, &lerr, &lat) < 0 && lerr) {
    json_t *le = json_object();
    if (le) {
      set(le, "at", jint(lat));
      set(le, "error", jstr(lerr));
    }
    set(o, "load_error", le);
  } else {
    set(o, "load_error", json_null());
  }
  set(o, "last_error", last_error_json(&ss));
  set(o, "memory_bytes", jint((int64_t)ss.memory_bytes));
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    json_t *ho = json_object();
    json_t *list = json_array();
    if (!ho || !list) {
      json_decref(ho);
      json_decref(list);
      continue;
    }
    uint64_t a = pd_shadow_count(sh, h, PD_SHADOW_AGREE, false);
    uint64_t d = pd_shadow_count(sh, h, PD_SHADOW_DISAGREE, false);
    uint64_t e = pd_shadow_count(sh, h, PD_SHADOW_ERROR, false);
    set(ho, "calls", jint((int64_t)(a + d + e)));
    set(ho, "agreements", jint((int64_t)a));
    set(ho, "disagreements", jint((int64_t)d));
    set(ho, "errors", jint((int64_t)e));
    pd_shadow_diff_t diffs[PD_SHADOW_KEEP];
    size_t nd = pd_shadow_diffs(sh, h, diffs, PD_SHADOW_KEEP);
    for (size_t i = 0; i < nd; i++) {
      json_t *x = json_object();
      if (!x) continue;
      set(x, "at", jint(diffs[i].at));
      set(x, "input", jstr(diffs[i].input));
      set(x, "live", jstr(diffs[i].live));
      set(x, "shadow", jstr(diffs[i].shadow));
      json_array_append_new(list, x);
    }
    set(ho, "last_disagreements", list);
    set(ho, "policy", hook_health_json(sp, h));
    set(hooks, pd_policy_hook_name(h), ho);
  }
  set(o, "hooks", hooks);
  reply_json(c->resp, 200, o);
}

/* POST /v1/policy/promote: the shadow set becomes the live one. */
static void h_policy_promote(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_shadow_t *sh = pd_node_shadow(c->node);
  const char *dir = pd_node_shadow_dir(c->node);
  if (!sh || !dir) {
    pd_api_error(c->resp, 409,
                 "no shadow policy set to promote (start peerd with --shadow-policies DIR)");
    return;
  }
  if (!pd_shadow_loaded(sh)) {
    const char *lerr = NULL;
    pd_shadow_last_load(sh, &lerr, NULL);
    errorf(c->resp, 409, "the shadow policy set has not loaded: %.400s",
           lerr ? lerr : "no set loaded yet");
    return;
  }
  int rc = pd_node_shadow_promote(c->node, c->now);
  if (rc < 0) {
    errorf(c->resp, 500, "promote failed: %s", pd_strerror(rc));
    return;
  }
  pd_policy_status_t ps;
  pd_policy_status(pd_node_policy(c->node), &ps);
  json_t *o = json_object();
  if (o) {
    set(o, "promoted", json_true());
    set(o, "dir", jstr_or_null(pd_node_config(c->node)->policy_dir));
    set(o, "generation", jint((int64_t)ps.generation));
    set(o, "hash", jstr(ps.hash));
  }
  reply_json(c->resp, 200, o);
  if (c->resp->status == 200) c->resp->action = PD_API_ACTION_PROMOTE;
}

/* GET /v1/peers: the connected peers, through the driver's network view. */
static void h_peers(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  size_t cap = 64, total = 0;
  pd_node_peer_info_t *list = NULL;
  for (int round = 0; round < 4; round++) {
    free(list);
    list = calloc(cap, sizeof *list);
    if (!list) {
      pd_api_error(c->resp, 500, "out of memory");
      return;
    }
    total = pd_node_peers(c->node, c->now, list, cap);
    if (total <= cap) break;
    cap = total + 16; /* peers came and went between calls: try again */
  }
  if (total > cap) total = cap;
  json_t *o = json_object();
  json_t *arr = json_array();
  if (!o || !arr) {
    json_decref(o);
    json_decref(arr);
    free(list);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  for (size_t i = 0; i < total; i++) {
    const pd_node_peer_info_t *p = &list[i];
    json_t *e = json_object();
    if (!e) continue;
    set(e, "id", jstr_or_null(p->id));
    set(e, "addr", jstr(p->addr));
    set(e, "direction", jstr(p->direction ? p->direction : "?"));
    set(e, "since", jint(p->since));
    set(e, "bytes_in", jint((int64_t)p->bytes_in));
    set(e, "bytes_out", jint((int64_t)p->bytes_out));
    set(e, "latency_ms", p->latency_ms >= 0 ? jint(p->latency_ms) : json_null());
    set(e, "score", isfinite(p->score) ? json_real(p->score) : json_null());
    set(e, "protected", json_boolean(p->is_protected));
    json_array_append_new(arr, e);
  }
  free(list);
  set(o, "peers", arr);
  reply_json(c->resp, 200, o);
}

/* ---- operator control: peers, protection, explain, policy check ---------- */

/* A peer as the operator names it: a node id (40 hex), ID@IP:PORT,
 * IP:PORT, or a bare IP (any port: any_port). Host names are refused. */
typedef struct target {
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  bool has_addr;
  bool any_port;
  pd_netaddr_t addr;
} target_t;

static bool parse_target(const char *s, target_t *t, const char **why) {
  memset(t, 0, sizeof *t);
  size_t n = strlen(s);
  if (n == 0) {
    *why = "empty target";
    return false;
  }
  if (n == PD_NODE_ID_HEXLEN && pd_node_id_parse(s, n, t->id) == 0) {
    t->has_id = true;
    return true;
  }
  if (pd_netaddr_parse_ip(s, &t->addr, NULL) == 0) {
    t->has_addr = true;
    t->any_port = true;
    t->addr.port = 0;
    return true;
  }
  const char *w = NULL;
  if (parse_addr(s, PD_PARSE_ALLOW_ID, &t->addr, &t->has_id, t->id, &w) < 0) {
    *why = w ? w : "expected a node id, ID@IP:PORT, IP:PORT or IP";
    return false;
  }
  t->has_addr = true;
  return true;
}

/* The TARGET at the end of the path (DELETE /v1/peers/T, /v1/protected/T,
 * GET /v1/explain/T), or a 400 answered. */
static bool path_target(ctx_t *c, target_t *t) {
  const char *why = NULL;
  if (parse_target(c->rest, t, &why)) return true;
  errorf(c->resp, 400, "bad target: %s", why);
  return false;
}

/* The target written back canonically. */
static void target_format(const target_t *t, char *buf, size_t cap) {
  char hex[PD_NODE_ID_HEXLEN + 1] = "", a[PD_ADDR_STRLEN] = "";
  if (t->has_id) hex_encode(t->id, PD_NODE_ID_LEN, hex);
  if (t->has_addr) {
    if (t->any_port) {
      if (pd_netaddr_format_ip(&t->addr, a, sizeof a) < 0) snprintf(a, sizeof a, "?");
    } else if (pd_netaddr_format(&t->addr, a, sizeof a) < 0) {
      snprintf(a, sizeof a, "?");
    }
  }
  snprintf(buf, cap, "%s%s%s", hex, (t->has_id && t->has_addr) ? "@" : "", a);
}

static bool need_net(ctx_t *c) {
  if (pd_node_net_control(c->node)) return true;
  pd_api_error(c->resp, 503, "no overlay network here (--p2p off): nothing to connect or disconnect");
  return false;
}

/* POST /v1/peers {"addr": "[ID@]IP:PORT"}: dial it now. */
static void h_peers_connect(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"addr", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  const char *addr_s;
  if (!field_string(c, root, "addr", true, &addr_s) || !need_net(c)) goto out;
  pd_netaddr_t a;
  bool has_id = false;
  uint8_t id[PD_NODE_ID_LEN];
  const char *why = NULL;
  if (parse_addr(addr_s, PD_PARSE_ALLOW_ID, &a, &has_id, id, &why) < 0) {
    errorf(c->resp, 400, "field \"addr\": %s", why);
    goto out;
  }
  if (pd_netaddr_check_acceptable(&a, pd_book_allow_private(c->book), &why) < 0) {
    errorf(c->resp, 400, "field \"addr\": %s", why ? why : "not acceptable");
    goto out;
  }
  pd_ban_t ban;
  if (pd_banlist_is_banned(pd_book_bans_const(c->book), &a, c->now, &ban)) {
    json_t *e = json_object();
    if (e) {
      set(e, "error", jstr("banned"));
      set(e, "addr", jstr(addr_s));
      set(e, "ban", ban_json(&ban));
    }
    reply_error_obj(c->resp, 409, e);
    goto out;
  }
  int rc = pd_node_net_connect(c->node, &a, has_id ? id : NULL, c->now, &why);
  if (rc < 0) {
    int status = rc == PD_EINVAL ? 400 : (rc == PD_EEXIST || rc == PD_EFULL) ? 409 : 500;
    errorf(c->resp, status, "%s", why ? why : pd_strerror(rc));
    goto out;
  }
  char buf[PD_ADDR_STRLEN];
  if (pd_netaddr_format(&a, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
  json_t *o = json_object();
  if (o) {
    set(o, "dialling", jstr(buf));
    if (has_id) {
      char hex[PD_NODE_ID_HEXLEN + 1];
      hex_encode(id, PD_NODE_ID_LEN, hex);
      set(o, "id", jstr(hex));
    } else {
      set(o, "id", json_null());
    }
  }
  reply_json(c->resp, 200, o);
out:
  json_decref(root);
}

/* DELETE /v1/peers/TARGET: disconnect now. */
static void h_peers_disconnect(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  target_t t;
  if (!path_target(c, &t)) return;
  if (!need_net(c)) return;
  pd_node_closed_t closed[64];
  size_t n = pd_node_net_disconnect(c->node, t.has_addr ? &t.addr : NULL, t.any_port,
                                    t.has_id ? t.id : NULL, c->now, closed, 64);
  char tb[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
  target_format(&t, tb, sizeof tb);
  json_t *o = json_object();
  if (n == 0) {
    if (o) {
      set(o, "error", jstr("no connected peer matches"));
      set(o, "target", jstr(tb));
    }
    reply_error_obj(c->resp, 404, o);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n && i < 64; i++) {
    json_t *e = json_object();
    if (!e) continue;
    set(e, "id", jstr_or_null(closed[i].id));
    set(e, "addr", jstr(closed[i].addr));
    set(e, "direction", jstr(closed[i].direction ? closed[i].direction : "?"));
    json_array_append_new(arr, e);
  }
  if (o) {
    set(o, "target", jstr(tb));
    set(o, "count", jint((int64_t)n));
    set(o, "closed", arr ? arr : json_array());
  } else {
    json_decref(arr);
  }
  reply_json(c->resp, 200, o);
}

static json_t *protect_json(const pd_node_protect_t *p) {
  target_t t;
  memset(&t, 0, sizeof t);
  t.has_id = p->has_id;
  memcpy(t.id, p->id, PD_NODE_ID_LEN);
  t.has_addr = p->has_addr;
  t.any_port = p->any_port;
  t.addr = p->addr;
  char tb[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
  target_format(&t, tb, sizeof tb);
  json_t *o = json_object();
  if (!o) return NULL;
  set(o, "target", jstr(tb));
  if (p->has_id) {
    char hex[PD_NODE_ID_HEXLEN + 1];
    hex_encode(p->id, PD_NODE_ID_LEN, hex);
    set(o, "id", jstr(hex));
  } else {
    set(o, "id", json_null());
  }
  if (p->has_addr) {
    t.has_id = false;
    target_format(&t, tb, sizeof tb);
    set(o, "addr", jstr(tb));
  } else {
    set(o, "addr", json_null());
  }
  set(o, "since", jint(p->since));
  return o;
}

static void h_protected_list(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_node_protect_t list[PD_NODE_MAX_PROTECTED];
  size_t n = pd_node_protected(c->node, list, PD_NODE_MAX_PROTECTED);
  json_t *o = json_object();
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n && i < PD_NODE_MAX_PROTECTED; i++)
    json_array_append_new(arr, protect_json(&list[i]));
  if (o) set(o, "protected", arr ? arr : json_array());
  else json_decref(arr);
  reply_json(c->resp, 200, o);
}

static void protect_from_target(const target_t *t, pd_node_protect_t *p) {
  memset(p, 0, sizeof *p);
  p->has_id = t->has_id;
  memcpy(p->id, t->id, PD_NODE_ID_LEN);
  p->has_addr = t->has_addr;
  p->any_port = t->any_port;
  p->addr = t->addr;
}

/* POST /v1/protected {"target": ID | ID@IP:PORT | IP:PORT | IP} */
static void h_protected_post(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"target", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  const char *target_s;
  target_t t;
  const char *why = NULL;
  if (!field_string(c, root, "target", true, &target_s)) goto out;
  if (!parse_target(target_s, &t, &why)) {
    errorf(c->resp, 400, "field \"target\": %s", why);
    goto out;
  }
  pd_node_protect_t p;
  protect_from_target(&t, &p);
  int rc = pd_node_protect(c->node, &p, c->now);
  if (rc == PD_EFULL) {
    errorf(c->resp, 409, "too many protected peers (at most %d)", PD_NODE_MAX_PROTECTED);
    goto out;
  }
  if (rc < 0) {
    errorf(c->resp, 500, "could not protect: %s", pd_strerror(rc));
    goto out;
  }
  char tb[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
  target_format(&t, tb, sizeof tb);
  json_t *o = json_object();
  if (o) {
    set(o, "protected", jstr(tb));
    set(o, "added", json_boolean(rc == 0));
  }
  reply_json(c->resp, 200, o);
out:
  json_decref(root);
}

static void h_protected_delete(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  target_t t;
  if (!path_target(c, &t)) return;
  pd_node_protect_t p;
  protect_from_target(&t, &p);
  char tb[PD_NODE_ID_HEXLEN + 2 + PD_ADDR_STRLEN];
  target_format(&t, tb, sizeof tb);
  json_t *o = json_object();
  if (pd_node_unprotect(c->node, &p) < 0) {
    if (o) {
      set(o, "error", jstr("not protected"));
      set(o, "target", jstr(tb));
    }
    reply_error_obj(c->resp, 404, o);
    return;
  }
  if (o) set(o, "unprotected", jstr(tb));
  reply_json(c->resp, 200, o);
}

static void add_reason(json_t *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_reason(json_t *arr, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_array_append_new(arr, jstr(msg));
}

/* GET /v1/explain/TARGET: everything peerd knows about an address or node,
 * and why its own dialer would or would not pick it now. */
static void h_explain(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  target_t t;
  if (!path_target(c, &t)) return;
  if (t.has_addr && t.any_port && !t.has_id) {
    pd_api_error(c->resp, 400, "bad target: explain needs IP:PORT or a node id (an IP alone names no entry)");
    return;
  }
  uint32_t id = PD_BOOK_NO_ID;
  if (t.has_addr) id = pd_book_find(c->book, &t.addr);
  if (id == PD_BOOK_NO_ID && t.has_id) id = pd_node_find_peer(c->node, NULL, t.id);
  pd_book_info_t e;
  bool in_book = id != PD_BOOK_NO_ID && pd_book_info(c->book, id, &e) == 0;
  if (!in_book && !t.has_addr) {
    char hex[PD_NODE_ID_HEXLEN + 1];
    hex_encode(t.id, PD_NODE_ID_LEN, hex);
    json_t *o = json_object();
    if (o) {
      set(o, "error", jstr("no book entry has that node id"));
      set(o, "id", jstr(hex));
    }
    reply_error_obj(c->resp, 404, o);
    return;
  }
  pd_netaddr_t a = in_book ? e.addr : t.addr;
  const uint8_t *nid = in_book && e.has_node_id ? e.node_id : (t.has_id ? t.id : NULL);
  json_t *o = json_object();
  json_t *reasons = json_array();
  json_t *refs = json_array();
  if (!o || !reasons || !refs) {
    json_decref(o);
    json_decref(reasons);
    json_decref(refs);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  char buf[PD_ADDR_STRLEN];
  if (pd_netaddr_format(&a, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
  set(o, "addr", jstr(buf));
  if (nid) {
    char hex[PD_NODE_ID_HEXLEN + 1];
    hex_encode(nid, PD_NODE_ID_LEN, hex);
    set(o, "id", jstr(hex));
  } else {
    set(o, "id", json_null());
  }
  set(o, "in_book", json_boolean(in_book));
  uint8_t group[PD_GROUP_MAX];
  size_t glen = pd_netaddr_group(&a, pd_book_allow_private(c->book), group);
  char ghex[2 * PD_GROUP_MAX + 1];
  hex_encode(group, glen, ghex);
  set(o, "group", jstr(ghex));
  bool terrible = false;
  double chance = 0;
  if (in_book) {
    if (pd_netaddr_format_ip(&e.source, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
    set(o, "source", jstr(buf));
    set(o, "table", jstr(table_name(e.in_tried)));
    set(o, "bucket", jint(e.bucket));
    set(o, "position", jint(e.position));
    if (!e.in_tried) new_refs_json(c->book, id, refs);
    set(o, "refs", refs);
    refs = NULL;
    set(o, "attempts", jint(e.attempts));
    set(o, "last_try", jint(e.last_try));
    set(o, "last_success", jint(e.last_success));
    set(o, "time", jint(e.time));
    set(o, "service_only", json_boolean(e.service_only));
    terrible = pd_book_is_terrible(c->book, id, c->now);
    chance = pd_book_chance(c->book, id, c->now);
    set(o, "terrible", json_boolean(terrible));
    set(o, "chance", json_real(chance));
  } else {
    set(o, "table", json_null());
  }
  json_decref(refs);
  pd_ban_t ban;
  bool banned = pd_banlist_is_banned(pd_book_bans_const(c->book), &a, c->now, &ban);
  set(o, "banned", json_boolean(banned));
  set(o, "ban", banned ? ban_json(&ban) : json_null());
  pd_peer_view_t v;
  pd_node_peer_view(c->node, &a, c->now, &v);
  set(o, "score", json_real(pd_node_score(c->node, &v, c->now)));
  set(o, "reputation", reputation_json(&v));
  set(o, "private", json_boolean(v.private_peer));
  bool prot = pd_node_is_protected(c->node, &a, nid);
  set(o, "protected", json_boolean(prot));
  pd_node_dial_state_t ds;
  bool have_net = pd_node_net_dial_state(c->node, &a, nid, c->now, &ds);
  if (have_net) {
    json_t *cn = json_object();
    if (cn) {
      set(cn, "connected", json_boolean(ds.connected));
      set(cn, "direction", ds.direction ? jstr(ds.direction) : json_null());
      set(cn, "in_flight", json_boolean(ds.in_flight));
      set(cn, "backoff_until", ds.backoff_until > c->now ? jint(ds.backoff_until) : json_null());
      set(cn, "failures", jint(ds.failures));
      set(cn, "group_taken", json_boolean(ds.group_taken));
      set(cn, "outbound", jint(ds.outbound));
      set(cn, "max_outbound", jint(ds.max_outbound));
    }
    set(o, "connection", cn);
  } else {
    set(o, "connection", json_null());
  }
  /* Why peerd's own dialer would (not) pick it now, in the order it checks. */
  bool blocked = false;
  if (!in_book) {
    add_reason(reasons, "not in the book: the selection never picks it");
    blocked = true;
  }
  if (banned) {
    char sub[PD_ADDR_STRLEN];
    if (pd_subnet_format(&ban.subnet, sub, sizeof sub) < 0) snprintf(sub, sizeof sub, "?");
    if (ban.until) add_reason(reasons, "banned (%s) until %" PRId64, sub, ban.until);
    else add_reason(reasons, "banned (%s) permanently", sub);
    blocked = true;
  }
  if (in_book && e.service_only) {
    add_reason(reasons, "a service endpoint the node gave: GET /v1/dial hands it out, peerd never dials it");
    blocked = true;
  }
  if (!have_net) {
    add_reason(reasons, "no overlay network here (--p2p off): peerd dials nothing");
    blocked = true;
  } else {
    if (ds.self) {
      add_reason(reasons, "this is one of peerd's own addresses");
      blocked = true;
    }
    if (ds.connected) {
      add_reason(reasons, "already connected (%s)", ds.direction ? ds.direction : "?");
      blocked = true;
    }
    if (ds.in_flight) {
      add_reason(reasons, "a dial to it is in flight");
      blocked = true;
    }
    if (ds.backoff_until > c->now) {
      add_reason(reasons, "in backoff until %" PRId64 " (%u failed dials in a row)", ds.backoff_until,
                 ds.failures);
      blocked = true;
    }
    if (ds.group_taken && !ds.connected) {
      add_reason(reasons, "an outbound peer or dial is in its network group already (one per group)");
      blocked = true;
    }
    if (ds.dialling_off) {
      add_reason(reasons, "dialling is off (--max-outbound 0)");
      blocked = true;
    } else if (ds.slots_full && !ds.connected) {
      add_reason(reasons, "no free outbound slot now (%u of %u in use)", ds.outbound, ds.max_outbound);
      blocked = true;
    }
  }
  if (terrible) add_reason(reasons, "terrible (addrman IsTerrible): never shared through PEX, first to lose its slot");
  if (in_book && !blocked) {
    add_reason(reasons, "eligible: the selection picks it at random with weight %.3g", chance);
  }
  set(o, "selectable", json_boolean(!blocked));
  set(o, "reasons", reasons);
  /* whether GET /v1/dial may hand the node an endpoint for it */
  pd_node_endpoint_t ep;
  bool hand = in_book && !banned && pd_node_dial_endpoint(c->node, id, NULL, &ep);
  set(o, "handed_to_node", json_boolean(hand));
  reply_json(c->resp, 200, o);
}

/* GET /v1/policy: the policy status (as in /v1/status). */
static void h_policy_get(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  reply_json(c->resp, 200, policy_status_json(c));
}

/* POST /v1/policy/check {"dir": "PATH"}: the driver reads the directory. */
static void h_policy_check(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  static const char *const fields[] = {"dir", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  const char *dir;
  if (field_string(c, root, "dir", true, &dir)) {
    pd_api_pending_t *p = calloc(1, sizeof *p);
    if (!p || !*dir || !(p->dir = strdup(dir))) {
      free(p);
      pd_api_error(c->resp, *dir ? 500 : 400, *dir ? "out of memory" : "field \"dir\" is empty");
    } else {
      c->resp->status = 200;
      c->resp->action = PD_API_ACTION_CHECK;
      c->resp->pending = p;
    }
  }
  json_decref(root);
}

const char *pd_api_pending_dir(const pd_api_response_t *resp) {
  return (resp && resp->pending) ? resp->pending->dir : NULL;
}

void pd_api_policy_checked(pd_node_t *n, pd_api_response_t *resp, const pd_policy_file_t *files,
                           size_t nfiles, const char *read_error, int64_t now) {
  if (!resp || !resp->pending || resp->pending->check) return;
  pd_api_pending_t *p = resp->pending;
  json_t *o = json_object();
  if (!o) return;
  set(o, "dir", jstr(p->dir));
  if (read_error) {
    set(o, "ok", json_false());
    set(o, "error", jstr(read_error));
    set(o, "files", json_array());
    p->check = o;
    p->check_unreadable = true;
    return;
  }
  pd_node_check_t *r = calloc(1, sizeof *r);
  if (!r) {
    json_decref(o);
    return;
  }
  pd_node_policy_check(n, files, nfiles, now, r);
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < r->nfiles; i++) {
    const pd_node_check_file_t *f = &r->files[i];
    json_t *j = json_object();
    if (!j) continue;
    set(j, "file", jstr(f->name));
    set(j, "ok", json_boolean(f->ok));
    if (f->ok) {
      json_t *hooks = json_array();
      for (int h = 0; hooks && h < PD_HOOK_COUNT; h++) {
        const char *hn = pd_policy_hook_name(h);
        if (f->has_hook[h] && hn) json_array_append_new(hooks, jstr(hn));
      }
      set(j, "hooks", hooks ? hooks : json_array());
      set(j, "error", json_null());
    } else {
      set(j, "error", jstr(f->error));
    }
    json_array_append_new(arr, j);
  }
  set(o, "ok", json_boolean(r->ok));
  set(o, "error", r->ok || r->error[0] == '\0' ? (r->ok ? json_null() : jstr("a file failed to load"))
                                              : jstr(r->error));
  set(o, "files", arr ? arr : json_array());
  set(o, "hash", r->ok ? jstr(r->hash) : json_null());
  set(o, "memory_bytes", r->ok ? jint((int64_t)r->memory_bytes) : json_null());
  free(r);
  p->check = o;
}

/* GET /v1/book with filters: the whole table is walked, entries matching
 * every filter counted, the page [offset, offset + limit) listed. */

static bool parse_book_filter(ctx_t *c, book_filter_t *f) {
  memset(f, 0, sizeof *f);
  f->banned = -1;
  const char *v;
  if ((v = query_get(c, "group")) != NULL) {
    pd_netaddr_t a;
    size_t n = strlen(v);
    if (pd_netaddr_parse_ip(v, &a, NULL) == 0) {
      f->glen = pd_netaddr_group(&a, pd_book_allow_private(c->book), f->group);
    } else if (n > 0 && n % 2 == 0 && n <= 2 * PD_GROUP_MAX) {
      for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(v[i]), lo = hexval(v[i + 1]);
        if (hi < 0 || lo < 0) goto bad_group;
        f->group[i / 2] = (uint8_t)(hi * 16 + lo);
      }
      f->glen = n / 2;
    } else {
      goto bad_group;
    }
    f->has_group = true;
  }
  if ((v = query_get(c, "banned")) != NULL) {
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) f->banned = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) f->banned = 0;
    else {
      pd_api_error(c->resp, 400, "banned must be true or false");
      return false;
    }
  }
  if ((v = query_get(c, "source")) != NULL) {
    if (pd_netaddr_parse_ip(v, &f->source, NULL) < 0) {
      pd_api_error(c->resp, 400, "source must be an IP address");
      return false;
    }
    f->has_source = true;
  }
  if ((v = query_get(c, "min_score")) != NULL) {
    json_t *num = json_loads(v, JSON_DECODE_ANY, NULL);
    bool ok = num && json_is_number(num) && isfinite(json_number_value(num));
    if (ok) f->min_score = json_number_value(num);
    json_decref(num);
    if (!ok) {
      pd_api_error(c->resp, 400, "min_score must be a number");
      return false;
    }
    f->has_min_score = true;
  }
  return true;
bad_group:
  pd_api_error(c->resp, 400, "group must be an IP address or the group's hex bytes (as GET /v1/book/ADDR shows them)");
  return false;
}

static bool book_filter_any(const book_filter_t *f) {
  return f->has_group || f->banned >= 0 || f->has_source || f->has_min_score;
}

static bool book_filter_match(ctx_t *c, const book_filter_t *f, const pd_book_info_t *e,
                              double *score) {
  if (f->has_group) {
    uint8_t g[PD_GROUP_MAX];
    size_t gl = pd_netaddr_group(&e->addr, pd_book_allow_private(c->book), g);
    if (gl != f->glen || memcmp(g, f->group, gl) != 0) return false;
  }
  if (f->has_source && !pd_netaddr_same_ip(&e->source, &f->source)) return false;
  if (f->banned >= 0 &&
      pd_banlist_is_banned(pd_book_bans_const(c->book), &e->addr, c->now, NULL) != (f->banned == 1))
    return false;
  if (f->has_min_score) {
    pd_peer_view_t v;
    pd_node_peer_view(c->node, &e->addr, c->now, &v);
    *score = pd_node_score(c->node, &v, c->now);
    if (!(*score >= f->min_score)) return false;
  }
  return true;
}

static json_t *book_row(ctx_t *c, const pd_book_info_t *e) {
  json_t *j = entry_json(e);
  if (!j) return NULL;
  set(j, "time", jint(e->time));
  set(j, "last_try", jint(e->last_try));
  set(j, "last_success", jint(e->last_success));
  set(j, "attempts", jint(e->attempts));
  set(j, "refs", jint(e->refcount));
  return j;
}

static void book_list_filtered(ctx_t *c, enum pd_table t, const book_filter_t *f, size_t limit,
                               size_t offset) {
  json_t *o = json_object();
  json_t *entries = json_array();
  uint32_t *ids = malloc(LIST_LIMIT_MAX * sizeof *ids);
  if (!o || !entries || !ids) {
    json_decref(o);
    json_decref(entries);
    free(ids);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  size_t matched = 0, at = 0, total = 0;
  for (;;) {
    size_t got = pd_book_list(c->book, t, at, LIST_LIMIT_MAX, ids, &total);
    for (size_t i = 0; i < got; i++) {
      pd_book_info_t e;
      double score = 0;
      if (pd_book_info(c->book, ids[i], &e) < 0 || !book_filter_match(c, f, &e, &score)) continue;
      if (matched >= offset && matched - offset < limit) {
        json_t *j = book_row(c, &e);
        if (j) {
          if (f->has_min_score) set(j, "score", json_real(score));
          json_array_append_new(entries, j);
        }
      }
      matched++;
    }
    at += got;
    if (got == 0 || at >= total) break;
  }
  free(ids);
  set(o, "table", jstr(t == PD_TABLE_NEW ? "new" : t == PD_TABLE_TRIED ? "tried" : "all"));
  set(o, "total", jint((int64_t)matched));
  set(o, "offset", jint((int64_t)offset));
  set(o, "limit", jint((int64_t)limit));
  set(o, "entries", entries);
  reply_json(c->resp, 200, o);
}

/* ---- routing ------------------------------------------------------------ */


/* ---- /v1/self: this node's record ---------------------------------------- */

static json_t *addr_json(const pd_netaddr_t *a) {
  char buf[PD_ADDR_STRLEN];
  if (pd_netaddr_format(a, buf, sizeof(buf)) < 0) snprintf(buf, sizeof(buf), "?");
  return jstr(buf);
}

static json_t *self_json(pd_self_t *self) {
  const pd_record_t *r = pd_self_record(self);
  size_t len = 0;
  const uint8_t *bytes = pd_self_bytes(self, &len);
  json_t *o = json_object();
  if (!o) return NULL;
  char hex[2 * PD_IDENTITY_PK_LEN + 1];
  hex_encode(r->id, PD_NODE_ID_LEN, hex);
  set(o, "node_id", jstr(hex));
  hex_encode(r->pubkey, PD_IDENTITY_PK_LEN, hex);
  set(o, "pubkey", jstr(hex));
  set(o, "seq", json_integer((json_int_t)r->seq));
  set(o, "network", jstr(r->network));
  pd_netaddr_t ann;
  json_t *a = json_object();
  if (a) {
    char ip[PD_ADDR_STRLEN];
    if (pd_self_announced(self, &ann) && pd_netaddr_format_ip(&ann, ip, sizeof ip) >= 0)
      set(a, "ip", jstr(ip));
    else
      set(a, "ip", json_null());
    set(a, "source", jstr(pd_self_announced_source(self)));
  }
  set(o, "announced", a);
  set(o, "discovery", r->has_discovery ? addr_json(&r->discovery) : json_null());
  json_t *svc = json_object();
  for (unsigned i = 0; svc && i < r->nservices; i++)
    set(svc, r->services[i].name, addr_json(&r->services[i].addr));
  set(o, "services", svc);
  /* as declared: a service on the announced address shows its port only,
   * and is missing from "services" until that address is known */
  size_t nd = 0;
  const pd_self_service_t *d = pd_self_services(self, &nd);
  json_t *decl = json_object();
  for (size_t i = 0; decl && i < nd; i++) {
    if (d[i].has_host) {
      set(decl, d[i].name, addr_json(&d[i].addr));
    } else {
      char port[8];
      snprintf(port, sizeof port, "%u", (unsigned)d[i].addr.port);
      set(decl, d[i].name, jstr(port));
    }
  }
  set(o, "declared", decl);
  json_t *at = json_object();
  for (unsigned i = 0; at && i < r->nattrs; i++) set(at, r->attrs[i].key, jstr(r->attrs[i].value));
  set(o, "attrs", at);
  char b64[sodium_base64_ENCODED_LEN(PD_RECORD_MAX, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, bytes, len, sodium_base64_VARIANT_ORIGINAL);
  set(o, "record", jstr(b64));
  set(o, "size", jint((int64_t)len));
  set(o, "changes", json_integer((json_int_t)pd_self_changes(self)));
  return o;
}

static void h_self_get(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_self_t *self = pd_node_self(c->node);
  if (!self) {
    pd_api_error(c->resp, 503, "this peerd has no node record yet");
    return;
  }
  reply_json(c->resp, 200, self_json(self));
}

/* PUT /v1/self {"services": {NAME: "[HOST:]PORT" | PORT}, "attrs": {KEY: VALUE}}:
 * each field given replaces that whole part (an empty object clears it; a
 * field left out keeps what is there). All or nothing; one new sequence. */
static void h_self_put(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_self_t *self = pd_node_self(c->node);
  if (!self) {
    pd_api_error(c->resp, 503, "this peerd has no node record yet");
    return;
  }
  static const char *const fields[] = {"services", "attrs", NULL};
  json_t *root = body_object(c, fields);
  if (!root) return;
  json_t *js = json_object_get(root, "services"), *ja = json_object_get(root, "attrs");
  pd_self_service_t svc[PD_RECORD_MAX_SERVICES];
  pd_record_attr_t at[PD_RECORD_MAX_ATTRS];
  size_t ns = 0, na = 0;
  const char *why = NULL;
  if ((js && !json_is_object(js)) || (ja && !json_is_object(ja))) {
    pd_api_error(c->resp, 400, "\"services\" and \"attrs\" must be objects");
    goto out;
  }
  if (js) {
    if (json_object_size(js) > PD_RECORD_MAX_SERVICES) {
      pd_api_error(c->resp, 400, "at most 8 services");
      goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(js, k, v) {
      pd_self_service_t *e = &svc[ns];
      memset(e, 0, sizeof *e);
      if (!pd_record_name_ok(k)) {
        errorf(c->resp, 400, "service name %.40s: 1..16 of [a-z0-9._-], starting with a letter or digit", k);
        goto out;
      }
      memcpy(e->name, k, strlen(k));
      char text[PD_ADDR_STRLEN];
      if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      } else if (json_is_string(v) && strlen(json_string_value(v)) < sizeof text) {
        snprintf(text, sizeof text, "%s", json_string_value(v));
      } else {
        errorf(c->resp, 400, "service %s: expected \"[HOST:]PORT\" or a port number", k);
        goto out;
      }
      if (pd_self_parse_endpoint(text, &e->has_host, &e->addr, &why) < 0) {
        errorf(c->resp, 400, "service %s: %s", k, why);
        goto out;
      }
      ns++;
    }
  } else {
    const pd_self_service_t *cur = pd_self_services(self, &ns);
    memcpy(svc, cur, ns * sizeof *svc);
  }
  if (ja) {
    if (json_object_size(ja) > PD_RECORD_MAX_ATTRS) {
      pd_api_error(c->resp, 400, "at most 8 attributes");
      goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(ja, k, v) {
      if (!pd_record_name_ok(k) || !json_is_string(v) || !pd_record_value_ok(json_string_value(v))) {
        errorf(c->resp, 400,
               "attribute %.40s: key 1..16 of [a-z0-9._-], value a string of 0..64 printable ASCII", k);
        goto out;
      }
      memset(&at[na], 0, sizeof at[na]);
      memcpy(at[na].key, k, strlen(k));
      memcpy(at[na].value, json_string_value(v), strlen(json_string_value(v)));
      na++;
    }
  } else {
    const pd_record_t *r = pd_self_record(self);
    na = r->nattrs;
    memcpy(at, r->attrs, na * sizeof *at);
  }
  int rc = pd_self_replace(self, svc, ns, at, na, c->now * 1000, &why);
  if (rc < 0) {
    errorf(c->resp, 400, "%s", why ? why : pd_strerror(rc));
    goto out;
  }
  reply_json(c->resp, 200, self_json(self));
out:
  json_decref(root);
}

/* GET /v1/events/stream?kinds=a,b&since=SEQ: server-sent events. The
 * checks are here; the driver keeps the connection (PD_API_ACTION_STREAM). */
static void h_events_stream(ctx_t *c) {
  static const char *const params[] = {"kinds", "since", NULL};
  if (!query_allow(c, params)) return;
  uint32_t kinds = PD_EVENT_ALL_KINDS;
  const char *ks = query_get(c, "kinds");
  const char *bad = NULL;
  size_t bad_len = 0;
  if (ks && pd_event_kinds_parse(ks, &kinds, &bad, &bad_len) < 0) {
    errorf(c->resp, 400, "unknown event kind in kinds: %.*s", (int)(bad_len > 64 ? 64 : bad_len),
           bad);
    return;
  }
  uint64_t since = 0;
  bool has_since = false;
  const char *lei = c->req->last_event_id;
  if (lei && *lei) {
    char *end = NULL;
    unsigned long long v = strtoull(lei, &end, 10);
    if (*lei < '0' || *lei > '9' || !end || *end != '\0') {
      pd_api_error(c->resp, 400, "Last-Event-ID must be an event's id (a decimal sequence number)");
      return;
    }
    since = (uint64_t)v;
    has_since = true;
  } else if (query_get(c, "since")) {
    if (!query_uint(c, "since", 0, 0, UINT64_MAX - 1, &since)) return;
    has_since = true;
  }
  pd_api_pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  p->kinds = kinds;
  p->has_since = has_since;
  p->since = since;
  c->resp->status = 200;
  c->resp->content_type = "text/event-stream";
  c->resp->pending = p;
  c->resp->action = PD_API_ACTION_STREAM;
}

bool pd_api_stream_params(const pd_api_response_t *resp, uint32_t *kinds, bool *has_since,
                          uint64_t *since) {
  if (!resp || resp->action != PD_API_ACTION_STREAM || !resp->pending) return false;
  if (kinds) *kinds = resp->pending->kinds;
  if (has_since) *has_since = resp->pending->has_since;
  if (since) *since = resp->pending->since;
  return true;
}

/* ---- /v1/dht, /v1/dht/lookup, /v1/nodes/ID: the DHT ----------------------- */

static json_t *b64_json(const uint8_t *bytes, size_t len) {
  char b64[sodium_base64_ENCODED_LEN(PD_RECORD_MAX, sodium_base64_VARIANT_ORIGINAL)];
  if (len > PD_RECORD_MAX) return json_null();
  sodium_bin2base64(b64, sizeof b64, bytes, len, sodium_base64_VARIANT_ORIGINAL);
  return jstr(b64);
}

static json_t *id_json(const uint8_t id[PD_NODE_ID_LEN]) {
  char hex[2 * PD_NODE_ID_LEN + 1];
  hex_encode(id, PD_NODE_ID_LEN, hex);
  return jstr(hex);
}

/* A node record as the DHT endpoints show it (bytes verified before). */
static json_t *dht_record_json(const uint8_t *bytes, size_t len) {
  pd_record_t r;
  json_t *o = json_object();
  if (!o || pd_record_parse_trusted(bytes, len, &r) != PD_RECORD_OK) return o;
  set(o, "node_id", id_json(r.id));
  set(o, "seq", json_integer((json_int_t)r.seq));
  set(o, "discovery", r.has_discovery ? addr_json(&r.discovery) : json_null());
  json_t *svc = json_object();
  for (unsigned i = 0; svc && i < r.nservices; i++) set(svc, r.services[i].name, addr_json(&r.services[i].addr));
  set(o, "services", svc);
  set(o, "attrs", attrs_json(&r));
  set(o, "record", b64_json(bytes, len));
  return o;
}

static pd_dht_t *need_dht(ctx_t *c) {
  pd_dht_t *d = pd_node_dht(c->node);
  if (!d) pd_api_error(c->resp, 503, "the DHT is off (peerd runs it unless --no-dht)");
  return d;
}

/* GET /v1/dht: the routing table and the engine's counters. */
static void h_dht(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  pd_dht_t *d = need_dht(c);
  if (!d) return;
  const pd_dht_table_t *t = pd_dht_table(d);
  const pd_dht_stats_t *st = pd_dht_stats(d);
  json_t *o = json_object(), *buckets = json_array(), *tab = json_object();
  if (!o || !buckets || !tab) {
    json_decref(o);
    json_decref(buckets);
    json_decref(tab);
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  set(o, "node_id", id_json(pd_dht_table_self(t)));
  for (unsigned i = 1; i <= PD_DHTT_BUCKETS; i++) {
    size_t n = 0, r = 0;
    const pd_dht_entry_t *e = pd_dht_table_bucket(t, i, &n);
    pd_dht_table_replacements(t, i, &r);
    if (!n && !r) continue;
    json_t *b = json_object(), *nodes = json_array();
    if (!b || !nodes) {
      json_decref(b);
      json_decref(nodes);
      continue;
    }
    set(b, "distance", jint(i));
    set(b, "size", jint((int64_t)n));
    set(b, "replacements", jint((int64_t)r));
    for (size_t k = 0; k < n; k++) {
      json_t *x = json_object();
      if (!x) continue;
      set(x, "node_id", id_json(e[k].id));
      set(x, "endpoint", addr_json(&e[k].ep));
      set(x, "seq", json_integer((json_int_t)e[k].seq));
      set(x, "seen_ms", jint(e[k].seen_ms));
      set(x, "fails", jint(e[k].fails));
      json_array_append_new(nodes, x);
    }
    set(b, "nodes", nodes);
    json_array_append_new(buckets, b);
  }
  set(tab, "nodes", jint((int64_t)pd_dht_table_size(t)));
  set(tab, "replacements", jint((int64_t)pd_dht_table_cached(t)));
  set(tab, "k", jint(pd_dht_table_k(t)));
  set(tab, "buckets", buckets);
  set(o, "table", tab);
  set(o, "sessions", jint((int64_t)pd_dht_sessions(d)));
  set(o, "requests_pending", jint((int64_t)pd_dht_requests_out(d)));
  json_t *lk = json_object();
  if (lk) {
    set(lk, "running", jint((int64_t)pd_dht_lookups_running(d)));
    set(lk, "started", jint((int64_t)st->lookups_started));
    set(lk, "done", jint((int64_t)st->lookups_done));
    set(lk, "found", jint((int64_t)st->lookups_found));
    set(lk, "mean_hops", st->lookups_done ? json_real((double)st->lookup_hops_sum / (double)st->lookups_done)
                                          : json_null());
  }
  set(o, "lookups", lk);
  static const char *const kinds[3] = {"message", "whoareyou", "handshake"};
  static const char *const types[5] = {NULL, "ping", "pong", "findnode", "nodes"};
  json_t *pk = json_object(), *pin = json_object(), *pout = json_object();
  for (int k = 0; pin && pout && k < 3; k++) {
    set(pin, kinds[k], jint((int64_t)st->packets_in[k]));
    set(pout, kinds[k], jint((int64_t)st->packets_out[k]));
  }
  if (pk) {
    set(pk, "in", pin);
    set(pk, "out", pout);
  } else {
    json_decref(pin);
    json_decref(pout);
  }
  set(o, "packets", pk);
  json_t *ms = json_object(), *min = json_object(), *mout = json_object();
  for (int k = 1; min && mout && k < 5; k++) {
    set(min, types[k], jint((int64_t)st->msgs_in[k]));
    set(mout, types[k], jint((int64_t)st->msgs_out[k]));
  }
  if (ms) {
    set(ms, "in", min);
    set(ms, "out", mout);
  } else {
    json_decref(min);
    json_decref(mout);
  }
  set(o, "messages", ms);
  json_t *rj = json_object();
  for (int r = 1; rj && r < PD_DHT_R_COUNT; r++)
    if (st->rejected[r]) set(rj, pd_dht_reason_name(r), jint((int64_t)st->rejected[r]));
  set(o, "rejected", rj);
  set(o, "handshakes", json_pack("{sI sI}", "ok", (json_int_t)st->handshakes_ok, "failed",
                                 (json_int_t)st->handshakes_failed));
  set(o, "records_found", jint((int64_t)st->records_found));
  set(o, "observed", st->has_observed ? addr_json(&st->observed) : json_null());
  reply_json(c->resp, 200, o);
}

static bool start_lookup(ctx_t *c, pd_dht_t *d, pd_api_pending_t *p) {
  uint64_t id = 0;
  if (pd_dht_passive(d)) {
    pending_free(p);
    pd_api_error(c->resp, 503, "this peerd's DHT only answers: its dialer is off (--max-outbound 0)");
    return false;
  }
  int rc = pd_dht_lookup_start(d, p->target, c->now * 1000, &id);
  if (rc != 0) {
    pending_free(p);
    pd_api_error(c->resp, 503, "too many DHT lookups running; try again");
    return false;
  }
  p->lookup_id = id;
  c->resp->status = 200;
  c->resp->pending = p;
  c->resp->action = PD_API_ACTION_LOOKUP;
  return true;
}

/* GET /v1/dht/lookup?target=ID: an iterative lookup now; the driver answers
 * when it ends (pd_api_complete). */
static void h_dht_lookup(ctx_t *c) {
  static const char *const params[] = {"target", NULL};
  if (!query_allow(c, params)) return;
  const char *ts = query_get(c, "target");
  uint8_t target[PD_NODE_ID_LEN];
  if (!ts || strlen(ts) != PD_NODE_ID_HEXLEN || pd_node_id_parse(ts, strlen(ts), target) < 0) {
    pd_api_error(c->resp, 400, "target must be a node id: 40 hex characters");
    return;
  }
  pd_dht_t *d = need_dht(c);
  if (!d) return;
  pd_api_pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  memcpy(p->target, target, sizeof target);
  start_lookup(c, d, p);
}

/* GET /v1/nodes/ID: where is node ID now? Its record with the highest
 * sequence among the records table, the DHT's table and a DHT lookup. */
static void h_nodes_get(ctx_t *c) {
  if (!query_allow(c, no_params)) return;
  uint8_t id[PD_NODE_ID_LEN];
  if (strlen(c->rest) != PD_NODE_ID_HEXLEN || pd_node_id_parse(c->rest, strlen(c->rest), id) < 0) {
    pd_api_error(c->resp, 400, "a node id is 40 hex characters");
    return;
  }
  pd_api_pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  memcpy(p->target, id, sizeof id);
  p->nodes = true;
  uint64_t best = 0;
  const pd_rec_t *r = pd_node_records(c->node) ? pd_rectable_find(pd_node_records(c->node), id) : NULL;
  if (r) {
    memcpy(p->local, r->bytes, r->len);
    p->local_len = r->len;
    p->local_source = "records";
    best = r->seq;
  }
  pd_dht_t *d = pd_node_dht(c->node);
  const pd_dht_entry_t *e = d ? pd_dht_table_find(pd_dht_table(d), id) : NULL;
  if (e && (!p->local_len || e->seq > best) && e->rec_len <= sizeof p->local) {
    memcpy(p->local, e->rec, e->rec_len);
    p->local_len = e->rec_len;
    p->local_source = "dht_table";
  }
  if (d && !pd_dht_passive(d)) {
    start_lookup(c, d, p);
    return;
  }
  c->resp->pending = p;
  c->resp->action = PD_API_ACTION_LOOKUP;
  c->resp->status = 200;
}

/* The answer of a LOOKUP action: the lookup's outcome (the driver saw it end,
 * or there is no DHT), the lookup released. */
static void complete_lookup(pd_node_t *n, pd_api_response_t *resp) {
  pd_api_pending_t *p = resp->pending;
  pd_dht_t *d = pd_node_dht(n);
  pd_dht_lookup_info_t info;
  bool have = d && p->lookup_id && pd_dht_lookup_get(d, p->lookup_id, &info) && info.done;
  json_t *o = json_object();
  if (!o) {
    if (have) pd_dht_lookup_release(d, p->lookup_id);
    pd_api_error(resp, 500, "out of memory");
    return;
  }
  if (p->nodes) {
    const uint8_t *bytes = p->local_len ? p->local : NULL;
    size_t len = p->local_len;
    const char *source = p->local_source;
    if (have && info.found && info.target_rec &&
        (!bytes || pd_record_peek_seq(info.target_rec->rec, info.target_rec->rec_len) >
                       pd_record_peek_seq(bytes, len))) {
      bytes = info.target_rec->rec;
      len = info.target_rec->rec_len;
      source = "dht_lookup";
    }
    if (!bytes) {
      json_decref(o);
      if (have) pd_dht_lookup_release(d, p->lookup_id);
      pd_api_error(resp, 404, d ? "node not found: no record here and the DHT lookup found none"
                                : "node not found: no record here (the DHT is off)");
      return;
    }
    json_decref(o);
    o = dht_record_json(bytes, len);
    if (o) {
      set(o, "source", jstr(source));
      set(o, "lookup", have ? json_pack("{sb sI sI sI}", "found", info.found, "hops", (json_int_t)info.hops,
                                         "queries", (json_int_t)info.queries, "time_ms",
                                         (json_int_t)(info.ended_ms - info.started_ms))
                            : json_null());
    }
    if (have) pd_dht_lookup_release(d, p->lookup_id);
    reply_json(resp, 200, o);
    return;
  }
  if (!have) {
    json_decref(o);
    pd_api_error(resp, 500, "the DHT lookup did not finish");
    return;
  }
  set(o, "target", id_json(info.target));
  set(o, "found", json_boolean(info.found));
  set(o, "hops", jint(info.hops));
  set(o, "queries", jint(info.queries));
  set(o, "answered", jint(info.answered));
  set(o, "failed", jint(info.failed));
  set(o, "time_ms", jint(info.ended_ms - info.started_ms));
  json_t *res = json_array();
  for (size_t i = 0; res && i < info.nresults; i++) {
    const pd_dht_result_t *r = &info.results[i];
    json_t *x = dht_record_json(r->rec, r->rec_len);
    if (!x) continue;
    set(x, "endpoint", addr_json(&r->ep));
    set(x, "hop", jint(r->hop));
    set(x, "distance", jint(pd_dht_logdist(info.target, r->id)));
    json_array_append_new(res, x);
  }
  set(o, "results", res);
  pd_dht_lookup_release(d, p->lookup_id);
  reply_json(resp, 200, o);
}

typedef struct route {
  const char *path;
  bool prefix; /* path is a prefix followed by a non-empty remainder */
  const char *method;
  void (*fn)(ctx_t *c);
} route_t;

static const route_t routes[] = {
    {"/health", false, "GET", h_health},
    {"/v1/status", false, "GET", h_status},
    {"/v1/book", false, "GET", h_book_list},
    {"/v1/book", false, "POST", h_book_post},
    {"/v1/book/", true, "GET", h_book_get},
    {"/v1/dial", false, "GET", h_dial},
    {"/v1/events", false, "POST", h_events},
    {"/v1/bans", false, "GET", h_bans_list},
    {"/v1/bans", false, "POST", h_bans_post},
    {"/v1/bans", false, "DELETE", h_bans_delete_query},
    {"/v1/bans/", true, "DELETE", h_bans_delete_path},
    {"/v1/save", false, "POST", h_save},
    {"/v1/pex", false, "GET", h_pex},
    {"/v1/peers", false, "GET", h_peers},
    {"/v1/self", false, "GET", h_self_get},
    {"/v1/self", false, "PUT", h_self_put},
    {"/v1/policy/reload", false, "POST", h_policy_reload},
    {"/v1/policy", false, "GET", h_policy_get},
    {"/v1/policy/check", false, "POST", h_policy_check},
    {"/v1/policy/shadow", false, "GET", h_policy_shadow},
    {"/v1/policy/promote", false, "POST", h_policy_promote},
    {"/v1/peers", false, "POST", h_peers_connect},
    {"/v1/peers/", true, "DELETE", h_peers_disconnect},
    {"/v1/protected", false, "GET", h_protected_list},
    {"/v1/protected", false, "POST", h_protected_post},
    {"/v1/protected/", true, "DELETE", h_protected_delete},
    {"/v1/explain/", true, "GET", h_explain},
    {"/metrics", false, "GET", h_metrics},
    {"/v1/events/stream", false, "GET", h_events_stream},
    {"/v1/dht", false, "GET", h_dht},
    {"/v1/dht/lookup", false, "GET", h_dht_lookup},
    {"/v1/nodes/", true, "GET", h_nodes_get},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* A route as the request-latency metric names it: its path, or for a
 * prefix route the path with what follows as a placeholder. Static. */
static const char *route_label(const route_t *r) {
  static const char *const prefixed[][2] = {
      {"/v1/book/", "/v1/book/{addr}"},
      {"/v1/bans/", "/v1/bans/{target}"},
      {"/v1/nodes/", "/v1/nodes/{id}"},
  };
  if (!r->prefix) return r->path;
  for (size_t i = 0; i < sizeof prefixed / sizeof prefixed[0]; i++) {
    if (strcmp(r->path, prefixed[i][0]) == 0) return prefixed[i][1];
  }
  return r->path;
}

static bool route_matches(const route_t *r, const char *path, const char **rest) {
  if (r->prefix) {
    size_t n = strlen(r->path);
    if (strncmp(path, r->path, n) != 0 || path[n] == '\0') return false;
    *rest = path + n;
    return true;
  }
  if (strcmp(path, r->path) != 0) return false;
  *rest = "";
  return true;
}

static void dispatch(ctx_t *c) {
  const pd_api_request_t *req = c->req;
  const char *target = req->target;
  if (target[0] != '/') {
    pd_api_error(c->resp, 400, "request target must start with /");
    return;
  }
  const char *qmark = strchr(target, '?');
  size_t plen = qmark ? (size_t)(qmark - target) : strlen(target);
  char *path = malloc(plen + 1);
  if (!path) {
    pd_api_error(c->resp, 500, "out of memory");
    return;
  }
  if (pct_decode(target, plen, 0, path) < 0) {
    pd_api_error(c->resp, 400, "bad percent-encoding in path");
    free(path);
    return;
  }
  c->path = path;

  const route_t *hit = NULL;
  json_t *allow = NULL;
  bool path_known = false;
  for (size_t i = 0; i < NROUTES; i++) {
    const char *rest;
    if (!route_matches(&routes[i], path, &rest)) continue;
    path_known = true;
    if (strcmp(routes[i].method, req->method) == 0) {
      hit = &routes[i];
      c->rest = rest;
      break;
    }
    if (!allow) allow = json_array();
    if (allow) json_array_append_new(allow, jstr(routes[i].method));
  }
  if (hit) {
    json_decref(allow);
    c->resp->route = route_label(hit);
    if (qmark && !parse_query(c, qmark + 1, strlen(qmark + 1))) goto out;
    hit->fn(c);
  } else if (path_known) {
    json_t *o = json_object();
    char msg[300];
    snprintf(msg, sizeof(msg), "method %.32s not allowed for %.200s", req->method, path);
    if (o) {
      set(o, "error", jstr(msg));
      set(o, "allow", allow ? allow : json_array());
    } else {
      json_decref(allow);
    }
    reply_error_obj(c->resp, 405, o);
  } else {
    errorf(c->resp, 404, "no such endpoint: %.200s", path);
  }
out:
  free(path);
  c->path = NULL;
}

/* ---- access ----------------------------------------------------------------- */

/* A Host (or an Origin's host) may name the API only by an IP literal or as
 * localhost: a browser tricked into calling the API through a DNS name
 * that resolves to us (DNS rebinding) sends that name. The port is not
 * checked. */
static bool host_ok(const char *h, size_t n) {
  if (n == 0) return false;
  char buf[PD_ADDR_STRLEN];
  size_t hl = n;
  if (h[0] == '[') { /* [v6]:port */
    const char *close = memchr(h, ']', n);
    if (!close) return false;
    hl = (size_t)(close - h) + 1;
  } else {
    const char *colon = memchr(h, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - h) - 1)) hl = (size_t)(colon - h);
  }
  if (hl == 0 || hl >= sizeof buf) return false;
  memcpy(buf, h, hl);
  buf[hl] = '\0';
  if (strcasecmp(buf, "localhost") == 0) return true;
  pd_netaddr_t a;
  return pd_netaddr_parse_ip(buf, &a, NULL) == 0;
}

static bool origin_ok(const char *o) {
  const char *sep = strstr(o, "://");
  if (!sep) return false; /* "null" (sandboxed) and anything odd */
  const char *h = sep + 3;
  size_t n = strcspn(h, "/");
  return host_ok(h, n);
}

static bool is_json_type(const char *ct) {
  static const char want[] = "application/json";
  size_t wl = sizeof want - 1;
  if (strncasecmp(ct, want, wl) != 0) return false;
  const char *rest = ct + wl;
  while (*rest == ' ' || *rest == '\t') rest++;
  return *rest == '\0' || *rest == ';';
}

int pd_api_check_access(const pd_api_request_t *req, const char **why) {
  const char *w = NULL;
  int status = 0;
  if (req->host && !host_ok(req->host, strlen(req->host))) {
    status = 403;
    w = "Host must be an IP address or localhost (DNS names are refused: DNS rebinding)";
  } else if (req->origin && !origin_ok(req->origin)) {
    status = 403;
    w = "cross-origin request refused (Origin must be an IP address or localhost)";
  } else if (req->token && *req->token &&
             !(req->method && strcmp(req->method, "GET") == 0 && req->target &&
               strncmp(req->target, "/health", 7) == 0 &&
               (req->target[7] == '\0' || req->target[7] == '?'))) {
    size_t tl = strlen(req->token);
    const char *a = req->authorization;
    bool ok = a && strncmp(a, "Bearer ", 7) == 0 && strlen(a + 7) == tl &&
              sodium_memcmp(a + 7, req->token, tl) == 0;
    if (!ok) {
      status = 401;
      w = "missing or wrong bearer token (Authorization: Bearer <token from the cookie or token file>)";
    }
  }
  if (!status && req->body_len > 0 && !(req->content_type && is_json_type(req->content_type))) {
    status = 415;
    w = "a request body must be Content-Type: application/json";
  }
  if (why) *why = w;
  return status;
}

void pd_api_handle(pd_node_t *n, const pd_api_request_t *req, int64_t now,
                   pd_api_response_t *resp) {
  memset(resp, 0, sizeof(*resp));
  resp->content_type = CT_JSON;
  resp->action = PD_API_ACTION_NONE;
  const char *deny = NULL;
  int deny_status = req ? pd_api_check_access(req, &deny) : 0;
  if (!req || !req->method || !req->target) {
    pd_api_error(resp, 400, "bad request");
  } else if (deny_status) {
    pd_api_error(resp, deny_status, deny);
  } else if (req->body_len > PD_API_MAX_BODY) {
    errorf(resp, 413, "request body too large: %zu > %d bytes", req->body_len, PD_API_MAX_BODY);
  } else if (req->body_len > 0 && !req->body) {
    pd_api_error(resp, 400, "bad request");
  } else {
    ctx_t c;
    memset(&c, 0, sizeof(c));
    c.node = n;
    c.book = pd_node_book(n);
    c.req = req;
    c.now = now;
    c.resp = resp;
    c.rest = "";
    /* One request budget for every policy call this request makes. */
    pd_node_budget_begin(n);
    dispatch(&c);
    pd_node_budget_end(n);
    for (size_t i = 0; i < c.nq; i++) {
      free(c.q[i].key);
      free(c.q[i].val);
    }
  }
  if (resp->status < 200) pd_api_error(resp, 500, "internal error");
  /* A response with an action is counted when the driver completes it. */
  if (resp->action == PD_API_ACTION_NONE) pd_metrics_count_request(pd_node_metrics(n), resp->status);
}

void pd_api_complete(pd_node_t *n, int64_t now, pd_api_response_t *resp) {
  if (resp->action == PD_API_ACTION_NONE) return;
  if (resp->action == PD_API_ACTION_SAVE) {
    const pd_node_status_t *st = pd_node_status(n);
    bool ok = st->last_save_at != 0 && st->last_save_rc == 0;
    json_t *o = json_object();
    if (o) {
      set(o, "saved", json_boolean(ok));
      set(o, "at", jtime_or_null(st->last_save_at));
      set(o, "bytes", jint((int64_t)st->last_save_bytes));
      set(o, "entries", jint((int64_t)st->last_save_entries));
      set(o, "error", st->last_save_rc < 0
                          ? jstr(st->last_save_error[0] ? st->last_save_error
                                                        : pd_strerror(st->last_save_rc))
                          : (ok ? json_null() : jstr("no save was recorded")));
    }
    reply_json(resp, ok ? 200 : 500, o);
  } else if (resp->action == PD_API_ACTION_RESOLVE) {
    pd_node_budget_begin(n);
    complete_resolve(n, now, resp);
    pd_node_budget_end(n);
  } else if (resp->action == PD_API_ACTION_LOOKUP) {
    if (resp->pending) complete_lookup(n, resp);
  } else if (resp->action == PD_API_ACTION_PROMOTE) {
    /* the answer was made with the promotion */
  } else if (resp->action == PD_API_ACTION_RELOAD) {
    const pd_node_status_t *st = pd_node_status(n);
    pd_policy_status_t ps;
    pd_policy_status(pd_node_policy(n), &ps);
    bool ok = st->last_policy_load_rc == 0;
    json_t *o = json_object();
    if (o) {
      set(o, "reloaded", json_boolean(ok));
      set(o, "generation", jint((int64_t)ps.generation));
      set(o, "hash", ps.generation ? jstr(ps.hash) : json_null());
      set(o, "error", ok ? json_null() : jstr(st->policy_error));
      pd_shadow_t *sh = pd_node_shadow(n);
      json_t *so = sh && pd_node_shadow_dir(n) ? json_object() : NULL;
      if (so) {
        /* the driver reloads the shadow's directory with the live one */
        pd_policy_status_t ss;
        pd_policy_status(pd_shadow_policy(sh), &ss);
        const char *serr = NULL;
        bool sok = pd_shadow_last_load(sh, &serr, NULL) == 0;
        set(so, "reloaded", json_boolean(sok));
        set(so, "generation", jint((int64_t)ss.generation));
        set(so, "error", sok || !serr ? json_null() : jstr(serr));
      }
      set(o, "shadow", so ? so : json_null());
    }
    reply_json(resp, ok ? 200 : 422, o);
  } else if (resp->action == PD_API_ACTION_CHECK) {
    json_t *o = resp->pending ? resp->pending->check : NULL;
    if (resp->pending) resp->pending->check = NULL;
    if (!o) {
      pd_api_error(resp, 500, "the policy directory was not checked");
    } else {
      /* 200 whatever the policies say (the report is the answer); 422 when
       * the directory itself could not be read */
      reply_json(resp, resp->pending->check_unreadable ? 422 : 200, o);
    }
  } else if (resp->action == PD_API_ACTION_STREAM) {
    /* 200, text/event-stream, no body: the driver streams from here on */
  } else {
    pd_api_error(resp, 500, "unknown action");
  }
  pending_free(resp->pending);
  resp->pending = NULL;
  resp->action = PD_API_ACTION_NONE;
  pd_metrics_count_request(pd_node_metrics(n), resp->status);
}

void pd_api_response_free(pd_api_response_t *resp) {
  if (!resp) return;
  free(resp->body);
  resp->body = NULL;
  resp->body_len = 0;
  pending_free(resp->pending);
  resp->pending = NULL;
}

uint64_t pd_api_pending_lookup(const pd_api_response_t *resp) {
  if (!resp || resp->action != PD_API_ACTION_LOOKUP || !resp->pending) return 0;
  return resp->pending->lookup_id;
}
